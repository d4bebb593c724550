package slave

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/wire"
	"github.com/georep/georep/internal/xattrs"
)

// The trash (off by default, TrashConfig): what a replicated delete or
// overwrite would destroy on the slave is moved instead, by a rename on
// the same filesystem, into <root>/.georep/trash, under the path of the
// directory it was removed from, as <name>~<UTC time>. A directory
// removed whole goes in one rename, its tree with it; a file overwritten
// by new data is hard-linked there before the new copy is renamed over
// it, or, when it has other links (its data is patched in place), copied
// there: the one copy. The pruner removes versions older than Keep, then
// the oldest ones while the trash holds more than MaxSize bytes.
//
// Nothing in the trash is part of the replica: it lives under the
// reserved top-level name, which is never replicated nor compared; the
// index keeps no link to what was moved there (the links of a directory's
// tree are dropped with it), and the trash directory carries no gfid, so
// the index rebuild after an unclean stop does not descend into it (a
// directory without a gfid is not walked).
//
// Names in the trash are encoded so that a version is told from a
// directory by its name alone: '%' and '~' of the original names are
// escaped (%25, %7E), so the one raw '~' in a trash name is the one
// before a version's time. A name too long to stay within NAME_MAX so
// encoded is cut, marked "%+" (shown as a trailing "…").

// TrashConfig turns the trash on and bounds it.
type TrashConfig struct {
	// Enabled keeps what replicated deletes and overwrites would destroy.
	Enabled bool
	// Keep is how long a version is kept; 0 keeps it whatever its age.
	Keep time.Duration
	// MaxSize bounds what the trash holds, in bytes (the apparent size of
	// its regular files and symlinks); beyond it the oldest versions go.
	// 0: no bound.
	MaxSize int64
	// PruneEvery is how often the pruner runs (Serve runs it);
	// 0 = DefaultTrashPruneEvery.
	PruneEvery time.Duration
}

const (
	// DefaultTrashKeep is `georep slave --trash-keep`'s default.
	DefaultTrashKeep = 30 * 24 * time.Hour
	// DefaultTrashPruneEvery is how often the pruner runs by default.
	DefaultTrashPruneEvery = time.Minute
	// TrashDirName is the trash's directory, under wire.ReservedName at
	// the top of the slave root.
	TrashDirName = "trash"
)

// TrashPath is where the trash of the slave root root lives.
func TrashPath(root string) string {
	return strings.TrimSuffix(root, "/") + "/" + wire.ReservedName + "/" + TrashDirName
}

// stampLayout is a version's time in its name (UTC, nanoseconds).
const stampLayout = "20060102-150405.000000000"

// nameMax is NAME_MAX.
const nameMax = beneath.MaxNameLen

// encodeName encodes one original name for the trash, within limit
// bytes (see the package comment above).
func encodeName(name string, limit int) string {
	enc := make([]byte, 0, len(name)+8)
	cut := 0 // where the name may be cut: a character boundary within limit-2
	for i := 0; i < len(name); i++ {
		if utf8.RuneStart(name[i]) && len(enc) <= limit-2 {
			cut = len(enc)
		}
		switch c := name[i]; c {
		case '%':
			enc = append(enc, "%25"...)
		case '~':
			enc = append(enc, "%7E"...)
		default:
			enc = append(enc, c)
		}
	}
	if len(enc) <= limit {
		return string(enc)
	}
	if len(enc) > 0 && cut == 0 && limit >= 5 {
		cut = limit - 2
	}
	return string(enc[:cut]) + "%+"
}

// decodeName is encodeName's inverse; truncated says the name was cut.
func decodeName(enc string) (name string, truncated bool) {
	b := make([]byte, 0, len(enc))
	for i := 0; i < len(enc); i++ {
		if enc[i] == '%' {
			if enc[i+1:] == "+" {
				return string(b), true
			}
			if i+2 < len(enc) {
				if v, err := strconv.ParseUint(enc[i+1:i+3], 16, 8); err == nil {
					b = append(b, byte(v))
					i += 2
					continue
				}
			}
		}
		b = append(b, enc[i])
	}
	return string(b), false
}

// displayName is an encoded name as list shows it: decoded, "…" after a
// cut one.
func displayName(enc string) string {
	n, cut := decodeName(enc)
	if cut {
		return n + "…"
	}
	return n
}

// versionName is the trash name of a version of name kept at t.
func versionName(name string, t time.Time) string {
	return encodeName(name, nameMax-1-len(stampLayout)) + "~" + t.UTC().Format(stampLayout)
}

// parseVersion splits a trash name into the encoded original name and
// the time; ok false for a directory of the trash (no '~') or a name it
// did not make.
func parseVersion(v string) (enc string, t time.Time, ok bool) {
	i := strings.IndexByte(v, '~')
	if i <= 0 || len(v)-i-1 != len(stampLayout) {
		return "", time.Time{}, false
	}
	t, err := time.ParseInLocation(stampLayout, v[i+1:], time.UTC)
	if err != nil {
		return "", time.Time{}, false
	}
	return v[:i], t, true
}

// isTrashRel says rel (a path relative to the root) is the trash or in it.
func isTrashRel(rel string) bool {
	t := wire.ReservedName + "/" + TrashDirName
	return rel == t || strings.HasPrefix(rel, t+"/")
}

// trash is a slave's trash (nil in tree when it is off).
type trash struct {
	cfg        TrashConfig
	root       *beneath.Root // the slave's (borrowed)
	rootReal   string        // the root as the kernel names it (see relOf)
	now        func() time.Time
	log        hclog.Logger
	privileged bool

	// mu orders keeping a version (making its directories, then putting
	// it there) against the pruner's removal of the directories it
	// emptied.
	mu sync.Mutex

	// origins: where each entry that a conflict moved into limbo was
	// (limbo name -> its path relative to the root), for the version that
	// SetMark's sweep keeps of it. Lost on a restart: what is in limbo
	// then is kept as .georep/limbo/<name>.
	originMu sync.Mutex
	origins  map[string]string

	// pruneMu makes one prune at a time, and guards sizes: the sizes of
	// kept directories, by their entry in the trash, so that a prune
	// walks only new ones.
	pruneMu sync.Mutex
	sizes   map[string]dirSize

	kept, pruned, prunedBytes atomic.Int64

	// short is signalled when an op failed for want of space (see
	// noteErr): the pruner frees space at once (pruneForSpace).
	short chan struct{}
}

// noteErr tells the pruner, when err is a filesystem full (or over
// quota), that the trash must give space back: kept versions must not
// stop the replication they were kept for. Nil-safe.
func (t *trash) noteErr(err error) {
	if t == nil || err == nil || !(errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)) {
		return
	}
	select {
	case t.short <- struct{}{}:
	default:
	}
}

// Free space the pruner makes when the filesystem is full: the larger of
// minFreeBytes and minFreeShare of the filesystem. And the reserve it
// keeps ahead of that, checked every spaceCheck: when less is free than
// the larger of reserveBytes and reserveShare, the oldest versions go
// before an op finds the filesystem full (the 30-minute soak with the
// trash on a 4 GiB filesystem was Faulty, "no space left", in a quarter
// of its samples: every overwrite kept, and only a failed op pruned).
const (
	minFreeBytes = 64 << 20
	minFreeShare = 0.02
	reserveBytes = 256 << 20
	reserveShare = 0.05
	spaceCheck   = 5 * time.Second
)

// pruneForSpace removes the oldest versions until the root's filesystem
// has room again (see minFreeBytes) or the trash is empty; the op that
// found it full is retried by the master.
func (s *Slave) pruneForSpace(ctx context.Context) {
	s.pruneBelow(ctx, func(size int64) int64 { return max(minFreeBytes, int64(float64(size)*minFreeShare)) })
}

// pruneReserve removes the oldest versions while less than the reserve
// (freeWanted) is free: before an op finds the filesystem full.
func (s *Slave) pruneReserve(ctx context.Context) {
	s.pruneBelow(ctx, func(size int64) int64 { return freeWanted(size, reserveBytes, reserveShare) })
}

// freeWanted is the free space the pruner keeps in reserve on a
// filesystem of size bytes: the larger of floor and share of it, but never
// more than a tenth of it (on a small filesystem a fixed floor would empty
// the trash for nothing). A filesystem found full (pruneForSpace) gets
// more: as much as the trash can give, up to its floor.
func freeWanted(size, floor int64, share float64) int64 {
	return min(max(floor, int64(float64(size)*share)), size/10)
}

// pruneBelow removes the oldest versions while less than want(the
// filesystem's size) is free.
func (s *Slave) pruneBelow(ctx context.Context, want func(size int64) int64) {
	t := s.tree.trash
	t.pruneMu.Lock()
	defer t.pruneMu.Unlock()
	free := func() (avail, wanted int64) {
		var fs unix.Statfs_t
		if unix.Fstatfs(t.root.FD(), &fs) != nil {
			return 0, 0
		}
		return int64(fs.Bavail) * fs.Bsize, want(int64(fs.Blocks) * fs.Bsize)
	}
	if a, w := free(); a >= w {
		return
	}
	top, err := openTrashTop(t.root.FD(), false)
	if err != nil {
		return
	}
	defer unix.Close(top)
	vs, err := listVersions(top, nil)
	if err != nil {
		t.log.Warn("freeing space: listing the trash", "error", err)
		return
	}
	sort.SliceStable(vs, func(i, j int) bool { return vs[i].Time.Before(vs[j].Time) })
	var n int
	var bytes int64
	for i := range vs {
		if a, w := free(); a >= w || ctx.Err() != nil {
			break
		}
		b, err := t.removeVersion(top, &vs[i])
		if err != nil {
			continue
		}
		delete(t.sizes, vs[i].Entry)
		n++
		bytes += b
	}
	t.pruned.Add(int64(n))
	t.prunedBytes.Add(bytes)
	if n > 0 {
		t.log.Warn("the slave's filesystem is (nearly) full: pruned the oldest versions of the trash early", "versions", n, "bytes", bytes)
	}
}

type dirSize struct {
	ino  uint64
	size int64
}

// newTrash readies the trash of s (its directory made by reservedDirs).
func newTrash(s *Slave) (*trash, error) {
	real, err := os.Readlink(beneath.FDPath(s.tree.root.FD()))
	if err != nil {
		return nil, fmt.Errorf("slave: trash: where is the root: %w", err)
	}
	cfg := s.cfg.Trash
	if cfg.PruneEvery <= 0 {
		cfg.PruneEvery = DefaultTrashPruneEvery
	}
	return &trash{cfg: cfg, root: s.tree.root, rootReal: real, now: s.cfg.Now, log: s.log.Named("trash"),
		privileged: s.privileged, origins: map[string]string{}, sizes: map[string]dirSize{}, short: make(chan struct{}, 1)}, nil
}

// openTrashTop opens the trash directory of the root open as rootfd;
// create makes it (mode 0700) when it is missing.
func openTrashTop(rootfd int, create bool) (int, error) {
	rfd, err := unix.Openat(rootfd, wire.ReservedName, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening %s: %w", wire.ReservedName, err)
	}
	defer unix.Close(rfd)
	fd, err := unix.Openat(rfd, TrashDirName, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) && create {
		if err := unix.Mkdirat(rfd, TrashDirName, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, fmt.Errorf("making the trash: %w", err)
		}
		fd, err = unix.Openat(rfd, TrashDirName, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return -1, fmt.Errorf("opening the trash: %w", err)
	}
	return fd, nil
}

// openDirs opens the trash directory comps (encoded names) below top;
// create makes what is missing (mode 0700). The caller closes the result
// (top stays open).
func openDirs(top int, comps []string, create bool) (int, error) {
	fd, err := unix.Dup(top)
	if err != nil {
		return -1, err
	}
	for _, c := range comps {
		if create {
			if err := unix.Mkdirat(fd, c, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(fd)
				return -1, fmt.Errorf("making trash directory %q: %w", c, err)
			}
		}
		nfd, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, fmt.Errorf("opening trash directory %q: %w", c, err)
		}
		fd = nfd
	}
	return fd, nil
}

// encodeDir is the trash directory of rel, a slash-separated path
// relative to the root ("" for the root), as encoded names.
func encodeDir(rel string) []string {
	var comps []string
	for _, c := range strings.Split(rel, "/") {
		if c != "" && c != "." {
			comps = append(comps, encodeName(c, nameMax))
		}
	}
	return comps
}

// keptAt is where a version was put: its directory (encoded names below
// the trash) and its name there.
type keptAt struct {
	dir  []string
	name string
}

func (k keptAt) entry() string {
	return strings.Join(append(append([]string(nil), k.dir...), k.name), "/")
}

// put keeps a version of name, from the directory rel: put makes it as
// vname in the trash directory tdir, and must fail with EEXIST when vname
// is taken (the time is then moved on by a nanosecond).
func (t *trash) put(rel, name string, put func(tdir int, vname string) error) (keptAt, error) {
	if isTrashRel(rel) {
		return keptAt{}, fmt.Errorf("%q is in the trash already", rel)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	top, err := openTrashTop(t.root.FD(), true)
	if err != nil {
		return keptAt{}, err
	}
	defer unix.Close(top)
	k := keptAt{dir: encodeDir(rel)}
	tdir, err := openDirs(top, k.dir, true)
	if err != nil {
		return keptAt{}, err
	}
	defer unix.Close(tdir)
	when := t.now()
	for i := 0; i < 1000; i++ {
		k.name = versionName(name, when)
		err := put(tdir, k.name)
		if errors.Is(err, unix.EEXIST) {
			when = when.Add(time.Nanosecond)
			continue
		}
		if err != nil {
			return keptAt{}, err
		}
		t.kept.Add(1)
		t.log.Debug("kept", "path", fmt.Sprintf("%q", joinRel(rel, name)), "entry", fmt.Sprintf("%q", k.entry()))
		return k, nil
	}
	return keptAt{}, fmt.Errorf("no free name for %q in the trash", name)
}

// unput removes a version put a moment ago (what it was kept for failed).
func (t *trash) unput(k keptAt) {
	t.mu.Lock()
	defer t.mu.Unlock()
	top, err := openTrashTop(t.root.FD(), false)
	if err != nil {
		return
	}
	defer unix.Close(top)
	if fd, err := openDirs(top, k.dir, false); err == nil {
		unix.Unlinkat(fd, k.name, 0)
		unix.Close(fd)
	}
}

// relOf is the path, relative to the root, of the directory open as fd,
// as the kernel names it (/proc/self/fd); an error when it is not inside
// the root, or is gone.
func (t *trash) relOf(fd int) (string, error) {
	p, err := os.Readlink(beneath.FDPath(fd))
	if err != nil {
		return "", fmt.Errorf("where is the directory: %w", err)
	}
	if p == t.rootReal {
		return "", nil
	}
	if rel, ok := strings.CutPrefix(p, strings.TrimSuffix(t.rootReal, "/")+"/"); ok && !strings.HasSuffix(p, " (deleted)") {
		return rel, nil
	}
	return "", fmt.Errorf("directory %q is not inside the root %q", p, t.rootReal)
}

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// renameNoReplace renames without replacing (EEXIST when newname is
// taken), also where the filesystem lacks RENAME_NOREPLACE (the trash is
// written under its lock only).
func renameNoReplace(olddir int, oldname string, newdir int, newname string) error {
	err := unix.Renameat2(olddir, oldname, newdir, newname, unix.RENAME_NOREPLACE)
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	if _, err := beneath.Lstat(newdir, newname); err == nil {
		return unix.EEXIST
	}
	return unix.Renameat(olddir, oldname, newdir, newname)
}

// ---- the hooks: what is kept ----

// relDir is the path, relative to the root, of directory parent open as
// dirfd: from the index (within the transaction, it follows every move),
// else as the kernel names it.
func (c *dirCache) relDir(dirfd int, parent gfid.GFID) (string, error) {
	if parent == gfid.Root {
		return "", nil
	}
	if c.tx != nil {
		if p, err := c.tx.Path(parent); err == nil {
			if p == "." {
				p = ""
			}
			return p, nil
		}
	}
	return c.t.trash.relOf(dirfd)
}

// keepRemoved is removeTree with the trash on: it keeps name of dirfd in
// the trash when it is worth keeping (handled true), and says when it is
// not (handled false: removeTree destroys it as without the trash). Worth
// keeping: the last link of a regular file or symlink, and a directory
// that is not empty (its whole tree, in one rename). An empty directory
// is removed here (handled); a file with other links, a FIFO, socket or
// device is left to removeTree. from, when not nil, names the entry's
// original place (an entry swept from limbo), else it is where it is.
func (c *dirCache) keepRemoved(dirfd int, parent gfid.GFID, name string, from *[2]string) (handled bool, err error) {
	g, st, exists, err := c.t.lookup(dirfd, parent, name, c.tx)
	if err != nil || !exists {
		return err == nil, err
	}
	link := gfidx.Link{Parent: parent, Name: name}
	switch typ := st.Mode & unix.S_IFMT; {
	case (typ == unix.S_IFREG || typ == unix.S_IFLNK) && st.Nlink == 1:
	case typ == unix.S_IFDIR:
		err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
		if err == nil || errors.Is(err, unix.ENOENT) {
			if !g.IsZero() {
				c.forget(g)
				return true, c.tx.RemoveLink(g, link)
			}
			return true, nil
		}
		if !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
			return false, fmt.Errorf("removing directory %q: %w", name, err)
		}
	default:
		return false, nil
	}
	var rel, orig string
	if from != nil {
		rel, orig = from[0], from[1]
	} else {
		orig = name
		if rel, err = c.relDir(dirfd, parent); err != nil {
			return false, fmt.Errorf("keeping %q in the trash: %w", name, err)
		}
	}
	_, err = c.t.trash.put(rel, orig, func(tdir int, vname string) error {
		if err := renameNoReplace(dirfd, name, tdir, vname); err != nil {
			return err
		}
		if isDir(&st) {
			// A file in the tree with a name left in the replica (a hard
			// link) lives on there: its name here goes, else the
			// replica's copy would count one link more than the
			// master's (the quick soak with the trash on).
			dropShared(tdir, vname)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("keeping %q in the trash: %w", name, err)
	}
	if g.IsZero() {
		return true, nil
	}
	if isDir(&st) {
		c.forget(g)
		// The index forgets the tree below, through its own links, if
		// this name was where it placed the directory (a stale copy's
		// gfid lives on elsewhere, with its children).
		if links := c.tx.Links(g); len(links) == 1 && links[0] == link {
			if err := c.tx.RemoveLink(g, link); err != nil {
				return true, err
			}
			return true, c.unindexTree(g)
		}
	}
	return true, c.tx.RemoveLink(g, link)
}

// dropShared unlinks, below directory name of dirfd (a tree just moved to
// the trash), every non-directory that has other links: its data is kept
// where they are. Of names linked to each other within the tree, the last
// one met stays. Best effort: what cannot be read stays as it is.
func dropShared(dirfd int, name string) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	names, err := readNames(fd)
	if err != nil {
		return
	}
	for _, n := range names {
		var st unix.Stat_t
		if unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
			continue
		}
		if isDir(&st) {
			dropShared(fd, n)
		} else if st.Nlink > 1 {
			unix.Unlinkat(fd, n, 0)
		}
	}
}

// unindexTree drops the index links below directory g, which went to the
// trash whole: nothing may find an entry there by its gfid. Announced
// names (data to follow) go too, and the data streams are told.
func (c *dirCache) unindexTree(g gfid.GFID) error {
	stack := []gfid.GFID{g}
	seen := map[gfid.GFID]bool{g: true}
	for len(stack) > 0 {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, ch := range c.tx.Children(d) {
			if err := c.tx.RemoveLink(ch.GFID, gfidx.Link{Parent: d, Name: ch.Name}); err != nil {
				return err
			}
			c.forget(ch.GFID)
			if !seen[ch.GFID] && len(c.tx.Links(ch.GFID)) == 0 {
				seen[ch.GFID] = true
				stack = append(stack, ch.GFID)
			}
		}
	}
	c.t.dropped.Add(1)
	return nil
}

// keepReplaced keeps, with the trash on, the entry at name of dirfd (st
// its lstat) that a RENAME is about to replace, or a symlink about to be
// replaced by one with another target: the last link of a regular file
// or symlink. The name is free afterwards.
func (c *dirCache) keepReplaced(dirfd int, parent gfid.GFID, name string, st *unix.Stat_t) error {
	if c.t.trash == nil || st.Nlink != 1 {
		return nil
	}
	if typ := st.Mode & unix.S_IFMT; typ != unix.S_IFREG && typ != unix.S_IFLNK {
		return nil
	}
	rel, err := c.relDir(dirfd, parent)
	if err != nil {
		return fmt.Errorf("keeping %q in the trash: %w", name, err)
	}
	if _, err := c.t.trash.put(rel, name, func(tdir int, vname string) error {
		return renameNoReplace(dirfd, name, tdir, vname)
	}); err != nil {
		return fmt.Errorf("keeping %q in the trash: %w", name, err)
	}
	return nil
}

// noteAside records, with the trash on, where an entry moveAside parked
// in limbo as limboName came from.
func (c *dirCache) noteAside(dirfd int, parent gfid.GFID, name, limboName string) {
	t := c.t.trash
	if t == nil {
		return
	}
	rel, err := c.relDir(dirfd, parent)
	if err != nil {
		return // kept, if ever, as .georep/limbo/<name>
	}
	t.originMu.Lock()
	t.origins[limboName] = joinRel(rel, name)
	t.originMu.Unlock()
}

// sweepLimbo removes name from limbo (open as lfd) for SetMark: with the
// trash on, what is worth keeping is kept, under the place it was moved
// aside from.
func (c *dirCache) sweepLimbo(lfd int, name string) error {
	if t := c.t.trash; t != nil {
		t.originMu.Lock()
		orig, ok := t.origins[name]
		t.originMu.Unlock()
		if !ok {
			orig = wire.ReservedName + "/" + limboName + "/" + name
		}
		from := [2]string{"", orig}
		if i := strings.LastIndexByte(orig, '/'); i >= 0 {
			from = [2]string{orig[:i], orig[i+1:]}
		}
		if handled, err := c.keepRemoved(lfd, limboGFID, name, &from); handled || err != nil {
			return err
		}
	}
	return c.destroyTree(lfd, limboGFID, name)
}

// limboSwept forgets the origins of what was in limbo, once SetMark has
// emptied it.
func (t *trash) limboSwept() {
	if t == nil {
		return
	}
	t.originMu.Lock()
	clear(t.origins)
	t.originMu.Unlock()
}

// keepOverwritten hard-links the old copy of in's target (st its lstat:
// one link) into the trash, before the staged file is renamed over it;
// undo drops that link again if the rename fails. An empty old copy has
// nothing to keep.
func (ds *dataStream) keepOverwritten(in *incoming, st *unix.Stat_t) (undo func(), err error) {
	t := ds.s.tree.trash
	if t == nil {
		return func() {}, nil
	}
	if st.Nlink != 1 || st.Size == 0 {
		return func() {}, nil
	}
	rel, err := ds.relDir(in)
	if err != nil {
		return nil, fmt.Errorf("keeping the old copy of %s in the trash: %w", in.g, err)
	}
	// Still that inode, with that one name (an entry op may have linked
	// it since it was looked up): else a trash link would stay on a
	// live inode.
	var now unix.Stat_t
	if err := unix.Fstatat(in.dirfd, in.name, &now, unix.AT_SYMLINK_NOFOLLOW); err != nil || now.Ino != st.Ino || now.Dev != st.Dev || now.Nlink != 1 {
		return func() {}, nil
	}
	k, err := t.put(rel, in.name, func(tdir int, vname string) error {
		return unix.Linkat(in.dirfd, in.name, tdir, vname, 0)
	})
	if err != nil {
		return nil, fmt.Errorf("keeping the old copy of %s in the trash: %w", in.g, err)
	}
	return func() { t.unput(k) }, nil
}

// keepCopy copies the old content of in's target, which has other links
// and is about to be patched in place, into the trash (the one case the
// trash copies): its data, mode, owner, replicated xattrs and times, not
// its gfid. looked is its lstat.
func (ds *dataStream) keepCopy(in *incoming, looked *unix.Stat_t) error {
	t := ds.s.tree.trash
	if t == nil {
		return nil
	}
	if looked.Size == 0 {
		return nil
	}
	rel, err := ds.relDir(in)
	if err != nil {
		return fmt.Errorf("keeping the old copy of %s in the trash: %w", in.g, err)
	}
	src, err := unix.Openat(in.dirfd, in.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("keeping the old copy of %s in the trash: %w", in.g, err)
	}
	defer unix.Close(src)
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		return fmt.Errorf("keeping the old copy of %s in the trash: %w", in.g, err)
	}
	if st.Dev != looked.Dev || st.Ino != looked.Ino {
		return fmt.Errorf("%q changed identity: %w", in.name, errUnknown)
	}
	// The version is made under the trash's lock, and filled after it
	// (a big file's copy holds up no other keep; the pruner leaves a
	// directory that holds it).
	fd := -1
	k, err := t.put(rel, in.name, func(tdir int, vname string) error {
		var err error
		fd, err = unix.Openat(tdir, vname, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return fmt.Errorf("keeping a copy of %s in the trash: %w", in.g, err)
	}
	err = copyVersion(fd, src, &st, t.privileged)
	unix.Close(fd)
	if err != nil {
		t.unput(k)
		return fmt.Errorf("keeping a copy of %s in the trash: %w", in.g, err)
	}
	return nil
}

// copyVersion makes dst a copy of src (st its stat): content, owner (when
// privileged), mode, replicated xattrs, times.
func copyVersion(dst, src int, st *unix.Stat_t, privileged bool) error {
	if err := copyInto(dst, src, st.Size); err != nil {
		return err
	}
	if privileged {
		if err := unix.Fchown(dst, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	if xs, err := xattrs.ListFD(src, func(n string) bool { return Replicated(n, privileged) }); err == nil {
		for _, n := range xattrs.Names(xs) {
			unix.Fsetxattr(dst, n, xs[n], 0) // as much as the trash can hold
		}
	}
	if err := unix.Fchmod(dst, st.Mode&0o7777); err != nil {
		return err
	}
	return futimens(dst, [2]unix.Timespec{st.Atim, st.Mtim})
}

// relDir is the path of in's directory relative to the root, as the
// kernel names it, else from the index. A directory that went to the
// trash (removed whole while the data was on the way) is gone: the data
// must not land there, over what the trash keeps.
func (ds *dataStream) relDir(in *incoming) (string, error) {
	rel, err := ds.s.tree.trash.relOf(in.dirfd)
	if err == nil && isTrashRel(rel) {
		return "", fmt.Errorf("%s: its directory went to the trash while its data arrived: %w", in.g, errUnknown)
	}
	if err == nil {
		return rel, nil
	}
	var p string
	if in.parent == gfid.Root {
		return "", nil
	}
	if ierr := ds.s.tree.idx.View(func(tx *gfidx.Tx) error {
		var e error
		p, e = tx.Path(in.parent)
		return e
	}); ierr != nil {
		return "", errors.Join(err, ierr)
	}
	return p, nil
}

// ---- what is kept, and pruning ----

// TrashVersion is one version the trash keeps.
type TrashVersion struct {
	// Path is where it was, relative to the slave root: the original
	// names, bytes as they were (a name cut to fit ends with "…").
	Path string
	// Time is when it was kept (UTC).
	Time time.Time
	// Type is file, dir, symlink, fifo, socket, char or block.
	Type string
	// Size is a file's size, a symlink's target length, the sum of those
	// of a directory's tree; -1 when not computed.
	Size int64
	// Entry is its place below the trash directory (encoded names).
	Entry string

	dir  []string // Entry's directory, encoded names
	name string   // Entry's last name
	ino  uint64
}

func trashType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "char"
	case unix.S_IFBLK:
		return "block"
	}
	return "other"
}

// listVersions lists the versions below the trash directory top, sorted
// by path then time. dirSize, when set, gives a kept directory's size
// (else it is -1).
func listVersions(top int, dirSize func(dirfd int, v *TrashVersion) int64) ([]TrashVersion, error) {
	var out []TrashVersion
	var walk func(fd int, dir []string) error
	walk = func(fd int, dir []string) error {
		names, err := readNames(fd)
		if err != nil {
			return err
		}
		sort.Strings(names)
		for _, n := range names {
			st, err := beneath.Lstat(fd, n)
			if errors.Is(err, unix.ENOENT) {
				continue // pruned or restored meanwhile
			}
			if err != nil {
				return fmt.Errorf("stat %q: %w", n, err)
			}
			if enc, when, ok := parseVersion(n); ok {
				v := TrashVersion{Time: when, Type: trashType(st.Mode), Size: st.Size, dir: dir, name: n, ino: st.Ino}
				var parts []string
				for _, c := range dir {
					parts = append(parts, displayName(c))
				}
				v.Path = strings.Join(append(parts, displayName(enc)), "/")
				v.Entry = strings.Join(append(append([]string(nil), dir...), n), "/")
				if isDir(&st) {
					v.Size = -1
					if dirSize != nil {
						v.Size = dirSize(fd, &v)
					}
				}
				out = append(out, v)
				continue
			}
			if !isDir(&st) || strings.IndexByte(n, '~') >= 0 {
				continue // nothing the trash made
			}
			sub, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			if err != nil {
				return fmt.Errorf("opening %q: %w", n, err)
			}
			err = walk(sub, append(append([]string(nil), dir...), n))
			unix.Close(sub)
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(top, nil); err != nil {
		return nil, fmt.Errorf("listing the trash: %w", err)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Time.Before(out[j].Time)
	})
	return out, nil
}

// treeSize sums the sizes of the regular files and symlinks in the tree
// of directory name in dirfd (what it could read).
func treeSize(dirfd int, name string) int64 {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	names, _ := readNames(fd)
	var n int64
	for _, c := range names {
		st, err := beneath.Lstat(fd, c)
		if err != nil {
			continue
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG, unix.S_IFLNK:
			n += st.Size
		case unix.S_IFDIR:
			n += treeSize(fd, c)
		}
	}
	return n
}

// destroyAll removes name from dirfd with its whole tree (made
// writable on the way, for an unprivileged slave); it returns the bytes
// of the regular files and symlinks removed.
func destroyAll(dirfd int, name string) (int64, error) {
	st, err := beneath.Lstat(dirfd, name)
	if errors.Is(err, unix.ENOENT) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if !isDir(&st) {
		if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return 0, fmt.Errorf("removing %q: %w", name, err)
		}
		if t := st.Mode & unix.S_IFMT; t == unix.S_IFREG || t == unix.S_IFLNK {
			return st.Size, nil
		}
		return 0, nil
	}
	if st.Mode&0o700 != 0o700 {
		if err := unix.Fchmodat(dirfd, name, 0o700, 0); err != nil {
			return 0, fmt.Errorf("making %q writable: %w", name, err)
		}
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("opening %q: %w", name, err)
	}
	names, err := readNames(fd)
	var n int64
	for _, c := range names {
		if err != nil {
			break
		}
		var m int64
		m, err = destroyAll(fd, c)
		n += m
	}
	unix.Close(fd)
	if err != nil {
		return n, err
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return n, fmt.Errorf("removing directory %q: %w", name, err)
	}
	return n, nil
}

// removeVersion removes v and then the trash directories it leaves
// empty; it returns the bytes removed.
func (t *trash) removeVersion(top int, v *TrashVersion) (int64, error) {
	fd, err := openDirs(top, v.dir, false)
	if errors.Is(err, unix.ENOENT) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := destroyAll(fd, v.name)
	unix.Close(fd)
	if err != nil {
		return n, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := len(v.dir); i > 0; i-- {
		pfd, err := openDirs(top, v.dir[:i-1], false)
		if err != nil {
			break
		}
		err = unix.Unlinkat(pfd, v.dir[i-1], unix.AT_REMOVEDIR)
		unix.Close(pfd)
		if err != nil {
			break // not empty (or gone): those above are not empty either
		}
	}
	return n, nil
}

// TrashPruned says what a prune removed.
type TrashPruned struct {
	Versions int
	Bytes    int64
}

// PruneTrash removes what the trash keeps beyond its bounds now: the
// versions older than Keep, then the oldest while it holds more than
// MaxSize bytes. Serve runs it every PruneEvery; a slave without the
// trash prunes nothing. Not after Close.
func (s *Slave) PruneTrash(ctx context.Context) (TrashPruned, error) {
	t := s.tree.trash
	if t == nil {
		return TrashPruned{}, nil
	}
	t.pruneMu.Lock()
	defer t.pruneMu.Unlock()
	top, err := openTrashTop(t.root.FD(), true)
	if err != nil {
		return TrashPruned{}, fmt.Errorf("pruning the trash: %w", err)
	}
	defer unix.Close(top)
	var sizeOf func(int, *TrashVersion) int64
	seen := map[string]bool{}
	if t.cfg.MaxSize > 0 {
		sizeOf = func(dirfd int, v *TrashVersion) int64 {
			seen[v.Entry] = true
			if c, ok := t.sizes[v.Entry]; ok && c.ino == v.ino {
				return c.size
			}
			n := treeSize(dirfd, v.name)
			t.sizes[v.Entry] = dirSize{ino: v.ino, size: n}
			return n
		}
	}
	vs, err := listVersions(top, sizeOf)
	if err != nil {
		return TrashPruned{}, fmt.Errorf("pruning the trash: %w", err)
	}
	for e := range t.sizes {
		if !seen[e] {
			delete(t.sizes, e)
		}
	}
	sort.SliceStable(vs, func(i, j int) bool {
		if !vs[i].Time.Equal(vs[j].Time) {
			return vs[i].Time.Before(vs[j].Time)
		}
		return vs[i].Entry < vs[j].Entry
	})
	var res TrashPruned
	var errs []error
	drop := func(v *TrashVersion, why string) {
		n, err := t.removeVersion(top, v)
		if err != nil {
			t.log.Warn("pruning a version", "path", fmt.Sprintf("%q", v.Path), "time", v.Time.Format(time.RFC3339Nano), "error", err)
			errs = append(errs, err)
			return
		}
		res.Versions++
		res.Bytes += n
		delete(t.sizes, v.Entry)
		t.log.Debug("pruned", "why", why, "path", fmt.Sprintf("%q", v.Path), "time", v.Time.Format(time.RFC3339Nano), "type", v.Type, "bytes", n)
	}
	now := t.now()
	rest := vs[:0:0]
	for i := range vs {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if t.cfg.Keep > 0 && now.Sub(vs[i].Time) > t.cfg.Keep {
			drop(&vs[i], "age")
			continue
		}
		rest = append(rest, vs[i])
	}
	if t.cfg.MaxSize > 0 {
		var total int64
		for _, v := range rest {
			total += max(v.Size, 0)
		}
		for i := 0; i < len(rest) && total > t.cfg.MaxSize; i++ {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			drop(&rest[i], "size")
			total -= max(rest[i].Size, 0)
		}
	}
	t.pruned.Add(int64(res.Versions))
	t.prunedBytes.Add(res.Bytes)
	if res.Versions > 0 {
		t.log.Debug("pruned the trash", "versions", res.Versions, "bytes", res.Bytes)
	}
	return res, errors.Join(errs...)
}

// TrashStats are the trash's counts since the slave started.
type TrashStats struct {
	Kept, Pruned int64 // versions
	PrunedBytes  int64
}

// TrashStats says what the trash kept and pruned since New.
func (s *Slave) TrashStats() TrashStats {
	t := s.tree.trash
	if t == nil {
		return TrashStats{}
	}
	return TrashStats{Kept: t.kept.Load(), Pruned: t.pruned.Load(), PrunedBytes: t.prunedBytes.Load()}
}

// pruneTrash prunes at once and then every PruneEvery until ctx ends
// (Serve runs it).
func (s *Slave) pruneTrash(ctx context.Context) {
	t := s.tree.trash
	if t == nil {
		return
	}
	tick := time.NewTicker(t.cfg.PruneEvery)
	defer tick.Stop()
	space := time.NewTicker(spaceCheck)
	defer space.Stop()
	for {
		if _, err := s.PruneTrash(ctx); err != nil && ctx.Err() == nil {
			t.log.Warn("pruning the trash", "error", err)
		}
	wait:
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-t.short:
			s.pruneForSpace(ctx)
		case <-space.C:
			s.pruneReserve(ctx)
			goto wait
		}
	}
}

// trashDir readies the trash directory at start (reservedDirs): made when
// the trash is on, and never carrying a gfid, so that the index rebuild
// does not walk into it.
func (s *Slave) trashDir(reservedfd int) error {
	if s.cfg.Trash.Enabled {
		if err := unix.Mkdirat(reservedfd, TrashDirName, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("slave: making the trash: %w", err)
		}
	}
	fd, err := unix.Openat(reservedfd, TrashDirName, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("slave: opening the trash: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Fremovexattr(fd, s.tree.ns.GFIDAttr()); err != nil && !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("slave: the trash directory carries a gfid that cannot be removed: %w", err)
	}
	if !s.cfg.Trash.Enabled {
		if names, err := readNames(fd); err == nil && len(names) > 0 {
			s.log.Info("the trash is off; what it kept stays until removed", "dir", TrashPath(s.cfg.Root))
		}
	}
	return nil
}
