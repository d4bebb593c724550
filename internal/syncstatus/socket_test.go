package syncstatus

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func startService(t *testing.T, dir string) *Service {
	t.Helper()
	svc, err := Start(Options{StateDir: dir, Master: "host:/m", Slave: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc
}

// TestSocketProtocol speaks the protocol as a client would: several
// requests on one connection, replies one JSON line each; a malformed or
// unknown request gets an error and changes nothing.
func TestSocketProtocol(t *testing.T) {
	dir := t.TempDir()
	svc := startService(t, dir)
	svc.Tracker.SetIdentity(testID)
	svc.Tracker.SessionOpen()
	svc.Tracker.Synced(t0)

	fi, err := os.Lstat(SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket of mode 0600", fi.Mode())
	}

	conn, err := net.Dial("unix", SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	ask := func(line string) Reply {
		t.Helper()
		if _, err := conn.Write([]byte(line + "\n")); err != nil {
			t.Fatal(err)
		}
		raw, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		var rep Reply
		if err := json.Unmarshal(raw, &rep); err != nil {
			t.Fatalf("reply %q: %v", raw, err)
		}
		return rep
	}
	rep := ask(`{"op":"status"}`)
	if !rep.OK || rep.Status == nil || rep.Status.State != Active || !rep.Status.LastSynced.Equal(t0) || rep.Status.Master != "host:/m" {
		t.Fatalf("status reply: %+v", rep)
	}
	for _, bad := range []string{
		`{"op":"status"`,
		`{"op":"reboot"}`,
		`{"op":"status","extra":1}`,
		`{"op":"checkpoint-set"}`,
		`{"op":"checkpoint-set","target":"1969-01-01T00:00:00Z"}`,
		`{"op":"checkpoint-clear","target":"2026-01-01T00:00:00Z"}`,
		`{"op":"status"} {"op":"status"}`,
		`[]`,
	} {
		if rep := ask(bad); rep.OK || rep.Error == "" {
			t.Errorf("%s: %+v", bad, rep)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, checkpointFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused request left a checkpoint: %v", err)
	}
	rep = ask(`{"op":"checkpoint-set","target":"2026-11-21T09:39:00Z"}`)
	if !rep.OK || rep.Checkpoint == nil || rep.Checkpoint.Answer() != CheckpointYes {
		t.Fatalf("checkpoint-set: %+v", rep)
	}
	if rep := ask(`{"op":"status"}`); rep.Status.Checkpoint == nil || !rep.Status.Checkpoint.Target.Equal(t0.Add(-time.Minute)) {
		t.Fatalf("status after checkpoint-set: %+v", rep.Status)
	}
	if rep := ask(`{"op":"checkpoint-clear"}`); !rep.OK {
		t.Fatalf("checkpoint-clear: %+v", rep)
	}
	if rep := ask(`{"op":"status"}`); rep.Status.Checkpoint != nil {
		t.Fatalf("checkpoint after clear: %+v", rep.Status.Checkpoint)
	}
	// A line past the limit is refused and the connection closed.
	conn.Write([]byte(strings.Repeat(" ", maxRequest+1) + "\n"))
	raw, _ := r.ReadBytes('\n')
	if !strings.Contains(string(raw), "longer than") {
		t.Errorf("overlong request: %q", raw)
	}

	// The client functions go through the socket while a master runs.
	ctx := context.Background()
	if cp, err := SetCheckpoint(ctx, dir, t0.Add(time.Hour)); err != nil || cp.Answer() != CheckpointNo {
		t.Fatalf("SetCheckpoint: %+v %v", cp, err)
	}
	if s := svc.Tracker.Snapshot(); s.Checkpoint == nil || !s.Checkpoint.Target.Equal(t0.Add(time.Hour)) {
		t.Fatalf("the running master did not take the checkpoint: %+v", s.Checkpoint)
	}
	svc.Tracker.Synced(t0.Add(time.Hour))
	s, err := Get(ctx, dir)
	if err != nil || s.State != Active || s.Checkpoint.Answer() != CheckpointYes {
		t.Fatalf("Get: %+v %v", s, err)
	}
}

// TestOneMasterPerSocket: a second master is refused while the first
// answers; a socket left by a master that died is replaced; a file that
// is not a socket is never removed.
func TestOneMasterPerSocket(t *testing.T) {
	dir := t.TempDir()
	svc := startService(t, dir)
	svc.Tracker.SetIdentity(testID)
	if _, err := Start(Options{StateDir: dir}); !errors.Is(err, ErrRunning) {
		t.Fatalf("second master: %v, want ErrRunning", err)
	}
	if _, err := Get(context.Background(), dir); err != nil {
		t.Fatalf("the first master stopped answering: %v", err)
	}
	if err := svc.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(SocketPath(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after a clean stop: %v", err)
	}
	if s, err := Get(context.Background(), dir); err != nil || s.State != Stopped {
		t.Fatalf("after the stop: %+v %v", s, err)
	}

	// A stale socket: bound, never unlinked, nobody listening.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: SocketPath(dir), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	svc2 := startService(t, dir)
	if _, err := Get(context.Background(), dir); err != nil {
		t.Fatalf("master on a stale socket: %v", err)
	}
	svc2.Close()

	if err := os.WriteFile(SocketPath(dir), []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(Options{StateDir: dir}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("over a regular file: %v", err)
	}
	if data, _ := os.ReadFile(SocketPath(dir)); string(data) != "not a socket" {
		t.Error("the regular file was replaced")
	}
}

// TestLongSocketPath: a state dir deeper than a sockaddr_un holds still
// gets its socket (through /proc/self/fd).
func TestLongSocketPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	startService(t, dir)
	if len(SocketPath(dir)) <= 108 {
		t.Fatalf("path %d bytes: not long enough to test", len(SocketPath(dir)))
	}
	s, err := Get(context.Background(), dir)
	if err != nil || s.State != Initializing {
		t.Fatalf("status over a long path: %+v %v", s, err)
	}
}

// TestCheckpointWithoutMaster: set and clear with no master running go to
// the file, against the identity the last master recorded.
func TestCheckpointWithoutMaster(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	if _, err := SetCheckpoint(ctx, dir, t0); !errors.Is(err, ErrNoSession) {
		t.Fatalf("no session: %v", err)
	}
	svc := startService(t, dir)
	svc.Tracker.SetIdentity(testID)
	svc.Tracker.Synced(t0)
	svc.Close()

	cp, err := SetCheckpoint(ctx, dir, t0.Add(time.Minute))
	if err != nil || cp.Answer() != CheckpointNo || cp.Identity != testID {
		t.Fatalf("offline set: %+v %v", cp, err)
	}
	s, err := Get(ctx, dir)
	if err != nil || s.State != Stopped || s.Checkpoint == nil || s.Checkpoint.Answer() != CheckpointNo {
		t.Fatalf("offline status: %+v %v", s, err)
	}
	// The next master takes it up and completes it.
	svc = startService(t, dir)
	svc.Tracker.SetIdentity(testID)
	svc.Tracker.Synced(t0.Add(time.Minute))
	if got := svc.Tracker.Snapshot().Checkpoint.Answer(); got != CheckpointYes {
		t.Fatalf("next master: checkpoint %s", got)
	}
	svc.Close()
	if err := ClearCheckpoint(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if s, _ := Get(ctx, dir); s.Checkpoint != nil {
		t.Errorf("offline clear left %+v", s.Checkpoint)
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{`{"op":"status"}`, `{"op":"checkpoint-set","target":"2026-11-21T09:39:00Z"}`,
		`{"op":"checkpoint-clear"}`, `{"op":"x"}`, `{}`, `null`, `{"op":"checkpoint-set","target":"0001-01-01T00:00:00Z"}`,
		`{"op":"pause"}`, `{"op":"config-set","key":"bwlimit","value":"10"}`, `{"op":"config-get"}`, `{"op":"config-reset","key":"Bw"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := ParseRequest(line)
		if err != nil {
			return
		}
		switch req.Op {
		case OpStatus, OpCheckpointClear:
			if !req.Target.IsZero() {
				t.Fatalf("%q: target on %s", line, req.Op)
			}
		case OpCheckpointSet:
			if ValidTarget(req.Target) != nil {
				t.Fatalf("%q: invalid target accepted", line)
			}
		case OpPause, OpResume, OpStop:
			if req.Key != "" || req.Value != "" || !req.Target.IsZero() {
				t.Fatalf("%q: arguments on %s", line, req.Op)
			}
		case OpConfigGet, OpConfigSet, OpConfigReset:
			if (req.Key != "" || req.Op != OpConfigGet) && ValidKey(req.Key) != nil {
				t.Fatalf("%q: bad key accepted", line)
			}
			if req.Op != OpConfigSet && req.Value != "" || len(req.Value) > maxValueLen {
				t.Fatalf("%q: bad value accepted", line)
			}
		default:
			t.Fatalf("%q: op %q accepted", line, req.Op)
		}
	})
}
