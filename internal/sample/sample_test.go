package sample

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// build makes a sample tree with a small big file in a new temp dir.
func build(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := BuildSize(root, 256<<10); err != nil {
		t.Fatal(err)
	}
	return root
}

// copyTree copies src into a new temp dir with cp -a: contents, modes,
// owners, nanosecond times, xattrs, hardlinks, holes.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	if out, err := exec.Command("cp", "-a", src+"/.", dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	return dst
}

func compare(t *testing.T, a, b string, ignoreTop, ignoreXattr []string) []string {
	t.Helper()
	diffs, err := Compare(a, b, ignoreTop, ignoreXattr)
	if err != nil {
		t.Fatal(err)
	}
	return diffs
}

func lstat(t *testing.T, path string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

func setMtime(t *testing.T, path string, mtime unix.Timespec) {
	t.Helper()
	ts := []unix.Timespec{mtime, mtime}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestBuildCopyIsIdentical(t *testing.T) {
	master := t.TempDir()
	check(t, Build(master))
	if diffs := compare(t, master, copyTree(t, master), nil, nil); len(diffs) > 0 {
		t.Fatalf("a copy differs:\n%s", strings.Join(diffs, "\n"))
	}
	if st := lstat(t, filepath.Join(master, BigFile)); st.Size != DefaultBigSize {
		t.Errorf("%s has %d bytes, want %d", BigFile, st.Size, DefaultBigSize)
	}
	if st := lstat(t, filepath.Join(master, SparseFile)); st.Blocks*512 >= st.Size {
		t.Errorf("%s has no hole: %d bytes in %d blocks", SparseFile, st.Size, st.Blocks)
	}
	if n := len(filepath.Base(LongName)); n != 255 {
		t.Errorf("the long name has %d bytes", n)
	}
	if a, b := lstat(t, filepath.Join(master, HardlinkA)), lstat(t, filepath.Join(master, HardlinkB)); a.Ino != b.Ino {
		t.Errorf("%s and %s are not hardlinked", HardlinkA, HardlinkB)
	}
	if st := lstat(t, filepath.Join(master, "modes/setuid")); st.Mode&0o7777 != 0o4755 {
		t.Errorf("modes/setuid has mode %o", st.Mode&0o7777)
	}
	if st := lstat(t, filepath.Join(master, "hello.txt")); st.Mtim.Nsec%1000 == 0 {
		t.Errorf("hello.txt's mtime %v has no nanoseconds", st.Mtim)
	}
	if os.Geteuid() == 0 {
		if st := lstat(t, filepath.Join(master, "owners/f-1000")); st.Uid != UID1 || st.Gid != GID1 {
			t.Errorf("owners/f-1000 is owned by %d:%d", st.Uid, st.Gid)
		}
	}
	var n int
	check(t, filepath.Walk(master, func(string, os.FileInfo, error) error { n++; return nil }))
	if n < 30 || n > 100 {
		t.Errorf("the tree has %d entries, want a few dozen", n)
	}
}

// TestCompareReports introduces one difference at a time in a copy and
// checks that Compare reports it, and only it.
func TestCompareReports(t *testing.T) {
	master := build(t)
	// want lists the paths expected in the report and a word each line
	// about that path must contain; other paths must not be reported.
	for _, c := range []struct {
		name   string
		change func(t *testing.T, replica string)
		want   map[string]string
	}{
		{"content, same size", func(t *testing.T, r string) {
			p := filepath.Join(r, "docs/kib.bin")
			mtime := lstat(t, p).Mtim
			data, err := os.ReadFile(p)
			check(t, err)
			data[500] ^= 1
			check(t, os.WriteFile(p, data, 0))
			setMtime(t, p, mtime)
		}, map[string]string{"docs/kib.bin": "content: differs from byte 500"}},
		{"size", func(t *testing.T, r string) {
			p := filepath.Join(r, "hello.txt")
			mtime := lstat(t, p).Mtim
			check(t, os.Truncate(p, 5))
			setMtime(t, p, mtime)
		}, map[string]string{"hello.txt": "size: 13 on the master, 5 on the replica"}},
		{"setuid bit", func(t *testing.T, r string) {
			check(t, os.Chmod(filepath.Join(r, "modes/setuid"), 0o755))
		}, map[string]string{"modes/setuid": "mode: 4755 on the master, 0755 on the replica"}},
		{"sticky bit", func(t *testing.T, r string) {
			check(t, unix.Chmod(filepath.Join(r, "modes/sticky-dir"), 0o777))
		}, map[string]string{"modes/sticky-dir": "mode: 1777 on the master, 0777"}},
		{"owner", func(t *testing.T, r string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root")
			}
			check(t, os.Lchown(filepath.Join(r, "owners/link"), UID2, GID2))
		}, map[string]string{"owners/link": "owner: 1000:1001 on the master, 1001:1001"}},
		{"file mtime", func(t *testing.T, r string) {
			p := filepath.Join(r, "names/with space")
			m := lstat(t, p).Mtim
			m.Nsec++
			setMtime(t, p, m)
		}, map[string]string{"names/with space": "mtime"}},
		{"directory mtime", func(t *testing.T, r string) {
			p := filepath.Join(r, "docs/nested")
			m := lstat(t, p).Mtim
			m.Sec--
			setMtime(t, p, m)
		}, map[string]string{"docs/nested": "mtime"}},
		{"missing file", func(t *testing.T, r string) {
			check(t, os.Remove(filepath.Join(r, "names/new\nline")))
			setMtime(t, filepath.Join(r, "names"), lstat(t, filepath.Join(master, "names")).Mtim)
		}, map[string]string{"names/new\nline": "missing on the replica (file)"}},
		{"missing directory, reported once", func(t *testing.T, r string) {
			check(t, os.RemoveAll(filepath.Join(r, "docs/nested")))
			setMtime(t, filepath.Join(r, "docs"), lstat(t, filepath.Join(master, "docs")).Mtim)
		}, map[string]string{"docs/nested": "missing on the replica (directory)"}},
		{"extra", func(t *testing.T, r string) {
			check(t, os.WriteFile(filepath.Join(r, "names/caf\xe9 extra"), nil, 0o644))
			setMtime(t, filepath.Join(r, "names"), lstat(t, filepath.Join(master, "names")).Mtim)
		}, map[string]string{"names/caf\xe9 extra": "extra on the replica (file)"}},
		{"type", func(t *testing.T, r string) {
			p := filepath.Join(r, "special/fifo")
			check(t, os.Remove(p))
			check(t, os.WriteFile(p, nil, 0o644))
			setMtime(t, filepath.Join(r, "special"), lstat(t, filepath.Join(master, "special")).Mtim)
		}, map[string]string{"special/fifo": "type: FIFO on the master, file on the replica"}},
		{"symlink target", func(t *testing.T, r string) {
			p := filepath.Join(r, "links/dangling")
			mtime := lstat(t, p).Mtim
			check(t, os.Remove(p))
			check(t, os.Symlink("does-not-exist-either", p))
			setMtime(t, p, mtime)
			setMtime(t, filepath.Join(r, "links"), lstat(t, filepath.Join(master, "links")).Mtim)
		}, map[string]string{"links/dangling": `symlink target: "does-not-exist" on the master, "does-not-exist-either"`}},
		{"xattr value", func(t *testing.T, r string) {
			check(t, unix.Lsetxattr(filepath.Join(r, "xattrs/tagged"), "user.binary", []byte("\x00\xff\xfe"), 0))
		}, map[string]string{"xattrs/tagged": `xattr "user.binary": "\x00\xff\xfebinary\x00" on the master, "\x00\xff\xfe" on the replica`}},
		{"xattr missing", func(t *testing.T, r string) {
			check(t, unix.Lremovexattr(filepath.Join(r, "xattrs"), "user.dir"))
		}, map[string]string{"xattrs": `xattr "user.dir": missing on the replica`}},
		{"hardlink split", func(t *testing.T, r string) {
			// A copy with all its metadata put in place of one link.
			b, tmp := filepath.Join(r, HardlinkB), filepath.Join(r, "hard/tmp")
			if out, err := exec.Command("cp", "-a", b, tmp).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v\n%s", err, out)
			}
			check(t, os.Rename(tmp, b))
			setMtime(t, filepath.Join(r, "hard"), lstat(t, filepath.Join(master, "hard")).Mtim)
		}, map[string]string{HardlinkA: `hardlinks: same file as "hard/two" on the master, as nothing else`, HardlinkB: "hardlinks"}},
		{"hardlink joined", func(t *testing.T, r string) {
			c := filepath.Join(r, "hard/copy")
			check(t, os.Remove(c))
			check(t, os.Link(filepath.Join(r, HardlinkA), c)) // with HardlinkA's mtime
			setMtime(t, filepath.Join(r, "hard"), lstat(t, filepath.Join(master, "hard")).Mtim)
		}, map[string]string{"hard/copy": "", HardlinkA: "hardlinks", HardlinkB: "hardlinks"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			replica := copyTree(t, master)
			c.change(t, replica)
			diffs := compare(t, master, replica, nil, nil)
			found := map[string]bool{}
			for _, d := range diffs {
				ok := false
				for p, word := range c.want {
					if q := fmt.Sprintf("%q: ", p); strings.HasPrefix(d, q) && strings.Contains(d[len(q):], word) {
						ok, found[p] = true, true
					}
				}
				if !ok {
					t.Errorf("unexpected: %s", d)
				}
			}
			for p, word := range c.want {
				if !found[p] {
					t.Errorf("not reported: %q: ...%s...\ngot:\n%s", p, word, strings.Join(diffs, "\n"))
				}
			}
		})
	}
}

// TestCompareIgnores checks ignoreTop (only directly under the roots) and
// ignoreXattrPrefixes.
func TestCompareIgnores(t *testing.T) {
	master := build(t)
	replica := copyTree(t, master)
	check(t, os.MkdirAll(filepath.Join(replica, ".georep/state"), 0o700))
	check(t, os.Mkdir(filepath.Join(replica, "docs/.georep"), 0o700))
	setMtime(t, filepath.Join(replica, "docs"), lstat(t, filepath.Join(master, "docs")).Mtim)
	check(t, unix.Lsetxattr(filepath.Join(replica, "hello.txt"), "user.georep.mark", []byte("x"), 0))
	diffs := compare(t, master, replica, []string{".georep"}, []string{"user.georep."})
	if len(diffs) != 1 || diffs[0] != `"docs/.georep": extra on the replica (directory)` {
		t.Errorf("got %q", diffs)
	}
}

// TestMutate checks that Mutate changes the tree the way it says, and the
// same way every time.
func TestMutate(t *testing.T) {
	master, twin := build(t), build(t)
	before := copyTree(t, master)
	check(t, Mutate(master))
	check(t, Mutate(twin))
	if diffs := compare(t, master, twin, nil, nil); len(diffs) > 0 {
		t.Errorf("two trees built and mutated alike differ:\n%s", strings.Join(diffs, "\n"))
	}
	diffs := compare(t, master, before, nil, nil)
	all := strings.Join(diffs, "\n")
	for _, want := range []string{
		`"new": missing on the replica (directory)`,
		`"names/added caf\xe9 %": missing on the replica`,
		`"big.bin": content: differs from byte`,
		`"docs/kib.bin": content: differs from byte 100`,
		`"docs/64k+1.bin": size: 1000 on the master, 65537 on the replica`,
		`"docs/read me.txt": missing on the replica`,
		`"docs/readme.txt": extra on the replica`,
		`"nested (moved)": missing on the replica (directory)`,
		`"docs/nested": extra on the replica (directory)`,
		`"modes/setuid": mode: 0755 on the master, 4755 on the replica`,
		`"modes/ro": mode: 0644 on the master, 0400 on the replica`,
		`"xattrs/tagged": xattr "user.comment": "changed by Mutate" on the master`,
		`"names/tab\there": extra on the replica`,
		`"old": extra on the replica (directory)`,
		`"docs": mtime`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no %s in:\n%s", want, all)
		}
	}
	if st := lstat(t, filepath.Join(master, HardlinkA)); st.Nlink != 3 {
		t.Errorf("%s has %d links after Mutate, want 3", HardlinkA, st.Nlink)
	}
}
