package master

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/georep/georep/internal/wire"
	pb "github.com/georep/georep/proto/georep/v1"
)

// FuzzDigestEntry: whatever a slave sends as a verify entry is refused or
// turned into an entry with a valid name and digests of their size; never
// a panic.
func FuzzDigestEntry(f *testing.F) {
	for _, e := range []*pb.DigestEntry{
		{Name: []byte("a"), Mode: 0o100644, Content: make([]byte, 32)},
		{Name: []byte("../x")},
		{Name: []byte("d"), Mode: 0o40755, Sub: make([]byte, 31)},
		{Name: []byte("l"), Target: []byte("t"), LinkKey: []byte("a\x00b")},
	} {
		b, _ := proto.Marshal(e)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var pe pb.DigestEntry
		if proto.Unmarshal(b, &pe) != nil {
			return
		}
		e, err := entryOf(&pe)
		if err != nil {
			return
		}
		if wire.ValidName(e.Name) != nil {
			t.Fatalf("entry with an invalid name accepted: %q", e.Name)
		}
		for _, s := range [][]byte{pe.GetContent(), pe.GetXattrs(), pe.GetSub()} {
			if len(s) != 0 && len(s) != 32 {
				t.Fatalf("digest of %d bytes accepted", len(s))
			}
		}
	})
}
