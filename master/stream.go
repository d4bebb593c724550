package master

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/syncstatus"
	"github.com/georep/georep/master/batch"
)

// A one-shot crawl does not go through a journal file: its records go
// straight to the batch processor while the crawl goes on, so that the
// slave applies the first directories' entry ops (and the data flows)
// while the master still walks the rest. (Through a journal, the whole
// crawl came first: on a 100,000-file no-op run, 2.4 s of crawl before
// the first entry op.) A failed attempt crawls again, as before, so
// nothing needs the records afterwards.

// feedDepth is how many record batches (about 2,000 records each: one
// index transaction's worth, see linkBatch) wait for the processor: enough
// to ride out a slow entry call, bounded so that memory does not grow
// with the tree.
const feedDepth = 4

// errStopped ends a crawl whose processor stopped (failed or cancelled).
var errStopped = errors.New("master: crawl stopped")

// feed carries a crawl's records to the processor. The crawl adds records
// to a batch and releases the batch after each index flush: the processor
// opens directories by gfid through the index, and every record added
// before a flush names only links that the flush committed (a directory's
// link is added when its parent is listed, before its own records).
type feed struct {
	ctx   context.Context
	batch []changelog.Record
	ch    chan []changelog.Record
	// err is the crawl's outcome, set before ch is closed: a consumer that
	// sees ch closed reads it (the close orders the two).
	err error
}

func newFeed(ctx context.Context) *feed {
	return &feed{ctx: ctx, ch: make(chan []changelog.Record, feedDepth)}
}

// Add implements recordSink: it keeps r for the next release.
func (f *feed) Add(r *changelog.Record) error {
	f.batch = append(f.batch, *r)
	return nil
}

// release hands the records added so far to the processor, waiting while
// feedDepth batches are waiting already.
func (f *feed) release() error {
	if len(f.batch) == 0 {
		return nil
	}
	select {
	case f.ch <- f.batch:
	case <-f.ctx.Done():
		return errStopped
	}
	f.batch = make([]changelog.Record, 0, cap(f.batch))
	return nil
}

// close ends the feed with the crawl's outcome; what is left goes first
// when the crawl succeeded. Called once, by the crawl's goroutine.
func (f *feed) close(err error) {
	if err == nil {
		err = f.release()
	}
	f.err = err
	close(f.ch)
}

// Read implements batch.Feed: it calls fn for every record, in crawl
// order, until the feed is closed; it returns the crawl's error if the
// crawl failed (the records then are not the whole tree: the caller must
// not act as if they were, PURGE above all).
func (f *feed) Read(fn func(changelog.Record) error) error {
	for batch := range f.ch {
		for _, r := range batch {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	return f.err
}

// crawlInto runs a one-shot xsync crawl of the whole tree and its batch
// over its records at the same time (see above), in the session l; the
// batch's figures go to stats. crawlErr is the crawl's own failure (the
// tree could not be walked); runErr the batch's, as from batch.Run.
func (m *Master) crawlInto(ctx context.Context, l *link, stats *batch.Stats) (crawl CrawlStats, crawlErr, runErr error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := newFeed(ctx)
	// The crawl keeps the index (see xsync.keep): it adds what is new and
	// prunes what went, directory by directory.
	x := &xsync{t: m.tree, w: f, log: m.log, hard: map[gfid.GFID]uint64{}, pending: map[gfid.GFID]uint64{}, rules: m.rules,
		st: m.cfg.Status, flushed: f.release, keep: true}
	m.cfg.Status.CrawlStarted(syncstatus.HybridCrawl)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t0 := time.Now()
		err := x.crawlRoot()
		f.close(err)
		if err != nil {
			return
		}
		m.cfg.Status.CrawlListed()
		m.log.Info("xsync crawl done", "dirs", x.stats.Dirs, "files", x.stats.Files, "bytes", x.stats.Bytes,
			"symlinks", x.stats.Symlinks, "others", x.stats.Others, "took", time.Since(t0))
	}()
	b := batch.NewOneShot(m.batchConfig(l, batch.OneShot, nil), f)
	runErr = b.Run(ctx)
	*stats = b.Stats()
	// The batch stops reading early only on an error: stop the crawl
	// then, and never return while it runs.
	cancel()
	for range f.ch {
	}
	<-done
	if f.err != nil && !errors.Is(f.err, errStopped) {
		// The batch failed because the crawl did.
		return x.stats, fmt.Errorf("master: crawl: %w", f.err), runErr
	}
	if f.err != nil && runErr == nil {
		// Cannot happen (the batch returns the feed's error), but a crawl
		// that failed must never count as a complete batch.
		runErr = f.err
	}
	return x.stats, nil, runErr
}
