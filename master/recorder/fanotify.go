package recorder

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
)

// fanMask is what the recorder asks fanotify for on each filesystem the
// tree spans. FAN_ONDIR: directories' events too.
const fanMask = unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_RENAME | unix.FAN_MODIFY |
	unix.FAN_CLOSE_WRITE | unix.FAN_ATTRIB | unix.FAN_ONDIR

// fanotify is the recorder's event source when the process may use it
// (CAP_SYS_ADMIN) and the kernel can (5.17 or later, for FAN_RENAME): one
// filesystem mark per filesystem the tree spans, events that name the
// directory by its file handle and the entry by its name. Events are kept
// to the tree by the handles of the directories the recorder registered
// (watch): no per-directory kernel watch, no watch limit, and a rename is
// one event. Its events are translated into the inotify shape the
// recorder handles (the event bits have the same values in both APIs).
type fanotify struct {
	fd     int
	root   int             // a descriptor on the root's filesystem (owned by the caller), for open
	dirs   dirMap[string]  // directory handle keys (see handleKey)
	marked map[uint64]bool // st_dev of the filesystems marked
	buf    []byte
	cookie uint32
	// foreign: the last read held only other directories' events. The
	// mark covers the whole filesystem: the next wait first lets such
	// events gather for foreignPause, so that busy neighbours cost a few
	// hundred wakeups a second at most, not one per event.
	foreign bool
}

// foreignPause is how long a wait lets events gather after a read that
// held none of the tree's (at most that much added latency).
const foreignPause = 5 * time.Millisecond

// errUnwatchable: a directory lives on a filesystem fanotify cannot mark
// (its changes are found by crawls only, like a watch inotify could not
// add).
var errUnwatchable = errors.New("its filesystem cannot be marked for fanotify")

// newFanotify sets up fanotify for the tree whose root is open as root.
// It fails when the process or the kernel cannot (no CAP_SYS_ADMIN, no
// FAN_RENAME, a filesystem without file handles); the caller then uses
// inotify.
func newFanotify(root int) (*fanotify, error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|unix.FAN_UNLIMITED_QUEUE|
		unix.FAN_REPORT_FID|unix.FAN_REPORT_DFID_NAME, unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("changelog: fanotify_init: %w", err)
	}
	f := &fanotify{fd: fd, root: root, dirs: newDirMap[string](), marked: map[uint64]bool{}, buf: make([]byte, 256<<10)}
	if err := f.markFS(root); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return f, nil
}

func (f *fanotify) kind() string { return "fanotify" }
func (f *fanotify) close() error { return unix.Close(f.fd) }

// markFS marks the filesystem of the open directory dirfd.
func (f *fanotify) markFS(dirfd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(dirfd, &st); err != nil {
		return fmt.Errorf("changelog: %w", err)
	}
	if f.marked[st.Dev] {
		return nil
	}
	if err := unix.FanotifyMark(f.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, fanMask, dirfd, ""); err != nil {
		return fmt.Errorf("changelog: fanotify filesystem mark: %w", err)
	}
	f.marked[st.Dev] = true
	return nil
}

// handleKey is how a directory's handle appears in events, byte for
// byte: the filesystem id, then struct file_handle (its length, its type,
// its bytes). Events are matched against it without a copy.
func handleKey(fsid [2]int32, typ int32, h []byte) string {
	b := make([]byte, 16+len(h))
	binary.NativeEndian.PutUint32(b[0:], uint32(fsid[0]))
	binary.NativeEndian.PutUint32(b[4:], uint32(fsid[1]))
	binary.NativeEndian.PutUint32(b[8:], uint32(len(h)))
	binary.NativeEndian.PutUint32(b[12:], uint32(typ))
	copy(b[16:], h)
	return string(b)
}

// watch registers the open directory dirfd (gfid g): events naming it are
// the tree's from now on.
func (f *fanotify) watch(dirfd int, g gfid.GFID) error {
	if err := f.markFS(dirfd); err != nil {
		return fmt.Errorf("changelog: directory %s: %w (%w)", g, errUnwatchable, err)
	}
	h, _, err := unix.NameToHandleAt(dirfd, "", unix.AT_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("changelog: directory %s: file handle: %w (%w)", g, errUnwatchable, err)
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(dirfd, &sfs); err != nil {
		return fmt.Errorf("changelog: directory %s: %w", g, err)
	}
	f.dirs.set(handleKey(sfs.Fsid.Val, h.Type(), h.Bytes()), g)
	return nil
}

func (f *fanotify) watched(g gfid.GFID) bool { return f.dirs.has(g) }

// reopen opens registered directory g by its handle, wherever it is now.
func (f *fanotify) reopen(g gfid.GFID) (int, error) {
	key, ok := f.dirs.byDir[g]
	if !ok {
		return -1, errNoHandles
	}
	return f.open([]byte(key))
}
func (f *fanotify) unwatch(g gfid.GFID) { f.dirs.remove(g) }

func (f *fanotify) wait(timeout time.Duration) error {
	if f.foreign {
		f.foreign = false
		pause := min(foreignPause, timeout)
		time.Sleep(pause)
		timeout -= pause
	}
	return pollIn(f.fd, timeout)
}

// read returns the tree's events queued now.
func (f *fanotify) read() ([]event, bool, error) {
	var out []event
	overflow := false
	read, err := drainFD(f.fd, f.buf, "fanotify", func(b []byte) error {
		return parseFanEvents(b, func(fe *fanEvent) {
			if fe.fd >= 0 {
				unix.Close(int(fe.fd))
			}
			if fe.mask&unix.FAN_Q_OVERFLOW != 0 {
				overflow = true
				return
			}
			out = f.translate(fe, out)
		})
	})
	f.foreign = read && len(out) == 0 && !overflow
	return out, overflow, err
}

// translate turns one fanotify event into the recorder's events: a rename
// into a MOVED_FROM and MOVED_TO sharing a cookie (either half alone when
// the other directory is not the tree's), and the bits of a merged event
// into one event each, entry changes first.
func (f *fanotify) translate(fe *fanEvent, out []event) []event {
	dirBit := uint32(fe.mask & unix.FAN_ONDIR)
	if fe.mask&unix.FAN_RENAME != 0 {
		f.cookie++
		if g, ok := f.dirs.byKey[string(fe.old.key)]; ok && fe.old.ok {
			out = append(out, event{mask: unix.IN_MOVED_FROM | dirBit, cookie: f.cookie, dir: g, name: string(fe.old.name), known: true})
		}
		if g, ok := f.dirs.byKey[string(fe.new.key)]; ok && fe.new.ok {
			out = append(out, event{mask: unix.IN_MOVED_TO | dirBit, cookie: f.cookie, dir: g, name: string(fe.new.name), known: true})
		}
	}
	const dirent = unix.FAN_CREATE | unix.FAN_DELETE
	if fe.mask&unix.FAN_ONDIR != 0 && fe.mask&dirent == 0 {
		// On a directory itself: it is named by its own handle.
		key := fe.obj.key
		if !fe.obj.ok {
			key = fe.dir.key
		}
		if g, ok := f.dirs.byKey[string(key)]; ok && fe.mask&unix.FAN_ATTRIB != 0 {
			out = append(out, event{mask: unix.IN_ATTRIB | dirBit, dir: g, known: true, self: true})
		}
		return out
	}
	if !fe.dir.ok || len(fe.dir.name) == 0 || string(fe.dir.name) == "." {
		return out
	}
	g, ok := f.dirs.byKey[string(fe.dir.key)]
	if !ok {
		return out // not the tree's
	}
	name := string(fe.dir.name)
	var obj []byte
	if fe.obj.ok && fe.mask&(unix.FAN_MODIFY|unix.FAN_CLOSE_WRITE|unix.FAN_ATTRIB) != 0 {
		obj = append([]byte(nil), fe.obj.key...) // the buffer is read into again
	}
	for _, bits := range [...]uint64{dirent, unix.FAN_MODIFY | unix.FAN_CLOSE_WRITE, unix.FAN_ATTRIB} {
		if m := fe.mask & bits; m != 0 {
			ev := event{mask: uint32(m) | dirBit, dir: g, name: name, known: true}
			if bits != dirent {
				ev.obj = obj
			}
			out = append(out, ev)
		}
	}
	return out
}

// open opens the inode obj names (a handle key: fsid, then the struct
// file_handle), with open_by_handle_at on the root's filesystem (which
// needs CAP_DAC_READ_SEARCH, which a process that may use fanotify has).
func (f *fanotify) open(obj []byte) (int, error) {
	if len(obj) < 16 {
		return -1, fmt.Errorf("changelog: handle key of %d bytes", len(obj))
	}
	n := int(binary.NativeEndian.Uint32(obj[8:]))
	typ := int32(binary.NativeEndian.Uint32(obj[12:]))
	if n != len(obj)-16 {
		return -1, fmt.Errorf("changelog: handle of %d bytes in a %d-byte key", n, len(obj))
	}
	fh := unix.NewFileHandle(typ, obj[16:])
	return unix.OpenByHandleAt(f.root, fh, unix.O_PATH|unix.O_CLOEXEC)
}

// fanEvent is one fanotify event as read: its mask, the object's handle,
// the directory's handle and the entry's name (for a rename, both).
type fanEvent struct {
	mask     uint64
	fd       int32
	obj, dir fanID
	old, new fanID
}

// fanID is one info record: a handle key, and the name that followed it,
// both slices of the read buffer (valid until the next read).
type fanID struct {
	ok   bool
	key  []byte
	name []byte
}

// parseFanEvents calls fn for each event in buf, as read from a fanotify
// group reporting FIDs and names. A malformed buffer is an error, never a
// panic.
func parseFanEvents(buf []byte, fn func(*fanEvent)) error {
	const metaLen = 24 // struct fanotify_event_metadata
	for off := 0; off < len(buf); {
		if len(buf)-off < metaLen {
			return fmt.Errorf("changelog: fanotify returned a truncated event (%d bytes)", len(buf)-off)
		}
		m := buf[off:]
		evLen := int(binary.NativeEndian.Uint32(m[0:]))
		vers := m[4]
		mdLen := int(binary.NativeEndian.Uint16(m[6:]))
		if vers != unix.FANOTIFY_METADATA_VERSION {
			return fmt.Errorf("changelog: fanotify event version %d, want %d", vers, unix.FANOTIFY_METADATA_VERSION)
		}
		if evLen < metaLen || mdLen < metaLen || mdLen > evLen || evLen > len(m) {
			return fmt.Errorf("changelog: fanotify returned a malformed event (length %d, metadata %d, %d bytes left)", evLen, mdLen, len(m))
		}
		fe := fanEvent{
			mask: binary.NativeEndian.Uint64(m[8:]),
			fd:   int32(binary.NativeEndian.Uint32(m[16:])),
		}
		if err := parseFanInfo(m[mdLen:evLen], &fe); err != nil {
			return err
		}
		fn(&fe)
		off += evLen
	}
	return nil
}

// parseFanInfo reads an event's info records.
func parseFanInfo(b []byte, fe *fanEvent) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return fmt.Errorf("changelog: fanotify info record truncated")
		}
		typ := b[0]
		n := int(binary.NativeEndian.Uint16(b[2:]))
		if n < 4 || n > len(b) {
			return fmt.Errorf("changelog: fanotify info record of length %d (%d bytes left)", n, len(b))
		}
		rec := b[4:n]
		b = b[n:]
		var dst *fanID
		withName := false
		switch typ {
		case unix.FAN_EVENT_INFO_TYPE_FID:
			dst = &fe.obj
		case unix.FAN_EVENT_INFO_TYPE_DFID:
			dst = &fe.dir
		case unix.FAN_EVENT_INFO_TYPE_DFID_NAME:
			dst, withName = &fe.dir, true
		case unix.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME:
			dst, withName = &fe.old, true
		case unix.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME:
			dst, withName = &fe.new, true
		default:
			continue // a record we did not ask for
		}
		// __kernel_fsid_t, then struct file_handle, then the name.
		if len(rec) < 16 {
			return fmt.Errorf("changelog: fanotify fid record of %d bytes", len(rec))
		}
		hlen := int(binary.NativeEndian.Uint32(rec[8:]))
		if hlen > len(rec)-16 {
			return fmt.Errorf("changelog: fanotify file handle of %d bytes in a %d-byte record", hlen, len(rec))
		}
		*dst = fanID{ok: true, key: rec[:16+hlen]}
		if withName {
			name := rec[16+hlen:]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			dst.name = name
		}
	}
	return nil
}
