package master_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georep/georep/internal/syncstatus"
	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/master"
	pb "github.com/georep/georep/proto/georep/v1"
)

// tap counts, on the slave's side, what masters send it: literal file
// data (FileChunk bytes) and entry ops by type.
type tap struct {
	data   atomic.Int64
	mu     sync.Mutex
	ops    map[pb.EntryOpType]int
	checks int // CREATEs with check_current
}

func newWire() *tap { return &tap{ops: map[pb.EntryOpType]int{}} }

func (w *tap) options() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, &countStream{ServerStream: ss, w: w})
		}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if r, ok := req.(*pb.EntryOpsRequest); ok {
				w.mu.Lock()
				for _, op := range r.GetOps() {
					w.ops[op.GetType()]++
					if op.GetCheckCurrent() {
						w.checks++
					}
				}
				w.mu.Unlock()
			}
			return h(ctx, req)
		}),
	}
}

func (w *tap) opCount(t pb.EntryOpType) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ops[t]
}

func (w *tap) opTotal() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, c := range w.ops {
		n += c
	}
	return n
}

type countStream struct {
	grpc.ServerStream
	w *tap
}

func (s *countStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if req, ok := m.(*pb.SyncDataRequest); ok {
		for _, c := range testenv.DataChunks(req) {
			s.w.data.Add(int64(len(c.GetData())))
		}
	}
	return nil
}

// bulkTree writes files of size bytes, spread over dirs directories.
func bulkTree(t *testing.T, root string, dirs, files, size int) {
	t.Helper()
	for i := range files {
		write(t, filepath.Join(root, fmt.Sprintf("d%03d", i%dirs), fmt.Sprintf("f%05d", i)), randomBytes(size, uint64(i)))
	}
}

// TestRestartResumesWithoutResend is issue 5's first point: a master
// stopped and restarted later, with 100 changes made to a 5,000-file tree
// meanwhile (rewrites, new files, deletes, renames of files and of a
// directory of 100 files, new and removed directories), catches up by a
// hybrid crawl that ships only the changed files' data: the renamed
// directory is moved on the slave, the unchanged files go as "current"
// checks. (The same at 100,000 files: GEOREP_RESUME_FILES=100000.)
func TestRestartResumesWithoutResend(t *testing.T) {
	const size = 4096
	files := int(envInt(t, "GEOREP_RESUME_FILES", 5000))
	if testing.Short() {
		files = 1000
	}
	mroot, sroot := t.TempDir(), t.TempDir()
	bulkTree(t, mroot, 50, files, size)
	for i := range 100 {
		write(t, filepath.Join(mroot, "moving", fmt.Sprintf("m%03d", i)), randomBytes(size, uint64(1e6+i)))
	}
	for i := range 10 {
		write(t, filepath.Join(mroot, "doomed", fmt.Sprintf("x%d", i)), randomBytes(size, uint64(4e6+i)))
	}
	w := newWire()
	sl := testenv.StartSlave(t, sroot, w.options()...)
	state := filepath.Join(t.TempDir(), "master-state")
	cfg := func(c *master.Config) { c.StateDir = state }

	m1 := newMaster(t, mroot, sl.Addr, cfg)
	live := startLive(t, m1)
	waitSynced(t, m1, 3*time.Minute)
	// Once more: the stime passes the crawl's own gfid writes (a crawl's
	// stime is its start; files whose ctime is later, or earlier by less
	// than 100 ms, are compared by content after a restart, see
	// batch.CrawlOptions).
	time.Sleep(200 * time.Millisecond)
	waitSynced(t, m1, 3*time.Minute)
	if err := live.stop(); err != nil {
		t.Fatal(err)
	}
	m1.Close()
	testenv.RequireEqual(t, mroot, sroot)
	initial := w.data.Load()
	t.Logf("initial sync: %d files, %d bytes of data shipped", files+110, initial)

	// 100 changes while no master runs.
	changed, n := int64(0), 0
	file := func(i int) string { return filepath.Join(mroot, fmt.Sprintf("d%03d", i%50), fmt.Sprintf("f%05d", i)) }
	for i := range 40 { // rewritten: new content, same size
		write(t, file(i*7), randomBytes(size, uint64(2e6+i)))
		changed += size
		n++
	}
	for i := range 20 { // new files
		write(t, filepath.Join(mroot, fmt.Sprintf("d%03d", i), fmt.Sprintf("new%02d", i)), randomBytes(size, uint64(3e6+i)))
		changed += size
		n++
	}
	for i := range 15 { // deleted
		if err := os.Remove(file(i*7 + 1)); err != nil {
			t.Fatal(err)
		}
		n++
	}
	for i := range 15 { // renamed, within and across directories
		if err := os.Rename(file(i*7+2), filepath.Join(mroot, fmt.Sprintf("d%03d", (i*7+5)%50), fmt.Sprintf("renamed%02d", i))); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if err := os.Rename(filepath.Join(mroot, "moving"), filepath.Join(mroot, "d010", "moved")); err != nil {
		t.Fatal(err)
	}
	n++
	for i := range 5 {
		if err := os.Mkdir(filepath.Join(mroot, fmt.Sprintf("newdir%d", i)), 0o750); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if err := os.RemoveAll(filepath.Join(mroot, "doomed")); err != nil {
		t.Fatal(err)
	}
	n++
	for i := range 3 { // a directory's mode and a file's: metadata only
		if err := os.Chmod(filepath.Join(mroot, fmt.Sprintf("d%03d", 20+i)), 0o700); err != nil {
			t.Fatal(err)
		}
		n++
	}
	t.Logf("%d changes while the master was down, %d bytes of new data", n, changed)

	tr := newTracker(t, state)
	creates := w.opCount(pb.EntryOpType_ENTRY_OP_TYPE_CREATE)
	m2 := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir = state; c.Status = tr })
	t0 := time.Now()
	live = startLive(t, m2)
	waitSynced(t, m2, 3*time.Minute)
	if err := live.stop(); err != nil {
		t.Fatal(err)
	}
	testenv.RequireEqual(t, mroot, sroot)
	resent := w.data.Load() - initial
	t.Logf("caught up in %s: %d bytes of data shipped for %d bytes changed (%d CREATE ops checked)",
		time.Since(t0).Round(time.Millisecond), resent, changed, w.opCount(pb.EntryOpType_ENTRY_OP_TYPE_CREATE)-creates)
	if resent != changed {
		t.Errorf("catch-up shipped %d bytes of data; the changes were %d bytes", resent, changed)
	}
	if s := tr.Snapshot(); s.Totals.BytesSynced != resent {
		t.Errorf("status says %d bytes synced, the slave received %d", s.Totals.BytesSynced, resent)
	}
}

// TestWorkerRestartReplaysHistory: the slave restarts under a live
// master; the worker's session fails, the monitor reports Faulty and
// restarts the worker, which finds the journal covering the time since
// the stime (the recorder kept running) and replays it (history crawl)
// instead of crawling the tree: the changes made while the slave was down
// arrive as their own entry ops.
func TestWorkerRestartReplaysHistory(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	bulkTree(t, mroot, 10, 500, 1024)
	w := newWire()
	sstate := filepath.Join(t.TempDir(), "slave-state")
	sopt := testenv.SlaveOptions{StateDir: sstate, Lease: 3 * time.Second, ServerOptions: w.options()}
	sl := testenv.StartSlaveWith(t, sroot, sopt)
	tr := newTracker(t, t.TempDir())
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.Status = tr; c.MaxBackoff = 2 * time.Second })
	live := startLive(t, m)
	waitSynced(t, m, time.Minute)
	if c := tr.Snapshot().Crawl; c != syncstatus.ChangelogCrawl {
		t.Errorf("crawl status %q after the initial sync", c)
	}

	if err := sl.Stop(); err != nil {
		t.Fatal(err)
	}
	ops := w.opTotal()
	if err := os.Rename(filepath.Join(mroot, "d003"), filepath.Join(mroot, "d004", "d003")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(mroot, "d005", "new"), randomBytes(5000, 9))
	// The master notices: Faulty, with a reason.
	deadline := time.Now().Add(time.Minute)
	for s := tr.Snapshot(); s.State != syncstatus.Faulty; s = tr.Snapshot() {
		if time.Now().After(deadline) {
			t.Fatalf("status %s a minute after the slave stopped; want Faulty", s.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("faulty: %s", tr.Snapshot().Fault)

	sopt.Addr = sl.Addr
	testenv.StartSlaveWith(t, sroot, sopt)
	waitSynced(t, m, time.Minute)
	if ok, err := live.exited(); ok {
		t.Fatal(err)
	}
	testenv.RequireEqual(t, mroot, sroot)
	s := tr.Snapshot()
	if s.State != syncstatus.Active || s.Crawl != syncstatus.ChangelogCrawl {
		t.Errorf("after recovery: %s, %s; want Active, Changelog Crawl", s.State, s.Crawl)
	}
	// A hybrid crawl would have sent a CREATE for each of the 500 files;
	// the replay sends the records and reconciles the three directories
	// they name (a CREATE check for each of their files).
	if renames, total := w.opCount(pb.EntryOpType_ENTRY_OP_TYPE_RENAME), w.opTotal()-ops; renames != 1 || total >= 500 {
		t.Errorf("after the restart the slave got %d entry ops (%d RENAME); want the replayed records, not a crawl", total, renames)
	}
}

// TestEntryStimeSkipsAppliedEntryOps: a batch whose entry ops were
// applied and whose data then failed (the data stream broke) is retried
// without its entry ops: the entry stime says they are on the slave. The
// rename in it reaches the slave once; the data follows on the retry.
func TestEntryStimeSkipsAppliedEntryOps(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	bulkTree(t, mroot, 3, 30, 2000)
	w := newWire()
	var armed, broke atomic.Int64
	breakData := grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if armed.CompareAndSwap(1, 0) {
			broke.Add(1)
			return status.Error(codes.Unavailable, "link broke (test)")
		}
		return h(srv, ss)
	})
	sl := testenv.StartSlave(t, sroot, append(w.options(), breakData)...)
	tr := newTracker(t, t.TempDir())
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.Status = tr; c.MaxBackoff = time.Second })
	live := startLive(t, m)
	waitSynced(t, m, time.Minute)

	armed.Store(1)
	if err := os.Rename(filepath.Join(mroot, "d000", "f00000"), filepath.Join(mroot, "d001", "renamed")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(mroot, "d002", "new"), randomBytes(3000, 7))
	waitSynced(t, m, time.Minute)
	if ok, err := live.exited(); ok {
		t.Fatal(err)
	}
	testenv.RequireEqual(t, mroot, sroot)
	if broke.Load() != 1 {
		t.Fatalf("%d data streams broken; want 1", broke.Load())
	}
	if n := w.opCount(pb.EntryOpType_ENTRY_OP_TYPE_RENAME); n != 1 {
		t.Errorf("the slave got %d RENAME ops; want 1 (not replayed after the data failed)", n)
	}
	es, err := m.EntryStime()
	st, err2 := m.Stime()
	if err != nil || err2 != nil || es.Before(st) {
		t.Errorf("entry stime %v (%v) behind stime %v (%v)", es, err, st, err2)
	}
}

// The first sync into an empty slave does not ask whether copies are
// current (no xattrs read for it, no checks on the slave); a later one
// asks for every file, and sends no data.
func TestFirstSyncAsksNothing(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	bulkTree(t, mroot, 5, 50, 1000)
	w := newWire()
	sl := testenv.StartSlave(t, sroot, w.options()...)
	m := newMaster(t, mroot, sl.Addr, nil)
	runOnce(t, m)
	testenv.RequireEqual(t, mroot, sroot)
	w.mu.Lock()
	first := w.checks
	w.mu.Unlock()
	if first != 0 {
		t.Errorf("the first sync into an empty slave sent %d CREATEs with check_current", first)
	}
	data := w.data.Load()
	runOnce(t, m)
	w.mu.Lock()
	second := w.checks
	w.mu.Unlock()
	if second != 50 {
		t.Errorf("the second sync sent %d CREATEs with check_current, want 50", second)
	}
	if d := w.data.Load() - data; d != 0 {
		t.Errorf("the second sync sent %d bytes of data", d)
	}
	testenv.RequireEqual(t, mroot, sroot)
}

// TestRestartAfterDirMovedFromRemovedParent pins the bug behind
// TestKillMasterDuringChurn's seeds 612 and 859: while the master was
// down, a directory moved out of a parent that was then removed, and got
// new files. The restart's hybrid crawl indexed the directory at its new
// name but kept the old link (the removed parent was never crawled, so
// nothing pruned it), path resolution went through the stale link, and
// the directory's new files looked vanished: never sent, the batch OK.
func TestRestartAfterDirMovedFromRemovedParent(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	write(t, filepath.Join(mroot, "a", "b", "d", "f"), []byte("old file"))
	if err := os.Mkdir(filepath.Join(mroot, "c"), 0o755); err != nil {
		t.Fatal(err)
	}
	sl := testenv.StartSlave(t, sroot)
	state := filepath.Join(t.TempDir(), "master-state")
	cfg := func(c *master.Config) { c.StateDir = state }
	m1 := newMaster(t, mroot, sl.Addr, cfg)
	live := startLive(t, m1)
	waitSynced(t, m1, time.Minute)
	if err := live.stop(); err != nil {
		t.Fatal(err)
	}
	m1.Close()
	testenv.RequireEqual(t, mroot, sroot)

	if err := os.Rename(filepath.Join(mroot, "a", "b", "d"), filepath.Join(mroot, "c", "d")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(mroot, "a", "b")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(mroot, "c", "d", "g"), []byte("new file"))
	write(t, filepath.Join(mroot, "c", "d", "f"), []byte("rewritten"))

	m2 := newMaster(t, mroot, sl.Addr, cfg)
	live = startLive(t, m2)
	waitSynced(t, m2, time.Minute)
	if err := live.stop(); err != nil {
		t.Fatal(err)
	}
	testenv.RequireEqual(t, mroot, sroot)
}

// TestRestartSeesContentChangedKeepingMtime: a file rewritten while no
// master ran, with its size and mtime put back (tar, rsync -t, cp -p do
// that), is sent again by the restarted master's crawl: its ctime is
// after the stime, so the slave's copy is compared by content, not taken
// for current on size and mtime (issue 17's data change lost after a
// kill -9). A file untouched since the stime is still asked about, not
// read.
func TestRestartSeesContentChangedKeepingMtime(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	const size = 20000
	for i := range 20 {
		write(t, filepath.Join(mroot, fmt.Sprintf("f%02d", i)), randomBytes(size, uint64(i)))
	}
	time.Sleep(200 * time.Millisecond) // unchanged files: changed well before any stime
	w := newWire()
	sl := testenv.StartSlave(t, sroot, w.options()...)
	state := filepath.Join(t.TempDir(), "master-state")
	m1 := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir = state })
	live := startLive(t, m1)
	waitSynced(t, m1, time.Minute)
	time.Sleep(200 * time.Millisecond)
	waitSynced(t, m1, time.Minute) // past the crawl's gfid writes (see above)
	if err := live.stop(); err != nil {
		t.Fatal(err)
	}
	m1.Close()
	testenv.RequireEqual(t, mroot, sroot)

	overwriteKeepingMtime(t, filepath.Join(mroot, "f07"))

	checks := w.checks
	m2 := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir = state })
	live = startLive(t, m2)
	waitSynced(t, m2, time.Minute)
	if err := live.stop(); err != nil {
		t.Fatal(err)
	}
	testenv.RequireEqual(t, mroot, sroot)
	w.mu.Lock()
	asked := w.checks - checks
	w.mu.Unlock()
	if asked != 19 {
		t.Errorf("the restart's crawl asked the slave about %d files; want the 19 unchanged since the stime", asked)
	}
}

// A directory moved while the restarted master's crawl walks, from a part
// of the tree the walk has not listed yet into one it has, holds a file
// changed while no master ran (its size and mtime put back): the walk
// never meets it, and the journal, which moves the directory on the
// slave afterwards, began after the change. The crawl crawls again what
// moved while it walked (the 30-minute soak with rules: a file
// overwritten in place before a gap's crawl stayed stale on the slave).
func TestCrawlSeesWhatMovedWhileItWalked(t *testing.T) {
	// Into a directory the walk listed, and into one made meanwhile
	// (which the slave lacks until the journal's MKDIR is replayed).
	for _, dst := range []string{"a/sub", "a/made/sub"} {
		t.Run(strings.ReplaceAll(dst, "/", "_"), func(t *testing.T) { testCrawlSeesWhatMoved(t, dst) })
	}
}

func testCrawlSeesWhatMoved(t *testing.T, dst string) {
	mroot, sroot := t.TempDir(), t.TempDir()
	const size = 20000
	for _, d := range []string{"a/x", "b/sub/deeper"} {
		if err := os.MkdirAll(filepath.Join(mroot, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(mroot, "b/sub/f"), randomBytes(size, 1))
	write(t, filepath.Join(mroot, "b/sub/deeper/g"), randomBytes(size, 2))
	time.Sleep(200 * time.Millisecond)
	sl := testenv.StartSlave(t, sroot)
	state := filepath.Join(t.TempDir(), "master-state")
	m1 := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir = state })
	live := startLive(t, m1)
	waitSynced(t, m1, time.Minute)
	time.Sleep(200 * time.Millisecond)
	waitSynced(t, m1, time.Minute)
	if err := live.stop(); err != nil {
		t.Fatal(err)
	}
	m1.Close()
	testenv.RequireEqual(t, mroot, sroot)

	// While no master runs: content changed, size and mtime kept; a file
	// made, a file removed.
	for _, p := range []string{"b/sub/f", "b/sub/deeper/g"} {
		overwriteKeepingMtime(t, filepath.Join(mroot, p))
	}
	write(t, filepath.Join(mroot, "b/sub/new"), []byte("new"))

	m2 := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir = state })
	moved := make(chan struct{})
	var once sync.Once
	master.SetWalkHook(m2, func(path string) {
		// The walk lists a (and what is below it) before b: when b's
		// turn comes, b/sub goes into a, listed already. The recorder
		// reads the rename before the walk goes on (as it did in the
		// soak): a RENAME, which moves the slave's stale copy.
		if path == "b" {
			once.Do(func() {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(mroot, dst)), 0o755); err != nil {
					t.Error(err)
				}
				if err := os.Rename(filepath.Join(mroot, "b/sub"), filepath.Join(mroot, dst)); err != nil {
					t.Error(err)
				}
				time.Sleep(300 * time.Millisecond)
				close(moved)
			})
		}
	})
	live = startLive(t, m2)
	select {
	case <-moved:
	case <-time.After(time.Minute):
		t.Fatal("the crawl never listed b")
	}
	waitSynced(t, m2, time.Minute)
	if err := live.stop(); err != nil {
		t.Fatal(err)
	}
	testenv.RequireEqual(t, mroot, sroot)
}

// overwriteKeepingMtime changes bytes of file p in place and puts its
// mtime back (as tar, rsync -t, cp -p do): size and mtime say nothing
// changed; the ctime does.
func overwriteKeepingMtime(t *testing.T, p string) {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("changed, same size"), 1000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(p, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
}
