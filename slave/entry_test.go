package slave_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/wire"
	pb "github.com/georep/georep/proto/georep/v1"
)

// replayNoop replays ops and requires NOOP for each and no change at all in
// the slave tree (inode numbers, ctimes, mtimes, modes, link counts, gfids,
// xattrs) nor outside it.
func (f *fixture) replayNoop(ops ...*pb.EntryOp) {
	f.t.Helper()
	before := snapshot(f.t, f.root)
	// Let the clock move on, so that a change made by the replay shows in
	// the ctimes.
	time.Sleep(15 * time.Millisecond)
	want := make([]pb.OpStatus, len(ops))
	for i := range want {
		want[i] = stNoop
	}
	f.mustEntry(want, ops...)
	if diff := diffSnap(before, snapshot(f.t, f.root)); diff != "" {
		f.t.Fatalf("replay changed the slave tree:\n%s", diff)
	}
	f.checkOutside()
}

func TestEntryCreate(t *testing.T) {
	if os.Geteuid() == 0 && gfidAttr != "trusted.georep.gfid" {
		t.Fatalf("as root the gfid lives in %q", gfidAttr)
	}
	f := newFixture(t)
	F, G := newGFID(t), newGFID(t)
	op := opCreate(F, gfid.Root, "f")
	op2 := opCreate(G, gfid.Root, "owned")
	op2.Mode = unix.S_IFREG | 0o600
	op2.Uid, op2.Gid = 1234, 5678
	f.ok(op, op2)
	st := lstat(t, f.path("f"))
	if st.Mode != unix.S_IFREG|0o644 || st.Size != 0 || st.Nlink != 1 {
		t.Fatalf("f: mode %o size %d nlink %d", st.Mode, st.Size, st.Nlink)
	}
	checkGFID(t, f.path("f"), F)
	st = lstat(t, f.path("owned"))
	if st.Mode != unix.S_IFREG|0o600 || st.Uid != 1234 || st.Gid != 5678 {
		t.Fatalf("owned: mode %o owner %d:%d", st.Mode, st.Uid, st.Gid)
	}
	checkGFID(t, f.path("owned"), G)
	f.replayNoop(op, op2)
	f.checkOutside()
}

func TestEntryCreateRawBytesName(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	name := "caf\xe9 \n\t%\\" + strings.Repeat("x", 200) // not UTF-8, 255 bytes max
	f.ok(opCreate(F, gfid.Root, name))
	checkGFID(t, f.path(name), F)
	long := strings.Repeat("n", 255)
	G := newGFID(t)
	f.ok(opCreate(G, gfid.Root, long))
	checkGFID(t, f.path(long), G)
	f.replayNoop(opCreate(F, gfid.Root, name), opCreate(G, gfid.Root, long))
}

func TestEntryMkdir(t *testing.T) {
	f := newFixture(t)
	D, E := newGFID(t), newGFID(t)
	op := opMkdir(D, gfid.Root, "d")
	op.Mode = unix.S_IFDIR | 0o750
	op.Uid, op.Gid = 1001, 1002
	op2 := opMkdir(E, D, "e")
	f.ok(op, op2)
	st := lstat(t, f.path("d"))
	if st.Mode != unix.S_IFDIR|0o750 || st.Uid != 1001 || st.Gid != 1002 {
		t.Fatalf("d: mode %o owner %d:%d", st.Mode, st.Uid, st.Gid)
	}
	checkGFID(t, f.path("d"), D)
	if st := lstat(t, f.path("d/e")); st.Mode != unix.S_IFDIR|0o755 {
		t.Fatalf("d/e: mode %o", st.Mode)
	}
	checkGFID(t, f.path("d/e"), E)
	f.replayNoop(op, op2)
}

func TestEntryMknod(t *testing.T) {
	f := newFixture(t)
	P := newGFID(t)
	fifo := opMknod(P, gfid.Root, "fifo", unix.S_IFIFO|0o640, 0)
	f.ok(fifo)
	st := lstat(t, f.path("fifo"))
	if st.Mode != unix.S_IFIFO|0o640 {
		t.Fatalf("fifo: mode %o", st.Mode)
	}
	checkGFID(t, f.path("fifo"), P)
	ops := []*pb.EntryOp{fifo}
	if os.Geteuid() == 0 {
		C := newGFID(t)
		chr := opMknod(C, gfid.Root, "null", unix.S_IFCHR|0o666, unix.Mkdev(1, 3))
		res := f.entry(chr)
		if res[0].GetStatus() == stFailed && res[0].GetCode() == pb.ErrorCode_ERROR_CODE_PERMISSION {
			t.Logf("no CAP_MKNOD here: %s", res[0].GetError())
		} else {
			checkStatuses(t, res, stOK)
			st := lstat(t, f.path("null"))
			if st.Mode != unix.S_IFCHR|0o666 || st.Rdev != unix.Mkdev(1, 3) {
				t.Fatalf("null: mode %o rdev %x", st.Mode, st.Rdev)
			}
			checkGFID(t, f.path("null"), C)
			ops = append(ops, chr)
		}
	}
	f.replayNoop(ops...)
}

func TestEntrySymlink(t *testing.T) {
	f := newFixture(t)
	L := newGFID(t)
	// The target points outside: it is only data, the slave never follows it.
	op := opSymlink(L, gfid.Root, "l", "../outside/canary")
	f.ok(op)
	if got, err := os.Readlink(f.path("l")); err != nil || got != "../outside/canary" {
		t.Fatalf("readlink: %q %v", got, err)
	}
	checkGFID(t, f.path("l"), L)
	f.replayNoop(op)

	// Same gfid and name, new target: the link is replaced, its gfid kept.
	op2 := opSymlink(L, gfid.Root, "l", "elsewhere")
	f.mustEntry([]pb.OpStatus{stOK}, op2)
	if got, _ := os.Readlink(f.path("l")); got != "elsewhere" {
		t.Fatalf("readlink after retarget: %q", got)
	}
	checkGFID(t, f.path("l"), L)
	f.replayNoop(op2)
	f.checkOutside()
}

func TestEntryLink(t *testing.T) {
	f := newFixture(t)
	D, F := newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"), opCreate(F, D, "a"))
	op := opLink(F, gfid.Root, "b")
	f.ok(op)
	a, b := lstat(t, f.path("d/a")), lstat(t, f.path("b"))
	if a.Ino != b.Ino || b.Nlink != 2 {
		t.Fatalf("link: inodes %d/%d nlink %d", a.Ino, b.Ino, b.Nlink)
	}
	checkGFID(t, f.path("b"), F)
	f.replayNoop(op)
}

func TestEntryRename(t *testing.T) {
	t.Run("WithinDir", func(t *testing.T) {
		f := newFixture(t)
		D, F := newGFID(t), newGFID(t)
		f.ok(opMkdir(D, gfid.Root, "d"), opCreate(F, D, "a"))
		ino := lstat(t, f.path("d/a")).Ino
		op := opRename(F, D, "a", D, "b")
		f.ok(op)
		if exists(f.path("d/a")) || lstat(t, f.path("d/b")).Ino != ino {
			t.Fatal("d/a was not renamed to d/b")
		}
		checkGFID(t, f.path("d/b"), F)
		f.replayNoop(op)
	})
	t.Run("AcrossDirs", func(t *testing.T) {
		f := newFixture(t)
		D1, D2, F := newGFID(t), newGFID(t), newGFID(t)
		f.ok(opMkdir(D1, gfid.Root, "d1"), opMkdir(D2, gfid.Root, "d2"), opCreate(F, D1, "a"))
		ino := lstat(t, f.path("d1/a")).Ino
		op := opRename(F, D1, "a", D2, "c")
		f.ok(op)
		if exists(f.path("d1/a")) || lstat(t, f.path("d2/c")).Ino != ino {
			t.Fatal("d1/a was not renamed to d2/c")
		}
		f.replayNoop(op)
		// The index follows: a link op on F finds it at its new place.
		f.ok(opLink(F, gfid.Root, "again"))
		if lstat(t, f.path("again")).Ino != ino {
			t.Fatal("LINK after RENAME linked another inode")
		}
	})
	t.Run("OverOtherGFID", func(t *testing.T) {
		f := newFixture(t)
		F, V := newGFID(t), newGFID(t)
		f.ok(opCreate(F, gfid.Root, "a"), opCreate(V, gfid.Root, "b"))
		ino := lstat(t, f.path("a")).Ino
		op := opRename(F, gfid.Root, "a", gfid.Root, "b")
		f.ok(op)
		if exists(f.path("a")) || lstat(t, f.path("b")).Ino != ino {
			t.Fatal("a was not renamed over b")
		}
		checkGFID(t, f.path("b"), F)
		f.replayNoop(op)
		// The replaced file is gone, and the index knows.
		checkFailed(t, f.meta(metaOf(V, unix.S_IFREG|0o644, 0, 0, 1, 1))[0], ecUnknown, "meta of the replaced gfid")
	})
	t.Run("DirectoryWithContents", func(t *testing.T) {
		f := newFixture(t)
		D, E, S, X := newGFID(t), newGFID(t), newGFID(t), newGFID(t)
		f.ok(opMkdir(D, gfid.Root, "d"), opMkdir(E, gfid.Root, "e"), opMkdir(S, D, "sub"), opCreate(X, S, "x"))
		if err := os.WriteFile(f.path("d/sub/x"), []byte("payload"), 0o644); err != nil {
			t.Fatal(err)
		}
		dino := lstat(t, f.path("d")).Ino
		op := opRename(D, gfid.Root, "d", E, "moved")
		f.ok(op)
		if exists(f.path("d")) || lstat(t, f.path("e/moved")).Ino != dino {
			t.Fatal("d was not moved to e/moved")
		}
		if got := readFile(t, f.path("e/moved/sub/x")); got != "payload" {
			t.Fatalf("content after the move: %q", got)
		}
		f.replayNoop(op)
		// The moved directory and its children still resolve.
		f.ok(opCreate(newGFID(t), D, "new-in-d"), opCreate(newGFID(t), S, "new-in-sub"))
		if !exists(f.path("e/moved/new-in-d")) || !exists(f.path("e/moved/sub/new-in-sub")) {
			t.Fatal("entries under the moved directory went elsewhere")
		}
	})
	t.Run("BetweenHardlinks", func(t *testing.T) {
		f := newFixture(t)
		F := newGFID(t)
		f.ok(opCreate(F, gfid.Root, "a"), opLink(F, gfid.Root, "b"))
		res := f.entry(opRename(F, gfid.Root, "a", gfid.Root, "b"))
		if s := res[0].GetStatus(); s != stOK && s != stNoop {
			t.Fatalf("rename between hardlinks: %v %q", s, res[0].GetError())
		}
		if exists(f.path("a")) || lstat(t, f.path("b")).Nlink != 1 {
			t.Fatal("rename between hardlinks should drop the old name")
		}
	})
}

func TestEntryUnlink(t *testing.T) {
	f := newFixture(t)
	F, H := newGFID(t), newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"), opCreate(H, gfid.Root, "h1"), opLink(H, gfid.Root, "h2"))
	op := opUnlink(F, gfid.Root, "f")
	op2 := opUnlink(H, gfid.Root, "h1")
	f.ok(op, op2)
	if exists(f.path("f")) || exists(f.path("h1")) {
		t.Fatal("unlinked names still exist")
	}
	if st := lstat(t, f.path("h2")); st.Nlink != 1 {
		t.Fatalf("other hardlink: nlink %d", st.Nlink)
	}
	f.replayNoop(op, op2)
	// UNLINK of a name that holds another gfid leaves it alone.
	f.mustEntry([]pb.OpStatus{stNoop}, opUnlink(F, gfid.Root, "h2"))
	if !exists(f.path("h2")) {
		t.Fatal("UNLINK removed a name holding another gfid")
	}
}

func TestEntryRmdirTree(t *testing.T) {
	f := newFixture(t)
	D, S, SS, X, Y := newGFID(t), newGFID(t), newGFID(t), newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"), opCreate(X, D, "x"), opMkdir(S, D, "sub"), opCreate(Y, S, "y"), opMkdir(SS, S, "subsub"),
		opSymlink(newGFID(t), S, "out", "../../../outside"))
	// An entry without a gfid goes too.
	if err := os.WriteFile(f.path("d/sub/stray"), []byte("z"), 0o644); err != nil {
		t.Fatal(err)
	}
	op := opRmdir(D, gfid.Root, "d")
	f.ok(op)
	if exists(f.path("d")) {
		t.Fatal("d still exists")
	}
	f.checkOutside()
	f.replayNoop(op)
	// The removed gfids are forgotten.
	checkFailed(t, f.entry(opCreate(newGFID(t), SS, "n"))[0], ecUnknown, "CREATE under a removed directory")
	checkFailed(t, f.meta(metaOf(Y, unix.S_IFREG|0o644, 0, 0, 1, 1))[0], ecUnknown, "meta of a removed file")
}

func TestEntryPurge(t *testing.T) {
	f := newFixture(t)
	D, B, S, A, C, Y := newGFID(t), newGFID(t), newGFID(t), newGFID(t), newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"), opCreate(A, D, "a"), opMkdir(B, D, "b"), opMkdir(S, B, "s"),
		opCreate(Y, S, "y"), opCreate(C, D, "c"), opSymlink(newGFID(t), D, "evil", "../../outside"))
	if err := os.WriteFile(f.path("d/nogfid"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	op := opPurge(D, "a", "not-there")
	f.ok(op)
	if got := listNames(t, f.path("d")); !equalStrings(got, []string{"a"}) {
		t.Fatalf("after PURGE d holds %q", got)
	}
	f.checkOutside()
	f.replayNoop(op)
	checkFailed(t, f.meta(metaOf(Y, unix.S_IFREG|0o644, 0, 0, 1, 1))[0], ecUnknown, "meta of a purged file")

	// PURGE of the root never removes the slave's own directory.
	f.ok(opCreate(newGFID(t), gfid.Root, "top"))
	rop := opPurge(gfid.Root)
	f.ok(rop)
	if got := listNames(t, f.root); !equalStrings(got, []string{wire.ReservedName}) {
		t.Fatalf("after PURGE of the root, it holds %q", got)
	}
	if !exists(filepath.Join(f.root, wire.ReservedName, "limbo")) {
		t.Fatal("PURGE removed the limbo")
	}
	f.replayNoop(rop)
	// The slave still works: limbo and all.
	f.ok(opCreate(newGFID(t), gfid.Root, "after"))
	f.setMark(1)
}

// TestEntryConflictLimbo: CREATE B where A lives parks A in limbo; a later
// op of the same batch takes A back (same inode, no data needed); SetMark
// empties the limbo.
func TestEntryConflictLimbo(t *testing.T) {
	f := newFixture(t)
	A, B := newGFID(t), newGFID(t)
	f.ok(opCreate(A, gfid.Root, "n"))
	if err := os.WriteFile(f.path("n"), []byte("A's data"), 0o644); err != nil {
		t.Fatal(err)
	}
	ino := lstat(t, f.path("n")).Ino
	f.mustEntry([]pb.OpStatus{stResolved, stOK}, opCreate(B, gfid.Root, "n"), opCreate(A, gfid.Root, "m"))
	checkGFID(t, f.path("n"), B)
	if st := lstat(t, f.path("n")); st.Size != 0 || st.Ino == ino {
		t.Fatalf("n: size %d ino %d (A's was %d)", st.Size, st.Ino, ino)
	}
	checkGFID(t, f.path("m"), A)
	if st := lstat(t, f.path("m")); st.Ino != ino || st.Nlink != 1 {
		t.Fatalf("m: ino %d nlink %d, want A's inode %d with one link", st.Ino, st.Nlink, ino)
	}
	if got := readFile(t, f.path("m")); got != "A's data" {
		t.Fatalf("m: %q", got)
	}
	if got := f.limboNames(); len(got) != 0 {
		t.Fatalf("limbo after reclaim: %q", got)
	}

	// LINK reclaims from limbo too (a rename, not a second link).
	Z := newGFID(t)
	f.ok(opCreate(Z, gfid.Root, "z"))
	zino := lstat(t, f.path("z")).Ino
	f.mustEntry([]pb.OpStatus{stResolved, stOK}, opMkdir(newGFID(t), gfid.Root, "z"), opLink(Z, gfid.Root, "z2"))
	if st := lstat(t, f.path("z2")); st.Ino != zino || st.Nlink != 1 {
		t.Fatalf("z2: ino %d nlink %d, want %d with one link", st.Ino, st.Nlink, zino)
	}
	if got := f.limboNames(); len(got) != 0 {
		t.Fatalf("limbo after LINK reclaim: %q", got)
	}

	// A conflict nobody reclaims waits in limbo until SetMark.
	C, D := newGFID(t), newGFID(t)
	f.ok(opMkdir(C, gfid.Root, "dir"), opCreate(newGFID(t), C, "inner"))
	f.mustEntry([]pb.OpStatus{stResolved}, opCreate(D, gfid.Root, "dir"))
	if got := f.limboNames(); len(got) != 1 {
		t.Fatalf("limbo before SetMark: %q", got)
	}
	f.setMark(12345)
	if got := f.limboNames(); len(got) != 0 {
		t.Fatalf("limbo after SetMark: %q", got)
	}
	checkFailed(t, f.meta(metaOf(C, unix.S_IFDIR|0o755, 0, 0, 1, 1))[0], ecUnknown, "meta of a purged limbo entry")
	f.checkOutside()
}

// TestEntryConflictDirReclaim: a directory moved aside comes back with its
// contents when its gfid is created elsewhere in the same batch.
func TestEntryConflictDirReclaim(t *testing.T) {
	f := newFixture(t)
	A, B, X := newGFID(t), newGFID(t), newGFID(t)
	f.ok(opMkdir(A, gfid.Root, "n"), opCreate(X, A, "x"))
	ino := lstat(t, f.path("n")).Ino
	f.mustEntry([]pb.OpStatus{stResolved, stOK, stOK},
		opMkdir(B, gfid.Root, "n"), opMkdir(A, gfid.Root, "m"), opCreate(newGFID(t), A, "y"))
	checkGFID(t, f.path("n"), B)
	if st := lstat(t, f.path("m")); st.Ino != ino {
		t.Fatal("A was not reclaimed from limbo")
	}
	checkGFID(t, f.path("m/x"), X)
	if !exists(f.path("m/y")) {
		t.Fatal("entry created under the reclaimed directory is not there")
	}
	f.setMark(1)
	if got := f.limboNames(); len(got) != 0 {
		t.Fatalf("limbo: %q", got)
	}
}

// TestEntryPlantedSymlink: a symlink planted at a name the master creates is
// replaced; its target is never touched.
func TestEntryPlantedSymlink(t *testing.T) {
	f := newFixture(t)
	if err := os.Symlink(filepath.Join(f.outside, "canary"), f.path("f")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(f.outside, f.path("d")); err != nil {
		t.Fatal(err)
	}
	F, D := newGFID(t), newGFID(t)
	f.mustEntry([]pb.OpStatus{stResolved, stResolved}, opCreate(F, gfid.Root, "f"), opMkdir(D, gfid.Root, "d"))
	if st := lstat(t, f.path("f")); st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Fatalf("f: mode %o", st.Mode)
	}
	if st := lstat(t, f.path("d")); st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Fatalf("d: mode %o", st.Mode)
	}
	f.ok(opCreate(newGFID(t), D, "inside"))
	f.checkOutside()
}

// badCase is one malformed op and the code it must fail with.
type badCase struct {
	name string
	op   *pb.EntryOp
	code pb.ErrorCode
}

func TestEntryBadInput(t *testing.T) {
	f := newFixture(t)
	D, F := newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"), opCreate(F, D, "f"))
	unknown := newGFID(t)
	g := func() gfid.GFID { return newGFID(t) }
	withName := func(op *pb.EntryOp, name []byte) *pb.EntryOp { op.Name = name; return op }
	withGFID := func(op *pb.EntryOp, b []byte) *pb.EntryOp { op.Gfid = b; return op }
	withPar := func(op *pb.EntryOp, b []byte) *pb.EntryOp { op.Pargfid = b; return op }
	withMode := func(op *pb.EntryOp, m uint32) *pb.EntryOp { op.Mode = m; return op }
	reserved := gfid.GFID{15: 2}
	limbo := gfid.GFID{15: 3}
	cases := []badCase{
		{"slash", opCreate(g(), D, "a/b"), ecInvalid},
		{"dotdot-slash", opCreate(g(), D, "../escaped"), ecInvalid},
		{"slash-only", opMkdir(g(), D, "/"), ecInvalid},
		{"absolute", opCreate(g(), gfid.Root, "/tmp/x"), ecInvalid},
		{"nul", withName(opCreate(g(), D, ""), []byte("a\x00b")), ecInvalid},
		{"dot", opMkdir(g(), D, "."), ecInvalid},
		{"dotdot", opMkdir(g(), D, ".."), ecInvalid},
		{"empty", opCreate(g(), D, ""), ecInvalid},
		{"nil-name", withName(opCreate(g(), D, ""), nil), ecInvalid},
		{"256 bytes", opCreate(g(), D, strings.Repeat("a", 256)), ecInvalid},
		{"reserved at root", opMkdir(g(), gfid.Root, wire.ReservedName), ecInvalid},
		{"reserved at root create", opCreate(g(), gfid.Root, wire.ReservedName), ecInvalid},
		{"unlink reserved", opUnlink(g(), gfid.Root, wire.ReservedName), ecInvalid},
		{"rmdir reserved", opRmdir(g(), gfid.Root, wire.ReservedName), ecInvalid},
		{"rename onto reserved", opRename(F, D, "f", gfid.Root, wire.ReservedName), ecInvalid},
		{"rename dst dotdot", opRename(F, D, "f", D, ".."), ecInvalid},
		{"rename dst slash", opRename(F, D, "f", D, "x/y"), ecInvalid},
		{"rename dst empty", opRename(F, D, "f", D, ""), ecInvalid},
		{"rename dst parent short", withPar(opRename(F, D, "f", D, "z"), nil), ecInvalid},
		{"link reserved name", opLink(F, gfid.Root, wire.ReservedName), ecInvalid},
		{"zero gfid", withGFID(opCreate(g(), D, "z"), make([]byte, 16)), ecInvalid},
		{"15-byte gfid", withGFID(opCreate(g(), D, "z"), make([]byte, 15)), ecInvalid},
		{"17-byte gfid", withGFID(opCreate(g(), D, "z"), append(g().Bytes(), 1)), ecInvalid},
		{"no gfid", withGFID(opMkdir(g(), D, "z"), nil), ecInvalid},
		{"zero parent", withPar(opCreate(g(), D, "z"), make([]byte, 16)), ecInvalid},
		{"15-byte parent", withPar(opCreate(g(), D, "z"), D.Bytes()[:15]), ecInvalid},
		{"reserved gfid", opMkdir(reserved, D, "z"), ecInvalid},
		{"limbo gfid", opCreate(limbo, D, "z"), ecInvalid},
		{"reserved parent", opCreate(g(), reserved, "z"), ecInvalid},
		{"limbo parent", opCreate(g(), limbo, "z"), ecInvalid},
		{"purge limbo", opPurge(limbo), ecInvalid},
		{"purge reserved", opPurge(reserved), ecInvalid},
		{"purge kept name invalid", opPurge(D, "f", "a/b"), ecInvalid},
		{"root as subject", opMkdir(gfid.Root, D, "z"), ecInvalid},
		{"rename root", opRename(gfid.Root, D, "f", D, "z"), ecInvalid},
		{"symlink nul target", opSymlink(g(), D, "l", "a\x00b"), ecInvalid},
		{"symlink empty target", opSymlink(g(), D, "l", ""), ecInvalid},
		{"symlink 4096-byte target", opSymlink(g(), D, "l", strings.Repeat("t", 4096)), ecInvalid},
		{"mknod regular", opMknod(g(), D, "n", unix.S_IFREG|0o644, 0), ecInvalid},
		{"mknod dir", opMknod(g(), D, "n", unix.S_IFDIR|0o755, 0), ecInvalid},
		{"mknod no type", opMknod(g(), D, "n", 0o644, 0), ecInvalid},
		{"create dir mode", withMode(opCreate(g(), D, "n"), unix.S_IFDIR|0o755), ecInvalid},
		{"mkdir fifo mode", withMode(opMkdir(g(), D, "n"), unix.S_IFIFO|0o755), ecInvalid},
		{"unspecified type", &pb.EntryOp{Gfid: gb(g()), Pargfid: gb(D), Name: []byte("n")}, ecInvalid},
		{"unknown type", &pb.EntryOp{Type: 99, Gfid: gb(g()), Pargfid: gb(D), Name: []byte("n")}, ecInvalid},
		{"link of a directory", opLink(D, gfid.Root, "dlink"), ecInvalid},
		{"unknown parent create", opCreate(g(), unknown, "n"), ecUnknown},
		{"unknown parent mkdir", opMkdir(g(), unknown, "n"), ecUnknown},
		{"unknown parent mknod", opMknod(g(), unknown, "n", unix.S_IFIFO|0o644, 0), ecUnknown},
		{"unknown parent symlink", opSymlink(g(), unknown, "n", "t"), ecUnknown},
		{"unknown parent link", opLink(F, unknown, "n"), ecUnknown},
		{"parent is a file", opCreate(g(), F, "n"), ecUnknown},
		{"link source unknown", opLink(unknown, D, "n"), ecUnknown},
		{"rename source unknown", opRename(unknown, D, "nope", D, "n"), ecUnknown},
		{"rename dest parent unknown", opRename(F, D, "f", unknown, "n"), ecUnknown},
		{"purge unknown", opPurge(unknown), ecUnknown},
		{"purge a file", opPurge(F), ecUnknown},
	}
	before := snapshot(t, f.root)
	for _, c := range cases {
		res := f.entry(c.op)
		checkFailed(t, res[0], c.code, c.name)
	}
	// All at once, in one batch, too: results align with ops.
	ops := make([]*pb.EntryOp, len(cases))
	for i, c := range cases {
		ops[i] = c.op
	}
	res := f.entry(ops...)
	for i, c := range cases {
		checkFailed(t, res[i], c.code, "batched "+c.name)
	}
	if diff := diffSnap(before, snapshot(t, f.root)); diff != "" {
		t.Fatalf("refused ops changed the slave tree:\n%s", diff)
	}
	f.checkOutside()

	// UNLINK/RMDIR under an unknown parent: the parent is gone, and so is
	// the entry; that is not an error.
	f.mustEntry([]pb.OpStatus{stNoop, stNoop}, opUnlink(g(), unknown, "n"), opRmdir(g(), unknown, "n"))
}

func TestEntryMixedBatch(t *testing.T) {
	f := newFixture(t)
	D, F, G, L := newGFID(t), newGFID(t), newGFID(t), newGFID(t)
	ops := []*pb.EntryOp{
		opMkdir(D, gfid.Root, "d"),            // 0 ok
		opCreate(newGFID(t), D, "../x"),       // 1 invalid
		opCreate(F, D, "f"),                   // 2 ok
		opCreate(newGFID(t), newGFID(t), "u"), // 3 unknown parent
		opLink(F, gfid.Root, "f2"),            // 4 ok
		opSymlink(L, D, "l", "x\x00y"),        // 5 invalid
		opMkdir(G, D, "g"),                    // 6 ok
		opRename(newGFID(t), D, "q", D, "r"),  // 7 unknown source
		opSymlink(L, D, "l", "target"),        // 8 ok
	}
	res := f.entry(ops...)
	wantOK := map[int]bool{0: true, 2: true, 4: true, 6: true, 8: true}
	wantCode := map[int]pb.ErrorCode{1: ecInvalid, 3: ecUnknown, 5: ecInvalid, 7: ecUnknown}
	for i, r := range res {
		if wantOK[i] {
			if r.GetStatus() != stOK {
				t.Errorf("op %d: %v %q, want OK", i, r.GetStatus(), r.GetError())
			}
			continue
		}
		checkFailed(t, r, wantCode[i], "op "+string(rune('0'+i)))
	}
	checkGFID(t, f.path("d/f"), F)
	checkGFID(t, f.path("f2"), F)
	checkGFID(t, f.path("d/g"), G)
	checkGFID(t, f.path("d/l"), L)
	if exists(f.path("x")) || exists(f.path("u")) || exists(f.path("d/r")) {
		t.Fatal("a refused op left something behind")
	}
	f.checkOutside()
}

// TestEntryEscapeThroughSymlink: the index believes directory D lives at
// "d", but "d" was replaced on disk by a symlink to a directory outside the
// root. No op may follow it.
func TestEntryEscapeThroughSymlink(t *testing.T) {
	f := newFixture(t)
	D, S, F, X := newGFID(t), newGFID(t), newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"), opMkdir(S, D, "sub"), opCreate(F, D, "f"), opCreate(X, gfid.Root, "x"))
	if err := os.Rename(f.path("d"), f.path("d.real")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(f.outside, f.path("d")); err != nil {
		t.Fatal(err)
	}
	// Make the outside look as much like d as possible: same names, and
	// (as an attacker with xattr access could) the same gfids.
	if err := os.WriteFile(filepath.Join(f.outside, "f"), []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	for p, g := range map[string]gfid.GFID{f.outside: D, filepath.Join(f.outside, "sub"): S, filepath.Join(f.outside, "f"): F} {
		if err := unix.Lsetxattr(p, gfidAttr, g[:], 0); err != nil {
			t.Fatal(err)
		}
	}
	f.outsideSnap = snapshot(t, f.outside)
	before := snapshot(t, f.root)

	cases := []struct {
		name string
		op   *pb.EntryOp
	}{
		{"create under D", opCreate(newGFID(t), D, "evil")},
		{"mkdir under D", opMkdir(newGFID(t), D, "evil")},
		{"mknod under D", opMknod(newGFID(t), D, "evil", unix.S_IFIFO|0o644, 0)},
		{"symlink under D", opSymlink(newGFID(t), D, "evil", "t")},
		{"create under D/sub", opCreate(newGFID(t), S, "evil")},
		{"link into D", opLink(X, D, "evil")},
		{"rename into D", opRename(X, gfid.Root, "x", D, "evil")},
		{"rename out of D", opRename(F, D, "f", gfid.Root, "stolen")},
		{"purge D", opPurge(D)},
		{"purge D/sub", opPurge(S)},
	}
	for _, c := range cases {
		r := f.entry(c.op)[0]
		if r.GetStatus() != stFailed || (r.GetCode() != ecEscape && r.GetCode() != ecUnknown) || r.GetError() == "" {
			t.Errorf("%s: %v %v %q, want FAILED ESCAPE or UNKNOWN_GFID", c.name, r.GetStatus(), r.GetCode(), r.GetError())
		}
		f.checkOutside()
	}
	// Removals in (or of) the unreachable directory: the slave may take it
	// as gone (NOOP) or refuse, but must not follow the symlink.
	for _, op := range []*pb.EntryOp{opUnlink(F, D, "f"), opRmdir(S, D, "sub"), opRmdir(D, gfid.Root, "d")} {
		r := f.entry(op)[0]
		if r.GetStatus() != stNoop && r.GetStatus() != stFailed {
			t.Errorf("%v: %v %q", op.GetType(), r.GetStatus(), r.GetError())
		}
		f.checkOutside()
	}
	for _, m := range f.meta(metaOf(D, unix.S_IFDIR|0o700, 4321, 4321, 5, 5), metaOf(F, unix.S_IFREG|0o600, 4321, 4321, 5, 5)) {
		if m.GetStatus() != stFailed {
			t.Errorf("meta through the symlink: %v %q", m.GetStatus(), m.GetError())
		}
	}
	f.checkOutside()
	after := snapshot(t, f.root)
	delete(before, "d")
	delete(after, "d")
	if diff := diffSnap(before, after); diff != "" {
		t.Fatalf("the slave tree changed:\n%s", diff)
	}
}

// TestEntryEscapeIntermediateSymlink: the symlink is not the directory
// itself but one of its ancestors.
func TestEntryEscapeIntermediateSymlink(t *testing.T) {
	f := newFixture(t)
	A, B := newGFID(t), newGFID(t)
	f.ok(opMkdir(A, gfid.Root, "a"), opMkdir(B, A, "sub"))
	if err := os.Rename(f.path("a"), f.path("a.real")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../outside", f.path("a")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(filepath.Join(f.outside, "sub"), gfidAttr, B[:], 0); err != nil {
		t.Fatal(err)
	}
	f.outsideSnap = snapshot(t, f.outside)
	r := f.entry(opCreate(newGFID(t), B, "evil"))[0]
	if r.GetStatus() != stFailed || (r.GetCode() != ecEscape && r.GetCode() != ecUnknown) {
		t.Fatalf("create under a/sub: %v %v %q", r.GetStatus(), r.GetCode(), r.GetError())
	}
	f.checkOutside()
}

// TestEntryImpostorDirectory: the index says D is "d", but "d" is now
// another directory (no gfid, or another one). Nothing may be created in the
// impostor.
func TestEntryImpostorDirectory(t *testing.T) {
	for _, how := range []string{"no gfid", "other gfid"} {
		t.Run(how, func(t *testing.T) {
			f := newFixture(t)
			D, X := newGFID(t), newGFID(t)
			f.ok(opMkdir(D, gfid.Root, "d"))
			if err := os.Rename(f.path("d"), f.path("d.real")); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(f.path("d"), 0o755); err != nil {
				t.Fatal(err)
			}
			if how == "other gfid" {
				if err := unix.Lsetxattr(f.path("d"), gfidAttr, X[:], 0); err != nil {
					t.Fatal(err)
				}
			}
			for _, op := range []*pb.EntryOp{opCreate(newGFID(t), D, "n"), opMkdir(newGFID(t), D, "m"), opPurge(D)} {
				checkFailed(t, f.entry(op)[0], ecUnknown, op.GetType().String()+" in an impostor directory")
			}
			if got := listNames(t, f.path("d")); len(got) != 0 {
				t.Fatalf("the impostor directory got %q", got)
			}
		})
	}
}

func TestEntryNeedsSession(t *testing.T) {
	f := newFixture(t)
	_, err := f.s.EntryOps(t.Context(), &pb.EntryOpsRequest{SessionToken: newSessionID(t), Ops: []*pb.EntryOp{opCreate(newGFID(t), gfid.Root, "x")}})
	if err == nil || grpcCode(err).String() != "FailedPrecondition" {
		t.Fatalf("EntryOps with a foreign session: %v", err)
	}
	if exists(f.path("x")) {
		t.Fatal("refused call created x")
	}
}

// A gfid created and moved within one batch of changes reaches the slave
// as a RENAME (or LINK) of a gfid it never had: when the op describes the
// entry, the slave creates it at the new name.
func TestEntryRenameLinkOfUnknownCreate(t *testing.T) {
	f := newFixture(t)
	D, F, S, L, N := newGFID(t), newGFID(t), newGFID(t), newGFID(t), newGFID(t)
	dir := opRename(D, gfid.Root, "gone", gfid.Root, "d")
	dir.Mode = unix.S_IFDIR | 0o750
	file := opRename(F, gfid.Root, "tmp", D, "f")
	file.Mode, file.Uid, file.Gid = unix.S_IFREG|0o640, 7, 8
	sym := opRename(S, gfid.Root, "s0", D, "s")
	sym.Mode, sym.Target = unix.S_IFLNK|0o777, []byte("../t a\nrget")
	link := opLink(L, D, "l")
	link.Mode = unix.S_IFREG | 0o600
	fifo := opRename(N, gfid.Root, "p0", D, "p")
	fifo.Mode = unix.S_IFIFO | 0o644
	f.ok(dir, file, sym, link, fifo)
	if st := lstat(t, f.path("d")); st.Mode != unix.S_IFDIR|0o750 {
		t.Errorf("d: mode %o", st.Mode)
	}
	checkGFID(t, f.path("d"), D)
	st := lstat(t, f.path("d/f"))
	if st.Mode != unix.S_IFREG|0o640 || st.Uid != 7 || st.Gid != 8 {
		t.Errorf("d/f: mode %o owner %d:%d", st.Mode, st.Uid, st.Gid)
	}
	checkGFID(t, f.path("d/f"), F)
	if got, err := os.Readlink(f.path("d/s")); err != nil || got != "../t a\nrget" {
		t.Errorf("d/s -> %q, %v", got, err)
	}
	checkGFID(t, f.path("d/l"), L)
	if st := lstat(t, f.path("d/p")); st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("d/p: mode %o", st.Mode)
	}
	// Replayed, they are all there already.
	f.replayNoop(dir, file, sym, link, fifo)

	// Without a description, an unknown gfid is still an error.
	res := f.entry(opRename(newGFID(t), gfid.Root, "x", gfid.Root, "y"), opLink(newGFID(t), gfid.Root, "z"))
	checkFailed(t, res[0], pb.ErrorCode_ERROR_CODE_UNKNOWN_GFID, "RENAME of an unknown, undescribed gfid")
	checkFailed(t, res[1], pb.ErrorCode_ERROR_CODE_UNKNOWN_GFID, "LINK of an unknown, undescribed gfid")
	// A description must be valid.
	bad := opLink(newGFID(t), gfid.Root, "w")
	bad.Mode = unix.S_IFDIR | 0o755
	badSym := opRename(newGFID(t), gfid.Root, "x", gfid.Root, "y")
	badSym.Mode = unix.S_IFLNK | 0o777
	res = f.entry(bad, badSym)
	checkFailed(t, res[0], pb.ErrorCode_ERROR_CODE_INVALID, "LINK described as a directory")
	checkFailed(t, res[1], pb.ErrorCode_ERROR_CODE_INVALID, "RENAME of a symlink without a target")
	for _, n := range []string{"y", "z", "w"} {
		if exists(f.path(n)) {
			t.Errorf("%s was created by a refused op", n)
		}
	}
	f.checkOutside()
}

// A report-only PURGE removes nothing and says what the directory holds
// beyond the kept names, with their gfids (the live master removes only
// what it no longer has anywhere).
func TestEntryPurgeReportOnly(t *testing.T) {
	f := newFixture(t)
	D, A, B := newGFID(t), newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"), opCreate(A, D, "a"), opMkdir(B, D, "b dir"))
	before := snapshot(t, f.root)
	op := opPurge(D, "a")
	op.ReportOnly = true
	res := f.entry(op)
	checkStatuses(t, res, stNoop)
	if diff := diffSnap(before, snapshot(t, f.root)); diff != "" {
		t.Fatalf("a report-only purge changed the tree:\n%s", diff)
	}
	names, gs := res[0].GetExtraNames(), res[0].GetExtraGfids()
	if len(names) != 1 || string(names[0]) != "b dir" || len(gs) != 1 {
		t.Fatalf("reported %q %x, want [\"b dir\"] and its gfid", names, gs)
	}
	if g, err := gfid.FromBytes(gs[0]); err != nil || g != B {
		t.Fatalf("reported gfid %x, want %s", gs[0], B)
	}
	// Without report_only the same op removes it.
	f.ok(opPurge(D, "a"))
	if exists(f.path("d/b dir")) {
		t.Fatal("purge left a name the master lacks")
	}
	f.checkOutside()
}

// An op naming a gfid the slave has under another name reuses that inode
// (a FIFO, a symlink with the same target) instead of making a second one
// with the same gfid; made says whether the slave made the entry from the
// op's description.
func TestEntryReuseAndMade(t *testing.T) {
	f := newFixture(t)
	fifo, link, dir, other := newGFID(t), newGFID(t), newGFID(t), newGFID(t)
	res := f.entry(opMknod(fifo, gfid.Root, "p", unix.S_IFIFO|0o644, 0), opSymlink(link, gfid.Root, "l", "target"),
		opMkdir(dir, gfid.Root, "d"))
	for i, r := range res {
		if r.GetStatus() != pb.OpStatus_OP_STATUS_OK || !r.GetMade() {
			t.Fatalf("op %d: %v, made=%v; want OK, made", i, r.GetStatus(), r.GetMade())
		}
	}
	// The same gfids named elsewhere: the same inodes, not made again.
	res = f.entry(opMknod(fifo, gfid.Root, "p2", unix.S_IFIFO|0o644, 0), opSymlink(link, gfid.Root, "l2", "target"),
		opMkdir(dir, gfid.Root, "d2"))
	for i, r := range res {
		if r.GetStatus() == pb.OpStatus_OP_STATUS_FAILED || r.GetMade() {
			t.Fatalf("op %d again: %v (%s), made=%v; want reuse", i, r.GetStatus(), r.GetError(), r.GetMade())
		}
	}
	for _, pair := range [][2]string{{"p", "p2"}, {"l", "l2"}} {
		var a, b unix.Stat_t
		if err := unix.Lstat(f.path(pair[0]), &a); err != nil {
			t.Fatal(err)
		}
		if err := unix.Lstat(f.path(pair[1]), &b); err != nil {
			t.Fatal(err)
		}
		if a.Ino != b.Ino {
			t.Errorf("%s and %s: two inodes with one gfid", pair[0], pair[1])
		}
	}
	if _, err := os.Stat(f.path("d")); !os.IsNotExist(err) {
		t.Errorf("the directory was not moved to d2: d is still there (%v)", err)
	}
	// A symlink with another target is made anew.
	if r := f.entry(opSymlink(link, gfid.Root, "l3", "elsewhere"))[0]; r.GetStatus() == pb.OpStatus_OP_STATUS_FAILED || !r.GetMade() {
		t.Errorf("symlink with another target: %v, made=%v; want made anew", r.GetStatus(), r.GetMade())
	}
	// A RENAME of a gfid the slave lacks, with a description, makes it.
	op := opRename(other, gfid.Root, "gone", gfid.Root, "new dir")
	op.Mode = unix.S_IFDIR | 0o755
	if r := f.entry(op)[0]; r.GetStatus() == pb.OpStatus_OP_STATUS_FAILED || !r.GetMade() {
		t.Errorf("rename of an unknown directory: %v (%s), made=%v; want made", r.GetStatus(), r.GetError(), r.GetMade())
	}
	f.checkOutside()
}

// Moving a directory under one of its own descendants (the slave's nesting
// older than the master's) is refused as an unknown directory, which a
// live master answers by placing the parent first.
func TestEntryReuseIntoOwnSubtree(t *testing.T) {
	f := newFixture(t)
	x, p := newGFID(t), newGFID(t)
	f.ok(opMkdir(x, gfid.Root, "x"), opMkdir(p, x, "p"))
	r := f.entry(opMkdir(x, p, "x again"))[0]
	checkFailed(t, r, pb.ErrorCode_ERROR_CODE_UNKNOWN_GFID, "a directory moved into its own subtree")
	// Once the parent is placed elsewhere, the move goes.
	f.ok(opMkdir(p, gfid.Root, "p"))
	if r := f.entry(opMkdir(x, p, "x again"))[0]; r.GetStatus() == pb.OpStatus_OP_STATUS_FAILED {
		t.Fatalf("after the parent moved: %s", r.GetError())
	}
	if _, err := os.Stat(f.path("p/x again/")); err != nil {
		t.Fatal(err)
	}
	f.checkOutside()
}

// A report-only PURGE removes a directory that carries a gfid the index
// places at another directory: a stale copy no op will ever reach.
func TestEntryPurgeStaleDirCopy(t *testing.T) {
	f := newFixture(t)
	D, X := newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"), opMkdir(X, D, "x"))
	// A copy of x's identity elsewhere in d, as an index that lost it and
	// an op that made the gfid anew would leave.
	if err := os.MkdirAll(f.path("d/stale/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := gfid.DefaultNamespace().Set(f.path("d/stale"), X); err != nil {
		t.Fatal(err)
	}
	op := opPurge(D, "x")
	op.ReportOnly = true
	res := f.entry(op)
	if res[0].GetStatus() == pb.OpStatus_OP_STATUS_FAILED || len(res[0].GetExtraNames()) != 0 {
		t.Fatalf("purge: %v %q; want the stale copy removed, nothing reported", res[0].GetStatus(), res[0].GetExtraNames())
	}
	if exists(f.path("d/stale")) {
		t.Fatal("the stale copy is still there")
	}
	if !exists(f.path("d/x")) {
		t.Fatal("the indexed directory went too")
	}
	f.checkOutside()
}

// A CREATE with check_current of a file that is there answers current
// when its size, mtime, mode, owner and replicated xattrs all match; a
// CREATE with data_follows of a gfid the slave has nowhere answers made
// (the master may then send the data inline: nothing there can be current).
func TestEntryCheckCurrent(t *testing.T) {
	f := newFixture(t)
	F, G := newGFID(t), newGFID(t)
	op := opCreate(G, gfid.Root, "g")
	op.DataFollows = true
	if r := f.entry(op)[0]; r.GetStatus() != stOK || !r.GetMade() {
		t.Fatalf("CREATE with data_follows of a new gfid: %v, want OK and made", r)
	}
	f.ok(opCreate(F, gfid.Root, "f"))
	d := f.openData(f.tok)
	if r := d.sendFile(1, F, "content", 1e9); r.GetResult().GetStatus() != stOK {
		t.Fatalf("data: %v", r)
	}
	d.commit()
	st := lstat(t, f.path("f"))
	check := func(mut func(op *pb.EntryOp)) *pb.OpResult {
		t.Helper()
		op := opCreate(F, gfid.Root, "f")
		op.Mode, op.Uid, op.Gid = st.Mode, st.Uid, st.Gid
		op.CheckCurrent, op.Size, op.MtimeNs, op.DataFollows = true, st.Size, st.Mtim.Nano(), true
		mut(op)
		r := f.entry(op)[0]
		if r.GetStatus() != stNoop || r.GetMade() {
			t.Fatalf("CREATE of a file there: %v, want NOOP, not made", r)
		}
		return r
	}
	if r := check(func(*pb.EntryOp) {}); !r.GetCurrent() {
		t.Errorf("all the same: %v, want current", r)
	}
	for what, mut := range map[string]func(op *pb.EntryOp){
		"mode":   func(op *pb.EntryOp) { op.Mode ^= 0o001 },
		"xattrs": func(op *pb.EntryOp) { op.Xattrs = []*pb.Xattr{{Name: []byte("user.k"), Value: []byte("v")}} },
		"size":   func(op *pb.EntryOp) { op.Size++ },
		"mtime":  func(op *pb.EntryOp) { op.MtimeNs++ },
	} {
		if r := check(mut); r.GetCurrent() {
			t.Errorf("another %s: %v, want not current", what, r)
		}
	}
}
