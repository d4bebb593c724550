// Package testenv starts real georep slaves for tests: in-process, served
// over gRPC on a loopback listener, stopped with the test.
package testenv

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/georep/georep/internal/treecmp"
	"github.com/georep/georep/internal/wire"
	"github.com/georep/georep/slave"
)

// Slave is a running slave agent.
type Slave struct {
	Root, StateDir, Addr string
	Slave                *slave.Slave

	stop func() error
}

// SlaveOptions tune StartSlaveWith.
type SlaveOptions struct {
	// StateDir is the slave's state (default: a new temp dir).
	StateDir string
	// Addr is the loopback address to listen on (default 127.0.0.1:0);
	// a restarted slave takes its predecessor's Addr.
	Addr string
	// Lease is the session lease (default slave.DefaultLease).
	Lease  time.Duration
	Logger hclog.Logger
	// ServerOptions add gRPC server options (interceptors, limits).
	ServerOptions []grpc.ServerOption
	// Creds secure the link (default: plaintext on loopback).
	Creds credentials.TransportCredentials
}

// StartSlave serves a new slave on root (state in a temp dir) at a loopback
// address until the test ends; opts add gRPC server options.
func StartSlave(t testing.TB, root string, opts ...grpc.ServerOption) *Slave {
	t.Helper()
	return StartSlaveWith(t, root, SlaveOptions{ServerOptions: opts})
}

// StartSlaveWith serves a slave on root as o says, until Stop or the end
// of the test.
func StartSlaveWith(t testing.TB, root string, o SlaveOptions) *Slave {
	t.Helper()
	if o.StateDir == "" {
		o.StateDir = filepath.Join(t.TempDir(), "slave-state")
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Logger == nil {
		o.Logger = Logger(t, "slave")
	}
	s, err := slave.New(slave.Config{Root: root, StateDir: o.StateDir, Lease: o.Lease, Logger: o.Logger})
	if err != nil {
		t.Fatalf("starting slave: %v", err)
	}
	var lis net.Listener
	// A restarted slave may find its address still held a moment.
	for i := 0; ; i++ {
		lis, err = net.Listen("tcp", o.Addr)
		if err == nil || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		s.Close()
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis, o.Creds, o.ServerOptions...) }()
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			stopErr = errors.Join(<-done, s.Close())
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("slave: %v", err)
		}
	})
	return &Slave{Root: root, StateDir: o.StateDir, Addr: lis.Addr().String(), Slave: s, stop: stop}
}

// Stop stops serving and closes the slave (as a clean shutdown would).
func (s *Slave) Stop() error { return s.stop() }

// Logger logs through t at warn level (debug with -v and GEOREP_TEST_DEBUG).
// Its level is warn, or GEOREP_TEST_LOG (e.g. trace: every record and op);
// GEOREP_TEST_LOG_FILE sends it to a file.
func Logger(t testing.TB, name string) hclog.Logger {
	lvl := hclog.Warn
	if l := hclog.LevelFromString(os.Getenv("GEOREP_TEST_LOG")); l != hclog.NoLevel {
		lvl = l
	}
	if p := os.Getenv("GEOREP_TEST_LOG_FILE"); p != "" {
		// Appended to a file instead of the test's output: much cheaper
		// when tracing a long run (each test's loggers share the file).
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatalf("GEOREP_TEST_LOG_FILE: %v", err)
		}
		t.Cleanup(func() { f.Close() })
		return hclog.New(&hclog.LoggerOptions{Name: name, Level: lvl, Output: f, TimeFormat: "15:04:05.000000"})
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: lvl, Output: writer{t}})
}

type writer struct{ t testing.TB }

func (w writer) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// CompareOptions is how a master tree is compared with its replica: the
// slave's reserved directory and georep's own xattrs are not part of it.
var CompareOptions = treecmp.Options{
	IgnoreTop:           []string{wire.ReservedName},
	IgnoreXattrPrefixes: []string{"trusted.georep.", "user.georep."},
}

// RequireEqual fails the test when the trees differ.
func RequireEqual(t testing.TB, master, replica string) {
	t.Helper()
	diffs, err := treecmp.Compare(master, replica, CompareOptions)
	if err != nil {
		t.Fatalf("comparing trees: %v", err)
	}
	for i, d := range diffs {
		if i == 20 {
			t.Errorf("... and %d more", len(diffs)-i)
			break
		}
		t.Errorf("replica differs: %s", d)
	}
	if len(diffs) > 0 {
		t.FailNow()
	}
}

// MkdirChain makes levels nested directories named name under dir, each
// with *at calls (the whole path may be longer than PATH_MAX, which
// os.MkdirAll cannot make), and a regular file "bottom" holding content
// in the deepest; it returns the deepest directory's path relative to
// dir.
func MkdirChain(t testing.TB, dir, name string, levels int, content string) string {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	parts := make([]string, 0, levels)
	for range levels {
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			unix.Close(fd)
			t.Fatal(err)
		}
		nfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = nfd
		parts = append(parts, name)
	}
	defer unix.Close(fd)
	ffd, err := unix.Openat(fd, "bottom", unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ffd)
	if _, err := unix.Write(ffd, []byte(content)); err != nil {
		t.Fatal(err)
	}
	return strings.Join(parts, "/")
}
