package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// GenConfig configures a Gen.
type GenConfig struct {
	// Root is the master tree the generator changes (it must exist).
	Root string
	Seed uint64
	// MaxRel bounds relative paths (bytes): root + "/" + rel stays under
	// PATH_MAX when MaxRel <= 4095 - len(root) - 1 (and the slave root is
	// no longer than the master's).
	MaxRel int
	// TargetEntries is the tree size the churn hovers around (0: the
	// size after Populate, or when the Gen was made).
	TargetEntries int
	// MaxBytes bounds the apparent size of all files (0: 1 GiB).
	MaxBytes int64
	// Chown enables chown to random uids/gids (needs root).
	Chown bool
}

// Event is one op the generator applied (or tried: Err says why it was
// skipped). Paths are relative to the root, as they were when the op ran.
type Event struct {
	Seq   int
	At    time.Duration // since the Gen's clock started (not compared by tests)
	Kind  string
	Paths []string
	Moves []move   // renames that succeeded, for following a path back in time
	IDs   []uint64 // model objects touched (inode for files, node otherwise)
	Arg   int64
	Note  string
	Err   string // "" applied; else the errno that made it skip (partly applied ops keep the part that succeeded)
}

type move struct{ From, To string }

// KindStats counts one op kind.
type KindStats struct {
	Applied, Skipped int
	Errs             map[string]int
}

// Gen is the churn generator.
type Gen struct {
	cfg     GenConfig
	r       *rand.Rand
	m       *model
	pool    []byte
	seq     int
	start   time.Time
	written atomic.Int64
	grown   atomic.Int64 // bytes files grew by without being written (ftruncate: holes)
	stats   map[string]*KindStats
	history []Event
	last    []int // step at which each kind last ran
}

type kindSpec struct {
	name   string
	weight float64
	class  int  // 0 neutral, 1 adds entries, 2 removes entries
	bytes  bool // adds bytes
	fn     func(*Gen, *Event) bool
}

const (
	neutral = iota
	grows
	shrinks
)

// kinds is every op kind. fn returns false when the model has no target
// for it (then another kind is drawn and nothing is recorded).
var kinds = []kindSpec{
	{"create", 10, grows, true, (*Gen).opCreate},
	{"create_sparse", 1.5, grows, true, (*Gen).opCreateSparse},
	{"overwrite_mid", 8, neutral, true, (*Gen).opOverwriteMid},
	{"overwrite_keep_mtime", 1, neutral, false, (*Gen).opOverwriteKeepMtime},
	{"append", 7, neutral, true, (*Gen).opAppend},
	{"truncate_shrink", 3, neutral, false, (*Gen).opTruncShrink},
	{"truncate_grow", 2, neutral, true, (*Gen).opTruncGrow},
	{"punch_hole", 0.7, neutral, false, (*Gen).opPunchHole},
	{"rename_file_samedir", 4, neutral, false, (*Gen).opRenameFileSameDir},
	{"rename_file_crossdir", 4, neutral, false, (*Gen).opRenameFileCrossDir},
	{"rename_file_over", 3, shrinks, false, (*Gen).opRenameFileOver},
	{"rename_dir_samedir", 2, neutral, false, (*Gen).opRenameDirSameDir},
	{"rename_dir_crossdir", 2, neutral, false, (*Gen).opRenameDirCrossDir},
	{"rename_dir_into_sibling", 1.5, neutral, false, (*Gen).opRenameDirIntoSibling},
	{"rename_dir_over_empty", 1, shrinks, false, (*Gen).opRenameDirOverEmpty},
	{"rename_ancestor_during_write", 2, neutral, true, (*Gen).opRenameAncestorDuringWrite},
	{"rename_exchange", 0.7, neutral, false, (*Gen).opExchange},
	{"link", 3, grows, false, (*Gen).opLink},
	{"rename_link_same_group", 1, neutral, false, (*Gen).opRenameLinkSameGroup},
	{"rename_link_other_group", 1.5, shrinks, false, (*Gen).opRenameLinkOtherGroup},
	{"unlink_link", 2, shrinks, false, (*Gen).opUnlinkLink},
	{"tmpfile_link", 0.5, grows, true, (*Gen).opTmpfileLink},
	{"symlink_rel", 1, grows, false, (*Gen).opSymlinkRel},
	{"symlink_abs", 0.7, grows, false, (*Gen).opSymlinkAbs},
	{"symlink_dangling", 0.7, grows, false, (*Gen).opSymlinkDangling},
	{"symlink_odd", 0.7, grows, false, (*Gen).opSymlinkOdd},
	{"mkfifo", 0.8, grows, false, (*Gen).opFifo},
	{"mksock", 0.3, grows, false, (*Gen).opSock},
	{"chmod", 3, neutral, false, (*Gen).opChmod},
	{"chmod_setgid_dir", 0.7, neutral, false, (*Gen).opChmodSetgidDir},
	{"chmod_setuid_file", 0.7, neutral, false, (*Gen).opChmodSetuidFile},
	{"chown", 2, neutral, false, (*Gen).opChown},
	{"utimes", 4, neutral, false, (*Gen).opUtimes},
	{"xattr_set", 3, neutral, false, (*Gen).opXattrSet},
	{"xattr_remove", 1.5, neutral, false, (*Gen).opXattrRemove},
	{"acl_set", 1.5, neutral, false, (*Gen).opACLSet},
	{"acl_default", 0.7, neutral, false, (*Gen).opACLDefault},
	{"unlink", 8, shrinks, false, (*Gen).opUnlink},
	{"rm_rf", 0.6, shrinks, false, (*Gen).opRmRf},
	{"mkdir", 3, grows, false, (*Gen).opMkdir},
	{"mkdir_p", 1.2, grows, false, (*Gen).opMkdirP},
	{"rmdir", 1.5, shrinks, false, (*Gen).opRmdir},
	{"deep_chain", 0.04, grows, false, (*Gen).opDeepChain},
	{"rm_rf_chain", 0.08, shrinks, false, (*Gen).opRmRfChain},
	{"reuse_unlink_create", 1, neutral, true, (*Gen).opReuseUnlinkCreate},
	{"reuse_rename_create", 1, neutral, true, (*Gen).opReuseRenameCreate},
	{"reuse_rmdir_mkdir", 1, neutral, false, (*Gen).opReuseRmdirMkdir},
}

// KindNames lists every op kind, in table order.
func KindNames() []string {
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = k.name
	}
	return out
}

// starveAfter: a kind that has not run for this many steps is forced
// (when it has a target), so that rare kinds always occur.
const starveAfter = 1500

// NewGen makes a generator for the tree at cfg.Root, modelling what is
// already there.
func NewGen(cfg GenConfig) (*Gen, error) {
	if cfg.MaxRel <= 0 {
		cfg.MaxRel = 4095 - len(cfg.Root) - 1
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 1 << 30
	}
	m, err := scanModel(cfg.Root)
	if err != nil {
		return nil, err
	}
	g := &Gen{
		cfg:   cfg,
		r:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		m:     m,
		start: time.Now(),
		stats: map[string]*KindStats{},
		last:  make([]int, len(kinds)),
	}
	if g.cfg.TargetEntries <= 0 {
		g.cfg.TargetEntries = max(m.entries(), 200)
	}
	// A pool of incompressible bytes that file data is cut from.
	cc := rand.NewChaCha8([32]byte{byte(cfg.Seed), byte(cfg.Seed >> 8), byte(cfg.Seed >> 16), 's', 'o', 'a', 'k'})
	g.pool = make([]byte, 8<<20)
	cc.Read(g.pool)
	for _, k := range kinds {
		g.stats[k.name] = &KindStats{Errs: map[string]int{}}
	}
	return g, nil
}

// ResetClock starts the events' clock (Event.At) now.
func (g *Gen) ResetClock() { g.start = time.Now() }

// Written is the number of file bytes the generator has written.
func (g *Gen) Written() int64 { return g.written.Load() }

// Grown is the number of bytes files grew by through ftruncate (holes:
// apparent size nobody wrote).
func (g *Gen) Grown() int64 { return g.grown.Load() }

// Entries is the model's count of names.
func (g *Gen) Entries() int { return g.m.entries() }

// Bytes is the model's apparent size of all files.
func (g *Gen) Bytes() int64 { return g.m.bytes }

// History is every event so far.
func (g *Gen) History() []Event { return g.history }

// Stats is the per-kind count.
func (g *Gen) Stats() map[string]*KindStats { return g.stats }

// SetTarget sets the tree size the churn hovers around.
func (g *Gen) SetTarget(n int) { g.cfg.TargetEntries = max(n, 200) }

func (g *Gen) abs(rel string) string {
	if rel == "" {
		return g.cfg.Root
	}
	return g.cfg.Root + "/" + rel
}

// Step applies one op and returns its event.
func (g *Gen) Step() Event {
	g.seq++
	// A starved kind first.
	for i := range kinds {
		if g.seq-g.last[i] > starveAfter {
			g.last[i] = g.seq // do not retry it every step when it has no target
			if e, ok := g.try(i); ok {
				return e
			}
		}
	}
	for range 50 {
		if e, ok := g.try(g.pickKind()); ok {
			return e
		}
	}
	e, _ := g.try(0) // create always finds a place, but for pathological trees
	return e
}

func (g *Gen) try(k int) (Event, bool) {
	e := Event{Seq: g.seq, Kind: kinds[k].name}
	if !kinds[k].fn(g, &e) {
		return Event{}, false
	}
	e.At = time.Since(g.start)
	g.last[k] = g.seq
	st := g.stats[e.Kind]
	if e.Err == "" {
		st.Applied++
	} else {
		st.Skipped++
		st.Errs[e.Err]++
	}
	g.history = append(g.history, e)
	return e, true
}

func (g *Gen) pickKind() int {
	// The tree hovers around TargetEntries names and 60% of MaxBytes:
	// ops that add become rarer, and ops that remove likelier, as it
	// grows past them.
	r := float64(g.m.entries()) / float64(g.cfg.TargetEntries)
	growScale := min(1.5, max(0.03, 2-r))
	shrinkScale := r * r
	rb := float64(g.m.bytes) / (0.6 * float64(g.cfg.MaxBytes))
	bytesScale := min(1.5, max(0.05, 2-rb))
	if g.m.bytes > g.cfg.MaxBytes {
		bytesScale = 0.02
	}
	var total float64
	w := make([]float64, len(kinds))
	for i, k := range kinds {
		x := k.weight
		switch k.class {
		case grows:
			x *= growScale
		case shrinks:
			x *= shrinkScale
		}
		if k.bytes {
			x *= bytesScale
		}
		if rb > 1 && (k.name == "unlink" || k.name == "truncate_shrink") {
			x *= rb * rb
		}
		if k.name == "chown" && !g.cfg.Chown {
			x = 0
		}
		w[i] = x
		total += x
	}
	x := g.r.Float64() * total
	for i := range w {
		x -= w[i]
		if x < 0 {
			return i
		}
	}
	return 0
}

// ---- picking targets -------------------------------------------------

func (g *Gen) pickDir(allowRoot bool) *node {
	for range 12 {
		d := g.m.dirs[g.r.IntN(len(g.m.dirs))]
		if d == g.m.root && !allowRoot {
			continue
		}
		if d.chain && g.r.IntN(12) != 0 {
			continue
		}
		return d
	}
	if allowRoot {
		return g.m.root
	}
	return nil
}

func (g *Gen) pickFile() *node {
	if len(g.m.files) == 0 {
		return nil
	}
	return g.m.files[g.r.IntN(len(g.m.files))]
}

// pickFileSized prefers a file with data.
func (g *Gen) pickFileSized() *node {
	for range 6 {
		f := g.pickFile()
		if f != nil && f.ino.size > 0 {
			return f
		}
	}
	return nil
}

func (g *Gen) pickNonDir() *node {
	n := len(g.m.files) + len(g.m.others)
	if n == 0 {
		return nil
	}
	i := g.r.IntN(n)
	if i < len(g.m.files) {
		return g.m.files[i]
	}
	return g.m.others[i-len(g.m.files)]
}

func (g *Gen) pickAny(allowRoot bool) *node {
	n := len(g.m.dirs) + len(g.m.files) + len(g.m.others)
	i := g.r.IntN(n)
	switch {
	case i < len(g.m.dirs):
		d := g.m.dirs[i]
		if d == g.m.root && !allowRoot {
			return g.pickNonDir()
		}
		return d
	case i < len(g.m.dirs)+len(g.m.files):
		return g.m.files[i-len(g.m.dirs)]
	default:
		return g.m.others[i-len(g.m.dirs)-len(g.m.files)]
	}
}

func (g *Gen) pickEmptyDir() *node {
	for range 40 {
		d := g.m.dirs[g.r.IntN(len(g.m.dirs))]
		if d != g.m.root && len(d.children) == 0 {
			return d
		}
	}
	return nil
}

func (g *Gen) pickGroup() *inode {
	if len(g.m.groups) == 0 {
		return nil
	}
	return g.m.groups[g.r.IntN(len(g.m.groups))]
}

// fits reports whether a name in dir, with a subtree of suffix bytes
// below it, stays within MaxRel.
func (g *Gen) fits(dir *node, name string, suffix int) bool {
	l := dir.pathLen() + len(name) + suffix
	if dir.parent != nil {
		l++
	}
	return l <= g.cfg.MaxRel
}

// newName returns a name not in dir that fits with suffix bytes below
// it ("" when none does).
func (g *Gen) newName(dir *node, suffix int) string {
	for i := range 10 {
		var s string
		if i < 6 {
			s = genName(g.r)
		} else {
			s = plainName(g.r, 1, 8)
		}
		if !validName(s) || dir.children[s] != nil || (dir == g.m.root && s == ".georep") {
			continue
		}
		if g.fits(dir, s, suffix) {
			return s
		}
	}
	return ""
}

// ---- writing data ----------------------------------------------------

// fileSize: mostly small, some up to a few hundred KiB, a few MiB.
func (g *Gen) fileSize() int64 {
	if g.m.bytes > g.cfg.MaxBytes*8/10 {
		return g.r.Int64N(16 << 10)
	}
	p := g.r.IntN(100)
	switch {
	case p < 25:
		return g.r.Int64N(513)
	case p < 55:
		return 512 + g.r.Int64N(16<<10)
	case p < 85:
		return 16<<10 + g.r.Int64N(112<<10)
	case p < 97:
		return 128<<10 + g.r.Int64N(384<<10)
	default:
		return 1<<20 + g.r.Int64N(3<<20)
	}
}

// chunk returns n bytes of data, its first bytes stamped with the op.
func (g *Gen) chunk(n int64) []byte {
	if n > int64(len(g.pool)) {
		n = int64(len(g.pool))
	}
	off := g.r.Int64N(int64(len(g.pool)) - n + 1)
	b := g.pool[off : off+n]
	if n >= 8 {
		c := make([]byte, n)
		copy(c, b)
		binary.LittleEndian.PutUint64(c, uint64(g.seq)^g.cfg.Seed<<48)
		return c
	}
	return b
}

// pwrite writes n bytes at off (off < 0: at the current offset).
func (g *Gen) pwrite(fd int, off, n int64) (int64, error) {
	var done int64
	for done < n {
		c := g.chunk(min(n-done, 1<<20))
		var w int
		var err error
		if off < 0 {
			w, err = unix.Write(fd, c)
		} else {
			w, err = unix.Pwrite(fd, c, off+done)
		}
		if w > 0 {
			done += int64(w)
			g.written.Add(int64(w))
		}
		if err != nil {
			return done, err
		}
		if w == 0 {
			return done, unix.EIO
		}
	}
	return done, nil
}

func errName(err error) string {
	var en unix.Errno
	if errors.As(err, &en) {
		if s := unix.ErrnoName(en); s != "" {
			return s
		}
	}
	return err.Error()
}

func (g *Gen) fileMode() uint32 {
	return []uint32{0o644, 0o644, 0o644, 0o600, 0o755, 0o444, 0o640, 0o664}[g.r.IntN(8)]
}

// createFile makes a file of size bytes at dir/name; the model gets the
// file if it was created, with the bytes it got.
func (g *Gen) createFile(dir *node, name string, size int64, e *Event) *node {
	p := g.abs(join(dir.path(), name))
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, g.fileMode())
	if err != nil {
		e.Err = errName(err)
		return nil
	}
	n, err := g.pwrite(fd, 0, size)
	unix.Close(fd)
	f := g.m.add(dir, name, tFile, nil, n)
	e.IDs = append(e.IDs, f.objID())
	if err != nil {
		e.Err = errName(err)
	}
	return f
}

// ---- data ops ----------------------------------------------------------

func (g *Gen) opCreate(e *Event) bool {
	d := g.pickDir(true)
	name := g.newName(d, 0)
	if name == "" {
		return false
	}
	size := g.fileSize()
	e.Paths, e.Arg = []string{join(d.path(), name)}, size
	g.createFile(d, name, size, e)
	return true
}

func (g *Gen) opCreateSparse(e *Event) bool {
	d := g.pickDir(true)
	name := g.newName(d, 0)
	if name == "" {
		return false
	}
	rel := join(d.path(), name)
	size := 64<<10 + g.r.Int64N(4<<20)
	if g.r.IntN(10) == 0 {
		size = 4<<20 + g.r.Int64N(28<<20)
	}
	e.Paths, e.Arg = []string{rel}, size
	fd, err := unix.Open(g.abs(rel), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	if err != nil {
		e.Err = errName(err)
		return true
	}
	defer unix.Close(fd)
	f := g.m.add(d, name, tFile, nil, 0)
	e.IDs = []uint64{f.objID()}
	// Some data islands, the tail sometimes a hole (ftruncate), sometimes data.
	end := int64(0)
	for range 1 + g.r.IntN(4) {
		off := g.r.Int64N(size)
		if g.r.IntN(2) == 0 {
			off &^= 4095
		}
		n := min(1+g.r.Int64N(64<<10), size-off)
		if _, err := g.pwrite(fd, off, n); err != nil {
			e.Err = errName(err)
			break
		}
		end = max(end, off+n)
	}
	if e.Err == "" {
		if g.r.IntN(3) == 0 {
			if _, err := g.pwrite(fd, size-1, 1); err != nil {
				e.Err = errName(err)
			} else {
				end = size
			}
		} else if err := unix.Ftruncate(fd, size); err != nil {
			e.Err = errName(err)
		} else {
			g.grown.Add(size - end)
			end = size
		}
	}
	g.m.setSize(f.ino, end)
	return true
}

func (g *Gen) opOverwriteMid(e *Event) bool {
	f := g.pickFileSized()
	if f == nil {
		return false
	}
	off := g.r.Int64N(f.ino.size)
	n := 1 + g.r.Int64N(64<<10)
	e.Paths, e.IDs, e.Arg = []string{f.path()}, []uint64{f.objID()}, off
	fd, err := unix.Open(g.abs(f.path()), unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		e.Err = errName(err)
		return true
	}
	w, err := g.pwrite(fd, off, n)
	unix.Close(fd)
	g.m.setSize(f.ino, max(f.ino.size, off+w))
	if err != nil {
		e.Err = errName(err)
	}
	return true
}

// opOverwriteKeepMtime rewrites bytes in place without changing the size
// and puts the old mtime back: a quick check (size+mtime) cannot see it.
func (g *Gen) opOverwriteKeepMtime(e *Event) bool {
	f := g.pickFileSized()
	if f == nil {
		return false
	}
	p := g.abs(f.path())
	off := g.r.Int64N(f.ino.size)
	n := min(1+g.r.Int64N(4096), f.ino.size-off)
	e.Paths, e.IDs, e.Arg = []string{f.path()}, []uint64{f.objID()}, off
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		e.Err = errName(err)
		return true
	}
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		e.Err = errName(err)
		return true
	}
	_, err = g.pwrite(fd, off, n)
	unix.Close(fd)
	if err != nil {
		e.Err = errName(err)
		return true
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		e.Err = errName(err)
	}
	return true
}

func (g *Gen) opAppend(e *Event) bool {
	f := g.pickFile()
	if f == nil {
		return false
	}
	n := 1 + g.r.Int64N(128<<10)
	if g.r.IntN(50) == 0 {
		n = 1 << 20
	}
	e.Paths, e.IDs, e.Arg = []string{f.path()}, []uint64{f.objID()}, n
	fd, err := unix.Open(g.abs(f.path()), unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0)
	if err != nil {
		e.Err = errName(err)
		return true
	}
	w, err := g.pwrite(fd, -1, n)
	unix.Close(fd)
	g.m.setSize(f.ino, f.ino.size+w)
	if err != nil {
		e.Err = errName(err)
	}
	return true
}

// pickBig is pickFileSized, but the biggest of a few when the tree is
// near its byte bound.
func (g *Gen) pickBig() *node {
	f := g.pickFileSized()
	if g.m.bytes > g.cfg.MaxBytes*6/10 {
		for range 4 {
			if x := g.pickFileSized(); x != nil && (f == nil || x.ino.size > f.ino.size) {
				f = x
			}
		}
	}
	return f
}

func (g *Gen) opTruncShrink(e *Event) bool {
	f := g.pickBig()
	if f == nil {
		return false
	}
	size := g.r.Int64N(f.ino.size)
	e.Paths, e.IDs, e.Arg = []string{f.path()}, []uint64{f.objID()}, size
	if err := unix.Truncate(g.abs(f.path()), size); err != nil {
		e.Err = errName(err)
		return true
	}
	g.m.setSize(f.ino, size)
	return true
}

func (g *Gen) opTruncGrow(e *Event) bool {
	f := g.pickFile()
	if f == nil {
		return false
	}
	size := f.ino.size + 1 + g.r.Int64N(256<<10)
	if g.r.IntN(10) == 0 {
		size = f.ino.size + 1 + g.r.Int64N(4<<20)
	}
	e.Paths, e.IDs, e.Arg = []string{f.path()}, []uint64{f.objID()}, size
	if err := unix.Truncate(g.abs(f.path()), size); err != nil {
		e.Err = errName(err)
		return true
	}
	g.grown.Add(size - f.ino.size)
	g.m.setSize(f.ino, size)
	return true
}

func (g *Gen) opPunchHole(e *Event) bool {
	f := g.pickFileSized()
	if f == nil {
		return false
	}
	off := g.r.Int64N(f.ino.size)
	n := 1 + g.r.Int64N(256<<10)
	e.Paths, e.IDs, e.Arg = []string{f.path()}, []uint64{f.objID()}, off
	fd, err := unix.Open(g.abs(f.path()), unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		e.Err = errName(err)
		return true
	}
	err = unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	unix.Close(fd)
	if err != nil {
		e.Err = errName(err)
	}
	return true
}

// ---- renames -----------------------------------------------------------

// rename renames n to dir/name in the real tree and, if that worked, in
// the model (removing what it replaced, over).
func (g *Gen) rename(e *Event, n, dir *node, name string) bool {
	from := n.path()
	to := join(dir.path(), name)
	over := dir.children[name]
	if over == n {
		return true
	}
	if err := unix.Rename(g.abs(from), g.abs(to)); err != nil {
		e.Err = errName(err)
		return false
	}
	if over != nil {
		if over.typ == tFile && n.typ == tFile && over.ino == n.ino {
			// Two links of one inode: rename does nothing.
			return true
		}
		g.m.remove(over)
	}
	g.m.move(n, dir, name)
	e.Moves = append(e.Moves, move{from, to})
	return true
}

func (g *Gen) opRenameFileSameDir(e *Event) bool {
	n := g.pickNonDir()
	if n == nil {
		return false
	}
	name := g.newName(n.parent, 0)
	if name == "" {
		return false
	}
	e.Paths, e.IDs = []string{n.path(), join(n.parent.path(), name)}, []uint64{n.objID()}
	g.rename(e, n, n.parent, name)
	return true
}

func (g *Gen) opRenameFileCrossDir(e *Event) bool {
	n := g.pickNonDir()
	if n == nil {
		return false
	}
	var d *node
	for range 6 {
		d = g.pickDir(true)
		if d != n.parent && d.depth() != n.parent.depth() {
			break
		}
	}
	if d == n.parent {
		return false
	}
	name := g.newName(d, 0)
	if name == "" {
		return false
	}
	e.Paths, e.IDs = []string{n.path(), join(d.path(), name)}, []uint64{n.objID()}
	g.rename(e, n, d, name)
	return true
}

func (g *Gen) opRenameFileOver(e *Event) bool {
	a, b := g.pickNonDir(), g.pickNonDir()
	if a == nil || a == b || (a.typ == tFile && b.typ == tFile && a.ino == b.ino) {
		return false
	}
	e.Paths, e.IDs = []string{a.path(), b.path()}, []uint64{a.objID(), b.objID()}
	g.rename(e, a, b.parent, b.name)
	return true
}

func (g *Gen) opRenameDirSameDir(e *Event) bool {
	d := g.pickDir(false)
	if d == nil {
		return false
	}
	name := g.newName(d.parent, d.suffix())
	if name == "" {
		return false
	}
	e.Paths, e.IDs = []string{d.path(), join(d.parent.path(), name)}, []uint64{d.objID()}
	g.rename(e, d, d.parent, name)
	return true
}

// dirDepthMax bounds the depth of directories outside deep chains: no
// directory is made or moved where it (or its subtree) would be deeper.
// Without it, moves into chains and into siblings' subtrees make the whole
// tree a few ever deeper strands.
const dirDepthMax = 24

// canHold reports whether directory d may move into p: not into a chain,
// a chain's piece only near the top, and within dirDepthMax.
func (g *Gen) canHold(p, d *node) bool {
	if p.chain {
		return false
	}
	if d.chain {
		return p.depth() <= 2
	}
	return p.depth()+1+d.height() <= dirDepthMax
}

// destDir picks a directory d could move into (not within d).
func (g *Gen) destDir(d *node) *node {
	var best *node
	for range 8 {
		p := g.pickDir(true)
		if p.within(d) || p == d.parent || !g.canHold(p, d) {
			continue
		}
		best = p
		if p.depth() != d.parent.depth() {
			break
		}
	}
	return best
}

func (g *Gen) opRenameDirCrossDir(e *Event) bool {
	d := g.pickDir(false)
	if d == nil {
		return false
	}
	p := g.destDir(d)
	if p == nil {
		return false
	}
	name := g.newName(p, d.suffix())
	if name == "" {
		return false
	}
	e.Paths, e.IDs = []string{d.path(), join(p.path(), name)}, []uint64{d.objID(), p.objID()}
	g.rename(e, d, p, name)
	return true
}

func (g *Gen) opRenameDirIntoSibling(e *Event) bool {
	var d *node
	var sibs []*node
	for range 10 {
		d = g.pickDir(false)
		if d == nil {
			return false
		}
		sibs = sibs[:0]
		for _, c := range d.parent.children {
			if c.typ == tDir && c != d {
				sibs = append(sibs, c)
			}
		}
		if len(sibs) > 0 {
			break
		}
	}
	if len(sibs) == 0 {
		return false
	}
	sort.Slice(sibs, func(i, j int) bool { return sibs[i].name < sibs[j].name })
	t := sibs[g.r.IntN(len(sibs))]
	// Somewhere in the sibling's subtree.
	for range g.r.IntN(4) {
		var sub []*node
		for _, c := range t.children {
			if c.typ == tDir && !c.chain {
				sub = append(sub, c)
			}
		}
		if len(sub) == 0 {
			break
		}
		sort.Slice(sub, func(i, j int) bool { return sub[i].name < sub[j].name })
		t = sub[g.r.IntN(len(sub))]
	}
	if !g.canHold(t, d) {
		return false
	}
	name := g.newName(t, d.suffix())
	if name == "" {
		return false
	}
	e.Paths, e.IDs = []string{d.path(), join(t.path(), name)}, []uint64{d.objID(), t.objID()}
	g.rename(e, d, t, name)
	return true
}

func (g *Gen) opRenameDirOverEmpty(e *Event) bool {
	d, t := g.pickDir(false), g.pickEmptyDir()
	if d == nil || t == nil || d == t || t.within(d) || !g.fits(t.parent, t.name, d.suffix()) || t.chain || !g.canHold(t.parent, d) {
		return false
	}
	e.Paths, e.IDs = []string{d.path(), t.path()}, []uint64{d.objID(), t.objID()}
	g.rename(e, d, t.parent, t.name)
	return true
}

// opRenameAncestorDuringWrite writes to a file deep down, renames one of
// its ancestors (the file open all along), and writes again through the
// open descriptor and through the new path.
func (g *Gen) opRenameAncestorDuringWrite(e *Event) bool {
	var f *node
	for range 30 {
		x := g.pickFile()
		if x != nil && x.depth() >= 3 {
			f = x
			break
		}
	}
	created := false
	if f == nil {
		var d *node
		for range 30 {
			x := g.pickDir(false)
			if x != nil && x.depth() >= 2 {
				d = x
				break
			}
		}
		if d == nil {
			return false
		}
		name := g.newName(d, 0)
		if name == "" {
			return false
		}
		created = true
		f = g.createFile(d, name, 0, e)
		if f == nil {
			e.Paths = []string{join(d.path(), name)}
			return true
		}
	}
	var anc []*node
	for x := f.parent; x.parent != nil; x = x.parent {
		anc = append(anc, x)
	}
	a := anc[g.r.IntN(len(anc))]
	dest := a.parent
	if g.r.IntN(2) == 0 {
		if p := g.destDir(a); p != nil {
			dest = p
		}
	}
	name := g.newName(dest, a.suffix())
	if name == "" {
		name = g.newName(a.parent, a.suffix())
		dest = a.parent
		if name == "" {
			if created {
				e.Paths, e.Err = []string{f.path()}, "NOROOM"
				return true
			}
			return false
		}
	}
	fOld := f.path()
	e.Paths = []string{fOld, a.path(), join(dest.path(), name)}
	e.IDs = append(e.IDs, f.objID(), a.objID())
	fd, err := unix.Open(g.abs(fOld), unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		e.Err = errName(err)
		return true
	}
	defer unix.Close(fd)
	n := 1 + g.r.Int64N(32<<10)
	off := g.r.Int64N(f.ino.size + 1)
	w, err := g.pwrite(fd, off, n)
	g.m.setSize(f.ino, max(f.ino.size, off+w))
	if err != nil {
		e.Err = errName(err)
		return true
	}
	if !g.rename(e, a, dest, name) {
		return true
	}
	off = f.ino.size
	w, err = g.pwrite(fd, off, n)
	g.m.setSize(f.ino, max(f.ino.size, off+w))
	if err != nil {
		e.Err = errName(err)
		return true
	}
	e.Paths = append(e.Paths, f.path())
	fd2, err := unix.Open(g.abs(f.path()), unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0)
	if err != nil {
		e.Err = errName(err)
		return true
	}
	w, err = g.pwrite(fd2, -1, 1+g.r.Int64N(8<<10))
	unix.Close(fd2)
	g.m.setSize(f.ino, f.ino.size+w)
	if err != nil {
		e.Err = errName(err)
	}
	return true
}

// opExchange swaps two entries atomically (renameat2 RENAME_EXCHANGE).
func (g *Gen) opExchange(e *Event) bool {
	a, b := g.pickAny(false), g.pickAny(false)
	if a == nil || b == nil || a == b || a.within(b) || b.within(a) {
		return false
	}
	if a.typ == tFile && b.typ == tFile && a.ino == b.ino {
		return false
	}
	sa, sb := 0, 0
	if a.typ == tDir {
		sa = a.suffix()
		if !g.canHold(b.parent, a) {
			return false
		}
	}
	if b.typ == tDir {
		sb = b.suffix()
		if !g.canHold(a.parent, b) {
			return false
		}
	}
	if !g.fits(b.parent, b.name, sa) || !g.fits(a.parent, a.name, sb) {
		return false
	}
	pa, pb := a.path(), b.path()
	e.Paths, e.IDs = []string{pa, pb}, []uint64{a.objID(), b.objID()}
	if err := unix.Renameat2(unix.AT_FDCWD, g.abs(pa), unix.AT_FDCWD, g.abs(pb), unix.RENAME_EXCHANGE); err != nil {
		e.Err = errName(err)
		return true
	}
	ap, an, bp, bn := a.parent, a.name, b.parent, b.name
	delete(ap.children, an)
	delete(bp.children, bn)
	a.parent, a.name, b.parent, b.name = bp, bn, ap, an
	ap.children[an], bp.children[bn] = b, a
	e.Moves = append(e.Moves, move{pa, pb}, move{pb, pa})
	return true
}

// ---- hardlinks -----------------------------------------------------------

func (g *Gen) opLink(e *Event) bool {
	f := g.pickFile()
	if f == nil {
		return false
	}
	d := g.pickDir(true)
	name := g.newName(d, 0)
	if name == "" {
		return false
	}
	to := join(d.path(), name)
	e.Paths, e.IDs = []string{f.path(), to}, []uint64{f.objID()}
	if err := unix.Link(g.abs(f.path()), g.abs(to)); err != nil {
		e.Err = errName(err)
		return true
	}
	g.m.add(d, name, tFile, f.ino, 0)
	return true
}

// opRenameLinkSameGroup renames one link of an inode over another link
// of the same inode: POSIX says rename does nothing then.
func (g *Gen) opRenameLinkSameGroup(e *Event) bool {
	ino := g.pickGroup()
	if ino == nil {
		return false
	}
	i := g.r.IntN(len(ino.links))
	j := (i + 1 + g.r.IntN(len(ino.links)-1)) % len(ino.links)
	a, b := ino.links[i], ino.links[j]
	e.Paths, e.IDs, e.Note = []string{a.path(), b.path()}, []uint64{ino.id}, "same inode: a no-op"
	g.rename(e, a, b.parent, b.name)
	return true
}

func (g *Gen) opRenameLinkOtherGroup(e *Event) bool {
	ino := g.pickGroup()
	if ino == nil {
		return false
	}
	a := ino.links[g.r.IntN(len(ino.links))]
	var b *node
	for range 10 {
		// Prefer another hardlinked inode's link.
		if o := g.pickGroup(); o != nil && o != ino && g.r.IntN(2) == 0 {
			b = o.links[g.r.IntN(len(o.links))]
			break
		}
		if x := g.pickFile(); x != nil && x.ino != ino {
			b = x
			break
		}
	}
	if b == nil {
		return false
	}
	e.Paths, e.IDs = []string{a.path(), b.path()}, []uint64{ino.id, b.ino.id}
	g.rename(e, a, b.parent, b.name)
	return true
}

func (g *Gen) opUnlinkLink(e *Event) bool {
	ino := g.pickGroup()
	if ino == nil {
		return false
	}
	a := ino.links[g.r.IntN(len(ino.links))]
	e.Paths, e.IDs = []string{a.path()}, []uint64{ino.id}
	if err := unix.Unlink(g.abs(a.path())); err != nil {
		e.Err = errName(err)
		return true
	}
	g.m.remove(a)
	return true
}

// opTmpfileLink makes an anonymous file (O_TMPFILE), writes it and links
// it into the tree: a file that appears with its data already there.
func (g *Gen) opTmpfileLink(e *Event) bool {
	d := g.pickDir(true)
	name := g.newName(d, 0)
	if name == "" {
		return false
	}
	rel := join(d.path(), name)
	size := g.fileSize()
	e.Paths, e.Arg = []string{rel}, size
	fd, err := unix.Open(g.abs(d.path()), unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, g.fileMode())
	if err != nil {
		e.Err = errName(err)
		return true
	}
	defer unix.Close(fd)
	w, err := g.pwrite(fd, 0, size)
	if err != nil {
		e.Err = errName(err)
		return true
	}
	if err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, g.abs(rel), unix.AT_SYMLINK_FOLLOW); err != nil {
		e.Err = errName(err)
		return true
	}
	f := g.m.add(d, name, tFile, nil, w)
	e.IDs = []uint64{f.objID()}
	return true
}

// ---- special files -------------------------------------------------------

func (g *Gen) symlink(e *Event, target func(d *node) string) bool {
	d := g.pickDir(true)
	name := g.newName(d, 0)
	if name == "" {
		return false
	}
	rel := join(d.path(), name)
	t := target(d)
	if rest, ok := strings.CutPrefix(t, g.cfg.Root); ok {
		e.Paths, e.Note = []string{rel}, fmt.Sprintf("-> $ROOT%q", rest)
	} else {
		e.Paths, e.Note = []string{rel}, fmt.Sprintf("-> %q", t)
	}
	if err := unix.Symlink(t, g.abs(rel)); err != nil {
		e.Err = errName(err)
		return true
	}
	n := g.m.add(d, name, tSymlink, nil, 0)
	e.IDs = []uint64{n.objID()}
	return true
}

func (g *Gen) opSymlinkRel(e *Event) bool {
	return g.symlink(e, func(d *node) string {
		t := g.pickAny(false)
		up := ""
		for range d.depth() {
			up += "../"
		}
		if t == nil {
			return up + "."
		}
		s := up + t.path()
		if len(s) > 4095 {
			return "."
		}
		return s
	})
}

func (g *Gen) opSymlinkAbs(e *Event) bool {
	return g.symlink(e, func(d *node) string {
		s := g.cfg.Root
		if t := g.pickAny(false); t != nil {
			s = g.abs(t.path())
		}
		if len(s) > 4095 {
			return g.cfg.Root
		}
		return s
	})
}

func (g *Gen) opSymlinkDangling(e *Event) bool {
	return g.symlink(e, func(d *node) string {
		switch g.r.IntN(3) {
		case 0:
			return "does/not/exist/" + plainName(g.r, 3, 8)
		case 1:
			return "/nonexistent-georep-soak/" + plainName(g.r, 3, 8)
		default:
			return "../../../../../../../../../../nowhere"
		}
	})
}

func (g *Gen) opSymlinkOdd(e *Event) bool {
	return g.symlink(e, func(d *node) string { return symlinkOdd(g.r) })
}

func (g *Gen) special(e *Event, t ntype) bool {
	d := g.pickDir(true)
	name := g.newName(d, 0)
	if name == "" {
		return false
	}
	rel := join(d.path(), name)
	e.Paths = []string{rel}
	var err error
	if t == tFifo {
		err = unix.Mkfifo(g.abs(rel), []uint32{0o644, 0o600, 0o666}[g.r.IntN(3)])
	} else {
		err = unix.Mknod(g.abs(rel), unix.S_IFSOCK|0o755, 0)
	}
	if err != nil {
		e.Err = errName(err)
		return true
	}
	n := g.m.add(d, name, t, nil, 0)
	e.IDs = []uint64{n.objID()}
	return true
}

func (g *Gen) opFifo(e *Event) bool { return g.special(e, tFifo) }
func (g *Gen) opSock(e *Event) bool { return g.special(e, tSock) }

// ---- metadata -------------------------------------------------------------

func (g *Gen) chmod(e *Event, n *node, mode uint32) {
	e.Paths, e.IDs, e.Arg = []string{n.path()}, []uint64{n.objID()}, int64(mode)
	if err := unix.Chmod(g.abs(n.path()), mode); err != nil {
		e.Err = errName(err)
	}
}

func (g *Gen) opChmod(e *Event) bool {
	n := g.pickAny(false)
	if n == nil || n.typ == tSymlink {
		return false
	}
	modes := []uint32{0o644, 0o600, 0o755, 0o700, 0o444, 0o000, 0o777, 0o1777, 0o640, 0o711}
	mode := modes[g.r.IntN(len(modes))]
	if g.r.IntN(4) == 0 {
		mode = uint32(g.r.IntN(0o10000))
	}
	if n.typ == tDir {
		mode |= 0o700 // keep directories workable for the owner
	}
	g.chmod(e, n, mode)
	return true
}

func (g *Gen) opChmodSetgidDir(e *Event) bool {
	d := g.pickDir(false)
	if d == nil {
		return false
	}
	modes := []uint32{0o2755, 0o2775, 0o2770, 0o3777, 0o2700}
	g.chmod(e, d, modes[g.r.IntN(len(modes))])
	return true
}

func (g *Gen) opChmodSetuidFile(e *Event) bool {
	f := g.pickFile()
	if f == nil {
		return false
	}
	modes := []uint32{0o4755, 0o6755, 0o4711, 0o4644, 0o2755, 0o6711}
	g.chmod(e, f, modes[g.r.IntN(len(modes))])
	return true
}

func (g *Gen) randID() int {
	switch g.r.IntN(6) {
	case 0:
		return 0
	case 1:
		return 65534
	case 2:
		return 1000 + g.r.IntN(100)
	case 3:
		return 100000 + g.r.IntN(1<<20)
	case 4:
		return 1<<31 - 2 - g.r.IntN(1000)
	default:
		return g.r.IntN(70000)
	}
}

func (g *Gen) opChown(e *Event) bool {
	n := g.pickAny(false)
	if n == nil {
		return false
	}
	uid, gid := g.randID(), g.randID()
	e.Paths, e.IDs, e.Note = []string{n.path()}, []uint64{n.objID()}, fmt.Sprintf("%d:%d", uid, gid)
	if err := unix.Lchown(g.abs(n.path()), uid, gid); err != nil {
		e.Err = errName(err)
	}
	return true
}

// timeBase is the "now" of random times (fixed: a seed's ops must not depend on the clock).
const timeBase = 1767225600 // 2026-01-01

func (g *Gen) randTime() unix.Timespec {
	ns := g.r.Int64N(1e9)
	var sec int64
	switch g.r.IntN(8) {
	case 0:
		sec = 0
	case 1:
		sec = -g.r.Int64N(1 << 31) // before 1970
	case 2:
		sec = 4102444800 + g.r.Int64N(1<<30) // after 2100
	case 3:
		ns = 0
		sec = timeBase - g.r.Int64N(1<<25)
	default:
		sec = timeBase - g.r.Int64N(1<<28)
	}
	return unix.Timespec{Sec: sec, Nsec: ns}
}

func (g *Gen) opUtimes(e *Event) bool {
	n := g.pickAny(g.r.IntN(20) == 0)
	if n == nil {
		return false
	}
	ts := []unix.Timespec{g.randTime(), g.randTime()}
	e.Paths, e.IDs, e.Note = []string{n.path()}, []uint64{n.objID()}, fmt.Sprintf("mtime %d.%09d", ts[1].Sec, ts[1].Nsec)
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, g.abs(n.path()), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		e.Err = errName(err)
	}
	return true
}

// pickXattrTarget picks a file or directory (the root sometimes).
func (g *Gen) pickXattrTarget() *node {
	for range 10 {
		n := g.pickAny(g.r.IntN(30) == 0)
		if n != nil && (n.typ == tFile || n.typ == tDir) {
			return n
		}
	}
	return nil
}

// randomACL is a valid POSIX ACL in the kernel's xattr form (what setfacl
// writes): the owner, 0-3 named users, the owning group, 0-2 named groups,
// the mask when any is named, and others; named ids ascending and unique.
func (g *Gen) randomACL() []byte {
	const (
		userObj, user, groupObj, group, mask, other = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
		undefined                                   = 0xffffffff
	)
	b := []byte{2, 0, 0, 0}
	add := func(tag uint16, perm uint16, id uint32) {
		b = append(b, byte(tag), byte(tag>>8), byte(perm), byte(perm>>8), byte(id), byte(id>>8), byte(id>>16), byte(id>>24))
	}
	perm := func() uint16 { return uint16(g.r.IntN(8)) }
	ids := func(n int) []uint32 {
		set := map[uint32]bool{}
		for len(set) < n {
			set[uint32(1+g.r.IntN(70000))] = true
		}
		out := make([]uint32, 0, n)
		for id := range set {
			out = append(out, id)
		}
		slices.Sort(out)
		return out
	}
	users, groups := ids(g.r.IntN(4)), ids(g.r.IntN(3))
	add(userObj, perm(), undefined)
	for _, id := range users {
		add(user, perm(), id)
	}
	add(groupObj, perm(), undefined)
	for _, id := range groups {
		add(group, perm(), id)
	}
	if len(users)+len(groups) > 0 {
		add(mask, perm(), undefined)
	}
	add(other, perm(), undefined)
	return b
}

// opACLSet sets (or, one time in four, removes) a file's or directory's
// access ACL, as setfacl does: the mode's permission bits follow it.
func (g *Gen) opACLSet(e *Event) bool {
	n := g.pickXattrTarget()
	if n == nil {
		return false
	}
	return g.setACL(e, n, "system.posix_acl_access")
}

// opACLDefault sets (or removes) a directory's default ACL, which what is
// made in it afterwards inherits.
func (g *Gen) opACLDefault(e *Event) bool {
	d := g.pickDir(true)
	if d == nil {
		return false
	}
	return g.setACL(e, d, "system.posix_acl_default")
}

func (g *Gen) setACL(e *Event, n *node, name string) bool {
	e.Paths, e.IDs = []string{n.path()}, []uint64{n.objID()}
	var err error
	if g.r.IntN(4) == 0 {
		e.Note = "remove " + name
		err = unix.Lremovexattr(g.abs(n.path()), name)
		if errors.Is(err, unix.ENODATA) {
			err = nil
		}
	} else {
		v := g.randomACL()
		e.Note = fmt.Sprintf("%s (%d entries)", name, (len(v)-4)/8)
		err = unix.Lsetxattr(g.abs(n.path()), name, v, 0)
	}
	if err != nil {
		e.Err = errName(err)
	}
	return true
}

func (g *Gen) opXattrSet(e *Event) bool {
	n := g.pickXattrTarget()
	if n == nil {
		return false
	}
	name := xattrName(g.r)
	var val []byte
	switch g.r.IntN(6) {
	case 0:
		val = []byte{}
	case 1:
		val = g.chunk(1 + g.r.Int64N(2000))
	default:
		val = g.chunk(g.r.Int64N(100))
	}
	e.Paths, e.IDs, e.Note = []string{n.path()}, []uint64{n.objID()}, fmt.Sprintf("%q (%d bytes)", name, len(val))
	if err := unix.Lsetxattr(g.abs(n.path()), name, val, 0); err != nil {
		e.Err = errName(err)
		return true
	}
	n.holder()[name] = true
	return true
}

func (g *Gen) opXattrRemove(e *Event) bool {
	var n *node
	for range 40 {
		x := g.pickXattrTarget()
		if x != nil && len(x.holder()) > 0 {
			n = x
			break
		}
	}
	if n == nil {
		return false
	}
	h := n.holder()
	names := make([]string, 0, len(h))
	for x := range h {
		names = append(names, x)
	}
	sort.Strings(names)
	name := names[g.r.IntN(len(names))]
	e.Paths, e.IDs, e.Note = []string{n.path()}, []uint64{n.objID()}, fmt.Sprintf("%q", name)
	if err := unix.Lremovexattr(g.abs(n.path()), name); err != nil {
		e.Err = errName(err)
		return true
	}
	delete(h, name)
	return true
}

// ---- removals and directories ------------------------------------------

func (g *Gen) opUnlink(e *Event) bool {
	n := g.pickNonDir()
	if g.m.bytes > g.cfg.MaxBytes*6/10 && g.r.IntN(2) == 0 {
		if f := g.pickBig(); f != nil {
			n = f
		}
	}
	if n == nil {
		return false
	}
	e.Paths, e.IDs = []string{n.path()}, []uint64{n.objID()}
	if err := unix.Unlink(g.abs(n.path())); err != nil {
		e.Err = errName(err)
		return true
	}
	g.m.remove(n)
	return true
}

func (g *Gen) rmrf(e *Event, d *node) {
	e.Paths, e.IDs, e.Arg = []string{d.path()}, []uint64{d.objID()}, int64(d.size())
	if err := os.RemoveAll(g.abs(d.path())); err != nil {
		e.Err = errName(err)
		// Whatever is left is modelled again below d's parent.
		g.resync(d)
		return
	}
	g.m.remove(d)
}

// resync replaces d's subtree in the model with what is on disk.
func (g *Gen) resync(d *node) {
	parent, name := d.parent, d.name
	g.m.remove(d)
	sub, err := scanModel(g.abs(parent.path()))
	if err != nil {
		return
	}
	n := sub.root.children[name]
	if n == nil {
		return
	}
	var copyIn func(dst *node, src *node)
	copyIn = func(dst *node, src *node) {
		x := g.m.add(dst, src.name, src.typ, nil, 0)
		if src.typ == tFile {
			g.m.setSize(x.ino, src.ino.size)
		}
		for _, c := range src.children {
			copyIn(x, c)
		}
	}
	copyIn(parent, n)
}

func (g *Gen) opRmRf(e *Event) bool {
	d := g.pickDir(false)
	if d == nil {
		return false
	}
	limit := max(60, g.cfg.TargetEntries/25)
	for range 12 {
		if d.size() <= limit {
			break
		}
		var sub []*node
		for _, c := range d.children {
			if c.typ == tDir {
				sub = append(sub, c)
			}
		}
		if len(sub) == 0 {
			return false
		}
		sort.Slice(sub, func(i, j int) bool { return sub[i].name < sub[j].name })
		d = sub[g.r.IntN(len(sub))]
	}
	if d.size() > limit {
		return false
	}
	g.rmrf(e, d)
	return true
}

func (g *Gen) dirMode() uint32 {
	return []uint32{0o755, 0o755, 0o755, 0o700, 0o775, 0o2755, 0o1777}[g.r.IntN(7)]
}

func (g *Gen) opMkdir(e *Event) bool {
	d := g.pickDir(true)
	if !d.chain && d.depth() >= dirDepthMax {
		return false
	}
	name := g.newName(d, 0)
	if name == "" {
		return false
	}
	rel := join(d.path(), name)
	e.Paths = []string{rel}
	if err := unix.Mkdir(g.abs(rel), g.dirMode()); err != nil {
		e.Err = errName(err)
		return true
	}
	n := g.m.add(d, name, tDir, nil, 0)
	e.IDs = []uint64{n.objID()}
	return true
}

// mkdirChain makes count new directories, each in the last, with names
// from name; it returns the first and the last made.
func (g *Gen) mkdirChain(e *Event, d *node, count int, name func() string, chain bool) (first, last *node) {
	last = d
	for range count {
		var s string
		for range 5 {
			s = name()
			if validName(s) && last.children[s] == nil && !(last == g.m.root && s == ".georep") && g.fits(last, s, 0) {
				break
			}
			s = ""
		}
		if s == "" {
			break
		}
		if err := unix.Mkdir(g.abs(join(last.path(), s)), 0o755); err != nil {
			e.Err = errName(err)
			break
		}
		last = g.m.add(last, s, tDir, nil, 0)
		last.chain = chain
		if first == nil {
			first = last
		}
	}
	return first, last
}

func (g *Gen) opMkdirP(e *Event) bool {
	d := g.pickDir(true)
	n := min(2+g.r.IntN(5), dirDepthMax-d.depth())
	if d.chain || n < 2 {
		return false
	}
	first, last := g.mkdirChain(e, d, n, func() string { return genName(g.r) }, false)
	if first == nil && e.Err == "" {
		return false
	}
	e.Paths = []string{join(d.path(), "…")}
	if first != nil {
		e.Paths = []string{first.path(), last.path()}
		e.IDs = []uint64{first.objID()}
	}
	return true
}

func (g *Gen) opRmdir(e *Event) bool {
	d := g.pickEmptyDir()
	if d == nil {
		return false
	}
	e.Paths, e.IDs = []string{d.path()}, []uint64{d.objID()}
	if err := unix.Rmdir(g.abs(d.path())); err != nil {
		e.Err = errName(err)
		return true
	}
	g.m.remove(d)
	return true
}

// opDeepChain makes a chain of 100-200 directories (shorter if the path
// would pass MaxRel), sometimes with a file and a symlink at the bottom.
func (g *Gen) opDeepChain(e *Event) bool {
	live := g.m.chains[:0]
	for _, c := range g.m.chains {
		if !c.dead {
			live = append(live, c)
		}
	}
	g.m.chains = live
	if len(live) >= 2 {
		return false
	}
	var d *node
	for range 20 {
		x := g.pickDir(true)
		if x != nil && !x.chain && x.depth() <= 2 {
			d = x
			break
		}
	}
	if d == nil {
		d = g.m.root
	}
	want := 100 + g.r.IntN(101)
	name := func() string { return shortName(g.r) }
	if g.r.IntN(2) == 0 {
		// Longer names: the chain ends where the next name would pass
		// MaxRel, so its bottom is a few bytes short of PATH_MAX.
		want = 200
		name = func() string {
			if g.r.IntN(4) == 0 {
				return shortName(g.r)
			}
			return plainName(g.r, 20, 40)
		}
	}
	first, last := g.mkdirChain(e, d, want, name, true)
	if first == nil {
		if e.Err == "" {
			return false
		}
		e.Paths = []string{d.path()}
		return true
	}
	g.m.chains = append(g.m.chains, first)
	e.Paths, e.IDs, e.Arg = []string{first.path(), last.path()}, []uint64{first.objID()}, int64(last.depth()-d.depth())
	if e.Err == "" && g.r.IntN(2) == 0 {
		if name := g.newName(last, 0); name != "" {
			e.Paths = append(e.Paths, join(last.path(), name))
			g.createFile(last, name, g.r.Int64N(8<<10), e)
		}
	}
	return true
}

func (g *Gen) opRmRfChain(e *Event) bool {
	var live []*node
	for _, c := range g.m.chains {
		if !c.dead {
			live = append(live, c)
		}
	}
	g.m.chains = live
	if len(live) == 0 {
		return false
	}
	i := g.r.IntN(len(live))
	c := live[i]
	g.m.chains = append(live[:i:i], live[i+1:]...)
	// Renames may have moved big directories into the chain: then only
	// its lower part goes, from where the subtree is small enough.
	limit := 250 + max(60, g.cfg.TargetEntries/25)
	for c.size() > limit {
		var next *node
		for _, x := range c.children {
			if x.chain && x.typ == tDir && (next == nil || x.name < next.name) {
				next = x
			}
		}
		if next == nil {
			return false // nothing small enough: the chain is simply forgotten
		}
		c = next
	}
	g.rmrf(e, c)
	return true
}

// ---- names reused at once ----------------------------------------------------

func (g *Gen) opReuseUnlinkCreate(e *Event) bool {
	n := g.pickNonDir()
	if n == nil {
		return false
	}
	d, name, rel := n.parent, n.name, n.path()
	e.Paths, e.IDs = []string{rel}, []uint64{n.objID()}
	if err := unix.Unlink(g.abs(rel)); err != nil {
		e.Err = errName(err)
		return true
	}
	g.m.remove(n)
	g.createFile(d, name, g.fileSize(), e)
	return true
}

func (g *Gen) opReuseRenameCreate(e *Event) bool {
	a, b := g.pickNonDir(), g.pickNonDir()
	if a == nil || a == b || (a.typ == tFile && b.typ == tFile && a.ino == b.ino) {
		return false
	}
	d, name := a.parent, a.name
	e.Paths, e.IDs = []string{a.path(), b.path()}, []uint64{a.objID(), b.objID()}
	if !g.rename(e, a, b.parent, b.name) {
		return true
	}
	g.createFile(d, name, g.fileSize(), e)
	return true
}

func (g *Gen) opReuseRmdirMkdir(e *Event) bool {
	d := g.pickEmptyDir()
	if d == nil {
		return false
	}
	parent, name, rel := d.parent, d.name, d.path()
	e.Paths, e.IDs = []string{rel}, []uint64{d.objID()}
	if err := unix.Rmdir(g.abs(rel)); err != nil {
		e.Err = errName(err)
		return true
	}
	g.m.remove(d)
	if err := unix.Mkdir(g.abs(rel), g.dirMode()); err != nil {
		e.Err = errName(err)
		return true
	}
	n := g.m.add(parent, name, tDir, nil, 0)
	e.IDs = append(e.IDs, n.objID())
	return true
}

// ---- the initial tree ---------------------------------------------------

// Populate builds the initial tree: about files/25 nested directories,
// files regular files of mixed sizes, and a few hardlinks, symlinks,
// FIFOs and xattrs. Its events are in the history, kind "init_*".
func (g *Gen) Populate(files int) error {
	record := func(kind string, fn func(*Gen, *Event) bool) error {
		g.seq++
		e := Event{Seq: g.seq, Kind: kind}
		if !fn(g, &e) {
			return nil
		}
		e.At = time.Since(g.start)
		g.history = append(g.history, e)
		if e.Err != "" {
			return fmt.Errorf("populate: %s %q: %s", kind, e.Paths, e.Err)
		}
		return nil
	}
	dirs := files/25 + 1
	for range dirs {
		err := record("init_mkdir", func(g *Gen, e *Event) bool {
			var d *node
			for range 10 {
				d = g.pickDir(true)
				if d.depth() < 6 {
					break
				}
			}
			name := g.newName(d, 0)
			if name == "" {
				return false
			}
			rel := join(d.path(), name)
			e.Paths = []string{rel}
			if err := unix.Mkdir(g.abs(rel), 0o755); err != nil {
				e.Err = errName(err)
				return true
			}
			g.m.add(d, name, tDir, nil, 0)
			return true
		})
		if err != nil {
			return err
		}
	}
	for range files {
		if err := record("init_create", (*Gen).opCreate); err != nil {
			return err
		}
	}
	extras := []struct {
		kind string
		n    int
		fn   func(*Gen, *Event) bool
	}{
		{"init_link", files / 50, (*Gen).opLink},
		{"init_symlink", files / 100, (*Gen).opSymlinkRel},
		{"init_symlink", files / 200, (*Gen).opSymlinkDangling},
		{"init_fifo", files/500 + 1, (*Gen).opFifo},
		{"init_xattr", files / 50, (*Gen).opXattrSet},
		{"init_chmod", files / 50, (*Gen).opChmod},
	}
	for _, x := range extras {
		for range x.n {
			if err := record(x.kind, x.fn); err != nil {
				return err
			}
		}
	}
	if g.cfg.TargetEntries < g.m.entries() {
		g.cfg.TargetEntries = g.m.entries()
	}
	return nil
}
