package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/georep/georep/internal/metrics"
	"github.com/georep/georep/internal/syncstatus"
	"github.com/georep/georep/master"
	"github.com/georep/georep/master/recorder"
)

type masterOptions struct {
	root           string
	slave          string
	stateDir       string
	oneshot        bool
	changeDetector string
	syncJobs       int
	ignoreDeletes  bool
	retries        int
	compress       bool
	noDataConn     bool
	bwlimit        int64 // KiB/s
	changeInterval time.Duration
	watcher        string
	batchSize      int
	maxBackoff     time.Duration
	tls            tlsOptions
	slaveName      string
	metricsAddr    string
	log            logOptions
	// The rules, in the order given: --exclude P is P, --include P is !P.
	excludes       []string
	excludeFrom    []string
	deleteExcluded bool
}

func runMasterCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o masterOptions
	fs := newFlagSet("master", stderr)
	fs.StringVar(&o.root, "root", "", "master root directory (required)")
	fs.StringVar(&o.slave, "slave", "", "slave address HOST:PORT (required)")
	fs.StringVar(&o.stateDir, "state-dir", "", "state directory (default: derived from root and slave under /var/lib/georep or ~/.local/state/georep)")
	fs.BoolVar(&o.oneshot, "oneshot", false, "crawl once, sync everything found, advance the marks and exit")
	fs.StringVar(&o.changeDetector, "change-detector", "", "how changes are found: changelog (live: the recorder's journal; the default) or xsync (a crawl; --oneshot)")
	fs.StringVar(&o.watcher, "watcher", recorder.WatchAuto, "live: the recorder's event source: auto (fanotify where the process may, else inotify), fanotify or inotify")
	fs.DurationVar(&o.changeInterval, "change-interval", recorder.DefaultInterval, "live: longest a change waits in the journal's open segment")
	fs.IntVar(&o.batchSize, "changelog-batch-size", master.DefaultBatchSize, "live: most journal segments one batch takes")
	fs.DurationVar(&o.maxBackoff, "max-backoff", master.DefaultMaxBackoff, "live: longest wait before a failed batch is retried or a faulty worker restarted")
	fs.IntVar(&o.syncJobs, "sync-jobs", master.DefaultSyncJobs, "data workers, each shipping one box of files per stream")
	fs.BoolVar(&o.ignoreDeletes, "ignore-deletes", false, "keep on the slave what was deleted on the master")
	fs.Func("exclude", "leave out what gitignore-style `PATTERN` matches (repeatable; after the root's "+master.RulesFile+" and --exclude-from files, the last match deciding)", func(s string) error {
		o.excludes = append(o.excludes, s)
		return nil
	})
	fs.Func("include", "replicate again what `PATTERN` matches beneath what an earlier pattern left out (repeatable; the same as --exclude '!PATTERN')", func(s string) error {
		o.excludes = append(o.excludes, "!"+s)
		return nil
	})
	fs.Func("exclude-from", "read patterns from `FILE` (repeatable)", func(s string) error {
		o.excludeFrom = append(o.excludeFrom, s)
		return nil
	})
	fs.BoolVar(&o.deleteExcluded, "delete-excluded", false, "remove from the slave what the rules leave out (else the slave's copies of newly excluded entries stay)")
	fs.IntVar(&o.retries, "retries", master.DefaultRetries, "attempts at a failing batch before a one-shot run gives up")
	fs.BoolVar(&o.compress, "compress", false, "compress file data (zstd) on the wire")
	fs.BoolVar(&o.noDataConn, "no-data-conn", false, "send all file data on the gRPC streams, with no data connection beside them for large files")
	fs.Int64Var(&o.bwlimit, "bwlimit", 0, "cap file data sent to this many KiB/s (0: no cap)")
	o.tls.register(fs, "master")
	fs.StringVar(&o.slaveName, "slave-name", "", "the name the slave's certificate must have (default: the host of --slave)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://HOST:PORT/metrics (default: none)")
	o.log.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if o.root == "" || o.slave == "" {
		return usageErr("--root and --slave are required")
	}
	if o.changeDetector == "" {
		o.changeDetector = "changelog"
		if o.oneshot {
			o.changeDetector = "xsync"
		}
	}
	switch {
	case o.oneshot && o.changeDetector != "xsync":
		return usageErr("--oneshot crawls: --change-detector must be xsync")
	case !o.oneshot && o.changeDetector != "changelog":
		return usageErr("continuous replication uses --change-detector changelog (xsync is for --oneshot)")
	}
	if o.changeInterval < time.Millisecond || o.changeInterval > time.Hour {
		return usageErr("--change-interval must be between 1ms and 1h")
	}
	if o.batchSize < 1 {
		return usageErr("--changelog-batch-size must be at least 1")
	}
	if o.maxBackoff < time.Second || o.maxBackoff > time.Hour {
		return usageErr("--max-backoff must be between 1s and 1h")
	}
	switch o.watcher {
	case recorder.WatchAuto, recorder.WatchFanotify, recorder.WatchInotify:
	default:
		return usageErr("--watcher must be auto, fanotify or inotify")
	}
	if o.syncJobs < 1 || o.syncJobs > 64 {
		return usageErr("--sync-jobs must be between 1 and 64")
	}
	if o.bwlimit < 0 {
		return usageErr("--bwlimit must not be negative")
	}
	if !o.oneshot {
		return runMasterLive(ctx, o, stderr)
	}
	_, err := runMasterOnce(ctx, o, stdout, stderr)
	return err
}

// runMasterLive replicates until interrupted (SIGINT/SIGTERM end it
// cleanly: the journal's open segment is committed first).
func runMasterLive(ctx context.Context, o masterOptions, stderr io.Writer) error {
	m, stop, err := newMasterFromOptions(o, stderr)
	if err != nil {
		return err
	}
	err = m.Run(ctx)
	stop(err)
	return err
}

// newMasterFromOptions makes a master with what runs beside it: its
// status (socket and persisted figures), metrics when asked, and a
// progress bar when stderr is a terminal. The returned stop ends them all;
// the run's error, if any, is the last fault the status keeps.
func newMasterFromOptions(o masterOptions, stderr io.Writer) (m *master.Master, stop func(runErr error), err error) {
	bar := newProgressBar(stderr)
	logOut := stderr
	if bar != nil {
		logOut = bar
	}
	tlsCfg, err := o.tls.clientTLS(o.slave, o.slaveName)
	if err != nil {
		return nil, nil, err
	}
	log, err := o.log.logger("master", logOut)
	if err != nil {
		return nil, nil, err
	}
	if o.stateDir == "" {
		o.stateDir = defaultStateDir("master", o.root, ":"+o.slave)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var cleanups []func()
	stopAll := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	defer func() {
		if err != nil {
			stopAll()
		}
	}()
	cleanups = append(cleanups, func() { cancel(); wg.Wait() })
	stopProfile, err := o.log.profile()
	if err != nil {
		return nil, nil, err
	}
	cleanups = append(cleanups, stopProfile)

	var met *metrics.Metrics
	sopts := syncstatus.Options{StateDir: o.stateDir, Master: masterName(o.root), Slave: o.slave, Logger: log}
	if o.metricsAddr != "" {
		met = metrics.New()
		sopts.OnBatch = met.ObserveBatch
	}
	svc, err := syncstatus.Start(sopts)
	if errors.Is(err, syncstatus.ErrRunning) {
		return nil, nil, fmt.Errorf("a master is already running for this session (state dir %s)", o.stateDir)
	}
	if err != nil {
		return nil, nil, err
	}
	cleanups = append(cleanups, func() {
		if err := svc.Close(); err != nil {
			log.Warn("status", "error", err)
		}
	})
	if met != nil {
		if err := met.Watch(svc.Tracker.Snapshot); err != nil {
			return nil, nil, err
		}
		lis, err := net.Listen("tcp", o.metricsAddr)
		if err != nil {
			return nil, nil, fmt.Errorf("metrics: %w", err)
		}
		log.Info("serving metrics", "url", "http://"+lis.Addr().String()+"/metrics")
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := metrics.Serve(ctx, lis, met.Handler()); err != nil {
				log.Error("metrics stopped", "error", err)
			}
		}()
	}
	if bar != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bar.run(ctx, svc.Tracker.Snapshot)
		}()
	}
	m, err = master.New(master.Config{
		Root: o.root, Slave: o.slave, StateDir: o.stateDir, SyncJobs: o.syncJobs,
		IgnoreDeletes: o.ignoreDeletes, Retries: o.retries, Logger: log,
		Compress: o.compress, BWLimit: o.bwlimit * 1024, NoDataConn: o.noDataConn,
		ChangeInterval: o.changeInterval, BatchSize: o.batchSize, Watcher: o.watcher, MaxBackoff: o.maxBackoff,
		TLS: tlsCfg, Insecure: o.tls.insecure, Status: svc.Tracker,
		Excludes: o.excludes, ExcludeFrom: o.excludeFrom, DeleteExcluded: o.deleteExcluded,
	})
	if err != nil {
		return nil, nil, err
	}
	cleanups = append(cleanups, func() { m.Close() })
	return m, func(runErr error) {
		svc.Tracker.Fault(runErr)
		stopAll()
	}, nil
}

// masterName is how the status table names a master: host:root.
func masterName(root string) string {
	host, err := os.Hostname()
	if err != nil {
		host = "localhost"
	}
	if abs, err := filepath.Abs(root); err == nil {
		root = abs
	}
	return host + ":" + root
}

func runMasterOnce(ctx context.Context, o masterOptions, stdout, stderr io.Writer) (*master.Summary, error) {
	m, stop, err := newMasterFromOptions(o, stderr)
	if err != nil {
		return nil, err
	}
	sum, err := m.RunOnce(ctx)
	// Stopped before the summary, so that the progress bar has its last
	// word before it.
	stop(err)
	if err != nil {
		return nil, err
	}
	b := sum.Batch
	fmt.Fprintf(stdout, "georep: slave in sync as of %s (took %s)\n", sum.Stime.Format(time.RFC3339Nano), sum.Duration.Round(time.Millisecond))
	fmt.Fprintf(stdout, "  crawled   %d dirs, %d files (%d bytes), %d symlinks, %d others\n",
		sum.Crawl.Dirs, sum.Crawl.Files, sum.Crawl.Bytes, sum.Crawl.Symlinks, sum.Crawl.Others)
	fmt.Fprintf(stdout, "  entries   %d applied, %d already there, %d conflicts resolved, %d directories purged\n",
		b.EntryOps, b.EntryNoops, b.Conflicts, b.Purged)
	fmt.Fprintf(stdout, "  data      %d files sent (%d bytes), %d already current, %d vanished\n",
		b.Files, b.BytesSent, b.FilesUnchanged, b.Vanished)
	if b.Deltas > 0 {
		fmt.Fprintf(stdout, "  delta     %d files sent as deltas: %d bytes rebuilt from the slave's old copies\n", b.Deltas, b.BytesMatched)
	}
	if b.HashRetries > 0 {
		fmt.Fprintf(stdout, "  verify    %d files failed the end-to-end hash and were sent again whole\n", b.HashRetries)
	}
	fmt.Fprintf(stdout, "  metadata  %d applied, %d already current\n", b.MetaOps, b.MetaNoops)
	if b.NotMade > 0 {
		fmt.Fprintf(stdout, "  not made  %d entries the slave cannot hold, left out there (device nodes on an unprivileged slave; see the log)\n", b.NotMade)
	}
	if len(b.Partial) > 0 {
		fmt.Fprintf(stdout, "  partial   %d ops applied in part (see the log), e.g. %s\n", len(b.Partial), b.Partial[0])
	}
	return sum, nil
}
