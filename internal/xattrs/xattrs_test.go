package xattrs

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestReplicated(t *testing.T) {
	for _, c := range []struct {
		name       string
		priv, want bool
	}{
		{"user.k", false, true},
		{"user.k", true, true},
		{"user.georep.gfid", true, false},
		{"trusted.georep.gfid", true, false},
		{"trusted.k", false, false},
		{"trusted.k", true, true},
		{"security.capability", true, true},
		{"security.selinux", true, false},
		{"system.posix_acl_access", true, true},
		{"system.posix_acl_access", false, true}, // an owner sets its files' ACLs
		{"system.posix_acl_default", false, true},
		{"system.posix_acl_other", true, false},
		{"system.nfs4_acl", true, false},
	} {
		if got := Replicated(c.name, c.priv); got != c.want {
			t.Errorf("Replicated(%q, %v) = %v, want %v", c.name, c.priv, got, c.want)
		}
	}
}

// TestList: values of any size, binary and empty, filtered by keep; a
// symlink is not followed unless asked.
func TestList(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 3000)
	for i := range big {
		big[i] = byte(i)
	}
	want := map[string][]byte{"user.a": {0, 0xff, 1}, "user.empty": {}, "user.big": big}
	for n, v := range want {
		if err := unix.Lsetxattr(f, n, v, 0); err != nil {
			t.Skipf("user xattrs unsupported: %v", err)
		}
	}
	if err := unix.Lsetxattr(f, "user.georep.gfid", make([]byte, 16), 0); err != nil {
		t.Fatal(err)
	}
	got, err := List(f, false, func(n string) bool { return Replicated(n, false) })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("List = %d xattrs %v, want %d", len(got), Names(got), len(want))
	}
	for n, v := range want {
		if string(got[n]) != string(v) {
			t.Errorf("%s = %x, want %x", n, got[n], v)
		}
	}
	l := filepath.Join(dir, "l")
	if err := os.Symlink("f", l); err != nil {
		t.Fatal(err)
	}
	if got, err := List(l, false, func(string) bool { return true }); err != nil || len(got) != 0 {
		t.Errorf("List of a symlink, not followed = %v, %v; want nothing", Names(got), err)
	}
	if got, err := List(l, true, func(n string) bool { return Replicated(n, false) }); err != nil || len(got) != 3 {
		t.Errorf("List of a symlink, followed = %v, %v; want the target's 3", Names(got), err)
	}
	if n := Names(got); len(n) != 3 || n[0] != "user.a" || n[2] != "user.empty" {
		t.Errorf("Names = %v, want sorted", n)
	}
}
