package master

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/syncer"
)

// tree is the master's view of its root: gfids and the index that turns
// them back into paths. The master's root is the replicated tree's root
// whatever gfid it may carry itself, so it is never written to except for
// the session's marks.
type tree struct {
	root *beneath.Root
	ns   gfid.Namespace
	idx  *gfidx.Index
}

// entry is an existing master entry found by (parent gfid, name).
type entry struct {
	dirfd int // owned by the caller of open
	name  string
	st    unix.Stat_t
}

// errGone says an entry no longer exists where the record said (it was
// removed or moved since): not an error, a later record tells what became
// of it.
var errGone = fmt.Errorf("master: entry is gone: %w", fs.ErrNotExist)

// openDir opens directory g, verified.
func (t *tree) openDir(tx *gfidx.Tx, g gfid.GFID) (int, error) {
	p, err := tx.Path(g)
	if errors.Is(err, gfidx.ErrNotFound) {
		return -1, errGone
	}
	if err != nil {
		return -1, err
	}
	fd, err := t.root.OpenDir(p)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, beneath.ErrEscape) {
		return -1, errGone
	}
	if err != nil {
		return -1, err
	}
	if g == gfid.Root {
		return fd, nil
	}
	got, err := t.ns.FGet(fd)
	if errors.Is(err, gfid.ErrNoGFID) || errors.Is(err, unix.EACCES) {
		// A directory the crawl could not mark: its derived gfid, from
		// the link Path followed.
		if links := tx.Links(g); len(links) > 0 {
			got, err = gfid.Derived(links[0].Parent, links[0].Name, unix.S_IFDIR), nil
		}
	}
	if err != nil || got != g {
		unix.Close(fd)
		return -1, errGone
	}
	return fd, nil
}

// lookup stats name (in dirfd, directory parent) and checks that it
// carries gfid g.
func (t *tree) lookup(dirfd int, parent gfid.GFID, name string, g gfid.GFID) (unix.Stat_t, error) {
	st, err := beneath.Lstat(dirfd, name)
	if errors.Is(err, unix.ENOENT) {
		return st, errGone
	}
	if err != nil {
		return st, fmt.Errorf("master: stat %q: %w", name, err)
	}
	got, err := t.getGFID(dirfd, parent, name, &st)
	if err != nil || got != g {
		return st, errGone
	}
	return st, nil
}

// find locates an existing link of g; the caller closes e.dirfd.
func (t *tree) find(tx *gfidx.Tx, g gfid.GFID) (entry, error) {
	for _, l := range tx.Links(g) {
		dirfd, err := t.openDir(tx, l.Parent)
		if err != nil {
			continue
		}
		st, err := t.lookup(dirfd, l.Parent, l.Name, g)
		if err == nil {
			return entry{dirfd: dirfd, name: l.Name, st: st}, nil
		}
		unix.Close(dirfd)
	}
	return entry{}, errGone
}

// Open implements syncer.Source: the file is opened by its path in one
// openat2 (confined like every master access) and checked to carry gfid g;
// its replicated xattrs are read from the open file. A file the master may
// not read is an error, not a vanished file, except when it is empty:
// there is nothing to read, and its stat is all the slave needs.
func (t *tree) Open(g gfid.GFID) (*syncer.Opened, error) {
	var links []gfidx.Link
	paths := map[gfidx.Link]string{}
	err := t.idx.View(func(tx *gfidx.Tx) error {
		links = tx.Links(g)
		for _, l := range links {
			dir, err := tx.Path(l.Parent)
			if err != nil {
				continue
			}
			if dir == "." {
				paths[l] = l.Name
			} else {
				paths[l] = dir + "/" + l.Name
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var denied error
	for _, l := range links {
		p, ok := paths[l]
		if !ok {
			continue
		}
		fd, err := t.root.Open(p, unix.O_RDONLY|unix.O_NOATIME)
		if errors.Is(err, unix.EPERM) {
			// O_NOATIME needs ownership of the file.
			fd, err = t.root.Open(p, unix.O_RDONLY)
		}
		if errors.Is(err, unix.EACCES) {
			if o, ok := t.unreadableEmpty(l, g); ok {
				return o, nil
			}
			denied = fmt.Errorf("master: reading %q: %w", p, err)
			continue
		}
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			unix.Close(fd)
			continue
		}
		got, err := t.ns.FGet(fd)
		if errors.Is(err, gfid.ErrNoGFID) {
			got, err = gfid.Derived(l.Parent, l.Name, st.Mode), nil
		}
		if err != nil || got != g {
			unix.Close(fd)
			continue
		}
		o := &syncer.Opened{File: os.NewFile(uintptr(fd), l.Name), Stat: st}
		if xs, err := readXattrs(beneath.FDPath(fd), true, t.ns.Prefix() == "trusted.georep."); err == nil {
			o.Xattrs, o.XattrsKnown = xs, true
		}
		return o, nil
	}
	if denied != nil {
		return nil, denied
	}
	return nil, errGone
}

// unreadableEmpty stats an entry the master may not open: when it is an
// empty regular file of gfid g, its stat is all there is to send.
func (t *tree) unreadableEmpty(l gfidx.Link, g gfid.GFID) (*syncer.Opened, bool) {
	var out *syncer.Opened
	t.idx.View(func(tx *gfidx.Tx) error {
		dirfd, err := t.openDir(tx, l.Parent)
		if err != nil {
			return nil
		}
		defer unix.Close(dirfd)
		st, err := t.lookup(dirfd, l.Parent, l.Name, g)
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == 0 {
			out = &syncer.Opened{Stat: st}
		}
		return nil
	})
	return out, out != nil
}

// getGFID reads the gfid of name in dirfd (directory parent; st is its
// lstat). An inode without a gfid xattr is named by gfid.Derived: the
// crawl could not give it one.
func (t *tree) getGFID(dirfd int, parent gfid.GFID, name string, st *unix.Stat_t) (gfid.GFID, error) {
	g, err := t.ns.Get(beneath.ProcPath(dirfd, name))
	if errors.Is(err, gfid.ErrNoGFID) || errors.Is(err, unix.EACCES) {
		return gfid.Derived(parent, name, st.Mode), nil
	}
	return g, err
}

// ensureGFID returns the gfid of name in dirfd, giving it a new one when it
// has none. An inode that cannot carry the xattr (a symlink or device in
// the user namespace, a file an unprivileged master may not write) gets
// its derived gfid; derived reports that.
func (t *tree) ensureGFID(dirfd int, parent gfid.GFID, name string, st *unix.Stat_t) (g gfid.GFID, derived bool, err error) {
	p := beneath.ProcPath(dirfd, name)
	g, err = t.ns.Get(p)
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
	if ft := st.Mode & unix.S_IFMT; t.ns.Prefix() == "user.georep." && ft != unix.S_IFREG && ft != unix.S_IFDIR {
		return gfid.Derived(parent, name, st.Mode), true, nil
	}
	if g, err = gfid.New(); err != nil {
		return gfid.Zero, false, err
	}
	if err := t.ns.Set(p, g); err != nil {
		if gfid.CannotCarry(err) {
			return gfid.Derived(parent, name, st.Mode), true, nil
		}
		return gfid.Zero, false, fmt.Errorf("master: cannot give %q a gfid: %w", name, err)
	}
	return g, false, nil
}
