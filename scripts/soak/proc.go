package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a georep process the harness owns. Each start logs to a new
// file in dir (NAME-N.log). An exit the harness did not cause is
// recorded; the caller decides whether to restart.
type proc struct {
	name    string
	bin     string
	args    []string
	dir     string
	profile bool // --cpuprofile NAME-N.cpu.pprof in dir (written at a clean exit)

	mu         sync.Mutex
	cmd        *exec.Cmd
	done       chan struct{}
	logs       []string
	expected   bool     // the current process is being stopped by us
	unexpected []string // exits nobody asked for
}

func newProc(name, bin, dir string, args ...string) *proc {
	return &proc{name: name, bin: bin, dir: dir, args: args}
}

func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	log := filepath.Join(p.dir, fmt.Sprintf("%s-%d.log", p.name, len(p.logs)))
	f, err := os.Create(log)
	if err != nil {
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	args := p.args
	if p.profile {
		args = append(append([]string(nil), args...), "--cpuprofile", filepath.Join(p.dir, fmt.Sprintf("%s-%d.cpu.pprof", p.name, len(p.logs))))
	}
	cmd := exec.Command(p.bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	p.logs = append(p.logs, log)
	done := make(chan struct{})
	p.cmd, p.done, p.expected = cmd, done, false
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		if !p.expected && p.cmd == cmd {
			p.unexpected = append(p.unexpected, fmt.Sprintf("%s pid %d exited by itself at %s: %v",
				p.name, cmd.Process.Pid, time.Now().Format("15:04:05.000"), err))
		}
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// pid is the running process's pid, 0 if none runs.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	select {
	case <-p.done:
		return 0
	default:
	}
	return p.cmd.Process.Pid
}

// exitedBySelf reports whether the current process died without being asked.
func (p *proc) exitedBySelf() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.expected {
		return false
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig and waits up to timeout for the exit (SIGKILL after
// it). It returns the exit code (-1 for a signal).
func (p *proc) signal(sig syscall.Signal, timeout time.Duration) (int, error) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd == nil {
		p.mu.Unlock()
		return 0, nil
	}
	p.expected = true
	p.mu.Unlock()
	_ = cmd.Process.Signal(sig)
	var err error
	select {
	case <-done:
	case <-time.After(timeout):
		// Before killing it, have the Go runtime print every goroutine's
		// stack into the log (SIGQUIT), for whoever debugs the hang.
		err = fmt.Errorf("%s did not exit within %s of %s; SIGQUIT (goroutine dump in %s), then killed", p.name, timeout, sig, p.logs[len(p.logs)-1])
		if stacks := kernelStacks(cmd.Process.Pid); stacks != "" {
			_ = os.WriteFile(filepath.Join(p.dir, p.name+"-hang-kernel-stacks.txt"), []byte(stacks), 0o644)
		}
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
	}
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
	return cmd.ProcessState.ExitCode(), err
}

func (p *proc) kill() { _, _ = p.signal(syscall.SIGKILL, 10*time.Second) }

func (p *proc) unexpectedExits() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.unexpected...)
}

func (p *proc) logFiles() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.logs...)
}

// logLevels counts WARN and ERROR lines over every log of p.
func (p *proc) logLevels() (warn, errs int, firstErrs []string) {
	for _, l := range p.logFiles() {
		f, err := os.Open(l)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.Contains(line, "[ERROR]"), strings.Contains(line, `"@level":"error"`):
				errs++
				if len(firstErrs) < 5 {
					firstErrs = append(firstErrs, trim(line, 300))
				}
			case strings.Contains(line, "[WARN]"), strings.Contains(line, `"@level":"warn"`):
				warn++
			}
		}
		f.Close()
	}
	return warn, errs, firstErrs
}

// logTail is the last n lines of p's last log, each cut to 400 bytes.
func (p *proc) logTail(n int) []string {
	logs := p.logFiles()
	if len(logs) == 0 {
		return nil
	}
	b, err := os.ReadFile(logs[len(logs)-1])
	if err != nil {
		return nil
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i := range lines {
		lines[i] = trim(lines[i], 400)
	}
	return lines
}

func trim(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// kernelStacks describes each thread of pid (state, wait channel, kernel
// stack) and its open descriptors: where a process stuck in a syscall
// (an open of a FIFO, a full pipe) waits.
func kernelStacks(pid int) string {
	var b strings.Builder
	base := fmt.Sprintf("/proc/%d", pid)
	tasks, err := os.ReadDir(base + "/task")
	if err != nil {
		return ""
	}
	fmt.Fprintf(&b, "pid %d at %s\n", pid, time.Now().Format(time.RFC3339Nano))
	for _, t := range tasks {
		d := base + "/task/" + t.Name()
		wchan, _ := os.ReadFile(d + "/wchan")
		stat, _ := os.ReadFile(d + "/stat")
		stack, _ := os.ReadFile(d + "/stack")
		fmt.Fprintf(&b, "\n-- thread %s wchan=%s stat=%s\n%s", t.Name(), wchan, strings.TrimSpace(string(stat)), stack)
	}
	fds, _ := os.ReadDir(base + "/fd")
	fmt.Fprintf(&b, "\n-- %d open fds\n", len(fds))
	for _, f := range fds {
		target, _ := os.Readlink(base + "/fd/" + f.Name())
		fmt.Fprintf(&b, "%s -> %q\n", f.Name(), target)
	}
	return b.String()
}

// procSample is a process's resident set (bytes) and open descriptors.
type procSample struct {
	rss int64
	fds int
	ok  bool
}

func sampleProc(pid int) procSample {
	if pid <= 0 {
		return procSample{}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procSample{}
	}
	var s procSample
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				s.rss = kb << 10
			}
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return procSample{}
	}
	s.fds = len(ents)
	s.ok = true
	return s
}

// statusJSON is what `georep status --json` prints for a session (the
// fields the harness reads).
type statusJSON struct {
	Status     string    `json:"status"`
	Fault      string    `json:"fault"`
	Crawl      string    `json:"crawl_status"`
	LastSynced time.Time `json:"last_synced"`
	Pending    struct {
		Entry   int64 `json:"entry"`
		Data    int64 `json:"data"`
		Meta    int64 `json:"meta"`
		Files   int64 `json:"files"`
		Bytes   int64 `json:"bytes"`
		Deletes int64 `json:"deletes"`
	} `json:"pending"`
	Totals struct {
		FilesSynced int64 `json:"files_synced"`
		BytesSynced int64 `json:"bytes_synced"`
		Deletes     int64 `json:"deletes"`
		Failures    int64 `json:"failures"`
	} `json:"totals"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
}

func (s *statusJSON) pendingZero() bool {
	p := s.Pending
	return p.Entry == 0 && p.Data == 0 && p.Meta == 0 && p.Files == 0 && p.Bytes == 0 && p.Deletes == 0
}

// claimsSynced: the master says the slave has every change made before
// since, and nothing is pending.
func (s *statusJSON) claimsSynced(since time.Time) bool {
	return s != nil && s.Status == "Active" && !s.LastSynced.IsZero() && !s.LastSynced.Before(since) && s.pendingZero()
}

func (s *statusJSON) lag(now time.Time) time.Duration {
	if s == nil || s.LastSynced.IsZero() {
		return -1
	}
	return now.Sub(s.LastSynced)
}

func (s *statusJSON) brief(now time.Time) string {
	if s == nil {
		return "status=?"
	}
	lag := "N/A"
	if l := s.lag(now); l >= 0 {
		lag = l.Round(time.Millisecond).String()
	}
	out := fmt.Sprintf("status=%s crawl=%q lag=%s pending=%d/%d/%d/%d", s.Status, s.Crawl, lag,
		s.Pending.Entry, s.Pending.Data, s.Pending.Meta, s.Pending.Files)
	if s.Fault != "" {
		out += fmt.Sprintf(" fault=%q", trim(s.Fault, 160))
	}
	return out
}

// getStatus runs `georep status --json --state-dir dir`; raw is its output.
func getStatus(ctx context.Context, bin, stateDir string) (*statusJSON, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "status", "--json", "--state-dir", stateDir)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, nil, fmt.Errorf("georep status: %w: %s", err, strings.TrimSpace(errb.String()))
	}
	var ss []statusJSON
	if err := json.Unmarshal(out.Bytes(), &ss); err != nil {
		return nil, out.Bytes(), fmt.Errorf("georep status: parsing: %w", err)
	}
	if len(ss) != 1 {
		return nil, out.Bytes(), fmt.Errorf("georep status: %d sessions in %s", len(ss), stateDir)
	}
	return &ss[0], out.Bytes(), nil
}

// freeAddr is a loopback address nobody listens on just now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitListening waits until addr accepts connections.
func waitListening(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %s: %w", addr, timeout, err)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// run runs a command, its output in the error.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
