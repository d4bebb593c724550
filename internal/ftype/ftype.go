// Package ftype names the type of a file, from its st_mode, as georep's
// messages do ("regular file", "directory", ...): one vocabulary for the
// slave's errors and verify's differences.
package ftype

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Name names the file type in mode's type bits.
func Name(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "regular file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFSOCK:
		return "socket"
	}
	return fmt.Sprintf("file of type %o", mode&unix.S_IFMT)
}
