package mtree

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/xattrs"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/syncer"
)

// Source is the master tree as the data plane reads it: it opens a file
// by gfid for the syncer's workers (syncer.Source), in a directory opened
// by gfid and kept in a small cache they share, and it knows which xattrs
// the session replicates.
type Source struct {
	*Tree
	// privXattrs: trusted.* and security.* xattrs are replicated, which
	// needs both ends privileged (set at each handshake).
	privXattrs atomic.Bool
	// dirs holds the directories the syncer's workers opened files in.
	dirs dirRefs
}

var _ syncer.Source = (*Source)(nil)

// SetPrivileged says whether trusted.* and security.* xattrs are
// replicated (both ends privileged), as learnt at a handshake.
func (t *Source) SetPrivileged(priv bool) { t.privXattrs.Store(priv) }

// Replicated is the filter of the xattrs this session replicates.
func (t *Source) Replicated() func(name string) bool {
	priv := t.privXattrs.Load()
	return func(n string) bool { return xattrs.Replicated(n, priv) }
}

// ResetDirs closes the directories the workers opened files in (as they
// are given back, for those in use): a batch's end, so that a deleted
// directory's inode is not kept.
func (t *Source) ResetDirs() { t.dirs.reset() }

// Open implements syncer.Source: the file is opened by its path in one
// openat2 (confined like every master access) and checked to carry gfid g;
// its replicated xattrs are read from the open file. A file the master may
// not read is an error, not a vanished file, except when it is empty:
// there is nothing to read, and its stat is all the slave needs.
func (t *Source) Open(g gfid.GFID, at syncer.Link) (*syncer.Opened, error) {
	if at.Parent != gfid.Zero {
		if o := t.openAt(g, at); o != nil {
			return o, nil
		}
	}
	var links []gfidx.Link
	paths := map[gfidx.Link]string{}
	err := t.Idx.View(func(tx *gfidx.Tx) error {
		links = tx.Links(g)
		for _, l := range links {
			if p, err := LinkPath(tx, l); err == nil {
				paths[l] = p
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
		fd, err := openToRead(func(flags int) (int, error) { return t.Root.Open(p, flags) })
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
		if o := t.opened(fd, l, g); o != nil {
			return o, nil
		}
	}
	if denied != nil {
		return nil, denied
	}
	// Not found by the paths the index's first links give: a stale link
	// on the way (see mtree.OpenDir) must not make a file look vanished.
	if o := t.openByDirs(g, links); o != nil {
		return o, nil
	}
	return nil, ErrGone
}

// openAt opens g at the hinted link, in its directory's descriptor from
// the cache: no index lookup, and no walk of the path from the root.
// nil when g is not there (or that directory is not known): the caller
// then looks g up in the index.
func (t *Source) openAt(g gfid.GFID, at syncer.Link) *syncer.Opened {
	d := t.dirs.get(at.Parent, func() (int, error) {
		var fd int
		err := t.Idx.View(func(tx *gfidx.Tx) (err error) {
			fd, err = t.OpenDir(tx, at.Parent)
			return err
		})
		return fd, err
	})
	if d == nil {
		return nil
	}
	defer t.dirs.put(d)
	fd, err := openToRead(func(flags int) (int, error) {
		return unix.Openat(d.fd, at.Name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return nil
	}
	return t.opened(fd, gfidx.Link{Parent: at.Parent, Name: at.Name}, g)
}

// openToRead opens a file to send with open(flags): read-only, without
// updating its atime where the master may (O_NOATIME needs ownership),
// never hanging on a FIFO that took its name (O_NONBLOCK, cleared in
// opened) nor making a tty the master's terminal.
func openToRead(open func(flags int) (int, error)) (int, error) {
	const flags = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY
	fd, err := open(flags | unix.O_NOATIME)
	if errors.Is(err, unix.EPERM) {
		fd, err = open(flags)
	}
	return fd, err
}

// dirRefs caches a few directory descriptors by gfid for the syncer's
// workers, which open the files of a directory one after another. A
// descriptor stands for the directory's inode, wherever it was moved
// since (a link names its parent by gfid, not by path); a file opened in
// it is checked for its gfid like any other. Entries are counted, so that
// one evicted while a worker opens a file in it is closed after.
type dirRefs struct {
	mu    sync.Mutex
	byG   map[gfid.GFID]*dirRef
	order []gfid.GFID // oldest first, for eviction
}

type dirRef struct {
	fd      int
	refs    int
	evicted bool
}

// dirRefsSize is how many directories the cache holds: a few per worker.
const dirRefsSize = 32

// get returns g's entry, counted, opening it with open on a miss; nil
// when open fails.
func (c *dirRefs) get(g gfid.GFID, open func() (int, error)) *dirRef {
	c.mu.Lock()
	if d, ok := c.byG[g]; ok {
		d.refs++
		c.mu.Unlock()
		return d
	}
	c.mu.Unlock()
	fd, err := open()
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.byG[g]; ok {
		// Opened meanwhile by another worker.
		unix.Close(fd)
		d.refs++
		return d
	}
	if c.byG == nil {
		c.byG = map[gfid.GFID]*dirRef{}
	}
	for len(c.order) >= dirRefsSize {
		old := c.order[0]
		c.order = c.order[1:]
		c.evict(old)
	}
	d := &dirRef{fd: fd, refs: 1}
	c.byG[g] = d
	c.order = append(c.order, g)
	return d
}

// put gives back an entry get returned.
func (c *dirRefs) put(d *dirRef) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.refs--; d.refs == 0 && d.evicted {
		unix.Close(d.fd)
	}
}

// evict drops g's entry; c.mu is held.
func (c *dirRefs) evict(g gfid.GFID) {
	d, ok := c.byG[g]
	if !ok {
		return
	}
	delete(c.byG, g)
	d.evicted = true
	if d.refs == 0 {
		unix.Close(d.fd)
	}
}

// reset closes every entry (as they are given back, for those in use).
func (c *dirRefs) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range c.order {
		c.evict(g)
	}
	c.order = nil
}

// linkPath is l's path relative to the root, as the index has it.
func LinkPath(tx *gfidx.Tx, l gfidx.Link) (string, error) {
	dir, err := tx.Path(l.Parent)
	if err != nil {
		return "", err
	}
	if dir == "." {
		return l.Name, nil
	}
	return dir + "/" + l.Name, nil
}

// openByDirs opens a link of g through its directory opened by gfid (every
// link of every ancestor tried).
func (t *Source) openByDirs(g gfid.GFID, links []gfidx.Link) *syncer.Opened {
	for _, l := range links {
		var fd int = -1
		t.Idx.View(func(tx *gfidx.Tx) error {
			pfd, err := t.OpenDir(tx, l.Parent)
			if err != nil {
				return err
			}
			defer unix.Close(pfd)
			fd, err = openToRead(func(flags int) (int, error) {
				return unix.Openat(pfd, l.Name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			})
			if err != nil {
				fd = -1
			}
			return err
		})
		if fd < 0 {
			continue
		}
		if o := t.opened(fd, l, g); o != nil {
			return o
		}
	}
	return nil
}

// opened checks that fd (opened for link l) is a regular file of gfid g
// and returns it ready to send, or closes it and returns nil.
func (t *Source) opened(fd int, l gfidx.Link, g gfid.GFID) *syncer.Opened {
	var st unix.Stat_t
	// O_NONBLOCK only kept the open from hanging on a FIFO that took the
	// file's name meanwhile (and O_NOCTTY a tty from becoming the
	// master's terminal); it stays, as a regular file ignores it (see
	// syncer.FD).
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil
	}
	got, err := t.NS.FGet(fd)
	if errors.Is(err, gfid.ErrNoGFID) {
		got, err = gfid.Derived(l.Parent, l.Name, st.Mode), nil
	}
	if err != nil || got != g {
		unix.Close(fd)
		return nil
	}
	o := &syncer.Opened{File: syncer.FD(fd), Stat: st}
	if xs, err := XattrsPB(xattrs.ListFD(fd, t.Replicated())); err == nil {
		o.Xattrs, o.XattrsKnown = xs, true
	}
	return o
}

// unreadableEmpty stats an entry the master may not open: when it is an
// empty regular file of gfid g, its stat is all there is to send.
func (t *Source) unreadableEmpty(l gfidx.Link, g gfid.GFID) (*syncer.Opened, bool) {
	var out *syncer.Opened
	t.Idx.View(func(tx *gfidx.Tx) error {
		dirfd, err := t.OpenDir(tx, l.Parent)
		if err != nil {
			return nil
		}
		defer unix.Close(dirfd)
		st, err := t.Lookup(dirfd, l.Parent, l.Name, g)
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == 0 {
			out = &syncer.Opened{Stat: st}
		}
		return nil
	})
	return out, out != nil
}

// XattrsPB turns the xattrs an xattrs.List* call read into wire form,
// sorted by name.
func XattrsPB(m map[string][]byte, err error) ([]*pb.Xattr, error) {
	if err != nil {
		return nil, err
	}
	out := make([]*pb.Xattr, 0, len(m))
	for _, n := range xattrs.Names(m) {
		out = append(out, &pb.Xattr{Name: []byte(n), Value: m[n]})
	}
	return out, nil
}
