package marks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
)

func TestTimeEncoding(t *testing.T) {
	for _, ns := range []int64{0, 1, 255, 256, 1700000000123456789, math.MaxInt64} {
		b := EncodeTime(ns)
		if len(b) != 9 || b[0] != 1 {
			t.Fatalf("EncodeTime(%d) = %x", ns, b)
		}
		got, err := DecodeTime(b)
		if err != nil || got != ns {
			t.Fatalf("DecodeTime(EncodeTime(%d)) = %d, %v", ns, got, err)
		}
	}
	// Big-endian after the version byte.
	if b := EncodeTime(0x0102030405060708); !bytes.Equal(b, []byte{1, 1, 2, 3, 4, 5, 6, 7, 8}) {
		t.Fatalf("EncodeTime layout = %x", b)
	}
	bad := [][]byte{
		nil,
		{},
		{1},
		{1, 0, 0, 0, 0, 0, 0, 0},
		{1, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		{0, 0, 0, 0, 0, 0, 0, 0, 1},
		{2, 0, 0, 0, 0, 0, 0, 0, 1},
		{0xff, 0, 0, 0, 0, 0, 0, 0, 1},
		EncodeTime(-1),
		EncodeTime(math.MinInt64),
		{1, 0x80, 0, 0, 0, 0, 0, 0, 0},
		[]byte("123456789"),
	}
	for _, b := range bad {
		if ns, err := DecodeTime(b); err == nil {
			t.Errorf("DecodeTime(%x) = %d, nil; want an error", b, ns)
		}
	}
}

func TestKeys(t *testing.T) {
	s := []byte{0xde, 0xad, 0x01}
	if k := Stime(s); k != "dead01.stime" {
		t.Errorf("Stime = %q", k)
	}
	if k := EntryStime(s); k != "dead01.entry-stime" {
		t.Errorf("EntryStime = %q", k)
	}
	if Stime(s) == EntryStime(s) || Stime(s) == Stime([]byte{0xde, 0xad, 0x02}) {
		t.Error("keys collide")
	}
}

// xattrRoot is a temp dir that takes user xattrs.
func xattrRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := unix.Setxattr(root, "user.georep.probe", []byte("1"), 0); err != nil {
		t.Skipf("temp filesystem refuses user xattrs: %v", err)
	}
	unix.Removexattr(root, "user.georep.probe")
	return root
}

func TestStoreXattr(t *testing.T) {
	root := xattrRoot(t)
	fallback := filepath.Join(t.TempDir(), "marks.json")
	s := NewStore(root, gfid.NewNamespace(false), fallback)
	k := Stime([]byte{1, 2})
	if _, err := s.Get(k); !errors.Is(err, ErrNoMark) {
		t.Fatalf("Get of an absent mark = %v, want ErrNoMark", err)
	}
	if ns, err := s.GetTime(k); !errors.Is(err, ErrNoMark) || ns != 0 {
		t.Fatalf("GetTime of an absent mark = %d, %v", ns, err)
	}
	if err := s.SetTime(k, 1234567890); err != nil {
		t.Fatal(err)
	}
	if ns, err := s.GetTime(k); err != nil || ns != 1234567890 {
		t.Fatalf("GetTime = %d, %v", ns, err)
	}
	// Stored as an xattr on the root, under user.georep.<key>.
	buf := make([]byte, 64)
	n, err := unix.Getxattr(root, "user.georep.0102.stime", buf)
	if err != nil || !bytes.Equal(buf[:n], EncodeTime(1234567890)) {
		t.Fatalf("raw xattr = %x, %v", buf[:n], err)
	}
	if _, err := os.Stat(fallback); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the fallback file was written although xattrs work: %v", err)
	}
	// Set replaces; other keys are independent.
	if err := s.Set(k, EncodeTime(5)); err != nil {
		t.Fatal(err)
	}
	if ns, err := s.GetTime(k); err != nil || ns != 5 {
		t.Fatalf("GetTime after replace = %d, %v", ns, err)
	}
	if _, err := s.Get(EntryStime([]byte{1, 2})); !errors.Is(err, ErrNoMark) {
		t.Fatalf("other key = %v", err)
	}
	// A fresh Store sees the same.
	if ns, err := NewStore(root, gfid.NewNamespace(false), "").GetTime(k); err != nil || ns != 5 {
		t.Fatalf("fresh Store GetTime = %d, %v", ns, err)
	}
	// A corrupt time mark is an error naming the key, not ErrNoMark.
	if err := s.Set(k, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetTime(k); err == nil || errors.Is(err, ErrNoMark) || !strings.Contains(err.Error(), string(k)) {
		t.Fatalf("GetTime of a corrupt mark = %v", err)
	}
	// Arbitrary bytes, including an empty value.
	for _, v := range [][]byte{{}, {0}, bytes.Repeat([]byte{0xff}, 200)} {
		if err := s.Set("raw", v); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get("raw"); err != nil || !bytes.Equal(got, v) {
			t.Fatalf("Get(raw) = %x, %v; want %x", got, err, v)
		}
	}
}

func TestStoreMissingRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "nope")
	s := NewStore(root, gfid.NewNamespace(false), filepath.Join(t.TempDir(), "m.json"))
	if _, err := s.Get("k"); err == nil || errors.Is(err, ErrNoMark) {
		t.Fatalf("Get on a missing root = %v, want an error other than ErrNoMark", err)
	}
	if err := s.Set("k", []byte{1}); err == nil {
		t.Fatal("Set on a missing root succeeded")
	}
}

func TestVolumeID(t *testing.T) {
	root := xattrRoot(t)
	s := NewStore(root, gfid.NewNamespace(false), "")
	if _, err := s.VolumeID(false); !errors.Is(err, ErrNoMark) {
		t.Fatalf("VolumeID(false) on a fresh root = %v, want ErrNoMark", err)
	}
	if _, err := s.Get(KeyVolumeID); !errors.Is(err, ErrNoMark) {
		t.Fatalf("VolumeID(false) created a mark: %v", err)
	}
	id, err := s.VolumeID(true)
	if err != nil || len(id) != 16 {
		t.Fatalf("VolumeID(true) = %x, %v", id, err)
	}
	if bytes.Equal(id, make([]byte, 16)) {
		t.Fatal("zero volume id")
	}
	for _, create := range []bool{true, false} {
		again, err := s.VolumeID(create)
		if err != nil || !bytes.Equal(again, id) {
			t.Fatalf("VolumeID(%v) later = %x, %v; want %x", create, again, err, id)
		}
	}
	again, err := NewStore(root, gfid.NewNamespace(false), "").VolumeID(true)
	if err != nil || !bytes.Equal(again, id) {
		t.Fatalf("VolumeID from a fresh Store = %x, %v; want %x", again, err, id)
	}
	// Another root gets another id.
	other, err := NewStore(xattrRoot(t), gfid.NewNamespace(false), "").VolumeID(true)
	if err != nil || bytes.Equal(other, id) {
		t.Fatalf("another root's VolumeID = %x, %v", other, err)
	}
}

func TestVolumeIDCorrupt(t *testing.T) {
	for _, v := range [][]byte{{}, make([]byte, 15), make([]byte, 17)} {
		root := xattrRoot(t)
		s := NewStore(root, gfid.NewNamespace(false), "")
		if err := s.Set(KeyVolumeID, v); err != nil {
			t.Fatal(err)
		}
		for _, create := range []bool{false, true} {
			if id, err := s.VolumeID(create); err == nil || errors.Is(err, ErrNoMark) || !strings.Contains(err.Error(), "corrupt") {
				t.Fatalf("VolumeID(%v) with a %d-byte mark = %x, %v; want a corrupt error", create, len(v), id, err)
			}
		}
		// The corrupt mark is left for a human, not replaced.
		if got, err := s.Get(KeyVolumeID); err != nil || !bytes.Equal(got, v) {
			t.Fatalf("corrupt volume-id was changed to %x, %v", got, err)
		}
	}
}

// noXattrRoot is a directory whose filesystem refuses user xattrs with
// ENOTSUP (procfs). Marks are never actually written there.
func noXattrRoot(t *testing.T) string {
	t.Helper()
	const root = "/proc"
	ns := gfid.NewNamespace(false)
	_, gerr := unix.Getxattr(root, ns.Name("probe"), make([]byte, 16))
	serr := unix.Setxattr(root, ns.Name("probe"), []byte("x"), 0)
	if serr == nil {
		unix.Removexattr(root, ns.Name("probe"))
	}
	if !unsupported(gerr) || !unsupported(serr) {
		t.Skipf("cannot find a filesystem refusing xattrs with ENOTSUP (%s: get %v, set %v)", root, gerr, serr)
	}
	return root
}

func TestFallbackFile(t *testing.T) {
	root := noXattrRoot(t)
	state := filepath.Join(t.TempDir(), "state", "sub") // created on demand
	fallback := filepath.Join(state, "marks.json")
	s := NewStore(root, gfid.NewNamespace(false), fallback)
	k := Stime([]byte("sess"))
	if _, err := s.Get(k); !errors.Is(err, ErrNoMark) {
		t.Fatalf("Get before any Set = %v, want ErrNoMark", err)
	}
	if _, err := s.VolumeID(false); !errors.Is(err, ErrNoMark) {
		t.Fatalf("VolumeID(false) = %v, want ErrNoMark", err)
	}
	if err := s.SetTime(k, 42); err != nil {
		t.Fatal(err)
	}
	if ns, err := s.GetTime(k); err != nil || ns != 42 {
		t.Fatalf("GetTime = %d, %v", ns, err)
	}
	id, err := s.VolumeID(true)
	if err != nil || len(id) != 16 {
		t.Fatalf("VolumeID(true) = %x, %v", id, err)
	}
	// Persisted as JSON, mode 0600, no temp files left.
	st, err := os.Stat(fallback)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("fallback file mode %v, want 0600", st.Mode().Perm())
	}
	ents, _ := os.ReadDir(state)
	if len(ents) != 1 {
		t.Errorf("state dir holds %d entries, want only the marks file", len(ents))
	}
	data, err := os.ReadFile(fallback)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string][]byte
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("fallback file is not JSON: %v: %s", err, data)
	}
	if !bytes.Equal(m[string(k)], EncodeTime(42)) || !bytes.Equal(m[string(KeyVolumeID)], id) || len(m) != 2 {
		t.Fatalf("fallback file holds %v", m)
	}
	// A fresh Store (cold cache) reads them back.
	s2 := NewStore(root, gfid.NewNamespace(false), fallback)
	if ns, err := s2.GetTime(k); err != nil || ns != 42 {
		t.Fatalf("fresh Store GetTime = %d, %v", ns, err)
	}
	if id2, err := s2.VolumeID(true); err != nil || !bytes.Equal(id2, id) {
		t.Fatalf("fresh Store VolumeID = %x, %v; want %x", id2, err, id)
	}
	// Updating one key keeps the others.
	if err := s2.SetTime(k, 43); err != nil {
		t.Fatal(err)
	}
	s3 := NewStore(root, gfid.NewNamespace(false), fallback)
	if ns, err := s3.GetTime(k); err != nil || ns != 43 {
		t.Fatalf("GetTime after update = %d, %v", ns, err)
	}
	if id3, err := s3.VolumeID(false); err != nil || !bytes.Equal(id3, id) {
		t.Fatalf("VolumeID after another key's update = %x, %v", id3, err)
	}

	// A root whose xattrs work but lack the mark still finds it in the
	// fallback file (the filesystem refused once).
	xs := NewStore(xattrRoot(t), gfid.NewNamespace(false), fallback)
	if ns, err := xs.GetTime(k); err != nil || ns != 43 {
		t.Fatalf("Get via ENODATA then the fallback file = %d, %v", ns, err)
	}
}

func TestFallbackNone(t *testing.T) {
	root := noXattrRoot(t)
	s := NewStore(root, gfid.NewNamespace(false), "")
	if err := s.Set("k", []byte{1}); !unsupported(err) {
		t.Fatalf("Set without a fallback = %v, want ENOTSUP", err)
	}
	if _, err := s.Get("k"); !unsupported(err) || errors.Is(err, ErrNoMark) {
		t.Fatalf("Get without a fallback = %v, want ENOTSUP", err)
	}
	if _, err := s.VolumeID(true); err == nil {
		t.Fatal("VolumeID(true) without xattrs or a fallback succeeded")
	}
}

func TestFallbackCorrupt(t *testing.T) {
	root := noXattrRoot(t)
	fallback := filepath.Join(t.TempDir(), "marks.json")
	if err := os.WriteFile(fallback, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := NewStore(root, gfid.NewNamespace(false), fallback)
	if _, err := s.Get("k"); err == nil || errors.Is(err, ErrNoMark) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("Get with a corrupt fallback = %v", err)
	}
	if _, err := s.VolumeID(true); err == nil {
		t.Fatal("VolumeID(true) with a corrupt fallback file succeeded (it would mint a new identity)")
	}
	if err := s.Set("k", []byte{1}); err == nil {
		t.Fatal("Set over a corrupt fallback succeeded (it would drop the other marks)")
	}
	data, _ := os.ReadFile(fallback)
	if string(data) != "{not json" {
		t.Fatalf("corrupt fallback file rewritten to %q", data)
	}
	// An unreadable fallback (a directory) is an error too.
	dirFallback := t.TempDir()
	s = NewStore(root, gfid.NewNamespace(false), dirFallback)
	if _, err := s.Get("k"); err == nil || errors.Is(err, ErrNoMark) {
		t.Fatalf("Get with a directory as fallback = %v", err)
	}
}

// TestFallbackNull: a fallback file holding JSON null decodes to a nil map;
// the next Set assigns into it and panics.
func TestFallbackNull(t *testing.T) {
	root := noXattrRoot(t)
	fallback := filepath.Join(t.TempDir(), "marks.json")
	if err := os.WriteFile(fallback, []byte("null"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := NewStore(root, gfid.NewNamespace(false), fallback)
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("Set panicked: %v", p)
		}
	}()
	if _, err := s.Get("k"); !errors.Is(err, ErrNoMark) {
		t.Logf("Get = %v", err)
	}
	if err := s.Set("k", []byte{1}); err != nil {
		t.Logf("Set = %v", err)
	}
}

// TestFallbackCorruptBehindXattrs: on a root whose xattrs work, Get of an
// absent mark consults the fallback file and turns any error reading it
// into ErrNoMark, so VolumeID(true) mints a new identity although the
// fallback file (which may hold the real one) is unreadable.
func TestFallbackCorruptBehindXattrs(t *testing.T) {
	fallback := filepath.Join(t.TempDir(), "marks.json")
	if err := os.WriteFile(fallback, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := NewStore(xattrRoot(t), gfid.NewNamespace(false), fallback)
	if _, err := s.Get(KeyVolumeID); errors.Is(err, ErrNoMark) {
		t.Fatalf("Get with a corrupt fallback file = %v; want the corruption reported", err)
	}
}

// TestFallbackGetCopies: Get must not hand out the cache's own slice.
func TestFallbackGetCopies(t *testing.T) {
	root := noXattrRoot(t)
	s := NewStore(root, gfid.NewNamespace(false), filepath.Join(t.TempDir(), "m.json"))
	if err := s.Set("k", []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	v, err := s.Get("k")
	if err != nil {
		t.Fatal(err)
	}
	v[0] = 9
	if v2, _ := s.Get("k"); v2[0] != 1 {
		t.Fatalf("modifying Get's result changed the stored mark: %x", v2)
	}
}

// A root whose xattr space is full (the marks of many slaves) refuses a
// new mark with ENOSPC: the fallback file takes it, and it reads back.
func TestStoreFullRootFallsBack(t *testing.T) {
	root := xattrRoot(t)
	fillXattrs(t, root)
	fallback := filepath.Join(t.TempDir(), "marks.json")
	s := NewStore(root, gfid.NewNamespace(false), fallback)
	k := Stime([]byte{9, 9})
	if err := s.SetTime(k, 42); err != nil {
		t.Fatalf("SetTime on a full root: %v", err)
	}
	if ns, err := s.GetTime(k); err != nil || ns != 42 {
		t.Fatalf("GetTime = %d, %v", ns, err)
	}
	if _, err := os.Stat(fallback); err != nil {
		t.Fatalf("the fallback file: %v", err)
	}
	// Without a fallback file, the error says what refused it.
	if err := NewStore(root, gfid.NewNamespace(false), "").SetTime(Stime([]byte{8}), 1); !errors.Is(err, unix.ENOSPC) && !errors.Is(err, unix.E2BIG) {
		t.Fatalf("SetTime on a full root without fallback: %v", err)
	}
}

// A full root whose fallback file cannot be written either keeps the mark
// it had: Set fails, and Get still reads the old value.
func TestStoreFullRootKeepsOldMark(t *testing.T) {
	root := xattrRoot(t)
	blocker := filepath.Join(t.TempDir(), "f") // the fallback's directory is a file
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := NewStore(root, gfid.NewNamespace(false), filepath.Join(blocker, "marks.json"))
	k := Stime([]byte{9, 9})
	if err := s.SetTime(k, 41); err != nil {
		t.Fatal(err)
	}
	fillXattrs(t, root)
	// A longer value than the one there, so that replacing it needs room.
	if err := s.Set(k, bytes.Repeat([]byte{1}, 40)); err == nil {
		t.Fatal("Set on a full root with an unwritable fallback succeeded")
	}
	if ns, err := s.GetTime(k); err != nil || ns != 41 {
		t.Fatalf("after the failed Set: %d, %v; want the old mark 41", ns, err)
	}
}

// fillXattrs fills root's xattr space (one block on ext4; tmpfs and others
// may take much more: then the test has nothing to show, and is skipped).
func fillXattrs(t *testing.T, root string) {
	t.Helper()
	i := 0
	for _, size := range []int{200, 20, 1} { // big fillers, then the gaps
		for ; ; i++ {
			err := unix.Setxattr(root, fmt.Sprintf("user.f%04d", i), bytes.Repeat([]byte{'x'}, size), 0)
			if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.E2BIG) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if i == 10000 {
				t.Skip("this filesystem's xattr space did not fill up")
			}
		}
	}
}
