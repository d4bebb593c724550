package slave

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/xattrs"
)

// aclValue is an access ACL in the kernel's form: user::rw-, user:1234:r--,
// group::r--, mask::r--, other::r--.
var aclValue = []byte{
	2, 0, 0, 0, // version
	1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, // ACL_USER_OBJ rw-
	2, 0, 4, 0, 0xd2, 0x04, 0, 0, // ACL_USER 1234 r--
	4, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, // ACL_GROUP_OBJ r--
	0x10, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, // ACL_MASK r--
	0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, // ACL_OTHER r--
}

// TestSyncFdXattrsACLs: an ACL is set exactly (and read back the same); on
// a filesystem that cannot hold one (procfs here) it is reported, not a
// failure, while any other xattr the slave cannot set still fails.
func TestSyncFdXattrsACLs(t *testing.T) {
	f, err := os.Create(t.TempDir() + "/f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	note, err := syncFdXattrs(int(f.Fd()), map[string][]byte{xattrs.ACLAccess: aclValue, "user.x": []byte("1")}, true)
	if err != nil || note != nil {
		t.Fatalf("setting an ACL: note %v, error %v", note, err)
	}
	got := make([]byte, 256)
	n, err := unix.Fgetxattr(int(f.Fd()), xattrs.ACLAccess, got)
	if err != nil || string(got[:n]) != string(aclValue) {
		t.Fatalf("ACL read back: %x, %v; want %x", got[:max(n, 0)], err, aclValue)
	}
	// Removed when the master's copy has none.
	if note, err := syncFdXattrs(int(f.Fd()), map[string][]byte{}, true); err != nil || note != nil {
		t.Fatalf("removing: note %v, error %v", note, err)
	}
	if _, err := unix.Fgetxattr(int(f.Fd()), xattrs.ACLAccess, got); !errors.Is(err, unix.ENODATA) {
		t.Fatalf("ACL still there after removal: %v", err)
	}

	p, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no procfs: %v", err)
	}
	defer p.Close()
	note, err = syncFdXattrs(int(p.Fd()), map[string][]byte{xattrs.ACLAccess: aclValue}, true)
	if err != nil || note == nil || !strings.Contains(note.Error(), xattrs.ACLAccess+" not applied") {
		t.Fatalf("ACL on a filesystem without ACLs: note %v, error %v; want a note and no error", note, err)
	}
	if _, err := syncFdXattrs(int(p.Fd()), map[string][]byte{"user.x": []byte("1")}, true); err == nil {
		t.Fatal("a user xattr the filesystem refuses was not a failure")
	}
}

func TestACLNotSet(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{xattrs.ACLAccess, unix.EOPNOTSUPP, true},
		{xattrs.ACLDefault, unix.EPERM, true},
		{xattrs.ACLAccess, unix.EINVAL, false}, // a value the kernel refuses
		{"user.x", unix.EOPNOTSUPP, false},
		{"security.capability", unix.EPERM, false},
	} {
		if got := aclNotSet(tc.name, tc.err); got != tc.want {
			t.Errorf("aclNotSet(%s, %v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
