package master

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/gfid"
)

// TestFeedCarriesTheCrawlsFailure: records released before a crawl fails
// reach the processor, and then the crawl's error, never a clean end (the
// processor would purge the slave against a partial listing).
func TestFeedCarriesTheCrawlsFailure(t *testing.T) {
	f := newFeed(context.Background())
	r := changelog.Record{Kind: changelog.KindData, GFID: gfid.Root}
	f.Add(&r)
	if err := f.release(); err != nil {
		t.Fatal(err)
	}
	f.Add(&r) // added after the last index flush: must not be read
	boom := errors.New("boom")
	go f.close(boom)
	n := 0
	err := f.Read(func(changelog.Record) error { n++; return nil })
	if !errors.Is(err, boom) || n != 1 {
		t.Fatalf("read %d records and %v; want 1 and the crawl's error", n, err)
	}

	f = newFeed(context.Background())
	f.Add(&r)
	go f.close(nil)
	n = 0
	if err := f.Read(func(changelog.Record) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("clean end: read %d records and %v; want 1 and nil", n, err)
	}
}

// TestFeedStopsWithItsReader: a crawl blocked on a full feed stops once the
// processor has given up (its context is cancelled).
func TestFeedStopsWithItsReader(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := newFeed(ctx)
	r := changelog.Record{Kind: changelog.KindData, GFID: gfid.Root}
	done := make(chan error, 1)
	go func() {
		for {
			f.Add(&r)
			if err := f.release(); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(10 * time.Millisecond) // let it fill the feed
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, errStopped) {
			t.Fatalf("release: %v, want errStopped", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the crawl did not stop within 10 s of its processor")
	}
}
