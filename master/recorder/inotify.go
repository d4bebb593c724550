package recorder

import (
	"bytes"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/gfid"
)

// watchMask is what the recorder asks inotify for on every directory.
// IN_EXCL_UNLINK: no events for files unlinked but still open.
const watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_ATTRIB | unix.IN_DELETE_SELF |
	unix.IN_ONLYDIR | unix.IN_EXCL_UNLINK

// event is one inotify event, its directory named by gfid.
type event struct {
	mask   uint32
	cookie uint32
	dir    gfid.GFID // the watched directory the name is in
	name   string    // "" for an event on the directory itself
	known  bool      // the directory is one of the tree's
	// self: an event on directory dir itself that no event on its parent
	// reports (fanotify's; inotify reports a directory's changes to its
	// parent's watch too, with a name).
	self bool
	// obj is the changed inode's handle key (fanotify's FID record, see
	// handleKey), for a change to a name: what identifies the inode when
	// the name is gone before the event is read. nil from inotify.
	obj []byte
}

// source is where the recorder's events come from: inotify (a watch per
// directory) or fanotify (a mark per filesystem). watch registers a
// directory of the tree, open as dirfd: changes in it are reported from
// then on.
type source interface {
	kind() string
	watch(dirfd int, g gfid.GFID) error
	watched(g gfid.GFID) bool
	unwatch(g gfid.GFID)
	wait(timeout time.Duration) error
	read() (evs []event, overflow bool, err error)
	// open opens the inode an event's obj names (O_PATH), wherever it is
	// now; an error when the source gives no handles (inotify), or the
	// inode is gone.
	open(obj []byte) (int, error)
	// reopen opens a watched directory (O_PATH), wherever it is now; an
	// error when the source cannot (inotify) or it is gone.
	reopen(g gfid.GFID) (int, error)
	close() error
}

// unwatchable reports whether a watch error leaves the directory to
// crawls rather than stopping the recorder.
func unwatchable(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.ENOMEM) || errors.Is(err, errUnwatchable)
}

// pollIn blocks until fd is readable or timeout passes.
func pollIn(fd int, timeout time.Duration) error {
	ms := int(timeout / time.Millisecond)
	if ms < 0 {
		ms = 0
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	_, err := unix.Poll(fds, ms)
	if err != nil && !errors.Is(err, unix.EINTR) {
		return fmt.Errorf("changelog: polling for events: %w", err)
	}
	return nil
}

func (e *event) is(bits uint32) bool { return e.mask&bits != 0 }
func (e *event) isDir() bool         { return e.mask&unix.IN_ISDIR != 0 }

// inotify is the recorder's event source: one watch per directory of the
// tree, keyed both ways between watch descriptors and directory gfids.
type inotify struct {
	fd   int
	dirs dirMap[int32] // watch descriptors
	buf  []byte
}

func newInotify() (*inotify, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("changelog: inotify: %w", err)
	}
	return &inotify{fd: fd, dirs: newDirMap[int32](), buf: make([]byte, 256<<10)}, nil
}

func (in *inotify) kind() string { return "inotify" }

func (in *inotify) open([]byte) (int, error) { return -1, errNoHandles }

func (in *inotify) reopen(gfid.GFID) (int, error) { return -1, errNoHandles }

// errNoHandles: inotify names what changed by its name only.
var errNoHandles = errors.New("inotify reports no inode handles")

func (in *inotify) close() error { return unix.Close(in.fd) }

// watch adds a watch on the open directory dirfd (gfid g). The watch is
// added through the descriptor's /proc name, so it is on exactly the inode
// that was opened and identified, whatever happened to its name since.
func (in *inotify) watch(dirfd int, g gfid.GFID) error {
	wd, err := unix.InotifyAddWatch(in.fd, beneath.FDPath(dirfd), watchMask)
	if err != nil {
		return fmt.Errorf("changelog: watching directory %s: %w", g, err)
	}
	in.dirs.set(int32(wd), g)
	return nil
}

func (in *inotify) watched(g gfid.GFID) bool { return in.dirs.has(g) }

// unwatch removes the watch on directory g (it left the tree).
func (in *inotify) unwatch(g gfid.GFID) {
	if w, ok := in.dirs.remove(g); ok {
		unix.InotifyRmWatch(in.fd, uint32(w))
	}
}

// wait blocks until events are ready or timeout passes.
func (in *inotify) wait(timeout time.Duration) error { return pollIn(in.fd, timeout) }

// read returns the events queued now (none when there are none), and
// whether the kernel's queue overflowed.
func (in *inotify) read() ([]event, bool, error) {
	var out []event
	overflow := false
	_, err := drainFD(in.fd, in.buf, "inotify", func(b []byte) error {
		for off := 0; off+unix.SizeofInotifyEvent <= len(b); {
			raw := (*unix.InotifyEvent)(unsafe.Pointer(&b[off]))
			end := off + unix.SizeofInotifyEvent + int(raw.Len)
			if end > len(b) {
				return fmt.Errorf("changelog: inotify returned a truncated event")
			}
			name := b[off+unix.SizeofInotifyEvent : end]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			off = end
			if raw.Mask&unix.IN_Q_OVERFLOW != 0 {
				overflow = true
				continue
			}
			if raw.Mask&unix.IN_IGNORED != 0 {
				in.dirs.removeKey(raw.Wd) // the kernel removed the watch
				continue
			}
			g, known := in.dirs.byKey[raw.Wd]
			out = append(out, event{mask: raw.Mask, cookie: raw.Cookie, dir: g, name: string(name), known: known})
		}
		return nil
	})
	return out, overflow, err
}

// drainFD reads the non-blocking fd into buf until it has nothing more,
// handing each read's bytes to fn; it reports whether anything was read.
func drainFD(fd int, buf []byte, what string, fn func([]byte) error) (bool, error) {
	read := false
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) || (err == nil && n == 0) {
			return read, nil
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return read, fmt.Errorf("changelog: reading %s: %w", what, err)
		}
		read = true
		if err := fn(buf[:n]); err != nil {
			return read, err
		}
	}
}
