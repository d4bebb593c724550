package master_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/testenv"
	pb "github.com/georep/georep/proto/georep/v1"
)

// TestIssue17DeepTree: a "mkdir -p" of 200 levels took one batch of 6 to
// 24 s (every directory it made was crawled whole by the reconciliation,
// each listing everything below it: 20,100 listings) with every later
// change queued behind it; with 40-byte names (paths beyond PATH_MAX) the
// batch failed for ever. Now each directory is listed once, and both the
// tree and its removal replicate. (The slave is asked about each
// directory a bounded number of times: the entry ops it receives are
// counted, not timed.)
func TestIssue17DeepTree(t *testing.T) {
	for _, tc := range []struct {
		name string
		elem string
	}{{"short names", "dd"}, {"beyond PATH_MAX", strings.Repeat("x", 40)}} {
		t.Run(tc.name, func(t *testing.T) {
			const levels = 200
			mroot, sroot := t.TempDir(), t.TempDir()
			w := newWire()
			sl := testenv.StartSlave(t, sroot, w.options()...)
			m := newMaster(t, mroot, sl.Addr, nil)
			live := startLive(t, m)
			waitSynced(t, m, time.Minute)
			before := w.opTotal()
			testenv.MkdirChain(t, mroot, tc.elem, levels, "the bottom of the tree\n")
			waitSynced(t, m, time.Minute)
			testenv.RequireEqual(t, mroot, sroot)
			ops := w.opTotal() - before
			t.Logf("%d levels: %d entry ops, %d of them MKDIR", levels, ops, w.opCount(pb.EntryOpType_ENTRY_OP_TYPE_MKDIR))
			if ops > 10*levels {
				t.Errorf("%d entry ops for %d directories: the reconciliation lists nested directories more than once", ops, levels)
			}
			if out, err := exec.Command("rm", "-rf", filepath.Join(mroot, tc.elem)).CombinedOutput(); err != nil {
				t.Fatalf("rm -rf: %v %s", err, out)
			}
			waitSynced(t, m, time.Minute)
			testenv.RequireEqual(t, mroot, sroot)
			if ok, err := live.exited(); ok {
				t.Fatal(err)
			}
		})
	}
}
