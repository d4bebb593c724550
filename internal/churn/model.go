package churn

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// kind is what the model knows about an entry.
type kind uint8

const (
	kindDir kind = iota + 1
	kindFile
	kindSymlink
	kindOther // FIFOs, device nodes, sockets
)

func kindOf(mode uint32) kind {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return kindDir
	case unix.S_IFREG:
		return kindFile
	case unix.S_IFLNK:
		return kindSymlink
	}
	return kindOther
}

// sortedSet is a sorted list of relative paths. Paths sharing a prefix are
// contiguous, so a directory's descendants ("d/"...) are one range.
type sortedSet []string

func (s *sortedSet) add(p string) {
	if i, found := slices.BinarySearch(*s, p); !found {
		*s = slices.Insert(*s, i, p)
	}
}

func (s *sortedSet) del(p string) {
	if i, found := slices.BinarySearch(*s, p); found {
		*s = slices.Delete(*s, i, i+1)
	}
}

// prefixRange returns [i, j) of the paths starting with pre.
func (s sortedSet) prefixRange(pre string) (int, int) {
	i := sort.SearchStrings(s, pre)
	j := i + sort.Search(len(s)-i, func(k int) bool { return !strings.HasPrefix(s[i+k], pre) })
	return i, j
}

// model is the churn's picture of the tree: every entry's relative path
// ("" for the root) and kind. Only the churn changes the tree, so the model
// is kept exact by updating it after each successful operation; resync
// rebuilds it from disk all the same, as a safety net.
type model struct {
	dirs     sortedSet // includes the root ""
	files    sortedSet // regular files
	others   sortedSet // symlinks, FIFOs, devices, sockets
	kinds    map[string]kind
	symlinks int
}

func newModel() *model {
	m := &model{kinds: map[string]kind{}}
	m.add("", kindDir)
	return m
}

func (m *model) set(k kind) *sortedSet {
	switch k {
	case kindDir:
		return &m.dirs
	case kindFile:
		return &m.files
	}
	return &m.others
}

func (m *model) add(rel string, k kind) {
	if old, ok := m.kinds[rel]; ok {
		if old == k {
			return
		}
		m.removeOne(rel)
	}
	m.kinds[rel] = k
	m.set(k).add(rel)
	if k == kindSymlink {
		m.symlinks++
	}
}

func (m *model) removeOne(rel string) {
	k, ok := m.kinds[rel]
	if !ok {
		return
	}
	delete(m.kinds, rel)
	m.set(k).del(rel)
	if k == kindSymlink {
		m.symlinks--
	}
}

// descendants returns the paths strictly below directory rel, sorted.
func (m *model) descendants(rel string) []string {
	pre := rel + "/"
	if rel == "" {
		pre = ""
	}
	var out []string
	for _, s := range []sortedSet{m.dirs, m.files, m.others} {
		i, j := s.prefixRange(pre)
		for _, p := range s[i:j] {
			if p != "" {
				out = append(out, p)
			}
		}
	}
	sort.Strings(out)
	return out
}

// isEmptyDir reports whether directory rel has no entries in the model.
func (m *model) isEmptyDir(rel string) bool {
	pre := rel + "/"
	for _, s := range []sortedSet{m.dirs, m.files, m.others} {
		if i, j := s.prefixRange(pre); i < j {
			return false
		}
	}
	return true
}

// remove drops rel and, for a directory, everything below it.
func (m *model) remove(rel string) {
	if m.kinds[rel] == kindDir {
		for _, p := range m.descendants(rel) {
			m.removeOne(p)
		}
	}
	m.removeOne(rel)
}

// move renames rel to dst (which the caller has cleared), with everything
// below it.
func (m *model) move(rel, dst string) {
	k, ok := m.kinds[rel]
	if !ok {
		return
	}
	type moved struct {
		p string
		k kind
	}
	var sub []moved
	if k == kindDir {
		for _, p := range m.descendants(rel) {
			sub = append(sub, moved{p, m.kinds[p]})
		}
	}
	for _, e := range sub {
		m.removeOne(e.p)
	}
	m.removeOne(rel)
	m.add(dst, k)
	for _, e := range sub {
		m.add(dst+e.p[len(rel):], e.k)
	}
}

// subtreeBounds returns, for directory rel, the longest path suffix and the
// greatest extra depth of its descendants relative to rel itself.
func (m *model) subtreeBounds(rel string) (extraLen, extraDepth int) {
	for _, p := range m.descendants(rel) {
		s := p[len(rel):]
		extraLen = max(extraLen, len(s))
		extraDepth = max(extraDepth, strings.Count(s, "/"))
	}
	return extraLen, extraDepth
}

// load builds a model of the tree at root from disk: names sorted, a
// top-level reserved name skipped.
func load(root string) (*model, error) {
	m := newModel()
	var walk func(rel string) error
	walk = func(rel string) error {
		dir := join(root, rel)
		f, err := os.Open(dir)
		if err != nil {
			return fmt.Errorf("open %q: %w", dir, err)
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return fmt.Errorf("read directory %q: %w", dir, err)
		}
		sort.Strings(names)
		for _, n := range names {
			if rel == "" && n == Reserved {
				continue
			}
			child := join(rel, n)
			var st unix.Stat_t
			if err := unix.Lstat(join(root, child), &st); err != nil {
				return fmt.Errorf("lstat %q: %w", join(root, child), err)
			}
			k := kindOf(st.Mode)
			m.add(child, k)
			if k == kindDir {
				if err := walk(child); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(""); err != nil {
		return nil, err
	}
	return m, nil
}

// equal reports the first difference between two models, or "".
func (m *model) diff(o *model) string {
	for p, k := range m.kinds {
		if ok := o.kinds[p]; ok != k {
			return fmt.Sprintf("%q: kind %d, other %d", p, k, ok)
		}
	}
	for p, k := range o.kinds {
		if _, ok := m.kinds[p]; !ok {
			return fmt.Sprintf("%q: missing, other has kind %d", p, k)
		}
	}
	return ""
}

// join joins a relative path ("" for the root) to a base.
func join(base, rel string) string {
	switch {
	case rel == "":
		return base
	case base == "":
		return rel
	}
	return base + "/" + rel
}

// parent returns the relative path of rel's directory ("" for the root).
func parent(rel string) string {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return ""
}

// depth is the number of components of rel (0 for the root).
func depth(rel string) int {
	if rel == "" {
		return 0
	}
	return strings.Count(rel, "/") + 1
}

// within reports whether rel is dir or below it.
func within(rel, dir string) bool {
	return dir == "" || rel == dir || strings.HasPrefix(rel, dir+"/")
}
