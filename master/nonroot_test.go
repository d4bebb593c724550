package master_test

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/testtree"
	"github.com/georep/georep/internal/treecmp"
	"github.com/georep/georep/master"
)

const nobody = 65534

// TestNonRootOneShot replicates as an unprivileged user: gfids and marks
// live in user.* xattrs, and inodes that cannot carry one (symlinks, FIFOs,
// files the user may not write) are named by their derived gfid. Run as
// root, the test re-runs itself as nobody.
func TestNonRootOneShot(t *testing.T) {
	if os.Geteuid() == 0 {
		runAsNobody(t, "TestNonRootOneShot")
		return
	}
	mroot, sroot := t.TempDir(), t.TempDir()
	if err := testtree.Build(mroot, testtree.Options{BigFileSize: 1 << 20, Seed: 11}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { makeWritable(mroot); makeWritable(sroot) })
	sl := testenv.StartSlave(t, sroot)
	state := filepath.Join(t.TempDir(), "state")
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir = state })
	runOnce(t, m)
	testenv.RequireEqual(t, mroot, sroot)

	before, err := treecmp.Snapshot(sroot, testenv.CompareOptions)
	if err != nil {
		t.Fatal(err)
	}
	sum := runOnce(t, m)
	after, err := treecmp.Snapshot(sroot, testenv.CompareOptions)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range treecmp.Changed(before, after) {
		if p != treecmp.RootPath {
			t.Errorf("unprivileged rerun rewrote %q", p)
		}
	}
	if sum.Batch.BytesSent != 0 || sum.Batch.EntryOps != 0 || sum.Batch.MetaOps != 0 {
		t.Errorf("unprivileged rerun did work: %+v", sum.Batch)
	}

	if err := testtree.Mutate(mroot, testtree.Options{Seed: 11}); err != nil {
		t.Fatal(err)
	}
	runOnce(t, m)
	testenv.RequireEqual(t, mroot, sroot)
}

// runAsNobody re-runs test name of this test binary as uid/gid nobody in a
// temp dir nobody owns.
func runAsNobody(t *testing.T, name string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "georep-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { makeWritable(dir); os.RemoveAll(dir) })
	// The test binary may sit in a directory only root can enter.
	bin := filepath.Join(dir, "test.bin")
	if err := copyFile(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, bin, tmp} {
		if err := os.Chown(p, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-test.run=^"+name+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	t.Logf("as nobody:\n%s", out)
	if err != nil {
		t.Fatalf("the test failed as nobody: %v", err)
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// makeWritable undoes read-only directories so that the tree can be removed.
func makeWritable(root string) {
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
}
