package recorder_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/mtree"
	"github.com/georep/georep/internal/rules"
	"github.com/georep/georep/master/recorder"
)

// recorderFixture runs a recorder on a temp tree; records() reads what it
// committed so far.
type recorderFixture struct {
	t     *testing.T
	root  string
	tree  *mtree.Tree
	j     *changelog.Journal
	after int64
	stop  func()
}

// watchers runs fn once for each event source this process can use.
func watchers(t *testing.T, fn func(t *testing.T, watcher string)) {
	for _, w := range []string{recorder.WatchFanotify, recorder.WatchInotify} {
		t.Run(w, func(t *testing.T) { fn(t, w) })
	}
}

// newRecorderFixture starts a recorder on a new tree made by prepare,
// with the rules rs (none by default).
func newRecorderFixture(t *testing.T, watcher string, prepare func(root string), rs ...*rules.Rules) *recorderFixture {
	t.Helper()
	root, state := t.TempDir(), t.TempDir()
	if prepare != nil {
		prepare(root)
	}
	r, err := beneath.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := gfidx.Open(filepath.Join(state, "gfid.db"))
	if err != nil {
		t.Fatal(err)
	}
	j, err := changelog.OpenJournal(filepath.Join(state, "changelog"))
	if err != nil {
		t.Fatal(err)
	}
	tree := &mtree.Tree{Root: r, NS: gfid.DefaultNamespace(), Idx: idx}
	cfg := recorder.Config{Tree: tree, Journal: j, Interval: 100 * time.Millisecond, Watcher: watcher}
	if len(rs) > 0 {
		cfg.Rules = rs[0]
	}
	rec, err := recorder.New(cfg)
	if err != nil && watcher == recorder.WatchFanotify && unix.Geteuid() != 0 {
		t.Skipf("fanotify needs CAP_SYS_ADMIN: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.Watcher(); got != watcher {
		t.Fatalf("recorder uses %s, want %s", got, watcher)
	}
	if err := rec.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx) }()
	f := &recorderFixture{t: t, root: root, tree: tree, j: j}
	f.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("recorder: %v", err)
		}
		rec.Close()
		j.Close()
		idx.Close()
		r.Close()
	}
	t.Cleanup(func() {
		if f.stop != nil {
			f.stop()
		}
	})
	return f
}

// records waits until the recorder has committed everything made so far
// and returns the records committed since the last call; a gap segment
// fails the test.
func (f *recorderFixture) records() []changelog.Record {
	f.t.Helper()
	return f.committed(false)
}

// recordsAllowGaps is records, gaps or not (a gap is a crawl's to close).
func (f *recorderFixture) recordsAllowGaps() []changelog.Record {
	f.t.Helper()
	return f.committed(true)
}

func (f *recorderFixture) committed(gapsOK bool) []changelog.Record {
	f.t.Helper()
	t0 := time.Now().UnixNano()
	deadline := time.Now().Add(20 * time.Second)
	for f.j.Covered() <= t0 {
		if time.Now().After(deadline) {
			f.t.Fatal("the recorder did not roll over within 20 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	segs, err := f.j.Next(f.after, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []changelog.Record
	for _, s := range segs {
		f.after = s.End
		if s.Gap && !gapsOK {
			f.t.Errorf("segment (%d, %d] is a gap: %s", s.Start, s.End, s.Reason)
		}
		if s.Path == "" {
			continue
		}
		if _, err := changelog.ReadFile(s.Path, func(r changelog.Record) error {
			out = append(out, r)
			return nil
		}); err != nil {
			f.t.Fatal(err)
		}
	}
	return out
}

func (f *recorderFixture) gfidOf(rel string) gfid.GFID {
	f.t.Helper()
	g, err := f.tree.NS.Get(filepath.Join(f.root, rel))
	if err != nil {
		f.t.Fatalf("gfid of %s: %v", rel, err)
	}
	return g
}

func find(recs []changelog.Record, match func(r changelog.Record) bool) bool {
	for _, r := range recs {
		if match(r) {
			return true
		}
	}
	return false
}

func TestRecorder(t *testing.T) { watchers(t, testRecorder) }

func testRecorder(t *testing.T, watcher string) {
	f := newRecorderFixture(t, watcher, func(root string) {
		os.MkdirAll(filepath.Join(root, "old dir", "sub"), 0o755)
		os.WriteFile(filepath.Join(root, "old dir", "sub", "f"), []byte("x"), 0o644)
	})
	f.records() // the start
	root := f.root

	// A new file: CREATE with its new gfid, and its data.
	name := "new\nfile \xff"
	if err := os.WriteFile(filepath.Join(root, name), []byte("data"), 0o640); err != nil {
		t.Fatal(err)
	}
	recs := f.records()
	g := f.gfidOf(name)
	if !find(recs, func(r changelog.Record) bool {
		return r.Kind == changelog.KindEntry && r.Op == changelog.OpCreate && r.GFID == g && r.Parent == gfid.Root && r.Name == name
	}) || !find(recs, func(r changelog.Record) bool { return r.Kind == changelog.KindData && r.GFID == g }) {
		t.Fatalf("new file: records %v", recs)
	}

	// A rename is one RENAME of the same gfid.
	sub := f.gfidOf("old dir/sub")
	if err := os.Rename(filepath.Join(root, "old dir", "sub"), filepath.Join(root, "moved")); err != nil {
		t.Fatal(err)
	}
	recs = f.records()
	if !find(recs, func(r changelog.Record) bool {
		return r.Op == changelog.OpRename && r.GFID == sub && r.Name == "sub" && r.Parent2 == gfid.Root && r.Name2 == "moved"
	}) {
		t.Fatalf("rename: records %v", recs)
	}

	// A new directory made with content at once: the content made before
	// its watch is recorded too.
	if err := os.MkdirAll(filepath.Join(root, "a", "b", "c"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "a", "b", "c", "deep"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	recs = f.records()
	deep := f.gfidOf("a/b/c/deep")
	if !find(recs, func(r changelog.Record) bool { return r.Op == changelog.OpCreate && r.GFID == deep }) {
		t.Fatalf("file in a new tree: records %v", recs)
	}

	// A removal is named by gfid.
	if err := os.Remove(filepath.Join(root, name)); err != nil {
		t.Fatal(err)
	}
	recs = f.records()
	if !find(recs, func(r changelog.Record) bool { return r.Op == changelog.OpUnlink && r.GFID == g && r.Name == name }) {
		t.Fatalf("unlink: records %v", recs)
	}

	// A hardlink is a LINK of the same gfid.
	if err := os.Link(filepath.Join(root, "a", "b", "c", "deep"), filepath.Join(root, "h")); err != nil {
		t.Fatal(err)
	}
	recs = f.records()
	if !find(recs, func(r changelog.Record) bool { return r.Op == changelog.OpLink && r.GFID == deep && r.Name == "h" }) {
		t.Fatalf("link: records %v", recs)
	}

	// A chmod is an M record; the xtimes the recorder writes are not.
	if err := os.Chmod(filepath.Join(root, "h"), 0o600); err != nil {
		t.Fatal(err)
	}
	recs = f.records()
	if !find(recs, func(r changelog.Record) bool { return r.Kind == changelog.KindMeta && r.GFID == deep }) {
		t.Fatalf("chmod: records %v", recs)
	}
	// The directories that changed carry an xtime.
	if _, err := unix.Lgetxattr(filepath.Join(root, "a", "b", "c"), recorder.XtimeKey(f.tree.NS), make([]byte, 16)); err != nil {
		t.Errorf("no xtime on a changed directory: %v", err)
	}
	// Quiet now: nothing more is recorded, though xtimes were just written.
	time.Sleep(300 * time.Millisecond)
	if recs := f.records(); len(recs) != 0 {
		t.Fatalf("a quiet tree recorded %v (the recorder's own xattr writes?)", recs)
	}
}

// A name made in a directory that is renamed at once (before the recorder
// reads the event) is still recorded.
func TestRecorderCreateThenRenameDir(t *testing.T) { watchers(t, testCreateThenRenameDir) }

func testCreateThenRenameDir(t *testing.T, watcher string) {
	f := newRecorderFixture(t, watcher, func(root string) { os.Mkdir(filepath.Join(root, "d"), 0o755) })
	f.records()
	for i := 0; i < 20; i++ {
		d, d2 := filepath.Join(f.root, "d"), filepath.Join(f.root, "d2")
		if err := os.WriteFile(filepath.Join(d, "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(d, d2); err != nil {
			t.Fatal(err)
		}
		recs := f.records()
		g := f.gfidOf("d2/f")
		if !find(recs, func(r changelog.Record) bool { return r.Op == changelog.OpCreate && r.GFID == g }) {
			t.Fatalf("round %d: the file made just before its directory's rename was not recorded: %v", i, recs)
		}
		os.Remove(filepath.Join(d2, "f"))
		os.Rename(d2, d)
		f.records()
	}
}

// Directory metadata, renames over a name, quick make-and-remove, and
// changes outside the tree (on the same filesystem: fanotify sees them).
func TestRecorderMore(t *testing.T) { watchers(t, testRecorderMore) }

func testRecorderMore(t *testing.T, watcher string) {
	outside := t.TempDir()
	f := newRecorderFixture(t, watcher, func(root string) {
		os.Mkdir(filepath.Join(root, "d"), 0o755)
	})
	f.records()
	root := f.root
	os.WriteFile(filepath.Join(root, "a"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(root, "b"), []byte("b"), 0o644)
	f.records()

	// chmod of a directory: an M record of the directory.
	d := f.gfidOf("d")
	if err := os.Chmod(filepath.Join(root, "d"), 0o700); err != nil {
		t.Fatal(err)
	}
	recs := f.records()
	if !find(recs, func(r changelog.Record) bool { return r.Kind == changelog.KindMeta && r.GFID == d }) {
		t.Fatalf("chmod of a directory: records %v", recs)
	}

	// A rename over an existing name: the RENAME, and the replaced
	// entry's removal.
	a, b := f.gfidOf("a"), f.gfidOf("b")
	if err := os.Rename(filepath.Join(root, "a"), filepath.Join(root, "b")); err != nil {
		t.Fatal(err)
	}
	recs = f.records()
	if !find(recs, func(r changelog.Record) bool { return r.Op == changelog.OpRename && r.GFID == a && r.Name2 == "b" }) ||
		!find(recs, func(r changelog.Record) bool { return r.Op == changelog.OpUnlink && r.GFID == b }) {
		t.Fatalf("rename over a name: records %v", recs)
	}

	// Made and removed many times over before the recorder looks: what is
	// left at the end is recorded (and what is not, is not).
	for i := 0; i < 50; i++ {
		p := filepath.Join(root, "d", "flicker")
		os.WriteFile(p, []byte("x"), 0o644)
		if i < 49 {
			os.Remove(p)
		}
	}
	recs = f.records()
	fl := f.gfidOf("d/flicker")
	if !find(recs, func(r changelog.Record) bool {
		return r.Op == changelog.OpCreate && r.GFID == fl && r.Name == "flicker"
	}) {
		t.Fatalf("made and removed 49 times, then made: records %v", recs)
	}

	// Changes outside the tree are no records; moves across its border
	// are a creation and a removal.
	if err := os.WriteFile(filepath.Join(outside, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(outside, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if recs := f.records(); len(recs) != 0 {
		t.Fatalf("changes outside the tree recorded: %v", recs)
	}
	if err := os.Rename(filepath.Join(outside, "x"), filepath.Join(root, "in")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(root, "b"), filepath.Join(outside, "out")); err != nil {
		t.Fatal(err)
	}
	recs = f.records()
	in := f.gfidOf("in")
	if !find(recs, func(r changelog.Record) bool { return r.Op == changelog.OpCreate && r.GFID == in && r.Name == "in" }) ||
		!find(recs, func(r changelog.Record) bool { return r.Op == changelog.OpUnlink && r.GFID == a && r.Name == "b" }) {
		t.Fatalf("moves in and out of the tree: records %v", recs)
	}
}

// TestRecorderBoundedDescriptors: a new tree of 2,000 directories, made
// faster than the recorder reads, is recorded whole without holding a
// descriptor per directory (the soak saw a live master at 3,700 open
// descriptors: each new directory's was kept until some later lookup
// missed the cache).
func TestRecorderBoundedDescriptors(t *testing.T) { watchers(t, testRecorderBoundedDescriptors) }

func testRecorderBoundedDescriptors(t *testing.T, watcher string) {
	f := newRecorderFixture(t, watcher, nil)
	f.records()
	before := openFDs(t)
	for i := range 40 {
		for j := range 50 {
			if err := os.MkdirAll(filepath.Join(f.root, "new", fmt.Sprintf("d%02d", i), fmt.Sprintf("e%02d", j)), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	recs := f.records()
	n := 0
	for _, r := range recs {
		if r.Op == changelog.OpMkdir {
			n++
		}
	}
	if n != 1+40+40*50 {
		t.Errorf("%d MKDIR records for %d directories", n, 1+40+40*50)
	}
	if after := openFDs(t); after-before > 400 {
		t.Errorf("%d descriptors open after recording 2,041 new directories (%d before)", after, before)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
