package recorder_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/rules"
)

// What the rules leave out is not journaled: no record, no gfid, no watch;
// a rename across the boundary is a removal (in → out) or a creation
// (out → in), not a gap.
func TestRecorderRules(t *testing.T) { watchers(t, testRecorderRules) }

func testRecorderRules(t *testing.T, watcher string) {
	rs, err := rules.New([]string{"*.tmp", "/cache/", "build/", "!keep.tmp"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	f := newRecorderFixture(t, watcher, func(root string) {
		os.MkdirAll(filepath.Join(root, "cache", "old"), 0o755)
		os.MkdirAll(filepath.Join(root, "src"), 0o755)
		os.WriteFile(filepath.Join(root, "cache", "old", "f"), []byte("x"), 0o644)
	}, rs)
	f.records()
	root := f.root
	path := func(p string) string { return filepath.Join(root, p) }
	noGFID := func(rel string) {
		t.Helper()
		if g, err := f.tree.NS.Get(path(rel)); err == nil {
			t.Errorf("%s was given gfid %s: excluded entries get none", rel, g)
		}
	}
	only := func(what string, recs []changelog.Record, ok func(r changelog.Record) bool) {
		t.Helper()
		for _, r := range recs {
			if !ok(r) {
				t.Errorf("%s: unexpected record %v (all: %v)", what, r, recs)
			}
		}
	}

	// Changes to excluded names and inside excluded directories: nothing.
	for _, p := range []string{"a.tmp", "src/b.tmp", "cache/new", "cache/old/f", "src/build/out.o"} {
		os.MkdirAll(filepath.Dir(path(p)), 0o755)
		if err := os.WriteFile(path(p), []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(path("src/b.tmp"), 0o600)
	os.Remove(path("a.tmp"))
	os.MkdirAll(path("cache/deep/er"), 0o755)
	recs := f.records()
	srcG := f.gfidOf("src")
	only("excluded changes", recs, func(r changelog.Record) bool {
		// src/build/ is made (excluded) in src: src's own change (its
		// mtime) may be recorded, nothing else.
		return r.Kind == changelog.KindMeta && (r.GFID == srcG || r.GFID == gfid.Root)
	})
	noGFID("src/b.tmp")
	noGFID("cache/new")
	noGFID("src/build")
	noGFID("cache/deep")

	// A negated name is included.
	if err := os.WriteFile(path("src/keep.tmp"), []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	recs = f.records()
	kg := f.gfidOf("src/keep.tmp")
	if !find(recs, func(r changelog.Record) bool { return r.Op == changelog.OpCreate && r.GFID == kg }) {
		t.Fatalf("included keep.tmp not recorded: %v", recs)
	}

	// out → in: a file and a directory with content are made.
	if err := os.Rename(path("src/b.tmp"), path("src/b.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path("cache/deep"), path("src/deep")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path("src/deep/er/x"), []byte("x"), 0o644)
	recs = f.records()
	bg, dg, xg := f.gfidOf("src/b.txt"), f.gfidOf("src/deep"), f.gfidOf("src/deep/er/x")
	for what, g := range map[string]gfid.GFID{"file": bg, "dir": dg, "file in it": xg} {
		if !find(recs, func(r changelog.Record) bool {
			return (r.Op == changelog.OpCreate || r.Op == changelog.OpMkdir) && r.GFID == g
		}) {
			t.Errorf("moved in (%s): not recorded as made: %v", what, recs)
		}
	}

	// in → out: removals; the directory is forgotten, not a gap (records
	// reports gap segments as errors), and what is made in it later is
	// not recorded.
	if err := os.Rename(path("src/b.txt"), path("src/b2.tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path("src/deep"), path("cache/deep2")); err != nil {
		t.Fatal(err)
	}
	recs = f.records()
	if !find(recs, func(r changelog.Record) bool { return r.Op == changelog.OpUnlink && r.GFID == bg }) {
		t.Errorf("file moved to an excluded name: no UNLINK: %v", recs)
	}
	if !find(recs, func(r changelog.Record) bool { return r.Op == changelog.OpRmdir && r.GFID == dg }) {
		t.Errorf("directory moved into an excluded one: no RMDIR: %v", recs)
	}
	os.WriteFile(path("cache/deep2/er/y"), []byte("y"), 0o644)
	os.WriteFile(path("cache/deep2/er/x"), []byte("xx"), 0o644)
	os.WriteFile(path("src/b2.tmp"), []byte("more"), 0o644)
	recs = f.records()
	only("changes after moving out", recs, func(r changelog.Record) bool {
		return r.Kind == changelog.KindMeta && (r.GFID == srcG || r.GFID == gfid.Root)
	})
	// Removing an excluded name is no PURGE of its directory.
	os.Remove(path("src/b2.tmp"))
	os.RemoveAll(path("src/build"))
	recs = f.records()
	only("excluded removals", recs, func(r changelog.Record) bool {
		return r.Kind == changelog.KindMeta && (r.GFID == srcG || r.GFID == gfid.Root)
	})
}

// A directory moved out of the tree (elsewhere on its filesystem) is a
// removal, and its subtree is forgotten: not a gap (records fails on one),
// and what is made in it later is not recorded.
func TestRecorderDirMovedOut(t *testing.T) { watchers(t, testDirMovedOut) }

func testDirMovedOut(t *testing.T, watcher string) {
	f := newRecorderFixture(t, watcher, func(root string) {
		os.MkdirAll(filepath.Join(root, "d", "sub"), 0o755)
	})
	f.records()
	g := f.gfidOf("d")
	outside := filepath.Join(filepath.Dir(f.root), "moved-out-"+filepath.Base(f.root))
	if err := os.Rename(filepath.Join(f.root, "d"), outside); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(outside)
	recs := f.records()
	if !find(recs, func(r changelog.Record) bool { return r.Op == changelog.OpRmdir && r.GFID == g }) {
		t.Fatalf("no RMDIR for the directory moved out: %v", recs)
	}
	os.WriteFile(filepath.Join(outside, "sub", "f"), []byte("x"), 0o644)
	for _, r := range f.records() {
		if r.GFID != gfid.Root {
			t.Fatalf("a change outside the tree was recorded: %v", r)
		}
	}
}

// A name the rules leave out is not recorded, but its directory's mtime
// moves when it is made, removed, or moved in or out: the directory's
// metadata is recorded (the 30-minute soak with rules: directories kept
// stale mtimes on the slave, the status saying synced).
func TestRecorderRulesDirMtime(t *testing.T) { watchers(t, testRulesDirMtime) }

func testRulesDirMtime(t *testing.T, watcher string) {
	rs, err := rules.New([]string{"*.bak"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	f := newRecorderFixture(t, watcher, func(root string) {
		os.MkdirAll(filepath.Join(root, "src"), 0o755)
		os.MkdirAll(filepath.Join(root, "dst"), 0o755)
		os.WriteFile(filepath.Join(root, "src", "in"), []byte("x"), 0o644)
	}, rs)
	f.records()
	path := func(p string) string { return filepath.Join(f.root, p) }
	srcG, dstG := f.gfidOf("src"), f.gfidOf("dst")
	metaOf := func(recs []changelog.Record, g gfid.GFID) bool {
		return find(recs, func(r changelog.Record) bool { return r.Kind == changelog.KindMeta && r.GFID == g })
	}
	for _, step := range []struct {
		what string
		do   func() error
		dirs []gfid.GFID
	}{
		{"an excluded file made", func() error { return os.WriteFile(path("src/a.bak"), []byte("x"), 0o644) }, []gfid.GFID{srcG}},
		{"an excluded file moved to another directory", func() error { return os.Rename(path("src/a.bak"), path("dst/a.bak")) }, []gfid.GFID{srcG, dstG}},
		{"an excluded file removed", func() error { return os.Remove(path("dst/a.bak")) }, []gfid.GFID{dstG}},
		{"an excluded directory made", func() error { return os.Mkdir(path("src/d.bak"), 0o755) }, []gfid.GFID{srcG}},
		{"an included file moved to an excluded name elsewhere", func() error { return os.Rename(path("src/in"), path("dst/in.bak")) }, []gfid.GFID{srcG, dstG}},
		{"an excluded file moved in under an included name", func() error { return os.Rename(path("dst/in.bak"), path("src/in")) }, []gfid.GFID{srcG, dstG}},
	} {
		if err := step.do(); err != nil {
			t.Fatal(err)
		}
		recs := f.records()
		for _, g := range step.dirs {
			if !metaOf(recs, g) {
				t.Errorf("%s: no metadata record of directory %s, whose mtime moved: %v", step.what, g, recs)
			}
		}
	}
}

// A directory the index also holds at a stale name (a move the index did
// not follow) is forgotten with the rest of its subtree when an ancestor
// moves to a place the rules leave out: left watched there, what was made
// below it was judged by the stale name's path, not recorded, and never
// watched once the subtree came back (the 30-minute soak with rules:
// every later change below such a directory was lost, the status saying
// synced).
func TestRecorderRulesStaleDirLink(t *testing.T) { watchers(t, testRulesStaleDirLink) }

func testRulesStaleDirLink(t *testing.T, watcher string) {
	rs, err := rules.New([]string{"*.bak"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	f := newRecorderFixture(t, watcher, func(root string) {
		os.MkdirAll(filepath.Join(root, "a", "d", "sub"), 0o755)
		os.MkdirAll(filepath.Join(root, "x"), 0o755)
	}, rs)
	f.records()
	path := func(p string) string { return filepath.Join(f.root, p) }
	dG, xG := f.gfidOf("a/d"), f.gfidOf("x")
	// What a race left in the index: d also at x/s.bak, where nothing is.
	if err := f.tree.Idx.Update(func(tx *gfidx.Tx) error {
		return tx.AddLink(dG, gfidx.Link{Parent: xG, Name: "s.bak"})
	}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path("a"), path("a.bak")); err != nil {
		t.Fatal(err)
	}
	f.records()
	if err := os.Mkdir(path("a.bak/d/sub/new"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.records()
	if err := os.Rename(path("a.bak"), path("b2")); err != nil {
		t.Fatal(err)
	}
	recs := f.records()
	newG := f.gfidOf("b2/d/sub/new")
	if !find(recs, func(r changelog.Record) bool { return r.Op == changelog.OpMkdir && r.GFID == newG }) {
		t.Errorf("a directory made while its ancestor was excluded was not recorded when it came back: %v", recs)
	}
	os.WriteFile(path("b2/d/sub/new/f"), []byte("x"), 0o644)
	recs = f.records()
	if !find(recs, func(r changelog.Record) bool { return r.Op == changelog.OpCreate && r.Name == "f" }) {
		t.Errorf("a file made in it later was not recorded (the directory is not watched): %v", recs)
	}
}
