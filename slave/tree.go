package slave

import (
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
)

// Reserved names and gfids. The slave keeps its own directory, wire.ReservedName,
// at the top of its root (like GlusterFS's .glusterfs): entries moved aside
// during conflict resolution wait in wire.ReservedName/limbo until the batch
// ends, so that a later op of the same batch can take them back instead of
// re-sending their data. A master never replicates a top-level entry of
// that name.
const (
	limboName = "limbo"
	tmpPrefix = ".georep-tmp."
)

var (
	reservedGFID = gfid.GFID{15: 2}
	limboGFID    = gfid.GFID{15: 3}
)

func isReserved(g gfid.GFID) bool { return g == reservedGFID || g == limboGFID }

// tree is the slave's confined view of its root plus its gfid index.
type tree struct {
	root *beneath.Root
	ns   gfid.Namespace
	idx  *gfidx.Index
	// trash keeps what removals and overwrites would destroy; nil when
	// the trash is off (see trash.go).
	trash *trash
	// unprivileged: gfids live in user.* xattrs, which the kernel refuses
	// on symlinks and special files (see indexNames).
	unprivileged bool
	// dropped counts the announcements dropped (dirCache.dropAnnounced),
	// for the data streams: a new file checks its announcement again only
	// if one was dropped since its header.
	dropped atomic.Uint64
}

// indexNames reports whether an inode of type mode that carries no gfid
// xattr is named by the index: an unprivileged slave cannot mark the
// symlinks, FIFOs, sockets and devices it makes (the user xattr namespace
// refuses them), so what it made is known by its name in the index, as it
// recorded it when it made it. Regular files and directories always carry
// their gfid.
func (t *tree) indexNames(mode uint32) bool {
	typ := mode & unix.S_IFMT
	return t.unprivileged && typ != unix.S_IFREG && typ != unix.S_IFDIR
}

// handle names an existing entry: a name in an open directory (or the root
// itself, when name is "").
type handle struct {
	dirfd  int
	name   string
	parent gfid.GFID
}

func (h handle) isRoot() bool { return h.name == "" }

// xattrPath is the path the l*xattr calls use for h; they do not follow its
// final component.
func (h handle) xattrPath() string {
	if h.isRoot() {
		return beneath.FDPath(h.dirfd)
	}
	return beneath.ProcPath(h.dirfd, h.name)
}

// dirCache holds directory descriptors opened during one request, verified
// to carry the gfid they were opened for.
type dirCache struct {
	t       *tree
	tx      *gfidx.Tx
	fd      map[gfid.GFID]int
	retired []int // forgotten descriptors, still held by handles in use
}

func (t *tree) newDirCache(tx *gfidx.Tx) *dirCache {
	return &dirCache{t: t, tx: tx, fd: map[gfid.GFID]int{}}
}

func (c *dirCache) close() {
	for _, fd := range c.fd {
		if fd != c.t.root.FD() {
			unix.Close(fd)
		}
	}
	for _, fd := range c.retired {
		unix.Close(fd)
	}
	c.fd = map[gfid.GFID]int{}
	c.retired = nil
}

// forget drops g's cached descriptor, so that the next lookup reopens it by
// its path in the index (which a rename or removal just changed). The
// descriptor itself stays open until close: a handle taken before (the
// source of a LINK or RENAME, say) may still use it, and it must not be
// reused for another file meanwhile.
func (c *dirCache) forget(g gfid.GFID) {
	if fd, ok := c.fd[g]; ok {
		if fd != c.t.root.FD() {
			c.retired = append(c.retired, fd)
		}
		delete(c.fd, g)
	}
}

// errUnknown says the index has no verified location for a gfid.
var errUnknown = errors.New("unknown gfid")

// dir opens the directory whose gfid is g.
func (c *dirCache) dir(g gfid.GFID) (int, error) {
	if fd, ok := c.fd[g]; ok {
		return fd, nil
	}
	if g == gfid.Root {
		c.fd[g] = c.t.root.FD()
		return c.t.root.FD(), nil
	}
	p, err := c.tx.Path(g)
	if err != nil {
		if errors.Is(err, gfidx.ErrNotFound) || errors.Is(err, gfidx.ErrCycle) {
			return -1, fmt.Errorf("directory %s: %w (%v)", g, errUnknown, err)
		}
		return -1, err
	}
	fd, err := c.t.root.OpenDir(p)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return -1, fmt.Errorf("directory %s (indexed at %q) is gone: %w", g, p, errUnknown)
		}
		return -1, fmt.Errorf("directory %s at %q: %w", g, p, err)
	}
	got, err := c.t.ns.FGet(fd)
	if err != nil || got != g {
		unix.Close(fd)
		return -1, fmt.Errorf("directory %s: %q now holds %s: %w", g, p, got, errUnknown)
	}
	c.fd[g] = fd
	return fd, nil
}

// lookup returns the gfid and stat of name in dirfd (directory parent);
// exists is false when there is no such name. An entry without a gfid
// xattr is foreign (gfid.Zero, exists true: nothing georep made, to be
// moved aside or removed, never written) on a privileged slave, which
// marks everything it makes; on an unprivileged one it is named by the
// index when indexNames says so (tx nil: not), else by gfid.Derived, as
// the master names an inode it could not mark (see unmarked).
func (t *tree) lookup(dirfd int, parent gfid.GFID, name string, tx *gfidx.Tx) (g gfid.GFID, st unix.Stat_t, exists bool, err error) {
	st, err = beneath.Lstat(dirfd, name)
	if errors.Is(err, unix.ENOENT) {
		return gfid.Zero, st, false, nil
	}
	if err != nil {
		return gfid.Zero, st, false, fmt.Errorf("stat %q: %w", name, err)
	}
	g, err = t.ns.GetAt(dirfd, name)
	if errors.Is(err, gfid.ErrNoGFID) || errors.Is(err, unix.EACCES) {
		return t.unmarked(parent, name, &st, tx), st, true, nil
	}
	if err != nil {
		return gfid.Zero, st, true, err
	}
	return g, st, true, nil
}

// unmarked names an inode that carries no gfid xattr, at name in parent
// (st its stat). A privileged slave marks everything it makes: such an
// inode is foreign (gfid.Zero). An unprivileged one names it by the index
// (indexNames) or by gfid.Derived; but never one with more links than the
// index knows of for it (a derived gfid: one): a local user who may write
// in a replicated directory could otherwise put a hard link to a file
// elsewhere on the filesystem at a derived name, and have the slave
// chown, chmod and write the file it links to.
func (t *tree) unmarked(parent gfid.GFID, name string, st *unix.Stat_t, tx *gfidx.Tx) gfid.GFID {
	if !t.unprivileged {
		return gfid.Zero
	}
	links := uint64(1)
	g := gfid.Derived(parent, name, st.Mode)
	if tx != nil && t.indexNames(st.Mode) {
		if ig, ok := tx.Child(gfidx.Link{Parent: parent, Name: name}); ok {
			g, links = ig, uint64(len(tx.Links(ig)))
		}
	}
	if !isDir(st) && uint64(st.Nlink) > links {
		return gfid.Zero
	}
	return g
}

// find returns a verified handle on an existing link of g.
func (c *dirCache) find(g gfid.GFID) (handle, unix.Stat_t, error) {
	h, st, pending, err := c.locate(g)
	if err == nil && pending {
		return handle{}, st, fmt.Errorf("%s (announced, not created yet): %w", g, errUnknown)
	}
	return h, st, err
}

// locate is find that also reports, in one pass over g's links, a file
// announced by a CREATE with data to follow and not created yet: an index
// link whose name is absent (pending true, err nil, st zero).
func (c *dirCache) locate(g gfid.GFID) (h handle, st unix.Stat_t, pending bool, err error) {
	if g == gfid.Root {
		if err := unix.Fstat(c.t.root.FD(), &st); err != nil {
			return handle{}, st, false, fmt.Errorf("stat root: %w", err)
		}
		return handle{dirfd: c.t.root.FD(), parent: gfid.Root}, st, false, nil
	}
	var absent *handle
	for _, l := range c.tx.Links(g) {
		dirfd, err := c.dir(l.Parent)
		if err != nil {
			continue
		}
		got, lst, exists, err := c.t.lookup(dirfd, l.Parent, l.Name, c.tx)
		if err == nil && exists && got == g {
			return handle{dirfd: dirfd, name: l.Name, parent: l.Parent}, lst, false, nil
		}
		if err == nil && !exists && absent == nil {
			absent = &handle{dirfd: dirfd, name: l.Name, parent: l.Parent}
		}
	}
	if absent != nil {
		return *absent, unix.Stat_t{}, true, nil
	}
	return handle{}, unix.Stat_t{}, false, fmt.Errorf("%s: %w", g, errUnknown)
}

// findOrMaterialize is find, except that a file announced but not yet
// created (pending) is created empty, with its gfid, so that a LINK or
// RENAME can act on it; its data then patches it like any file.
func (c *dirCache) findOrMaterialize(g gfid.GFID) (handle, unix.Stat_t, error) {
	h, st, pending, err := c.locate(g)
	if err != nil || !pending {
		return h, st, err
	}
	p := h
	fd, cerr := unix.Openat(p.dirfd, p.name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if cerr != nil {
		return handle{}, st, fmt.Errorf("creating announced file %s: %w", g, cerr)
	}
	serr := c.t.ns.FSet(fd, g)
	unix.Close(fd)
	if serr != nil && !(gfid.CannotCarry(serr) && g == gfid.Derived(p.parent, p.name, unix.S_IFREG)) {
		unix.Unlinkat(p.dirfd, p.name, 0)
		return handle{}, st, fmt.Errorf("creating announced file %s: %w", g, serr)
	}
	return c.find(g)
}

func isDir(st *unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFDIR }

// dropAnnounced removes the index link of g at name in parent, a name
// that is not in the tree (an announced one: a CREATE whose data was to
// follow), when the index has it.
func (c *dirCache) dropAnnounced(g, parent gfid.GFID, name string) error {
	l := gfidx.Link{Parent: parent, Name: name}
	if !c.tx.HasLink(g, l) {
		return nil
	}
	c.t.dropped.Add(1)
	return c.tx.RemoveLink(g, l)
}

// moveAside parks the entry name of dirfd (gfid g, Zero if none) in limbo,
// or removes it when it has no gfid (nothing could ever claim it back).
func (c *dirCache) moveAside(dirfd int, parent gfid.GFID, name string, g gfid.GFID, st *unix.Stat_t) error {
	if g.IsZero() {
		return c.removeTree(dirfd, parent, name)
	}
	limbo, err := c.dir(limboGFID)
	if err != nil {
		return err
	}
	target := g.String()
	for i := 0; ; i++ {
		err := unix.Renameat2(dirfd, name, limbo, target, unix.RENAME_NOREPLACE)
		if err == nil {
			break
		}
		if errors.Is(err, unix.EEXIST) && i < 100 {
			target = fmt.Sprintf("%s.%d", g, i+1)
			continue
		}
		return fmt.Errorf("moving %q aside: %w", name, err)
	}
	if err := c.tx.RemoveLink(g, gfidx.Link{Parent: parent, Name: name}); err != nil {
		return err
	}
	if isDir(st) {
		c.forget(g)
	}
	c.noteAside(dirfd, parent, name, target)
	return c.tx.AddLink(g, gfidx.Link{Parent: limboGFID, Name: target})
}

// removeTree removes name from dirfd, with everything below it when it is a
// directory, and forgets the removed links in the index. With the trash
// on, what is worth keeping is moved there instead (see keepRemoved).
func (c *dirCache) removeTree(dirfd int, parent gfid.GFID, name string) error {
	if c.t.trash != nil {
		if handled, err := c.keepRemoved(dirfd, parent, name, nil); handled || err != nil {
			return err
		}
	}
	return c.destroyTree(dirfd, parent, name)
}

// destroyTree is removeTree without the trash.
func (c *dirCache) destroyTree(dirfd int, parent gfid.GFID, name string) error {
	g, st, exists, err := c.t.lookup(dirfd, parent, name, c.tx)
	if err != nil {
		return err
	}
	if !exists {
		return nil
	}
	if isDir(&st) {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening %q for removal: %w", name, err)
		}
		names, err := readNames(fd)
		if err == nil {
			for _, n := range names {
				if err = c.destroyTree(fd, g, n); err != nil {
					break
				}
			}
		}
		unix.Close(fd)
		if err != nil {
			return err
		}
		if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("removing directory %q: %w", name, err)
		}
		if !g.IsZero() {
			c.forget(g)
			// Only this link: the gfid may already live again elsewhere
			// (a conflict parked the old directory; a new entry took its
			// gfid).
			return c.tx.RemoveLink(g, gfidx.Link{Parent: parent, Name: name})
		}
		return nil
	}
	if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("removing %q: %w", name, err)
	}
	if !g.IsZero() {
		return c.tx.RemoveLink(g, gfidx.Link{Parent: parent, Name: name})
	}
	return nil
}

// readNames lists a directory (see beneath.ReadNames).
func readNames(fd int) ([]string, error) { return beneath.ReadNames(fd) }
