package recorder_test

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/rules"
)

// After a burst of random directory moves across the rules' boundary
// (in → out, out → in, back and forth before the recorder reads the
// events), every directory the rules include must still be watched: a new
// file in each is recorded. A directory the recorder forgot while it was
// still in the tree is dark: nothing made or changed in it is ever
// journaled, and no gap says so (the 30-minute soak with rules and the
// trash: the slave silently missed every change below such directories).
func TestRecorderRulesChurn(t *testing.T) { watchers(t, testRecorderRulesChurn) }

func testRecorderRulesChurn(t *testing.T, watcher string) {
	rs, err := rules.New([]string{"*.bak", "*.tmp/", "/[a-c]*/", "!/b*/"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	for seed := int64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			f := newRecorderFixture(t, watcher, func(root string) {
				for _, d := range []string{"q/r/s", "x/y", "m/n/o/p", "k"} {
					os.MkdirAll(filepath.Join(root, d), 0o755)
				}
			}, rs)
			f.records()
			churnDirs(t, f.root, rand.New(rand.NewSource(seed)), 1200)
			f.recordsAllowGaps()
			probeIncluded(t, f, rs)
		})
	}
}

// churnDirs makes, moves and removes directories under root at random,
// as fast as it can: top-level names that the rules exclude ("a…", "c…",
// "x.bak") and include ("b…", "d…") alike.
func churnDirs(t *testing.T, root string, rng *rand.Rand, ops int) {
	names := []string{"a1", "a2", "b1", "c1", "d1", "d2", "e", "x.bak", "y.tmp", "z", "q", "k"}
	dirs := func() []string {
		var out []string
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				out = append(out, p)
			}
			return nil
		})
		return out
	}
	for i := 0; i < ops; i++ {
		all := dirs()
		src := all[rng.Intn(len(all))]
		dst := all[rng.Intn(len(all))]
		if rng.Intn(3) == 0 {
			dst = root // the top level, where /[a-c]*/ applies
		}
		name := names[rng.Intn(len(names))]
		switch k := rng.Intn(12); {
		case k < 5 && src != root && !strings.HasPrefix(dst+"/", src+"/"):
			os.Rename(src, filepath.Join(dst, name))
		case k < 6 && src != root && dst != root && !strings.HasPrefix(dst+"/", src+"/") && !strings.HasPrefix(src+"/", dst+"/"):
			unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_EXCHANGE)
		case k < 7 && src != root:
			os.Rename(filepath.Join(dst, name), src) // over an empty directory, or nothing
		case k < 9:
			os.Mkdir(filepath.Join(dst, name), 0o755)
		case k < 8 && src != root && len(all) > 8:
			os.RemoveAll(src)
		default:
			os.WriteFile(filepath.Join(dst, fmt.Sprintf("f%d", i%7)), []byte("x"), 0o644)
		}
	}
}

// probeIncluded makes a file in every directory the rules include and
// checks that the recorder records each.
func probeIncluded(t *testing.T, f *recorderFixture, rs *rules.Rules) {
	t.Helper()
	type probe struct{ dir, rel string }
	var probes []probe
	filepath.WalkDir(f.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(f.root, p)
		if rel != "." && rs.Excluded(rel, true) {
			return filepath.SkipDir
		}
		probes = append(probes, probe{p, rel})
		return nil
	})
	for i, p := range probes {
		if err := os.WriteFile(filepath.Join(p.dir, fmt.Sprintf("probe%d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	recs := f.recordsAllowGaps()
	made := map[gfid.GFID]bool{}
	for _, r := range recs {
		if r.Op == changelog.OpCreate {
			made[r.GFID] = true
		}
	}
	var dark []string
	for i, p := range probes {
		g, err := f.tree.NS.Get(filepath.Join(p.dir, fmt.Sprintf("probe%d", i)))
		if errors.Is(err, gfid.ErrNoGFID) || (err == nil && !made[g]) {
			dark = append(dark, p.rel)
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if len(dark) > 0 {
		t.Errorf("%d of %d included directories are no longer watched (a file made in each was not recorded): %q", len(dark), len(probes), dark)
	}
}

// A directory moved twice before the recorder reads the first move (the
// name it was moved to is gone again by then) is recorded as two renames,
// not as removed while it lives on: that was a gap, and each gap a crawl
// of the whole tree.
func TestRecorderMovedTwice(t *testing.T) { watchers(t, testMovedTwice) }

func testMovedTwice(t *testing.T, watcher string) {
	f := newRecorderFixture(t, watcher, func(root string) {
		for _, d := range []string{"a/sub", "p", "r"} {
			os.MkdirAll(filepath.Join(root, d), 0o755)
		}
	})
	f.records()
	path := func(p string) string { return filepath.Join(f.root, p) }
	g := f.gfidOf("a")
	names := []string{"a", "p/q", "r/s"}
	for i := 0; i < 20; i++ {
		for k := 1; k < len(names); k++ {
			if err := os.Rename(path(names[k-1]), path(names[k])); err != nil {
				t.Fatal(err)
			}
		}
		recs := f.records() // fails on a gap
		if find(recs, func(r changelog.Record) bool { return r.Op == changelog.OpRmdir }) {
			t.Fatalf("round %d: a directory moved twice was recorded removed: %v", i, recs)
		}
		if !find(recs, func(r changelog.Record) bool {
			return r.Op == changelog.OpRename && r.GFID == g && r.Name2 == filepath.Base(names[len(names)-1])
		}) {
			t.Fatalf("round %d: no rename to its last name: %v", i, recs)
		}
		if err := os.Rename(path(names[len(names)-1]), path(names[0])); err != nil {
			t.Fatal(err)
		}
		f.records()
		if got := f.gfidOf("a/sub"); got.IsZero() {
			t.Fatal("no gfid below")
		}
	}
	// Still watched where it is: a file made in it is recorded.
	os.WriteFile(path("a/sub/x"), []byte("x"), 0o644)
	recs := f.records()
	if !find(recs, func(r changelog.Record) bool { return r.Op == changelog.OpCreate && r.Name == "x" }) {
		t.Fatalf("a file made in the moved directory was not recorded: %v", recs)
	}
}
