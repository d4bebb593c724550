package slave_test

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/xattrs"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/slave"
)

// TestMetaFIFOACL: a FIFO's metadata op carries its ACL, applied exactly
// (and removed when the master's has none); any other xattr on a FIFO is
// refused (the kernel allows none of the user namespace there).
func TestMetaFIFOACL(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	f.ok(opMknod(F, gfid.Root, "fifo", unix.S_IFIFO|0o644, 0))
	op := metaOf(F, unix.S_IFIFO|0o644, // the mode the ACL gives
		uint32(os.Getuid()), uint32(os.Getgid()), tAtime, tMtime)
	op.SyncXattrs = true
	op.Xattrs = []*pb.Xattr{{Name: []byte(xattrs.ACLAccess), Value: slave.ACLValueForTest}}
	res := f.meta(op)
	if res[0].GetStatus() != stOK {
		t.Fatalf("FIFO ACL: %v %s", res[0].GetStatus(), res[0].GetError())
	}
	got := make([]byte, 256)
	n, err := unix.Lgetxattr(f.path("fifo"), xattrs.ACLAccess, got)
	if err != nil || string(got[:n]) != string(slave.ACLValueForTest) {
		t.Fatalf("FIFO ACL read back: %v", err)
	}
	op.Xattrs = nil
	if res := f.meta(op); res[0].GetStatus() != stOK {
		t.Fatalf("FIFO ACL removal: %v %s", res[0].GetStatus(), res[0].GetError())
	}
	if _, err := unix.Lgetxattr(f.path("fifo"), xattrs.ACLAccess, got); !errors.Is(err, unix.ENODATA) {
		t.Fatalf("FIFO ACL still there: %v", err)
	}
	op.Xattrs = []*pb.Xattr{{Name: []byte("user.x"), Value: []byte("1")}}
	if res := f.meta(op); res[0].GetStatus() != pb.OpStatus_OP_STATUS_FAILED || res[0].GetCode() != ecInvalid {
		t.Fatalf("user xattr on a FIFO: %v %v %s; want FAILED INVALID", res[0].GetStatus(), res[0].GetCode(), res[0].GetError())
	}
}
