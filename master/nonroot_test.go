package master_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/testtree"
	"github.com/georep/georep/internal/treecmp"
	"github.com/georep/georep/master"
)

// TestNonRootOneShot replicates as an unprivileged user: gfids and marks
// live in user.* xattrs, and inodes that cannot carry one (symlinks, FIFOs,
// files the user may not write) are named by their derived gfid. Run as
// root, the test re-runs itself as nobody.
func TestNonRootOneShot(t *testing.T) {
	if os.Geteuid() == 0 {
		testenv.RunAsNobody(t, "TestNonRootOneShot")
		return
	}
	mroot, sroot := t.TempDir(), t.TempDir()
	if err := testtree.Build(mroot, testtree.Options{BigFileSize: 1 << 20, Seed: 11}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.MakeWritable(mroot); testenv.MakeWritable(sroot) })
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
