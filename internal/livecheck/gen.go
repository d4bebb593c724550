package livecheck

import (
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
)

// names is the pool new names are drawn from: few, so that creates find
// names taken and renames replace entries; awkward, so that every layer
// handles bytes, not text.
var names = []string{
	"a", "b", "c", "d", "e",
	"f 1", "new\nline", "tab\tx", "%41", "-dash", "\xff\xfe", "caf\xc3\xa9", "..x", " lead",
}

// long is a 255-byte name, drawn now and then.
var long = strings.Repeat("L", 250) + ".long"

// entry is what the generator knows of one entry of the tree.
type entry struct {
	rel   string
	mode  fs.FileMode
	nlink uint64
	depth int
}

// Gen makes the ops of a seeded churn, looking at the tree as it is
// before each one (so that most of them apply). Two Gens with one seed on
// identical trees make identical ops.
type Gen struct {
	rng  *rand.Rand
	root string
	seq  uint64
	// MaxEntries bounds the tree: removals become likelier as it nears it.
	MaxEntries int
}

// NewGen makes ops for the tree at root from seed.
func NewGen(seed uint64, root string) *Gen {
	return &Gen{rng: rand.New(rand.NewPCG(seed, 0x6c697665)), root: root, MaxEntries: 120}
}

// scan lists the tree (small: a few hundred entries).
func (g *Gen) scan() (dirs, files, others []entry) {
	dirs = append(dirs, entry{rel: "", mode: fs.ModeDir})
	var walk func(rel string, depth int)
	walk = func(rel string, depth int) {
		ents, err := os.ReadDir(path.Join(g.root, rel))
		if err != nil {
			return
		}
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
		for _, de := range ents {
			r := path.Join(rel, de.Name())
			info, err := de.Info()
			if err != nil {
				continue
			}
			e := entry{rel: r, mode: info.Mode(), depth: depth + 1}
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				e.nlink = uint64(st.Nlink)
			}
			switch {
			case info.IsDir():
				dirs = append(dirs, e)
				walk(r, depth+1)
			case info.Mode().IsRegular():
				files = append(files, e)
			default:
				others = append(others, e)
			}
		}
	}
	walk("", 0)
	return dirs, files, others
}

func pick[T any](g *Gen, s []T) T { return s[g.rng.IntN(len(s))] }

func (g *Gen) name() string {
	if g.rng.IntN(40) == 0 {
		return long
	}
	return pick(g, names)
}

// newPath is a name in a random directory of dirs, kept well under
// PATH_MAX.
func (g *Gen) newPath(dirs []entry) string {
	for range 8 {
		d := pick(g, dirs)
		p := path.Join(d.rel, g.name())
		if len(p) < 3800 && d.depth < 14 {
			return p
		}
	}
	return g.name()
}

func (g *Gen) seed() uint64 { g.seq++; return g.rng.Uint64() ^ g.seq }

// Next returns the next change: usually one op, sometimes a few that
// belong together (a name reused at once, a write below a directory that
// is renamed in between).
func (g *Gen) Next() []Op {
	dirs, files, others := g.scan()
	nondirs := append(append([]entry(nil), files...), others...)
	full := len(dirs)+len(nondirs) >= g.MaxEntries
	var hard []entry
	for _, f := range files {
		if f.nlink > 1 {
			hard = append(hard, f)
		}
	}
	type choice struct {
		w  float64
		fn func() []Op
	}
	grow := 1.0
	if full {
		grow = 0.05
	}
	cs := []choice{
		{12 * grow, func() []Op { return []Op{g.create(g.newPath(dirs))} }},
		{4 * grow, func() []Op { return []Op{{Kind: Mkdir, Dest: g.newPath(dirs)}} }},
		{3 * grow, func() []Op { return []Op{{Kind: Symlink, Dest: g.newPath(dirs), Target: g.target(dirs, nondirs)}} }},
		{0.5 * grow, func() []Op { return []Op{{Kind: Mkfifo, Dest: g.newPath(dirs)}} }},
		{0.4 * grow, func() []Op { return []Op{{Kind: MkdirChain, Dest: g.newPath(dirs), N: 20 + g.rng.Int64N(60)}} }},
		{1 * grow, func() []Op {
			return []Op{{Kind: Tmpfile, Dest: g.newPath(dirs), N: g.rng.Int64N(9000), Seed: g.seed()}}
		}},
		{0.3 * grow, func() []Op { return []Op{{Kind: Socket, Dest: g.newPath(dirs)}} }},
	}
	if len(files) > 0 {
		cs = append(cs,
			choice{10, func() []Op { return []Op{g.write(pick(g, files).rel)} }},
			choice{4, func() []Op {
				return []Op{{Kind: Truncate, Path: pick(g, files).rel, N: g.rng.Int64N(40000)}}
			}},
			choice{5 * grow, func() []Op { return []Op{{Kind: Link, Path: pick(g, files).rel, Dest: g.newPath(dirs)}} }},
			choice{3, func() []Op {
				return []Op{{Kind: Setxattr, Path: pick(g, files).rel, Target: g.xname(), N: 1 + g.rng.Int64N(64), Seed: g.seed()}}
			}},
		)
	}
	if len(hard) > 0 {
		// A link of a hardlinked file renamed over another link of its
		// group, or of another group, or moved away.
		cs = append(cs, choice{4, func() []Op {
			src := pick(g, hard)
			var dst string
			if len(hard) > 1 && g.rng.IntN(2) == 0 {
				dst = pick(g, hard).rel
			} else {
				dst = g.newPath(dirs)
			}
			return []Op{{Kind: Rename, Path: src.rel, Dest: dst}}
		}})
	}
	if len(nondirs) > 0 {
		cs = append(cs,
			choice{8, func() []Op {
				src := pick(g, nondirs)
				dst := g.newPath(dirs)
				if g.rng.IntN(3) == 0 {
					dst = pick(g, nondirs).rel // over an existing one
				}
				return []Op{{Kind: Rename, Path: src.rel, Dest: dst}}
			}},
			choice{8 + 20*b2f(full), func() []Op { return []Op{{Kind: Unlink, Path: pick(g, nondirs).rel}} }},
			choice{3, func() []Op {
				return []Op{{Kind: Chmod, Path: pick(g, nondirs).rel, N: int64(pick(g, []int{0o644, 0o600, 0o755, 0o4755, 0o2711, 0o444}))}}
			}},
			choice{2, func() []Op {
				return []Op{{Kind: Chown, Path: pick(g, nondirs).rel, N: g.rng.Int64N(3) * 1000, Off: g.rng.Int64N(3) * 1000}}
			}},
			choice{3, func() []Op { return []Op{{Kind: Utime, Path: pick(g, nondirs).rel, N: 1e18 + g.rng.Int64N(1e17)}} }},
			// Content changed, size and mtime as they were.
			choice{2, func() []Op {
				return []Op{{Kind: Overwrite, Path: pick(g, nondirs).rel, Off: g.rng.Int64N(1 << 20), N: 1 + g.rng.Int64N(4096), Seed: g.seed()}}
			}},
			// A name reused at once: removed and made again.
			choice{3, func() []Op {
				e := pick(g, nondirs)
				return []Op{{Kind: Unlink, Path: e.rel}, g.create(e.rel)}
			}},
			// Two entries swapped (renameat2 RENAME_EXCHANGE), directories too.
			choice{2, func() []Op {
				all := append(append([]entry(nil), nondirs...), dirs[1:]...)
				return []Op{{Kind: Exchange, Path: pick(g, all).rel, Dest: pick(g, all).rel}}
			}},
			// Renamed over another name, and the old name made again.
			choice{3, func() []Op {
				src, dst := pick(g, nondirs), pick(g, nondirs)
				return []Op{{Kind: Rename, Path: src.rel, Dest: dst.rel}, g.create(src.rel)}
			}},
		)
	}
	if len(dirs) > 1 {
		sub := dirs[1:]
		cs = append(cs,
			choice{5, func() []Op {
				src := pick(g, sub)
				dst := g.newPath(dirs)
				if g.rng.IntN(4) == 0 {
					dst = pick(g, sub).rel // over an (empty?) directory
				}
				return []Op{{Kind: Rename, Path: src.rel, Dest: dst}}
			}},
			choice{1.5 + 6*b2f(full), func() []Op { return []Op{{Kind: RemoveAll, Path: pick(g, sub).rel}} }},
			choice{2, func() []Op {
				return []Op{{Kind: Chmod, Path: pick(g, sub).rel, N: int64(pick(g, []int{0o755, 0o2775, 0o1777, 0o700}))}}
			}},
			choice{2, func() []Op { return []Op{{Kind: Utime, Path: pick(g, sub).rel, N: 1e18 + g.rng.Int64N(1e17)}} }},
			choice{1, func() []Op {
				return []Op{{Kind: Setxattr, Path: pick(g, sub).rel, Target: g.xname(), N: 8, Seed: g.seed()}}
			}},
			// Removed and made again at once.
			choice{1.5, func() []Op {
				d := pick(g, sub)
				return []Op{{Kind: RemoveAll, Path: d.rel}, {Kind: Mkdir, Dest: d.rel}}
			}},
		)
		// An ancestor renamed while below it a file is written, before
		// and after.
		var deep []entry
		for _, f := range files {
			if f.depth >= 2 {
				deep = append(deep, f)
			}
		}
		if len(deep) > 0 {
			cs = append(cs, choice{3, func() []Op {
				f := pick(g, deep)
				parts := strings.Split(f.rel, "/")
				k := 1 + g.rng.IntN(len(parts)-1) // the ancestor: parts[:k]
				anc := strings.Join(parts[:k], "/")
				dst := g.newPath(dirs)
				if strings.HasPrefix(dst+"/", anc+"/") {
					dst = g.name()
				}
				moved := dst + "/" + strings.Join(parts[k:], "/")
				return []Op{g.write(f.rel), {Kind: Rename, Path: anc, Dest: dst}, g.write(moved)}
			}})
		}
	}
	if len(files) > 0 || len(dirs) > 1 {
		cs = append(cs, choice{1, func() []Op {
			all := append(append([]entry(nil), files...), dirs[1:]...)
			return []Op{{Kind: Removexattr, Path: pick(g, all).rel, Target: g.xname()}}
		}})
	}
	var sum float64
	for _, c := range cs {
		sum += c.w
	}
	x := g.rng.Float64() * sum
	for _, c := range cs {
		if x < c.w {
			return c.fn()
		}
		x -= c.w
	}
	return cs[0].fn()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (g *Gen) create(rel string) Op {
	n := g.rng.Int64N(6000)
	if g.rng.IntN(10) == 0 {
		n = 64<<10 + g.rng.Int64N(200<<10) // beyond the inline size
	}
	return Op{Kind: Create, Dest: rel, N: n, Seed: g.seed()}
}

func (g *Gen) write(rel string) Op {
	return Op{Kind: Write, Path: rel, Off: g.rng.Int64N(20000), N: 1 + g.rng.Int64N(8000), Seed: g.seed()}
}

func (g *Gen) xname() string { return pick(g, []string{"x", "y", "a b", "\xff"}) }

// target is a symlink target: an entry of the tree (relative), absolute,
// dangling, or odd bytes.
func (g *Gen) target(dirs, nondirs []entry) string {
	switch g.rng.IntN(4) {
	case 0:
		if len(nondirs) > 0 {
			return pick(g, nondirs).rel
		}
		return "a"
	case 1:
		return "/etc/hostname"
	case 2:
		return "../../nowhere/" + g.name()
	}
	return "weird\n\xff%t"
}
