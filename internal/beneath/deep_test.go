package beneath_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/testenv"
)

// TestOpenBeyondPathMax: a tree deeper than one path can name (200 levels
// of 40-byte names: 8,200 bytes) is opened piece by piece, still confined:
// a symlink anywhere on the way is refused, in any piece. Before, such a
// path failed with ENAMETOOLONG, and the master retried its batch for
// ever (issue 17).
func TestOpenBeyondPathMax(t *testing.T) {
	base := t.TempDir()
	t.Cleanup(func() { os.RemoveAll(base) })
	name := strings.Repeat("n", 40)
	rel := testenv.MkdirChain(t, base, name, 200, "")
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
	if err := unix.Fstatat(fd, "bottom", &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Errorf("the bottom file is not in the directory opened: %v", err)
	}
	unix.Close(fd)
	fd, err = r.Open(rel+"/bottom", unix.O_RDONLY)
	if err != nil {
		t.Fatalf("opening the bottom file: %v", err)
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
