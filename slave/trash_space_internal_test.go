package slave

import "testing"

// The free space the pruner keeps: the reserve on a large filesystem, a
// share of a middling one, never more than a tenth of a small one.
func TestFreeWanted(t *testing.T) {
	const MiB, GiB = 1 << 20, 1 << 30
	for _, tc := range []struct {
		size, want int64
	}{
		{4 * GiB, 256 * MiB},         // the floor: more than 5 %
		{100 * GiB, 5 * GiB},         // 5 %
		{40 * MiB, 4 * MiB},          // a tenth, not the floor
		{1 * GiB, int64(1*GiB) / 10}, // a tenth of 1 GiB < 256 MiB
	} {
		if got := freeWanted(tc.size, reserveBytes, reserveShare); got != tc.want {
			t.Errorf("freeWanted(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
}
