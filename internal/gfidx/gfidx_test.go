package gfidx

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
)

func newGFID(t *testing.T) gfid.GFID {
	t.Helper()
	g, err := gfid.New()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func openIndex(t *testing.T) (*Index, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gfid.db")
	ix, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix, path
}

func update(t *testing.T, ix *Index, fn func(*Tx) error) {
	t.Helper()
	if err := ix.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func links(t *testing.T, ix *Index, g gfid.GFID) []Link {
	t.Helper()
	var out []Link
	if err := ix.View(func(tx *Tx) error { out = tx.Links(g); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func path(t *testing.T, ix *Index, g gfid.GFID) (string, error) {
	t.Helper()
	var p string
	var perr error
	if err := ix.View(func(tx *Tx) error { p, perr = tx.Path(g); return nil }); err != nil {
		t.Fatal(err)
	}
	return p, perr
}

func TestLinks(t *testing.T) {
	ix, _ := openIndex(t)
	g, p1, p2 := newGFID(t), newGFID(t), newGFID(t)
	// A gfid that shares all but the last byte with g.
	near := g
	near[15]++
	l1 := Link{Parent: p1, Name: "a"}
	l2 := Link{Parent: p1, Name: "b with space\n\xff"}
	l3 := Link{Parent: p2, Name: "c"}
	update(t, ix, func(tx *Tx) error {
		for _, l := range []Link{l1, l2, l3, l1} { // l1 twice: harmless
			if err := tx.AddLink(g, l); err != nil {
				return err
			}
		}
		return tx.AddLink(near, Link{Parent: p1, Name: "near"})
	})
	got := links(t, ix, g)
	if len(got) != 3 {
		t.Fatalf("Links = %v, want 3", got)
	}
	// Key order: parent bytes, then name.
	seen := map[Link]bool{}
	for _, l := range got {
		seen[l] = true
	}
	if !seen[l1] || !seen[l2] || !seen[l3] {
		t.Fatalf("Links = %v", got)
	}
	if got2 := links(t, ix, g); !reflect.DeepEqual(got, got2) {
		t.Fatalf("Links order not stable: %v then %v", got, got2)
	}
	ix.View(func(tx *Tx) error {
		if !tx.HasLink(g, l2) || tx.HasLink(g, Link{Parent: p2, Name: "a"}) || tx.HasLink(near, l1) {
			t.Error("HasLink wrong")
		}
		return nil
	})
	update(t, ix, func(tx *Tx) error {
		if err := tx.RemoveLink(g, l2); err != nil {
			return err
		}
		return tx.RemoveLink(g, Link{Parent: p2, Name: "absent"}) // harmless
	})
	if got := links(t, ix, g); len(got) != 2 {
		t.Fatalf("after RemoveLink: %v", got)
	}
	update(t, ix, func(tx *Tx) error { return tx.RemoveAll(g) })
	if got := links(t, ix, g); len(got) != 0 {
		t.Fatalf("after RemoveAll: %v", got)
	}
	if got := links(t, ix, near); len(got) != 1 || got[0].Name != "near" {
		t.Fatalf("RemoveAll of g touched its neighbour: %v", got)
	}
	// An empty name is refused.
	if err := ix.Update(func(tx *Tx) error { return tx.AddLink(g, Link{Parent: p1}) }); err == nil {
		t.Fatal("AddLink with an empty name succeeded")
	}
	// A failed transaction commits nothing.
	boom := errors.New("boom")
	err := ix.Update(func(tx *Tx) error {
		if err := tx.AddLink(g, l1); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v", err)
	}
	if got := links(t, ix, g); len(got) != 0 {
		t.Fatalf("a rolled-back AddLink is visible: %v", got)
	}
}

func TestLinksOrder(t *testing.T) {
	ix, _ := openIndex(t)
	g := newGFID(t)
	pa := gfid.GFID{0: 1}
	pb := gfid.GFID{0: 2}
	update(t, ix, func(tx *Tx) error {
		for _, l := range []Link{{pb, "a"}, {pa, "z"}, {pa, "b"}, {pb, "0"}} {
			if err := tx.AddLink(g, l); err != nil {
				return err
			}
		}
		return nil
	})
	want := []Link{{pa, "b"}, {pa, "z"}, {pb, "0"}, {pb, "a"}}
	if got := links(t, ix, g); !reflect.DeepEqual(got, want) {
		t.Fatalf("Links = %v, want %v", got, want)
	}
}

func TestPath(t *testing.T) {
	ix, _ := openIndex(t)
	a, b, c, f := newGFID(t), newGFID(t), newGFID(t), newGFID(t)
	update(t, ix, func(tx *Tx) error {
		for _, x := range []struct {
			g gfid.GFID
			l Link
		}{
			{a, Link{gfid.Root, "a"}},
			{b, Link{a, "b b"}},
			{c, Link{b, "c"}},
			{f, Link{c, "file\n"}},
			{f, Link{gfid.Root, "zz-hardlink"}},
		} {
			if err := tx.AddLink(x.g, x.l); err != nil {
				return err
			}
		}
		return nil
	})
	if p, err := path(t, ix, gfid.Root); err != nil || p != "." {
		t.Fatalf("Path(Root) = %q, %v", p, err)
	}
	if p, err := path(t, ix, a); err != nil || p != "a" {
		t.Fatalf("Path(a) = %q, %v", p, err)
	}
	if p, err := path(t, ix, c); err != nil || p != "a/b b/c" {
		t.Fatalf("Path(c) = %q, %v", p, err)
	}
	// f's first link in key order decides.
	want := "a/b b/c/file\n"
	if string(c[:]) > string(gfid.Root[:]) {
		want = "zz-hardlink"
	}
	if p, err := path(t, ix, f); err != nil || p != want {
		t.Fatalf("Path(f) = %q, %v; want %q", p, err, want)
	}
	unknown := newGFID(t)
	if _, err := path(t, ix, unknown); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Path(unknown) = %v, want ErrNotFound", err)
	}
	// A missing ancestor.
	update(t, ix, func(tx *Tx) error { return tx.RemoveAll(b) })
	_, err := path(t, ix, c)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), b.String()) {
		t.Fatalf("Path(c) with b gone = %v, want ErrNotFound naming %s", err, b)
	}
}

func TestPathCycle(t *testing.T) {
	ix, _ := openIndex(t)
	a, b, s := newGFID(t), newGFID(t), newGFID(t)
	update(t, ix, func(tx *Tx) error {
		if err := tx.AddLink(a, Link{b, "a"}); err != nil {
			return err
		}
		if err := tx.AddLink(b, Link{a, "b"}); err != nil {
			return err
		}
		return tx.AddLink(s, Link{s, "self"})
	})
	for _, g := range []gfid.GFID{a, b, s} {
		done := make(chan error, 1)
		go func() {
			_, err := path(t, ix, g)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("Path through a cycle succeeded")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Path through a cycle did not return")
		}
	}
}

func TestCleanPersists(t *testing.T) {
	ix, p := openIndex(t)
	if ix.Clean() {
		t.Fatal("a new index is clean")
	}
	g := newGFID(t)
	update(t, ix, func(tx *Tx) error { return tx.AddLink(g, Link{gfid.Root, "x"}) })
	if err := ix.SetClean(true); err != nil {
		t.Fatal(err)
	}
	if !ix.Clean() {
		t.Fatal("not clean after SetClean(true)")
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	ix2, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer ix2.Close()
	if !ix2.Clean() {
		t.Fatal("clean mark lost across Close/Open")
	}
	if got := links(t, ix2, g); len(got) != 1 {
		t.Fatalf("links lost across Close/Open: %v", got)
	}
	if err := ix2.SetClean(false); err != nil {
		t.Fatal(err)
	}
	if ix2.Clean() {
		t.Fatal("clean after SetClean(false)")
	}
	ix2.Close()
	ix3, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer ix3.Close()
	if ix3.Clean() {
		t.Fatal("unclean mark lost across Close/Open")
	}
}

// TestCleanAfterWrite: Clean's doc says it reports whether the index "has
// not been written since" it was marked clean; writes do not clear it.
func TestCleanAfterWrite(t *testing.T) {
	ix, _ := openIndex(t)
	if err := ix.SetClean(true); err != nil {
		t.Fatal(err)
	}
	update(t, ix, func(tx *Tx) error { return tx.AddLink(newGFID(t), Link{gfid.Root, "x"}) })
	if ix.Clean() {
		t.Fatal("Clean() is true after a write")
	}
}

func TestReset(t *testing.T) {
	ix, _ := openIndex(t)
	g := newGFID(t)
	update(t, ix, func(tx *Tx) error { return tx.AddLink(g, Link{gfid.Root, "x"}) })
	if err := ix.Reset(); err != nil {
		t.Fatal(err)
	}
	if got := links(t, ix, g); len(got) != 0 {
		t.Fatalf("links after Reset: %v", got)
	}
	// Usable after Reset.
	update(t, ix, func(tx *Tx) error { return tx.AddLink(g, Link{gfid.Root, "y"}) })
	if p, err := path(t, ix, g); err != nil || p != "y" {
		t.Fatalf("Path after Reset and AddLink = %q, %v", p, err)
	}
}

func TestOpenVersion(t *testing.T) {
	_, p := openIndex(t)
	// The index is open (and locked) in this process: a second Open must
	// fail rather than hang.
	if ix2, err := Open(p); err == nil {
		ix2.Close()
		t.Fatal("second Open of a locked index succeeded")
	}

	p2 := filepath.Join(t.TempDir(), "v.db")
	ix, err := Open(p2)
	if err != nil {
		t.Fatal(err)
	}
	ix.Close()
	db, err := bolt.Open(p2, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("version"), []byte("3")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if ix, err := Open(p2); err == nil {
		ix.Close()
		t.Fatal("Open of a version-3 index succeeded")
	} else if !strings.Contains(err.Error(), `"3"`) {
		t.Fatalf("Open of a version-3 index: %v (should name the version)", err)
	}
	// Not a bbolt file at all.
	p3 := filepath.Join(t.TempDir(), "junk.db")
	if err := os.WriteFile(p3, []byte(strings.Repeat("junk", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	if ix, err := Open(p3); err == nil {
		ix.Close()
		t.Fatal("Open of a junk file succeeded")
	}
	if err := Remove(p3); err != nil {
		t.Fatal(err)
	}
	if err := Remove(p3); err != nil {
		t.Fatalf("Remove of a missing index: %v", err)
	}
	if _, err := os.Stat(p3); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("index still there after Remove: %v", err)
	}
}

func TestRebuild(t *testing.T) {
	ns := gfid.NewNamespace(false)
	root := t.TempDir()
	if err := unix.Setxattr(root, "user.georep.probe", []byte("1"), 0); err != nil {
		t.Skipf("temp filesystem refuses user xattrs: %v", err)
	}
	unix.Removexattr(root, "user.georep.probe")

	ids := map[string]gfid.GFID{}
	mk := func(rel string, dir, withGFID bool) {
		t.Helper()
		p := filepath.Join(root, rel)
		var err error
		if dir {
			err = os.Mkdir(p, 0o755)
		} else {
			err = os.WriteFile(p, []byte(rel), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		if withGFID {
			g := newGFID(t)
			if err := ns.Set(p, g); err != nil {
				t.Fatal(err)
			}
			ids[rel] = g
		}
	}
	mk("a", true, true)
	mk("a/b", false, true)
	mk("a/c", false, false) // missing
	mk("a/d", true, true)
	mk("a/d/e e", false, true)
	mk(".state", true, true) // skipped at top level
	mk(".state/x", false, false)
	mk("nogfid", true, false) // missing; its children are not visited
	mk("nogfid/y", false, true)
	mk("nogfid/z", false, false)
	mk("a/.state", true, true) // not top level: indexed
	// A hard link shares its inode's gfid.
	if err := os.Link(filepath.Join(root, "a/b"), filepath.Join(root, "a/b2")); err != nil {
		t.Fatal(err)
	}
	// A symlink cannot carry a user.* gfid: missing.
	if err := os.Symlink("a/b", filepath.Join(root, "sym")); err != nil {
		t.Fatal(err)
	}

	ix, _ := openIndex(t)
	stale := newGFID(t)
	update(t, ix, func(tx *Tx) error { return tx.AddLink(stale, Link{gfid.Root, "stale"}) })

	indexed, missing, err := ix.Rebuild(root, ns, []string{".state", "absent"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Indexed: a, a/b, a/b2, a/d, a/d/e e, a/.state.
	if indexed != 6 || missing != 3 {
		t.Fatalf("Rebuild = %d indexed, %d missing; want 6 and 3", indexed, missing)
	}
	if got := links(t, ix, stale); len(got) != 0 {
		t.Fatalf("stale link survived Rebuild: %v", got)
	}
	for rel, want := range map[string]string{"a": "a", "a/d": "a/d", "a/d/e e": "a/d/e e", "a/.state": "a/.state"} {
		if p, err := path(t, ix, ids[rel]); err != nil || p != want {
			t.Errorf("Path(%s) = %q, %v", rel, p, err)
		}
	}
	bl := links(t, ix, ids["a/b"])
	want := []Link{{ids["a"], "b"}, {ids["a"], "b2"}}
	if !reflect.DeepEqual(bl, want) {
		t.Errorf("links of a/b = %v, want %v", bl, want)
	}
	for _, rel := range []string{".state", "nogfid/y"} {
		if got := links(t, ix, ids[rel]); len(got) != 0 {
			t.Errorf("%s was indexed: %v", rel, got)
		}
	}
	// Rebuild again: same result, no duplicates.
	indexed2, missing2, err := ix.Rebuild(root, ns, []string{".state"}, nil)
	if err != nil || indexed2 != indexed || missing2 != missing {
		t.Fatalf("second Rebuild = %d, %d, %v", indexed2, missing2, err)
	}
	if got := links(t, ix, ids["a/b"]); !reflect.DeepEqual(got, want) {
		t.Errorf("after a second Rebuild, links of a/b = %v", got)
	}
	// A missing root is an error.
	if _, _, err := ix.Rebuild(filepath.Join(root, "nope"), ns, nil, nil); err == nil {
		t.Fatal("Rebuild of a missing root succeeded")
	}
}

// TestRebuildSweeps: files the owner calls leftovers are removed during a
// rebuild, wherever they are, and are not indexed.
func TestRebuildSweeps(t *testing.T) {
	ix, _ := openIndex(t)
	root := t.TempDir()
	ns := gfid.NewNamespace(false)
	if err := os.MkdirAll(filepath.Join(root, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	dg := newGFID(t)
	if err := ns.Set(filepath.Join(root, "d"), dg); err != nil {
		t.Skipf("user xattrs: %v", err)
	}
	for _, n := range []string{"d/keep", "d/junk.leftover", "junk2.leftover"} {
		if err := os.WriteFile(filepath.Join(root, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := ix.Rebuild(root, ns, nil, func(name string) bool { return strings.HasSuffix(name, ".leftover") })
	if err != nil {
		t.Fatal(err)
	}
	for n, want := range map[string]bool{"d/keep": true, "d/junk.leftover": false, "junk2.leftover": false} {
		if _, err := os.Lstat(filepath.Join(root, n)); (err == nil) != want {
			t.Errorf("%s exists = %v after the rebuild, want %v", n, err == nil, want)
		}
	}
}

func TestOpenMigratesVersion1(t *testing.T) {
	p := filepath.Join(t.TempDir(), "v1.db")
	db, err := bolt.Open(p, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := mustParse("11111111-2222-3333-4444-555555555555")
	err = db.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		if err := m.Put([]byte("version"), []byte("1")); err != nil {
			return err
		}
		if err := m.Put([]byte("clean"), []byte("1")); err != nil {
			return err
		}
		l, err := tx.CreateBucket([]byte("links"))
		if err != nil {
			return err
		}
		return l.Put(append(append(g[:], gfid.Root[:]...), "x"...), nil)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	ix, err := Open(p)
	if err != nil {
		t.Fatalf("Open of a version-1 index: %v", err)
	}
	defer ix.Close()
	if ix.Clean() {
		t.Error("a migrated index is marked clean: its owner would not rebuild it")
	}
	ix.View(func(tx *Tx) error {
		if ls := tx.Links(g); len(ls) != 0 {
			t.Errorf("version-1 links survived the migration: %v", ls)
		}
		return nil
	})
}

func TestChildren(t *testing.T) {
	ix, _ := openIndex(t)
	a := mustParse("aaaaaaaa-0000-0000-0000-000000000001")
	b := mustParse("bbbbbbbb-0000-0000-0000-000000000002")
	d := mustParse("dddddddd-0000-0000-0000-000000000003")
	err := ix.Update(func(tx *Tx) error {
		for _, x := range []struct {
			g gfid.GFID
			l Link
		}{{d, Link{gfid.Root, "dir"}}, {a, Link{d, "a"}}, {b, Link{d, "b"}}, {a, Link{gfid.Root, "a2"}}} {
			if err := tx.AddLink(x.g, x.l); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ix.Update(func(tx *Tx) error {
		if g, ok := tx.Child(Link{d, "a"}); !ok || g != a {
			t.Errorf("Child(dir/a) = %v, %v", g, ok)
		}
		if _, ok := tx.Child(Link{d, "zz"}); ok {
			t.Error("Child of an unknown name found")
		}
		got := tx.Children(d)
		if len(got) != 2 || got[0] != (Child{"a", a}) || got[1] != (Child{"b", b}) {
			t.Errorf("Children(dir) = %v", got)
		}
		// The name now holds b (a rename over a): removing a's old link
		// must not forget b.
		if err := tx.AddLink(b, Link{d, "a"}); err != nil {
			t.Fatal(err)
		}
		if err := tx.RemoveLink(a, Link{d, "a"}); err != nil {
			t.Fatal(err)
		}
		if g, ok := tx.Child(Link{d, "a"}); !ok || g != b {
			t.Errorf("after a rename over it, Child(dir/a) = %v, %v; want %v", g, ok, b)
		}
		if err := tx.RemoveAll(b); err != nil {
			t.Fatal(err)
		}
		if got := tx.Children(d); len(got) != 0 {
			t.Errorf("Children after removals = %v", got)
		}
		if got := tx.Children(gfid.Root); len(got) != 2 {
			t.Errorf("Children(root) = %v", got)
		}
		return nil
	})
	if err := ix.Reset(); err != nil {
		t.Fatal(err)
	}
	ix.View(func(tx *Tx) error {
		if got := tx.Children(gfid.Root); len(got) != 0 {
			t.Errorf("Children after Reset = %v", got)
		}
		return nil
	})
}

func mustParse(s string) gfid.GFID {
	g, err := gfid.Parse(s)
	if err != nil {
		panic(err)
	}
	return g
}

// TestOneLink: none, one, two links; a neighbouring gfid's links do not
// count.
func TestOneLink(t *testing.T) {
	ix, _ := openIndex(t)
	g, p := newGFID(t), newGFID(t)
	near := g
	near[15]++
	one := func() bool {
		var r bool
		ix.View(func(tx *Tx) error { r = tx.OneLink(g); return nil })
		return r
	}
	if one() {
		t.Fatal("OneLink of an unknown gfid")
	}
	update(t, ix, func(tx *Tx) error {
		if err := tx.AddLink(near, Link{Parent: p, Name: "near"}); err != nil {
			return err
		}
		return tx.AddLink(g, Link{Parent: p, Name: "a"})
	})
	if !one() {
		t.Fatal("OneLink false with one link")
	}
	update(t, ix, func(tx *Tx) error { return tx.AddLink(g, Link{Parent: p, Name: "b"}) })
	if one() {
		t.Fatal("OneLink true with two links")
	}
}
