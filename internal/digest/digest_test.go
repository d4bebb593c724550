package digest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/beneath"
)

func build(t *testing.T, root string) *Tree {
	t.Helper()
	r, err := beneath.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tr, err := Build(context.Background(), r, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// Two trees alike have the same root digest; each kind of change moves it
// and Compare names it, descending only into the directory that changed.
func TestBuildAndCompare(t *testing.T) {
	mk := func() string {
		d := t.TempDir()
		os.MkdirAll(filepath.Join(d, "a/b"), 0o755)
		os.MkdirAll(filepath.Join(d, "c"), 0o755)
		os.WriteFile(filepath.Join(d, "a/b/f"), []byte("data"), 0o644)
		os.WriteFile(filepath.Join(d, "c/g"), []byte("more"), 0o644)
		os.Link(filepath.Join(d, "c/g"), filepath.Join(d, "c/h"))
		os.Symlink("a/b/f", filepath.Join(d, "s"))
		return d
	}
	x, y := mk(), mk()
	// The same mtimes, as a replica has.
	for _, p := range []string{"a/b/f", "c/g", "a/b", "a", "c"} {
		fi, _ := os.Stat(filepath.Join(x, p))
		os.Chtimes(filepath.Join(y, p), fi.ModTime(), fi.ModTime())
	}
	var st unix.Stat_t
	unix.Lstat(filepath.Join(x, "s"), &st)
	unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(y, "s"), []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
	tx, ty := build(t, x), build(t, y)
	if tx.Dirs[""].Sum != ty.Dirs[""].Sum {
		t.Fatalf("alike trees differ: %v", tx.Dirs[""].Entries)
	}
	if e := tx.Dirs["c"].Entries; e[0].LinkKey != "c/g" || e[1].LinkKey != "c/g" {
		t.Errorf("hard-link keys %q %q", e[0].LinkKey, e[1].LinkKey)
	}
	os.WriteFile(filepath.Join(y, "a/b/f"), []byte("DATA"), 0o644)
	fi, _ := os.Stat(filepath.Join(x, "a/b/f"))
	os.Chtimes(filepath.Join(y, "a/b/f"), fi.ModTime(), fi.ModTime())
	ty = build(t, y)
	diffs, descend := Compare("", tx.Dirs[""].Entries, ty.Dirs[""].Entries, nil)
	if len(diffs) != 0 || len(descend) != 1 || descend[0] != "a" {
		t.Fatalf("root: diffs %v, descend %v", diffs, descend)
	}
	diffs, descend = Compare("a/b", tx.Dirs["a/b"].Entries, ty.Dirs["a/b"].Entries, nil)
	if len(diffs) != 1 || diffs[0].Kind != Content || diffs[0].Path != "a/b/f" || len(descend) != 0 {
		t.Fatalf("a/b: diffs %v, descend %v", diffs, descend)
	}
}

// A cache gives the hash of a file not written since, and not of one
// written since (even with its size and mtime put back).
func TestCache(t *testing.T) {
	d := t.TempDir()
	f := filepath.Join(d, "f")
	os.WriteFile(f, []byte("one"), 0o644)
	r, err := beneath.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := NewCache()
	b1, err := Build(context.Background(), r, Options{Cache: c})
	if err != nil || b1.Files != 1 || b1.Cached != 0 {
		t.Fatalf("first: %+v %v", b1, err)
	}
	b2, _ := Build(context.Background(), r, Options{Cache: c})
	if b2.Files != 0 || b2.Cached != 1 || b2.Dirs[""].Sum != b1.Dirs[""].Sum {
		t.Fatalf("second: files %d cached %d", b2.Files, b2.Cached)
	}
	fi, _ := os.Stat(f)
	os.WriteFile(f, []byte("two"), 0o644)
	os.Chtimes(f, fi.ModTime(), fi.ModTime())
	b3, _ := Build(context.Background(), r, Options{Cache: c})
	if b3.Files != 1 || b3.Dirs[""].Sum == b1.Dirs[""].Sum {
		t.Fatalf("after a write with size and mtime put back: files %d, same digest %v", b3.Files, b3.Dirs[""].Sum == b1.Dirs[""].Sum)
	}
}
