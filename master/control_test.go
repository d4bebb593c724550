package master_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/syncstatus"
	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/master"
)

// TestPauseResume: a paused master ships nothing (status Paused) while
// the recorder journals; it stays paused across a restart; resume ships
// what changed meanwhile from the journal, with no crawl.
func TestPauseResume(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	mkfile(t, mroot, "a", "first")
	sl := testenv.StartSlave(t, sroot)
	state := filepath.Join(t.TempDir(), "state")
	tr := newTracker(t, state)
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir, c.Status = state, tr })
	live := startLive(t, m)
	waitSynced(t, m, time.Minute)
	crawlStarted := tr.Snapshot().Progress.Started

	if msg, err := m.Pause(); err != nil || !strings.Contains(msg, "paused") {
		t.Fatalf("Pause: %q %v", msg, err)
	}
	mkfile(t, mroot, "b", "made while paused")
	mkfile(t, mroot, "a", "changed while paused")
	time.Sleep(1500 * time.Millisecond) // many batch intervals
	if exists(t, filepath.Join(sroot, "b")) {
		t.Fatal("a paused master shipped a new file")
	}
	if s := tr.Snapshot(); s.State != syncstatus.Paused {
		t.Errorf("status %s while paused", s.State)
	}
	if msg, err := m.Resume(); err != nil || msg != "resumed" {
		t.Fatalf("Resume: %q %v", msg, err)
	}
	waitSynced(t, m, time.Minute)
	requireIncludedEqual(t, mroot, sroot, func(string) bool { return false })
	if s := tr.Snapshot(); s.State != syncstatus.Active || !s.Progress.Started.Equal(crawlStarted) {
		t.Errorf("after resume: status %s, crawl started %v (before the pause: %v): want Active and no new crawl", s.State, s.Progress.Started, crawlStarted)
	}

	// Paused, then stopped and started again: still paused.
	if _, err := m.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := live.stop(); err != nil {
		t.Fatal(err)
	}
	m.Close()
	tr2 := newTracker(t, state)
	m2 := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir, c.Status = state, tr2 })
	if !m2.Paused() {
		t.Fatal("a paused session started again unpaused")
	}
	mkfile(t, mroot, "c", "made while paused, across a restart")
	startLive(t, m2)
	time.Sleep(1500 * time.Millisecond)
	if exists(t, filepath.Join(sroot, "c")) {
		t.Fatal("a master started paused shipped a new file")
	}
	if s := tr2.Snapshot(); s.State != syncstatus.Paused {
		t.Errorf("status %s of a master started paused", s.State)
	}
	if _, err := m2.Resume(); err != nil {
		t.Fatal(err)
	}
	waitSynced(t, m2, time.Minute)
	requireIncludedEqual(t, mroot, sroot, func(string) bool { return false })
}

// TestApplySettings: settings changed on a running master take effect
// without a restart of the process: the sync jobs by a new worker (no
// crawl), the rules by a new pipeline whose crawl reconciles the slave;
// rules that do not parse are refused and change nothing; Stop ends Run.
func TestApplySettings(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	mkfile(t, mroot, "a.log", "log")
	mkfile(t, mroot, "b.dat", "data")
	sl := testenv.StartSlave(t, sroot)
	state := filepath.Join(t.TempDir(), "state")
	tr := newTracker(t, state)
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir, c.Status = state, tr })
	live := startLive(t, m)
	waitSynced(t, m, time.Minute)
	crawlStarted := tr.Snapshot().Progress.Started

	s := m.Settings()
	s.SyncJobs, s.BatchSize = s.SyncJobs+1, 3
	msg, err := m.Apply(s)
	if err != nil || !strings.Contains(msg, "worker") {
		t.Fatalf("Apply sync jobs: %q %v", msg, err)
	}
	mkfile(t, mroot, "c.dat", "after the new sync jobs")
	waitSynced(t, m, time.Minute)
	if !exists(t, filepath.Join(sroot, "c.dat")) {
		t.Fatal("not replicated after a change of sync jobs")
	}
	if st := tr.Snapshot(); !st.Progress.Started.Equal(crawlStarted) {
		t.Errorf("a change of sync jobs crawled (%s)", st.CrawlReason)
	}

	bad := m.Settings()
	bad.Excludes = []string{"[oops"}
	if _, err := m.Apply(bad); err == nil || !strings.Contains(err.Error(), "[oops") {
		t.Fatalf("bad rules accepted: %v", err)
	}
	if got := m.Settings(); len(got.Excludes) != 0 || got.SyncJobs != s.SyncJobs || got.BatchSize != 3 {
		t.Fatalf("refused rules changed the settings: %+v", got)
	}

	r := m.Settings()
	r.Excludes, r.DeleteExcluded = []string{"*.log"}, true
	if msg, err := m.Apply(r); err != nil || !strings.Contains(msg, "crawl") {
		t.Fatalf("Apply rules: %q %v", msg, err)
	}
	deadline := time.Now().Add(time.Minute)
	for exists(t, filepath.Join(sroot, "a.log")) {
		if time.Now().After(deadline) {
			t.Fatalf("new rules with delete-excluded did not remove a.log from the slave (status %+v)", tr.Snapshot())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := tr.Snapshot(); st.CrawlReason != "the replication rules changed" {
		t.Errorf("crawl reason %q", st.CrawlReason)
	}
	mkfile(t, mroot, "new.log", "excluded now")
	mkfile(t, mroot, "new.dat", "included")
	waitSynced(t, m, time.Minute)
	if exists(t, filepath.Join(sroot, "new.log")) || !exists(t, filepath.Join(sroot, "new.dat")) {
		t.Error("the new rules are not in force after the restart of the pipeline")
	}

	if _, err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-live.done:
		live.stopped, live.err = true, err
		if err != nil {
			t.Fatalf("Run after Stop: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after Stop")
	}
}
