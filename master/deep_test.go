package master_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/testenv"
	pb "github.com/georep/georep/proto/georep/v1"
)

// mkdirChain makes levels nested directories named name under dir, with
// *at calls (the path may exceed PATH_MAX), and a file at the bottom.
func mkdirChain(t *testing.T, dir, name string, levels int) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range levels {
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		nfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
		fd = nfd
	}
	ffd, err := unix.Openat(fd, "bottom", unix.O_CREAT|unix.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	unix.Write(ffd, []byte("the bottom of the tree\n"))
	unix.Close(ffd)
	unix.Close(fd)
}

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
			mkdirChain(t, mroot, tc.elem, levels)
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
