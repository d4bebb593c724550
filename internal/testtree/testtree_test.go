package testtree

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/georep/georep/internal/treecmp"
	"golang.org/x/sys/unix"
)

const testBig = 1<<20 + 7 // exercises a partial last chunk

func isRoot() bool { return os.Geteuid() == 0 }

// tempDir is t.TempDir whose read-only directories are made writable again
// before cleanup, so that removal also works without root.
func tempDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	t.Cleanup(func() {
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				_ = os.Chmod(p, 0755)
			}
			return nil
		})
	})
	return d
}

func build(t *testing.T, opt Options) string {
	t.Helper()
	d := tempDir(t)
	err := Build(d, opt)
	if errors.Is(err, unix.ENOTSUP) {
		t.Skipf("file system lacks a feature: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func lstat(t *testing.T, p string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat: %v", err)
	}
	return &st
}

func TestBuildCases(t *testing.T) {
	opt := Options{BigFileSize: testBig, Seed: 1}
	d := build(t, opt)

	if n := len(filepath.Base(LongName)); n != 255 {
		t.Fatalf("LongName base is %d bytes", n)
	}
	if st := lstat(t, d+"/"+LongName); st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("long name is not a file")
	}
	if st := lstat(t, d+"/"+BigFile); st.Size != testBig {
		t.Errorf("big file size %d, want %d", st.Size, testBig)
	}
	for p, size := range map[string]int64{"empty": 0, "size/64k": 65536, "size/64k+1": 65537} {
		if st := lstat(t, d+"/"+p); st.Size != size {
			t.Errorf("%s size %d, want %d", p, st.Size, size)
		}
	}
	lstat(t, d+"/deep/d0/d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/d11/d12/d13/d14/d15/d16/d17/d18/d19/bottom.txt")

	a, b, c := lstat(t, d+"/"+HardlinkA), lstat(t, d+"/"+HardlinkB), lstat(t, d+"/"+HardlinkC)
	if a.Nlink != 3 || a.Ino != b.Ino || a.Ino != c.Ino {
		t.Errorf("hardlink group: nlink %d, inodes %d %d %d", a.Nlink, a.Ino, b.Ino, c.Ino)
	}

	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(d+"/"+BinaryXattrFile, "user.binary", buf)
	if err != nil || !bytes.Equal(buf[:n], []byte(BinaryXattrValue)) {
		t.Errorf("binary xattr = %q, %v", buf[:n], err)
	}
	if n, err := unix.Lgetxattr(d+"/xattrs/large", "user.large", nil); err != nil || n != 4000 {
		t.Errorf("large xattr: %d bytes, %v", n, err)
	}
	if n, err := unix.Lgetxattr(d+"/xattrs/empty-value", "user.empty", nil); err != nil || n != 0 {
		t.Errorf("empty xattr: %d bytes, %v", n, err)
	}

	// Nanosecond mtimes everywhere, with sub-microsecond digits.
	for _, p := range []string{"small/hello.txt", "links/weird", "special/fifo", "deep/d0", "names/new\nline", ""} {
		st := lstat(t, filepath.Join(d, p))
		if st.Mtim.Sec < buildBase || st.Mtim.Nsec%1000 == 0 {
			t.Errorf("%q mtime %d.%09d", p, st.Mtim.Sec, st.Mtim.Nsec)
		}
	}

	for link, want := range map[string]string{
		"links/rel": "../x", "links/abs": "/etc/passwd", "links/dangling": "does-not-exist",
		"links/weird": "target with space \xff",
	} {
		if got, err := os.Readlink(d + "/" + link); err != nil || got != want {
			t.Errorf("readlink %s = %q, %v; want %q", link, got, err, want)
		}
	}
	if st := lstat(t, d+"/special/fifo"); st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Error("special/fifo is not a FIFO")
	}
	for p, want := range map[string]uint32{
		"modes/setuid": 04755, "modes/setgid": 02755, "modes/setgid-dir": 02775,
		"modes/sticky-dir": 01777, "modes/ro": 0400, "modes/none": 0, "modes/private-dir": 0700,
	} {
		if got := lstat(t, d+"/"+p).Mode & 07777; got != want {
			t.Errorf("%s mode %#o, want %#o", p, got, want)
		}
	}
	for _, p := range []string{"names/dir\nwith newline/b\nc", "names/\xff\xfe", "names/caf\xe9", "names/ leading space",
		"names/trailing space ", "names/tab\there", "names/%41", "names/back\\slash", "many/f499", "emptydir"} {
		lstat(t, d+"/"+p)
	}
	ents, err := os.ReadDir(d + "/names")
	if err != nil {
		t.Fatal(err)
	}
	longDir := false
	for _, e := range ents {
		if e.IsDir() && len(e.Name()) == 255 {
			longDir = true
		}
	}
	if !longDir {
		t.Error("no 255-byte directory name")
	}
	if ents, err := os.ReadDir(d + "/many"); err != nil || len(ents) != 500 {
		t.Errorf("many/ has %d entries, %v", len(ents), err)
	}

	if isRoot() {
		if st := lstat(t, d+"/"+CharDev); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
			t.Errorf("char device: mode %#o rdev %#x", st.Mode, st.Rdev)
		}
		if st := lstat(t, d+"/"+BlockDev); st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != unix.Mkdev(7, 200) {
			t.Errorf("block device: mode %#o rdev %#x", st.Mode, st.Rdev)
		}
		for p, want := range map[string][2]uint32{
			"owners/f-12345": {UID1, GID1}, "owners/link": {UID2, GID2}, "owners/fifo": {UID1, GID1},
			"owners/dir": {UID1, GID1}, "modes/setuid": {UID2, GID2},
			"modes/setgid-dir/inherits-group": {0, GID1},
		} {
			if st := lstat(t, d+"/"+p); st.Uid != want[0] || st.Gid != want[1] {
				t.Errorf("%s owner %d:%d, want %d:%d", p, st.Uid, st.Gid, want[0], want[1])
			}
		}
		if _, err := unix.Lgetxattr(d+"/xattrs/trusted", "trusted.testtree", nil); err != nil {
			t.Errorf("trusted xattr: %v", err)
		}
	} else {
		if _, err := os.Lstat(d + "/" + CharDev); err == nil {
			t.Error("char device built without root")
		}
	}
}

func TestDefaultBigFileSize(t *testing.T) {
	d := build(t, Options{})
	if st := lstat(t, d+"/"+BigFile); st.Size != DefaultBigFileSize {
		t.Errorf("big file size %d, want %d", st.Size, DefaultBigFileSize)
	}
}

func TestBuildRejectsNonEmpty(t *testing.T) {
	d := tempDir(t)
	if err := os.WriteFile(d+"/x", nil, 0644); err != nil {
		t.Fatal(err)
	}
	if err := Build(d, Options{BigFileSize: 1}); err == nil {
		t.Error("Build into a non-empty dir: no error")
	}
	if err := Build(d+"/missing", Options{BigFileSize: 1}); err == nil {
		t.Error("Build into a missing dir: no error")
	}
}

func TestBuildDeterministicAndMutate(t *testing.T) {
	opt := Options{BigFileSize: testBig, Seed: 42}
	a, b := build(t, opt), build(t, opt)

	diffs, err := treecmp.Compare(a, b, treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 0 {
		t.Fatalf("two builds with the same seed differ: %v", diffs)
	}

	// A different seed gives different content and times.
	c := build(t, Options{BigFileSize: testBig, Seed: 43})
	diffs, err = treecmp.Compare(a, c, treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) == 0 {
		t.Fatal("builds with different seeds are equal")
	}

	before, err := treecmp.Snapshot(a, treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := Mutate(b, opt); err != nil {
		t.Fatal(err)
	}
	diffs, err = treecmp.Compare(a, b, treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range diffs {
		got[d.Path] += d.What + "; "
	}
	for p, what := range map[string]string{
		".":                       "mtime",
		BigFile:                   "content differs",
		"small/4k.txt":            "content differs",
		"small/hello.txt":         "size",
		"size/64k":                "size",
		"size/64k+1":              "size",
		"small/three":             "only in a",
		"small/three renamed":     "only in b",
		"deep/d0/one":             "only in b",
		"many":                    "only in a",
		"deep/d0/d1/many moved":   "only in b",
		"deep/d0/d1/d2":           "only in a",
		"names/percent%":          "only in a",
		"names/%41":               "size",
		"names/tab\there":         "only in a",
		"names/dir\nwith newline": "only in a",
		"names/added caf\xe9 %":   "only in b",
		"new":                     "only in b",
		HardlinkA:                 "hardlink group",
		HardlinkC:                 "only in a",
		"hard/pair/p1":            "nlink",
		"modes/ro":                "mode",
		"modes/private-dir":       "mode",
		"modes/setuid":            "mode",
		"xattrs/text":             "value differs",
		"xattrs/empty-value":      `"user.added": only in b`,
		"xattrs/multi":            `"user.b": only in a`,
		"xattrs":                  "xattr",
		"links/rel":               "symlink target",
		"links/dangling":          "only in a",
		"special/fifo":            "only in a",
		"empty":                   "type: a=file b=dir",
		"emptydir":                "type: a=dir b=file",
		"small":                   "mtime",
		"small/kib.bin":           "only in a",
	} {
		if !strings.Contains(got[p], what) {
			t.Errorf("after Mutate: %q: got %q, want a diff mentioning %q", p, got[p], what)
		}
	}
	if isRoot() && !strings.Contains(got["owners/f-12345"], "owner") {
		t.Errorf("after Mutate: owners/f-12345: got %q, want owner diff", got["owners/f-12345"])
	}
	// Nothing reported below entries that are missing or changed type.
	for p := range got {
		for _, parent := range []string{"many/", "deep/d0/d1/d2/", "new/", "empty/", "emptydir/"} {
			if strings.HasPrefix(p, parent) {
				t.Errorf("diff below pruned %q: %q", parent, p)
			}
		}
	}

	// Mutate is deterministic: the same changes on a give b again.
	if err := Mutate(a, opt); err != nil {
		t.Fatal(err)
	}
	diffs, err = treecmp.Compare(a, b, treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 0 {
		t.Fatalf("two mutated builds differ: %v", diffs)
	}
	after, err := treecmp.Snapshot(a, treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	changed := treecmp.Changed(before, after)
	for _, p := range []string{"small/4k.txt", "many", "deep/d0/d1/many moved", "modes/ro", "xattrs/multi"} {
		if !slices.Contains(changed, p) {
			t.Errorf("Changed misses %q", p)
		}
	}
	for _, p := range []string{"x", "size/64k-1", "xattrs/large", LongName} {
		if slices.Contains(changed, p) {
			t.Errorf("Changed reports untouched %q", p)
		}
	}
}
