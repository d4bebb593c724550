package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/treecmp"
)

const (
	nobody     = 65534
	extraGroup = 4242 // a supplementary group of the unprivileged slave
)

// TestProcessesUnprivilegedSlave runs the slave as nobody (with one
// supplementary group) and a master as root: everything replicates (the
// symlinks and FIFOs the slave cannot mark included), owners are applied
// where an unprivileged process may (its own uid, its groups), and every
// owner it may not apply is reported, on every run, not dropped.
func TestProcessesUnprivilegedSlave(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the slave as another user and to make a tree of several owners")
	}
	base, mroot, sroot, sstate := unprivilegedDirs(t)
	mk := []entrySpec{
		{"root-file", file("root"), 0, 0},
		{"foreign-file", file("foreign"), 12345, 54321},
		{"nobody-file", file("nobody"), nobody, nobody},
		{"nobody-extra-group", file("group"), nobody, extraGroup},
		{"setuid-root", file("suid"), 0, 0},
		{"dir", func(p string) error { return os.Mkdir(p, 0o750) }, 12345, 54321},
		{"dir/inner", file("inner"), nobody, extraGroup},
		{"dir/hardlink", func(p string) error { return os.Link(filepath.Join(mroot, "foreign-file"), p) }, 12345, 54321},
		{"symlink-foreign", func(p string) error { return os.Symlink("foreign-file", p) }, 12345, 54321},
		{"symlink-nobody", func(p string) error { return os.Symlink("dir/inner", p) }, nobody, nobody},
		{"fifo", func(p string) error { return unix.Mkfifo(p, 0o640) }, 0, extraGroup},
		{"readonly", func(p string) error { return os.Mkdir(p, 0o755) }, nobody, nobody},
		{"readonly/f", file("read-only"), nobody, nobody},
	}
	makeEntries(t, mroot, mk)
	for p, mode := range map[string]uint32{"setuid-root": 0o4755, "readonly/f": 0o400, "readonly": 0o555} {
		if err := unix.Chmod(filepath.Join(mroot, p), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Setxattr(filepath.Join(mroot, "nobody-file"), "user.k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(mroot, "root-file"), "trusted.k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}

	addr := startSlaveProcessAs(t, &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{extraGroup}}, nil,
		sroot, sstate, "--insecure")
	args := []string{"--root", mroot, "--slave", addr, "--state-dir", filepath.Join(base, "master-state"), "--oneshot", "--insecure"}
	partialRE := regexp.MustCompile(`partial\s+(\d+) ops applied in part`)
	var reported []int
	for run := 1; run <= 2; run++ {
		n, out, errs := runOnceCounting(t, run, partialRE, args...)
		reported = append(reported, n)
		for _, want := range []string{"the slave runs unprivileged", "owner 12345:54321", "owner 0:0", "not applied"} {
			if !strings.Contains(errs, want) {
				t.Errorf("run %d: the log lacks %q", run, want)
			}
		}
		if run == 2 && !strings.Contains(out, "(0 bytes)") {
			t.Errorf("second run sent data:\n%s", out)
		}
	}
	t.Logf("reported as applied in part: %v", reported)
	for i, n := range reported {
		// The inodes whose owner nobody may not give: 6 of mk (the
		// hardlink shares one), and the root.
		if n < 7 {
			t.Errorf("run %d reported %d ops applied in part, want at least one per owner not applied", i+1, n)
		}
	}

	compare(t, mroot, sroot, mk)

	// The symlinks and FIFOs the slave could not mark are known by the
	// names it gave them: moved and removed on the master, they are
	// moved and removed on the slave, not taken for conflicts.
	for _, mv := range [][2]string{{"symlink-foreign", "dir/symlink-moved"}, {"fifo", "dir/fifo-moved"}} {
		if err := os.Rename(filepath.Join(mroot, mv[0]), filepath.Join(mroot, mv[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(mroot, "symlink-nobody")); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runMasterProcess(t, args...)
	if code != 0 {
		t.Fatalf("run after moves: master exited %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if !strings.Contains(out, "0 conflicts resolved") {
		t.Errorf("moves of unmarked entries were taken for conflicts:\n%s", out)
	}
	compare(t, mroot, sroot, nil)
}

// runOnceCounting runs a one-shot master (run numbers it in messages),
// requires it to succeed and its summary to have a line that re matches,
// and returns the count that re's first group finds there, and the
// master's stdout and stderr.
func runOnceCounting(t *testing.T, run int, re *regexp.Regexp, args ...string) (n int, out, errs string) {
	t.Helper()
	code, out, errs := runMasterProcess(t, args...)
	if code != 0 {
		t.Fatalf("run %d: master exited %d\nstdout: %s\nstderr: %s", run, code, out, errs)
	}
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("run %d: the summary has no line matching %q:\n%s", run, re, out)
	}
	n, _ = strconv.Atoi(m[1])
	return n, out, errs
}

// unprivilegedDirs makes a base directory for a slave that runs as nobody
// (everything nobody needs must be reachable by nobody: not t.TempDir),
// and in it a master root (root's), a slave root and a slave state
// directory (nobody's).
func unprivilegedDirs(t *testing.T) (base, mroot, sroot, sstate string) {
	t.Helper()
	base, err := os.MkdirTemp("", "georep-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(georepBin), 0o755); err != nil {
		t.Fatal(err)
	}
	mroot, sroot, sstate = filepath.Join(base, "master"), filepath.Join(base, "slave"), filepath.Join(base, "slave-state")
	for _, d := range []string{mroot, sroot, sstate} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{sroot, sstate} {
		if err := os.Chown(d, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	return base, mroot, sroot, sstate
}

// makeEntries makes the entries of mk beneath root, in order, with their
// owners.
func makeEntries(t *testing.T, root string, mk []entrySpec) {
	t.Helper()
	for _, m := range mk {
		p := filepath.Join(root, m.path)
		if err := m.make(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, m.uid, m.gid); err != nil {
			t.Fatal(err)
		}
	}
}

// compare requires the trees equal but for owners and trusted.* xattrs,
// and (for the entries of mk) each owner that differs to be one nobody may
// not give.
func compare(t *testing.T, mroot, sroot string, mk []entrySpec) {
	t.Helper()
	opts := testenv.CompareOptions
	opts.IgnoreXattrPrefixes = append(opts.IgnoreXattrPrefixes, "trusted.")
	opts.SkipRootMeta = true
	diffs, err := treecmp.Compare(mroot, sroot, opts)
	if err != nil {
		t.Fatal(err)
	}
	ownerDiffs := 0
	for _, d := range diffs {
		if !strings.HasPrefix(d.What, "owner:") {
			t.Errorf("replica differs: %s", d)
			continue
		}
		ownerDiffs++
	}
	for _, m := range mk {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(sroot, m.path), &st); err != nil {
			t.Fatal(err)
		}
		permitted := m.uid == nobody && (m.gid == nobody || m.gid == extraGroup)
		switch {
		case permitted && (int(st.Uid) != m.uid || int(st.Gid) != m.gid):
			t.Errorf("%s: owner %d:%d on the slave, want %d:%d (nobody may give it)", m.path, st.Uid, st.Gid, m.uid, m.gid)
		case !permitted && int(st.Uid) != nobody:
			t.Errorf("%s: owner %d:%d on the slave", m.path, st.Uid, st.Gid)
		}
	}
	if ownerDiffs == 0 {
		t.Fatal("no owner differs: the test did not exercise what nobody may not do")
	}
}

// entrySpec is an entry of the master tree: how to make it, and its owner.
type entrySpec struct {
	path     string
	make     func(p string) error
	uid, gid int
}

func file(content string) func(p string) error {
	return func(p string) error { return os.WriteFile(p, []byte(content+"\n"), 0o644) }
}
