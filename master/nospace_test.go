package master_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/master"
)

// TestLiveRecoversFromFullSlave: a live batch of new files (with xattrs
// and their data) fills the slave's filesystem part way; once space is
// freed, the retried batch leaves the slave equal to the master. Needs
// root (a tmpfs).
func TestLiveRecoversFromFullSlave(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	mroot := t.TempDir()
	fsdir := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(fsdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", fsdir, "tmpfs", 0, "size=8m,mode=0755"); err != nil {
		t.Skipf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(fsdir, unix.MNT_DETACH) })
	sroot := filepath.Join(fsdir, "replica")
	if err := os.Mkdir(sroot, 0o755); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(fsdir, "filler")
	if err := os.WriteFile(filler, make([]byte, 5<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	sl := testenv.StartSlave(t, sroot)
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.MaxBackoff = time.Second })
	live := startLive(t, m)
	waitSynced(t, m, time.Minute)
	r := rand.New(rand.NewPCG(3, 3))
	for d := 0; d < 3; d++ {
		dir := filepath.Join(mroot, fmt.Sprintf("d%d", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			data := make([]byte, 150<<10+r.IntN(100<<10))
			for k := range data {
				data[k] = byte(r.Uint32())
			}
			p := filepath.Join(dir, fmt.Sprintf("f%d", i))
			if err := os.WriteFile(p, data, 0o640); err != nil {
				t.Fatal(err)
			}
			if err := unix.Setxattr(p, "user.k", []byte(fmt.Sprint(i)), 0); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, time.Unix(1e9, 0), time.Unix(1e9+int64(i), 0)); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(3 * time.Second) // the batch fails for want of space, and is retried
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitSynced(t, m, time.Minute)
	if err := live.stop(); err != nil {
		t.Fatal(err)
	}
	testenv.RequireEqual(t, mroot, sroot)
}

// TestLiveTrashFullSlaveRecovers: as TestLiveRecoversFromFullSlave with
// the trash on and no bound on it: overwrites and removals fill the
// slave's filesystem with kept versions, an op fails for want of space,
// the pruner gives it back, and the replica ends equal to the master.
func TestLiveTrashFullSlaveRecovers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	mroot := t.TempDir()
	sroot := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(sroot, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sroot, "tmpfs", 0, "size=10m,mode=0755"); err != nil {
		t.Skipf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(sroot, unix.MNT_DETACH) })
	addr := startTrashSlave(t, sroot)
	m := newMaster(t, mroot, addr, func(c *master.Config) { c.MaxBackoff = time.Second })
	live := startLive(t, m)
	waitSynced(t, m, time.Minute)
	r := rand.New(rand.NewPCG(5, 5))
	write := func(p string) {
		t.Helper()
		data := make([]byte, 100<<10+r.IntN(100<<10))
		for k := range data {
			data[k] = byte(r.Uint32())
		}
		if err := os.WriteFile(p, data, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := unix.Setxattr(p, "user.k", []byte(fmt.Sprint(len(data))), 0); err != nil {
			t.Fatal(err)
		}
	}
	for round := 0; round < 6; round++ {
		for d := 0; d < 3; d++ {
			dir := filepath.Join(mroot, fmt.Sprintf("d%d", d))
			os.MkdirAll(dir, 0o755)
			for i := 0; i < 8; i++ {
				write(filepath.Join(dir, fmt.Sprintf("f%d", i)))
			}
			if round%2 == 1 {
				os.Rename(filepath.Join(dir, "f0"), filepath.Join(dir, fmt.Sprintf("moved%d", round)))
				os.Remove(filepath.Join(dir, "f1"))
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	waitSynced(t, m, 2*time.Minute)
	if err := live.stop(); err != nil {
		t.Fatal(err)
	}
	testenv.RequireEqual(t, mroot, sroot)
}
