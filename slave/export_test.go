package slave

import (
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
)

// SetLinkForTest adds (add) or drops one link of the slave's index, as an
// index that lost track of a name, or learnt it late, would.
func (s *Slave) SetLinkForTest(g, parent gfid.GFID, name string, add bool) error {
	return s.tree.idx.Update(func(tx *gfidx.Tx) error {
		l := gfidx.Link{Parent: parent, Name: name}
		if add {
			return tx.AddLink(g, l)
		}
		return tx.RemoveLink(g, l)
	})
}

// ACLValueForTest is an access ACL in the kernel's form (see aclValue).
var ACLValueForTest = aclValue
