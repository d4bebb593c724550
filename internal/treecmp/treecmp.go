// Package treecmp compares two directory trees entry by entry and reports
// every difference a replicator could have introduced: missing or extra
// entries, file types, permission bits (including setuid, setgid and
// sticky), numeric owners, sizes and contents, nanosecond mtimes, symlink
// targets, device numbers, extended attributes and hardlink groups.
//
// It is meant for tests that replicate a tree and then check that the
// replica is exact. Trees are walked with lstat, symlinks are never
// followed and names are handled as raw bytes (Go strings that may hold
// any byte but NUL and '/'); nothing is normalised.
//
// Trees may be deeper than PATH_MAX: below the roots, every entry is
// reached relative to its parent directory's descriptor (openat, fstatat,
// readlinkat, and the l*xattr calls on /proc/self/fd/DIRFD/NAME), never by
// a whole path. A walk holds one descriptor per level of the directory it
// is in, not one per directory of the tree.
//
// Paths in results are relative to the compared roots, with "/" as the
// separator; the roots themselves are reported as ".".
package treecmp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// RootPath is the relative path under which the roots themselves are
// reported in a Diff and keyed in a Snapshot.
const RootPath = "."

// Options tunes what Compare and Snapshot look at.
type Options struct {
	// IgnoreTop lists names directly under the slave root that are not
	// compared (e.g. ".georep", georep's reserved dir on the slave). The
	// names are skipped directly under both roots, together with
	// everything below them; the same names deeper in the tree are
	// compared normally.
	IgnoreTop []string
	// IgnoreXattrPrefixes lists xattr name prefixes left out of the
	// comparison (georep's own marks: "trusted.georep.", "user.georep.").
	IgnoreXattrPrefixes []string
	// SkipRootMeta: do not compare the root directories' own
	// mode/owner/times. Their xattrs and their contents are still
	// compared.
	SkipRootMeta bool
	// SkipDirMtime: do not compare directory mtimes.
	SkipDirMtime bool
}

// Diff is one difference found by Compare.
type Diff struct {
	// Path is relative to the compared roots, as raw bytes in a string;
	// "." for the roots themselves.
	Path string
	// What describes the difference; "a" is the first tree given to
	// Compare, "b" the second.
	What string
}

// String renders the difference with the path quoted by %q so that
// newlines, tabs and non-UTF-8 bytes are visible.
func (d Diff) String() string {
	return fmt.Sprintf("%q: %s", d.Path, d.What)
}

// entry is what the walk records about one path.
type entry struct {
	st     unix.Stat_t
	link   string            // symlink target, raw bytes
	xattrs map[string][]byte // filtered xattrs (nil when none)
}

func (e *entry) typ() uint32 { return e.st.Mode & unix.S_IFMT }

func (e *entry) isDir() bool { return e.typ() == unix.S_IFDIR }

// inode identifies a file across the tree (for hardlink groups).
type inode struct {
	dev uint64
	ino uint64
}

func (e *entry) inode() inode { return inode{dev: e.st.Dev, ino: e.st.Ino} }

// tree is the result of walking one side.
type tree struct {
	root    string // the root as given, for messages and a non-directory root
	entries map[string]*entry
	// groups maps the inode of every non-directory with nlink > 1 to the
	// sorted relative paths sharing it inside the tree.
	groups map[inode][]string
	// rootFD is the root directory, open while the tree is compared, so
	// that files are reopened relative to it; -1 when the root is not a
	// directory or the tree is closed.
	rootFD int
	// dirRel and dirFD cache the directory (relative path, O_PATH
	// descriptor) of the file last opened by openFile: files of one
	// directory come one after another in path order. dirFD is -1 when
	// nothing is cached.
	dirRel string
	dirFD  int
}

// close releases the descriptors the tree holds.
func (t *tree) close() {
	if t.dirFD >= 0 {
		unix.Close(t.dirFD)
		t.dirFD = -1
	}
	if t.rootFD >= 0 {
		unix.Close(t.rootFD)
		t.rootFD = -1
	}
}

// absPath names rel under the root, for messages only (it may be longer
// than PATH_MAX).
func (t *tree) absPath(rel string) string {
	if rel == "" {
		return t.root
	}
	return strings.TrimSuffix(t.root, "/") + "/" + rel
}

// openFile opens the regular file at rel for reading, relative to the
// root's descriptor: each directory on the way is opened with O_NOFOLLOW,
// so that no path longer than one name reaches the kernel.
func (t *tree) openFile(rel string) (*os.File, error) {
	if rel == "" {
		// The root is the file itself.
		fd, err := openat(unix.AT_FDCWD, t.root, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: t.root, Err: err}
		}
		return os.NewFile(uintptr(fd), t.root), nil
	}
	if t.rootFD < 0 {
		return nil, &os.PathError{Op: "open", Path: t.absPath(rel), Err: os.ErrClosed}
	}
	dir, name := "", rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		dir, name = rel[:i], rel[i+1:]
	}
	dirfd := t.rootFD
	if dir != "" {
		if t.dirFD < 0 || t.dirRel != dir {
			if t.dirFD >= 0 {
				unix.Close(t.dirFD)
				t.dirFD = -1
			}
			fd, err := openRel(t.rootFD, dir, unix.O_PATH|unix.O_DIRECTORY)
			if err != nil {
				return nil, &os.PathError{Op: "open", Path: t.absPath(dir), Err: err}
			}
			t.dirRel, t.dirFD = dir, fd
		}
		dirfd = t.dirFD
	}
	fd, err := openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: t.absPath(rel), Err: err}
	}
	return os.NewFile(uintptr(fd), t.absPath(rel)), nil
}

// openRel opens the slash-separated relative path rel below the directory
// dirfd one component at a time, none of them followed if a symlink:
// the directories on the way with O_PATH, the last one with flags
// (O_NOFOLLOW and O_CLOEXEC are added). rel must not be empty.
func openRel(dirfd int, rel string, flags int) (int, error) {
	cur, owned := dirfd, false
	defer func() {
		if owned {
			unix.Close(cur)
		}
	}()
	for {
		name, rest, more := strings.Cut(rel, "/")
		if name == "" || name == "." || name == ".." {
			return -1, unix.EINVAL
		}
		fl := flags
		if more {
			fl = unix.O_PATH | unix.O_DIRECTORY
		}
		fd, err := openat(cur, name, fl|unix.O_NOFOLLOW|unix.O_CLOEXEC)
		if err != nil {
			return -1, err
		}
		if !more {
			return fd, nil
		}
		if owned {
			unix.Close(cur)
		}
		cur, owned = fd, true
		rel = rest
	}
}

// openat is unix.Openat, retried when interrupted.
func openat(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// walker holds the state of one walk.
type walker struct {
	opt     Options
	xattrs  bool // read xattrs
	trusted bool // include trusted.* xattrs
}

// Compare walks the trees rooted at a and b and returns their differences
// sorted by path (several differences of one path keep a fixed order).
// Entries below a path that is missing on one side, or whose type differs,
// are not reported individually. An error is returned only when a tree
// cannot be walked or read (contents of equal-sized regular files are
// read, so trees with unreadable files need root). Numeric nlink is
// compared for non-directories only.
func Compare(a, b string, opt Options) ([]Diff, error) {
	w := &walker{opt: opt, xattrs: true, trusted: os.Geteuid() == 0}
	ta, err := w.walk(a)
	if err != nil {
		return nil, fmt.Errorf("treecmp: walk %q: %w", a, err)
	}
	defer ta.close()
	tb, err := w.walk(b)
	if err != nil {
		return nil, fmt.Errorf("treecmp: walk %q: %w", b, err)
	}
	defer tb.close()

	paths := make([]string, 0, len(ta.entries)+len(tb.entries))
	for p := range ta.entries {
		paths = append(paths, p)
	}
	for p := range tb.entries {
		if _, ok := ta.entries[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)

	var diffs []Diff
	add := func(p, format string, args ...any) {
		diffs = append(diffs, Diff{Path: displayPath(p), What: fmt.Sprintf(format, args...)})
	}
	// pruned holds paths (as "p/") under which nothing more is reported.
	pruned := map[string]bool{}
	isPruned := func(p string) bool {
		for i := len(p) - 1; i > 0; i-- {
			if p[i] == '/' && pruned[p[:i+1]] {
				return true
			}
		}
		return false
	}

	for _, p := range paths {
		if isPruned(p) {
			continue
		}
		ea, eb := ta.entries[p], tb.entries[p]
		switch {
		case eb == nil:
			add(p, "only in a (%s)", typeName(ea.typ()))
			pruned[p+"/"] = true
			continue
		case ea == nil:
			add(p, "only in b (%s)", typeName(eb.typ()))
			pruned[p+"/"] = true
			continue
		}
		if ea.typ() != eb.typ() {
			add(p, "type: a=%s b=%s", typeName(ea.typ()), typeName(eb.typ()))
			pruned[p+"/"] = true
			continue
		}
		if err := compareEntry(p, ea, eb, ta, tb, opt, add); err != nil {
			return nil, err
		}
	}
	return diffs, nil
}

// compareEntry compares two entries of the same type at relative path p.
func compareEntry(p string, ea, eb *entry, ta, tb *tree, opt Options, add func(p, format string, args ...any)) error {
	isRoot := p == ""
	meta := !(isRoot && opt.SkipRootMeta)
	typ := ea.typ()

	if meta {
		if pa, pb := ea.st.Mode&07777, eb.st.Mode&07777; pa != pb {
			add(p, "mode: a=%#o b=%#o", pa, pb)
		}
		if ea.st.Uid != eb.st.Uid || ea.st.Gid != eb.st.Gid {
			add(p, "owner: a=%d:%d b=%d:%d", ea.st.Uid, ea.st.Gid, eb.st.Uid, eb.st.Gid)
		}
	}
	if typ != unix.S_IFDIR && ea.st.Nlink != eb.st.Nlink {
		add(p, "nlink: a=%d b=%d", ea.st.Nlink, eb.st.Nlink)
	}
	switch typ {
	case unix.S_IFREG:
		if ea.st.Size != eb.st.Size {
			add(p, "size: a=%d b=%d", ea.st.Size, eb.st.Size)
		} else if ea.st.Size > 0 && ea.inode() != eb.inode() {
			off, same, err := sameContent(ta, tb, p)
			if err != nil {
				return err
			}
			if !same {
				add(p, "content differs at offset %d", off)
			}
		}
	case unix.S_IFLNK:
		if ea.link != eb.link {
			add(p, "symlink target: a=%q b=%q", ea.link, eb.link)
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if ea.st.Rdev != eb.st.Rdev {
			add(p, "rdev: a=%d:%d b=%d:%d",
				unix.Major(ea.st.Rdev), unix.Minor(ea.st.Rdev),
				unix.Major(eb.st.Rdev), unix.Minor(eb.st.Rdev))
		}
	}
	if meta && (typ != unix.S_IFDIR || !opt.SkipDirMtime) {
		if ea.st.Mtim != eb.st.Mtim {
			add(p, "mtime: a=%s b=%s", fmtTime(ea.st.Mtim), fmtTime(eb.st.Mtim))
		}
	}
	compareXattrs(p, ea.xattrs, eb.xattrs, add)

	if typ != unix.S_IFDIR && (ea.st.Nlink > 1 || eb.st.Nlink > 1) {
		ga, gb := ta.group(p, ea), tb.group(p, eb)
		if !slices.Equal(ga, gb) {
			add(p, "hardlink group: a=%s b=%s", fmtGroup(ga), fmtGroup(gb))
		}
	}
	return nil
}

// group returns the sorted paths in t sharing e's inode (just p when e is
// not hardlinked inside the tree).
func (t *tree) group(p string, e *entry) []string {
	if g, ok := t.groups[e.inode()]; ok {
		return g
	}
	return []string{p}
}

func compareXattrs(p string, xa, xb map[string][]byte, add func(p, format string, args ...any)) {
	names := make([]string, 0, len(xa)+len(xb))
	for n := range xa {
		names = append(names, n)
	}
	for n := range xb {
		if _, ok := xa[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		va, oka := xa[n]
		vb, okb := xb[n]
		switch {
		case !okb:
			add(p, "xattr %q: only in a", n)
		case !oka:
			add(p, "xattr %q: only in b", n)
		case !bytes.Equal(va, vb):
			add(p, "xattr %q: value differs: a=%s b=%s", n, fmtValue(va), fmtValue(vb))
		}
	}
}

// sameContent compares the files at relative path p of two trees byte by
// byte. When they differ it returns the offset of the first differing byte.
func sameContent(ta, tb *tree, p string) (int64, bool, error) {
	a, b := ta.absPath(p), tb.absPath(p)
	fa, err := ta.openFile(p)
	if err != nil {
		return 0, false, fmt.Errorf("treecmp: %w", err)
	}
	defer fa.Close()
	fb, err := tb.openFile(p)
	if err != nil {
		return 0, false, fmt.Errorf("treecmp: %w", err)
	}
	defer fb.Close()

	const chunk = 256 << 10
	ba, bb := make([]byte, chunk), make([]byte, chunk)
	var off int64
	for {
		na, erra := io.ReadFull(fa, ba)
		if erra != nil && erra != io.EOF && erra != io.ErrUnexpectedEOF {
			return 0, false, fmt.Errorf("treecmp: read %q: %w", a, erra)
		}
		nb, errb := io.ReadFull(fb, bb)
		if errb != nil && errb != io.EOF && errb != io.ErrUnexpectedEOF {
			return 0, false, fmt.Errorf("treecmp: read %q: %w", b, errb)
		}
		n := min(na, nb)
		for i := 0; i < n; i++ {
			if ba[i] != bb[i] {
				return off + int64(i), false, nil
			}
		}
		if na != nb {
			// The sizes matched at lstat time: the files are being changed.
			return off + int64(n), false, nil
		}
		if na < chunk {
			return 0, true, nil
		}
		off += int64(n)
	}
}

// walk records every entry under root. Below the root, entries are
// reached through their parent directory's descriptor: the walk holds the
// descriptors of the directories from the root down to the current one.
// When the root is a directory, the returned tree keeps it open (close
// releases it), for openFile.
func (w *walker) walk(root string) (_ *tree, err error) {
	t := &tree{root: root, entries: map[string]*entry{}, groups: map[inode][]string{}, rootFD: -1, dirFD: -1}
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	e := &entry{}
	if err := unix.Lstat(root, &e.st); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: root, Err: err}
	}
	if e.typ() == unix.S_IFLNK {
		target, err := os.Readlink(root)
		if err != nil {
			return nil, err
		}
		e.link = target
	}
	if w.xattrs {
		x, err := readXattrs(root, root, w.trusted, w.opt.IgnoreXattrPrefixes)
		if err != nil {
			return nil, err
		}
		e.xattrs = x
	}
	t.entries[""] = e
	if e.isDir() {
		fd, err := openat(unix.AT_FDCWD, root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: root, Err: err}
		}
		t.rootFD = fd // closed by t.close
		if err := w.walkDir(t, fd, ""); err != nil {
			return nil, err
		}
	}
	for p, e := range t.entries {
		if !e.isDir() && e.st.Nlink > 1 {
			t.groups[e.inode()] = append(t.groups[e.inode()], p)
		}
	}
	for k, g := range t.groups {
		if len(g) < 2 {
			delete(t.groups, k)
			continue
		}
		sort.Strings(g)
	}
	return t, nil
}

// walkDir records the entries of the directory open as dirfd, at relative
// path rel, and below it. dirfd stays owned by the caller.
func (w *walker) walkDir(t *tree, dirfd int, rel string) error {
	names, err := readDirNames(dirfd)
	if err != nil {
		return fmt.Errorf("readdir %q: %w", t.absPath(rel), err)
	}
	for _, name := range names {
		if rel == "" && slices.Contains(w.opt.IgnoreTop, name) {
			continue
		}
		childRel := name
		if rel != "" {
			childRel = rel + "/" + name
		}
		e := &entry{}
		if err := unix.Fstatat(dirfd, name, &e.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "lstat", Path: t.absPath(childRel), Err: err}
		}
		if e.typ() == unix.S_IFLNK {
			target, err := readlinkat(dirfd, name)
			if err != nil {
				return &os.PathError{Op: "readlink", Path: t.absPath(childRel), Err: err}
			}
			e.link = target
		}
		if w.xattrs {
			x, err := readXattrs(procPath(dirfd, name), t.absPath(childRel), w.trusted, w.opt.IgnoreXattrPrefixes)
			if err != nil {
				return err
			}
			e.xattrs = x
		}
		t.entries[childRel] = e
		if !e.isDir() {
			continue
		}
		fd, err := openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
		if err != nil {
			return &os.PathError{Op: "open", Path: t.absPath(childRel), Err: err}
		}
		err = w.walkDir(t, fd, childRel)
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

// procPath names entry name of the open directory dirfd through the
// directory's /proc/self/fd magic link: a short path however deep the
// directory is. The l*xattr calls do not follow its final component.
func procPath(dirfd int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
}

// readlinkat returns the target of symlink name in dirfd, as raw bytes.
func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// readDirNames returns the raw names in the directory open as fd, sorted.
// It reads through fd, from its start (fd must not have been read yet).
func readDirNames(fd int) ([]string, error) {
	buf := make([]byte, 64<<10)
	var names []string
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	sort.Strings(names)
	return names, nil
}

// readXattrs returns the user.* xattrs and POSIX ACLs (and, when trusted,
// trusted.*) of path, without following symlinks, minus the ignored
// prefixes; errors
// name the entry as display. Entries that cannot carry xattrs yield none.
func readXattrs(path, display string, trusted bool, ignore []string) (map[string][]byte, error) {
	names, err := listXattrs(path, display)
	if err != nil {
		return nil, err
	}
	var out map[string][]byte
	for _, n := range names {
		if !strings.HasPrefix(n, "user.") && !isACL(n) && !(trusted && strings.HasPrefix(n, "trusted.")) {
			continue
		}
		if slices.ContainsFunc(ignore, func(p string) bool { return strings.HasPrefix(n, p) }) {
			continue
		}
		v, ok, err := getXattr(path, display, n)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if out == nil {
			out = map[string][]byte{}
		}
		out[n] = v
	}
	return out, nil
}

// isACL reports whether name is a POSIX ACL (the value is the kernel's
// form: numeric ids).
func isACL(name string) bool {
	return name == "system.posix_acl_access" || name == "system.posix_acl_default"
}

func noXattrs(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM)
}

func listXattrs(path, display string) ([]string, error) {
	for {
		sz, err := unix.Llistxattr(path, nil)
		if err != nil {
			if noXattrs(err) {
				return nil, nil
			}
			return nil, &os.PathError{Op: "llistxattr", Path: display, Err: err}
		}
		if sz == 0 {
			return nil, nil
		}
		buf := make([]byte, sz)
		n, err := unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew in between
		}
		if err != nil {
			if noXattrs(err) {
				return nil, nil
			}
			return nil, &os.PathError{Op: "llistxattr", Path: display, Err: err}
		}
		var names []string
		for _, n := range bytes.Split(buf[:n], []byte{0}) {
			if len(n) > 0 {
				names = append(names, string(n))
			}
		}
		return names, nil
	}
}

// getXattr reads one xattr; ok is false when it vanished meanwhile.
func getXattr(path, display, name string) ([]byte, bool, error) {
	for {
		sz, err := unix.Lgetxattr(path, name, nil)
		if errors.Is(err, unix.ENODATA) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, &os.PathError{Op: "lgetxattr " + name, Path: display, Err: err}
		}
		buf := make([]byte, sz)
		if sz == 0 {
			return buf, true, nil
		}
		n, err := unix.Lgetxattr(path, name, buf)
		switch {
		case errors.Is(err, unix.ERANGE):
			continue
		case errors.Is(err, unix.ENODATA):
			return nil, false, nil
		case err != nil:
			return nil, false, &os.PathError{Op: "lgetxattr " + name, Path: display, Err: err}
		}
		return buf[:n], true, nil
	}
}

func displayPath(rel string) string {
	if rel == "" {
		return RootPath
	}
	return rel
}

func typeName(t uint32) string {
	switch t {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFCHR:
		return "chardev"
	case unix.S_IFBLK:
		return "blockdev"
	case unix.S_IFSOCK:
		return "socket"
	}
	return fmt.Sprintf("type(%#o)", t)
}

func fmtTime(ts unix.Timespec) string {
	return fmt.Sprintf("%d.%09d", ts.Sec, ts.Nsec)
}

func fmtGroup(g []string) string {
	q := make([]string, len(g))
	for i, p := range g {
		q[i] = fmt.Sprintf("%q", p)
	}
	return "[" + strings.Join(q, " ") + "]"
}

func fmtValue(v []byte) string {
	const max = 64
	if len(v) > max {
		return fmt.Sprintf("%q...(%d bytes)", v[:max], len(v))
	}
	return fmt.Sprintf("%q", v)
}

// Stamp is what Snapshot records about one entry.
type Stamp struct {
	Ino   uint64
	Ctime int64 // ns since the epoch
	Mtime int64 // ns since the epoch
	Size  int64
}

// Snapshot records ctime (ns), inode and mtime of every entry under root
// (relative path -> Stamp; the root itself is "."), to prove later that
// nothing was rewritten. Options.IgnoreTop applies; xattrs are not read.
func Snapshot(root string, opt Options) (map[string]Stamp, error) {
	w := &walker{opt: opt}
	t, err := w.walk(root)
	if err != nil {
		return nil, fmt.Errorf("treecmp: snapshot %q: %w", root, err)
	}
	t.close()
	out := make(map[string]Stamp, len(t.entries))
	for p, e := range t.entries {
		out[displayPath(p)] = Stamp{
			Ino:   e.st.Ino,
			Ctime: e.st.Ctim.Nano(),
			Mtime: e.st.Mtim.Nano(),
			Size:  e.st.Size,
		}
	}
	return out, nil
}

// Changed lists, sorted, the paths whose Stamp differs between two
// snapshots, plus paths only in one of them.
func Changed(before, after map[string]Stamp) []string {
	var out []string
	for p, s := range before {
		if t, ok := after[p]; !ok || t != s {
			out = append(out, p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}
