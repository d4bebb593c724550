package mtree_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/mtree"
	"github.com/georep/georep/internal/testenv"
)

// TestOpenDirStaleLinkToUnindexedParent pins the fault-test failure of
// f880ff9 from the opener's side: directory d moved out of p into q, and p
// was then removed, while the master was down. The index still holds d's
// old link (p, "d") first, and p itself has no link left, so the path
// through first links cannot even be built. OpenDir must still find d
// through its other link instead of calling it gone (its files then looked
// vanished and were never sent).
func TestOpenDirStaleLinkToUnindexedParent(t *testing.T) {
	dir := t.TempDir()
	ns := gfid.DefaultNamespace()
	// p's gfid sorts before q's: d's link under p is its first.
	p := testenv.MustGFID(t, "00000000-0000-4000-8000-000000000001")
	q := testenv.MustGFID(t, "ffffffff-0000-4000-8000-000000000002")
	d := testenv.MustGFID(t, "11111111-0000-4000-8000-000000000003")
	if err := os.MkdirAll(filepath.Join(dir, "q", "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for path, g := range map[string]gfid.GFID{"q": q, "q/d": d} {
		if err := ns.Set(filepath.Join(dir, path), g); err != nil {
			t.Skipf("no gfid xattrs here: %v", err)
		}
	}
	root, err := beneath.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	idx, err := gfidx.Open(filepath.Join(t.TempDir(), "index"))
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	if err := idx.Update(func(tx *gfidx.Tx) error {
		return errors.Join(
			tx.AddLink(q, gfidx.Link{Parent: gfid.Root, Name: "q"}),
			tx.AddLink(d, gfidx.Link{Parent: p, Name: "d"}),
			tx.AddLink(d, gfidx.Link{Parent: q, Name: "d"}))
	}); err != nil {
		t.Fatal(err)
	}
	tr := &mtree.Tree{Root: root, NS: ns, Idx: idx}
	if err := idx.View(func(tx *gfidx.Tx) error {
		if links := tx.Links(d); len(links) != 2 || links[0].Parent != p {
			t.Fatalf("d's links %v: the stale one must come first", links)
		}
		fd, err := tr.OpenDir(tx, d)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if got, err := ns.FGet(fd); err != nil || got != d {
			t.Errorf("opened %v (%v), want d", got, err)
		}
		// A gfid with no link at all is gone, as before.
		if _, err := tr.OpenDir(tx, p); !errors.Is(err, mtree.ErrGone) {
			t.Errorf("OpenDir of unindexed p: %v, want ErrGone", err)
		}
		return nil
	}); err != nil {
		t.Fatalf("OpenDir(d): %v", err)
	}
}
