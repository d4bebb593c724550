package master_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/georep/georep/internal/churn"
	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/testtree"
	"github.com/georep/georep/internal/treecmp"
)

// TestReproSoak: churn at a fixed rate, then quiet, then compare (no
// WaitSynced: what a user sees).
func TestReproSoak(t *testing.T) {
	if os.Getenv("GEOREP_REPRO") == "" {
		t.Skip("GEOREP_REPRO=1")
	}
	n := envInt(t, "GEOREP_CHURN_OPS", 6000)
	rate := float64(envInt(t, "GEOREP_CHURN_RATE", 200))
	quiet := time.Duration(envInt(t, "GEOREP_QUIET_S", 20)) * time.Second
	mroot, sroot := t.TempDir(), t.TempDir()
	if err := testtree.Build(mroot, testtree.Options{BigFileSize: 1 << 20, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	c := newChurn(t, mroot, n, churn.Options{MaxDepth: int(envInt(t, "GEOREP_CHURN_DEPTH", 8))})
	sl := testenv.StartSlave(t, sroot)
	m := newMaster(t, mroot, sl.Addr, nil)
	live := startLive(t, m)
	waitSynced(t, m, 2*time.Minute)
	t0 := time.Now()
	st, err := c.Run(context.Background(), int(n), rate)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("churned %s in %s", st, time.Since(t0))
	deadline := time.Now().Add(quiet)
	for {
		diffs, err := treecmp.Compare(mroot, sroot, testenv.CompareOptions)
		if err != nil {
			t.Fatal(err)
		}
		if len(diffs) == 0 {
			t.Logf("equal %s after the churn", time.Since(t0).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if ok, err := live.exited(); ok {
		t.Fatal(err)
	}
	requireConverged(t, c, mroot, sroot)
}
