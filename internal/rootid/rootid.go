// Package rootid tells whether two replicated roots are one directory or
// nested, when master and slave run on one kernel: a tree replicated into
// itself (the same directory given as both roots, or one inside the other)
// feeds on its own writes for ever. Each end says where its root is (the
// kernel's boot id, the root's device and inode); each checks whether the
// other's root is its own or one of its ancestors.
package rootid

import (
	"bytes"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ID says where a root is.
type ID struct {
	Boot     []byte // the running kernel's boot id: inodes compare only within one
	Dev, Ino uint64
}

// bootIDPath is where Linux says which boot this is.
const bootIDPath = "/proc/sys/kernel/random/boot_id"

// Of is the ID of the directory open as fd. Without a boot id (no /proc)
// Boot is empty and the ID matches nothing.
func Of(fd int) (ID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return ID{}, fmt.Errorf("rootid: stat: %w", err)
	}
	boot, _ := os.ReadFile(bootIDPath)
	return ID{Boot: bytes.TrimSpace(boot), Dev: st.Dev, Ino: st.Ino}, nil
}

// maxDepth bounds the walk up to the filesystem root.
const maxDepth = 4096

// Within reports whether the directory open as fd is the directory other
// says, or lies inside it: other is fd itself or one of its ancestors.
func Within(fd int, other ID) (bool, error) {
	me, err := Of(fd)
	if err != nil {
		return false, err
	}
	if len(me.Boot) == 0 || !bytes.Equal(me.Boot, other.Boot) {
		return false, nil
	}
	cur, err := unix.Dup(fd)
	if err != nil {
		return false, fmt.Errorf("rootid: %w", err)
	}
	defer func() { unix.Close(cur) }()
	for range maxDepth {
		var st unix.Stat_t
		if err := unix.Fstat(cur, &st); err != nil {
			return false, fmt.Errorf("rootid: stat: %w", err)
		}
		if st.Dev == other.Dev && st.Ino == other.Ino {
			return true, nil
		}
		up, err := unix.Openat(cur, "..", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return false, fmt.Errorf("rootid: opening a parent: %w", err)
		}
		var ust unix.Stat_t
		if err := unix.Fstat(up, &ust); err != nil {
			unix.Close(up)
			return false, fmt.Errorf("rootid: stat: %w", err)
		}
		unix.Close(cur)
		cur = up
		if ust.Dev == st.Dev && ust.Ino == st.Ino {
			return false, nil // the filesystem root (or this mount namespace's)
		}
	}
	return false, nil
}
