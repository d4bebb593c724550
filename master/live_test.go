package master_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/churn"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/testtree"
	"github.com/georep/georep/internal/treecmp"
	"github.com/georep/georep/master"
)

// envInt reads a positive integer from the environment, or returns def.
func envInt(t *testing.T, name string, def int64) int64 {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}

// liveRun is a master's live session (m.Run) in a goroutine owned by the
// test: stopped through its context, its error checked.
type liveRun struct {
	cancel  context.CancelFunc
	done    chan error
	stopped bool
	err     error
}

func startLive(t *testing.T, m *master.Master) *liveRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &liveRun{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- m.Run(ctx) }()
	// Registered after newMaster's Close, so it runs before it.
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("live session: %v", err)
		}
	})
	return r
}

// exited reports whether Run has returned on its own, and its error.
func (r *liveRun) exited() (bool, error) {
	if r.stopped {
		return true, r.err
	}
	select {
	case r.err = <-r.done:
		r.stopped = true
		return true, fmt.Errorf("Run returned on its own: %v", r.err)
	default:
		return false, nil
	}
}

// stop cancels Run and returns its error: nil after a clean stop.
func (r *liveRun) stop() error {
	if r.stopped {
		return r.err
	}
	r.cancel()
	select {
	case r.err = <-r.done:
	case <-time.After(time.Minute):
		r.err = fmt.Errorf("Run did not return within a minute of its context's end")
	}
	r.stopped = true
	return r.err
}

// newChurn returns a churn of root that keeps every event, and on failure
// logs its statistics and last events.
func newChurn(t *testing.T, root string, n int64, opt churn.Options) *churn.Churn {
	t.Helper()
	opt.Root = root
	opt.Seed = envInt(t, "GEOREP_CHURN_SEED", 1)
	opt.History = int(n) + 1 // all of them, to explain a difference
	c, err := churn.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("churn seed %d (GEOREP_CHURN_SEED), %d steps", opt.Seed, n)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		t.Logf("churn: %s", c.Stats())
		h := c.History()
		if p := os.Getenv("GEOREP_CHURN_HISTORY"); p != "" {
			// The whole history, for tracing a difference back.
			var b strings.Builder
			for _, e := range h {
				fmt.Fprintf(&b, "%s\n", e)
			}
			if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
				t.Logf("writing GEOREP_CHURN_HISTORY: %v", err)
			}
		}
		if len(h) > 100 {
			h = h[len(h)-100:]
		}
		t.Logf("last %d churn events:", len(h))
		for _, e := range h {
			t.Logf("  %s", e)
		}
	})
	return c
}

// churnWhileLive takes n steps of c in spells: mostly paced at 2000 steps/s,
// sometimes a burst at full speed, sometimes a pause that lets batches
// catch up. It fails the test as soon as the live session stops.
func churnWhileLive(t *testing.T, c *churn.Churn, live *liveRun, n int64) {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(n), 0xc4))
	var done int64
	for done < n {
		if ok, err := live.exited(); ok {
			t.Fatalf("after %d churn steps: %v", done, err)
		}
		k := min(n-done, 100+r.Int64N(400))
		rate := 2000.0
		switch x := r.IntN(10); {
		case x < 2:
			rate = 0
		case x < 3:
			time.Sleep(time.Duration(50+r.IntN(400)) * time.Millisecond)
		}
		st, err := c.Run(context.Background(), int(k), rate)
		done += int64(st.Steps)
		if err != nil {
			t.Fatalf("churn: %v", err)
		}
	}
}

// waitSynced waits until the slave holds everything changed before now.
func waitSynced(t *testing.T, m *master.Master, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	t0 := time.Now()
	if err := m.WaitSynced(ctx, t0); err != nil {
		t.Fatalf("WaitSynced: %v", err)
	}
	t.Logf("synced up to the end of the churn %s later", time.Since(t0).Round(time.Millisecond))
}

// requireConverged compares the trees entry by entry, exactly as the
// one-shot tests do (directory mtimes included); on a difference it lists
// the churn events that touched the path, one of its parents, or the same
// entry under the names it had before renames.
func requireConverged(t *testing.T, c *churn.Churn, mroot, sroot string) {
	t.Helper()
	diffs, err := treecmp.Compare(mroot, sroot, testenv.CompareOptions)
	if err != nil {
		t.Fatalf("comparing trees: %v", err)
	}
	if len(diffs) == 0 {
		return
	}
	for i, d := range diffs {
		if i == 30 {
			t.Errorf("... %d differences in all", len(diffs))
			break
		}
		t.Errorf("replica differs: %s", d)
	}
	hist := c.History()
	seen := map[string]bool{}
	for _, d := range diffs {
		if len(seen) == 5 {
			break
		}
		if seen[d.Path] || d.Path == treecmp.RootPath {
			continue
		}
		seen[d.Path] = true
		ev := eventsOn(hist, d.Path)
		if len(ev) > 20 {
			ev = ev[len(ev)-20:]
		}
		t.Logf("churn events on %q (under any earlier name) or its parents, last %d:\n  %s", d.Path, len(ev), strings.Join(ev, "\n  "))
		// The gfids, to find the entry and its directory in a log
		// (GEOREP_TEST_LOG=trace GEOREP_TEST_LOG_FILE=...).
		ns := gfid.DefaultNamespace()
		for _, side := range []struct{ name, root string }{{"master", mroot}, {"slave", sroot}} {
			g, gerr := ns.Get(filepath.Join(side.root, d.Path))
			pg, perr := ns.Get(filepath.Join(side.root, filepath.Dir(d.Path)))
			t.Logf("  on the %s: gfid %v (%v), its directory's %v (%v)", side.name, g, gerr, pg, perr)
		}
	}
	t.FailNow()
}

// eventsOn returns, oldest first, the applied events of hist that touched
// the entry now at rel or one of its parents, following renames back in
// time.
func eventsOn(hist []churn.Event, rel string) []string {
	var out []string
	for i := len(hist) - 1; i >= 0; i-- {
		e := hist[i]
		if e.Skipped == nil && (touches(e.Path, rel) || touches(e.Dest, rel)) {
			out = append(out, e.String())
		}
		if e.Skipped == nil && e.Dest != "" && (e.Op == churn.OpRenameFile || e.Op == churn.OpRenameDir) && touches(e.Dest, rel) {
			rel = e.Path + rel[len(e.Dest):] // its name before this rename
		}
	}
	slices.Reverse(out)
	return out
}

// touches reports whether an event's path p is rel or a parent of it (the
// root, a parent of everything, does not count).
func touches(p, rel string) bool {
	return p != "" && (p == rel || strings.HasPrefix(rel, p+"/"))
}

// TestLiveConvergence: a live session keeps up with a busy master tree.
// After the initial sync the tree churns (creates, writes, truncates,
// renames of files and directories over names and across subtrees,
// hardlinks, symlinks, deleted trees, modes, owners, ns times, xattrs, odd
// names); once the churn stops and the slave holds everything up to then
// (WaitSynced), the trees are equal entry by entry. GEOREP_CHURN_OPS sets
// the number of steps (3000; 1000 with -short), GEOREP_CHURN_SEED the seed.
func TestLiveConvergence(t *testing.T) {
	requireChurnOptIn(t)
	def := int64(3000)
	if testing.Short() {
		def = 1000
	}
	n := envInt(t, "GEOREP_CHURN_OPS", def)
	mroot, sroot := t.TempDir(), t.TempDir()
	if err := testtree.Build(mroot, testtree.Options{BigFileSize: 1 << 20, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	c := newChurn(t, mroot, n, churn.Options{})
	sl := testenv.StartSlave(t, sroot)
	m := newMaster(t, mroot, sl.Addr, nil)
	live := startLive(t, m)

	waitSynced(t, m, 2*time.Minute)
	testenv.RequireEqual(t, mroot, sroot)

	t0 := time.Now()
	churnWhileLive(t, c, live, n)
	dirs, others := c.Size()
	t.Logf("churned %s in %s; tree now %d directories and %d other entries",
		c.Stats(), time.Since(t0).Round(time.Millisecond), dirs, others)
	waitSynced(t, m, 2*time.Minute+time.Duration(n)*5*time.Millisecond)
	if err := live.stop(); err != nil {
		t.Errorf("live session: %v", err)
	}
	requireConverged(t, c, mroot, sroot)
}

// TestLiveChurnDuringInitialCrawl: changes made while the first crawl of a
// large tree is still running are not missed.
func TestLiveChurnDuringInitialCrawl(t *testing.T) {
	requireChurnOptIn(t)
	files, n := 4000, int64(1500)
	if testing.Short() {
		files, n = 2000, 500
	}
	mroot, sroot := t.TempDir(), t.TempDir()
	if err := testtree.Build(mroot, testtree.Options{BigFileSize: 1 << 20, Seed: 6}); err != nil {
		t.Fatal(err)
	}
	for i := range files {
		p := filepath.Join(mroot, "bulk", fmt.Sprintf("d%02d", i%40), fmt.Sprintf("f%04d", i))
		write(t, p, randomBytes(512+(i%8)*1024, uint64(i)))
	}
	// Room to create while so many entries exist.
	c := newChurn(t, mroot, n, churn.Options{MaxFiles: 3 * files, MaxDirs: 300})
	sl := testenv.StartSlave(t, sroot)
	m := newMaster(t, mroot, sl.Addr, func(cfg *master.Config) { cfg.ChangeInterval = 200 * time.Millisecond })
	t0 := time.Now()
	live := startLive(t, m)
	// Paced so that it lasts about as long as the crawl (1.5 s; 0.5 s
	// with -short), starting with the session.
	st, err := c.Run(context.Background(), int(n), 1000)
	if err != nil {
		t.Fatalf("churn: %v", err)
	}
	t.Logf("churned %s, from the session's start", st)
	if ok, err := live.exited(); ok {
		t.Fatalf("during the churn: %v", err)
	}
	waitSynced(t, m, 3*time.Minute)
	t.Logf("initial sync and churn caught up %s after the session started", time.Since(t0).Round(time.Millisecond))
	if err := live.stop(); err != nil {
		t.Errorf("live session: %v", err)
	}
	requireConverged(t, c, mroot, sroot)
}

// requireChurnOptIn: the churn tests take a while, so they run only when
// asked (GEOREP_CHURN=1): make test-churn-small, which CI runs (3,000 ops,
// and churn during a 2,000-file initial crawl), and make test-churn (the
// full size: 20,000 ops; see docs/ARCHITECTURE.md for how often it
// converges).
func requireChurnOptIn(t *testing.T) {
	if os.Getenv("GEOREP_CHURN") == "" {
		t.Skip("churn tests run with GEOREP_CHURN=1 (make test-churn-small, make test-churn)")
	}
}
