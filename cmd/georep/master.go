package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/georep/georep/internal/bwsched"
	"github.com/georep/georep/internal/config"
	"github.com/georep/georep/internal/events"
	"github.com/georep/georep/internal/metrics"
	"github.com/georep/georep/internal/syncstatus"
	"github.com/georep/georep/master"
	"github.com/georep/georep/master/recorder"
	"github.com/hashicorp/go-hclog"
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
	checksum       bool
	// The scrub (master.Config.Scrub*).
	scrubEvery      time.Duration
	scrubRate       float64 // MiB/s
	scrubReportOnly bool
	scrubQuick      bool
	noDataConn      bool
	bwlimit         int64 // KiB/s
	// bwSchedule: --bwlimit-schedule rules (package bwsched), over the
	// --bwlimit default.
	bwSchedule     []string
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
	// Event hooks (package events).
	eventCommand string
	eventURL     string
	eventHeaders []string
	eventTimeout time.Duration
	eventRetries int
	// config: --config and --session; session is the session's name
	// ("default" without a config file), args the command line it was
	// built from (config set checks new values against it).
	config  *configFlags
	session string
	args    []string
	// cmdline: the flags given on the command line (they win over the
	// config file and over `georep config set`).
	cmdline map[string]bool
	// values: every flag's value once all is in (config get).
	values map[string]string
	// hub: the recorder this session shares with the others of its root
	// in this process (nil: its own).
	hub *master.Hub
	// comparePaths: files a one-shot compares by content (verify --repair).
	comparePaths map[string]bool
}

// masterFlagSet registers every flag of `georep master` into o.
func masterFlagSet(o *masterOptions, stderr io.Writer) *flag.FlagSet {
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
	fs.BoolVar(&o.checksum, "checksum", false, "a crawl compares every file's content with the slave's copy (block hashes, then the blocks that differ) instead of taking same size and mtime for current")
	fs.DurationVar(&o.scrubEvery, "scrub-every", 0, "live: verify the slave by content this often (0: never); what differs where nothing was in flight is reported and repaired")
	fs.Float64Var(&o.scrubRate, "scrub-rate", 0, "live: the scrub reads each tree's files at most this many MiB/s (0: no limit)")
	fs.BoolVar(&o.scrubReportOnly, "scrub-report-only", false, "live: the scrub reports what differs (status, metrics, an event) without repairing it")
	fs.BoolVar(&o.scrubQuick, "scrub-quick", false, "live: the scrub trusts the hash of a file unchanged (inode, ctime, size) since the last scrub, on both ends; else it reads every file")
	fs.BoolVar(&o.compress, "compress", false, "compress file data (zstd) on the wire")
	fs.BoolVar(&o.noDataConn, "no-data-conn", false, "send all file data on the gRPC streams, with no data connection beside them for large files")
	fs.Int64Var(&o.bwlimit, "bwlimit", 0, "cap file data sent to this many KiB/s (0: no cap); with --bwlimit-schedule, the cap where no rule applies")
	fs.Func("bwlimit-schedule", "cap file data by day and time: `RULE` like 'Mon-Fri 08:00-18:00 2MiB' (repeatable; the first rule that matches decides; local time)", func(s string) error {
		if _, err := bwsched.ParseRule(s); err != nil {
			return err
		}
		o.bwSchedule = append(o.bwSchedule, s)
		return nil
	})
	fs.StringVar(&o.eventCommand, "event-command", "", "run `PROGRAM` on each event (Faulty, Active again, checkpoint completed, batch failed, crawl finished), the event as JSON on stdin")
	fs.StringVar(&o.eventURL, "event-url", "", "POST each event as JSON to this http(s) `URL`")
	fs.Func("event-header", "a header `'NAME: VALUE'` for --event-url (repeatable; e.g. an Authorization)", func(s string) error {
		if _, _, ok := strings.Cut(s, ":"); !ok {
			return errors.New("want NAME: VALUE")
		}
		o.eventHeaders = append(o.eventHeaders, s)
		return nil
	})
	fs.DurationVar(&o.eventTimeout, "event-timeout", events.DefaultTimeout, "longest one delivery of an event may take")
	fs.IntVar(&o.eventRetries, "event-retries", events.DefaultRetries, "attempts at delivering an event after the first fails (with back-off)")
	o.tls.register(fs, "master")
	fs.StringVar(&o.slaveName, "slave-name", "", "the name the slave's certificate must have (default: the host of --slave)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://HOST:PORT/metrics (default: none)")
	o.log.register(fs)
	o.config = registerConfigFlags(fs, "master")
	return fs
}

// validate checks the options once the command line, the config file and
// the persisted settings are in.
func (o *masterOptions) validate() error {
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
	if o.scrubEvery < 0 || (o.scrubEvery > 0 && o.scrubEvery < time.Second) || o.scrubRate < 0 {
		return usageErr("--scrub-every must be 0 or at least 1s, --scrub-rate not negative")
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
	if o.bwlimit < 0 || o.bwlimit > bwsched.MaxLimit>>10 {
		return usageErr("--bwlimit must be between 0 and %d KiB/s", bwsched.MaxLimit>>10)
	}
	if _, err := o.schedule(); err != nil {
		return usageErr("--bwlimit-schedule: %v", err)
	}
	if _, err := o.eventConfig().check(); err != nil {
		return usageErr("%v", err)
	}
	if hclog.LevelFromString(o.log.level) == hclog.NoLevel {
		return usageErr("unknown log level %q", o.log.level)
	}
	return nil
}

// schedule is the bandwidth schedule of --bwlimit-schedule over --bwlimit.
func (o *masterOptions) schedule() (*bwsched.Schedule, error) {
	if len(o.bwSchedule) == 0 {
		return bwsched.Fixed(o.bwlimit << 10), nil
	}
	def := "unlimited"
	if o.bwlimit > 0 {
		def = strconv.FormatInt(o.bwlimit<<10, 10)
	}
	return bwsched.Parse(o.bwSchedule, def, time.Local)
}

// eventHooks is the event hooks' configuration of the options.
type eventHooks struct{ events.Config }

func (o *masterOptions) eventConfig() eventHooks {
	c := events.Config{URL: o.eventURL, Timeout: o.eventTimeout, Retries: o.eventRetries}
	if o.eventCommand != "" {
		c.Command = []string{o.eventCommand}
	}
	if len(o.eventHeaders) > 0 {
		c.Headers = map[string]string{}
		for _, h := range o.eventHeaders {
			k, v, _ := strings.Cut(h, ":")
			c.Headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return eventHooks{c}
}

// check validates the hooks; enabled is false when none is configured.
func (h eventHooks) check() (enabled bool, err error) {
	if !h.Enabled() {
		if len(h.Headers) > 0 {
			return false, errors.New("--event-header needs --event-url")
		}
		return false, nil
	}
	if err := h.Validate(); err != nil {
		return false, fmt.Errorf("event hooks: %w", err)
	}
	return true, nil
}

func runMasterCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var first masterOptions
	fs := masterFlagSet(&first, stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	sessions := []string{first.config.session}
	if first.config.path != "" && first.config.session == "" {
		f, err := config.Load(first.config.path)
		if err != nil {
			return configErr(err)
		}
		if names := f.Sessions(); len(names) > 1 {
			sessions = names
		}
	}
	var opts []masterOptions
	seen := map[string]string{}
	for _, name := range sessions {
		o, err := loadMasterSession(args, name, stderr)
		if err != nil {
			if len(sessions) > 1 {
				return fmt.Errorf("session %q: %w", name, err)
			}
			return err
		}
		if prev, dup := seen[o.stateDir]; dup {
			return usageErr("sessions %q and %q have the same state directory %s (same root and slave?)", prev, name, o.stateDir)
		}
		seen[o.stateDir] = name
		if prev, dup := seen["metrics "+o.metricsAddr]; dup && o.metricsAddr != "" {
			return usageErr("sessions %q and %q both serve metrics at %s: give each session its own metrics-addr", prev, name, o.metricsAddr)
		}
		seen["metrics "+o.metricsAddr] = name
		opts = append(opts, o)
	}
	if len(opts) == 1 {
		return runMasterSession(ctx, opts[0], stdout, stderr)
	}
	return runMasterSessions(ctx, opts, stdout, stderr)
}

// loadMasterSession builds the options of one session: the command line
// (args), under it the config file's session (name; "" for a file with
// one), and under the command line but over the file the settings
// persisted in the session's state directory by `georep config set`;
// then checks them.
func loadMasterSession(args []string, name string, stderr io.Writer, more ...func(*flag.FlagSet)) (masterOptions, error) {
	return buildMasterSession(args, name, stderr, nil, more...)
}

// buildMasterSession is loadMasterSession with the persisted settings st
// (nil: read from the state directory).
func buildMasterSession(args []string, name string, stderr io.Writer, st *settings, more ...func(*flag.FlagSet)) (masterOptions, error) {
	var o masterOptions
	fs := masterFlagSet(&o, stderr)
	for _, f := range more {
		f(fs) // a command's own flags beside the master's (verify)
	}
	if err := parseFlags(fs, args); err != nil {
		return o, err
	}
	o.args = args
	o.cmdline = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.cmdline[f.Name] = true })
	if name != "" {
		o.config.session = name
	}
	if err := o.config.apply(fs); err != nil {
		return o, err
	}
	o.session = o.config.session
	if o.session == "" {
		o.session = "default"
		if o.config.path != "" {
			if f, err := config.Load(o.config.path); err == nil && len(f.Sessions()) == 1 {
				o.session = f.Sessions()[0]
			}
		}
	}
	if o.root == "" || o.slave == "" {
		return o, usageErr("--root and --slave are required")
	}
	if o.stateDir == "" {
		o.stateDir = defaultStateDir("master", o.root, ":"+o.slave)
	}
	if st == nil {
		var err error
		if st, err = loadSettings(o.stateDir); err != nil {
			return o, err
		}
	}
	if err := st.apply(fs, &o, o.cmdline); err != nil {
		return o, err
	}
	o.values = map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { o.values[f.Name] = f.Value.String() })
	return o, o.validate()
}

// runMasterSession runs one session: live, or once.
func runMasterSession(ctx context.Context, o masterOptions, stdout, stderr io.Writer) error {
	if !o.oneshot {
		return runMasterLive(ctx, o, stderr)
	}
	_, err := runMasterOnce(ctx, o, stdout, stderr)
	return err
}

// runMasterSessions runs every session of a config file in this process,
// each with its own recorder, state, status socket and status row: one
// session's fault or stop does not end another's. It returns when all
// have ended; its error joins theirs.
func runMasterSessions(ctx context.Context, opts []masterOptions, stdout, stderr io.Writer) error {
	hubs, err := sharedRecorders(opts, stderr)
	if err != nil {
		return err
	}
	defer func() {
		for _, h := range hubs {
			h.Close()
		}
	}()
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for i, o := range opts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := runMasterSession(ctx, o, stdout, stderr); err != nil {
				errs[i] = fmt.Errorf("session %q: %w", o.session, err)
				fmt.Fprintf(stderr, "georep master: session %q ended: %v\n", o.session, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// sharedRecorders gives the live sessions that replicate one root one
// recorder (a master.Hub: one journal and gfid index, whose state is under
// the default state base, by root), so that a root replicated to several
// slaves is watched once.
func sharedRecorders(opts []masterOptions, stderr io.Writer) ([]*master.Hub, error) {
	byRoot := map[string][]int{}
	var roots []string
	for i, o := range opts {
		if o.oneshot {
			continue
		}
		root, err := filepath.Abs(o.root)
		if err != nil {
			return nil, err
		}
		if byRoot[root] == nil {
			roots = append(roots, root)
		}
		byRoot[root] = append(byRoot[root], i)
	}
	var hubs []*master.Hub
	for _, root := range roots {
		idx := byRoot[root]
		if len(idx) < 2 {
			continue
		}
		first := opts[idx[0]]
		log, err := first.log.logger("master.shared", stderr)
		if err != nil {
			return nil, err
		}
		h, err := master.NewHub(master.HubConfig{Root: root, StateDir: defaultStateDir("root", root),
			Interval: first.changeInterval, Watcher: first.watcher, Logger: log})
		if err != nil {
			for _, h := range hubs {
				h.Close()
			}
			return nil, err
		}
		hubs = append(hubs, h)
		for _, i := range idx {
			opts[i].hub = h
		}
	}
	return hubs, nil
}

// runMasterLive replicates until interrupted (SIGINT/SIGTERM end it
// cleanly: the journal's open segment is committed first), or until
// `georep stop`.
func runMasterLive(ctx context.Context, o masterOptions, stderr io.Writer) error {
	r, err := newMasterFromOptions(o, stderr)
	if err != nil {
		return err
	}
	r.svc.SetControl(&masterControl{m: r.m, bw: r.bw, log: r.log, o: o, stderr: stderr})
	stopNotify := notifySystemd(ctx, o.log, stderr, "master", "replicating "+o.root+" to "+o.slave)
	err = r.m.Run(ctx)
	r.svc.SetControl(nil)
	stopNotify()
	r.stop(err)
	return err
}

// masterRun is a master and what runs beside it.
type masterRun struct {
	m   *master.Master
	log hclog.Logger
	svc *syncstatus.Service
	bw  *bwsched.Limiter
	// stop ends them all; the run's error, if any, is the last fault the
	// status keeps.
	stop func(runErr error)
}

// newMasterFromOptions makes a master with what runs beside it: its
// status (socket and persisted figures), its bandwidth schedule, its
// event hooks, metrics when asked, and a progress bar when stderr is a
// terminal.
func newMasterFromOptions(o masterOptions, stderr io.Writer) (r *masterRun, err error) {
	bar := newProgressBar(stderr)
	logOut := stderr
	if bar != nil {
		logOut = bar
	}
	tlsCfg, err := o.tls.clientTLS(o.slave, o.slaveName)
	if err != nil {
		return nil, err
	}
	name := "master"
	if o.session != "" && o.session != "default" {
		name = "master." + o.session
	}
	log, err := o.log.logger(name, logOut)
	if err != nil {
		return nil, err
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
		return nil, err
	}
	cleanups = append(cleanups, stopProfile)
	run := func(what string, fn func(ctx context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error(what+" stopped", "error", err)
			}
		}()
	}

	sched, err := o.schedule()
	if err != nil {
		return nil, err
	}
	bw := bwsched.NewLimiter(sched, nil)
	run("bandwidth schedule", bw.Run)

	var met *metrics.Metrics
	sopts := syncstatus.Options{StateDir: o.stateDir, Master: masterName(o.root), Slave: o.slave, Name: o.session, Logger: log,
		Bandwidth: func() *syncstatus.Bandwidth {
			limit, next := bw.Current()
			return &syncstatus.Bandwidth{Limit: limit, Next: next, Schedule: bw.Schedule().String()}
		}}
	if on, _ := o.eventConfig().check(); on {
		d, err := events.New(o.eventConfig().Config, log.Named("events"))
		if err != nil {
			return nil, fmt.Errorf("event hooks: %w", err)
		}
		run("event hooks", d.Run)
		root := o.root
		if abs, err := filepath.Abs(root); err == nil {
			root = abs
		}
		sopts.OnEvent = func(kind, msg string, details map[string]any) {
			d.Emit(events.Event{Kind: events.Kind(kind), Session: o.session, MasterRoot: root, Slave: o.slave, Message: msg, Details: details})
		}
		sopts.Events = func() *syncstatus.EventCounts {
			st := d.Stats()
			c := &syncstatus.EventCounts{Emitted: st.Emitted}
			for _, k := range []events.SinkStats{st.Command, st.URL} {
				c.Delivered += k.Delivered
				c.Failed += k.Failed
				c.Dropped += k.Dropped
			}
			return c
		}
	}
	if o.metricsAddr != "" {
		met = metrics.New()
		sopts.OnBatch = met.ObserveBatch
	}
	svc, err := syncstatus.Start(sopts)
	if errors.Is(err, syncstatus.ErrRunning) {
		return nil, fmt.Errorf("a master is already running for this session (state dir %s)", o.stateDir)
	}
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() {
		if err := svc.Close(); err != nil {
			log.Warn("status", "error", err)
		}
	})
	if met != nil {
		if err := met.Watch(svc.Tracker.Snapshot); err != nil {
			return nil, err
		}
		lis, err := net.Listen("tcp", o.metricsAddr)
		if err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		log.Info("serving metrics", "url", "http://"+lis.Addr().String()+"/metrics")
		run("metrics", func(ctx context.Context) error { return metrics.Serve(ctx, lis, met.Handler()) })
	}
	if bar != nil {
		run("progress bar", func(ctx context.Context) error {
			bar.run(ctx, svc.Tracker.Snapshot)
			return nil
		})
	}
	m, err := master.New(master.Config{
		Root: o.root, Slave: o.slave, StateDir: o.stateDir, SyncJobs: o.syncJobs,
		IgnoreDeletes: o.ignoreDeletes, Retries: o.retries, Logger: log,
		Compress: o.compress, Limiter: bw.RateLimiter(), NoDataConn: o.noDataConn,
		ChangeInterval: o.changeInterval, BatchSize: o.batchSize, Watcher: o.watcher, MaxBackoff: o.maxBackoff,
		TLS: tlsCfg, Insecure: o.tls.insecure, Status: svc.Tracker,
		Excludes: o.excludes, ExcludeFrom: o.excludeFrom, DeleteExcluded: o.deleteExcluded, Hub: o.hub, Checksum: o.checksum, ComparePaths: o.comparePaths,
		ScrubEvery: o.scrubEvery, ScrubRate: int64(o.scrubRate * (1 << 20)), ScrubReportOnly: o.scrubReportOnly, ScrubQuick: o.scrubQuick,
	})
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() { m.Close() })
	return &masterRun{m: m, log: log, svc: svc, bw: bw, stop: func(runErr error) {
		svc.Tracker.Fault(runErr)
		stopAll()
	}}, nil
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
	r, err := newMasterFromOptions(o, stderr)
	if err != nil {
		return nil, err
	}
	sum, err := r.m.RunOnce(ctx)
	// Stopped before the summary, so that the progress bar has its last
	// word before it.
	r.stop(err)
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
