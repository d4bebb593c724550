package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

const pathMax = 4096 // bytes, with the terminating NUL

// newTestGen populates a fresh tree under a temp dir and returns its generator.
func newTestGen(t *testing.T, seed uint64, files int) (*Gen, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "m")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	g, err := NewGen(GenConfig{
		Root: root, Seed: seed, MaxBytes: 48 << 20, Chown: os.Geteuid() == 0,
		// The same for every temp dir, so that two trees get the same ops.
		MaxRel: 3900,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Populate(files); err != nil {
		t.Fatal(err)
	}
	g.SetTarget(g.Entries())
	t.Cleanup(func() { os.RemoveAll(root) })
	return g, root
}

func steps(g *Gen, n int) []Event {
	out := make([]Event, 0, n)
	for range n {
		out = append(out, g.Step())
	}
	return out
}

// comparable drops what may differ between two identical runs (the clock).
func comparable(es []Event) []string {
	out := make([]string, len(es))
	for i, e := range es {
		e.At = 0
		out[i] = e.String()
	}
	return out
}

func TestDeterministic(t *testing.T) {
	g1, r1 := newTestGen(t, 42, 200)
	g2, r2 := newTestGen(t, 42, 200)
	if !slices.Equal(comparable(g1.History()), comparable(g2.History())) {
		t.Fatal("populate differs between two runs of one seed")
	}
	e1, e2 := comparable(steps(g1, 3000)), comparable(steps(g2, 3000))
	for i := range e1 {
		if e1[i] != e2[i] {
			t.Fatalf("op %d differs:\n  %s\n  %s", i, e1[i], e2[i])
		}
	}
	d1, err := dumpTree(r1)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := dumpTree(r2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d1, d2) {
		t.Fatal("the two trees differ after the same ops")
	}
	if g1.Written() != g2.Written() {
		t.Fatalf("bytes written differ: %d vs %d", g1.Written(), g2.Written())
	}
	// Another seed makes other ops.
	g3, _ := newTestGen(t, 43, 200)
	if slices.Equal(comparable(steps(g3, 200)), e1[:200]) {
		t.Fatal("seeds 42 and 43 made the same ops")
	}
}

func TestEveryKindOccurs(t *testing.T) {
	g, root := newTestGen(t, 7, 300)
	steps(g, 5000)
	for _, k := range KindNames() {
		s := g.Stats()[k]
		if k == "chown" && os.Geteuid() != 0 {
			continue
		}
		if s.Applied == 0 {
			t.Errorf("op kind %s never applied in 5000 steps (skipped %d: %v)", k, s.Skipped, s.Errs)
		}
	}
	// Only the generator changes the tree, so nothing may be skipped for
	// a name that is, or is not, there: that would be the model drifting.
	t.Logf("\n%s", kindTable(g.Stats()))
	for k, s := range g.Stats() {
		for _, e := range []string{"ENOENT", "EEXIST", "ENOTEMPTY", "ENOTDIR", "EISDIR", "EINVAL"} {
			if s.Errs[e] > 0 {
				t.Errorf("%s skipped %d times with %s", k, s.Errs[e], e)
			}
		}
	}
	// The model is the tree.
	want := g.m.dump()
	got, err := dumpTree(root)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(want, got) {
		for _, l := range diffLines(want, got, 10) {
			t.Error(l)
		}
		t.Fatal("model and tree differ")
	}
	if g.Written() <= 0 {
		t.Fatal("no bytes counted")
	}
	// Outside deep chains the tree stays within dirDepthMax levels.
	for _, d := range g.m.dirs {
		inChain := false
		for x := d; x != nil; x = x.parent {
			inChain = inChain || x.chain
		}
		if !inChain && d.depth() > dirDepthMax {
			t.Errorf("directory %d levels deep outside a chain: %q", d.depth(), d.path())
		}
	}
}

func diffLines(a, b []string, n int) []string {
	in := func(s []string) map[string]bool {
		m := map[string]bool{}
		for _, x := range s {
			m[x] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for _, x := range a {
		if !mb[x] && len(out) < n {
			out = append(out, "only in model: "+x)
		}
	}
	for _, x := range b {
		if !ma[x] && len(out) < 2*n {
			out = append(out, "only on disk:  "+x)
		}
	}
	return out
}

func TestAwkwardNames(t *testing.T) {
	g, root := newTestGen(t, 3, 300)
	steps(g, 5000)
	checks := map[string]func(string) bool{
		"space":       func(s string) bool { return strings.Contains(s, " ") },
		"newline":     func(s string) bool { return strings.Contains(s, "\n") },
		"tab":         func(s string) bool { return strings.Contains(s, "\t") },
		"percent":     func(s string) bool { return strings.Contains(s, "%") },
		"leading-":    func(s string) bool { return strings.HasPrefix(s, "-") },
		"non-UTF-8":   func(s string) bool { return !utf8.ValidString(s) },
		"0xff 0xfe":   func(s string) bool { return strings.Contains(s, "\xff\xfe") },
		"255 bytes":   func(s string) bool { return len(s) == 255 },
		"leading dot": func(s string) bool { return strings.HasPrefix(s, ".") },
	}
	found := map[string]int{}
	for _, e := range g.History() {
		for _, p := range e.Paths {
			for _, name := range strings.Split(p, "/") {
				if !validName(name) && name != "" && name != "…" {
					t.Errorf("invalid name %q in %q (%s)", name, p, e)
				}
				for what, f := range checks {
					if f(name) {
						found[what]++
					}
				}
			}
		}
	}
	for what := range checks {
		if found[what] == 0 {
			t.Errorf("no name with %s", what)
		}
	}
	// And they are on disk, not just in events.
	ondisk := map[string]int{}
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		for what, f := range checks {
			if f(fi.Name()) {
				ondisk[what]++
			}
		}
		return nil
	})
	for what := range checks {
		if ondisk[what] == 0 {
			t.Logf("no name with %s left on disk (created: %d)", what, found[what])
		}
	}
	for _, n := range append(append([]string{}, awkwardNames...), shortNames...) {
		if !validName(n) {
			t.Errorf("invalid fragment %q", n)
		}
	}
}

func TestPathsUnderPathMax(t *testing.T) {
	root := filepath.Join(t.TempDir(), "m")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	// The harness's bound, for a slave root as long as this one.
	maxRel := 4095 - 1 - len(root)
	g, err := NewGen(GenConfig{Root: root, Seed: 11, MaxBytes: 32 << 20, MaxRel: maxRel, Chown: os.Geteuid() == 0})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Populate(150); err != nil {
		t.Fatal(err)
	}
	g.SetTarget(g.Entries())
	deep, longestOp := 0, 0
	for range 6000 {
		e := g.Step()
		if e.Kind == "deep_chain" && e.Err == "" {
			deep = max(deep, int(e.Arg))
		}
		for _, p := range e.Paths {
			l := len(root) + 1 + len(p)
			if l >= pathMax {
				t.Fatalf("path of %d bytes (PATH_MAX %d): %s", l, pathMax, e)
			}
			longestOp = max(longestOp, l)
		}
	}
	if deep < 100 {
		t.Errorf("deepest chain %d levels, want 100 or more", deep)
	}
	longest := 0
	var walk func(abs string, depth int)
	walk = func(abs string, depth int) {
		longest = max(longest, len(abs))
		if len(abs) >= pathMax {
			t.Fatalf("%d-byte path on disk", len(abs))
		}
		var st unix.Stat_t
		if err := unix.Lstat(abs, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			target, err := os.Readlink(abs)
			if err != nil {
				t.Fatal(err)
			}
			if len(target) >= pathMax {
				t.Fatalf("symlink target of %d bytes", len(target))
			}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return
		}
		names, err := readNames(abs)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			walk(abs+"/"+n, depth+1)
		}
	}
	walk(root, 0)
	t.Logf("longest path on disk at the end: %d bytes; in an op: %d; deepest chain %d", longest, longestOp, deep)
	if longestOp < pathMax-200 {
		t.Errorf("no path came near PATH_MAX: the longest was %d bytes", longestOp)
	}
}

func TestRelevantEventsFollowsRenames(t *testing.T) {
	h := []Event{
		{Seq: 1, Kind: "mkdir", Paths: []string{"a"}, IDs: []uint64{1}},
		{Seq: 2, Kind: "create", Paths: []string{"a/f"}, IDs: []uint64{2}},
		{Seq: 3, Kind: "link", Paths: []string{"a/f", "x/g"}, IDs: []uint64{2}},
		{Seq: 4, Kind: "append", Paths: []string{"x/g"}, IDs: []uint64{2}},
		{Seq: 5, Kind: "create", Paths: []string{"other"}, IDs: []uint64{9}},
		{Seq: 6, Kind: "rename_dir_samedir", Paths: []string{"a", "b"}, Moves: []move{{"a", "b"}}, IDs: []uint64{1}},
		{Seq: 7, Kind: "chmod", Paths: []string{"b/f"}, IDs: []uint64{2}},
		{Seq: 8, Kind: "create", Paths: []string{"unrelated/z"}, IDs: []uint64{10}},
	}
	evs, total := relevantEvents(h, "b/f", 10)
	var seqs []int
	for _, e := range evs {
		seqs = append(seqs, e.Seq)
	}
	want := []int{1, 2, 3, 4, 6, 7}
	if !slices.Equal(seqs, want) || total != len(want) {
		t.Fatalf("events for b/f: %v (total %d), want %v", seqs, total, want)
	}
	evs, _ = relevantEvents(h, "b/f", 2)
	if len(evs) != 2 || evs[0].Seq != 6 || evs[1].Seq != 7 {
		t.Fatalf("limit keeps the latest: %v", evs)
	}
}
