package mtree

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/syncer"
)

// TestOpenAtHint: the syncer opens a file at the link its entry op named
// (in a cached directory descriptor), and falls back to the index when
// that link no longer holds the file: never the wrong file, never a hang
// on a FIFO that took the name.
func TestOpenAtHint(t *testing.T) {
	mroot := t.TempDir()
	for _, d := range []string{"a", "b"} {
		if err := os.Mkdir(filepath.Join(mroot, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for rel, data := range map[string]string{"a/f": "file f", "a/g": "file g", "b/h": "file h"} {
		if err := os.WriteFile(filepath.Join(mroot, rel), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	src, idx := indexTree(t, mroot)
	a, b, f, g, h := idx["a"], idx["b"], idx["a/f"], idx["a/g"], idx["b/h"]
	if a == gfid.Zero || f == gfid.Zero || g == gfid.Zero || h == gfid.Zero {
		t.Fatalf("index: %v", idx)
	}
	open := func(want string, g gfid.GFID, at syncer.Link) {
		t.Helper()
		o, err := src.Open(g, at)
		if err != nil {
			t.Fatalf("Open(%v, %v): %v", g, at, err)
		}
		defer o.File.Close()
		got, err := io.ReadAll(io.NewSectionReader(o.File, 0, o.Stat.Size))
		if err != nil || string(got) != want {
			t.Fatalf("Open(%v, %v) read %q, %v; want %q", g, at, got, err, want)
		}
	}

	// Right hints, and no hint.
	open("file f", f, syncer.Link{Parent: a, Name: "f"})
	open("file g", g, syncer.Link{Parent: a, Name: "g"})
	open("file h", h, syncer.Link{})
	if _, ok := src.dirs.byG[a]; !ok {
		t.Error("the hinted directory is not cached")
	}
	if _, ok := src.dirs.byG[b]; ok {
		t.Error("a directory was cached without a hint")
	}

	// A hint naming another file: that file is not taken for g.
	open("file f", f, syncer.Link{Parent: a, Name: "g"})
	// A hint in an unknown directory, and in the wrong one.
	open("file f", f, syncer.Link{Parent: newGFID(t), Name: "f"})
	open("file h", h, syncer.Link{Parent: a, Name: "h"})

	// The file moved to another directory since its entry op: the cached
	// descriptor of its old directory does not find it; the index does.
	if err := os.Rename(filepath.Join(mroot, "a", "f"), filepath.Join(mroot, "b", "f2")); err != nil {
		t.Fatal(err)
	}
	if err := src.Idx.Update(func(tx *gfidx.Tx) error {
		if err := tx.RemoveLink(f, gfidx.Link{Parent: a, Name: "f"}); err != nil {
			return err
		}
		return tx.AddLink(f, gfidx.Link{Parent: b, Name: "f2"})
	}); err != nil {
		t.Fatal(err)
	}
	open("file f", f, syncer.Link{Parent: a, Name: "f"})

	// A FIFO took the hinted name: no hang, and g (gone) is reported gone.
	if err := os.Remove(filepath.Join(mroot, "a", "g")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(mroot, "a", "g"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		o, err := src.Open(g, syncer.Link{Parent: a, Name: "g"})
		if err == nil {
			o.File.Close()
			err = errors.New("opened")
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open of a file replaced by a FIFO: %v, want gone", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Open hung on a FIFO at the hinted name")
	}
}

// TestDirRefsEvictInUse: a directory evicted from the cache while a
// worker opens a file in it stays open until the worker gives it back.
func TestDirRefsEvictInUse(t *testing.T) {
	dir := t.TempDir()
	var c dirRefs
	opened := 0
	open := func() (int, error) {
		opened++
		return unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	first := newGFID(t)
	d := c.get(first, open)
	if d == nil {
		t.Fatal("get failed")
	}
	if again := c.get(first, open); again != d || opened != 1 {
		t.Fatalf("second get: %p (want %p), %d opens", again, d, opened)
	}
	c.put(d)
	var fds []int
	for i := 0; i < dirRefsSize; i++ {
		e := c.get(newGFID(t), open)
		fds = append(fds, e.fd)
		c.put(e)
	}
	if _, ok := c.byG[first]; ok {
		t.Fatal("the oldest entry was not evicted")
	}
	// Evicted with one reference left: still open.
	if _, err := unix.FcntlInt(uintptr(d.fd), unix.F_GETFD, 0); err != nil {
		t.Fatalf("evicted in-use descriptor closed early: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Fatalf("evicted in-use descriptor: %v", err)
	}
	c.put(d)
	if _, err := unix.FcntlInt(uintptr(d.fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Errorf("evicted descriptor still open after its last put: %v", err)
	}
	c.reset()
	for _, fd := range fds {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
			t.Errorf("descriptor %d still open after reset: %v", fd, err)
		}
	}
	if c.get(newGFID(t), func() (int, error) { return -1, unix.ENOENT }) != nil {
		t.Error("get returned an entry for a directory that failed to open")
	}
}

func newGFID(t testing.TB) gfid.GFID { return testenv.NewGFID(t) }

// indexTree gives every entry under root a gfid and indexes it, as a
// crawl would, and returns the tree's Source and the gfids by path.
func indexTree(t *testing.T, root string) (*Source, map[string]gfid.GFID) {
	t.Helper()
	r, err := beneath.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	idx, err := gfidx.Open(filepath.Join(t.TempDir(), "gfid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idx.Close() })
	src := &Source{Tree: &Tree{Root: r, NS: gfid.DefaultNamespace(), Idx: idx}}
	t.Cleanup(src.ResetDirs)
	out := map[string]gfid.GFID{}
	var walk func(dirfd int, parent gfid.GFID, rel string)
	walk = func(dirfd int, parent gfid.GFID, rel string) {
		names, err := beneath.ReadNames(dirfd)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			st, err := beneath.Lstat(dirfd, n)
			if err != nil {
				t.Fatal(err)
			}
			g, _, err := src.EnsureGFID(dirfd, parent, n, &st)
			if err != nil {
				t.Fatal(err)
			}
			if err := idx.Update(func(tx *gfidx.Tx) error { return tx.AddLink(g, gfidx.Link{Parent: parent, Name: n}) }); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(rel, n)
			out[p] = g
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				fd, err := unix.Openat(dirfd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				walk(fd, g, p)
				unix.Close(fd)
			}
		}
	}
	walk(r.FD(), gfid.Root, "")
	return src, out
}

// TestOpenDirStaleLinkCycle: stale index links that form cycles, two per
// directory, made the search of a directory's links exponential (a live
// master spun at 100% for minutes in openDirByLinks, found by the soak).
// Now each directory is tried once per search.
func TestOpenDirStaleLinkCycle(t *testing.T) {
	src, _ := indexTree(t, t.TempDir())
	const n = 60
	gs := make([]gfid.GFID, n)
	for i := range gs {
		gs[i] = newGFID(t)
	}
	err := src.Idx.Update(func(tx *gfidx.Tx) error {
		for i, g := range gs {
			// Two stale links each, to the next two: a lattice that
			// loops back to the first.
			for k := 1; k <= 2; k++ {
				if err := tx.AddLink(g, gfidx.Link{Parent: gs[(i+k)%n], Name: fmt.Sprintf("n%d", k)}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- src.Idx.View(func(tx *gfidx.Tx) error {
			_, err := src.OpenDir(tx, gs[0])
			return err
		})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrGone) {
			t.Errorf("OpenDir through stale cyclic links: %v, want ErrGone", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OpenDir through stale cyclic links did not return within 10 s")
	}
}
