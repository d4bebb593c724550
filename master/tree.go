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

// Open implements syncer.Source. A file the master may not read is an
// error, not a vanished file, except when it is empty: there is nothing to
// read, and its stat is all the slave needs.
func (t *tree) Open(g gfid.GFID) (*syncer.Opened, error) {
	var out *syncer.Opened
	var denied error
	err := t.idx.View(func(tx *gfidx.Tx) error {
		for _, l := range tx.Links(g) {
			dirfd, err := t.openDir(tx, l.Parent)
			if err != nil {
				continue
			}
			fd, err := unix.Openat(dirfd, l.Name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOATIME, 0)
			if errors.Is(err, unix.EPERM) {
				// O_NOATIME needs ownership of the file.
				fd, err = unix.Openat(dirfd, l.Name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
			if errors.Is(err, unix.EACCES) {
				st, lerr := t.lookup(dirfd, l.Parent, l.Name, g)
				unix.Close(dirfd)
				if lerr == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == 0 {
					out = &syncer.Opened{Stat: st}
					return nil
				}
				denied = fmt.Errorf("master: reading %q: %w", l.Name, err)
				continue
			}
			unix.Close(dirfd)
			if err != nil {
				continue
			}
			got, err := t.ns.FGet(fd)
			var st unix.Stat_t
			if unix.Fstat(fd, &st) != nil {
				unix.Close(fd)
				continue
			}
			if errors.Is(err, gfid.ErrNoGFID) {
				got, err = gfid.Derived(l.Parent, l.Name, st.Mode), nil
			}
			if err == nil && got == g && st.Mode&unix.S_IFMT == unix.S_IFREG {
				out = &syncer.Opened{File: os.NewFile(uintptr(fd), l.Name), Stat: st}
				return nil
			}
			unix.Close(fd)
		}
		if denied != nil {
			return denied
		}
		return errGone
	})
	return out, err
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
	// Two crawlers (or a crawler and the recorder) may race to name the
	// same inode; the xattr is the arbiter.
	if got, err := t.ns.Get(p); err == nil {
		return got, false, nil
	}
	return g, false, nil
}
