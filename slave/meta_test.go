package slave_test

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
	pb "github.com/georep/georep/proto/georep/v1"
)

// Nanosecond-precise times that a coarse implementation would round.
const (
	tAtime = int64(1_600_000_000_123_456_789)
	tMtime = int64(1_650_000_000_987_654_321)
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// metaNoopAgain replays op and requires NOOP and an unchanged ctime.
func (f *fixture) metaNoopAgain(p string, op *pb.MetaOp) {
	f.t.Helper()
	before := lstat(f.t, p)
	time.Sleep(15 * time.Millisecond)
	checkStatuses(f.t, f.meta(op), stNoop)
	after := lstat(f.t, p)
	if before.Ctim != after.Ctim || before.Mtim != after.Mtim || before.Mode != after.Mode {
		f.t.Fatalf("NOOP meta op changed %s: ctime %v -> %v", p, before.Ctim, after.Ctim)
	}
}

func TestMetaFile(t *testing.T) {
	requireRoot(t)
	f := newFixture(t)
	F := newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"))
	// setuid survives the owner change (chown clears it; chmod must come after).
	op := metaOf(F, unix.S_IFREG|0o4755, 1234, 5678, tAtime, tMtime)
	checkStatuses(t, f.meta(op), stOK)
	st := lstat(t, f.path("f"))
	if st.Mode != unix.S_IFREG|0o4755 || st.Uid != 1234 || st.Gid != 5678 {
		t.Fatalf("f: mode %o owner %d:%d", st.Mode, st.Uid, st.Gid)
	}
	if st.Mtim.Nano() != tMtime || st.Atim.Nano() != tAtime {
		t.Fatalf("f: atime %d mtime %d, want %d %d", st.Atim.Nano(), st.Mtim.Nano(), tAtime, tMtime)
	}
	checkGFID(t, f.path("f"), F)
	f.metaNoopAgain(f.path("f"), op)

	// Only the mode differs: only the mode changes.
	op2 := metaOf(F, unix.S_IFREG|0o6750, 1234, 5678, tAtime, tMtime)
	checkStatuses(t, f.meta(op2), stOK)
	if st := lstat(t, f.path("f")); st.Mode != unix.S_IFREG|0o6750 || st.Mtim.Nano() != tMtime || st.Uid != 1234 {
		t.Fatalf("f: mode %o mtime %d uid %d", st.Mode, st.Mtim.Nano(), st.Uid)
	}
	f.metaNoopAgain(f.path("f"), op2)
	// Only the owner differs: the chown clears setuid and setgid (the mode
	// already matched before it), and the slave must put them back.
	op3 := metaOf(F, unix.S_IFREG|0o6750, 0, 0, tAtime, tMtime)
	checkStatuses(t, f.meta(op3), stOK)
	if st := lstat(t, f.path("f")); st.Mode != unix.S_IFREG|0o6750 || st.Uid != 0 || st.Gid != 0 {
		t.Fatalf("f after chown: mode %o owner %d:%d", st.Mode, st.Uid, st.Gid)
	}
	f.metaNoopAgain(f.path("f"), op3)
}

func TestMetaDir(t *testing.T) {
	requireRoot(t)
	f := newFixture(t)
	D := newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"), opCreate(newGFID(t), D, "child"))
	op := metaOf(D, unix.S_IFDIR|0o1750, 42, 43, tAtime, tMtime)
	checkStatuses(t, f.meta(op), stOK)
	st := lstat(t, f.path("d"))
	if st.Mode != unix.S_IFDIR|0o1750 || st.Uid != 42 || st.Gid != 43 || st.Mtim.Nano() != tMtime {
		t.Fatalf("d: mode %o owner %d:%d mtime %d", st.Mode, st.Uid, st.Gid, st.Mtim.Nano())
	}
	f.metaNoopAgain(f.path("d"), op)

	// The root itself.
	rop := metaOf(gfid.Root, unix.S_IFDIR|0o711, 0, 0, tAtime, tMtime)
	checkStatuses(t, f.meta(rop), stOK)
	if st := lstat(t, f.root); st.Mode != unix.S_IFDIR|0o711 || st.Mtim.Nano() != tMtime {
		t.Fatalf("root: mode %o mtime %d", st.Mode, st.Mtim.Nano())
	}
	f.metaNoopAgain(f.root, rop)
	f.checkOutside()
}

func TestMetaSymlink(t *testing.T) {
	requireRoot(t)
	f := newFixture(t)
	T, L := newGFID(t), newGFID(t)
	f.ok(opCreate(T, gfid.Root, "target"), opSymlink(L, gfid.Root, "l", "target"))
	tBefore := lstat(t, f.path("target"))
	op := metaOf(L, unix.S_IFLNK|0o600, 777, 778, tAtime, tMtime)
	checkStatuses(t, f.meta(op), stOK)
	st := lstat(t, f.path("l"))
	if st.Mtim.Nano() != tMtime || st.Uid != 777 || st.Gid != 778 {
		t.Fatalf("l: owner %d:%d mtime %d", st.Uid, st.Gid, st.Mtim.Nano())
	}
	// Nothing went through the link to its target.
	tAfter := lstat(t, f.path("target"))
	if tAfter.Mode != tBefore.Mode || tAfter.Mtim != tBefore.Mtim || tAfter.Uid != tBefore.Uid || tAfter.Ctim != tBefore.Ctim {
		t.Fatalf("the symlink's target changed: mode %o->%o mtime %v->%v uid %d->%d",
			tBefore.Mode, tAfter.Mode, tBefore.Mtim, tAfter.Mtim, tBefore.Uid, tAfter.Uid)
	}
	f.metaNoopAgain(f.path("l"), op)

	// A symlink to something outside: times only, and on the link.
	O := newGFID(t)
	f.ok(opSymlink(O, gfid.Root, "out", f.outside+"/canary"))
	checkStatuses(t, f.meta(metaOf(O, unix.S_IFLNK|0o777, 0, 0, tAtime, tMtime), &pb.MetaOp{Gfid: gb(O), Mode: unix.S_IFLNK | 0o777, MtimeNs: tMtime, SyncXattrs: true, Xattrs: []*pb.Xattr{{Name: []byte("user.x"), Value: []byte("v")}}}), stOK, stNoop)
	f.checkOutside()
}

func TestMetaFIFO(t *testing.T) {
	requireRoot(t)
	f := newFixture(t)
	P := newGFID(t)
	f.ok(opMknod(P, gfid.Root, "p", unix.S_IFIFO|0o600, 0))
	op := metaOf(P, unix.S_IFIFO|0o644, 9, 10, tAtime, tMtime)
	checkStatuses(t, f.meta(op), stOK)
	st := lstat(t, f.path("p"))
	if st.Mode != unix.S_IFIFO|0o644 || st.Uid != 9 || st.Gid != 10 || st.Mtim.Nano() != tMtime {
		t.Fatalf("p: mode %o owner %d:%d mtime %d", st.Mode, st.Uid, st.Gid, st.Mtim.Nano())
	}
	f.metaNoopAgain(f.path("p"), op)
}

func getX(t *testing.T, p, name string) ([]byte, bool) {
	t.Helper()
	buf := make([]byte, 70<<10)
	n, err := unix.Lgetxattr(p, name, buf)
	if err == unix.ENODATA {
		return nil, false
	}
	if err != nil {
		t.Fatalf("getxattr %s %s: %v", p, name, err)
	}
	return buf[:n], true
}

func xattrOp(g gfid.GFID, mode uint32, mtime int64, kv ...string) *pb.MetaOp {
	op := &pb.MetaOp{Gfid: gb(g), Mode: mode, AtimeNs: mtime, MtimeNs: mtime, SyncXattrs: true}
	for i := 0; i+1 < len(kv); i += 2 {
		op.Xattrs = append(op.Xattrs, &pb.Xattr{Name: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return op
}

func userNames(t *testing.T, p string) []string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range strings.Split(string(buf[:n]), "\x00") {
		if strings.HasPrefix(s, "user.") {
			out = append(out, s)
		}
	}
	return out
}

func TestMetaXattrs(t *testing.T) {
	f := newFixture(t)
	F, D := newGFID(t), newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"), opMkdir(D, gfid.Root, "d"))
	p := f.path("f")
	bin := "\x00\xff\x01binary\x00"
	big := strings.Repeat("v", 1500) // more than the first read buffer (256 bytes)
	op := xattrOp(F, unix.S_IFREG|0o644, tMtime, "user.a", "1", "user.b", bin, "user.big", big, "user.empty", "")
	checkStatuses(t, f.meta(op), stOK)
	for name, want := range map[string]string{"user.a": "1", "user.b": bin, "user.big": big, "user.empty": ""} {
		if got, ok := getX(t, p, name); !ok || string(got) != want {
			t.Fatalf("%s = %q (present %v), want %q", name, got, ok, want)
		}
	}
	checkGFID(t, p, F)
	f.metaNoopAgain(p, op)

	// Replace one, drop others, add one: exactly the given set.
	op2 := xattrOp(F, unix.S_IFREG|0o644, tMtime, "user.a", "2", "user.c", "new")
	checkStatuses(t, f.meta(op2), stOK)
	if got := userNames(t, p); len(got) != 2 {
		t.Fatalf("user xattrs %q, want user.a and user.c", got)
	}
	if got, _ := getX(t, p, "user.a"); string(got) != "2" {
		t.Fatalf("user.a = %q", got)
	}
	if got, _ := getX(t, p, "user.c"); string(got) != "new" {
		t.Fatalf("user.c = %q", got)
	}
	checkGFID(t, p, F) // never removed: it is georep's own
	f.metaNoopAgain(p, op2)

	// Without sync_xattrs, xattrs are left alone.
	checkStatuses(t, f.meta(&pb.MetaOp{Gfid: gb(F), Mode: unix.S_IFREG | 0o644, MtimeNs: tMtime, AtimeNs: tMtime}), stNoop)
	if got := userNames(t, p); len(got) != 2 {
		t.Fatalf("user xattrs %q after an op without sync_xattrs", got)
	}
	// An empty set removes them all.
	checkStatuses(t, f.meta(xattrOp(F, unix.S_IFREG|0o644, tMtime)), stOK)
	if got := userNames(t, p); len(got) != 0 {
		t.Fatalf("user xattrs %q, want none", got)
	}
	checkGFID(t, p, F)

	// On a directory too.
	checkStatuses(t, f.meta(xattrOp(D, unix.S_IFDIR|0o755, tMtime, "user.dir", "x")), stOK)
	if got, _ := getX(t, f.path("d"), "user.dir"); string(got) != "x" {
		t.Fatalf("user.dir = %q", got)
	}
	if !bytes.Equal(gfidAt(t, f.path("d")).Bytes(), D.Bytes()) {
		t.Fatal("directory lost its gfid")
	}
}

func TestMetaRefused(t *testing.T) {
	f := newFixture(t)
	F, D := newGFID(t), newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"), opMkdir(D, gfid.Root, "d"))
	before := snapshot(t, f.root)
	cases := []struct {
		name string
		op   *pb.MetaOp
		code pb.ErrorCode
	}{
		{"dir mode on a file", metaOf(F, unix.S_IFDIR|0o755, 0, 0, 1, 1), ecInvalid},
		{"file mode on a dir", metaOf(D, unix.S_IFREG|0o644, 0, 0, 1, 1), ecInvalid},
		{"symlink mode on a file", metaOf(F, unix.S_IFLNK|0o777, 0, 0, 1, 1), ecInvalid},
		{"no type", metaOf(F, 0o644, 0, 0, 1, 1), ecInvalid},
		{"zero gfid", &pb.MetaOp{Gfid: make([]byte, 16), Mode: unix.S_IFREG | 0o644}, ecInvalid},
		{"15-byte gfid", &pb.MetaOp{Gfid: F.Bytes()[:15], Mode: unix.S_IFREG | 0o644}, ecInvalid},
		{"reserved gfid", metaOf(gfid.GFID{15: 2}, unix.S_IFDIR|0o755, 0, 0, 1, 1), ecInvalid},
		{"limbo gfid", metaOf(gfid.GFID{15: 3}, unix.S_IFDIR|0o755, 0, 0, 1, 1), ecInvalid},
		{"unknown gfid", metaOf(newGFID(t), unix.S_IFREG|0o644, 0, 0, 1, 1), ecUnknown},
		{"system.foo", xattrOp(F, unix.S_IFREG|0o644, 1, "system.foo", "x"), ecInvalid},
		{"user.georep.gfid", xattrOp(F, unix.S_IFREG|0o644, 1, "user.georep.gfid", "0123456789abcdef"), ecInvalid},
		{"trusted.georep.gfid", xattrOp(F, unix.S_IFREG|0o644, 1, "trusted.georep.gfid", "0123456789abcdef"), ecInvalid},
		{"trusted.georep.x", xattrOp(F, unix.S_IFREG|0o644, 1, "trusted.georep.x", "v"), ecInvalid},
		{"security.selinux", xattrOp(F, unix.S_IFREG|0o644, 1, "security.selinux", "v"), ecInvalid},
		{"no namespace", xattrOp(F, unix.S_IFREG|0o644, 1, "plain", "v"), ecInvalid},
		{"nul in name", xattrOp(F, unix.S_IFREG|0o644, 1, "user.a\x00b", "v"), ecInvalid},
		{"long name", xattrOp(F, unix.S_IFREG|0o644, 1, "user."+strings.Repeat("n", 251), "v"), ecInvalid},
		{"huge value", xattrOp(F, unix.S_IFREG|0o644, 1, "user.v", strings.Repeat("v", 64<<10+1)), ecInvalid},
	}
	ops := make([]*pb.MetaOp, 0, len(cases)+1)
	for _, c := range cases {
		checkFailed(t, f.meta(c.op)[0], c.code, c.name)
		ops = append(ops, c.op)
	}
	if diff := diffSnap(before, snapshot(t, f.root)); diff != "" {
		t.Fatalf("refused meta ops changed the tree:\n%s", diff)
	}
	// Batched with a good op: results align.
	good := metaOf(F, unix.S_IFREG|0o600, 0, 0, tAtime, tMtime)
	ops = append(ops[:3], append([]*pb.MetaOp{good}, ops[3:]...)...)
	res := f.meta(ops...)
	if res[3].GetStatus() != stOK {
		t.Fatalf("good op in a bad batch: %v %q", res[3].GetStatus(), res[3].GetError())
	}
	for i, r := range res {
		if i != 3 && r.GetStatus() != stFailed {
			t.Errorf("op %d: %v", i, r.GetStatus())
		}
	}
	if st := lstat(t, f.path("f")); st.Mode != unix.S_IFREG|0o600 || st.Mtim.Nano() != tMtime {
		t.Fatalf("good op not applied: mode %o", st.Mode)
	}
	f.checkOutside()
}
