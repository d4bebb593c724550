// Command bench runs georep and rsync on the same workloads, in the same
// run, and prints per-workload tables with ratios; georep with exclude
// rules against georep on the included part alone (W6, see rules.go);
// georep's first one-shot into a slave pre-seeded by cp -a against an
// rsync no-op (W7), and georep verify of an unchanged tree (V1; both in
// trust.go); and georep's live mode and lsyncd on latency workloads
// (L1-L3, see latency.go).
//
//	make bench                      # builds bin/georep, installs rsync if missing
//	BENCH_SCALE=0.01 RUNS=3 make bench
//	BENCH_ONLY=L1,L2,L3 make bench  # only the latency workloads
//
// Environment:
//
//	BENCH_SCALE   float, default 1.0: scales file counts and sizes
//	RUNS          repetitions per workload and tool, default 3 (medians are reported)
//	BENCH_OUT     also write the tables as Markdown to this file
//	BENCH_RSS=1   also run W1x2 (always on when BENCH_SCALE >= 1)
//	BENCH_VERIFY  "full" (compare all content) or "quick" (counts, sizes, modes,
//	              owners, mtimes); default full when BENCH_SCALE <= 0.01.
//	              W3/W4 (one big file) always compare content.
//	BENCH_ONLY    comma-separated workloads to run, e.g. W1,W3 (W4 needs W3, W5 needs W1),
//	              W6 (rules: what excluding half of a W1-sized tree costs),
//	              W7 (the W1 tree, cp -a to the slave, then georep's first one-shot
//	              against an rsync no-op), V1 (georep verify of the W1 tree, unchanged
//	              and with 10 files changed on the slave; against W1's georep copy
//	              when W1 runs, else one made by a one-shot),
//	              L1,L2,L3 (latency: georep live vs lsyncd)
//	BENCH_SYNC_JOBS  pass --sync-jobs N to the georep master
//	BENCH_COMPRESS=1 pass --compress to georep and -z to rsync (if georep has --compress)
//	BENCH_BWLIMIT=KIB pass --bwlimit KIB to georep and rsync (if georep has --bwlimit)
//	GEOREP        georep binary, default bin/georep
//	BENCH_GEOREP_LIVE_ARGS  more flags for the live georep master of L1-L3,
//	              space-separated, e.g. "--change-interval 100ms"; no shell
//	              (no globbing, no variables): "--exclude *.tmp" passes *.tmp
//	              as it is, and '...' or "..." group words (and are removed):
//	              "--exclude '*.tmp' --exclude 'cache-*/'" works too
//	LSYNCD        lsyncd binary for L1-L3; by default lsyncd from PATH, installed
//	              with apt-get when missing (when that fails, its column says unavailable)
//
// Everything runs on 127.0.0.1: a counting TCP relay sits between the
// georep master and slave, between the rsync client and daemon, and
// between lsyncd's rsyncs and their daemon. In L1-L3 (RUNS only repeats the
// rename of L3) each tool gets one fresh session per workload.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type config struct {
	scale       float64
	runs        int
	rssWorkload bool
	out         string
	fullVerify  bool
	only        map[string]bool
	georep      string
	rsync       string
	georepExtra []string
	georepLive  []string // BENCH_GEOREP_LIVE_ARGS
	rsyncExtra  []string
	notes       []string
}

func main() { os.Exit(run()) }

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	cfg, err := loadConfig(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	tmp, err := os.MkdirTemp("", "georep-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer func() {
		fmt.Fprintf(os.Stderr, "bench: removing %s\n", tmp)
		if err := os.RemoveAll(tmp); err != nil {
			fmt.Fprintln(os.Stderr, "bench: cleaning up:", err)
		}
	}()
	spreadSubdirs(tmp)
	b := &bench{cfg: cfg, tmp: tmp, started: time.Now()}
	err = b.run(ctx)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "bench: interrupted; cleaning up")
			return 130
		}
		fmt.Fprintf(os.Stderr, "bench: FAILED: %v\n", err)
		return 1
	}
	return 0
}

func loadConfig(ctx context.Context) (config, error) {
	c := config{scale: 1, runs: 3, georep: "bin/georep"}
	if s := os.Getenv("BENCH_SCALE"); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || !(f > 0) || f > 100 {
			return c, fmt.Errorf("BENCH_SCALE=%q: want a number in (0, 100]", s)
		}
		c.scale = f
	}
	if s := os.Getenv("RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			return c, fmt.Errorf("RUNS=%q: want an integer in [1, 100]", s)
		}
		c.runs = n
	}
	c.rssWorkload = c.scale >= 1 || os.Getenv("BENCH_RSS") == "1"
	c.out = os.Getenv("BENCH_OUT")
	switch v := os.Getenv("BENCH_VERIFY"); v {
	case "":
		c.fullVerify = c.scale <= 0.01
	case "full":
		c.fullVerify = true
	case "quick":
	default:
		return c, fmt.Errorf("BENCH_VERIFY=%q: want full or quick", v)
	}
	if s := os.Getenv("BENCH_ONLY"); s != "" {
		c.only = map[string]bool{}
		for _, w := range strings.Split(s, ",") {
			c.only[strings.ToUpper(strings.TrimSpace(w))] = true
		}
	}
	live, err := splitArgs(os.Getenv("BENCH_GEOREP_LIVE_ARGS"))
	if err != nil {
		return c, fmt.Errorf("BENCH_GEOREP_LIVE_ARGS: %v", err)
	}
	c.georepLive = live
	if len(c.georepLive) > 0 {
		q := make([]string, len(live))
		for i, a := range live {
			q[i] = a
			if strings.ContainsAny(a, " \t*?[]'\"$") {
				q[i] = "'" + a + "'"
			}
		}
		c.notes = append(c.notes, "georep live master (L1-L3): "+strings.Join(q, " "))
	}
	if g := os.Getenv("GEOREP"); g != "" {
		c.georep = g
	}
	abs, err := filepath.Abs(c.georep)
	if err != nil {
		return c, err
	}
	c.georep = abs
	if _, err := os.Stat(c.georep); err != nil {
		return c, fmt.Errorf("georep binary: %v (run `make bench`, which builds bin/georep)", err)
	}
	if c.rsync, err = exec.LookPath("rsync"); err != nil {
		return c, errors.New("rsync not found (`make bench` installs it with apt-get)")
	}

	// Optional georep flags: only passed when this georep has them.
	help := georepMasterHelp(ctx, c.georep)
	has := func(flag string) bool {
		return strings.Contains(help, "-"+flag+" ") || strings.Contains(help, "-"+flag+"\n")
	}
	if s := os.Getenv("BENCH_SYNC_JOBS"); s != "" {
		c.georepExtra = append(c.georepExtra, "--sync-jobs", s)
		c.notes = append(c.notes, "georep master --sync-jobs "+s)
	}
	if os.Getenv("BENCH_COMPRESS") == "1" {
		if has("compress") {
			c.georepExtra = append(c.georepExtra, "--compress")
			c.rsyncExtra = append(c.rsyncExtra, "-z")
			c.notes = append(c.notes, "compression on: georep --compress, rsync -z")
		} else {
			c.notes = append(c.notes, "BENCH_COMPRESS=1 ignored: this georep has no --compress (rsync runs without -z too)")
		}
	}
	if s := os.Getenv("BENCH_BWLIMIT"); s != "" {
		if _, err := strconv.Atoi(s); err != nil {
			return c, fmt.Errorf("BENCH_BWLIMIT=%q: want KiB/s", s)
		}
		if has("bwlimit") {
			c.georepExtra = append(c.georepExtra, "--bwlimit", s)
			c.rsyncExtra = append(c.rsyncExtra, "--bwlimit="+s)
			c.notes = append(c.notes, "bandwidth limit "+s+" KiB/s on both")
		} else {
			c.notes = append(c.notes, "BENCH_BWLIMIT ignored: this georep has no --bwlimit (rsync unlimited too)")
		}
	}
	return c, nil
}

func georepMasterHelp(ctx context.Context, bin string) string {
	cmd := exec.CommandContext(ctx, bin, "master", "-h")
	out, _ := cmd.CombinedOutput() // -h exits non-zero
	return string(out)
}

type bench struct {
	cfg       config
	tmp       string
	started   time.Time
	results   []result
	lsyncd    string // path, for L1-L3
	lsyncdErr error  // why there is none
}

// result is one workload's table.
type result interface {
	text() string
	markdown() string
}

func (b *bench) wantLatency() bool { return b.want("L1") || b.want("L2") || b.want("L3") }

func (b *bench) want(id string) bool { return b.cfg.only == nil || b.cfg.only[id] }

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%7.1fs] %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, args...))
}

func scaled(n int, scale float64) int {
	v := int(float64(n)*scale + 0.5)
	if v < 1 {
		v = 1
	}
	return v
}

func (b *bench) run(ctx context.Context) error {
	m := machineInfo(b.cfg)
	if b.wantLatency() {
		b.lsyncd, b.lsyncdErr = b.findLsyncd(ctx)
		if b.lsyncdErr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			m.lsyncd = "unavailable: " + b.lsyncdErr.Error()
		} else {
			m.lsyncd = lsyncdVersion(b.lsyncd)
		}
	}
	fmt.Print(m.text())
	s := b.cfg.scale
	nFiles, nDirs := scaled(100000, s), scaled(1000, s)

	// W1's tree, kept for W5, V1 and W7; W1's copies, kept for W5 and V1.
	var w1src string
	var w1targets map[tool]target
	var w1sum treeSum
	var w1 *workload
	if b.want("W1") || b.want("W5") || b.want("V1") || b.want("W7") {
		w1src = filepath.Join(b.tmp, "w1-src")
		b.progress("W1: generating %d files in %d dirs", nFiles, nDirs)
		if _, err := genSmallTree(w1src, nFiles, nDirs); err != nil {
			return err
		}
	}
	if b.want("W1") || b.want("W5") {
		w1 = &workload{id: "W1", title: fmt.Sprintf("%d files of 1-8 KiB in %d dirs, initial sync into an empty dir", nFiles, nDirs)}
		var err error
		if w1targets, w1sum, err = b.initialSync(ctx, w1, w1src, true); err != nil {
			return err
		}
		b.done(w1)
	} else if w1src != "" {
		var err error
		if w1sum, err = summarize(w1src); err != nil {
			return err
		}
	}

	if b.want("W2") {
		if err := b.w2(ctx); err != nil {
			return err
		}
	}

	if b.want("W3") || b.want("W4") {
		if err := b.w3w4(ctx); err != nil {
			return err
		}
	}

	if w1targets != nil {
		w := &workload{id: "W5", title: fmt.Sprintf("the W1 tree (%d files) again, unchanged, into the synced destination: no-op", nFiles),
			payload: w1sum.bytes, payloadNote: "MB/s = tree bytes / wall"}
		err := b.incremental(ctx, w, w1src, w1targets, w1sum, nil, runOpts{}, b.cfg.fullVerify)
		if err != nil {
			return err
		}
		for _, r := range w.runs[toolGeorep] {
			if r.sentFiles != 0 {
				w.notes = append(w.notes, fmt.Sprintf("ANOMALY: a georep no-op run sent %d files (%d bytes)", r.sentFiles, r.sentBytes))
				break
			}
		}
		b.done(w)
	}

	if b.want("V1") {
		if err := b.v1setup(ctx, w1src, w1sum, w1, w1targets); err != nil {
			return err
		}
	}
	for _, t := range w1targets {
		b.remove(t.dir)
	}

	if b.want("W7") {
		if err := b.w7(ctx, w1src, w1sum); err != nil {
			return err
		}
	}
	if w1src != "" {
		b.remove(w1src)
	}

	if b.cfg.rssWorkload && b.want("W1X2") || b.cfg.only["W1X2"] {
		src := filepath.Join(b.tmp, "w1x2-src")
		b.progress("W1x2: generating %d files in %d dirs", 2*nFiles, 2*nDirs)
		if _, err := genSmallTree(src, 2*nFiles, 2*nDirs); err != nil {
			return err
		}
		w := &workload{id: "W1x2", title: fmt.Sprintf("%d files of 1-8 KiB in %d dirs (twice W1), initial sync: does peak RSS grow with the tree?", 2*nFiles, 2*nDirs)}
		if _, _, err := b.initialSync(ctx, w, src, false); err != nil {
			return err
		}
		b.done(w)
		b.remove(src)
	}

	if b.want("W6") {
		if err := b.w6(ctx, nFiles, nDirs); err != nil {
			return err
		}
	}

	if b.wantLatency() {
		if err := b.latency(ctx); err != nil {
			return err
		}
	}

	fmt.Printf("total bench time %s\n", time.Since(b.started).Round(100*time.Millisecond))
	if b.cfg.out != "" {
		if err := os.WriteFile(b.cfg.out, []byte(b.markdown(m)), 0o644); err != nil {
			return fmt.Errorf("writing BENCH_OUT: %w", err)
		}
		fmt.Printf("markdown written to %s\n", b.cfg.out)
	}
	return nil
}

func (b *bench) done(w result) {
	b.results = append(b.results, w)
	fmt.Print(w.text())
}

func (b *bench) w2(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "go", "env", "GOROOT").Output()
	if err != nil {
		return fmt.Errorf("go env GOROOT: %w", err)
	}
	goroot := strings.TrimSpace(string(out))
	sub, desc := "", "all of GOROOT"
	switch {
	case b.cfg.scale >= 0.5:
	case b.cfg.scale >= 0.05:
		sub, desc = "src", "GOROOT/src"
	default:
		sub, desc = filepath.Join("src", "net"), "GOROOT/src/net"
	}
	src := filepath.Join(b.tmp, "w2-src")
	b.progress("W2: cp -a %s", filepath.Join(goroot, sub))
	if out, err := exec.CommandContext(ctx, "cp", "-a", filepath.Join(goroot, sub), src).CombinedOutput(); err != nil {
		return fmt.Errorf("cp -a: %v: %s", err, out)
	}
	w := &workload{id: "W2", title: fmt.Sprintf("a real tree: a copy of %s (%s), initial sync", desc, goroot)}
	if _, _, err := b.initialSync(ctx, w, src, false); err != nil {
		return err
	}
	b.done(w)
	b.remove(src)
	return nil
}

func (b *bench) w3w4(ctx context.Context) error {
	size := int64(float64(1<<30)*b.cfg.scale) &^ 4095
	if size < 1<<20 {
		size = 1 << 20
	}
	srcDir := filepath.Join(b.tmp, "w3-src")
	if err := os.Mkdir(srcDir, 0o755); err != nil {
		return err
	}
	big := filepath.Join(srcDir, "big.bin")
	b.progress("W3: generating a %d-byte random file", size)
	if err := genBigFile(big, size); err != nil {
		return err
	}
	w3 := &workload{id: "W3", title: fmt.Sprintf("one %s file of random (incompressible) data, initial sync", human(size)), throughputRatio: true}
	targets, sum, err := b.initialSync(ctx, w3, srcDir, true)
	if err != nil {
		return err
	}
	b.done(w3)

	if b.want("W4") {
		chg := int64(1 << 20)
		if chg > size/4 {
			chg = size / 4 &^ 4095
		}
		w4 := &workload{id: "W4", title: fmt.Sprintf("%s overwritten in the middle of the W3 file, sync into the old copy (delta case; rsync --no-whole-file)", human(chg)),
			payload: size, payloadNote: "MB/s = file size / wall"}
		var off int64
		prepare := func(r int) error {
			// rsync's quick check compares whole-second mtimes (unless
			// --modify-window=-1) and the size does not change: write in a
			// later second than the synced version (untimed). The file
			// system's clock is coarse, so check the result.
			st, err := os.Stat(big)
			if err != nil {
				return err
			}
			prev := st.ModTime().Unix()
			for try := 0; ; try++ {
				now := time.Now()
				select {
				case <-time.After(now.Truncate(time.Second).Add(time.Second + 20*time.Millisecond).Sub(now)):
				case <-ctx.Done():
					return ctx.Err()
				}
				if off, err = overwriteMiddle(big, chg, uint64(r)+1); err != nil {
					return err
				}
				if st, err = os.Stat(big); err != nil {
					return err
				}
				if st.ModTime().Unix() != prev {
					return nil
				}
				if try == 5 {
					return fmt.Errorf("W4: the mtime of %s stays in second %d", big, prev)
				}
			}
		}
		err := b.incremental(ctx, w4, srcDir, targets, sum, prepare, runOpts{delta: true}, true)
		if err != nil {
			return err
		}
		w4.notes = append(w4.notes, fmt.Sprintf("each run overwrites bytes [%d, %d) with new random data first (untimed)", off, off+chg))
		b.done(w4)
	}
	for _, t := range targets {
		b.remove(t.dir)
	}
	b.remove(srcDir)
	return nil
}

// order rotates the tools run by run, so that each sees similar cache state.
func order(run int) []tool {
	ts := make([]tool, numTools)
	for i := range ts {
		ts[i] = tool((i + run) % int(numTools))
	}
	return ts
}

func (b *bench) newTarget(w *workload, t tool, run int) (target, error) {
	return b.newTargetNamed(w.id, t.String(), run)
}

// newTargetNamed makes the dirs of one run of workload id by name.
func (b *bench) newTargetNamed(id, name string, run int) (target, error) {
	tg := target{dir: filepath.Join(b.tmp, fmt.Sprintf("%s-%s-r%d", strings.ToLower(id), name, run))}
	for _, d := range []string{tg.dst(), tg.sstate(), tg.mstate()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return tg, err
		}
	}
	return tg, nil
}

// initialSync runs every tool RUNS times from an empty destination (and
// fresh georep state dirs), verifying each run. Earlier runs' copies are
// only removed when the workload is done: deleting a tree just before a
// timed run would load the next run with the filesystem's freeing work
// (and, on ext4 without a journal, with recently-deleted inodes that the
// inode allocator scans past). With keep, the last run's targets are
// returned for a follow-up workload.
func (b *bench) initialSync(ctx context.Context, w *workload, src string, keep bool) (map[tool]target, treeSum, error) {
	sum, err := summarize(src)
	if err != nil {
		return nil, sum, err
	}
	w.payload = sum.bytes
	w.tree = sum
	b.progress("%s: warm-up read of %s (%s)", w.id, src, sum)
	if err := warmup(src); err != nil {
		return nil, sum, err
	}
	var all []target
	last := map[tool]target{}
	defer func() {
		kept := map[string]bool{}
		if keep && err == nil {
			for _, tg := range last {
				kept[tg.dir] = true
			}
		}
		var rm []string
		for _, tg := range all {
			if !kept[tg.dir] {
				rm = append(rm, tg.dir)
			}
		}
		b.remove(rm...)
	}()
	for r := 0; r < b.cfg.runs; r++ {
		for _, t := range order(r) {
			var tg target
			if tg, err = b.newTarget(w, t, r); err != nil {
				return nil, sum, err
			}
			all = append(all, tg)
			last[t] = tg
			var res runResult
			res, err = b.runTool(ctx, t, src, tg, runOpts{})
			if err != nil {
				err = fmt.Errorf("%s run %d, %s: %w", w.id, r+1, t, err)
				return nil, sum, err
			}
			if err = verify(src, tg.dst(), sum, b.cfg.fullVerify); err != nil {
				err = fmt.Errorf("%s run %d, %s: wrong result: %w", w.id, r+1, t, err)
				return nil, sum, err
			}
			w.add(t, res)
			b.progress("%s run %d/%d %-12s %8.3fs %s", w.id, r+1, b.cfg.runs, t, res.wall.Seconds(), res.brief())
		}
	}
	return last, sum, nil
}

// remove disposes of dirs no longer needed. Deleting a big tree makes
// the next runs' file creation slower for minutes on some filesystems
// (ext4 without a journal skips recently freed inodes one by one), so
// while there is room for everything the bench writes (benchBytes at
// BENCH_SCALE=1, and 8 GiB to spare) the deletion waits for the end of
// the bench; otherwise the dirs go now. Either way the filesystem is then
// flushed (untimed). (The test was a quarter of the filesystem free, which
// a 264 GB disk with 57 GB available failed: every workload's copies were
// deleted under the next one's runs.)
func (b *bench) remove(dirs ...string) {
	var st unix.Statfs_t
	need := uint64(float64(benchBytes)*b.cfg.scale*float64(b.cfg.runs)/3) + 8<<30
	roomy := unix.Statfs(b.tmp, &st) == nil &&
		st.Bavail*uint64(st.Bsize) > need && st.Ffree > st.Files/4
	for _, d := range dirs {
		if roomy {
			continue // under b.tmp: removed on exit
		}
		if err := os.RemoveAll(d); err != nil {
			fmt.Fprintln(os.Stderr, "bench: removing:", err)
		}
	}
	syncFS(b.tmp)
}

// benchBytes is about what a whole bench writes at BENCH_SCALE=1 and
// RUNS=3, with room to spare (it scales with both): W1 and W1x2 (0.46 and
// 0.92 GB a copy), W2 (0.23 GB) and W3 (1 GiB), nine copies each (three
// tools, three runs), 24 GB; W6, its two sources (0.46 and 0.23 GB) and
// twelve copies of 0.23 GB, 3.5 GB; W7, six copies of W1's tree, 2.8 GB;
// 31 GB in all.
const benchBytes = 40 << 30

// fsTopdirFL is FS_TOPDIR_FL (chattr +T).
const fsTopdirFL = 0x00020000

// spreadSubdirs marks dir as a top of a directory hierarchy (chattr +T),
// best effort: ext4 then places each subdirectory (each run's copy) in a
// block group of its own choosing, as for directories under the root,
// instead of next to its parent. Without it, every copy lands in the same
// groups as the copies (and the other files) deleted in the last minutes,
// and on ext4 without a journal the inode allocator scans past each
// recently deleted inode: file creation then costs what earlier runs (or
// other processes) deleted, not what the tool under test does.
func spreadSubdirs(dir string) {
	f, err := os.Open(dir)
	if err != nil {
		return
	}
	defer f.Close()
	flags, err := unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		return
	}
	_ = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags|fsTopdirFL)
}

// syncFS flushes the filesystem holding dir (syncfs(2)); errors are ignored.
func syncFS(dir string) {
	f, err := os.Open(dir)
	if err != nil {
		return
	}
	defer f.Close()
	_ = unix.Syncfs(int(f.Fd()))
}

// incremental runs every tool RUNS times into its existing target, after
// prepare(run) (if any) changed the source, verifying each run.
func (b *bench) incremental(ctx context.Context, w *workload, src string, targets map[tool]target, sum treeSum,
	prepare func(run int) error, o runOpts, full bool) error {
	w.tree = sum
	for r := 0; r < b.cfg.runs; r++ {
		if prepare != nil {
			if err := prepare(r); err != nil {
				return err
			}
			var err error
			if sum, err = summarize(src); err != nil {
				return err
			}
		}
		if r == 0 {
			b.progress("%s: warm-up read of %s", w.id, src)
			if err := warmup(src); err != nil {
				return err
			}
		}
		for _, t := range order(r) {
			tg, ok := targets[t]
			if !ok {
				return fmt.Errorf("%s: no destination from the previous workload for %s", w.id, t)
			}
			res, err := b.runTool(ctx, t, src, tg, o)
			if err != nil {
				return fmt.Errorf("%s run %d, %s: %w", w.id, r+1, t, err)
			}
			if err := verify(src, tg.dst(), sum, full); err != nil {
				return fmt.Errorf("%s run %d, %s: wrong result: %w", w.id, r+1, t, err)
			}
			w.add(t, res)
			b.progress("%s run %d/%d %-12s %8.3fs %s", w.id, r+1, b.cfg.runs, t, res.wall.Seconds(), res.brief())
		}
	}
	return nil
}

// splitArgs splits s into words at white space, without a shell: no
// globbing, no variables, no escapes. A '...' or "..." span is part of a
// word, white space in it included, and the quotes are removed (so that
// "--exclude '*.tmp'", written as for a shell, passes *.tmp).
func splitArgs(s string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("%q: unterminated %c", s, quote)
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}
