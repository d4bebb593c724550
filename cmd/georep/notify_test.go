package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// notifySocket listens on a unixgram socket as systemd's NOTIFY_SOCKET
// does, in a short temp dir (socket paths are limited to 107 bytes).
func notifySocket(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, path
}

// nextDatagram reads one notification, failing if none comes within d.
func nextDatagram(t *testing.T, conn *net.UnixConn, d time.Duration) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	n, _, err := conn.ReadFromUnix(buf)
	if err != nil {
		t.Fatalf("no notification within %s: %v", d, err)
	}
	return string(buf[:n])
}

// waitDatagram reads notifications until one equal to want (or, with
// prefix, starting with it), skipping watchdog pings; it returns it.
func waitDatagram(t *testing.T, conn *net.UnixConn, want string, prefix bool) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var seen []string
	for time.Now().Before(deadline) {
		got := nextDatagram(t, conn, time.Until(deadline))
		if got == want || (prefix && strings.HasPrefix(got, want)) {
			return got
		}
		if got != "WATCHDOG=1" {
			seen = append(seen, got)
		}
	}
	t.Fatalf("no %q; got %q", want, seen)
	return ""
}

// TestNotifyLifecycle: READY with the status, watchdog pings, STOPPING
// when the run's context ends; the goroutine is gone after stop.
func TestNotifyLifecycle(t *testing.T) {
	conn, path := notifySocket(t)
	env := map[string]string{"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000", "WATCHDOG_PID": "4242"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	ctx, cancel := context.WithCancel(context.Background())
	stop := notifyWith(ctx, lookup, 4242, hclog.NewNullLogger(), "serving /srv\non :7070")
	if got := nextDatagram(t, conn, 10*time.Second); got != "READY=1\nSTATUS=serving /srv on :7070" {
		t.Fatalf("first notification %q", got)
	}
	for i := 0; i < 3; i++ {
		if got := nextDatagram(t, conn, 10*time.Second); got != "WATCHDOG=1" {
			t.Fatalf("ping %d: %q", i, got)
		}
	}
	cancel()
	waitDatagram(t, conn, "STOPPING=1\nSTATUS=stopping", false)
	stop()
	stop = notifyWith(context.Background(), lookup, 4242, hclog.NewNullLogger(), "again")
	if got := nextDatagram(t, conn, 10*time.Second); got != "READY=1\nSTATUS=again" {
		t.Fatalf("first notification %q", got)
	}
	stop() // stop alone also says STOPPING
	waitDatagram(t, conn, "STOPPING=1\nSTATUS=stopping", false)
}

// TestNotifyOff: no NOTIFY_SOCKET, or a bad one (logged), is a no-op.
func TestNotifyOff(t *testing.T) {
	var logb bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &logb})
	for _, env := range []map[string]string{{}, {"NOTIFY_SOCKET": "relative.sock"}} {
		lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
		notifyWith(context.Background(), lookup, os.Getpid(), log, "x")()
	}
	if !strings.Contains(logb.String(), "relative.sock") {
		t.Errorf("a bad NOTIFY_SOCKET is not logged: %q", logb.String())
	}
}

// startNotified starts georep with NOTIFY_SOCKET (and a 200 ms watchdog)
// pointing at a fresh socket; the process is killed at the end of the test
// if still running.
func startNotified(t *testing.T, args ...string) (*exec.Cmd, *net.UnixConn, chan error, *bytes.Buffer) {
	t.Helper()
	conn, path := notifySocket(t)
	cmd := exec.Command(georepBin, args...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+path, "WATCHDOG_USEC=200000")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	return cmd, conn, exited, &errb
}

// stopNotified sends SIGTERM and wants STOPPING=1, then a clean exit.
func stopNotified(t *testing.T, cmd *exec.Cmd, conn *net.UnixConn, exited chan error, errb *bytes.Buffer) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitDatagram(t, conn, "STOPPING=1\nSTATUS=stopping", false)
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, errb.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("no exit within a minute of SIGTERM\n%s", errb.String())
	}
}

// TestNotifySlaveProcess: a slave process under a fake systemd says READY
// once its listener accepts connections, pings the watchdog, and says
// STOPPING on SIGTERM.
func TestNotifySlaveProcess(t *testing.T) {
	root := t.TempDir()
	cmd, conn, exited, errb := startNotified(t, "slave", "--root", root, "--listen", "127.0.0.1:0",
		"--state-dir", filepath.Join(t.TempDir(), "state"), "--insecure")
	ready := waitDatagram(t, conn, "READY=1\nSTATUS=serving "+root+" on 127.0.0.1:", true)
	addr := strings.TrimPrefix(ready, "READY=1\nSTATUS=serving "+root+" on ")
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("READY before the listener accepts: %v", err)
	}
	c.Close()
	for i := 0; i < 2; i++ {
		if got := nextDatagram(t, conn, 30*time.Second); got != "WATCHDOG=1" {
			t.Fatalf("after READY: %q, want watchdog pings", got)
		}
	}
	stopNotified(t, cmd, conn, exited, errb)
}

// TestNotifyMasterProcess: a live master says READY once its status
// socket is up, pings, and says STOPPING on SIGTERM.
func TestNotifyMasterProcess(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	addr := startSlaveProcess(t, sroot)
	state := filepath.Join(t.TempDir(), "master-state")
	cmd, conn, exited, errb := startNotified(t, "master", "--root", mroot, "--slave", addr, "--state-dir", state, "--insecure")
	waitDatagram(t, conn, "READY=1\nSTATUS=replicating "+mroot+" to "+addr, false)
	if st, err := os.Stat(filepath.Join(state, "status.sock")); err != nil || st.Mode()&os.ModeSocket == 0 {
		t.Fatalf("READY before the status socket is up: %v", err)
	}
	if got := nextDatagram(t, conn, 30*time.Second); got != "WATCHDOG=1" {
		t.Fatalf("after READY: %q, want a watchdog ping", got)
	}
	stopNotified(t, cmd, conn, exited, errb)
}
