package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/rules"
	"github.com/georep/georep/internal/tcpproxy"
	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/treecmp"
)

// options are the command line's.
type options struct {
	// excludes are the master's replication rules (-exclude); rules,
	// parsed, leave their paths out of the comparison.
	excludes []string
	rules    *rules.Rules

	files             int
	duration          time.Duration
	rate              float64
	seeds             []uint64
	out               string
	loop              bool
	loopGiB           int
	settle            time.Duration
	bar               time.Duration
	killMasterEvery   time.Duration
	restartSlaveEvery time.Duration
	sampleEvery       time.Duration
	bin               string
	maxBytes          int64
	keep              bool
	logLevel          string
	profile           bool
	masterFlags       []string
	slaveFlags        []string
}

// result is one seed's outcome.
type result struct {
	seed uint64
	err  error // the harness itself failed

	entries0, files0 int
	bytes0           int64
	populate         time.Duration
	initialSync      time.Duration
	initialWire      int64

	stats        map[string]*KindStats
	applied      int
	skipped      int
	churn        time.Duration
	written      int64
	wire         int64 // master → slave during churn and settle
	wireToEqual  int64
	equal        bool
	toEqual      time.Duration // churn end → start of the full compare that found the trees equal (its metadata check had just passed)
	confirmed    time.Duration // churn end → end of that compare
	checkDur     time.Duration // how long that compare took
	grown        int64         // bytes files grew by through ftruncate (never written)
	claimedEqual bool          // the status claimed synced at that point
	polls        int
	diffs        []treecmp.Diff
	silent       []string // SILENT DIVERGENCE notes
	silentPolls  int      // compares that found differences while the master claimed synced
	regressed    []treecmp.Diff
	masterKills  int
	slaveKills   int
	selfExits    []string

	rssM, rssS     [2]int64 // min, max
	fdsM, fdsS     int
	maxLag         time.Duration
	faultySamples  int
	lastStatus     string
	masterWarn     int
	masterErr      int
	slaveWarn      int
	slaveErr       int
	masterErrLines []string
	masterTail     []string
	dir            string
	kept           string
}

func (r *result) passed(bar time.Duration) bool {
	return r.err == nil && r.equal && r.toEqual <= bar && len(r.silent) == 0 && len(r.regressed) == 0 && len(r.selfExits) == 0
}

// logf prints a progress line.
func logf(format string, args ...any) {
	fmt.Printf("%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// workspace is where one seed's trees live: a loop-mounted ext4 or a temp dir.
type workspace struct {
	dir, mnt string
	mounted  bool
}

func newWorkspace(ctx context.Context, o *options) (*workspace, error) {
	dir, err := os.MkdirTemp("", "georep-soak-")
	if err != nil {
		return nil, fmt.Errorf("workspace: %w", err)
	}
	w := &workspace{dir: dir, mnt: dir}
	if !o.loop || os.Geteuid() != 0 {
		return w, nil
	}
	img := filepath.Join(dir, "fs.img")
	f, err := os.Create(img)
	if err != nil {
		return w, fmt.Errorf("loop image: %w", err)
	}
	err = f.Truncate(int64(o.loopGiB) << 30)
	f.Close()
	if err != nil {
		return w, fmt.Errorf("loop image: %w", err)
	}
	if err := run(ctx, "mkfs.ext4", "-q", "-F", img); err != nil {
		return w, err
	}
	w.mnt = filepath.Join(dir, "mnt")
	if err := os.Mkdir(w.mnt, 0o755); err != nil {
		return w, fmt.Errorf("workspace: %w", err)
	}
	if err := run(ctx, "mount", "-o", "loop", img, w.mnt); err != nil {
		return w, err
	}
	w.mounted = true
	return w, nil
}

func (w *workspace) remove() error {
	if w.mounted {
		var err error
		for i := range 10 {
			if err = run(context.Background(), "umount", w.mnt); err == nil {
				break
			}
			time.Sleep(time.Duration(i+1) * 200 * time.Millisecond)
		}
		if err != nil {
			if err2 := run(context.Background(), "umount", "-l", w.mnt); err2 != nil {
				return fmt.Errorf("unmounting %s: %w", w.mnt, err)
			}
		}
		w.mounted = false
	}
	return os.RemoveAll(w.dir)
}

// runSeed runs one seed on fresh trees.
func runSeed(ctx context.Context, o *options, seed uint64) (res *result) {
	res = &result{seed: seed, rssM: [2]int64{-1, 0}, rssS: [2]int64{-1, 0}}
	res.dir = filepath.Join(o.out, fmt.Sprintf("seed-%d", seed))
	if err := os.MkdirAll(res.dir, 0o755); err != nil {
		res.err = fmt.Errorf("seed %d: %w", seed, err)
		return res
	}
	ws, err := newWorkspace(ctx, o)
	if ws != nil {
		defer func() {
			keep := o.keep && !res.passed(o.bar)
			if keep {
				res.kept = ws.dir
				logf("seed %d: trees kept in %s (unmount and remove by hand)", seed, ws.dir)
				return
			}
			if err := ws.remove(); err != nil && res.err == nil {
				res.err = err
			}
		}()
	}
	if err != nil {
		res.err = fmt.Errorf("seed %d: %w", seed, err)
		return res
	}
	if err := runSeedIn(ctx, o, seed, ws, res); err != nil {
		res.err = fmt.Errorf("seed %d: %w", seed, err)
	}
	return res
}

func runSeedIn(ctx context.Context, o *options, seed uint64, ws *workspace, res *result) error {
	mroot, sroot := filepath.Join(ws.mnt, "master"), filepath.Join(ws.mnt, "slave")
	for _, d := range []string{mroot, sroot} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("making roots: %w", err)
		}
	}
	mstate, sstate := filepath.Join(res.dir, "master-state"), filepath.Join(res.dir, "slave-state")
	for _, d := range []string{mstate, sstate} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("clearing %s: %w", d, err)
		}
	}
	fs := "temp dir"
	if ws.mounted {
		fs = fmt.Sprintf("loop-mounted ext4 (%d GiB)", o.loopGiB)
	}
	logf("seed %d: master root %s, slave root %s (%s); out %s", seed, mroot, sroot, fs, res.dir)

	// The initial tree.
	maxRel := 4095 - 1 - max(len(mroot), len(sroot))
	gen, err := NewGen(GenConfig{Root: mroot, Seed: seed, MaxRel: maxRel, MaxBytes: o.maxBytes, Chown: os.Geteuid() == 0})
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := gen.Populate(o.files); err != nil {
		return err
	}
	res.populate = time.Since(t0)
	res.entries0, res.bytes0 = gen.Entries(), gen.Bytes()
	res.files0 = o.files
	gen.SetTarget(res.entries0)
	logf("seed %d: initial tree: %d entries, %s, in %s", seed, res.entries0, mib(res.bytes0), res.populate.Round(time.Millisecond))

	// The slave, the relay, the master.
	slaveAddr, err := freeAddr()
	if err != nil {
		return err
	}
	slave := newProc("slave", o.bin, res.dir, append([]string{"slave", "--root", sroot, "--listen", slaveAddr,
		"--state-dir", sstate, "--insecure", "--log-level", o.logLevel}, o.slaveFlags...)...)
	slave.profile = o.profile
	if err := slave.start(); err != nil {
		return err
	}
	defer slave.kill()
	if err := waitListening(ctx, slaveAddr, 30*time.Second); err != nil {
		return fmt.Errorf("slave: %w", err)
	}
	px, err := tcpproxy.Start("127.0.0.1:0", slaveAddr)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	defer px.Close()
	master := newProc("master", o.bin, res.dir, append([]string{"master", "--root", mroot, "--slave", px.Addr(),
		"--state-dir", mstate, "--insecure", "--log-level", o.logLevel}, o.masterFlags...)...)
	master.profile = o.profile
	mstart := time.Now()
	if err := master.start(); err != nil {
		return err
	}
	defer master.kill()

	// Until the master says the initial tree is on the slave.
	logf("seed %d: waiting for the initial sync (LAST_SYNCED >= master start)", seed)
	var st *statusJSON
	for {
		st, _, _ = getStatus(ctx, o.bin, mstate)
		if st.claimsSynced(mstart) {
			break
		}
		if master.exitedBySelf() || slave.exitedBySelf() {
			return fmt.Errorf("initial sync: %s", strings.Join(append(master.unexpectedExits(), slave.unexpectedExits()...), "; "))
		}
		if time.Since(mstart) > 15*time.Minute {
			return fmt.Errorf("initial sync not done after 15m; status: %s", st.brief(time.Now()))
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	res.initialSync, res.initialWire = time.Since(mstart), px.Up()
	logf("seed %d: initial sync in %s, %s on the wire; %s", seed, res.initialSync.Round(time.Millisecond), mib(res.initialWire), st.brief(time.Now()))
	if diffs, err := o.compare(mroot, sroot); err != nil || len(diffs) > 0 {
		// Not fatal: the churn goes on, but it is worth knowing.
		logf("seed %d: NOTE: after the initial sync the trees differ (%d differences, err %v); first: %v", seed, len(diffs), err, firstDiffs(diffs, 5))
	}

	// The churn, sampled; faults if asked.
	samples, err := os.Create(filepath.Join(res.dir, "samples.tsv"))
	if err != nil {
		return fmt.Errorf("samples: %w", err)
	}
	defer samples.Close()
	statusLog, err := os.Create(filepath.Join(res.dir, "status.jsonl"))
	if err != nil {
		return fmt.Errorf("status log: %w", err)
	}
	defer statusLog.Close()
	fmt.Fprintln(samples, "t_s\tphase\tmaster_pid\tmaster_rss\tmaster_fds\tslave_pid\tslave_rss\tslave_fds\tstatus\tcrawl\tlag_s\tpending_entry\tpending_data\tpending_meta\tpending_files\tchurn_written\twire_up\tentries")

	var entries atomic.Int64
	entries.Store(int64(gen.Entries()))
	var phase atomic.Value
	phase.Store("churn")
	wire0 := px.Up()
	written0, grown0 := gen.Written(), gen.Grown()
	var smu sync.Mutex // guards res's sampled figures
	sample := func() {
		now := time.Now()
		mp, sp := master.pid(), slave.pid()
		ms, ss := sampleProc(mp), sampleProc(sp)
		st, raw, serr := getStatus(ctx, o.bin, mstate)
		if raw != nil {
			statusLog.Write(append([]byte(strings.Join(strings.Fields(string(raw)), " ")), '\n'))
		}
		smu.Lock()
		if ms.ok {
			res.rssM = minmax(res.rssM, ms.rss)
			res.fdsM = max(res.fdsM, ms.fds)
		}
		if ss.ok {
			res.rssS = minmax(res.rssS, ss.rss)
			res.fdsS = max(res.fdsS, ss.fds)
		}
		lag := time.Duration(-1)
		var stName, crawl string
		var pe, pd, pm, pf int64
		if st != nil {
			lag = st.lag(now)
			if lag > res.maxLag {
				res.maxLag = lag
			}
			if st.Status == "Faulty" {
				res.faultySamples++
			}
			stName, crawl = st.Status, st.Crawl
			pe, pd, pm, pf = st.Pending.Entry, st.Pending.Data, st.Pending.Meta, st.Pending.Files
		} else {
			stName = "?"
		}
		smu.Unlock()
		fmt.Fprintf(samples, "%.1f\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%q\t%.3f\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n",
			now.Sub(mstart).Seconds(), phase.Load(), mp, ms.rss, ms.fds, sp, ss.rss, ss.fds, stName, crawl, lag.Seconds(),
			pe, pd, pm, pf, gen.Written()-written0, px.Up()-wire0, entries.Load())
		line := fmt.Sprintf("seed %d [%s] master rss %s fds %d | slave rss %s fds %d | %s | churn wrote %s, wire %s, %d entries",
			seed, phase.Load(), mib(ms.rss), ms.fds, mib(ss.rss), ss.fds, st.brief(now), mib(gen.Written()-written0), mib(px.Up()-wire0), entries.Load())
		if serr != nil && st == nil {
			line += fmt.Sprintf(" (status: %v)", trim(serr.Error(), 120))
		}
		logf("%s", line)
	}

	bg, stopBG := context.WithCancel(ctx)
	var bgWG sync.WaitGroup
	bgWG.Add(1)
	go func() { // the sampler, for the whole churn and settle
		defer bgWG.Done()
		t := time.NewTicker(o.sampleEvery)
		defer t.Stop()
		sample()
		for {
			select {
			case <-bg.Done():
				return
			case <-t.C:
				sample()
			}
		}
	}()
	defer func() { stopBG(); bgWG.Wait() }()

	churnCtx, stopChurn := context.WithTimeout(ctx, o.duration)
	defer stopChurn()
	var injWG sync.WaitGroup
	var restartErr atomic.Value
	faults := func(every time.Duration, p *proc, counter *int) {
		defer injWG.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-churnCtx.Done():
				return
			case <-t.C:
				p.kill()
				if err := p.start(); err != nil {
					restartErr.Store(err)
					return
				}
				*counter++
				logf("seed %d: FAULT: %s killed (SIGKILL) and restarted (%d so far)", seed, p.name, *counter)
			}
		}
	}
	if o.killMasterEvery > 0 {
		injWG.Add(1)
		go faults(o.killMasterEvery, master, &res.masterKills)
	}
	if o.restartSlaveEvery > 0 {
		injWG.Add(1)
		go faults(o.restartSlaveEvery, slave, &res.slaveKills)
	}
	// A watchdog: a process that died by itself is restarted, and noted.
	bgWG.Add(1)
	go func() {
		defer bgWG.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-bg.Done():
				return
			case <-t.C:
				for _, p := range []*proc{master, slave} {
					if p.exitedBySelf() {
						logf("seed %d: %s DIED BY ITSELF; restarting it (see %s)", seed, p.name, p.logFiles()[len(p.logFiles())-1])
						if err := p.start(); err != nil {
							restartErr.Store(err)
						}
					}
				}
			}
		}
	}()

	logf("seed %d: churn for %s at %.0f ops/s", seed, o.duration, o.rate)
	gen.ResetClock()
	cstart := time.Now()
	interval := time.Duration(float64(time.Second) / o.rate)
	next := cstart
	for churnCtx.Err() == nil {
		gen.Step()
		entries.Store(int64(gen.Entries()))
		next = next.Add(interval)
		if d := time.Until(next); d > 0 {
			_ = sleepCtx(churnCtx, d)
		} else if d < -time.Second {
			next = time.Now() // do not burst to catch up more than a second
		}
	}
	churnEnd := time.Now()
	res.churn = churnEnd.Sub(cstart)
	stopChurn()
	injWG.Wait() // a kill in progress ends with a restart
	if ctx.Err() != nil {
		return ctx.Err()
	}
	res.written, res.grown = gen.Written()-written0, gen.Grown()-grown0
	for _, s := range gen.Stats() {
		res.applied += s.Applied
		res.skipped += s.Skipped
	}
	res.stats = gen.Stats()
	phase.Store("settle")
	logf("seed %d: churn done: %d ops applied, %d skipped in %s (%.0f ops/s), %s written; %d entries, %s",
		seed, res.applied, res.skipped, res.churn.Round(time.Millisecond), float64(res.applied+res.skipped)/res.churn.Seconds(),
		mib(res.written), gen.Entries(), mib(gen.Bytes()))

	// Settle: compare every second until equal or o.settle.
	polls, err := os.Create(filepath.Join(res.dir, "polls.tsv"))
	if err != nil {
		return fmt.Errorf("polls: %w", err)
	}
	defer polls.Close()
	fmt.Fprintln(polls, "t_after_churn_s\tquick_s\tquick_diffs\tfull_s\tfull_diffs\terr\tclaimed_synced\tstatus")
	// Each poll: a quick metadata check (names, sizes, mtimes: lstat only)
	// against the master tree as it was at the churn end, and the full
	// entry-by-entry compare when that passes (or the master claims
	// synced, or every 10 s, or at the end).
	msnap, err := treecmp.Snapshot(mroot, testenv.CompareOptions)
	if err != nil {
		return fmt.Errorf("snapshot of the master tree: %w", err)
	}
	var lastDiffs []treecmp.Diff
	var lastFull time.Time
	for {
		pst, _, _ := getStatus(ctx, o.bin, mstate)
		claimed := pst.claimsSynced(churnEnd)
		q0 := time.Now()
		ssnap, qerr := treecmp.Snapshot(sroot, testenv.CompareOptions)
		qd := -1
		if qerr == nil {
			qd = quickDiff(msnap, ssnap)
		}
		q1 := time.Now()
		final := q1.Sub(churnEnd) > o.settle
		full := qd == 0 || claimed || final || q1.Sub(lastFull) > 10*time.Second
		var diffs []treecmp.Diff
		var cerr error
		c1, fd := q1, -1
		if full {
			diffs, cerr = o.compare(mroot, sroot)
			c1, lastFull = time.Now(), time.Now()
			if cerr == nil {
				fd = len(diffs)
			}
		}
		res.polls++
		errs := ""
		if cerr != nil {
			errs = cerr.Error()
		} else if qerr != nil {
			errs = qerr.Error()
		}
		fmt.Fprintf(polls, "%.3f\t%.3f\t%d\t%.3f\t%d\t%q\t%v\t%s\n", q0.Sub(churnEnd).Seconds(), q1.Sub(q0).Seconds(), qd,
			c1.Sub(q1).Seconds(), fd, errs, claimed, pst.brief(q0))
		if full && cerr == nil && len(diffs) == 0 {
			res.equal, res.toEqual, res.confirmed, res.checkDur, res.claimedEqual = true, q1.Sub(churnEnd), c1.Sub(churnEnd), c1.Sub(q1), claimed
			res.wireToEqual = px.Up() - wire0
			break
		}
		if full && cerr == nil {
			lastDiffs = diffs
			if claimed {
				res.silentPolls++
				if res.silentPolls == 1 {
					note := fmt.Sprintf("at +%.1fs the master claimed everything before the churn end synced (%s) but %d entries differed, first: %v",
						q0.Sub(churnEnd).Seconds(), pst.brief(q0), len(diffs), firstDiffs(diffs, 3))
					res.silent = append(res.silent, note)
					logf("seed %d: SILENT DIVERGENCE: %s", seed, trim(note, 600))
				}
			}
		}
		if final {
			break
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
	}
	res.wire = px.Up() - wire0
	if res.equal {
		logf("seed %d: trees EQUAL %.2fs after the churn end (the full compare from then took %.2fs; %d polls); status claimed synced then: %v",
			seed, res.toEqual.Seconds(), res.checkDur.Seconds(), res.polls, res.claimedEqual)
		// Once the master claims synced, the trees must still be equal.
		deadline := time.Now().Add(30 * time.Second)
		for {
			pst, _, _ := getStatus(ctx, o.bin, mstate)
			if pst.claimsSynced(churnEnd) {
				diffs, cerr := o.compare(mroot, sroot)
				if cerr == nil && len(diffs) > 0 {
					res.regressed = diffs
					logf("seed %d: REGRESSED: equal before, %d differences once the master claimed synced: %v", seed, len(diffs), firstDiffs(diffs, 5))
				}
				break
			}
			if time.Now().After(deadline) {
				logf("seed %d: NOTE: the master did not claim synced within 30s of the trees being equal: %s", seed, pst.brief(time.Now()))
				break
			}
			if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
				return err
			}
		}
	} else {
		res.diffs = lastDiffs
		pst, _, _ := getStatus(ctx, o.bin, mstate)
		if pst.claimsSynced(churnEnd) {
			note := fmt.Sprintf("after %s of settling the master claims everything synced (%s) but %d entries differ (it claimed so in %d of the compares that found differences)",
				o.settle, pst.brief(time.Now()), len(lastDiffs), res.silentPolls)
			res.silent = append(res.silent, note)
			logf("seed %d: *** SILENT DIVERGENCE *** %s", seed, note)
		}
		logf("seed %d: trees NOT EQUAL %s after the churn end: %d differences", seed, o.settle, len(lastDiffs))
	}
	if len(res.diffs) > 0 || len(res.silent) > 0 || len(res.regressed) > 0 {
		if err := writeDivergence(filepath.Join(res.dir, "divergence.txt"), mroot, sroot, res, gen.History()); err != nil {
			return err
		}
		if err := writeHistory(filepath.Join(res.dir, "ops.log.gz"), gen.History()); err != nil {
			return err
		}
		logf("seed %d: differences and the ops that touched them: %s; every op: %s", seed,
			filepath.Join(res.dir, "divergence.txt"), filepath.Join(res.dir, "ops.log.gz"))
	}
	stopBG()
	bgWG.Wait()
	if v := restartErr.Load(); v != nil {
		return fmt.Errorf("restarting a process: %w", v.(error))
	}
	if s, _, err := getStatus(ctx, o.bin, mstate); err == nil {
		res.lastStatus = s.brief(time.Now())
	}
	res.selfExits = append(master.unexpectedExits(), slave.unexpectedExits()...)
	if !res.passed(o.bar) {
		// Where both processes wait, while they still run as they did.
		for _, p := range []*proc{master, slave} {
			if pid := p.pid(); pid > 0 {
				if s := kernelStacks(pid); s != "" {
					_ = os.WriteFile(filepath.Join(res.dir, p.name+"-kernel-stacks.txt"), []byte(s), 0o644)
				}
			}
		}
	}
	// Stop both cleanly: they must exit 0.
	for _, p := range []*proc{master, slave} {
		code, err := p.signal(unix.SIGTERM, time.Minute)
		if err != nil || code != 0 {
			res.selfExits = append(res.selfExits, fmt.Sprintf("%s: exit %d after SIGTERM (%v)", p.name, code, err))
		}
	}
	res.masterWarn, res.masterErr, res.masterErrLines = master.logLevels()
	res.slaveWarn, res.slaveErr, _ = slave.logLevels()
	if !res.passed(o.bar) {
		res.masterTail = master.logTail(8)
	}
	if res.passed(o.bar) && !o.keep {
		// State dirs are only worth their space when something went wrong.
		os.RemoveAll(mstate)
		os.RemoveAll(sstate)
	}
	return nil
}

// quickDiff counts the paths whose existence or mtime differs, or whose
// size differs unless both are multiples of 4 KiB (directories' sizes
// differ between two trees of equal content; the full compare decides).
func quickDiff(a, b map[string]treecmp.Stamp) int {
	n := 0
	for p, x := range a {
		y, ok := b[p]
		if !ok || x.Mtime != y.Mtime || (x.Size != y.Size && (x.Size%4096 != 0 || y.Size%4096 != 0 || x.Size == 0 || y.Size == 0)) {
			n++
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			n++
		}
	}
	return n
}

func minmax(mm [2]int64, v int64) [2]int64 {
	if mm[0] < 0 || v < mm[0] {
		mm[0] = v
	}
	if v > mm[1] {
		mm[1] = v
	}
	return mm
}

func mib(n int64) string {
	if n < 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func firstDiffs(d []treecmp.Diff, n int) []string {
	var out []string
	for i, x := range d {
		if i == n {
			out = append(out, fmt.Sprintf("... %d more", len(d)-n))
			break
		}
		out = append(out, shortDiff(x))
	}
	return out
}

// shortDiff renders a difference for a terminal: a long path is cut in
// the middle, what differs is kept whole.
func shortDiff(d treecmp.Diff) string {
	p := fmt.Sprintf("%q", d.Path)
	if len(p) > 160 {
		p = p[:60] + " … " + p[len(p)-90:]
	}
	return p + ": " + d.What
}

// describe is a forensic line about rel under root: type, inode, links,
// size, mode, owner, mtime, gfid.
func describe(root, rel string) string {
	p := root
	if rel != "." && rel != "" {
		p = root + "/" + rel
	}
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return "absent (" + errName(err) + ")"
	}
	typ := map[uint32]string{unix.S_IFREG: "file", unix.S_IFDIR: "dir", unix.S_IFLNK: "symlink", unix.S_IFIFO: "fifo", unix.S_IFSOCK: "socket"}[st.Mode&unix.S_IFMT]
	s := fmt.Sprintf("%s ino=%d nlink=%d size=%d mode=%#o owner=%d:%d mtime=%d.%09d", typ, st.Ino, st.Nlink, st.Size, st.Mode&0o7777,
		st.Uid, st.Gid, st.Mtim.Sec, st.Mtim.Nsec)
	for _, name := range []string{"trusted.georep.gfid", "user.georep.gfid"} {
		buf := make([]byte, 64)
		if n, err := unix.Lgetxattr(p, name, buf); err == nil {
			s += " gfid=" + hex.EncodeToString(buf[:n])
			break
		}
	}
	if typ == "symlink" {
		if t, err := os.Readlink(p); err == nil {
			s += fmt.Sprintf(" -> %q", trim(t, 200))
		}
	}
	return s
}

// writeDivergence writes every difference (up to 50) with both sides
// described and the ops that touched the path.
func writeDivergence(path, mroot, sroot string, res *result, h []Event) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("divergence report: %w", err)
	}
	defer f.Close()
	w := io.Writer(f)
	fmt.Fprintf(w, "seed %d: master %s, slave %s\n", res.seed, mroot, sroot)
	for _, s := range res.silent {
		fmt.Fprintf(w, "SILENT DIVERGENCE: %s\n", s)
	}
	report := func(title string, diffs []treecmp.Diff) {
		fmt.Fprintf(w, "\n==== %s: %d differences (a = master, b = slave) ====\n", title, len(diffs))
		for _, d := range diffs {
			fmt.Fprintf(w, "%s\n", d)
		}
		fmt.Fprintf(w, "\n---- the first %d in detail ----\n", min(len(diffs), 50))
		// Several differences of one path share the history.
		seen := map[string]bool{}
		shown := 0
		for _, d := range diffs {
			if shown == 50 {
				fmt.Fprintf(w, "\n... %d more differences not shown\n", len(diffs)-50)
				break
			}
			shown++
			fmt.Fprintf(w, "\n-- %s\n", d)
			if seen[d.Path] {
				continue
			}
			seen[d.Path] = true
			fmt.Fprintf(w, "   master: %s\n", describe(mroot, d.Path))
			fmt.Fprintf(w, "   slave:  %s\n", describe(sroot, d.Path))
			if d.Path != "." {
				par := parentOf(d.Path)
				fmt.Fprintf(w, "   master parent %q: %s\n", par, describe(mroot, par))
				fmt.Fprintf(w, "   slave parent  %q: %s\n", par, describe(sroot, par))
			}
			evs, total := relevantEvents(h, d.Path, 60)
			fmt.Fprintf(w, "   ops that touched it (following renames and hardlinks): %d, the last %d:\n", total, len(evs))
			for _, e := range evs {
				fmt.Fprintf(w, "     %s\n", e)
			}
		}
	}
	if len(res.diffs) > 0 {
		report("at the end of the settle time", res.diffs)
	}
	if len(res.regressed) > 0 {
		report("after the trees were equal, once the master claimed synced", res.regressed)
	}
	return nil
}

// kindTable renders per-kind counts, sorted by kind name.
func kindTable(stats map[string]*KindStats) string {
	var names []string
	for k := range stats {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "    %-30s %9s %8s  %s\n", "op", "applied", "skipped", "skip reasons")
	for _, k := range names {
		s := stats[k]
		var errs []string
		for e, n := range s.Errs {
			errs = append(errs, fmt.Sprintf("%s=%d", e, n))
		}
		sort.Strings(errs)
		fmt.Fprintf(&b, "    %-30s %9d %8d  %s\n", k, s.Applied, s.Skipped, strings.Join(errs, " "))
	}
	return b.String()
}

// compare compares the trees entry by entry, leaving out the paths the
// rules exclude (on the master or the slave, whichever has the entry: an
// excluded path may differ either way).
func (o *options) compare(mroot, sroot string) ([]treecmp.Diff, error) {
	diffs, err := treecmp.Compare(mroot, sroot, testenv.CompareOptions)
	if err != nil || o.rules.Len() == 0 {
		return diffs, err
	}
	// A hardlinked file with a name the rules exclude has fewer names on
	// the slave, by design: its nlink and group differ.
	partial := map[string]bool{}
	for _, d := range diffs {
		if strings.HasPrefix(d.What, "hardlink group:") {
			for _, q := range quoted.FindAllString(d.What, -1) {
				if name, err := strconv.Unquote(q); err == nil && o.excludedPath(mroot, sroot, name) {
					partial[d.Path] = true
				}
			}
		}
	}
	out := diffs[:0]
	for _, d := range diffs {
		if d.Path != treecmp.RootPath && o.excludedPath(mroot, sroot, d.Path) {
			continue
		}
		if partial[d.Path] && (strings.HasPrefix(d.What, "hardlink group:") || strings.HasPrefix(d.What, "nlink:")) {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// quoted matches a %q-quoted string.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

func (o *options) excludedPath(mroot, sroot, rel string) bool {
	for _, root := range []string{mroot, sroot} {
		if fi, err := os.Lstat(filepath.Join(root, rel)); err == nil {
			return o.rules.Excluded(rel, fi.IsDir())
		}
	}
	return o.rules.Excluded(rel, false) || o.rules.Excluded(rel, true)
}
