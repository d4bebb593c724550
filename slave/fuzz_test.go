package slave_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/slave"
)

// fuzzTree is the fixture FuzzEntryOp runs against: a few known gfids, a
// symlink to the outside planted in the tree, and a directory the index
// believes in whose path is now a symlink to the outside.
type fuzzTree struct {
	f     *fixture
	gfids []gfid.GFID // selectable with a 1-byte gfid input
	types map[string]uint32
	rig   []*pb.EntryOp
	E     gfid.GFID
}

func newFuzzTree(tb testing.TB) *fuzzTree {
	f := newFixture(tb)
	ft := &fuzzTree{f: f}
	D, S, F, L, H, E, P := newGFID(tb), newGFID(tb), newGFID(tb), newGFID(tb), newGFID(tb), newGFID(tb), newGFID(tb)
	ft.E = E
	ft.gfids = []gfid.GFID{gfid.Root, D, S, F, L, H, E, P, {15: 2}, {15: 3}, newGFID(tb)}
	ft.types = map[string]uint32{}
	for g, typ := range map[gfid.GFID]uint32{gfid.Root: unix.S_IFDIR, D: unix.S_IFDIR, S: unix.S_IFDIR, E: unix.S_IFDIR,
		F: unix.S_IFREG, H: unix.S_IFREG, L: unix.S_IFLNK, P: unix.S_IFIFO} {
		ft.types[string(g[:])] = typ
	}
	ft.rig = []*pb.EntryOp{
		opMkdir(D, gfid.Root, "d"),
		opMkdir(S, D, "s"),
		opCreate(F, gfid.Root, "f"),
		opSymlink(L, D, "l", "../../outside"),
		opCreate(H, D, "h"),
		opLink(H, S, "h2"),
		opMknod(P, S, "p", unix.S_IFIFO|0o644, 0),
	}
	f.entry(ft.rig...)
	// E: the index says "e", the disk says symlink to the outside, and the
	// outside carries E's gfid.
	f.ok(opMkdir(E, gfid.Root, "e"))
	if err := os.Rename(f.path("e"), f.path("e.real")); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Lsetxattr(f.outside, gfidAttr, E[:], 0); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Lsetxattr(filepath.Join(f.outside, "sub"), gfidAttr, S[:], 0); err != nil {
		tb.Fatal(err)
	}
	ft.replant(tb)
	f.outsideSnap = snapshot(tb, f.outside)
	return ft
}

// replant puts the symlinks to the outside back where ops may have
// removed them.
func (ft *fuzzTree) replant(tb testing.TB) {
	for name, target := range map[string]string{"e": ft.f.outside, "trap": "../outside"} {
		p := ft.f.path(name)
		if got, err := os.Readlink(p); err == nil && got == target {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			tb.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			tb.Fatal(err)
		}
	}
}

func (ft *fuzzTree) pick(b []byte) []byte {
	if len(b) == 1 {
		return ft.gfids[int(b[0])%len(ft.gfids)].Bytes()
	}
	return b
}

func FuzzEntryOp(f *testing.F) {
	long := strings.Repeat("n", 255)
	seeds := []struct {
		typ                               uint8
		g, par, name, par2, name2, target string
		mode                              uint32
	}{
		{1, "\x0a", "\x00", "x", "", "", "", unix.S_IFREG | 0o644},
		{1, "\x0a", "\x00", "..", "", "", "", 0},
		{1, "\x0a", "\x00", "/", "", "", "", 0},
		{1, "\x0a", "\x00", "../outside/x", "", "", "", 0},
		{2, "\x0a", "\x06", "x", "", "", "", unix.S_IFDIR | 0o755},
		{2, "\x0a", "\x02", "x", "", "", "", unix.S_IFDIR | 0o755},
		{1, "\x0a", "\x00", "a\x00b", "", "", "", 0},
		{1, "\x0a", "\x00", long, "", "", "", 0},
		{1, "\x0a", "\x00", long + "n", "", "", "", 0},
		{1, "\x0a", "\x00", ".georep", "", "", "", 0},
		{2, "\x0a", "\x09", "x", "", "", "", 0},
		{3, "\x0a", "\x01", "dev", "", "", "", unix.S_IFCHR | 0o600},
		{3, "\x0a", "\x01", "fifo", "", "", "", unix.S_IFIFO | 0o600},
		{4, "\x0a", "\x01", "sl", "", "", "/etc/passwd", 0},
		{4, "\x0a", "\x01", "sl", "", "", "a\x00b", 0},
		{5, "\x03", "\x06", "lnk", "", "", "", 0},
		{5, "\x05", "\x00", "trap", "", "", "", 0},
		{6, "\x01", "\x00", "d", "\x06", "moved", "", 0},
		{6, "\x03", "\x00", "f", "\x00", "trap", "", 0},
		{6, "\x03", "\x00", "f", "\x00", "..", "", 0},
		{6, "\x01", "\x00", "d", "\x02", "into-self", "", 0},
		{7, "\x03", "\x00", "f", "", "", "", 0},
		{7, "\x00", "\x00", "trap", "", "", "", 0},
		{8, "\x01", "\x00", "d", "", "", "", 0},
		{8, "\x06", "\x00", "e", "", "", "", 0},
		{9, "\x06", "", "", "", "", "", 0},
		{9, "\x00", "", "d", "", "f", "", 0},
		{9, "\x01", "", "s", "", "", "", 0},
		{0, "", "", "", "", "", "", 0},
		{200, "0123456789abcdef", "0123456789abcde", "x", "", "", "", 0},
	}
	for _, s := range seeds {
		f.Add(s.typ, []byte(s.g), []byte(s.par), []byte(s.name), []byte(s.par2), []byte(s.name2), []byte(s.target), s.mode)
	}
	f.Fuzz(func(t *testing.T, typ uint8, g, par, name, par2, name2, target []byte, mode uint32) {
		// A fresh tree per input, so that a failure reproduces from its
		// input alone.
		ft := newFuzzTree(t)
		fx := ft.f
		op := &pb.EntryOp{
			Type:     pb.EntryOpType(typ % 11),
			Gfid:     ft.pick(g),
			Pargfid:  ft.pick(par),
			Name:     name,
			Pargfid2: ft.pick(par2),
			Name2:    name2,
			Mode:     mode,
			Rdev:     uint64(mode >> 16),
			Target:   target,
		}
		if op.Type == pb.EntryOpType_ENTRY_OP_TYPE_PURGE {
			op.KeepNames = [][]byte{name, name2, []byte("d"), []byte("f")}
		}
		first := fx.entry(op)[0]
		fx.checkOutside()
		before := snapshot(t, fx.root)
		replay := fx.entry(op)[0]
		fx.checkOutside()
		for i, r := range []*pb.OpResult{first, replay} {
			if r.GetStatus() < stOK || r.GetStatus() > stFailed {
				t.Fatalf("result %d: status %v", i, r.GetStatus())
			}
			if (r.GetStatus() == stFailed || r.GetStatus() == stPartial) != (r.GetError() != "") {
				t.Fatalf("result %d: %v with error %q", i, r.GetStatus(), r.GetError())
			}
		}
		if !exists(filepath.Join(fx.root, slave.ReservedName, "limbo")) {
			t.Fatal("the slave's limbo is gone")
		}
		// A replay is a NOOP and changes nothing...
		diff := diffSnap(before, snapshot(t, fx.root))
		if diff == "" && (first.GetStatus() == stFailed || replay.GetStatus() == stNoop) {
			return
		}
		t.Fatalf("replaying %v (first %v %q, replay %v %q) is not a NOOP; changes:\n%s",
			op, first.GetStatus(), first.GetError(), replay.GetStatus(), replay.GetError(), diff)
	})
}
