package master_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/testtree"
	"github.com/georep/georep/master"
)

// TestPreSeededSlaveAdopted: a slave seeded with cp -a (no gfids) is
// adopted by the first one-shot: its entries are given their gfids and
// nothing is sent for them but what differs (a file changed on the slave,
// sent as a delta), and the replica is exact. A file whose content differs
// with the same size and mtime is taken for current by default, as rsync
// does, and found and repaired with Checksum. A regular file with another
// link on the slave is not adopted (it could point anywhere).
func TestPreSeededSlaveAdopted(t *testing.T) {
	if _, err := exec.LookPath("cp"); err != nil {
		t.Skip("no cp")
	}
	mroot, sroot := t.TempDir(), t.TempDir()
	if err := testtree.Build(mroot, testtree.Options{BigFileSize: 2 << 20, Seed: 31}); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(i*7 + i/4096)
	}
	write(t, filepath.Join(mroot, "seeded/big"), big)
	write(t, filepath.Join(mroot, "seeded/same size"), []byte("the master's content"))
	if out, err := exec.Command("cp", "-a", mroot+"/.", sroot).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v %s", err, out)
	}
	// On the slave: one file changed (another size: found by the quick
	// check), one with the same size and mtime but other bytes, and a
	// hard link planted next to an entry the master will make.
	changed := filepath.Join(sroot, "seeded/big")
	f, err := os.OpenFile(changed, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("changed on the slave"), 1<<20)
	f.Write([]byte("and longer"))
	f.Close()
	same := filepath.Join(sroot, "seeded/same size")
	var st unix.Stat_t
	unix.Lstat(same, &st)
	os.WriteFile(same, []byte("the slave's content!"), 0o644)
	unix.UtimesNano(same, []unix.Timespec{st.Atim, st.Mtim})
	write(t, filepath.Join(mroot, "seeded/planted"), []byte("master"))
	outside := filepath.Join(t.TempDir(), "outside")
	write(t, outside, []byte("not the replica's"))
	if err := os.Link(outside, filepath.Join(sroot, "seeded/planted")); err != nil {
		t.Skipf("cannot hard link across temp dirs: %v", err)
	}

	sl := testenv.StartSlave(t, sroot)
	m := newMaster(t, mroot, sl.Addr, nil)
	sum := runOnce(t, m)
	var data int64
	filepath.Walk(mroot, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			data += fi.Size()
		}
		return nil
	})
	t.Logf("pre-seeded one-shot: %d of %d data bytes sent; %d files current, %d sent (%d as deltas)",
		sum.Batch.BytesSent, data, sum.Batch.FilesUnchanged, sum.Batch.Files, sum.Batch.Deltas)
	if sum.Batch.BytesSent > data/100 {
		t.Errorf("sent %d bytes of %d into a pre-seeded slave: want at most 1%%", sum.Batch.BytesSent, data)
	}
	if sum.Batch.Deltas == 0 {
		t.Error("the file changed on the slave was not sent as a delta")
	}
	if got, _ := os.ReadFile(outside); string(got) != "not the replica's" {
		t.Errorf("a planted hard link was adopted: the file outside now holds %q", got)
	}
	if got, _ := os.ReadFile(same); string(got) != "the slave's content!" {
		t.Fatalf("same size and mtime: %q (the quick check keeps the slave's copy by default)", got)
	}
	// With Checksum the content is compared: the last difference goes.
	m.Close()
	m = newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.Checksum = true })
	runOnce(t, m)
	testenv.RequireEqual(t, mroot, sroot)
}
