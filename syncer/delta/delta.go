// Package delta is the rsync algorithm: the slave, which holds an old copy
// of a file, sends a Signature of it (a weak rolling checksum and a strong
// hash per fixed-size block); the master runs Diff over the new file against
// that signature and emits a stream of Ops — "copy these blocks of your old
// copy" or "write these literal bytes" — and the slave rebuilds the new file
// with a Patcher. Only the bytes that are not found in the old copy travel as
// literals.
//
// The package is pure: it does no file or network IO of its own (it reads
// the io.Reader / io.ReaderAt and writes the io.WriterAt it is given) and
// knows nothing of gRPC or of georep's types.
//
// Checksums:
//   - weak: rsync's rolling checksum s = a&0xffff | b<<16 with
//     a = Σ x_i and b = Σ (L-i)·x_i over the block's L bytes (no char
//     offset), updated in O(1) per byte while Diff slides over the new file;
//   - strong: 128-bit XXH3 (github.com/zeebo/xxh3 Hash128, unseeded, in its
//     canonical big-endian byte form) of the block. It is not a
//     cryptographic hash: it only picks which block to copy;
//   - end to end: seeded XXH3-128 (see Sum) of the whole new file,
//     computed by Diff while it reads and by the Patcher over everything
//     it writes. A mismatch (a
//     strong-hash collision, an old copy that changed under the slave, a
//     bug) must make the caller discard the result and fall back to a full
//     transfer.
package delta

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/zeebo/xxh3"
)

// Block size limits. BlockSize stays within [MinBlock, MaxBlock] unless the
// file is so large (> MaxBlock*MaxBlocks = 128 GiB) that it would have more
// than MaxBlocks blocks; then the block grows, up to HardMaxBlock.
const (
	MinBlock     = 1024
	MaxBlock     = 128 << 10
	MaxBlocks    = 1 << 20
	HardMaxBlock = 16 << 20 // the largest block size a Signature may have
)

// Literal run limits for Diff and the Patcher.
const (
	DefaultMaxLiteral = 256 << 10 // Diff's literal piece size when maxLiteral <= 0
	MaxLiteral        = 4 << 20   // larger maxLiteral is clamped; the Patcher rejects longer literals
)

// signatureVersion is the first byte of a marshaled Signature.
const signatureVersion = 1

// strongLen is the length of a strong hash; weakLen the length of a weak one.
const (
	strongLen = 16
	weakLen   = 4
)

// BlockSize picks the block length for a file of size bytes, rsync-style:
// about sqrt(size), rounded up to a multiple of 8, clamped to
// [MinBlock, MaxBlock], then raised (in multiples of 8, at most to
// HardMaxBlock) so that the file has at most MaxBlocks blocks.
func BlockSize(size int64) int {
	if size <= 0 {
		return MinBlock
	}
	l := int64(math.Sqrt(float64(size)))
	l = (l + 7) &^ 7
	l = max(l, MinBlock)
	l = min(l, MaxBlock)
	if (size+l-1)/l > MaxBlocks {
		l = (size + MaxBlocks - 1) / MaxBlocks
		l = (l + 7) &^ 7
		l = min(l, HardMaxBlock)
	}
	return int(l)
}

// numBlocks is the number of blocks (the last one possibly short) of a file
// of size bytes cut in blocks of l bytes. size >= 0 and l >= 1.
func numBlocks(size int64, l int) int64 {
	n := size / int64(l)
	if size%int64(l) != 0 {
		n++
	}
	return n
}

// Signature describes the slave's old copy of a file, block by block.
// Block i covers old bytes [i*BlockSize, min((i+1)*BlockSize, Size)): all
// blocks are BlockSize long except the last, which may be short.
type Signature struct {
	BlockSize int
	Size      int64             // old file size
	Weak      []uint32          // rolling checksum (a&0xffff | b<<16) per block
	Strong    [][strongLen]byte // XXH3-128 per block, big-endian
}

// Len is the number of blocks.
func (s *Signature) Len() int { return len(s.Weak) }

// blockLen is the length of block i.
func (s *Signature) blockLen(i int) int {
	if i == len(s.Weak)-1 {
		if r := int(s.Size % int64(s.BlockSize)); r != 0 {
			return r
		}
	}
	return s.BlockSize
}

// Validate checks that the signature is self-consistent: a block size in
// [1, HardMaxBlock], a non-negative size, and exactly ceil(Size/BlockSize)
// weak and strong sums. Diff and the Patcher refuse an invalid signature.
func (s *Signature) Validate() error {
	if s.BlockSize < 1 || s.BlockSize > HardMaxBlock {
		return fmt.Errorf("delta: signature block size %d out of range [1, %d]", s.BlockSize, HardMaxBlock)
	}
	if s.Size < 0 {
		return fmt.Errorf("delta: signature size %d is negative", s.Size)
	}
	n := numBlocks(s.Size, s.BlockSize)
	if int64(len(s.Weak)) != n || int64(len(s.Strong)) != n {
		return fmt.Errorf("delta: signature has %d weak and %d strong sums, want %d for size %d and block size %d",
			len(s.Weak), len(s.Strong), n, s.Size, s.BlockSize)
	}
	return nil
}

// Sign reads the old file from r — exactly size bytes, sequentially, in
// reads of about 1 MiB; whatever follows is not read — and computes its
// signature with BlockSize(size). A reader that ends before size bytes gives
// an error wrapping io.ErrUnexpectedEOF.
func Sign(r io.Reader, size int64) (*Signature, error) {
	return SignBlockSize(r, size, BlockSize(size))
}

// SignBlockSize is Sign with a chosen block size in [1, HardMaxBlock]
// (mostly for tests: small blocks exercise the matching on small files).
func SignBlockSize(r io.Reader, size int64, blockSize int) (*Signature, error) {
	sig, err := newSignature(size, blockSize)
	if err != nil {
		return nil, err
	}
	if err := sig.signRange(r, 0, len(sig.Weak)); err != nil {
		return nil, err
	}
	return sig, nil
}

// parallelSignMin is the smallest file SignAt splits between goroutines.
const parallelSignMin = 16 << 20

// SignAt is Sign over a ReaderAt: the file's blocks are cut in up to
// workers contiguous parts (files of at least 16 MiB), each read and summed
// on its own goroutine. The slave signs its old copy before the master can
// start a delta, so this is on a big file's critical path.
func SignAt(r io.ReaderAt, size int64, workers int) (*Signature, error) {
	sig, err := newSignature(size, BlockSize(size))
	if err != nil {
		return nil, err
	}
	n := len(sig.Weak)
	if size < parallelSignMin || workers < 2 {
		workers = 1
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		from, to := n*w/workers, n*(w+1)/workers
		off := int64(from) * int64(sig.BlockSize)
		end := min(int64(to)*int64(sig.BlockSize), size)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = sig.signRange(io.NewSectionReader(r, off, end-off), from, to)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return sig, nil
}

// newSignature checks the arguments and makes room for the sums.
func newSignature(size int64, blockSize int) (*Signature, error) {
	if blockSize < 1 || blockSize > HardMaxBlock {
		return nil, fmt.Errorf("delta: block size %d out of range [1, %d]", blockSize, HardMaxBlock)
	}
	if size < 0 {
		return nil, fmt.Errorf("delta: negative size %d", size)
	}
	n := numBlocks(size, blockSize)
	if n > math.MaxInt32 {
		return nil, fmt.Errorf("delta: %d blocks is too many", n)
	}
	return &Signature{
		BlockSize: blockSize,
		Size:      size,
		Weak:      make([]uint32, n),
		Strong:    make([][strongLen]byte, n),
	}, nil
}

// signRange reads blocks [from, to) from r, which starts at block from, and
// sums them.
func (sig *Signature) signRange(r io.Reader, from, to int) error {
	blockSize := sig.BlockSize
	size := min(int64(to)*int64(blockSize), sig.Size) - int64(from)*int64(blockSize)
	// Read whole blocks at a time, about 1 MiB per read.
	per := max(1, (1<<20)/blockSize)
	bufLen := int64(per * blockSize)
	buf := make([]byte, min(bufLen, size))
	var off int64
	i := from
	for off < size {
		m := min(int64(len(buf)), size-off)
		if _, err := io.ReadFull(r, buf[:m]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("delta: reading old file at %d: %w", int64(from)*int64(blockSize)+off, err)
		}
		for p := buf[:m]; len(p) > 0; i++ {
			blk := p[:min(len(p), blockSize)]
			a, b := weakSum(blk)
			sig.Weak[i] = a&0xffff | b<<16
			sig.Strong[i] = strongSum(blk)
			p = p[len(blk):]
		}
		off += m
	}
	return nil
}

// weakSum returns rsync's a = Σ x_i and b = Σ (len-i)·x_i (mod 2^32) over p.
// b is accumulated as the sum of the running prefix sums of a, eight bytes
// a step, SWAR-style: the eight bytes of a little-endian word are split
// into two words of four 16-bit lanes (even and odd bytes), and one
// multiplication per word gathers the lanes' sum (a) or their dot product
// with the weights 8..1 (b) in its top lane. No lane overflows 16 bits
// (at most 255·36 = 9,180), so no carry crosses lanes. About four times
// the byte-at-a-time loop's speed: Sign runs it over the slave's whole
// old copy before the master can start a delta.
func weakSum(p []byte) (a, b uint32) {
	const (
		even  = 0x00ff00ff00ff00ff
		ones  = 0x0001000100010001
		wEven = 2 | 4<<16 | 6<<32 | 8<<48 // weights of bytes 6, 4, 2, 0
		wOdd  = 1 | 3<<16 | 5<<32 | 7<<48 // weights of bytes 7, 5, 3, 1
	)
	// Four words a step: their sums and weighted sums are independent of
	// each other, so they do not wait on the running a and b.
	for len(p) >= 32 {
		v0 := binary.LittleEndian.Uint64(p)
		v1 := binary.LittleEndian.Uint64(p[8:])
		v2 := binary.LittleEndian.Uint64(p[16:])
		v3 := binary.LittleEndian.Uint64(p[24:])
		l0, h0 := v0&even, v0>>8&even
		l1, h1 := v1&even, v1>>8&even
		l2, h2 := v2&even, v2>>8&even
		l3, h3 := v3&even, v3>>8&even
		s0 := uint32(((l0 + h0) * ones) >> 48)
		s1 := uint32(((l1 + h1) * ones) >> 48)
		s2 := uint32(((l2 + h2) * ones) >> 48)
		s3 := uint32(((l3 + h3) * ones) >> 48)
		w := uint32((l0*wEven+h0*wOdd)>>48) + uint32((l1*wEven+h1*wOdd)>>48) +
			uint32((l2*wEven+h2*wOdd)>>48) + uint32((l3*wEven+h3*wOdd)>>48)
		b += 32*a + w + 24*s0 + 16*s1 + 8*s2
		a += s0 + s1 + s2 + s3
		p = p[32:]
	}
	for len(p) >= 8 {
		v := binary.LittleEndian.Uint64(p)
		lo, hi := v&even, v>>8&even
		b += 8*a + uint32((lo*wEven+hi*wOdd)>>48)
		a += uint32(((lo + hi) * ones) >> 48)
		p = p[8:]
	}
	for _, x := range p {
		a += uint32(x)
		b += a
	}
	return a, b
}

// strongSum is the strong hash of a block.
func strongSum(p []byte) [strongLen]byte {
	return xxh3.Hash128(p).Bytes()
}

// MarshalBinary encodes the signature compactly (for a protobuf bytes
// field): a version byte (1), then uvarints block size, size and block count,
// then the weak sums (4 bytes each, little-endian) and then the strong hashes
// (16 bytes each).
func (s *Signature) MarshalBinary() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	n := len(s.Weak)
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+n*(weakLen+strongLen))
	b = append(b, signatureVersion)
	b = binary.AppendUvarint(b, uint64(s.BlockSize))
	b = binary.AppendUvarint(b, uint64(s.Size))
	b = binary.AppendUvarint(b, uint64(n))
	for _, w := range s.Weak {
		b = binary.LittleEndian.AppendUint32(b, w)
	}
	for i := range s.Strong {
		b = append(b, s.Strong[i][:]...)
	}
	return b, nil
}

// errBadSignature is wrapped by every UnmarshalBinary error.
var errBadSignature = errors.New("delta: bad signature encoding")

// UnmarshalBinary decodes what MarshalBinary encoded. It checks everything —
// the version, the block size range, a count equal to ceil(size/block size),
// and a length of exactly count*20 bytes after the header — so its
// allocations are bounded by len(b); it never panics. On error s is left
// unchanged. The decoded signature does not alias b.
func (s *Signature) UnmarshalBinary(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty", errBadSignature)
	}
	if b[0] != signatureVersion {
		return fmt.Errorf("%w: version %d, want %d", errBadSignature, b[0], signatureVersion)
	}
	b = b[1:]
	var hdr [3]uint64
	for i, name := range []string{"block size", "size", "count"} {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return fmt.Errorf("%w: bad %s varint", errBadSignature, name)
		}
		hdr[i] = v
		b = b[k:]
	}
	bs, size, count := hdr[0], hdr[1], hdr[2]
	if bs < 1 || bs > HardMaxBlock {
		return fmt.Errorf("%w: block size %d out of range [1, %d]", errBadSignature, bs, HardMaxBlock)
	}
	if size > math.MaxInt64 {
		return fmt.Errorf("%w: size %d too large", errBadSignature, size)
	}
	if want := numBlocks(int64(size), int(bs)); count != uint64(want) {
		return fmt.Errorf("%w: %d blocks, want %d for size %d and block size %d", errBadSignature, count, want, size, bs)
	}
	// count <= len(b)/20 before anything is allocated.
	if count > uint64(len(b))/(weakLen+strongLen) || uint64(len(b)) != count*(weakLen+strongLen) {
		return fmt.Errorf("%w: %d bytes of sums for %d blocks, want %d", errBadSignature, len(b), count, count*(weakLen+strongLen))
	}
	n := int(count)
	weak := make([]uint32, n)
	strong := make([][strongLen]byte, n)
	for i := range weak {
		weak[i] = binary.LittleEndian.Uint32(b[i*weakLen:])
	}
	b = b[n*weakLen:]
	for i := range strong {
		copy(strong[i][:], b[i*strongLen:])
	}
	*s = Signature{BlockSize: int(bs), Size: int64(size), Weak: weak, Strong: strong}
	return nil
}
