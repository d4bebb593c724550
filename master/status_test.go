package master_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/marks"
	"github.com/georep/georep/internal/syncstatus"
	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/testtree"
	"github.com/georep/georep/master"
)

func newTracker(t *testing.T, stateDir string) *syncstatus.Tracker {
	t.Helper()
	tr, err := syncstatus.NewTracker(syncstatus.Options{StateDir: stateDir, Logger: testenv.Logger(t, "status")})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestStatusOneShot: a one-shot run tells its tracker what it did: the
// crawl's progress (totals as the crawl counted them, all done), the files
// and bytes synced, the stime, Active; a second run over the tree less a
// file syncs no more files, counts the delete and completes a checkpoint
// set before it; and once the master root's marks are reset, the next
// master finds that checkpoint invalid.
func TestStatusOneShot(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	if err := testtree.Build(mroot, testtree.Options{BigFileSize: 1 << 20, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mroot, "gone-next-time"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	sl := testenv.StartSlave(t, sroot)
	state := filepath.Join(t.TempDir(), "master-state")
	tr := newTracker(t, state)
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir, c.Status = state, tr })
	sum := runOnce(t, m)

	s := tr.Snapshot()
	if s.State != syncstatus.Active || s.Crawl != syncstatus.HybridCrawl || !s.LastSynced.Equal(sum.Stime) {
		t.Fatalf("after a one-shot run: %s, %q, last synced %v (stime %v)", s.State, s.Crawl, s.LastSynced, sum.Stime)
	}
	p := s.Progress
	if p == nil || !p.Finished || p.Listing || p.FilesTotal != sum.Crawl.Files || p.BytesTotal != sum.Crawl.Bytes || p.FilesDone != p.FilesTotal {
		t.Fatalf("progress %+v, crawl %+v", p, sum.Crawl)
	}
	if s.Totals.FilesSynced != sum.Batch.Files || s.Totals.BytesSynced != sum.Batch.BytesSent || s.Totals.Failures != 0 {
		t.Fatalf("totals %+v, batch %+v", s.Totals, sum.Batch)
	}
	if s.Pending != (syncstatus.Pending{}) {
		t.Errorf("pending after the run: %+v", s.Pending)
	}
	id := s.Identity
	if len(id.Session) != 32 || id.MasterVolume == "" || id.SlaveVolume == "" {
		t.Errorf("identity %+v", id)
	}

	if err := os.Remove(filepath.Join(mroot, "gone-next-time")); err != nil {
		t.Fatal(err)
	}
	cp, err := tr.SetCheckpoint(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	runOnce(t, m)
	s2 := tr.Snapshot()
	if s2.Totals.FilesSynced != s.Totals.FilesSynced || s2.Totals.Deletes != 1 {
		t.Errorf("second run over the tree less one file: totals %+v, before %+v", s2.Totals, s.Totals)
	}
	if s2.Checkpoint.Answer() != syncstatus.CheckpointYes || s2.Checkpoint.Completed.Before(cp.SetAt) {
		t.Errorf("checkpoint after the second run: %+v", s2.Checkpoint)
	}

	// The marks are reset (the master root's volume id removed): the
	// next master mints a new one, and the checkpoint no longer answers.
	m.Close()
	if err := tr.Persist(true); err != nil {
		t.Fatal(err)
	}
	if err := unix.Removexattr(mroot, gfid.DefaultNamespace().Name(string(marks.KeyVolumeID))); err != nil {
		t.Fatal(err)
	}
	tr2 := newTracker(t, state)
	if s := tr2.Snapshot(); s.Totals != s2.Totals || s.Checkpoint.Answer() != syncstatus.CheckpointYes {
		t.Fatalf("restarted tracker: %+v", s)
	}
	newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir, c.Status = state, tr2 })
	if s := tr2.Snapshot(); s.Checkpoint.Answer() != syncstatus.CheckpointInvalid || s.Identity.MasterVolume == id.MasterVolume {
		t.Errorf("after the marks were reset: checkpoint %s, identity %+v (was %+v)", s.Checkpoint.Answer(), s.Identity, id)
	}
}

// TestStatusLive: a live session is Active in a changelog crawl once its
// initial crawl is applied; a checkpoint set now completes once what was
// written before it is on the slave; the stime follows.
func TestStatusLive(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(mroot, "before"), []byte("before"), 0o644); err != nil {
		t.Fatal(err)
	}
	sl := testenv.StartSlave(t, sroot)
	state := filepath.Join(t.TempDir(), "master-state")
	tr := newTracker(t, state)
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) {
		c.StateDir, c.Status, c.ChangeInterval = state, tr, 50*time.Millisecond
	})
	live := startLive(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := m.WaitSynced(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if s := tr.Snapshot(); s.State != syncstatus.Active || s.Crawl != syncstatus.ChangelogCrawl || s.Totals.FilesSynced != 1 {
		t.Fatalf("after the initial crawl: %s %q %+v", s.State, s.Crawl, s.Totals)
	}
	if err := os.WriteFile(filepath.Join(mroot, "after"), []byte("after"), 0o644); err != nil {
		t.Fatal(err)
	}
	cp, err := tr.SetCheckpoint(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if cp.Answer() != syncstatus.CheckpointNo {
		t.Fatalf("a checkpoint at a time not synced yet: %s", cp.Answer())
	}
	for tr.Snapshot().Checkpoint.Answer() != syncstatus.CheckpointYes {
		if ok, err := live.exited(); ok {
			t.Fatal(err)
		}
		if ctx.Err() != nil {
			t.Fatal("the checkpoint did not complete")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, err := os.ReadFile(filepath.Join(sroot, "after")); err != nil || string(got) != "after" {
		t.Fatalf("checkpoint completed, yet the slave has %q, %v", got, err)
	}
	s := tr.Snapshot()
	if s.LastSynced.Before(cp.Target) || s.Totals.FilesSynced != 2 || s.State != syncstatus.Active {
		t.Errorf("after the checkpoint: %+v", s)
	}
}
