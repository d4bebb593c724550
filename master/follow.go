package master

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/syncstatus"
	"github.com/georep/georep/master/batch"
)

// follower is a worker's place in the journal: how far the slave has
// caught up (the stime), and what comes next (a crawl, the history to
// replay, or the journal to follow). step does one step of the live loop:
// the worker repeats it and waits for the journal between steps; the live
// path's deterministic harness calls it with the batch sizes it chooses.
type follower struct {
	m    *Master
	j    *changelog.Journal
	l    *link
	sync func(context.Context) error // waits for the recorder
	// stime is the slave's mark; needCrawl, historyEnd what resumePlan and
	// the journal's gaps said.
	stime      time.Time
	needCrawl  bool
	historyEnd int64
	// caughtUp: the journal was drained once since the last crawl (the
	// log says so once).
	caughtUp bool
	// window: the last crawl's walk, whose journal the batches after it
	// read for what moved meanwhile (see movedSet).
	window *movedWindow
}

// follow resumes from the marks (see resumePlan) in the session l.
func (m *Master) follow(j *changelog.Journal, l *link, sync func(context.Context) error) *follower {
	stime, err := m.Stime()
	if err != nil {
		// A crawl from nothing is always safe: it sends what differs.
		m.log.Warn("the stime mark is unreadable; crawling the whole tree", "error", err)
		stime = time.Time{}
	}
	m.prog.update(func() { m.prog.stime = stime })
	m.cfg.Status.Synced(stime)
	f := &follower{m: m, j: j, l: l, sync: sync, stime: stime}
	var why string
	f.needCrawl, f.historyEnd, why = m.resumePlan(j, stime)
	switch {
	case f.needCrawl:
		m.crawlFor(why)
	case f.historyEnd > 0:
		m.cfg.Status.CrawlStarted(syncstatus.HistoryCrawl)
	default:
		m.cfg.Status.CrawlStarted(syncstatus.ChangelogCrawl)
	}
	return f
}

// step applies the next batch: a crawl if one is due, else up to max of
// the journal's committed segments, and moves the marks past it. It
// reports whether there was anything to do.
func (f *follower) step(ctx context.Context, max int) (bool, error) {
	m := f.m
	if f.historyEnd > 0 && f.stime.UnixNano() >= f.historyEnd {
		m.log.Info("history replayed; following the journal", "stime", f.stime)
		f.historyEnd = 0
		m.cfg.Status.CrawlStarted(syncstatus.ChangelogCrawl)
	}
	if f.needCrawl {
		f.caughtUp = false
		return true, f.crawl(ctx)
	}
	segs, err := f.j.Next(f.stime.UnixNano(), max)
	if err != nil {
		return false, err
	}
	if len(segs) == 0 {
		if !f.caughtUp && f.historyEnd == 0 {
			f.caughtUp = true
			m.log.Info("caught up: the slave has every change before the stime; following the journal", "stime", f.stime,
				"lag", time.Since(f.stime).Round(time.Millisecond))
		}
		return false, nil
	}
	if segs[0].Start > f.stime.UnixNano() {
		// The journal does not reach back to the stime (it was lost, set
		// aside, or consumed past it): what changed in between is known to
		// nobody.
		f.needCrawl = true
		m.crawlFor(fmt.Sprintf("the journal starts at %s, after the stime %s", changelog.FormatNS(segs[0].Start), f.stime.UTC().Format(time.RFC3339Nano)))
		return true, nil
	}
	if es, err := m.EntryStime(); err == nil && es.After(f.stime) {
		// A batch whose entry ops were applied before it failed: retry
		// exactly that batch (without them) first.
		k := 0
		for k < len(segs) && segs[k].End <= es.UnixNano() {
			k++
		}
		if k > 0 {
			segs = segs[:k]
		}
	}
	// A gap: its records go with the batch, and a crawl follows.
	for i, s := range segs {
		if s.Gap {
			m.log.Warn("the journal has a gap; crawling to find what it may lack",
				"from", changelog.FormatNS(s.Start), "to", changelog.FormatNS(s.End), "reason", s.Reason)
			segs, f.needCrawl = segs[:i+1], true
			m.cfg.Status.CrawlReason("a gap in the journal: " + s.Reason)
			break
		}
	}
	end := time.Unix(0, segs[len(segs)-1].End)
	var moved *movedSet
	if w := f.window; w != nil {
		deep, shallow, err := m.movedIn(segs, w.to)
		if err != nil {
			return true, err
		}
		moved = &movedSet{deep: deep, shallow: shallow, o: w.o}
		if !moved.empty() {
			m.log.Debug("entries moved while the crawl walked: reconciled after the replay", "directories", len(deep), "other_dirs", len(shallow))
		}
	}
	if err := m.liveBatch(ctx, f.l, segs, f.sync, moved); err != nil {
		if errors.Is(err, batch.ErrJournalDamaged) && ctx.Err() == nil {
			// A segment that cannot be read is a gap: what it held is found
			// by a crawl (never retried for ever).
			m.log.Warn("a journal segment is damaged; crawling to find what it held", "error", err)
			f.needCrawl = true
			m.crawlFor("a damaged journal segment: " + err.Error())
			return true, nil
		}
		return true, err
	}
	if f.window != nil && segs[len(segs)-1].End >= f.window.to {
		f.window = nil // the walk's time is replayed and reconciled
	}
	if f.needCrawl {
		return true, nil // the crawl advances the marks
	}
	return true, f.advance(ctx, end)
}

// crawl crawls the whole tree beside the recorder and applies it.
func (f *follower) crawl(ctx context.Context) error {
	st, window, err := f.m.liveCrawl(ctx, f.l, f.sync, f.stime)
	if err != nil {
		return err
	}
	f.stime, f.needCrawl, f.historyEnd, f.window = st, false, 0, window
	f.m.cfg.ComparePaths = nil // a scrub's repair, if any, is done
	f.m.cfg.Status.CrawlStarted(syncstatus.ChangelogCrawl)
	f.m.prog.update(func() { f.m.prog.stime = st })
	return f.m.journalDone(f.j, st.UnixNano())
}

// idle moves the marks to what the journal covers when no segment waits
// (nothing changed up to there).
func (f *follower) idle(ctx context.Context) error {
	covered := f.j.Covered()
	if f.needCrawl || covered <= f.stime.UnixNano() {
		return nil
	}
	if segs, err := f.j.Next(f.stime.UnixNano(), 1); err != nil || len(segs) > 0 {
		return err // a segment came meanwhile: the next step takes it
	}
	return f.advance(ctx, time.Unix(0, covered))
}

// advance moves the marks to t and lets the journal drop what is applied.
func (f *follower) advance(ctx context.Context, t time.Time) error {
	if err := f.m.advanceLive(ctx, f.j, t); err != nil {
		return err
	}
	f.stime = t
	return nil
}
