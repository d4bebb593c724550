// Package beneath confines file access to a directory tree. A Root is an
// open directory; every path handed to it is resolved with openat2(2) and
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS, so that "..",
// absolute paths and symlinks anywhere on the way are refused by the
// kernel, not by string checks that a concurrent rename could outwit. Final
// names are single components checked by ValidName and used with
// *at(2) calls on the parent's descriptor, never followed.
package beneath

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrEscape says a path would leave the root or pass through a symlink.
var ErrEscape = errors.New("beneath: path escapes the root or passes through a symlink")

// ErrInvalid says a name or path is malformed.
var ErrInvalid = errors.New("beneath: invalid name")

// Root is an open directory that confines every operation made through it.
type Root struct {
	fd   int
	path string
}

// Open opens dir as a Root.
func Open(dir string) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("beneath: opening root %s: %w", dir, err)
	}
	return &Root{fd: fd, path: dir}, nil
}

// Close closes the root's descriptor.
func (r *Root) Close() error { return unix.Close(r.fd) }

// FD is the root directory's descriptor; it stays owned by r.
func (r *Root) FD() int { return r.fd }

// Path is the root's path, for messages.
func (r *Root) Path() string { return r.path }

// CheckRel validates a relative slash-separated path: "." or components
// that are each a valid name.
func CheckRel(rel string) error {
	if rel == "." {
		return nil
	}
	if rel == "" || strings.HasPrefix(rel, "/") {
		return fmt.Errorf("%w: path %q is not relative", ErrInvalid, rel)
	}
	for _, c := range strings.Split(rel, "/") {
		if err := ValidName(c); err != nil {
			return fmt.Errorf("%w: path %q: %v", ErrInvalid, rel, err)
		}
	}
	return nil
}

func classify(err error, what string) error {
	if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ELOOP) {
		return fmt.Errorf("%s: %w (%v)", what, ErrEscape, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// OpenDir opens the directory at rel beneath the root and returns its
// descriptor (the caller closes it).
func (r *Root) OpenDir(rel string) (int, error) {
	return r.Open(rel, unix.O_RDONLY|unix.O_DIRECTORY)
}

// Open opens rel beneath the root with flags (O_CLOEXEC and O_NOFOLLOW are
// added) and returns the descriptor.
func (r *Root) Open(rel string, flags int) (int, error) {
	if err := CheckRel(rel); err != nil {
		return -1, err
	}
	// A path longer than the kernel takes in one call (PATH_MAX, 4096
	// bytes with its NUL) is opened a piece at a time, each piece beneath
	// the directory the one before opened (which is beneath the root): a
	// tree may be deeper than one path can name.
	dir, owned := r.fd, false
	defer func() {
		if owned {
			unix.Close(dir)
		}
	}()
	rest := rel
	for len(rest) > maxPiece {
		cut := strings.LastIndexByte(rest[:maxPiece], '/')
		if cut <= 0 {
			return -1, fmt.Errorf("beneath: opening %q: %w", rel, unix.ENAMETOOLONG)
		}
		fd, err := openat2(dir, rest[:cut], unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return -1, classify(err, fmt.Sprintf("beneath: opening %q", rel))
		}
		if owned {
			unix.Close(dir)
		}
		dir, owned = fd, true
		rest = rest[cut+1:]
	}
	fd, err := openat2(dir, rest, flags)
	if err != nil {
		return -1, classify(err, fmt.Sprintf("beneath: opening %q", rel))
	}
	return fd, nil
}

// maxPiece is the longest path Open hands to one openat2 call: well
// under PATH_MAX.
const maxPiece = 3072

// openat2 opens rel beneath dirfd, confined (see Open).
func openat2(dirfd int, rel string, flags int) (int, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(dirfd, rel, &how)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		return fd, err
	}
}

// ProcPath names entry name of the open directory dirfd through /proc, for
// the l*xattr calls that have no *at form. The final component is not
// followed by those calls; the directory is the one dirfd holds.
func ProcPath(dirfd int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
}

// FDPath names an open file through /proc.
func FDPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// Lstat stats name in dirfd without following it.
func Lstat(dirfd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}

// Chmod sets the permission bits of name in dirfd without following it
// (dirfd AT_FDCWD and an absolute name work too, and are followed only
// when follow is set). fchmodat2(2) does this since Linux 6.6; on older
// kernels the entry is opened with O_PATH|O_NOFOLLOW, checked not to be a
// symlink, and changed through its /proc/self/fd magic link, which names
// that very inode.
func Chmod(dirfd int, name string, mode uint32, follow bool) error {
	if follow {
		return unix.Fchmodat(dirfd, name, mode, 0)
	}
	err := unix.Fchmodat(dirfd, name, mode, unix.AT_SYMLINK_NOFOLLOW)
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	return chmodByPath(dirfd, name, mode)
}

// chmodByPath is Chmod for kernels without fchmodat2.
func chmodByPath(dirfd int, name string, mode uint32) error {
	fd, oerr := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if oerr != nil {
		return oerr
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return unix.EOPNOTSUPP // symlinks have no mode of their own
	}
	return unix.Chmod(FDPath(fd), mode)
}

// ReadNames lists the directory open as fd, through a duplicate of it (fd
// stays open, its offset untouched).
func ReadNames(fd int) ([]string, error) {
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, fmt.Errorf("beneath: dup: %w", err)
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	if _, err := f.Seek(0, 0); err != nil {
		return nil, fmt.Errorf("beneath: rewinding directory: %w", err)
	}
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("beneath: listing directory: %w", err)
	}
	return names, nil
}

// MaxNameLen is the longest name of one path component (NAME_MAX).
const MaxNameLen = 255

// ValidName reports why name cannot be a single path component, or nil.
func ValidName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case name == "." || name == "..":
		return fmt.Errorf("name %q is not allowed", name)
	case len(name) > MaxNameLen:
		return fmt.Errorf("name of %d bytes exceeds %d", len(name), MaxNameLen)
	case strings.IndexByte(name, '/') >= 0:
		return fmt.Errorf("name %q contains '/'", name)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("name %q contains NUL", name)
	}
	return nil
}
