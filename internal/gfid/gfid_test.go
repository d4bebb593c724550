package gfid

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var canonical = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestNewIsTimeOrdered: gfids made in later milliseconds sort after earlier
// ones (byte order, the index's key order), so a crawl's new links go to
// the end of the index instead of all over it.
func TestNewIsTimeOrdered(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	prev, err := newAt(t0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 1000; i++ {
		g, err := newAt(t0.Add(time.Duration(i) * time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Compare(prev[:], g[:]) >= 0 {
			t.Fatalf("%s (ms %d) does not sort after %s", g, i, prev)
		}
		prev = g
	}
	if ms := uint64(prev[0])<<40 | uint64(prev[1])<<32 | uint64(prev[2])<<24 | uint64(prev[3])<<16 | uint64(prev[4])<<8 | uint64(prev[5]); ms != uint64(t0.UnixMilli())+999 {
		t.Fatalf("timestamp field %d, want %d", ms, t0.UnixMilli()+999)
	}
}

// TestMade: a gfid of New tells when it was made; the root's, a derived
// one and a random (version 4) one do not.
func TestMade(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 17, 0, 0, 123456789, time.UTC)
	g, err := newAt(t0)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := g.Made(); !ok || !m.Equal(t0.Truncate(time.Millisecond)) {
		t.Fatalf("Made() = %v, %v; want %v", m, ok, t0.Truncate(time.Millisecond))
	}
	v4 := g
	v4[6] = (v4[6] & 0x0f) | 0x40
	for _, o := range []GFID{Root, Zero, Derived(Root, "a", 0o100000), v4} {
		if m, ok := o.Made(); ok {
			t.Errorf("%s: Made() = %v, true; want false", o, m)
		}
	}
}

func TestNew(t *testing.T) {
	seen := map[GFID]bool{}
	for i := 0; i < 1000; i++ {
		g, err := New()
		if err != nil {
			t.Fatal(err)
		}
		if g[6]>>4 != 7 {
			t.Fatalf("%s: version nibble %x, want 7", g, g[6]>>4)
		}
		if g[8]&0xc0 != 0x80 {
			t.Fatalf("%s: variant bits %02b, want 10", g, g[8]>>6)
		}
		if g.IsZero() || g == Root {
			t.Fatalf("New returned %s", g)
		}
		if !canonical.MatchString(g.String()) {
			t.Fatalf("%q is not a canonical version-7 UUID", g)
		}
		if seen[g] {
			t.Fatalf("New returned %s twice", g)
		}
		seen[g] = true
	}
}

func TestStringParse(t *testing.T) {
	if s := Root.String(); s != "00000000-0000-0000-0000-000000000001" {
		t.Fatalf("Root = %s", s)
	}
	if s := Zero.String(); s != "00000000-0000-0000-0000-000000000000" {
		t.Fatalf("Zero = %s", s)
	}
	g := GFID{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10}
	if s := g.String(); s != "01234567-89ab-cdef-fedc-ba9876543210" {
		t.Fatalf("String = %s", s)
	}
	for i := 0; i < 200; i++ {
		g, _ := New()
		p, err := Parse(g.String())
		if err != nil || p != g {
			t.Fatalf("Parse(%s) = %v, %v", g, p, err)
		}
	}
	for _, g := range []GFID{Zero, Root, {0: 0xff, 15: 0xff}} {
		if p, err := Parse(g.String()); err != nil || p != g {
			t.Fatalf("Parse(%s) = %v, %v", g, p, err)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	good := "01234567-89ab-cdef-fedc-ba9876543210"
	bad := []string{
		"",
		good[:35],
		good + "0",
		" " + good,
		good + "\n",
		strings.ReplaceAll(good, "-", ""),
		"0123456789ab-cdef-fedc-ba9876543210",
		"01234567_89ab-cdef-fedc-ba9876543210",
		"01234567-89ab_cdef-fedc-ba9876543210",
		"01234567-89ab-cdef_fedc-ba9876543210",
		"01234567-89ab-cdef-fedc_ba9876543210",
		"0123456-789ab-cdef-fedc-ba9876543210",
		"01234567-89AB-cdef-fedc-ba9876543210",
		strings.ToUpper(good),
		"01234567-89ab-cdef-fedc-ba987654321g",
		"x1234567-89ab-cdef-fedc-ba9876543210",
		"01234567-89ab-cdef-fedc-ba98765432 0",
		"01234567-89ab-cdef-fedc-ba98765432-0",
		"{1234567-89ab-cdef-fedc-ba9876543210",
		"01234567-89ab-cdef-fedc-ba987654321\xff",
	}
	for _, s := range bad {
		if g, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) = %s, nil; want an error", s, g)
		} else if g != Zero {
			t.Errorf("Parse(%q) returned %s with its error", s, g)
		}
	}
}

func TestFromBytes(t *testing.T) {
	g, _ := New()
	got, err := FromBytes(g[:])
	if err != nil || got != g {
		t.Fatalf("FromBytes = %v, %v", got, err)
	}
	b := g.Bytes()
	b[0] ^= 0xff
	if g == GFID(b) {
		t.Fatal("Bytes shares storage with the gfid")
	}
	for _, n := range []int{0, 1, 15, 17, 32} {
		if _, err := FromBytes(make([]byte, n)); err == nil {
			t.Errorf("FromBytes of %d bytes succeeded", n)
		}
		if n > 0 {
			if _, err := FromBytes(append(make([]byte, n-1), 1)); err == nil {
				t.Errorf("FromBytes of %d bytes succeeded", n)
			}
		}
	}
	if _, err := FromBytes(make([]byte, 16)); err == nil {
		t.Error("FromBytes of the zero gfid succeeded")
	}
	if got, err := FromBytes(Root[:]); err != nil || got != Root {
		t.Errorf("FromBytes(Root) = %v, %v", got, err)
	}
}

func TestNamespace(t *testing.T) {
	tr, us := NewNamespace(true), NewNamespace(false)
	if tr.Prefix() != "trusted.georep." || tr.GFIDAttr() != "trusted.georep.gfid" || tr.Name("s.stime") != "trusted.georep.s.stime" {
		t.Errorf("privileged namespace: %q %q %q", tr.Prefix(), tr.GFIDAttr(), tr.Name("s.stime"))
	}
	if us.Prefix() != "user.georep." || us.GFIDAttr() != "user.georep.gfid" || us.Name("volume-id") != "user.georep.volume-id" {
		t.Errorf("unprivileged namespace: %q %q %q", us.Prefix(), us.GFIDAttr(), us.Name("volume-id"))
	}
	want := us
	if os.Geteuid() == 0 {
		want = tr
	}
	if DefaultNamespace() != want {
		t.Errorf("DefaultNamespace = %q for euid %d", DefaultNamespace().Prefix(), os.Geteuid())
	}
	for name, owned := range map[string]bool{
		"trusted.georep.gfid":     true,
		"user.georep.gfid":        true,
		"user.georep.x.stime":     true,
		"trusted.georep.":         true,
		"user.georepx":            false,
		"user.other":              false,
		"trusted.glusterfs.gfid":  false,
		"security.georep.gfid":    false,
		"system.posix_acl_access": false,
		"USER.georep.gfid":        false,
	} {
		if Owns(name) != owned {
			t.Errorf("Owns(%q) = %v, want %v", name, !owned, owned)
		}
	}
}

func tempFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Check that the filesystem takes user xattrs at all.
	if err := unix.Setxattr(p, "user.georep.probe", []byte("1"), 0); err != nil {
		t.Skipf("temp filesystem refuses user xattrs: %v", err)
	}
	unix.Removexattr(p, "user.georep.probe")
	return p
}

func TestGetSetUser(t *testing.T) {
	ns := NewNamespace(false)
	p := tempFile(t)
	if _, err := ns.Get(p); !errors.Is(err, ErrNoGFID) {
		t.Fatalf("Get on a bare file = %v, want ErrNoGFID", err)
	}
	g, _ := New()
	if err := ns.Set(p, g); err != nil {
		t.Fatal(err)
	}
	// Stored raw, 16 bytes, under user.georep.gfid.
	buf := make([]byte, 64)
	n, err := unix.Getxattr(p, "user.georep.gfid", buf)
	if err != nil || n != 16 || GFID(buf[:16]) != g {
		t.Fatalf("raw xattr = %x, %v", buf[:n], err)
	}
	if got, err := ns.Get(p); err != nil || got != g {
		t.Fatalf("Get = %v, %v; want %v", got, err, g)
	}
	// The other namespace does not see it.
	if os.Geteuid() == 0 {
		if _, err := NewNamespace(true).Get(p); !errors.Is(err, ErrNoGFID) {
			t.Fatalf("trusted Get of a user gfid = %v, want ErrNoGFID", err)
		}
	}
	// Set replaces.
	g2, _ := New()
	if err := ns.Set(p, g2); err != nil {
		t.Fatal(err)
	}
	if got, err := ns.Get(p); err != nil || got != g2 {
		t.Fatalf("Get after a second Set = %v, %v; want %v", got, err, g2)
	}
}

func TestFGetFSet(t *testing.T) {
	ns := NewNamespace(false)
	p := tempFile(t)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	if _, err := ns.FGet(fd); !errors.Is(err, ErrNoGFID) {
		t.Fatalf("FGet on a bare file = %v, want ErrNoGFID", err)
	}
	g, _ := New()
	if err := ns.FSet(fd, g); err != nil {
		t.Fatal(err)
	}
	if got, err := ns.FGet(fd); err != nil || got != g {
		t.Fatalf("FGet = %v, %v", got, err)
	}
	if got, err := ns.Get(p); err != nil || got != g {
		t.Fatalf("Get of what FSet wrote = %v, %v", got, err)
	}
	// A directory, opened read-only.
	d, err := os.Open(filepath.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := ns.FSet(int(d.Fd()), g); err != nil {
		t.Fatal(err)
	}
	if got, err := ns.Get(filepath.Dir(p)); err != nil || got != g {
		t.Fatalf("Get on the dir = %v, %v", got, err)
	}
	if err := ns.FSet(-1, g); err == nil {
		t.Fatal("FSet on a bad fd succeeded")
	}
	if _, err := ns.FGet(-1); err == nil || errors.Is(err, ErrNoGFID) {
		t.Fatalf("FGet on a bad fd = %v", err)
	}
}

func TestMalformedValue(t *testing.T) {
	ns := NewNamespace(false)
	for _, v := range [][]byte{{}, make([]byte, 15), make([]byte, 16), append(make([]byte, 16), 1), make([]byte, 100)} {
		p := tempFile(t)
		if err := unix.Setxattr(p, ns.GFIDAttr(), v, 0); err != nil {
			t.Fatal(err)
		}
		if g, err := ns.Get(p); err == nil || errors.Is(err, ErrNoGFID) {
			t.Errorf("Get of a %d-byte zero value = %v, %v; want a malformed error", len(v), g, err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if g, err := ns.FGet(int(f.Fd())); err == nil || errors.Is(err, ErrNoGFID) {
			t.Errorf("FGet of a %d-byte value = %v, %v; want a malformed error", len(v), g, err)
		}
		f.Close()
	}
	// 15 non-zero bytes: short.
	p := tempFile(t)
	if err := unix.Setxattr(p, ns.GFIDAttr(), []byte("123456789012345"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.Get(p); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("Get of a 15-byte value = %v", err)
	}
}

func TestGetMissingPath(t *testing.T) {
	ns := NewNamespace(false)
	p := filepath.Join(t.TempDir(), "nope")
	if _, err := ns.Get(p); err == nil || errors.Is(err, ErrNoGFID) || !errors.Is(err, unix.ENOENT) {
		t.Fatalf("Get of a missing path = %v, want ENOENT (not ErrNoGFID)", err)
	}
	if err := ns.Set(p, Root); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("Set on a missing path = %v", err)
	}
}

func TestSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	// user.* xattrs cannot live on symlinks.
	us := NewNamespace(false)
	g, _ := New()
	if err := us.Set(link, g); err == nil {
		t.Fatal("user-namespace Set on a symlink succeeded")
	}
	if _, err := us.Get(link); !errors.Is(err, ErrNoGFID) {
		t.Fatalf("user Get on a symlink = %v, want ErrNoGFID", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("trusted namespace needs root")
	}
	tr := NewNamespace(true)
	if err := tr.Set(link, g); err != nil {
		t.Fatal(err)
	}
	if got, err := tr.Get(link); err != nil || got != g {
		t.Fatalf("trusted Get on the symlink = %v, %v", got, err)
	}
	// Not followed: the target has none.
	if _, err := tr.Get(target); !errors.Is(err, ErrNoGFID) {
		t.Fatalf("target of the symlink = %v, want ErrNoGFID (Set must not follow)", err)
	}
	g2, _ := New()
	if err := tr.Set(target, g2); err != nil {
		t.Fatal(err)
	}
	if got, err := tr.Get(link); err != nil || got != g {
		t.Fatalf("Get on the symlink after setting its target = %v, %v (Get must not follow)", got, err)
	}
	// A dangling symlink works too.
	if err := os.Remove(target); err != nil {
		t.Fatal(err)
	}
	if got, err := tr.Get(link); err != nil || got != g {
		t.Fatalf("Get on a dangling symlink = %v, %v", got, err)
	}
}

// FuzzParse: the text form (journal records, logs) parses only when it is
// the canonical form, and round-trips; the wire form (16 bytes) only when
// it is not zero.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000000",
		"0123456789abcdef0123456789abcdef", "0123456789ABCDEF-0123-4567-89ab-cdef01234567", "", "g0000000-0000-0000-0000-000000000001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if g, err := Parse(s); err == nil {
			if g.String() != s {
				t.Fatalf("Parse(%q) = %s", s, g)
			}
		}
		if g, err := FromBytes([]byte(s)); err == nil {
			if g.IsZero() || string(g.Bytes()) != s {
				t.Fatalf("FromBytes(%q) = %s", s, g)
			}
		}
	})
}
