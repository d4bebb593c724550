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
	if err != nil || got != g {
		unix.Close(fd)
		return -1, errGone
	}
	return fd, nil
}

// lookup stats name in dirfd and checks that it carries gfid g.
func (t *tree) lookup(dirfd int, name string, g gfid.GFID) (unix.Stat_t, error) {
	st, err := beneath.Lstat(dirfd, name)
	if errors.Is(err, unix.ENOENT) {
		return st, errGone
	}
	if err != nil {
		return st, fmt.Errorf("master: stat %q: %w", name, err)
	}
	got, err := t.getGFID(dirfd, name, &st)
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
		st, err := t.lookup(dirfd, l.Name, g)
		if err == nil {
			return entry{dirfd: dirfd, name: l.Name, st: st}, nil
		}
		unix.Close(dirfd)
	}
	return entry{}, errGone
}

// Open implements syncer.Source.
func (t *tree) Open(g gfid.GFID) (*os.File, error) {
	var f *os.File
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
			unix.Close(dirfd)
			if err != nil {
				continue
			}
			got, err := t.ns.FGet(fd)
			var st unix.Stat_t
			if err == nil && got == g && unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
				f = os.NewFile(uintptr(fd), l.Name)
				return nil
			}
			unix.Close(fd)
		}
		return errGone
	})
	return f, err
}

// getGFID reads the gfid of name in dirfd (st is its lstat).
func (t *tree) getGFID(dirfd int, name string, st *unix.Stat_t) (gfid.GFID, error) {
	return t.ns.Get(beneath.ProcPath(dirfd, name))
}

// ensureGFID returns the gfid of name in dirfd, giving it a new one when it
// has none.
func (t *tree) ensureGFID(dirfd int, name string, st *unix.Stat_t) (g gfid.GFID, fresh bool, err error) {
	p := beneath.ProcPath(dirfd, name)
	g, err = t.ns.Get(p)
	if err == nil {
		return g, false, nil
	}
	if !errors.Is(err, gfid.ErrNoGFID) {
		return gfid.Zero, false, err
	}
	if g, err = gfid.New(); err != nil {
		return gfid.Zero, false, err
	}
	if err := t.ns.Set(p, g); err != nil {
		return gfid.Zero, false, fmt.Errorf("master: cannot give %q a gfid: %w", name, err)
	}
	// Two crawlers (or a crawler and the recorder) may race to name the
	// same inode; the xattr is the arbiter.
	if got, err := t.ns.Get(p); err == nil {
		return got, got == g, nil
	}
	return g, true, nil
}
