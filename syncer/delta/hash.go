package delta

import "hash"

// pipeHash feeds a hash on another goroutine, one piece at a time, so that
// SHA-256 (the slowest part of Diff and of the Patcher on unchanged data)
// overlaps with the rest of the work. The bytes of a piece given to write
// with async must not be modified until the next write, wait or sum. Each
// piece has its own short-lived goroutine, so an abandoned pipeHash leaks
// nothing.
type pipeHash struct {
	h    hash.Hash
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
