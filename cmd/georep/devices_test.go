package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/treecmp"
)

// deviceTree is a master tree with device nodes among the entries an
// unprivileged slave can make (a FIFO, files before and after them), all
// owned by nobody so that the slave, running as nobody, can give every
// owner. devices are its device nodes.
var (
	deviceTree = []entrySpec{
		{"a-file", file("before the devices"), nobody, nobody},
		{"dev", func(p string) error { return os.Mkdir(p, 0o755) }, nobody, nobody},
		{"dev/a-file", file("before the devices, beside them"), nobody, nobody},
		{"dev/fifo", func(p string) error { return unix.Mkfifo(p, 0o640) }, nobody, nobody},
		{"dev/null", mknod(unix.S_IFCHR|0o666, 1, 3), nobody, nobody},
		{"dev/loop", mknod(unix.S_IFBLK|0o660, 7, 200), nobody, nobody},
		{"dev/victim", file("a file a device is renamed over later"), nobody, nobody},
		{"dev/z-file", file("after the devices, beside them"), nobody, nobody},
		{"z-file", file("after the devices"), nobody, nobody},
	}
	devices = []string{"dev/null", "dev/loop"}
)

func mknod(mode uint32, major, minor uint32) func(p string) error {
	return func(p string) error {
		if err := unix.Mknod(p, mode, int(unix.Mkdev(major, minor))); err != nil {
			return err
		}
		return unix.Chmod(p, mode&0o7777) // past the umask
	}
}

// notMadeRE is the one-shot summary's line of entries the slave could not
// make.
var notMadeRE = regexp.MustCompile(`not made\s+(\d+) `)

// TestProcessesUnprivilegedSlaveDevices: a slave that runs as nobody
// cannot make device nodes (mknod of one needs CAP_MKNOD). A one-shot run
// still completes, without retries: every other entry (the FIFO beside the
// devices included) is on the slave as on the master, and each device is
// left out there, named in a warning with the reason, and counted in the
// summary, on every run.
func TestProcessesUnprivilegedSlaveDevices(t *testing.T) {
	base, mroot, sroot, addr := startDeviceTree(t)
	args := []string{"--root", mroot, "--slave", addr, "--state-dir", filepath.Join(base, "master-state"), "--oneshot", "--retries", "2", "--insecure"}
	for run := 1; run <= 2; run++ {
		n, out, errs := runOnceCounting(t, run, notMadeRE, args...)
		if n != len(devices) {
			t.Errorf("run %d: %d entries counted as not made, want %d (the devices)\n%s", run, n, len(devices), out)
		}
		for _, d := range devices {
			if !hasLine(errs, "[WARN]", "path="+d, "CAP_MKNOD") {
				t.Errorf("run %d: no warning naming %s and why it is not made:\n%s", run, d, errs)
			}
		}
		t.Logf("run %d:\n%s", run, out)
		if strings.Contains(errs, "retrying") {
			t.Errorf("run %d: the batch was retried:\n%s", run, errs)
		}
	}
	requireReplicaWithout(t, mroot, sroot, devices, 0)
}

// TestProcessesUnprivilegedSlaveDevicesLive: a live master and a slave
// that runs as nobody. The initial crawl leaves the device nodes out and
// goes on; then ops on them (chmod, rename, rename over a file the slave
// has, a hardlink, removal) and a new device do not wedge replication: a
// FIFO and files made after them arrive, the file a device replaced goes,
// and the slave holds everything but the devices.
func TestProcessesUnprivilegedSlaveDevicesLive(t *testing.T) {
	base, mroot, sroot, addr := startDeviceTree(t)
	cmd := exec.Command(georepBin, "master", "--root", mroot, "--slave", addr, "--state-dir", filepath.Join(base, "master-state"),
		"--change-interval", "200ms", "--insecure", "--log-level", "debug")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	log := &lineLog{}
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.add(sc.Text())
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-logged
		cmd.Wait()
	})
	// arrives makes a file rel on the master and waits until the slave
	// has it.
	arrives := func(rel string) {
		t.Helper()
		p := filepath.Join(mroot, rel)
		if err := file(rel)(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		want := rel + "\n"
		deadline := time.Now().Add(time.Minute)
		for {
			got, err := os.ReadFile(filepath.Join(sroot, rel))
			if err == nil && string(got) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not reach the slave within a minute; master log:\n%s", rel, log)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The initial crawl, devices and all.
	arrives("live-1")
	for _, d := range devices {
		if !log.eventually("[WARN]", "path="+d, "CAP_MKNOD") {
			t.Errorf("no warning naming %s and why it is not made:\n%s", d, log)
		}
	}
	if !log.eventually("crawl applied", "not_made="+strconv.Itoa(len(devices))) {
		t.Errorf("the crawl does not count the devices not made:\n%s", log)
	}

	// Ops on the devices, then a FIFO and files after them.
	do := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	m := func(rel string) string { return filepath.Join(mroot, rel) }
	do("chmod", unix.Chmod(m("dev/null"), 0o600))
	do("rename", os.Rename(m("dev/null"), m("dev/null-renamed")))
	do("link", os.Link(m("dev/null-renamed"), m("dev/null-link")))
	do("rename over a file", os.Rename(m("dev/loop"), m("dev/victim")))
	do("mknod", mknod(unix.S_IFCHR|0o644, 1, 5)(m("dev/new-zero")))
	do("mkfifo", unix.Mkfifo(m("dev/new-fifo"), 0o600))
	do("chown", os.Lchown(m("dev/new-fifo"), nobody, nobody))
	arrives("dev/live-2")
	if !log.eventually("[WARN]", "path=dev/new-zero", "CAP_MKNOD") {
		t.Errorf("no warning naming the device made while live:\n%s", log)
	}
	do("remove", os.Remove(m("dev/null-link")))
	arrives("dev/live-3")

	requireReplicaWithout(t, mroot, sroot, []string{"dev/null-renamed", "dev/new-zero", "dev/victim"}, time.Minute)
	if log.contains("retrying") {
		t.Errorf("a batch was retried:\n%s", log)
	}
}

// startDeviceTree makes deviceTree as a master tree and starts a slave
// process as nobody on an empty slave root (see unprivilegedDirs); it
// returns the base directory, the roots and the slave's address.
func startDeviceTree(t *testing.T) (base, mroot, sroot, addr string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make device nodes and to run the slave as another user")
	}
	base, mroot, sroot, sstate := unprivilegedDirs(t)
	makeEntries(t, mroot, deviceTree)
	addr = startSlaveProcessAs(t, &syscall.Credential{Uid: nobody, Gid: nobody}, nil, sroot, sstate, "--insecure")
	return base, mroot, sroot, addr
}

// requireReplicaWithout requires sroot to hold what mroot does but the
// entries absent (each reported only on the master), for up to wait (the
// last batch's metadata may still be on its way).
func requireReplicaWithout(t *testing.T, mroot, sroot string, absent []string, wait time.Duration) {
	t.Helper()
	opts := testenv.CompareOptions
	opts.SkipRootMeta = true // the roots' owners differ
	deadline := time.Now().Add(wait)
	for {
		diffs, err := treecmp.Compare(mroot, sroot, opts)
		if err != nil {
			t.Fatal(err)
		}
		var unexpected []treecmp.Diff
		missing := map[string]bool{}
		for _, d := range diffs {
			if strings.HasPrefix(d.What, "only in a") && slices.Contains(absent, d.Path) {
				missing[d.Path] = true
				continue
			}
			unexpected = append(unexpected, d)
		}
		if len(unexpected) == 0 && len(missing) == len(absent) {
			return
		}
		if time.Now().After(deadline) {
			for _, d := range unexpected {
				t.Errorf("replica differs: %s", d)
			}
			for _, a := range absent {
				if !missing[a] {
					t.Errorf("%s: the slave has it, or it differs otherwise", a)
				}
			}
			t.FailNow()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hasLine reports whether a line of text holds all of parts.
func hasLine(text string, parts ...string) bool {
	l := &lineLog{lines: strings.Split(text, "\n")}
	return l.contains(parts...)
}
