package master_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/churn"
	"github.com/georep/georep/internal/syncstatus"
	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/testtree"
	"github.com/georep/georep/master"
)

// TestHubSharedRecorder: two live sessions of one root, each to its own
// slave, share one recorder (a Hub): under churn both replicas converge;
// one paused session keeps the shared journal from dropping what it has
// not applied while the other goes on, and on resume catches up from the
// journal without a crawl; stopping one leaves the other replicating.
func TestHubSharedRecorder(t *testing.T) {
	n := int64(1500)
	if testing.Short() || raceEnabled {
		n = 600
	}
	mroot, s1, s2 := t.TempDir(), t.TempDir(), t.TempDir()
	if err := testtree.Build(mroot, testtree.Options{BigFileSize: 256 << 10, Seed: 21}); err != nil {
		t.Fatal(err)
	}
	hub, err := master.NewHub(master.HubConfig{Root: mroot, StateDir: filepath.Join(t.TempDir(), "hub"),
		Interval: 100 * time.Millisecond, Watcher: os.Getenv("GEOREP_WATCHER"), Logger: testenv.Logger(t, "hub")})
	if err != nil {
		t.Fatal(err)
	}
	sl1, sl2 := testenv.StartSlave(t, s1), testenv.StartSlave(t, s2)
	tr1 := newTracker(t, filepath.Join(t.TempDir(), "st1"))
	m1 := newMaster(t, mroot, sl1.Addr, func(c *master.Config) { c.Hub, c.Status = hub, tr1 })
	m2 := newMaster(t, mroot, sl2.Addr, func(c *master.Config) { c.Hub = hub })
	live1, live2 := startLive(t, m1), startLive(t, m2)
	t.Cleanup(func() { hub.Close() }) // after both sessions' cleanups
	waitSynced(t, m1, 2*time.Minute)
	waitSynced(t, m2, 2*time.Minute)
	testenv.RequireEqual(t, mroot, s1)
	testenv.RequireEqual(t, mroot, s2)

	c := newChurn(t, mroot, 2*n, churn.Options{})
	churnWhileLive(t, c, live1, n)
	waitSynced(t, m1, 2*time.Minute)
	waitSynced(t, m2, 2*time.Minute)
	requireConverged(t, c, mroot, s1)
	requireConverged(t, c, mroot, s2)
	crawl := tr1.Snapshot().Progress.Started

	// Session 1 paused: session 2 follows the churn alone; resumed, 1
	// catches up from the journal it kept.
	if _, err := m1.Pause(); err != nil {
		t.Fatal(err)
	}
	churnWhileLive(t, c, live2, n)
	waitSynced(t, m2, 2*time.Minute)
	requireConverged(t, c, mroot, s2)
	if _, err := m1.Resume(); err != nil {
		t.Fatal(err)
	}
	waitSynced(t, m1, 2*time.Minute)
	requireConverged(t, c, mroot, s1)
	// A crawl may follow a gap the churn left in the journal (the recorder
	// marks some); never one because the journal dropped what the paused
	// session had not applied.
	if s := tr1.Snapshot(); s.State != syncstatus.Active || (!s.Progress.Started.Equal(crawl) && !strings.HasPrefix(s.CrawlReason, "a gap in the journal")) {
		t.Errorf("after resume: %s, crawl started %v (before: %v; why: %s)", s.State, s.Progress.Started, crawl, s.CrawlReason)
	}

	// Session 1 stopped: 2 goes on with the shared recorder.
	if err := live1.stop(); err != nil {
		t.Fatal(err)
	}
	m1.Close()
	write(t, filepath.Join(mroot, "after one stopped"), []byte("still replicated"))
	waitSynced(t, m2, time.Minute)
	if got, err := os.ReadFile(filepath.Join(s2, "after one stopped")); err != nil || string(got) != "still replicated" {
		t.Fatalf("after session 1 stopped: %q %v", got, err)
	}
}
