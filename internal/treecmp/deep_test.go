package treecmp

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const (
	deepLevels  = 200
	deepContent = "the bottom file's content"
)

// deepNames are the directory names of a deep tree: 40 bytes each, one per
// level, all different.
func deepNames() []string {
	names := make([]string, deepLevels)
	for i := range names {
		names[i] = fmt.Sprintf("level-%03d-", i) + strings.Repeat("x", 30)
	}
	return names
}

// buildDeep makes, under root, deepLevels nested directories named by
// deepNames with, at the bottom, a file "f", a symlink "l" and a user.*
// xattr on both the file and the bottom directory; then gives every entry
// (root included) the mtime t0. The whole path is longer than PATH_MAX, so
// everything is made through *at calls on a chain of descriptors.
func buildDeep(t *testing.T, root string) {
	t.Helper()
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	fds := []int{fd} // fds[i] is the directory at level i (0: root)
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, name := range deepNames() {
		parent := fds[len(fds)-1]
		must(t, unix.Mkdirat(parent, name, 0o755))
		fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		must(t, err)
		fds = append(fds, fd)
	}
	bottom := fds[len(fds)-1]
	ffd, err := unix.Openat(bottom, "f", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	must(t, err)
	_, err = unix.Write(ffd, []byte(deepContent))
	if err == nil {
		err = unix.Fsetxattr(ffd, "user.deep", []byte("file"), 0)
	}
	unix.Close(ffd)
	if errors.Is(err, unix.ENOTSUP) {
		t.Skipf("file system does not support user xattrs: %v", err)
	}
	must(t, err)
	must(t, unix.Symlinkat("f", bottom, "l"))
	must(t, unix.Fsetxattr(bottom, "user.deep", []byte("dir"), 0))

	// Times last: making an entry changes its parent's mtime.
	ts := []unix.Timespec{t0, t0}
	for _, name := range []string{"f", "l"} {
		must(t, unix.UtimesNanoAt(bottom, name, ts, unix.AT_SYMLINK_NOFOLLOW))
	}
	for i, name := range deepNames() {
		must(t, unix.UtimesNanoAt(fds[i], name, ts, unix.AT_SYMLINK_NOFOLLOW))
	}
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, root, ts, 0))
}

// openDeepBottom opens the bottom directory of a tree made by buildDeep.
func openDeepBottom(t *testing.T, root string) int {
	t.Helper()
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	for _, name := range deepNames() {
		nfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		must(t, err)
		fd = nfd
	}
	return fd
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	must(t, err)
	return len(ents)
}

// TestDeepTree: trees deeper than PATH_MAX (200 levels of 40-byte names,
// about 8,200 bytes of path) are walked, compared, read and snapshotted;
// a whole-path lstat or open would fail with ENAMETOOLONG.
func TestDeepTree(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	buildDeep(t, a)
	buildDeep(t, b)
	bottomRel := strings.Join(deepNames(), "/")
	if len(bottomRel) <= unix.PathMax {
		t.Fatalf("the deep path is only %d bytes", len(bottomRel))
	}
	fileRel := bottomRel + "/f"

	before := openFDs(t)
	diffs, err := Compare(a, b, Options{})
	must(t, err)
	if len(diffs) != 0 {
		t.Fatalf("identical deep trees differ: %v", diffs)
	}
	if n := openFDs(t); n != before {
		t.Errorf("%d descriptors open after Compare, %d before", n, before)
	}

	// Same size, other content: only the contents are read and differ.
	bfd := openDeepBottom(t, b)
	ffd, err := unix.Openat(bfd, "f", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	must(t, err)
	_, err = unix.Pwrite(ffd, []byte("X"), 4)
	unix.Close(ffd)
	must(t, err)
	must(t, unix.UtimesNanoAt(bfd, "f", []unix.Timespec{t0, t0}, unix.AT_SYMLINK_NOFOLLOW))
	// And an xattr value at the bottom, read through /proc/self/fd.
	must(t, unix.Fsetxattr(bfd, "user.deep", []byte("DIR"), 0))
	unix.Close(bfd)

	diffs, err = Compare(a, b, Options{})
	must(t, err)
	want := []Diff{
		{Path: bottomRel, What: `xattr "user.deep": value differs: a="dir" b="DIR"`},
		{Path: fileRel, What: "content differs at offset 4"},
	}
	if len(diffs) != len(want) {
		t.Fatalf("got %d diffs, want %d: %v", len(diffs), len(want), diffs)
	}
	for i := range want {
		if diffs[i] != want[i] {
			t.Errorf("diff %d = %v, want %v", i, diffs[i], want[i])
		}
	}
	if n := openFDs(t); n != before {
		t.Errorf("%d descriptors open after Compare, %d before", n, before)
	}

	snap, err := Snapshot(a, Options{})
	must(t, err)
	if want := 1 + deepLevels + 2; len(snap) != want {
		t.Errorf("Snapshot has %d entries, want %d", len(snap), want)
	}
	var st unix.Stat_t
	afd := openDeepBottom(t, a)
	err = unix.Fstatat(afd, "f", &st, unix.AT_SYMLINK_NOFOLLOW)
	unix.Close(afd)
	must(t, err)
	got, ok := snap[fileRel]
	if !ok || got.Ino != st.Ino || got.Size != int64(len(deepContent)) || got.Mtime != t0.Nano() {
		t.Errorf("Snapshot[bottom file] = %+v (present %v), want ino %d, size %d, mtime %d",
			got, ok, st.Ino, len(deepContent), t0.Nano())
	}
	if _, ok := snap[bottomRel+"/l"]; !ok {
		t.Error("Snapshot lacks the bottom symlink")
	}
	if n := openFDs(t); n != before {
		t.Errorf("%d descriptors open after Snapshot, %d before", n, before)
	}

	// The deep trees go away with t.TempDir's cleanup (os.RemoveAll works
	// relative to descriptors); check that it does, here, on a copy.
	c := t.TempDir()
	buildDeep(t, c)
	must(t, os.RemoveAll(c))
	if _, err := os.Lstat(c); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("os.RemoveAll left the deep tree: %v", err)
	}
}
