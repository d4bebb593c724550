package master

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/livecheck"
	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/treecmp"
	"github.com/georep/georep/master/batch"
	"github.com/georep/georep/master/recorder"
)

// The live path's deterministic harness (issue 17): seeded scripts of
// changes to the master tree (internal/livecheck) interleaved with the
// master's own steps, driven through the real recorder (polled and cut
// by the script, not by its clock), the real journal, the real batch
// engine and a real slave, with the tree changed in the middle of batches
// at their hook points and the master killed and restarted at chosen
// moments. After the script the master catches up and the trees must be
// equal, entry by entry, with the master claiming it is synced: a
// difference is a silent divergence. A failing seed is found again from
// its seed, and cut down to a short script (GEOREP_HARNESS_SHRINK=1).
//
// GEOREP_HARNESS_SEEDS (default 150; 30 with -short) sets how many seeds
// run, from GEOREP_HARNESS_SEED (default 1); GEOREP_HARNESS_STEPS the
// steps of each script (default 60). make harness runs thousands.

// errCrash is how a hook kills the master in the middle of a batch.
var errCrash = errors.New("harness: the master is killed here")

// harness is one run of one script.
type harness struct {
	t            *testing.T
	mroot, sroot string
	state        string
	sl           *testenv.Slave
	src          livecheck.Source
	log          hclog.Logger
	gfids        func() (gfid.GFID, error)

	ctx      context.Context
	m        *Master
	j        *changelog.Journal
	rec      *recorder.Recorder
	l        *link
	kill     context.CancelCauseFunc
	f        *follower
	calls    int  // hook calls in the current batch step
	settling bool // the script is done: hooks do nothing
	// lastChange is when the script last changed the tree.
	lastChange time.Time
	ops        int
	skipped    int
}

// seededGFIDs makes gfids from seed: version-7 layout, a counter for the
// time, seeded bits for the rest, so that whatever is ordered by gfid is
// ordered alike in every run of the seed.
func seededGFIDs(seed uint64) func() (gfid.GFID, error) {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, 0x67666964))
	ms := uint64(1_700_000_000_000)
	return func() (gfid.GFID, error) {
		mu.Lock()
		defer mu.Unlock()
		ms++
		var g gfid.GFID
		binary.BigEndian.PutUint64(g[8:], r.Uint64())
		binary.BigEndian.PutUint64(g[:8], ms<<16|r.Uint64()&0xffff)
		g[6] = (g[6] & 0x0f) | 0x70
		g[8] = (g[8] & 0x3f) | 0x80
		return g, nil
	}
}

// harnessRoots makes the run's directories under base.
func harnessRoots(t *testing.T, base string) (mroot, sroot, state, sstate string) {
	t.Helper()
	dir, err := os.MkdirTemp(base, "run-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	mroot, sroot = filepath.Join(dir, "m"), filepath.Join(dir, "s")
	for _, d := range []string{mroot, sroot} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return mroot, sroot, filepath.Join(dir, "mstate"), filepath.Join(dir, "sstate")
}

// runScript runs a script from src on fresh trees under base and returns
// why it failed ("" when the trees are equal and the master says so).
func runScript(t *testing.T, base string, seed uint64, src livecheck.Source) (why string) {
	return runScriptWith(t, base, seed, src, func(*harness) {})
}

// start starts the master on the run's state, as a process would: the
// journal (a gap since the last run), the recorder (polled by the
// script), a session with the slave, and its place in the journal.
func (h *harness) start() error {
	m, err := New(Config{Root: h.mroot, Slave: h.sl.Addr, StateDir: h.state, Insecure: true, Logger: h.log,
		MaxBackoff: 50 * time.Millisecond, Retries: 1})
	if err != nil {
		return err
	}
	m.tree.NewGFID = h.gfids
	m.prog.init()
	m.hook = h.hook
	h.m = m
	if h.j, err = m.openJournal(); err != nil {
		return err
	}
	h.rec, err = recorder.New(recorder.Config{Tree: m.tree.Tree, Journal: h.j, Watcher: os.Getenv("GEOREP_WATCHER"), Logger: h.log.Named("recorder")})
	if err != nil {
		return err
	}
	if err := h.rec.Start(); err != nil {
		return err
	}
	lctx, kill := context.WithCancelCause(h.ctx)
	h.kill = kill
	if h.l, err = m.open(lctx); err != nil {
		return err
	}
	h.f = m.follow(h.j, h.l, func(context.Context) error { return h.rec.Poll() })
	return nil
}

// stop stops the master: cleanly (the journal covers up to now) when
// cause is nil, else as a kill would (the open segment is lost).
func (h *harness) stop(cause error) {
	if h.m == nil {
		return
	}
	if cause != nil {
		h.kill(cause) // a killed master ends no session
	}
	h.l.close()
	if cause == nil {
		h.rec.Poll()
		h.j.End(max(time.Now().UnixNano(), h.j.Covered()))
	}
	h.rec.Close()
	h.j.Close()
	h.m.Close()
	h.m = nil
}

// hook is the batches' hook: what the script does at this point.
func (h *harness) hook(ctx context.Context, k batch.Kind, at batch.Point) error {
	if h.settling {
		return nil
	}
	hk := h.src.AtHook(h.calls)
	h.calls++
	if len(hk.Ops) > 0 {
		h.apply(hk.Ops)
		if err := h.rec.Poll(); err != nil {
			return err
		}
	}
	if hk.Crash {
		return errCrash
	}
	return nil
}

func (h *harness) apply(ops []livecheck.Op) {
	for _, op := range ops {
		err := livecheck.Apply(h.mroot, op)
		h.ops++
		if errors.Is(err, livecheck.ErrSkipped) {
			h.skipped++
			continue
		}
		if err != nil {
			h.t.Fatalf("applying %s: %v", op, err)
		}
		h.lastChange = time.Now()
	}
}

func (h *harness) step(st livecheck.Step) error {
	switch st.Kind {
	case livecheck.StepOps:
		h.apply(st.Ops)
	case livecheck.StepPoll:
		return h.rec.Poll()
	case livecheck.StepCut:
		return h.rec.Cut()
	case livecheck.StepBatch:
		h.calls = 0
		_, err := h.f.step(h.l.ctx, st.Max)
		if errors.Is(err, errCrash) || errors.Is(context.Cause(h.l.ctx), errCrash) {
			return h.restart()
		}
		return err
	case livecheck.StepCrash:
		return h.restart()
	}
	return nil
}

// restart kills the master and starts it again.
func (h *harness) restart() error {
	h.stop(errCrash)
	return h.start()
}

// settle lets the master catch up with everything (cutting the last
// segment, then batches until none is left, then the marks to what the
// journal covers), and compares the trees: equal, and the master must
// claim so (its stime past the last change).
func (h *harness) settle() string {
	h.settling = true
	for round := 0; ; round++ {
		if round == 50 {
			return "the master did not catch up in 50 rounds"
		}
		if err := h.rec.Cut(); err != nil {
			return fmt.Sprintf("cut: %v", err)
		}
		did := false
		for {
			d, err := h.f.step(h.l.ctx, 64)
			if err != nil {
				return fmt.Sprintf("settling: %v", err)
			}
			if !d {
				break
			}
			did = true
		}
		if !did {
			break
		}
	}
	if err := h.f.idle(h.l.ctx); err != nil {
		return fmt.Sprintf("settling: %v", err)
	}
	stime, err := h.m.Stime()
	if err != nil {
		return fmt.Sprintf("stime: %v", err)
	}
	diffs, err := treecmp.Compare(h.mroot, h.sroot, testenv.CompareOptions)
	if err != nil {
		return fmt.Sprintf("comparing: %v", err)
	}
	if len(diffs) > 0 {
		var b strings.Builder
		claim := "the master claims it is synced"
		if stime.Before(h.lastChange) {
			claim = "the master does not claim it is synced"
		}
		fmt.Fprintf(&b, "%d differences (%s: stime %s, last change %s):", len(diffs), claim,
			stime.Format("15:04:05.000000"), h.lastChange.Format("15:04:05.000000"))
		for i, d := range diffs {
			if i == 10 {
				fmt.Fprintf(&b, "\n  ...")
				break
			}
			fmt.Fprintf(&b, "\n  %s", d)
		}
		return b.String()
	}
	if stime.Before(h.lastChange) {
		return fmt.Sprintf("equal trees, but the stime %s is before the last change %s", stime, h.lastChange)
	}
	return ""
}

func harnessEnv(t *testing.T, name string, def uint64) uint64 {
	if s := os.Getenv(name); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", name, s, err)
		}
		return v
	}
	return def
}

// harnessBase is where runs make their trees: a tmpfs when the test may
// mount one (its syncfs at every batch's end is free; on a disk it would
// dominate), else the test's temp dir.
func harnessBase(t *testing.T) string {
	base := t.TempDir()
	if os.Geteuid() == 0 {
		if err := unix.Mount("tmpfs", base, "tmpfs", 0, "size=2g,mode=0755"); err == nil {
			t.Cleanup(func() { unix.Unmount(base, unix.MNT_DETACH) })
		}
	}
	return base
}

// TestLiveHarness runs the harness over many seeds.
func TestLiveHarness(t *testing.T) {
	seeds := harnessEnv(t, "GEOREP_HARNESS_SEEDS", 150)
	if testing.Short() {
		seeds = min(seeds, 30)
	}
	first := harnessEnv(t, "GEOREP_HARNESS_SEED", 1)
	steps := int(harnessEnv(t, "GEOREP_HARNESS_STEPS", 60))
	base := harnessBase(t)
	failed := 0
	t0 := time.Now()
	ops, skipped := 0, 0
	for seed := first; seed < first+seeds; seed++ {
		ok := t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			p := livecheck.NewPlanner(seed, "", livecheck.PlanOptions{Steps: steps, Crashes: true})
			why := runPlanned(t, base, seed, p, &ops, &skipped)
			if why == "" {
				return
			}
			script := p.Script()
			t.Errorf("seed %d (GEOREP_HARNESS_SEED=%d GEOREP_HARNESS_SEEDS=1): %s", seed, seed, why)
			if os.Getenv("GEOREP_HARNESS_SHRINK") == "" {
				t.Logf("script (%d steps, %d ops); GEOREP_HARNESS_SHRINK=1 cuts it down:\n%s", len(script.Steps), script.Ops(), script)
				return
			}
			small := livecheck.Shrink(script, func(s livecheck.Script) bool {
				return runScript(t, base, seed, livecheck.NewReplay(s)) != ""
			}, 400)
			t.Logf("shrunk from %d steps (%d ops) to %d steps (%d ops); it fails with: %s\n%s",
				len(script.Steps), script.Ops(), len(small.Steps), small.Ops(),
				runScript(t, base, seed, livecheck.NewReplay(small)), small)
		})
		if !ok {
			failed++
			if failed >= 3 {
				t.Fatalf("stopping after %d failed seeds", failed)
			}
		}
	}
	t.Logf("%d seeds of %d steps: %d ops (%d skipped) in %s", seeds, steps, ops, skipped, time.Since(t0).Round(time.Millisecond))
}

// runPlanned runs a planned script; the planner's generator looks at the
// run's master tree.
func runPlanned(t *testing.T, base string, seed uint64, p *livecheck.Planner, ops, skipped *int) string {
	var h *harness
	why := runScriptWith(t, base, seed, p, func(hh *harness) { h = hh; p.SetRoot(hh.mroot) })
	*ops += h.ops
	*skipped += h.skipped
	return why
}

// runScriptWith is runScript, calling made with the harness once made.
func runScriptWith(t *testing.T, base string, seed uint64, src livecheck.Source, made func(*harness)) string {
	mroot, sroot, state, sstate := harnessRoots(t, base)
	h := &harness{t: t, mroot: mroot, sroot: sroot, state: state, src: src, gfids: seededGFIDs(seed),
		log: testenv.Logger(t, "master")}
	made(h)
	h.sl = testenv.StartSlaveWith(t, sroot, testenv.SlaveOptions{StateDir: sstate})
	defer h.sl.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h.ctx = ctx
	if err := h.start(); err != nil {
		return fmt.Sprintf("starting the master: %v", err)
	}
	defer func() { h.stop(nil) }()
	for {
		st, ok := src.Next()
		if !ok {
			break
		}
		if err := h.step(st); err != nil {
			return fmt.Sprintf("%s: %v", st.Kind, err)
		}
	}
	return h.settle()
}
