package main

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/testtree"
	"github.com/georep/georep/internal/treecmp"
)

// georep runs the georep binary and returns its exit status and output.
func georep(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(georepBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// makeCerts makes a CA in dir and certificates for names, with the
// `georep cert` commands: "slave" a slave's, the others masters'.
func makeCerts(t *testing.T, dir string, names ...string) {
	t.Helper()
	if code, out, errs := georep(t, "cert", "init", "--dir", dir); code != 0 {
		t.Fatalf("cert init exited %d: %s %s", code, out, errs)
	}
	for _, n := range names {
		role := "master"
		if n == "slave" {
			role = "slave"
		}
		if code, out, errs := georep(t, "cert", "issue", "--dir", dir, "--name", n, "--role", role); code != 0 {
			t.Fatalf("cert issue %s exited %d: %s %s", n, code, out, errs)
		}
	}
}

// TestProcessesTLS replicates between real processes over mutual TLS with
// certificates from `georep cert`, and checks that the slave refuses
// masters it must not admit (and that a master refuses a slave it cannot
// verify) with a clear one-line reason, leaving the slave tree alone.
func TestProcessesTLS(t *testing.T) {
	certs, foreign := filepath.Join(t.TempDir(), "certs"), filepath.Join(t.TempDir(), "foreign")
	makeCerts(t, certs, "slave", "master", "intruder")
	makeCerts(t, foreign, "slave", "master")
	mroot, sroot := t.TempDir(), t.TempDir()
	if err := testtree.Build(mroot, testtree.Options{BigFileSize: 1 << 20, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	// A master whose certificate another CA signed, and which trusts both
	// CAs (so that it gets as far as the slave's verdict).
	both := filepath.Join(t.TempDir(), "both.pem")
	var bundle []byte
	for _, d := range []string{certs, foreign} {
		b, err := os.ReadFile(filepath.Join(d, "ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		bundle = append(bundle, b...)
	}
	if err := os.WriteFile(both, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	slaveLog := &lineLog{}
	addr := startSlaveProcessAs(t, nil, slaveLog, sroot, filepath.Join(t.TempDir(), "slave-state"),
		"--tls-dir", certs, "--allow-master", "master")
	state := filepath.Join(t.TempDir(), "master-state")
	master := func(extra ...string) (int, string, string) {
		t.Helper()
		return georep(t, append([]string{"master", "--root", mroot, "--slave", addr, "--state-dir", state, "--oneshot", "--retries", "1"}, extra...)...)
	}
	if code, out, errs := master("--tls-dir", certs, "--slave-name", "slave"); code != 0 {
		t.Fatalf("master over mTLS exited %d\nstdout: %s\nstderr: %s", code, out, errs)
	} else if strings.Contains(errs, "no data connection") {
		// The tree's 1 MiB file opens a data connection, through TLS
		// too (its own ALPN protocol); failing, it falls back quietly
		// but for this warning.
		t.Errorf("the master could not open a data connection over mTLS:\n%s", errs)
	}
	testenv.RequireEqual(t, mroot, sroot)
	before, err := treecmp.Snapshot(sroot, testenv.CompareOptions)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mroot, "must not arrive"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !slaveLog.eventually("master session opened", `master \"master\"`) {
		t.Errorf("the slave did not log the master's certificate identity")
	}
	cases := []struct {
		name string
		args []string
		want string
		// slaveLog: what the slave logs of the refusal ("": nothing
		// reached it)
		slaveLog string
	}{
		{"master cert from another CA", []string{"--tls-dir", foreign, "--slave-name", "slave", "--ca", both}, "remote error: tls: unknown certificate authority", "certificate signed by unknown authority"},
		{"master name not allowed", []string{"--tls-dir", certs, "--tls-name", "intruder", "--slave-name", "slave"}, "remote error: tls: bad certificate", `master \"intruder\" is not allowed`},
		{"master cert from another CA, locally", []string{"--tls-dir", foreign, "--slave-name", "slave", "--ca", filepath.Join(certs, "ca.pem")}, "does not verify against CA", ""},
		{"slave cert with the wrong name", []string{"--tls-dir", certs, "--slave-name", "backup"}, "not backup", ""},
		{"master trusting another CA", []string{"--tls-dir", foreign, "--slave-name", "slave"}, "unknown authority", ""},
		// Issue 18.4: a slave's certificate (from a compromised slave
		// host) is not a master's; the tool says so at start.
		{"a slave's certificate as a master's", []string{"--tls-dir", certs, "--tls-name", "slave", "--slave-name", "slave"}, "issue one with `georep cert issue --role master`", ""},
		{"plaintext to a TLS slave", []string{"--insecure"}, "a slave serving TLS drops plaintext", "first record does not look like a TLS handshake"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t0 := time.Now()
			code, out, errs := master(c.args...)
			if code != 1 {
				t.Fatalf("exit %d, want 1\nstdout: %s\nstderr: %s", code, out, errs)
			}
			last := lastLine(errs)
			if !strings.HasPrefix(last, "georep master: ") || !strings.Contains(last, c.want) {
				t.Errorf("reason %q lacks %q", last, c.want)
			}
			t.Logf("%s (%s)", last, time.Since(t0).Round(time.Millisecond))
			if c.slaveLog != "" && !slaveLog.eventually("refused a connection in the TLS handshake", c.slaveLog) {
				t.Errorf("the slave did not log the refusal with %q", c.slaveLog)
			}
		})
	}
	after, err := treecmp.Snapshot(sroot, testenv.CompareOptions)
	if err != nil {
		t.Fatal(err)
	}
	if ch := treecmp.Changed(before, after); len(ch) > 0 {
		t.Fatalf("refused masters changed the slave: %q", ch)
	}
}

// TestPlaintextRefused: without TLS, both ends refuse to start unless
// --insecure is given and the address is a loopback one; mistakes in the
// TLS flags are usage errors.
func TestPlaintextRefused(t *testing.T) {
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	makeCerts(t, certs, "slave")
	slave := func(listen string, extra ...string) []string {
		return append([]string{"slave", "--root", dir, "--listen", listen, "--state-dir", filepath.Join(dir, "ss")}, extra...)
	}
	master := func(addr string, extra ...string) []string {
		return append([]string{"master", "--root", dir, "--slave", addr, "--state-dir", filepath.Join(dir, "ms"), "--oneshot"}, extra...)
	}
	checkExitCodes(t, false, []exitCase{
		{"slave without TLS or --insecure", slave("127.0.0.1:0"), 2, "no TLS configured"},
		{"slave --insecure on 0.0.0.0", slave("0.0.0.0:0", "--insecure"), 2, "only a loopback address"},
		{"slave --insecure on ::", slave("[::]:0", "--insecure"), 2, "only a loopback address"},
		{"slave --insecure on localhost", slave("localhost:0", "--insecure"), 2, "only a loopback address"},
		{"master without TLS or --insecure", master("127.0.0.1:1"), 2, "no TLS configured"},
		{"master --insecure to a public address", master("192.0.2.1:9", "--insecure"), 2, "only a loopback address"}, // never dialled
		{"slave --insecure with TLS flags", slave("127.0.0.1:0", "--insecure", "--tls-dir", certs), 2, "exclude each other"},
		{"slave --allow-master without TLS", slave("127.0.0.1:0", "--insecure", "--allow-master", "m"), 2, "--allow-master needs TLS"},
		{"slave with only --ca", slave("127.0.0.1:0", "--ca", filepath.Join(certs, "ca.pem")), 2, "needs --ca, --cert and --key"},
		{"slave with a missing certificate", slave("127.0.0.1:0", "--tls-dir", certs, "--tls-name", "nobody"), 1, "nobody.pem"},
		{"slave --allow-master with a bad name", slave("127.0.0.1:0", "--tls-dir", certs, "--allow-master", "a b"), 1, "not allowed"},
		{"master --insecure with TLS flags", master("127.0.0.1:1", "--insecure", "--tls-dir", certs), 2, "exclude each other"},
		{"cert issue without a CA", []string{"cert", "issue", "--dir", filepath.Join(dir, "none"), "--name", "x", "--role", "master"}, 1, "georep cert init"},
		{"cert issue with a bad name", []string{"cert", "issue", "--dir", certs, "--name", "../x", "--role", "slave"}, 1, `name "../x"`},
		{"cert issue without a role", []string{"cert", "issue", "--dir", certs, "--name", "x"}, 2, "--role are required"},
		{"cert issue with a bad role", []string{"cert", "issue", "--dir", certs, "--name", "x", "--role", "both"}, 2, "want master or slave"},
		{"cert init over a CA", []string{"cert", "init", "--dir", certs}, 1, "not replacing"},
		{"cert without subcommand", []string{"cert"}, 2, "missing subcommand"},
	})
}

// TestProcessesOneMasterPerSlave: while one master holds the slave root,
// a second master (another session, another identity) is refused with a
// clear reason naming the holder; once the holder vanishes without ending
// its session (SIGKILL), the second master takes over, but only after the
// holder's lease expired.
func TestProcessesOneMasterPerSlave(t *testing.T) {
	certs := filepath.Join(t.TempDir(), "certs")
	makeCerts(t, certs, "slave", "m1", "m2")
	m1root, m2root, sroot := t.TempDir(), t.TempDir(), t.TempDir()
	for _, r := range []string{m1root, m2root} {
		if err := os.WriteFile(filepath.Join(r, "from-"+filepath.Base(r)), []byte(r), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const lease = 3 * time.Second
	addr := startSlaveProcess(t, sroot, "--tls-dir", certs, "--allow-master", "m1,m2", "--timeout", lease.String())
	tlsArgs := func(name string) []string {
		return []string{"--tls-dir", certs, "--tls-name", name, "--slave-name", "slave"}
	}

	// m1 replicates live and holds the root.
	m1 := exec.Command(georepBin, append([]string{"master", "--root", m1root, "--slave", addr,
		"--state-dir", filepath.Join(t.TempDir(), "m1-state")}, tlsArgs("m1")...)...)
	var m1err bytes.Buffer
	m1.Stderr = &m1err
	if err := m1.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- m1.Wait() }()
	defer func() {
		m1.Process.Kill()
		<-exited
	}()
	waitForFile(t, filepath.Join(sroot, "from-"+filepath.Base(m1root)), exited, &m1err)

	m2 := func() (int, string, string) {
		return georep(t, append([]string{"master", "--root", m2root, "--slave", addr, "--oneshot", "--retries", "1",
			"--state-dir", filepath.Join(filepath.Dir(m2root), "m2-state")}, tlsArgs("m2")...)...)
	}
	code, out, errs := m2()
	if code != 1 {
		t.Fatalf("second master while the first holds the root: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	last := lastLine(errs)
	for _, want := range []string{"refused the session", "held by another master", `master "m1"`, m1root, "one master per slave root", "lease"} {
		if !strings.Contains(last, want) {
			t.Errorf("reason %q lacks %q", last, want)
		}
	}
	t.Logf("refusal: %s", last)
	if _, err := os.Stat(filepath.Join(sroot, "from-"+filepath.Base(m2root))); err == nil {
		t.Fatal("the refused master's file reached the slave")
	}

	// m1 vanishes without ending its session: the slave keeps the root
	// for m1 until the lease runs out, then m2 takes it over.
	if err := m1.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	deadline := killed.Add(time.Minute)
	refusals := 0
	for {
		code, out, errs = m2()
		if code == 0 {
			break
		}
		if !strings.Contains(errs, "held by another master") {
			t.Fatalf("second master after the first vanished: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
		}
		refusals++
		if time.Now().After(deadline) {
			t.Fatalf("no takeover within a minute of the holder's death: %s", lastLine(errs))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Taken over no sooner than a lease after the holder's last call,
	// which came at most a third of a lease before it died.
	if took := time.Since(killed); took < lease-lease/3 {
		t.Errorf("taken over %s after the holder died, within its lease of %s", took, lease)
	}
	t.Logf("taken over after %d refusals, %s after the holder died", refusals, time.Since(killed).Round(time.Millisecond))
	if _, err := os.Stat(filepath.Join(sroot, "from-"+filepath.Base(m2root))); err != nil {
		t.Fatalf("the second master's file is not on the slave after the takeover: %v", err)
	}
}

// waitForFile waits until path exists, failing the test when the process
// behind exited exits first or a minute passes.
func waitForFile(t *testing.T, path string, exited chan error, log *bytes.Buffer) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("process exited: %v\n%s", err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within a minute\n%s", path, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIssue18ErrorsPointTheRightWay: mistakes a newcomer makes in the first
// hour get an error that names them: --cert and --key swapped (it said the
// key's mode was wrong), a master pointed at something that is not a
// georep slave (it blamed the certificates), and a slave that cannot
// listen leaves no state dir and no reserved directory behind.
func TestIssue18ErrorsPointTheRightWay(t *testing.T) {
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	makeCerts(t, certs, "slave", "master")
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	// Something that is not a georep slave: it greets like an SSH server.
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go func() {
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n"))
			time.Sleep(100 * time.Millisecond)
			c.Close()
		}
	}()
	state := filepath.Join(dir, "slave-state")
	checkExitCodes(t, true, []exitCase{
		{"--cert and --key swapped", []string{"master", "--root", root, "--slave", "127.0.0.1:1", "--oneshot", "--state-dir", filepath.Join(dir, "ms"),
			"--ca", filepath.Join(certs, "ca.pem"), "--cert", filepath.Join(certs, "master.key"), "--key", filepath.Join(certs, "master.pem")}, 1, "--cert and --key are swapped"},
		{"a port that is not a georep slave", []string{"master", "--root", root, "--slave", other.Addr().String(), "--slave-name", "slave", "--oneshot",
			"--state-dir", filepath.Join(dir, "ms2"), "--tls-dir", certs}, 1, "does not speak TLS"},
		{"slave on a port in use", []string{"slave", "--root", root, "--listen", other.Addr().String(), "--state-dir", state, "--insecure"}, 1, "address already in use"},
	})
	if _, err := os.Stat(state); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a slave that could not listen left its state dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, ".georep")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a slave that could not listen left .georep in its root: %v", err)
	}
}
