package recorder

import (
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/rules"
)

// excluded reports whether the rules (Config.Rules) leave out name in the
// watched directory dir (isDir: it is a directory). What they leave out is
// not journaled: it gets no gfid, no index entry and no record, and an
// excluded directory is not watched, so nothing made in it is seen (its
// events come from no watched directory and are dropped). A name moved
// from an excluded place into the tree is recorded as made; one moved the
// other way as removed.
//
// The directory's path is read from the index at each call, not cached:
// directories move all the time, and a stale path judges by the wrong
// rules (package batch learned that). A directory the index cannot place
// is taken as included: what cannot be told is replicated, never dropped.
// Only the name is matched: the directory is watched, so its own path is
// included.
func (r *Recorder) excluded(dir gfid.GFID, name string, isDir bool) bool {
	if r.cfg.Rules.Len() == 0 {
		return false
	}
	p := name
	if dir != gfid.Root {
		var dp string
		var err error
		r.t.Idx.View(func(tx *gfidx.Tx) error {
			dp, err = tx.Path(dir)
			return nil
		})
		if err != nil {
			return false
		}
		if dp != "" && dp != "." {
			p = dp + "/" + name
		}
	}
	return r.cfg.Rules.Match(p, isDir) == rules.Exclude
}

// indexed reports whether the index has a name for g.
func (r *Recorder) indexed(g gfid.GFID) bool {
	ok := false
	r.t.Idx.View(func(tx *gfidx.Tx) error {
		ok = len(tx.Links(g)) > 0
		return nil
	})
	return ok
}

// leftTree reports whether directory g, still there, is no longer the
// tree's: moved out of the root (elsewhere on its filesystem), or to a
// place the rules leave out. Either way its rename's second half came from
// no watched directory, so it was taken for a removal; it is not one the
// recorder lost track of (a gap). Where it is comes from the kernel's
// name of the open directory (/proc/self/fd); when that cannot be read,
// it is taken as still in the tree.
func (r *Recorder) leftTree(g gfid.GFID) bool {
	fd, ok := r.dirs[g]
	if !ok {
		var err error
		if fd, err = r.in.reopen(g); err != nil {
			return false
		}
		defer unix.Close(fd)
	}
	root, err := os.Readlink(beneath.FDPath(r.t.Root.FD()))
	if err != nil {
		return false
	}
	p, err := os.Readlink(beneath.FDPath(fd))
	if err != nil {
		return false
	}
	if root == "/" {
		root = ""
	}
	rel, in := strings.CutPrefix(p, root+"/")
	if !in {
		return true
	}
	return r.cfg.Rules.Excluded(rel, true)
}
