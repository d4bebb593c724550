package gfidx

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/georep/georep/internal/gfid"
)

// filledIndex writes an index of n links under one parent and closes it;
// it returns the file's path and the gfids.
func filledIndex(t *testing.T, n int) (string, []gfid.GFID) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gfid.db")
	ix, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	gs := make([]gfid.GFID, n)
	parent := newGFID(t)
	update(t, ix, func(tx *Tx) error {
		for i := range gs {
			gs[i] = newGFID(t)
			if err := tx.AddLink(gs[i], Link{Parent: parent, Name: fmt.Sprintf("name-%05d", i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	return p, gs
}

// readAll reads every link of gs; it must not panic, whatever the file holds.
func readAll(ix *Index, gs []gfid.GFID) error {
	return ix.View(func(tx *Tx) error {
		for _, g := range gs {
			tx.Links(g)
		}
		return nil
	})
}

// TestIssue17GarbagePage: 4 KiB of garbage anywhere in gfid.db (the
// independent test's damage) is an error on Open or on use, never a panic;
// on Open it is ErrCorrupt or another error, which the owners answer by
// rebuilding the index.
func TestIssue17GarbagePage(t *testing.T) {
	p, gs := filledIndex(t, 3000)
	good, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	refused, corrupt := 0, 0
	rng := rand.New(rand.NewPCG(17, 4))
	for i := 0; i < 3*len(good)/page; i++ {
		off := (i % (len(good) / page)) * page
		garbage := bytes.Repeat([]byte{0xa5, 0x5a, 0x13, 0x37}, page/4)
		switch i / (len(good) / page) {
		case 1:
			for j := range garbage {
				garbage[j] = byte(rng.Uint32())
			}
		case 2:
			clear(garbage) // a page of zeros (a hole, a lost write)
		}
		b := append([]byte(nil), good...)
		copy(b[off:], garbage)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		ix, err := Open(p)
		if err != nil {
			refused++
			if errors.Is(err, ErrCorrupt) {
				corrupt++
			}
			continue
		}
		if err := readAll(ix, gs); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Errorf("page at %d: reading: %v, want ErrCorrupt", off, err)
		}
		ix.Close()
	}
	t.Logf("%d pages, 3 patterns: %d refused at Open (%d as ErrCorrupt)", len(good)/page, refused, corrupt)
	if corrupt == 0 {
		t.Errorf("no damaged page was found by Open's check")
	}
}

// TestIssue17DamagedWhileOpen: pages overwritten under an open index (it
// maps the file) make its calls fail with ErrCorrupt, not panic.
func TestIssue17DamagedWhileOpen(t *testing.T) {
	p, gs := filledIndex(t, 3000)
	ix, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ix.Close() }()
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	garbage := bytes.Repeat([]byte{0xff}, 4096)
	for off := int64(2 * 4096); off+4096 <= st.Size(); off += 4096 {
		if _, err := f.WriteAt(garbage, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	err = readAll(ix, gs)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("reading a damaged index: %v, want ErrCorrupt", err)
	}
	err = ix.Update(func(tx *Tx) error { return tx.AddLink(gs[0], Link{Parent: gs[1], Name: "x"}) })
	if err != nil && !errors.Is(err, ErrCorrupt) {
		t.Fatalf("writing a damaged index: %v, want ErrCorrupt or nil", err)
	}
}
