package master_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/master"
	"github.com/georep/georep/slave"
	"golang.org/x/sys/unix"
)

// startTrashSlave serves a slave with the trash on, on root, until the
// test ends.
func startTrashSlave(t *testing.T, root string) string {
	t.Helper()
	s, err := slave.New(slave.Config{Root: root, StateDir: filepath.Join(t.TempDir(), "slave-state"),
		Logger: testenv.Logger(t, "slave"), Trash: slave.TrashConfig{Enabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return lis.Addr().String()
}

// TestTrashOneShot: a slave with the trash on, replicated by one-shots;
// a delete, overwrites (of a small file, a large one sent as a delta, a
// hard-linked one), a tree removed, a rename over a file on the master:
// the replica equals the master, and the trash holds every old version.
func TestTrashOneShot(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	mk := func(rel, content string) {
		t.Helper()
		p := filepath.Join(mroot, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 512<<10)
	for i := range big {
		big[i] = byte(rnd.Uint32())
	}
	mk("stays", "stays")
	mk("gone\nname", "gone content")
	mk("over", "old over")
	mk("big", string(big))
	mk("tree/x/y", "deep y")
	mk("src", "src content")
	mk("dst", "dst content")
	mk("hard1", "hard old")
	if err := os.Link(filepath.Join(mroot, "hard1"), filepath.Join(mroot, "hard2")); err != nil {
		t.Fatal(err)
	}
	addr := startTrashSlave(t, sroot)
	state := filepath.Join(t.TempDir(), "master-state")
	once := func() {
		t.Helper()
		m := newMaster(t, mroot, addr, func(c *master.Config) { c.StateDir = state })
		runOnce(t, m)
		m.Close()
		testenv.RequireEqual(t, mroot, sroot)
	}
	once()
	if vs, err := slave.ListTrash(sroot); err != nil || len(vs) != 0 {
		t.Fatalf("the first sync kept %d versions (%v)", len(vs), err)
	}

	if err := os.Remove(filepath.Join(mroot, "gone\nname")); err != nil {
		t.Fatal(err)
	}
	mk("over", "new over, longer")
	newBig := bytes.Clone(big)
	copy(newBig[200<<10:], "a change in the middle")
	mk("big", string(newBig))
	if err := os.RemoveAll(filepath.Join(mroot, "tree")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mroot, "src"), filepath.Join(mroot, "dst")); err != nil {
		t.Fatal(err)
	}
	mk("hard1", "hard new content")
	once()

	vs, err := slave.ListTrash(sroot)
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string][]byte{}
	for _, v := range vs {
		p := filepath.Join(slave.TrashPath(sroot), v.Entry)
		if v.Type == "dir" {
			p = filepath.Join(p, "x", "y")
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("version %q: %v", v.Path, err)
		}
		if _, dup := kept[v.Path]; dup {
			t.Errorf("two versions of %q", v.Path)
		}
		kept[v.Path] = b
	}
	if h, ok := kept["hard2"]; ok {
		kept["hard1"] = h // the data went to either name
		delete(kept, "hard2")
	}
	want := map[string]string{"gone\nname": "gone content", "over": "old over", "big": string(big), "tree": "deep y",
		"dst": "dst content", "hard1": "hard old"}
	for p, w := range want {
		if got, ok := kept[p]; !ok || string(got) != w {
			t.Errorf("the trash's %q: %d bytes (kept %v), want the %d bytes of the old version", p, len(got), ok, len(w))
		}
	}
	if len(kept) != len(want) {
		for p := range kept {
			if _, ok := want[p]; !ok {
				t.Errorf("the trash keeps %q, which was neither removed nor overwritten", p)
			}
		}
	}
	// A run over the unchanged tree keeps nothing more.
	once()
	if again, err := slave.ListTrash(sroot); err != nil || len(again) != len(vs) {
		t.Fatalf("an unchanged run: %d versions (%v), was %d", len(again), err, len(vs))
	}
}

// TestTrashGivesSpaceBack: a slave whose trash (no size bound) filled its
// filesystem prunes the oldest versions when an op fails for want of
// space, and the master's retry goes through: kept versions never stop
// the replication (a quick soak with --trash alone on a 4 GiB filesystem
// ended Faulty, "no space left on device"). Needs root (a tmpfs).
func TestTrashGivesSpaceBack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	mroot := t.TempDir()
	sroot := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(sroot, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sroot, "tmpfs", 0, "size=12m,mode=0755"); err != nil {
		t.Skipf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(sroot, unix.MNT_DETACH) })
	addr := startTrashSlave(t, sroot)
	m := newMaster(t, mroot, addr, func(c *master.Config) { c.Retries = 6 })
	r := rand.New(rand.NewPCG(7, 7))
	write := func() {
		t.Helper()
		data := make([]byte, 3<<20)
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		if err := os.WriteFile(filepath.Join(mroot, "big"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Each rewrite keeps the old 3 MiB copy: the third and fourth do not
	// fit in 12 MiB beside the kept ones.
	for i := 0; i < 5; i++ {
		write()
		runOnce(t, m)
	}
	testenv.RequireEqual(t, mroot, sroot)
}
