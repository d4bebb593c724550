package master_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/syncstatus"
	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/master"
)

// Issue 17's damaged-state cases: whatever happens to the master's state
// dir (its journal lost or damaged, its gfid index overwritten, its
// filesystem full), the master neither panics nor stays down, and never
// claims what the slave lacks: what changed meanwhile is found by a crawl.

// damageRun is a master of mroot with its state in state, run live until
// synced and stopped again (a clean stop: the journal covers up to then).
func damageRun(t *testing.T, mroot, addr, state string, tr *syncstatus.Tracker) {
	t.Helper()
	m := newMaster(t, mroot, addr, func(c *master.Config) { c.StateDir = state; c.Status = tr })
	live := startLive(t, m)
	waitSynced(t, m, time.Minute)
	if err := live.stop(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

// changeSome changes 31 entries of the tree made by damageTree.
func changeSome(t *testing.T, mroot string) {
	t.Helper()
	for i := range 10 {
		write(t, filepath.Join(mroot, "a", "f"+string(rune('0'+i))), randomBytes(3000+i, uint64(900+i)))
	}
	for i := range 10 {
		write(t, filepath.Join(mroot, "new", "n"+string(rune('0'+i))), randomBytes(100, uint64(950+i)))
	}
	if err := os.Rename(filepath.Join(mroot, "b"), filepath.Join(mroot, "b2")); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := os.Remove(filepath.Join(mroot, "c", "f"+string(rune('0'+i)))); err != nil {
			t.Fatal(err)
		}
	}
}

func damageTree(t *testing.T, mroot string) {
	t.Helper()
	for _, d := range []string{"a", "b", "c"} {
		for i := range 10 {
			write(t, filepath.Join(mroot, d, "f"+string(rune('0'+i))), randomBytes(2000, uint64(len(d)*100+i)))
		}
	}
}

// restartAfter damages the stopped master's state with damage, changes
// the tree, starts the master again and checks that it catches up (with
// a crawl, said in status) without another restart.
func restartAfter(t *testing.T, damage func(state string)) {
	t.Helper()
	mroot, sroot := t.TempDir(), t.TempDir()
	damageTree(t, mroot)
	sl := testenv.StartSlave(t, sroot)
	state := filepath.Join(t.TempDir(), "master-state")
	damageRun(t, mroot, sl.Addr, state, nil)
	testenv.RequireEqual(t, mroot, sroot)

	changeSome(t, mroot)
	damage(state)
	tr := newTracker(t, t.TempDir())
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir = state; c.Status = tr })
	startLive(t, m)
	waitSynced(t, m, time.Minute)
	testenv.RequireEqual(t, mroot, sroot)
	if s := tr.Snapshot(); s.CrawlReason == "" {
		t.Errorf("status says no reason for a crawl: %+v", s)
	} else {
		t.Logf("crawl reason in status: %s", s.CrawlReason)
	}
}

// TestIssue17LostJournal: the journal removed while the master was down
// (the obvious way out of a damaged one) left the master following an
// empty journal, LAST_SYNCED advancing, 31 changes never sent.
func TestIssue17LostJournal(t *testing.T) {
	restartAfter(t, func(state string) {
		if err := os.RemoveAll(filepath.Join(state, "changelog")); err != nil {
			t.Fatal(err)
		}
	})
}

// TestIssue17CorruptJournalIndex: a damaged journal INDEX made the master
// refuse to start; it is set aside and a crawl closes the gap.
func TestIssue17CorruptJournalIndex(t *testing.T) {
	restartAfter(t, func(state string) {
		p := filepath.Join(state, "changelog", "INDEX")
		if err := os.WriteFile(p, []byte("GEOREP-CHANGELOG-INDEX v1\nSEG garbage\x00\xff\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	})
}

// TestIssue17GarbageGFIDIndex: 4 KiB of garbage in gfid.db made the
// master panic at start; it is rebuilt.
func TestIssue17GarbageGFIDIndex(t *testing.T) {
	restartAfter(t, func(state string) {
		garbleFile(t, filepath.Join(state, "gfid.db"), 0)
	})
}

// garbleFile overwrites 4 KiB pages of path with garbage: every page
// from the third on when all is set, else the third.
func garbleFile(t *testing.T, path string, all int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	g := bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 1024)
	for off := int64(2 * 4096); off+4096 <= st.Size(); off += 4096 {
		if _, err := f.WriteAt(g, off); err != nil {
			t.Fatal(err)
		}
		if all == 0 {
			break
		}
	}
}

// TestIssue17GFIDIndexDamagedWhileRunning: the index overwritten under a
// running master (the independent test saw a panic) is rebuilt in place:
// the master goes on and converges, without a restart.
func TestIssue17GFIDIndexDamagedWhileRunning(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	damageTree(t, mroot)
	sl := testenv.StartSlave(t, sroot)
	state := filepath.Join(t.TempDir(), "master-state")
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir = state })
	live := startLive(t, m)
	waitSynced(t, m, time.Minute)
	garbleFile(t, filepath.Join(state, "gfid.db"), 1)
	changeSome(t, mroot)
	waitSynced(t, m, time.Minute)
	if ok, err := live.exited(); ok {
		t.Fatal(err)
	}
	testenv.RequireEqual(t, mroot, sroot)
}

// TestIssue17TornSegment: a journal segment damaged while it waits for
// the slave made the replay retry for ever; it is a gap, closed by a
// crawl.
func TestIssue17TornSegment(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	damageTree(t, mroot)
	sl := testenv.StartSlaveWith(t, sroot, testenv.SlaveOptions{})
	state := filepath.Join(t.TempDir(), "master-state")
	tr := newTracker(t, t.TempDir())
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir = state; c.Status = tr; c.MaxBackoff = time.Second })
	live := startLive(t, m)
	waitSynced(t, m, time.Minute)
	addr := sl.Addr
	if err := sl.Stop(); err != nil {
		t.Fatal(err)
	}
	changeSome(t, mroot)
	// Wait for the recorder to commit what changed, then tear every
	// segment (drop its final newline).
	dir := filepath.Join(state, "changelog")
	deadline := time.Now().Add(10 * time.Second)
	var torn int
	for torn == 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), "CHANGELOG.") || strings.HasSuffix(e.Name(), ".tmp") {
				continue
			}
			p := filepath.Join(dir, e.Name())
			if st, err := os.Stat(p); err == nil && st.Size() > 0 {
				if err := os.Truncate(p, st.Size()-1); err != nil {
					t.Fatal(err)
				}
				torn++
			}
		}
	}
	if torn == 0 {
		t.Fatal("no segment was committed")
	}
	testenv.StartSlaveWith(t, sroot, testenv.SlaveOptions{Addr: addr, StateDir: sl.StateDir})
	waitSynced(t, m, time.Minute)
	if ok, err := live.exited(); ok {
		t.Fatal(err)
	}
	testenv.RequireEqual(t, mroot, sroot)
	if s := tr.Snapshot(); !strings.Contains(s.CrawlReason, "damaged") {
		t.Errorf("status: crawl reason %q, want one about a damaged segment", s.CrawlReason)
	}
}

// TestIssue17StateDirFull: the state dir's filesystem full (a 1 MiB
// tmpfs, as root) made the master exit and stay down; now it is Faulty
// with the reason and recovers once space returns, without a restart.
func TestIssue17StateDirFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	fsdir := t.TempDir()
	if err := unix.Mount("tmpfs", fsdir, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(fsdir, unix.MNT_DETACH) })
	mroot, sroot := t.TempDir(), t.TempDir()
	damageTree(t, mroot)
	sl := testenv.StartSlave(t, sroot)
	state := filepath.Join(fsdir, "state")
	tr := newTracker(t, t.TempDir())
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir = state; c.Status = tr; c.MaxBackoff = time.Second })
	live := startLive(t, m)
	waitSynced(t, m, time.Minute)
	// Fill it, and keep it full (the master frees space as it goes:
	// consumed segments are deleted).
	filler := filepath.Join(fsdir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	fill := func() {
		for {
			if _, err := f.Write(make([]byte, 512)); err != nil {
				return
			}
		}
	}
	fill()
	changeSome(t, mroot)
	deadline := time.Now().Add(30 * time.Second)
	for tr.Snapshot().State != syncstatus.Faulty {
		if time.Now().After(deadline) {
			t.Fatalf("not Faulty with the state dir full: %+v", tr.Snapshot())
		}
		if ok, err := live.exited(); ok {
			t.Fatal(err)
		}
		fill()
		time.Sleep(50 * time.Millisecond)
	}
	f.Close()
	t.Logf("with the state dir full: %s: %s", tr.Snapshot().State, tr.Snapshot().Fault)
	time.Sleep(2 * time.Second)
	if ok, err := live.exited(); ok {
		t.Fatal(err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.WaitSynced(ctx, time.Now()); err != nil {
		t.Fatalf("after space returned: %v (status %+v)", err, tr.Snapshot())
	}
	testenv.RequireEqual(t, mroot, sroot)
}
