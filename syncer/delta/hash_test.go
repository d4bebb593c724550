package delta

import (
	"testing"

	"github.com/zeebo/xxh3"
)

// TestSumStreaming checks that a Hasher fed in pieces of any size gives
// SumOf of the whole, also when it comes back from the pool after another
// file (the seed must be set again), and that the end-to-end hash is not
// the block hash: a file of one block must not get its block hash as its
// sum, or a block collision would pass the end-to-end check.
func TestSumStreaming(t *testing.T) {
	data := randBytes(7, 5000)
	for _, n := range []int{0, 1, 16, 17, 128, 129, 240, 241, 1023, 1024, 1025, 4096, 5000} {
		want := SumOf(data[:n])
		for _, piece := range []int{1, 7, 64, 1000, n + 1} {
			h := NewHasher()
			_, _ = h.Write(randBytes(uint64(n), 3000)) // some other file, before a reset
			h.Release()
			h = NewHasher()
			for off := 0; off < n; off += piece {
				_, _ = h.Write(data[off:min(off+piece, n)])
			}
			if got := h.Sum(); got != want {
				t.Errorf("%d bytes in pieces of %d: %x, want %x", n, piece, got, want)
			}
			h.Release()
			h.Release() // may be called more than once
		}
		if n > 0 && want == xxh3.Hash128(data[:n]).Bytes() {
			t.Errorf("%d bytes: the end-to-end hash is the unseeded block hash", n)
		}
	}
	if SumOf(nil) == SumOf([]byte{0}) {
		t.Error("empty and one zero byte hash alike")
	}
}
