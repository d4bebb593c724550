package events

import (
	"testing"
	"time"
)

// BenchmarkEmitQueueFull: the cost of Emit to the caller when the hook
// keeps up with nothing (the queue is full: encode, then drop).
func BenchmarkEmitQueueFull(b *testing.B) {
	d, err := New(Config{URL: "http://127.0.0.1:1/", QueueSize: 1}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ev := Event{Kind: KindBatchFailed, Session: "s", MasterRoot: "/srv", Slave: "h:1", Message: "batch failed",
		Details: map[string]any{"entries": 100, "error": "x", "at": time.Now()}}
	b.ReportAllocs()
	for b.Loop() {
		d.Emit(ev)
	}
}
