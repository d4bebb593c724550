package xattrat

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestAgainstPaths: Get, List and Set agree with the path calls on the
// same entries, do not follow a final symlink, report sizes with an empty
// buffer and ERANGE with a short one.
func TestAgainstPaths(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)

	val := bytes.Repeat([]byte{0, 1, 2, 0xff}, 300)
	if err := Set(dfd, "f", "user.a", val, unix.XATTR_CREATE); err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			t.Skip("no user xattrs here")
		}
		t.Fatal(err)
	}
	if err := Set(dfd, "f", "user.a", val, unix.XATTR_CREATE); !errors.Is(err, unix.EEXIST) {
		t.Fatalf("XATTR_CREATE over an existing xattr: %v, want EEXIST", err)
	}
	if err := Set(dfd, "f", "user.empty", nil, 0); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 2000)
	n, err := unix.Lgetxattr(f, "user.a", want)
	if err != nil || !bytes.Equal(want[:n], val) {
		t.Fatalf("path read back %d bytes, %v", n, err)
	}

	buf := make([]byte, 2000)
	if n, err := Get(dfd, "f", "user.a", buf); err != nil || !bytes.Equal(buf[:n], val) {
		t.Fatalf("Get: %d bytes, %v", n, err)
	}
	if n, err := Get(dfd, "f", "user.a", nil); err != nil || n != len(val) {
		t.Fatalf("Get size: %d, %v; want %d", n, err, len(val))
	}
	if _, err := Get(dfd, "f", "user.a", make([]byte, 3)); !errors.Is(err, unix.ERANGE) {
		t.Fatalf("Get into a short buffer: %v, want ERANGE", err)
	}
	if n, err := Get(dfd, "f", "user.empty", buf); err != nil || n != 0 {
		t.Fatalf("Get of an empty value: %d, %v", n, err)
	}
	if _, err := Get(dfd, "f", "user.none", buf); !errors.Is(err, unix.ENODATA) {
		t.Fatalf("Get of a missing xattr: %v, want ENODATA", err)
	}
	if _, err := Get(dfd, "l", "user.a", buf); !errors.Is(err, unix.ENODATA) {
		t.Fatalf("Get through a symlink: %v, want ENODATA (not followed)", err)
	}
	if _, err := Get(dfd, "missing", "user.a", buf); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("Get of a missing entry: %v, want ENOENT", err)
	}

	n, err = List(dfd, "f", buf)
	if err != nil {
		t.Fatal(err)
	}
	pn, err := unix.Llistxattr(f, want)
	if err != nil || !bytes.Equal(buf[:n], want[:pn]) {
		t.Fatalf("List %q, path list %q (%v)", buf[:n], want[:pn], err)
	}
	if got := strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00"); len(got) < 2 {
		t.Fatalf("List gave %q", got)
	}
	if sz, err := List(dfd, "f", nil); err != nil || sz != n {
		t.Fatalf("List size: %d, %v; want %d", sz, err, n)
	}
	if _, err := List(dfd, "f", make([]byte, 2)); !errors.Is(err, unix.ERANGE) {
		t.Fatalf("List into a short buffer: %v, want ERANGE", err)
	}
	ln, err := List(dfd, "l", buf)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf[:ln], []byte("user.a")) {
		t.Fatalf("List followed the symlink: %q", buf[:ln])
	}
}

// TestProcFallback: the /proc path calls, used where the kernel lacks the
// *at ones, give the same answers.
func TestProcFallback(t *testing.T) {
	if !unsupported(unix.ENOSYS) || !unsupported(errNoCall) || unsupported(unix.ENODATA) {
		t.Fatal("unsupported() misclassifies")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	if err := procSet(dfd, "f", "user.b", []byte("v"), 0); err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			t.Skip("no user xattrs here")
		}
		t.Fatal(err)
	}
	a, b := make([]byte, 100), make([]byte, 100)
	na, erra := Get(dfd, "f", "user.b", a)
	nb, errb := procGet(dfd, "f", "user.b", b)
	if erra != nil || errb != nil || !bytes.Equal(a[:na], b[:nb]) || string(b[:nb]) != "v" {
		t.Fatalf("Get %q %v, procGet %q %v", a[:na], erra, b[:nb], errb)
	}
	na, erra = List(dfd, "f", a)
	nb, errb = procList(dfd, "f", b)
	if erra != nil || errb != nil || !bytes.Equal(a[:na], b[:nb]) {
		t.Fatalf("List %q %v, procList %q %v", a[:na], erra, b[:nb], errb)
	}
	if _, err := procGet(dfd, "f", "user.none", b); !errors.Is(err, unix.ENODATA) {
		t.Fatalf("procGet of a missing xattr: %v", err)
	}
}
