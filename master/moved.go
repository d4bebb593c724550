package master

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/mtree"
	"github.com/georep/georep/master/batch"
)

// A crawl beside the recorder walks a tree that moves under it. An entry
// moved while the walk ran, from a directory it had not listed yet into
// one it had, is never met: its subtree is missing from the crawl's
// records. The journal moves it on the slave afterwards (its RENAME is
// recorded after the crawl began), but what changed in it before the
// crawl began and after the stime was the crawl's to find, and is lost: a
// write that put the file's size and mtime back, a file made or removed,
// an owner changed (the 30-minute soak with rules, whose gaps crawl
// often: a file overwritten in place 1 s before a crawl, in a directory
// renamed 0.1 s into its walk, stayed stale on the slave for good).
//
// So the changelog batches after a live crawl, which replay the journal of
// its walk's time, read it for what moved meanwhile (movedIn): after the
// replay has put the slave's namespace where the master's is, the batch's
// reconciliation crawls every directory moved (renamed, exchanged, or
// recorded as made: what moves into a directory made just before is
// recorded so) whole, and alone the directory now holding every other
// entry moved or made, with the crawl's options (a file changed since the
// stime is compared by content). Before the replay, the slave's nesting
// can be older than the master's, and a directory cannot be placed.
type movedSet struct {
	deep, shallow []gfid.GFID
	o             batch.CrawlOptions
}

func (s *movedSet) empty() bool { return s == nil || len(s.deep)+len(s.shallow) == 0 }

// movedWindow is the time of a live crawl's walk, whose journal the
// batches that follow it read for what moved meanwhile.
type movedWindow struct {
	to int64 // ns: the walk's end
	o  batch.CrawlOptions
}

// movedIn returns, from the records of segs that began before to, the
// directories that were moved (or recorded as made: an entry moved into a
// directory made just before is recorded so, and a directory listed again
// is purged) and the directories that now hold the other entries moved or
// made, where the index has them now.
func (m *Master) movedIn(segs []changelog.Segment, to int64) (deep, shallow []gfid.GFID, err error) {
	moved := map[gfid.GFID]bool{}
	var at []gfidx.Link // names whose entry moved (an exchange's two)
	for _, s := range segs {
		if s.Start >= to {
			break
		}
		if s.Path == "" {
			continue
		}
		_, err := changelog.ReadFile(s.Path, func(r changelog.Record) error {
			if r.Kind != changelog.KindEntry {
				return nil
			}
			switch r.Op {
			case changelog.OpUnlink, changelog.OpRmdir:
			case changelog.OpExchange:
				at = append(at, gfidx.Link{Parent: r.Parent, Name: r.Name}, gfidx.Link{Parent: r.Parent2, Name: r.Name2})
			default:
				// A rename, or an entry recorded as made: new, or one
				// that came from elsewhere (moved into a directory made
				// just before, the recorder lists it; moved in from an
				// excluded place) — and a directory listed again (PURGE).
				moved[r.GFID] = true
			}
			return nil
		})
		if errors.Is(err, os.ErrNotExist) {
			continue // consumed meanwhile by another session of the root
		}
		if err != nil {
			return nil, nil, fmt.Errorf("master: reading %s: %w", s.Path, err)
		}
	}
	if len(moved)+len(at) == 0 {
		return nil, nil, nil
	}
	isDeep, isShallow := map[gfid.GFID]bool{}, map[gfid.GFID]bool{}
	err = m.tree.Idx.View(func(tx *gfidx.Tx) error {
		for _, l := range at {
			if g, ok := tx.Child(l); ok {
				moved[g] = true
			}
		}
		for g := range moved {
			e, err := m.tree.Find(tx, g)
			if errors.Is(err, mtree.ErrGone) {
				continue // removed since, or moved where the journal says later
			}
			if err != nil {
				return err
			}
			unix.Close(e.DirFD)
			if e.St.Mode&unix.S_IFMT == unix.S_IFDIR {
				isDeep[g] = true
			} else if ls := tx.Links(g); len(ls) > 0 {
				for _, l := range ls {
					isShallow[l.Parent] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for g := range isDeep {
		deep = append(deep, g)
	}
	for g := range isShallow {
		if !isDeep[g] {
			shallow = append(shallow, g)
		}
	}
	return deep, shallow, nil
}
