package syncstatus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/georep/georep/internal/atomicfile"
)

// Batch is what the master reports about the batch it is applying (a
// crawl's journal, or changelog segments): each report replaces the last,
// so that figures reported twice are not counted twice.
type Batch struct {
	// Ops not yet applied on the slave.
	EntryPending, DataPending, MetaPending, DeletesPending int64
	// Done so far in this batch.
	FilesSynced, BytesSynced, Deletes int64
	// FilesDone and BytesDone feed a hybrid crawl's progress: files
	// synced, found current or gone, and the sizes of those synced or
	// found current.
	FilesDone, BytesDone int64
}

// Options configure a Tracker.
type Options struct {
	StateDir string
	// Master (host:root) and Slave (address) name the session in the
	// table; Name is its name in a config file of several.
	Master, Slave, Name string
	Logger              hclog.Logger
	// OnBatch, when set, is called at the end of every batch attempt (the
	// metrics' histogram), from the master's goroutine, without the
	// tracker's lock held; it must not block.
	OnBatch func(d time.Duration, err error)
	// OnEvent, when set, is told of the session's turns (see the Event
	// kinds), from the reporting goroutine, without the tracker's lock
	// held; it must not block.
	OnEvent func(kind, message string, details map[string]any)
	// Bandwidth and Events, when set, give those figures of a snapshot
	// (called with the tracker's lock held: they must not call it).
	Bandwidth func() *Bandwidth
	Events    func() *EventCounts
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Event kinds (Options.OnEvent).
const (
	// EventFaulty: the session became Faulty.
	EventFaulty = "FAULTY"
	// EventActive: the session is Active again after being Faulty.
	EventActive = "ACTIVE"
	// EventCheckpointCompleted: the checkpoint set completed.
	EventCheckpointCompleted = "CHECKPOINT_COMPLETED"
	// EventCrawlFinished: a hybrid crawl synced the whole tree.
	EventCrawlFinished = "CRAWL_FINISHED"
	// EventBatchFailed: a batch failed every attempt the master gives it
	// before it waits longer (reported by the master through Event).
	EventBatchFailed = "BATCH_FAILED"
	// EventScrubDifferences: a scrub found the slave different from the
	// master where nothing was in flight (reported by the master).
	EventScrubDifferences = "SCRUB_DIFFERENCES"
)

// pendingEvent is an event to tell once the lock is released.
type pendingEvent struct {
	kind, msg string
	details   map[string]any
}

// Tracker holds a running master's status. The master calls its report
// methods (SetIdentity, SessionOpen, CrawlStarted, CrawlFound,
// CrawlListed, BatchProgress, BatchEnded, Synced, Fault) from its own
// goroutines; they are cheap, safe for concurrent use, and no-ops on a
// nil *Tracker, so that a master without status needs no checks. The
// socket server and `Persist` read it.
type Tracker struct {
	opts Options
	log  hclog.Logger

	mu    sync.Mutex
	snap  Snapshot // Totals without batch; Pending from batch at Snapshot
	batch Batch
	dirty bool
	// counted: the fault now shown was counted in Failures by BatchDone
	// (Fault does not count it again).
	counted bool
	// paused: the master ships nothing (State shows Paused unless Faulty).
	paused bool
	// persistMu serialises writes of the status file (never held with mu
	// while waiting: mu is taken inside it, not the other way round).
	persistMu sync.Mutex
}

// NewTracker loads the session's persisted figures and checkpoint from
// opts.StateDir and starts as Initializing. A status file that cannot be
// read is moved aside with a warning (the figures restart from zero):
// status must never stop replication.
func NewTracker(opts Options) (*Tracker, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	t := &Tracker{opts: opts, log: log}
	prev, err := readStatusFile(opts.StateDir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		aside := filepath.Join(opts.StateDir, statusFile+".corrupt")
		log.Warn("status file unreadable; moved aside, totals restart from zero", "error", err, "moved_to", aside)
		if rerr := os.Rename(filepath.Join(opts.StateDir, statusFile), aside); rerr != nil {
			return nil, fmt.Errorf("status: moving aside %s: %w", statusFile, rerr)
		}
	default:
		t.snap.Totals = prev.Totals
		t.snap.LastSynced = prev.LastSynced
		t.snap.Identity = prev.Identity
		t.snap.Progress = prev.Progress
		if t.snap.Progress != nil && !t.snap.Progress.Finished {
			// That crawl was interrupted; this run crawls again.
			t.snap.Progress.Listing = false
		}
	}
	cp, err := loadCheckpoint(opts.StateDir)
	if err != nil {
		return nil, err
	}
	now := opts.Now()
	t.snap.Version = snapshotVersion
	t.snap.Master, t.snap.Slave, t.snap.StateDir, t.snap.Name = opts.Master, opts.Slave, opts.StateDir, opts.Name
	t.snap.State = Initializing
	t.snap.Started = now
	t.snap.Checkpoint = cp
	t.dirty = true
	return t, nil
}

// Snapshot returns the status now.
func (t *Tracker) Snapshot() Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.snapshotLocked()
}

func (t *Tracker) snapshotLocked() Snapshot {
	s := t.snap
	if t.opts.Bandwidth != nil {
		s.Bandwidth = t.opts.Bandwidth()
	}
	if t.opts.Events != nil {
		s.Events = t.opts.Events()
	}
	s.Updated = t.opts.Now()
	b := t.batch
	s.Totals = s.Totals.Add(Totals{FilesSynced: b.FilesSynced, BytesSynced: b.BytesSynced, Deletes: b.Deletes})
	s.Pending = Pending{Entry: b.EntryPending, Data: b.DataPending, Meta: b.MetaPending}
	if p := s.Progress; p != nil {
		cp := *p
		s.Progress = &cp
		if s.Crawl == HybridCrawl && !p.Finished {
			s.Pending.Files = max(p.FilesTotal-p.FilesDone, 0)
			s.Pending.Bytes = max(p.BytesTotal-p.BytesDone, 0)
			s.Pending.Deletes = b.DeletesPending
		}
	}
	if s.Checkpoint != nil {
		cp := *s.Checkpoint
		s.Checkpoint = &cp
	}
	return s
}

// SetIdentity records the session's identity (the master calls it when
// it opens its state, and again once the slave told its volume id).
func (t *Tracker) SetIdentity(id Identity) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.snap.Identity = id
	if cp := t.snap.Checkpoint; cp != nil {
		wasInvalid := cp.Invalid
		t.completeLocked()
		if cp.Invalid && !wasInvalid {
			t.log.Warn("the checkpoint was set before the marks were reset (the session or a volume id changed): it is invalid; clear it and set a new one",
				"checkpoint", cp.Target, "set_for", cp.Identity, "now", id)
		}
	}
	t.dirty = true
}

// SessionOpen says the session with the slave is open: Active.
func (t *Tracker) SessionOpen() {
	if t == nil {
		return
	}
	t.mu.Lock()
	prev := t.snap.State
	t.snap.State, t.snap.Fault = t.running(), ""
	t.dirty = true
	ev := t.turnLocked(prev)
	t.mu.Unlock()
	t.tell(ev)
}

// running is the state of a session that works: Active, or Paused.
func (t *Tracker) running() State {
	if t.paused {
		return Paused
	}
	return Active
}

// SetPaused says the master ships nothing more (true) or again (false).
func (t *Tracker) SetPaused(p bool) {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.paused = p
	switch {
	case p && (t.snap.State == Active || t.snap.State == Initializing):
		t.snap.State = Paused
	case !p && t.snap.State == Paused:
		t.snap.State = Active
	}
	t.dirty = true
	t.mu.Unlock()
}

// turnLocked is the event a change of state from prev is, if any.
func (t *Tracker) turnLocked(prev State) *pendingEvent {
	switch cur := t.snap.State; {
	case cur == Faulty && prev != Faulty:
		return &pendingEvent{kind: EventFaulty, msg: "the session is Faulty: " + t.snap.Fault, details: map[string]any{"fault": t.snap.Fault}}
	case prev == Faulty && (cur == Active || cur == Paused):
		return &pendingEvent{kind: EventActive, msg: "the session is " + string(cur) + " again"}
	}
	return nil
}

// tell hands events to OnEvent (nil ones skipped).
func (t *Tracker) tell(evs ...*pendingEvent) {
	if t.opts.OnEvent == nil {
		return
	}
	for _, e := range evs {
		if e != nil {
			t.opts.OnEvent(e.kind, e.msg, e.details)
		}
	}
}

// Scrub reports the scrub's state (a running master with a scrub); the
// differences are added to the totals when a scrub finishes.
func (t *Tracker) Scrub(s ScrubStatus) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !s.Running && !s.Finished.IsZero() {
		t.snap.Totals.ScrubDifferences += int64(s.Differences)
		t.snap.Totals.Scrubs++
	}
	t.snap.Scrub = &s
	t.dirty = true
}

// Event reports an event the tracker cannot see itself (EventBatchFailed).
func (t *Tracker) Event(kind, message string, details map[string]any) {
	if t == nil {
		return
	}
	t.tell(&pendingEvent{kind: kind, msg: message, details: details})
}

// Fault says the session cannot make progress, and why (cleared by the
// next batch that succeeds).
func (t *Tracker) Fault(err error) {
	if t == nil || err == nil || errors.Is(err, context.Canceled) {
		return
	}
	t.mu.Lock()
	// A fault is a failure (Faulty with FAILURES 0 said otherwise), once:
	// a batch that failed counted itself already (BatchDone).
	if t.counted {
		t.counted = false
	} else {
		t.snap.Totals.Failures++
	}
	prev := t.snap.State
	t.snap.State, t.snap.Fault = Faulty, err.Error()
	t.dirty = true
	ev := t.turnLocked(prev)
	t.mu.Unlock()
	t.tell(ev)
}

// CrawlReason says why a hybrid crawl is about to run (it is shown with
// the crawl status).
func (t *Tracker) CrawlReason(why string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.snap.CrawlReason = why
	t.dirty = true
}

// BatchPhase says what the running batch now does (phase "" when no
// batch runs).
func (t *Tracker) BatchPhase(phase string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.opts.Now()
	switch {
	case phase == "":
		t.snap.Batch = nil
	case t.snap.Batch == nil:
		t.snap.Batch = &BatchPhase{Phase: phase, Since: now, Started: now}
	case t.snap.Batch.Phase != phase:
		t.snap.Batch = &BatchPhase{Phase: phase, Since: now, Started: t.snap.Batch.Started}
	}
	t.dirty = true
}

// CrawlStarted says which crawl now finds the changes; a hybrid crawl
// starts a new progress.
func (t *Tracker) CrawlStarted(c Crawl) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.snap.Crawl = c
	if c == HybridCrawl {
		t.snap.Progress = &Progress{Started: t.opts.Now(), Listing: true}
	}
	t.dirty = true
}

// CrawlFound counts a regular file of size bytes the hybrid crawl found.
func (t *Tracker) CrawlFound(size int64) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.snap.Progress; p != nil && p.Listing {
		p.FilesTotal++
		p.BytesTotal += size
	}
}

// CrawlListed says the hybrid crawl walked the whole tree: its totals are
// final.
func (t *Tracker) CrawlListed() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.snap.Progress; p != nil && p.Listing {
		p.Listing, p.DataStarted = false, t.opts.Now()
	}
	t.dirty = true
}

// BatchProgress replaces the current batch's figures.
func (t *Tracker) BatchProgress(b Batch) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.batch = b
	if p := t.snap.Progress; p != nil && t.snap.Crawl == HybridCrawl && !p.Finished {
		p.FilesDone, p.BytesDone = b.FilesDone, b.BytesDone
	}
	t.dirty = true
}

// failureCounter is an error that knows how many ops failed in it (the
// master's OpError).
type failureCounter interface{ FailureCount() int }

// BatchEnded ends a batch attempt that took d: what it synced joins the
// totals (data sent in a failed attempt was sent all the same), its
// pending figures go, and err (nil: success) sets or clears Faulty. A
// hybrid crawl's batch that succeeded finishes its progress.
func (t *Tracker) BatchEnded(d time.Duration, err error) {
	if t == nil {
		return
	}
	cancelled := errors.Is(err, context.Canceled)
	t.mu.Lock()
	prev := t.snap.State
	var crawled *pendingEvent
	b := t.batch
	t.batch = Batch{}
	t.snap.Totals = t.snap.Totals.Add(Totals{FilesSynced: b.FilesSynced, BytesSynced: b.BytesSynced, Deletes: b.Deletes})
	switch {
	case err == nil:
		if t.snap.State == Faulty || t.snap.State == Initializing {
			t.snap.State, t.snap.Fault = t.running(), ""
		}
		t.counted = false
		if p := t.snap.Progress; p != nil && t.snap.Crawl == HybridCrawl && !p.Listing && !p.Finished {
			p.Finished = true
			p.FilesDone, p.BytesDone = p.FilesTotal, p.BytesTotal
			took := t.opts.Now().Sub(p.Started)
			crawled = &pendingEvent{kind: EventCrawlFinished,
				msg:     fmt.Sprintf("the crawl finished: %d files (%d bytes) in %s", p.FilesTotal, p.BytesTotal, took.Round(time.Millisecond)),
				details: map[string]any{"files": p.FilesTotal, "bytes": p.BytesTotal, "seconds": took.Seconds(), "reason": t.snap.CrawlReason}}
		}
	case !cancelled:
		n := 1
		var fc failureCounter
		if errors.As(err, &fc) && fc.FailureCount() > 0 {
			n = fc.FailureCount()
		}
		t.snap.Totals.Failures += int64(n)
		t.snap.State, t.snap.Fault = Faulty, err.Error()
		t.counted = true
	}
	t.dirty = true
	turn := t.turnLocked(prev)
	t.mu.Unlock()
	if t.opts.OnBatch != nil && !cancelled {
		t.opts.OnBatch(d, err)
	}
	t.tell(turn, crawled)
}

// Synced says the slave holds everything up to stime (the stime mark
// moved there); a checkpoint it reaches completes, and is persisted at
// once.
func (t *Tracker) Synced(stime time.Time) {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.snap.LastSynced = stime
	t.dirty = true
	var save *Checkpoint
	if t.completeLocked() {
		cp := *t.snap.Checkpoint
		save = &cp
		t.log.Info("checkpoint completed", "checkpoint", cp.Target, "stime", stime)
	}
	t.mu.Unlock()
	if save != nil {
		if err := saveCheckpoint(t.opts.StateDir, save); err != nil {
			t.log.Error("persisting the checkpoint's completion", "error", err)
		}
		t.tellCheckpoint(save, stime)
	}
}

// tellCheckpoint reports the completion of cp at stime.
func (t *Tracker) tellCheckpoint(cp *Checkpoint, stime time.Time) {
	t.tell(&pendingEvent{kind: EventCheckpointCompleted,
		msg:     fmt.Sprintf("checkpoint %s completed", cp.Target.UTC().Format(time.RFC3339)),
		details: map[string]any{"checkpoint": cp.Target.UTC().Format(time.RFC3339Nano), "stime": stime.UTC().Format(time.RFC3339Nano)}})
}

// completeLocked evaluates the checkpoint; true if it just completed.
func (t *Tracker) completeLocked() bool {
	cp := t.snap.Checkpoint
	if cp == nil || t.snap.Identity.Session == "" {
		return false
	}
	return cp.evaluate(t.snap.Identity, t.snap.LastSynced, t.opts.Now())
}

// SetCheckpoint sets (replaces) the checkpoint at target, persisted
// before it returns; it is completed at once when the stime is there
// already.
func (t *Tracker) SetCheckpoint(target time.Time) (*Checkpoint, error) {
	t.mu.Lock()
	if t.snap.Identity.Session == "" {
		t.mu.Unlock()
		return nil, errors.New("status: the session is not open yet; try again in a moment")
	}
	now := t.opts.Now()
	cp := &Checkpoint{Target: target, SetAt: now, Identity: t.snap.Identity}
	done := cp.evaluate(t.snap.Identity, t.snap.LastSynced, now)
	t.snap.Checkpoint = cp
	save := *cp
	stime := t.snap.LastSynced
	t.mu.Unlock()
	if err := saveCheckpoint(t.opts.StateDir, &save); err != nil {
		return nil, err
	}
	if done {
		t.tellCheckpoint(&save, stime)
	}
	return &save, nil
}

// ClearCheckpoint removes the checkpoint.
func (t *Tracker) ClearCheckpoint() error {
	t.mu.Lock()
	t.snap.Checkpoint = nil
	t.mu.Unlock()
	return removeCheckpoint(t.opts.StateDir)
}

// Persist writes the figures to the status file (atomically) if they
// changed since the last write, or always with force. Before the master
// has told the session's identity there is no session to keep figures of
// (a master that failed to start leaves no status file behind).
func (t *Tracker) Persist(force bool) error {
	t.persistMu.Lock()
	defer t.persistMu.Unlock()
	t.mu.Lock()
	if (!t.dirty && !force) || t.snap.Identity.Session == "" {
		t.mu.Unlock()
		return nil
	}
	s := t.snapshotLocked()
	t.dirty = false
	t.mu.Unlock()
	if err := writeStatusFile(t.opts.StateDir, &s); err != nil {
		t.mu.Lock()
		t.dirty = true
		t.mu.Unlock()
		return err
	}
	return nil
}

// persistEvery is how often the figures are written while they change:
// often enough that a crash loses about a second of counts, rarely enough
// that a busy session does not fsync for every batch.
const persistEvery = time.Second

// Run persists the figures every persistEvery while they change, until
// ctx ends; then once more, as they are at the stop.
func (t *Tracker) Run(ctx context.Context) error {
	tick := time.NewTicker(persistEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return t.Persist(true)
		case <-tick.C:
			if err := t.Persist(false); err != nil {
				t.log.Warn("persisting status", "error", err)
			}
		}
	}
}

func writeStatusFile(stateDir string, s *Snapshot) error {
	if err := atomicfile.WriteJSON(filepath.Join(stateDir, statusFile), s, 0o600); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	return nil
}

// readStatusFile reads the persisted figures (os.ErrNotExist when there
// are none).
func readStatusFile(stateDir string) (*Snapshot, error) {
	path := filepath.Join(stateDir, statusFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s Snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("status file %s is corrupt: %w", path, err)
	}
	if s.Version != snapshotVersion {
		return nil, fmt.Errorf("status file %s has version %d, want %d", path, s.Version, snapshotVersion)
	}
	return &s, nil
}
