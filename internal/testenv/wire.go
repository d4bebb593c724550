package testenv

import pb "github.com/georep/georep/proto/georep/v1"

// DataChunks returns the file data a SyncData request carries, wherever
// it rides: a FileChunk, a small file's header, or the headers of an
// InlineFiles message. For tests that count or tamper with data on the
// wire.
func DataChunks(req *pb.SyncDataRequest) []*pb.FileChunk {
	var cs []*pb.FileChunk
	add := func(c *pb.FileChunk) {
		if c != nil {
			cs = append(cs, c)
		}
	}
	add(req.GetChunk())
	add(req.GetHeader().GetInlineData())
	for _, h := range req.GetInlineFiles().GetHeaders() {
		add(h.GetInlineData())
	}
	return cs
}
