// Package xattrs reads extended attributes and says which of them georep
// replicates. Master and slave share it so that both sides agree on the set.
package xattrs

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/xattrat"
)

// POSIX ACLs, as the kernel stores them: entries name users and groups by
// number, so replicated as they are they keep the numeric ids (as owners
// do).
const (
	ACLAccess  = "system.posix_acl_access"
	ACLDefault = "system.posix_acl_default" // directories only
)

// IsACL reports whether name is a POSIX ACL.
func IsACL(name string) bool { return name == ACLAccess || name == ACLDefault }

// Replicated reports whether an xattr name is data that georep copies: the
// user namespace and POSIX ACLs always (an owner may set the ACLs of its
// files, naming any id); the trusted and security namespaces (as rsync -X
// does) only between privileged processes, which alone may read and write
// them; never georep's own marks, nor security.selinux, which belongs to
// the slave host's policy.
func Replicated(name string, privileged bool) bool {
	switch {
	case gfid.Owns(name):
		return false
	case strings.HasPrefix(name, "user."), IsACL(name):
		return true
	case !privileged:
		return false
	case name == "security.selinux":
		return false
	}
	return strings.HasPrefix(name, "trusted.") || strings.HasPrefix(name, "security.")
}

// List returns the xattrs at path whose names keep accepts. follow says
// whether a final symlink is followed (set only for /proc/self/fd/N names
// of open files and directories, which must be followed to reach them). A
// filesystem without xattrs has none.
func List(path string, follow bool, keep func(name string) bool) (map[string][]byte, error) {
	list, get := unix.Llistxattr, unix.Lgetxattr
	if follow {
		list, get = unix.Listxattr, unix.Getxattr
	}
	return listWith(func(b []byte) (int, error) { return list(path, b) },
		func(n string, b []byte) (int, error) { return get(path, n, b) }, keep)
}

// ListAt is List of name in directory dirfd, not followed (through the
// *xattrat system calls: no /proc path to resolve per entry).
func ListAt(dirfd int, name string, keep func(name string) bool) (map[string][]byte, error) {
	return listWith(func(b []byte) (int, error) { return xattrat.List(dirfd, name, b) },
		func(n string, b []byte) (int, error) { return xattrat.Get(dirfd, name, n, b) }, keep)
}

// ListFD is List of an open file or directory (not an O_PATH descriptor).
func ListFD(fd int, keep func(name string) bool) (map[string][]byte, error) {
	return listWith(func(b []byte) (int, error) { return unix.Flistxattr(fd, b) },
		func(n string, b []byte) (int, error) { return unix.Fgetxattr(fd, n, b) }, keep)
}

func listWith(list func([]byte) (int, error), get func(string, []byte) (int, error), keep func(name string) bool) (map[string][]byte, error) {
	buf := make([]byte, 1024)
	var n int
	var err error
	for {
		n, err = list(buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		break
	}
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing xattrs: %w", err)
	}
	out := map[string][]byte{}
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" || !keep(name) {
			continue
		}
		v, err := value(get, name)
		if errors.Is(err, unix.ENODATA) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, nil
}

func value(get func(string, []byte) (int, error), name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := get(name, buf)
		if errors.Is(err, unix.ERANGE) {
			sz, err := get(name, nil)
			if err != nil {
				return nil, fmt.Errorf("reading xattr %q: %w", name, err)
			}
			buf = make([]byte, sz+1)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading xattr %q: %w", name, err)
		}
		return append([]byte(nil), buf[:n]...), nil
	}
}

// Names returns the names of m, sorted.
func Names(m map[string][]byte) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
