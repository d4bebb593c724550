package slave

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The data streams' bytes wake the background writeback once every
// writebackEvery, and it stops with its context.
func TestWritebackKicks(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Root: root, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.wrote(writebackEvery - 1)
	if len(s.flushKick) != 0 {
		t.Fatalf("writeback woken after %d bytes, before %d", writebackEvery-1, writebackEvery)
	}
	s.wrote(1)
	if len(s.flushKick) != 1 {
		t.Fatalf("writeback not woken after %d bytes", writebackEvery)
	}
	s.wrote(3 * writebackEvery) // a kick already waits: no block, no second one
	if len(s.flushKick) != 1 || s.unflushed.Load() != 0 {
		t.Fatalf("kicks %d, unflushed %d after another %d bytes", len(s.flushKick), s.unflushed.Load(), 3*writebackEvery)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.writeback(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.flushKick) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("writeback did not take its kick")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("writeback did not stop with its context")
	}
}
