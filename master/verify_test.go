package master_test

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/digest"
	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/testtree"
	"github.com/georep/georep/master"
)

func verify(t *testing.T, mroot, addr string) *master.VerifyResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := master.Verify(ctx, master.VerifyConfig{Root: mroot, Slave: addr, Insecure: true, Logger: testenv.Logger(t, "verify")})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return res
}

func diffList(diffs []digest.Diff) []string {
	var out []string
	for _, d := range diffs {
		out = append(out, d.Kind+" "+d.Path)
	}
	sort.Strings(out)
	return out
}

// TestVerifyFindsAndRepairs: after a one-shot, verify finds the trees
// equal, having listed no directory; then changes made on the slave behind
// georep's back — content rewritten with the size and mtime kept, a mode
// flipped, an xattr dropped, an entry added and one removed, a hard link
// broken, a symlink retargeted — are found, exactly those, each with its
// kind; the repair (a one-shot comparing those files by content) sends
// them, and verify finds the trees equal again.
func TestVerifyFindsAndRepairs(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	if err := testtree.Build(mroot, testtree.Options{BigFileSize: 1 << 20, Seed: 41}); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(mroot, "v/data"), []byte("the master's bytes, 32 of them.."))
	write(t, filepath.Join(mroot, "v/mode"), []byte("m"))
	write(t, filepath.Join(mroot, "v/xattr"), []byte("x"))
	write(t, filepath.Join(mroot, "v/gone"), []byte("g"))
	write(t, filepath.Join(mroot, "v/sub/linked"), []byte("l"))
	if err := os.Link(filepath.Join(mroot, "v/sub/linked"), filepath.Join(mroot, "v/link2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("data", filepath.Join(mroot, "v/sym")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(filepath.Join(mroot, "v/xattr"), "user.note", []byte("kept"), 0); err != nil {
		t.Skipf("no user xattrs here: %v", err)
	}
	sl := testenv.StartSlave(t, sroot)
	m := newMaster(t, mroot, sl.Addr, nil)
	runOnce(t, m)
	m.Close()

	res := verify(t, mroot, sl.Addr)
	if len(res.Diffs) != 0 || res.Dirs != 0 {
		t.Fatalf("after a one-shot: %v (%d directories listed)", diffList(res.Diffs), res.Dirs)
	}
	if res.Files == 0 || res.SlaveFiles != res.Files {
		t.Errorf("hashed %d files here, %d on the slave", res.Files, res.SlaveFiles)
	}
	t.Logf("unchanged: %d files (%d bytes) hashed each side, %d bytes on the wire", res.Files, res.Bytes, res.WireBytes)
	if res.WireBytes > 1024 {
		t.Errorf("an unchanged tree cost %d bytes on the wire", res.WireBytes)
	}

	// Behind georep's back, on the slave.
	s := func(rel string) string { return filepath.Join(sroot, rel) }
	var st unix.Stat_t
	unix.Lstat(s("v/data"), &st)
	os.WriteFile(s("v/data"), []byte("THE MASTER'S BYTES, 32 OF THEM.."), 0o644)
	unix.UtimesNano(s("v/data"), []unix.Timespec{st.Atim, st.Mtim})
	os.Chmod(s("v/mode"), 0o600)
	unix.Lremovexattr(s("v/xattr"), "user.note")
	os.WriteFile(s("v/extra"), []byte("only on the slave"), 0o644)
	os.Remove(s("v/gone"))
	os.Remove(s("v/link2"))
	os.WriteFile(s("v/link2"), []byte("l"), 0o644) // same content, no longer a link
	os.Remove(s("v/sym"))
	os.Symlink("elsewhere", s("v/sym"))

	res = verify(t, mroot, sl.Addr)
	got := strings.Join(diffList(res.Diffs), "\n")
	want := strings.Join([]string{
		"content v/data", "extra v/extra", "hardlink v/link2", "hardlink v/sub/linked",
		"metadata v/link2", "metadata v/mode", "metadata v/sym", "metadata v/xattr", "missing v/gone",
	}, "\n")
	if got != want {
		t.Fatalf("differences found:\n%s\nwant:\n%s", got, want)
	}
	t.Logf("with %d differences: %d directories listed, %d bytes on the wire", len(res.Diffs), res.Dirs, res.WireBytes)

	// The repair: a one-shot comparing the differing files by content.
	paths := map[string]bool{}
	for _, d := range res.Diffs {
		paths[d.Path] = true
	}
	m = newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.ComparePaths = paths })
	runOnce(t, m)
	if res := verify(t, mroot, sl.Addr); len(res.Diffs) != 0 {
		t.Fatalf("after the repair: %v", diffList(res.Diffs))
	}
	testenv.RequireEqual(t, mroot, sroot)
}
