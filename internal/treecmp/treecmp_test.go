package treecmp

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

var t0 = unix.Timespec{Sec: 1_600_000_000, Nsec: 123_456_789}

const (
	weirdName = "weird\nname \xff"
	longName  = "a234567890" + "0123456789" + "0123456789" + "0123456789" + "0123456789" +
		"0123456789" + "0123456789" + "0123456789" + "0123456789" + "0123456789" +
		"0123456789" + "0123456789" + "0123456789" + "0123456789" + "0123456789" +
		"0123456789" + "0123456789" + "0123456789" + "0123456789" + "0123456789" +
		"0123456789" + "0123456789" + "0123456789" + "0123456789" + "0123456789" + "12345"
)

func isRoot() bool { return os.Geteuid() == 0 }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, data string, perm uint32) {
	t.Helper()
	must(t, os.WriteFile(path, []byte(data), 0600))
	must(t, unix.Chmod(path, perm))
}

func setxattr(t *testing.T, path, name, value string) {
	t.Helper()
	err := unix.Lsetxattr(path, name, []byte(value), 0)
	if errors.Is(err, unix.ENOTSUP) {
		t.Skipf("file system does not support xattrs: %v", err)
	}
	must(t, err)
}

func setMtime(t *testing.T, path string, ts unix.Timespec) {
	t.Helper()
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
}

// retime gives every entry under root (root included) the mtime t0.
func retime(t *testing.T, root string) {
	t.Helper()
	must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{t0, t0}, unix.AT_SYMLINK_NOFOLLOW)
	}))
}

// mkBase builds the small tree the tests compare, with all mtimes t0.
func mkBase(t *testing.T, root string) {
	t.Helper()
	writeFile(t, root+"/f", "hello world\n", 0644)
	must(t, os.Mkdir(root+"/sub", 0755))
	writeFile(t, root+"/sub/g", "content g\n", 0600)
	must(t, os.Mkdir(root+"/sub/deeper", 0755))
	writeFile(t, root+"/sub/deeper/h", "h\n", 0644)
	must(t, os.Symlink("f", root+"/link"))
	must(t, unix.Mkfifo(root+"/fifo", 0600))
	must(t, unix.Chmod(root+"/fifo", 0644))
	must(t, os.Mkdir(root+"/hard", 0755))
	writeFile(t, root+"/hard/x", "linked\n", 0644)
	must(t, os.Link(root+"/hard/x", root+"/hard/y"))
	for _, n := range []string{"p", "r"} {
		writeFile(t, root+"/hard/"+n, "same\n", 0644)
	}
	must(t, os.Link(root+"/hard/p", root+"/hard/q"))
	must(t, os.Link(root+"/hard/r", root+"/hard/s"))
	writeFile(t, root+"/xf", "xattrs\n", 0644)
	setxattr(t, root+"/xf", "user.k", "v")
	setxattr(t, root+"/xf", "user.l", "\x00\xff")
	must(t, os.Mkdir(root+"/xd", 0755))
	setxattr(t, root+"/xd", "user.d", "dir")
	writeFile(t, root+"/"+weirdName, "weird\n", 0644)
	writeFile(t, root+"/"+longName, "long\n", 0644)
	must(t, os.MkdirAll(root+"/dirtree/a/b", 0755))
	writeFile(t, root+"/dirtree/a/b/c", "c\n", 0644)
	writeFile(t, root+"/big", strings.Repeat("0123456789abcdef", 1<<16), 0644)
	if isRoot() {
		must(t, unix.Mknod(root+"/dev", unix.S_IFCHR|0600, int(unix.Mkdev(1, 3))))
		must(t, unix.Chmod(root+"/dev", 0666))
	}
	retime(t, root)
}

func pair(t *testing.T) (string, string) {
	t.Helper()
	a, b := t.TempDir(), t.TempDir()
	mkBase(t, a)
	mkBase(t, b)
	return a, b
}

func paths(diffs []Diff) []string {
	var out []string
	for _, d := range diffs {
		if len(out) == 0 || out[len(out)-1] != d.Path {
			out = append(out, d.Path)
		}
	}
	return out
}

func checkSorted(t *testing.T, diffs []Diff) {
	t.Helper()
	if !sort.SliceIsSorted(diffs, func(i, j int) bool { return diffs[i].Path < diffs[j].Path }) {
		t.Errorf("diffs not sorted by path: %v", diffs)
	}
}

func TestIdentical(t *testing.T) {
	a, b := pair(t)
	diffs, err := Compare(a, b, Options{})
	must(t, err)
	if len(diffs) != 0 {
		t.Fatalf("identical trees: got diffs %v", diffs)
	}
	diffs, err = Compare(a, a, Options{})
	must(t, err)
	if len(diffs) != 0 {
		t.Fatalf("tree against itself: got diffs %v", diffs)
	}
}

func TestDifferences(t *testing.T) {
	type tc struct {
		name      string
		rootOnly  bool
		keepTimes bool // do not reset mtimes to t0 after modify
		modify    func(t *testing.T, b string)
		want      []string // exactly the paths with diffs
		what      string   // substring expected in one of the diffs
	}
	cases := []tc{
		{name: "content same size", want: []string{"f"}, what: "content differs at offset 6",
			modify: func(t *testing.T, b string) { writeFile(t, b+"/f", "hello WORLD\n", 0644) }},
		{name: "content deep in big file", want: []string{"big"}, what: "content differs at offset 700001",
			modify: func(t *testing.T, b string) {
				f, err := os.OpenFile(b+"/big", os.O_WRONLY, 0)
				must(t, err)
				_, err = f.WriteAt([]byte{'X'}, 700001)
				must(t, err)
				must(t, f.Close())
			}},
		{name: "size", want: []string{"f"}, what: "size",
			modify: func(t *testing.T, b string) { writeFile(t, b+"/f", "hello world!\n", 0644) }},
		{name: "mode bit", want: []string{"f"}, what: "mode",
			modify: func(t *testing.T, b string) { must(t, unix.Chmod(b+"/f", 0664)) }},
		{name: "setuid bit", want: []string{"sub/g"}, what: "mode: a=0600 b=04600",
			modify: func(t *testing.T, b string) { must(t, unix.Chmod(b+"/sub/g", 04600)) }},
		{name: "sticky dir", want: []string{"sub"}, what: "mode",
			modify: func(t *testing.T, b string) { must(t, unix.Chmod(b+"/sub", 01755)) }},
		{name: "uid", rootOnly: true, want: []string{"f"}, what: "owner",
			modify: func(t *testing.T, b string) { must(t, os.Lchown(b+"/f", 12345, -1)) }},
		{name: "gid of symlink", rootOnly: true, want: []string{"link"}, what: "owner",
			modify: func(t *testing.T, b string) { must(t, os.Lchown(b+"/link", -1, 4243)) }},
		{name: "mtime 1ns", keepTimes: true, want: []string{"f"}, what: "mtime",
			modify: func(t *testing.T, b string) {
				setMtime(t, b+"/f", unix.Timespec{Sec: t0.Sec, Nsec: t0.Nsec + 1})
			}},
		{name: "symlink mtime", keepTimes: true, want: []string{"link"}, what: "mtime",
			modify: func(t *testing.T, b string) {
				setMtime(t, b+"/link", unix.Timespec{Sec: t0.Sec + 1, Nsec: t0.Nsec})
			}},
		{name: "fifo mtime", keepTimes: true, want: []string{"fifo"}, what: "mtime",
			modify: func(t *testing.T, b string) {
				setMtime(t, b+"/fifo", unix.Timespec{Sec: t0.Sec, Nsec: t0.Nsec - 1})
			}},
		{name: "dir mtime", keepTimes: true, want: []string{"sub/deeper"}, what: "mtime",
			modify: func(t *testing.T, b string) {
				setMtime(t, b+"/sub/deeper", unix.Timespec{Sec: t0.Sec, Nsec: t0.Nsec + 1})
			}},
		{name: "symlink target", want: []string{"link"}, what: "symlink target",
			modify: func(t *testing.T, b string) {
				must(t, os.Remove(b+"/link"))
				must(t, os.Symlink("f\xff", b+"/link"))
			}},
		{name: "file vs dir", want: []string{"f"}, what: "type: a=file b=dir",
			modify: func(t *testing.T, b string) {
				must(t, os.Remove(b+"/f"))
				must(t, os.Mkdir(b+"/f", 0644))
			}},
		{name: "dir with contents vs file", want: []string{"dirtree"}, what: "type: a=dir b=file",
			modify: func(t *testing.T, b string) {
				must(t, os.RemoveAll(b+"/dirtree"))
				writeFile(t, b+"/dirtree", "", 0755)
			}},
		{name: "fifo vs file", want: []string{"fifo"}, what: "type: a=fifo b=file",
			modify: func(t *testing.T, b string) {
				must(t, os.Remove(b+"/fifo"))
				writeFile(t, b+"/fifo", "", 0644)
			}},
		{name: "missing entry", want: []string{"sub/g"}, what: "only in a",
			modify: func(t *testing.T, b string) { must(t, os.Remove(b+"/sub/g")) }},
		{name: "missing tree", want: []string{"sub"}, what: "only in a",
			modify: func(t *testing.T, b string) { must(t, os.RemoveAll(b+"/sub")) }},
		{name: "extra entry", want: []string{"sub/deeper/extra"}, what: "only in b",
			modify: func(t *testing.T, b string) { writeFile(t, b+"/sub/deeper/extra", "", 0644) }},
		{name: "xattr value", want: []string{"xf"}, what: "value differs",
			modify: func(t *testing.T, b string) { setxattr(t, b+"/xf", "user.k", "V") }},
		{name: "missing xattr", want: []string{"xf"}, what: `"user.l": only in a`,
			modify: func(t *testing.T, b string) { must(t, unix.Lremovexattr(b+"/xf", "user.l")) }},
		{name: "extra xattr on dir", want: []string{"xd"}, what: `"user.new": only in b`,
			modify: func(t *testing.T, b string) { setxattr(t, b+"/xd", "user.new", "") }},
		{name: "empty vs absent xattr", want: []string{"f"}, what: "only in b",
			modify: func(t *testing.T, b string) { setxattr(t, b+"/f", "user.empty", "") }},
		{name: "trusted xattr", rootOnly: true, want: []string{"f"}, what: `"trusted.t": only in b`,
			modify: func(t *testing.T, b string) { setxattr(t, b+"/f", "trusted.t", "x") }},
		{name: "hardlink vs copies", want: []string{"hard/x", "hard/y"}, what: "hardlink group",
			modify: func(t *testing.T, b string) {
				must(t, os.Remove(b+"/hard/y"))
				writeFile(t, b+"/hard/y", "linked\n", 0644)
			}},
		{name: "hardlink partition", want: []string{"hard/p", "hard/q", "hard/r", "hard/s"}, what: "hardlink group",
			modify: func(t *testing.T, b string) {
				must(t, os.Remove(b+"/hard/q"))
				must(t, os.Remove(b+"/hard/r"))
				must(t, os.Link(b+"/hard/p", b+"/hard/r"))
				must(t, os.Link(b+"/hard/s", b+"/hard/q"))
			}},
		{name: "hardlink outside tree", want: []string{"f"}, what: "nlink: a=1 b=2",
			modify: func(t *testing.T, b string) {
				must(t, os.Link(b+"/f", filepath.Join(t.TempDir(), "outside")))
			}},
		{name: "weird name only in b", want: []string{"new\nline\x80\xff"}, what: "only in b",
			modify: func(t *testing.T, b string) { writeFile(t, b+"/new\nline\x80\xff", "", 0644) }},
		{name: "weird name only in a", want: []string{weirdName}, what: "only in a",
			modify: func(t *testing.T, b string) { must(t, os.Remove(b+"/"+weirdName)) }},
		{name: "255-byte name", want: []string{longName}, what: "only in a",
			modify: func(t *testing.T, b string) { must(t, os.Remove(b+"/"+longName)) }},
		{name: "rdev", rootOnly: true, want: []string{"dev"}, what: "rdev: a=1:3 b=1:5",
			modify: func(t *testing.T, b string) {
				must(t, os.Remove(b+"/dev"))
				must(t, unix.Mknod(b+"/dev", unix.S_IFCHR|0666, int(unix.Mkdev(1, 5))))
				must(t, unix.Chmod(b+"/dev", 0666))
			}},
		{name: "root mode", want: []string{"."}, what: "mode",
			modify: func(t *testing.T, b string) { must(t, unix.Chmod(b, 0751)) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.rootOnly && !isRoot() {
				t.Skip("needs root")
			}
			a, b := pair(t)
			c.modify(t, b)
			if !c.keepTimes {
				retime(t, b)
			}
			diffs, err := Compare(a, b, Options{})
			must(t, err)
			checkSorted(t, diffs)
			if got := paths(diffs); !slices.Equal(got, c.want) {
				t.Fatalf("diff paths = %q, want %q; diffs: %v", got, c.want, diffs)
			}
			found := false
			for _, d := range diffs {
				if strings.Contains(d.What, c.what) {
					found = true
				}
			}
			if !found {
				t.Errorf("no diff mentions %q: %v", c.what, diffs)
			}
			// The other way round finds the same paths.
			rev, err := Compare(b, a, Options{})
			must(t, err)
			if got := paths(rev); !slices.Equal(got, c.want) {
				t.Errorf("reversed: diff paths = %q, want %q; diffs: %v", got, c.want, rev)
			}
		})
	}
}

func TestIgnoreTop(t *testing.T) {
	a, b := pair(t)
	must(t, os.MkdirAll(b+"/.georep/tmp", 0700))
	writeFile(t, b+"/.georep/tmp/x", "state", 0600)
	retime(t, b)

	diffs, err := Compare(a, b, Options{})
	must(t, err)
	if got := paths(diffs); !slices.Equal(got, []string{".georep"}) {
		t.Fatalf("without IgnoreTop: %v", diffs)
	}
	diffs, err = Compare(a, b, Options{IgnoreTop: []string{".georep"}})
	must(t, err)
	if len(diffs) != 0 {
		t.Fatalf("with IgnoreTop: %v", diffs)
	}

	// Only directly under the root.
	must(t, os.Mkdir(b+"/sub/.georep", 0700))
	retime(t, b)
	diffs, err = Compare(a, b, Options{IgnoreTop: []string{".georep"}})
	must(t, err)
	if got := paths(diffs); !slices.Equal(got, []string{"sub/.georep"}) {
		t.Fatalf("IgnoreTop applied below the root: %v", diffs)
	}
}

func TestIgnoreXattrPrefixes(t *testing.T) {
	a, b := pair(t)
	setxattr(t, b+"/f", "user.georep.mark", "1")
	setxattr(t, b, "user.georep.root", "1")
	if isRoot() {
		setxattr(t, b+"/sub", "trusted.georep.gfid", "\x01\x02")
	}
	want := []string{".", "f"}
	if isRoot() {
		want = []string{".", "f", "sub"}
	}
	diffs, err := Compare(a, b, Options{})
	must(t, err)
	if got := paths(diffs); !slices.Equal(got, want) {
		t.Fatalf("without ignore: paths %q, want %q: %v", got, want, diffs)
	}
	opt := Options{IgnoreXattrPrefixes: []string{"trusted.georep.", "user.georep."}}
	diffs, err = Compare(a, b, opt)
	must(t, err)
	if len(diffs) != 0 {
		t.Fatalf("with ignore: %v", diffs)
	}
	// Other user.* xattrs still count.
	setxattr(t, b+"/f", "user.georepx", "1")
	diffs, err = Compare(a, b, opt)
	must(t, err)
	if got := paths(diffs); !slices.Equal(got, []string{"f"}) {
		t.Fatalf("user.georepx ignored: %v", diffs)
	}
}

func TestSkipRootMetaAndDirMtime(t *testing.T) {
	a, b := pair(t)
	must(t, unix.Chmod(b, 0700))
	setMtime(t, b, unix.Timespec{Sec: 1, Nsec: 2})
	diffs, err := Compare(a, b, Options{})
	must(t, err)
	if got := paths(diffs); !slices.Equal(got, []string{"."}) || len(diffs) != 2 {
		t.Fatalf("root meta: %v", diffs)
	}
	diffs, err = Compare(a, b, Options{SkipRootMeta: true})
	must(t, err)
	if len(diffs) != 0 {
		t.Fatalf("SkipRootMeta: %v", diffs)
	}

	setMtime(t, b+"/sub", unix.Timespec{Sec: 1, Nsec: 2})
	diffs, err = Compare(a, b, Options{SkipRootMeta: true})
	must(t, err)
	if got := paths(diffs); !slices.Equal(got, []string{"sub"}) {
		t.Fatalf("dir mtime: %v", diffs)
	}
	diffs, err = Compare(a, b, Options{SkipRootMeta: true, SkipDirMtime: true})
	must(t, err)
	if len(diffs) != 0 {
		t.Fatalf("SkipDirMtime: %v", diffs)
	}
	// File mtimes are still compared.
	setMtime(t, b+"/f", unix.Timespec{Sec: 1, Nsec: 2})
	diffs, err = Compare(a, b, Options{SkipRootMeta: true, SkipDirMtime: true})
	must(t, err)
	if got := paths(diffs); !slices.Equal(got, []string{"f"}) {
		t.Fatalf("file mtime with SkipDirMtime: %v", diffs)
	}
}

func TestDiffString(t *testing.T) {
	d := Diff{Path: "a\nb\xff", What: "only in a (file)"}
	if got, want := d.String(), `"a\nb\xff": only in a (file)`; got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
}

func TestCompareError(t *testing.T) {
	a := t.TempDir()
	if _, err := Compare(a, filepath.Join(a, "missing"), Options{}); err == nil {
		t.Error("Compare with a missing root: no error")
	}
}

func TestSnapshotChanged(t *testing.T) {
	a := t.TempDir()
	mkBase(t, a)
	s1, err := Snapshot(a, Options{})
	must(t, err)
	if _, ok := s1["."]; !ok {
		t.Error("root missing from snapshot")
	}
	if st, ok := s1["sub/g"]; !ok || st.Size != int64(len("content g\n")) || st.Mtime != t0.Nano() {
		t.Errorf("sub/g stamp = %+v, %v", st, ok)
	}
	if _, ok := s1[weirdName]; !ok {
		t.Error("weird name missing from snapshot")
	}

	// Reading (Compare, Snapshot) changes nothing.
	_, err = Compare(a, a, Options{})
	must(t, err)
	s2, err := Snapshot(a, Options{})
	must(t, err)
	if c := Changed(s1, s2); len(c) != 0 {
		t.Fatalf("changed after reading: %q", c)
	}

	// chmod to the same mode still updates ctime.
	must(t, unix.Chmod(a+"/sub/g", 0600))
	s3, err := Snapshot(a, Options{})
	must(t, err)
	if c := Changed(s1, s3); !slices.Equal(c, []string{"sub/g"}) {
		t.Fatalf("after chmod: %q", c)
	}

	// Add and remove entries.
	must(t, os.Remove(a+"/sub/deeper/h"))
	writeFile(t, a+"/sub/new", "", 0644)
	s4, err := Snapshot(a, Options{})
	must(t, err)
	want := []string{"sub", "sub/deeper", "sub/deeper/h", "sub/g", "sub/new"}
	if c := Changed(s1, s4); !slices.Equal(c, want) {
		t.Fatalf("after add/remove: %q, want %q", c, want)
	}

	// IgnoreTop applies.
	must(t, os.Mkdir(a+"/.georep", 0700))
	s5, err := Snapshot(a, Options{IgnoreTop: []string{".georep"}})
	must(t, err)
	if _, ok := s5[".georep"]; ok {
		t.Error(".georep in snapshot despite IgnoreTop")
	}
}
