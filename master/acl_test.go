package master_test

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/testenv"
)

// aclTools returns setfacl's and getfacl's paths; a test skips without them
// (CI installs the acl package and sets CI, which makes their absence a
// failure).
func aclTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"setfacl", "getfacl"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not found (the acl package): %v", tool, err)
			}
			t.Skipf("%s not found (install the acl package)", tool)
		}
	}
}

// setfacl runs setfacl with args in dir.
func setfacl(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("setfacl", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("setfacl %q: %v: %s", args, err, out)
	}
}

// getfacls is getfacl's numeric output for every entry of root but the
// top-level reserved directory, by relative path, symlinks not followed.
func getfacls(t *testing.T, root string, paths []string) string {
	t.Helper()
	cmd := exec.Command("getfacl", append([]string{"-P", "-n", "--"}, paths...)...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("getfacl in %s: %v: %s", root, err, out)
	}
	return string(out)
}

// relPaths lists root's entries (but symlinks, which carry no ACL) as
// paths relative to it, root itself as ".".
func relPaths(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// requireSameACLs compares getfacl's output for every entry of the master
// tree on both trees.
func requireSameACLs(t *testing.T, mroot, sroot string) {
	t.Helper()
	paths := relPaths(t, mroot)
	a, b := getfacls(t, mroot, paths), getfacls(t, sroot, paths)
	if a != b {
		al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
		for i := 0; i < len(al) && i < len(bl); i++ {
			if al[i] != bl[i] {
				lo := max(0, i-6)
				t.Fatalf("getfacl differs at line %d:\nmaster:\n%s\nslave:\n%s", i+1,
					strings.Join(al[lo:min(len(al), i+3)], "\n"), strings.Join(bl[lo:min(len(bl), i+3)], "\n"))
			}
		}
		t.Fatalf("getfacl differs in length: %d and %d lines", len(al), len(bl))
	}
	if !strings.Contains(a, "user:1234:") {
		t.Fatalf("the master tree has no ACL naming user 1234: the test set none:\n%s", a)
	}
}

// TestACLsReplicated: access and default ACLs (numeric ids) go with a
// one-shot, a file that inherited a directory's default ACL and had it
// removed stays without on the slave (its staged copy inherits the same
// default there), and ACL changes made live, chmods of files with ACLs
// among them, follow within a batch; compared with getfacl on both trees
// and entry by entry (treecmp reads the ACL xattrs).
func TestACLsReplicated(t *testing.T) {
	aclTools(t)
	mroot, sroot := t.TempDir(), t.TempDir()
	write := func(rel string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(mroot, rel), []byte("data of "+rel), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mkdir := func(rel string) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(mroot, rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("f acl")
	setfacl(t, mroot, "-m", "u:1234:rw,g:555:r", "--", "f acl")
	write("odd\nname\xff")
	setfacl(t, mroot, "-m", "u:1234:r,m::r", "--", "odd\nname\xff")
	mkdir("d")
	setfacl(t, mroot, "-d", "-m", "u:1234:rwx,g:555:rx", "d")
	setfacl(t, mroot, "-m", "u:4321:rx", "d")
	write("d/inherits")
	mkdir("d/sub") // a default and an access ACL, both inherited
	write("d/sub/deep")
	write("d/none")
	setfacl(t, mroot, "-b", "d/none") // its inherited ACL removed
	write("plain")
	mkfifo := func(rel string) {
		t.Helper()
		if err := unix.Mkfifo(filepath.Join(mroot, rel), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	mkfifo("d/fifo")                       // inherits d's default ACL
	mkfifo("d/fifo bare")                  // inherits it too...
	setfacl(t, mroot, "-b", "d/fifo bare") // ...removed
	mkfifo("fifo acl")
	setfacl(t, mroot, "-m", "u:1234:r", "fifo acl")
	if err := os.Symlink("f acl", filepath.Join(mroot, "link")); err != nil {
		t.Fatal(err)
	}

	sl := testenv.StartSlave(t, sroot)
	m := newMaster(t, mroot, sl.Addr, nil)
	sum := runOnce(t, m)
	if len(sum.Batch.Partial) > 0 {
		t.Fatalf("partial: %q", sum.Batch.Partial)
	}
	requireSameACLs(t, mroot, sroot)
	testenv.RequireEqual(t, mroot, sroot)

	// Live: a new session on the same state, changes made while it runs.
	live := startLive(t, m)
	waitSynced(t, m, time.Minute)
	setfacl(t, mroot, "-m", "u:1234:r", "--", "f acl")                          // changed
	setfacl(t, mroot, "-x", "g:555", "--", "f acl")                             // an entry removed
	setfacl(t, mroot, "-b", "--", "odd\nname\xff")                              // all removed
	setfacl(t, mroot, "-m", "u:1234:rw", "plain")                               // added
	setfacl(t, mroot, "-k", "d/sub")                                            // the default removed
	if err := os.Chmod(filepath.Join(mroot, "d/inherits"), 0o600); err != nil { // the mask follows
		t.Fatal(err)
	}
	setfacl(t, mroot, "-m", "g:555:rw", "fifo acl") // a FIFO's ACL changed
	mkfifo("d/new fifo")                            // made live where d's default applies
	mkdir("d/new")                                  // inherits d's default
	write("d/new/file")                             // and so does this, from d/new's
	if err := os.WriteFile(filepath.Join(mroot, "d/none"), []byte("new data, staged in d on the slave"), 0o644); err != nil {
		t.Fatal(err) // its new copy must not keep the default it inherits there
	}
	write("d/none2")                   // inherits d's default on both trees...
	setfacl(t, mroot, "-b", "d/none2") // ...removed on the master only
	write("d/late")                    // then its data changes, its ACL kept
	setfacl(t, mroot, "-m", "u:99:r", "d/late")
	write("d/late")
	waitSynced(t, m, time.Minute)
	if err := live.stop(); err != nil {
		t.Fatal(err)
	}
	requireSameACLs(t, mroot, sroot)
	testenv.RequireEqual(t, mroot, sroot)
}

// TestACLsNonRoot: an unprivileged master and slave replicate the ACLs of
// the files they own (an owner may set any ids in them); run as root, the
// test re-runs itself as nobody.
func TestACLsNonRoot(t *testing.T) {
	aclTools(t)
	if os.Geteuid() == 0 {
		testenv.RunAsNobody(t, "TestACLsNonRoot")
		return
	}
	mroot, sroot := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(mroot, "f"), []byte("f"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(mroot, "d"), 0o750); err != nil {
		t.Fatal(err)
	}
	setfacl(t, mroot, "-m", "u:1234:rw,g:555:r", "f")
	setfacl(t, mroot, "-d", "-m", "u:1234:rwx", "d")
	if err := os.WriteFile(filepath.Join(mroot, "d", "child"), []byte("c"), 0o644); err != nil {
		t.Fatal(err)
	}
	sl := testenv.StartSlave(t, sroot)
	m := newMaster(t, mroot, sl.Addr, nil)
	if sum := runOnce(t, m); len(sum.Batch.Partial) > 0 {
		t.Fatalf("partial: %q", sum.Batch.Partial)
	}
	requireSameACLs(t, mroot, sroot)
}
