package master

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/testenv"
)

// indexedTree maps every path reachable from the root through the index
// to the gfid the index gives it.
func indexedTree(t *testing.T, ix *gfidx.Index) map[string]gfid.GFID {
	t.Helper()
	out := map[string]gfid.GFID{}
	err := ix.View(func(tx *gfidx.Tx) error {
		var walk func(g gfid.GFID, path string, depth int) error
		walk = func(g gfid.GFID, path string, depth int) error {
			if depth > 64 {
				return fmt.Errorf("index cycle below %q", path)
			}
			for _, c := range tx.Children(g) {
				p := filepath.Join(path, c.Name)
				out[p] = c.GFID
				if err := walk(c.GFID, p, depth+1); err != nil {
					return err
				}
			}
			return nil
		}
		return walk(gfid.Root, "", 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// oneShotMaster starts a slave on sroot and a master of mroot to it (closed
// when t ends); once runs the master once, failing t if it fails.
func oneShotMaster(t *testing.T, mroot, sroot string) (m *Master, once func()) {
	t.Helper()
	sl := testenv.StartSlave(t, sroot)
	m, err := New(Config{Root: mroot, Slave: sl.Addr, StateDir: filepath.Join(t.TempDir(), "state"),
		Logger: testenv.Logger(t, "master"), Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := m.RunOnce(ctx); err != nil {
			t.Fatalf("RunOnce: %v", err)
		}
	}
}

// TestKeptIndexMatchesRebuild: a one-shot crawl keeps the index of the last
// one (xsync.keep) instead of emptying it; after removals, renames and
// replacements it must hold exactly what an index rebuilt from the tree
// holds, and nothing of what went.
func TestKeptIndexMatchesRebuild(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	write := func(rel, data string) {
		t.Helper()
		p := filepath.Join(mroot, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 20; i++ {
		write(fmt.Sprintf("a/f%d", i), "a")
		write(fmt.Sprintf("a/sub/deeper/g%d", i), "g")
	}
	write("b/x", "x")
	write("c/y", "y")
	m, once := oneShotMaster(t, mroot, sroot)
	once()
	before := indexedTree(t, m.tree.Idx)
	if len(before) != 20+1+1+20+1+1+1+1+1 {
		t.Fatalf("first crawl indexed %d paths", len(before))
	}

	// A removed subtree, a renamed directory, a file replaced by another
	// inode (a new gfid at the same name), a new file.
	gone := []gfid.GFID{before["a/sub"], before["a/sub/deeper"], before["a/sub/deeper/g3"]}
	if err := os.RemoveAll(filepath.Join(mroot, "a", "sub")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mroot, "b"), filepath.Join(mroot, "c", "b2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mroot, "a", "f1")); err != nil {
		t.Fatal(err)
	}
	write("a/f1", "new inode")
	write("c/new", "n")
	once()
	testenv.RequireEqual(t, mroot, sroot)

	kept := indexedTree(t, m.tree.Idx)
	fresh, err := gfidx.Open(filepath.Join(t.TempDir(), "rebuilt.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if _, _, err := fresh.Rebuild(mroot, m.tree.NS, nil, nil); err != nil {
		t.Fatal(err)
	}
	want := indexedTree(t, fresh)
	for p, g := range want {
		if kept[p] != g {
			t.Errorf("kept index: %q is %v, rebuilt: %v", p, kept[p], g)
		}
	}
	for p, g := range kept {
		if _, ok := want[p]; !ok {
			t.Errorf("kept index still has %q (%v)", p, g)
		}
	}
	if kept["c/b2"] != before["b"] {
		t.Errorf("the renamed directory lost its gfid: %v, was %v", kept["c/b2"], before["b"])
	}
	if kept["a/f1"] == before["a/f1"] {
		t.Errorf("the replaced file kept the old inode's gfid %v", kept["a/f1"])
	}
	m.tree.Idx.View(func(tx *gfidx.Tx) error {
		for _, g := range append(gone, before["a/f1"]) {
			if l := tx.Links(g); len(l) > 0 {
				t.Errorf("gfid %v of a removed entry still has links %v", g, l)
			}
			if c := tx.Children(g); len(c) > 0 {
				t.Errorf("gfid %v of a removed directory still has children %v", g, c)
			}
		}
		return nil
	})
}

// TestKeptIndexSplitHardlinkGroup: a hardlink group indexed by the last
// crawl, one of whose names is then replaced by a copy that carries the
// group's gfid (cp -a --remove-destination as root). The names are in the
// kept index with that gfid, yet the copy is another inode: it must not
// stay a hardlink of the group on the slave.
func TestKeptIndexSplitHardlinkGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("copying trusted.* xattrs needs root")
	}
	for _, names := range [][]string{{"a", "b"}, {"a", "b", "c"}} {
		t.Run(fmt.Sprint(len(names)), func(t *testing.T) {
			mroot, sroot := t.TempDir(), t.TempDir()
			first := filepath.Join(mroot, names[0])
			if err := os.WriteFile(first, []byte("group"), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, n := range names[1:] {
				if err := os.Link(first, filepath.Join(mroot, n)); err != nil {
					t.Fatal(err)
				}
			}
			m, once := oneShotMaster(t, mroot, sroot)
			once()
			g, err := m.tree.NS.Get(first)
			if err != nil {
				t.Fatal(err)
			}
			// Replace the second name by a copy carrying the same gfid.
			b := filepath.Join(mroot, names[1])
			if err := os.Remove(b); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(b, []byte("group"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := m.tree.NS.Set(b, g); err != nil {
				t.Fatal(err)
			}
			once()
			testenv.RequireEqual(t, mroot, sroot) // hardlink groups included
		})
	}
}
