// Package testenv starts real georep slaves for tests: in-process, served
// over gRPC on a loopback listener, stopped with the test.
package testenv

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/georep/georep/internal/treecmp"
	"github.com/georep/georep/slave"
)

// Slave is a running slave agent.
type Slave struct {
	Root, StateDir, Addr string
	Slave                *slave.Slave
}

// StartSlave serves a new slave on root (state in a temp dir) at a loopback
// address until the test ends; opts add gRPC server options.
func StartSlave(t testing.TB, root string, opts ...grpc.ServerOption) *Slave {
	t.Helper()
	state := filepath.Join(t.TempDir(), "slave-state")
	s, err := slave.New(slave.Config{Root: root, StateDir: state, Logger: Logger(t, "slave")})
	if err != nil {
		t.Fatalf("starting slave: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.Close()
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis, nil, opts...) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("slave serve: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("slave close: %v", err)
		}
	})
	return &Slave{Root: root, StateDir: state, Addr: lis.Addr().String(), Slave: s}
}

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
	IgnoreTop:           []string{slave.ReservedName},
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
