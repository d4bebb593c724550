package delta

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ErrBadOp is wrapped by every error the Patcher returns for an op that is
// invalid in itself or in its place (as opposed to an IO error).
var ErrBadOp = errors.New("delta: bad op")

// sparsePage is the unit of zero skipping: whole pages of zeros, aligned on
// the output offset, are seeked over rather than written.
const sparsePage = 4096

var zeroPage [sparsePage]byte

// copyChunk is the size of the Patcher's reads from the old file.
const copyChunk = 1 << 20

// A Patcher rebuilds the new file on the slave from the ops of a Diff made
// against sig, the signature of old. It is not safe for concurrent use.
//
// Ops must be applied in the order Diff emitted them. Each is checked before
// anything is read or written: the offset must be exactly Written() (ops are
// contiguous and increasing, the first at 0); a copy op's blocks must lie in
// the signature; a literal must be at most MaxLiteral bytes; nothing may
// reach past the limit given to SetLimit. A bad op, a short old file or an IO
// error fails Apply and every later one (the output is then partial and must
// be discarded). Copies read only old bytes [0, sig.Size).
//
// With sparse, whole 4 KiB pages of zeros (aligned on the output offset, so
// any zero run of 8 KiB or more skips at least one) are not written: the
// output must then start empty (or zero where pages are skipped), and the
// caller must truncate it to Written() at the end, since trailing zero pages
// are not written either. Sum covers the skipped zeros all the same.
type Patcher struct {
	sig    *Signature
	sigErr error
	old    io.ReaderAt
	out    io.WriterAt
	sparse bool
	limit  int64 // -1: none
	off    int64
	sum    Hasher
	buf    []byte // copy's chunk
	err    error
}

// NewPatcher returns a Patcher writing to out from offset 0. sig, old and
// out are used until the last Apply; old must hold the bytes sig was made
// from. A nil sig means there is no old copy (only literals are accepted).
// An invalid sig makes every Apply fail.
func NewPatcher(sig *Signature, old io.ReaderAt, out io.WriterAt, sparse bool) *Patcher {
	if sig == nil {
		sig = &Signature{BlockSize: MinBlock}
	}
	return &Patcher{
		sig:    sig,
		sigErr: sig.Validate(),
		old:    old,
		out:    out,
		sparse: sparse,
		limit:  -1,
		sum:    NewHasher(),
	}
}

// SetLimit announces the new file's size: ops that would write past it are
// rejected. n < 0 removes the limit (the default).
func (p *Patcher) SetLimit(n int64) { p.limit = n }

// Written is the number of bytes of the new file rebuilt so far (skipped
// zero pages included): the offset the next op must have, and the size to
// truncate the output to at the end.
func (p *Patcher) Written() int64 { return p.off }

// Sum is the end-to-end hash of the Written() bytes rebuilt so far, in
// order, to be compared with Diff's sum once every op has been applied.
func (p *Patcher) Sum() Sum { return p.sum.Sum() }

// Release frees the Patcher's hasher for other Patchers; the Patcher is
// not used after it.
func (p *Patcher) Release() { p.sum.Release() }

// Err is the error that stopped the Patcher, or nil.
func (p *Patcher) Err() error { return p.err }

func (p *Patcher) bad(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadOp}, args...)...)
}

// check validates op and returns the length of the range it writes and, for
// a copy, where it reads in old.
func (p *Patcher) check(op Op) (n, from int64, err error) {
	if op.Offset != p.off {
		return 0, 0, p.bad("op at offset %d, want %d (ops must be contiguous and in order)", op.Offset, p.off)
	}
	switch {
	case op.Count < 0 || op.Block < 0:
		return 0, 0, p.bad("negative block %d or count %d at %d", op.Block, op.Count, op.Offset)
	case op.Count > 0 && len(op.Data) > 0:
		return 0, 0, p.bad("op at %d has both %d blocks and %d literal bytes", op.Offset, op.Count, len(op.Data))
	case op.Count > 0:
		nb := len(p.sig.Weak)
		if op.Block >= nb || op.Count > nb-op.Block {
			return 0, 0, p.bad("copy of blocks [%d, %d+%d) at %d, old file has %d blocks", op.Block, op.Block, op.Count, op.Offset, nb)
		}
		n = op.Len(p.sig)
		from = int64(op.Block) * int64(p.sig.BlockSize)
	case len(op.Data) > 0:
		if op.Block != 0 {
			return 0, 0, p.bad("literal at %d has block %d", op.Offset, op.Block)
		}
		if len(op.Data) > MaxLiteral {
			return 0, 0, p.bad("literal of %d bytes at %d, more than %d", len(op.Data), op.Offset, MaxLiteral)
		}
		n = int64(len(op.Data))
	default:
		return 0, 0, p.bad("empty op at %d", op.Offset)
	}
	if p.limit >= 0 && n > p.limit-p.off {
		return 0, 0, p.bad("op writes [%d, %d), past the announced size %d", p.off, p.off+n, p.limit)
	}
	return n, from, nil
}

// Apply checks op and carries it out.
func (p *Patcher) Apply(op Op) error {
	if p.err != nil {
		return p.err
	}
	if p.sigErr != nil {
		p.err = p.sigErr
		return p.err
	}
	n, from, err := p.check(op)
	if err != nil {
		p.err = err
		return err
	}
	if op.Count == 0 {
		err = p.write(op.Data)
	} else {
		err = p.copy(from, n)
	}
	if err != nil {
		p.err = err
	}
	return err
}

// copy copies old bytes [from, from+n) to the output at p.off.
func (p *Patcher) copy(from, n int64) error {
	for n > 0 {
		// Chunks end on output page boundaries so zero pages are found
		// whole.
		buf := p.buf
		if len(buf) < copyChunk && int64(len(buf)) < n {
			// Small files get small buffers.
			buf = make([]byte, min(copyChunk, max(64<<10, n)))
			p.buf = buf
		}
		m := min(n, int64(len(buf))-p.off%sparsePage)
		b := buf[:m]
		k, err := p.old.ReadAt(b, from)
		if k < len(b) {
			if err == nil || err == io.EOF {
				err = fmt.Errorf("old file shorter than its signature (%d bytes): %w", p.sig.Size, io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("delta: reading old file at %d: %w", from+int64(k), err)
		}
		if err := p.write(b); err != nil {
			return err
		}
		from += m
		n -= m
	}
	return nil
}

// write writes b at p.off (skipping zero pages when sparse), hashes it and
// advances p.off.
func (p *Patcher) write(b []byte) error {
	_, _ = p.sum.Write(b)
	var err error
	if p.sparse {
		err = p.writeSparse(b, p.off)
	} else {
		_, err = p.out.WriteAt(b, p.off)
	}
	if err != nil {
		return fmt.Errorf("delta: writing output at %d: %w", p.off, err)
	}
	p.off += int64(len(b))
	return nil
}

// writeSparse writes b at off, except whole aligned pages of zeros.
func (p *Patcher) writeSparse(b []byte, off int64) error {
	seg := 0 // start of the bytes not yet written
	for i := 0; i < len(b); {
		end := min(len(b), i+sparsePage-int((off+int64(i))%sparsePage))
		if end-i == sparsePage && bytes.Equal(b[i:end], zeroPage[:]) {
			if seg < i {
				if _, err := p.out.WriteAt(b[seg:i], off+int64(seg)); err != nil {
					return err
				}
			}
			seg = end
		}
		i = end
	}
	if seg < len(b) {
		if _, err := p.out.WriteAt(b[seg:], off+int64(seg)); err != nil {
			return err
		}
	}
	return nil
}
