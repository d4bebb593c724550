package master_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/master"
)

// Scenarios the churn found, replayed one by one.
func TestLiveScenarios(t *testing.T) {
	type step func(root string) error
	mk := func(p string) step { return func(r string) error { return os.MkdirAll(filepath.Join(r, p), 0o755) } }
	wr := func(p, data string) step {
		return func(r string) error { return os.WriteFile(filepath.Join(r, p), []byte(data), 0o644) }
	}
	mv := func(a, b string) step {
		return func(r string) error { return unix.Rename(filepath.Join(r, a), filepath.Join(r, b)) }
	}
	rm := func(p string) step { return func(r string) error { return os.Remove(filepath.Join(r, p)) } }
	ln := func(a, b string) step {
		return func(r string) error { return os.Link(filepath.Join(r, a), filepath.Join(r, b)) }
	}
	for _, tc := range []struct {
		name  string
		setup []step
		steps []step
	}{
		{"dir over empty dir then unlink inside", []step{mk("a/src/sub"), wr("a/src/sub/f1", "1"), wr("a/src/sub/f2", "2"), mk("b/dst")},
			[]step{mv("a/src", "b/dst"), rm("b/dst/sub/f1"), mv("b/dst/sub/f2", "f2moved")}},
		{"create then move dir", nil, []step{mk("n/x"), wr("n/x/f", "data"), mv("n", "m"), wr("m/x/g", "g")}},
		{"hardlink then rename over", []step{wr("p", "p"), wr("q", "q")}, []step{ln("p", "h"), mv("q", "h"), ln("h", "p2"), rm("p")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mroot, sroot := t.TempDir(), t.TempDir()
			for _, s := range tc.setup {
				if err := s(mroot); err != nil {
					t.Fatal(err)
				}
			}
			sl := testenv.StartSlave(t, sroot)
			m := newMaster(t, mroot, sl.Addr, nil)
			startLive(t, m)
			waitSynced(t, m, time.Minute)
			for _, s := range tc.steps {
				if err := s(mroot); err != nil {
					t.Fatal(err)
				}
			}
			waitSynced(t, m, time.Minute)
			testenv.RequireEqual(t, mroot, sroot)
		})
	}
}

// TestLiveIgnoreDeletes: with IgnoreDeletes a live session keeps on the
// slave what the master removed — also through the reconciliation of the
// directories where the removals happened — and still replicates
// creations and renames there.
func TestLiveIgnoreDeletes(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	for _, p := range []string{"d/sub", "e"} {
		if err := os.MkdirAll(filepath.Join(mroot, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"d/f", "d/sub/g", "e/h"} {
		if err := os.WriteFile(filepath.Join(mroot, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sl := testenv.StartSlave(t, sroot)
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.IgnoreDeletes = true })
	startLive(t, m)
	waitSynced(t, m, time.Minute)
	if err := os.Remove(filepath.Join(mroot, "d/f")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(mroot, "d/sub")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mroot, "d/new"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Rename(filepath.Join(mroot, "e/h"), filepath.Join(mroot, "d/h")); err != nil {
		t.Fatal(err)
	}
	waitSynced(t, m, time.Minute)
	for _, p := range []string{"d/f", "d/sub/g", "d/new", "d/h"} {
		if _, err := os.Lstat(filepath.Join(sroot, p)); err != nil {
			t.Errorf("slave lacks %s: %v", p, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(sroot, "e/h")); !os.IsNotExist(err) {
		t.Errorf("the rename was not replicated: e/h still on the slave (%v)", err)
	}
}
