package syncer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georep/georep/internal/bulkconn"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/wire"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/syncer/delta"
)

// File is one file to ship, with its outcome once its box was shipped.
type File struct {
	GFID gfid.GFID
	// At, when its Parent is set, is where the file was last seen (a
	// crawl's or a changelog's entry for it): the Source may try there
	// first.
	At Link

	// Outcome, written by Ship before the box is woken.
	Status   pb.OpStatus // OK, NOOP (slave already current), FAILED, ...
	Code     pb.ErrorCode
	Err      error
	Vanished bool  // gone from the master before it could be read: not an error
	Changed  bool  // changed while being read: ship it again
	Sent     int64 // file data bytes sent (literal data, after compression)
	Matched  int64 // bytes the slave rebuilt from its old copy (delta)
	Delta    bool  // the slave had an old copy and a delta was sent
	Size     int64 // the file's size when it was opened
	// NoDelta asks for the whole file (set for the retry after a hash
	// mismatch).
	NoDelta bool
	// NoQuickCheck asks the slave not to take same size and mtime for
	// current (the master knows the content changed).
	NoQuickCheck bool
	// NoInline announces the file and waits for the slave's FileWant even
	// when it is small enough to go inline (InlineMax): the slave may have
	// the content already (the quick check then keeps its copy), and a
	// file sent inline would cost its bytes anyway.
	NoInline bool
	// MetaDone says the slave applied all of the file's metadata with it
	// (mode, owner, times, xattrs): no separate metadata op is needed.
	MetaDone bool
}

// OK reports whether the file needs nothing more.
func (f *File) OK() bool {
	if f.Vanished {
		return true
	}
	switch f.Status {
	case pb.OpStatus_OP_STATUS_OK, pb.OpStatus_OP_STATUS_NOOP, pb.OpStatus_OP_STATUS_RESOLVED:
		return !f.Changed
	}
	return false
}

// Opened is a master file ready to be read.
type Opened struct {
	// File is the open file, closed by the Sender; nil only for an empty
	// file the master may not open (there is nothing to read).
	File ReadFile
	Stat unix.Stat_t
	// Xattrs are the file's replicated xattrs when XattrsKnown: the header
	// then carries all of the file's metadata.
	Xattrs      []*pb.Xattr
	XattrsKnown bool
}

// ReadFile is an open file to send: an *os.File, or an FD.
type ReadFile interface {
	io.ReaderAt
	io.Closer
	Fd() uintptr
}

// FD is a regular file's descriptor as a ReadFile, read with pread(2).
// Lighter than an *os.File, which costs a fcntl(2) and a finalizer per
// file: on 100,000 small files that was a tenth of the master's system
// calls. The descriptor may have O_NONBLOCK set (opened so, not to hang on
// a FIFO that took a file's name): regular files ignore it, and where a
// filesystem does not, ReadAt clears it.
type FD int

var _ ReadFile = FD(0)

// ReadAt reads len(b) bytes at off, or up to the end of the file
// (io.EOF).
func (fd FD) ReadAt(b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Pread(int(fd), b[n:], off+int64(n))
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if err := unix.SetNonblock(int(fd), false); err != nil {
				return n, err
			}
			continue
		case err != nil:
			return n, &fs.PathError{Op: "pread", Path: "fd", Err: err}
		case m == 0:
			return n, io.EOF
		}
		n += m
	}
	return n, nil
}

// Close closes the descriptor.
func (fd FD) Close() error { return unix.Close(int(fd)) }

// Fd is the descriptor.
func (fd FD) Fd() uintptr { return uintptr(fd) }

// Link is a name of a file in a directory (by gfid).
type Link struct {
	Parent gfid.GFID
	Name   string
}

// Source opens master files by gfid.
type Source interface {
	// Open opens regular file g for reading, verified to carry gfid g, and
	// stats it. at, when its Parent is set, is a hint of where g is. An
	// error wrapping fs.ErrNotExist means g is gone (or moved where the
	// source cannot find it): a later record will tell.
	Open(g gfid.GFID, at Link) (*Opened, error)
}

// Sender ships boxes of files over SyncData streams.
type Sender struct {
	Client pb.SlaveServiceClient
	// Token is the session token the handshake answered.
	Token  []byte
	Source Source
	// ChunkSize is the literal data per message (default 256 KiB: large
	// enough that per-message costs vanish, small enough to interleave).
	ChunkSize int
	// Window bounds the files announced but not yet answered (default 256),
	// which bounds open descriptors and memory on both sides.
	Window int
	// Compress sends literal data zstd-compressed where that is smaller.
	Compress bool
	// Limit, when set, paces the file data sent (shared by all workers,
	// so it bounds the session's bandwidth).
	Limit *rate.Limiter
	// Bulk, when set, opens a data connection beside a stream (see
	// internal/bulkconn). A stream dials one, in the background, once it
	// announces a file of BulkMinFile bytes or more, and from then on
	// sends the literal chunks of BulkMinChunk bytes or more on it.
	Bulk func(ctx context.Context, tok bulkconn.Token) (net.Conn, error)
	// Log gets a warning when a data connection cannot be opened (the
	// data then goes on the stream). Nil logs nothing.
	Log hclog.Logger

	encOnce    sync.Once
	enc        *zstd.Encoder
	bulkWarned atomic.Bool

	idleMu sync.Mutex
	idle   []idleConn // data connections opened for a box that never used them
}

// idleConn is a data connection that was opened, and is parked at the
// slave, but was never named: a box whose large file was all sent before
// its connection came up (a short file on a long link) leaves it to the
// next box, which then has one at once. The slave would not notice it
// closed until it expires, and refuses connections beyond a cap.
type idleConn struct {
	conn  net.Conn
	tok   bulkconn.Token
	since time.Time // when it was dialled
}

// At most maxIdle idle data connections are kept, each for at most
// idleFor after its dial: well within the time the slave keeps it.
const (
	maxIdle = 4
	idleFor = bulkconn.UnclaimedTTL / 3
)

// takeIdle returns an idle data connection young enough to use, closing
// the ones too old.
func (s *Sender) takeIdle() (idleConn, bool) {
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	for len(s.idle) > 0 {
		ic := s.idle[len(s.idle)-1]
		s.idle = s.idle[:len(s.idle)-1]
		if time.Since(ic.since) < idleFor {
			return ic, true
		}
		ic.conn.Close()
	}
	return idleConn{}, false
}

// putIdle keeps ic for a later box, or closes it if enough are kept.
func (s *Sender) putIdle(ic idleConn) {
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	if len(s.idle) >= maxIdle || time.Since(ic.since) >= idleFor {
		ic.conn.Close()
		return
	}
	s.idle = append(s.idle, ic)
}

// Close closes the idle data connections. The Sender may still be used.
func (s *Sender) Close() {
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	for _, ic := range s.idle {
		ic.conn.Close()
	}
	s.idle = nil
}

type openFile struct {
	f      ReadFile // nil for an unreadable empty file
	st     unix.Stat_t
	file   *File
	xattrs []*pb.Xattr
	known  bool
}

func (o *openFile) close() {
	if o.f != nil {
		o.f.Close()
	}
}

// Ship implements ShipFunc for *File: one SyncData stream for all files.
func (s *Sender) Ship(ctx context.Context, files []*File) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sh := s.newShipment(ctx, cancel, files)
	shipped := false
	defer func() {
		cancel() // a dial still under way ends
		sh.bk.close(shipped)
	}()
	if err := sh.open(); err != nil {
		return err
	}
	go sh.receive()
	defer sh.closePending()
	if err := sh.send(); err != nil {
		return sh.fail(err)
	}
	if err := sh.finish(); err != nil {
		return err
	}
	shipped = true
	return nil
}

// shipment is one box on its way: its SyncData stream, read by receive
// on a goroutine of its own while Ship's goroutine sends.
type shipment struct {
	s      *Sender
	ctx    context.Context
	cancel context.CancelFunc // ends the stream (and a dial under way)
	files  []*File
	window int
	stream pb.SlaveService_SyncDataClient

	// Ship's goroutine's.
	bk       *bulkLink
	buf      []byte // the read buffer of every whole file of this box
	batch    inlineBatch
	pending  map[uint64]*openFile // announced, awaiting FileWant
	local    map[int]bool         // failed on the master: never announced
	sentMeta map[int]bool         // announced with all their metadata

	// wants carries the answers from receive to Ship's goroutine; results
	// and recvErr are receive's, read by Ship's goroutine once receive is
	// done (readerDone).
	wants      chan *pb.FileWant
	readerDone chan struct{}
	mu         sync.Mutex // guards results, recvErr, announced and wanted
	results    map[uint64]*pb.FileResult
	recvErr    error
	// announced holds the size of each file announced (its id), wanted
	// the ids answered with a FileWant: the slave may answer only what
	// was announced, once each, and its signatures are bounded by the
	// file's size (see admit).
	announced map[uint64]int64
	wanted    map[uint64]bool
}

func (s *Sender) newShipment(ctx context.Context, cancel context.CancelFunc, files []*File) *shipment {
	chunk := s.ChunkSize
	if chunk <= 0 {
		chunk = 256 << 10
	}
	window := s.Window
	if window <= 0 {
		window = 256
	}
	return &shipment{
		s: s, ctx: ctx, cancel: cancel, files: files, window: window,
		bk:      &bulkLink{s: s},
		buf:     make([]byte, chunk),
		batch:   inlineBatch{buf: make([]byte, inlineBatchBytes)},
		pending: map[uint64]*openFile{}, local: map[int]bool{}, sentMeta: map[int]bool{},
		// Each file gets exactly one FileWant, so a buffer of len(files)
		// never blocks receive, and the slave is never blocked sending to
		// us while we block sending to it.
		wants:      make(chan *pb.FileWant, len(files)),
		readerDone: make(chan struct{}),
		results:    map[uint64]*pb.FileResult{},
		announced:  map[uint64]int64{},
		wanted:     map[uint64]bool{},
	}
}

// maxSignature bounds the signature the slave may send for a file of size
// bytes: twice what a copy of that size signs to (its blocks' weak and
// strong sums), plus slack. A larger one (the slave's copy is much larger
// than the file now) is not used (the file goes whole); a hostile slave
// cannot make the master hold more than that per announced file (60 MB
// signatures for small files took a master to 1.3 GB).
func maxSignature(size int64) int {
	blocks := (size + int64(delta.BlockSize(size)) - 1) / int64(delta.BlockSize(size))
	return int(min(2*blocks*(4+16)+4096, 64<<20))
}

// admit checks an answer of the slave against what was announced, under
// sh.mu: an id never announced, a second FileWant or a second result for
// one id is a protocol error (a flood of results with random ids grew the
// master's memory by 1.5 GB in seconds); an oversized signature is
// dropped (the file then goes whole).
func (sh *shipment) admit(w *pb.FileWant, r *pb.FileResult) error {
	if w != nil {
		size, ok := sh.announced[w.GetId()]
		if !ok || sh.wanted[w.GetId()] {
			return fmt.Errorf("slave answered file id %d, which was not announced or was answered already", w.GetId())
		}
		sh.wanted[w.GetId()] = true
		if len(w.GetSignature()) > maxSignature(size) {
			w.Signature = nil
		}
		return nil
	}
	if _, ok := sh.announced[r.GetId()]; !ok {
		return fmt.Errorf("slave sent a result for file id %d, which was not announced", r.GetId())
	}
	if _, dup := sh.results[r.GetId()]; dup {
		return fmt.Errorf("slave sent a second result for file id %d", r.GetId())
	}
	sh.results[r.GetId()] = r
	return nil
}

// announce records that file id of size bytes is about to be announced.
func (sh *shipment) announcing(id uint64, size int64) {
	sh.mu.Lock()
	sh.announced[id] = size
	sh.mu.Unlock()
}

// open opens the stream and names the session on it.
func (sh *shipment) open() error {
	stream, err := sh.s.Client.SyncData(sh.ctx)
	if err != nil {
		return fmt.Errorf("syncer: opening data stream: %w", err)
	}
	sh.stream = stream
	if err := stream.Send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Open{Open: &pb.DataOpen{SessionToken: sh.s.Token}}}); err != nil {
		return fmt.Errorf("syncer: data stream: %w", sh.s.streamErr(stream, err))
	}
	return nil
}

// receive owns stream.Recv: it hands the FileWants to Ship's goroutine
// and keeps the results, until the slave commits or the stream fails
// (which cancels the send).
func (sh *shipment) receive() {
	defer close(sh.readerDone)
	defer close(sh.wants)
	for {
		msg, err := sh.stream.Recv()
		if err != nil {
			sh.mu.Lock()
			if errors.Is(err, io.EOF) {
				err = errors.New("slave ended the data stream without a commit")
			}
			sh.recvErr = err
			sh.mu.Unlock()
			sh.cancel()
			return
		}
		var aerr error
		switch m := msg.GetMsg().(type) {
		case *pb.SyncDataResponse_Want:
			sh.mu.Lock()
			aerr = sh.admit(m.Want, nil)
			sh.mu.Unlock()
			if aerr == nil {
				sh.wants <- m.Want
			}
		case *pb.SyncDataResponse_Result:
			sh.mu.Lock()
			aerr = sh.admit(nil, m.Result)
			sh.mu.Unlock()
		case *pb.SyncDataResponse_Results:
			sh.mu.Lock()
			for _, r := range m.Results.GetResults() {
				if aerr = sh.admit(nil, r); aerr != nil {
					break
				}
			}
			sh.mu.Unlock()
		case *pb.SyncDataResponse_Commit:
			return
		}
		if aerr != nil {
			sh.mu.Lock()
			sh.recvErr = aerr
			sh.mu.Unlock()
			sh.cancel()
			return
		}
	}
}

func (sh *shipment) closePending() {
	for _, o := range sh.pending {
		o.close()
	}
}

// send announces every file, at most window of them ahead of their
// answers, sends the data the answers ask for, and ends the sending half
// of the stream once every file is answered. Its errors go through fail.
func (sh *shipment) send() error {
	for i, f := range sh.files {
		if err := sh.awaitAnswers(sh.window-1, "stream closed"); err != nil {
			return err
		}
		if err := sh.serveAnswered(); err != nil {
			return err
		}
		if err := sh.announce(i, f); err != nil {
			return err
		}
	}
	if err := sh.batch.flush(sh.stream); err != nil {
		return err
	}
	if err := sh.awaitAnswers(0, "stream closed before every file was answered"); err != nil {
		return err
	}
	return sh.stream.CloseSend()
}

// announce opens file i and sends it inline, or its header (its data
// follows its answer).
func (sh *shipment) announce(i int, f *File) error {
	o, err := sh.s.open(f)
	if err != nil {
		f.Status, f.Err = pb.OpStatus_OP_STATUS_FAILED, err
		sh.local[i] = true
		return nil
	}
	if o == nil {
		return nil // vanished
	}
	id := uint64(i)
	sh.announcing(id, o.st.Size)
	if !f.NoInline && o.st.Size <= InlineMax {
		// Small: the data goes with the header, many files to a
		// message, and the slave answers with the results alone.
		err := sh.s.addInline(sh.ctx, sh.stream, &sh.batch, id, o)
		if o.known {
			sh.sentMeta[i] = true
		}
		o.close()
		return err
	}
	hdr := o.header(id)
	if o.known {
		sh.sentMeta[i] = true
	}
	if o.st.Size >= BulkMinFile {
		sh.bk.start(sh.ctx)
	}
	sh.pending[id] = o
	return sh.stream.Send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Header{Header: hdr}})
}

// awaitAnswers serves answers until at most left files await theirs; an
// end of the answers before that is the error closed.
func (sh *shipment) awaitAnswers(left int, closed string) error {
	for len(sh.pending) > left {
		w, ok := <-sh.wants
		if !ok {
			return errors.New(closed)
		}
		if err := sh.answer(w); err != nil {
			return err
		}
	}
	return nil
}

// serveAnswered serves the answers that are already in, without blocking.
func (sh *shipment) serveAnswered() error {
	for {
		select {
		case w, ok := <-sh.wants:
			if !ok {
				return nil
			}
			if err := sh.answer(w); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// answer sends the data a FileWant asks for, if any, and closes the file.
func (sh *shipment) answer(w *pb.FileWant) error {
	o, ok := sh.pending[w.GetId()]
	if !ok {
		return fmt.Errorf("slave answered unknown file id %d", w.GetId())
	}
	delete(sh.pending, w.GetId())
	defer o.close()
	if !w.GetSend() {
		return nil
	}
	var sig *delta.Signature
	if b := w.GetSignature(); len(b) > 0 {
		sig = new(delta.Signature)
		if err := sig.UnmarshalBinary(b); err != nil {
			return fmt.Errorf("slave sent a bad signature for %s: %w", o.file.GFID, err)
		}
		o.file.Delta = true
	}
	return sh.s.sendData(sh.ctx, sh.stream, sh.bk, w.GetId(), o, sig, sh.buf)
}

// fail ends the shipment on a send error: it stops receive and says why
// the stream failed.
func (sh *shipment) fail(err error) error {
	sh.cancel()
	<-sh.readerDone
	sh.mu.Lock()
	var dce dataConnErr
	switch {
	case sh.recvErr != nil && errors.Is(err, context.Canceled):
		// The reader failed first and cancelled the send: its error
		// is the reason (the link broke), not the cancellation.
		err = sh.recvErr
	case sh.recvErr != nil && errors.As(err, &dce) && status.Code(sh.recvErr) != codes.Canceled:
		// The slave ended the stream (and closed the data
		// connection we were writing to): its status says why.
		err = sh.recvErr
	}
	sh.mu.Unlock()
	return fmt.Errorf("syncer: data stream: %w", sh.s.streamErr(sh.stream, err))
}

// finish waits for the slave's commit and gives each file its outcome.
func (sh *shipment) finish() error {
	<-sh.readerDone
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.recvErr != nil {
		return fmt.Errorf("syncer: data stream: %w", sh.recvErr)
	}
	for i, f := range sh.files {
		if f.Vanished || sh.local[i] {
			continue
		}
		r, ok := sh.results[uint64(i)]
		if !ok {
			f.Status, f.Err = pb.OpStatus_OP_STATUS_FAILED, errors.New("slave reported no result")
			continue
		}
		f.Status = r.GetResult().GetStatus()
		f.Code = r.GetResult().GetCode()
		if msg := r.GetResult().GetError(); msg != "" {
			f.Err = errors.New(msg)
		}
		switch f.Status {
		case pb.OpStatus_OP_STATUS_OK, pb.OpStatus_OP_STATUS_NOOP, pb.OpStatus_OP_STATUS_PARTIAL:
			f.MetaDone = sh.sentMeta[i] && !f.Changed
		}
	}
	return nil
}

// streamErr prefers the status the server ended the stream with over a
// bare io.EOF from Send.
func (s *Sender) streamErr(stream pb.SlaveService_SyncDataClient, err error) error {
	if errors.Is(err, io.EOF) {
		if _, rerr := stream.Recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
			return rerr
		}
	}
	return err
}

// changed reports whether o's file has another size or mtime than when it
// was opened (or cannot be stat'ed): what was read of it may mix versions.
func (o *openFile) changed() bool {
	var st unix.Stat_t
	return unix.Fstat(int(o.f.Fd()), &st) != nil || st.Size != o.st.Size || st.Mtim != o.st.Mtim
}

// header announces o's file as id.
func (o *openFile) header(id uint64) *pb.FileHeader {
	f := o.file
	return &pb.FileHeader{
		Id: id, Gfid: f.GFID.Bytes(), Size: o.st.Size, Mode: o.st.Mode,
		Uid: o.st.Uid, Gid: o.st.Gid,
		AtimeNs: o.st.Atim.Nano(), MtimeNs: o.st.Mtim.Nano(), NoDelta: f.NoDelta, NoQuickCheck: f.NoQuickCheck,
		SyncXattrs: o.known, Xattrs: o.xattrs,
	}
}

// InlineMax is the largest file sent inline: its data and end ride in its
// header (FileHeader.inline_data, inline_end), one message instead of
// three, and no FileWant round trip (see wire.SmallFile).
const InlineMax = wire.SmallFile

// inlineBatchBytes bounds the file data of one InlineFiles message: at
// least InlineMax, and small enough that the message does not hold up the
// stream's other files for long.
const inlineBatchBytes = 4 * InlineMax

// inlineBatchFiles bounds the files of one InlineFiles message, so that
// empty files (no data) or big xattrs cannot make it unbounded: the slave
// takes messages of at most wire.MaxMessage (64 MiB).
const inlineBatchFiles = 1024

// inlineBatch gathers inline files' headers into one InlineFiles message;
// buf holds their data until it is sent.
type inlineBatch struct {
	buf     []byte
	used    int // of buf
	meta    int // bytes of the headers' xattrs
	headers []*pb.FileHeader
}

// flush sends the batch's files, if any.
func (b *inlineBatch) flush(stream pb.SlaveService_SyncDataClient) error {
	if len(b.headers) == 0 {
		return nil
	}
	err := stream.Send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_InlineFiles{InlineFiles: &pb.InlineFiles{Headers: b.headers}}})
	b.used, b.meta, b.headers = 0, 0, nil
	if err != nil {
		return streamErr{err}
	}
	return nil
}

// addInline reads o's file (at most InlineMax bytes) whole into the batch
// and adds its header, sending the batch first when the file's data or
// xattrs do not fit, or it is full.
func (s *Sender) addInline(ctx context.Context, stream pb.SlaveService_SyncDataClient, b *inlineBatch, id uint64, o *openFile) error {
	meta := 0
	for _, x := range o.xattrs {
		meta += len(x.GetName()) + len(x.GetValue())
	}
	if int64(len(b.buf)-b.used) < o.st.Size || b.meta+meta > inlineBatchBytes || len(b.headers) >= inlineBatchFiles {
		if err := b.flush(stream); err != nil {
			return err
		}
	}
	b.meta += meta
	hdr, err := s.inlineHeader(ctx, id, o, b.buf[b.used:])
	if err != nil {
		return err
	}
	if d := hdr.GetInlineData(); d != nil && !d.GetCompressed() {
		b.used += len(d.GetData())
	}
	b.headers = append(b.headers, hdr)
	return nil
}

// inlineHeader reads o's file whole into buf and returns its header with
// the data and the end. A file that changed while read gets an aborted
// end, as sendData would give it. It reads the size the file had when
// opened, with no look past it for more: a file that grew meanwhile has
// another size when stat'ed after the read (changed), and one pread(2) is
// all a small file costs.
func (s *Sender) inlineHeader(ctx context.Context, id uint64, o *openFile, buf []byte) (*pb.FileHeader, error) {
	hdr := o.header(id)
	end := &pb.FileEnd{Id: id}
	var data []byte
	if o.f == nil {
		end.Aborted = o.st.Size != 0
	} else {
		n, err := o.f.ReadAt(buf[:o.st.Size], 0)
		switch {
		case int64(n) != o.st.Size || err != nil:
			end.Aborted = true // shrank or unreadable
		case o.changed():
			end.Aborted = true
		default:
			data = buf[:n]
		}
	}
	if end.Aborted {
		o.file.Changed = true
	} else {
		sum := delta.SumOf(data)
		end.Sum = sum[:]
	}
	if len(data) > 0 {
		c, err := s.literal(ctx, id, 0, data, o.file)
		if err != nil {
			return nil, err
		}
		hdr.InlineData = c
	}
	hdr.InlineEnd = end
	return hdr, nil
}

// open opens f's file and stats it; nil, nil when it vanished.
func (s *Sender) open(f *File) (*openFile, error) {
	op, err := s.Source.Open(f.GFID, f.At)
	if errors.Is(err, fs.ErrNotExist) {
		f.Vanished = true
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if op.File == nil && op.Stat.Size != 0 {
		return nil, fmt.Errorf("syncer: source gave no file for %s of %d bytes", f.GFID, op.Stat.Size)
	}
	f.Size = op.Stat.Size
	return &openFile{f: op.File, st: op.Stat, file: f, xattrs: op.Xattrs, known: op.XattrsKnown}, nil
}

// sendData streams a file's bytes — a delta against sig when the slave has
// an old copy, else the whole file with its holes as zero runs — and its
// end marker with the end-to-end hash (delta.Sum) of what was sent. A
// file that shrank, grew or was modified while read is aborted and marked
// Changed: the slave keeps its old copy, and the caller ships the file
// again.
func (s *Sender) sendData(ctx context.Context, stream pb.SlaveService_SyncDataClient, bk *bulkLink, id uint64, o *openFile, sig *delta.Signature, buf []byte) error {
	chunk := len(buf)
	var sum delta.Sum
	aborted := false
	var err error
	switch {
	case o.f == nil:
		sum = delta.SumOf(nil)
		aborted = o.st.Size != 0
	case sig != nil:
		var n int64
		r := io.NewSectionReader(o.f, 0, o.st.Size)
		n, sum, err = delta.Diff(sig, r, chunk, func(op delta.Op) error {
			if op.Count > 0 {
				o.file.Matched += op.Len(sig)
				if err := stream.Send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Copy{Copy: &pb.FileCopy{
					Id: id, Offset: op.Offset, Block: int64(op.Block), Count: int64(op.Count)}}}); err != nil {
					return streamErr{err}
				}
				return nil
			}
			return s.sendLiteral(ctx, stream, bk, id, op.Offset, op.Data, o.file)
		})
		if err != nil && !isStreamErr(err) {
			aborted = true // unreadable now: the slave keeps its old copy
			err = nil
		}
		if n != o.st.Size {
			aborted = true
		}
	default:
		sum, aborted, err = s.sendWhole(ctx, stream, bk, id, o, buf)
	}
	if err != nil {
		return err
	}
	if o.f != nil && o.changed() {
		aborted = true
	}
	if aborted {
		o.file.Changed = true
	}
	return stream.Send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_End{End: &pb.FileEnd{Id: id, Aborted: aborted, Sum: sum[:]}}})
}

// dataConnErr is a failed write to the data connection.
type dataConnErr struct{ error }

func (e dataConnErr) Error() string { return "data connection: " + e.error.Error() }
func (e dataConnErr) Unwrap() error { return e.error }

// streamErr marks errors from the stream itself (as opposed to reading the
// file), which end the whole session.
type streamErr struct{ error }

func (e streamErr) Unwrap() error { return e.error }

func isStreamErr(err error) bool {
	var se streamErr
	return errors.As(err, &se)
}

// sendWhole streams the whole file: data regions read and sent, holes
// (found with SEEK_DATA/SEEK_HOLE) sent as zero runs without reading them.
func (s *Sender) sendWhole(ctx context.Context, stream pb.SlaveService_SyncDataClient, bk *bulkLink, id uint64, o *openFile, buf []byte) (sum delta.Sum, aborted bool, err error) {
	h := delta.NewHasher()
	defer h.Release()
	chunk := len(buf)
	fd := int(o.f.Fd())
	size := o.st.Size
	// A file whose allocated blocks cover its size has no holes: do not
	// probe for them (two system calls per file, most files).
	sparse := o.st.Blocks*512 < size
	var off int64
	for off < size {
		data, herr := off, error(nil)
		if sparse {
			data, herr = unix.Seek(fd, off, unix.SEEK_DATA)
		}
		switch {
		case errors.Is(herr, unix.ENXIO):
			data = size // only a hole is left
		case herr != nil:
			data = off // no hole support: all data
		}
		data = min(data, size)
		if data > off {
			for z := off; z < data; {
				n := min(data-z, wire.MaxZeroRun)
				if err := stream.Send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Chunk{Chunk: &pb.FileChunk{Id: id, Offset: z, ZeroLength: n}}}); err != nil {
					return sum, false, streamErr{err}
				}
				z += n
			}
			for n := data - off; n > 0; {
				k := min(n, int64(len(buf)))
				clear(buf[:k])
				h.Write(buf[:k])
				n -= k
			}
			off = data
			if off >= size {
				break
			}
		}
		end := size
		if sparse {
			if e, herr := unix.Seek(fd, off, unix.SEEK_HOLE); herr == nil && e > off && e < size {
				end = e
			}
		}
		for off < end {
			n, rerr := o.f.ReadAt(buf[:min(int64(chunk), end-off)], off)
			if n > 0 {
				h.Write(buf[:n])
				if err := s.sendLiteral(ctx, stream, bk, id, off, buf[:n], o.file); err != nil {
					return sum, false, err
				}
				off += int64(n)
			}
			if rerr != nil {
				return sum, true, nil // shrank (EOF early) or unreadable
			}
		}
	}
	return h.Sum(), false, nil
}

// sendLiteral sends literal bytes, compressed when asked and worth it,
// paced by the bandwidth limit: on the data connection when it is up and
// the chunk is large enough, else in the message.
func (s *Sender) sendLiteral(ctx context.Context, stream pb.SlaveService_SyncDataClient, bk *bulkLink, id uint64, off int64, data []byte, f *File) error {
	c, err := s.literal(ctx, id, off, data, f)
	if err != nil {
		return err
	}
	var onConn []byte
	if len(c.Data) >= BulkMinChunk {
		conn, err := bk.ready(stream)
		if err != nil {
			return err
		}
		if conn != nil {
			onConn, c.Data, c.BulkLength = c.Data, nil, int64(len(c.Data))
		}
	}
	if err := stream.Send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Chunk{Chunk: c}}); err != nil {
		return streamErr{err}
	}
	if onConn != nil {
		// After the descriptor: the slave reads these bytes once it has
		// it, so they never wait on the stream behind them.
		if _, err := bk.conn.Write(onConn); err != nil {
			if ctx.Err() != nil {
				err = ctx.Err() // closed because the stream failed: its error tells why
			}
			return streamErr{dataConnErr{err}}
		}
	}
	return nil
}

// Data connections: a stream opens one once it announces a file of
// BulkMinFile bytes (below that, gRPC's own costs are small beside the
// file's, and a connection costs round trips), and sends literal chunks
// of BulkMinChunk bytes or more on it.
const (
	BulkMinFile  = 1 << 20
	BulkMinChunk = 32 << 10
)

// bulkLink is a stream's data connection: dialled in the background (or
// taken from the idle ones), used from the first chunk after it is up.
// Only Ship's goroutine uses it.
type bulkLink struct {
	s      *Sender
	tok    bulkconn.Token
	since  time.Time     // when it was dialled
	dialed chan bulkDial // nil until start; gets the dial's one result
	done   bool          // the result was taken
	conn   net.Conn      // up and named to the slave (BulkOpen)
	unhook func() bool   // stops closing conn when the stream's context ends
}

type bulkDial struct {
	conn net.Conn
	err  error
}

// start takes an idle data connection, or dials one in the background
// (once; not at all without Sender.Bulk).
func (b *bulkLink) start(ctx context.Context) {
	if b.s.Bulk == nil || b.dialed != nil {
		return
	}
	b.dialed = make(chan bulkDial, 1)
	if ic, ok := b.s.takeIdle(); ok {
		b.tok, b.since = ic.tok, ic.since
		b.dialed <- bulkDial{conn: ic.conn}
		return
	}
	tok, err := bulkconn.NewToken()
	if err != nil {
		b.dialed <- bulkDial{err: err}
		return
	}
	b.tok, b.since = tok, time.Now()
	go func() {
		c, err := b.s.Bulk(ctx, tok)
		b.dialed <- bulkDial{c, err}
	}()
}

// ready returns the data connection if it is up (nil if not, or not
// used), naming it to the slave on the first call after the dial
// succeeded. It never waits for the dial.
func (b *bulkLink) ready(stream pb.SlaveService_SyncDataClient) (net.Conn, error) {
	if b.conn != nil || b.dialed == nil || b.done {
		return b.conn, nil
	}
	var r bulkDial
	select {
	case r = <-b.dialed:
		b.done = true
	default:
		return nil, nil
	}
	if r.err != nil {
		b.warn(r.err)
		return nil, nil
	}
	if err := stream.Send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_BulkOpen{BulkOpen: &pb.BulkOpen{Token: b.tok[:]}}}); err != nil {
		r.conn.Close()
		return nil, streamErr{err}
	}
	b.conn = r.conn
	b.unhook = context.AfterFunc(stream.Context(), func() { r.conn.Close() })
	return b.conn, nil
}

// close closes the data connection the stream named. One it never named
// goes to the idle ones if the box was shipped (after a failure it is
// closed: the link may be what failed); a dial still under way is waited
// for (the caller cancelled its context).
func (b *bulkLink) close(shipped bool) {
	if b.dialed != nil && !b.done {
		r := <-b.dialed
		b.done = true
		switch {
		case r.conn != nil && shipped:
			b.s.putIdle(idleConn{conn: r.conn, tok: b.tok, since: b.since})
		case r.conn != nil:
			r.conn.Close()
		}
	}
	if b.conn != nil {
		b.unhook()
		b.conn.Close()
		b.conn = nil
	}
}

// warn logs a failed data connection: a warning the first time, then at
// debug level (every box with a large file tries again).
func (b *bulkLink) warn(err error) {
	switch {
	case b.s.Log == nil:
	case b.s.bulkWarned.CompareAndSwap(false, true):
		b.s.Log.Warn("no data connection; the data goes on the stream", "error", err)
	default:
		b.s.Log.Debug("no data connection; the data goes on the stream", "error", err)
	}
}

// literal makes the chunk of literal bytes, compressed when asked and worth
// it, once the bandwidth limit lets it go, and counts it as sent.
func (s *Sender) literal(ctx context.Context, id uint64, off int64, data []byte, f *File) (*pb.FileChunk, error) {
	c := &pb.FileChunk{Id: id, Offset: off, Data: data}
	if s.Compress && len(data) >= 512 {
		s.encOnce.Do(func() {
			s.enc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
		})
		if s.enc != nil {
			if z := s.enc.EncodeAll(data, make([]byte, 0, len(data)/2)); len(z) < len(data) {
				c.Data, c.Compressed, c.RawLength = z, true, int64(len(data))
			}
		}
	}
	if s.Limit != nil {
		if err := waitN(ctx, s.Limit, len(c.Data)); err != nil {
			return nil, streamErr{err}
		}
	}
	f.Sent += int64(len(c.Data))
	return c, nil
}

// waitN waits for n tokens, in bursts the limiter allows.
func waitN(ctx context.Context, l *rate.Limiter, n int) error {
	for n > 0 {
		k := min(n, l.Burst())
		if err := l.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}
