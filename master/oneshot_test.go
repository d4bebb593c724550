package master_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/testtree"
	"github.com/georep/georep/internal/tlsconf"
	"github.com/georep/georep/internal/treecmp"
	"github.com/georep/georep/master"
	pb "github.com/georep/georep/proto/georep/v1"
)

func newMaster(t *testing.T, root, addr string, mod func(*master.Config)) *master.Master {
	t.Helper()
	// GEOREP_WATCHER picks the live recorder's event source (default auto).
	cfg := master.Config{Root: root, Slave: addr, StateDir: filepath.Join(t.TempDir(), "master-state"), Logger: testenv.Logger(t, "master"),
		Watcher: os.Getenv("GEOREP_WATCHER"), Insecure: true}
	if mod != nil {
		mod(&cfg)
	}
	m, err := master.New(cfg)
	if err != nil {
		t.Fatalf("master.New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func runOnce(t *testing.T, m *master.Master) *master.Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sum, err := m.RunOnce(ctx)
	if err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	return sum
}

// TestOneShotExactIdempotentConvergent is issue 2's end-to-end check: the
// tricky tree (100 MiB file, deep dirs, symlinks, hardlinks, devices,
// special modes, owners, ns times, xattrs, odd names) replicates exactly;
// a second run rewrites nothing; after mutations a third run converges.
func TestOneShotExactIdempotentConvergent(t *testing.T) {
	big := int64(100 << 20)
	if testing.Short() {
		big = 4 << 20
	}
	mroot, sroot := t.TempDir(), t.TempDir()
	if err := testtree.Build(mroot, testtree.Options{BigFileSize: big, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	sl := testenv.StartSlave(t, sroot)
	stateDir := filepath.Join(t.TempDir(), "master-state")
	mk := func() *master.Master {
		return newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir = stateDir })
	}

	m0 := mk()
	sum := runOnce(t, m0)
	m0.Close()
	testenv.RequireEqual(t, mroot, sroot)
	if sum.Batch.BytesSent < big {
		t.Errorf("first run sent %d bytes, want at least the big file's %d", sum.Batch.BytesSent, big)
	}
	// The figures add up (issue 18.11): into an empty slave nothing is
	// "already there", and every entry crawled is one applied (hard
	// links add a LINK each; purges are not entries).
	if c := sum.Crawl; sum.Batch.EntryNoops != 0 || sum.Batch.EntryOps < c.Dirs+c.Files+c.Symlinks+c.Others {
		t.Errorf("first run into an empty slave: %d entries applied, %d already there; crawled %d dirs, %d files, %d symlinks, %d others",
			sum.Batch.EntryOps, sum.Batch.EntryNoops, c.Dirs, c.Files, c.Symlinks, c.Others)
	}
	m1 := mk()
	stime, err := m1.Stime()
	if err != nil || !stime.Equal(sum.Stime) {
		t.Errorf("stime mark on the master root = %v, %v; want %v", stime, err, sum.Stime)
	}

	// Second run over the unchanged tree: nothing rewritten on the slave.
	before, err := treecmp.Snapshot(sroot, testenv.CompareOptions)
	if err != nil {
		t.Fatal(err)
	}
	sum2 := runOnce(t, m1)
	m1.Close()
	after, err := treecmp.Snapshot(sroot, testenv.CompareOptions)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range treecmp.Changed(before, after) {
		if p == treecmp.RootPath {
			continue // the slave root carries the session mark
		}
		t.Errorf("unchanged tree: slave entry %q was rewritten (ctime/inode changed)", p)
	}
	b := sum2.Batch
	if b.BytesSent != 0 || b.Files != 0 || b.EntryOps != 0 || b.MetaOps != 0 || b.Purged != 0 {
		t.Errorf("unchanged tree: second run did work: %+v", b)
	}
	if b.EntryNoops != sum.Batch.EntryOps {
		t.Errorf("unchanged tree: %d entries already there, want the %d the first run applied", b.EntryNoops, sum.Batch.EntryOps)
	}
	if b.FilesUnchanged != sum.Crawl.Files {
		t.Errorf("second run found %d files current, want %d", b.FilesUnchanged, sum.Crawl.Files)
	}
	testenv.RequireEqual(t, mroot, sroot)

	// Changes on the master converge.
	if err := testtree.Mutate(mroot, testtree.Options{Seed: 7}); err != nil {
		t.Fatal(err)
	}
	sum3 := runOnce(t, mk())
	testenv.RequireEqual(t, mroot, sroot)
	if sum3.Batch.Files == 0 || sum3.Batch.Purged == 0 {
		t.Errorf("mutations: expected files sent and purges, got %+v", sum3.Batch)
	}
	if !sum3.Stime.After(sum.Stime) {
		t.Errorf("stime did not advance: %v then %v", sum.Stime, sum3.Stime)
	}
}

// TestRenameDirectoryShipsNoData: moving a directory of many files on the
// master moves it on the slave; no file data is sent again.
func TestRenameDirectoryShipsNoData(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	dir := filepath.Join(mroot, "a", "many")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2000; i++ {
		if err := os.WriteFile(filepath.Join(dir, "f"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+itoa(i)), []byte(strings.Repeat("data", 100)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(mroot, "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	sl := testenv.StartSlave(t, sroot)
	m := newMaster(t, mroot, sl.Addr, nil)
	runOnce(t, m)
	ino := inode(t, filepath.Join(sroot, "a", "many"))
	if err := os.Rename(dir, filepath.Join(mroot, "b", "moved")); err != nil {
		t.Fatal(err)
	}
	sum := runOnce(t, m)
	testenv.RequireEqual(t, mroot, sroot)
	if sum.Batch.BytesSent != 0 || sum.Batch.Files != 0 {
		t.Errorf("directory rename sent %d files, %d bytes; want none", sum.Batch.Files, sum.Batch.BytesSent)
	}
	if got := inode(t, filepath.Join(sroot, "b", "moved")); got != ino {
		t.Errorf("renamed directory on the slave is a new inode (%d, was %d): it was recreated, not moved", got, ino)
	}
}

// TestIgnoreDeletes keeps on the slave what the master removed.
func TestIgnoreDeletes(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	for _, n := range []string{"keep", "gone"} {
		if err := os.WriteFile(filepath.Join(mroot, n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sl := testenv.StartSlave(t, sroot)
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.IgnoreDeletes = true })
	runOnce(t, m)
	if err := os.Remove(filepath.Join(mroot, "gone")); err != nil {
		t.Fatal(err)
	}
	runOnce(t, m)
	if _, err := os.Stat(filepath.Join(sroot, "gone")); err != nil {
		t.Errorf("with ignore-deletes the slave lost a file the master deleted: %v", err)
	}
	m2 := newMaster(t, mroot, sl.Addr, nil)
	runOnce(t, m2)
	if _, err := os.Stat(filepath.Join(sroot, "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("without ignore-deletes the deleted file is still on the slave: %v", err)
	}
	testenv.RequireEqual(t, mroot, sroot)
}

// TestUnreachableSlave: bounded retries, then a clear error.
func TestUnreachableSlave(t *testing.T) {
	mroot := t.TempDir()
	m := newMaster(t, mroot, "127.0.0.1:1", nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := time.Now()
	_, err := m.RunOnce(ctx)
	if !errors.Is(err, master.ErrUnreachable) {
		t.Fatalf("RunOnce against nothing = %v, want ErrUnreachable", err)
	}
	if d := time.Since(t0); d > 30*time.Second {
		t.Errorf("gave up after %s; retries should be bounded to seconds", d)
	}
}

// TestMissingRoot fails early with a clear error.
func TestMissingRoot(t *testing.T) {
	_, err := master.New(master.Config{Root: filepath.Join(t.TempDir(), "nope"), Slave: "127.0.0.1:1", StateDir: t.TempDir(), Insecure: true})
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("New with a missing root = %v, want an error naming it", err)
	}
}

// TestPlaintextOnlyToLoopback refuses to send the tree in the clear to a
// non-loopback address, or without being asked to (Insecure), before it
// dials anything.
func TestPlaintextOnlyToLoopback(t *testing.T) {
	for _, c := range []struct {
		addr     string
		insecure bool
		want     string
	}{
		{"192.0.2.1:9", true, "only a loopback address"}, // TEST-NET-1: never dialled, refused before
		{"localhost:9", true, "only a loopback address"},
		{"127.0.0.1:9", false, "no TLS configured"},
	} {
		m, err := master.New(master.Config{Root: t.TempDir(), Slave: c.addr, StateDir: t.TempDir(), Insecure: c.insecure})
		if err == nil {
			m.Close()
		}
		if !errors.Is(err, tlsconf.ErrPlaintext) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%s, insecure %v) = %v, want a refusal saying %q", c.addr, c.insecure, err, c.want)
		}
	}
}

func itoa(i int) string {
	return strings.TrimLeft(strings.Replace(time.Duration(i).String(), "ns", "", 1), "0") + "n"
}

// TestCopiedGFIDsAreTold: cp -a as root copies georep's gfid xattr onto the
// copies; a copy (and a copied hardlink group) must become its own inode on
// the slave, not a hardlink of the original.
func TestCopiedGFIDsAreTold(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("copying trusted.* xattrs needs root")
	}
	mroot, sroot := t.TempDir(), t.TempDir()
	for _, n := range []string{"a", "g1"} {
		if err := os.WriteFile(filepath.Join(mroot, n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(mroot, "g1"), filepath.Join(mroot, "g2")); err != nil {
		t.Fatal(err)
	}
	sl := testenv.StartSlave(t, sroot)
	m := newMaster(t, mroot, sl.Addr, nil)
	runOnce(t, m)
	copyWithXattrs := func(from, to string) {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(mroot, from))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mroot, to), data, 0o644); err != nil {
			t.Fatal(err)
		}
		v := make([]byte, 64)
		n, err := unix.Lgetxattr(filepath.Join(mroot, from), "trusted.georep.gfid", v)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Lsetxattr(filepath.Join(mroot, to), "trusted.georep.gfid", v[:n], 0); err != nil {
			t.Fatal(err)
		}
	}
	copyWithXattrs("a", "a-copy")
	copyWithXattrs("g1", "h1")
	if err := os.Link(filepath.Join(mroot, "h1"), filepath.Join(mroot, "h2")); err != nil {
		t.Fatal(err)
	}
	runOnce(t, m)
	testenv.RequireEqual(t, mroot, sroot) // compares hardlink groups too
	if inode(t, filepath.Join(sroot, "a")) == inode(t, filepath.Join(sroot, "a-copy")) {
		t.Error("the copy became a hardlink of the original on the slave")
	}
}

// TestEntryCallsStartSmall: a one-shot's first entry call is small (256
// ops), so that the first files' data can go while the crawl goes on, and
// the calls then grow (up to 4,096 ops each), as the processor's slow
// start says (see firstCallOps).
func TestEntryCallsStartSmall(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	for i := range 3000 {
		write(t, filepath.Join(mroot, fmt.Sprintf("f%04d", i)), nil)
	}
	var mu sync.Mutex
	var sizes []int
	opt := grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*pb.EntryOpsRequest); ok {
			mu.Lock()
			sizes = append(sizes, len(r.GetOps()))
			mu.Unlock()
		}
		return h(ctx, req)
	})
	sl := testenv.StartSlave(t, sroot, opt)
	runOnce(t, newMaster(t, mroot, sl.Addr, nil))
	testenv.RequireEqual(t, mroot, sroot)
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) == 0 || sizes[0] > 256 {
		t.Fatalf("entry calls of %v ops: the first must carry at most 256", sizes)
	}
	grew := false
	for _, n := range sizes {
		if n > 4096 {
			t.Errorf("entry calls of %v ops: one carries more than 4,096", sizes)
		}
		grew = grew || n > 256
	}
	if !grew {
		t.Errorf("entry calls of %v ops: they never grew past 256", sizes)
	}
}
