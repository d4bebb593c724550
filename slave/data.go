package slave

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/bulkconn"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/wire"
	"github.com/georep/georep/internal/xattrs"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/syncer/delta"
)

// maxFilesInFlight bounds the files announced on one data stream whose
// end has not come (the master keeps at most 256 so).
const maxFilesInFlight = 1024

// maxChunk bounds one FileChunk's data; the master sends 256 KiB.
const maxChunk = 4 << 20

// incoming is a file whose data is arriving. Its bytes are staged in a
// file of its own beside the target (see stage), so that two transfers of
// one gfid never share a name and a reader never sees half a file.
// At the end the staged file replaces the target by rename, or, when the
// target has several links, is copied into it in place.
type incoming struct {
	hdr *pb.FileHeader
	g   gfid.GFID
	// dirfd is the target's directory, borrowed: from the stream's
	// directory cache until holdDir, then from the hold (held), which
	// outlives in (see close).
	dirfd  int
	name   string // the target's name in dirfd
	parent gfid.GFID
	fd     int    // the staged copy
	tmp    string // its name in dirfd (a staging file; empty when made at name)
	old    int    // the old copy, read for FileCopy ops; -1 for none
	// oldCloser, when set, closes old on a goroutine it waits for (see
	// close).
	oldCloser *sync.WaitGroup
	held      *heldByStream     // the hold on the directory's times (see holdDir)
	create    bool              // no file yet (an announced CREATE): link the new one in
	names     bool              // the index has other names for it (see linkPending)
	dropGen   uint64            // tree.dropped when its target was located
	xattrs    map[string][]byte // the header's xattrs, when it syncs them
	aclNote   error             // ACLs the slave could not set (see aclNotSet)
	patch     *delta.Patcher
	written   int64 // bytes received (literal data) for this file
	err       error // first failure; later chunks are dropped
	// direct: fd is the new file itself, made at name (see stage);
	// installed once finish has given it all its metadata.
	direct, installed bool
	// guessed: create was assumed, not looked up (see receive); a name
	// already taken sends the file the long way.
	guessed bool
}

func (in *incoming) close() {
	defer func() {
		// Last: the staged file is renamed or removed by now.
		if in.held != nil {
			in.held.unref()
			in.held = nil
		}
	}()
	if in.patch != nil {
		in.patch.Release()
		in.patch = nil
	}
	if in.old >= 0 {
		if wg := in.oldCloser; wg != nil {
			// The old copy of a big file, renamed over: this close frees
			// its blocks, which takes ext4 about 0.2 s per GiB. Not on the
			// stream's time.
			fd := in.old
			wg.Add(1)
			go func() {
				defer wg.Done()
				unix.Close(fd)
			}()
		} else {
			unix.Close(in.old)
		}
		in.old = -1
	}
	if in.direct && !in.installed {
		// Made at its name and not finished (aborted, a hash mismatch):
		// removed, if the name still holds it.
		var fst, nst unix.Stat_t
		if unix.Fstat(in.fd, &fst) == nil && unix.Fstatat(in.dirfd, in.name, &nst, unix.AT_SYMLINK_NOFOLLOW) == nil &&
			fst.Ino == nst.Ino && fst.Dev == nst.Dev {
			unix.Unlinkat(in.dirfd, in.name, 0)
		}
	}
	if in.fd >= 0 {
		unix.Close(in.fd)
		in.fd = -1
	}
	if in.tmp != "" {
		unix.Unlinkat(in.dirfd, in.tmp, 0)
		in.tmp = ""
	}
	in.dirfd = -1 // borrowed
}

// stage creates the staging file beside the target, under a name unique to
// this transfer. (O_TMPFILE would leave nothing behind after a crash, but
// on a journaled ext4 every such inode goes through the orphan list, and
// on the bench's journal-less ext4 it was no steadier than this. Crash
// leftovers are swept instead by the index rebuild that every unclean stop
// triggers.)
//
// With whole set (a new file whose data is all in its header: inline, and
// handled under one hold of the namespace lock, so no entry op runs until
// it is done), the file is made at its name instead, with its gfid first:
// no rename, which was a tenth of the slave's CPU on 100,000 small files.
// Until finish is done a reader may see it empty, or written with the
// slave's owner and the current mtime (docs/ARCHITECTURE.md lists it); a
// failed transfer removes it (close); a crash leaves it with the wrong
// size or mtime (times are set last), which the next run's quick check
// sends again. If the name is taken, the staging file is used, and install
// sorts it out.
func (in *incoming) stage(whole bool, ns gfid.Namespace) error {
	// Created with the file's final permission bits where they are at
	// most 0755 (most files), so that finish need not chmod it; never
	// writable by others while it is being built (the hash check covers
	// what this stream wrote, not what someone else might write).
	perm := in.hdr.GetMode()&0o755 | 0o600
	if whole && in.create {
		fd, err := unix.Openat(in.dirfd, in.name, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
		if err == nil {
			in.fd, in.direct = fd, true
			if err := ns.FSet(fd, in.g); err != nil && !gfid.CannotCarry(err) {
				return fmt.Errorf("creating %q (%s): %w", in.name, in.g, err)
			}
			return nil
		}
		if !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("creating %q (%s): %w", in.name, in.g, err)
		}
		if in.guessed {
			return errGuessedWrong
		}
	}
	for i := 0; i < 100; i++ {
		name := tempName(in.g)
		fd, err := unix.Openat(in.dirfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return fmt.Errorf("staging %q (%s): %w", in.name, in.g, err)
		}
		in.fd, in.tmp = fd, name
		return nil
	}
	return fmt.Errorf("staging %q (%s): no free temp name", in.name, in.g)
}

// holdDir holds the times of in's directory (see dirTimes) until in is
// closed. The stream shares one hold among the files it stages in a
// directory one after the other (files of a directory come together)
// while the namespace stands still: not a stat and a utimes of the
// directory per file. The hold is counted: the stream moves on to another
// directory's hold when a file is staged elsewhere, but the directory gets
// its times back only once the last file staged under it is closed (files
// announced earlier may still be waiting for their data).
func (ds *dataStream) holdDir(in *incoming) error {
	gen := ds.s.gen.Load()
	if h := ds.held; h != nil && h.parent == in.parent && h.gen == gen {
		h.refs++
		in.held, in.dirfd = h, h.dirfd
		return nil
	}
	ds.releaseDir()
	key, err := ds.s.dirTimes.hold(in.dirfd)
	if err != nil {
		return fmt.Errorf("staging %q (%s): %w", in.name, in.g, err)
	}
	fd, err := unix.Dup(in.dirfd)
	if err != nil {
		ds.s.dirTimes.release(key, in.dirfd)
		return fmt.Errorf("staging %q (%s): %w", in.name, in.g, err)
	}
	// One reference for the stream (while it is its current hold), one
	// for in.
	h := &heldByStream{dt: &ds.s.dirTimes, key: key, dirfd: fd, parent: in.parent, gen: gen, refs: 2}
	ds.held, in.held, in.dirfd = h, h, fd
	return nil
}

// releaseDir drops the stream's reference to its current hold, if any.
func (ds *dataStream) releaseDir() {
	if h := ds.held; h != nil {
		ds.held = nil
		h.unref()
	}
}

// heldByStream is a counted hold on a directory's times: by a data stream
// while it stages files there, and by each file staged under it until the
// file is closed. Used by its stream's goroutine only.
type heldByStream struct {
	dt     *dirTimes
	key    dirKey
	dirfd  int // owned
	parent gfid.GFID
	gen    uint64 // the namespace generation it was taken in
	refs   int
}

// unref drops one reference; the last gives the directory its times back.
func (h *heldByStream) unref() {
	if h.refs--; h.refs == 0 {
		h.dt.release(h.key, h.dirfd)
		unix.Close(h.dirfd)
	}
}

// dirTimes keeps a directory's mtime while files are staged in it: the
// staging file's creation and its rename over the target change the
// directory's mtime, though on the master only a file's content changed.
// The first transfer in a directory notes its mtime, the last one puts it
// back. A directory whose entries did change gets its master mtime from
// the batch's metadata ops, which come after the data.
type dirTimes struct {
	mu   sync.Mutex
	held map[dirKey]*heldDir
}

type dirKey struct{ dev, ino uint64 }

type heldDir struct {
	n     int
	mtime unix.Timespec
}

func (d *dirTimes) hold(dirfd int) (dirKey, error) {
	var st unix.Stat_t
	if err := unix.Fstat(dirfd, &st); err != nil {
		return dirKey{}, err
	}
	k := dirKey{st.Dev, st.Ino}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.held == nil {
		d.held = map[dirKey]*heldDir{}
	}
	if h, ok := d.held[k]; ok {
		h.n++
	} else {
		d.held[k] = &heldDir{n: 1, mtime: st.Mtim}
	}
	return k, nil
}

func (d *dirTimes) release(k dirKey, dirfd int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, ok := d.held[k]
	if !ok {
		return
	}
	if h.n--; h.n > 0 {
		return
	}
	delete(d.held, k)
	futimens(dirfd, [2]unix.Timespec{{Sec: 0, Nsec: unix.UTIME_OMIT}, h.mtime})
}

// tempName is a staging name: tmpPrefix, the gfid, a random suffix.
func tempName(g gfid.GFID) string {
	return fmt.Sprintf("%s%s.%016x", tmpPrefix, g, rand.Uint64())
}

// IsTempName reports whether name is a staging name (see tempName).
func IsTempName(name string) bool {
	rest, ok := strings.CutPrefix(name, tmpPrefix)
	if !ok || len(rest) != 36+1+16 || rest[36] != '.' {
		return false
	}
	if _, err := gfid.Parse(rest[:36]); err != nil {
		return false
	}
	for _, c := range rest[37:] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// bgCloseMin is the size from which an old copy's descriptor is closed on
// a goroutine of its own (see incoming.close).
const bgCloseMin = 16 << 20

// writeBehind is how much of a staged file may be dirty before the slave
// asks the kernel to start writing it out (sync_file_range): a big file's
// writeback then runs while the rest of it arrives, instead of all at once
// in the rename (ext4 flushes a file renamed over another) or in SetMark's
// syncfs.
const writeBehind = 8 << 20

// stagedOut writes the staged file and starts its writeback every
// writeBehind bytes (the Patcher writes in file order).
type stagedOut struct {
	fd     int
	kicked int64 // writeback was started for bytes [0, kicked)
	wrote  func(int)
}

func (o *stagedOut) WriteAt(b []byte, off int64) (int, error) {
	n, err := fdIO(o.fd).WriteAt(b, off)
	o.wrote(n)
	if end := off + int64(n); end-o.kicked >= writeBehind {
		// Only a hint: if it fails, the writeback happens later.
		_ = unix.SyncFileRange(o.fd, o.kicked, end-o.kicked, unix.SYNC_FILE_RANGE_WRITE)
		o.kicked = end
	}
	return n, err
}

// fdIO reads and writes a raw descriptor at offsets (the descriptor stays
// owned by its incoming).
type fdIO int

func (f fdIO) ReadAt(b []byte, off int64) (int, error) {
	n, err := unix.Pread(int(f), b, off)
	if err == nil && n < len(b) {
		return n, io.EOF
	}
	return n, err
}

func (f fdIO) WriteAt(b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Pwrite(int(f), b[n:], off+int64(n))
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// dataStream is the slave's half of one SyncData stream.
type dataStream struct {
	s       *Slave
	session []byte
	files   map[uint64]*incoming
	stream  pb.SlaveService_SyncDataServer
	outbox  []*pb.SyncDataResponse // see send
	zdec    *zstd.Decoder          // created on the first compressed chunk
	// dirs caches directory descriptors from header to header (files of
	// one directory come together); it is dropped whenever entry ops may
	// have changed the namespace (gen moved).
	dirs *dirCache
	gen  uint64
	held *heldByStream // see holdDir
	// batch, while an InlineFiles message is handled, collects the
	// results of its files, sent as one FileResults at its end.
	batch *pb.FileResults
	// bulk is the stream's data connection, once BulkOpen named it, and
	// bulkBuf the buffer its chunks are read into (each is written to
	// its file before the next message is read).
	bulk    net.Conn
	bulkBuf []byte
}

// bulkClaimTimeout bounds the wait for a data connection that BulkOpen
// names: the master opened it before naming it, so it is at most a
// handshake behind.
const bulkClaimTimeout = 10 * time.Second

// openBulk claims the data connection BulkOpen names; it is closed when
// the stream ends (or its context does, which unblocks a read).
func (ds *dataStream) openBulk(m *pb.BulkOpen) error {
	if ds.bulk != nil {
		return statusInvalid("a second BulkOpen on one data stream")
	}
	tok, err := bulkconn.ParseToken(m.GetToken())
	if err != nil {
		return statusInvalid(err.Error())
	}
	ctx := ds.stream.Context()
	conn, err := ds.s.bulk.Claim(ctx, tok, bulkClaimTimeout)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	ds.bulk = conn
	context.AfterFunc(ctx, func() { conn.Close() })
	return nil
}

// readBulk reads a chunk's bytes from the data connection into c.Data.
func (ds *dataStream) readBulk(c *pb.FileChunk) error {
	n := c.GetBulkLength()
	switch {
	case ds.bulk == nil:
		return statusInvalid("a chunk on a data connection before BulkOpen")
	case n < 0 || n > maxChunk:
		return statusInvalid(fmt.Sprintf("a chunk of %d bytes on the data connection", n))
	case len(c.GetData()) > 0 || c.GetZeroLength() != 0:
		return statusInvalid("a chunk with bytes both in the message and on the data connection")
	}
	if int64(cap(ds.bulkBuf)) < n {
		ds.bulkBuf = make([]byte, n)
	}
	buf := ds.bulkBuf[:n]
	if _, err := io.ReadFull(ds.bulk, buf); err != nil {
		if ctx := ds.stream.Context(); ctx.Err() != nil {
			return ctx.Err()
		}
		return status.Errorf(codes.Unavailable, "reading the data connection: %v", err)
	}
	c.Data = buf
	return nil
}

// cache returns the stream's directory cache, bound to tx.
func (ds *dataStream) cache(tx *gfidx.Tx) *dirCache {
	if g := ds.s.gen.Load(); ds.dirs == nil || g != ds.gen {
		if ds.dirs != nil {
			ds.dirs.close()
		}
		ds.dirs, ds.gen = ds.s.tree.newDirCache(tx), g
	}
	ds.dirs.tx = tx
	return ds.dirs
}

func (s *Slave) serveData(stream pb.SlaveService_SyncDataServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil {
		return statusInvalid("SyncData must start with DataOpen")
	}
	if err := s.checkSession(stream.Context(), open.GetSessionToken()); err != nil {
		return err
	}
	// Staging files may be left by a crash from here on: the next start
	// must rebuild the index (and sweep them).
	if err := s.markDirty(); err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	ds := &dataStream{s: s, session: open.GetSessionToken(), files: map[uint64]*incoming{}, stream: stream}
	defer func() {
		if ds.bulk != nil {
			ds.bulk.Close()
		}
		for _, in := range ds.files {
			in.close()
		}
		ds.releaseDir()
		if ds.zdec != nil {
			ds.zdec.Close()
		}
		if ds.dirs != nil {
			ds.dirs.close()
		}
	}()
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		// Every message must still belong to the session that holds the
		// root: a stream outlives neither a takeover nor EndSession.
		if err := s.checkSession(stream.Context(), ds.session); err != nil {
			return err
		}
		// The data connection is read outside the namespace lock
		// (handle): its bytes may be slow to come.
		switch m := msg.GetMsg().(type) {
		case *pb.SyncDataRequest_BulkOpen:
			if err := ds.openBulk(m.BulkOpen); err != nil {
				return err
			}
			continue
		case *pb.SyncDataRequest_Chunk:
			if m.Chunk.GetBulkLength() != 0 {
				if err := ds.readBulk(m.Chunk); err != nil {
					return err
				}
			}
		}
		if err := ds.handle(msg); err != nil {
			return err
		}
		if err := ds.flush(); err != nil {
			return err
		}
	}
	for id, in := range ds.files {
		in.close()
		if err := ds.result(id, failed(fmt.Errorf("stream ended before the data of %s", in.g)), 0); err != nil {
			return err
		}
	}
	if err := ds.flush(); err != nil {
		return err
	}
	ds.files = map[uint64]*incoming{}
	// The directories get their times back before the master hears that
	// the box is done (its metadata ops may follow at once).
	ds.releaseDir()
	return stream.Send(&pb.SyncDataResponse{Msg: &pb.SyncDataResponse_Commit{Commit: &pb.DataCommit{}}})
}

// send queues a response; flush sends the queue. Responses are sent
// outside the namespace lock (handle queues, the receive loop flushes): a
// master that stops reading its answers blocks its own stream, never
// every other call with it.
func (ds *dataStream) send(m *pb.SyncDataResponse) { ds.outbox = append(ds.outbox, m) }

func (ds *dataStream) flush() error {
	for i, m := range ds.outbox {
		if err := ds.stream.Send(m); err != nil {
			clear(ds.outbox)
			ds.outbox = ds.outbox[:0]
			return err
		}
		ds.outbox[i] = nil
	}
	ds.outbox = ds.outbox[:0]
	return nil
}

// handle applies one message under the namespace read lock, held only for
// the message so that an idle stream never blocks entry ops.
func (ds *dataStream) handle(msg *pb.SyncDataRequest) error {
	ds.s.nsLock.RLock()
	defer ds.s.nsLock.RUnlock()
	if err := ds.s.current(ds.session); err != nil {
		return err // fenced off (see Slave.current)
	}
	switch m := msg.GetMsg().(type) {
	case *pb.SyncDataRequest_Header:
		return ds.header(m.Header)
	case *pb.SyncDataRequest_Chunk:
		return ds.chunk(m.Chunk)
	case *pb.SyncDataRequest_Copy:
		return ds.copyOp(m.Copy)
	case *pb.SyncDataRequest_End:
		return ds.end(m.End)
	case *pb.SyncDataRequest_InlineFiles:
		return ds.inlineFiles(m.InlineFiles)
	}
	return statusInvalid("unexpected message in SyncData")
}

// inlineFiles handles files sent whole in their headers, many to a
// message, and answers with all their results in one message.
func (ds *dataStream) inlineFiles(m *pb.InlineFiles) error {
	hs := m.GetHeaders()
	for _, h := range hs {
		if h.GetInlineEnd() == nil {
			return statusInvalid(fmt.Sprintf("file id %d in InlineFiles is not inline", h.GetId()))
		}
	}
	ds.batch = &pb.FileResults{Results: make([]*pb.FileResult, 0, len(hs))}
	defer func() { ds.batch = nil }()
	for _, h := range hs {
		if err := ds.header(h); err != nil {
			return err
		}
	}
	ds.send(&pb.SyncDataResponse{Msg: &pb.SyncDataResponse_Results{Results: ds.batch}})
	return nil
}

// result sends a file's result, or adds it to the batch's (see
// inlineFiles).
func (ds *dataStream) result(id uint64, o outcome, written int64) error {
	ds.s.tree.trash.noteErr(o.err)
	r := &pb.FileResult{Id: id, Result: o.result(), BytesWritten: written}
	if ds.batch != nil {
		ds.batch.Results = append(ds.batch.Results, r)
		return nil
	}
	ds.send(&pb.SyncDataResponse{Msg: &pb.SyncDataResponse_Result{Result: r}})
	return nil
}

func (ds *dataStream) want(id uint64, send bool) error {
	ds.send(&pb.SyncDataResponse{Msg: &pb.SyncDataResponse_Want{Want: &pb.FileWant{Id: id, Send: send}}})
	return nil
}

// sign opens the target's current content (when worth a delta) and returns
// its signature; nil means "send it whole".
func (ds *dataStream) sign(in *incoming, st *unix.Stat_t) (*delta.Signature, error) {
	// Below SmallFile the signature round trip and the read of the old
	// copy cost more than the bytes saved, unless the copy has the size
	// and mtime already and the master asked not to trust them (a file
	// whose ctime says it changed since the last sync: most often
	// renamed or chmod'ed, its content the same; see batch.CrawlOptions).
	maybeSame := in.hdr.GetNoQuickCheck() && st.Size == in.hdr.GetSize() && st.Mtim.Nano() == in.hdr.GetMtimeNs()
	if in.hdr.GetNoDelta() || (st.Size < wire.SmallFile && !maybeSame) || in.hdr.GetSize() == 0 {
		return nil, nil
	}
	fd, err := unix.Openat(in.dirfd, in.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the old copy of %s: %w", in.g, err)
	}
	if got := ds.fdGFID(in, fd); got != in.g {
		unix.Close(fd)
		return nil, fmt.Errorf("%q changed identity: %w", in.name, errUnknown)
	}
	in.old = fd
	if st.Size >= bgCloseMin {
		in.oldCloser = &ds.s.closers
	}
	sig, err := delta.SignAt(fdIO(fd), st.Size, runtime.GOMAXPROCS(0))
	if err != nil {
		return nil, fmt.Errorf("signing the old copy of %s: %w", in.g, err)
	}
	return sig, nil
}

// header answers a file announcement: skip it when the slave's copy already
// has its size and mtime (rsync's quick check), else get ready to receive
// (and receive all of it, for an inline file).
func (ds *dataStream) header(h *pb.FileHeader) error {
	if len(ds.files) >= maxFilesInFlight && h.GetInlineEnd() == nil {
		// Each holds a staging file (and maybe the old copy) open: 20,500
		// headers without their ends ran a slave out of descriptors.
		return statusInvalid(fmt.Sprintf("more than %d files in flight on one data stream", maxFilesInFlight))
	}
	err := ds.receive(h, true)
	if errors.Is(err, errGuessedWrong) {
		return ds.receive(h, false)
	}
	return err
}

// errGuessedWrong says a file receive guessed was new is not (see
// receive); nothing was sent about it yet.
var errGuessedWrong = errors.New("the name of a file guessed new is taken")

// receive is header, with guess: an inline file whose gfid has one name
// in the index is taken for a new file announced by its CREATE (the usual
// case, and all of a first sync), and made at that name with O_EXCL
// without a look at the name first, which cost a path lookup per file.
// When the name is taken, receive returns errGuessedWrong, having sent
// nothing, and header asks again without guessing.
func (ds *dataStream) receive(h *pb.FileHeader, guess bool) error {
	in, err := ds.newIncoming(h)
	if in == nil {
		return err
	}
	inline := h.GetInlineEnd() != nil
	st, current, err := ds.locateTarget(in, guess && inline)
	if err != nil {
		in.close()
		return ds.refuse(h, failed(err))
	}
	if current != nil {
		in.close()
		return ds.refuse(h, *current)
	}
	if err := ds.holdDir(in); err != nil {
		in.close()
		return ds.refuse(h, failed(err))
	}
	if err := in.stage(inline, ds.s.tree.ns); err != nil {
		in.close()
		if errors.Is(err, errGuessedWrong) {
			return err
		}
		return ds.refuse(h, failed(err))
	}
	return ds.transfer(in, &st)
}

// refuse answers h with outcome o and no data.
func (ds *dataStream) refuse(h *pb.FileHeader, o outcome) error {
	// An inline file (its data and end in the header) gets its result
	// and no FileWant.
	if h.GetInlineEnd() == nil {
		if err := ds.want(h.GetId(), false); err != nil {
			return err
		}
	}
	return ds.result(h.GetId(), o, 0)
}

// newIncoming checks h and returns the incoming it announces; nil when
// h is refused (the error is then that of sending the refusal) or
// malformed (the error ends the stream).
func (ds *dataStream) newIncoming(h *pb.FileHeader) (*incoming, error) {
	if _, dup := ds.files[h.GetId()]; dup {
		return nil, statusInvalid(fmt.Sprintf("file id %d announced twice", h.GetId()))
	}
	inline := h.GetInlineEnd() != nil
	if (h.GetInlineData() != nil && !inline) ||
		inline && (h.GetInlineEnd().GetId() != h.GetId() || h.GetInlineData() != nil && h.GetInlineData().GetId() != h.GetId()) {
		return nil, statusInvalid(fmt.Sprintf("file id %d: inline data or end without the other, or of another id", h.GetId()))
	}
	g, err := gfid.FromBytes(h.GetGfid())
	if err != nil || isReserved(g) || g == gfid.Root {
		return nil, ds.refuse(h, failed(invalidf("file gfid: %v", err)))
	}
	if h.GetSize() < 0 {
		return nil, ds.refuse(h, failed(invalidf("size %d", h.GetSize())))
	}
	in := &incoming{hdr: h, g: g, dirfd: -1, fd: -1, old: -1}
	if h.GetSyncXattrs() {
		if in.xattrs, err = validateXattrs(h.GetXattrs(), ds.s.privileged); err != nil {
			return nil, ds.refuse(h, failed(err))
		}
	}
	return in, nil
}

// locateTarget finds where in's data goes and sets in's place: the name a
// CREATE announced (guessed from the index alone when guess is set, see
// receive), or the file's current copy, whose lstat it returns. current
// is set when that copy's content is current already.
func (ds *dataStream) locateTarget(in *incoming, guess bool) (st unix.Stat_t, current *outcome, err error) {
	h, g := in.hdr, in.g
	in.dropGen = ds.s.tree.dropped.Load() // before the index is read
	err = ds.s.tree.idx.View(func(tx *gfidx.Tx) error {
		c := ds.cache(tx)
		links := tx.Links(g)
		in.names = len(links) > 1
		if guess && len(links) == 1 {
			if dirfd, err := c.dir(links[0].Parent); err == nil {
				in.create, in.guessed = true, true
				in.dirfd, in.name, in.parent = dirfd, links[0].Name, links[0].Parent
				return nil
			}
		}
		hd, hst, pending, err := c.locate(g)
		if err != nil {
			return err
		}
		if pending {
			// Announced by a CREATE, not created yet: it will be
			// created whole from this stream.
			in.create = true
			in.dirfd, in.name, in.parent = hd.dirfd, hd.name, hd.parent
			return nil
		}
		st = hst
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return invalidf("%s is not a regular file on the slave", g)
		}
		if !h.GetNoQuickCheck() && st.Size == h.GetSize() && st.Mtim.Nano() == h.GetMtimeNs() {
			// The content is current (rsync's quick check); with the
			// header's full metadata, bring the rest up to date here, so
			// that the file needs no separate metadata op.
			o := noop
			if h.GetSyncXattrs() {
				o = ds.s.applyMetaAt(hd, hst, &metaReq{g: g, mode: h.GetMode(), uid: h.GetUid(), gid: h.GetGid(),
					atime: h.GetAtimeNs(), mtime: h.GetMtimeNs(), syncXattrs: true, xattrs: in.xattrs})
			}
			current = &o
			return nil
		}
		in.dirfd, in.name, in.parent = hd.dirfd, hd.name, hd.parent
		return nil
	})
	return st, current, err
}

// transfer starts taking in's data, staged and held: all of it from the
// header for an inline file, none for an empty one, else what the
// FileWant asks for (a delta against the current copy, st its lstat,
// when worth it).
func (ds *dataStream) transfer(in *incoming, st *unix.Stat_t) error {
	h := in.hdr
	if h.GetInlineEnd() != nil {
		// Whole, from the header: no signature, no delta.
		ds.expect(in, nil)
		if c := h.GetInlineData(); c != nil {
			if err := ds.chunk(c); err != nil {
				return err
			}
		}
		return ds.end(h.GetInlineEnd())
	}
	if h.GetSize() == 0 {
		o := ds.finish(in)
		in.close()
		if err := ds.want(h.GetId(), false); err != nil {
			return err
		}
		return ds.result(h.GetId(), o, 0)
	}
	sig, err := ds.sign(in, st)
	if err != nil {
		in.close()
		return ds.refuse(h, failed(err))
	}
	w := &pb.FileWant{Id: h.GetId(), Send: true}
	if sig != nil {
		if w.Signature, err = sig.MarshalBinary(); err != nil {
			in.close()
			return ds.refuse(h, failed(err))
		}
	}
	ds.expect(in, sig)
	ds.send(&pb.SyncDataResponse{Msg: &pb.SyncDataResponse_Want{Want: w}})
	return nil
}

// expect readies in for its data: a Patcher writing the staged file (from
// the old copy's blocks too, when sig is the signature the slave sends for
// a delta), and its place among the stream's files.
func (ds *dataStream) expect(in *incoming, sig *delta.Signature) {
	var old io.ReaderAt
	if in.old >= 0 {
		old = fdIO(in.old)
	}
	in.patch = delta.NewPatcher(sig, old, &stagedOut{fd: in.fd, wrote: ds.s.wrote}, true)
	in.patch.SetLimit(in.hdr.GetSize())
	ds.files[in.hdr.GetId()] = in
}

// zeros is the source of hole runs.
var zeros = make([]byte, delta.MaxLiteral)

func (ds *dataStream) chunk(c *pb.FileChunk) error {
	in, ok := ds.files[c.GetId()]
	if !ok {
		return statusInvalid(fmt.Sprintf("data for unannounced file id %d", c.GetId()))
	}
	if in.err != nil {
		return nil
	}
	data := c.GetData()
	in.written += int64(len(data))
	switch {
	case c.GetZeroLength() > 0:
		if len(data) > 0 || c.GetCompressed() {
			in.err = invalidf("a hole with data")
			return nil
		}
		// A hole: zeros, which the patcher does not write (the staged
		// file stays sparse) but hashes. Bounded per message, and given
		// up as soon as the stream is: 2^62 zeros in one message kept a
		// slave hashing for ever, under the namespace lock.
		off, n := c.GetOffset(), c.GetZeroLength()
		if n > wire.MaxZeroRun {
			in.err = invalidf("a hole of %d bytes in one chunk (at most %d)", n, int64(wire.MaxZeroRun))
			return nil
		}
		ctx := ds.stream.Context()
		for n > 0 && in.err == nil {
			if err := ctx.Err(); err != nil {
				return err
			}
			k := min(n, int64(len(zeros)))
			if err := in.patch.Apply(delta.Op{Offset: off, Data: zeros[:k]}); err != nil {
				in.err = err
			}
			off, n = off+k, n-k
		}
		return nil
	case c.GetCompressed():
		raw := c.GetRawLength()
		if raw <= 0 || raw > delta.MaxLiteral {
			in.err = invalidf("compressed chunk of %d raw bytes", raw)
			return nil
		}
		if ds.zdec == nil {
			d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(2*delta.MaxLiteral))
			if err != nil {
				in.err = fmt.Errorf("zstd: %w", err)
				return nil
			}
			ds.zdec = d
		}
		out, err := ds.zdec.DecodeAll(data, make([]byte, 0, raw))
		if err != nil || int64(len(out)) != raw {
			in.err = invalidf("bad compressed chunk for %s: %v (%d of %d bytes)", in.g, err, len(out), raw)
			return nil
		}
		data = out
	}
	if len(data) > maxChunk {
		in.err = invalidf("chunk of %d bytes", len(data))
		return nil
	}
	if err := in.patch.Apply(delta.Op{Offset: c.GetOffset(), Data: data}); err != nil {
		in.err = fmt.Errorf("writing %s: %w", in.g, err)
	}
	return nil
}

func (ds *dataStream) copyOp(c *pb.FileCopy) error {
	in, ok := ds.files[c.GetId()]
	if !ok {
		return statusInvalid(fmt.Sprintf("copy for unannounced file id %d", c.GetId()))
	}
	if in.err != nil {
		return nil
	}
	if c.GetBlock() < 0 || c.GetCount() <= 0 || c.GetBlock() > math.MaxInt32 || c.GetCount() > math.MaxInt32 {
		in.err = invalidf("copy of %d blocks at block %d", c.GetCount(), c.GetBlock())
		return nil
	}
	if err := in.patch.Apply(delta.Op{Offset: c.GetOffset(), Block: int(c.GetBlock()), Count: int(c.GetCount())}); err != nil {
		in.err = fmt.Errorf("copying blocks of %s: %w", in.g, err)
	}
	return nil
}

func (ds *dataStream) end(e *pb.FileEnd) error {
	in, ok := ds.files[e.GetId()]
	if !ok {
		return statusInvalid(fmt.Sprintf("end of unannounced file id %d", e.GetId()))
	}
	delete(ds.files, e.GetId())
	defer in.close()
	var o outcome
	switch {
	case in.err != nil:
		o = failed(in.err)
	case e.GetAborted():
		o = failed(fmt.Errorf("%s: the master could not read it consistently", in.g))
	case in.patch.Written() != in.hdr.GetSize():
		o = failed(invalidf("%s: %d bytes built, %d announced", in.g, in.patch.Written(), in.hdr.GetSize()))
	default:
		sum := in.patch.Sum()
		if !bytes.Equal(sum[:], e.GetSum()) {
			o = outcome{status: pb.OpStatus_OP_STATUS_FAILED, err: fmt.Errorf("%w: %s: the file built here has XXH3-128 %x, the master's %x", errHashMismatch, in.g, sum, e.GetSum())}
			break
		}
		o = ds.finish(in)
	}
	return ds.result(e.GetId(), o, in.written)
}

// errHashMismatch says a file built on the slave differs from the master's.
var errHashMismatch = errors.New("hash mismatch")

// finish installs the staged file: it gets its size, the old inode's
// xattrs (the gfid among them), its owner, mode and times, and replaces the
// target; a target with several links is overwritten in place instead so
// that the links keep sharing the inode.
func (ds *dataStream) finish(in *incoming) outcome {
	h := in.hdr
	var cur unix.Stat_t
	if err := unix.Fstat(in.fd, &cur); err != nil {
		return failed(fmt.Errorf("stat %s: %w", in.g, err))
	}
	if cur.Size != h.GetSize() {
		// Trailing zero pages are not written (sparse).
		if err := unix.Ftruncate(in.fd, h.GetSize()); err != nil {
			return failed(fmt.Errorf("truncating %s: %w", in.g, err))
		}
	}
	var st unix.Stat_t
	if in.create && !in.direct && ds.s.tree.dropped.Load() != in.dropGen && !ds.stillAnnounced(in) {
		// Its name was removed on the master (an UNLINK, a purge) since
		// the header came: making it now would leave a name the master
		// does not have, after the purge that would have removed it.
		return failed(fmt.Errorf("%s: %q was removed meanwhile: %w", in.g, in.name, errUnknown))
	}
	if !in.create {
		// The target must still be the inode this stream replaces.
		got, lst, exists, err := ds.s.tree.lookup(in.dirfd, in.parent, in.name, nil)
		if err != nil || !exists || got != in.g || lst.Mode&unix.S_IFMT != unix.S_IFREG {
			return failed(fmt.Errorf("%s moved while its data arrived: %w", in.g, errUnknown))
		}
		st = lst
	}
	target := in.fd
	if !in.create && st.Nlink > 1 {
		fd, err := ds.patchInPlace(in, &st, true)
		if err != nil {
			return failed(err)
		}
		defer unix.Close(fd)
		target = fd
	} else if err := ds.giveXattrs(in); err != nil {
		return failed(err)
	}
	partial, err := ds.giveMetadata(in, target, &cur)
	if err != nil {
		return failed(err)
	}
	if target == in.fd {
		err := ds.install(in, &st)
		var lm *linkedMeanwhile
		if errors.As(err, &lm) {
			// Made and linked meanwhile by entry ops (a LINK of the
			// announced file makes it empty and links it): the data goes
			// into that inode in place, as for any hardlinked file. (It
			// failed as "linked meanwhile" and the master sent it again:
			// a failure in the status for nothing.)
			fd, perr := ds.patchInPlace(in, &lm.st, false)
			if perr != nil {
				return failed(perr)
			}
			defer unix.Close(fd)
			if partial, err = ds.giveMetadata(in, fd, &cur); err != nil {
				return failed(err)
			}
		} else if err != nil {
			return failed(err)
		}
	}
	ds.linkPending(in)
	if partial = errors.Join(in.aclNote, partial); partial != nil {
		return outcome{status: pb.OpStatus_OP_STATUS_PARTIAL, err: partial}
	}
	return done
}

// patchInPlace copies the staged file into in's target, which has other
// links, and gives it the header's xattrs if it has them; it returns the
// target open for writing, for its metadata. keep: with the trash on, a
// copy of the old content is kept there first (not for a file just made
// empty by an entry op).
func (ds *dataStream) patchInPlace(in *incoming, looked *unix.Stat_t, keep bool) (fd int, err error) {
	// O_NONBLOCK: a FIFO put at the name since must not block the open.
	fd, err = unix.Openat(in.dirfd, in.name, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening %s to patch in place: %w", in.g, err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
			fd = -1
		}
	}()
	// What was opened must be what was looked up (and identified) a
	// moment ago: a name swapped in between (a hard link to a file
	// elsewhere) is not written.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fd, fmt.Errorf("stat %s: %w", in.g, err)
	}
	if st.Dev != looked.Dev || st.Ino != looked.Ino || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fd, fmt.Errorf("%q changed identity: %w", in.name, errUnknown)
	}
	if g := ds.fdGFID(in, fd); g != in.g {
		return fd, fmt.Errorf("%q changed identity: %w", in.name, errUnknown)
	}
	if keep {
		if err := ds.keepCopy(in, &st); err != nil {
			return fd, err
		}
	}
	if err := copyInto(fd, in.fd, in.hdr.GetSize()); err != nil {
		return fd, fmt.Errorf("patching %s in place: %w", in.g, err)
	}
	if in.xattrs != nil {
		if in.aclNote, err = syncFdXattrs(fd, in.xattrs, ds.s.privileged); err != nil {
			return fd, fmt.Errorf("%s: %w", in.g, err)
		}
	}
	return fd, nil
}

// giveXattrs gives the staged file the xattrs it is to carry once it
// replaces the target or takes its announced name.
func (ds *dataStream) giveXattrs(in *incoming) error {
	switch {
	case in.create && in.xattrs == nil:
		// Made at its name (direct), it got its gfid then.
		if !in.direct {
			if err := ds.s.tree.ns.FSet(in.fd, in.g); err != nil && !gfid.CannotCarry(err) {
				return err
			}
		}
	case in.xattrs != nil:
		// The header says what the xattrs are: the gfid (which a file
		// made at its name got then) and those.
		if !in.direct {
			if err := ds.s.tree.ns.FSet(in.fd, in.g); err != nil && !gfid.CannotCarry(err) {
				return err
			}
		}
		// Exactly those: staged in the target's directory, the file
		// inherited its default ACL, which the master's may not have.
		var err error
		if in.aclNote, err = syncFdXattrs(in.fd, in.xattrs, ds.s.privileged); err != nil {
			return fmt.Errorf("%s: %w", in.g, err)
		}
	default:
		xs, err := listAllXattrs(in.dirfd, in.name, ds.s.privileged)
		if err != nil {
			return fmt.Errorf("%s: %w", in.g, err)
		}
		for n, v := range xs {
			if err := unix.Fsetxattr(in.fd, n, v, 0); err != nil && !(gfid.CannotCarry(err) && n == ds.s.tree.ns.GFIDAttr()) {
				if aclNotSet(n, err) {
					in.aclNote = errors.Join(in.aclNote, fmt.Errorf("%s not applied: %w", n, err))
					continue
				}
				return fmt.Errorf("copying xattr %q of %s: %w", n, in.g, err)
			}
		}
		// The old copy's ACLs, not the ones the staged file inherited.
		for _, n := range []string{xattrs.ACLAccess, xattrs.ACLDefault} {
			if _, ok := xs[n]; !ok {
				if err := unix.Fremovexattr(in.fd, n); err != nil && !errors.Is(err, unix.ENODATA) && !aclNotSet(n, err) {
					return fmt.Errorf("removing xattr %q of %s: %w", n, in.g, err)
				}
			}
		}
	}
	return nil
}

// giveMetadata gives target (the staged file, or the target patched in
// place) the header's owner, mode and times; cur is the staged file's
// stat. partial says what could not be applied, short of a failure.
func (ds *dataStream) giveMetadata(in *incoming, target int, cur *unix.Stat_t) (partial, err error) {
	h := in.hdr
	if target != in.fd {
		if err := unix.Fstat(target, cur); err != nil {
			return nil, fmt.Errorf("stat %s: %w", in.g, err)
		}
	}
	chowned := false
	if cur.Uid != h.GetUid() || cur.Gid != h.GetGid() {
		chowned = true
		if err := unix.Fchown(target, int(h.GetUid()), int(h.GetGid())); err != nil {
			if !errors.Is(err, unix.EPERM) {
				return nil, fmt.Errorf("chown %s: %w", in.g, err)
			}
			partial = fmt.Errorf("owner %d:%d not applied: %w", h.GetUid(), h.GetGid(), err)
		}
	}
	// Only when the bits differ (the staging file was made with them,
	// mostly), or after a chown, which clears setuid and setgid.
	if want := h.GetMode() & 0o7777; cur.Mode&0o7777 != want || chowned && want&0o6000 != 0 {
		if err := unix.Fchmod(target, h.GetMode()&0o7777); err != nil {
			return nil, fmt.Errorf("chmod %s: %w", in.g, err)
		}
	}
	note, err := setTimesFD(target, h.GetAtimeNs(), h.GetMtimeNs())
	if err != nil {
		return nil, fmt.Errorf("setting times of %s: %w", in.g, err)
	}
	if note != "" {
		partial = errors.Join(partial, errors.New(note))
	}
	return partial, nil
}

// stillAnnounced reports whether the index still has the name a new file
// is to take (see dirCache.dropAnnounced); asked only when some
// announcement was dropped since the file's header (tree.dropped), so
// that a new file costs no index read here.
func (ds *dataStream) stillAnnounced(in *incoming) bool {
	has := false
	ds.s.tree.idx.View(func(tx *gfidx.Tx) error {
		has = tx.HasLink(in.g, gfidx.Link{Parent: in.parent, Name: in.name})
		return nil
	})
	return has
}

// linkPending gives the file just written the other names CREATEs
// announced for its gfid that are not there yet: two CREATEs of one new
// inode, or a CREATE made while the index did not know where the gfid
// lived. The data lands at one name; without this the others would stay
// announced, and nothing would ever make them.
func (ds *dataStream) linkPending(in *incoming) {
	if !in.names {
		return // one name, the one just written: no index transaction per file
	}
	ds.s.tree.idx.View(func(tx *gfidx.Tx) error {
		c := ds.cache(tx)
		for _, l := range tx.Links(in.g) {
			if l.Parent == in.parent && l.Name == in.name {
				continue
			}
			dirfd, err := c.dir(l.Parent)
			if err != nil {
				continue
			}
			if _, _, exists, err := ds.s.tree.lookup(dirfd, l.Parent, l.Name, tx); err != nil || exists {
				continue
			}
			if err := unix.Linkat(in.dirfd, in.name, dirfd, l.Name, 0); err != nil {
				ds.s.log.Debug("linking an announced name of a file", "gfid", in.g, "name", fmt.Sprintf("%q", l.Name), "error", err)
			}
		}
		return nil
	})
}

// syncFdXattrs makes the replicated xattrs of fd exactly want; aclNote
// says which ACLs the slave could not set (see aclNotSet).
func syncFdXattrs(fd int, want map[string][]byte, privileged bool) (aclNote, err error) {
	cur, err := xattrs.ListFD(fd, func(n string) bool { return Replicated(n, privileged) })
	if err != nil {
		return nil, err
	}
	for _, n := range xattrs.Names(want) {
		v := want[n]
		if c, ok := cur[n]; ok && bytes.Equal(c, v) {
			continue
		}
		if err := unix.Fsetxattr(fd, n, v, 0); err != nil {
			if aclNotSet(n, err) {
				aclNote = errors.Join(aclNote, fmt.Errorf("%s not applied: %w", n, err))
				continue
			}
			return nil, fmt.Errorf("setting xattr %q: %w", n, err)
		}
	}
	for n := range cur {
		if _, ok := want[n]; !ok {
			if err := unix.Fremovexattr(fd, n); err != nil && !errors.Is(err, unix.ENODATA) {
				return nil, fmt.Errorf("removing xattr %q: %w", n, err)
			}
		}
	}
	return aclNote, nil
}

// aclNotSet says err, from setting xattr name, is a POSIX ACL the slave
// cannot hold: a filesystem without ACLs (EOPNOTSUPP), or an entry an
// unprivileged slave does not own (EPERM). Reported per file (PARTIAL),
// as an owner it may not give is; not a failure, which would be retried
// for ever. A value the kernel refuses (EINVAL) is a failure.
func aclNotSet(name string, err error) bool {
	return xattrs.IsACL(name) && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM))
}

// linkedMeanwhile says a new file's announced name was made and linked by
// entry ops while its data was on the way (st: its lstat).
type linkedMeanwhile struct{ st unix.Stat_t }

func (*linkedMeanwhile) Error() string { return "linked meanwhile" }

// install renames the staged file over the target (old its lstat), or
// links it in at the announced name of a new file. With the trash on, the
// old copy is kept there (see keepOverwritten).
func (ds *dataStream) install(in *incoming, old *unix.Stat_t) error {
	if in.direct {
		in.installed = true // made at its name
		return nil
	}
	if in.create {
		err := unix.Renameat2(in.dirfd, in.tmp, in.dirfd, in.name, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EEXIST) {
			// Made meanwhile by an entry op (a LINK or RENAME of the
			// announced file creates it empty): replace it if it is still
			// this gfid's only name, else it is not ours to replace.
			got, st, exists, lerr := ds.s.tree.lookup(in.dirfd, in.parent, in.name, nil)
			switch {
			case lerr == nil && exists && got == in.g && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink == 1:
				err = unix.Renameat(in.dirfd, in.tmp, in.dirfd, in.name)
			case lerr == nil && exists && got == in.g && st.Mode&unix.S_IFMT == unix.S_IFREG:
				// Linked meanwhile: its data goes into the inode in place
				// (see finish).
				return &linkedMeanwhile{st: st}
			default:
				return fmt.Errorf("creating %s as %q: the name was taken meanwhile: %w", in.g, in.name, errUnknown)
			}
		}
		if errors.Is(err, unix.ENOENT) {
			// The directory (and the staging file with it) was removed by
			// a later entry op: the file is gone on the master too.
			return fmt.Errorf("creating %s as %q: its directory went meanwhile: %w", in.g, in.name, errUnknown)
		}
		if err != nil {
			return fmt.Errorf("creating %s as %q: %w", in.g, in.name, err)
		}
		in.tmp = ""
		return nil
	}
	undo, err := ds.keepOverwritten(in, old)
	if err != nil {
		return err
	}
	if err := unix.Renameat(in.dirfd, in.tmp, in.dirfd, in.name); err != nil {
		undo()
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("installing %s: its directory went meanwhile: %w", in.g, errUnknown)
		}
		return fmt.Errorf("installing %s: %w", in.g, err)
	}
	in.tmp = ""
	return nil
}

// copyInto overwrites dst with the first size bytes of src and truncates
// it there.
func copyInto(dst, src int, size int64) error {
	var off int64
	for off < size {
		roff, woff := off, off
		n, err := unix.CopyFileRange(src, &roff, dst, &woff, int(min(size-off, 1<<30)), 0)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("short copy at %d of %d", off, size)
		}
		off += int64(n)
	}
	return unix.Ftruncate(dst, size)
}

// fdGFID is the gfid of fd, the open target of in: its xattr, or, when it
// has none, what lookup names it by (tree.unmarked: the derived gfid of
// its name, never for a foreign or hard-linked inode).
func (ds *dataStream) fdGFID(in *incoming, fd int) gfid.GFID {
	g, err := ds.s.tree.ns.FGet(fd)
	if errors.Is(err, gfid.ErrNoGFID) {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return gfid.Zero
		}
		return ds.s.tree.unmarked(in.parent, in.name, &st, nil)
	}
	if err != nil {
		return gfid.Zero
	}
	return g
}

// listAllXattrs returns every xattr of name in dirfd (not followed) that a
// copy of the inode should keep: replicated ones and georep's own.
func listAllXattrs(dirfd int, name string, privileged bool) (map[string][]byte, error) {
	return xattrs.ListAt(dirfd, name, func(n string) bool { return Replicated(n, privileged) || gfid.Owns(n) })
}
