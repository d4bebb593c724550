package delta

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// An Op is one instruction to rebuild the new file. Ops come in file order:
// Offset is where the op's bytes go in the new file, and each op starts where
// the previous one ended (the first at 0).
//
// A copy op has Count >= 1 and empty (Diff: nil) Data: copy blocks Block, Block+1, ...,
// Block+Count-1 of the old file (contiguous in the old file, so one byte
// range; only the last block of the old file may be short). A literal op has
// len(Data) >= 1, Block == 0 and Count == 0: write Data.
type Op struct {
	Offset int64
	Block  int
	Count  int
	Data   []byte
}

// Len is the number of new-file bytes the op produces, given the signature
// it was made against (which must be valid, with the op in range).
func (op Op) Len(sig *Signature) int64 {
	if op.Count == 0 {
		return int64(len(op.Data))
	}
	last := op.Block + op.Count - 1
	return int64(op.Count-1)*int64(sig.BlockSize) + int64(sig.blockLen(last))
}

// Multipliers of the multiplicative hashes of weak sums (2^32/phi and
// 2^64/phi): the table uses the top bits of the 32-bit product, the filter
// bits 32 to 43 and the top bits of the 64-bit one.
const (
	hashMul   = 0x9E3779B1
	filterMul = 0x9E3779B97F4A7C15
)

// filterHit reports whether weak sum s may be in the filter (with
// len(filter) == wmask+1, a power of 2): it tests two bits of one word.
func filterHit(filter []uint64, wmask uint64, s uint32) bool {
	h := uint64(s) * filterMul
	w := filter[h>>46&wmask]
	return w>>(h>>32&63)&1 != 0 && w>>(h>>38&63)&1 != 0
}

// filterAdd adds weak sum s to the filter.
func filterAdd(filter []uint64, wmask uint64, s uint32) {
	h := uint64(s) * filterMul
	filter[h>>46&wmask] |= 1<<(h>>32&63) | 1<<(h>>38&63)
}

// scan rolls the window along the bytes of outs (the bytes leaving it; ins,
// as long, are the bytes entering it) from rolling sums a, b, until the
// filter hits. It returns how far it went, the sums there and whether the
// filter hit; with no hit, i == len(outs) and the window there is untested.
// The hot loop of Diff on changed data: a function of its own so that a, b
// stay in registers.
func scan(outs, ins []byte, a, b, l uint32, filter []uint64) (int, uint32, uint32, bool) {
	ins = ins[:len(outs)]
	if len(filter) == 0 {
		return 0, a, b, false
	}
	wmask := uint(len(filter) - 1)
	for i, out := range outs {
		h := uint64(a&0xffff|b<<16) * filterMul
		w := filter[uint(h>>46)&wmask]
		if w>>(h>>32&63)&1 != 0 && w>>(h>>38&63)&1 != 0 {
			return i, a, b, true
		}
		a += uint32(ins[i]) - uint32(out)
		b += a - l*uint32(out)
	}
	return len(outs), a, b, false
}

// maxChain bounds how many distinct blocks sharing one weak sum are indexed;
// more would make a crafted old file cost O(n²) to index and O(n) per byte
// to search. Identical blocks (same strong hash) are indexed once.
const maxChain = 64

// index finds the full-size blocks of a signature by weak sum.
type index struct {
	// filter is a blocked Bloom filter over the weak sums (two bits in one
	// word per sum, see filterAdd): the inner loop (scan) looks only at it and
	// goes to the table on a hit.
	filter []uint64
	wmask  uint64 // len(filter)-1
	slots  []int32
	tshift uint32 // home slot = (s*hashMul) >> tshift; linear probing
	tmask  uint32
	next   []int32 // next block with the same weak sum and another strong hash; -1 ends
	n      int     // number of full-size blocks (the indexed ones)
}

func log2Ceil(n int) uint32 {
	if n <= 1 {
		return 0
	}
	return uint32(bits.Len(uint(n - 1)))
}

func newIndex(sig *Signature) *index {
	n := int(sig.Size / int64(sig.BlockSize)) // full-size blocks only
	ix := &index{n: n}
	if n == 0 {
		return ix
	}
	// 32 to 64 filter bits per block (false positives on less than 0.4% of
	// the positions), between 512 B and 2 MiB.
	wb := min(max(log2Ceil(n)-1, 6), 18)
	ix.filter = make([]uint64, 1<<wb)
	ix.wmask = 1<<wb - 1
	tb := max(log2Ceil(n)+1, 1)
	ix.slots = make([]int32, 1<<tb)
	ix.tshift = 32 - tb
	ix.tmask = 1<<tb - 1
	ix.next = make([]int32, n)
	for i := range ix.next {
		ix.next[i] = -1
	}
	for i := 0; i < n; i++ {
		w := sig.Weak[i]
		filterAdd(ix.filter, ix.wmask, w)
		j := (w * hashMul) >> ix.tshift
		for ix.slots[j] != 0 && sig.Weak[ix.slots[j]-1] != w {
			j = (j + 1) & ix.tmask
		}
		if ix.slots[j] == 0 {
			ix.slots[j] = int32(i + 1)
			continue
		}
		k := int(ix.slots[j] - 1)
		for depth := 1; ; depth++ {
			if sig.Strong[k] == sig.Strong[i] {
				break // a duplicate of an indexed block
			}
			if ix.next[k] < 0 {
				if depth < maxChain {
					ix.next[k] = int32(i)
				}
				break
			}
			k = int(ix.next[k])
		}
	}
	return ix
}

// differ is the state of one Diff.
type differ struct {
	sig    *Signature
	ix     *index
	r      io.Reader
	emit   func(Op) error
	maxLit int
	L      int

	// Window: buf[0:end] holds new-file bytes base, base+1, ...; p is the
	// start of the current window [p, p+L), lit the start of the literal
	// bytes not yet emitted (lit <= p).
	buf    []byte
	bufMax int // the size buf grows to if the file is not small
	base   int64
	end    int
	p      int
	lit    int
	eof    bool
	sum    Hasher

	// Rolling sums of the window at p, valid when haveSum.
	a, b    uint32
	haveSum bool

	// Strong hash of the window at stream offset strongAt, if haveStrong.
	strong     [strongLen]byte
	strongAt   int64
	haveStrong bool

	last    int  // last matched block, -1 for none
	tryNext bool // the window follows a match: try block last+1 first

	// Pending (not yet emitted) copy op.
	pend               bool
	pendOff            int64
	pendBlock, pendCnt int
	pendEnd            int64 // pendOff + length of the pending copy
}

// Diff reads the new file from r and calls emit for each op, in file order,
// to turn the old file described by sig into it.
//
// r is read sequentially, in large reads, once; memory is bounded by a
// window of maxLiteral + 2*BlockSize + 5 MiB, whatever the file size.
// Literal runs are emitted in pieces of at most maxLiteral bytes (<= 0 means
// DefaultMaxLiteral; larger than MaxLiteral is clamped to it); runs of
// matching blocks that are consecutive in both files are coalesced into
// copy ops that end once they reach MaxCopyRun bytes (so that the slave
// rebuilds a long unchanged stretch while Diff scans the next, not after
// it). An Op's Data aliases Diff's window: it is valid only during the
// emit call and must be neither kept nor modified (copy it to keep it).
//
// Diff returns the length of the new file and its end-to-end hash (see
// Sum), computed in the same pass, for the end-to-end check against Patcher.Sum. An error from
// emit stops Diff and is returned as is. A nil sig means there is no old
// copy: everything is literal.
func Diff(sig *Signature, r io.Reader, maxLiteral int, emit func(Op) error) (n int64, sum Sum, err error) {
	if sig == nil {
		sig = &Signature{BlockSize: MinBlock}
	}
	if err := sig.Validate(); err != nil {
		return 0, sum, err
	}
	if maxLiteral <= 0 {
		maxLiteral = DefaultMaxLiteral
	}
	maxLiteral = min(maxLiteral, MaxLiteral)
	L := sig.BlockSize
	d := &differ{
		sig:    sig,
		ix:     newIndex(sig),
		r:      r,
		emit:   emit,
		maxLit: maxLiteral,
		L:      L,
		// fill keeps at most maxLit+L bytes when it moves the window (at
		// most maxLit literal bytes before p, at most L after), so the
		// free space then is at least readChunk+L+4 MiB: a few reads
		// between moves. The window starts small, for small files.
		bufMax: maxLiteral + 2*L + readChunk + 4<<20,
		buf:    make([]byte, 2*L+smallWindow),
		sum:    NewHasher(),
		last:   -1,
	}
	defer d.sum.Release()
	if err := d.run(); err != nil {
		return 0, sum, err
	}
	return d.base + int64(d.end), d.sum.Sum(), nil
}

// MaxCopyRun bounds the length a copy op reaches before Diff emits it and
// starts the next: one op per run of unchanged blocks would leave the
// Patcher idle until Diff had read the whole run (half of a 1 GiB file
// with a change in the middle).
const MaxCopyRun = 8 << 20

// readChunk is how much fill reads at a time (more if the block is larger).
const readChunk = 1 << 20

// smallWindow+2*L is the window's size until the file proves larger.
const smallWindow = 64 << 10

// fill reads about readChunk more bytes (or up to the end of r), first
// moving the unemitted bytes [lit, end) to the front of the window when the
// free space is short. It never discards bytes at or after lit, and updates
// every position when it moves them. When it returns without error, either
// r has ended or the window at p has a byte after it (end-p > L).
func (d *differ) fill() error {
	if d.eof {
		return nil
	}
	if d.end > 0 && len(d.buf)-d.end < readChunk+d.L {
		k := d.lit
		if len(d.buf) < d.bufMax {
			// The file is not small: grow the window to its full size.
			buf := make([]byte, d.bufMax)
			copy(buf, d.buf[k:d.end])
			d.buf = buf
		} else if k > 0 {
			copy(d.buf, d.buf[k:d.end])
		}
		d.base += int64(k)
		d.end -= k
		d.p -= k
		d.lit = 0
	}
	start := d.end
	zeros := 0
	for d.end < len(d.buf) && (d.end-start < readChunk || d.end-d.p <= d.L) {
		n, err := d.r.Read(d.buf[d.end:])
		if n < 0 || n > len(d.buf)-d.end {
			return errors.New("delta: reader returned an invalid count")
		}
		d.end += n
		if err == io.EOF {
			d.eof = true
			break
		}
		if err != nil {
			return fmt.Errorf("delta: reading new file at %d: %w", d.base+int64(d.end), err)
		}
		if n == 0 {
			if zeros++; zeros >= 100 {
				return io.ErrNoProgress
			}
		}
	}
	_, _ = d.sum.Write(d.buf[start:d.end])
	return nil
}

func (d *differ) run() error {
	L := d.L
	L32 := uint32(L)
	for {
		// Want the window and one byte after it (to roll).
		if d.end-d.p <= L && !d.eof {
			if err := d.fill(); err != nil {
				return err
			}
		}
		if d.end-d.p < L {
			return d.tail()
		}
		if d.ix.n == 0 {
			// Nothing to match: just let the literal run grow.
			d.p = min(d.end-L, d.lit+d.maxLit)
			if err := d.advance(); err != nil {
				if err == errTail {
					return d.tail()
				}
				return err
			}
			continue
		}

		// Just after a match, try the next old block directly: runs of
		// unchanged blocks then cost one strong hash each, and repeated
		// blocks coalesce.
		if d.tryNext {
			d.tryNext = false
			if k := d.last + 1; k < d.ix.n {
				d.strongOf()
				if d.strong == d.sig.Strong[k] {
					if err := d.match(k); err != nil {
						return err
					}
					continue
				}
			}
		}
		if !d.haveSum {
			d.a, d.b = weakSum(d.buf[d.p : d.p+L])
			d.haveSum = true
		}

		// Roll until the filter hits, the window reaches the end of the
		// data read so far, or the literal run is full.
		stop := min(d.end-L, d.lit+d.maxLit)
		i, a, b, hit := scan(d.buf[d.p:stop], d.buf[d.p+L:stop+L], d.a, d.b, L32, d.ix.filter)
		d.p += i
		d.a, d.b = a, b
		if !hit {
			hit = filterHit(d.ix.filter, d.ix.wmask, a&0xffff|b<<16)
		}
		if hit {
			if k := d.lookup(); k >= 0 {
				if err := d.match(k); err != nil {
					return err
				}
				continue
			}
		}
		// No match at p: move on one byte.
		if err := d.advance(); err != nil {
			if err == errTail {
				return d.tail()
			}
			return err
		}
	}
}

// errTail tells run that the last full window was checked: the rest is the
// tail.
var errTail = errors.New("tail")

// advance moves the window one byte on, emitting the literal run first if it
// is full and reading more if needed. It returns errTail at the end of r.
func (d *differ) advance() error {
	if d.p-d.lit >= d.maxLit {
		if err := d.literal(d.lit, d.p); err != nil {
			return err
		}
		d.lit = d.p
	}
	if d.p+d.L >= d.end {
		if d.eof {
			return errTail
		}
		if err := d.fill(); err != nil {
			return err
		}
		if d.p+d.L >= d.end {
			return errTail
		}
	}
	out := uint32(d.buf[d.p])
	d.a += uint32(d.buf[d.p+d.L]) - out
	d.b += d.a - uint32(d.L)*out
	d.p++
	return nil
}

// strongOf computes (or reuses) the strong hash of the window at p.
func (d *differ) strongOf() {
	at := d.base + int64(d.p)
	if d.haveStrong && d.strongAt == at {
		return
	}
	d.strong = strongSum(d.buf[d.p : d.p+d.L])
	d.strongAt = at
	d.haveStrong = true
}

// lookup returns the block matching the window at p, or -1. It prefers the
// block after the last match, so that runs of identical blocks coalesce.
func (d *differ) lookup() int {
	s := d.a&0xffff | d.b<<16
	sig, ix := d.sig, d.ix
	j := (s * hashMul) >> ix.tshift
	for ix.slots[j] != 0 {
		k := int(ix.slots[j] - 1)
		if sig.Weak[k] != s {
			j = (j + 1) & ix.tmask
			continue
		}
		d.strongOf()
		if n := d.last + 1; d.last >= 0 && n < ix.n && sig.Weak[n] == s && sig.Strong[n] == d.strong {
			return n
		}
		for ; k >= 0; k = int(ix.next[k]) {
			if sig.Strong[k] == d.strong {
				return k
			}
		}
		return -1
	}
	return -1
}

// match records that the window at p is block k, and jumps past it.
func (d *differ) match(k int) error {
	if d.lit < d.p {
		if err := d.literal(d.lit, d.p); err != nil {
			return err
		}
	}
	off := d.base + int64(d.p)
	n := d.sig.blockLen(k)
	if d.pend && d.pendBlock+d.pendCnt == k && d.pendEnd == off && d.pendEnd-d.pendOff < MaxCopyRun {
		d.pendCnt++
		d.pendEnd += int64(n)
	} else {
		if err := d.flushCopy(); err != nil {
			return err
		}
		d.pend, d.pendOff, d.pendBlock, d.pendCnt, d.pendEnd = true, off, k, 1, off+int64(n)
	}
	d.p += n
	d.lit = d.p
	d.last = k
	d.haveSum = false
	d.tryNext = true
	return nil
}

func (d *differ) flushCopy() error {
	if !d.pend {
		return nil
	}
	d.pend = false
	return d.emit(Op{Offset: d.pendOff, Block: d.pendBlock, Count: d.pendCnt})
}

// literal emits buf[lo:hi] as literal ops of at most maxLit bytes, after the
// pending copy.
func (d *differ) literal(lo, hi int) error {
	if err := d.flushCopy(); err != nil {
		return err
	}
	for lo < hi {
		m := min(hi, lo+d.maxLit)
		if err := d.emit(Op{Offset: d.base + int64(lo), Data: d.buf[lo:m:m]}); err != nil {
			return err
		}
		lo = m
	}
	return nil
}

// tail finishes at the end of r, when fewer than L bytes remain after the
// last checked window (or exactly L that did not match): the old file's
// short last block may match the very end of the new file; the rest is
// literal.
func (d *differ) tail() error {
	sig := d.sig
	nb := len(sig.Weak)
	if r := int(sig.Size % int64(sig.BlockSize)); nb > 0 && r > 0 && d.end-d.p >= r {
		t := d.buf[d.end-r : d.end]
		a, b := weakSum(t)
		if a&0xffff|b<<16 == sig.Weak[nb-1] && strongSum(t) == sig.Strong[nb-1] {
			d.p = d.end - r
			if err := d.match(nb - 1); err != nil {
				return err
			}
		}
	}
	if err := d.literal(d.lit, d.end); err != nil {
		return err
	}
	d.lit, d.p = d.end, d.end
	return d.flushCopy()
}
