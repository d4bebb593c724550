package faults

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/churn"
)

// TestKillMasterDuringChurn: while a churn changes the tree, the master is
// killed (SIGKILL) at random moments, ten times, and restarted each time
// (the tenth restart comes after the churn stopped). Each restart crawls
// (the recorder was down: a gap) and ships only what differs. After the
// last, the trees are equal, and what the master sent after the initial
// sync stays below the size of the bulk tree it had already sent (ten
// full resends would be ten times that).
func TestKillMasterDuringChurn(t *testing.T) {
	binary(t)
	mroot, sroot := t.TempDir(), t.TempDir()
	const files, size = 400, 100 << 10
	for i := range files {
		writeRandom(t, filepath.Join(mroot, "bulk", fmt.Sprintf("d%02d", i%20), fmt.Sprintf("f%04d", i)), size, uint64(i))
	}
	bulk := int64(files * size)
	if err := os.Mkdir(filepath.Join(mroot, "churn"), 0o755); err != nil {
		t.Fatal(err)
	}
	seed := int64(time.Now().UnixNano() % 1000)
	if s := os.Getenv("GEOREP_FAULTS_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (GEOREP_FAULTS_SEED)", seed)
	c, err := churn.New(churn.Options{Root: filepath.Join(mroot, "churn"), Seed: seed, MaxFiles: 300, MaxDirs: 40, MaxFileSize: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	p := newPair(t, mroot, sroot)
	p.waitSynced(time.Now(), 2*time.Minute)
	base := p.proxy.Up()
	t.Logf("initial sync: %d bytes to the slave for %d bytes of files", base, bulk)

	ctx, stopChurn := context.WithCancel(context.Background())
	defer stopChurn()
	churned := make(chan error, 1)
	go func() {
		_, err := c.Run(ctx, -1, 200)
		churned <- err
	}()
	rng := rand.New(rand.NewPCG(uint64(seed), 5))
	for i := 1; i <= 10; i++ {
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		p.master.running()
		p.master.kill()
		if i == 10 {
			stopChurn()
			if err := <-churned; err != nil {
				t.Fatalf("churn: %v", err)
			}
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		p.master.start()
	}
	t.Logf("churn: %s", c.Stats())
	p.waitSynced(time.Now(), 3*time.Minute)
	resent := p.proxy.Up() - base
	t.Logf("after 10 kills: %d bytes to the slave (%.2f of the bulk tree's %d), churn and restarts included", resent, float64(resent)/float64(bulk), bulk)
	if resent >= bulk {
		t.Errorf("the restarts sent %d bytes, at least the whole bulk tree (%d) again", resent, bulk)
	}
	p.stopAndCompare()
}

// TestKillSlaveDuringStream: the slave is killed (SIGKILL) while a large
// file streams to it, and restarted; the master notices (Faulty), restarts
// its worker and sends the file again. The file is sent at most once more
// than the part that was on its way.
func TestKillSlaveDuringStream(t *testing.T) {
	binary(t)
	mroot, sroot := t.TempDir(), t.TempDir()
	const size = 96 * mib
	writeRandom(t, filepath.Join(mroot, "big"), size, 1)
	writeRandom(t, filepath.Join(mroot, "small"), 1000, 2)
	p := newPair(t, mroot, sroot, "--bwlimit", "32768")
	p.waitUp(24*mib, 2*time.Minute)
	p.slave.kill()
	killedAt := p.proxy.Up()
	fault := p.waitFault("", time.Minute)
	t.Logf("killed the slave after %d bytes; master: %s", killedAt, fault)
	time.Sleep(500 * time.Millisecond)
	p.slave.start()
	p.waitSynced(time.Now(), 3*time.Minute)
	total := p.proxy.Up()
	t.Logf("%d bytes to the slave in all for a %d-byte file: %d sent again (%.2f of what was on its way)",
		total, size, total-size, float64(total-size)/float64(killedAt))
	if total > size+killedAt+2*mib {
		t.Errorf("sent %d bytes; bound: the file (%d) plus what was on its way when the slave died (%d) plus 2 MiB", total, size, killedAt)
	}
	p.stopAndCompare()
}

// TestCutLinkMidBatch: the proxy cuts the master's connections while a
// live batch's data streams; the worker restarts, replays the journal
// from the stime without replaying the entry ops (entry stime), and the
// files already on the slave go as deltas.
func TestCutLinkMidBatch(t *testing.T) {
	binary(t)
	mroot, sroot := t.TempDir(), t.TempDir()
	writeRandom(t, filepath.Join(mroot, "seed"), 1000, 1)
	p := newPair(t, mroot, sroot, "--bwlimit", "16384")
	p.waitSynced(time.Now(), time.Minute)
	base := p.proxy.Up()
	const n, size = 48, mib
	for i := range n {
		writeRandom(t, filepath.Join(mroot, "batch", fmt.Sprintf("f%02d", i)), size, uint64(100+i))
	}
	written := time.Now()
	p.waitUp(base+16*mib, 2*time.Minute)
	cut := p.proxy.Cut()
	cutAt := p.proxy.Up() - base
	fault := p.waitFault("", time.Minute)
	t.Logf("cut %d connections after %d bytes of the batch; master: %s", cut, cutAt, fault)
	p.waitSynced(written, 3*time.Minute)
	sent := p.proxy.Up() - base
	t.Logf("%d bytes to the slave for %d bytes of new files: %d more (%.2f of what had gone before the cut)",
		sent, n*size, sent-n*size, float64(sent-n*size)/float64(cutAt))
	if sent > n*size+cutAt+2*mib {
		t.Errorf("sent %d bytes; bound: the files (%d) plus what had gone before the cut (%d) plus 2 MiB", sent, n*size, cutAt)
	}
	p.stopAndCompare()
}

// TestSlaveDiskFull: the slave's filesystem (a 32 MiB tmpfs) fills up;
// the master reports Faulty (no space left) and keeps the batch, retrying
// with capped back-off; once space is freed, it completes.
func TestSlaveDiskFull(t *testing.T) {
	binary(t)
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	fsdir := t.TempDir()
	if err := unix.Mount("tmpfs", fsdir, "tmpfs", 0, "size=32m,mode=0755"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	sroot := filepath.Join(fsdir, "root")
	if err := os.Mkdir(sroot, 0o755); err != nil {
		t.Fatal(err)
	}
	mroot := t.TempDir()
	writeRandom(t, filepath.Join(mroot, "seed"), 1000, 1)
	p := newPair(t, mroot, sroot)
	t.Cleanup(func() {
		p.master.kill()
		p.slave.kill()
		if err := unix.Unmount(fsdir, 0); err != nil {
			t.Errorf("unmounting the tmpfs: %v", err)
		}
	})
	p.waitSynced(time.Now(), time.Minute)
	// Leave 4 MiB free.
	filler := filepath.Join(fsdir, "filler")
	var st unix.Statfs_t
	if err := unix.Statfs(fsdir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if err := fill(filler, free-4*mib); err != nil {
		t.Fatal(err)
	}
	base := p.proxy.Up()
	const n, size = 12, mib
	for i := range n {
		writeRandom(t, filepath.Join(mroot, "data", fmt.Sprintf("f%02d", i)), size, uint64(10+i))
	}
	written := time.Now()
	fault := p.waitFault("no space left", time.Minute)
	t.Logf("master: %s", fault)
	time.Sleep(3 * time.Second) // a retry or two against the full disk
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	p.waitSynced(written, 2*time.Minute)
	sent := p.proxy.Up() - base
	t.Logf("%d bytes to the slave for %d bytes of new files (%.2fx)", sent, n*size, float64(sent)/float64(n*size))
	if sent > 4*n*size {
		t.Errorf("sent %d bytes for %d: more than 4x", sent, n*size)
	}
	p.stopAndCompare()
}

// fill writes n zero bytes to path (really allocated).
func fill(path string, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, mib)
	for left := n; left > 0; left -= int64(len(buf)) {
		if _, err := f.Write(buf[:min(int64(len(buf)), left)]); err != nil {
			f.Close()
			if errors.Is(err, unix.ENOSPC) {
				return nil
			}
			return err
		}
	}
	return f.Close()
}
