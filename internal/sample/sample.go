// Package sample is the demo's sample tree: a small tree with the awkward
// things georep replicates, a set of changes to it, and a check that a
// replica matches it.
//
// Build makes a few dozen entries: nested directories, files of several
// sizes (one of a few MiB), an empty and a sparse file, relative and
// dangling symlinks, a hardlink pair, a FIFO, setuid/setgid/sticky and
// other odd modes, user.* xattrs (and a trusted.* one as root), explicit
// nanosecond mtimes, and names with spaces, newlines, tabs, '%', a leading
// dash, non-UTF-8 bytes and 255 bytes. As root, some entries belong to the
// numeric owners 1000:1000 and 1001:1001. Everything is deterministic: two
// trees built (and mutated) alike compare equal.
//
// Mutate makes a handful of changes for a second round, and Compare checks
// a replica entry by entry.
package sample

import (
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultBigSize is the size of BigFile made by Build.
const DefaultBigSize = 8 << 20

// Paths, relative to the root, of a few entries.
const (
	BigFile    = "big.bin"
	SparseFile = "sparse"
	HardlinkA  = "hard/one"
	HardlinkB  = "hard/two"
)

// LongName is a file whose name has 255 bytes, the most a name may have.
var LongName = "names/" + strings.Repeat("n", 251) + ".txt"

// Numeric owners without passwd entries, used when running as root.
const (
	UID1, GID1 = 1000, 1000
	UID2, GID2 = 1001, 1001
)

// Build's mtimes lie in [buildBase, buildBase+5e7) seconds, Mutate's in
// [mutateBase, mutateBase+5e7): a mutated entry is always newer.
const (
	buildBase  = 1_600_000_000
	mutateBase = 1_700_000_000
)

// tree runs a list of steps under a root, keeping the first error.
type tree struct {
	root   string
	asRoot bool
	err    error
	paths  []string // every entry made or changed, for setting mtimes
}

func (t *tree) abs(rel string) string {
	if rel == "" {
		return t.root
	}
	return t.root + "/" + rel
}

// do runs op on rel unless an earlier step failed, and records rel.
func (t *tree) do(what, rel string, op func(path string) error) {
	if t.err != nil {
		return
	}
	if err := op(t.abs(rel)); err != nil {
		t.err = fmt.Errorf("sample: %s %q: %w", what, rel, err)
		return
	}
	t.paths = append(t.paths, rel)
}

func (t *tree) chmod(rel string, perm uint32) {
	t.do("chmod", rel, func(p string) error { return unix.Chmod(p, perm) })
}

func (t *tree) mkdir(rel string, perm uint32) {
	t.do("mkdir", rel, func(p string) error { return unix.Mkdir(p, 0o700) })
	t.chmod(rel, perm)
}

func (t *tree) file(rel, data string, perm uint32) {
	t.do("create", rel, func(p string) error {
		return writeFile(p, os.O_CREATE|os.O_EXCL, func(f *os.File) error {
			_, err := f.WriteString(data)
			return err
		})
	})
	t.chmod(rel, perm)
}

// writeFile opens path for writing with the extra flags and runs fn on it.
func writeFile(path string, flags int, fn func(*os.File) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|flags, 0o600)
	if err != nil {
		return err
	}
	err = fn(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// random writes n deterministic pseudo-random bytes, from a generator
// seeded with the label.
func (t *tree) random(rel string, n int64, perm uint32) {
	t.do("create", rel, func(p string) error {
		return writeFile(p, os.O_CREATE|os.O_EXCL, func(f *os.File) error {
			_, err := io.CopyN(f, newRand(rel), n)
			return err
		})
	})
	t.chmod(rel, perm)
}

// newRand is a fixed-seed byte stream, one per label.
func newRand(label string) io.Reader {
	var seed [32]byte
	h := fnv.New128a()
	h.Write([]byte(label))
	copy(seed[:], h.Sum(nil))
	return rand.NewChaCha8(seed)
}

func (t *tree) chown(rel string, uid, gid int) {
	if t.asRoot {
		t.do("chown", rel, func(p string) error {
			return unix.Fchownat(unix.AT_FDCWD, p, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
		})
	}
}

func (t *tree) symlink(target, rel string) {
	t.do("symlink", rel, func(p string) error { return unix.Symlink(target, p) })
}

func (t *tree) link(oldRel, rel string) {
	t.do("link", rel, func(p string) error { return unix.Link(t.abs(oldRel), p) })
}

func (t *tree) fifo(rel string, perm uint32) {
	t.do("mkfifo", rel, func(p string) error { return unix.Mkfifo(p, 0o600) })
	t.chmod(rel, perm)
}

func (t *tree) xattr(rel, name, value string) {
	t.do("setxattr "+name, rel, func(p string) error { return unix.Lsetxattr(p, name, []byte(value), 0) })
}

func (t *tree) rename(oldRel, rel string) {
	t.do("rename", oldRel, func(p string) error { return unix.Rename(p, t.abs(rel)) })
	t.paths = append(t.paths, rel)
}

// setTimes gives every recorded entry, and its parent directories, an
// mtime (and atime) in nanoseconds derived from its path, after base.
func (t *tree) setTimes(base int64) {
	seen := map[string]bool{}
	for _, rel := range t.paths {
		for {
			seen[rel] = true
			i := strings.LastIndexByte(rel, '/')
			if i < 0 {
				break
			}
			rel = rel[:i]
		}
	}
	seen[""] = true
	var rels []string
	for rel := range seen {
		if _, err := os.Lstat(t.abs(rel)); err == nil { // not deleted since
			rels = append(rels, rel)
		}
	}
	sort.Strings(rels)
	for _, rel := range rels {
		h := fnv.New64a()
		h.Write([]byte(rel))
		sum := h.Sum64()
		sec, nsec := base+int64(sum%50_000_000), int64(sum>>32)%1_000_000_000
		if nsec%1000 == 0 {
			nsec++ // so that the digits below the microsecond matter
		}
		ts := []unix.Timespec{{Sec: sec - 3600, Nsec: nsec}, {Sec: sec, Nsec: nsec}}
		t.do("set times of", rel, func(p string) error {
			return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
		})
	}
}

func newTree(root string) (*tree, error) {
	st, err := os.Lstat(root)
	if err != nil {
		return nil, fmt.Errorf("sample: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("sample: %q is not a directory", root)
	}
	return &tree{root: strings.TrimRight(root, "/"), asRoot: os.Geteuid() == 0}, nil
}

// Build fills root, an existing empty directory, with the sample tree and
// a BigFile of DefaultBigSize bytes. The file system must support user.*
// xattrs.
func Build(root string) error { return BuildSize(root, DefaultBigSize) }

// BuildSize is Build with a BigFile of bigSize bytes.
func BuildSize(root string, bigSize int64) error {
	t, err := newTree(root)
	if err != nil {
		return err
	}
	names, err := readDirNames(t.root)
	if err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	if len(names) > 0 {
		return fmt.Errorf("sample: %q is not empty", root)
	}

	// Files of several sizes, an empty one and a sparse one.
	t.file("hello.txt", "hello, world\n", 0o644)
	t.file("empty", "", 0o644)
	t.random(BigFile, bigSize, 0o644)
	t.do("create", SparseFile, func(p string) error {
		// Data, a 1 MiB hole, data.
		return writeFile(p, os.O_CREATE|os.O_EXCL, func(f *os.File) error {
			if _, err := f.WriteString("begins with data,\n"); err != nil {
				return err
			}
			_, err := f.WriteAt([]byte("then a hole, then data.\n"), 1<<20)
			return err
		})
	})
	t.chmod(SparseFile, 0o644)
	t.mkdir("docs", 0o755)
	t.file("docs/readme.txt", "a sample tree, replicated by georep\n", 0o644)
	t.random("docs/kib.bin", 1024, 0o644)
	t.random("docs/64k+1.bin", 64<<10+1, 0o600)
	t.mkdir("docs/nested", 0o755)
	t.mkdir("docs/nested/deeper", 0o755)
	t.mkdir("docs/nested/deeper/deepest", 0o755)
	t.file("docs/nested/deeper/deepest/bottom.txt", "at the bottom\n", 0o644)
	t.mkdir("emptydir", 0o755)
	t.mkdir("old", 0o755)
	t.file("old/a", "to be deleted with its directory\n", 0o644)
	t.file("old/b", "this too\n", 0o644)

	// Symlinks (never followed), a hardlink pair, a FIFO.
	t.mkdir("links", 0o755)
	t.symlink("../hello.txt", "links/rel")
	t.symlink("does-not-exist", "links/dangling")
	t.symlink("../docs/nested", "links/to-dir")
	t.mkdir("hard", 0o755)
	t.file(HardlinkA, "one file, two names\n", 0o640)
	t.link(HardlinkA, HardlinkB)
	t.file("hard/copy", "one file, two names\n", 0o640) // same bytes, another inode
	t.mkdir("special", 0o755)
	t.fifo("special/fifo", 0o644)

	// Modes (chmod after chown: chown clears setuid and setgid).
	t.mkdir("modes", 0o755)
	t.file("modes/setuid", "#!/bin/sh\n", 0o755)
	t.chown("modes/setuid", UID1, GID1)
	t.chmod("modes/setuid", 0o4755)
	t.file("modes/setgid", "#!/bin/sh\n", 0o755)
	t.chmod("modes/setgid", 0o2755)
	t.mkdir("modes/setgid-dir", 0o755)
	t.chown("modes/setgid-dir", 0, GID1)
	t.chmod("modes/setgid-dir", 0o2775)
	t.file("modes/setgid-dir/inherits-group", "group from the directory\n", 0o644)
	t.mkdir("modes/sticky-dir", 0o755)
	t.chmod("modes/sticky-dir", 0o1777)
	t.file("modes/sticky-dir/file", "in a sticky directory\n", 0o666)
	t.file("modes/ro", "read only\n", 0o400)
	t.file("modes/odd", "an odd mode\n", 0o705)
	t.mkdir("modes/private-dir", 0o755)
	t.file("modes/private-dir/secret", "secret\n", 0o600)
	t.chmod("modes/private-dir", 0o700)

	// Owners other than root, when running as root.
	t.mkdir("owners", 0o755)
	t.file("owners/f-1000", "owned by 1000:1000\n", 0o644)
	t.chown("owners/f-1000", UID1, GID1)
	t.mkdir("owners/dir-1001", 0o750)
	t.file("owners/dir-1001/inner", "owned by 1001:1001\n", 0o640)
	t.chown("owners/dir-1001/inner", UID2, GID2)
	t.chown("owners/dir-1001", UID2, GID2)
	t.symlink("f-1000", "owners/link")
	t.chown("owners/link", UID1, GID2)

	// Extended attributes.
	t.mkdir("xattrs", 0o755)
	t.xattr("xattrs", "user.dir", "on a directory")
	t.file("xattrs/tagged", "a file with xattrs\n", 0o644)
	t.xattr("xattrs/tagged", "user.comment", "replicated with the file")
	t.xattr("xattrs/tagged", "user.binary", "\x00\xff\xfebinary\x00")
	t.xattr("xattrs/tagged", "user.empty", "")
	if t.asRoot {
		t.xattr("xattrs/tagged", "trusted.sample", "a trusted value")
	}

	// Awkward names.
	t.mkdir("names", 0o755)
	for _, n := range []string{"with space", "new\nline", "tab\there", "100%", "%41", "-dash", "caf\xe9", "\xff\xfe", LongName[len("names/"):]} {
		t.file("names/"+n, "name: "+n+"\n", 0o644)
	}
	t.mkdir("names/dir with space", 0o755)
	t.file("names/dir with space/x", "x\n", 0o644)

	t.setTimes(buildBase)
	return t.err
}

// Mutate changes a tree that Build made: creates, modifies in place,
// truncates, renames a file and a directory, adds a hardlink, chmods,
// changes an xattr, deletes a file and a directory. The entries changed
// and their parent directories get new nanosecond mtimes, later than
// Build's. It is meant to be applied once.
func Mutate(root string) error {
	t, err := newTree(root)
	if err != nil {
		return err
	}
	t.mkdir("new", 0o755)
	t.random("new/fresh.bin", 777, 0o644)
	t.file("names/added caf\xe9 %", "added by Mutate\n", 0o644)
	t.do("modify", BigFile, func(p string) error { return invertMiddle(p, 4096) })
	t.do("modify", "docs/kib.bin", func(p string) error {
		return writeFile(p, 0, func(f *os.File) error {
			_, err := f.WriteAt([]byte("changed in place"), 100)
			return err
		})
	})
	t.do("truncate", "docs/64k+1.bin", func(p string) error { return unix.Truncate(p, 1000) })
	t.rename("docs/readme.txt", "docs/read me.txt")
	t.rename("docs/nested", "nested (moved)")
	t.link(HardlinkA, "new/third link")
	t.chmod("modes/setuid", 0o755)
	t.chmod("modes/ro", 0o644)
	t.xattr("xattrs/tagged", "user.comment", "changed by Mutate")
	t.do("remove", "names/tab\there", os.Remove)
	t.do("remove", "old", os.RemoveAll)
	t.setTimes(mutateBase)
	return t.err
}

// invertMiddle inverts n bytes in the middle of a file, keeping its size.
func invertMiddle(path string, n int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = func() error {
		st, err := f.Stat()
		if err != nil {
			return err
		}
		n = min(n, st.Size())
		buf := make([]byte, n)
		off := (st.Size() - n) / 2
		if _, err := f.ReadAt(buf, off); err != nil {
			return err
		}
		for i := range buf {
			buf[i] ^= 0xff
		}
		_, err = f.WriteAt(buf, off)
		return err
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readDirNames lists a directory, sorted by bytes.
func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	sort.Strings(names)
	return names, err
}
