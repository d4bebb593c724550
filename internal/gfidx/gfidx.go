// Package gfidx is the gfid index: for every gfid, the (parent gfid, name)
// links it has in a tree. The master and the slave each keep one, in an
// embedded transactional store (bbolt), to turn a gfid into a path.
//
// The index is a cache of what the tree's gfid xattrs say: whoever resolves
// a gfid through it must check the gfid xattr of what it opened, and a
// mismatch means "moved or gone", never "write here". A lost or stale index
// is rebuilt from the tree (Rebuild).
package gfidx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
)

var (
	bucketLinks = []byte("links")
	// bucketChildren maps parent gfid ‖ name to the gfid the name holds:
	// the other direction, for whoever learns of a name's removal and must
	// say which gfid it held (the master's recorder).
	bucketChildren = []byte("children")
	bucketMeta     = []byte("meta")
	keyClean       = []byte("clean")
	keyVersion     = []byte("version")
)

// formatVersion 2 added the children bucket. A version-1 index is emptied
// and marked unclean (it is a cache: its owner rebuilds it); a newer one is
// refused.
const formatVersion = "2"

// ErrNotFound says the index knows no link for a gfid.
var ErrNotFound = errors.New("gfidx: gfid not in index")

// ErrCycle says the first links of a gfid's ancestors loop: stale links
// (the index is a cache: its owner resolves the gfid another way, and a
// crawl of the directory prunes them).
var ErrCycle = errors.New("gfidx: the index's links form a cycle (stale links)")

// maxDepth bounds path resolution, so that a corrupt index with a cycle
// yields an error rather than a loop.
const maxDepth = 4096

// Link is one name of an inode.
type Link struct {
	Parent gfid.GFID
	Name   string
}

// ErrInUse says another process has the index open.
var ErrInUse = errors.New("gfidx: index in use by another georep process")

// ErrCorrupt says the index file is damaged (a torn or overwritten page):
// its owner removes it and rebuilds it from the tree. bbolt panics on a
// page that is not what it expects; every call here turns such a panic
// into this error instead of letting it take the process down.
var ErrCorrupt = errors.New("gfidx: index file damaged")

// guard turns a panic in bbolt (or in fn) into ErrCorrupt in *err. bbolt
// rolls the transaction back in its own deferred function first, so the
// store's locks are released; the owner must still close and rebuild it.
func guard(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: %v\n%s", ErrCorrupt, r, stackTop())
	}
}

// stackTop is the first frames of the panicking goroutine's stack, to tell
// a damaged page from a bug when the error is logged.
func stackTop() string {
	b := debug.Stack()
	const max = 2048
	if len(b) > max {
		b = b[:max]
	}
	return string(b)
}

// Index is a gfid index backed by one bbolt file. It is safe for concurrent
// use: bbolt allows one writer and many readers at a time.
type Index struct {
	db *bolt.DB
}

// Open opens (creating if needed) the index at path. Writes are not synced
// one by one: callers call Sync at their durability points (a batch's end),
// which is where a per-transaction fsync would otherwise cost one fsync per
// RPC. After an unclean stop the index may lag the tree; Clean reports it.
func Open(path string) (ix *Index, err error) {
	var db *bolt.DB
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				closeQuietly(db)
			}
			ix, err = nil, fmt.Errorf("gfidx: opening %s: %w: %v", path, ErrCorrupt, r)
		}
	}()
	if err := verifyFile(path); err != nil {
		return nil, err
	}
	// The freelist is stored (NoFreelistSync off): without it bbolt
	// rebuilds it on Open and on every rollback of a write transaction by
	// walking the tree in a goroutine of its own, where a damaged page's
	// panic cannot be recovered (see verifyFile).
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoSync: true})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s (same state directory?)", ErrInUse, path)
	}
	if err != nil {
		return nil, fmt.Errorf("gfidx: opening %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		v := m.Get(keyVersion)
		if v != nil && string(v) != formatVersion && string(v) != "1" {
			return fmt.Errorf("format version %q, want %q (written by a newer georep?)", v, formatVersion)
		}
		if string(v) == "1" {
			for _, b := range [][]byte{bucketLinks, bucketChildren} {
				if err := tx.DeleteBucket(b); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
					return err
				}
			}
			if err := m.Put(keyClean, []byte("0")); err != nil {
				return err
			}
		}
		for _, b := range [][]byte{bucketLinks, bucketChildren} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return m.Put(keyVersion, []byte(formatVersion))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("gfidx: initialising %s: %w", path, err)
	}
	// Every page of the tree read once: a damaged one is found now, as
	// ErrCorrupt (the owner rebuilds), not by a panic in the middle of a
	// batch. About 30 ms per 100,000 links.
	if err := check(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("gfidx: checking %s: %w", path, err)
	}
	return &Index{db: db}, nil
}

// check reads every key and value of every bucket, and checks that each
// bucket holds what this format puts there.
func check(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			want := func(k, v []byte) bool { return true }
			switch {
			case bytes.Equal(name, bucketLinks):
				want = func(k, v []byte) bool { return len(k) > 32 && len(v) == 0 }
			case bytes.Equal(name, bucketChildren):
				want = func(k, v []byte) bool { return len(k) > 16 && len(v) == 16 }
			}
			return b.ForEach(func(k, v []byte) error {
				if !want(k, v) {
					return fmt.Errorf("%w: bucket %s holds a key of %d bytes with a value of %d", ErrCorrupt, name, len(k), len(v))
				}
				return nil
			})
		})
	})
}

// closeQuietly closes a store that panicked (its close may panic too).
func closeQuietly(db *bolt.DB) {
	defer func() { _ = recover() }()
	db.Close()
}

// Close closes the store.
func (ix *Index) Close() (err error) {
	defer guard(&err)
	return ix.db.Close()
}

// Sync flushes every committed transaction to disk.
func (ix *Index) Sync() (err error) {
	defer guard(&err)
	if err := ix.db.Sync(); err != nil {
		return fmt.Errorf("gfidx: sync: %w", err)
	}
	return nil
}

// Clean reports whether the index was marked clean (in step with the tree)
// and has not been written since. Owners also mark it unclean, durably,
// before their first change to the tree after a clean point
// (SetClean(false)), so that a crash in between is detected on the next
// Open even if the index itself was not written.
func (ix *Index) Clean() (clean bool) {
	defer func() {
		if recover() != nil {
			clean = false
		}
	}()
	_ = ix.db.View(func(tx *bolt.Tx) error {
		clean = string(tx.Bucket(bucketMeta).Get(keyClean)) == "1"
		return nil
	})
	return clean
}

// SetClean records whether the index is in step with the tree. Owners mark
// it unclean before they change the tree and clean after a Sync at a quiet
// point, so that a crash in between is detected on the next Open.
func (ix *Index) SetClean(clean bool) (err error) {
	defer guard(&err)
	v := "0"
	if clean {
		v = "1"
	}
	err = ix.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyClean, []byte(v)) })
	if err != nil {
		return fmt.Errorf("gfidx: marking clean=%v: %w", clean, err)
	}
	return ix.Sync()
}

// Update runs fn in a write transaction; fn's changes commit together, and
// the index is no longer marked clean.
func (ix *Index) Update(fn func(*Tx) error) (err error) {
	defer guard(&err)
	return ix.db.Update(func(tx *bolt.Tx) (err error) {
		// A panic in fn becomes an error here, so that bbolt rolls back
		// as for any failed function.
		defer guard(&err)
		if err := unclean(tx); err != nil {
			return err
		}
		return fn(newTx(tx))
	})
}

func newTx(tx *bolt.Tx) *Tx { return &Tx{b: tx.Bucket(bucketLinks), c: tx.Bucket(bucketChildren)} }

func unclean(tx *bolt.Tx) error {
	m := tx.Bucket(bucketMeta)
	if string(m.Get(keyClean)) == "0" {
		return nil
	}
	return m.Put(keyClean, []byte("0"))
}

// View runs fn in a read transaction.
func (ix *Index) View(fn func(*Tx) error) (err error) {
	defer guard(&err)
	return ix.db.View(func(tx *bolt.Tx) (err error) {
		defer guard(&err)
		return fn(newTx(tx))
	})
}

// Tx is a transaction on the index. It must not be used after the function
// given to Update or View returns.
type Tx struct {
	b *bolt.Bucket // links: gfid ‖ parent ‖ name
	c *bolt.Bucket // children: parent ‖ name -> gfid
}

func childKey(l Link) []byte {
	k := make([]byte, 0, 16+len(l.Name))
	k = append(k, l.Parent[:]...)
	return append(k, l.Name...)
}

// Child returns the gfid that name l holds, as far as the index knows.
func (t *Tx) Child(l Link) (gfid.GFID, bool) {
	v := t.c.Get(childKey(l))
	if len(v) != 16 {
		return gfid.Zero, false
	}
	var g gfid.GFID
	copy(g[:], v)
	return g, true
}

// Child is one name in a directory and the gfid it holds.
type Child struct {
	Name string
	GFID gfid.GFID
}

// Children returns the names the index knows in directory parent, in name
// order.
func (t *Tx) Children(parent gfid.GFID) []Child {
	var out []Child
	c := t.c.Cursor()
	for k, v := c.Seek(parent[:]); k != nil && bytes.HasPrefix(k, parent[:]); k, v = c.Next() {
		if len(k) < 17 || len(v) != 16 {
			continue
		}
		ch := Child{Name: string(k[16:])}
		copy(ch.GFID[:], v)
		out = append(out, ch)
	}
	return out
}

func key(g gfid.GFID, l Link) []byte {
	k := make([]byte, 0, 32+len(l.Name))
	k = append(k, g[:]...)
	k = append(k, l.Parent[:]...)
	return append(k, l.Name...)
}

// Links returns every link of g, in key order (so the first is stable).
func (t *Tx) Links(g gfid.GFID) []Link {
	var out []Link
	c := t.b.Cursor()
	for k, _ := c.Seek(g[:]); k != nil && bytes.HasPrefix(k, g[:]); k, _ = c.Next() {
		if len(k) < 33 {
			continue
		}
		var l Link
		copy(l.Parent[:], k[16:32])
		l.Name = string(k[32:])
		out = append(out, l)
	}
	return out
}

// OneLink reports whether g has exactly one link (without building the
// list: two cursor steps).
func (t *Tx) OneLink(g gfid.GFID) bool {
	c := t.b.Cursor()
	n := 0
	for k, _ := c.Seek(g[:]); k != nil && bytes.HasPrefix(k, g[:]) && n < 2; k, _ = c.Next() {
		if len(k) >= 33 {
			n++
		}
	}
	return n == 1
}

// HasLink reports whether g has link l.
func (t *Tx) HasLink(g gfid.GFID, l Link) bool { return t.b.Get(key(g, l)) != nil }

// AddLink records that g is named l. Adding a link twice is harmless.
func (t *Tx) AddLink(g gfid.GFID, l Link) error {
	if l.Name == "" {
		return fmt.Errorf("gfidx: empty name for %s", g)
	}
	if err := t.b.Put(key(g, l), nil); err != nil {
		return fmt.Errorf("gfidx: adding link %s: %w", g, err)
	}
	if err := t.c.Put(childKey(l), g[:]); err != nil {
		return fmt.Errorf("gfidx: adding link %s: %w", g, err)
	}
	return nil
}

// RemoveLink forgets that g is named l. Removing an absent link is harmless.
func (t *Tx) RemoveLink(g gfid.GFID, l Link) error {
	if err := t.b.Delete(key(g, l)); err != nil {
		return fmt.Errorf("gfidx: removing link %s: %w", g, err)
	}
	// The name may hold another gfid by now (added after this one).
	if cur, ok := t.Child(l); ok && cur == g {
		if err := t.c.Delete(childKey(l)); err != nil {
			return fmt.Errorf("gfidx: removing link %s: %w", g, err)
		}
	}
	return nil
}

// RemoveAll forgets every link of g.
func (t *Tx) RemoveAll(g gfid.GFID) error {
	for _, l := range t.Links(g) {
		if err := t.RemoveLink(g, l); err != nil {
			return err
		}
	}
	return nil
}

// Path resolves g to a slash-separated path relative to the tree root ("."
// for the root) through each gfid's first link. The result names what the
// index believes; the caller verifies the gfid xattr of what it opens.
func (t *Tx) Path(g gfid.GFID) (string, error) {
	if g == gfid.Root {
		return ".", nil
	}
	var parts []string
	cur := g
	for depth := 0; cur != gfid.Root; depth++ {
		if depth > maxDepth {
			return "", fmt.Errorf("gfidx: resolving %s: deeper than %d: %w", g, maxDepth, ErrCycle)
		}
		links := t.Links(cur)
		if len(links) == 0 {
			if cur == g {
				return "", fmt.Errorf("gfidx: %s: %w", g, ErrNotFound)
			}
			return "", fmt.Errorf("gfidx: resolving %s: ancestor %s: %w", g, cur, ErrNotFound)
		}
		parts = append(parts, links[0].Name)
		cur = links[0].Parent
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return strings.Join(parts, "/"), nil
}

// Rebuild empties the index and refills it from the gfid xattrs found under
// root, skipping the names in skipTop at the top level. It never follows
// symlinks. Entries without a gfid are left out (and reported in the count).
// Regular files for which sweep (when set) returns true are removed: the
// owner's leftovers of an interrupted write.
//
// The tree may be deeper than PATH_MAX: below root, every entry is reached
// relative to its parent directory's descriptor (the walk holds one per
// level of the directory it is in), never by a whole path.
func (ix *Index) Rebuild(root string, ns gfid.Namespace, skipTop []string, sweep func(name string) bool) (indexed, missing int, err error) {
	if err := ix.Reset(); err != nil {
		return 0, 0, err
	}
	type pending struct {
		g gfid.GFID
		l Link
	}
	var batch []pending
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := ix.Update(func(tx *Tx) error {
			for _, p := range batch {
				if err := tx.AddLink(p.g, p.l); err != nil {
					return err
				}
			}
			return nil
		})
		batch = batch[:0]
		return err
	}
	// where names rel under root, for errors only (it may be longer than
	// PATH_MAX).
	where := func(rel string) string {
		if rel == "" {
			return root
		}
		return strings.TrimSuffix(root, "/") + "/" + rel
	}
	join := func(rel, name string) string {
		if rel == "" {
			return name
		}
		return rel + "/" + name
	}

	// walk indexes the entries of the directory open as dirfd (at rel,
	// "" for the root, with gfid parent) and below them.
	var walk func(dirfd int, rel string, parent gfid.GFID) error
	walk = func(dirfd int, rel string, parent gfid.GFID) error {
		ents, err := readDirents(dirfd)
		if err != nil {
			return &os.PathError{Op: "readdirent", Path: where(rel), Err: err}
		}
		for _, d := range ents {
			name := d.name
			if rel == "" && slices.Contains(skipTop, name) {
				continue
			}
			typ := d.typ
			if typ == unix.DT_UNKNOWN {
				var st unix.Stat_t
				err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
				if errors.Is(err, unix.ENOENT) {
					continue // gone since the listing
				}
				if err != nil {
					return &os.PathError{Op: "lstat", Path: where(join(rel, name)), Err: err}
				}
				typ = direntType(st.Mode)
			}
			if sweep != nil && typ == unix.DT_REG && sweep(name) {
				if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
					return &os.PathError{Op: "remove", Path: where(join(rel, name)), Err: err}
				}
				continue
			}
			g, err := ns.GetAt(dirfd, name)
			if err != nil {
				// Not descended into when a directory: its entries
				// could not be linked to it.
				missing++
				continue
			}
			batch = append(batch, pending{g, Link{Parent: parent, Name: name}})
			indexed++
			if len(batch) >= 10000 {
				if err := flush(); err != nil {
					return err
				}
			}
			if typ != unix.DT_DIR {
				continue
			}
			childRel := join(rel, name)
			fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return &os.PathError{Op: "open", Path: where(childRel), Err: err}
			}
			err = walk(fd, childRel, g)
			unix.Close(fd)
			if err != nil {
				return err
			}
		}
		return nil
	}

	// As filepath.WalkDir did: a root that is not a directory (a symlink
	// to one included) has nothing under it to index.
	var st unix.Stat_t
	if err := unix.Lstat(root, &st); err != nil {
		return 0, 0, fmt.Errorf("gfidx: rebuilding from %s: %w", root, &os.PathError{Op: "lstat", Path: root, Err: err})
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return 0, 0, nil
	}
	rootFD, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("gfidx: rebuilding from %s: %w", root, &os.PathError{Op: "open", Path: root, Err: err})
	}
	walkErr := walk(rootFD, "", gfid.Root)
	unix.Close(rootFD)
	if walkErr != nil {
		return indexed, missing, fmt.Errorf("gfidx: rebuilding from %s: %w", root, walkErr)
	}
	if err := flush(); err != nil {
		return indexed, missing, fmt.Errorf("gfidx: rebuilding from %s: %w", root, err)
	}
	return indexed, missing, nil
}

// dirent is one entry of a directory listing: its name and its d_type
// (unix.DT_UNKNOWN when the file system does not say).
type dirent struct {
	name string
	typ  uint8
}

// readDirents lists the directory open as fd (from its start: fd must not
// have been read yet), without "." and "..", sorted by name.
func readDirents(fd int) ([]dirent, error) {
	// struct linux_dirent64, the same on every architecture:
	// d_ino u64, d_off s64, d_reclen u16, d_type u8, d_name NUL-terminated.
	const (
		offReclen = 16
		offType   = 18
		offName   = 19
	)
	buf := make([]byte, 64<<10)
	var out []dirent
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			break
		}
		for b := buf[:n]; len(b) >= offName; {
			reclen := int(binary.NativeEndian.Uint16(b[offReclen:]))
			if reclen < offName || reclen > len(b) {
				return nil, fmt.Errorf("malformed directory entry (record of %d bytes)", reclen)
			}
			rec := b[:reclen]
			b = b[reclen:]
			if binary.NativeEndian.Uint64(rec) == 0 {
				continue // no inode: a deleted entry
			}
			name := rec[offName:]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if len(name) == 0 || string(name) == "." || string(name) == ".." {
				continue
			}
			out = append(out, dirent{name: string(name), typ: rec[offType]})
		}
	}
	slices.SortFunc(out, func(a, b dirent) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// direntType is the d_type of a file of mode m.
func direntType(m uint32) uint8 {
	switch m & unix.S_IFMT {
	case unix.S_IFREG:
		return unix.DT_REG
	case unix.S_IFDIR:
		return unix.DT_DIR
	case unix.S_IFLNK:
		return unix.DT_LNK
	case unix.S_IFIFO:
		return unix.DT_FIFO
	case unix.S_IFCHR:
		return unix.DT_CHR
	case unix.S_IFBLK:
		return unix.DT_BLK
	case unix.S_IFSOCK:
		return unix.DT_SOCK
	}
	return unix.DT_UNKNOWN
}

// Remove deletes the index file at path (for a rebuild after corruption).
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("gfidx: removing %s: %w", path, err)
	}
	return nil
}

// Reset empties the index (before a full crawl refills it).
func (ix *Index) Reset() (err error) {
	defer guard(&err)
	err = ix.db.Update(func(tx *bolt.Tx) error {
		if err := unclean(tx); err != nil {
			return err
		}
		for _, b := range [][]byte{bucketLinks, bucketChildren} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("gfidx: reset: %w", err)
	}
	return nil
}
