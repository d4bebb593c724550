package syncstatus

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// The socket protocol: one JSON request per line, one JSON reply per line,
// as many as the client likes on one connection.
//
//	{"op":"status"}                                      -> {"ok":true,"status":{...Snapshot}}
//	{"op":"checkpoint-set","target":"2026-11-21T09:40:00Z"} -> {"ok":true,"checkpoint":{...}}
//	{"op":"checkpoint-clear"}                            -> {"ok":true}
//	{"op":"pause"} / {"op":"resume"} / {"op":"stop"}     -> {"ok":true,"message":"..."}
//	{"op":"config-get"} / {"op":"config-get","key":"bwlimit"} -> {"ok":true,"config":{"bwlimit":"0",...}}
//	{"op":"config-set","key":"bwlimit","value":"2048"}   -> {"ok":true,"message":"applied"}
//	{"op":"config-reset","key":"bwlimit"}                -> {"ok":true,"message":"..."}
//
// The ops past the checkpoint's are carried out by the master's Control
// (see Service.SetControl); until the master has set one they fail.
//
// A request that cannot be parsed or carried out gets {"ok":false,
// "error":"..."} and changes nothing.

// Ops of the socket protocol.
const (
	OpStatus          = "status"
	OpCheckpointSet   = "checkpoint-set"
	OpCheckpointClear = "checkpoint-clear"
	OpPause           = "pause"
	OpResume          = "resume"
	OpStop            = "stop"
	OpConfigGet       = "config-get"
	OpConfigSet       = "config-set"
	OpConfigReset     = "config-reset"
)

// Control is what the socket lets a client do to a running master beyond
// reading its status: pause, resume and stop it, read and change its
// settings. Each method returns what to tell the client.
type Control interface {
	Pause() (string, error)
	Resume() (string, error)
	Stop() (string, error)
	// ConfigGet returns the settings in force, all of them (key "") or
	// one.
	ConfigGet(key string) (map[string]string, error)
	// ConfigSet validates, persists and, where the setting allows it,
	// applies value; the message says whether it took effect or needs a
	// restart.
	ConfigSet(key, value string) (string, error)
	ConfigReset(key string) (string, error)
}

// Limits of a config request.
const (
	maxKeyLen   = 64
	maxValueLen = 16 << 10
)

// Request is one request on the socket.
type Request struct {
	Op     string    `json:"op"`
	Target time.Time `json:"target,omitzero"`
	// Key and Value: config-get (Key optional), config-set, config-reset.
	Key   string `json:"key,omitempty"`
	Value string `json:"value,omitempty"`
}

// Reply is the answer to one request.
type Reply struct {
	OK         bool        `json:"ok"`
	Error      string      `json:"error,omitempty"`
	Status     *Snapshot   `json:"status,omitempty"`
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	// Message says what a control op did.
	Message string `json:"message,omitempty"`
	// Config: config-get's settings, by key.
	Config map[string]string `json:"config,omitempty"`
}

// Errors of the socket.
var (
	// ErrRunning: a master already serves this session.
	ErrRunning = errors.New("status: a master is already running for this session (its status socket answers)")
	// ErrNotRunning: no master answers on the session's socket.
	ErrNotRunning = errors.New("status: no master is running for this session")
)

// Limits of the server: a request line, the time a client has to send it,
// and how many clients are served at once (a status query is quick; more
// wait in the listen backlog).
const (
	maxRequest  = 64 << 10
	idleTimeout = 10 * time.Second
	maxClients  = 16
	dialTimeout = 2 * time.Second
)

// maxSunPath bounds a socket path that bind(2) takes as it is (108 bytes
// with the NUL); a longer one is reached through /proc/self/fd.
const maxSunPath = 100

// withSockAddr calls fn with an address that reaches path even when path
// is too long for a sockaddr_un: the directory opened, and named through
// /proc/self/fd (which is how the kernel resolves it for bind and connect).
func withSockAddr(path string, fn func(addr string) error) error {
	if len(path) <= maxSunPath {
		return fn(path)
	}
	dir, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("status: opening %s: %w", filepath.Dir(path), err)
	}
	defer unix.Close(dir)
	return fn("/proc/self/fd/" + strconv.Itoa(dir) + "/" + filepath.Base(path))
}

func dial(ctx context.Context, path string) (net.Conn, error) {
	var conn net.Conn
	err := withSockAddr(path, func(addr string) error {
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		defer cancel()
		c, err := d.DialContext(dctx, "unix", addr)
		conn = c
		return err
	})
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		return nil, ErrNotRunning
	}
	if err != nil {
		return nil, fmt.Errorf("status: connecting to %s: %w", path, err)
	}
	return conn, nil
}

// Server serves a Tracker on the session's unix socket.
type Server struct {
	path string
	lis  *net.UnixListener
	lock *os.File // flock held while serving: one server per session
	t    *Tracker
	log  hclog.Logger
	ctl  atomic.Pointer[controlBox]
}

type controlBox struct{ c Control }

func (s *Server) control() Control {
	if b := s.ctl.Load(); b != nil {
		return b.c
	}
	return nil
}

// Listen opens the socket of the session in stateDir, mode 0600 (in a
// state directory of mode 0700), to serve t (which may be set until Serve
// starts). A socket a master answers on is never
// taken (ErrRunning); a stale one, left by a master that died, is
// replaced. A lock file held while serving closes the race between two
// masters that both find a stale socket.
func Listen(ctx context.Context, stateDir string, t *Tracker, log hclog.Logger) (*Server, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("status: state dir: %w", err)
	}
	path := SocketPath(stateDir)
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("status: %s exists and is not a socket; refusing to replace it", path)
		}
		conn, err := dial(ctx, path)
		if err == nil {
			conn.Close()
			return nil, ErrRunning
		}
		if !errors.Is(err, ErrNotRunning) {
			return nil, err
		}
	}
	lock, err := os.OpenFile(filepath.Join(stateDir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("status: lock file: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, ErrRunning
		}
		return nil, fmt.Errorf("status: locking %s: %w", lockFile, err)
	}
	// Ours now: whatever socket is there is stale.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		lock.Close()
		return nil, fmt.Errorf("status: removing stale socket: %w", err)
	}
	var lis *net.UnixListener
	err = withSockAddr(path, func(addr string) error {
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
		lis = l
		return err
	})
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("status: listening on %s: %w", path, err)
	}
	// Removed by Serve under its real name (a /proc/self/fd name is gone
	// by then).
	lis.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		lis.Close()
		os.Remove(path)
		lock.Close()
		return nil, fmt.Errorf("status: socket mode: %w", err)
	}
	return &Server{path: path, lis: lis, lock: lock, t: t, log: log}, nil
}

// close releases what Listen took, for a server that will not serve.
func (s *Server) close() {
	s.lis.Close()
	os.Remove(s.path)
	s.lock.Close()
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Serve answers requests until ctx ends, then closes every connection,
// removes the socket and releases the lock.
func (s *Server) Serve(ctx context.Context) error {
	defer s.lock.Close()
	defer os.Remove(s.path)
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxClients)
	conns := map[net.Conn]struct{}{}
	var mu sync.Mutex
	stop := context.AfterFunc(ctx, func() {
		s.lis.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	for {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil
		}
		conn, err := s.lis.Accept()
		if err != nil {
			<-sem
			wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("status: accepting: %w", err)
		}
		mu.Lock()
		conns[conn] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.serveConn(conn)
			mu.Lock()
			delete(conns, conn)
			mu.Unlock()
			conn.Close()
		}()
	}
}

func (s *Server) serveConn(conn net.Conn) {
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 4096), maxRequest)
	enc := json.NewEncoder(conn)
	for {
		conn.SetDeadline(time.Now().Add(idleTimeout))
		if !sc.Scan() {
			if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
				enc.Encode(Reply{Error: fmt.Sprintf("request longer than %d bytes", maxRequest)})
			}
			return
		}
		if err := enc.Encode(s.handle(sc.Bytes())); err != nil {
			s.log.Debug("status client went away", "error", err)
			return
		}
	}
}

// handle carries out one request line.
func (s *Server) handle(line []byte) Reply {
	req, err := ParseRequest(line)
	if err != nil {
		return Reply{Error: err.Error()}
	}
	switch req.Op {
	case OpStatus:
		snap := s.t.Snapshot()
		return Reply{OK: true, Status: &snap}
	case OpCheckpointSet:
		cp, err := s.t.SetCheckpoint(req.Target)
		if err != nil {
			return Reply{Error: err.Error()}
		}
		s.log.Info("checkpoint set", "target", cp.Target, "completed", cp.Answer())
		return Reply{OK: true, Checkpoint: cp}
	case OpCheckpointClear:
		if err := s.t.ClearCheckpoint(); err != nil {
			return Reply{Error: err.Error()}
		}
		s.log.Info("checkpoint cleared")
		return Reply{OK: true}
	}
	ctl := s.control()
	if ctl == nil {
		return Reply{Error: fmt.Sprintf("op %q: the master is still starting; try again in a moment", req.Op)}
	}
	var msg string
	switch req.Op {
	case OpPause:
		msg, err = ctl.Pause()
	case OpResume:
		msg, err = ctl.Resume()
	case OpStop:
		msg, err = ctl.Stop()
	case OpConfigSet:
		msg, err = ctl.ConfigSet(req.Key, req.Value)
	case OpConfigReset:
		msg, err = ctl.ConfigReset(req.Key)
	case OpConfigGet:
		cfg, gerr := ctl.ConfigGet(req.Key)
		if gerr != nil {
			return Reply{Error: gerr.Error()}
		}
		return Reply{OK: true, Config: cfg}
	default:
		return Reply{Error: fmt.Sprintf("unknown op %q", req.Op)} // ParseRequest lets none through
	}
	if err != nil {
		return Reply{Error: err.Error()}
	}
	if req.Op != OpConfigGet {
		s.log.Info("control", "op", req.Op, "key", req.Key, "value", req.Value, "result", msg)
	}
	return Reply{OK: true, Message: msg}
}

// ParseRequest parses and validates one request line.
func ParseRequest(line []byte) (Request, error) {
	var req Request
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Request{}, fmt.Errorf("malformed request: %v", err)
	}
	if dec.More() {
		return Request{}, errors.New("malformed request: more than one value on the line")
	}
	if req.Op != OpCheckpointSet && !req.Target.IsZero() {
		return Request{}, fmt.Errorf("op %q takes no target", req.Op)
	}
	takesKey := req.Op == OpConfigGet || req.Op == OpConfigSet || req.Op == OpConfigReset
	if !takesKey && req.Key != "" {
		return Request{}, fmt.Errorf("op %q takes no key", req.Op)
	}
	if req.Op != OpConfigSet && req.Value != "" {
		return Request{}, fmt.Errorf("op %q takes no value", req.Op)
	}
	switch req.Op {
	case OpStatus, OpCheckpointClear, OpPause, OpResume, OpStop:
	case OpCheckpointSet:
		if err := ValidTarget(req.Target); err != nil {
			return Request{}, err
		}
	case OpConfigGet, OpConfigSet, OpConfigReset:
		if req.Key == "" && req.Op != OpConfigGet {
			return Request{}, fmt.Errorf("op %q needs a key", req.Op)
		}
		if err := ValidKey(req.Key); req.Key != "" && err != nil {
			return Request{}, err
		}
		if len(req.Value) > maxValueLen {
			return Request{}, fmt.Errorf("value of %q too long (%d bytes, at most %d)", req.Key, len(req.Value), maxValueLen)
		}
	default:
		return Request{}, fmt.Errorf("unknown op %q", req.Op)
	}
	return req, nil
}

// ValidKey checks the form of a setting's name: lower-case letters,
// digits and dashes, as the command's flags are named.
func ValidKey(k string) error {
	if k == "" || len(k) > maxKeyLen {
		return fmt.Errorf("setting name %q: 1 to %d characters", k, maxKeyLen)
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0) {
			return fmt.Errorf("setting name %q: only a-z, 0-9 and '-' (not first)", k)
		}
	}
	return nil
}

// ValidTarget checks a checkpoint target: after 1970 and before 2262 (the
// marks hold nanoseconds since the epoch in an int64).
func ValidTarget(t time.Time) error {
	if t.IsZero() || t.Unix() <= 0 || t.After(time.Unix(0, 1<<63-1)) {
		return fmt.Errorf("checkpoint target %v out of range", t)
	}
	return nil
}

// Call sends one request to the master serving the session in stateDir
// (ErrNotRunning when none does).
func Call(ctx context.Context, stateDir string, req Request) (*Reply, error) {
	conn, err := dial(ctx, SocketPath(stateDir))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	deadline := time.Now().Add(idleTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return nil, fmt.Errorf("status: sending request: %w", err)
	}
	var rep Reply
	if err := json.NewDecoder(conn).Decode(&rep); err != nil {
		return nil, fmt.Errorf("status: reading reply: %w", err)
	}
	if !rep.OK {
		return nil, fmt.Errorf("status: the master refused: %s", rep.Error)
	}
	return &rep, nil
}
