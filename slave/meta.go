package slave

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/ftype"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/xattrs"
	pb "github.com/georep/georep/proto/georep/v1"
)

// metaReq is a validated MetaOp.
type metaReq struct {
	g              gfid.GFID
	mode, uid, gid uint32
	atime, mtime   int64
	syncXattrs     bool
	xattrs         map[string][]byte
}

// Xattr limits (XATTR_NAME_MAX and XATTR_SIZE_MAX).
const (
	maxXattrName  = 255
	maxXattrValue = 64 << 10
)

// Replicated reports whether georep copies an xattr (see xattrs.Replicated).
func Replicated(name string, privileged bool) bool { return xattrs.Replicated(name, privileged) }

func validateMeta(op *pb.MetaOp, privileged bool) (*metaReq, error) {
	g, err := gfid.FromBytes(op.GetGfid())
	if err != nil {
		return nil, invalidf("gfid: %v", err)
	}
	if isReserved(g) {
		return nil, invalidf("gfid %s is reserved", g)
	}
	r := &metaReq{g: g, mode: op.GetMode(), uid: op.GetUid(), gid: op.GetGid(),
		atime: op.GetAtimeNs(), mtime: op.GetMtimeNs(), syncXattrs: op.GetSyncXattrs()}
	if r.mode&unix.S_IFMT == 0 {
		return nil, invalidf("mode %o lacks the file type", r.mode)
	}
	if r.syncXattrs {
		if r.xattrs, err = validateXattrs(op.GetXattrs(), privileged); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// validateXattrs checks a replicated xattr set and returns it as a map.
func validateXattrs(xs []*pb.Xattr, privileged bool) (map[string][]byte, error) {
	out := make(map[string][]byte, len(xs))
	for _, x := range xs {
		name := string(x.GetName())
		if !Replicated(name, privileged) || len(name) > maxXattrName || strings.IndexByte(name, 0) >= 0 {
			return nil, invalidf("xattr name %q is not replicated", name)
		}
		if len(x.GetValue()) > maxXattrValue {
			return nil, invalidf("xattr %q value of %d bytes", name, len(x.GetValue()))
		}
		out[name] = x.GetValue()
	}
	return out, nil
}

// special reports whether mode is a FIFO's, a socket's or a device's: of
// the replicated xattrs, they carry ACLs only.
func special(mode uint32) bool {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO, unix.S_IFSOCK, unix.S_IFCHR, unix.S_IFBLK:
		return true
	}
	return false
}

// writable runs fn (an xattr change); when an unprivileged slave is denied
// because the entry is read-only (a 0400 file, a 0555 directory it owns),
// it lends itself write permission for the duration.
func (s *Slave) writable(dirfd int, name string, flags int, st *unix.Stat_t, fn func() error) error {
	err := fn()
	if !errors.Is(err, unix.EACCES) || s.privileged || st.Mode&0o200 != 0 {
		return err
	}
	mode := st.Mode & 0o7777
	if cerr := beneath.Chmod(dirfd, name, mode|0o200, flags == 0); cerr != nil {
		return err
	}
	err = fn()
	if cerr := beneath.Chmod(dirfd, name, mode, flags == 0); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// applyMeta makes h's metadata what r says, touching only what differs so
// that an unchanged entry keeps its ctime.
func (s *Slave) applyMeta(c *dirCache, r *metaReq) outcome {
	h, st, err := c.find(r.g)
	if errors.Is(err, errUnknown) {
		if why := s.cannotHold(r.mode); why != nil {
			// Left out when the master asked to make it.
			return skipped(fmt.Errorf("%s: %w", r.g, why))
		}
	}
	if err != nil {
		return failed(err)
	}
	return s.applyMetaAt(h, st, r)
}

// applyMetaAt is applyMeta on an entry already found (st is its lstat).
func (s *Slave) applyMetaAt(h handle, st unix.Stat_t, r *metaReq) outcome {
	if st.Mode&unix.S_IFMT != r.mode&unix.S_IFMT {
		return failed(invalidf("%s: type %o on the slave, %o on the master", r.g, st.Mode&unix.S_IFMT, r.mode&unix.S_IFMT))
	}
	var partial []string
	isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	dirfd, name, flags := h.dirfd, h.name, unix.AT_SYMLINK_NOFOLLOW
	path, follow := h.xattrPath(), h.isRoot()
	// Every change goes through a descriptor of the inode that was looked
	// up (and identified by its gfid): a name swapped since, for a hard
	// link to a file elsewhere on the filesystem, is not touched.
	ofd := h.dirfd
	if h.isRoot() {
		dirfd, name, flags = unix.AT_FDCWD, h.xattrPath(), 0
	} else {
		fd, err := unix.Openat(h.dirfd, h.name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return failed(fmt.Errorf("%s: opening %q: %w (%w)", r.g, h.name, err, errUnknown))
		}
		defer unix.Close(fd)
		var fst unix.Stat_t
		if err := unix.Fstat(fd, &fst); err != nil {
			return failed(fmt.Errorf("stat %s: %w", r.g, err))
		}
		if fst.Dev != st.Dev || fst.Ino != st.Ino {
			// Replaced since the lookup: by a data stream installing a
			// new copy of this very file (it runs beside metadata ops),
			// which is still r.g's; anything else is not.
			if isLink || fst.Mode&unix.S_IFMT != st.Mode&unix.S_IFMT || !s.holdsGFID(fd, h, &fst, r.g) {
				return failed(fmt.Errorf("%s: %q changed identity meanwhile: %w", r.g, h.name, errUnknown))
			}
			st = fst
		}
		ofd = fd
		if !isLink {
			// /proc/self/fd/N of an O_PATH descriptor leads to that very
			// inode. (A symlink's own times are set by name: utimensat
			// has no empty-path form.)
			dirfd, name, flags = unix.AT_FDCWD, beneath.FDPath(fd), 0
			path, follow = name, true
		}
	}
	changed := false
	if st.Uid != r.uid || st.Gid != r.gid {
		chown := func() error { return unix.Fchownat(ofd, "", int(r.uid), int(r.gid), unix.AT_EMPTY_PATH) }
		if h.isRoot() {
			chown = func() error { return unix.Fchownat(dirfd, name, int(r.uid), int(r.gid), flags) }
		}
		if err := chown(); err != nil {
			if !errors.Is(err, unix.EPERM) {
				return failed(fmt.Errorf("chown %s: %w", r.g, err))
			}
			partial = append(partial, fmt.Sprintf("owner %d:%d not applied: %v", r.uid, r.gid, err))
		}
		changed = true
	}
	if r.syncXattrs && !isLink {
		set, remove := unix.Lsetxattr, unix.Lremovexattr
		if follow {
			set, remove = unix.Setxattr, unix.Removexattr
		}
		keep := func(n string) bool { return Replicated(n, s.privileged) }
		if special(st.Mode) {
			// Their ACLs only: user.* xattrs are not allowed on FIFOs,
			// sockets and devices.
			keep = xattrs.IsACL
			for n := range r.xattrs {
				if !xattrs.IsACL(n) {
					return failed(invalidf("%s: xattr %q on a %s", r.g, n, ftype.Name(st.Mode&unix.S_IFMT)))
				}
			}
		}
		cur, err := xattrs.List(path, follow, keep)
		if err != nil {
			return failed(fmt.Errorf("%s: %w", r.g, err))
		}
		for _, n := range xattrs.Names(r.xattrs) {
			if v, ok := cur[n]; ok && bytes.Equal(v, r.xattrs[n]) {
				continue
			}
			if err := s.writable(dirfd, name, flags, &st, func() error { return set(path, n, r.xattrs[n], 0) }); err != nil {
				if aclNotSet(n, err) {
					partial = append(partial, fmt.Sprintf("%s not applied: %v", n, err))
					continue
				}
				return failed(fmt.Errorf("setting xattr %q on %s: %w", n, r.g, err))
			}
			changed = true
		}
		for n := range cur {
			if _, ok := r.xattrs[n]; !ok {
				if err := s.writable(dirfd, name, flags, &st, func() error { return remove(path, n) }); err != nil && !errors.Is(err, unix.ENODATA) {
					return failed(fmt.Errorf("removing xattr %q on %s: %w", n, r.g, err))
				}
				changed = true
			}
		}
	}
	if !isLink {
		if changed {
			// chown clears setuid/setgid: look again.
			if err := unix.Fstatat(dirfd, name, &st, flags); err != nil {
				return failed(fmt.Errorf("stat %s: %w", r.g, err))
			}
		}
		if st.Mode&0o7777 != r.mode&0o7777 {
			if err := beneath.Chmod(dirfd, name, r.mode&0o7777, flags == 0); err != nil {
				return failed(fmt.Errorf("chmod %s: %w", r.g, err))
			}
			changed = true
		}
	}
	// Only mtime is compared: atime moves whenever anything reads the file,
	// and rewriting it on every pass would change every ctime.
	if st.Mtim.Nano() != r.mtime {
		note, err := setTimes(dirfd, name, flags, r.atime, r.mtime)
		if err != nil {
			return failed(fmt.Errorf("setting times of %s: %w", r.g, err))
		}
		if note != "" {
			partial = append(partial, note)
		}
		changed = true
	}
	if len(partial) > 0 {
		return outcome{status: pb.OpStatus_OP_STATUS_PARTIAL, err: errors.New(strings.Join(partial, "; "))}
	}
	if !changed {
		return noop
	}
	return done
}

// holdsGFID reports whether the inode open (O_PATH) as fd, at h, is g's:
// its gfid xattr, or what an unmarked inode is named by (tree.unmarked).
func (s *Slave) holdsGFID(fd int, h handle, st *unix.Stat_t, g gfid.GFID) bool {
	got, err := s.tree.ns.GetFollow(beneath.FDPath(fd))
	if errors.Is(err, gfid.ErrNoGFID) {
		return s.tree.unmarked(h.parent, h.name, st, nil) == g
	}
	return err == nil && got == g
}

// setTimes sets the times of name in dirfd (flags: AT_SYMLINK_NOFOLLOW or
// 0) and checks that the filesystem stored the mtime asked for: one it
// cannot represent (ext4 keeps 1901 to 2446) is clamped, which is
// reported (note), not passed off as applied.
func setTimes(dirfd int, name string, flags int, atime, mtime int64) (note string, err error) {
	ts := []unix.Timespec{unix.NsecToTimespec(atime), unix.NsecToTimespec(mtime)}
	if err := unix.UtimesNanoAt(dirfd, name, ts, flags); err != nil {
		return "", err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, flags); err != nil {
		return "", err
	}
	return mtimeNote(&st, mtime), nil
}

// setTimesFD is setTimes of an open file: futimens(2), where a
// /proc/self/fd path would cost a magic-link resolution per file.
func setTimesFD(fd int, atime, mtime int64) (note string, err error) {
	if err := futimens(fd, [2]unix.Timespec{unix.NsecToTimespec(atime), unix.NsecToTimespec(mtime)}); err != nil {
		return "", err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", err
	}
	return mtimeNote(&st, mtime), nil
}

// futimens sets the times of an open file (utimensat(fd, NULL, ts, 0):
// x/sys/unix has no wrapper that passes a NULL path).
func futimens(fd int, ts [2]unix.Timespec) error {
	if _, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0); e != 0 {
		return e
	}
	return nil
}

// mtimeNote says when the filesystem did not store mtime as asked.
func mtimeNote(st *unix.Stat_t, mtime int64) string {
	if got := st.Mtim.Nano(); got != mtime {
		return fmt.Sprintf("mtime %d ns not representable here (stored as %d)", mtime, got)
	}
	return ""
}
