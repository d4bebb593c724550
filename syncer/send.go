package syncer

import (
	"context"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"io"
	"io/fs"
	"os"
	"sync"

	"github.com/georep/georep/internal/gfid"
	pb "github.com/georep/georep/proto/georep/v1"
)

// File is one file to ship, with its outcome once its box was shipped.
type File struct {
	GFID gfid.GFID

	// Outcome, written by Ship before the box is woken.
	Status   pb.OpStatus // OK, NOOP (slave already current), FAILED, ...
	Code     pb.ErrorCode
	Err      error
	Vanished bool  // gone from the master before it could be read: not an error
	Changed  bool  // changed while being read: ship it again
	Sent     int64 // file data bytes sent
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
	// File is the open file; nil only for an empty file the master may
	// not open (there is nothing to read).
	File *os.File
	Stat unix.Stat_t
}

// Source opens master files by gfid.
type Source interface {
	// Open opens regular file g for reading, verified to carry gfid g, and
	// stats it. An error wrapping fs.ErrNotExist means g is gone (or moved
	// where the source cannot find it): a later record will tell.
	Open(g gfid.GFID) (*Opened, error)
}

// Sender ships boxes of files over SyncData streams.
type Sender struct {
	Client  pb.SlaveServiceClient
	Session []byte
	Source  Source
	// ChunkSize is the literal data per message (default 256 KiB: large
	// enough that per-message costs vanish, small enough to interleave).
	ChunkSize int
	// Window bounds the files announced but not yet answered (default 256),
	// which bounds open descriptors and memory on both sides.
	Window int
}

type openFile struct {
	f    *os.File // nil for an unreadable empty file
	st   unix.Stat_t
	file *File
}

func (o *openFile) close() {
	if o.f != nil {
		o.f.Close()
	}
}

// Ship implements ShipFunc for *File: one SyncData stream for all files.
func (s *Sender) Ship(ctx context.Context, files []*File) error {
	chunk := s.ChunkSize
	if chunk <= 0 {
		chunk = 256 << 10
	}
	window := s.Window
	if window <= 0 {
		window = 256
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.Client.SyncData(ctx)
	if err != nil {
		return fmt.Errorf("syncer: opening data stream: %w", err)
	}
	if err := stream.Send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Open{Open: &pb.DataOpen{SessionId: s.Session}}}); err != nil {
		return fmt.Errorf("syncer: data stream: %w", s.streamErr(stream, err))
	}

	// The reader owns stream.Recv. Each file gets exactly one FileWant, so
	// a buffer of len(files) never blocks it, and the slave is never
	// blocked sending to us while we block sending to it.
	wants := make(chan *pb.FileWant, len(files))
	var mu sync.Mutex // guards results and recvErr
	results := map[uint64]*pb.FileResult{}
	var recvErr error
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer close(wants)
		for {
			msg, err := stream.Recv()
			if err != nil {
				mu.Lock()
				if errors.Is(err, io.EOF) {
					err = errors.New("slave ended the data stream without a commit")
				}
				recvErr = err
				mu.Unlock()
				cancel()
				return
			}
			switch m := msg.GetMsg().(type) {
			case *pb.SyncDataResponse_Want:
				wants <- m.Want
			case *pb.SyncDataResponse_Result:
				mu.Lock()
				results[m.Result.GetId()] = m.Result
				mu.Unlock()
			case *pb.SyncDataResponse_Commit:
				return
			}
		}
	}()

	pending := map[uint64]*openFile{} // announced, awaiting FileWant
	local := map[int]bool{}           // failed on the master: never announced
	defer func() {
		for _, o := range pending {
			o.close()
		}
	}()
	sendErr := func(err error) error {
		cancel()
		<-readerDone
		return fmt.Errorf("syncer: data stream: %w", s.streamErr(stream, err))
	}
	answer := func(w *pb.FileWant) error {
		o, ok := pending[w.GetId()]
		if !ok {
			return fmt.Errorf("slave answered unknown file id %d", w.GetId())
		}
		delete(pending, w.GetId())
		defer o.close()
		if !w.GetSend() {
			return nil
		}
		return s.sendData(stream, w.GetId(), o, chunk)
	}
	next := func() (bool, error) {
		w, ok := <-wants
		if !ok {
			return false, nil
		}
		return true, answer(w)
	}

	for i, f := range files {
		for len(pending) >= window {
			ok, err := next()
			if err != nil {
				return sendErr(err)
			}
			if !ok {
				return sendErr(errors.New("stream closed"))
			}
		}
		// Serve answers that are already in, without blocking.
	drain:
		for {
			select {
			case w, ok := <-wants:
				if !ok {
					break drain
				}
				if err := answer(w); err != nil {
					return sendErr(err)
				}
			default:
				break drain
			}
		}
		o, err := s.open(f)
		if err != nil {
			f.Status, f.Err = pb.OpStatus_OP_STATUS_FAILED, err
			local[i] = true
			continue
		}
		if o == nil {
			continue // vanished
		}
		id := uint64(i)
		hdr := &pb.FileHeader{
			Id: id, Gfid: f.GFID.Bytes(), Size: o.st.Size, Mode: o.st.Mode,
			Uid: o.st.Uid, Gid: o.st.Gid,
			AtimeNs: o.st.Atim.Nano(), MtimeNs: o.st.Mtim.Nano(),
		}
		pending[id] = o
		if err := stream.Send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Header{Header: hdr}}); err != nil {
			return sendErr(err)
		}
	}
	for len(pending) > 0 {
		ok, err := next()
		if err != nil {
			return sendErr(err)
		}
		if !ok {
			return sendErr(errors.New("stream closed before every file was answered"))
		}
	}
	if err := stream.CloseSend(); err != nil {
		return sendErr(err)
	}
	<-readerDone
	mu.Lock()
	defer mu.Unlock()
	if recvErr != nil {
		return fmt.Errorf("syncer: data stream: %w", recvErr)
	}
	for i, f := range files {
		if f.Vanished || local[i] {
			continue
		}
		r, ok := results[uint64(i)]
		if !ok {
			f.Status, f.Err = pb.OpStatus_OP_STATUS_FAILED, errors.New("slave reported no result")
			continue
		}
		f.Status = r.GetResult().GetStatus()
		f.Code = r.GetResult().GetCode()
		if msg := r.GetResult().GetError(); msg != "" {
			f.Err = errors.New(msg)
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

// open opens f's file and stats it; nil, nil when it vanished.
func (s *Sender) open(f *File) (*openFile, error) {
	op, err := s.Source.Open(f.GFID)
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
	return &openFile{f: op.File, st: op.Stat, file: f}, nil
}

// sendData streams a file's bytes and its end marker. A file that shrank,
// grew or was modified while read is aborted and marked Changed: the slave
// keeps its old copy, and the caller ships the file again.
func (s *Sender) sendData(stream pb.SlaveService_SyncDataClient, id uint64, o *openFile, chunk int) error {
	buf := make([]byte, chunk)
	var off int64
	aborted := false
	for o.f != nil && off < o.st.Size {
		n, err := o.f.ReadAt(buf[:min(int64(chunk), o.st.Size-off)], off)
		if n > 0 {
			msg := &pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Chunk{Chunk: &pb.FileChunk{Id: id, Offset: off, Data: buf[:n]}}}
			if err := stream.Send(msg); err != nil {
				return err
			}
			off += int64(n)
			o.file.Sent += int64(n)
		}
		if err != nil {
			aborted = true // shrank (EOF early) or unreadable
			break
		}
	}
	if o.f == nil {
		aborted = o.st.Size != 0
	} else {
		var st unix.Stat_t
		if err := unix.Fstat(int(o.f.Fd()), &st); err != nil || st.Size != o.st.Size || st.Mtim != o.st.Mtim {
			aborted = true
		}
	}
	if aborted {
		o.file.Changed = true
	}
	return stream.Send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_End{End: &pb.FileEnd{Id: id, Aborted: aborted}}})
}
