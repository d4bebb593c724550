// Package sdnotify tells systemd how a service started as Type=notify is
// doing: the sd_notify(3) protocol, written by hand (a datagram of
// newline-separated KEY=VALUE assignments sent to the unix socket named by
// $NOTIFY_SOCKET), and the service watchdog ($WATCHDOG_USEC,
// $WATCHDOG_PID; WatchdogSec= in the unit).
//
// Outside systemd, NOTIFY_SOCKET is unset and every call is a no-op, so a
// command may notify unconditionally. Nothing here is global: the
// environment comes in through a lookup function (os.LookupEnv in the
// program, a map in tests).
package sdnotify

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// The states systemd knows (sd_notify(3)); STATUS= takes free text
// (Status builds it).
const (
	// Ready: start-up is finished (Type=notify units become active).
	Ready = "READY=1"
	// Stopping: the service is shutting down.
	Stopping = "STOPPING=1"
	// WatchdogPing: keep-alive for WatchdogSec=.
	WatchdogPing = "WATCHDOG=1"
)

// Status returns the STATUS= assignment for a one-line status text (what
// `systemctl status` shows); newlines would end the assignment, so they
// become spaces.
func Status(text string) string {
	return "STATUS=" + strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(text)
}

// LookupFunc reads an environment variable: os.LookupEnv, or a fake.
type LookupFunc func(key string) (string, bool)

// Notifier sends notifications to the socket NOTIFY_SOCKET named when it
// was made. The zero Notifier, and a nil one, are disabled: Notify does
// nothing.
type Notifier struct {
	addr *net.UnixAddr
}

// New reads NOTIFY_SOCKET through lookup. Unset or empty, the Notifier is
// disabled. An absolute path and an abstract address ("@name") are
// accepted; anything else (a relative path, systemd's vsock: addresses)
// is an error, and the Notifier returned with it is disabled.
func New(lookup LookupFunc) (*Notifier, error) {
	v, ok := lookup("NOTIFY_SOCKET")
	if !ok || v == "" {
		return &Notifier{}, nil
	}
	switch {
	case v[0] == '/':
	case v[0] == '@' && len(v) > 1:
		// Go's syscall layer turns a leading '@' into the NUL byte
		// that names the abstract namespace.
	default:
		return &Notifier{}, fmt.Errorf("sdnotify: NOTIFY_SOCKET=%q: want an absolute path or an @abstract address", v)
	}
	return &Notifier{addr: &net.UnixAddr{Name: v, Net: "unixgram"}}, nil
}

// Enabled reports whether notifications go anywhere.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Notify sends one datagram holding the given assignments, one per line
// (e.g. Ready and Status("serving")). Disabled, it does nothing.
func (n *Notifier) Notify(assignments ...string) error {
	if !n.Enabled() || len(assignments) == 0 {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	msg := strings.Join(assignments, "\n")
	if _, err := conn.Write([]byte(msg)); err != nil {
		return fmt.Errorf("sdnotify: sending %q: %w", msg, err)
	}
	return nil
}

// WatchdogInterval reads WATCHDOG_USEC (and WATCHDOG_PID, which when set
// must be pid for the watchdog to be this process's) and returns how long
// systemd waits for a ping before it deems the service hung; 0 when no
// watchdog is asked of this process. A malformed value is an error.
func WatchdogInterval(lookup LookupFunc, pid int) (time.Duration, error) {
	usec, ok := lookup("WATCHDOG_USEC")
	if !ok || usec == "" {
		return 0, nil
	}
	if p, ok := lookup("WATCHDOG_PID"); ok && p != "" {
		want, err := strconv.Atoi(p)
		if err != nil || want <= 0 {
			return 0, fmt.Errorf("sdnotify: WATCHDOG_PID=%q is not a process id", p)
		}
		if want != pid {
			return 0, nil // the watchdog is another process's
		}
	}
	u, err := strconv.ParseUint(usec, 10, 64)
	if err != nil || u == 0 || u > uint64(1<<63-1)/uint64(time.Microsecond) {
		return 0, fmt.Errorf("sdnotify: WATCHDOG_USEC=%q is not a positive number of microseconds", usec)
	}
	return time.Duration(u) * time.Microsecond, nil
}

// Watchdog pings (WATCHDOG=1) at once and then every interval/2, as
// sd_watchdog_enabled(3) advises, until ctx ends. A ping that fails is
// passed to onError (when not nil) and the pinging goes on: one lost
// datagram must not stop the next. It returns ctx's error.
func (n *Notifier) Watchdog(ctx context.Context, interval time.Duration, onError func(error)) error {
	if !n.Enabled() || interval <= 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	period := max(interval/2, time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		if err := n.Notify(WatchdogPing); err != nil && onError != nil && ctx.Err() == nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
