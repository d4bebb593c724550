package beneath_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/beneath"
)

// layout builds <base>/root with a/b/file, a symlink "in" -> "a" (inside),
// "out" -> the sibling <base>/outside, "abs" -> /, a final symlink to a file,
// and returns the opened root.
func layout(t *testing.T) (*beneath.Root, string, string) {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{filepath.Join(root, "a", "b"), filepath.Join(outside, "b")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{filepath.Join(root, "a", "b", "file"), filepath.Join(outside, "secret"), filepath.Join(outside, "b", "file")} {
		if err := os.WriteFile(p, []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"in":       "a",
		"out":      "../outside",
		"outabs":   outside,
		"abs":      "/",
		"a/up":     "..",
		"a/b/flnk": "file",
		"a/b/dotd": ".",
		"proc":     "/proc/self/root",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := beneath.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, root, outside
}

func closeFD(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

func TestOpenInside(t *testing.T) {
	r, root, _ := layout(t)
	if r.Path() != root || r.FD() < 0 {
		t.Fatalf("Path %q FD %d", r.Path(), r.FD())
	}
	fd, err := r.Open("a/b/file", unix.O_RDONLY)
	if err != nil {
		t.Fatalf("Open a/b/file: %v", err)
	}
	buf := make([]byte, 256)
	n, _ := unix.Read(fd, buf)
	closeFD(fd)
	if want := filepath.Join(root, "a", "b", "file"); string(buf[:n]) != want {
		t.Fatalf("read %q", buf[:n])
	}
	for _, rel := range []string{".", "a", "a/b"} {
		fd, err := r.OpenDir(rel)
		if err != nil {
			t.Fatalf("OpenDir %q: %v", rel, err)
		}
		closeFD(fd)
	}
	// Descriptors are close-on-exec.
	fd, err = r.OpenDir("a")
	if err != nil {
		t.Fatal(err)
	}
	defer closeFD(fd)
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
		t.Fatalf("fd flags %x %v", fl, err)
	}
	// OpenDir of a file is an ordinary error, neither escape nor invalid.
	_, err = r.OpenDir("a/b/file")
	if !errors.Is(err, unix.ENOTDIR) || errors.Is(err, beneath.ErrEscape) || errors.Is(err, beneath.ErrInvalid) {
		t.Fatalf("OpenDir of a file: %v", err)
	}
	_, err = r.Open("a/missing", unix.O_RDONLY)
	if !errors.Is(err, unix.ENOENT) || errors.Is(err, beneath.ErrEscape) {
		t.Fatalf("Open of a missing file: %v", err)
	}
}

func TestOpenRefusesInvalid(t *testing.T) {
	r, _, _ := layout(t)
	for _, rel := range []string{
		"", "..", "../outside", "../outside/secret", "a/../../outside/secret", "a/..", "a/../a",
		"/", "/etc/passwd", "/proc/self/root", "./a", "a/./b", "a//b", "a/", "a/b/", "a\x00b",
		strings.Repeat("x", 256), "a/" + strings.Repeat("x", 256),
	} {
		for _, open := range []struct {
			name string
			fn   func(string) (int, error)
		}{
			{"Open", func(p string) (int, error) { return r.Open(p, unix.O_RDONLY) }},
			{"OpenDir", r.OpenDir},
		} {
			fd, err := open.fn(rel)
			closeFD(fd)
			if err == nil || fd != -1 {
				t.Errorf("%s(%q) succeeded", open.name, rel)
				continue
			}
			if !errors.Is(err, beneath.ErrInvalid) {
				t.Errorf("%s(%q): %v, want ErrInvalid", open.name, rel, err)
			}
		}
	}
}

func TestOpenRefusesSymlinks(t *testing.T) {
	r, _, _ := layout(t)
	cases := []struct {
		rel string
		dir bool
	}{
		{"in/b/file", false}, // through a symlink pointing inside
		{"in/b", true},
		{"out/secret", false}, // through a symlink pointing outside
		{"out/b", true},
		{"outabs/secret", false},
		{"abs/etc/passwd", false},
		{"abs/etc", true},
		{"a/up/a/b/file", false}, // a symlink to ".."
		{"a/up/a", true},
		{"a/b/dotd/file", false}, // a symlink to "."
		{"proc/etc/passwd", false},
		{"in", false},       // a final symlink, not followed
		{"a/b/flnk", false}, // final symlink to a file
		{"out", false},      // final symlink to the outside
		{"a/b/dotd/flnk", false},
	}
	for _, c := range cases {
		fd, err := r.Open(c.rel, unix.O_RDONLY)
		closeFD(fd)
		if err == nil {
			t.Errorf("Open(%q) succeeded", c.rel)
		} else if !errors.Is(err, beneath.ErrEscape) {
			t.Errorf("Open(%q): %v, want ErrEscape", c.rel, err)
		}
		if c.dir {
			fd, err := r.OpenDir(c.rel)
			closeFD(fd)
			if err == nil {
				t.Errorf("OpenDir(%q) succeeded", c.rel)
			} else if !errors.Is(err, beneath.ErrEscape) {
				t.Errorf("OpenDir(%q): %v, want ErrEscape", c.rel, err)
			}
		}
	}
}

// TestOpenDirFinalSymlink: OpenDir of a path whose last component is a
// symlink (to a directory inside or outside) must fail without following it.
func TestOpenDirFinalSymlink(t *testing.T) {
	r, _, _ := layout(t)
	for _, rel := range []string{"in", "out", "outabs", "abs", "a/up", "a/b/dotd"} {
		fd, err := r.OpenDir(rel)
		closeFD(fd)
		if err == nil {
			t.Errorf("OpenDir(%q) followed the symlink", rel)
			continue
		}
		// The kernel says ENOTDIR for O_DIRECTORY|O_NOFOLLOW on a symlink;
		// either classification keeps the caller out.
		if !errors.Is(err, beneath.ErrEscape) && !errors.Is(err, unix.ENOTDIR) {
			t.Errorf("OpenDir(%q): %v", rel, err)
		}
		if !errors.Is(err, beneath.ErrEscape) {
			t.Logf("note: OpenDir(%q) = %v, not classified as ErrEscape", rel, err)
		}
	}
}

func TestOpenAddsNofollow(t *testing.T) {
	r, root, outside := layout(t)
	// Even asked to write, a final symlink is not followed to the outside.
	fd, err := r.Open("out", unix.O_WRONLY|unix.O_TRUNC)
	closeFD(fd)
	if err == nil {
		t.Fatal("Open for writing of a symlink succeeded")
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != filepath.Join(outside, "secret") {
		t.Fatalf("outside file changed: %q", b)
	}
	// O_PATH|O_NOFOLLOW of a final symlink may give a descriptor of the
	// link itself (openat2 allows that), never of its target.
	fd, err = r.Open("out", unix.O_PATH)
	if err == nil {
		var st unix.Stat_t
		ferr := unix.Fstat(fd, &st)
		closeFD(fd)
		if ferr != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
			t.Fatalf("O_PATH open of a final symlink reached mode %o (%v), not the link", st.Mode, ferr)
		}
	} else if !errors.Is(err, beneath.ErrEscape) {
		t.Fatalf("O_PATH open of a final symlink: %v", err)
	}
	_ = root
}

func TestCheckRel(t *testing.T) {
	good := []string{".", "a", "a/b", "a/b/c", ".a", "a.", "...", "a/...", "a b/c\td", "caf\xe9", strings.Repeat("x", 255),
		strings.Repeat("x", 255) + "/" + strings.Repeat("y", 255), "-", "%", "\\", "a\\..\\b"}
	bad := []string{"", "/", "/a", "//a", "a/", "a//b", "./a", "a/.", "a/./b", "..", "../a", "a/..", "a/../b",
		"a\x00", "\x00", strings.Repeat("x", 256), "a/" + strings.Repeat("x", 256), "./", "/."}
	for _, p := range good {
		if err := beneath.CheckRel(p); err != nil {
			t.Errorf("CheckRel(%q): %v", p, err)
		}
	}
	for _, p := range bad {
		err := beneath.CheckRel(p)
		if err == nil {
			t.Errorf("CheckRel(%q) accepted it", p)
		} else if !errors.Is(err, beneath.ErrInvalid) {
			t.Errorf("CheckRel(%q): %v does not wrap ErrInvalid", p, err)
		}
	}
}

func TestProcPathAndLstat(t *testing.T) {
	r, root, _ := layout(t)
	dfd, err := r.OpenDir("a/b")
	if err != nil {
		t.Fatal(err)
	}
	defer closeFD(dfd)
	if got, want := beneath.ProcPath(dfd, "flnk"), "/proc/self/fd/"+strconv.Itoa(dfd)+"/flnk"; got != want {
		t.Fatalf("ProcPath %q, want %q", got, want)
	}
	if got, want := beneath.FDPath(dfd), "/proc/self/fd/"+strconv.Itoa(dfd); got != want {
		t.Fatalf("FDPath %q, want %q", got, want)
	}
	// ProcPath names the entry through the descriptor.
	var st unix.Stat_t
	if err := unix.Lstat(beneath.ProcPath(dfd, "flnk"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Fatalf("lstat through ProcPath: %v mode %o", err, st.Mode)
	}
	// Lstat does not follow.
	st, err = beneath.Lstat(dfd, "flnk")
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Fatalf("Lstat: %v mode %o", err, st.Mode)
	}
	st, err = beneath.Lstat(r.FD(), "out")
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Fatalf("Lstat out: %v mode %o", err, st.Mode)
	}
	if _, err := beneath.Lstat(dfd, "missing"); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("Lstat missing: %v", err)
	}
	_ = root
}

func TestOpenRootErrors(t *testing.T) {
	base := t.TempDir()
	if _, err := beneath.Open(filepath.Join(base, "missing")); err == nil {
		t.Fatal("Open of a missing root succeeded")
	}
	file := filepath.Join(base, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := beneath.Open(file); err == nil {
		t.Fatal("Open of a file as root succeeded")
	}
}

func FuzzCheckRel(f *testing.F) {
	for _, s := range []string{".", "..", "a", "a/b", "/", "/a", "a/", "a//b", "a/../b", "a\x00b", "", "./a", "a/.",
		strings.Repeat("x", 255), strings.Repeat("x", 256), "...", "a/...", "\xff\xfe"} {
		f.Add(s)
	}
	base := f.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{filepath.Join(root, "a", "b"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			f.Fatal(err)
		}
	}
	if err := os.Symlink("../outside", filepath.Join(root, "out")); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink("..", filepath.Join(root, "a", "up")); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), nil, 0o644); err != nil {
		f.Fatal(err)
	}
	r, err := beneath.Open(root)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { r.Close() })
	f.Fuzz(func(t *testing.T, rel string) {
		err := beneath.CheckRel(rel)
		valid := rel == "."
		if !valid && rel != "" && !strings.HasPrefix(rel, "/") {
			valid = true
			for _, c := range strings.Split(rel, "/") {
				if c == "" || c == "." || c == ".." || len(c) > 255 || strings.IndexByte(c, 0) >= 0 {
					valid = false
				}
			}
		}
		if (err == nil) != valid {
			t.Fatalf("CheckRel(%q) = %v, want valid=%v", rel, err, valid)
		}
		if err != nil {
			if !errors.Is(err, beneath.ErrInvalid) {
				t.Fatalf("CheckRel(%q): %v does not wrap ErrInvalid", rel, err)
			}
		} else {
			if !filepath.IsLocal(rel) || filepath.Clean(rel) != rel {
				t.Fatalf("CheckRel accepted %q, which is not a clean local path", rel)
			}
		}
		// Whatever the path, what Open returns is beneath the root.
		fd, oerr := r.Open(rel, unix.O_RDONLY)
		if oerr != nil {
			if err != nil && !errors.Is(oerr, beneath.ErrInvalid) {
				t.Fatalf("Open(%q) of an invalid path: %v", rel, oerr)
			}
			return
		}
		defer unix.Close(fd)
		if err != nil {
			t.Fatalf("Open(%q) succeeded on a path CheckRel refuses", rel)
		}
		got, lerr := os.Readlink(beneath.FDPath(fd))
		if lerr != nil {
			t.Fatal(lerr)
		}
		if got != root && !strings.HasPrefix(got, root+"/") {
			t.Fatalf("Open(%q) reached %q, outside %q", rel, got, root)
		}
	})
}
