package churn

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/georep/georep/internal/testtree"
	"github.com/georep/georep/internal/treecmp"
)

func newChurn(t *testing.T, opt Options) *Churn {
	t.Helper()
	c, err := New(opt)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func steps(t *testing.T, c *Churn, n int) []Event {
	t.Helper()
	var evs []Event
	for range n {
		e, err := c.Step()
		if err != nil {
			t.Fatalf("Step: %v\nlast events:\n%s", err, history(c))
		}
		evs = append(evs, e)
	}
	return evs
}

func history(c *Churn) string {
	var b strings.Builder
	for _, e := range c.History() {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// TestDeterministic: the same seed on two identical trees makes the same
// steps and leaves identical trees (mtimes aside where the kernel stamped
// them).
func TestDeterministic(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 1000
	}
	var roots [2]string
	var evs [2][]Event
	for i := range roots {
		roots[i] = t.TempDir()
		if err := testtree.Build(roots[i], testtree.Options{BigFileSize: 1 << 20, Seed: 3}); err != nil {
			t.Fatal(err)
		}
		c := newChurn(t, Options{Seed: 42, Root: roots[i], MaxFiles: 800, MaxDirs: 80})
		evs[i] = steps(t, c, n)
		t.Logf("tree %d: %s", i, c.Stats())
	}
	for i := range evs[0] {
		a, b := evs[0][i], evs[1][i]
		if a.Op != b.Op || a.Variant != b.Variant || a.Desc != b.Desc || (a.Skipped == nil) != (b.Skipped == nil) {
			t.Fatalf("step %d differs:\n  %s\n  %s", i+1, a, b)
		}
	}
	diffs, err := treecmp.Compare(roots[0], roots[1], treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var real int
	for _, d := range diffs {
		if strings.HasPrefix(d.What, "mtime:") {
			continue // stamped by the kernel: the time of the step
		}
		real++
		if real <= 20 {
			t.Errorf("trees differ: %s", d)
		}
	}
	if real > 20 {
		t.Errorf("... %d differences in all", real)
	}

	// Another seed makes another tree.
	other := t.TempDir()
	if err := testtree.Build(other, testtree.Options{BigFileSize: 1 << 20, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	steps(t, newChurn(t, Options{Seed: 43, Root: other, MaxFiles: 800, MaxDirs: 80}), 200)
	diffs, err = treecmp.Compare(roots[0], other, treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) == 0 {
		t.Error("seeds 42 and 43 made the same tree")
	}
}

// TestEveryOpHappens: over a few thousand steps every kind and variant of
// operation is applied, odd names appear, and the tree stays bounded.
func TestEveryOpHappens(t *testing.T) {
	root := t.TempDir()
	opt := Options{Seed: 1, Root: root, MaxFiles: 400, MaxDirs: 50}
	c := newChurn(t, opt)
	var newline, nonUTF8, long, tab, percent bool
	var maxDirs, maxOthers int
	const n = 5000
	t0 := time.Now()
	for range n {
		e, err := c.Step()
		if err != nil {
			t.Fatalf("%v\nlast events:\n%s", err, history(c))
		}
		if e.Skipped != nil {
			continue
		}
		switch {
		case e.Path == "" && e.Op != OpChmod && e.Op != OpChown && e.Op != OpUtime && e.Op != OpSetxattr && e.Op != OpRemovexattr:
			t.Errorf("%s: no path", e)
		case e.Dest == "" && (e.Op == OpLink || e.Op == OpRenameFile || e.Op == OpRenameDir) && !strings.Contains(e.Desc, "same inode"):
			t.Errorf("%s: no destination", e)
		case e.Dest != "" && e.Op != OpLink && e.Op != OpRenameFile && e.Op != OpRenameDir:
			t.Errorf("%s: a destination", e)
		}
		dirs, others := c.Size()
		maxDirs, maxOthers = max(maxDirs, dirs), max(maxOthers, others)
	}
	// Odd names, as created on disk.
	for rel := range c.m.kinds {
		for _, name := range strings.Split(rel, "/") {
			newline = newline || strings.Contains(name, "\n")
			nonUTF8 = nonUTF8 || !utf8.ValidString(name)
			long = long || len(name) == 255
			tab = tab || strings.Contains(name, "\t")
			percent = percent || strings.Contains(name, "%")
		}
	}
	st := c.Stats()
	t.Logf("%s; final size %d dirs + %d others (max %d + %d)", st, len(c.m.dirs), len(c.m.files)+len(c.m.others), maxDirs, maxOthers)
	if d := time.Since(t0); d > 30*time.Second {
		t.Errorf("%d steps took %s", n, d)
	}
	if st.Steps != n {
		t.Errorf("Stats.Steps = %d, want %d", st.Steps, n)
	}
	for _, op := range Ops() {
		if op == OpChown && os.Geteuid() != 0 {
			continue
		}
		if st.Done[op] == 0 {
			t.Errorf("op %s never applied", op)
		}
	}
	variants := []string{
		"write/middle", "write/append", "write/beyond-eof",
		"truncate/shrink", "truncate/grow",
		"rename-file/same-dir", "rename-file/other-dir", "rename-file/over",
		"rename-dir/same-dir", "rename-dir/other-dir", "rename-dir/sibling-subtree", "rename-dir/over",
		"symlink/rel", "symlink/abs", "symlink/dangling", "symlink/weird",
		"remove-all/tree", "remove-all/empty",
		"chmod/file", "chmod/dir", "chmod/setgid-dir", "chmod/setuid-file",
		"utime/file", "utime/dir", "utime/symlink",
		"setxattr/file", "setxattr/dir", "removexattr/file", "removexattr/dir",
	}
	if os.Geteuid() == 0 {
		variants = append(variants, "chown/file", "chown/dir", "chown/symlink")
	}
	for _, v := range variants {
		if st.Variants[v] == 0 {
			t.Errorf("variant %s never applied", v)
		}
	}
	for what, ok := range map[string]bool{"a newline": newline, "non-UTF-8 bytes": nonUTF8, "255 bytes": long, "a tab": tab, "'%'": percent} {
		if !ok {
			t.Errorf("no name in the final tree has %s", what)
		}
	}
	if maxOthers > opt.MaxFiles || maxDirs > opt.MaxDirs+1 {
		t.Errorf("tree grew to %d dirs and %d others; limits %d and %d", maxDirs, maxOthers, opt.MaxDirs, opt.MaxFiles)
	}
	if maxOthers < opt.MaxFiles/4 {
		t.Errorf("tree stayed small: at most %d non-directories", maxOthers)
	}
}

// TestModelMatchesDisk: the in-memory picture kept op by op is the tree on
// disk, and the reserved top-level directory is never touched.
func TestModelMatchesDisk(t *testing.T) {
	root := t.TempDir()
	reserved := filepath.Join(root, Reserved)
	if err := os.MkdirAll(filepath.Join(reserved, "limbo"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(reserved, "keep"), []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	before, err := treecmp.Snapshot(reserved, treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := newChurn(t, Options{Seed: 7, Root: root, MaxFiles: 300, MaxDirs: 40, ResyncEvery: -1})
	for i := range 6 {
		steps(t, c, 500)
		disk, err := load(root)
		if err != nil {
			t.Fatal(err)
		}
		if d := c.m.diff(disk); d != "" {
			t.Fatalf("after %d steps the model differs from the disk: %s\nlast events:\n%s", (i+1)*500, d, history(c))
		}
		if _, ok := c.m.kinds[Reserved]; ok {
			t.Fatal("the reserved directory is in the model")
		}
	}
	after, err := treecmp.Snapshot(reserved, treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ch := treecmp.Changed(before, after); len(ch) > 0 {
		t.Errorf("the churn changed the reserved directory: %q", ch)
	}
}

// TestRun: n steps, paced; a cancelled context stops it.
func TestRun(t *testing.T) {
	c := newChurn(t, Options{Seed: 2, Root: t.TempDir()})
	ctx := context.Background()
	st, err := c.Run(ctx, 60, 600)
	if err != nil {
		t.Fatal(err)
	}
	if st.Steps != 60 {
		t.Errorf("Run(60) took %d steps", st.Steps)
	}
	// 60 steps at 600/s: the last is due after 59/600 s.
	if st.Elapsed < 80*time.Millisecond || st.Elapsed > 20*time.Second {
		t.Errorf("60 steps at 600/s took %s", st.Elapsed)
	}
	st, err = c.Run(ctx, 2000, 0)
	if err != nil || st.Steps != 2000 {
		t.Errorf("Run(2000, unpaced) = %d steps, %v", st.Steps, err)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	st, err = c.Run(cctx, 10, 0)
	if !errors.Is(err, context.Canceled) || st.Steps != 0 {
		t.Errorf("Run on a cancelled context = %d steps, %v", st.Steps, err)
	}
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	st, err = c.Run(tctx, -1, 1000)
	if err != nil || st.Steps == 0 || st.Steps > 500 {
		t.Errorf("Run(-1) for 50ms at 1000/s = %d steps, %v", st.Steps, err)
	}
	if total := c.Stats().Steps; total != 60+2000+st.Steps {
		t.Errorf("Stats().Steps = %d, want %d", total, 60+2000+st.Steps)
	}
}

func TestHistory(t *testing.T) {
	c := newChurn(t, Options{Seed: 5, Root: t.TempDir(), History: 10})
	steps(t, c, 3)
	if h := c.History(); len(h) != 3 || h[0].N != 1 || h[2].N != 3 {
		t.Fatalf("history after 3 steps: %v", h)
	}
	steps(t, c, 97)
	h := c.History()
	if len(h) != 10 {
		t.Fatalf("history holds %d events, want 10", len(h))
	}
	for i, e := range h {
		if e.N != int64(91+i) || e.Desc == "" {
			t.Errorf("history[%d] = %s, want step %d", i, e, 91+i)
		}
	}
}

func TestNewRefuses(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{"", "/", file, filepath.Join(t.TempDir(), "missing")} {
		if _, err := New(Options{Root: root}); err == nil {
			t.Errorf("New(%q) succeeded", root)
		}
	}
}

func BenchmarkStep(b *testing.B) {
	c, err := New(Options{Seed: 9, Root: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.Step(); err != nil {
			b.Fatal(err)
		}
	}
}
