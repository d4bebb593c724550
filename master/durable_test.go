package master_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/master"
)

// Issue 5's durable record: a torn or corrupt state file is answered
// with a clear error or a safe rebuild, never by skipping data.

// syncedPair syncs mroot to a new slave with a live master whose state is
// in state, and stops it.
func syncedPair(t *testing.T, mroot, state string) *testenv.Slave {
	t.Helper()
	sl := testenv.StartSlave(t, t.TempDir())
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir = state })
	live := startLive(t, m)
	waitSynced(t, m, time.Minute)
	if err := live.stop(); err != nil {
		t.Fatal(err)
	}
	m.Close()
	return sl
}

// TestCorruptIndexRebuilt: a master whose gfid index is garbage (a torn
// write, a bad disk) rebuilds it from the tree: the next run's crawl
// refills it, and changes made meanwhile reach the slave.
func TestCorruptIndexRebuilt(t *testing.T) {
	mroot, state := t.TempDir(), filepath.Join(t.TempDir(), "state")
	bulkTree(t, mroot, 3, 30, 1000)
	sl := syncedPair(t, mroot, state)
	if err := os.WriteFile(filepath.Join(state, "gfid.db"), []byte(strings.Repeat("not a bbolt file ", 500)), 0o600); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(mroot, "d001", "after"), randomBytes(2000, 5))
	if err := os.Rename(filepath.Join(mroot, "d002"), filepath.Join(mroot, "d000", "moved")); err != nil {
		t.Fatal(err)
	}
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir = state })
	startLive(t, m)
	waitSynced(t, m, time.Minute)
	testenv.RequireEqual(t, mroot, sl.Root)
}

// TestCorruptSessionFileRefused: a session file that does not parse is a
// clear error naming the file (a new session would resend everything
// under a new identity: the operator decides).
func TestCorruptSessionFileRefused(t *testing.T) {
	mroot, state := t.TempDir(), filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "session.json"), []byte(`{"session_id": "0a1b`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := master.New(master.Config{Root: mroot, Slave: "127.0.0.1:1", StateDir: state, Insecure: true})
	if err == nil || !strings.Contains(err.Error(), "session.json is corrupt") {
		t.Fatalf("New with a torn session file = %v; want a clear error naming it", err)
	}
}

// TestMalformedStimeCrawls: an stime mark that does not decode is not
// trusted: the master crawls the whole tree (which sends only what
// differs) instead of resuming from a time it cannot read.
func TestMalformedStimeCrawls(t *testing.T) {
	mroot, state := t.TempDir(), filepath.Join(t.TempDir(), "state")
	bulkTree(t, mroot, 2, 10, 1000)
	sl := syncedPair(t, mroot, state)
	var sess struct {
		SessionID string `json:"session_id"`
	}
	b, err := os.ReadFile(filepath.Join(state, "session.json"))
	if err == nil {
		err = json.Unmarshal(b, &sess)
	}
	if err != nil {
		t.Fatal(err)
	}
	name := gfid.DefaultNamespace().Name(sess.SessionID + ".stime")
	if err := unix.Setxattr(mroot, name, []byte("torn"), 0); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(mroot, "d000", "later"), randomBytes(3000, 6))
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir = state })
	startLive(t, m)
	waitSynced(t, m, time.Minute)
	testenv.RequireEqual(t, mroot, sl.Root)
}
