package slave

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/ftype"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/wire"
	"github.com/georep/georep/internal/xattrs"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/syncer/delta"
)

// errInvalid marks a malformed request: it is never retried.
var errInvalid = errors.New("invalid request")

func invalidf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errInvalid, fmt.Sprintf(format, a...))
}

// outcome is what applying one op did.
type outcome struct {
	status  pb.OpStatus
	err     error // for PARTIAL and FAILED
	current bool  // CREATE with check_current: content and metadata match
	made    bool  // made from the op's description: the gfid was nowhere here
	// PURGE with report_only: what the directory holds beyond keep.
	extraNames, extraGFIDs [][]byte
	// also: a directory the op moved the entry from or linked it from,
	// other than its own (OpResult.also_dirs).
	also gfid.GFID
}

// from says that the op used the entry found at h, in a directory other
// than the ones it names: the master reconciles that one too.
func (o outcome) from(h handle, r *entryReq) outcome {
	if h.parent != limboGFID && h.parent != r.parent && h.parent != r.parent2 && !h.parent.IsZero() {
		o.also = h.parent
	}
	return o
}

var (
	done     = outcome{status: pb.OpStatus_OP_STATUS_OK}
	noop     = outcome{status: pb.OpStatus_OP_STATUS_NOOP}
	resolved = outcome{status: pb.OpStatus_OP_STATUS_RESOLVED}
)

func failed(err error) outcome { return outcome{status: pb.OpStatus_OP_STATUS_FAILED, err: err} }

// skipped is the outcome of an op on an entry this slave cannot hold
// (see cannotHold): not made, not a failure.
func skipped(err error) outcome { return outcome{status: pb.OpStatus_OP_STATUS_SKIPPED, err: err} }

// cannotHold says why this slave cannot make an entry of mode, or nil: a
// slave without CAP_MKNOD (unprivileged, or root without it, as in many
// containers) makes no device nodes. Whatever asks it to make one (a MKNOD; a
// RENAME or LINK that describes a device the slave lacks) is SKIPPED
// rather than FAILED, so that the master goes on without it instead of
// retrying its batch forever; so is a metadata op of one.
func (s *Slave) cannotHold(mode uint32) error {
	if t := mode & unix.S_IFMT; s.canMknod.Load() || (t != unix.S_IFCHR && t != unix.S_IFBLK) {
		return nil
	}
	why := "the slave runs unprivileged"
	if s.privileged {
		why = "the slave runs as root without CAP_MKNOD, or its mknod of a device was refused"
	}
	return fmt.Errorf("%s not made: %s, and making a device node needs CAP_MKNOD: %w", ftype.Name(mode&unix.S_IFMT), why, unix.EPERM)
}

// codeOf maps an error to its wire class: the one place where Go errors
// become error codes.
func codeOf(err error) pb.ErrorCode {
	switch {
	case err == nil:
		return pb.ErrorCode_ERROR_CODE_UNSPECIFIED
	case errors.Is(err, errInvalid), errors.Is(err, beneath.ErrInvalid), errors.Is(err, delta.ErrBadOp):
		return pb.ErrorCode_ERROR_CODE_INVALID
	case errors.Is(err, beneath.ErrEscape):
		return pb.ErrorCode_ERROR_CODE_ESCAPE
	case errors.Is(err, errUnknown):
		return pb.ErrorCode_ERROR_CODE_UNKNOWN_GFID
	case errors.Is(err, errHashMismatch):
		return pb.ErrorCode_ERROR_CODE_HASH_MISMATCH
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return pb.ErrorCode_ERROR_CODE_NO_SPACE
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return pb.ErrorCode_ERROR_CODE_PERMISSION
	}
	return pb.ErrorCode_ERROR_CODE_IO
}

func (o outcome) result() *pb.OpResult {
	r := &pb.OpResult{Status: o.status, Current: o.current, Made: o.made, ExtraNames: o.extraNames, ExtraGfids: o.extraGFIDs}
	if !o.also.IsZero() {
		r.AlsoDirs = [][]byte{o.also.Bytes()}
	}
	if o.err != nil {
		r.Code = codeOf(o.err)
		r.Error = o.err.Error()
	}
	return r
}

// entryReq is a validated EntryOp.
type entryReq struct {
	typ             pb.EntryOpType
	g               gfid.GFID
	parent, parent2 gfid.GFID
	name, name2     string
	mode, uid, gid  uint32
	rdev            uint64
	target          string
	keep            map[string]struct{}
	reportOnly      bool
	dataFollows     bool
	checkCurrent    bool
	adopt           bool // see pb.EntryOp.adopt
	size, mtime     int64
	xattrs          map[string][]byte
}

func parseGFID(b []byte, what string) (gfid.GFID, error) {
	g, err := gfid.FromBytes(b)
	if err != nil {
		return gfid.Zero, invalidf("%s: %v", what, err)
	}
	if isReserved(g) {
		return gfid.Zero, invalidf("%s: %s is reserved", what, g)
	}
	return g, nil
}

func checkName(parent gfid.GFID, b []byte, what string) (string, error) {
	name := string(b)
	if err := wire.ValidName(name); err != nil {
		return "", invalidf("%s: %v", what, err)
	}
	if parent == gfid.Root && name == wire.ReservedName {
		return "", invalidf("%s: %q is reserved at the slave root", what, name)
	}
	return name, nil
}

// maxTarget is PATH_MAX minus the NUL: the longest symlink target.
const maxTarget = 4095

// validateEntry checks an EntryOp completely before anything is touched.
func validateEntry(op *pb.EntryOp, privileged bool) (*entryReq, error) {
	r := &entryReq{typ: op.GetType(), mode: op.GetMode(), uid: op.GetUid(), gid: op.GetGid(), rdev: op.GetRdev(), adopt: op.GetAdopt()}
	typeBits := r.mode & unix.S_IFMT
	switch r.typ {
	case pb.EntryOpType_ENTRY_OP_TYPE_CREATE:
		r.dataFollows = op.GetDataFollows()
	case pb.EntryOpType_ENTRY_OP_TYPE_LINK, pb.EntryOpType_ENTRY_OP_TYPE_RENAME:
		// The description of the entry, for a slave that lacks it.
		switch typeBits {
		case 0, unix.S_IFDIR, unix.S_IFIFO, unix.S_IFCHR, unix.S_IFBLK, unix.S_IFSOCK:
		case unix.S_IFREG:
			r.dataFollows = op.GetDataFollows()
		case unix.S_IFLNK:
			if err := r.setTarget(op.GetTarget()); err != nil {
				return nil, err
			}
		default:
			return nil, invalidf("%s with mode %o", r.typ, r.mode)
		}
		if typeBits == unix.S_IFDIR && r.typ == pb.EntryOpType_ENTRY_OP_TYPE_LINK {
			return nil, invalidf("LINK of a directory")
		}
	}
	var err error
	if r.g, err = parseGFID(op.GetGfid(), "gfid"); err != nil {
		return nil, err
	}
	needEntry := func() error {
		if r.parent, err = parseGFID(op.GetPargfid(), "parent gfid"); err != nil {
			return err
		}
		if r.name, err = checkName(r.parent, op.GetName(), "name"); err != nil {
			return err
		}
		if r.g == gfid.Root {
			return invalidf("the root cannot be the subject of %s", r.typ)
		}
		if r.g == r.parent {
			return invalidf("%s cannot be its own parent", r.g)
		}
		return nil
	}
	switch r.typ {
	case pb.EntryOpType_ENTRY_OP_TYPE_CREATE:
		if typeBits != 0 && typeBits != unix.S_IFREG {
			return nil, invalidf("CREATE with mode %o", r.mode)
		}
		if op.GetCheckCurrent() {
			r.checkCurrent, r.size, r.mtime = true, op.GetSize(), op.GetMtimeNs()
			if r.xattrs, err = validateXattrs(op.GetXattrs(), privileged); err != nil {
				return nil, err
			}
		}
	case pb.EntryOpType_ENTRY_OP_TYPE_MKDIR:
		if typeBits != 0 && typeBits != unix.S_IFDIR {
			return nil, invalidf("MKDIR with mode %o", r.mode)
		}
	case pb.EntryOpType_ENTRY_OP_TYPE_MKNOD:
		switch typeBits {
		case unix.S_IFIFO, unix.S_IFCHR, unix.S_IFBLK, unix.S_IFSOCK:
		default:
			return nil, invalidf("MKNOD with mode %o", r.mode)
		}
	case pb.EntryOpType_ENTRY_OP_TYPE_SYMLINK:
		if err := r.setTarget(op.GetTarget()); err != nil {
			return nil, err
		}
	case pb.EntryOpType_ENTRY_OP_TYPE_LINK, pb.EntryOpType_ENTRY_OP_TYPE_UNLINK, pb.EntryOpType_ENTRY_OP_TYPE_RMDIR:
	case pb.EntryOpType_ENTRY_OP_TYPE_RENAME, pb.EntryOpType_ENTRY_OP_TYPE_EXCHANGE:
		if r.typ == pb.EntryOpType_ENTRY_OP_TYPE_EXCHANGE && typeBits != 0 {
			return nil, invalidf("EXCHANGE describes no entry (mode %o)", r.mode)
		}
		if err := needEntry(); err != nil {
			return nil, err
		}
		if r.parent2, err = parseGFID(op.GetPargfid2(), "destination parent gfid"); err != nil {
			return nil, err
		}
		if r.name2, err = checkName(r.parent2, op.GetName2(), "destination name"); err != nil {
			return nil, err
		}
		if r.g == r.parent2 {
			return nil, invalidf("%s cannot be its own parent", r.g)
		}
		return r, nil
	case pb.EntryOpType_ENTRY_OP_TYPE_PURGE:
		r.reportOnly = op.GetReportOnly()
		r.keep = make(map[string]struct{}, len(op.GetKeepNames()))
		for _, n := range op.GetKeepNames() {
			name, err := checkName(gfid.Zero, n, "kept name")
			if err != nil {
				return nil, err
			}
			r.keep[name] = struct{}{}
		}
		return r, nil
	default:
		return nil, invalidf("entry op type %d", r.typ)
	}
	if err := needEntry(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *entryReq) setTarget(b []byte) error {
	t := string(b)
	if t == "" || len(t) > maxTarget {
		return invalidf("symlink target of %d bytes", len(t))
	}
	for i := 0; i < len(t); i++ {
		if t[i] == 0 {
			return invalidf("symlink target contains NUL")
		}
	}
	r.target = t
	return nil
}

// creation turns a LINK or RENAME that describes its entry into the op
// that creates the entry at the new name, for a slave that lacks the gfid
// (ok false when the op does not describe it).
func (r *entryReq) creation() (*entryReq, bool) {
	c := *r
	if r.typ == pb.EntryOpType_ENTRY_OP_TYPE_RENAME {
		c.parent, c.name = r.parent2, r.name2
	}
	switch r.mode & unix.S_IFMT {
	case unix.S_IFREG:
		c.typ = pb.EntryOpType_ENTRY_OP_TYPE_CREATE
	case unix.S_IFDIR:
		c.typ = pb.EntryOpType_ENTRY_OP_TYPE_MKDIR
	case unix.S_IFLNK:
		c.typ = pb.EntryOpType_ENTRY_OP_TYPE_SYMLINK
	case unix.S_IFIFO, unix.S_IFCHR, unix.S_IFBLK, unix.S_IFSOCK:
		c.typ = pb.EntryOpType_ENTRY_OP_TYPE_MKNOD
	default:
		return nil, false
	}
	return &c, true
}

// applyEntry applies one validated op. It is idempotent: an op whose effect
// is already there is a NOOP.
func (s *Slave) applyEntry(c *dirCache, r *entryReq) outcome {
	switch r.typ {
	case pb.EntryOpType_ENTRY_OP_TYPE_CREATE, pb.EntryOpType_ENTRY_OP_TYPE_MKDIR,
		pb.EntryOpType_ENTRY_OP_TYPE_MKNOD, pb.EntryOpType_ENTRY_OP_TYPE_SYMLINK:
		return s.ensure(c, r)
	case pb.EntryOpType_ENTRY_OP_TYPE_LINK:
		return s.link(c, r)
	case pb.EntryOpType_ENTRY_OP_TYPE_RENAME:
		return s.rename(c, r)
	case pb.EntryOpType_ENTRY_OP_TYPE_EXCHANGE:
		return s.exchange(c, r)
	case pb.EntryOpType_ENTRY_OP_TYPE_UNLINK, pb.EntryOpType_ENTRY_OP_TYPE_RMDIR:
		return s.remove(c, r)
	case pb.EntryOpType_ENTRY_OP_TYPE_PURGE:
		return s.purge(c, r)
	}
	return failed(invalidf("entry op type %d", r.typ))
}

func wantType(typ pb.EntryOpType, mode uint32) uint32 {
	switch typ {
	case pb.EntryOpType_ENTRY_OP_TYPE_CREATE:
		return unix.S_IFREG
	case pb.EntryOpType_ENTRY_OP_TYPE_MKDIR:
		return unix.S_IFDIR
	case pb.EntryOpType_ENTRY_OP_TYPE_SYMLINK:
		return unix.S_IFLNK
	}
	return mode & unix.S_IFMT
}

// clearName makes name in dirfd free unless it already holds g; it reports
// whether g is already there and whether a conflict was resolved.
func (c *dirCache) clearName(dirfd int, parent gfid.GFID, name string, g gfid.GFID, wantFmt uint32) (present, conflict bool, st unix.Stat_t, err error) {
	got, st, exists, err := c.t.lookup(dirfd, parent, name, c.tx)
	if err != nil || !exists {
		return false, false, st, err
	}
	if got == g && (wantFmt == 0 || st.Mode&unix.S_IFMT == wantFmt) {
		return true, false, st, nil
	}
	if err := c.moveAside(dirfd, parent, name, got, &st); err != nil {
		return false, false, st, err
	}
	return false, true, st, nil
}

// ensure makes r's entry (CREATE, MKDIR, MKNOD, SYMLINK) at its name: it
// is there already, or the gfid is reused from where it lives, or it is
// made anew.
func (s *Slave) ensure(c *dirCache, r *entryReq) outcome {
	pfd, err := c.dir(r.parent)
	if err != nil {
		return failed(err)
	}
	wantFmt := wantType(r.typ, r.mode)
	var (
		present, conflict bool
		pst               unix.Stat_t
	)
	if r.adopt {
		adopted, st, err := s.adopt(c, pfd, r, wantFmt)
		if err != nil {
			return failed(err)
		}
		// Adopted: the name holds the gfid now, as its lstat says (not
		// looked up again: a pre-seeded tree of 100,000 files paid that
		// twice over).
		present, pst = adopted, st
	}
	if !present {
		var err error
		present, conflict, pst, err = c.clearName(pfd, r.parent, r.name, r.g, wantFmt)
		if err != nil {
			return failed(err)
		}
	}
	if present && r.typ == pb.EntryOpType_ENTRY_OP_TYPE_MKNOD {
		if st, err := beneath.Lstat(pfd, r.name); err == nil && uint64(st.Rdev) != r.rdev {
			// Same identity, another device: make it anew.
			g, st2, _, _ := c.t.lookup(pfd, r.parent, r.name, c.tx)
			if err := c.moveAside(pfd, r.parent, r.name, g, &st2); err != nil {
				return failed(err)
			}
			present = false
		}
	}
	if present {
		return s.ensurePresent(c, pfd, r, &pst)
	}
	res := done
	if conflict {
		res = resolved
	}
	if o, handled := s.reuseElsewhere(c, pfd, r, wantFmt, res); handled {
		return o
	}
	return s.create(c, pfd, r, res)
}

// adopt gives r's gfid to the entry at r's name when it carries none and
// is of r's type (a pre-seeded replica: see pb.EntryOp.adopt), so that
// ensure finds it present. Not adopted: a regular file with more than one
// link (it could be a link a local user put there to a file elsewhere,
// whose owner, mode and content the replica would then set), a symlink to
// another target, a device of another number, or anything while the gfid
// has an entry elsewhere on the slave (then that one is reused).
func (s *Slave) adopt(c *dirCache, pfd int, r *entryReq, wantFmt uint32) (adopted bool, st unix.Stat_t, err error) {
	st, err = beneath.Lstat(pfd, r.name)
	if err != nil {
		return false, st, nil // nothing there (or it says so when made)
	}
	if _, err := s.tree.ns.GetAt(pfd, r.name); !errors.Is(err, gfid.ErrNoGFID) {
		return false, st, nil // georep's already, or unreadable: the usual way
	}
	if st.Mode&unix.S_IFMT != wantFmt || len(c.tx.Links(r.g)) > 0 {
		return false, st, nil
	}
	switch wantFmt {
	case unix.S_IFREG:
		if st.Nlink != 1 {
			return false, st, nil
		}
	case unix.S_IFLNK:
		if cur, err := readlinkAt(pfd, r.name); err != nil || cur != r.target {
			return false, st, nil
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if uint64(st.Rdev) != r.rdev {
			return false, st, nil
		}
	}
	if err := s.setGFID(pfd, r.name, r.parent, r.g, wantFmt); err != nil {
		return false, st, fmt.Errorf("adopting %q: %w", r.name, err)
	}
	return true, st, c.tx.AddLink(r.g, gfidx.Link{Parent: r.parent, Name: r.name})
}

// ensurePresent is ensure when r's name already holds the gfid (pst is
// its lstat).
func (s *Slave) ensurePresent(c *dirCache, pfd int, r *entryReq, pst *unix.Stat_t) outcome {
	if r.typ == pb.EntryOpType_ENTRY_OP_TYPE_SYMLINK {
		cur, err := readlinkAt(pfd, r.name)
		if err != nil {
			return failed(err)
		}
		if cur != r.target {
			return s.replaceSymlink(c, pfd, r)
		}
	}
	link := gfidx.Link{Parent: r.parent, Name: r.name}
	if !c.tx.HasLink(r.g, link) {
		if err := c.tx.AddLink(r.g, link); err != nil {
			return failed(err)
		}
	}
	if r.checkCurrent && s.isCurrent(pfd, r, pst) {
		return outcome{status: pb.OpStatus_OP_STATUS_NOOP, current: true}
	}
	return noop
}

// reuseElsewhere is ensure when r's name is free: it reuses the gfid's
// entry found under another name, with outcome res (done, or resolved
// when a conflict was moved aside). handled false leaves the entry to be
// made anew (create); a stale entry of the gfid is dropped from the index
// first.
//
// The gfid may live under another name: an xsync crawl found a renamed
// or hardlinked entry, or a conflict parked it in limbo. Reuse it: a
// directory moves, a file gains a link (the old name is purged later),
// and no data is sent again. Device nodes, and symlinks with another
// target, are made anew, with the device and target the op says.
func (s *Slave) reuseElsewhere(c *dirCache, pfd int, r *entryReq, wantFmt uint32, res outcome) (o outcome, handled bool) {
	h, st, err := c.find(r.g)
	if err != nil {
		return outcome{}, false
	}
	if !reusable(h, &st, r, wantFmt) {
		if err := dropStale(c, h, &st, r.g, wantFmt); err != nil {
			return failed(err), true
		}
		return outcome{}, false
	}
	if isDir(&st) || h.parent == limboGFID {
		err = unix.Renameat(h.dirfd, h.name, pfd, r.name)
		if err == nil {
			err = c.tx.RemoveLink(r.g, gfidx.Link{Parent: h.parent, Name: h.name})
		}
		c.forget(r.g)
	} else {
		err = unix.Linkat(h.dirfd, h.name, pfd, r.name, 0)
	}
	if errors.Is(err, unix.EINVAL) && isDir(&st) {
		// The new parent is inside this directory here (the slave's
		// nesting is older than the master's): the parent's own
		// place comes first. Said as an unknown directory, which a
		// live master's reconciliation answers by reconciling the
		// parent's parent first.
		return failed(fmt.Errorf("reusing %s for %q: the directory %s is inside it on the slave: %w", r.g, r.name, r.parent, errUnknown)), true
	}
	if err != nil {
		return failed(fmt.Errorf("reusing %s for %q: %w", r.g, r.name, err)), true
	}
	if err := c.tx.AddLink(r.g, gfidx.Link{Parent: r.parent, Name: r.name}); err != nil {
		return failed(err), true
	}
	return res.from(h, r), true
}

// reusable reports whether the gfid's entry at h (st its lstat) can serve
// as r's entry, of type wantFmt.
func reusable(h handle, st *unix.Stat_t, r *entryReq, wantFmt uint32) bool {
	// FIFOs and sockets carry nothing but metadata: reused too, so
	// that a replayed op does not replace one with a new inode.
	reuse := st.Mode&unix.S_IFMT == wantFmt && (wantFmt == unix.S_IFDIR || wantFmt == unix.S_IFREG ||
		wantFmt == unix.S_IFIFO || wantFmt == unix.S_IFSOCK)
	if !reuse && wantFmt == unix.S_IFLNK && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		// A symlink with the same target is the same symlink (a
		// target never changes in place): not a second inode with
		// one gfid.
		cur, err := readlinkAt(h.dirfd, h.name)
		reuse = err == nil && cur == r.target
	}
	return reuse
}

// dropStale makes the index forget gfid g's entry at h (st its lstat),
// which cannot be reused for an entry of type wantFmt, so that g is made
// anew; an error when it cannot be dropped.
func dropStale(c *dirCache, h handle, st *unix.Stat_t, g gfid.GFID, wantFmt uint32) error {
	switch {
	case h.parent == limboGFID:
		// Parked by a conflict (possibly just now, at this very name)
		// and of another type: it goes with the limbo.
		return c.tx.RemoveLink(g, gfidx.Link{Parent: h.parent, Name: h.name})
	case isDir(st):
		// A gfid cannot change type; a directory of this gfid
		// elsewhere cannot be dropped without its subtree (which may
		// hold the parent of the new entry).
		return invalidf("%s is a directory elsewhere on the slave, not a %s", g, ftype.Name(wantFmt))
	default:
		// A stale non-directory of this gfid (another type, or a
		// symlink or device that is made anew): the index forgets it;
		// its name goes with the next purge or unlink.
		return c.tx.RemoveAll(g)
	}
}

// create makes r's entry anew at its free name, with outcome res (see
// reuseElsewhere), or leaves a file whose data follows to the data stream.
func (s *Slave) create(c *dirCache, pfd int, r *entryReq, res outcome) outcome {
	link := gfidx.Link{Parent: r.parent, Name: r.name}
	if r.dataFollows {
		// The name is free; the data stream will create the file there,
		// whole (see pending). No copy of it here: made.
		if err := c.tx.AddLink(r.g, link); err != nil {
			return failed(err)
		}
		res.made = true
		return res
	}
	perm := r.mode & 0o7777
	if !s.privileged {
		// An unprivileged slave needs to write into what it creates; the
		// exact mode arrives with the metadata ops after the data.
		if r.typ == pb.EntryOpType_ENTRY_OP_TYPE_MKDIR {
			perm |= 0o700
		} else {
			perm |= 0o600
		}
	}
	var ownerErr error
	switch r.typ {
	case pb.EntryOpType_ENTRY_OP_TYPE_CREATE:
		fd, err := unix.Openat(pfd, r.name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return failed(fmt.Errorf("creating %q: %w", r.name, err))
		}
		err = s.tree.ns.FSet(fd, r.g)
		if err == nil {
			ownerErr = s.chownFD(fd, r.uid, r.gid)
			err = unix.Fchmod(fd, perm)
		}
		unix.Close(fd)
		if err != nil {
			unix.Unlinkat(pfd, r.name, 0)
			return failed(fmt.Errorf("creating %q: %w", r.name, err))
		}
	case pb.EntryOpType_ENTRY_OP_TYPE_MKDIR:
		if err := unix.Mkdirat(pfd, r.name, 0o700); err != nil {
			return failed(fmt.Errorf("mkdir %q: %w", r.name, err))
		}
		fd, err := unix.Openat(pfd, r.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == nil {
			err = s.tree.ns.FSet(fd, r.g)
			if err == nil {
				ownerErr = s.chownFD(fd, r.uid, r.gid)
				err = unix.Fchmod(fd, perm)
			}
			unix.Close(fd)
		}
		if err != nil {
			unix.Unlinkat(pfd, r.name, unix.AT_REMOVEDIR)
			return failed(fmt.Errorf("mkdir %q: %w", r.name, err))
		}
	case pb.EntryOpType_ENTRY_OP_TYPE_MKNOD:
		if err := s.cannotHold(r.mode); err != nil {
			return skipped(fmt.Errorf("%q: %w", r.name, err))
		}
		if err := unix.Mknodat(pfd, r.name, (r.mode&unix.S_IFMT)|0o600, int(r.rdev)); err != nil {
			if t := r.mode & unix.S_IFMT; errors.Is(err, unix.EPERM) && (t == unix.S_IFCHR || t == unix.S_IFBLK) {
				// Refused with the capability (a device cgroup): no device
				// will be made here; this one and the later ones are
				// skipped, their metadata too (see cannotHold).
				s.canMknod.Store(false)
				s.log.Warn("a device node was refused (EPERM) though the slave has CAP_MKNOD; device nodes are skipped from now on", "name", fmt.Sprintf("%q", r.name))
				return skipped(fmt.Errorf("%q: %w", r.name, s.cannotHold(r.mode)))
			}
			return failed(fmt.Errorf("mknod %q: %w", r.name, err))
		}
		if err := s.setGFID(pfd, r.name, r.parent, r.g, r.mode); err != nil {
			unix.Unlinkat(pfd, r.name, 0)
			return failed(fmt.Errorf("mknod %q: %w", r.name, err))
		}
		ownerErr = s.chownAt(pfd, r.name, r.uid, r.gid)
		if err := beneath.Chmod(pfd, r.name, perm, false); err != nil {
			return failed(fmt.Errorf("chmod %q: %w", r.name, err))
		}
	case pb.EntryOpType_ENTRY_OP_TYPE_SYMLINK:
		if err := unix.Symlinkat(r.target, pfd, r.name); err != nil {
			return failed(fmt.Errorf("symlink %q: %w", r.name, err))
		}
		if err := s.setGFID(pfd, r.name, r.parent, r.g, unix.S_IFLNK); err != nil {
			unix.Unlinkat(pfd, r.name, 0)
			return failed(fmt.Errorf("symlink %q: %w", r.name, err))
		}
		ownerErr = s.chownAt(pfd, r.name, r.uid, r.gid)
	}
	if err := c.tx.AddLink(r.g, link); err != nil {
		return failed(err)
	}
	if ownerErr != nil {
		return outcome{status: pb.OpStatus_OP_STATUS_PARTIAL, err: ownerErr, made: true}
	}
	res.made = true
	return res
}

// isCurrent reports whether the file at r's name (st is its lstat) already
// has the content (by size and mtime, rsync's quick check) and metadata r
// describes.
func (s *Slave) isCurrent(pfd int, r *entryReq, st *unix.Stat_t) bool {
	if st.Size != r.size || st.Mtim.Nano() != r.mtime || st.Mode&0o7777 != r.mode&0o7777 || st.Uid != r.uid || st.Gid != r.gid {
		return false
	}
	cur, err := xattrs.ListAt(pfd, r.name, func(n string) bool { return Replicated(n, s.privileged) })
	if err != nil || len(cur) != len(r.xattrs) {
		return false
	}
	for n, v := range r.xattrs {
		if c, ok := cur[n]; !ok || !bytes.Equal(c, v) {
			return false
		}
	}
	return true
}

// replaceSymlink points an existing symlink of gfid r.g at a new target by
// building the new link under a temporary name and renaming it over.
func (s *Slave) replaceSymlink(c *dirCache, pfd int, r *entryReq) outcome {
	tmp := tmpPrefix + r.g.String()
	unix.Unlinkat(pfd, tmp, 0)
	if err := unix.Symlinkat(r.target, pfd, tmp); err != nil {
		return failed(fmt.Errorf("symlink %q: %w", r.name, err))
	}
	if err := s.setGFID(pfd, tmp, r.parent, r.g, unix.S_IFLNK); err != nil && !gfid.CannotCarry(errors.Unwrap(err)) {
		unix.Unlinkat(pfd, tmp, 0)
		return failed(err)
	}
	ownerErr := s.chownAt(pfd, tmp, r.uid, r.gid)
	if c.t.trash != nil {
		// The symlink replaced goes to the trash first.
		if st, err := beneath.Lstat(pfd, r.name); err == nil {
			if err := c.keepReplaced(pfd, r.parent, r.name, &st); err != nil {
				unix.Unlinkat(pfd, tmp, 0)
				return failed(err)
			}
		}
	}
	if err := unix.Renameat(pfd, tmp, pfd, r.name); err != nil {
		unix.Unlinkat(pfd, tmp, 0)
		return failed(fmt.Errorf("replacing symlink %q: %w", r.name, err))
	}
	if ownerErr != nil {
		return outcome{status: pb.OpStatus_OP_STATUS_PARTIAL, err: ownerErr}
	}
	return done
}

// setGFID marks name in dirfd with g. An inode that cannot carry the xattr
// here is fine when g is its derived gfid (the master could not mark its
// copy either), or when an unprivileged slave made it and the index names
// it (see tree.lookup).
func (s *Slave) setGFID(dirfd int, name string, parent, g gfid.GFID, mode uint32) error {
	err := s.tree.ns.SetAt(dirfd, name, g)
	if err != nil && gfid.CannotCarry(errors.Unwrap(err)) && (g == gfid.Derived(parent, name, mode) || s.tree.indexNames(mode)) {
		return nil
	}
	return err
}

func readlinkAt(dirfd int, name string) (string, error) {
	buf := make([]byte, maxTarget+1)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", fmt.Errorf("readlink %q: %w", name, err)
	}
	return string(buf[:n]), nil
}

func (s *Slave) chownFD(fd int, uid, gid uint32) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err == nil && st.Uid == uid && st.Gid == gid {
		return nil
	}
	if err := unix.Fchown(fd, int(uid), int(gid)); err != nil {
		return fmt.Errorf("owner %d:%d not applied: %w", uid, gid, err)
	}
	return nil
}

func (s *Slave) chownAt(dirfd int, name string, uid, gid uint32) error {
	if err := unix.Fchownat(dirfd, name, int(uid), int(gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("owner %d:%d of %q not applied: %w", uid, gid, name, err)
	}
	return nil
}

func (s *Slave) link(c *dirCache, r *entryReq) outcome {
	pfd, err := c.dir(r.parent)
	if err != nil {
		return failed(err)
	}
	h, st, err := c.findOrMaterialize(r.g)
	if errors.Is(err, errUnknown) {
		if cr, ok := r.creation(); ok {
			return s.ensure(c, cr)
		}
	}
	if err != nil {
		return failed(err)
	}
	if isDir(&st) {
		return failed(invalidf("LINK of directory %s", r.g))
	}
	present, conflict, _, err := c.clearName(pfd, r.parent, r.name, r.g, 0)
	if err != nil {
		return failed(err)
	}
	link := gfidx.Link{Parent: r.parent, Name: r.name}
	if present {
		if err := c.tx.AddLink(r.g, link); err != nil {
			return failed(err)
		}
		return noop
	}
	if h.parent == limboGFID {
		err = unix.Renameat(h.dirfd, h.name, pfd, r.name)
		if err == nil {
			err = c.tx.RemoveLink(r.g, gfidx.Link{Parent: h.parent, Name: h.name})
		}
	} else {
		err = unix.Linkat(h.dirfd, h.name, pfd, r.name, 0)
	}
	if err != nil {
		return failed(fmt.Errorf("link %q: %w", r.name, err))
	}
	if err := c.tx.AddLink(r.g, link); err != nil {
		return failed(err)
	}
	if conflict {
		return resolved.from(h, r)
	}
	return done.from(h, r)
}

func (s *Slave) rename(c *dirCache, r *entryReq) outcome {
	dfd, err := c.dir(r.parent2)
	if err != nil {
		return failed(err)
	}
	got, dst, exists, err := s.tree.lookup(dfd, r.parent2, r.name2, c.tx)
	if err != nil {
		return failed(err)
	}
	// Where is the source? At its old name if it is still there, else at any
	// name the index knows (a replay after a partial batch).
	var src handle
	var sst unix.Stat_t
	srcKnown := false
	if sfd, err := c.dir(r.parent); err == nil {
		if g, st, ok, err := s.tree.lookup(sfd, r.parent, r.name, c.tx); err == nil && ok && g == r.g {
			src, sst, srcKnown = handle{dirfd: sfd, name: r.name, parent: r.parent}, st, true
		}
	}
	if exists && got == r.g {
		return renamedAlready(c, r, src, srcKnown)
	}
	if !srcKnown {
		if src, sst, err = c.findOrMaterialize(r.g); err != nil {
			if cr, ok := r.creation(); ok && errors.Is(err, errUnknown) {
				return s.ensure(c, cr)
			}
			return failed(err)
		}
	}
	res := done
	if exists {
		// POSIX rename replaces a file or an empty directory; anything
		// else in the way (a non-empty directory, a type mismatch) is
		// moved aside first.
		if isDir(&dst) || isDir(&sst) {
			if err := c.moveAside(dfd, r.parent2, r.name2, got, &dst); err != nil {
				return failed(err)
			}
			res = resolved
		} else {
			// With the trash on, the entry replaced goes there first.
			if err := c.keepReplaced(dfd, r.parent2, r.name2, &dst); err != nil {
				return failed(err)
			}
			if !got.IsZero() {
				if err := c.tx.RemoveLink(got, gfidx.Link{Parent: r.parent2, Name: r.name2}); err != nil {
					return failed(err)
				}
			}
		}
	}
	if !srcKnown {
		// The old name is not here: the entry is moved (or linked) from
		// where it is, which the op does not name. The master reconciles
		// that directory: it puts back a name it still has there (the
		// other link of a hardlinked file, moved away here because the
		// LINK that made the renamed name was never applied), and drops a
		// stale one.
		res = res.from(src, r)
	}
	if !srcKnown && !isDir(&sst) && sst.Nlink > 1 {
		// The old name is not here; the inode has other names, which are
		// not this rename's to move: the new name is one more of them.
		if err := unix.Linkat(src.dirfd, src.name, dfd, r.name2, 0); err != nil {
			return failed(fmt.Errorf("rename (as a link) %q -> %q: %w", src.name, r.name2, err))
		}
		if err := c.tx.AddLink(r.g, gfidx.Link{Parent: r.parent2, Name: r.name2}); err != nil {
			return failed(err)
		}
		return res
	}
	if err := unix.Renameat(src.dirfd, src.name, dfd, r.name2); err != nil {
		return failed(fmt.Errorf("rename %q -> %q: %w", src.name, r.name2, err))
	}
	if err := c.tx.RemoveLink(r.g, gfidx.Link{Parent: src.parent, Name: src.name}); err != nil {
		return failed(err)
	}
	if err := c.tx.AddLink(r.g, gfidx.Link{Parent: r.parent2, Name: r.name2}); err != nil {
		return failed(err)
	}
	if isDir(&sst) {
		c.forget(r.g)
	}
	return res
}

// renamedAlready is rename when the new name already holds the gfid;
// src is the old name when srcKnown (it holds the gfid too).
func renamedAlready(c *dirCache, r *entryReq, src handle, srcKnown bool) outcome {
	res := noop
	if !srcKnown && !(r.parent == r.parent2 && r.name == r.name2) {
		// The old name is not here: if a CREATE announced it (data
		// to follow), the announcement is superseded — the data must
		// not make it later (see linkPending).
		if err := c.tx.RemoveLink(r.g, gfidx.Link{Parent: r.parent, Name: r.name}); err != nil {
			return failed(err)
		}
	}
	if srcKnown && !(src.parent == r.parent2 && src.name == r.name2) {
		// Both names hold the inode: a rename between two hardlinks
		// of one file, which POSIX makes a no-op; drop the old name as
		// the master did.
		if err := unix.Unlinkat(src.dirfd, src.name, 0); err != nil {
			return failed(fmt.Errorf("rename: removing %q: %w", src.name, err))
		}
		if err := c.tx.RemoveLink(r.g, gfidx.Link{Parent: src.parent, Name: src.name}); err != nil {
			return failed(err)
		}
		res = done
	}
	if err := c.tx.AddLink(r.g, gfidx.Link{Parent: r.parent2, Name: r.name2}); err != nil {
		return failed(err)
	}
	return res
}

// exchange swaps the entries at r's two names (renameat2 with
// RENAME_EXCHANGE), r.g being the one at the first. When they are not
// there as the op says, r.g is moved to the second name as by a RENAME,
// except that what is in the way is parked in limbo, never removed: it
// lives on at the first name on the master, and the op that puts it there
// (a reconciliation of the directory the batch names) claims it back.
func (s *Slave) exchange(c *dirCache, r *entryReq) outcome {
	sfd, err := c.dir(r.parent)
	if err != nil {
		return failed(err)
	}
	dfd, err := c.dir(r.parent2)
	if err != nil {
		return failed(err)
	}
	a, ast, aok, err := s.tree.lookup(sfd, r.parent, r.name, c.tx)
	if err != nil {
		return failed(err)
	}
	b, bst, bok, err := s.tree.lookup(dfd, r.parent2, r.name2, c.tx)
	if err != nil {
		return failed(err)
	}
	switch {
	case bok && b == r.g && (!aok || a != r.g):
		return noop // swapped already (a replay)
	case aok && a == r.g && bok && b != r.g:
		if err := unix.Renameat2(sfd, r.name, dfd, r.name2, unix.RENAME_EXCHANGE); err != nil {
			return failed(fmt.Errorf("exchange %q <-> %q: %w", r.name, r.name2, err))
		}
		src, dst := gfidx.Link{Parent: r.parent, Name: r.name}, gfidx.Link{Parent: r.parent2, Name: r.name2}
		for _, e := range []struct {
			g        gfid.GFID
			from, to gfidx.Link
		}{{r.g, src, dst}, {b, dst, src}} {
			if e.g.IsZero() {
				continue
			}
			if err := c.tx.RemoveLink(e.g, e.from); err != nil {
				return failed(err)
			}
		}
		for _, e := range []struct {
			g  gfid.GFID
			to gfidx.Link
		}{{r.g, dst}, {b, src}} {
			if e.g.IsZero() {
				continue
			}
			if err := c.tx.AddLink(e.g, e.to); err != nil {
				return failed(err)
			}
		}
		if isDir(&ast) {
			c.forget(r.g)
		}
		if isDir(&bst) {
			c.forget(b)
		}
		return done
	}
	res := done
	if bok && b != r.g {
		if err := c.moveAside(dfd, r.parent2, r.name2, b, &bst); err != nil {
			return failed(err)
		}
		res = resolved
	}
	rr := *r
	rr.typ = pb.EntryOpType_ENTRY_OP_TYPE_RENAME
	if o := s.rename(c, &rr); o.status != pb.OpStatus_OP_STATUS_OK && o.status != pb.OpStatus_OP_STATUS_NOOP {
		return o
	} else if o.also != (gfid.GFID{}) {
		res.also = o.also
	}
	return res
}

func (s *Slave) remove(c *dirCache, r *entryReq) outcome {
	pfd, err := c.dir(r.parent)
	if errors.Is(err, errUnknown) {
		return noop // the parent is gone, and the entry with it
	}
	if err != nil {
		return failed(err)
	}
	got, _, exists, err := s.tree.lookup(pfd, r.parent, r.name, c.tx)
	if err != nil {
		return failed(err)
	}
	if !exists {
		// A name announced by a CREATE whose data has not come yet, and
		// removed on the master before: the announcement goes too, else
		// the data, when it comes for another name, would make this one
		// again (linkPending).
		if err := c.dropAnnounced(r.g, r.parent, r.name); err != nil {
			return failed(err)
		}
		return noop
	}
	if got != r.g {
		return noop
	}
	if err := c.removeTree(pfd, r.parent, r.name); err != nil {
		return failed(err)
	}
	return done
}

func (s *Slave) purge(c *dirCache, r *entryReq) outcome {
	fd, err := c.dir(r.g)
	if err != nil {
		return failed(err)
	}
	names, err := readNames(fd)
	if err != nil {
		return failed(err)
	}
	res := noop
	// Announced names (CREATEs whose data has not come) that the master's
	// directory no longer holds go from the index: the data would make
	// them when it comes for another name of the file (linkPending), after
	// this purge.
	present := make(map[string]bool, len(names))
	for _, n := range names {
		present[n] = true
	}
	for _, ch := range c.tx.Children(r.g) {
		if _, ok := r.keep[ch.Name]; !ok && !present[ch.Name] {
			if err := c.dropAnnounced(ch.GFID, r.g, ch.Name); err != nil {
				return failed(err)
			}
		}
	}
	for _, n := range names {
		if _, ok := r.keep[n]; ok {
			continue
		}
		if r.g == gfid.Root && n == wire.ReservedName {
			continue
		}
		if IsTempName(n) {
			continue // a transfer in flight (crash leftovers go with a rebuild)
		}
		if r.reportOnly {
			g, st, exists, err := s.tree.lookup(fd, r.g, n, c.tx)
			if err != nil {
				return failed(err)
			}
			if exists && g.IsZero() {
				// Foreign (see tree.unmarked): not the master's under
				// any gfid, so not one it could keep for a move.
				s.log.Debug("purge removes a foreign entry", "dir", r.g, "name", fmt.Sprintf("%q", n))
				if err := c.removeTree(fd, r.g, n); err != nil {
					return failed(err)
				}
				res = done
				continue
			}
			if exists && isDir(&st) && !g.IsZero() {
				// A directory whose gfid the index places at another
				// inode is a stale copy (the index lost this one, and an
				// op made the gfid anew): every op on the gfid goes to
				// the other, and the master, which has the gfid, would
				// keep this one for a move that never comes to it.
				if h, hst, ferr := c.find(g); ferr == nil && (hst.Ino != st.Ino || hst.Dev != st.Dev) && !(h.parent == r.g && h.name == n) {
					s.log.Debug("purge removes a stale copy of a directory", "dir", r.g, "name", fmt.Sprintf("%q", n), "gfid", g)
					if err := c.removeTree(fd, r.g, n); err != nil {
						return failed(err)
					}
					res = done
					continue
				}
			}
			if exists {
				res.extraNames = append(res.extraNames, []byte(n))
				res.extraGFIDs = append(res.extraGFIDs, g.Bytes())
			}
			continue
		}
		s.log.Debug("purge removes a name the master's directory lacks", "dir", r.g, "name", fmt.Sprintf("%q", n))
		if err := c.removeTree(fd, r.g, n); err != nil {
			return failed(err)
		}
		res = done
	}
	return res
}
