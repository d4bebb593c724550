// Package mtree is the master tree seen through gfids: opening directories
// and entries by gfid through the gfid index, checking the gfid xattr of
// everything opened (a mismatch is "moved or gone", never "use this"), and
// giving inodes their gfids. The crawl, the recorder and the batch
// processor all reach the master tree through it.
package mtree

import (
	"errors"
	"fmt"
	"io/fs"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
)

// Tree is the master's view of its root: gfids and the index that turns
// them back into paths. The master's root is the replicated tree's root
// whatever gfid it may carry itself, so it is never written to except for
// the session's marks.
type Tree struct {
	Root *beneath.Root
	NS   gfid.Namespace
	Idx  *gfidx.Index
	// NewGFID makes the gfid given to a new inode (nil: gfid.New). Tests
	// that replay an interleaving from a seed set a seeded one, so that
	// what is ordered by gfid is ordered alike each time.
	NewGFID func() (gfid.GFID, error)
}

// New makes a gfid for a new inode (see NewGFID).
func (t *Tree) New() (gfid.GFID, error) {
	if t.NewGFID != nil {
		return t.NewGFID()
	}
	return gfid.New()
}

// Entry is an existing master entry found by (parent gfid, name).
type Entry struct {
	DirFD int // owned by the caller
	Name  string
	St    unix.Stat_t
}

// ErrGone says an entry no longer exists where the record said (it was
// removed or moved since): not an error, a later record tells what became
// of it.
var ErrGone = fmt.Errorf("entry is gone: %w", fs.ErrNotExist)

// OpenDir opens directory g, verified.
func (t *Tree) OpenDir(tx *gfidx.Tx, g gfid.GFID) (int, error) {
	p, err := tx.Path(g)
	if errors.Is(err, gfidx.ErrNotFound) || errors.Is(err, gfidx.ErrCycle) {
		// g has no link (gone), or an ancestor on the way through first
		// links has none (a stale link to a parent removed since) or the
		// first links loop (stale links of directories moved into each
		// other's old places): none of which must hide g's other links
		// (openDirByLinks tries them all).
		return t.openDirByLinks(tx, g, 0)
	}
	if err != nil {
		return -1, err
	}
	fd, err := t.Root.OpenDir(p)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, beneath.ErrEscape) {
		return t.openDirByLinks(tx, g, 0)
	}
	if err != nil {
		return -1, err
	}
	if g == gfid.Root {
		return fd, nil
	}
	got, err := t.NS.FGet(fd)
	if errors.Is(err, gfid.ErrNoGFID) || errors.Is(err, unix.EACCES) {
		// A directory the crawl could not mark: its derived gfid, from
		// the link Path followed.
		if links := tx.Links(g); len(links) > 0 {
			got, err = gfid.Derived(links[0].Parent, links[0].Name, unix.S_IFDIR), nil
		}
	}
	if err != nil || got != g {
		unix.Close(fd)
		return t.openDirByLinks(tx, g, 0)
	}
	return fd, nil
}

// openDirByLinks opens directory g through each of its index links in
// turn, each parent resolved the same way: the path through first links
// can hold a stale link (a name a crawl indexed just after the recorder
// had moved the directory on), and one stale link must not hide a subtree.
// failed holds the directories that could not be opened (or are being
// opened: on the current path) in this search: stale links can make a
// cycle, and a directory with several links one of whose ancestors does
// too made the search exponential (a master spun for minutes at 100%).
func (t *Tree) openDirByLinks(tx *gfidx.Tx, g gfid.GFID, depth int) (int, error) {
	return t.openDirSearch(tx, g, depth, map[gfid.GFID]bool{})
}

func (t *Tree) openDirSearch(tx *gfidx.Tx, g gfid.GFID, depth int, failed map[gfid.GFID]bool) (int, error) {
	if g == gfid.Root {
		return unix.Dup(t.Root.FD())
	}
	if depth > 4096 || failed[g] {
		return -1, ErrGone
	}
	failed[g] = true // on the path now; stays so if no link opens
	for _, l := range tx.Links(g) {
		pfd, err := t.openDirSearch(tx, l.Parent, depth+1, failed)
		if err != nil {
			continue
		}
		fd, err := unix.Openat(pfd, l.Name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(pfd)
		if err != nil {
			continue
		}
		got, err := t.NS.FGet(fd)
		if errors.Is(err, gfid.ErrNoGFID) || errors.Is(err, unix.EACCES) {
			got, err = gfid.Derived(l.Parent, l.Name, unix.S_IFDIR), nil
		}
		if err == nil && got == g {
			delete(failed, g)
			return fd, nil
		}
		unix.Close(fd)
	}
	return -1, ErrGone
}

// Lookup stats name (in dirfd, directory parent) and checks that it
// carries gfid g.
func (t *Tree) Lookup(dirfd int, parent gfid.GFID, name string, g gfid.GFID) (unix.Stat_t, error) {
	st, err := beneath.Lstat(dirfd, name)
	if errors.Is(err, unix.ENOENT) {
		return st, ErrGone
	}
	if err != nil {
		return st, fmt.Errorf("stat %q: %w", name, err)
	}
	got, err := t.GetGFID(dirfd, parent, name, &st)
	if err != nil || got != g {
		return st, ErrGone
	}
	return st, nil
}

// Find locates an existing link of g; the caller closes e.dirfd.
func (t *Tree) Find(tx *gfidx.Tx, g gfid.GFID) (Entry, error) {
	for _, l := range tx.Links(g) {
		dirfd, err := t.OpenDir(tx, l.Parent)
		if err != nil {
			continue
		}
		st, err := t.Lookup(dirfd, l.Parent, l.Name, g)
		if err == nil {
			return Entry{DirFD: dirfd, Name: l.Name, St: st}, nil
		}
		unix.Close(dirfd)
	}
	return Entry{}, ErrGone
}

// GetGFID reads the gfid of name in dirfd (directory parent; st is its
// lstat). An inode without a gfid xattr is named by gfid.Derived: the
// crawl could not give it one.
func (t *Tree) GetGFID(dirfd int, parent gfid.GFID, name string, st *unix.Stat_t) (gfid.GFID, error) {
	g, err := t.NS.GetAt(dirfd, name)
	if errors.Is(err, gfid.ErrNoGFID) || errors.Is(err, unix.EACCES) {
		return gfid.Derived(parent, name, st.Mode), nil
	}
	return g, err
}

// EnsureGFID returns the gfid of name in dirfd, giving it a new one when it
// has none. An inode that cannot carry the xattr (a symlink or device in
// the user namespace, a file an unprivileged master may not write) gets
// its derived gfid; derived reports that.
func (t *Tree) EnsureGFID(dirfd int, parent gfid.GFID, name string, st *unix.Stat_t) (g gfid.GFID, derived bool, err error) {
	g, err = t.NS.GetAt(dirfd, name)
	if err == nil {
		return g, false, nil
	}
	if errors.Is(err, unix.EACCES) {
		// An unprivileged master may not even read the xattrs of a file
		// it may not read.
		return gfid.Derived(parent, name, st.Mode), true, nil
	}
	if !errors.Is(err, gfid.ErrNoGFID) {
		return gfid.Zero, false, err
	}
	if ft := st.Mode & unix.S_IFMT; t.NS.Prefix() == "user.georep." && ft != unix.S_IFREG && ft != unix.S_IFDIR {
		return gfid.Derived(parent, name, st.Mode), true, nil
	}
	if g, err = t.New(); err != nil {
		return gfid.Zero, false, err
	}
	if err := t.NS.SetNewAt(dirfd, name, g); err != nil {
		if errors.Is(err, unix.EEXIST) {
			// Given one by someone else just now.
			g, err = t.NS.GetAt(dirfd, name)
			return g, false, err
		}
		if gfid.CannotCarry(err) {
			return gfid.Derived(parent, name, st.Mode), true, nil
		}
		return gfid.Zero, false, fmt.Errorf("cannot give %q a gfid: %w", name, err)
	}
	return g, false, nil
}
