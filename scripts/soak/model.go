package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// The in-memory model of the master tree: the generator picks its targets
// from it, and updates it only with what the real tree accepted. Names are
// raw bytes in Go strings; paths are relative to the root, "/"-separated,
// "" for the root itself.

type ntype uint8

const (
	tDir ntype = iota
	tFile
	tSymlink
	tFifo
	tSock
)

func (t ntype) String() string {
	switch t {
	case tDir:
		return "dir"
	case tFile:
		return "file"
	case tSymlink:
		return "symlink"
	case tFifo:
		return "fifo"
	case tSock:
		return "socket"
	}
	return "?"
}

// node is one name in the tree. A regular file's node is one link of an
// inode (hardlinks share the inode).
type node struct {
	id       uint64
	name     string
	parent   *node
	typ      ntype
	children map[string]*node // dirs
	ino      *inode           // files
	xattrs   map[string]bool  // dirs' user.* xattr names (files: on ino)
	idx      int              // position in the generator's list for its type
	chain    bool             // part of a deep mkdir chain
	dead     bool
}

// inode is a regular file's data, shared by its links.
type inode struct {
	id     uint64
	size   int64 // apparent size
	links  []*node
	xattrs map[string]bool
	gidx   int // position in groups while it has two links or more, else -1
}

// model holds the tree and the lists the generator samples from.
type model struct {
	root   *node
	dirs   []*node // every directory, root included (index 0)
	files  []*node // every regular file link
	others []*node // symlinks, FIFOs, sockets
	groups []*inode
	chains []*node // heads of live deep chains
	nextID uint64
	bytes  int64 // sum of inode sizes
}

func newModel() *model {
	m := &model{}
	m.root = &node{id: m.id(), typ: tDir, children: map[string]*node{}}
	m.dirs = []*node{m.root}
	return m
}

func (m *model) id() uint64 { m.nextID++; return m.nextID }

// entries counts the names in the tree (the root excluded).
func (m *model) entries() int { return len(m.dirs) - 1 + len(m.files) + len(m.others) }

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func (n *node) path() string {
	if n.parent == nil {
		return ""
	}
	var parts []string
	for x := n; x.parent != nil; x = x.parent {
		parts = append(parts, x.name)
	}
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		b.WriteString(parts[i])
		if i > 0 {
			b.WriteByte('/')
		}
	}
	return b.String()
}

func (n *node) pathLen() int {
	l := 0
	for x := n; x.parent != nil; x = x.parent {
		l += len(x.name)
		if x.parent.parent != nil {
			l++
		}
	}
	return l
}

func (n *node) depth() int {
	d := 0
	for x := n; x.parent != nil; x = x.parent {
		d++
	}
	return d
}

// within reports whether n is a or below it.
func (n *node) within(a *node) bool {
	for x := n; x != nil; x = x.parent {
		if x == a {
			return true
		}
	}
	return false
}

// suffix is the longest path below dir n, relative to n ("/a/b" counts 4).
func (n *node) suffix() int {
	best := 0
	for _, c := range n.children {
		s := 1 + len(c.name)
		if c.typ == tDir {
			s += c.suffix()
		}
		if s > best {
			best = s
		}
	}
	return best
}

// height is how many directory levels lie below dir n (0: none).
func (n *node) height() int {
	h := 0
	for _, c := range n.children {
		if c.typ == tDir {
			h = max(h, 1+c.height())
		}
	}
	return h
}

func (n *node) size() int {
	s := 1
	for _, c := range n.children {
		s += c.size()
	}
	return s
}

// holder returns where n's xattr names are kept (nil: n cannot carry user.* xattrs).
func (n *node) holder() map[string]bool {
	switch n.typ {
	case tDir:
		if n.xattrs == nil {
			n.xattrs = map[string]bool{}
		}
		return n.xattrs
	case tFile:
		if n.ino.xattrs == nil {
			n.ino.xattrs = map[string]bool{}
		}
		return n.ino.xattrs
	}
	return nil
}

// objID identifies what an op acted on across renames: the inode for a
// file (every link), the node otherwise.
func (n *node) objID() uint64 {
	if n.typ == tFile {
		return n.ino.id
	}
	return n.id
}

func (m *model) listFor(t ntype) *[]*node {
	switch t {
	case tDir:
		return &m.dirs
	case tFile:
		return &m.files
	}
	return &m.others
}

func listAdd(l *[]*node, n *node) {
	n.idx = len(*l)
	*l = append(*l, n)
}

func listDel(l *[]*node, n *node) {
	last := (*l)[len(*l)-1]
	(*l)[n.idx] = last
	last.idx = n.idx
	*l = (*l)[:len(*l)-1]
}

// add makes a new node under parent. For files, ino nil makes a new inode.
func (m *model) add(parent *node, name string, t ntype, ino *inode, size int64) *node {
	if parent.children[name] != nil {
		panic(fmt.Sprintf("model: %q already in %q", name, parent.path()))
	}
	n := &node{id: m.id(), name: name, parent: parent, typ: t}
	if t == tDir {
		n.children = map[string]*node{}
	}
	if t == tFile {
		if ino == nil {
			ino = &inode{id: m.id(), size: size, gidx: -1}
			m.bytes += size
		}
		n.ino = ino
		ino.links = append(ino.links, n)
		m.regroup(ino)
	}
	parent.children[name] = n
	listAdd(m.listFor(t), n)
	return n
}

func (m *model) regroup(ino *inode) {
	switch {
	case len(ino.links) >= 2 && ino.gidx < 0:
		ino.gidx = len(m.groups)
		m.groups = append(m.groups, ino)
	case len(ino.links) < 2 && ino.gidx >= 0:
		last := m.groups[len(m.groups)-1]
		m.groups[ino.gidx] = last
		last.gidx = ino.gidx
		m.groups = m.groups[:len(m.groups)-1]
		ino.gidx = -1
	}
}

// remove drops n and, for a directory, everything below it.
func (m *model) remove(n *node) {
	if n.typ == tDir && len(n.children) > 0 {
		// In name order: the lists' order (and so a seed's ops) must not
		// depend on map iteration.
		names := make([]string, 0, len(n.children))
		for name := range n.children {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			m.remove(n.children[name])
		}
	}
	delete(n.parent.children, n.name)
	listDel(m.listFor(n.typ), n)
	if n.typ == tFile {
		ino := n.ino
		for i, l := range ino.links {
			if l == n {
				ino.links = append(ino.links[:i], ino.links[i+1:]...)
				break
			}
		}
		if len(ino.links) == 0 {
			m.bytes -= ino.size
		}
		m.regroup(ino)
	}
	n.dead = true
}

// move renames n to parent/name; whatever was there must be removed first.
func (m *model) move(n, parent *node, name string) {
	if parent.children[name] != nil {
		panic(fmt.Sprintf("model: move over %q in %q", name, parent.path()))
	}
	delete(n.parent.children, n.name)
	n.parent, n.name = parent, name
	parent.children[name] = n
}

func (m *model) setSize(ino *inode, size int64) {
	m.bytes += size - ino.size
	ino.size = size
}

// scanModel builds a model of the real tree at root (names sorted, so two
// identical trees give identical models).
func scanModel(root string) (*model, error) {
	m := newModel()
	inos := map[[2]uint64]*inode{}
	var walk func(dir *node, abs string) error
	walk = func(dir *node, abs string) error {
		names, err := readNames(abs)
		if err != nil {
			return err
		}
		for _, name := range names {
			p := abs + "/" + name
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return fmt.Errorf("lstat %q: %w", p, err)
			}
			var n *node
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFDIR:
				n = m.add(dir, name, tDir, nil, 0)
			case unix.S_IFREG:
				key := [2]uint64{st.Dev, st.Ino}
				ino := inos[key]
				n = m.add(dir, name, tFile, ino, st.Size)
				inos[key] = n.ino
			case unix.S_IFLNK:
				n = m.add(dir, name, tSymlink, nil, 0)
			case unix.S_IFIFO:
				n = m.add(dir, name, tFifo, nil, 0)
			case unix.S_IFSOCK:
				n = m.add(dir, name, tSock, nil, 0)
			default:
				return fmt.Errorf("scan: %q: unexpected file type %#o", p, st.Mode&unix.S_IFMT)
			}
			if h := n.holder(); h != nil {
				xs, err := userXattrs(p)
				if err != nil {
					return err
				}
				for _, x := range xs {
					h[x] = true
				}
			}
			if n.typ == tDir {
				if err := walk(n, p); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(m.root, root); err != nil {
		return nil, fmt.Errorf("scanning %q: %w", root, err)
	}
	xs, err := userXattrs(root)
	if err != nil {
		return nil, err
	}
	for _, x := range xs {
		m.root.holder()[x] = true
	}
	return m, nil
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("readdir %q: %w", dir, err)
	}
	sort.Strings(names)
	return names, nil
}

// userXattrs lists the user.* xattr names of path (not following symlinks), sorted.
func userXattrs(path string) ([]string, error) {
	buf := make([]byte, 4096)
	for {
		n, err := unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("llistxattr %q: %w", path, err)
		}
		var out []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if strings.HasPrefix(s, "user.") {
				out = append(out, s)
			}
		}
		sort.Strings(out)
		return out, nil
	}
}

// dump renders the model as sorted lines (type, path, size, hardlink
// group, xattr names), to compare with dumpTree of the real tree.
func (m *model) dump() []string {
	var out []string
	var walk func(n *node)
	walk = func(n *node) {
		out = append(out, dumpLine(n.typ, n.path(), n))
		for _, c := range n.children {
			walk(c)
		}
	}
	walk(m.root)
	sort.Strings(out)
	return out
}

func dumpLine(t ntype, p string, n *node) string {
	s := fmt.Sprintf("%s %q", t, p)
	if t == tFile {
		var g []string
		for _, l := range n.ino.links {
			g = append(g, l.path())
		}
		sort.Strings(g)
		s += fmt.Sprintf(" size=%d group=%q", n.ino.size, g)
	}
	if h := n.holder(); len(h) > 0 {
		var xs []string
		for x := range h {
			xs = append(xs, x)
		}
		sort.Strings(xs)
		s += fmt.Sprintf(" xattrs=%q", xs)
	}
	return s
}

// dumpTree renders the real tree at root like model.dump.
func dumpTree(root string) ([]string, error) {
	m, err := scanModel(root)
	if err != nil {
		return nil, err
	}
	return m.dump(), nil
}
