package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tailBuffer keeps the last max bytes written to it; safe for concurrent use.
type tailBuffer struct {
	mu      sync.Mutex
	buf     []byte
	max     int
	dropped bool
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		n := len(t.buf) - t.max
		copy(t.buf, t.buf[n:])
		t.buf = t.buf[:t.max]
		t.dropped = true
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := string(t.buf)
	if t.dropped {
		s = "[...]" + s
	}
	return s
}

// proc is a child process in its own process group, killed (with its
// group) when ctx is done.
type proc struct {
	name    string
	cmd     *exec.Cmd
	stdout  *tailBuffer
	stderr  *tailBuffer
	start   time.Time
	end     time.Time
	done    chan struct{}
	waitErr error

	// Peak anonymous resident memory (heap, stacks) in KiB, sampled from
	// /proc/PID/status while the process runs: rusage's peak RSS also
	// counts file-backed pages (mmapped files, the binary), which are
	// evictable; this tells them apart.
	anonMu  sync.Mutex
	anonMax int64
}

func startProc(ctx context.Context, name string, args ...string) (*proc, error) {
	p := &proc{
		name:   name,
		stdout: newTailBuffer(256 << 10),
		stderr: newTailBuffer(256 << 10),
		done:   make(chan struct{}),
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Stdout = p.stdout
	cmd.Stderr = p.stderr
	p.cmd = cmd
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		p.end = time.Now()
		close(p.done)
	}()
	go p.sampleAnon(cmd.Process.Pid)
	return p, nil
}

// sampleAnon records the process's peak RssAnon until it exits.
func (p *proc) sampleAnon(pid int) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
					kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
					p.anonMu.Lock()
					p.anonMax = max(p.anonMax, kb)
					p.anonMu.Unlock()
				}
			}
		}
		select {
		case <-p.done:
			return
		case <-t.C:
		}
	}
}

// maxAnon is the peak anonymous RSS seen, in KiB.
func (p *proc) maxAnon() int64 {
	p.anonMu.Lock()
	defer p.anonMu.Unlock()
	return p.anonMax
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit and returns its exit error.
func (p *proc) wait() error {
	<-p.done
	return p.waitErr
}

// wall is the time from start to exit.
func (p *proc) wall() time.Duration { return p.end.Sub(p.start) }

// stop sends SIGTERM to the process (SIGKILL to its group after timeout)
// and waits for it. It returns the exit error.
func (p *proc) stop(timeout time.Duration) error {
	if p.exited() {
		return p.waitErr
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not exit within %s of SIGTERM (killed): %v", p.name, timeout, p.waitErr)
	}
	return p.waitErr
}

// kill kills the process group and waits; for deferred cleanup.
func (p *proc) kill() {
	if p == nil || p.exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// maxRSS is the peak resident set of the process (and of the children it
// reaped) in KiB, from wait4's rusage; -1 if unknown.
func (p *proc) maxRSS() int64 {
	if p.cmd.ProcessState == nil {
		return -1
	}
	ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return -1
	}
	return ru.Maxrss
}

// cpu is the user+system time of the process (and of the children it
// reaped); -1 if unknown.
func (p *proc) cpu() time.Duration {
	if p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
}

// report describes the process and its output for an error message.
func (p *proc) report() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "--- %s", strings.Join(p.cmd.Args, " "))
	if p.exited() {
		fmt.Fprintf(&b, " (exit: %v)", exitDesc(p.waitErr))
	}
	b.WriteString("\n")
	if s := p.stdout.String(); s != "" {
		fmt.Fprintf(&b, "--- stdout:\n%s", ensureNL(s))
	}
	if s := p.stderr.String(); s != "" {
		fmt.Fprintf(&b, "--- stderr:\n%s", ensureNL(s))
	}
	return b.String()
}

func exitDesc(err error) string {
	if err == nil {
		return "0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ProcessState.String()
	}
	return err.Error()
}

func ensureNL(s string) string {
	if s != "" && !strings.HasSuffix(s, "\n") {
		return s + "\n"
	}
	return s
}

// runTimed runs a command to completion; a non-zero exit is an error that
// carries its output.
func runTimed(ctx context.Context, name string, args ...string) (*proc, error) {
	p, err := startProc(ctx, name, args...)
	if err != nil {
		return nil, err
	}
	if err := p.wait(); err != nil {
		if ctx.Err() != nil {
			return p, ctx.Err()
		}
		return p, fmt.Errorf("%s failed: %v\n%s", name, exitDesc(err), p.report())
	}
	return p, nil
}
