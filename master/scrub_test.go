package master_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/syncstatus"
	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/master"
)

// damage rewrites a slave file behind georep's back, keeping its size and
// mtime (bit rot, a stray write).
func damage(t *testing.T, p string) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	for i := range data {
		data[i] ^= 0x20
	}
	os.WriteFile(p, data, 0o644)
	unix.UtimesNano(p, []unix.Timespec{st.Atim, st.Mtim})
}

// TestScrubRepairs: a live master with a scrub finds a slave file damaged
// behind its back (size and mtime kept: nothing else would notice), counts
// it in status, raises an event, and repairs it; what the master changes
// meanwhile is in flight, not damage. With ScrubReportOnly it reports and
// leaves the slave as it is; ScrubQuick finds the damage too (the slave's
// file was written, so its ctime moved).
func TestScrubRepairs(t *testing.T) {
	for _, tc := range []struct {
		name         string
		reportOnly   bool
		quick        bool
		wantRepaired bool
	}{
		{"repair", false, false, true},
		{"report only", true, false, false},
		{"quick", false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mroot, sroot := t.TempDir(), t.TempDir()
			for i := range 20 {
				write(t, filepath.Join(mroot, "d", string(rune('a'+i))), []byte("the master's content, file "+string(rune('a'+i))))
			}
			sl := testenv.StartSlave(t, sroot)
			state := filepath.Join(t.TempDir(), "state")
			var events []string
			tr, err := syncstatus.NewTracker(syncstatus.Options{StateDir: state, OnEvent: func(kind, _ string, _ map[string]any) { events = append(events, kind) }})
			if err != nil {
				t.Fatal(err)
			}
			m := newMaster(t, mroot, sl.Addr, func(c *master.Config) {
				c.StateDir, c.Status, c.ScrubEvery, c.ScrubReportOnly, c.ScrubQuick = state, tr, 500*time.Millisecond, tc.reportOnly, tc.quick
			})
			live := startLive(t, m)
			waitSynced(t, m, time.Minute)
			// One scrub of the equal trees first (it fills the quick
			// scrub's caches).
			waitScrubs(t, tr, 1)
			if s := tr.Snapshot(); s.Totals.ScrubDifferences != 0 {
				t.Fatalf("a scrub of equal trees found %d differences: %v", s.Totals.ScrubDifferences, s.Scrub.Examples)
			}
			damage(t, filepath.Join(sroot, "d/c"))
			write(t, filepath.Join(mroot, "d/new"), []byte("in flight, not damage"))
			n := tr.Snapshot().Totals.Scrubs
			waitScrubs(t, tr, n+2)
			s := tr.Snapshot()
			if s.Totals.ScrubDifferences == 0 {
				t.Fatalf("the damage was not found: %+v", s.Scrub)
			}
			got, _ := os.ReadFile(filepath.Join(sroot, "d/c"))
			repaired := string(got) == "the master's content, file c"
			if !tc.wantRepaired {
				if repaired {
					t.Error("report only, yet repaired")
				}
			} else {
				deadline := time.Now().Add(30 * time.Second)
				for !repaired && time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
					got, _ = os.ReadFile(filepath.Join(sroot, "d/c"))
					repaired = string(got) == "the master's content, file c"
				}
				if !repaired {
					t.Errorf("not repaired: %q", got)
				}
			}
			if err := live.stop(); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, e := range events {
				found = found || e == syncstatus.EventScrubDifferences
			}
			if !found {
				t.Errorf("no SCRUB_DIFFERENCES event: %v", events)
			}
			// The damage is what was found: never the file made in flight.
			for _, e := range s.Scrub.Examples {
				if e != "content d/c" {
					t.Errorf("the scrub found %q", e)
				}
			}
		})
	}
}

func waitScrubs(t *testing.T, tr *syncstatus.Tracker, n int64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for tr.Snapshot().Totals.Scrubs < n {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d scrubs in a minute: %+v", n, tr.Snapshot().Scrub)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
