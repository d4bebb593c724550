package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

type tool int

const (
	toolGeorep tool = iota
	toolRsyncd
	toolRsyncLocal
	numTools
)

func (t tool) String() string {
	return [...]string{"georep", "rsync-daemon", "rsync-local"}[t]
}

// target is one tool's destination for one workload: dst/ plus, for
// georep, the slave's and the master's state dirs, and for the rsync
// daemon its config dir.
type target struct{ dir string }

func (t target) dst() string    { return filepath.Join(t.dir, "dst") }
func (t target) sstate() string { return filepath.Join(t.dir, "slave-state") }
func (t target) mstate() string { return filepath.Join(t.dir, "master-state") }
func (t target) conf() string   { return filepath.Join(t.dir, "rsyncd") }

// runOpts are per-workload options.
type runOpts struct {
	delta bool // W4: ask rsync for the delta algorithm (--no-whole-file)
	// W6: more arguments for the georep master (its rules) and for rsync
	// (the same patterns as --exclude); passed as they are, no shell.
	georepArgs, rsyncArgs []string
}

// runResult is one timed run.
type runResult struct {
	wall      time.Duration
	wire      int64         // bytes both ways through the relay; -1: no wire
	rssMaster int64         // KiB; the rsync client for rsync
	rssSlave  int64         // KiB; the rsync daemon (and its reaped children); -1: none
	cpuMaster time.Duration // user+sys; the rsync client (with its children) for rsync
	cpuSlave  time.Duration // -1: none
	sentFiles int64         // georep's own count; -1 for rsync
	sentBytes int64
	startup   time.Duration // slave/daemon start until ready (untimed)
	// wireUp and wireDown split wire: master (rsync client) to slave
	// (daemon), and back.
	wireUp, wireDown int64
	// flush is how long a syncfs of the destination took right after the
	// run (untimed in wall): what rsync leaves to the kernel and georep
	// does before it exits (0 for georep, which reports success only once
	// its tree is durable).
	flush time.Duration
	// georep only: peak anonymous RSS in KiB (see proc.anonMax).
	anonMaster, anonSlave int64
	// georep only: what the master wrote to stderr (its log at
	// --log-level warn, so warnings and errors), the last 256 KiB.
	masterLog string
	// georep only: the master's summary on stdout.
	masterOut string
}

func (b *bench) runTool(ctx context.Context, t tool, src string, tg target, o runOpts) (runResult, error) {
	// Flush what earlier runs left dirty (untimed), so that no run pays
	// for another's writeback.
	syncFS(b.tmp)
	switch t {
	case toolGeorep:
		return b.runGeorep(ctx, src, tg, o)
	case toolRsyncd:
		return b.runRsyncd(ctx, src, tg, o)
	default:
		return b.runRsyncLocal(ctx, src, tg, o)
	}
}

var (
	listenRE = regexp.MustCompile(`listen=(127\.0\.0\.1:\d+)`)
	sentRE   = regexp.MustCompile(`data\s+(\d+) files sent \((\d+) bytes\)`)
)

// startSlave starts a georep slave on 127.0.0.1 with a kernel-chosen port
// and waits for its "serving ... listen=" line.
func (b *bench) startSlave(ctx context.Context, tg target) (*proc, string, error) {
	// Plaintext on loopback, like the rsync daemon it is compared with:
	// the bench measures replication, not TLS (docs/PERFORMANCE.md).
	sl, err := startProc(ctx, b.cfg.georep, "slave", "--root", tg.dst(), "--listen", "127.0.0.1:0",
		"--state-dir", tg.sstate(), "--insecure")
	if err != nil {
		return nil, "", err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if m := listenRE.FindStringSubmatch(sl.stderr.String()); m != nil {
			return sl, m[1], nil
		}
		if sl.exited() {
			return nil, "", fmt.Errorf("georep slave exited before serving\n%s", sl.report())
		}
		if ctx.Err() != nil {
			sl.kill()
			return nil, "", ctx.Err()
		}
		if time.Now().After(deadline) {
			sl.kill()
			return nil, "", fmt.Errorf("georep slave not serving after 60s\n%s", sl.report())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (b *bench) runGeorep(ctx context.Context, src string, tg target, o runOpts) (runResult, error) {
	res := runResult{sentFiles: -1, sentBytes: -1}
	t0 := time.Now()
	sl, addr, err := b.startSlave(ctx, tg)
	if err != nil {
		return res, err
	}
	defer sl.kill()
	res.startup = time.Since(t0)
	rl, err := newRelay(addr)
	if err != nil {
		return res, err
	}
	args := []string{"master", "--root", src, "--slave", rl.addr(), "--state-dir", tg.mstate(),
		"--oneshot", "--log-level", "warn", "--insecure"}
	args = append(args, b.cfg.georepExtra...)
	args = append(args, o.georepArgs...)
	m, merr := runTimed(ctx, b.cfg.georep, args...)
	res.wire = rl.close(10 * time.Second)
	res.wireUp, res.wireDown = rl.split()
	serr := sl.stop(30 * time.Second)
	if merr != nil {
		return res, fmt.Errorf("%v\n%s", merr, sl.report())
	}
	if serr != nil {
		return res, fmt.Errorf("georep slave did not exit 0 on SIGTERM: %v\n%s", exitDesc(serr), sl.report())
	}
	res.wall = m.wall()
	res.rssMaster = m.maxRSS()
	res.rssSlave = sl.maxRSS()
	res.anonMaster, res.anonSlave = m.maxAnon(), sl.maxAnon()
	res.cpuMaster, res.cpuSlave = m.cpu(), sl.cpu()
	res.masterLog = m.stderr.String()
	res.masterOut = m.stdout.String()
	if mm := sentRE.FindStringSubmatch(m.stdout.String()); mm != nil {
		res.sentFiles, _ = strconv.ParseInt(mm[1], 10, 64)
		res.sentBytes, _ = strconv.ParseInt(mm[2], 10, 64)
	} else {
		return res, fmt.Errorf("georep master printed no data summary line\n%s", m.report())
	}
	return res, nil
}

func (b *bench) rsyncArgs(o runOpts) []string {
	args := []string{"-a", "-H", "-X", "--numeric-ids"}
	if o.delta {
		args = append(args, "--no-whole-file")
	}
	args = append(args, o.rsyncArgs...)
	return append(args, b.cfg.rsyncExtra...)
}

func (b *bench) runRsyncLocal(ctx context.Context, src string, tg target, o runOpts) (runResult, error) {
	res := runResult{wire: -1, rssSlave: -1, cpuSlave: -1, sentFiles: -1, sentBytes: -1}
	args := append(b.rsyncArgs(o), src+"/", tg.dst()+"/")
	p, err := runTimed(ctx, b.cfg.rsync, args...)
	if err != nil {
		return res, err
	}
	res.wall = p.wall()
	res.flush = timedSync(tg.dst())
	res.rssMaster = p.maxRSS()
	res.cpuMaster = p.cpu()
	return res, nil
}

// timedSync flushes the filesystem holding dir and returns how long that
// took: after an rsync run, the cost of making its copy durable, which
// georep pays inside its wall time.
func timedSync(dir string) time.Duration {
	t0 := time.Now()
	syncFS(dir)
	return time.Since(t0)
}

// freePort asks the kernel for a free port on 127.0.0.1 (the daemon cannot
// take port 0; a lost race is retried by the caller).
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startRsyncd starts an rsync daemon serving module [dst] on 127.0.0.1.
func (b *bench) startRsyncd(ctx context.Context, tg target) (*proc, int, error) {
	dir := tg.conf()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, 0, err
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "pid file = %s\nlock file = %s\nlog file = %s\nuse chroot = no\n\n",
		filepath.Join(dir, "rsyncd.pid"), filepath.Join(dir, "rsyncd.lock"), filepath.Join(dir, "rsyncd.log"))
	fmt.Fprintf(&conf, "[dst]\n\tpath = %s\n\tread only = no\n\tnumeric ids = yes\n\tmunge symlinks = no\n", tg.dst())
	if os.Geteuid() == 0 {
		conf.WriteString("\tuid = root\n\tgid = root\n")
	}
	confFile := filepath.Join(dir, "rsyncd.conf")
	if err := os.WriteFile(confFile, []byte(conf.String()), 0o644); err != nil {
		return nil, 0, err
	}
	logFile := filepath.Join(dir, "rsyncd.log")
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, 0, err
		}
		_ = os.Remove(logFile)
		d, err := startProc(ctx, b.cfg.rsync, "--daemon", "--no-detach", "--config="+confFile,
			"--address=127.0.0.1", "--port="+strconv.Itoa(port))
		if err != nil {
			return nil, 0, err
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			data, _ := os.ReadFile(logFile)
			if strings.Contains(string(data), "listening on port") {
				return d, port, nil
			}
			if d.exited() {
				lastErr = fmt.Errorf("rsync daemon exited at start\n%s--- rsyncd.log:\n%s", d.report(), data)
				break
			}
			if ctx.Err() != nil {
				d.kill()
				return nil, 0, ctx.Err()
			}
			if time.Now().After(deadline) {
				d.kill()
				return nil, 0, fmt.Errorf("rsync daemon not listening after 30s\n%s--- rsyncd.log:\n%s", d.report(), data)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil, 0, lastErr
}

func (b *bench) runRsyncd(ctx context.Context, src string, tg target, o runOpts) (runResult, error) {
	res := runResult{sentFiles: -1, sentBytes: -1}
	t0 := time.Now()
	d, port, err := b.startRsyncd(ctx, tg)
	if err != nil {
		return res, err
	}
	defer d.kill()
	res.startup = time.Since(t0)
	rl, err := newRelay(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return res, err
	}
	args := append(b.rsyncArgs(o), src+"/", "rsync://"+rl.addr()+"/dst/")
	c, cerr := runTimed(ctx, b.cfg.rsync, args...)
	res.wire = rl.close(10 * time.Second)
	res.wireUp, res.wireDown = rl.split()
	// The daemon exits non-zero on SIGTERM (rsync's "received SIGTERM"); its
	// rusage still holds the children it reaped.
	_ = d.stop(30 * time.Second)
	if cerr != nil {
		log, _ := os.ReadFile(filepath.Join(tg.conf(), "rsyncd.log"))
		return res, fmt.Errorf("%v--- rsyncd.log:\n%s", cerr, log)
	}
	res.wall = c.wall()
	res.flush = timedSync(tg.dst())
	res.rssMaster = c.maxRSS()
	res.rssSlave = d.maxRSS()
	res.cpuMaster, res.cpuSlave = c.cpu(), d.cpu()
	return res, nil
}
