package rpccodec

import (
	"errors"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/encoding"
)

// Zstd is the name of the compressor the master's unary calls use (see
// wire.DialOptions): entry and metadata ops are runs of alike records —
// the same parent gfid, mode and owner, names with a common stem — that
// zstd's fastest level shrinks to a third or less (a one-shot into a
// pre-seeded slave sent 93 bytes of ops per file uncompressed). Data
// streams are not compressed here: their chunks carry zstd of their own
// where it pays (--compress), and most file data does not shrink.
//
// A peer's message is decompressed only up to gRPC's receive limit
// (wire.MaxMessage); a decoder never holds more than decoderMaxMemory.
const Zstd = "zstd"

// decoderMaxMemory bounds what one decoder allocates for a frame's window
// and output: a hostile frame that claims a larger window is refused.
const decoderMaxMemory = 64 << 20

// The compressor is registered with gRPC's encoding registry once, when
// the package loads: gRPC finds compressors only there, by name (as it
// does its own gzip). It holds nothing but pools.
func init() { encoding.RegisterCompressor(newZstd()) }

type zstdCompressor struct {
	enc, dec sync.Pool
}

func newZstd() *zstdCompressor {
	c := &zstdCompressor{}
	c.enc.New = func() any {
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
			zstd.WithLowerEncoderMem(true))
		return e
	}
	c.dec.New = func() any {
		d, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxMemory(decoderMaxMemory))
		return d
	}
	return c
}

func (c *zstdCompressor) Name() string { return Zstd }

// Compress returns a writer that compresses into w until closed.
func (c *zstdCompressor) Compress(w io.Writer) (io.WriteCloser, error) {
	e, _ := c.enc.Get().(*zstd.Encoder)
	if e == nil {
		return nil, errors.New("rpccodec: no zstd encoder")
	}
	e.Reset(w)
	return &zstdWriter{Encoder: e, pool: &c.enc}, nil
}

type zstdWriter struct {
	*zstd.Encoder
	pool *sync.Pool
}

func (w *zstdWriter) Close() error {
	err := w.Encoder.Close()
	w.pool.Put(w.Encoder)
	w.Encoder = nil
	return err
}

// Decompress returns a reader of r's decompressed bytes; its decoder goes
// back to the pool at the end of the stream or at an error.
func (c *zstdCompressor) Decompress(r io.Reader) (io.Reader, error) {
	d, _ := c.dec.Get().(*zstd.Decoder)
	if d == nil {
		return nil, errors.New("rpccodec: no zstd decoder")
	}
	if err := d.Reset(r); err != nil {
		c.dec.Put(d)
		return nil, err
	}
	return &zstdReader{d: d, pool: &c.dec}, nil
}

type zstdReader struct {
	d    *zstd.Decoder
	pool *sync.Pool
}

func (r *zstdReader) Read(p []byte) (int, error) {
	if r.d == nil {
		return 0, io.EOF
	}
	n, err := r.d.Read(p)
	if err != nil {
		// The stream is done (or broken): the decoder is free again.
		// Reset to nil drops its reference to the source.
		r.d.Reset(nil)
		r.pool.Put(r.d)
		r.d = nil
	}
	return n, err
}
