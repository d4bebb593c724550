package sdnotify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// env is a fake environment.
func env(kv ...string) LookupFunc {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// listenPath listens on a unixgram socket in a short temp dir (a socket
// path is limited to 107 bytes; t.TempDir's can be longer) and returns its
// address as NOTIFY_SOCKET names it.
func listenPath(t *testing.T) (*net.UnixConn, string) {
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

// listenAbstract listens on a unixgram socket in the abstract namespace.
func listenAbstract(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "@georep-sdnotify-test-" + hex.EncodeToString(b)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, name
}

// recv reads one datagram, failing the test if none comes in 10 s.
func recv(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, _, err := conn.ReadFromUnix(buf)
	if err != nil {
		t.Fatalf("no datagram: %v", err)
	}
	return string(buf[:n])
}

func TestNotifyDatagrams(t *testing.T) {
	for _, tc := range []struct {
		name   string
		listen func(*testing.T) (*net.UnixConn, string)
	}{
		{"path", listenPath},
		{"abstract", listenAbstract},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, addr := tc.listen(t)
			n, err := New(env("NOTIFY_SOCKET", addr))
			if err != nil {
				t.Fatal(err)
			}
			if !n.Enabled() {
				t.Fatal("not enabled with NOTIFY_SOCKET set")
			}
			for _, c := range []struct {
				send []string
				want string
			}{
				{[]string{Ready, Status("serving /srv on :7070")}, "READY=1\nSTATUS=serving /srv on :7070"},
				{[]string{Status("two\nlines")}, "STATUS=two lines"},
				{[]string{WatchdogPing}, "WATCHDOG=1"},
				{[]string{Stopping}, "STOPPING=1"},
			} {
				if err := n.Notify(c.send...); err != nil {
					t.Fatal(err)
				}
				if got := recv(t, conn); got != c.want {
					t.Errorf("Notify(%q) sent %q, want %q", c.send, got, c.want)
				}
			}
		})
	}
}

func TestNotifyDisabled(t *testing.T) {
	for _, e := range []LookupFunc{env(), env("NOTIFY_SOCKET", "")} {
		n, err := New(e)
		if err != nil {
			t.Fatal(err)
		}
		if n.Enabled() {
			t.Fatal("enabled without NOTIFY_SOCKET")
		}
		if err := n.Notify(Ready); err != nil {
			t.Fatalf("disabled Notify: %v", err)
		}
	}
	var nilN *Notifier
	if nilN.Enabled() || nilN.Notify(Ready) != nil {
		t.Fatal("a nil Notifier must be a disabled one")
	}
}

func TestNotifyBadAddress(t *testing.T) {
	for _, v := range []string{"relative.sock", "@", "vsock:2:1234"} {
		n, err := New(env("NOTIFY_SOCKET", v))
		if err == nil {
			t.Errorf("NOTIFY_SOCKET=%q accepted", v)
		}
		if n.Enabled() {
			t.Errorf("NOTIFY_SOCKET=%q: the Notifier returned with the error is enabled", v)
		}
	}
}

func TestNotifyNoListener(t *testing.T) {
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	n, err := New(env("NOTIFY_SOCKET", filepath.Join(dir, "gone.sock")))
	if err != nil {
		t.Fatal(err)
	}
	err = n.Notify(Ready)
	if err == nil || !strings.Contains(err.Error(), "sdnotify") {
		t.Fatalf("Notify to a missing socket: %v", err)
	}
}

func TestNotifyWatchdogInterval(t *testing.T) {
	pid := os.Getpid()
	for _, c := range []struct {
		name    string
		env     LookupFunc
		want    time.Duration
		wantErr bool
	}{
		{"unset", env(), 0, false},
		{"empty", env("WATCHDOG_USEC", ""), 0, false},
		{"set", env("WATCHDOG_USEC", "60000000"), time.Minute, false},
		{"our pid", env("WATCHDOG_USEC", "30000000", "WATCHDOG_PID", strconv.Itoa(pid)), 30 * time.Second, false},
		{"another pid", env("WATCHDOG_USEC", "30000000", "WATCHDOG_PID", strconv.Itoa(pid+1)), 0, false},
		{"zero", env("WATCHDOG_USEC", "0"), 0, true},
		{"negative", env("WATCHDOG_USEC", "-5"), 0, true},
		{"not a number", env("WATCHDOG_USEC", "60s"), 0, true},
		{"overflow", env("WATCHDOG_USEC", "18446744073709551615"), 0, true},
		{"bad pid", env("WATCHDOG_USEC", "1000", "WATCHDOG_PID", "x"), 0, true},
	} {
		got, err := WatchdogInterval(c.env, pid)
		if (err != nil) != c.wantErr || got != c.want {
			t.Errorf("%s: got %v, %v; want %v, error %v", c.name, got, err, c.want, c.wantErr)
		}
	}
}

// TestWatchdogPings runs the watchdog with a short interval against a real
// socket: pings arrive, each exactly WATCHDOG=1, and the goroutine ends
// with its ctx. How often they come is not asserted (a loaded machine may
// delay them).
func TestNotifyWatchdogPings(t *testing.T) {
	conn, addr := listenPath(t)
	n, err := New(env("NOTIFY_SOCKET", addr))
	if err != nil {
		t.Fatal(err)
	}
	interval, err := WatchdogInterval(env("WATCHDOG_USEC", "40000"), os.Getpid())
	if err != nil || interval != 40*time.Millisecond {
		t.Fatalf("interval %v, %v", interval, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- n.Watchdog(ctx, interval, func(err error) { t.Errorf("ping failed: %v", err) })
	}()
	for i := 0; i < 4; i++ {
		if got := recv(t, conn); got != WatchdogPing {
			t.Fatalf("ping %d: %q, want %q", i, got, WatchdogPing)
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Watchdog returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watchdog did not stop with its context")
	}
}

// TestWatchdogDisabled: with no socket or no interval, Watchdog only waits
// for its context.
func TestNotifyWatchdogDisabled(t *testing.T) {
	n, _ := New(env())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Watchdog(ctx, time.Millisecond, nil) }()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("disabled Watchdog did not stop with its context")
	}
}

// TestWatchdogReportsFailures: pings to a socket nobody listens on are
// reported, and the pinging goes on.
func TestNotifyWatchdogReportsFailures(t *testing.T) {
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	n, err := New(env("NOTIFY_SOCKET", filepath.Join(dir, "gone.sock")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	failures := make(chan error, 16)
	done := make(chan error, 1)
	go func() {
		done <- n.Watchdog(ctx, 10*time.Millisecond, func(err error) {
			select {
			case failures <- err:
			default:
			}
		})
	}()
	for i := 0; i < 2; i++ {
		select {
		case <-failures:
		case <-time.After(10 * time.Second):
			t.Fatalf("failure %d not reported", i)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watchdog did not stop with its context")
	}
}
