package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/georep/georep/internal/testenv"
)

// slaveProc is a `georep slave` process the test stops when it likes.
type slaveProc struct {
	addr string
	cmd  *exec.Cmd
	done chan error
}

func startSlaveProc(t *testing.T, root, state string, extra ...string) *slaveProc {
	t.Helper()
	cmd := exec.Command(georepBin, append([]string{"slave", "--root", root, "--listen", "127.0.0.1:0", "--state-dir", state, "--insecure"}, extra...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &slaveProc{cmd: cmd, done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() { p.stop(t) })
	select {
	case p.addr = <-addr:
	case <-time.After(20 * time.Second):
		t.Fatal("slave process did not report its address")
	}
	return p
}

func (p *slaveProc) stop(t *testing.T) {
	if p.cmd.ProcessState != nil || p.done == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	p.done = nil
}

var sentRE = regexp.MustCompile(`data +(\d+) files sent \((\d+) bytes\)`)

// oneShot runs a one-shot master and returns the data bytes it sent.
func oneShot(t *testing.T, args ...string) int64 {
	t.Helper()
	code, out, errs := runMasterProcess(t, append(args, "--oneshot", "--insecure")...)
	if code != 0 {
		t.Fatalf("one-shot %v: %d\n%s\n%s", args, code, out, errs)
	}
	m := sentRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no data figures in %s", out)
	}
	n, _ := strconv.ParseInt(m[2], 10, 64)
	return n
}

// TestProcessesFailoverFailback is the README's runbook, with real
// processes: A replicates to B; A is lost (with a change B never got); B
// is used as the primary; A comes back as B's slave (with --trash), verify
// lists what differs, B's changes reach A sending about what changed, and
// A's lost change is kept in A's trash, not destroyed; then A replicates
// to B again as before, with no full resend.
func TestProcessesFailoverFailback(t *testing.T) {
	aRoot, bRoot := t.TempDir(), t.TempDir()
	states := t.TempDir()
	st := func(n string) string { return filepath.Join(states, n) }
	big := make([]byte, 1<<20)
	for i := 0; i < 40; i++ {
		for j := range big {
			big[j] = byte(i + j*31)
		}
		os.MkdirAll(filepath.Join(aRoot, "data", strconv.Itoa(i%5)), 0o755)
		os.WriteFile(filepath.Join(aRoot, "data", strconv.Itoa(i%5), "f"+strconv.Itoa(i)), big, 0o644)
	}
	// 1. A replicates to B.
	b := startSlaveProc(t, bRoot, st("b-slave"))
	oneShot(t, "--root", aRoot, "--slave", b.addr, "--state-dir", st("a-to-b"))
	testenv.RequireEqual(t, aRoot, bRoot)

	// 2. A is lost, with a change that never reached B.
	os.WriteFile(filepath.Join(aRoot, "data/0/f0"), []byte("A's last change, never replicated"), 0o644)
	b.stop(t)

	// 3. B is the primary: creates, changes, renames, deletes.
	changed := int64(0)
	w := func(rel string, data []byte) {
		os.MkdirAll(filepath.Dir(filepath.Join(bRoot, rel)), 0o755)
		os.WriteFile(filepath.Join(bRoot, rel), data, 0o644)
		changed += int64(len(data))
	}
	w("new/on-b", big[:300<<10])
	f, _ := os.OpenFile(filepath.Join(bRoot, "data/1/f1"), os.O_WRONLY, 0)
	f.WriteAt([]byte("changed on B while A was away"), 4096)
	f.Close()
	changed += 29
	os.Rename(filepath.Join(bRoot, "data/2"), filepath.Join(bRoot, "data/two"))
	os.Remove(filepath.Join(bRoot, "data/3/f3"))

	// 4. A comes back, as B's slave with a trash; verify says what differs
	// (A's lost change among it); B's changes go to A.
	a := startSlaveProc(t, aRoot, st("a-slave"), "--trash")
	code, out := georepCmd(t, "verify", "--root", bRoot, "--slave", a.addr, "--state-dir", st("b-to-a"), "--insecure", "--json")
	var rep verifyReport
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &rep); err != nil || code != 1 {
		t.Fatalf("verify B against A: %d %v\n%s", code, err, out)
	}
	kinds := map[string]string{}
	for _, d := range rep.Differences {
		kinds[d.Path] += d.Kind + " "
	}
	for p, k := range map[string]string{"data/0/f0": "content", "new": "missing", "data/1/f1": "metadata", "data/2": "extra", "data/two": "missing", "data/3/f3": "extra"} {
		if !strings.Contains(kinds[p], k) {
			t.Errorf("verify before failback: %s is %q, want %s (all: %v)", p, kinds[p], k, kinds)
		}
	}
	sent := oneShot(t, "--root", bRoot, "--slave", a.addr, "--state-dir", st("b-to-a"))
	t.Logf("failback B->A: %d data bytes sent for %d changed (and A's lost 1 MiB file)", sent, changed)
	if limit := 2*changed + int64(len(big)); sent > limit {
		t.Errorf("failback sent %d bytes; the changes were %d (+ the lost file's %d)", sent, changed, len(big))
	}
	testenv.RequireEqual(t, bRoot, aRoot)
	code, out = georepCmd(t, "trash", "list", "--root", aRoot, "--json")
	if code != 0 || !strings.Contains(out, "data/0/f0") {
		t.Errorf("A's lost change is not in A's trash: %d %s", code, out)
	}
	a.stop(t)

	// 5. A replicates to B again, from its old session: nothing to resend.
	b = startSlaveProc(t, bRoot, st("b-slave"))
	sent = oneShot(t, "--root", aRoot, "--slave", b.addr, "--state-dir", st("a-to-b"))
	if sent > 64<<10 {
		t.Errorf("A->B after failback sent %d bytes: a full resend?", sent)
	}
	testenv.RequireEqual(t, aRoot, bRoot)
}
