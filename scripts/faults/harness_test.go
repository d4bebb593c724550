package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/georep/georep/internal/syncstatus"
	"github.com/georep/georep/internal/tcpproxy"
	"github.com/georep/georep/internal/testenv"
)

var (
	buildOnce sync.Once
	georepBin string
	buildErr  error
)

// TestMain removes the binary's directory after the tests (it was left
// in the temp dir by every run).
func TestMain(m *testing.M) {
	code := m.Run()
	if georepBin != "" {
		os.RemoveAll(filepath.Dir(georepBin))
	}
	os.Exit(code)
}

// binary builds bin/georep once for the package's tests; the tests run
// only with GEOREP_FAULTS=1.
func binary(t *testing.T) string {
	t.Helper()
	if os.Getenv("GEOREP_FAULTS") == "" {
		t.Skip("fault tests run with GEOREP_FAULTS=1 (make test-faults)")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "georep-faults-")
		if err != nil {
			buildErr = err
			return
		}
		georepBin = filepath.Join(dir, "georep")
		out, err := exec.Command("go", "build", "-o", georepBin, "github.com/georep/georep/cmd/georep").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return georepBin
}

// proc is a georep process the test owns: killed at the test's end if
// still running, its log printed if the test failed.
type proc struct {
	t    *testing.T
	name string
	args []string
	logs []string // one file per start
	cmd  *exec.Cmd
	done chan struct{}
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, args: args}
	p.start()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			for _, l := range p.logs {
				b, _ := os.ReadFile(l)
				s := string(b)
				if len(s) > 6000 {
					s = "...\n" + s[len(s)-6000:]
				}
				t.Logf("---- %s ----\n%s", l, s)
			}
		}
	})
	return p
}

func (p *proc) start() {
	p.t.Helper()
	log := filepath.Join(p.t.TempDir(), fmt.Sprintf("%s-%d.log", p.name, len(p.logs)))
	f, err := os.Create(log)
	if err != nil {
		p.t.Fatal(err)
	}
	p.logs = append(p.logs, log)
	cmd := exec.Command(binary(p.t), p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		p.t.Fatalf("starting %s: %v", p.name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		cmd.Wait()
		f.Close()
		close(done)
	}(p.done)
}

// kill sends SIGKILL and waits for the process to die.
func (p *proc) kill() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.cmd = nil
}

// stop asks the process to stop (SIGTERM) and waits; it must exit 0.
func (p *proc) stop() {
	p.t.Helper()
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		p.t.Errorf("%s did not stop within a minute of SIGTERM", p.name)
		p.kill()
		return
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Errorf("%s exited %d after SIGTERM", p.name, code)
	}
	p.cmd = nil
}

// running fails the test if the process exited on its own.
func (p *proc) running() {
	p.t.Helper()
	select {
	case <-p.done:
		p.t.Fatalf("%s exited on its own: %v", p.name, p.cmd.ProcessState)
	default:
	}
}

// freeAddr returns a loopback address nobody listens on just now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// pair is a slave and a master process, the master's link through a
// proxy.
type pair struct {
	t                     *testing.T
	mroot, sroot          string
	mstate, sstate        string
	slaveAddr             string
	proxy                 *tcpproxy.Proxy
	slave, master         *proc
	masterArgs, slaveArgs []string
}

// newPair starts a slave on sroot and a live master on mroot; extra adds
// master flags.
func newPair(t *testing.T, mroot, sroot string, extra ...string) *pair {
	t.Helper()
	p := &pair{t: t, mroot: mroot, sroot: sroot, mstate: filepath.Join(t.TempDir(), "master-state"),
		sstate: filepath.Join(t.TempDir(), "slave-state"), slaveAddr: freeAddr(t)}
	p.slaveArgs = []string{"slave", "--root", sroot, "--listen", p.slaveAddr, "--state-dir", p.sstate, "--insecure", "--timeout", "10s"}
	p.slave = startProc(t, "slave", p.slaveArgs...)
	px, err := tcpproxy.Start("127.0.0.1:0", p.slaveAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	p.proxy = px
	p.masterArgs = append([]string{"master", "--root", mroot, "--slave", px.Addr(), "--state-dir", p.mstate, "--insecure",
		"--max-backoff", "2s", "--log-level", "debug"}, extra...)
	p.master = startProc(t, "master", p.masterArgs...)
	return p
}

// status asks the running master for its status (nil when none answers).
func (p *pair) status() *syncstatus.Snapshot {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := syncstatus.Get(ctx, p.mstate)
	if err != nil || s.State == syncstatus.Stopped {
		return nil
	}
	return s
}

// waitSynced waits until the master says the slave has everything
// changed before since.
func (p *pair) waitSynced(since time.Time, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if s := p.status(); s != nil && !s.LastSynced.Before(since) {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("not synced to %s after %s; status: %+v", since.Format(time.RFC3339Nano), timeout, p.status())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitFault waits until the master reports Faulty with a reason that
// contains what; it returns the reason.
func (p *pair) waitFault(what string, timeout time.Duration) string {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if s := p.status(); s != nil && s.State == syncstatus.Faulty && strings.Contains(s.Fault, what) {
			return s.Fault
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no fault with %q after %s; status: %+v", what, timeout, p.status())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitUp waits until the proxy has forwarded at least n bytes to the
// slave.
func (p *pair) waitUp(n int64, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for p.proxy.Up() < n {
		if time.Now().After(deadline) {
			p.t.Fatalf("only %d of %d bytes went to the slave in %s", p.proxy.Up(), n, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stopAndCompare stops both cleanly and compares the trees.
func (p *pair) stopAndCompare() {
	p.t.Helper()
	p.master.stop()
	p.slave.stop()
	testenv.RequireEqual(p.t, p.mroot, p.sroot)
}

// writeRandom writes n pseudo-random bytes (incompressible) to path.
func writeRandom(t *testing.T, path string, n int, seed uint64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	r.Read(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

const mib = 1 << 20
