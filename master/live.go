package master

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/monitor"
	"github.com/georep/georep/internal/syncstatus"
	"github.com/georep/georep/master/batch"
	"github.com/georep/georep/master/recorder"
)

// DefaultBatchSize is how many journal segments one changelog batch takes
// at most: enough that a backlog goes in few batches (each ends with a
// durable mark on the slave), few enough that a batch is not huge.
const DefaultBatchSize = 64

// idleAdvance is how often the marks follow the recorder while nothing
// changes, so that LAST_SYNCED and checkpoints move on a quiet tree.
const idleAdvance = time.Second

// progress is what Run tells WaitSynced.
type progress struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every change
	stime   time.Time
	done    bool
	err     error
}

func (p *progress) init() {
	p.mu.Lock()
	if p.changed == nil {
		p.changed = make(chan struct{})
	}
	p.mu.Unlock()
}

func (p *progress) update(fn func()) {
	p.mu.Lock()
	fn()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// WaitSynced blocks until the slave is known to hold everything changed on
// the master before t (the session's stime has reached t), ctx ends, or
// Run stops (then its error, or an error saying it stopped).
func (m *Master) WaitSynced(ctx context.Context, t time.Time) error {
	m.prog.init()
	for {
		m.prog.mu.Lock()
		st, done, err, ch := m.prog.stime, m.prog.done, m.prog.err, m.prog.changed
		m.prog.mu.Unlock()
		if !st.Before(t) {
			return nil
		}
		if done {
			if err == nil {
				err = errors.New("master: stopped")
			}
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Run replicates continuously until ctx is cancelled (then it returns
// nil). It supervises two levels, each restarted with capped back-off
// after a fault and reporting Faulty with the reason meanwhile:
//
//   - the recording pipeline (record): the journal, the recorder that
//     writes it, and the gfid index they share. A recorder that stops (its
//     journal could not be written: the state filesystem full), a damaged
//     journal or index: the pipeline starts again, repairing what it can
//     (a damaged journal is set aside, a damaged index rebuilt), and the
//     time it was down is a gap, which a crawl closes.
//   - inside it, the worker (the session with the slave), restarted after
//     the slave went away, a call failed, or any fault of its own.
//
// Run returns an error only for a fault a restart cannot mend: the slave
// refuses this master's certificate or configuration, the recorder cannot
// be set up as configured.
//
// Each worker resumes from the marks: when the journal covers the time
// since the stime (the worker restarted in a running pipeline), it replays
// it (history crawl); otherwise (the first run, a restart of the process or
// of the pipeline, any gap) it crawls the tree beside the recorder (hybrid
// crawl). Then it follows the journal (changelog crawl).
func (m *Master) Run(ctx context.Context) (err error) {
	m.prog.init()
	m.log.Info("live session starting", "root", m.cfg.Root, "slave", m.cfg.Slave)
	defer func() {
		m.prog.update(func() { m.prog.done, m.prog.err = true, err })
		stime, _ := m.Stime()
		if err != nil && !errors.Is(err, context.Canceled) {
			m.log.Error("live session stopped", "error", err, "stime", stime)
		} else {
			m.log.Info("live session stopped", "stime", stime)
		}
	}()
	m.cleanXsync()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	m.ctl.mu.Lock()
	m.ctl.stop = stop
	m.ctl.mu.Unlock()
	defer func() {
		m.ctl.mu.Lock()
		m.ctl.stop = nil
		m.ctl.mu.Unlock()
	}()
	if m.cfg.ScrubEvery > 0 {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.scrubLoop(ctx)
		}()
		defer wg.Wait()
		defer stop() // before the wait: the scrub ends with the run
	}
	return monitor.Run(ctx, monitor.Config{
		Backoff: monitor.Backoff{Min: time.Second, Max: max(m.cfg.MaxBackoff, time.Second), Healthy: time.Minute},
		OnFault: func(err error, in time.Duration) {
			m.log.Error("recording pipeline faulty; restarting it", "error", err, "in", in)
			m.cfg.Status.Fault(errors.New(err.Error()))
		},
	}, func(ctx context.Context) error {
		for {
			err := m.record(ctx)
			var re *errRestart
			if !errors.As(err, &re) {
				return err
			}
			// New rules: taken between pipelines, where nothing reads them.
			if err := m.takeRules(); err != nil {
				return &monitor.Fatal{Err: err}
			}
			m.log.Info("recording pipeline restarting for new settings")
		}
	})
}

// errPipeline marks a worker's fault that a new worker cannot mend but a
// new recording pipeline can: the gfid index or the journal is damaged.
type errPipeline struct{ err error }

func (e *errPipeline) Error() string { return e.err.Error() }
func (e *errPipeline) Unwrap() error { return e.err }

// pipelineFault says whether err needs the recording pipeline restarted
// (and remembers to rebuild the index).
func (m *Master) pipelineFault(err error) bool {
	if errors.Is(err, gfidx.ErrCorrupt) {
		if m.cfg.Hub != nil {
			m.cfg.Hub.markDamaged()
		} else {
			m.indexDamaged.Store(true)
		}
		return true
	}
	return false
}

// record runs one recording pipeline: it opens the journal (setting a
// damaged one aside), rebuilds a damaged index, starts the recorder, and
// runs the worker under its monitor until ctx ends (nil), the recorder
// stops or a worker's fault needs a new pipeline (an error: Run restarts
// it), or a fault no restart mends (monitor.Fatal).
func (m *Master) record(ctx context.Context) error {
	if m.cfg.Hub != nil {
		return m.recordShared(ctx)
	}
	if m.indexDamaged.Load() {
		if err := m.rebuildIndex(); err != nil {
			return err
		}
	}
	j, err := m.openJournal()
	if err != nil {
		return err
	}
	defer j.Close()
	rec, err := recorder.New(recorder.Config{
		Tree: m.tree.Tree, Journal: j, Interval: m.cfg.ChangeInterval, Watcher: m.cfg.Watcher, Rules: m.rules, Logger: m.log.Named("recorder"),
	})
	if err != nil {
		return &monitor.Fatal{Err: err}
	}
	m.log.Info("recording changes", "watcher", rec.Watcher())
	defer rec.Close()
	t0 := time.Now()
	if err := rec.Start(); err != nil {
		if m.pipelineFault(err) {
			return err
		}
		return fmt.Errorf("recorder: %w", err)
	}
	m.log.Info("recorder started", "took", time.Since(t0).Round(time.Millisecond))
	recCtx, stopRec := context.WithCancel(context.Background())
	recDone := make(chan error, 1)
	go func() { recDone <- rec.Run(recCtx) }()

	// The worker runs while the recorder does.
	wctx, stopWork := context.WithCancelCause(ctx)
	var recErr error
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case rerr := <-recDone:
			if rerr == nil {
				rerr = errors.New("stopped")
			}
			m.pipelineFault(rerr)
			recErr = fmt.Errorf("recorder: %w", rerr)
			stopWork(recErr)
		case <-wctx.Done():
		}
	}()
	err = m.superviseWorker(wctx, j, rec)
	stopWork(nil)
	<-watched
	stopRec()
	if recErr == nil {
		// The watcher did not take the recorder's end: take it here.
		if rerr := <-recDone; rerr != nil && ctx.Err() == nil {
			recErr = fmt.Errorf("recorder: %w", rerr)
		}
	}
	return pipelineEnd(ctx, err, recErr)
}

// pipelineEnd is what a recording pipeline's end says to Run: err is the
// worker's monitor's, recErr why the recorder stopped (nil: it did not).
func pipelineEnd(ctx context.Context, err, recErr error) error {
	var pe *errPipeline
	var re *errRestart
	switch {
	case errors.As(err, &re):
		return re
	case errors.As(err, &pe):
		return pe.err
	case err != nil:
		return err // Fatal
	case recErr != nil && ctx.Err() == nil:
		return recErr
	}
	return nil
}

// superviseWorker runs the worker under its monitor while the recorder
// runs (until ctx ends): a faulty worker is restarted, with back-off; one
// restarted for new sync jobs at once; a fault that needs a new pipeline
// (or new rules) ends it (monitor.Fatal).
func (m *Master) superviseWorker(wctx context.Context, j *changelog.Journal, rec *recorder.Recorder) error {
	return monitor.Run(wctx, monitor.Config{
		Backoff: monitor.Backoff{Min: time.Second, Max: max(m.cfg.MaxBackoff, time.Second), Healthy: time.Minute},
		OnFault: func(err error, in time.Duration) {
			m.log.Error("worker faulty; restarting it", "error", err, "in", in)
			// A fault, even one whose chain holds a cancelled context
			// (which the tracker takes for a shutdown): the run goes on.
			m.cfg.Status.Fault(errors.New(err.Error()))
		},
	}, func(ctx context.Context) error {
		for {
			err := m.work(ctx, j, rec)
			var re *errRestart
			if errors.As(err, &re) {
				if re.kind == restartWorker {
					m.log.Info("worker restarting for new settings", "sync_jobs", m.cfg.SyncJobs)
					continue
				}
				return &monitor.Fatal{Err: err} // the pipeline restarts (see Run)
			}
			if err != nil && m.pipelineFault(err) {
				return &monitor.Fatal{Err: &errPipeline{err}}
			}
			return err
		}
	})
}

// recordShared is record for a session of a Hub: it attaches to the
// root's shared recorder (starting it if none runs) and runs the worker
// while it runs.
func (m *Master) recordShared(ctx context.Context) error {
	p, release, err := m.cfg.Hub.attach(ctx, m)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer release()
	m.log.Info("recording changes with the root's shared recorder", "watcher", p.rec.Watcher())
	wctx, stopWork := context.WithCancelCause(ctx)
	var recErr error
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-p.done:
			// p.err is written before done is closed.
			recErr = fmt.Errorf("recorder: %w", p.err)
			stopWork(recErr)
		case <-wctx.Done():
		}
	}()
	err = m.superviseWorker(wctx, p.j, p.rec)
	stopWork(nil)
	<-watched
	return pipelineEnd(ctx, err, recErr)
}

// openJournal opens the live journal in the state dir (see the function
// openJournal).
func (m *Master) openJournal() (*changelog.Journal, error) {
	return openJournal(filepath.Join(m.cfg.StateDir, "changelog"), m.log)
}

// rebuildIndex replaces a damaged gfid index with an empty one: the crawl
// that follows every pipeline start refills it from the tree's xattrs.
func (m *Master) rebuildIndex() error {
	path := filepath.Join(m.cfg.StateDir, "gfid.db")
	m.log.Warn("the gfid index is damaged; rebuilding it from the tree", "path", path)
	m.tree.ResetDirs()
	if m.tree.Idx != nil {
		m.tree.Idx.Close() // whatever it says: it is damaged
	}
	if err := gfidx.Remove(path); err != nil {
		return err
	}
	idx, err := gfidx.Open(path)
	if err != nil {
		return err
	}
	m.tree.Idx = idx
	m.indexDamaged.Store(false)
	return nil
}

// resumePlan says how a worker catches up from stime: by replaying the
// journal up to historyEnd (it covers (stime, historyEnd] continuously),
// or by a hybrid crawl (crawl: the first run, or the journal has a gap
// since stime: the process was down, the recorder overflowed, the journal
// was lost), with the reason.
func (m *Master) resumePlan(j *changelog.Journal, stime time.Time) (crawl bool, historyEnd int64, why string) {
	if stime.IsZero() {
		return true, 0, "first sync (no stime)"
	}
	if m.sess.Rules != m.rulesState() {
		// Newly included entries are sent; newly excluded ones stay on
		// the slave, or go with DeleteExcluded.
		return true, 0, "the replication rules changed"
	}
	segs, err := j.Next(stime.UnixNano(), 0)
	if err != nil {
		return true, 0, fmt.Sprintf("the journal cannot be read: %v", err)
	}
	if len(segs) == 0 {
		if start, ok := j.Start(); !ok || start > stime.UnixNano() {
			// Nothing committed since the stime, and nothing recorded
			// before it either: the journal is new (lost, damaged, set
			// aside), so nothing says what changed since.
			return true, 0, "the journal does not reach back to the stime (it was lost or is new)"
		}
		return false, 0, "" // nothing committed since: follow the journal
	}
	end := segs[len(segs)-1].End
	if _, err := j.History(stime.UnixNano(), end); err != nil {
		return true, 0, fmt.Sprintf("the journal does not cover the time since the stime: %v", err)
	}
	m.log.Info("replaying the journal from the stime (history crawl)", "stime", stime, "to", changelog.FormatNS(end), "segments", len(segs))
	return false, end, ""
}

// crawlFor logs why the worker crawls, and shows it in status.
func (m *Master) crawlFor(why string) {
	m.log.Info("crawling the tree (hybrid crawl): only what differs is sent", "reason", why)
	m.cfg.Status.CrawlReason(why)
}

// work is one run of the worker: it opens a session with the slave,
// resumes from the marks (see resumePlan), and follows the journal until
// the session fails (it returns why) or ctx ends (it returns nil).
func (m *Master) work(ctx context.Context, j *changelog.Journal, rec *recorder.Recorder) error {
	if err := m.waitResumed(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	l, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer l.close()
	lctx := l.ctx
	notify, unsubscribe := j.Subscribe()
	defer unsubscribe()
	f := m.follow(j, l, rec.Sync)
	lastIdle := time.Now()
	for {
		if lctx.Err() != nil {
			if ctx.Err() != nil {
				return nil
			}
			return context.Cause(lctx)
		}
		if err := m.waitResumed(lctx); err != nil {
			if lctx.Err() != nil {
				continue
			}
			return err
		}
		if paths := m.takeRepair(); paths != nil {
			// What a scrub found different: a crawl compares those files
			// by content (cleared once a crawl has run with them).
			if m.cfg.ComparePaths == nil {
				m.cfg.ComparePaths = map[string]bool{}
			}
			for p := range paths {
				m.cfg.ComparePaths[p] = true
			}
			f.needCrawl = true
			m.crawlFor(fmt.Sprintf("the scrub found %d differences on the slave", len(paths)))
		}
		did, err := f.step(lctx, m.cfg.BatchSize)
		if err != nil {
			if lctx.Err() != nil {
				continue
			}
			return err
		}
		if did {
			continue
		}
		if time.Since(lastIdle) >= idleAdvance {
			// Nothing changed up to what the journal covers: LAST_SYNCED
			// and checkpoints move on a quiet tree.
			lastIdle = time.Now()
			if err := f.idle(lctx); err != nil {
				if lctx.Err() != nil {
					continue
				}
				return err
			}
			continue
		}
		select {
		case <-notify:
		case <-lctx.Done():
		case <-time.After(idleAdvance):
		case <-m.ctl.changed():
		}
	}
}

// cleanXsync removes crawl journals a crashed run left behind (each run
// writes its own; an old one is never read again).
func (m *Master) cleanXsync() {
	dir := filepath.Join(m.cfg.StateDir, "xsync")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			m.log.Debug("removing an old crawl journal", "error", err)
		}
	}
}

// advanceLive moves the marks to t and lets the journal drop what is
// applied.
func (m *Master) advanceLive(ctx context.Context, j *changelog.Journal, t time.Time) error {
	if err := m.advance(ctx, t); err != nil {
		return err
	}
	m.prog.update(func() { m.prog.stime = t })
	return m.journalDone(j, t.UnixNano())
}

// retry runs one batch until it succeeds or fails otherwise than by ops
// the slave could not apply: a live session never gives up on a batch nor
// moves past it (gsyncd's "moving on" loses data); it reports and backs
// off (capped at MaxBackoff). Any other error (the link, a fault on the
// master's side) ends the worker, which the monitor restarts with a new
// session.
func (m *Master) retry(ctx context.Context, what string, fn func() error) error {
	delay := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		t0 := time.Now()
		err := fn()
		m.cfg.Status.BatchEnded(time.Since(t0), err)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (%v)", context.Cause(ctx), err)
		}
		var opErr *batch.OpError
		if !errors.As(err, &opErr) {
			return err
		}
		if attempt == m.cfg.Retries {
			// Retried as a one-shot run would be before it gives up: a
			// live session goes on, more slowly, and says so once.
			m.cfg.Status.Event(syncstatus.EventBatchFailed, fmt.Sprintf("%s failed %d attempts; still retrying: %v", what, attempt, err),
				map[string]any{"batch": what, "attempts": attempt, "error": err.Error(), "failures": opErr.FailureCount()})
		}
		m.log.Warn(what+" incomplete; retrying it whole", "attempt", attempt, "error", err, "in", delay)
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(delay):
		}
		delay = min(2*delay, m.cfg.MaxBackoff)
	}
}

// liveCrawl crawls the whole tree beside the recorder and applies what it
// found, comparing by content the files changed since the stime since (see
// changedSince); the marks move to the crawl's start.
func (m *Master) liveCrawl(ctx context.Context, l *link, sync func(context.Context) error, since time.Time) (time.Time, *movedWindow, error) {
	var stime time.Time
	var window *movedWindow
	defer m.watchBatch("crawl")()
	err := m.retry(ctx, "crawl", func() error {
		stime = time.Now()
		m.phase("crawling the tree")
		crawl, journal, err := m.crawl(stime, func() error { return sync(ctx) })
		if err != nil {
			return err
		}
		walked := time.Now()
		defer os.Remove(journal)
		o, err := m.changedSince(since)
		if err != nil {
			return err
		}
		b := batch.NewLiveCrawl(m.batchConfig(l, batch.LiveCrawl, sync), journal, o)
		if err := b.Run(ctx); err != nil {
			return err
		}
		window = &movedWindow{to: walked.UnixNano(), o: o}
		st := b.Stats()
		m.log.Info("crawl applied", "files", crawl.Files, "dirs", crawl.Dirs, "data_files", st.Files,
			"bytes_sent", st.BytesSent, "not_made", st.NotMade, "took", time.Since(stime).Round(time.Millisecond))
		return nil
	})
	if err != nil {
		return time.Time{}, nil, err
	}
	if err := m.advance(ctx, stime); err != nil {
		return time.Time{}, nil, err
	}
	if err := m.rulesSynced(); err != nil {
		return time.Time{}, nil, err
	}
	return stime, window, nil
}

// reconcile crawls the directories a changelog batch (prev) touched, each
// alone, and applies what it found (see liveBatch). Directories the slave
// turns out to lack are made by reconciling their parents, then reconciled
// themselves; directories the slave made from an op are crawled whole;
// directories the slave's ops used beyond those they named are reconciled
// too: a few rounds at most, as deep as the slave's copy lags.
func (m *Master) reconcile(ctx context.Context, l *link, sync func(context.Context) error, prev *batch.Batch, moved *movedSet) (batch.Stats, error) {
	deep := prev.Made() // made empty on the slave by the replay or the last round: crawled whole
	// Moved in from an excluded place: crawled whole, by content.
	compareAll := len(prev.MovedIn()) > 0
	deep = append(deep, prev.MovedIn()...)
	dirs := prev.Touched()
	if !moved.empty() {
		// Moved while the last crawl walked (see movedSet).
		deep = append(deep, moved.deep...)
		dirs = append(dirs, moved.shallow...)
	}
	return m.reconcileDirs(ctx, l, sync, dirs, deep, prev.Synced(), func(b *batch.Batch, round int) {
		switch {
		case compareAll && round == 0:
			b.CompareAll()
		case !moved.empty():
			b.CompareChangedSince(moved.o)
		}
	})
}

// reconcileDirs crawls dirs, each alone, and deep, whole, and applies what
// it found, in rounds: a directory the slave turns out to lack is made by
// reconciling its parent first (see reconcile). tune, if set, adjusts each
// round's batch before it runs.
func (m *Master) reconcileDirs(ctx context.Context, l *link, sync func(context.Context) error, dirs, deep []gfid.GFID, base syncstatus.Batch, tune func(b *batch.Batch, round int)) (batch.Stats, error) {
	var total batch.Stats
	syncFn := func() error { return sync(ctx) }
	done := map[gfid.GFID]int{}
	reconciled := map[gfid.GFID]bool{}
	for round := 0; len(dirs)+len(deep) > 0; round++ {
		for _, g := range dirs {
			reconciled[g] = true
		}
		if round == maxReconcileRounds {
			return total, fmt.Errorf("master: reconciling directories: the slave still lacks %d after %d rounds", len(dirs)+len(deep), round)
		}
		if err := syncFn(); err != nil {
			return total, err
		}
		dirs = m.parentsFirst(dirs)
		m.phase(fmt.Sprintf("reconciling %d directories (%d made on the slave), round %d", len(dirs), len(deep), round+1))
		journal, err := m.crawlDirs(time.Now(), dirs, deep, syncFn)
		if err != nil {
			return total, err
		}
		// The status tracker hears of one batch: the counts go on from
		// the replay's (and the earlier rounds').
		b := batch.NewReconcile(m.batchConfig(l, batch.Reconcile, sync), journal, base)
		if tune != nil {
			tune(b, round)
		}
		err = b.Run(ctx)
		os.Remove(journal)
		if err != nil {
			return total, err
		}
		total.Add(b.Stats())
		base = b.Synced()
		// The next round: each missing directory, after its parent, and
		// the directories the slave used beyond those named, unless
		// reconciled already (each once: they cannot keep coming).
		next := map[gfid.GFID]bool{}
		for _, g := range b.Also() {
			if !reconciled[g] {
				next[g] = true
			}
		}
		m.tree.Idx.View(func(tx *gfidx.Tx) error {
			for _, g := range b.Missing() {
				if done[g] > 2 {
					continue // not on the master any more (its removal is recorded)
				}
				done[g]++
				next[g] = true
				if ls := tx.Links(g); len(ls) > 0 {
					next[ls[0].Parent] = true
				}
			}
			return nil
		})
		dirs = dirs[:0]
		for g := range next {
			dirs = append(dirs, g)
		}
		deep = b.Made()
	}
	return total, nil
}

// maxReconcileRounds bounds the rounds of one reconciliation: each round
// makes one more level of directories the slave lacked.
const maxReconcileRounds = 64

// parentsFirst orders directories by depth in the master's tree (as the
// index has it), so that a directory is made before what it holds.
func (m *Master) parentsFirst(dirs []gfid.GFID) []gfid.GFID {
	depth := make(map[gfid.GFID]int, len(dirs))
	m.tree.Idx.View(func(tx *gfidx.Tx) error {
		for _, g := range dirs {
			d := 0
			for p := g; p != gfid.Root && d < 4096; d++ {
				ls := tx.Links(p)
				if len(ls) == 0 {
					break
				}
				p = ls[0].Parent
			}
			depth[g] = d
		}
		return nil
	})
	sort.SliceStable(dirs, func(i, j int) bool {
		if depth[dirs[i]] != depth[dirs[j]] {
			return depth[dirs[i]] < depth[dirs[j]]
		}
		return bytes.Compare(dirs[i][:], dirs[j][:]) < 0
	})
	return dirs
}

// liveBatch applies journal segments as one batch: replayed as recorded,
// then the directories it touched reconciled.
func (m *Master) liveBatch(ctx context.Context, l *link, segs []changelog.Segment, sync func(context.Context) error, moved *movedSet) error {
	var paths []string
	for _, s := range segs {
		if s.Path != "" {
			paths = append(paths, s.Path)
		}
	}
	if len(paths) == 0 {
		return nil
	}
	end := time.Unix(0, segs[len(segs)-1].End)
	defer m.watchBatch("batch")()
	return m.retry(ctx, "batch", func() error {
		t0 := time.Now()
		m.phase("replaying entry ops")
		var o batch.ChangelogOptions
		// Entry stime: once the batch's entry ops are applied, a retry
		// (after its data failed, or after the worker restarted) does
		// not replay them; it sends the data and metadata and reconciles
		// the directories the records name.
		if es, err := m.EntryStime(); err == nil && !es.Before(end) {
			o.SkipEntries = true
			m.log.Info("the batch's entry ops were applied before it failed; sending its data and metadata", "entry_stime", es)
		} else {
			o.EntriesApplied = func() error { return m.setEntryStime(end) }
		}
		b := batch.NewChangelog(m.batchConfig(l, batch.Changelog, sync), paths, o)
		if err := b.Run(ctx); err != nil {
			return err
		}
		// Then the directories the batch touched are made to hold what
		// the master's hold now: replayed under churn, a record may have
		// found its entry gone, moved on, or its directory not made yet
		// on the slave; what one batch left out, its reconciliation
		// brings, and a later change is reconciled by a later batch.
		q, err := m.reconcile(ctx, l, sync, b, moved)
		if err != nil {
			return err
		}
		st := b.Stats()
		m.log.Debug("batch applied", "segments", len(paths), "entry_ops", st.EntryOps, "files", st.Files,
			"meta_ops", st.MetaOps, "bytes_sent", st.BytesSent, "not_made", st.NotMade+q.NotMade,
			"reconciled_dirs", len(b.Touched()), "reconcile_entry_ops", q.EntryOps, "reconcile_files", q.Files,
			"took", time.Since(t0).Round(time.Millisecond))
		return nil
	})
}
