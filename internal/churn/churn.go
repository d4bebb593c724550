// Package churn mutates a directory tree at random, for convergence tests of
// live replication: it plays a busy user of the master tree (creating,
// writing, truncating, renaming files and whole directories, linking,
// deleting trees, changing modes, owners, times and user xattrs, under
// awkward names) while the replicator runs, and the test then checks that
// the replica caught up exactly.
//
// A Churn is deterministic: two Churns with the same Options.Seed applied
// to identical trees make identical operations and leave identical trees
// (apart from the times the kernel stamps: an operation's mtime is "now"
// unless the operation is a utime). It assumes it is the only process
// changing names in the tree; a replicator adding its own xattrs
// (user.georep.*, trusted.georep.*) is fine, and those are never touched.
//
// Operations that fail because of what earlier operations did (a name
// taken, a directory not empty) are skipped and reported as such, not as
// errors. The tree stays of moderate size (Options.MaxFiles, MaxDirs,
// MaxDepth), every directory keeps at least u+rwx so that it can be
// removed, and a top-level entry named Reserved (".georep", the slave's
// reserved directory) is never touched.
package churn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Reserved is the top-level name the churn never touches (nor creates: no
// name it makes starts with ".georep").
const Reserved = ".georep"

// maxPathLen bounds the relative paths the churn creates, in bytes, so that
// the absolute paths of the tree (and of its replica) stay well under
// PATH_MAX for tools that use whole paths.
const maxPathLen = 1024

// nameSpace is how many distinct base names there are per prefix: small
// enough that names collide now and then (a create finds the name taken, a
// rename replaces an entry), large enough that most creates succeed.
const nameSpace = 200

// Defaults for zero Options fields.
const (
	DefaultMaxFiles    = 2000
	DefaultMaxDirs     = 200
	DefaultMaxFileSize = 256 << 10
	DefaultMaxDepth    = 8
	DefaultHistory     = 64
	DefaultResyncEvery = 500
)

// Options configures a Churn.
type Options struct {
	// Seed makes the sequence of operations, names and contents.
	Seed int64
	// Root is the directory to churn; it must exist.
	Root string
	// MaxFiles bounds the non-directories: creations stop at this many,
	// and deletions become likelier as the tree fills (with the defaults
	// it settles around a third of it, 100 directories and 700 other
	// entries). 0 means DefaultMaxFiles.
	MaxFiles int
	// MaxDirs bounds the directories the same way (0: DefaultMaxDirs).
	MaxDirs int
	// MaxFileSize bounds file sizes in bytes (0: DefaultMaxFileSize).
	MaxFileSize int
	// MaxDepth bounds the depth of new entries and of moved trees; trees
	// already deeper may stay so (0: DefaultMaxDepth).
	MaxDepth int
	// History is how many recent events History returns (0:
	// DefaultHistory).
	History int
	// ResyncEvery re-reads the tree from disk every this many steps, a
	// safety net for the in-memory picture (0: DefaultResyncEvery;
	// negative: never).
	ResyncEvery int
	// NoChown leaves owners alone even when running as root (chown is
	// only ever done as root).
	NoChown bool
}

// Op is a kind of operation.
type Op int

// The operations, each with its variants (Event.Variant).
const (
	OpCreate      Op = iota // a new file with content
	OpWrite                 // "middle" (overwrite in place), "append", "beyond-eof" (leaves a hole)
	OpTruncate              // "shrink", "grow"
	OpRenameFile            // a non-directory: "same-dir", "other-dir", "over" (an existing non-directory)
	OpRenameDir             // "same-dir", "other-dir", "sibling-subtree" (into a sibling's subtree), "over" (an empty directory)
	OpLink                  // a hardlink to a regular file
	OpSymlink               // target "rel" (an entry of the tree), "abs", "dangling", "weird" (odd bytes)
	OpMkfifo                // a FIFO
	OpUnlink                // a non-directory
	OpRemoveAll             // a directory and everything below it: "tree", "empty"
	OpMkdir                 // a directory
	OpChmod                 // "file", "dir", "setgid-dir", "setuid-file", "other"
	OpChown                 // as root only: "file", "dir", "symlink", "other"
	OpUtime                 // ns atime and mtime: "file", "dir", "symlink" (not followed), "other"
	OpSetxattr              // a user.* xattr on a "file" or "dir"
	OpRemovexattr           // a user.* xattr from a "file" or "dir"
	numOps
)

var opNames = [numOps]string{
	OpCreate: "create", OpWrite: "write", OpTruncate: "truncate",
	OpRenameFile: "rename-file", OpRenameDir: "rename-dir", OpLink: "link",
	OpSymlink: "symlink", OpMkfifo: "mkfifo", OpUnlink: "unlink",
	OpRemoveAll: "remove-all", OpMkdir: "mkdir", OpChmod: "chmod",
	OpChown: "chown", OpUtime: "utime", OpSetxattr: "setxattr",
	OpRemovexattr: "removexattr",
}

func (o Op) String() string {
	if o >= 0 && o < numOps {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", int(o))
}

// Ops lists every operation.
func Ops() []Op {
	out := make([]Op, numOps)
	for i := range out {
		out[i] = Op(i)
	}
	return out
}

// Event is one step.
type Event struct {
	N       int64     // step number, from 1
	At      time.Time // when the step ran
	Op      Op
	Variant string // the op's flavour ("over", "append", ...), or ""
	// Path is the entry worked on, relative to the root ("" for the
	// root itself, or when no entry was found); Dest is the new name of
	// a rename or a link, else "".
	Path, Dest string
	Desc       string // what was done; paths quoted
	// Skipped says why the operation did nothing, when earlier
	// operations got in its way (a name taken, a directory not empty).
	Skipped error
}

func (e Event) String() string {
	s := fmt.Sprintf("#%d %s %s", e.N, e.At.Format("15:04:05.000000"), e.Desc)
	if e.Skipped != nil {
		s += " [skipped: " + e.Skipped.Error() + "]"
	}
	return s
}

// Stats counts steps.
type Stats struct {
	Steps    int
	Done     map[Op]int     // applied operations by kind
	Skipped  map[Op]int     // skipped operations by kind
	Variants map[string]int // applied operations by "op/variant"
	Elapsed  time.Duration  // of Run; the sum over runs in Churn.Stats
}

func newStats() Stats {
	return Stats{Done: map[Op]int{}, Skipped: map[Op]int{}, Variants: map[string]int{}}
}

func (s *Stats) add(e Event) {
	s.Steps++
	if e.Skipped != nil {
		s.Skipped[e.Op]++
		return
	}
	s.Done[e.Op]++
	if e.Variant != "" {
		s.Variants[e.Op.String()+"/"+e.Variant]++
	}
}

func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d steps", s.Steps)
	if s.Elapsed > 0 {
		fmt.Fprintf(&b, " in %s", s.Elapsed.Round(time.Millisecond))
	}
	b.WriteByte(':')
	for _, op := range Ops() {
		if s.Done[op]+s.Skipped[op] > 0 {
			fmt.Fprintf(&b, " %s=%d", op, s.Done[op])
			if s.Skipped[op] > 0 {
				fmt.Fprintf(&b, "(+%d skipped)", s.Skipped[op])
			}
		}
	}
	return b.String()
}

// Churn mutates one tree. It is not safe for concurrent use.
type Churn struct {
	opt    Options
	root   string
	asRoot bool // chown allowed, permission errors are real errors
	src    *rand.ChaCha8
	rng    *rand.Rand
	m      *model
	dirty  bool // the model may be off (a partly done op): resync
	steps  int64
	total  Stats
	hist   []Event // ring of the last opt.History events
	next   int     // where the next event goes in hist
}

// errNoCandidate skips an op that found nothing to work on.
var errNoCandidate = errors.New("no suitable entry")

// New reads the tree at opts.Root and returns a Churn for it.
func New(opts Options) (*Churn, error) {
	if opts.Root == "" {
		return nil, errors.New("churn: no root")
	}
	root := filepath.Clean(opts.Root)
	if root == "/" {
		return nil, errors.New("churn: refusing to churn /")
	}
	st, err := os.Lstat(root)
	if err != nil {
		return nil, fmt.Errorf("churn: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("churn: %q is not a directory", root)
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&opts.MaxFiles, DefaultMaxFiles)
	def(&opts.MaxDirs, DefaultMaxDirs)
	def(&opts.MaxFileSize, DefaultMaxFileSize)
	def(&opts.MaxDepth, DefaultMaxDepth)
	def(&opts.History, DefaultHistory)
	def(&opts.ResyncEvery, DefaultResyncEvery)
	if opts.MaxFiles < 0 || opts.MaxDirs < 0 || opts.MaxFileSize < 0 || opts.MaxDepth < 0 || opts.History < 0 {
		return nil, fmt.Errorf("churn: negative limit in %+v", opts)
	}
	m, err := load(root)
	if err != nil {
		return nil, fmt.Errorf("churn: reading the tree: %w", err)
	}
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(opts.Seed))
	copy(seed[8:], "georep churn")
	src := rand.NewChaCha8(seed)
	return &Churn{
		opt:    opts,
		root:   root,
		asRoot: os.Geteuid() == 0,
		src:    src,
		rng:    rand.New(src),
		m:      m,
		total:  newStats(),
		hist:   make([]Event, 0, opts.History),
	}, nil
}

// Stats returns the counts over all steps so far.
func (c *Churn) Stats() Stats {
	s := newStats()
	s.Steps, s.Elapsed = c.total.Steps, c.total.Elapsed
	for k, v := range c.total.Done {
		s.Done[k] = v
	}
	for k, v := range c.total.Skipped {
		s.Skipped[k] = v
	}
	for k, v := range c.total.Variants {
		s.Variants[k] = v
	}
	return s
}

// Size returns the number of directories (the root included) and of other
// entries in the tree.
func (c *Churn) Size() (dirs, others int) {
	return len(c.m.dirs), len(c.m.files) + len(c.m.others)
}

// History returns the last Options.History events, oldest first.
func (c *Churn) History() []Event {
	if len(c.hist) < cap(c.hist) {
		return append([]Event(nil), c.hist...)
	}
	return append(append([]Event(nil), c.hist[c.next:]...), c.hist[:c.next]...)
}

func (c *Churn) record(e Event) {
	c.total.add(e)
	if cap(c.hist) == 0 {
		return
	}
	if len(c.hist) < cap(c.hist) {
		c.hist = append(c.hist, e)
		return
	}
	c.hist[c.next] = e
	c.next = (c.next + 1) % len(c.hist)
}

// Run takes n steps (n < 0: until ctx ends, then returns a nil error),
// paced to rate steps per second when rate > 0, and returns what they did.
// It stops early on a real failure, or when ctx ends (with n >= 0, an
// error).
func (c *Churn) Run(ctx context.Context, n int, rate float64) (Stats, error) {
	st := newStats()
	t0 := time.Now()
	defer func() { c.total.Elapsed += time.Since(t0) }()
	var timer *time.Timer
	for i := 0; n < 0 || i < n; i++ {
		if rate > 0 {
			due := t0.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if wait := time.Until(due); wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
					defer timer.Stop()
				} else {
					timer.Reset(wait)
				}
				select {
				case <-ctx.Done():
				case <-timer.C:
				}
			}
		}
		if err := ctx.Err(); err != nil {
			st.Elapsed = time.Since(t0)
			if n < 0 {
				return st, nil
			}
			return st, fmt.Errorf("churn: stopped after %d of %d steps: %w", i, n, err)
		}
		e, err := c.Step()
		st.add(e)
		if err != nil {
			st.Elapsed = time.Since(t0)
			return st, err
		}
	}
	st.Elapsed = time.Since(t0)
	return st, nil
}

// Step makes one random operation and returns what it did. An operation
// that earlier ones got in the way of is skipped (Event.Skipped), not
// failed; an error is a real failure.
func (c *Churn) Step() (Event, error) {
	c.steps++
	if c.dirty || (c.opt.ResyncEvery > 0 && c.steps%int64(c.opt.ResyncEvery) == 0) {
		m, err := load(c.root)
		if err != nil {
			return Event{N: c.steps, At: time.Now()}, fmt.Errorf("churn: step %d: re-reading the tree: %w", c.steps, err)
		}
		c.m, c.dirty = m, false
	}
	e := Event{N: c.steps, At: time.Now(), Op: c.pickOp()}
	err := c.do(&e)
	if e.Desc == "" {
		e.Desc = e.Op.String()
	}
	if err != nil && c.skippable(e.Op, err) {
		// The errno alone: the path is in Desc already, quoted.
		var errno unix.Errno
		if errors.As(err, &errno) {
			err = errno
		}
		e.Skipped, err = err, nil
	}
	c.record(e)
	if err != nil {
		return e, fmt.Errorf("churn: step %d: %s: %w", e.N, e.Desc, err)
	}
	return e, nil
}

// skippable tells errors that earlier operations caused from real failures.
func (c *Churn) skippable(op Op, err error) bool {
	if errors.Is(err, errNoCandidate) {
		return true
	}
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case unix.ENOENT, unix.EEXIST, unix.ENOTEMPTY, unix.ENOTDIR, unix.EISDIR, unix.EMLINK, unix.ENAMETOOLONG:
		return true
	case unix.ENODATA:
		return op == OpRemovexattr
	case unix.ENOTSUP:
		return op == OpSetxattr || op == OpRemovexattr
	case unix.ENOSPC, unix.E2BIG:
		// The inode's xattr space is full.
		return op == OpSetxattr
	case unix.EACCES, unix.EPERM:
		if !c.asRoot {
			c.dirty = true
			return true
		}
	}
	return false
}

func (c *Churn) abs(rel string) string { return join(c.root, rel) }

// pickOp chooses an operation, creations less likely and deletions likelier
// as the tree fills up.
func (c *Churn) pickOp() Op {
	nondirs := len(c.m.files) + len(c.m.others)
	f := min(float64(nondirs)/float64(max(c.opt.MaxFiles, 1)), 1)
	d := min(float64(len(c.m.dirs)-1)/float64(max(c.opt.MaxDirs, 1)), 1)
	grow, growDirs := 1-f, 1-d
	if c.opt.MaxFiles == 0 {
		grow = 0
	}
	if c.opt.MaxDirs == 0 {
		growDirs = 0
	}
	var w [numOps]float64
	w[OpCreate] = 14 * grow
	w[OpSymlink] = 4 * grow
	w[OpMkfifo] = 0.5 * grow
	w[OpMkdir] = 4 * growDirs
	w[OpChmod] = 4
	w[OpUtime] = 4
	w[OpSetxattr] = 3
	w[OpRemovexattr] = 1.5
	if c.asRoot && !c.opt.NoChown {
		w[OpChown] = 3
	}
	if len(c.m.files) > 0 {
		w[OpWrite] = 12
		w[OpTruncate] = 5
		w[OpLink] = 3 * grow
	}
	if nondirs > 0 {
		w[OpRenameFile] = 6
		w[OpUnlink] = 10 * f
	}
	if len(c.m.dirs) > 1 {
		w[OpRenameDir] = 3
		w[OpRemoveAll] = 0.2 + d
	}
	var sum float64
	for _, v := range w {
		sum += v
	}
	x := c.rng.Float64() * sum
	for op, v := range w {
		if x < v {
			return Op(op)
		}
		x -= v
	}
	return OpChmod // rounding; chmod always has the root
}

func (c *Churn) do(e *Event) error {
	switch e.Op {
	case OpCreate:
		return c.create(e)
	case OpWrite:
		return c.write(e)
	case OpTruncate:
		return c.truncate(e)
	case OpRenameFile:
		return c.renameFile(e)
	case OpRenameDir:
		return c.renameDir(e)
	case OpLink:
		return c.link(e)
	case OpSymlink:
		return c.symlink(e)
	case OpMkfifo:
		return c.mkfifo(e)
	case OpUnlink:
		return c.unlink(e)
	case OpRemoveAll:
		return c.removeAll(e)
	case OpMkdir:
		return c.mkdir(e)
	case OpChmod:
		return c.chmod(e)
	case OpChown:
		return c.chown(e)
	case OpUtime:
		return c.utime(e)
	case OpSetxattr:
		return c.setxattr(e)
	case OpRemovexattr:
		return c.removexattr(e)
	}
	return fmt.Errorf("unknown op %d", e.Op)
}

// --- random choices ---

func (c *Churn) chance(percent int) bool { return c.rng.IntN(100) < percent }

func pick[T any](c *Churn, s []T) T { return s[c.rng.IntN(len(s))] }

// newName returns a random name: usually plain, sometimes with spaces,
// newlines, tabs, '%', backslashes, non-UTF-8 bytes, or 255 bytes long.
// prefix hints at the kind; now and then the kinds share names, so that a
// name comes back as another type.
func (c *Churn) newName(prefix string) string {
	if c.chance(30) {
		prefix = "x"
	}
	base := fmt.Sprintf("%s%d", prefix, c.rng.IntN(nameSpace))
	switch r := c.rng.IntN(100); {
	case r < 55:
		return base
	case r < 62:
		return base + " with space"
	case r < 68:
		return base + "\nnewline"
	case r < 72:
		return "tab\t" + base
	case r < 77:
		return base + "%41%"
	case r < 82:
		return base + "\xff\xfe"
	case r < 85:
		return "caf\xe9 " + base
	case r < 88:
		return "été " + base
	case r < 90:
		return " " + base + " "
	case r < 92:
		return "-" + base
	case r < 94:
		return "\n" + base + "\t"
	case r < 97:
		return base + "\\back\"slash'"
	}
	// Long: exactly 255 bytes or a little less.
	n := 255 - c.rng.IntN(3)
	return base + "-" + strings.Repeat("L", n-len(base)-1)
}

func (c *Churn) bytes(n int) []byte {
	b := make([]byte, n)
	if c.chance(30) {
		// Compressible text.
		line := []byte(fmt.Sprintf("line of churn %d\n", c.rng.IntN(1000)))
		for i := range b {
			b[i] = line[i%len(line)]
		}
		return b
	}
	_, _ = c.src.Read(b) // never fails
	return b
}

func (c *Churn) fileSize() int {
	m := c.opt.MaxFileSize
	switch r := c.rng.IntN(100); {
	case r < 10:
		return 0
	case r < 60:
		return c.rng.IntN(min(m, 1024) + 1)
	case r < 90:
		return c.rng.IntN(min(m, 16<<10) + 1)
	}
	return c.rng.IntN(m + 1)
}

// pastTime returns a random time between 2017 and 2025 with nanoseconds.
func (c *Churn) pastTime() time.Time {
	return time.Unix(1_500_000_000+c.rng.Int64N(250_000_000), c.rng.Int64N(1_000_000_000))
}

// parentFor picks a directory to hold a new entry named name.
func (c *Churn) parentFor(name string) string {
	for range 8 {
		d := pick(c, c.m.dirs)
		if depth(d) < c.opt.MaxDepth && len(d)+1+len(name) <= maxPathLen {
			return d
		}
	}
	return ""
}

// pickNondir picks a non-directory.
func (c *Churn) pickNondir() string {
	i := c.rng.IntN(len(c.m.files) + len(c.m.others))
	if i < len(c.m.files) {
		return c.m.files[i]
	}
	return c.m.others[i-len(c.m.files)]
}

// pickEntry picks any entry; the root only when withRoot, symlinks only
// when withSymlinks. ok is false when a few tries found nothing.
func (c *Churn) pickEntry(withRoot, withSymlinks bool) (rel string, k kind, ok bool) {
	n := len(c.m.dirs) + len(c.m.files) + len(c.m.others)
	for range 8 {
		i := c.rng.IntN(n)
		switch {
		case i < len(c.m.dirs):
			rel = c.m.dirs[i]
		case i < len(c.m.dirs)+len(c.m.files):
			rel = c.m.files[i-len(c.m.dirs)]
		default:
			rel = c.m.others[i-len(c.m.dirs)-len(c.m.files)]
		}
		k = c.m.kinds[rel]
		if (rel == "" && !withRoot) || (k == kindSymlink && !withSymlinks) {
			continue
		}
		return rel, k, true
	}
	return "", 0, false
}

// pickFileOrDir picks a regular file or a directory (the root included):
// what may carry user.* xattrs.
func (c *Churn) pickFileOrDir() (string, kind) {
	i := c.rng.IntN(len(c.m.dirs) + len(c.m.files))
	if i < len(c.m.dirs) {
		return c.m.dirs[i], kindDir
	}
	return c.m.files[i-len(c.m.dirs)], kindFile
}

func variantOf(k kind) string {
	switch k {
	case kindDir:
		return "dir"
	case kindFile:
		return "file"
	case kindSymlink:
		return "symlink"
	}
	return "other"
}

// --- operations ---

func (c *Churn) create(e *Event) error {
	name := c.newName("f")
	rel := join(c.parentFor(name), name)
	data := c.bytes(c.fileSize())
	e.Path = rel
	e.Desc = fmt.Sprintf("create %q (%d bytes)", rel, len(data))
	f, err := os.OpenFile(c.abs(rel), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	c.m.add(rel, kindFile)
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (c *Churn) write(e *Event) error {
	rel := pick(c, c.m.files)
	e.Path = rel
	n := 1 + c.rng.IntN(min(16<<10, max(c.opt.MaxFileSize, 1)))
	var st unix.Stat_t
	if err := unix.Lstat(c.abs(rel), &st); err != nil {
		return err
	}
	size := int(st.Size)
	switch r := c.rng.IntN(100); {
	case r < 55 && size > 0:
		e.Variant = "middle"
		off := c.rng.IntN(size)
		n = min(n, size-off)
		e.Desc = fmt.Sprintf("write %q: %d bytes at %d of %d", rel, n, off, size)
		return c.writeAt(rel, off, c.bytes(n), 0)
	case r < 95 || size >= c.opt.MaxFileSize:
		if size >= c.opt.MaxFileSize {
			// Full: overwrite the start instead.
			e.Variant = "middle"
			n = min(n, size)
			e.Desc = fmt.Sprintf("write %q: %d bytes at 0 of %d", rel, n, size)
			return c.writeAt(rel, 0, c.bytes(n), 0)
		}
		e.Variant = "append"
		n = min(n, c.opt.MaxFileSize-size)
		e.Desc = fmt.Sprintf("write %q: append %d bytes to %d", rel, n, size)
		return c.writeAt(rel, -1, c.bytes(n), os.O_APPEND)
	}
	e.Variant = "beyond-eof"
	off := size + 1 + c.rng.IntN(max(c.opt.MaxFileSize-size, 1))
	n = max(0, min(n, c.opt.MaxFileSize-off))
	e.Desc = fmt.Sprintf("write %q: %d bytes at %d, past the end %d (a hole)", rel, n, off, size)
	if n == 0 {
		e.Variant = "grow" // there is no room for data: a truncate makes the hole
		e.Op = OpTruncate
		e.Desc = fmt.Sprintf("truncate %q: %d -> %d", rel, size, off)
		return unix.Truncate(c.abs(rel), int64(off))
	}
	return c.writeAt(rel, off, c.bytes(n), 0)
}

// writeAt writes data at off (with O_APPEND, at the end; off is ignored).
func (c *Churn) writeAt(rel string, off int, data []byte, flag int) error {
	f, err := os.OpenFile(c.abs(rel), os.O_WRONLY|flag, 0)
	if err != nil {
		return err
	}
	if flag&os.O_APPEND != 0 {
		_, err = f.Write(data)
	} else {
		_, err = f.WriteAt(data, int64(off))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (c *Churn) truncate(e *Event) error {
	rel := pick(c, c.m.files)
	e.Path = rel
	var st unix.Stat_t
	if err := unix.Lstat(c.abs(rel), &st); err != nil {
		return err
	}
	size := int(st.Size)
	var to int
	if size > 0 && (c.chance(60) || size >= c.opt.MaxFileSize) {
		e.Variant = "shrink"
		to = c.rng.IntN(size)
	} else {
		e.Variant = "grow"
		to = size + 1 + c.rng.IntN(max(c.opt.MaxFileSize-size, 1))
	}
	e.Desc = fmt.Sprintf("truncate %q: %d -> %d", rel, size, to)
	return unix.Truncate(c.abs(rel), int64(to))
}

// rename renames src to dst and updates the model: a replaced dst is gone,
// and renaming a link over another link of the same inode changes nothing.
func (c *Churn) rename(e *Event, src, dst string) error {
	e.Path, e.Dest = src, dst
	e.Desc = fmt.Sprintf("%s %q -> %q", e.Op, src, dst)
	if e.Variant != "" {
		e.Desc += " (" + e.Variant + ")"
	}
	var sst, dstSt unix.Stat_t
	if err := unix.Lstat(c.abs(src), &sst); err != nil {
		return err
	}
	dstErr := unix.Lstat(c.abs(dst), &dstSt)
	if dstErr != nil && !errors.Is(dstErr, unix.ENOENT) {
		return dstErr
	}
	if err := unix.Rename(c.abs(src), c.abs(dst)); err != nil {
		return err
	}
	if dstErr == nil {
		if sst.Dev == dstSt.Dev && sst.Ino == dstSt.Ino {
			e.Desc += " (same inode: no change)"
			e.Dest = ""
			return nil
		}
		e.Desc += " (replaced " + variantOf(kindOf(dstSt.Mode)) + ")"
		c.m.remove(dst)
	}
	c.m.move(src, dst)
	return nil
}

func (c *Churn) renameFile(e *Event) error {
	src := c.pickNondir()
	switch r := c.rng.IntN(100); {
	case r < 30:
		e.Variant = "over"
		for range 8 {
			dst := c.pickNondir()
			if dst != src {
				return c.rename(e, src, dst)
			}
		}
		fallthrough
	case r < 60:
		e.Variant = "same-dir"
		name := c.newName("r")
		dst := join(parent(src), name)
		if len(dst) > maxPathLen {
			e.Path = src
			e.Desc = fmt.Sprintf("rename-file %q -> %q: too long", src, dst)
			return errNoCandidate
		}
		return c.rename(e, src, dst)
	}
	e.Variant = "other-dir"
	name := c.newName("r")
	dir := c.parentFor(name)
	if dir == parent(src) {
		e.Variant = "same-dir"
	}
	return c.rename(e, src, join(dir, name))
}

// fits reports whether the tree at src may move to dst without making a
// path longer or deeper than the limits (unless it is no worse than now).
func (c *Churn) fits(src, dst string) bool {
	extraLen, extraDepth := c.m.subtreeBounds(src)
	newLen, newDepth := len(dst)+extraLen, depth(dst)+extraDepth
	oldLen, oldDepth := len(src)+extraLen, depth(src)+extraDepth
	return (newLen <= maxPathLen || newLen <= oldLen) && (newDepth <= c.opt.MaxDepth || newDepth <= oldDepth)
}

func (c *Churn) renameDir(e *Event) error {
	src := c.m.dirs[1+c.rng.IntN(len(c.m.dirs)-1)] // not the root
	e.Path = src
	e.Desc = fmt.Sprintf("rename-dir %q: nowhere it fits", src)
	// dirs that src may move into: not itself, nor below it.
	ok := func(d string) bool { return !within(d, src) }
	r := c.rng.IntN(100)
	if r < 20 {
		e.Variant = "over"
		for range 8 {
			dst := pick(c, c.m.dirs)
			if dst != "" && ok(dst) && c.m.isEmptyDir(dst) && c.fits(src, dst) {
				return c.rename(e, src, dst)
			}
		}
		r = 40 // none found: a sibling subtree instead
	}
	if r < 45 {
		e.Variant = "sibling-subtree"
		p := parent(src)
		var sibs []string
		pre := p + "/"
		if p == "" {
			pre = ""
		}
		i, j := c.m.dirs.prefixRange(pre)
		for _, d := range c.m.dirs[i:j] {
			if d != "" && d != src && parent(d) == p {
				sibs = append(sibs, d)
			}
		}
		if len(sibs) > 0 {
			s := pick(c, sibs)
			i, j := c.m.dirs.prefixRange(s + "/")
			into := append([]string{s}, c.m.dirs[i:j]...)
			name := c.newName("d")
			dst := join(pick(c, into), name)
			if !c.fits(src, dst) {
				return errNoCandidate
			}
			return c.rename(e, src, dst)
		}
		r = 70 // no sibling: another directory
	}
	name := c.newName("d")
	if r < 70 {
		e.Variant = "same-dir"
		dst := join(parent(src), name)
		if !c.fits(src, dst) {
			return errNoCandidate
		}
		return c.rename(e, src, dst)
	}
	e.Variant = "other-dir"
	for range 8 {
		d := pick(c, c.m.dirs)
		dst := join(d, name)
		if ok(d) && d != parent(src) && c.fits(src, dst) {
			return c.rename(e, src, dst)
		}
	}
	return errNoCandidate
}

func (c *Churn) link(e *Event) error {
	src := pick(c, c.m.files)
	name := c.newName("h")
	dst := join(c.parentFor(name), name)
	e.Path, e.Dest = src, dst
	e.Desc = fmt.Sprintf("link %q -> %q", dst, src)
	if err := unix.Link(c.abs(src), c.abs(dst)); err != nil {
		return err
	}
	c.m.add(dst, kindFile)
	return nil
}

var absTargets = []string{"/etc/passwd", "/", "/nonexistent/churn target", "/tmp", "/dev/null"}

func (c *Churn) symlink(e *Event) error {
	name := c.newName("l")
	dir := c.parentFor(name)
	rel := join(dir, name)
	var target string
	switch r := c.rng.IntN(100); {
	case r < 45:
		e.Variant = "rel"
		t, _, ok := c.pickEntry(false, true)
		if !ok {
			t = "."
		}
		target = strings.Repeat("../", depth(dir)) + t
	case r < 60:
		e.Variant = "abs"
		target = pick(c, absTargets)
	case r < 85:
		e.Variant = "dangling"
		target = "missing-" + c.newName("m")
		if c.chance(30) {
			target = "../nowhere/" + target
		}
	default:
		e.Variant = "weird"
		target = c.newName("w") + "/%2F\x01\x7f"
	}
	e.Path = rel
	e.Desc = fmt.Sprintf("symlink %q -> %q (%s)", rel, target, e.Variant)
	if err := unix.Symlink(target, c.abs(rel)); err != nil {
		return err
	}
	c.m.add(rel, kindSymlink)
	return nil
}

func (c *Churn) mkfifo(e *Event) error {
	name := c.newName("p")
	rel := join(c.parentFor(name), name)
	e.Path = rel
	e.Desc = fmt.Sprintf("mkfifo %q", rel)
	if err := unix.Mkfifo(c.abs(rel), 0o644); err != nil {
		return err
	}
	c.m.add(rel, kindOther)
	return nil
}

func (c *Churn) unlink(e *Event) error {
	rel := c.pickNondir()
	e.Path = rel
	e.Desc = fmt.Sprintf("unlink %q", rel)
	if err := unix.Unlink(c.abs(rel)); err != nil {
		return err
	}
	c.m.remove(rel)
	return nil
}

func (c *Churn) removeAll(e *Event) error {
	// Mostly small trees: removing a big one now and then is a good
	// test, removing one at every turn keeps the tree small.
	total := len(c.m.dirs) + len(c.m.files) + len(c.m.others)
	var rel string
	var n int
	for try := 0; ; try++ {
		rel = c.m.dirs[1+c.rng.IntN(len(c.m.dirs)-1)]
		n = len(c.m.descendants(rel))
		if n <= total/10 || try == 4 || c.chance(10) {
			break
		}
	}
	e.Variant = "tree"
	if n == 0 {
		e.Variant = "empty"
	}
	e.Path = rel
	e.Desc = fmt.Sprintf("remove-all %q (%d entries below)", rel, n)
	if err := os.RemoveAll(c.abs(rel)); err != nil {
		c.dirty = true
		return err
	}
	c.m.remove(rel)
	return nil
}

func (c *Churn) mkdir(e *Event) error {
	name := c.newName("d")
	rel := join(c.parentFor(name), name)
	e.Path = rel
	e.Desc = fmt.Sprintf("mkdir %q", rel)
	if err := unix.Mkdir(c.abs(rel), 0o755); err != nil {
		return err
	}
	c.m.add(rel, kindDir)
	return nil
}

// Directories keep u+rwx so that they can always be listed and removed.
var (
	dirModes  = []uint32{0o755, 0o700, 0o775, 0o750, 0o777, 0o1777}
	sgidModes = []uint32{0o2755, 0o2775, 0o2770}
	fileModes = []uint32{0o644, 0o600, 0o755, 0o444, 0o640, 0o400, 0o664}
	suidModes = []uint32{0o4755, 0o2755, 0o6711}
)

func (c *Churn) chmod(e *Event) error {
	rel, k, ok := c.pickEntry(true, false)
	if !ok {
		return errNoCandidate
	}
	var mode uint32
	e.Variant = variantOf(k)
	switch k {
	case kindDir:
		mode = pick(c, dirModes)
		if c.chance(30) {
			e.Variant = "setgid-dir"
			mode = pick(c, sgidModes)
		}
	case kindFile:
		mode = pick(c, fileModes)
		if c.chance(10) {
			e.Variant = "setuid-file"
			mode = pick(c, suidModes)
		}
	default:
		mode = pick(c, []uint32{0o644, 0o600, 0o620, 0o666})
	}
	e.Path = rel
	e.Desc = fmt.Sprintf("chmod %q %#o", rel, mode)
	return unix.Chmod(c.abs(rel), mode)
}

// Numeric owners without passwd entries (and root and nobody).
var (
	uids = []int{0, 12345, 4242, 65534}
	gids = []int{0, 54321, 4243, 65534}
)

func (c *Churn) chown(e *Event) error {
	rel, k, ok := c.pickEntry(true, true)
	if !ok {
		return errNoCandidate
	}
	uid, gid := pick(c, uids), pick(c, gids)
	if c.chance(20) {
		uid = -1 // the group only
	}
	e.Variant = variantOf(k)
	e.Path = rel
	e.Desc = fmt.Sprintf("chown %q %d:%d", rel, uid, gid)
	return unix.Lchown(c.abs(rel), uid, gid)
}

func (c *Churn) utime(e *Event) error {
	rel, k, ok := c.pickEntry(true, true)
	if !ok {
		return errNoCandidate
	}
	atime, mtime := c.pastTime(), c.pastTime()
	e.Variant = variantOf(k)
	e.Path = rel
	e.Desc = fmt.Sprintf("utime %q mtime %d.%09d", rel, mtime.Unix(), mtime.Nanosecond())
	if k == kindSymlink {
		ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
		return unix.UtimesNanoAt(unix.AT_FDCWD, c.abs(rel), ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	return os.Chtimes(c.abs(rel), atime, mtime)
}

// xattrNames are the user.* names the churn sets; it removes these and any
// other user.* xattr but georep's own.
var xattrNames = []string{"user.churn.a", "user.churn.b", "user.comment", "user.churn name\twith %", "user.churn.\xff"}

func (c *Churn) setxattr(e *Event) error {
	rel, k := c.pickFileOrDir()
	name := pick(c, xattrNames)
	n := c.rng.IntN(64)
	switch r := c.rng.IntN(100); {
	case r < 10:
		n = 0
	case r < 15:
		n = 256 + c.rng.IntN(257) // the inode's xattr space is about 4 KiB on ext4
	}
	e.Variant = variantOf(k)
	e.Path = rel
	e.Desc = fmt.Sprintf("setxattr %q %q (%d bytes)", rel, name, n)
	return unix.Lsetxattr(c.abs(rel), name, c.bytes(n), 0)
}

func (c *Churn) removexattr(e *Event) error {
	// Look for an entry that has user xattrs to remove.
	var rel string
	var k kind
	var names []string
	for range 6 {
		rel, k = c.pickFileOrDir()
		var err error
		if names, err = listUserXattrs(c.abs(rel)); err != nil {
			return err
		}
		if len(names) > 0 {
			break
		}
	}
	e.Variant = variantOf(k)
	name := pick(c, xattrNames) // likely absent: ENODATA, skipped
	if len(names) > 0 {
		name = pick(c, names)
	}
	e.Path = rel
	e.Desc = fmt.Sprintf("removexattr %q %q", rel, name)
	return unix.Lremovexattr(c.abs(rel), name)
}

// listUserXattrs returns the user.* xattr names at path but georep's own,
// sorted.
func listUserXattrs(path string) ([]string, error) {
	for {
		n, err := unix.Llistxattr(path, nil)
		if err != nil || n == 0 {
			return nil, err
		}
		buf := make([]byte, n)
		n, err = unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew meanwhile
		}
		if err != nil {
			return nil, err
		}
		var out []string
		for _, name := range strings.Split(string(buf[:n]), "\x00") {
			if strings.HasPrefix(name, "user.") && !strings.HasPrefix(name, "user.georep") {
				out = append(out, name)
			}
		}
		sort.Strings(out)
		return out, nil
	}
}
