package slave_test

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/georep/georep/internal/bulkconn"
	"github.com/georep/georep/internal/gfid"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/syncer/delta"
	"github.com/klauspost/compress/zstd"
)

// openBulk dials a data connection to the fixture's slave and names it on
// stream d.
func (f *fixture) openBulk(d *dataStream) net.Conn {
	f.t.Helper()
	tok, err := bulkconn.NewToken()
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := bulkconn.Dial(ctx, f.addr, nil, tok)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_BulkOpen{BulkOpen: &pb.BulkOpen{Token: tok[:]}}})
	return c
}

// bulkChunk sends data at off of file id on the data connection c, its
// descriptor on the stream first.
func (d *dataStream) bulkChunk(c net.Conn, id uint64, off int64, data []byte) {
	d.t.Helper()
	d.record(id, off, data)
	d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Chunk{Chunk: &pb.FileChunk{Id: id, Offset: off, BulkLength: int64(len(data))}}})
	if _, err := c.Write(data); err != nil {
		d.t.Fatalf("writing the data connection: %v", err)
	}
}

// TestDataConnection: a file's chunks may come on the data connection,
// mixed with chunks in messages, compressed or not; the file is built
// from all of them in order and checked against the end-to-end hash.
func TestDataConnection(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"))
	d := f.openData(f.tok)
	c := f.openBulk(d)
	content := bytes.Repeat([]byte("bulk data, "), 100_000) // 1.1 MB
	d.header(1, F, int64(len(content)), 5e9)
	d.expectWant(1, true)
	d.bulkChunk(c, 1, 0, content[:300_000])
	d.chunk(1, 300_000, string(content[300_000:400_000]))
	// Compressed on the connection: the frame's bytes are there, the
	// raw length in the descriptor.
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	raw := content[400_000:600_000]
	z := enc.EncodeAll(raw, nil)
	d.record(1, 400_000, raw)
	d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Chunk{Chunk: &pb.FileChunk{Id: 1, Offset: 400_000, Compressed: true, RawLength: int64(len(raw)), BulkLength: int64(len(z))}}})
	if _, err := c.Write(z); err != nil {
		t.Fatal(err)
	}
	d.bulkChunk(c, 1, 600_000, content[600_000:])
	d.end(1, false)
	if r := d.expectResult(1).GetResult(); r.GetStatus() != stOK {
		t.Fatalf("result %v: %s", r.GetStatus(), r.GetError())
	}
	d.commit()
	if got := readFile(t, f.path("f")); got != string(content) {
		t.Fatalf("f has %d bytes, want %d", len(got), len(content))
	}
}

// TestDataConnectionRefused: a chunk on a data connection the stream never
// opened, a malformed BulkOpen, a second one, a chunk too large or with
// bytes in both places, and a connection that ends before a chunk's
// bytes, each end the stream with a clear error and change nothing.
func TestDataConnectionRefused(t *testing.T) {
	content := bytes.Repeat([]byte("x"), 64<<10)
	for _, tc := range []struct {
		name string
		code codes.Code
		msg  string
		run  func(f *fixture, d *dataStream)
	}{
		{"chunk before BulkOpen", codes.InvalidArgument, "before BulkOpen", func(f *fixture, d *dataStream) {
			d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Chunk{Chunk: &pb.FileChunk{Id: 1, BulkLength: 10}}})
		}},
		{"short token", codes.InvalidArgument, "token", func(f *fixture, d *dataStream) {
			d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_BulkOpen{BulkOpen: &pb.BulkOpen{Token: []byte("abc")}}})
		}},
		{"second BulkOpen", codes.InvalidArgument, "second BulkOpen", func(f *fixture, d *dataStream) {
			f.openBulk(d)
			f.openBulk(d)
		}},
		{"chunk too large", codes.InvalidArgument, "bytes on the data connection", func(f *fixture, d *dataStream) {
			f.openBulk(d)
			d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Chunk{Chunk: &pb.FileChunk{Id: 1, BulkLength: 64 << 20}}})
		}},
		{"negative length", codes.InvalidArgument, "bytes on the data connection", func(f *fixture, d *dataStream) {
			f.openBulk(d)
			d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Chunk{Chunk: &pb.FileChunk{Id: 1, BulkLength: -1}}})
		}},
		{"bytes in both places", codes.InvalidArgument, "both", func(f *fixture, d *dataStream) {
			f.openBulk(d)
			d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Chunk{Chunk: &pb.FileChunk{Id: 1, Data: []byte("x"), BulkLength: 1}}})
		}},
		{"connection ends early", codes.Unavailable, "reading the data connection", func(f *fixture, d *dataStream) {
			c := f.openBulk(d)
			d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Chunk{Chunk: &pb.FileChunk{Id: 1, BulkLength: int64(len(content))}}})
			if _, err := c.Write(content[:1000]); err != nil {
				t.Fatal(err)
			}
			c.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			F := newGFID(t)
			f.ok(opCreate(F, gfid.Root, "f"))
			before := lstat(t, f.path("f"))
			d := f.openData(f.tok)
			d.header(1, F, int64(len(content)), 5e9)
			d.expectWant(1, true)
			tc.run(f, d)
			var err error
			for err == nil {
				_, err = d.st.Recv()
			}
			if grpcCode(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("stream ended with %v; want %v mentioning %q", err, tc.code, tc.msg)
			}
			waitFor(t, "the staging file to go", func() bool {
				for _, n := range listNames(t, f.root) {
					if strings.HasPrefix(n, tmpPrefix) {
						return false
					}
				}
				return true
			})
			if st := lstat(t, f.path("f")); st.Ino != before.Ino || st.Size != 0 {
				t.Fatalf("f changed: size %d", st.Size)
			}
			// The slave serves on: a new stream, with a data connection,
			// delivers the file.
			d2 := f.openData(f.tok)
			c := f.openBulk(d2)
			d2.header(2, F, int64(len(content)), 5e9)
			d2.expectWant(2, true)
			d2.bulkChunk(c, 2, 0, content)
			d2.end(2, false)
			if r := d2.expectResult(2).GetResult(); r.GetStatus() != stOK {
				t.Fatalf("after the refused stream: %v: %s", r.GetStatus(), r.GetError())
			}
			d2.commit()
			if st := lstat(t, f.path("f")); st.Size != int64(len(content)) || st.Mode&unix.S_IFMT != unix.S_IFREG {
				t.Fatalf("f has %d bytes after the good stream", st.Size)
			}
		})
	}
}

// FuzzBulkChunk sends a chunk whose bytes are said to come on the data
// connection, with fuzzed lengths, bytes in the message too or not, a
// BulkOpen or not (with a token of fuzzed length), and fuzzed bytes on
// the connection, which then closes. The slave answers with a result or
// ends the stream as invalid or unavailable; it leaves no staging file,
// writes nothing outside its root, and serves on.
func FuzzBulkChunk(f *testing.F) {
	f.Add(true, uint8(16), int64(4), []byte{}, []byte("data"))
	f.Add(true, uint8(16), int64(8), []byte{}, []byte("data"))
	f.Add(true, uint8(16), int64(2), []byte{}, []byte("data"))
	f.Add(true, uint8(16), int64(4), []byte("x"), []byte("data"))
	f.Add(false, uint8(16), int64(4), []byte{}, []byte("data"))
	f.Add(true, uint8(3), int64(4), []byte{}, []byte("data"))
	f.Add(true, uint8(16), int64(-1), []byte{}, []byte("data"))
	f.Add(true, uint8(16), int64(1<<40), []byte{}, []byte("data"))
	f.Fuzz(func(t *testing.T, open bool, tokLen uint8, bulkLen int64, inMsg, onConn []byte) {
		fx := newFixture(t)
		F := newGFID(t)
		fx.ok(opCreate(F, gfid.Root, "f"))
		st := fuzzDataStream(t, fx)
		send := func(m *pb.SyncDataRequest) bool { return st.Send(m) == nil }
		ok := send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Open{Open: &pb.DataOpen{SessionToken: fx.tok}}})
		var conn net.Conn
		if ok && open {
			tok, err := bulkconn.NewToken()
			if err != nil {
				t.Fatal(err)
			}
			if tokLen == 16 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				conn, err = bulkconn.Dial(ctx, fx.addr, nil, tok)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
			}
			name := tok[:]
			if tokLen != 16 {
				name = bytes.Repeat(tok[:1], int(tokLen)) // malformed
			}
			ok = send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_BulkOpen{BulkOpen: &pb.BulkOpen{Token: name}}})
		}
		size := int64(len(inMsg))
		if bulkLen > 0 && bulkLen <= 4<<20 {
			size += bulkLen
		}
		ok = ok && send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Header{Header: &pb.FileHeader{Id: 1, Gfid: gb(F), Size: size, Mode: unix.S_IFREG | 0o644, MtimeNs: 1e9}}})
		result, streamErr := fuzzOneFile(st, ok, func() bool {
			sum := delta.SumOf(append(append([]byte{}, inMsg...), onConn...))
			ok := send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Chunk{Chunk: &pb.FileChunk{Id: 1, Data: inMsg, BulkLength: bulkLen}}})
			if conn != nil {
				// The bytes, then the end of the connection: a short
				// one must not leave the slave waiting.
				_, _ = conn.Write(onConn)
				if tc, ok := conn.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
			}
			return ok && send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_End{End: &pb.FileEnd{Id: 1, Sum: sum[:]}}})
		})
		fuzzCheckEnd(t, result, streamErr, codes.InvalidArgument, codes.Unavailable)
		fuzzDataAfter(t, fx)
	})
}
