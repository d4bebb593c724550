// Package recorder watches the master tree and writes every change into
// the live journal (package changelog) as E/D/M records keyed by gfid: the
// master-side half of capability 3. It gives new inodes their gfids, keeps
// the master's gfid index in step with the namespace, and moves the xtime
// marks of the directories that changed. Events come from fanotify (a
// filesystem mark, where the process may) or inotify (a watch per
// directory).
package recorder

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/marks"
	"github.com/georep/georep/internal/mtree"
	"github.com/georep/georep/internal/rules"
	"github.com/georep/georep/internal/wire"
	"github.com/georep/georep/internal/xattrs"
)

// Recorder defaults.
const (
	// DefaultInterval is the longest a change waits in an open segment.
	DefaultInterval = 500 * time.Millisecond
	// DefaultQuiet commits a segment early once the tree has been quiet
	// this long: a lone change is shipped at once, a burst in one segment.
	DefaultQuiet = 20 * time.Millisecond
	// moveWait is how long a rename's first half waits for its second
	// before it is taken for a move out of the tree.
	moveWait = 5 * time.Millisecond
)

// Config configures a Recorder.
type Config struct {
	Tree     *mtree.Tree
	Journal  *changelog.Journal
	Interval time.Duration
	Quiet    time.Duration
	// Watcher picks the event source: WatchFanotify, WatchInotify, or
	// WatchAuto ("" too): fanotify where the process and the kernel can,
	// inotify otherwise.
	Watcher string
	// Rules leave paths out (nil: none): see excluded.
	Rules  *rules.Rules
	Logger hclog.Logger
}

// Event sources (Config.Watcher).
const (
	WatchAuto     = "auto"
	WatchFanotify = "fanotify"
	WatchInotify  = "inotify"
)

// Recorder watches the master tree with inotify and writes every change
// into the journal as E/D/M records keyed by gfid, one segment per
// rollover. It gives new inodes their gfids and keeps the master's gfid
// index in step with the namespace (so that a removal can be named by
// gfid), and at each rollover moves the xtime mark of every directory
// whose subtree changed, up to the root. Its own xattr writes are not
// recorded as changes. A change it may have missed (queue overflow, a
// directory it could not watch) makes the segment a gap.
type Recorder struct {
	cfg  Config
	t    *mtree.Tree
	j    *changelog.Journal
	log  hclog.Logger
	in   source
	dirs map[gfid.GFID]int // open directory descriptors, by gfid

	// The open segment.
	data, meta map[gfid.GFID]bool
	// born: inodes the recorder gave a gfid in this segment. Their
	// IN_ATTRIB (its own xattr write, or anything else) adds nothing to
	// the CREATE, whose op reads the entry as it is when applied.
	born    map[gfid.GFID]bool
	changed map[gfid.GFID]bool // directories whose xtime moves at rollover
	first   time.Time          // first record of the open segment
	last    time.Time          // last event read
	gap     string             // why the open segment is a gap ("" if not)

	moves []pendingMove
	// mirror is the second rename of the exchange just recorded (from,
	// to), which the next rename, if it is that one, is not.
	mirror    *[2]gfidx.Link
	unwatched map[gfid.GFID]bool // directories a watch could not be added to
	// movingIn: the entry being recorded was moved in from a place the
	// rules leave out (see renamed).
	movingIn bool
	rescan   map[gfid.GFID]int // directories to list again, with the tries so far
	// Xattr writes of our own whose IN_ATTRIB may still come: the state
	// before the write, valid until the generation after next.
	self map[gfid.GFID]selfWrite
	gen  int
	xkey string
	// drained is when the last complete read of the queue began (ns):
	// every change made before it is recorded and indexed. stopped is set
	// when Run returns.
	drained atomic.Int64
	stopped atomic.Bool
	// The root's replicated attributes when last recorded: the master
	// writes its marks there, which are not changes.
	rootAttrs attrs
}

type pendingMove struct {
	ev    event
	g     gfid.GFID
	known bool
	at    time.Time
}

// attrs is what of an inode the replication cares about, apart from data:
// what an IN_ATTRIB of our own must have left unchanged to be ignored.
type attrs struct {
	mode, uid, gid uint32
	mtime          int64
	xattrs         [32]byte
}

type selfWrite struct {
	before attrs
	gen    int
}

// New sets up a recorder; Start adds the watches.
func New(cfg Config) (*Recorder, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = DefaultQuiet
	}
	if cfg.Quiet > cfg.Interval {
		cfg.Quiet = cfg.Interval
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	in, err := newSource(cfg.Watcher, cfg.Tree.Root.FD(), log)
	if err != nil {
		return nil, err
	}
	r := &Recorder{
		cfg: cfg, t: cfg.Tree, j: cfg.Journal, log: log, in: in,
		dirs: map[gfid.GFID]int{}, unwatched: map[gfid.GFID]bool{}, rescan: map[gfid.GFID]int{}, self: map[gfid.GFID]selfWrite{},
		xkey: XtimeKey(cfg.Tree.NS),
	}
	r.resetSegment()
	return r, nil
}

// newSource opens the event source watcher names.
func newSource(watcher string, root int, log hclog.Logger) (source, error) {
	switch watcher {
	case WatchInotify:
		return newInotify()
	case WatchFanotify:
		return newFanotify(root)
	case "", WatchAuto:
		f, err := newFanotify(root)
		if err == nil {
			return f, nil
		}
		log.Debug("fanotify not available here; using inotify", "error", err)
		return newInotify()
	}
	return nil, fmt.Errorf("changelog: unknown watcher %q (want %s, %s or %s)", watcher, WatchAuto, WatchFanotify, WatchInotify)
}

// Watcher is the event source in use: "fanotify" or "inotify".
func (r *Recorder) Watcher() string { return r.in.kind() }

// XtimeKey is the xattr in which the recorder keeps a directory's xtime:
// the time of the last rollover at which something beneath it changed.
func XtimeKey(ns gfid.Namespace) string { return ns.Name("xtime") }

func (r *Recorder) resetSegment() {
	r.data, r.meta, r.changed = map[gfid.GFID]bool{}, map[gfid.GFID]bool{}, map[gfid.GFID]bool{}
	r.born = map[gfid.GFID]bool{}
	r.first = time.Time{}
	r.gap = ""
}

// Close releases the recorder's descriptors.
func (r *Recorder) Close() error {
	r.closeDirs()
	return r.in.close()
}

func (r *Recorder) closeDirs() {
	for g, fd := range r.dirs {
		if g != gfid.Root {
			unix.Close(fd)
		}
	}
	clear(r.dirs)
}

// dirCacheMax bounds the directory descriptors the recorder keeps
// between events (see trimDirs).
const dirCacheMax = 256

// trimDirs closes the cached directory descriptors when there are more
// than dirCacheMax: between events, never inside one, whose handling may
// hold descriptors dir returned while it asks for others (closed under it,
// a number could be reused for another directory). A new directory's
// descriptor is cached while its entries are recorded (see newDir), so
// that a large new tree grows the cache while one event is handled; it is
// trimmed after.
func (r *Recorder) trimDirs() {
	if len(r.dirs) > dirCacheMax {
		r.closeDirs()
	}
}

// dir returns a descriptor of directory g (cached; a descriptor follows
// its directory through renames, so the cache never goes stale in place).
// It stays open until the current event is handled (see trimDirs).
func (r *Recorder) dir(g gfid.GFID) (int, error) {
	if fd, ok := r.dirs[g]; ok {
		return fd, nil
	}
	if g == gfid.Root {
		r.dirs[g] = r.t.Root.FD()
		return r.t.Root.FD(), nil
	}
	var fd int
	err := r.t.Idx.View(func(tx *gfidx.Tx) error {
		var err error
		fd, err = r.t.OpenDir(tx, g)
		return err
	})
	if err != nil {
		return -1, err
	}
	r.dirs[g] = fd
	return fd, nil
}

func (r *Recorder) dropDir(g gfid.GFID) {
	if fd, ok := r.dirs[g]; ok && g != gfid.Root {
		unix.Close(fd)
	}
	delete(r.dirs, g)
}

// Start watches every directory of the tree and begins the journal. Call
// it before the first crawl: whatever changes after Start returns is
// recorded, and the crawl sees everything before.
func (r *Recorder) Start() error {
	fd, err := unix.Dup(r.t.Root.FD())
	if err != nil {
		return fmt.Errorf("changelog: %w", err)
	}
	if err := r.watchTree(fd, gfid.Root, map[gfid.GFID]bool{}); err != nil {
		return err
	}
	r.rootAttrs, _ = attrsOfFD(r.t.Root.FD())
	if n := len(r.unwatched); n > 0 {
		r.log.Warn("some directories could not be watched: changes in them are found by crawls only", "count", n)
	}
	return r.j.Begin(time.Now().UnixNano())
}

// watchTree watches directory dirfd (gfid g) and every directory below it
// that is not watched yet, giving gfids to directories that have none and
// indexing them. It closes dirfd.
func (r *Recorder) watchTree(dirfd int, g gfid.GFID, seen map[gfid.GFID]bool) error {
	defer unix.Close(dirfd)
	if err := r.in.watch(dirfd, g); err != nil {
		if !unwatchable(err) {
			return err
		}
		r.unwatched[g] = true
	} else {
		delete(r.unwatched, g)
	}
	seen[g] = true
	names, err := beneath.ReadNames(dirfd)
	if errors.Is(err, unix.ENOENT) {
		return nil // removed while we looked: its removal is recorded
	}
	if err != nil {
		return fmt.Errorf("changelog: listing directory %s: %w", g, err)
	}
	for _, name := range names {
		if g == gfid.Root && name == wire.ReservedName {
			continue
		}
		if wire.ValidName(name) != nil {
			continue
		}
		sub, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // not a directory, or gone
		}
		var st unix.Stat_t
		if err := unix.Fstat(sub, &st); err != nil || r.excluded(g, name, true) {
			unix.Close(sub)
			continue
		}
		sg, _, err := r.t.EnsureGFID(dirfd, g, name, &st)
		if err == nil && seen[sg] {
			// A copy of another directory, xattrs included.
			sg, err = r.refresh(dirfd, name)
		}
		if err == nil {
			err = r.t.Idx.Update(func(tx *gfidx.Tx) error { return tx.AddLink(sg, gfidx.Link{Parent: g, Name: name}) })
		}
		if err != nil {
			unix.Close(sub)
			return fmt.Errorf("changelog: directory %q: %w", name, err)
		}
		if r.in.watched(sg) && !seen[sg] {
			seen[sg] = true
			unix.Close(sub)
			continue
		}
		if err := r.watchTree(sub, sg, seen); err != nil {
			return err
		}
	}
	return nil
}

// refresh gives name in dirfd a new gfid: it carried another inode's.
func (r *Recorder) refresh(dirfd int, name string) (gfid.GFID, error) {
	g, err := r.t.New()
	if err != nil {
		return gfid.Zero, err
	}
	if err := r.t.NS.Set(beneath.ProcPath(dirfd, name), g); err != nil {
		return gfid.Zero, err
	}
	r.born[g] = true
	return g, nil
}

// Sync waits until every change made before it was called is recorded and
// in the gfid index (at most about one Quiet interval).
func (r *Recorder) Sync(ctx context.Context) error {
	t := time.Now().UnixNano()
	for r.drained.Load() <= t {
		if r.stopped.Load() {
			return errors.New("changelog: the recorder has stopped")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// Run records changes until ctx is done, then commits the open segment
// (a clean stop: the journal covers everything up to now).
func (r *Recorder) Run(ctx context.Context) error {
	defer r.stopped.Store(true)
	lastRoll := time.Now()
	for {
		timeout := r.cfg.Quiet
		if len(r.moves) > 0 {
			timeout = moveWait
		}
		if err := r.in.wait(timeout); err != nil {
			return err
		}
		if ctx.Err() != nil {
			r.drain()
			r.settleMoves(true)
			return r.j.End(max(time.Now().UnixNano(), r.j.Covered()))
		}
		if err := r.drain(); err != nil {
			return err
		}
		now := time.Now()
		r.settleMoves(false)
		pending := r.j.Pending() > 0 || r.gap != ""
		due := pending && (now.Sub(r.last) >= r.cfg.Quiet || now.Sub(r.first) >= r.cfg.Interval)
		if due || now.Sub(lastRoll) >= r.cfg.Interval {
			if err := r.rollover(); err != nil {
				return err
			}
			lastRoll = time.Now()
		}
	}
}

// drain reads and handles every event queued now.
func (r *Recorder) drain() error {
	began := time.Now().UnixNano()
	defer func() { r.drained.Store(began) }()
	evs, overflow, err := r.in.read()
	if err != nil {
		return err
	}
	if overflow {
		r.overflowed()
	}
	for i := range evs {
		r.last = time.Now()
		r.trimDirs()
		if err := r.handle(&evs[i]); err != nil {
			r.log.Warn("could not record a change; marking the segment a gap", "error", err)
			r.markGap("an event could not be recorded: " + err.Error())
		}
	}
	r.rescanDirs()
	return nil
}

// rescanDirs lists again the directories in which a new name could not be
// looked at (the directory was renamed before its event was read, and the
// index learns where only from the rename's events, read later): what they
// hold now and the index does not know is recorded as created. What left
// them meanwhile (a name made and removed, whose events fanotify merged)
// could not be told either: a PURGE has the slave's copy hold what the
// master's holds (the harness's seed 519b). A directory not found yet
// waits for later drains, a while.
func (r *Recorder) rescanDirs() {
	for g, tries := range r.rescan {
		r.trimDirs()
		fd, err := r.dir(g)
		if err != nil {
			if tries >= 100 {
				r.log.Debug("directory to list again not found; taken for removed", "dir", g)
				delete(r.rescan, g) // gone; its removal is recorded
			} else {
				r.rescan[g] = tries + 1
			}
			continue
		}
		delete(r.rescan, g)
		names, err := beneath.ReadNames(fd)
		if err != nil {
			continue
		}
		r.addEntry(&changelog.Record{Kind: changelog.KindEntry, GFID: g, Op: changelog.OpPurge, Parent: r.parentOf(g)})
		for _, n := range names {
			if (g == gfid.Root && n == wire.ReservedName) || wire.ValidName(n) != nil {
				continue
			}
			if err := r.created(g, n); err != nil {
				r.markGap("a rescanned directory could not be recorded: " + err.Error())
			}
		}
	}
}

func (r *Recorder) markGap(reason string) {
	if r.gap == "" {
		r.gap = reason
	}
}

// overflowed: the kernel dropped events. The segment is a gap (a crawl
// will find what was missed), and directories made meanwhile get watches.
func (r *Recorder) overflowed() {
	r.log.Warn("inotify queue overflow: some changes were not seen; a crawl will find them")
	r.markGap("inotify queue overflow")
	fd, err := unix.Dup(r.t.Root.FD())
	if err == nil {
		err = r.watchTree(fd, gfid.Root, map[gfid.GFID]bool{})
	}
	if err != nil {
		r.log.Warn("re-watching the tree after an overflow", "error", err)
	}
}

// add writes a record into the open segment.
func (r *Recorder) add(rec *changelog.Record) {
	if r.log.IsTrace() {
		r.log.Trace("record", "rec", rec.String())
	}
	if err := r.j.Add(rec); err != nil {
		r.markGap("journal write failed: " + err.Error())
		r.log.Error("writing the journal", "error", err)
		return
	}
	if r.first.IsZero() {
		r.first = time.Now()
	}
}

func (r *Recorder) addData(g gfid.GFID, dir gfid.GFID) {
	r.changed[dir] = true
	if r.data[g] {
		return
	}
	r.data[g] = true
	r.add(&changelog.Record{Kind: changelog.KindData, GFID: g})
}

func (r *Recorder) addMeta(g gfid.GFID, dir gfid.GFID) {
	r.changed[dir] = true
	if r.meta[g] {
		return
	}
	r.meta[g] = true
	r.add(&changelog.Record{Kind: changelog.KindMeta, GFID: g, Op: changelog.OpSetattr})
}

func (r *Recorder) addEntry(rec *changelog.Record) {
	r.changed[rec.Parent] = true
	if rec.Op == changelog.OpRename {
		r.changed[rec.Parent2] = true
	}
	r.add(rec)
}

// handle turns one event into records.
func (r *Recorder) handle(e *event) error {
	if r.log.IsTrace() {
		r.log.Trace("event", "mask", fmt.Sprintf("%#x", e.mask), "dir", e.dir, "name", fmt.Sprintf("%q", e.name), "known", e.known, "self", e.self, "cookie", e.cookie)
	}
	if !e.known {
		return nil // a watch removed since
	}
	if e.name == "" {
		// On a watched directory itself: inotify reports the same to its
		// parent's watch, with a name, except for the root.
		if e.self && e.dir != gfid.Root && e.is(unix.IN_ATTRIB) && !r.born[e.dir] {
			fd, err := r.dir(e.dir)
			if err != nil || !r.ownChange(e.dir, func() (attrs, error) { return attrsOfFD(fd) }) {
				r.addMeta(e.dir, r.parentOf(e.dir))
			}
		}
		if e.dir == gfid.Root && e.is(unix.IN_ATTRIB) {
			// The session's marks live on the root: only a change of
			// what is replicated is one.
			a, err := attrsOfFD(r.t.Root.FD())
			if err != nil || a != r.rootAttrs {
				r.rootAttrs = a
				r.addMeta(gfid.Root, gfid.Root)
			}
		}
		return nil
	}
	if e.dir == gfid.Root && e.name == wire.ReservedName {
		return nil
	}
	if wire.ValidName(e.name) != nil {
		return nil
	}
	switch {
	case e.is(unix.IN_CREATE) && e.is(unix.IN_DELETE):
		return r.createdAndRemoved(e)
	case e.is(unix.IN_CREATE):
		return r.created(e.dir, e.name)
	case e.is(unix.IN_MOVED_FROM):
		g, known := r.child(e.dir, e.name)
		r.moves = append(r.moves, pendingMove{ev: *e, g: g, known: known, at: time.Now()})
		return nil
	case e.is(unix.IN_MOVED_TO):
		for i, m := range r.moves {
			if m.ev.cookie == e.cookie {
				r.moves = append(r.moves[:i], r.moves[i+1:]...)
				return r.renamed(m, e)
			}
		}
		return r.created(e.dir, e.name) // moved in from outside the tree
	case e.is(unix.IN_DELETE):
		g, known := r.child(e.dir, e.name)
		return r.removed(e.dir, e.name, e.isDir(), g, known)
	case e.is(unix.IN_MODIFY | unix.IN_CLOSE_WRITE):
		if g, fd, ok := r.changedInode(e); ok {
			if fd >= 0 {
				unix.Close(fd)
			}
			r.addData(g, e.dir)
		}
	case e.is(unix.IN_ATTRIB):
		g, fd, ok := r.changedInode(e)
		if !ok || r.born[g] {
			if fd >= 0 {
				unix.Close(fd)
			}
			break
		}
		now := func() (attrs, error) {
			if fd >= 0 {
				return attrsOfFD(fd)
			}
			dfd, err := r.dir(e.dir)
			if err != nil {
				return attrs{}, err
			}
			return attrsAt(dfd, e.name)
		}
		if !r.ownChange(g, now) {
			r.addMeta(g, e.dir)
		}
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	return nil
}

// changedInode names the inode a change to a name changed (MODIFY, ATTRIB).
// By the time its event is read, the name may be gone, or hold another
// inode already (removed and made again: a chmod through a hard link that
// is then unlinked and its name reused lands on the new file if looked up
// by name). fanotify's event carries the inode's handle: when the inode
// carries a gfid, that is the one, wherever it is now (fd is the inode,
// open O_PATH, for the caller to close). Otherwise (inotify; an inode
// given no gfid yet, whose creation is read next) the name says, as the
// index or its xattr has it (fd -1).
//
// inotify gives no handle: a change through a short-lived extra link
// (made, used and removed within the few milliseconds before the recorder
// reads the queue) is not seen, nor can it be told from a temporary file
// (counting every such change a gap would crawl the whole tree for every
// temporary file). docs/ARCHITECTURE.md says so; fanotify, the default
// for root, has no such hole.
func (r *Recorder) changedInode(e *event) (g gfid.GFID, fd int, ok bool) {
	g, fd, ok = r.changedInode1(e)
	if ok && r.excluded(e.dir, e.name, e.isDir()) && !r.indexed(g) {
		// A change through a name the rules leave out, of an inode with
		// no name in the tree (a hard link of an included file has one).
		if fd >= 0 {
			unix.Close(fd)
		}
		return gfid.Zero, -1, false
	}
	return g, fd, ok
}

func (r *Recorder) changedInode1(e *event) (g gfid.GFID, fd int, ok bool) {
	if e.obj != nil && !e.isDir() {
		fd, err := r.in.open(e.obj)
		if err != nil {
			// Gone for good (no name holds it), or not openable: then the
			// name decides, as with inotify.
			if errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENOENT) {
				return gfid.Zero, -1, false
			}
		} else {
			var b [16]byte
			if n, err := unix.Getxattr(beneath.FDPath(fd), r.t.NS.GFIDAttr(), b[:]); err == nil && n == len(b) {
				copy(g[:], b[:])
				return g, fd, true
			}
			unix.Close(fd)
		}
	}
	g, ok, gone := r.lookName(e.dir, e.name)
	if gone && e.obj == nil {
		r.log.Trace("a change through a name gone before it was read; inotify cannot say which inode", "dir", e.dir, "name", fmt.Sprintf("%q", e.name))
	}
	return g, -1, ok
}

// createdAndRemoved handles an event that says both that name was made
// and that it was removed, in an order it does not tell (fanotify merges
// events still queued): the index has the name's past, the directory its
// present.
func (r *Recorder) createdAndRemoved(e *event) error {
	old, known := r.child(e.dir, e.name)
	fd, err := r.dir(e.dir)
	if err != nil {
		r.rescan[e.dir] = 0 // see created
		return nil
	}
	st, err := beneath.Lstat(fd, e.name)
	if err != nil {
		return r.removed(e.dir, e.name, e.isDir(), old, known)
	}
	if known {
		if cur, err := r.t.GetGFID(fd, e.dir, e.name, &st); err != nil || cur != old {
			if err := r.removed(e.dir, e.name, e.isDir(), old, true); err != nil {
				return err
			}
		}
	}
	return r.created(e.dir, e.name)
}

// settleMoves takes rename halves that waited long enough (all, when
// force is set) for moves out of the tree.
func (r *Recorder) settleMoves(force bool) {
	keep := r.moves[:0]
	for _, m := range r.moves {
		if !force && time.Since(m.at) < moveWait {
			keep = append(keep, m)
			continue
		}
		r.movedOut(m)
	}
	r.moves = keep
}

// child is the gfid the index says name holds in dir.
func (r *Recorder) child(dir gfid.GFID, name string) (gfid.GFID, bool) {
	var g gfid.GFID
	ok := false
	r.t.Idx.View(func(tx *gfidx.Tx) error {
		g, ok = tx.Child(gfidx.Link{Parent: dir, Name: name})
		return nil
	})
	return g, ok
}

// lookName names the existing entry name in dir: by the index, or by its
// gfid xattr (an entry the crawl has not indexed yet); gone says the name
// is gone from its directory (found, and not holding the name; not a
// directory that cannot be found now, which is listed again later: see
// created).
func (r *Recorder) lookName(dir gfid.GFID, name string) (g gfid.GFID, ok, gone bool) {
	if g, ok := r.child(dir, name); ok {
		return g, true, false
	}
	fd, err := r.dir(dir)
	if err != nil {
		r.rescan[dir] = 0 // see created
		return gfid.Zero, false, false
	}
	st, err := beneath.Lstat(fd, name)
	if err != nil {
		return gfid.Zero, false, errors.Is(err, unix.ENOENT)
	}
	g, err = r.t.GetGFID(fd, dir, name, &st)
	return g, err == nil, false
}

func (r *Recorder) index(fn func(tx *gfidx.Tx) error) error {
	if err := r.t.Idx.Update(fn); err != nil {
		return fmt.Errorf("changelog: updating the gfid index: %w", err)
	}
	return nil
}

// created records a new name in dir: a new inode (given a gfid), another
// link of a known one, or an entry moved in from outside the tree; a new
// directory is watched and what was made in it before the watch recorded.
func (r *Recorder) created(dir gfid.GFID, name string) error {
	fd, err := r.dir(dir)
	if err != nil {
		// Renamed before this event was read (or removed): look again
		// once the rename's events are in the index.
		r.rescan[dir] = 0
		return nil
	}
	n := &newName{dir: dir, fd: fd, name: name, sub: -1}
	defer n.close()
	if there, err := n.look(); !there {
		return err
	}
	if r.excluded(dir, name, n.sub >= 0) {
		// Not recorded; its directory's mtime moved all the same.
		r.addMeta(dir, r.parentOf(dir))
		return nil
	}
	g, record, err := r.identify(n)
	if !record {
		return err
	}
	return r.record(n, g)
}

// newName is a name created in a directory, while created looks at it.
type newName struct {
	dir  gfid.GFID
	fd   int // dir's, borrowed from the recorder's cache (see Recorder.dir)
	name string
	st   unix.Stat_t
	// sub holds a directory open from its stat on, until newDir takes it
	// (-1 otherwise): it may be renamed any time, and its watch and
	// listing must be of this inode.
	sub int
}

func (n *newName) link() gfidx.Link { return gfidx.Link{Parent: n.dir, Name: n.name} }

// takeSub hands the open directory over to its new owner.
func (n *newName) takeSub() int {
	d := n.sub
	n.sub = -1
	return d
}

func (n *newName) close() {
	if n.sub >= 0 {
		unix.Close(n.sub)
	}
}

// look stats the name, and opens it if it is a directory; there is false
// when it is gone (or replaced) again.
func (n *newName) look() (there bool, err error) {
	n.st, err = beneath.Lstat(n.fd, n.name)
	if errors.Is(err, unix.ENOENT) {
		return false, nil // gone again; its removal follows
	}
	if err != nil {
		return false, fmt.Errorf("stat %q: %w", n.name, err)
	}
	if n.st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if n.sub, err = unix.Openat(n.fd, n.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err != nil {
			n.sub = -1
			return false, nil // gone or replaced again: later events say
		}
		if err := unix.Fstat(n.sub, &n.st); err != nil {
			return false, fmt.Errorf("stat %q: %w", n.name, err)
		}
	}
	return true, nil
}

// identify finds the gfid of n's inode: read, or given to a new inode.
// record false says n needs no entry record of its own (err says why,
// when it is an error): it is gone again, recorded already, or another
// link of a known file (recorded here).
func (r *Recorder) identify(n *newName) (g gfid.GFID, record bool, err error) {
	if n.sub >= 0 {
		g, err = r.t.NS.FGet(n.sub)
	} else {
		g, err = r.t.NS.Get(beneath.ProcPath(n.fd, n.name))
	}
	isNew := errors.Is(err, gfid.ErrNoGFID) || errors.Is(err, unix.EACCES)
	if errors.Is(err, unix.ENOENT) {
		return gfid.Zero, false, nil // gone again since the stat; its removal follows
	}
	if err != nil && !isNew {
		return gfid.Zero, false, err
	}
	if isNew {
		return r.giveGFID(n)
	}
	return r.knownGFID(n, g)
}

// giveGFID gives n's new inode a gfid (see identify).
func (r *Recorder) giveGFID(n *newName) (g gfid.GFID, record bool, err error) {
	var derived bool
	if n.sub >= 0 {
		g, err = r.newDirGFID(n.sub)
	} else {
		g, derived, err = r.t.EnsureGFID(n.fd, n.dir, n.name, &n.st)
	}
	if errors.Is(err, unix.ENOENT) {
		return g, false, nil // gone again; its removal follows
	}
	if err != nil {
		return g, false, err
	}
	if derived && r.knows(g, n.link()) {
		return g, false, nil
	}
	// Our gfid write's IN_ATTRIB is not a change.
	r.born[g] = true
	return g, true, nil
}

// knownGFID is identify for an inode that carries gfid g already: a name
// recorded already, another link of a known file, a directory the index
// has elsewhere, or a copy of another inode (given a gfid of its own).
func (r *Recorder) knownGFID(n *newName, g gfid.GFID) (gfid.GFID, bool, error) {
	link := n.link()
	var other []gfidx.Link
	r.t.Idx.View(func(tx *gfidx.Tx) error {
		for _, l := range tx.Links(g) {
			if l != link {
				other = append(other, l)
			}
		}
		return nil
	})
	if r.knows(g, link) {
		// Recorded already (a directory's scan), or indexed by the
		// crawl — which watches nothing: a directory it found before
		// its event came in is watched here all the same. Below a
		// directory moved in from an excluded place (movingIn), every
		// directory is listed again.
		if n.sub >= 0 && (!r.in.watched(g) || r.movingIn) {
			return g, false, r.adopt(n.takeSub(), n.dir, g)
		}
		return g, false, nil
	}
	switch r.sameInode(g, other, &n.st) {
	case inodeSame:
		if n.st.Mode&unix.S_IFMT != unix.S_IFDIR {
			// Another name of a known file.
			if err := r.index(func(tx *gfidx.Tx) error { return tx.AddLink(g, link) }); err != nil {
				return g, false, err
			}
			r.addEntry(&changelog.Record{Kind: changelog.KindEntry, GFID: g, Op: changelog.OpLink, Parent: n.dir, Name: n.name})
			r.addMeta(n.dir, r.parentOf(n.dir))
			return g, false, nil
		}
		// A directory the index still has elsewhere: the index is
		// stale; take it as new here (the slave moves its copy).
	case inodeOther:
		// A copy of another inode, xattrs included: its own gfid.
		var err error
		if g, err = r.refresh(n.fd, n.name); err != nil {
			return g, false, err
		}
	}
	return g, true, nil
}

// record indexes n as g's and records it as made, with its data or
// metadata and its directory's; a new directory is then watched.
func (r *Recorder) record(n *newName, g gfid.GFID) error {
	err := r.index(func(tx *gfidx.Tx) error {
		if n.sub >= 0 {
			// A directory has one name, this one: any other the index
			// holds is where it was before a move the index did not
			// follow. Kept, it would hide the directory's subtree from
			// forgetTree (see there).
			for _, l := range tx.Links(g) {
				if l != n.link() {
					if err := tx.RemoveLink(g, l); err != nil {
						return err
					}
				}
			}
		}
		return tx.AddLink(g, n.link())
	})
	if err != nil {
		return err
	}
	rec := n.entryRecord(g)
	r.addEntry(&rec)
	if rec.Op == changelog.OpCreate {
		r.addData(g, n.dir)
	} else {
		r.addMeta(g, n.dir)
	}
	r.addMeta(n.dir, r.parentOf(n.dir))
	if rec.Op == changelog.OpMkdir {
		return r.newDir(n.takeSub(), g)
	}
	return nil
}

// entryRecord is the record that makes n, as g, by its type.
func (n *newName) entryRecord(g gfid.GFID) changelog.Record {
	st := &n.st
	rec := changelog.Record{Kind: changelog.KindEntry, GFID: g, Parent: n.dir, Name: n.name, Mode: st.Mode, UID: st.Uid, GID: st.Gid}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		rec.Op = changelog.OpCreate
	case unix.S_IFDIR:
		rec.Op = changelog.OpMkdir
	case unix.S_IFLNK:
		rec = changelog.Record{Kind: changelog.KindEntry, GFID: g, Op: changelog.OpSymlink, Parent: n.dir, Name: n.name}
		// The target goes with the record: replayed after the link is
		// gone or moved on, it is all there is to make it from.
		buf := make([]byte, changelog.MaxTargetLen+1)
		if k, err := unix.Readlinkat(n.fd, n.name, buf); err == nil && k > 0 && k <= changelog.MaxTargetLen {
			rec.Target, rec.HasTarget = string(buf[:k]), true
		}
	default:
		rec.Op = changelog.OpMknod
	}
	return rec
}

// knows reports whether the index has name link holding g: recorded
// already (by a new directory's scan, or by the crawl).
func (r *Recorder) knows(g gfid.GFID, link gfidx.Link) bool {
	cur, ok := gfid.Zero, false
	r.t.Idx.View(func(tx *gfidx.Tx) error {
		cur, ok = tx.Child(link)
		return nil
	})
	return ok && cur == g
}

// newDirGFID gives the open directory sub a gfid (or reads the one someone
// gave it meanwhile).
func (r *Recorder) newDirGFID(sub int) (gfid.GFID, error) {
	g, err := r.t.New()
	if err != nil {
		return g, err
	}
	if err := r.t.NS.FSetNew(sub, g); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return r.t.NS.FGet(sub)
		}
		return gfid.Zero, err
	}
	return g, nil
}

// adopt watches a directory the index knows and the recorder does not
// watch, open as sub (which it takes): one the crawl indexed (it watches
// nothing) before the recorder read its creation. Until now its events
// were not the tree's (fanotify's were dropped, inotify had no watch):
// what left it or changed in it since the crawl listed it went unrecorded
// (the harness's seeds 519 and 1113: a symlink the crawl sent, removed
// before the watch, stayed on the slave; a file made in the directory
// after it was renamed never reached it). A PURGE has the slave's copy
// hold what the master's holds, and the directory reconciled after the
// batch; what is in it now is recorded as newDir does.
func (r *Recorder) adopt(sub int, parent, g gfid.GFID) error {
	r.addEntry(&changelog.Record{Kind: changelog.KindEntry, GFID: g, Op: changelog.OpPurge, Parent: parent})
	return r.newDir(sub, g)
}

// newDir watches a directory just made (or moved in), open as sub (which
// it takes), and records what it holds already: entries made before its
// watch existed.
func (r *Recorder) newDir(sub int, g gfid.GFID) error {
	if got, err := r.t.NS.FGet(sub); err != nil || got != g {
		unix.Close(sub)
		return nil
	}
	if err := r.in.watch(sub, g); err != nil {
		if !unwatchable(err) {
			unix.Close(sub)
			return err
		}
		r.unwatched[g] = true
		r.markGap("a directory could not be watched (raise fs.inotify.max_user_watches)")
	}
	names, err := beneath.ReadNames(sub)
	r.dropDir(g)
	r.dirs[g] = sub
	if errors.Is(err, unix.ENOENT) {
		return nil // removed while we listed it: its removal is recorded
	}
	if err != nil {
		return fmt.Errorf("listing new directory %s: %w", g, err)
	}
	defer func() {
		if len(r.dirs) > dirCacheMax {
			r.dropDir(g) // listed: let a large new tree not hold one per directory
		}
	}()
	for _, n := range names {
		if wire.ValidName(n) != nil {
			continue
		}
		if err := r.created(g, n); err != nil {
			return err
		}
	}
	return nil
}

type inodeMatch int

const (
	inodeNone  inodeMatch = iota // no other live link of the gfid
	inodeSame                    // another link is this very inode
	inodeOther                   // another inode carries the gfid
)

// sameInode looks at the other links the index has for g.
func (r *Recorder) sameInode(g gfid.GFID, links []gfidx.Link, st *unix.Stat_t) inodeMatch {
	res := inodeNone
	for _, l := range links {
		fd, err := r.dir(l.Parent)
		if err != nil {
			continue
		}
		ost, err := beneath.Lstat(fd, l.Name)
		if err != nil {
			continue
		}
		og, err := r.t.GetGFID(fd, l.Parent, l.Name, &ost)
		if err != nil || og != g {
			continue
		}
		if ost.Ino == st.Ino && ost.Dev == st.Dev {
			return inodeSame
		}
		res = inodeOther
	}
	return res
}

// parentOf is a directory's parent by the index (the root for the root).
func (r *Recorder) parentOf(g gfid.GFID) gfid.GFID {
	if g == gfid.Root {
		return gfid.Root
	}
	p := gfid.Root
	r.t.Idx.View(func(tx *gfidx.Tx) error {
		if ls := tx.Links(g); len(ls) > 0 {
			p = ls[0].Parent
		}
		return nil
	})
	return p
}

// removed records the removal of name from dir, which held g (known false
// when the index did not know the name).
func (r *Recorder) removed(dir gfid.GFID, name string, isDir bool, g gfid.GFID, known bool) error {
	return r.remove(dir, name, isDir, g, known, false)
}

// remove is removed; away says the entry is still there, moved to a place
// the rules leave out: a directory's subtree is forgotten all the same (it
// is no longer the tree's), where a directory found still there otherwise
// is one the recorder lost track of (a gap).
func (r *Recorder) remove(dir gfid.GFID, name string, isDir bool, g gfid.GFID, known, away bool) error {
	if !known && r.excluded(dir, name, isDir) {
		// Never recorded; its directory's mtime moved all the same (the
		// 30-minute soak with rules: directories kept stale mtimes).
		r.addMeta(dir, r.parentOf(dir))
		return nil
	}
	if !known {
		// Never identified (made and removed before it was seen, or the
		// crawl has not indexed it yet): let the slave's directory hold
		// what the master's holds.
		r.addEntry(&changelog.Record{Kind: changelog.KindEntry, GFID: dir, Op: changelog.OpPurge, Parent: r.parentOf(dir)})
		r.addMeta(dir, r.parentOf(dir))
		return nil
	}
	if r.holds(dir, name, g) {
		// The name holds the entry again (or still: events merged in the
		// queue, or taken for another inode's): nothing left. Recording
		// the removal removed it on the slave, and made the recorder
		// forget a directory that lives on (the harness's seed 318).
		return nil
	}
	op := changelog.OpUnlink
	if isDir {
		op = changelog.OpRmdir
	}
	r.addEntry(&changelog.Record{Kind: changelog.KindEntry, GFID: g, Op: op, Parent: dir, Name: name})
	r.addMeta(dir, r.parentOf(dir))
	return r.index(func(tx *gfidx.Tx) error {
		if err := tx.RemoveLink(g, gfidx.Link{Parent: dir, Name: name}); err != nil {
			return err
		}
		if !isDir {
			return nil
		}
		if others := tx.Links(g); len(others) > 0 {
			if r.holdsAnyTx(tx, others, g) {
				return nil // found again elsewhere meanwhile (moved into a directory made after the move)
			}
			// Stale names of a directory (it has one): see forgetTree.
			for _, l := range others {
				if err := tx.RemoveLink(g, l); err != nil {
					return err
				}
			}
		}
		return r.forgetTree(tx, g, away)
	})
}

// forgetTree drops directory g's subtree from the index and the watches
// (away: moved to a place the rules leave out). A directory that is
// still there otherwise (its events were taken for another's,
// or for a removal they were not) is not forgotten: the recorder would
// stop recording what changes in it. Where it is the recorder no longer
// knows, so the segment is a gap, which a crawl closes.
func (r *Recorder) forgetTree(tx *gfidx.Tx, g gfid.GFID, away bool) error {
	if !away && r.alive(g) && !r.leftTree(g) {
		r.log.Debug("a directory taken for removed is still there; marking a gap", "dir", g)
		r.markGap("a directory the recorder took for removed is still in the tree")
		return nil
	}
	r.log.Debug("directory gone from the tree; its subtree is forgotten", "dir", g)
	r.in.unwatch(g)
	r.dropDir(g)
	delete(r.unwatched, g)
	delete(r.rescan, g)
	for depth, todo := 0, []gfid.GFID{g}; len(todo) > 0 && depth < 4096; depth++ {
		var next []gfid.GFID
		for _, d := range todo {
			for _, c := range tx.Children(d) {
				if err := tx.RemoveLink(c.GFID, gfidx.Link{Parent: d, Name: c.Name}); err != nil {
					return err
				}
				isDir := r.in.watched(c.GFID) || len(tx.Children(c.GFID)) > 0
				if others := tx.Links(c.GFID); len(others) > 0 {
					if !isDir || r.holdsAnyTx(tx, others, c.GFID) {
						continue // lives on elsewhere
					}
					// A directory has one name: its other links are stale
					// (the soak with rules: a directory the index also had
					// at an old name outlived its move into an excluded
					// one, watched, and what was made below it there was
					// never recorded once it came back).
					for _, l := range others {
						if err := tx.RemoveLink(c.GFID, l); err != nil {
							return err
						}
					}
				}
				if r.in.watched(c.GFID) {
					r.in.unwatch(c.GFID)
					r.dropDir(c.GFID)
					next = append(next, c.GFID)
				} else if len(tx.Children(c.GFID)) > 0 {
					next = append(next, c.GFID)
				}
			}
		}
		todo = next
	}
	return nil
}

// movedOut records an entry that left the tree (a rename's first half
// without a second).
func (r *Recorder) movedOut(m pendingMove) {
	if err := r.removed(m.ev.dir, m.ev.name, m.ev.isDir(), m.g, m.known); err != nil {
		r.log.Warn("recording a move out of the tree", "error", err)
		r.markGap("a move out of the tree could not be recorded")
	}
}

// renamed records a rename within the tree.
func (r *Recorder) renamed(m pendingMove, to *event) error {
	from := m.ev
	if mr := r.mirror; mr != nil {
		r.mirror = nil
		if (gfidx.Link{Parent: from.dir, Name: from.name}) == mr[0] && (gfidx.Link{Parent: to.dir, Name: to.name}) == mr[1] {
			return nil // the second half of an exchange, recorded with the first
		}
	}
	if r.excluded(to.dir, to.name, from.isDir()) {
		// Moved to a name the rules leave out: gone from the tree. The
		// directory it went to changed (its mtime) all the same.
		r.addMeta(to.dir, r.parentOf(to.dir))
		return r.remove(from.dir, from.name, from.isDir(), m.g, m.known, true)
	}
	if !m.known && r.excluded(from.dir, from.name, from.isDir()) {
		// Moved in from a name the rules leave out (never recorded):
		// made here; the directory it left changed too. What is below
		// it is listed again all the way down, even directories the
		// index knows: what changed there while it was left out was
		// not recorded.
		r.addMeta(from.dir, r.parentOf(from.dir))
		r.movingIn = true
		defer func() { r.movingIn = false }()
		return r.created(to.dir, to.name)
	}
	if !m.known {
		// The index never knew the old name: purge there, and take the
		// new name as new.
		r.addEntry(&changelog.Record{Kind: changelog.KindEntry, GFID: from.dir, Op: changelog.OpPurge, Parent: r.parentOf(from.dir)})
		return r.created(to.dir, to.name)
	}
	fd, err := r.dir(to.dir)
	if err != nil {
		// The new directory cannot be found now: moved (or removed) since,
		// and the index learns where only from events read later. What
		// left is the old name; the new one is found when the directory
		// is listed again (rescan), once the index says where it is.
		// Recording the removal alone lost the new name for good when
		// nothing else touched that directory (a file renamed into a
		// directory whose ancestor was renamed next).
		r.rescan[to.dir] = 0
		return r.removed(from.dir, from.name, from.isDir(), m.g, true)
	}
	st, err := beneath.Lstat(fd, to.name)
	gone := errors.Is(err, unix.ENOENT)
	if err != nil && !gone {
		return fmt.Errorf("stat %q: %w", to.name, err)
	}
	if gone {
		// Moved on again (or removed) before this event was read: the
		// rename is recorded all the same, and the events still queued
		// (its next move, its removal) take it from there. Taken for a
		// removal, a directory moved twice in a row (rename_ancestor
		// under churn) was recorded removed while it lived on, and each
		// such made its segment a gap, crawled whole.
		st = unix.Stat_t{}
	} else if g, gerr := r.t.GetGFID(fd, to.dir, to.name, &st); gerr != nil || g != m.g {
		// An entry named by its name (no gfid xattr possible) or one
		// swapped meanwhile: a removal and a creation.
		if err := r.removed(from.dir, from.name, from.isDir(), m.g, true); err != nil {
			return err
		}
		return r.created(to.dir, to.name)
	}
	dst := gfidx.Link{Parent: to.dir, Name: to.name}
	if old, ok := r.child(to.dir, to.name); ok && old != m.g && r.holds(from.dir, from.name, old) {
		// Not a replacement: the two swapped places (RENAME_EXCHANGE),
		// which the kernel reports as two renames, this and its mirror.
		return r.exchanged(m, to, old)
	}
	if old, ok := r.child(to.dir, to.name); ok && old != m.g {
		// The rename replaced an entry: say so, for whoever replays this
		// after the entry moved on (then the RENAME is not replayed as
		// such, and the replaced entry would stay).
		op := changelog.OpUnlink
		if from.isDir() {
			op = changelog.OpRmdir
		}
		r.addEntry(&changelog.Record{Kind: changelog.KindEntry, GFID: old, Op: op, Parent: to.dir, Name: to.name})
	}
	err = r.index(func(tx *gfidx.Tx) error {
		if old, ok := tx.Child(dst); ok && old != m.g {
			// Replaced by the rename.
			if err := tx.RemoveLink(old, dst); err != nil {
				return err
			}
			if from.isDir() && len(tx.Links(old)) == 0 {
				if err := r.forgetTree(tx, old, false); err != nil {
					return err
				}
			}
		}
		if err := tx.RemoveLink(m.g, gfidx.Link{Parent: from.dir, Name: from.name}); err != nil {
			return err
		}
		return tx.AddLink(m.g, dst)
	})
	if err != nil {
		return err
	}
	r.addEntry(&changelog.Record{Kind: changelog.KindEntry, GFID: m.g, Op: changelog.OpRename, Parent: from.dir, Name: from.name, Parent2: to.dir, Name2: to.name})
	r.addMeta(from.dir, r.parentOf(from.dir))
	r.addMeta(to.dir, r.parentOf(to.dir))
	if st.Mode&unix.S_IFMT == unix.S_IFDIR && !r.in.watched(m.g) {
		// Indexed by the crawl and renamed before the recorder read its
		// creation (whose name was gone by then): see adopt.
		sub, err := unix.Openat(fd, to.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil // gone or replaced again: later events say
		}
		return r.adopt(sub, to.dir, m.g)
	}
	return nil
}

// alive reports whether directory g is still in the tree (not removed:
// its link count is not 0), as far as the recorder can tell: through the
// descriptor it holds of it, or fanotify's handle of it.
func (r *Recorder) alive(g gfid.GFID) bool {
	var st unix.Stat_t
	if fd, ok := r.dirs[g]; ok && g != gfid.Root {
		return unix.Fstat(fd, &st) == nil && st.Nlink > 0
	}
	fd, err := r.in.reopen(g)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.Fstat(fd, &st) == nil && st.Nlink > 0
}

// holds reports whether name in dir holds g now.
func (r *Recorder) holds(dir gfid.GFID, name string, g gfid.GFID) bool {
	fd, err := r.dir(dir)
	if err != nil {
		return false
	}
	st, err := beneath.Lstat(fd, name)
	if err != nil {
		return false
	}
	got, err := r.t.GetGFID(fd, dir, name, &st)
	return err == nil && got == g
}

// holdsAnyTx reports whether one of links holds g now (inside an index
// transaction: the directories are opened through tx).
func (r *Recorder) holdsAnyTx(tx *gfidx.Tx, links []gfidx.Link, g gfid.GFID) bool {
	for _, l := range links {
		fd, err := r.t.OpenDir(tx, l.Parent)
		if err != nil {
			continue
		}
		st, err := beneath.Lstat(fd, l.Name)
		if err == nil {
			var got gfid.GFID
			got, err = r.t.GetGFID(fd, l.Parent, l.Name, &st)
			if err == nil && got == g {
				unix.Close(fd)
				return true
			}
		}
		unix.Close(fd)
	}
	return false
}

// exchanged records that m's entry and other, at to's name, swapped places
// (renameat2 with RENAME_EXCHANGE): one EXCHANGE record, both names kept
// in the index (swapped), both directories watched still. Taken for a
// rename over other, and its mirror for a rename of other over m's entry,
// it removed both on the slave, and the recorder forgot the directory of
// the two that it took for removed: what was made in it later was never
// recorded (the harness's seed 152).
func (r *Recorder) exchanged(m pendingMove, to *event, other gfid.GFID) error {
	src := gfidx.Link{Parent: m.ev.dir, Name: m.ev.name}
	dst := gfidx.Link{Parent: to.dir, Name: to.name}
	err := r.index(func(tx *gfidx.Tx) error {
		if err := tx.RemoveLink(m.g, src); err != nil {
			return err
		}
		if err := tx.RemoveLink(other, dst); err != nil {
			return err
		}
		if err := tx.AddLink(m.g, dst); err != nil {
			return err
		}
		return tx.AddLink(other, src)
	})
	if err != nil {
		return err
	}
	r.mirror = &[2]gfidx.Link{dst, src}
	r.addEntry(&changelog.Record{Kind: changelog.KindEntry, GFID: m.g, Op: changelog.OpExchange, Parent: src.Parent, Name: src.Name, Parent2: dst.Parent, Name2: dst.Name})
	r.addMeta(src.Parent, r.parentOf(src.Parent))
	r.addMeta(dst.Parent, r.parentOf(dst.Parent))
	return nil
}

// ownChange reports whether an IN_ATTRIB on g changed nothing but what
// the recorder wrote; now reads g's attributes.
func (r *Recorder) ownChange(g gfid.GFID, now func() (attrs, error)) bool {
	s, ok := r.self[g]
	if !ok {
		return false
	}
	a, err := now()
	if err != nil || a != s.before {
		delete(r.self, g)
		return false
	}
	return true
}

func attrsAt(dirfd int, name string) (attrs, error) {
	st, err := beneath.Lstat(dirfd, name)
	if err != nil {
		return attrs{}, err
	}
	return attrsOf(&st, beneath.ProcPath(dirfd, name), false)
}

func attrsOfFD(fd int) (attrs, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return attrs{}, err
	}
	return attrsOf(&st, beneath.FDPath(fd), true)
}

func attrsOf(st *unix.Stat_t, path string, follow bool) (attrs, error) {
	a := attrs{mode: st.Mode, uid: st.Uid, gid: st.Gid, mtime: st.Mtim.Nano()}
	m, err := xattrs.List(path, follow, func(n string) bool { return !gfid.Owns(n) })
	if err != nil {
		return a, err
	}
	h := sha256.New()
	for _, n := range xattrs.Names(m) {
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write(m[n])
		h.Write([]byte{0})
	}
	copy(a.xattrs[:], h.Sum(nil))
	return a, nil
}

// rollover commits the open segment: the xtimes of the directories that
// changed (and their ancestors) move to the segment's end, then the
// segment is committed, as a gap if changes may have been missed.
func (r *Recorder) rollover() error {
	end := max(time.Now().UnixNano(), r.j.Covered()) // never back, whatever the clock does
	// Everything that happened before end is queued by now.
	if err := r.drain(); err != nil {
		return err
	}
	r.settleMoves(false)
	dirs := r.xtimeDirs()
	// The directories' state before our writes; then whatever came
	// meanwhile is read as it is, before the writes are expected.
	type target struct {
		g  gfid.GFID
		fd int
		a  attrs
	}
	var targets []target
	for _, g := range dirs {
		fd, err := r.dir(g)
		if err != nil {
			continue
		}
		a, err := attrsOfFD(fd)
		if err != nil {
			continue
		}
		// Its own descriptor: the drain below may close the cached one
		// (a directory removed, the cache emptied), and its number be
		// reused for another inode.
		if fd, err = unix.Dup(fd); err != nil {
			continue
		}
		targets = append(targets, target{g, fd, a})
	}
	defer func() {
		for _, t := range targets {
			unix.Close(t.fd)
		}
	}()
	changed := r.changed
	r.changed = map[gfid.GFID]bool{}
	if err := r.drain(); err != nil {
		return err
	}
	for g := range r.changed {
		changed[g] = true
	}
	r.changed = changed
	r.gen++
	for g, s := range r.self {
		if r.gen-s.gen > 2 {
			delete(r.self, g)
		}
	}
	val := marks.EncodeTime(end)
	for _, t := range targets {
		r.self[t.g] = selfWrite{before: t.a, gen: r.gen}
		if err := unix.Fsetxattr(t.fd, r.xkey, val, 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			r.log.Debug("setting xtime", "dir", t.g, "error", err)
		}
	}
	for g := range r.unwatched {
		if fd, err := r.dir(g); err == nil {
			if r.in.watch(fd, g) == nil {
				delete(r.unwatched, g)
			}
		}
	}
	gap := r.gap
	if gap == "" && len(r.unwatched) > 0 {
		gap = fmt.Sprintf("%d directories are not watched", len(r.unwatched))
	}
	var err error
	if gap != "" {
		err = r.j.MarkGap(end, gap)
	} else {
		_, err = r.j.Rollover(end)
	}
	r.resetSegment()
	return err
}

// xtimeDirs lists the directories whose xtime moves: those that changed
// and their ancestors up to the root.
func (r *Recorder) xtimeDirs() []gfid.GFID {
	if len(r.changed) == 0 {
		return nil
	}
	all := map[gfid.GFID]bool{}
	var out []gfid.GFID
	r.t.Idx.View(func(tx *gfidx.Tx) error {
		for g := range r.changed {
			for depth := 0; !all[g] && depth < 4096; depth++ {
				all[g] = true
				out = append(out, g)
				if g == gfid.Root {
					break
				}
				ls := tx.Links(g)
				if len(ls) == 0 {
					break
				}
				g = ls[0].Parent
			}
		}
		return nil
	})
	return out
}
