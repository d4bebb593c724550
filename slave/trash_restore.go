package slave

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/wire"
	"github.com/georep/georep/internal/xattrs"
)

// What `georep trash list|restore` does, on the slave root's files (the
// slave may be running or not).

// ErrNoTrash says a slave root has no trash (it never ran with one).
var ErrNoTrash = errors.New("no trash")

// ErrIntoReplica refuses a restore into the slave's replica: the master
// would remove it again, unless it has it (RestoreOptions.IntoReplica).
var ErrIntoReplica = errors.New("the destination is inside the slave's replica, where the master would remove it again")

// openTrash opens root and its trash.
func openTrash(root string) (rootfd, top int, err error) {
	rootfd, err = unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, -1, fmt.Errorf("slave root %s: %w", root, err)
	}
	top, err = openTrashTop(rootfd, false)
	if err != nil {
		unix.Close(rootfd)
		if errors.Is(err, unix.ENOENT) {
			return -1, -1, fmt.Errorf("%s: %w (no %s: not a slave root, or its slave never ran with --trash)", root, ErrNoTrash, TrashPath(root))
		}
		return -1, -1, fmt.Errorf("%s: %w", root, err)
	}
	return rootfd, top, nil
}

// ListTrash lists the versions the trash of the slave root root keeps,
// sorted by path then time, with their sizes (a kept directory's tree is
// walked).
func ListTrash(root string) ([]TrashVersion, error) {
	rootfd, top, err := openTrash(root)
	if err != nil {
		return nil, err
	}
	defer unix.Close(rootfd)
	defer unix.Close(top)
	return listVersions(top, func(dirfd int, v *TrashVersion) int64 { return treeSize(dirfd, v.name) })
}

// RestoreOptions say what RestoreTrash restores, and where.
type RestoreOptions struct {
	// Path is the original path, relative to the slave root (as
	// ListTrash gives it), or a path inside a directory kept whole.
	Path string
	// Time picks the version kept at that time; zero picks the newest.
	Time time.Time
	// Dest is where it goes; it must not exist.
	Dest string
	// IntoReplica allows a Dest inside the slave root (never in its
	// reserved directory): the master removes it again at its next
	// crawl of that directory, unless it has it.
	IntoReplica bool
}

// RestoreTrash moves a version out of the trash of the slave root root
// to o.Dest: by a rename, or, when Dest is on another filesystem, a copy
// (then the version is removed). It never overwrites: an existing Dest
// is an error. georep's own xattrs (the gfid) are taken off what it
// restores. It returns the version restored (Path the one asked for).
func RestoreTrash(root string, o RestoreOptions) (TrashVersion, error) {
	want, err := cleanRel(o.Path)
	if err != nil {
		return TrashVersion{}, err
	}
	if o.Dest == "" {
		return TrashVersion{}, errors.New("no destination")
	}
	rootfd, top, err := openTrash(root)
	if err != nil {
		return TrashVersion{}, err
	}
	defer unix.Close(rootfd)
	defer unix.Close(top)
	vs, err := listVersions(top, nil)
	if err != nil {
		return TrashVersion{}, err
	}
	v, sub, err := pickVersion(top, vs, want, o.Time)
	if err != nil {
		return TrashVersion{}, fmt.Errorf("%w in the trash of %s", err, root)
	}
	dest, err := filepath.Abs(o.Dest)
	if err != nil {
		return TrashVersion{}, fmt.Errorf("destination %s: %w", o.Dest, err)
	}
	ddir, dname := filepath.Split(dest)
	if dname == "" || dname == "." || dname == ".." {
		return TrashVersion{}, fmt.Errorf("destination %s: not a name to create", o.Dest)
	}
	if _, err := os.Lstat(dest); err == nil {
		return TrashVersion{}, fmt.Errorf("destination %s exists: restore never overwrites", dest)
	} else if !errors.Is(err, os.ErrNotExist) {
		return TrashVersion{}, fmt.Errorf("destination %s: %w", dest, err)
	}
	realDir, err := filepath.EvalSymlinks(ddir)
	if err != nil {
		return TrashVersion{}, fmt.Errorf("destination directory: %w", err)
	}
	realRoot, err := filepath.Abs(root)
	if err == nil {
		realRoot, err = filepath.EvalSymlinks(realRoot)
	}
	if err != nil {
		return TrashVersion{}, fmt.Errorf("slave root: %w", err)
	}
	if realDir, err = filepath.Abs(realDir); err != nil {
		return TrashVersion{}, fmt.Errorf("destination directory: %w", err)
	}
	rel, err := filepath.Rel(realRoot, realDir)
	if err != nil {
		return TrashVersion{}, fmt.Errorf("is %s inside the slave root: %w", dest, err)
	}
	if rel != ".." && !strings.HasPrefix(rel, "../") {
		if rel == wire.ReservedName || strings.HasPrefix(rel, wire.ReservedName+"/") {
			return TrashVersion{}, fmt.Errorf("destination %s is inside the slave's reserved directory", dest)
		}
		if !o.IntoReplica {
			return TrashVersion{}, fmt.Errorf("%s: %w", dest, ErrIntoReplica)
		}
	}
	dfd, err := unix.Open(realDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return TrashVersion{}, fmt.Errorf("destination directory: %w", err)
	}
	defer unix.Close(dfd)
	sfd, err := openDirs(top, v.dir, false)
	if err != nil {
		return TrashVersion{}, fmt.Errorf("the version of %q: %w", v.Path, err)
	}
	sname := v.name
	if len(sub) > 0 {
		nfd, err := openRaw(sfd, append([]string{v.name}, sub[:len(sub)-1]...))
		unix.Close(sfd)
		if err != nil {
			return TrashVersion{}, fmt.Errorf("%q in the version of %q: %w", want, v.Path, err)
		}
		sfd, sname = nfd, sub[len(sub)-1]
	}
	defer unix.Close(sfd)
	err = renameNoReplace(sfd, sname, dfd, dname)
	switch {
	case errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY):
		return TrashVersion{}, fmt.Errorf("destination %s exists: restore never overwrites", dest)
	case errors.Is(err, unix.EXDEV):
		// Another filesystem: a copy, then the version goes.
		if err := copyEntry(sfd, sname, dfd, dname); err != nil {
			destroyAll(dfd, dname)
			return TrashVersion{}, fmt.Errorf("copying %q to %s: %w", want, dest, err)
		}
		if _, err := destroyAll(sfd, sname); err != nil {
			return TrashVersion{}, fmt.Errorf("copied %q to %s, but removing it from the trash: %w", want, dest, err)
		}
	case err != nil:
		return TrashVersion{}, fmt.Errorf("moving %q to %s: %w", want, dest, err)
	}
	if err := stripOwn(dfd, dname); err != nil {
		return TrashVersion{}, fmt.Errorf("restored %q to %s, but taking georep's xattrs off: %w", want, dest, err)
	}
	if len(sub) > 0 {
		st, _ := beneath.Lstat(dfd, dname)
		v.Path, v.Type, v.Size = want, trashType(st.Mode), -1
	}
	return v, nil
}

// cleanRel checks and cleans a path relative to the slave root.
func cleanRel(p string) (string, error) {
	c := path.Clean("/" + p)[1:]
	if c == "" {
		return "", errors.New("no path to restore")
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("path %q: '..' is not allowed", p)
		}
	}
	return c, nil
}

// pickVersion finds the newest version of want (at t, when not zero):
// one kept under that path, or a directory kept whole that holds it (sub
// its path inside, as names).
func pickVersion(top int, vs []TrashVersion, want string, t time.Time) (TrashVersion, []string, error) {
	var best TrashVersion
	var bestSub []string
	found := false
	for _, v := range vs {
		if !t.IsZero() && !v.Time.Equal(t) {
			continue
		}
		var sub []string
		switch {
		case v.Path == want:
		case v.Type == "dir" && strings.HasPrefix(want, v.Path+"/"):
			sub = strings.Split(want[len(v.Path)+1:], "/")
			fd, err := openDirs(top, v.dir, false)
			if err != nil {
				continue
			}
			pfd, err := openRaw(fd, append([]string{v.name}, sub[:len(sub)-1]...))
			unix.Close(fd)
			if err != nil {
				continue
			}
			_, err = beneath.Lstat(pfd, sub[len(sub)-1])
			unix.Close(pfd)
			if err != nil {
				continue
			}
		default:
			continue
		}
		if !found || v.Time.After(best.Time) || v.Time.Equal(best.Time) && len(sub) < len(bestSub) {
			best, bestSub, found = v, sub, true
		}
	}
	if !found {
		if !t.IsZero() {
			return best, nil, fmt.Errorf("no version of %q kept at %s", want, t.UTC().Format(time.RFC3339Nano))
		}
		return best, nil, fmt.Errorf("no version of %q", want)
	}
	return best, bestSub, nil
}

// openRaw opens the directory names (original names, not encoded) below
// dirfd, never following a symlink.
func openRaw(dirfd int, names []string) (int, error) {
	fd, err := unix.Dup(dirfd)
	if err != nil {
		return -1, err
	}
	for _, n := range names {
		nfd, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, fmt.Errorf("opening %q: %w", n, err)
		}
		fd = nfd
	}
	return fd, nil
}

// stripOwn takes georep's own xattrs (the gfid, marks) off name in dirfd
// and everything below it: restored, it is nobody's replica.
func stripOwn(dirfd int, name string) error {
	p := beneath.ProcPath(dirfd, name)
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err == nil {
		for _, x := range strings.Split(string(buf[:n]), "\x00") {
			if gfid.Owns(x) {
				if err := unix.Lremovexattr(p, x); err != nil && !errors.Is(err, unix.ENODATA) {
					return fmt.Errorf("removing %s of %q: %w", x, name, err)
				}
			}
		}
	}
	st, err := beneath.Lstat(dirfd, name)
	if err != nil || !isDir(&st) {
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %q: %w", name, err)
	}
	defer unix.Close(fd)
	names, err := readNames(fd)
	if err != nil {
		return err
	}
	for _, c := range names {
		if err := stripOwn(fd, c); err != nil {
			return err
		}
	}
	return nil
}

// copyEntry copies name of sdir (and its tree) to dname in ddir, which
// is on another filesystem: content, type, mode, owner (as root), the
// replicated xattrs, times. Hard links within a tree become copies.
func copyEntry(sdir int, name string, ddir int, dname string) error {
	st, err := beneath.Lstat(sdir, name)
	if err != nil {
		return err
	}
	privileged := os.Geteuid() == 0
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		src, err := unix.Openat(sdir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(src)
		dst, err := unix.Openat(ddir, dname, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		defer unix.Close(dst)
		if err := copyData(dst, src); err != nil {
			return fmt.Errorf("copying %q: %w", name, err)
		}
		return finishCopy(dst, src, &st, privileged)
	case unix.S_IFDIR:
		if err := unix.Mkdirat(ddir, dname, 0o700); err != nil {
			return err
		}
		src, err := unix.Openat(sdir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(src)
		dst, err := unix.Openat(ddir, dname, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(dst)
		names, err := readNames(src)
		if err != nil {
			return err
		}
		for _, c := range names {
			if err := copyEntry(src, c, dst, c); err != nil {
				return err
			}
		}
		return finishCopy(dst, src, &st, privileged)
	case unix.S_IFLNK:
		target, err := readlinkAt(sdir, name)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(target, ddir, dname); err != nil {
			return err
		}
	default:
		if err := unix.Mknodat(ddir, dname, st.Mode&unix.S_IFMT|0o600, int(st.Rdev)); err != nil {
			return fmt.Errorf("making %q: %w", name, err)
		}
		if err := beneath.Chmod(ddir, dname, st.Mode&0o7777, false); err != nil {
			return err
		}
	}
	if privileged {
		unix.Fchownat(ddir, dname, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			beneath.Chmod(ddir, dname, st.Mode&0o7777, false) // after chown (setuid)
		}
	}
	return unix.UtimesNanoAt(ddir, dname, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
}

// finishCopy gives dst (a copy of src, st its stat) src's owner (as
// root), mode, replicated xattrs and times.
func finishCopy(dst, src int, st *unix.Stat_t, privileged bool) error {
	if privileged {
		unix.Fchown(dst, int(st.Uid), int(st.Gid))
	}
	if xs, err := xattrs.ListFD(src, func(n string) bool { return Replicated(n, privileged) }); err == nil {
		for _, n := range xattrs.Names(xs) {
			unix.Fsetxattr(dst, n, xs[n], 0) // what the destination can hold
		}
	}
	if err := unix.Fchmod(dst, st.Mode&0o7777); err != nil {
		return err
	}
	return futimens(dst, [2]unix.Timespec{st.Atim, st.Mtim})
}

// copyData copies src's content to dst, across filesystems.
func copyData(dst, src int) error {
	for {
		n, err := unix.CopyFileRange(src, nil, dst, nil, 1<<30, 0)
		if err != nil {
			break // another filesystem type, an old kernel: read and write
		}
		if n == 0 {
			return nil
		}
	}
	if _, err := unix.Seek(src, 0, io.SeekStart); err != nil {
		return err
	}
	if _, err := unix.Seek(dst, 0, io.SeekStart); err != nil {
		return err
	}
	if err := unix.Ftruncate(dst, 0); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for {
		n, err := unix.Read(src, buf)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		for w := 0; w < n; {
			m, err := unix.Write(dst, buf[w:n])
			if err != nil {
				return err
			}
			w += m
		}
	}
}
