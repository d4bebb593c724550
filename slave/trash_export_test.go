package slave

import (
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
)

// LinksForTest counts the links of g the slave's index holds.
func (s *Slave) LinksForTest(g gfid.GFID) int {
	n := 0
	s.tree.idx.View(func(tx *gfidx.Tx) error {
		n = len(tx.Links(g))
		return nil
	})
	return n
}
