// Package digest is what `georep verify` compares: the content and
// metadata of every entry of a tree, hashed (SHA-256), and a digest of
// every directory's subtree, so that two trees are compared by exchanging
// the digests of the directories that differ only. Both ends build a
// Tree of their root with Build and the same Options; Compare says how
// two listings of a directory differ. No IO but Build's reads.
//
// An entry's digest covers its name, type, permission bits (setuid,
// setgid, sticky included), owner, size and content (regular files),
// mtime (all but directories, whose mtime moves with every change in them
// and is not what a replica is trusted for), device number, symlink
// target, replicated xattrs (ACLs among them) and hard-link group: the
// smallest path, in byte order, of the links to its inode within the
// tree. A directory's digest is that of its entries' names and digests,
// in name order.
package digest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sort"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/ftype"
	"github.com/georep/georep/internal/xattrs"
)

// Size is the length of a digest.
const Size = sha256.Size

// Sum is a digest.
type Sum [Size]byte

// Entry is one entry of a directory, as compared.
type Entry struct {
	Name     string
	Mode     uint32 // type and permission bits
	UID, GID uint32
	Size     int64  // regular files
	MtimeNS  int64  // all but directories
	Rdev     uint64 // devices
	Target   string // symlinks
	Content  Sum    // regular files: SHA-256 of the data
	Xattrs   Sum    // SHA-256 of the replicated xattrs (zero: none)
	LinkKey  string // a regular file with other links in the tree: the group's smallest path
	Sub      Sum    // directories: the subtree's digest
}

// IsDir reports whether e is a directory.
func (e *Entry) IsDir() bool { return e.Mode&unix.S_IFMT == unix.S_IFDIR }

// Sum is e's digest.
func (e *Entry) Sum() Sum {
	h := sha256.New()
	var b [8]byte
	num := func(v uint64) {
		binary.BigEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	str := func(s string) {
		num(uint64(len(s)))
		io.WriteString(h, s)
	}
	io.WriteString(h, "georep-digest-v1\x00")
	str(e.Name)
	num(uint64(e.Mode))
	num(uint64(e.UID))
	num(uint64(e.GID))
	num(uint64(e.Size))
	if !e.IsDir() {
		num(uint64(e.MtimeNS))
	}
	num(e.Rdev)
	str(e.Target)
	h.Write(e.Content[:])
	h.Write(e.Xattrs[:])
	str(e.LinkKey)
	h.Write(e.Sub[:])
	var s Sum
	h.Sum(s[:0])
	return s
}

// Dir is one directory of a Tree: its entries in name order and its
// subtree's digest.
type Dir struct {
	Entries []Entry
	Sum     Sum
}

// DirSum is the digest of a directory of entries (in name order).
func DirSum(entries []Entry) Sum {
	h := sha256.New()
	io.WriteString(h, "georep-dir-v1\x00")
	for i := range entries {
		s := entries[i].Sum()
		h.Write(s[:])
	}
	var s Sum
	h.Sum(s[:0])
	return s
}

// Tree is a tree's directories by path ("" is the root; "a/b" below it).
type Tree struct {
	Dirs         map[string]*Dir
	Files, Bytes int64 // regular files hashed, and their bytes
	Cached       int64 // regular files whose hash the cache gave
}

// Options say what Build reads.
type Options struct {
	// Skip leaves out the entry at rel (nil: none).
	Skip func(rel string, isDir bool) bool
	// Xattr says which xattrs are compared (nil: none).
	Xattr func(name string) bool
	// Limit paces the file data read (nil: no limit).
	Limit *rate.Limiter
	// Progress, when set, is told of the files and bytes hashed so far
	// (after each file).
	Progress func(files, bytes int64)
	// Cache, when set, is trusted for a file whose inode, ctime and size
	// are those it was hashed with (a quick scrub), and keeps what is
	// hashed for the next Build.
	Cache *Cache
}

// Cache keeps files' hashes by inode, with the ctime and size they were
// hashed at: any write changes the ctime, so a hash is trusted only while
// nothing wrote the file (a quick scrub; a full one reads everything).
// Safe for one Build at a time.
type Cache struct {
	m   map[[2]uint64]cached
	gen uint64
}

type cached struct {
	ctime, size int64
	sum         Sum
	gen         uint64
}

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{m: map[[2]uint64]cached{}} }

// Len is the number of hashes kept.
func (c *Cache) Len() int { return len(c.m) }

func (c *Cache) get(k [2]uint64, st *unix.Stat_t) (Sum, bool) {
	e, ok := c.m[k]
	if !ok || e.ctime != st.Ctim.Nano() || e.size != st.Size {
		return Sum{}, false
	}
	e.gen = c.gen
	c.m[k] = e
	return e.sum, true
}

func (c *Cache) put(k [2]uint64, st *unix.Stat_t, s Sum) {
	c.m[k] = cached{ctime: st.Ctim.Nano(), size: st.Size, sum: s, gen: c.gen}
}

// prune drops what the last Build did not see.
func (c *Cache) prune() {
	for k, e := range c.m {
		if e.gen != c.gen {
			delete(c.m, k)
		}
	}
}

// chunk is how much Build reads at a time (and waits on Limit for).
const chunk = 256 << 10

// maxDepth bounds the walk (a directory nested deeper is an error).
const maxDepth = 4096

// Build walks the tree under root and hashes it.
func Build(ctx context.Context, root *beneath.Root, o Options) (*Tree, error) {
	b := &builder{o: o, t: &Tree{Dirs: map[string]*Dir{}}, links: map[[2]uint64][]string{}, buf: make([]byte, chunk), h: sha256.New()}
	fd, err := unix.Dup(root.FD())
	if err != nil {
		return nil, fmt.Errorf("digest: %w", err)
	}
	if o.Cache != nil {
		o.Cache.gen++
	}
	if err := b.walk(ctx, fd, "", 0); err != nil {
		return nil, err
	}
	if o.Cache != nil {
		o.Cache.prune()
	}
	b.finish()
	return b.t, nil
}

type builder struct {
	o     Options
	t     *Tree
	links map[[2]uint64][]string // inode -> its paths (files with nlink > 1)
	buf   []byte
	h     hash.Hash
	order []string // directories, parents before children
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// walk lists directory fd (which it closes) at path rel.
func (b *builder) walk(ctx context.Context, fd int, rel string, depth int) error {
	defer unix.Close(fd)
	if depth > maxDepth {
		return fmt.Errorf("digest: %q is nested more than %d deep", rel, maxDepth)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	names, err := beneath.ReadNames(fd)
	if err != nil {
		return fmt.Errorf("digest: listing %q: %w", rel, err)
	}
	sort.Strings(names)
	d := &Dir{Entries: make([]Entry, 0, len(names))}
	b.t.Dirs[rel] = d
	b.order = append(b.order, rel)
	for _, name := range names {
		p := join(rel, name)
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed while we looked
			}
			return fmt.Errorf("digest: stat %q: %w", p, err)
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if b.o.Skip != nil && b.o.Skip(p, isDir) {
			continue
		}
		e := Entry{Name: name, Mode: st.Mode, UID: st.Uid, GID: st.Gid, MtimeNS: st.Mtim.Nano()}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			e.Size = st.Size
			k := [2]uint64{st.Dev, st.Ino}
			if s, ok := b.cached(k, &st); ok {
				e.Content = s
			} else {
				if err := b.hashFile(ctx, fd, name, p, &e.Content); err != nil {
					if errors.Is(err, unix.ENOENT) {
						continue
					}
					return err
				}
				if b.o.Cache != nil {
					b.o.Cache.put(k, &st, e.Content)
				}
			}
			if st.Nlink > 1 {
				k := [2]uint64{st.Dev, st.Ino}
				b.links[k] = append(b.links[k], p)
			}
		case unix.S_IFLNK:
			t, err := readlink(fd, name)
			if err != nil {
				if errors.Is(err, unix.ENOENT) {
					continue
				}
				return fmt.Errorf("digest: readlink %q: %w", p, err)
			}
			e.Target = t
		case unix.S_IFCHR, unix.S_IFBLK:
			e.Rdev = st.Rdev
		}
		if b.o.Xattr != nil && e.Mode&unix.S_IFMT != unix.S_IFLNK {
			xs, err := xattrs.ListAt(fd, name, b.o.Xattr)
			if err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("digest: xattrs of %q: %w", p, err)
			}
			e.Xattrs = xattrSum(xs)
		}
		d.Entries = append(d.Entries, e)
		if isDir {
			sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				if errors.Is(err, unix.ENOENT) {
					d.Entries = d.Entries[:len(d.Entries)-1]
					continue
				}
				return fmt.Errorf("digest: opening %q: %w", p, err)
			}
			if err := b.walk(ctx, sub, p, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// cached is the cache's hash of the file, if it may be trusted.
func (b *builder) cached(k [2]uint64, st *unix.Stat_t) (Sum, bool) {
	if b.o.Cache == nil {
		return Sum{}, false
	}
	s, ok := b.o.Cache.get(k, st)
	if ok {
		b.t.Cached++
	}
	return s, ok
}

// hashFile hashes name in dirfd into sum, reading at most Limit allows,
// with O_NOATIME where the process may (a verify leaves atimes as they
// were).
func (b *builder) hashFile(ctx context.Context, dirfd int, name, p string, sum *Sum) error {
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
	fd, err := unix.Openat(dirfd, name, flags|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		fd, err = unix.Openat(dirfd, name, flags, 0)
	}
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return err
		}
		return fmt.Errorf("digest: opening %q: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	b.h.Reset()
	for {
		n, err := f.Read(b.buf)
		if n > 0 {
			if b.o.Limit != nil {
				if werr := b.o.Limit.WaitN(ctx, n); werr != nil {
					return werr
				}
			}
			b.h.Write(b.buf[:n])
			b.t.Bytes += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("digest: reading %q: %w", p, err)
		}
	}
	b.h.Sum(sum[:0])
	b.t.Files++
	if b.o.Progress != nil {
		b.o.Progress(b.t.Files, b.t.Bytes)
	}
	return nil
}

func readlink(dirfd int, name string) (string, error) {
	buf := make([]byte, 4096)
	for {
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		if len(buf) >= 1<<20 {
			return "", errors.New("symlink target too long")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// xattrSum hashes xattrs in name order (zero when there are none).
func xattrSum(xs map[string][]byte) Sum {
	if len(xs) == 0 {
		return Sum{}
	}
	names := make([]string, 0, len(xs))
	for n := range xs {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	var b [8]byte
	for _, n := range names {
		for _, s := range [][]byte{[]byte(n), xs[n]} {
			binary.BigEndian.PutUint64(b[:], uint64(len(s)))
			h.Write(b[:])
			h.Write(s)
		}
	}
	var s Sum
	h.Sum(s[:0])
	return s
}

// finish gives files their hard-link groups and directories their
// digests, deepest first.
func (b *builder) finish() {
	keys := map[string]string{} // path -> its group's smallest path
	for _, paths := range b.links {
		if len(paths) < 2 {
			continue
		}
		min := paths[0]
		for _, p := range paths[1:] {
			if p < min {
				min = p
			}
		}
		for _, p := range paths {
			keys[p] = min
		}
	}
	for i := len(b.order) - 1; i >= 0; i-- {
		rel := b.order[i]
		d := b.t.Dirs[rel]
		for j := range d.Entries {
			e := &d.Entries[j]
			p := join(rel, e.Name)
			if k, ok := keys[p]; ok {
				e.LinkKey = k
			}
			if e.IsDir() {
				if sub := b.t.Dirs[p]; sub != nil {
					e.Sub = sub.Sum
				}
			}
		}
		d.Sum = DirSum(d.Entries)
	}
}

// Kinds of difference (Diff.Kind).
const (
	Missing  = "missing"  // on the master only
	Extra    = "extra"    // on the slave only
	Type     = "type"     // another type of entry
	Content  = "content"  // a regular file's data
	Metadata = "metadata" // mode, owner, mtime, xattrs, target or device
	Hardlink = "hardlink" // another hard-link group
)

// Diff is one difference, at Path.
type Diff struct {
	Path   string `json:"path"`
	Kind   string `json:"kind"`
	Detail string `json:"detail,omitempty"`
}

// Compare compares a directory's entries on the master (m) and on the
// slave (s), both in name order, at dir: the differences, and the
// subdirectories on both sides whose digests differ (to compare next).
// ignore leaves out a slave-only entry (the rules exclude it).
func Compare(dir string, m, s []Entry, ignore func(rel string, isDir bool) bool) (diffs []Diff, descend []string) {
	i, j := 0, 0
	for i < len(m) || j < len(s) {
		switch {
		case j == len(s) || (i < len(m) && m[i].Name < s[j].Name):
			diffs = append(diffs, Diff{Path: join(dir, m[i].Name), Kind: Missing})
			i++
		case i == len(m) || s[j].Name < m[i].Name:
			p := join(dir, s[j].Name)
			if ignore == nil || !ignore(p, s[j].IsDir()) {
				diffs = append(diffs, Diff{Path: p, Kind: Extra})
			}
			j++
		default:
			a, b := &m[i], &s[j]
			p := join(dir, a.Name)
			i++
			j++
			if a.Mode&unix.S_IFMT != b.Mode&unix.S_IFMT {
				diffs = append(diffs, Diff{Path: p, Kind: Type, Detail: fmt.Sprintf("%s on the master, %s on the slave", ftype.Name(a.Mode), ftype.Name(b.Mode))})
				continue
			}
			if a.Content != b.Content || a.Size != b.Size {
				diffs = append(diffs, Diff{Path: p, Kind: Content, Detail: fmt.Sprintf("size %d, %d on the slave", a.Size, b.Size)})
			}
			if d := metaDetail(a, b); d != "" {
				diffs = append(diffs, Diff{Path: p, Kind: Metadata, Detail: d})
			}
			if a.LinkKey != b.LinkKey {
				diffs = append(diffs, Diff{Path: p, Kind: Hardlink, Detail: fmt.Sprintf("linked with %q, with %q on the slave", orNone(a.LinkKey), orNone(b.LinkKey))})
			}
			if a.IsDir() && a.Sub != b.Sub {
				descend = append(descend, p)
			}
		}
	}
	return diffs, descend
}

func orNone(s string) string {
	if s == "" {
		return "no other name"
	}
	return s
}

func metaDetail(a, b *Entry) string {
	var parts [][]byte
	if a.Mode != b.Mode {
		parts = append(parts, fmt.Appendf(nil, "mode %o, %o on the slave", a.Mode&0o7777, b.Mode&0o7777))
	}
	if a.UID != b.UID || a.GID != b.GID {
		parts = append(parts, fmt.Appendf(nil, "owner %d:%d, %d:%d on the slave", a.UID, a.GID, b.UID, b.GID))
	}
	if !a.IsDir() && a.MtimeNS != b.MtimeNS {
		parts = append(parts, fmt.Appendf(nil, "mtime %d, %d on the slave", a.MtimeNS, b.MtimeNS))
	}
	if a.Xattrs != b.Xattrs {
		parts = append(parts, []byte("xattrs or ACLs"))
	}
	if a.Target != b.Target {
		parts = append(parts, fmt.Appendf(nil, "target %q, %q on the slave", a.Target, b.Target))
	}
	if a.Rdev != b.Rdev {
		parts = append(parts, fmt.Appendf(nil, "device %d, %d on the slave", a.Rdev, b.Rdev))
	}
	return string(bytes.Join(parts, []byte("; ")))
}
