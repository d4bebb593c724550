package delta

import (
	"sync"

	"github.com/zeebo/xxh3"
)

// The end-to-end hash of a file: 128-bit XXH3 seeded with sumSeed. It
// guards against what can go wrong between the master's read and the
// slave's disk: a bug in the delta code, a block-hash collision, an old
// copy that changed under the slave, memory or disk corruption. It is not
// there against an adversary: the stream is authenticated (mutual TLS),
// and whoever writes the master's tree decides the slave's content anyway.
// rsync (3.2 and later) makes the same choice: XXH3-128 is its default
// whole-file checksum. At 30 GB/s on the bench machine against BLAKE3's
// 4.2 (and 1.8 GB/s against 58 on 4 KiB files), both ends hashing every
// byte cost 0.5 CPU-s per GiB with BLAKE3 and 0.07 with XXH3: a quarter of
// the CPU of a 1 GiB transfer on a two-core machine, and 0.5 CPU-s on W1's
// 100,000 small files (protocol version 4; version 2 and 3 sent BLAKE3-256,
// version 1 SHA-256).
//
// The seed makes it a different function from the block hash (unseeded
// XXH3-128): a file of one block must not have its block hash as its
// end-to-end hash, or a block collision would pass the end-to-end check.

// SumSize is the length of a file's end-to-end hash.
const SumSize = 16

// Sum is a file's end-to-end hash (big-endian, as xxh3.Uint128.Bytes).
type Sum = [SumSize]byte

// sumSeed seeds the end-to-end hash ("georep" in ASCII).
const sumSeed = 0x67656f726570

// hashers recycles end-to-end hashers: an XXH3 hasher holds a 1 KiB buffer,
// and the slave hashes every file it receives (one per file was 120 MB of
// garbage on W1's 100,000 files).
var hashers = sync.Pool{New: func() any { return xxh3.NewSeed(sumSeed) }}

// Hasher computes an end-to-end hash over bytes written in order. It is
// not safe for concurrent use.
type Hasher struct{ h *xxh3.Hasher }

// NewHasher returns a Hasher (a value, so that a file's costs no
// allocation); Release may give it back once its sum is taken.
func NewHasher() Hasher {
	h := hashers.Get().(*xxh3.Hasher)
	h.ResetSeed(sumSeed)
	return Hasher{h: h}
}

// Write adds b to the hash; it never fails.
func (h *Hasher) Write(b []byte) (int, error) { return h.h.Write(b) }

// Sum is the end-to-end hash of everything written so far.
func (h *Hasher) Sum() Sum { return h.h.Sum128().Bytes() }

// Release gives the hasher back for other files; h is not used after it.
// It may be called more than once.
func (h *Hasher) Release() {
	if h.h != nil {
		hashers.Put(h.h)
		h.h = nil
	}
}

// SumOf is the end-to-end hash of b.
func SumOf(b []byte) Sum { return xxh3.Hash128Seed(b, sumSeed).Bytes() }
