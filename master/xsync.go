package master

import (
	"errors"
	"fmt"
	"sort"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/mtree"
	"github.com/georep/georep/internal/rules"
	"github.com/georep/georep/internal/syncstatus"
	"github.com/georep/georep/internal/wire"
)

// CrawlStats counts what a crawl found.
type CrawlStats struct {
	Dirs, Files, Symlinks, Others int64
	Bytes                         int64 // sum of regular file sizes
	Skipped                       int64 // entries that vanished or could not be read
	Excluded                      int64 // entries the rules leave out (not listed below an excluded directory)
}

// errExcludedDir: a directory to crawl is left out by the rules.
var errExcludedDir = errors.New("excluded by the rules")

// joinRel is name in directory dir (relative paths; "" is the root).
func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// xsync walks the master tree and writes what it finds as an XSYNC journal
// (or, for a one-shot, hands it to the processor as it goes: see feed):
// every entry as an E record keyed by gfid (assigning gfids to inodes that
// have none), a D record per regular file, an M record per inode, and a
// PURGE per directory so that the slave drops what the master no longer
// has. It also brings the master's gfid index up to date (see keep).
type xsync struct {
	t   *mtree.Source
	w   recordSink
	log hclog.Logger
	// flushed, when set, is called after each index flush of a crawl that
	// is not live: the records added so far name only indexed links (see
	// feed).
	flushed func() error
	// hard maps the gfids of hardlinked inodes (non-directories with
	// several links) met so far to their inode numbers: few, bounded by the
	// tree's hardlinks, not its size.
	hard map[gfid.GFID]uint64
	// pending holds the gfids of links not yet flushed to the index: with
	// the index, it answers "did this crawl meet this gfid already?", so
	// that a second inode with the same gfid (a copy made with xattrs, e.g.
	// cp -a as root) is given a fresh gfid instead of being mistaken for a
	// hardlink, without a per-file map of the whole tree.
	pending map[gfid.GFID]uint64 // gfid -> inode number

	// live: the recorder runs beside the crawl and keeps the index; the
	// crawl adds to it and prunes it rather than refilling it. sync waits
	// until the recorder has indexed every change made so far.
	live bool
	sync func() error
	// shallow: crawl the directories named, not what is below them
	// (reconciling the directories a changelog batch touched).
	shallow bool
	// visited, when set, holds the directories this crawl listed: each is
	// listed once, however many of the directories named are nested (a
	// reconciliation crawls every directory a batch made deep, and a
	// "mkdir -p" of 200 levels made 200 nested ones: listed 20,100
	// times, the batch took 6 s).
	visited map[gfid.GFID]bool
	// keep: a one-shot crawl that keeps the index of the last crawl rather
	// than emptying it: a link the index holds already is not written
	// again, a name no longer found is pruned (with what was indexed below
	// it). Rewriting the index cost a 100,000-file no-op run 1.1 s of CPU
	// (random keys dirty pages all over it), and its sync at the end.
	keep bool
	// unreleased counts the records added since flushed was last called.
	unreleased int

	// st counts the files found, for the crawl's progress (nil: nobody).
	st *syncstatus.Tracker

	// rules leave paths out (nil: none): an excluded entry is not
	// recorded, given a gfid or indexed, and an excluded directory is
	// not listed.
	rules *rules.Rules

	// beforeList, when set (tests), is called with a directory's path
	// before the crawl lists it.
	beforeList func(path string)

	warnedDerived bool
	// pending index links, flushed in large transactions.
	links []pendingLink
	stats CrawlStats
}

// recordSink takes a crawl's records: a journal (changelog.Writer), or a
// feed to the processor.
type recordSink interface {
	Add(r *changelog.Record) error
}

type pendingLink struct {
	g   gfid.GFID
	l   gfidx.Link
	ino uint64
	old gfid.GFID // keep: the gfid the index had at l, to forget (else Zero)
	dir bool      // a directory: l is its only name
}

// linkBatch is how many index links go into one transaction: one commit
// per directory entry would dominate the crawl, and a large transaction
// holds every index page it dirties in memory — with random gfid keys, the
// whole index at 20,000 links (W1x2: peak anonymous RSS 72 MiB at 20,000,
// 30 MiB at 1,000, for 200,000 files).
const linkBatch = 1000

// releaseEvery: records are handed on (see flushed) at least this often,
// even when the crawl indexes nothing new (a no-op run).
const releaseEvery = 2048

func (x *xsync) add(r *changelog.Record) error {
	if err := x.w.Add(r); err != nil {
		return fmt.Errorf("master: writing xsync journal: %w", err)
	}
	if x.unreleased++; x.flushed != nil && x.unreleased >= releaseEvery && !x.live {
		return x.flush(-1)
	}
	return nil
}

func (x *xsync) index(g gfid.GFID, parent gfid.GFID, name string, ino uint64, old gfid.GFID, dir bool) error {
	x.links = append(x.links, pendingLink{g, gfidx.Link{Parent: parent, Name: name}, ino, old, dir})
	x.pending[g] = ino
	if len(x.links) >= linkBatch && !x.live {
		return x.flush(-1)
	}
	return nil
}

// flush indexes the pending links. A live crawl flushes at the end of
// each directory (dirfd; -1 otherwise) and indexes a link only if its name
// still holds the inode the crawl saw, checked inside the index
// transaction — the recorder, which indexes renames as they happen, waits
// for it, so the crawl never puts back a name the recorder has just moved
// on (a stale directory link would hide the subtree from path resolution).
func (x *xsync) flush(dirfd int) error {
	if len(x.links) > 0 {
		err := x.t.Idx.Update(func(tx *gfidx.Tx) error {
			for _, p := range x.links {
				if dirfd >= 0 {
					if st, err := lstatAt(dirfd, p.l.Name); err != nil || st.Ino != p.ino {
						continue
					}
				}
				if !p.old.IsZero() {
					if err := tx.RemoveLink(p.old, p.l); err != nil {
						return err
					}
				}
				if p.dir {
					// A directory has one name: any other the index
					// still holds is where it was before a rename this
					// process did not see (it was down), and path
					// resolution through it fails: its files would
					// look vanished and never be sent.
					for _, l := range tx.Links(p.g) {
						if l != p.l {
							if err := tx.RemoveLink(p.g, l); err != nil {
								return err
							}
						}
					}
				}
				if err := tx.AddLink(p.g, p.l); err != nil {
					return err
				}
			}
			return nil
		})
		x.links = x.links[:0]
		clear(x.pending)
		if err != nil {
			return fmt.Errorf("master: indexing: %w", err)
		}
	}
	if x.flushed != nil && !x.live {
		x.unreleased = 0
		return x.flushed()
	}
	return nil
}

// met reports whether this crawl already indexed gfid g (the index was
// emptied when the crawl began) — in a live crawl, whether another live
// inode carries g (the index is not emptied: it holds g's links from
// before, which are g itself at an older name or gone).
func (x *xsync) met(g gfid.GFID, dirfd int, parent gfid.GFID, name string, st *unix.Stat_t) bool {
	if ino, ok := x.pending[g]; ok {
		// Met in this crawl: a copy, unless it is the very inode (moved
		// while a live crawl ran, and met again at its new name).
		return !(x.live && ino == st.Ino)
	}
	if x.live || x.keep {
		var other []gfidx.Link
		x.t.Idx.View(func(tx *gfidx.Tx) error {
			for _, l := range tx.Links(g) {
				if l != (gfidx.Link{Parent: parent, Name: name}) {
					other = append(other, l)
				}
			}
			return nil
		})
		for _, l := range other {
			var e mtree.Entry
			err := x.t.Idx.View(func(tx *gfidx.Tx) error {
				fd, err := x.t.OpenDir(tx, l.Parent)
				if err != nil {
					return err
				}
				ost, err := x.t.Lookup(fd, l.Parent, l.Name, g)
				e = mtree.Entry{DirFD: fd, Name: l.Name, St: ost}
				if err != nil {
					unix.Close(fd)
				}
				return err
			})
			if err != nil {
				continue // an older name of g, gone
			}
			unix.Close(e.DirFD)
			if e.St.Ino != st.Ino || e.St.Dev != st.Dev {
				return true
			}
		}
		return false
	}
	found := false
	x.t.Idx.View(func(tx *gfidx.Tx) error {
		found = len(tx.Links(g)) > 0
		return nil
	})
	return found
}

// crawlRoot walks the whole tree from the root.
func (x *xsync) crawlRoot() error {
	fd, err := unix.Dup(x.t.Root.FD())
	if err != nil {
		return fmt.Errorf("master: %w", err)
	}
	if err := x.add(&changelog.Record{Kind: changelog.KindMeta, GFID: gfid.Root, Op: changelog.OpSetattr}); err != nil {
		unix.Close(fd)
		return err
	}
	if err := x.crawlDir(fd, gfid.Root, true, ""); err != nil {
		return err
	}
	return x.flush(-1)
}

// crawlDirs writes the records of each directory in dirs, not of what is
// below them; a directory gone from the master is skipped (its removal is
// recorded).
func (x *xsync) crawlDirs(dirs []gfid.GFID) error {
	for _, g := range dirs {
		if x.visited[g] {
			continue
		}
		var fd int
		path := ""
		err := x.t.Idx.View(func(tx *gfidx.Tx) error {
			if g != gfid.Root && x.rules.Len() > 0 {
				// Its path decides what in it is excluded. One the index
				// cannot tell (moving just now) is left to a later
				// reconciliation: judged as if at the root, it could be
				// sent what the rules leave out.
				p, err := tx.Path(g)
				if err != nil || x.rules.Excluded(p, true) {
					return errExcludedDir
				}
				path = p
			}
			var err error
			fd, err = x.t.OpenDir(tx, g)
			return err
		})
		if errors.Is(err, mtree.ErrGone) || errors.Is(err, errExcludedDir) {
			continue
		}
		if err != nil {
			return err
		}
		// The directory's own metadata last goes after what the
		// reconciliation does in it.
		if err := x.add(&changelog.Record{Kind: changelog.KindMeta, GFID: g, Op: changelog.OpSetattr}); err != nil {
			unix.Close(fd)
			return err
		}
		if err := x.crawlDir(fd, g, g == gfid.Root, path); err != nil {
			return err
		}
	}
	return x.flush(-1)
}

// crawlDir writes the records of directory dirfd (gfid g, at path relative
// to the root, "" for the root) and below; it closes dirfd.
func (x *xsync) crawlDir(dirfd int, g gfid.GFID, isRoot bool, path string) error {
	if x.visited != nil {
		x.visited[g] = true
	}
	if x.beforeList != nil {
		x.beforeList(path)
	}
	names, err := listDir(dirfd)
	if errors.Is(err, unix.ENOENT) {
		// Removed while we listed it (getdents of a deleted directory):
		// its removal is recorded; not a fault (the 30-minute soak
		// restarted a worker for it).
		unix.Close(dirfd)
		return nil
	}
	if err != nil {
		unix.Close(dirfd)
		return err
	}
	sort.Strings(names)
	var known map[string]knownLink // keep: what the index holds here
	if x.live || x.keep {
		if known, err = x.prune(dirfd, g, names); err != nil {
			unix.Close(dirfd)
			return err
		}
	}
	type sub struct {
		name string
		g    gfid.GFID
	}

	var subdirs []sub
	for _, name := range names {
		if isRoot && name == wire.ReservedName {
			x.log.Warn("not replicating the top-level entry reserved for the slave's own use", "name", name)
			continue
		}
		if err := changelog.ValidName(name); err != nil {
			x.log.Warn("skipping an entry with an invalid name", "name", fmt.Sprintf("%q", name), "error", err)
			x.stats.Skipped++
			continue
		}
		st, err := lstatAt(dirfd, name)
		if errors.Is(err, unix.ENOENT) {
			continue // removed while we looked
		}
		if err != nil {
			unix.Close(dirfd)
			return fmt.Errorf("master: stat %q: %w", name, err)
		}
		if x.rules.Len() > 0 && x.rules.Match(joinRel(path, name), st.Mode&unix.S_IFMT == unix.S_IFDIR) == rules.Exclude {
			x.stats.Excluded++
			continue
		}
		eg, derived, err := x.t.EnsureGFID(dirfd, g, name, &st)
		if err != nil {
			if _, serr := lstatAt(dirfd, name); errors.Is(serr, unix.ENOENT) {
				continue
			}
			unix.Close(dirfd)
			return err
		}
		if derived && st.Mode&unix.S_IFMT == unix.S_IFREG && !x.warnedDerived {
			x.warnedDerived = true
			x.log.Warn("some files cannot carry a gfid xattr (read-only files of an unprivileged master): they are identified by name, so renaming them resends them", "example", fmt.Sprintf("%q", name))
		}
		// Has another inode of this crawl got this gfid? Hardlinked inodes
		// are told apart by inode number (few); the rest by whether the
		// index (emptied when the crawl began) holds the gfid already.
		hardlinked := st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1
		// keep: a link the last crawl indexed, the only link of its gfid
		// there, of an inode with one name, is neither a copy met twice (an
		// inode that carries the gfid elsewhere is, when met there: the
		// index names this one, which it is not) nor written again. A
		// hardlinked inode, or a gfid indexed under several names (a
		// hardlink group then, perhaps split since), is checked as any.
		k, wasKnown := known[name]
		old := k.g
		_, metHard := x.hard[eg]
		indexed := x.keep && wasKnown && old == eg && k.single && !hardlinked && !metHard
		if !x.keep || indexed {
			old = gfid.Zero
		}
		dup := false
		if !derived && !indexed {
			if ino, ok := x.hard[eg]; ok {
				dup = ino != st.Ino
			} else {
				dup = x.met(eg, dirfd, g, name, &st)
			}
		}
		if dup {
			fresh, err := x.t.New()
			if err == nil {
				err = x.t.NS.Set(beneath.ProcPath(dirfd, name), fresh)
			}
			if err != nil {
				unix.Close(dirfd)
				return fmt.Errorf("master: re-identifying %q: %w", name, err)
			}
			x.log.Info("entry carried another inode's gfid (copied with its xattrs); gave it its own", "name", fmt.Sprintf("%q", name), "old", eg, "new", fresh)
			eg = fresh
			indexed = false
		}
		_, sameInode := x.hard[eg]
		if hardlinked && !derived {
			x.hard[eg] = st.Ino
		}
		if !indexed {
			if err := x.index(eg, g, name, st.Ino, old, st.Mode&unix.S_IFMT == unix.S_IFDIR); err != nil {
				unix.Close(dirfd)
				return err
			}
		}
		rec := changelog.Record{Kind: changelog.KindEntry, GFID: eg, Parent: g, Name: name, Mode: st.Mode, UID: st.Uid, GID: st.Gid}
		first := true
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			rec.Op = changelog.OpMkdir
			x.stats.Dirs++
			subdirs = append(subdirs, sub{name, eg})
		case unix.S_IFREG:
			rec.Op = changelog.OpCreate
			rec.Size, rec.MtimeNS, rec.CtimeNS, rec.HasStat = st.Size, st.Mtim.Nano(), st.Ctim.Nano(), true
			if sameInode {
				// Another name of an inode already written.
				rec = changelog.Record{Kind: changelog.KindEntry, Op: changelog.OpLink, GFID: eg, Parent: g, Name: name}
				first = false
			}
			if first {
				x.stats.Files++
				x.stats.Bytes += st.Size
				x.st.CrawlFound(st.Size)
			}
		case unix.S_IFLNK:
			rec = changelog.Record{Kind: changelog.KindEntry, Op: changelog.OpSymlink, GFID: eg, Parent: g, Name: name}
			x.stats.Symlinks++
		default:
			rec.Op = changelog.OpMknod
			x.stats.Others++
		}
		if err := x.add(&rec); err != nil {
			unix.Close(dirfd)
			return err
		}
		if first && st.Mode&unix.S_IFMT == unix.S_IFREG {
			if err := x.add(&changelog.Record{Kind: changelog.KindData, GFID: eg}); err != nil {
				unix.Close(dirfd)
				return err
			}
		}
		// A regular file's metadata travels with its data (the header
		// carries it); everything else gets an M record.
		if first && st.Mode&unix.S_IFMT != unix.S_IFREG {
			if err := x.add(&changelog.Record{Kind: changelog.KindMeta, GFID: eg, Op: changelog.OpSetattr}); err != nil {
				unix.Close(dirfd)
				return err
			}
		}
	}
	if x.live {
		if err := x.flush(dirfd); err != nil {
			unix.Close(dirfd)
			return err
		}
	}
	if x.shallow {
		subdirs = nil
	}
	for _, s := range subdirs {
		if x.visited[s.g] {
			continue
		}
		fd, err := unix.Openat(dirfd, s.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			if !x.live {
				continue // removed or replaced while we crawled
			}
			// Renamed while we crawled: the recorder, which has recorded
			// the rename, has indexed where it went; its entries are
			// named by its gfid, so it is crawled wherever it is now (else
			// nothing would ever send them). (This directory's links were
			// flushed before its subdirectories.)
			if err := x.sync(); err != nil {
				unix.Close(dirfd)
				return err
			}
			err = x.t.Idx.View(func(tx *gfidx.Tx) error {
				e, ferr := x.t.Find(tx, s.g)
				if ferr != nil {
					return ferr
				}
				defer unix.Close(e.DirFD)
				var oerr error
				fd, oerr = unix.Openat(e.DirFD, e.Name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				return oerr
			})
			if err != nil {
				continue // removed
			}
		}
		if err != nil {
			unix.Close(dirfd)
			return fmt.Errorf("master: opening directory %q: %w", s.name, err)
		}
		if err := x.crawlDir(fd, s.g, false, joinRel(path, s.name)); err != nil {
			unix.Close(dirfd)
			return err
		}
	}
	unix.Close(dirfd)
	return x.add(&changelog.Record{Kind: changelog.KindEntry, GFID: g, Op: changelog.OpPurge})
}

// prune drops from the index the names of directory g (dirfd) that it no
// longer holds, and returns what the index holds there (name -> gfid).
// Each is checked again inside the index transaction: the recorder, which
// indexes names as they appear, waits for it, so a name made after the
// listing is never dropped. In a keep crawl, what was indexed below a
// dropped name that has no other link goes too (a removed directory's
// subtree; one moved elsewhere is indexed again where the crawl meets it).
func (x *xsync) prune(dirfd int, g gfid.GFID, names []string) (map[string]knownLink, error) {
	have := make(map[string]bool, len(names))
	for _, n := range names {
		have[n] = true
	}
	var stale []gfidx.Child
	var known map[string]knownLink
	x.t.Idx.View(func(tx *gfidx.Tx) error {
		children := tx.Children(g)
		known = make(map[string]knownLink, len(children))
		for _, c := range children {
			k := knownLink{g: c.GFID}
			if x.keep {
				k.single = tx.OneLink(c.GFID)
			}
			known[c.Name] = k
			if !have[c.Name] {
				stale = append(stale, c)
			}
		}
		return nil
	})
	if len(stale) == 0 {
		return known, nil
	}
	err := x.t.Idx.Update(func(tx *gfidx.Tx) error {
		for _, c := range stale {
			if _, err := lstatAt(dirfd, c.Name); !errors.Is(err, unix.ENOENT) {
				continue
			}
			if err := tx.RemoveLink(c.GFID, gfidx.Link{Parent: g, Name: c.Name}); err != nil {
				return err
			}
			if x.keep && len(tx.Links(c.GFID)) == 0 {
				if err := removeSubtree(tx, c.GFID, 0); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("master: pruning the index: %w", err)
	}
	return known, nil
}

// knownLink is what the index holds at a name: its gfid, and whether
// that is the gfid's only link (filled in for a keep crawl only).
type knownLink struct {
	g      gfid.GFID
	single bool
}

// maxDepth bounds removeSubtree's recursion (a damaged index could hold a
// cycle; a real tree this deep does not fit in PATH_MAX-limited walks).
const maxDepth = 4096

// removeSubtree forgets every link indexed below directory g, and below
// those of its entries left with no link.
func removeSubtree(tx *gfidx.Tx, g gfid.GFID, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("master: index deeper than %d below %s", maxDepth, g)
	}
	for _, c := range tx.Children(g) {
		if err := tx.RemoveLink(c.GFID, gfidx.Link{Parent: g, Name: c.Name}); err != nil {
			return err
		}
		if len(tx.Links(c.GFID)) == 0 {
			if err := removeSubtree(tx, c.GFID, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func lstatAt(dirfd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}

// listDir lists a directory (see beneath.ReadNames).
func listDir(dirfd int) ([]string, error) { return beneath.ReadNames(dirfd) }
