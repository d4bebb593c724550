package master_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/georep/georep/internal/syncstatus"
	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/tlsconf"
	"github.com/georep/georep/master"
	pb "github.com/georep/georep/proto/georep/v1"
)

// Issue 5's failure classes (seed 001), one test each: auth and
// configuration errors stop with a clear message; network errors back
// off and retry; a hash mismatch is retried once, then reported; a file
// that vanished is not an error. Then the monitor's keep-alive cases.

// waitState polls the tracker until its state is want (and, if set, the
// fault contains reason), failing after a minute.
func waitState(t *testing.T, tr *syncstatus.Tracker, want syncstatus.State, reason string) syncstatus.Snapshot {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		s := tr.Snapshot()
		if s.State == want && strings.Contains(s.Fault, reason) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %s (fault %q) after a minute; want %s with %q", s.State, s.Fault, want, reason)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFailureAuthStops: a slave whose certificate another CA signed is a
// configuration error: the live master stops at once with a message that
// says what to check, instead of retrying forever.
func TestFailureAuthStops(t *testing.T) {
	now := time.Now()
	caA, caB := t.TempDir(), t.TempDir()
	for _, d := range []string{caA, caB} {
		if _, err := tlsconf.InitDir(d, "ca-"+filepath.Base(d), time.Hour, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tlsconf.IssueInDir(caA, "slave", tlsconf.RoleSlave, []string{"127.0.0.1"}, "", time.Hour, now, false); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsconf.IssueInDir(caB, "lab", tlsconf.RoleMaster, nil, "", time.Hour, now, false); err != nil {
		t.Fatal(err)
	}
	scfg, err := tlsconf.ServerConfig(tlsconf.DirFiles(caA, "slave"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ccfg, err := tlsconf.ClientConfig(tlsconf.DirFiles(caB, "lab"), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	mroot := t.TempDir()
	write(t, filepath.Join(mroot, "f"), []byte("x"))
	sl := testenv.StartSlaveWith(t, t.TempDir(), testenv.SlaveOptions{Creds: credentials.NewTLS(scfg)})
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.TLS = ccfg; c.Insecure = false })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err = m.Run(ctx)
	if !errors.Is(err, master.ErrTLS) || ctx.Err() != nil {
		t.Fatalf("Run = %v; want it to stop with %v", err, master.ErrTLS)
	}
	if !strings.Contains(err.Error(), "--slave-name") {
		t.Errorf("the message does not say what to check: %v", err)
	}
}

// TestFailureNetworkBacksOff: a live master started while its slave is
// not up yet reports Faulty (slave unreachable) and keeps trying with
// back-off; once the slave is up, it syncs.
func TestFailureNetworkBacksOff(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	write(t, filepath.Join(mroot, "f"), randomBytes(10000, 1))
	// An address nobody listens on, taken by the slave later.
	probe := testenv.StartSlave(t, t.TempDir())
	addr := probe.Addr
	if err := probe.Stop(); err != nil {
		t.Fatal(err)
	}
	tr := newTracker(t, t.TempDir())
	m := newMaster(t, mroot, addr, func(c *master.Config) { c.Status = tr; c.MaxBackoff = 2 * time.Second })
	live := startLive(t, m)
	s := waitState(t, tr, syncstatus.Faulty, "slave unreachable")
	t.Logf("faulty: %s", s.Fault)
	if ok, err := live.exited(); ok {
		t.Fatalf("the master gave up: %v", err)
	}
	testenv.StartSlaveWith(t, sroot, testenv.SlaveOptions{Addr: addr})
	waitSynced(t, m, time.Minute)
	testenv.RequireEqual(t, mroot, sroot)
	waitState(t, tr, syncstatus.Active, "")
}

// TestFailureHashMismatchLive: in a live session, a file the slave builds
// wrong is sent again whole once; when that fails too, the batch is
// reported (Faulty, HASH_MISMATCH, a failure counted) and kept: its next
// attempt, over a sound link, converges.
func TestFailureHashMismatchLive(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	write(t, filepath.Join(mroot, "a"), randomBytes(1000, 1))
	opt, hits := tamper(2) // the first transfer of the file, and its whole retry
	sl := testenv.StartSlave(t, sroot, opt)
	tr := newTracker(t, t.TempDir())
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.Status = tr; c.MaxBackoff = time.Second })
	startLive(t, m)
	waitSynced(t, m, time.Minute)
	testenv.RequireEqual(t, mroot, sroot)
	s := tr.Snapshot()
	if hits.Load() != 2 || s.Totals.Failures != 1 || s.State != syncstatus.Active {
		t.Errorf("tampered %d transfers; status %s with %d failures; want 2, Active after 1 failure", hits.Load(), s.State, s.Totals.Failures)
	}
}

// TestFailureVanishedIsNotAnError: a file removed on the master after the
// crawl listed it and before its data is read is counted as vanished, and
// the run succeeds (rsync's exit 24 is normal under churn).
func TestFailureVanishedIsNotAnError(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	write(t, filepath.Join(mroot, "keep"), randomBytes(5000, 1))
	write(t, filepath.Join(mroot, "gone"), randomBytes(5000, 2))
	// The first entry ops reach the slave: the crawl is over, no data has
	// been read yet. Remove the file then.
	var once atomic.Bool
	opt := grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if _, ok := req.(*pb.EntryOpsRequest); ok && once.CompareAndSwap(false, true) {
			if err := os.Remove(filepath.Join(mroot, "gone")); err != nil {
				t.Error(err)
			}
		}
		return h(ctx, req)
	})
	sl := testenv.StartSlave(t, sroot, opt)
	sum := runOnce(t, newMaster(t, mroot, sl.Addr, nil))
	if sum.Batch.Vanished != 1 || sum.Batch.Files != 1 {
		t.Errorf("vanished %d, sent %d; want 1 and 1", sum.Batch.Vanished, sum.Batch.Files)
	}
	testenv.RequireEqual(t, mroot, sroot)
}

// silence makes the slave silent while on: every call waits until its
// caller gives up (a hung host, a black-holed link).
func silence() (grpc.ServerOption, *atomic.Bool) {
	var on atomic.Bool
	return grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if on.Load() {
			<-ctx.Done()
			return nil, status.Error(codes.DeadlineExceeded, "silent")
		}
		return h(ctx, req)
	}), &on
}

// TestKeepAliveSilentSlave: a slave that stops answering is detected by
// the keep-alive within its lease (the worker restarts: Faulty, "slave
// silent"); the slave, which heard nothing either, drops the session;
// when it answers again the master opens a new one and goes on.
func TestKeepAliveSilentSlave(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	write(t, filepath.Join(mroot, "f"), randomBytes(1000, 1))
	opt, silent := silence()
	lease := 1500 * time.Millisecond
	sl := testenv.StartSlaveWith(t, sroot, testenv.SlaveOptions{Lease: lease, ServerOptions: []grpc.ServerOption{opt}})
	tr := newTracker(t, t.TempDir())
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.Status = tr; c.MaxBackoff = time.Second })
	startLive(t, m)
	waitSynced(t, m, time.Minute)

	silent.Store(true)
	t0 := time.Now()
	s := waitState(t, tr, syncstatus.Faulty, "slave silent")
	t.Logf("detected %s after the slave went silent (lease %s): %s", time.Since(t0).Round(time.Millisecond), lease, s.Fault)
	write(t, filepath.Join(mroot, "g"), randomBytes(1000, 2))
	silent.Store(false)
	waitSynced(t, m, time.Minute)
	testenv.RequireEqual(t, mroot, sroot)
}
