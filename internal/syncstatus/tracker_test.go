package syncstatus

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// clock is a settable clock for trackers under test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var t0 = time.Date(2026, 11, 21, 9, 40, 0, 0, time.UTC)

var testID = Identity{Session: "00112233445566778899aabbccddeeff", MasterVolume: "aa", SlaveVolume: "bb"}

func newTracker(t *testing.T, dir string, c *clock) *Tracker {
	t.Helper()
	tr, err := NewTracker(Options{StateDir: dir, Master: "host:/m", Slave: "127.0.0.1:1", Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestCheckpointCompletesWhenStimeReachesTarget(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	tr := newTracker(t, dir, c)
	tr.SetIdentity(testID)
	tr.Synced(t0.Add(-time.Minute))
	target := t0.Add(-time.Second)
	cp, err := tr.SetCheckpoint(target)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Answer() != CheckpointNo || !cp.Completed.IsZero() {
		t.Fatalf("checkpoint ahead of the stime: %+v", cp)
	}
	c.add(time.Second)
	tr.Synced(target.Add(-time.Nanosecond))
	if got := tr.Snapshot().Checkpoint.Answer(); got != CheckpointNo {
		t.Fatalf("stime 1ns short of the target: completed = %s", got)
	}
	c.add(time.Second)
	tr.Synced(target)
	s := tr.Snapshot()
	if s.Checkpoint.Answer() != CheckpointYes || !s.Checkpoint.Completed.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("stime at the target: %+v", s.Checkpoint)
	}
	// The completion time is persisted at once and survives a restart,
	// even one that never writes the status file.
	c.add(time.Hour)
	tr2 := newTracker(t, dir, c)
	tr2.SetIdentity(testID)
	tr2.Synced(target.Add(time.Hour))
	s2 := tr2.Snapshot()
	if s2.Checkpoint == nil || s2.Checkpoint.Answer() != CheckpointYes || !s2.Checkpoint.Completed.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("after a restart: %+v", s2.Checkpoint)
	}
	if err := tr2.ClearCheckpoint(); err != nil {
		t.Fatal(err)
	}
	if s := newTracker(t, dir, c).Snapshot(); s.Checkpoint != nil {
		t.Errorf("cleared checkpoint came back: %+v", s.Checkpoint)
	}
}

func TestCheckpointAlreadyReachedCompletesAtOnce(t *testing.T) {
	c := &clock{t: t0}
	tr := newTracker(t, t.TempDir(), c)
	tr.SetIdentity(testID)
	tr.Synced(t0)
	cp, err := tr.SetCheckpoint(t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if cp.Answer() != CheckpointYes {
		t.Errorf("a target the stime passed already: %s", cp.Answer())
	}
}

// TestCheckpointInvalidAfterMarksReset: a checkpoint set against one
// identity is invalid once the marks were reset (a new volume id on the
// master root, a new slave tree, a new session), and never completes.
func TestCheckpointInvalidAfterMarksReset(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   Identity
	}{
		{"master volume", Identity{Session: testID.Session, MasterVolume: "cc", SlaveVolume: testID.SlaveVolume}},
		{"slave volume", Identity{Session: testID.Session, MasterVolume: testID.MasterVolume, SlaveVolume: "dd"}},
		{"session", Identity{Session: "ffeeddccbbaa99887766554433221100", MasterVolume: testID.MasterVolume, SlaveVolume: testID.SlaveVolume}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := &clock{t: t0}
			tr := newTracker(t, dir, c)
			tr.SetIdentity(testID)
			if _, err := tr.SetCheckpoint(t0); err != nil {
				t.Fatal(err)
			}
			tr2 := newTracker(t, dir, c)
			tr2.SetIdentity(tc.id)
			tr2.Synced(t0.Add(time.Hour))
			cp := tr2.Snapshot().Checkpoint
			if cp.Answer() != CheckpointInvalid || !cp.Completed.IsZero() {
				t.Fatalf("after the reset: %+v", cp)
			}
		})
	}
	// A slave volume not known yet (the slave not reached) is no reset.
	tr := newTracker(t, t.TempDir(), &clock{t: t0})
	tr.SetIdentity(Identity{Session: testID.Session, MasterVolume: testID.MasterVolume})
	if _, err := tr.SetCheckpoint(t0); err != nil {
		t.Fatal(err)
	}
	tr.SetIdentity(testID)
	tr.Synced(t0)
	if got := tr.Snapshot().Checkpoint.Answer(); got != CheckpointYes {
		t.Errorf("slave volume learnt after the checkpoint: %s", got)
	}
}

type opErr struct{ n int }

func (e opErr) Error() string     { return "ops failed" }
func (e opErr) FailureCount() int { return e.n }

// TestRestartKeepsTotals: what one run synced, deleted and failed is in
// the status file, and the next run counts on from there.
func TestRestartKeepsTotals(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	tr := newTracker(t, dir, c)
	tr.SetIdentity(testID)
	tr.SessionOpen()
	tr.BatchProgress(Batch{FilesSynced: 3, BytesSynced: 300, Deletes: 1, EntryPending: 7})
	if s := tr.Snapshot(); s.Totals.FilesSynced != 3 || s.Pending.Entry != 7 {
		t.Fatalf("in the batch: %+v %+v", s.Totals, s.Pending)
	}
	tr.BatchEnded(time.Second, opErr{2})
	s := tr.Snapshot()
	if s.State != Faulty || s.Fault != "ops failed" || s.Totals.Failures != 2 || s.Pending.Entry != 0 {
		t.Fatalf("after a failed attempt: %+v", s)
	}
	tr.BatchProgress(Batch{FilesSynced: 2, BytesSynced: 20})
	tr.BatchEnded(time.Second, nil)
	tr.Synced(t0)
	if s := tr.Snapshot(); s.State != Active || s.Fault != "" {
		t.Fatalf("a batch that succeeded leaves %s %q", s.State, s.Fault)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := Totals{FilesSynced: 5, BytesSynced: 320, Deletes: 1, Failures: 2}

	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != Stopped || got.Totals != want || !got.LastSynced.Equal(t0) || got.Uptime() != 0 {
		t.Fatalf("persisted: %s %+v last %v", got.State, got.Totals, got.LastSynced)
	}
	tr2 := newTracker(t, dir, c)
	tr2.BatchProgress(Batch{FilesSynced: 1, BytesSynced: 1})
	tr2.BatchEnded(time.Second, nil)
	want.FilesSynced, want.BytesSynced = 6, 321
	if s := tr2.Snapshot(); s.Totals != want || s.State != Active {
		t.Fatalf("after a restart: %s %+v, want %+v", s.State, s.Totals, want)
	}
	// A cancelled batch (the master stopping) is no fault.
	tr2.BatchEnded(time.Second, context.Canceled)
	if s := tr2.Snapshot(); s.State != Active || s.Totals.Failures != want.Failures {
		t.Errorf("cancel counted as a failure: %+v", s)
	}
}

func TestCorruptStatusFileMovedAside(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, statusFile), []byte("{torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := newTracker(t, dir, &clock{t: t0})
	if s := tr.Snapshot(); s.Totals != (Totals{}) {
		t.Errorf("totals from a corrupt file: %+v", s.Totals)
	}
	if _, err := os.Stat(filepath.Join(dir, statusFile+".corrupt")); err != nil {
		t.Errorf("corrupt file not kept aside: %v", err)
	}
}

func TestNoSession(t *testing.T) {
	// A master that never told its identity (it failed to start) leaves
	// no session behind.
	dir := t.TempDir()
	svc, err := Start(Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dir); !errors.Is(err, ErrNoSession) {
		t.Errorf("after a master that never started: %v", err)
	}
	if _, err := Read(t.TempDir()); !errors.Is(err, ErrNoSession) {
		t.Errorf("empty state dir: %v", err)
	}
	if _, err := Read(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, ErrNoSession) {
		t.Errorf("missing state dir: %v", err)
	}
	if _, err := Get(context.Background(), t.TempDir()); !errors.Is(err, ErrNoSession) {
		t.Errorf("Get on an empty state dir: %v", err)
	}
}

// TestProgress: a hybrid crawl's totals grow while it lists, are final
// once it has listed the tree, and its pending files and bytes are what
// is not done yet.
func TestProgress(t *testing.T) {
	c := &clock{t: t0}
	tr := newTracker(t, t.TempDir(), c)
	tr.CrawlStarted(HybridCrawl)
	for range 4 {
		tr.CrawlFound(1000)
	}
	s := tr.Snapshot()
	if p := s.Progress; p == nil || !p.Listing || p.FilesTotal != 4 || p.BytesTotal != 4000 {
		t.Fatalf("while listing: %+v", s.Progress)
	}
	if _, ok := s.Progress.ETA(c.now()); ok {
		t.Error("an ETA while the totals still grow")
	}
	tr.CrawlListed()
	if _, ok := tr.Snapshot().Progress.ETA(c.now()); ok {
		t.Error("an ETA before anything is done")
	}
	c.add(time.Second)
	tr.BatchProgress(Batch{FilesDone: 1, BytesDone: 1000, DataPending: 3})
	c.add(2 * time.Second)
	tr.BatchProgress(Batch{FilesDone: 2, BytesDone: 2000, DataPending: 2})
	s = tr.Snapshot()
	if s.Pending.Files != 2 || s.Pending.Bytes != 2000 || s.Pending.Data != 2 {
		t.Errorf("pending: %+v", s.Pending)
	}
	// 2000 bytes in the 3 s since the walk ended: 2000 left take 3 s.
	if eta, ok := s.Progress.ETA(c.now()); !ok || eta != 3*time.Second {
		t.Errorf("ETA = %v %v, want 3s", eta, ok)
	}
	tr.BatchEnded(time.Second, nil)
	s = tr.Snapshot()
	if !s.Progress.Finished || s.Progress.FilesDone != 4 || s.Pending != (Pending{}) {
		t.Errorf("after the crawl's batch: %+v %+v", s.Progress, s.Pending)
	}
	tr.CrawlStarted(ChangelogCrawl)
	if s := tr.Snapshot(); s.Progress == nil || !s.Progress.Finished || s.Crawl != ChangelogCrawl {
		t.Errorf("the last crawl's progress stays to be seen: %+v", s)
	}
}

func TestNilTrackerIsQuiet(t *testing.T) {
	var tr *Tracker
	tr.SetIdentity(testID)
	tr.SessionOpen()
	tr.CrawlStarted(HybridCrawl)
	tr.CrawlFound(1)
	tr.CrawlListed()
	tr.BatchProgress(Batch{})
	tr.BatchEnded(time.Second, errors.New("x"))
	tr.Synced(t0)
	tr.Fault(errors.New("x"))
}

// TestFaultIsAFailure: a worker fault (the slave unreachable, a broken
// link) counts as one failure (issue 18.11: 12 s of Faulty showed FAILURES
// 0); the fault of a batch that counted its own failures is not counted
// again; a shutdown is no failure.
func TestFaultIsAFailure(t *testing.T) {
	tr := newTracker(t, t.TempDir(), &clock{t: t0})
	tr.SessionOpen()
	tr.Fault(errors.New("slave unreachable"))
	if s := tr.Snapshot(); s.State != Faulty || s.Totals.Failures != 1 {
		t.Fatalf("after a worker fault: %s, %d failures; want Faulty, 1", s.State, s.Totals.Failures)
	}
	tr.BatchEnded(time.Second, opErr{3})
	tr.Fault(opErr{3}) // the same failure, reaching the worker's supervisor
	if s := tr.Snapshot(); s.Totals.Failures != 4 {
		t.Fatalf("a failed batch's fault counted twice: %d failures, want 4", s.Totals.Failures)
	}
	tr.Fault(context.Canceled)
	tr.BatchEnded(time.Second, nil)
	tr.Fault(errors.New("link broke"))
	if s := tr.Snapshot(); s.Totals.Failures != 5 {
		t.Fatalf("%d failures, want 5", s.Totals.Failures)
	}
}
