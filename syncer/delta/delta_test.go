package delta

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"testing/iotest"
)

// memFile is an in-memory io.WriterAt that grows as needed and counts the
// bytes actually written.
type memFile struct {
	b       []byte
	written int64
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	copy(m.b[off:], p)
	m.written += int64(len(p))
	return len(p), nil
}

func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	rand.NewChaCha8(s).Read(b)
	return b
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

type stats struct {
	ops, copies, literalOps int
	literal, copied         int64
}

// roundTrip signs old (blockSize 0: the default), diffs new against it,
// patches old into a fresh output and checks the output, the length and the
// sums. It returns what the ops carried.
func roundTrip(t testing.TB, old, new []byte, blockSize, maxLit int) stats {
	t.Helper()
	var sig *Signature
	var err error
	if blockSize == 0 {
		sig, err = Sign(bytes.NewReader(old), int64(len(old)))
	} else {
		sig, err = SignBlockSize(bytes.NewReader(old), int64(len(old)), blockSize)
	}
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	// Through the wire format, as the slave would send it.
	enc, err := sig.MarshalBinary()
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	var sig2 Signature
	if err := sig2.UnmarshalBinary(enc); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	out := &memFile{}
	p := NewPatcher(&sig2, bytes.NewReader(old), out, false)
	p.SetLimit(int64(len(new)))
	limit := maxLit
	if limit <= 0 {
		limit = DefaultMaxLiteral
	}
	var st stats
	var prevCopyEnd = -1
	var prevCopyLen int64
	var prevOff int64 = -1
	n, sum, err := Diff(sig, bytes.NewReader(new), maxLit, func(op Op) error {
		st.ops++
		if op.Offset <= prevOff {
			t.Errorf("op offset %d after %d", op.Offset, prevOff)
		}
		prevOff = op.Offset
		if op.Count > 0 {
			st.copies++
			st.copied += op.Len(sig)
			if op.Data != nil {
				t.Errorf("copy op with data")
			}
			if op.Block == prevCopyEnd && prevCopyLen < MaxCopyRun {
				t.Errorf("copy of block %d not coalesced with the previous copy (%d bytes)", op.Block, prevCopyLen)
			}
			if l := op.Len(sig); l >= MaxCopyRun+int64(sig.BlockSize) {
				t.Errorf("copy op of %d bytes, more than MaxCopyRun (%d) and a block", l, MaxCopyRun)
			}
			prevCopyEnd, prevCopyLen = op.Block+op.Count, op.Len(sig)
		} else {
			st.literalOps++
			st.literal += int64(len(op.Data))
			if len(op.Data) == 0 || len(op.Data) > limit {
				t.Errorf("literal of %d bytes, limit %d", len(op.Data), limit)
			}
			prevCopyEnd = -1
		}
		return p.Apply(op)
	})
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	if n != int64(len(new)) {
		t.Fatalf("Diff length %d, want %d", n, len(new))
	}
	if want := SumOf(new); sum != want {
		t.Fatalf("Diff sum %x, want %x", sum, want)
	}
	if p.Sum() != sum {
		t.Fatalf("Patcher sum %x, Diff sum %x", p.Sum(), sum)
	}
	if p.Written() != n {
		t.Fatalf("Patcher wrote %d, want %d", p.Written(), n)
	}
	if !bytes.Equal(out.b, new) {
		t.Fatalf("rebuilt file differs (len %d, want %d)", len(out.b), len(new))
	}
	if st.literal+st.copied != n {
		t.Fatalf("literal %d + copied %d != %d", st.literal, st.copied, n)
	}
	return st
}

func TestBlockSize(t *testing.T) {
	for _, c := range []struct {
		size int64
		want int
	}{
		{0, MinBlock}, {1, MinBlock}, {1 << 20, 1024}, {10 << 20, 3240},
		{1 << 30, 32768}, {5 << 30, 73272}, {1 << 40, 1 << 20}, {1 << 50, HardMaxBlock},
	} {
		got := BlockSize(c.size)
		if got != c.want {
			t.Errorf("BlockSize(%d) = %d, want %d", c.size, got, c.want)
		}
	}
	for _, size := range []int64{1, 999, 1 << 20, 1<<30 + 7, 100 << 30, 129 << 30, 1 << 40, 1<<44 - 1, 1 << 50} {
		l := BlockSize(size)
		if l%8 != 0 || l < MinBlock || l > HardMaxBlock {
			t.Errorf("BlockSize(%d) = %d: not a multiple of 8 in range", size, l)
		}
		if size <= int64(HardMaxBlock)*MaxBlocks && numBlocks(size, l) > MaxBlocks {
			t.Errorf("BlockSize(%d) = %d gives %d blocks", size, l, numBlocks(size, l))
		}
	}
}

func TestRoundTrip(t *testing.T) {
	const L = 1024 // BlockSize of files up to 1 MiB
	r10 := randBytes(1, 10<<20)
	r100k := randBytes(2, 100_000)
	blk := randBytes(3, L)
	rep := bytes.Repeat(blk, 1000)
	ins := randBytes(4, 10)
	big := randBytes(5, 3000)
	zeros := make([]byte, 1<<20)
	type tc struct {
		name     string
		old, new []byte
		bs       int
		maxLit   int   // literal bytes at most
		minCopy  int64 // copied bytes at least
		maxOps   int   // ops at most (0: no check)
	}
	cases := []tc{
		{name: "empty to empty", maxOps: -1},
		{name: "empty to data", new: r100k, maxLit: len(r100k)},
		{name: "data to empty", old: r100k, maxOps: -1},
		{name: "one byte same", old: []byte{7}, new: []byte{7}, minCopy: 1, maxOps: 1},
		{name: "one byte changed", old: []byte{7}, new: []byte{8}, maxLit: 1},
		{name: "one block", old: r100k[:L], new: r100k[:L], minCopy: L, maxOps: 1},
		{name: "one block to one byte", old: r100k[:L], new: r100k[:1], maxLit: 1},
		{name: "aligned", old: r100k[:50*L], new: r100k[:50*L], minCopy: 50 * L, maxOps: 1},
		{name: "unaligned", old: r100k, new: r100k, minCopy: 100_000, maxOps: 1},
		{name: "aligned grows", old: r100k[:50*L], new: r100k[:60*L], maxLit: 10 * L, minCopy: 50 * L},
		{name: "unaligned shrinks", old: r100k, new: r100k[:60_000], maxLit: L, minCopy: 60_000 - L},
		{name: "insert start 10MiB", old: r10, new: cat(ins, r10), maxLit: 10, minCopy: int64(len(r10)), maxOps: 2},
		{name: "insert middle 10MiB", old: r10, new: cat(r10[:5<<20+77], ins, r10[5<<20+77:]), maxLit: 10 + BlockSize(10<<20), maxOps: 3},
		{name: "insert end 10MiB", old: r10, new: cat(r10, ins), maxLit: 10 + BlockSize(10<<20), maxOps: 2},
		{name: "insert start", old: r100k, new: cat(big, r100k), maxLit: 3000, minCopy: 100_000},
		{name: "insert middle", old: r100k, new: cat(r100k[:40_000], big, r100k[40_000:]), maxLit: 3000 + L},
		{name: "insert end", old: r100k, new: cat(r100k, big), maxLit: 3000 + L},
		{name: "delete start", old: r100k, new: r100k[3000:], maxLit: L},
		{name: "delete start 10MiB", old: r10, new: r10[10:], maxLit: BlockSize(10 << 20)},
		{name: "delete middle", old: r100k, new: cat(r100k[:40_000], r100k[43_000:]), maxLit: L},
		{name: "delete end", old: r100k, new: r100k[:97_000], maxLit: L},
		{name: "replace middle", old: r100k, new: cat(r100k[:40_000], big, r100k[43_000:]), maxLit: 3000 + 2*L},
		{name: "repeated block", old: rep, new: rep, minCopy: int64(len(rep)), maxOps: 1},
		{name: "repeated block grows", old: rep, new: cat(rep, rep[:500*L]), minCopy: 1500 * L, maxOps: 2},
		{name: "repeated block shifted", old: rep, new: cat(ins, rep), maxLit: 10, maxOps: 2},
		{name: "zeros", old: zeros, new: zeros, minCopy: 1 << 20, maxOps: 1},
		{name: "zeros to more zeros", old: zeros, new: make([]byte, 3<<20+1), maxLit: 1 + L},
		{name: "unrelated", old: r100k, new: randBytes(6, 100_000), maxLit: 100_000},
		{name: "small blocks", old: r100k, new: cat(r100k[:50_000], big, r100k[50_000:]), bs: 16, maxLit: 3000 + 16},
		{name: "block size 1", old: []byte("hello, world"), new: []byte("world, hello"), bs: 1, maxLit: 12},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := roundTrip(t, c.old, c.new, c.bs, 0)
			if st.literal > int64(c.maxLit) {
				t.Errorf("%d literal bytes, want at most %d", st.literal, c.maxLit)
			}
			if st.copied < c.minCopy {
				t.Errorf("%d copied bytes, want at least %d", st.copied, c.minCopy)
			}
			switch {
			case c.maxOps < 0 && st.ops != 0:
				t.Errorf("%d ops, want none", st.ops)
			case c.maxOps > 0 && st.ops > c.maxOps+int(st.copied/MaxCopyRun):
				// Long copy runs are cut every MaxCopyRun bytes.
				t.Errorf("%d ops, want at most %d (+1 per %d copied bytes)", st.ops, c.maxOps, MaxCopyRun)
			}
			t.Logf("%+v", st)
		})
	}
}

func TestLiteralPieces(t *testing.T) {
	old := randBytes(7, 200_000)
	new := randBytes(8, 1<<20+123)
	for _, maxLit := range []int{1, 1000, 4096, 0, MaxLiteral * 2} {
		st := roundTrip(t, old, new, 0, maxLit)
		want := maxLit
		if want <= 0 {
			want = DefaultMaxLiteral
		}
		want = min(want, MaxLiteral)
		if n := (len(new) + want - 1) / want; st.literalOps != n {
			t.Errorf("maxLit %d: %d literal ops, want %d", maxLit, st.literalOps, n)
		}
	}
	// Literals on both sides of matches, small pieces.
	st := roundTrip(t, old, cat(new[:5000], old[:100*1024], new[:7000]), 1024, 1000)
	if st.literal != 12000 {
		t.Errorf("%d literal bytes, want 12000", st.literal)
	}
}

func TestNilSignature(t *testing.T) {
	new := randBytes(9, 5000)
	out := &memFile{}
	p := NewPatcher(nil, nil, out, false)
	n, sum, err := Diff(nil, bytes.NewReader(new), 0, p.Apply)
	if err != nil || n != 5000 || sum != SumOf(new) || !bytes.Equal(out.b, new) {
		t.Fatalf("n %d err %v, equal %v", n, err, bytes.Equal(out.b, new))
	}
}

func TestOddReaders(t *testing.T) {
	old := randBytes(10, 300_000)
	new := cat(old[:100_000], randBytes(11, 500), old[100_000:])
	sig, err := SignBlockSize(iotest.OneByteReader(bytes.NewReader(old)), int64(len(old)), 512)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]io.Reader{
		"onebyte": iotest.OneByteReader(bytes.NewReader(new)),
		"half":    iotest.HalfReader(bytes.NewReader(new)),
		"dataerr": iotest.DataErrReader(bytes.NewReader(new)),
	} {
		out := &memFile{}
		p := NewPatcher(sig, bytes.NewReader(old), out, false)
		var lit int64
		n, sum, err := Diff(sig, r, 0, func(op Op) error {
			lit += int64(len(op.Data))
			return p.Apply(op)
		})
		if err != nil || n != int64(len(new)) || sum != p.Sum() || !bytes.Equal(out.b, new) {
			t.Errorf("%s: n %d err %v equal %v", name, n, err, bytes.Equal(out.b, new))
		}
		if lit > 500+512 {
			t.Errorf("%s: %d literal bytes", name, lit)
		}
	}
}

func TestErrors(t *testing.T) {
	old := randBytes(12, 10_000)
	if _, err := Sign(bytes.NewReader(old[:5000]), 10_000); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short old file: %v", err)
	}
	if _, err := SignBlockSize(bytes.NewReader(old), 10_000, 0); err == nil {
		t.Error("block size 0 accepted")
	}
	sig, err := Sign(bytes.NewReader(old), int64(len(old)))
	if err != nil {
		t.Fatal(err)
	}
	// Reader error.
	boom := errors.New("boom")
	if _, _, err := Diff(sig, iotest.ErrReader(boom), 0, func(Op) error { return nil }); !errors.Is(err, boom) {
		t.Errorf("reader error: %v", err)
	}
	// Emit error stops Diff.
	calls := 0
	if _, _, err := Diff(sig, bytes.NewReader(old), 0, func(Op) error { calls++; return boom }); err != boom || calls != 1 {
		t.Errorf("emit error: %v after %d calls", err, calls)
	}
	// Invalid signature.
	bad := *sig
	bad.Weak = bad.Weak[1:]
	if _, _, err := Diff(&bad, bytes.NewReader(old), 0, func(Op) error { return nil }); err == nil {
		t.Error("Diff accepted an inconsistent signature")
	}
	if err := NewPatcher(&bad, bytes.NewReader(old), &memFile{}, false).Apply(Op{Data: []byte{1}}); err == nil {
		t.Error("Patcher accepted an inconsistent signature")
	}
}

func TestPatcherRejects(t *testing.T) {
	old := randBytes(13, 10_000) // 10 blocks of 1024, the last 784 bytes
	sig, err := Sign(bytes.NewReader(old), int64(len(old)))
	if err != nil {
		t.Fatal(err)
	}
	if sig.Len() != 10 {
		t.Fatalf("%d blocks", sig.Len())
	}
	lit := []byte("abc")
	for _, c := range []struct {
		name  string
		limit int64
		ops   []Op
	}{
		{"block past end", -1, []Op{{Block: 10, Count: 1}}},
		{"count past end", -1, []Op{{Block: 5, Count: 6}}},
		{"huge count", -1, []Op{{Block: 5, Count: int(^uint(0) >> 1)}}},
		{"negative block", -1, []Op{{Block: -1, Count: 1}}},
		{"negative count", -1, []Op{{Block: 0, Count: -1}}},
		{"first op not at 0", -1, []Op{{Offset: 1, Data: lit}}},
		{"gap", -1, []Op{{Data: lit}, {Offset: 4, Data: lit}}},
		{"overlap", -1, []Op{{Block: 0, Count: 2}, {Offset: 2047, Data: lit}}},
		{"backwards", -1, []Op{{Data: lit}, {Offset: 3, Data: lit}, {Offset: 0, Data: lit}}},
		{"empty op", -1, []Op{{}}},
		{"both", -1, []Op{{Block: 1, Count: 1, Data: lit}}},
		{"literal with block", -1, []Op{{Block: 1, Data: lit}}},
		{"overlong literal", -1, []Op{{Data: make([]byte, MaxLiteral+1)}}},
		{"literal past limit", 5, []Op{{Data: lit}, {Offset: 3, Data: lit}}},
		{"copy past limit", 3000, []Op{{Block: 0, Count: 3}}},
		{"short block past limit", 1024*9 + 783, []Op{{Block: 0, Count: 10}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := &memFile{}
			p := NewPatcher(sig, bytes.NewReader(old), out, false)
			p.SetLimit(c.limit)
			var err error
			for _, op := range c.ops {
				if err = p.Apply(op); err != nil {
					break
				}
			}
			if !errors.Is(err, ErrBadOp) {
				t.Fatalf("err = %v, want ErrBadOp", err)
			}
			t.Log(err)
			// Sticky.
			if err2 := p.Apply(Op{Offset: p.Written(), Data: lit}); err2 != err {
				t.Errorf("next Apply: %v", err2)
			}
			if p.Err() != err {
				t.Errorf("Err() = %v", p.Err())
			}
		})
	}
	// Accepted: the whole file up to the limit exactly, short block included.
	p := NewPatcher(sig, bytes.NewReader(old), &memFile{}, false)
	p.SetLimit(10_003)
	if err := p.Apply(Op{Block: 0, Count: 10}); err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(Op{Offset: 10_000, Data: lit}); err != nil {
		t.Fatal(err)
	}
	// Old file shorter than its signature.
	p = NewPatcher(sig, bytes.NewReader(old[:5000]), &memFile{}, false)
	if err := p.Apply(Op{Block: 3, Count: 3}); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short old file: %v", err)
	}
}

func TestSparseWrites(t *testing.T) {
	data := make([]byte, 1<<20)
	copy(data[100:], "x")       // page 0 written
	copy(data[50*4096+1:], "y") // page 50 written
	data[len(data)-1] = 'z'     // last page written
	const opLen = 100_000
	for _, off := range []int64{0, 1, 4095, 4096 * 3} {
		w := &recWriter{}
		p := NewPatcher(nil, nil, w, true)
		// Start at off: a literal of off zeros first.
		if off > 0 {
			if err := p.Apply(Op{Data: make([]byte, off)}); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < len(data); i += opLen {
			j := min(len(data), i+opLen)
			if err := p.Apply(Op{Offset: off + int64(i), Data: data[i:j]}); err != nil {
				t.Fatal(err)
			}
		}
		got := make([]byte, p.Written())
		var n int
		for _, wr := range w.writes {
			copy(got[wr.off:], wr.b)
			n += len(wr.b)
		}
		if !bytes.Equal(got[off:], data) || p.Sum() != SumOf(cat(make([]byte, off), data)) {
			t.Fatalf("off %d: sparse output differs", off)
		}
		// 3 nonzero pages, plus at most the two partial pages of each op.
		if max := (3 + 2*(len(data)/opLen+2)) * 4096; n > max {
			t.Errorf("off %d: wrote %d of %d bytes, want at most %d", off, n, len(data), max)
		}
		t.Logf("off %d: %d writes, %d bytes", off, len(w.writes), n)
	}
}

type rec struct {
	off int64
	b   []byte
}

type recWriter struct{ writes []rec }

func (w *recWriter) WriteAt(p []byte, off int64) (int, error) {
	w.writes = append(w.writes, rec{off, bytes.Clone(p)})
	return len(p), nil
}

func TestMarshal(t *testing.T) {
	for _, size := range []int{0, 1, 1024, 1025, 100_000} {
		old := randBytes(uint64(size), size)
		sig, err := Sign(bytes.NewReader(old), int64(size))
		if err != nil {
			t.Fatal(err)
		}
		b, err := sig.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if want := 1 + 20*sig.Len(); len(b) < want || len(b) > want+3*10 {
			t.Errorf("size %d: %d bytes encoded", size, len(b))
		}
		var got Signature
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if got.BlockSize != sig.BlockSize || got.Size != sig.Size || fmt.Sprint(got.Weak) != fmt.Sprint(sig.Weak) || fmt.Sprint(got.Strong) != fmt.Sprint(sig.Strong) {
			t.Errorf("size %d: round trip differs", size)
		}
		// Every truncation and every extension is rejected.
		for i := range b {
			if err := new(Signature).UnmarshalBinary(b[:i]); err == nil {
				t.Errorf("size %d: truncation to %d accepted", size, i)
			}
		}
		if err := new(Signature).UnmarshalBinary(append(bytes.Clone(b), 0)); err == nil {
			t.Errorf("size %d: trailing byte accepted", size)
		}
	}
	// Hostile headers: a huge count or size with few bytes.
	for _, b := range [][]byte{
		{2, 8, 0, 0},                      // version
		{1, 0, 0, 0},                      // block size 0
		{1, 0x80, 0x80, 0x80, 0x10, 0, 0}, // block size too big
		{1, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f}, // size 2^63-1: count 2^60
		{1, 8, 16, 1},                            // count 1, want 2
		{1, 8, 16, 2, 0, 0},                      // count 2, no sums
		{1, 8, 16, 0xff, 0xff, 0xff, 0xff, 0x0f}, // huge count
	} {
		s := Signature{BlockSize: 77}
		if err := s.UnmarshalBinary(b); err == nil {
			t.Errorf("% x accepted", b)
		} else if s.BlockSize != 77 {
			t.Errorf("% x: signature changed on error", b)
		}
	}
	// An invalid signature does not marshal.
	if _, err := (&Signature{BlockSize: 8, Size: 9, Weak: []uint32{1}, Strong: make([][16]byte, 1)}).MarshalBinary(); err == nil {
		t.Error("inconsistent signature marshaled")
	}
}

func FuzzUnmarshalSignature(f *testing.F) {
	for _, size := range []int{0, 1, 5000} {
		sig, _ := SignBlockSize(bytes.NewReader(randBytes(1, size)), int64(size), 1024)
		b, _ := sig.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{1, 1, 1, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Signature
		if err := s.UnmarshalBinary(b); err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("unmarshaled an invalid signature: %v", err)
		}
		b2, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var s2 Signature
		if err := s2.UnmarshalBinary(b2); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(s) != fmt.Sprint(s2) {
			t.Fatal("re-marshal round trip differs")
		}
		// Diff against it must not panic either.
		data := b[:min(len(b), 3000)]
		if s.BlockSize <= 4096 {
			if _, _, err := Diff(&s, bytes.NewReader(data), 0, func(Op) error { return nil }); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// editNew builds a new file from old and an edit script: each 3 bytes
// (k, x, y) append either a piece of old (starting x/256 into it, y bytes
// long) or y bytes of literal (a repeated byte or fresh bytes).
func editNew(old, script []byte) []byte {
	if len(script) == 0 {
		return bytes.Clone(old)
	}
	var out []byte
	for len(script) >= 3 {
		k, x, y := script[0], int(script[1]), int(script[2])
		script = script[3:]
		switch k % 4 {
		case 0, 1: // copy a piece of old, up to 4 KiB
			if len(old) > 0 {
				from := x * len(old) / 256
				n := y * 16 * int(k/4%8+1) / 8
				out = append(out, old[from:min(len(old), from+n)]...)
			}
		case 2:
			out = append(out, bytes.Repeat([]byte{byte(x)}, y)...)
		case 3:
			out = append(out, randBytes(uint64(x)<<8|uint64(y), y)...)
		}
	}
	return out
}

func FuzzRoundTrip(f *testing.F) {
	f.Add(randBytes(1, 2000), []byte{}, uint8(16), uint16(0))
	f.Add(randBytes(2, 5000), []byte{3, 1, 10, 0, 0, 255, 0, 128, 255}, uint8(32), uint16(100))
	f.Add(bytes.Repeat([]byte("abcdefgh"), 300), []byte{0, 0, 100, 2, 0, 50, 4, 10, 200}, uint8(8), uint16(7))
	f.Add([]byte{}, []byte{3, 5, 5}, uint8(1), uint16(1))
	f.Add([]byte("x"), []byte{}, uint8(0), uint16(0))
	f.Fuzz(func(t *testing.T, old, script []byte, bs uint8, maxLit uint16) {
		if len(old) > 16<<10 || len(script) > 300 {
			return
		}
		new := editNew(old, script)
		blockSize := int(bs%64) + 1
		if bs >= 192 {
			blockSize = 0 // the default
		}
		roundTrip(t, old, new, blockSize, int(maxLit))
	})
}

// cycleReader yields b over and over, n bytes in all.
type cycleReader struct {
	b   []byte
	off int
	n   int64
}

func (c *cycleReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	k := 0
	for k < len(p) {
		m := copy(p[k:], c.b[c.off:])
		k += m
		c.off = (c.off + m) % len(c.b)
	}
	c.n -= int64(k)
	return k, nil
}

// TestDiffMemoryBounded streams 256 MiB through Diff and checks that it
// allocates a bounded window, not the file.
func TestDiffMemoryBounded(t *testing.T) {
	old := randBytes(30, 1<<20)
	sig, err := Sign(bytes.NewReader(old), int64(len(old)))
	if err != nil {
		t.Fatal(err)
	}
	const size = 256 << 20
	h := NewHasher()
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	var literal int64
	ops := 0
	n, sum, err := Diff(sig, io.TeeReader(&cycleReader{b: old, n: size}, &h), 0, func(op Op) error {
		ops++
		literal += int64(len(op.Data))
		return nil
	})
	runtime.ReadMemStats(&ms1)
	if err != nil || n != size {
		t.Fatalf("n %d, err %v", n, err)
	}
	if sum != h.Sum() {
		t.Error("sum differs")
	}
	// Every copy of old is one copy op (blocks 0 to the end).
	if literal != 0 || ops != size/len(old) {
		t.Errorf("%d literal bytes, %d ops", literal, ops)
	}
	if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 16<<20 {
		t.Errorf("Diff allocated %d bytes for a %d-byte file", alloc, size)
	}
}

// TestWeakSumMatchesDefinition: the SWAR weakSum equals the byte-at-a-time
// definition on every length up to 200, on random bytes, all-0xff bytes
// (the largest lane values) and zeros, and on a long block.
func TestWeakSumMatchesDefinition(t *testing.T) {
	ref := func(p []byte) (a, b uint32) {
		for _, x := range p {
			a += uint32(x)
			b += a
		}
		return a, b
	}
	rng := rand.New(rand.NewPCG(5, 6))
	long := make([]byte, 1<<20+13)
	for i := range long {
		long[i] = byte(rng.Uint32())
	}
	inputs := [][]byte{long, bytes.Repeat([]byte{0xff}, 1<<17)}
	for n := 0; n <= 200; n++ {
		r := make([]byte, n)
		for i := range r {
			r[i] = byte(rng.Uint32())
		}
		inputs = append(inputs, r, bytes.Repeat([]byte{0xff}, n), make([]byte, n))
	}
	for _, p := range inputs {
		a, b := weakSum(p)
		ra, rb := ref(p)
		if a != ra || b != rb {
			t.Fatalf("weakSum of %d bytes = %#x, %#x; want %#x, %#x", len(p), a, b, ra, rb)
		}
	}
}

// An unchanged stretch longer than MaxCopyRun goes out as several copy ops,
// the first as soon as Diff has scanned MaxCopyRun bytes of it: the slave
// can rebuild it while Diff reads on.
func TestDiffCutsLongCopyRuns(t *testing.T) {
	old := randBytes(9, 3*MaxCopyRun+12345)
	sig, err := Sign(bytes.NewReader(old), int64(len(old)))
	if err != nil {
		t.Fatal(err)
	}
	var copies []Op
	_, _, err = Diff(sig, bytes.NewReader(old), 0, func(op Op) error {
		if op.Count == 0 {
			t.Errorf("literal of %d bytes at %d in an unchanged file", len(op.Data), op.Offset)
		}
		copies = append(copies, op)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(copies) != 4 {
		t.Fatalf("%d copy ops for %d unchanged bytes, want 4 (one per %d bytes)", len(copies), len(old), MaxCopyRun)
	}
	for _, op := range copies[:3] {
		if l := op.Len(sig); l < MaxCopyRun || l >= MaxCopyRun+int64(sig.BlockSize) {
			t.Errorf("copy op of %d bytes at %d, want MaxCopyRun (%d) up to a block more", l, op.Offset, MaxCopyRun)
		}
	}
	roundTrip(t, old, old, 0, 0)
}

// SignAt's parts, whatever their number, make the same signature as Sign's
// one sequential pass; a file shorter than announced is an error.
func TestSignAtMatchesSign(t *testing.T) {
	for _, size := range []int{0, 1, parallelSignMin - 1, parallelSignMin, parallelSignMin + 4097, 2*parallelSignMin + 77} {
		data := randBytes(uint64(size), size)
		want, err := Sign(bytes.NewReader(data), int64(size))
		if err != nil {
			t.Fatal(err)
		}
		for _, workers := range []int{0, 1, 2, 3, 7} {
			got, err := SignAt(bytes.NewReader(data), int64(size), workers)
			if err != nil {
				t.Fatalf("size %d, %d workers: %v", size, workers, err)
			}
			if got.BlockSize != want.BlockSize || got.Size != want.Size ||
				!slices.Equal(got.Weak, want.Weak) || !slices.Equal(got.Strong, want.Strong) {
				t.Errorf("size %d, %d workers: the signature differs from Sign's", size, workers)
			}
		}
	}
	short := randBytes(3, parallelSignMin)
	if _, err := SignAt(bytes.NewReader(short), int64(len(short))+1<<20, 2); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("SignAt of a file 1 MiB shorter than announced: %v, want io.ErrUnexpectedEOF", err)
	}
}
