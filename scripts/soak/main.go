// Command soak is an adversarial soak test of georep's live replication:
// it builds georep, starts a real slave and a live master on loopback (the
// master's link through a counting relay), churns the master tree with its
// own generator for a long time at a steady rate, and then checks, entry
// by entry, how soon the replica equals the master once the churn stops —
// and whether the master claimed "synced" while it did not. See README.md.
//
//	go run ./scripts/soak [-quick] [-seeds 1,2,3] [-duration 30m] [-rate 300] ...
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/georep/georep/internal/rules"
)

func main() {
	os.Exit(mainErr())
}

func mainErr() int {
	o := &options{}
	var seedsFlag, masterFlags, slaveFlags string
	var seed uint64
	var quick bool
	var maxMiB int64
	flag.IntVar(&o.files, "files", 5000, "regular files in the initial tree")
	flag.DurationVar(&o.duration, "duration", 30*time.Minute, "how long the churn runs, per seed")
	flag.Float64Var(&o.rate, "rate", 300, "churn ops per second")
	flag.Uint64Var(&seed, "seed", 1, "the churn's seed (one seed; -seeds runs several)")
	flag.StringVar(&seedsFlag, "seeds", "1,2,3", "seeds to run one after the other, each on fresh trees (comma-separated)")
	flag.BoolVar(&quick, "quick", false, "smoke run: -files 2000 -duration 60s -rate 300 -seeds 1 (flags given explicitly win)")
	flag.StringVar(&o.out, "out", "", "output dir: logs, samples, divergence reports (default: a new dir under $TMPDIR)")
	flag.BoolVar(&o.loop, "loop", true, "as root, put both trees on a fresh loop-mounted ext4 per seed (else plain temp dirs)")
	flag.IntVar(&o.loopGiB, "loop-gib", 4, "size of the loop filesystem, GiB")
	flag.DurationVar(&o.settle, "settle", 120*time.Second, "after the churn, how long to wait for the trees to become equal")
	flag.DurationVar(&o.bar, "bar", 10*time.Second, "a seed passes when the trees are equal within this long after the churn end")
	flag.DurationVar(&o.killMasterEvery, "kill-master-every", 0, "SIGKILL the master this often during the churn and restart it at once (0: never)")
	flag.DurationVar(&o.restartSlaveEvery, "restart-slave-every", 0, "SIGKILL the slave this often during the churn and restart it at once (0: never)")
	flag.DurationVar(&o.sampleEvery, "sample-every", 10*time.Second, "how often RSS, fds, status and byte counts are sampled")
	flag.StringVar(&o.bin, "georep", "", "a georep binary to use (default: go build ./cmd/georep into a temp dir)")
	flag.Int64Var(&maxMiB, "max-mib", 1024, "bound on the master tree's apparent file bytes during the churn, MiB")
	flag.BoolVar(&o.keep, "keep", false, "keep the trees (mounted) and state dirs of a seed that failed, for inspection")
	flag.BoolVar(&o.profile, "profile", false, "run both with --cpuprofile (NAME-N.cpu.pprof in the seed's dir, written when they stop cleanly)")
	flag.StringVar(&o.logLevel, "log-level", "info", "georep log level for both processes")
	flag.StringVar(&masterFlags, "master-flags", "", "extra flags for georep master, space-separated (e.g. \"--watcher inotify\")")
	flag.StringVar(&slaveFlags, "slave-flags", "", "extra flags for georep slave, space-separated")
	flag.Func("exclude", "a replication rule (gitignore-style `PATTERN`, repeatable): passed to the master as --exclude; differences at excluded paths are not counted", func(s string) error {
		o.excludes = append(o.excludes, s)
		return nil
	})
	flag.Parse()

	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if quick {
		if !set["files"] {
			o.files = 2000
		}
		if !set["duration"] {
			o.duration = 60 * time.Second
		}
		if !set["rate"] {
			o.rate = 300
		}
		if !set["seeds"] && !set["seed"] {
			seedsFlag = "1"
		}
	}
	if set["seed"] && !set["seeds"] {
		seedsFlag = strconv.FormatUint(seed, 10)
	}
	for _, s := range strings.Split(seedsFlag, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "soak: -seeds: %q is not a seed\n", s)
			return 2
		}
		o.seeds = append(o.seeds, v)
	}
	if len(o.seeds) == 0 || o.rate <= 0 || o.files < 0 || o.duration <= 0 {
		fmt.Fprintln(os.Stderr, "soak: need at least one seed, a positive -rate and -duration")
		return 2
	}
	o.maxBytes = maxMiB << 20
	o.masterFlags = strings.Fields(masterFlags)
	for _, e := range o.excludes {
		o.masterFlags = append(o.masterFlags, "--exclude", e)
	}
	var err error
	if o.rules, err = rules.New(o.excludes, "-exclude"); err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		return 2
	}
	o.slaveFlags = strings.Fields(slaveFlags)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if o.out == "" {
		d, err := os.MkdirTemp("", "georep-soak-out-")
		if err != nil {
			fmt.Fprintf(os.Stderr, "soak: %v\n", err)
			return 1
		}
		o.out = d
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "soak: output dir: %v\n", err)
		return 1
	}
	if abs, err := filepath.Abs(o.out); err == nil {
		o.out = abs
	}
	if o.bin == "" {
		dir, err := os.MkdirTemp("", "georep-soak-bin-")
		if err != nil {
			fmt.Fprintf(os.Stderr, "soak: %v\n", err)
			return 1
		}
		defer os.RemoveAll(dir)
		o.bin = filepath.Join(dir, "georep")
		logf("building georep into %s", o.bin)
		out, err := exec.CommandContext(ctx, "go", "build", "-o", o.bin, "github.com/georep/georep/cmd/georep").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "soak: go build: %v\n%s", err, out)
			return 1
		}
	}
	if os.Geteuid() != 0 {
		logf("not root: plain temp dirs, no chown, no trusted.* xattrs")
	}
	logf("soak: seeds %v, %d files, churn %s at %.0f ops/s, settle %s, bar %s, kill master every %s, restart slave every %s; out %s",
		o.seeds, o.files, o.duration, o.rate, o.settle, o.bar, o.killMasterEvery, o.restartSlaveEvery, o.out)

	var results []*result
	for _, s := range o.seeds {
		if ctx.Err() != nil {
			break
		}
		r := runSeed(ctx, o, s)
		results = append(results, r)
		printSeed(o, r)
	}
	failed := printSummary(o, results)
	if ctx.Err() != nil {
		logf("interrupted")
		return 130
	}
	if failed {
		return 1
	}
	return 0
}

func printSeed(o *options, r *result) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n======== seed %d ========\n", r.seed)
	if r.err != nil {
		fmt.Fprintf(&b, "HARNESS ERROR: %v\n", r.err)
	}
	fmt.Fprintf(&b, "initial tree: %d entries (%d files asked), %s, made in %s; initial sync %s, %s on the wire\n",
		r.entries0, r.files0, mib(r.bytes0), r.populate.Round(time.Millisecond), r.initialSync.Round(time.Millisecond), mib(r.initialWire))
	if r.stats != nil {
		fmt.Fprintf(&b, "churn: %s, %d ops applied, %d skipped (%.0f ops/s)\n", r.churn.Round(time.Millisecond), r.applied, r.skipped,
			float64(r.applied+r.skipped)/max(r.churn.Seconds(), 1e-9))
		b.WriteString(kindTable(r.stats))
	}
	fmt.Fprintf(&b, "bytes written by the churn %s (and %s of holes made by ftruncate); sent master->slave on the wire %s (until equal: %s)\n",
		mib(r.written), mib(r.grown), mib(r.wire), mib(r.wireToEqual))
	fmt.Fprintf(&b, "master RSS %s..%s, fds max %d; slave RSS %s..%s, fds max %d; max lag %s; Faulty in %d samples\n",
		mib(r.rssM[0]), mib(r.rssM[1]), r.fdsM, mib(r.rssS[0]), mib(r.rssS[1]), r.fdsS, fmtLag(r.maxLag), r.faultySamples)
	if r.masterKills+r.slaveKills > 0 {
		fmt.Fprintf(&b, "faults injected: master killed %d times, slave %d times\n", r.masterKills, r.slaveKills)
	}
	fmt.Fprintf(&b, "logs: master %d WARN %d ERROR, slave %d WARN %d ERROR\n", r.masterWarn, r.masterErr, r.slaveWarn, r.slaveErr)
	for _, l := range r.masterErrLines {
		fmt.Fprintf(&b, "  master error: %s\n", l)
	}
	if len(r.masterTail) > 0 {
		fmt.Fprintf(&b, "master log, last lines:\n")
		for _, l := range r.masterTail {
			fmt.Fprintf(&b, "  | %s\n", l)
		}
	}
	for _, s := range r.selfExits {
		fmt.Fprintf(&b, "PROCESS: %s\n", s)
	}
	switch {
	case r.equal:
		fmt.Fprintf(&b, "EQUAL %.2fs after the churn end (metadata equal then; the full compare from then took %.2fs, confirmed at +%.2fs; %d polls); status claimed synced then: %v\n",
			r.toEqual.Seconds(), r.checkDur.Seconds(), r.confirmed.Seconds(), r.polls, r.claimedEqual)
	case r.stats != nil:
		fmt.Fprintf(&b, "NOT EQUAL after %s of settling: %d differences (first 50 below; details in %s)\n", o.settle, len(r.diffs),
			filepath.Join(r.dir, "divergence.txt"))
		for i, d := range r.diffs {
			if i == 50 {
				break
			}
			fmt.Fprintf(&b, "  %s\n", shortDiff(d))
		}
	}
	for _, s := range r.silent {
		fmt.Fprintf(&b, "*** SILENT DIVERGENCE: %s\n", trim(s, 1000))
	}
	if len(r.regressed) > 0 {
		fmt.Fprintf(&b, "*** REGRESSED after being equal: %d differences: %v\n", len(r.regressed), firstDiffs(r.regressed, 10))
	}
	if r.lastStatus != "" {
		fmt.Fprintf(&b, "last status: %s\n", r.lastStatus)
	}
	verdict := "PASS"
	if !r.passed(o.bar) {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "seed %d: %s (bar: equal within %s of the churn end, no silent divergence)\n", r.seed, verdict, o.bar)
	fmt.Print(b.String())
	if r.dir != "" {
		_ = os.WriteFile(filepath.Join(r.dir, "summary.txt"), []byte(b.String()), 0o644)
	}
}

func fmtLag(d time.Duration) string {
	if d < 0 {
		return "N/A"
	}
	return d.Round(time.Millisecond).String()
}

// printSummary prints the table of every seed; it reports whether any failed.
func printSummary(o *options, rs []*result) bool {
	fmt.Printf("\n======== summary (%s churn at %.0f ops/s, %d files; out %s) ========\n", o.duration, o.rate, o.files, o.out)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "seed\tapplied\tskipped\tchurn\tto equal\twritten\twire\tmaster RSS min-max\tslave RSS min-max\tfds m/s\tmax lag\tdiffs\tverdict\t")
	failed := false
	for _, r := range rs {
		eq := "never"
		if r.equal {
			eq = fmt.Sprintf("%.2fs", r.toEqual.Seconds())
		}
		verdict := "PASS"
		if !r.passed(o.bar) {
			verdict, failed = "FAIL", true
			if len(r.silent) > 0 {
				verdict = "FAIL SILENT"
			}
			if r.err != nil {
				verdict = "ERROR"
			}
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s-%s\t%s-%s\t%d/%d\t%s\t%d\t%s\t\n", r.seed, r.applied, r.skipped,
			r.churn.Round(time.Second), eq, mib(r.written), mib(r.wire), mib(r.rssM[0]), mib(r.rssM[1]), mib(r.rssS[0]), mib(r.rssS[1]),
			r.fdsM, r.fdsS, fmtLag(r.maxLag), len(r.diffs), verdict)
	}
	tw.Flush()
	for _, r := range rs {
		if r.err != nil {
			fmt.Printf("seed %d: %v\n", r.seed, r.err)
		}
	}
	if len(rs) < len(o.seeds) {
		failed = true
	}
	return failed
}
