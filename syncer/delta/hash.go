package delta

import (
	"hash"
	"sync"

	"github.com/zeebo/blake3"
)

// The end-to-end hash of a file: BLAKE3 with 256-bit output. A
// cryptographic hash, as the end-to-end check wants (a strong hash, not
// the per-block XXH3 that only picks blocks), at 2.3 times SHA-256's speed
// (SHA-NI) on large files on the bench machine, and the same on small
// ones: both ends hash every byte of every file, so on a 1 GiB file
// SHA-256 cost each side 0.6 s of CPU.

// SumSize is the length of a file's end-to-end hash.
const SumSize = 32

// sums recycles end-to-end hashers: a BLAKE3 hasher holds about 10 KiB
// (eight chunks, for its SIMD code), and one per file was half of the
// slave's allocations on 200,000 small files (2 GB), which made the GC run
// every 40 ms and the heap peak grow.
var sums = sync.Pool{New: func() any { return blake3.New() }}

// NewSum returns a hash that computes the end-to-end hash. ReleaseSum may
// give it back once its sum is taken.
func NewSum() hash.Hash {
	h := sums.Get().(*blake3.Hasher)
	h.Reset()
	return h
}

// ReleaseSum gives back a hash from NewSum that is no longer used.
func ReleaseSum(h hash.Hash) {
	if b, ok := h.(*blake3.Hasher); ok {
		sums.Put(b)
	}
}

// SumOf is the end-to-end hash of b.
func SumOf(b []byte) [SumSize]byte { return blake3.Sum256(b) }

// pipeHash feeds a hash on another goroutine, one piece at a time, so that
// the end-to-end hash (the slowest part of Diff and of the Patcher on
// unchanged data)
// overlaps with the rest of the work. The bytes of a piece given to write
// with async must not be modified until the next write, wait or sum. Each
// piece has its own short-lived goroutine, so an abandoned pipeHash leaks
// nothing.
type pipeHash struct {
	h    hash.Hash // nil once released
	done chan struct{}
	busy bool
}

// pipeMin is the smallest piece hashed on another goroutine.
const pipeMin = 256 << 10

func newPipeHash(h hash.Hash) *pipeHash { return &pipeHash{h: h, done: make(chan struct{}, 1)} }

// write hashes b after the pieces before it: on another goroutine if async
// and b is large, else before returning.
func (p *pipeHash) write(b []byte, async bool) {
	p.wait()
	if !async || len(b) < pipeMin {
		p.h.Write(b)
		return
	}
	p.busy = true
	go func() {
		p.h.Write(b)
		p.done <- struct{}{}
	}()
}

// wait returns once every piece written so far is hashed.
func (p *pipeHash) wait() {
	if p.busy {
		<-p.done
		p.busy = false
	}
}

// sum appends the hash of everything written to b.
func (p *pipeHash) sum(b []byte) []byte {
	p.wait()
	return p.h.Sum(b)
}

// release gives the hasher back (see sums); the pipeHash is not used
// after it.
func (p *pipeHash) release() {
	p.wait()
	if p.h != nil {
		ReleaseSum(p.h)
		p.h = nil
	}
}
