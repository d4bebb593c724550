//go:build race

package delta

// raceEnabled is whether the race detector is on: it makes the byte loops
// of the 5 GiB sparse test too slow.
const raceEnabled = true
