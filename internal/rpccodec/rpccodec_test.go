package rpccodec

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	pb "github.com/georep/georep/proto/georep/v1"
)

func chunk(id uint64, n int, fill byte) *pb.SyncDataRequest {
	return &pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Chunk{Chunk: &pb.FileChunk{Id: id, Offset: 7, Data: bytes.Repeat([]byte{fill}, n)}}}
}

// TestRoundTrip: what the codec marshals is exactly what proto.Marshal
// makes, and unmarshals back, for messages below the pooling threshold,
// in every size class and above the largest; a buffer used before, for a
// larger message of other bytes, leaves nothing of them behind.
func TestRoundTrip(t *testing.T) {
	c := New()
	for _, n := range []int{0, 1, 100, 1000, 5000, 64<<10 - 3, 256 << 10, 1<<20 + 1, 17 << 20} {
		// Dirty the pool's buffers of this class first.
		old, err := c.Marshal(chunk(99, n+16, 0xAA))
		if err != nil {
			t.Fatal(err)
		}
		old.Free()
		msg := chunk(uint64(n), n, 0x55)
		got, err := c.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		want, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Materialize(), want) {
			t.Fatalf("%d bytes of data: marshalled %d bytes that differ from proto.Marshal's %d", n, got.Len(), len(want))
		}
		var back pb.SyncDataRequest
		if err := c.Unmarshal(got, &back); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&back, msg) {
			t.Fatalf("%d bytes of data: did not round-trip", n)
		}
		got.Free()
	}
}

// TestUnmarshalSplit: a message that arrives in several buffers (as gRPC
// reads frames) is put together.
func TestUnmarshalSplit(t *testing.T) {
	c := New()
	msg := chunk(3, 40000, 0x11)
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	var data mem.BufferSlice
	for len(b) > 0 {
		n := min(len(b), 16<<10)
		data = append(data, mem.SliceBuffer(b[:n]))
		b = b[n:]
	}
	var back pb.SyncDataRequest
	if err := c.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&back, msg) {
		t.Fatal("a message in several buffers did not round-trip")
	}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0xff, 0xff})}, &back); err == nil {
		t.Error("garbage unmarshalled without an error")
	}
}

func TestNotProto(t *testing.T) {
	c := New()
	if _, err := c.Marshal("a string"); err == nil {
		t.Error("Marshal of a string: no error")
	}
	var s string
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(nil)}, &s); err == nil {
		t.Error("Unmarshal into a string: no error")
	}
	if c.Name() != "proto" {
		t.Errorf("Name %q", c.Name())
	}
}

func TestPoolClasses(t *testing.T) {
	var p Pool
	for _, tc := range []struct{ n, cap int }{{0, 1 << 10}, {1, 1 << 10}, {1024, 1024}, {1025, 2048}, {300 << 10, 512 << 10}, {16 << 20, 16 << 20}, {16<<20 + 1, 16<<20 + 1}} {
		b := p.Get(tc.n)
		if len(*b) != tc.n || cap(*b) != tc.cap {
			t.Errorf("Get(%d): len %d cap %d, want cap %d", tc.n, len(*b), cap(*b), tc.cap)
		}
		p.Put(b)
	}
	// A buffer given back is handed out again for its class (sync.Pool
	// may drop it, so only what comes back is checked).
	b := p.Get(3000)
	(*b)[0] = 42
	p.Put(b)
	if again := p.Get(2100); cap(*again) != 4096 || len(*again) != 2100 {
		t.Errorf("Get(2100) after Put: len %d cap %d", len(*again), cap(*again))
	}
	odd := make([]byte, 3000)
	p.Put(&odd) // not a class's capacity: dropped, not handed out short
	for i := 0; i < 10; i++ {
		if g := p.Get(4096); cap(*g) < 4096 {
			t.Fatalf("Get(4096) returned cap %d", cap(*g))
		}
	}
}
