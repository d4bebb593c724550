package delta

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestSparse5GiB rebuilds a mostly-hole 5 GiB file through Sign, Diff and a
// sparse Patcher, and checks that the output stays sparse. It reads 5 GiB
// three times (from holes: no disk IO), a few seconds without the race
// detector; with it, the byte loops are instrumented and it would take
// minutes, so it is skipped then (raceEnabled is set by a build tag).
func TestSparse5GiB(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 15 GiB of holes")
	}
	if raceEnabled {
		t.Skip("too slow under the race detector")
	}
	const size = 5 << 30
	dir := t.TempDir()
	type patch struct {
		off int64
		b   []byte
	}
	oldPatches := []patch{
		{0, randBytes(20, 4096)},
		{2 << 30, randBytes(21, 3000)},
		{size - 5000, randBytes(22, 5000)},
	}
	newPatches := append(append([]patch{}, oldPatches...), patch{size/2 + 2<<30, randBytes(23, 10_000)}) // at 4.5 GiB
	mk := func(name string, ps []patch) *os.File {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if _, err := f.WriteAt(p.b, p.off); err != nil {
				t.Fatal(err)
			}
		}
		return f
	}
	oldF := mk("old", oldPatches)
	newF := mk("new", newPatches)

	start := time.Now()
	sig, err := Sign(io.NewSectionReader(oldF, 0, size), size)
	if err != nil {
		t.Fatal(err)
	}
	tSign := time.Since(start)

	out, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	p := NewPatcher(sig, oldF, out, true)
	p.SetLimit(size)
	var literal int64
	var ops int
	start = time.Now()
	n, sum, err := Diff(sig, io.NewSectionReader(newF, 0, size), 0, func(op Op) error {
		ops++
		literal += int64(len(op.Data))
		return p.Apply(op)
	})
	if err != nil {
		t.Fatal(err)
	}
	tDiff := time.Since(start)
	if n != size || p.Written() != size || p.Sum() != sum {
		t.Fatalf("n %d, written %d, sums equal %v", n, p.Written(), p.Sum() == sum)
	}
	// The change at 4.5 GiB spans at most two blocks, plus the block of
	// zeros it breaks.
	if max := int64(10_000 + 2*sig.BlockSize); literal > max {
		t.Errorf("%d literal bytes, want at most %d", literal, max)
	}
	if err := out.Truncate(p.Written()); err != nil {
		t.Fatal(err)
	}
	fi, err := out.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != size {
		t.Fatalf("output size %d", fi.Size())
	}
	for _, p := range newPatches {
		for _, off := range []int64{p.off - 70_000, p.off} { // some zeros before, and the data
			off = max(0, off)
			want := make([]byte, min(200_000, size-off))
			got := make([]byte, len(want))
			if _, err := newF.ReadAt(want, off); err != nil {
				t.Fatal(err)
			}
			if _, err := out.ReadAt(got, off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs in [%d, %d)", off, off+int64(len(want)))
			}
		}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatal("no Stat_t")
	}
	if alloc := st.Blocks * 512; alloc >= 64<<20 {
		t.Errorf("output allocates %d bytes, want < 64 MiB", alloc)
	}
	t.Logf("block %d, %d ops, %d literal bytes, output allocates %d KiB; sign %v, diff+patch %v",
		sig.BlockSize, ops, literal, st.Blocks/2, tSign, tDiff)
}

// Benchmark data, made once: old, and new = old with 1 MiB of fresh bytes in
// the middle.
var benchData = map[int]*struct {
	once     sync.Once
	old, new []byte
	sig      *Signature
}{}

var benchMu sync.Mutex

func benchFiles(b *testing.B, size int) (old, new []byte, sig *Signature) {
	benchMu.Lock()
	d := benchData[size]
	if d == nil {
		d = &struct {
			once     sync.Once
			old, new []byte
			sig      *Signature
		}{}
		benchData[size] = d
	}
	benchMu.Unlock()
	d.once.Do(func() {
		d.old = randBytes(uint64(size>>20), size)
		var err error
		d.sig, err = Sign(bytes.NewReader(d.old), int64(size))
		if err != nil {
			b.Fatal(err)
		}
		d.new = bytes.Clone(d.old)
		copy(d.new[size/2:], randBytes(99, 1<<20))
	})
	return d.old, d.new, d.sig
}

func benchDiff(b *testing.B, size int) {
	_, new, sig := benchFiles(b, size)
	b.SetBytes(int64(size))
	b.ResetTimer()
	var literal int64
	for b.Loop() {
		literal = 0
		_, _, err := Diff(sig, bytes.NewReader(new), 0, func(op Op) error {
			literal += int64(len(op.Data))
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if literal > 1<<20+2*int64(sig.BlockSize) {
		b.Fatalf("%d literal bytes", literal)
	}
	b.ReportMetric(float64(literal), "literal-bytes")
}

func BenchmarkDiff256MiB(b *testing.B) { benchDiff(b, 256<<20) }
func BenchmarkDiff1GiB(b *testing.B)   { benchDiff(b, 1<<30) }

// BenchmarkDiffUnrelated is the worst case: nothing matches, the window
// rolls over every byte.
func BenchmarkDiffUnrelated(b *testing.B) {
	_, _, sig := benchFiles(b, 256<<20)
	data := randBytes(7, 64<<20)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := Diff(sig, bytes.NewReader(data), 0, func(Op) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	old, _, _ := benchFiles(b, 256<<20)
	b.SetBytes(int64(len(old)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := Sign(bytes.NewReader(old), int64(len(old))); err != nil {
			b.Fatal(err)
		}
	}
}

type discardAt struct{}

func (discardAt) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }

func BenchmarkPatch(b *testing.B) {
	old, new, sig := benchFiles(b, 256<<20)
	var ops []Op
	if _, _, err := Diff(sig, bytes.NewReader(new), 0, func(op Op) error {
		op.Data = bytes.Clone(op.Data)
		ops = append(ops, op)
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(new)))
	b.ResetTimer()
	for b.Loop() {
		p := NewPatcher(sig, bytes.NewReader(old), discardAt{}, true)
		for _, op := range ops {
			if err := p.Apply(op); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestChangeInMiddle is the benchmarks' case, small: fresh bytes in the
// middle cost about themselves, and the rest is two copies.
func TestChangeInMiddle(t *testing.T) {
	old := randBytes(1, 4<<20)
	new := bytes.Clone(old)
	copy(new[2<<20+5:], randBytes(99, 64<<10))
	st := roundTrip(t, old, new, 0, 0)
	if st.literal > 64<<10+2*int64(BlockSize(4<<20)) || st.copies != 2 {
		t.Errorf("%+v", st)
	}
}

// BenchmarkScan is Diff's inner loop alone, over data that never matches.
func BenchmarkScan(b *testing.B) {
	_, _, sig := benchFiles(b, 256<<20)
	ix := newIndex(sig)
	data := randBytes(8, 1<<20+sig.BlockSize)
	L := sig.BlockSize
	a0, b0 := weakSum(data[:L])
	b.SetBytes(1 << 20)
	b.ResetTimer()
	for b.Loop() {
		outs, ins := data[:1<<20], data[L:L+1<<20]
		a, bb := a0, b0
		for len(outs) > 0 {
			i, na, nb, hit := scan(outs, ins, a, bb, uint32(L), ix.filter)
			a, bb = na, nb
			if hit {
				i++ // step over, as advance does
				a += uint32(ins[i-1]) - uint32(outs[i-1])
				bb += a - uint32(L)*uint32(outs[i-1])
			}
			outs, ins = outs[i:], ins[i:]
		}
	}
}
