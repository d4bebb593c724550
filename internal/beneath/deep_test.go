package beneath_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/beneath"
)

// chain makes levels nested directories named name under dir (with
// *at calls: the whole path is longer than PATH_MAX) and returns the
// relative path of the deepest.
func chain(t *testing.T, dir string, name string, levels int) string {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	parts := make([]string, 0, levels)
	for range levels {
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		nfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
		fd = nfd
		parts = append(parts, name)
	}
	if err := unix.Mknodat(fd, "leaf", unix.S_IFREG|0o644, 0); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	return strings.Join(parts, "/")
}

// TestOpenBeyondPathMax: a tree deeper than one path can name (200 levels
// of 40-byte names: 8,200 bytes) is opened piece by piece, still confined:
// a symlink anywhere on the way is refused, in any piece. Before, such a
// path failed with ENAMETOOLONG, and the master retried its batch for
// ever (issue 17).
func TestOpenBeyondPathMax(t *testing.T) {
	base := t.TempDir()
	t.Cleanup(func() { os.RemoveAll(base) })
	name := strings.Repeat("n", 40)
	rel := chain(t, base, name, 200)
	if len(rel) < 8000 {
		t.Fatalf("path of %d bytes", len(rel))
	}
	r, err := beneath.Open(base)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fd, err := r.OpenDir(rel)
	if err != nil {
		t.Fatalf("opening a %d-byte path: %v", len(rel), err)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(fd, "leaf", &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Errorf("the leaf is not in the directory opened: %v", err)
	}
	unix.Close(fd)
	fd, err = r.Open(rel+"/leaf", unix.O_RDONLY)
	if err != nil {
		t.Fatalf("opening the leaf: %v", err)
	}
	unix.Close(fd)

	// A symlink at level 150 (in the second piece), pointing outside.
	parts := strings.Split(rel, "/")
	mid := strings.Join(parts[:149], "/")
	dfd, err := r.OpenDir(mid)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Renameat(dfd, name, dfd, "real"); err != nil {
		t.Fatal(err)
	}
	if err := unix.Symlinkat("/", dfd, name); err != nil {
		t.Fatal(err)
	}
	unix.Close(dfd)
	if _, err := r.OpenDir(rel); !errors.Is(err, beneath.ErrEscape) {
		t.Errorf("a symlink at level 150 of a long path: %v, want ErrEscape", err)
	}
	if _, err := r.OpenDir(rel + "/../" + name); !errors.Is(err, beneath.ErrInvalid) {
		t.Errorf(`".." in a long path: %v, want ErrInvalid`, err)
	}
}
