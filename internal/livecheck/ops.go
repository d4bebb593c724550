// Package livecheck is test support for the live path's deterministic
// harness (master/harness_test.go): seeded scripts of changes to a tree
// (the ops of a busy user, with the awkward names and interleavings that
// sustained churn makes) interleaved with the master's own steps (record,
// cut a segment, apply a batch, change the tree in the middle of one,
// crash), and a shrinker that cuts a failing script down to a short one.
//
// Ops are plain values: an op names its paths and parameters, so a script
// replays the same on a fresh tree, and a shorter script (some ops left
// out) still applies: an op whose target is not there is skipped.
package livecheck

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// OpKind is a kind of change.
type OpKind int

// The ops.
const (
	Create      OpKind = iota // a new file of N bytes (content from Seed)
	Write                     // N bytes at offset Off (may extend the file)
	Truncate                  // to N bytes
	Rename                    // Path to Dest, over what is there (a file, an empty directory)
	Link                      // a hard link Dest to Path
	Symlink                   // Dest -> Target
	Mkfifo                    // Dest
	Unlink                    // Path (not a directory)
	Mkdir                     // Dest
	MkdirChain                // N nested directories "c" under Dest (a mkdir -p)
	RemoveAll                 // Path and all below it (an rm -rf)
	Chmod                     // Path to mode N
	Chown                     // Path to uid N, gid Off (root only; skipped otherwise)
	Utime                     // Path's mtime to N ns (not followed)
	Setxattr                  // user.<Target> = content from Seed, on Path
	Removexattr               // user.<Target> from Path
	Exchange                  // Path and Dest swapped (renameat2 RENAME_EXCHANGE)
	Tmpfile                   // an O_TMPFILE of N bytes linked in at Dest
	PunchHole                 // N bytes at Off deallocated (the size stays)
	Socket                    // a socket node at Dest
	Overwrite                 // N bytes at Off, within the file (its size stays), its mtime put back (tar, rsync -t, cp -p)
	numKinds
)

var kindNames = [numKinds]string{"create", "write", "truncate", "rename", "link", "symlink", "mkfifo", "unlink",
	"mkdir", "mkdir-chain", "rm-rf", "chmod", "chown", "utime", "setxattr", "removexattr",
	"exchange", "tmpfile", "punch-hole", "socket", "overwrite"}

func (k OpKind) String() string {
	if k >= 0 && k < numKinds {
		return kindNames[k]
	}
	return "op(" + strconv.Itoa(int(k)) + ")"
}

// Op is one change. Paths are relative to the tree's root, "/"-separated,
// names raw bytes.
type Op struct {
	Kind       OpKind
	Path, Dest string
	Target     string // a symlink's target, an xattr's name
	N, Off     int64
	Seed       uint64
}

// String renders the op as a Go literal, to paste into a regression test.
func (o Op) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "{Kind: livecheck.%s", goName(o.Kind))
	if o.Path != "" {
		fmt.Fprintf(&b, ", Path: %q", o.Path)
	}
	if o.Dest != "" {
		fmt.Fprintf(&b, ", Dest: %q", o.Dest)
	}
	if o.Target != "" {
		fmt.Fprintf(&b, ", Target: %q", o.Target)
	}
	if o.N != 0 {
		fmt.Fprintf(&b, ", N: %d", o.N)
	}
	if o.Off != 0 {
		fmt.Fprintf(&b, ", Off: %d", o.Off)
	}
	if o.Seed != 0 {
		fmt.Fprintf(&b, ", Seed: %d", o.Seed)
	}
	b.WriteString("}")
	return b.String()
}

func goName(k OpKind) string {
	return [numKinds]string{"Create", "Write", "Truncate", "Rename", "Link", "Symlink", "Mkfifo", "Unlink",
		"Mkdir", "MkdirChain", "RemoveAll", "Chmod", "Chown", "Utime", "Setxattr", "Removexattr",
		"Exchange", "Tmpfile", "PunchHole", "Socket", "Overwrite"}[k]
}

// ErrSkipped says an op did not apply to the tree as it is (its target is
// gone, its name taken): not a failure of the harness.
var ErrSkipped = errors.New("livecheck: op skipped")

// content is n pseudo-random bytes from seed.
func content(n int64, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24), byte(seed >> 32), 7})
	r.Read(b)
	return b
}

// Apply makes op in the tree at root. An op that does not fit the tree
// as it is returns ErrSkipped (wrapping the reason); any other error is a
// fault of the harness.
func Apply(root string, op Op) error {
	p, d := filepath.Join(root, op.Path), filepath.Join(root, op.Dest)
	var err error
	switch op.Kind {
	case Create:
		err = writeFile(d, 0, content(op.N, op.Seed), unix.O_CREAT|unix.O_EXCL)
	case Write:
		err = writeFile(p, op.Off, content(op.N, op.Seed), 0)
	case Truncate:
		err = regular(p, func() error { return unix.Truncate(p, op.N) })
	case Rename:
		err = unix.Rename(p, d)
	case Link:
		err = unix.Link(p, d)
	case Symlink:
		err = unix.Symlink(op.Target, d)
	case Mkfifo:
		err = unix.Mkfifo(d, 0o644)
	case Unlink:
		err = unix.Unlink(p)
	case Mkdir:
		err = unix.Mkdir(d, 0o755)
	case MkdirChain:
		err = unix.Mkdir(d, 0o755)
		for i := int64(1); err == nil && i < op.N; i++ {
			d = filepath.Join(d, "c")
			err = unix.Mkdir(d, 0o755)
		}
	case RemoveAll:
		var st unix.Stat_t
		if err = unix.Lstat(p, &st); err == nil {
			err = os.RemoveAll(p)
		}
	case Chmod:
		var st unix.Stat_t
		if err = unix.Lstat(p, &st); err == nil && st.Mode&unix.S_IFMT != unix.S_IFLNK {
			mode := uint32(op.N) & 0o7777
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				mode |= 0o700 // the harness must still be able to work in it
			}
			err = unix.Chmod(p, mode)
		}
	case Chown:
		if os.Geteuid() != 0 {
			return fmt.Errorf("%w: chown needs root", ErrSkipped)
		}
		err = unix.Lchown(p, int(op.N), int(op.Off))
	case Utime:
		ts := []unix.Timespec{unix.NsecToTimespec(op.N), unix.NsecToTimespec(op.N)}
		err = unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	case Setxattr:
		err = regularOrDir(p, func() error { return unix.Lsetxattr(p, "user."+op.Target, content(op.N, op.Seed), 0) })
	case Removexattr:
		err = regularOrDir(p, func() error { return unix.Lremovexattr(p, "user."+op.Target) })
	case Exchange:
		err = unix.Renameat2(unix.AT_FDCWD, p, unix.AT_FDCWD, d, unix.RENAME_EXCHANGE)
	case Tmpfile:
		err = tmpfile(d, content(op.N, op.Seed))
	case PunchHole:
		err = regular(p, func() error {
			fd, err := unix.Open(p, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, op.Off, op.N)
		})
	case Socket:
		err = unix.Mknod(d, unix.S_IFSOCK|0o644, 0)
	case Overwrite:
		err = overwrite(p, op)
	default:
		return fmt.Errorf("livecheck: unknown op %d", op.Kind)
	}
	if err == nil {
		return nil
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		switch errno {
		case unix.ENOENT, unix.EEXIST, unix.ENOTEMPTY, unix.ENOTDIR, unix.EISDIR, unix.EINVAL, unix.EMLINK,
			unix.ENAMETOOLONG, unix.ENODATA, unix.EPERM, unix.ENOSPC, unix.E2BIG, unix.ELOOP, unix.EXDEV,
			unix.EOPNOTSUPP, unix.EBUSY:
			return fmt.Errorf("%w: %v", ErrSkipped, err)
		}
	}
	return fmt.Errorf("livecheck: %s: %w", op, err)
}

// overwrite writes op.N bytes at op.Off of the file at path, both cut to
// its size, and puts its mtime back: only the content (and the ctime,
// which nobody can set) says it changed.
func overwrite(path string, op Op) error {
	return regular(path, func() error {
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		if st.Size == 0 {
			return unix.EINVAL // nothing to overwrite
		}
		off := op.Off % st.Size
		n := min(max(op.N, 1), st.Size-off)
		data := content(n, op.Seed)
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		var was [1]byte
		_, err = unix.Pread(fd, was[:], off)
		unix.Close(fd)
		if err != nil {
			return err
		}
		data[0] = ^was[0] // never the content it had
		if err := writeFile(path, off, data, 0); err != nil {
			return err
		}
		ts := []unix.Timespec{st.Atim, st.Mtim}
		return unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
}

// tmpfile writes data into an unnamed file in path's directory and links
// it in at path (O_TMPFILE: no event says it was made until it is linked).
func tmpfile(path string, data []byte) error {
	fd, err := unix.Open(filepath.Dir(path), unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for off := 0; off < len(data); {
		n, err := unix.Pwrite(fd, data[off:], int64(off))
		if err != nil {
			return err
		}
		off += n
	}
	return unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
}

func writeFile(path string, off int64, data []byte, flags int) error {
	if flags&unix.O_CREAT == 0 {
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return unix.EISDIR
		}
	}
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|flags, 0o644)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for len(data) > 0 {
		n, err := unix.Pwrite(fd, data, off)
		if err != nil {
			return err
		}
		data, off = data[n:], off+int64(n)
	}
	return nil
}

// regular runs fn when path is a regular file.
func regular(path string, fn func() error) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return unix.EISDIR
	}
	return fn()
}

// regularOrDir runs fn when path is a regular file or a directory (user.*
// xattrs are refused on the rest).
func regularOrDir(path string, fn func() error) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return err
	}
	if t := st.Mode & unix.S_IFMT; t != unix.S_IFREG && t != unix.S_IFDIR {
		return unix.EINVAL
	}
	return fn()
}
