package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/testtree"
	"github.com/georep/georep/internal/treecmp"
	"github.com/georep/georep/internal/wire"
)

var georepBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "georep-bin-")
	if err != nil {
		panic(err)
	}
	georepBin = filepath.Join(dir, "georep")
	build := exec.Command("go", "build", "-o", georepBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		panic("building georep: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var listenRE = regexp.MustCompile(`listen=(127\.0\.0\.1:[0-9]+)`)

// startSlaveProcess runs `georep slave` as a process and returns its
// address; extra are more flags (by default --insecure).
func startSlaveProcess(t *testing.T, root string, extra ...string) string {
	t.Helper()
	return startSlaveProcessAs(t, nil, nil, root, filepath.Join(t.TempDir(), "slave-state"), extra...)
}

// lineLog collects a process's log lines.
type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) add(s string) {
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
}

// eventually reports whether a line holding all of parts comes within 10 s
// (the log reaches the test through a pipe, a little after the fact).
func (l *lineLog) eventually(parts ...string) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if l.contains(parts...) {
			return true
		}
	}
	return false
}

// contains reports whether a line holds all of parts.
func (l *lineLog) contains(parts ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
next:
	for _, line := range l.lines {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue next
			}
		}
		return true
	}
	return false
}

// String is the lines, one a line (for failure messages).
func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// startSlaveProcessAs is startSlaveProcess with the process's credentials
// (nil: the test's) and state directory; log (if not nil) gets its log.
func startSlaveProcessAs(t *testing.T, cred *syscall.Credential, log *lineLog, root, stateDir string, extra ...string) string {
	t.Helper()
	if len(extra) == 0 {
		extra = []string{"--insecure"}
	}
	cmd := exec.Command(georepBin, append([]string{"slave", "--root", root, "--listen", "127.0.0.1:0",
		"--state-dir", stateDir}, extra...)...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("slave exited with %v after SIGTERM", err)
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Errorf("slave did not stop within 10s of SIGTERM")
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			if log != nil {
				log.add(sc.Text())
			}
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil && !sent {
				addr <- m[1]
				sent = true
			}
		}
	}()
	select {
	case a := <-addr:
		return a
	case <-time.After(20 * time.Second):
		t.Fatal("slave process did not report its address")
	}
	return ""
}

func runMasterProcess(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return georep(t, append([]string{"master"}, args...)...)
}

// TestProcessesOneShot runs georep as a user would: a slave process, a
// one-shot master process, comparison, an idempotent rerun, changes, and a
// converging rerun.
func TestProcessesOneShot(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	if err := testtree.Build(mroot, testtree.Options{BigFileSize: 8 << 20, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	addr := startSlaveProcess(t, sroot)
	state := filepath.Join(t.TempDir(), "master-state")
	args := []string{"--root", mroot, "--slave", addr, "--state-dir", state, "--oneshot", "--insecure"}
	code, out, errs := runMasterProcess(t, args...)
	if code != 0 {
		t.Fatalf("master --oneshot exited %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if !strings.Contains(out, "slave in sync as of") {
		t.Errorf("no summary on stdout: %q", out)
	}
	testenv.RequireEqual(t, mroot, sroot)

	before, err := treecmp.Snapshot(sroot, testenv.CompareOptions)
	if err != nil {
		t.Fatal(err)
	}
	if code, out, errs = runMasterProcess(t, args...); code != 0 {
		t.Fatalf("second run exited %d: %s %s", code, out, errs)
	}
	if !strings.Contains(out, "0 files sent (0 bytes)") {
		t.Errorf("second run over an unchanged tree sent data:\n%s", out)
	}
	after, err := treecmp.Snapshot(sroot, testenv.CompareOptions)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range treecmp.Changed(before, after) {
		if p != treecmp.RootPath {
			t.Errorf("second run rewrote %q on the slave", p)
		}
	}

	if err := testtree.Mutate(mroot, testtree.Options{Seed: 3}); err != nil {
		t.Fatal(err)
	}
	if code, out, errs = runMasterProcess(t, args...); code != 0 {
		t.Fatalf("third run exited %d: %s %s", code, out, errs)
	}
	testenv.RequireEqual(t, mroot, sroot)
}

// TestProcessesOpFailure: a slave that cannot apply an op makes the
// one-shot master exit non-zero with a one-line reason, and the marks do
// not advance.
func TestProcessesOpFailure(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for chattr +i")
	}
	if _, err := exec.LookPath("chattr"); err != nil {
		t.Skip("chattr not installed")
	}
	mroot, sroot := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(mroot, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	addr := startSlaveProcess(t, sroot)
	state := filepath.Join(t.TempDir(), "master-state")
	args := []string{"--root", mroot, "--slave", addr, "--state-dir", state, "--oneshot", "--retries", "2", "--insecure"}
	if code, out, errs := runMasterProcess(t, args...); code != 0 {
		t.Fatalf("first run exited %d: %s %s", code, out, errs)
	}
	if err := os.WriteFile(filepath.Join(mroot, "d", "new"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	immutable := filepath.Join(sroot, "d")
	if out, err := exec.Command("chattr", "+i", immutable).CombinedOutput(); err != nil {
		t.Skipf("chattr +i not supported here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", immutable).Run() })
	code, out, errs := runMasterProcess(t, args...)
	if code != 1 {
		t.Fatalf("exit %d with a failing op, want 1\nstdout: %s\nstderr: %s", code, out, errs)
	}
	last := lastLine(errs)
	if !strings.HasPrefix(last, "georep master: ") || !strings.Contains(last, "failed") || !strings.Contains(last, "new") {
		t.Errorf("reason line = %q", last)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// TestExitCodes checks the command line's errors: a one-line reason and
// the documented status.
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	checkExitCodes(t, true, []exitCase{
		{"no command", nil, 2, "usage"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"master without root", []string{"master", "--slave", "127.0.0.1:1", "--oneshot"}, 2, "--root and --slave are required"},
		{"unknown flag", []string{"master", "--bogus"}, 2, "bogus"},
		{"unknown watcher", []string{"master", "--root", dir, "--slave", "127.0.0.1:1", "--watcher", "dnotify", "--insecure"}, 2, "--watcher must be auto, fanotify or inotify"},
		{"missing root", []string{"master", "--root", filepath.Join(dir, "missing"), "--slave", "127.0.0.1:1", "--oneshot", "--state-dir", filepath.Join(dir, "s1"), "--insecure"}, 1, "missing"},
		{"unreachable slave", []string{"master", "--root", dir, "--slave", "127.0.0.1:1", "--oneshot", "--state-dir", filepath.Join(dir, "s2"), "--insecure"}, 1, "unreachable"},
		{"slave missing root", []string{"slave", "--root", filepath.Join(dir, "missing"), "--listen", "127.0.0.1:0", "--state-dir", filepath.Join(dir, "s4"), "--insecure"}, 1, "missing"},
		{"checkpoint help lists its flags", []string{"checkpoint", "-h"}, 0, "-state-dir"},
		{"checkpoint without a verb", []string{"checkpoint"}, 2, "-h for the flags"},
		{"version takes no argument", []string{"version", "x"}, 2, "unexpected argument"},
	})
}

// TestVersion: `georep version` names the protocol version master and
// slave must share (issue 18.13).
func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	want := fmt.Sprintf("(protocol version %d,", wire.ProtocolVersion)
	if !strings.HasPrefix(out.String(), "georep ") || !strings.Contains(out.String(), want) {
		t.Fatalf("version printed %q, want georep … %s", out.String(), want)
	}
}

// exitCase is one command line run in-process, and how it must end: the
// exit status and a text its stderr holds.
type exitCase struct {
	name string
	args []string
	code int
	want string
}

// checkExitCodes runs each case; with oneLine, a failure (status 1) must
// say why in one line.
func checkExitCodes(t *testing.T, oneLine bool, cases []exitCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			code := run(ctx, c.args, &out, &errb)
			if code != c.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, c.code, errb.String())
			}
			if !strings.Contains(errb.String(), c.want) {
				t.Errorf("stderr %q lacks %q", errb.String(), c.want)
			}
			if oneLine && c.code == 1 && strings.Count(strings.TrimRight(errb.String(), "\n"), "\n") > 0 && !strings.Contains(errb.String(), "[") {
				t.Errorf("reason is not one line: %q", errb.String())
			}
		})
	}
}

// TestDemo runs `georep demo` in-process: the README's first command.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("demo builds an 8 MiB tree")
	}
	var out bytes.Buffer
	if err := runDemo(context.Background(), demoOptions{dir: t.TempDir()}, &out, io.Discard); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if got := strings.Count(out.String(), "identical"); got != 4 {
		t.Errorf("demo reported %d identical comparisons, want 4:\n%s", got, out.String())
	}
	// It ends with the status table of the stopped session.
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if n := len(lines); n < 3 || !strings.HasPrefix(lines[n-3], "MASTER ") || !strings.Contains(lines[n-1], "Stopped") {
		t.Errorf("demo does not end with the status table:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "completed: No") || !strings.Contains(out.String(), "CHECKPOINT COMPLETED") {
		t.Errorf("demo shows no checkpoint:\n%s", out.String())
	}
}

// TestProcessesLive runs `georep master` without --oneshot as a process:
// the tree is synced, a change made afterwards reaches the slave, and
// SIGTERM ends the master cleanly (exit 0) with the journal kept.
func TestProcessesLive(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	if err := testtree.Build(mroot, testtree.Options{BigFileSize: 1 << 20, Seed: 4}); err != nil {
		t.Fatal(err)
	}
	addr := startSlaveProcess(t, sroot)
	state := filepath.Join(t.TempDir(), "master-state")
	cmd := exec.Command(georepBin, "master", "--root", mroot, "--slave", addr, "--state-dir", state, "--change-interval", "200ms", "--insecure")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	want := []byte("made while live\n")
	if err := os.WriteFile(filepath.Join(mroot, "live file with space"), want, 0o640); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		got, err := os.ReadFile(filepath.Join(sroot, "live file with space"))
		if err == nil && bytes.Equal(got, want) {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("master exited: %v\n%s", err, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the change did not reach the slave within a minute\n%s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("master after SIGTERM: %v\n%s", err, errb.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("master did not stop within a minute of SIGTERM")
	}
	if _, err := os.Stat(filepath.Join(state, "changelog", "INDEX")); err != nil {
		t.Errorf("no journal index after a clean stop: %v", err)
	}
	// Whatever was made before the stop is on the slave once a one-shot
	// run with the same state confirms it (nothing left to send for it).
	code, out, errs := runMasterProcess(t, "--root", mroot, "--slave", addr, "--state-dir", state, "--oneshot", "--insecure")
	if code != 0 {
		t.Fatalf("one-shot after live exited %d: %s %s", code, out, errs)
	}
	testenv.RequireEqual(t, mroot, sroot)
}

// TestNestedRootsRefused: the same directory as master and slave root, or
// one inside the other, is refused with a clear error (issue 18.10):
// before, a one-shot said "in sync" and a live master fed on its own
// writes. Nothing is written into the master's tree.
func TestNestedRootsRefused(t *testing.T) {
	base := t.TempDir()
	mk := func(p string) string {
		t.Helper()
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	outer := mk(filepath.Join(base, "outer"))
	inner := mk(filepath.Join(outer, "inner"))
	if err := os.WriteFile(filepath.Join(inner, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, master, slave, want string }{
		{"the same directory", outer, outer, "is this slave's root"},
		{"the slave inside the master", outer, inner, "contains it"},
		{"the master inside the slave", inner, outer, "contains this master's root"},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr := startSlaveProcess(t, c.slave)
			code, out, errs := runMasterProcess(t, "--root", c.master, "--slave", addr, "--oneshot",
				"--state-dir", filepath.Join(t.TempDir(), "state"), "--insecure")
			if code != 1 || !strings.Contains(errs, "cannot be replicated into itself") || !strings.Contains(errs, c.want) {
				t.Fatalf("exit %d, want 1 saying why\nstdout: %s\nstderr: %s", code, out, errs)
			}
			if _, err := os.Stat(filepath.Join(inner, "f")); err != nil {
				t.Fatalf("the tree lost its file: %v", err)
			}
		})
	}
}
