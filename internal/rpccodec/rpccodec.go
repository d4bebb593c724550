// Package rpccodec is the protobuf codec of georep's gRPC connections. It
// is gRPC's own, except for the pool the messages are marshalled into:
// gRPC's default pool clears every buffer it hands out, and clearing the
// 256 KiB data chunks was 7 % of the master's CPU on a copy of GOROOT. A
// marshal overwrites every byte of the buffer it keeps, so this pool hands
// buffers out as they were given back.
package rpccodec

import (
	"fmt"
	"math/bits"
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// Codec marshals and unmarshals protobuf messages for gRPC (use it with
// grpc.ForceCodecV2 and grpc.ForceServerCodecV2). Its zero value is not
// usable: make one with New.
type Codec struct {
	pool *Pool
}

var _ encoding.CodecV2 = (*Codec)(nil)

// New returns a codec with a pool of its own.
func New() *Codec { return &Codec{pool: &Pool{}} }

// Pool is the codec's buffer pool. Give it to gRPC's transport as well
// (experimental.BufferPool, experimental.WithBufferPool): the transport
// reads every incoming HTTP/2 data frame into a buffer from its pool, and
// the default one clears each (6 % of all CPU, master, slave and relay
// together, on a 1 GiB file); a frame is read over the whole length it is
// given.
func (c *Codec) Pool() *Pool { return c.pool }

// Name is gRPC's name of the protobuf codec: the wire format is the same.
func (c *Codec) Name() string { return "proto" }

// Marshal encodes v into one buffer from the pool (small messages into a
// plain slice, as gRPC does).
func (c *Codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("rpccodec: cannot marshal %T: not a protobuf message", v)
	}
	// The size is computed once: UseCachedSize reuses it.
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true}
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := c.pool.Get(size)
	b, err := opts.MarshalAppend((*buf)[:0], m)
	if err != nil {
		c.pool.Put(buf)
		return nil, err
	}
	if len(b) != size || cap(b) != cap(*buf) {
		// The message changed between Size and Marshal (it must not).
		c.pool.Put(buf)
		return nil, fmt.Errorf("rpccodec: %T marshalled to %d bytes, sized %d", v, len(b), size)
	}
	*buf = b
	return mem.BufferSlice{mem.NewBuffer(buf, c.pool)}, nil
}

// Unmarshal decodes data into v.
func (c *Codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("rpccodec: cannot unmarshal into %T: not a protobuf message", v)
	}
	buf := data.MaterializeToBuffer(c.pool)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

// Pool is a mem.BufferPool of buffers in power-of-two size classes, from
// 1 KiB (minClass) to 16 MiB (maxClass), handed out without clearing
// them; larger requests are allocated and dropped. Safe for concurrent
// use; the zero value is ready.
type Pool struct {
	classes [maxClass - minClass + 1]sync.Pool
}

const (
	minClass = 10
	maxClass = 24
)

var _ mem.BufferPool = (*Pool)(nil)

// class is the size class of buffers of n bytes (the smallest power of
// two ≥ n, at least 2^minClass).
func class(n int) int {
	if n <= 1<<minClass {
		return minClass
	}
	return bits.Len(uint(n - 1))
}

// Get returns a buffer of length n; its bytes are whatever they were.
func (p *Pool) Get(n int) *[]byte {
	c := class(n)
	if c > maxClass {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.classes[c-minClass].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<c)
	return &b
}

// Put gives a buffer back; one whose capacity is not a class's is dropped.
func (p *Pool) Put(b *[]byte) {
	c := cap(*b)
	if c < 1<<minClass || c > 1<<maxClass || c&(c-1) != 0 {
		return
	}
	p.classes[bits.Len(uint(c))-1-minClass].Put(b)
}
