package batch

import (
	"errors"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/rules"
)

// dirVerdict is what the rules say of a directory.
type dirVerdict struct {
	path     string // relative to the root ("" for the root)
	excluded bool   // it, or a parent, is excluded
	known    bool   // the index gave its path
}

// dirRule says where directory g is now and whether the rules leave it
// out, from the index. Not cached: directories move within a batch, and a
// stale path in a cache left the slave's copies of moved directories in
// place (the quick soak with rules).
func (b *Batch) dirRule(tx *gfidx.Tx, g gfid.GFID) dirVerdict {
	var v dirVerdict
	if g == gfid.Root {
		v = dirVerdict{known: true}
	} else if p, err := tx.Path(g); err == nil {
		if p == "." {
			p = ""
		}
		v = dirVerdict{path: p, excluded: b.cfg.Rules.Excluded(p, true), known: true}
	}
	return v
}

// excluded reports whether the rules leave out name in directory parent
// (isDir: it is a directory). A directory whose path the index cannot
// tell is taken as included: what cannot be told is replicated, never
// dropped.
func (b *Batch) excluded(tx *gfidx.Tx, parent gfid.GFID, name string, isDir bool) bool {
	if b.cfg.Rules.Len() == 0 {
		return false
	}
	d := b.dirRule(tx, parent)
	if !d.known {
		return false
	}
	if d.excluded {
		return true
	}
	p := name
	if d.path != "" {
		p = d.path + "/" + name
	}
	return b.cfg.Rules.Match(p, isDir) == rules.Exclude
}

// linksExcluded reports whether every index link of g is excluded (isDir:
// g is a directory): its data and metadata go nowhere.
func (b *Batch) linksExcluded(tx *gfidx.Tx, g gfid.GFID, isDir bool) bool {
	if b.cfg.Rules.Len() == 0 || g == gfid.Root {
		return false
	}
	links := tx.Links(g)
	if len(links) == 0 {
		return false
	}
	for _, l := range links {
		if !b.excluded(tx, l.Parent, l.Name, isDir) {
			return false
		}
	}
	return true
}

// errExcluded: the entry's every name is left out by the rules.
var errExcluded = errors.New("excluded by the rules")

// dataExcluded reports whether a D record's file is excluded wherever it
// is.
func (b *Batch) dataExcluded(g gfid.GFID) bool {
	if b.cfg.Rules.Len() == 0 {
		return false
	}
	ex := false
	b.cfg.Tree.Idx.View(func(tx *gfidx.Tx) error {
		ex = b.linksExcluded(tx, g, false)
		return nil
	})
	return ex
}

// compareByContent reports whether the crawl's file r is one of
// Config.ComparePaths.
func (b *Batch) compareByContent(tx *gfidx.Tx, r *changelog.Record) bool {
	if len(b.cfg.ComparePaths) == 0 {
		return false
	}
	p := r.Name
	if r.Parent != gfid.Root {
		dp, err := tx.Path(r.Parent)
		if err != nil {
			return false
		}
		if dp != "" && dp != "." {
			p = dp + "/" + r.Name
		}
	}
	return b.cfg.ComparePaths[p]
}
