package sample

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Compare walks the trees master and replica side by side and returns
// their differences, one line each, in path order: entries missing or
// extra on the replica, and for entries on both sides their type,
// permission bits (with setuid, setgid and sticky), numeric owner, size,
// content, mtime to the nanosecond, symlink target, device number,
// user.* xattrs (and trusted.* ones when running as root), and hardlink
// groups (entries sharing an inode on one side must share one on the
// other). Entries are read with lstat and symlinks never followed; names
// are raw bytes, shown quoted. The roots' own metadata is not compared.
//
// Names in ignoreTop are skipped directly under both roots, with all
// below them; xattrs whose names start with one of ignoreXattrPrefixes
// are skipped everywhere. The error is for a tree that cannot be read.
func Compare(master, replica string, ignoreTop, ignoreXattrPrefixes []string) ([]string, error) {
	c := &comparer{
		m:             side{root: trimRoot(master), ino: map[string]inode{}},
		r:             side{root: trimRoot(replica), ino: map[string]inode{}},
		ignoreTop:     ignoreTop,
		ignoreXattr:   ignoreXattrPrefixes,
		trustedXattrs: os.Geteuid() == 0,
	}
	for _, root := range []string{master, replica} {
		if st, err := os.Lstat(root); err != nil {
			return nil, fmt.Errorf("sample: %w", err)
		} else if !st.IsDir() {
			return nil, fmt.Errorf("sample: %q is not a directory", root)
		}
	}
	if err := c.dir(""); err != nil {
		return nil, err
	}
	c.hardlinks()
	return c.diffs, nil
}

type inode struct{ dev, ino uint64 }

// side is one of the two trees.
type side struct {
	root string
	// ino holds the inode of every non-directory on both sides that has
	// more than one link on either.
	ino map[string]inode
}

func (s *side) abs(rel string) string {
	if rel == "" {
		return s.root
	}
	return s.root + "/" + rel
}

// peers lists the other paths sharing rel's inode on this side.
func (s *side) peers(rel string, rels []string) []string {
	var out []string
	for _, o := range rels {
		if o != rel && s.ino[o] == s.ino[rel] {
			out = append(out, o)
		}
	}
	return out
}

type comparer struct {
	m, r          side
	ignoreTop     []string
	ignoreXattr   []string
	trustedXattrs bool
	linked        []string // paths recorded in m.ino and r.ino, in walk order
	diffs         []string
}

func (c *comparer) add(rel, format string, args ...any) {
	c.diffs = append(c.diffs, fmt.Sprintf("%q: ", rel)+fmt.Sprintf(format, args...))
}

// dir compares the contents of the directory rel, present on both sides.
func (c *comparer) dir(rel string) error {
	mn, err := readDirNames(c.m.abs(rel))
	if err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	rn, err := readDirNames(c.r.abs(rel))
	if err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	if rel == "" {
		mn, rn = c.dropIgnored(mn), c.dropIgnored(rn)
	}
	for len(mn) > 0 || len(rn) > 0 {
		switch {
		case len(rn) == 0 || len(mn) > 0 && mn[0] < rn[0]:
			c.oneSided(c.m.abs(join(rel, mn[0])), join(rel, mn[0]), "missing on the replica")
			mn = mn[1:]
		case len(mn) == 0 || rn[0] < mn[0]:
			c.oneSided(c.r.abs(join(rel, rn[0])), join(rel, rn[0]), "extra on the replica")
			rn = rn[1:]
		default:
			if err := c.entry(join(rel, mn[0])); err != nil {
				return err
			}
			mn, rn = mn[1:], rn[1:]
		}
	}
	return nil
}

func (c *comparer) dropIgnored(names []string) []string {
	var out []string
	for _, n := range names {
		ignored := false
		for _, ig := range c.ignoreTop {
			ignored = ignored || n == ig
		}
		if !ignored {
			out = append(out, n)
		}
	}
	return out
}

// oneSided reports an entry (and so all below it) found on one side only.
func (c *comparer) oneSided(path, rel, what string) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err == nil {
		what += " (" + kind(st.Mode) + ")"
	}
	c.add(rel, "%s", what)
}

// entry compares rel, present on both sides, and what is below it.
func (c *comparer) entry(rel string) error {
	var ms, rs unix.Stat_t
	if err := unix.Lstat(c.m.abs(rel), &ms); err != nil {
		return fmt.Errorf("sample: lstat %s: %w", c.m.abs(rel), err)
	}
	if err := unix.Lstat(c.r.abs(rel), &rs); err != nil {
		return fmt.Errorf("sample: lstat %s: %w", c.r.abs(rel), err)
	}
	typ := ms.Mode & unix.S_IFMT
	if typ != rs.Mode&unix.S_IFMT {
		c.add(rel, "type: %s on the master, %s on the replica", kind(ms.Mode), kind(rs.Mode))
		return nil
	}
	if mp, rp := ms.Mode&0o7777, rs.Mode&0o7777; mp != rp {
		c.add(rel, "mode: %04o on the master, %04o on the replica", mp, rp)
	}
	if ms.Uid != rs.Uid || ms.Gid != rs.Gid {
		c.add(rel, "owner: %d:%d on the master, %d:%d on the replica", ms.Uid, ms.Gid, rs.Uid, rs.Gid)
	}
	switch typ {
	case unix.S_IFREG:
		if ms.Size != rs.Size {
			c.add(rel, "size: %d on the master, %d on the replica", ms.Size, rs.Size)
		} else if off, err := firstDifference(c.m.abs(rel), c.r.abs(rel)); err != nil {
			return err
		} else if off >= 0 {
			c.add(rel, "content: differs from byte %d", off)
		}
	case unix.S_IFLNK:
		mt, err := os.Readlink(c.m.abs(rel))
		if err != nil {
			return fmt.Errorf("sample: %w", err)
		}
		rt, err := os.Readlink(c.r.abs(rel))
		if err != nil {
			return fmt.Errorf("sample: %w", err)
		}
		if mt != rt {
			c.add(rel, "symlink target: %q on the master, %q on the replica", mt, rt)
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if ms.Rdev != rs.Rdev {
			c.add(rel, "device: %d,%d on the master, %d,%d on the replica",
				unix.Major(ms.Rdev), unix.Minor(ms.Rdev), unix.Major(rs.Rdev), unix.Minor(rs.Rdev))
		}
	}
	if ms.Mtim != rs.Mtim {
		c.add(rel, "mtime: %s on the master, %s on the replica", fmtTime(ms.Mtim), fmtTime(rs.Mtim))
	}
	if err := c.xattrs(rel); err != nil {
		return err
	}
	if typ == unix.S_IFDIR {
		return c.dir(rel)
	}
	if ms.Nlink > 1 || rs.Nlink > 1 {
		c.m.ino[rel] = inode{uint64(ms.Dev), ms.Ino}
		c.r.ino[rel] = inode{uint64(rs.Dev), rs.Ino}
		c.linked = append(c.linked, rel)
	}
	return nil
}

// hardlinks reports entries whose hardlink peers differ between the
// sides. Both sides of a split group are reported.
func (c *comparer) hardlinks() {
	for _, rel := range c.linked {
		mp, rp := c.m.peers(rel, c.linked), c.r.peers(rel, c.linked)
		if strings.Join(mp, "\x00") != strings.Join(rp, "\x00") {
			c.add(rel, "hardlinks: same file as %s on the master, as %s on the replica", fmtList(mp), fmtList(rp))
		}
	}
}

// xattrs compares the xattrs of rel that are compared at all.
func (c *comparer) xattrs(rel string) error {
	mx, err := c.readXattrs(c.m.abs(rel))
	if err != nil {
		return err
	}
	rx, err := c.readXattrs(c.r.abs(rel))
	if err != nil {
		return err
	}
	var names []string
	for n := range mx {
		names = append(names, n)
	}
	for n := range rx {
		if _, ok := mx[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		mv, inM := mx[n]
		rv, inR := rx[n]
		switch {
		case !inR:
			c.add(rel, "xattr %q: missing on the replica", n)
		case !inM:
			c.add(rel, "xattr %q: extra on the replica", n)
		case mv != rv:
			c.add(rel, "xattr %q: %q on the master, %q on the replica", n, mv, rv)
		}
	}
	return nil
}

// readXattrs reads the user.* (and trusted.*, as root) xattrs of path,
// without following a symlink, except the ignored ones.
func (c *comparer) readXattrs(path string) (map[string]string, error) {
	list, err := xattrCall(func(buf []byte) (int, error) { return unix.Llistxattr(path, buf) })
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sample: llistxattr %s: %w", path, err)
	}
	out := map[string]string{}
	for _, n := range strings.Split(string(list), "\x00") {
		if !(strings.HasPrefix(n, "user.") || c.trustedXattrs && strings.HasPrefix(n, "trusted.")) || c.ignoredXattr(n) {
			continue
		}
		v, err := xattrCall(func(buf []byte) (int, error) { return unix.Lgetxattr(path, n, buf) })
		if err != nil {
			return nil, fmt.Errorf("sample: lgetxattr %s %s: %w", n, path, err)
		}
		out[n] = string(v)
	}
	return out, nil
}

func (c *comparer) ignoredXattr(name string) bool {
	for _, p := range c.ignoreXattr {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// xattrCall runs an l*xattr call with a buffer large enough for its answer.
func xattrCall(call func([]byte) (int, error)) ([]byte, error) {
	for {
		n, err := call(nil)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, nil
		}
		buf := make([]byte, n)
		n, err = call(buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew meanwhile
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// firstDifference streams two files of the same size and returns the
// offset of their first differing byte, or -1.
func firstDifference(a, b string) (int64, error) {
	fa, err := os.Open(a)
	if err != nil {
		return 0, fmt.Errorf("sample: %w", err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return 0, fmt.Errorf("sample: %w", err)
	}
	defer fb.Close()
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	for off := int64(0); ; {
		na, erra := io.ReadFull(fa, ba)
		nb, errb := io.ReadFull(fb, bb)
		if n := min(na, nb); !bytes.Equal(ba[:n], bb[:n]) {
			for i := range n {
				if ba[i] != bb[i] {
					return off + int64(i), nil
				}
			}
		}
		if na != nb {
			return off + int64(min(na, nb)), nil // one changed size meanwhile
		}
		off += int64(na)
		eofA := erra == io.EOF || erra == io.ErrUnexpectedEOF
		eofB := errb == io.EOF || errb == io.ErrUnexpectedEOF
		switch {
		case erra != nil && !eofA:
			return 0, fmt.Errorf("sample: read %s: %w", a, erra)
		case errb != nil && !eofB:
			return 0, fmt.Errorf("sample: read %s: %w", b, errb)
		case eofA || eofB:
			return -1, nil
		}
	}
}

func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFREG:
		return "file"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	}
	return fmt.Sprintf("type %#o", mode&unix.S_IFMT)
}

func fmtTime(ts unix.Timespec) string { return fmt.Sprintf("%d.%09d", ts.Sec, ts.Nsec) }

func fmtList(rels []string) string {
	if len(rels) == 0 {
		return "nothing else"
	}
	q := make([]string, len(rels))
	for i, r := range rels {
		q[i] = fmt.Sprintf("%q", r)
	}
	return strings.Join(q, ", ")
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func trimRoot(root string) string {
	if t := strings.TrimRight(root, "/"); t != "" {
		return t
	}
	return "/"
}
