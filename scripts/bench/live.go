package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Live replicators for the latency workloads (L1-L3): georep without
// --oneshot (master and slave as processes, a counting relay between them)
// and lsyncd (default.rsync into an rsync daemon, through the same kind of
// relay). Each workload starts a fresh session per tool, waits for its
// initial sync, measures, and stops it.

type liveTool int

const (
	liveGeorep liveTool = iota
	liveLsyncd
	numLive
)

func (t liveTool) String() string { return [...]string{"georep", "lsyncd"}[t] }

// src is the master tree of a live session (each tool has its own: the
// workloads change it).
func (t target) src() string { return filepath.Join(t.dir, "src") }

// lsyncdDir holds lsyncd's config, log and status file.
func (t target) lsyncdDir() string { return filepath.Join(t.dir, "lsyncd") }

// unavailableError marks a tool that could not be measured: its column
// says "unavailable" and the reason goes into the notes; the bench goes on.
type unavailableError struct{ err error }

func (e unavailableError) Error() string { return e.err.Error() }
func (e unavailableError) Unwrap() error { return e.err }

func unavailable(format string, args ...any) error {
	return unavailableError{fmt.Errorf(format, args...)}
}

// liveSession is one replicator running from tg.src() to tg.dst().
type liveSession struct {
	tool   liveTool
	tg     target
	relay  *relay
	server *proc // georep slave / rsync daemon
	client *proc // georep master / lsyncd
	start  time.Time
	ready  time.Duration // start until the initial sync was seen complete
	cpu    time.Duration // after stop: client + server (with reaped children)
	// after stop: each side's (with reaped children): the georep master
	// and slave; lsyncd (with its rsyncs) and the rsync daemon
	cpuClient, cpuServer time.Duration
	exit                 string // after stop: how the client ended, if not cleanly
}

// newLiveTarget makes the dirs of one tool's session for workload id.
func (b *bench) newLiveTarget(id string, t liveTool) (target, error) {
	tg := target{dir: filepath.Join(b.tmp, fmt.Sprintf("%s-%s", strings.ToLower(id), t))}
	for _, d := range []string{tg.src(), tg.dst(), tg.sstate(), tg.mstate(), tg.lsyncdDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return tg, err
		}
	}
	return tg, nil
}

// startLive starts t on tg (whose src must be populated) and waits until
// the slave tree equals the master tree, including a sentinel file made
// after the start (so that the change detection, not only the initial
// sync, is known to work).
func (b *bench) startLive(ctx context.Context, t liveTool, tg target, readyTimeout time.Duration) (*liveSession, error) {
	syncFS(b.tmp)
	s := &liveSession{tool: t, tg: tg, start: time.Now()}
	var err error
	switch t {
	case liveGeorep:
		err = b.startGeorepLive(ctx, s)
	default:
		err = b.startLsyncd(ctx, s)
	}
	if err != nil {
		s.stop()
		return nil, err
	}
	if err := s.waitReady(ctx, readyTimeout); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (b *bench) startGeorepLive(ctx context.Context, s *liveSession) error {
	sl, addr, err := b.startSlave(ctx, s.tg)
	if err != nil {
		return unavailable("georep slave: %v", err)
	}
	s.server = sl
	if s.relay, err = newLiveRelay(addr); err != nil {
		return err
	}
	args := []string{"master", "--root", s.tg.src(), "--slave", s.relay.addr(), "--state-dir", s.tg.mstate(),
		"--log-level", "warn", "--insecure"}
	args = append(args, b.cfg.georepExtra...)
	args = append(args, b.cfg.georepLive...)
	if s.client, err = startProc(ctx, b.cfg.georep, args...); err != nil {
		return unavailable("%v", err)
	}
	return nil
}

// lsyncdConfig is the Lua config of one lsyncd session: default.rsync
// with no delay, rsync with the options the throughput workloads use.
func (b *bench) lsyncdConfig(s *liveSession) string {
	q := func(v string) string { return fmt.Sprintf("%q", v) }
	dir := s.tg.lsyncdDir()
	var c strings.Builder
	fmt.Fprintf(&c, "settings {\n\tlogfile = %s,\n\tstatusFile = %s,\n\tstatusInterval = 1,\n\tnodaemon = true,\n\tinotifyMode = \"CloseWrite or Modify\",\n}\n",
		q(filepath.Join(dir, "lsyncd.log")), q(filepath.Join(dir, "lsyncd.status")))
	fmt.Fprintf(&c, "sync {\n\tdefault.rsync,\n\tsource = %s,\n\ttarget = %s,\n\tdelay = 0,\n", q(s.tg.src()), q("rsync://"+s.relay.addr()+"/dst/"))
	fmt.Fprintf(&c, "\trsync = {\n\t\tbinary = %s,\n\t\tarchive = true,\n\t\thard_links = true,\n\t\txattrs = true,\n\t\t_extra = { \"--numeric-ids\" },\n\t},\n}\n", q(b.cfg.rsync))
	return c.String()
}

func (b *bench) startLsyncd(ctx context.Context, s *liveSession) error {
	if b.lsyncdErr != nil {
		return unavailableError{b.lsyncdErr}
	}
	d, port, err := b.startRsyncd(ctx, s.tg)
	if err != nil {
		return unavailable("rsync daemon: %v", err)
	}
	s.server = d
	if s.relay, err = newLiveRelay(fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
		return err
	}
	conf := filepath.Join(s.tg.lsyncdDir(), "lsyncd.conf.lua")
	if err := os.WriteFile(conf, []byte(b.lsyncdConfig(s)), 0o644); err != nil {
		return err
	}
	if s.client, err = startProc(ctx, b.lsyncd, conf); err != nil {
		return unavailable("%v", err)
	}
	return nil
}

// check reports a replicator process that has exited.
func (s *liveSession) check() error {
	for _, p := range []*proc{s.client, s.server} {
		if p != nil && p.exited() {
			what := "master"
			switch {
			case s.tool == liveLsyncd && p == s.client:
				what = "lsyncd"
			case s.tool == liveLsyncd:
				what = "rsync daemon"
			case p == s.server:
				what = "slave"
			}
			return unavailable("%s exited after %.1fs (%s): %s", what, p.end.Sub(p.start).Seconds(), exitDesc(p.waitErr), lastLines(p, 3))
		}
	}
	return nil
}

// lastLines is the end of a process's stderr (or stdout), for a one-line reason.
func lastLines(p *proc, n int) string {
	out := strings.TrimSpace(p.stderr.String())
	if out == "" {
		out = strings.TrimSpace(p.stdout.String())
	}
	if out == "" {
		return "(no output)"
	}
	lines := strings.Split(out, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	s := strings.Join(lines, " / ")
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}

// sentinel is written into the master tree after the replicator started.
const sentinel = "bench-sentinel.txt"

// waitReady writes the sentinel, then polls until the slave tree equals
// the master tree (paths, types, modes, owners, sizes, mtimes), and for
// small trees also in content.
func (s *liveSession) waitReady(ctx context.Context, timeout time.Duration) error {
	token := fmt.Sprintf("sentinel %s %d\n", s.tool, time.Now().UnixNano())
	if err := os.WriteFile(filepath.Join(s.tg.src(), sentinel), []byte(token), 0o644); err != nil {
		return err
	}
	want, err := summarize(s.tg.src())
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	pause := 20 * time.Millisecond
	if want.files > 2000 {
		pause = 200 * time.Millisecond
	}
	for {
		if err := s.check(); err != nil {
			return err
		}
		if got, err := summarize(s.tg.dst()); err == nil && got == want {
			if err := compareContent(s.tg.src(), s.tg.dst()); err == nil {
				s.ready = time.Since(s.start)
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			got, _ := summarize(s.tg.dst())
			return unavailable("initial sync not complete after %s: slave has %v, master %v", timeout, got, want)
		}
		time.Sleep(pause)
	}
}

// settle waits until the relay has carried nothing for quiet (at most
// limit): the replicator is idle.
func (s *liveSession) settle(quiet, limit time.Duration) {
	s.relay.quietFor(quiet, limit)
}

// stop ends the session: SIGTERM to the client (georep master, lsyncd),
// then to the server; records CPU and how the client ended.
func (s *liveSession) stop() {
	if s.client != nil {
		exited := s.client.exited()
		err := s.client.stop(10 * time.Second)
		killGroup(s.client) // its children (lsyncd's rsyncs), if any are left
		if !exited && err != nil && s.tool == liveGeorep {
			s.exit = "master on SIGTERM: " + exitDesc(err)
		}
	}
	if s.server != nil {
		_ = s.server.stop(10 * time.Second)
		killGroup(s.server) // the rsync daemon's per-connection children
	}
	if s.relay != nil {
		s.relay.close(time.Second)
	}
	for _, p := range []*proc{s.client, s.server} {
		if p != nil {
			if c := p.cpu(); c > 0 {
				s.cpu += c
				if p == s.client {
					s.cpuClient = c
				} else {
					s.cpuServer = c
				}
			}
		}
	}
}

// killGroup kills what is left of an exited process's group (children
// that outlived it); the group leader itself has been waited for.
func killGroup(p *proc) {
	if p.exited() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	} else {
		p.kill()
	}
}

// findLsyncd returns lsyncd's path, installing it with apt-get when it is
// missing (LSYNCD names another binary and disables the install).
func (b *bench) findLsyncd(ctx context.Context) (string, error) {
	if p := os.Getenv("LSYNCD"); p != "" {
		path, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("LSYNCD=%s: %v", p, err)
		}
		return path, nil
	}
	if path, err := exec.LookPath("lsyncd"); err == nil {
		return path, nil
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	apt := func(args ...string) error {
		b.progress("lsyncd not found: apt-get %s", strings.Join(args, " "))
		cmd := exec.CommandContext(ictx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get %s: %v: %s", strings.Join(args, " "), err, tail(string(out), 300))
		}
		return nil
	}
	err := apt("install", "-y", "lsyncd")
	if err != nil {
		if uerr := apt("update"); uerr == nil {
			err = apt("install", "-y", "lsyncd")
		}
	}
	if path, lerr := exec.LookPath("lsyncd"); lerr == nil {
		return path, nil
	}
	if err == nil {
		err = errors.New("apt-get installed lsyncd but it is not on PATH")
	}
	return "", fmt.Errorf("lsyncd missing and not installable: %w", err)
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func lsyncdVersion(path string) string {
	out, err := exec.Command(path, "-version").CombinedOutput()
	if err != nil {
		return path
	}
	v, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return path + " (" + v + ")"
}
