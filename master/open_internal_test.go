package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/testenv"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/syncer"
)

// TestOpenAtHint: the syncer opens a file at the link its entry op named
// (in a cached directory descriptor), and falls back to the index when
// that link no longer holds the file: never the wrong file, never a hang
// on a FIFO that took the name.
func TestOpenAtHint(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	for _, d := range []string{"a", "b"} {
		if err := os.Mkdir(filepath.Join(mroot, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for rel, data := range map[string]string{"a/f": "file f", "a/g": "file g", "b/h": "file h"} {
		if err := os.WriteFile(filepath.Join(mroot, rel), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, once := oneShotMaster(t, mroot, sroot)
	once()
	idx := indexedTree(t, m.tree.Idx)
	a, b, f, g, h := idx["a"], idx["b"], idx["a/f"], idx["a/g"], idx["b/h"]
	if a == gfid.Zero || f == gfid.Zero || g == gfid.Zero || h == gfid.Zero {
		t.Fatalf("index: %v", idx)
	}
	open := func(want string, g gfid.GFID, at syncer.Link) {
		t.Helper()
		o, err := m.tree.Open(g, at)
		if err != nil {
			t.Fatalf("Open(%v, %v): %v", g, at, err)
		}
		defer o.File.Close()
		got, err := io.ReadAll(io.NewSectionReader(o.File, 0, o.Stat.Size))
		if err != nil || string(got) != want {
			t.Fatalf("Open(%v, %v) read %q, %v; want %q", g, at, got, err, want)
		}
	}

	// Right hints, and no hint.
	open("file f", f, syncer.Link{Parent: a, Name: "f"})
	open("file g", g, syncer.Link{Parent: a, Name: "g"})
	open("file h", h, syncer.Link{})
	if _, ok := m.tree.dirs.byG[a]; !ok {
		t.Error("the hinted directory is not cached")
	}
	if _, ok := m.tree.dirs.byG[b]; ok {
		t.Error("a directory was cached without a hint")
	}

	// A hint naming another file: that file is not taken for g.
	open("file f", f, syncer.Link{Parent: a, Name: "g"})
	// A hint in an unknown directory, and in the wrong one.
	open("file f", f, syncer.Link{Parent: newGFID(t), Name: "f"})
	open("file h", h, syncer.Link{Parent: a, Name: "h"})

	// The file moved to another directory since its entry op: the cached
	// descriptor of its old directory does not find it; the index does.
	if err := os.Rename(filepath.Join(mroot, "a", "f"), filepath.Join(mroot, "b", "f2")); err != nil {
		t.Fatal(err)
	}
	if err := m.tree.Idx.Update(func(tx *gfidx.Tx) error {
		if err := tx.RemoveLink(f, gfidx.Link{Parent: a, Name: "f"}); err != nil {
			return err
		}
		return tx.AddLink(f, gfidx.Link{Parent: b, Name: "f2"})
	}); err != nil {
		t.Fatal(err)
	}
	open("file f", f, syncer.Link{Parent: a, Name: "f"})

	// A FIFO took the hinted name: no hang, and g (gone) is reported gone.
	if err := os.Remove(filepath.Join(mroot, "a", "g")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(mroot, "a", "g"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		o, err := m.tree.Open(g, syncer.Link{Parent: a, Name: "g"})
		if err == nil {
			o.File.Close()
			err = errors.New("opened")
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open of a file replaced by a FIFO: %v, want gone", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Open hung on a FIFO at the hinted name")
	}
}

// TestDirRefsEvictInUse: a directory evicted from the cache while a
// worker opens a file in it stays open until the worker gives it back.
func TestDirRefsEvictInUse(t *testing.T) {
	dir := t.TempDir()
	var c dirRefs
	opened := 0
	open := func() (int, error) {
		opened++
		return unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	first := newGFID(t)
	d := c.get(first, open)
	if d == nil {
		t.Fatal("get failed")
	}
	if again := c.get(first, open); again != d || opened != 1 {
		t.Fatalf("second get: %p (want %p), %d opens", again, d, opened)
	}
	c.put(d)
	var fds []int
	for i := 0; i < dirRefsSize; i++ {
		e := c.get(newGFID(t), open)
		fds = append(fds, e.fd)
		c.put(e)
	}
	if _, ok := c.byG[first]; ok {
		t.Fatal("the oldest entry was not evicted")
	}
	// Evicted with one reference left: still open.
	if _, err := unix.FcntlInt(uintptr(d.fd), unix.F_GETFD, 0); err != nil {
		t.Fatalf("evicted in-use descriptor closed early: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Fatalf("evicted in-use descriptor: %v", err)
	}
	c.put(d)
	if _, err := unix.FcntlInt(uintptr(d.fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Errorf("evicted descriptor still open after its last put: %v", err)
	}
	c.reset()
	for _, fd := range fds {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
			t.Errorf("descriptor %d still open after reset: %v", fd, err)
		}
	}
	if c.get(newGFID(t), func() (int, error) { return -1, unix.ENOENT }) != nil {
		t.Error("get returned an entry for a directory that failed to open")
	}
}

func newGFID(t testing.TB) gfid.GFID { return testenv.NewGFID(t) }

// TestHintsOfEntryOps: the file an entry op announces data for is hinted
// at the name the op leaves it at: a CREATE's name, a RENAME's new name.
func TestHintsOfEntryOps(t *testing.T) {
	m := &Master{log: hclog.NewNullLogger()}
	var mu sync.Mutex
	got := map[gfid.GFID]syncer.Link{}
	syn := syncer.New(1, func(ctx context.Context, fs []*syncer.File) error {
		mu.Lock()
		defer mu.Unlock()
		for _, f := range fs {
			got[f.GFID] = f.At
			f.Status = pb.OpStatus_OP_STATUS_OK
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go syn.Run(ctx)
	created, renamed, from, to := newGFID(t), newGFID(t), newGFID(t), newGFID(t)
	ops := []*pb.EntryOp{
		{Type: pb.EntryOpType_ENTRY_OP_TYPE_CREATE, Gfid: created.Bytes(), Pargfid: from.Bytes(), Name: []byte("made"),
			Mode: unix.S_IFREG | 0o644, DataFollows: true},
		{Type: pb.EntryOpType_ENTRY_OP_TYPE_RENAME, Gfid: renamed.Bytes(), Pargfid: from.Bytes(), Name: []byte("old"),
			Pargfid2: to.Bytes(), Name2: []byte("new"), Mode: unix.S_IFREG | 0o644, DataFollows: true},
	}
	c := &entryCall{ops: ops, ready: []gfid.GFID{created, renamed}, done: make(chan struct{}),
		resp: &pb.EntryOpsResponse{Results: []*pb.OpResult{{Status: pb.OpStatus_OP_STATUS_OK}, {Status: pb.OpStatus_OP_STATUS_OK}}}}
	close(c.done)
	p := &processor{m: m, sync: syn, call: c, answers: map[gfid.GFID]answer{},
		boxFiles: map[*syncer.PostBox[*syncer.File]][]*syncer.File{}, rounds: map[gfid.GFID]int{}}
	if err := p.settleEntries(ctx); err != nil {
		t.Fatal(err)
	}
	for b := range p.boxFiles {
		<-b.Done()
	}
	mu.Lock()
	defer mu.Unlock()
	if want := (syncer.Link{Parent: from, Name: "made"}); got[created] != want {
		t.Errorf("hint of a created file: %v, want %v", got[created], want)
	}
	if want := (syncer.Link{Parent: to, Name: "new"}); got[renamed] != want {
		t.Errorf("hint of a renamed file: %v, want %v (where it was renamed to)", got[renamed], want)
	}
}

// TestCallOpsSlowStart: a batch's entry calls start at firstCallOps and
// double up to opsPerCall, so that data can start flowing before the crawl
// has found 4,096 entries.
func TestCallOpsSlowStart(t *testing.T) {
	var p processor
	var got []int
	for range 7 {
		got = append(got, p.callOps())
		p.calls++
	}
	want := []int{256, 512, 1024, 2048, 4096, 4096, 4096}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("entry call sizes %v, want %v", got, want)
	}
	p.calls = 1000
	if n := p.callOps(); n != opsPerCall {
		t.Errorf("after 1000 calls: %d ops a call, want %d", n, opsPerCall)
	}
}
