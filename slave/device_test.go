package slave_test

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/testenv"
	pb "github.com/georep/georep/proto/georep/v1"
)

// TestEntryDeviceUnprivileged: a slave that runs as nobody cannot make a
// device node (mknod of one needs CAP_MKNOD). Every op that would make
// one (MKNOD; a RENAME or LINK describing a device the slave lacks)
// answers SKIPPED with the reason, makes nothing, and clears a name that
// held another gfid as any op making an entry does; a metadata op of such
// a device is SKIPPED too, and the removal of one is a NOOP. FIFOs,
// sockets and ops on other gfids are not affected. Run as root, the test
// re-runs itself as nobody.
func TestEntryDeviceUnprivileged(t *testing.T) {
	if os.Geteuid() == 0 {
		testenv.RunAsNobody(t, "TestEntryDeviceUnprivileged")
		return
	}
	f := newFixture(t)
	if f.s.Privileged() {
		t.Fatal("the slave runs privileged as uid", os.Geteuid())
	}
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	own := func(op *pb.EntryOp) *pb.EntryOp { op.Uid, op.Gid = uid, gid; return op }
	D, P, C, B, V, S := newGFID(t), newGFID(t), newGFID(t), newGFID(t), newGFID(t), newGFID(t)
	f.ok(own(opMkdir(D, gfid.Root, "dev")), own(opCreate(V, D, "victim")))
	skipped := func(r *pb.OpResult, what string) {
		t.Helper()
		if r.GetStatus() != stSkipped || r.GetCode() != pb.ErrorCode_ERROR_CODE_PERMISSION || !strings.Contains(r.GetError(), "CAP_MKNOD") {
			t.Errorf("%s: got %v %v %q, want SKIPPED PERMISSION saying why", what, r.GetStatus(), r.GetCode(), r.GetError())
		}
	}
	chr := own(opMknod(C, D, "null", unix.S_IFCHR|0o666, unix.Mkdev(1, 3)))
	blk := own(opMknod(B, D, "loop", unix.S_IFBLK|0o660, unix.Mkdev(7, 200)))
	res := f.entry(own(opMknod(P, D, "fifo", unix.S_IFIFO|0o640, 0)), chr, blk,
		own(opMknod(S, D, "sock", unix.S_IFSOCK|0o600, 0)))
	checkStatuses(t, []*pb.OpResult{res[0], res[3]}, stOK, stOK)
	skipped(res[1], "MKNOD of a character device")
	skipped(res[2], "MKNOD of a block device")
	for _, n := range []string{"null", "loop"} {
		if exists(f.path("dev/" + n)) {
			t.Errorf("dev/%s made on an unprivileged slave", n)
		}
	}
	if st := lstat(t, f.path("dev/fifo")); st.Mode != unix.S_IFIFO|0o640 {
		t.Errorf("fifo: mode %o", st.Mode)
	}

	// Sent again (every run's crawl does): skipped again, nothing made.
	before := snapshot(t, f.root)
	res = f.entry(chr, blk)
	skipped(res[0], "MKNOD of a character device again")
	skipped(res[1], "MKNOD of a block device again")
	if diff := diffSnap(before, snapshot(t, f.root)); diff != "" {
		t.Errorf("a skipped MKNOD changed the slave tree:\n%s", diff)
	}

	// Its metadata: skipped, as the entry was; the metadata of a gfid the
	// slave lacks for another reason is still UNKNOWN_GFID.
	res = f.meta(metaOf(C, unix.S_IFCHR|0o600, 0, 0, 1e9, 1e9), metaOf(B, unix.S_IFBLK|0o600, 0, 0, 1e9, 1e9),
		metaOf(newGFID(t), unix.S_IFIFO|0o600, 0, 0, 1e9, 1e9), metaOf(P, unix.S_IFIFO|0o600, uid, gid, 1e9, 1e9))
	skipped(res[0], "metadata of a character device not made")
	skipped(res[1], "metadata of a block device not made")
	checkFailed(t, res[2], ecUnknown, "metadata of an unknown FIFO")
	checkStatuses(t, res[3:], stOK)

	// A rename of the device (described, as a live master sends it) over
	// a file the slave has: the name goes, as the master's did; the
	// device is not made. A hardlink of it: not made either.
	rename := opRename(C, D, "null", D, "victim")
	rename.Mode, rename.Rdev = unix.S_IFCHR|0o666, unix.Mkdev(1, 3)
	link := opLink(C, D, "null-link")
	link.Mode, link.Rdev = unix.S_IFCHR|0o666, unix.Mkdev(1, 3)
	res = f.entry(rename, link, opUnlink(B, D, "loop"))
	skipped(res[0], "RENAME of a device the slave lacks")
	skipped(res[1], "LINK of a device the slave lacks")
	checkStatuses(t, res[2:], stNoop)
	if got := listNames(t, f.path("dev")); !equalStrings(got, []string{"fifo", "sock"}) {
		t.Errorf("dev holds %q, want the FIFO and the socket only", got)
	}
	f.checkOutside()
}

// TestEntryDeviceWithoutCapMknod: root without CAP_MKNOD (a container's
// root, often) cannot make device nodes either: its MKNOD of one is
// SKIPPED, saying so, and so is the device's metadata op; a FIFO is made.
// Run as root with the capability, the test re-runs itself without it.
func TestEntryDeviceWithoutCapMknod(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (the slave must run privileged, without CAP_MKNOD)")
	}
	if os.Getenv(testenv.DroppedCapEnv) != "mknod" {
		testenv.RunWithoutCap(t, "TestEntryDeviceWithoutCapMknod", "mknod")
		return
	}
	f := newFixture(t)
	if !f.s.Privileged() {
		t.Fatal("root's slave is not privileged")
	}
	D, P, C := newGFID(t), newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "dev"))
	res := f.entry(opMknod(P, D, "fifo", unix.S_IFIFO|0o640, 0), opMknod(C, D, "null", unix.S_IFCHR|0o666, unix.Mkdev(1, 3)))
	checkStatuses(t, res[:1], stOK)
	if r := res[1]; r.GetStatus() != stSkipped || !strings.Contains(r.GetError(), "without CAP_MKNOD") {
		t.Errorf("MKNOD of a device as root without CAP_MKNOD: %v %q, want SKIPPED saying why", r.GetStatus(), r.GetError())
	}
	if exists(f.path("dev/null")) {
		t.Error("dev/null made")
	}
	res = f.meta(metaOf(C, unix.S_IFCHR|0o600, 0, 0, 1e9, 1e9))
	if res[0].GetStatus() != stSkipped {
		t.Errorf("metadata of the device not made: %v %q, want SKIPPED", res[0].GetStatus(), res[0].GetError())
	}
}

// TestEntryDeviceRefusedWithCap: a slave that has CAP_MKNOD may still be
// refused device nodes (a container's device cgroup). The refused MKNOD
// is SKIPPED, not FAILED (which would wedge the batch), and so are later
// ones and their metadata ops; a FIFO is still made. Run as root, the
// test re-runs itself in a devices cgroup that refuses mknod of devices.
func TestEntryDeviceRefusedWithCap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a privileged slave with CAP_MKNOD)")
	}
	if os.Getenv(testenv.DeviceCgroupEnv) == "" {
		testenv.RunInDeviceCgroup(t, "TestEntryDeviceRefusedWithCap")
		return
	}
	testenv.EnterDeviceCgroup(t)
	f := newFixture(t)
	D, P, C, B := newGFID(t), newGFID(t), newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "dev"))
	res := f.entry(opMknod(C, D, "null", unix.S_IFCHR|0o666, unix.Mkdev(1, 3)), opMknod(P, D, "fifo", unix.S_IFIFO|0o640, 0),
		opMknod(B, D, "loop", unix.S_IFBLK|0o660, unix.Mkdev(7, 200)))
	for i, r := range []*pb.OpResult{res[0], res[2]} {
		if r.GetStatus() != stSkipped || !strings.Contains(r.GetError(), "refused") {
			t.Errorf("MKNOD %d of a refused device: %v %q, want SKIPPED saying why", i, r.GetStatus(), r.GetError())
		}
	}
	checkStatuses(t, res[1:2], stOK)
	for _, n := range []string{"null", "loop"} {
		if exists(f.path("dev/" + n)) {
			t.Errorf("dev/%s made", n)
		}
	}
	res = f.meta(metaOf(C, unix.S_IFCHR|0o600, 0, 0, 1e9, 1e9), metaOf(B, unix.S_IFBLK|0o600, 0, 0, 1e9, 1e9))
	checkStatuses(t, res, stSkipped, stSkipped)
}
