package gfidx

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
)

// TestRebuildDeep: a tree deeper than PATH_MAX (200 levels of 40-byte
// names, about 8,200 bytes of path) is rebuilt from: every level is
// indexed under its parent, and the bottom's entries get the usual
// treatment (indexed, missing, swept). A walk by whole paths failed with
// ENAMETOOLONG half-way down.
func TestRebuildDeep(t *testing.T) {
	const levels = 200
	ns := gfid.DefaultNamespace()
	root := t.TempDir()

	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { unix.Close(fd) }()
	var names []string
	var dirGFIDs []gfid.GFID
	for i := range levels {
		name := fmt.Sprintf("level-%03d-", i) + strings.Repeat("y", 30)
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		g := newGFID(t)
		if err := ns.SetAt(fd, name, g); err != nil {
			if i == 0 && gfid.CannotCarry(err) {
				t.Skipf("no %s xattrs here: %v", ns.Prefix(), err)
			}
			t.Fatal(err)
		}
		nfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
		fd = nfd
		names = append(names, name)
		dirGFIDs = append(dirGFIDs, g)
	}
	bottom := strings.Join(names, "/")
	if len(bottom) <= unix.PathMax {
		t.Fatalf("the deep path is only %d bytes", len(bottom))
	}

	// At the bottom: a file with a gfid (indexed), one without (missing),
	// a leftover (swept), a directory without a gfid (missing, and its
	// child with a gfid not visited) and a symlink (missing).
	for _, n := range []string{"f", "nog", "junk.leftover"} {
		if err := unix.Mknodat(fd, n, unix.S_IFREG|0o644, 0); err != nil {
			t.Fatal(err)
		}
	}
	fg := newGFID(t)
	if err := ns.SetAt(fd, "f", fg); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkdirat(fd, "nogdir", 0o755); err != nil {
		t.Fatal(err)
	}
	nfd, err := unix.Openat(fd, "nogdir", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	yg := newGFID(t)
	err = unix.Mknodat(nfd, "y", unix.S_IFREG|0o644, 0)
	if err == nil {
		err = ns.SetAt(nfd, "y", yg)
	}
	unix.Close(nfd)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Symlinkat("f", fd, "sym"); err != nil {
		t.Fatal(err)
	}

	ix, _ := openIndex(t)
	indexed, missing, err := ix.Rebuild(root, ns, nil, func(name string) bool { return strings.HasSuffix(name, ".leftover") })
	if err != nil {
		t.Fatal(err)
	}
	if indexed != levels+1 || missing != 3 {
		t.Errorf("Rebuild = %d indexed, %d missing; want %d and 3", indexed, missing, levels+1)
	}
	for i, g := range dirGFIDs {
		want := strings.Join(names[:i+1], "/")
		if p, err := path(t, ix, g); err != nil || p != want {
			t.Fatalf("Path(level %d) = %q (%d bytes), %v; want %d bytes", i, p, len(p), err, len(want))
		}
	}
	if p, err := path(t, ix, fg); err != nil || p != bottom+"/f" {
		t.Errorf("Path(bottom file) = %q, %v", p, err)
	}
	if got := links(t, ix, yg); len(got) != 0 {
		t.Errorf("the child of a directory without a gfid was indexed: %v", got)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(fd, "junk.leftover", &st, unix.AT_SYMLINK_NOFOLLOW); !errors.Is(err, unix.ENOENT) {
		t.Errorf("the leftover at the bottom was not swept: %v", err)
	}
	if err := unix.Fstatat(fd, "nog", &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Errorf("a file that is not a leftover was removed: %v", err)
	}
}
