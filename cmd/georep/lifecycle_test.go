package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/georep/georep/internal/syncstatus"
)

// hookServer is a real local HTTP server that collects the events posted
// to it.
type hookServer struct {
	*httptest.Server
	mu     sync.Mutex
	events []map[string]any
}

func newHookServer(t *testing.T) *hookServer {
	h := &hookServer{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev map[string]any
		if r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer s3cret" || json.Unmarshal(body, &ev) != nil {
			http.Error(w, "bad event", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.events = append(h.events, ev)
		h.mu.Unlock()
	}))
	t.Cleanup(h.Close)
	return h
}

// wait waits for an event of kind from session.
func (h *hookServer) wait(t *testing.T, kind, session string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		for _, ev := range h.events {
			if ev["event"] == kind && ev["session"] == session {
				h.mu.Unlock()
				return ev
			}
		}
		h.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	t.Fatalf("no %s event of session %s; got %v", kind, session, h.events)
	return nil
}

// syncBuffer is a bytes.Buffer a process writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// georepCmd runs georep with args and returns its exit status and output.
func georepCmd(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command(georepBin, args...).CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatal(err)
		}
		code = ee.ExitCode()
	}
	return code, string(out)
}

func waitFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if got, err := os.ReadFile(path); err == nil && string(got) == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not get %q within a minute", path, want)
}

// TestProcessesSessionsLifecycle walks through running georep as a
// service, as a new operator would: one master process runs the sessions
// of a config file (one of them faulty: its slave is not there, which
// stops no other, not even the session whose root and recorder it
// shares), status shows a row each; pause, config set/get (bad
// values refused), a checkpoint whose completion reaches a webhook,
// resume, stop of one session while the other goes on, SIGTERM, and
// session delete.
func TestProcessesSessionsLifecycle(t *testing.T) {
	m1, m2, s1, s2 := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	a1, a2 := startSlaveProcess(t, s1), startSlaveProcess(t, s2)
	hooks := newHookServer(t)
	dir := t.TempDir()
	st := func(n string) string { return filepath.Join(dir, "state-"+n) }
	cfg := filepath.Join(dir, "master.toml")
	os.WriteFile(filepath.Join(m1, "a"), []byte("one"), 0o644)
	os.WriteFile(filepath.Join(m2, "a"), []byte("two"), 0o644)
	conf := fmt.Sprintf(`insecure = true
change-interval = "100ms"
event-url = %q
event-header = ["Authorization: Bearer s3cret"]
max-backoff = "1s"

[[session]]
name = "one"
root = %q
slave = %q
state-dir = %q

[[session]]
name = "two"
root = %q
slave = %q
state-dir = %q

[[session]]
name = "three"
root = %q
slave = "127.0.0.1:1"
state-dir = %q
`, hooks.URL, m1, a1, st("one"), m2, a2, st("two"), m1, st("three"))
	// Sessions one and three share a root: one recorder for both (its
	// state is under the state base).
	t.Cleanup(func() { os.RemoveAll(defaultStateDir("root", m1)) })
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(georepBin, "master", "--config", cfg)
	var errb syncBuffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("master log:\n%s", errb.String())
		}
	}()
	waitFile(t, filepath.Join(s1, "a"), "one")
	waitFile(t, filepath.Join(s2, "a"), "two")
	hooks.wait(t, "FAULTY", "three") // its slave is not there; the others run
	if n := strings.Count(errb.String(), "shared recorder started"); n != 1 {
		t.Errorf("sessions one and three of one root: %d shared recorders started, want 1", n)
	}

	code, out := georepCmd(t, "status", "--config", cfg)
	if code != 0 || !strings.Contains(out, "SESSION") || !strings.Contains(out, "one ") || !strings.Contains(out, "two ") || !strings.Contains(out, "Faulty") {
		t.Fatalf("status of the config's sessions (%d):\n%s", code, out)
	}

	// Pause one: nothing ships, status says Paused.
	if code, out := georepCmd(t, "pause", "--config", cfg, "--session", "one"); code != 0 || !strings.Contains(out, "paused") {
		t.Fatalf("pause: %d %s", code, out)
	}
	os.WriteFile(filepath.Join(m1, "b"), []byte("while paused"), 0o644)
	time.Sleep(time.Second)
	if _, err := os.Stat(filepath.Join(s1, "b")); err == nil {
		t.Fatal("a paused session shipped a change")
	}
	if s := statusJSON(t, st("one")); s.State != syncstatus.Paused {
		t.Errorf("status of a paused session: %s", s.State)
	}

	// Settings: applied live, persisted, bad ones refused with the reason.
	if code, out := georepCmd(t, "config", "set", "--config", cfg, "--session", "two", "bwlimit", "100"); code != 0 || !strings.Contains(out, "applied") {
		t.Fatalf("config set bwlimit: %d %s", code, out)
	}
	if code, out := georepCmd(t, "config", "get", "--config", cfg, "--session", "two", "bwlimit"); code != 0 || out != "bwlimit = 100\n" {
		t.Fatalf("config get bwlimit: %d %q", code, out)
	}
	if s := statusJSON(t, st("two")); s.Bandwidth == nil || s.Bandwidth.Limit != 100<<10 {
		t.Errorf("status bandwidth after config set: %+v", s.Bandwidth)
	}
	for _, bad := range [][]string{{"sync-jobs", "0"}, {"bwlimt", "1"}, {"root", "/elsewhere"}, {"bwlimit-schedule", "Mon-Fry 08:00-09:00 1MiB"}} {
		args := append([]string{"config", "set", "--config", cfg, "--session", "two"}, bad...)
		if code, out := georepCmd(t, args...); code == 0 {
			t.Errorf("config set %v accepted: %s", bad, out)
		}
	}
	if data, err := os.ReadFile(filepath.Join(st("two"), settingsFile)); err != nil || !strings.Contains(string(data), `"bwlimit"`) || strings.Contains(string(data), "sync-jobs") {
		t.Errorf("persisted settings: %s %v", data, err)
	}

	// A checkpoint's completion reaches the webhook.
	if code, out := georepCmd(t, "checkpoint", "set", "now", "--config", cfg, "--session", "two"); code != 0 {
		t.Fatalf("checkpoint set: %d %s", code, out)
	}
	ev := hooks.wait(t, "CHECKPOINT_COMPLETED", "two")
	if ev["slave"] != a2 || ev["master_root"] != m2 {
		t.Errorf("event %v", ev)
	}

	// Resume: what changed meanwhile ships (from the journal).
	if code, out := georepCmd(t, "resume", "--config", cfg, "--session", "one"); code != 0 || !strings.Contains(out, "resumed") {
		t.Fatalf("resume: %d %s", code, out)
	}
	waitFile(t, filepath.Join(s1, "b"), "while paused")

	// Stop one session: the other goes on.
	if code, out := georepCmd(t, "stop", "--config", cfg, "--session", "one"); code != 0 {
		t.Fatalf("stop: %d %s", code, out)
	}
	os.WriteFile(filepath.Join(m2, "c"), []byte("after one stopped"), 0o644)
	waitFile(t, filepath.Join(s2, "c"), "after one stopped")
	if s := statusJSON(t, st("one")); s.State != syncstatus.Stopped {
		t.Errorf("status of the stopped session: %s", s.State)
	}
	// A stopped session is paused in its state: its next start is paused.
	if code, out := georepCmd(t, "pause", "--config", cfg, "--session", "one"); code != 0 || !strings.Contains(out, "no master is running") {
		t.Fatalf("offline pause: %d %s", code, out)
	}
	if data, _ := os.ReadFile(filepath.Join(st("one"), "session.json")); !strings.Contains(string(data), `"paused": true`) {
		t.Errorf("offline pause not persisted: %s", data)
	}
	// Deleting a running session's state is refused.
	if code, out := georepCmd(t, "session", "delete", "--config", cfg, "--session", "two"); code == 0 || !strings.Contains(out, "running") {
		t.Errorf("session delete of a running session: %d %s", code, out)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		// Session three never reached its slave: the run ends in error.
		if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
			t.Errorf("master after SIGTERM: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("master did not stop within a minute of SIGTERM")
	}

	if code, out := georepCmd(t, "session", "delete", "--reset-sync-time", "--config", cfg, "--session", "one"); code != 0 {
		t.Fatalf("session delete: %d %s", code, out)
	}
	if _, err := os.Stat(st("one")); !os.IsNotExist(err) {
		t.Errorf("state dir after session delete --reset-sync-time: %v", err)
	}
	if out, _ := exec.Command("getfattr", "-d", "-m", "-", m1).CombinedOutput(); strings.Contains(string(out), "stime") {
		t.Errorf("marks left on the master root: %s", out)
	}
}

// TestProcessesBandwidthSchedule measures a one-shot run capped by a
// schedule rule that always applies: 1 MiB at 256 KiB/s takes about 3 s
// (the first 256 KiB go at once); without the cap it takes a fraction.
func TestProcessesBandwidthSchedule(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	data := bytes.Repeat([]byte("incompressible? no, but not compressed either\n"), (1<<20)/46+1)[:1<<20]
	if err := os.WriteFile(filepath.Join(mroot, "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := startSlaveProcess(t, sroot)
	t0 := time.Now()
	code, out, errs := runMasterProcess(t, "--root", mroot, "--slave", addr, "--state-dir", filepath.Join(t.TempDir(), "st"), "--oneshot", "--insecure",
		"--bwlimit-schedule", "* 00:00-24:00 256KiB")
	took := time.Since(t0)
	if code != 0 {
		t.Fatalf("one-shot: %d %s %s", code, out, errs)
	}
	if rate := float64(1<<20-256<<10) / took.Seconds(); rate > 1.25*256*1024 {
		t.Errorf("1 MiB capped at 256 KiB/s took %s: %.0f B/s past the burst", took, rate)
	}
	t.Logf("1 MiB at 256 KiB/s took %s", took)
}
