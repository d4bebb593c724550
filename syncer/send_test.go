package syncer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/wire"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/syncer"
)

// source serves files from a directory by gfid, with scripted misbehaviour.
type source struct {
	dir     string
	names   map[gfid.GFID]string
	vanish  map[gfid.GFID]bool
	shrink  map[gfid.GFID]bool // truncated to half between stat and read
	grow    map[gfid.GFID]bool // appended to between stat and read
	openErr map[gfid.GFID]error
	mu      sync.Mutex
	at      map[gfid.GFID]syncer.Link // the hints Open was given
}

func (s *source) Open(g gfid.GFID, at syncer.Link) (*syncer.Opened, error) {
	s.mu.Lock()
	if s.at != nil {
		s.at[g] = at
	}
	s.mu.Unlock()
	if s.vanish[g] {
		return nil, fmt.Errorf("gone: %w", fs.ErrNotExist)
	}
	if err := s.openErr[g]; err != nil {
		return nil, err
	}
	p := filepath.Join(s.dir, s.names[g])
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := syncer.FD(fd)
	o := &syncer.Opened{File: f}
	if err := unix.Fstat(fd, &o.Stat); err != nil {
		f.Close()
		return nil, err
	}
	if s.shrink[g] {
		if err := os.Truncate(p, o.Stat.Size/2); err != nil {
			f.Close()
			return nil, err
		}
	}
	if s.grow[g] {
		w, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			_, err = w.Write([]byte("more"))
			w.Close()
		}
		if err != nil {
			f.Close()
			return nil, err
		}
	}
	return o, nil
}

// TestShipVanishedAndChanged: a file gone before it could be read is
// counted as vanished, not failed; one that shrank or grew while read is
// aborted (the slave keeps its old copy) and marked for another try; the
// others arrive.
//
// Files of at most syncer.InlineMax go inline (in their header): the slave
// sends no FileWant for them, and one per announced file otherwise.
func TestShipVanishedAndChanged(t *testing.T) {
	for _, size := range []int{100 << 10, 4 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) { testShipVanishedAndChanged(t, size) })
	}
}

// wantCounter counts the FileWant messages a slave sends, and the
// InlineFiles messages, lone headers, bytes of file data in messages,
// chunks on a data connection and file ends it receives.
type wantCounter struct{ n, batches, headers, data, bulkChunks, ends atomic.Int64 }

func (c *wantCounter) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, countingStream{ss, c})
}

type countingStream struct {
	grpc.ServerStream
	c *wantCounter
}

func (s countingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if r, ok := m.(*pb.SyncDataRequest); ok && err == nil {
		if r.GetInlineFiles() != nil {
			s.c.batches.Add(1)
		}
		if r.GetHeader() != nil {
			s.c.headers.Add(1)
		}
		if r.GetEnd() != nil {
			s.c.ends.Add(1)
		}
		for _, c := range testenv.DataChunks(r) {
			s.c.data.Add(int64(len(c.GetData())))
			if c.GetBulkLength() > 0 {
				s.c.bulkChunks.Add(1)
			}
		}
	}
	return err
}

func (s countingStream) SendMsg(m any) error {
	if r, ok := m.(*pb.SyncDataResponse); ok && r.GetWant() != nil {
		s.c.n.Add(1)
	}
	return s.ServerStream.SendMsg(m)
}

// shipSession starts a slave on sroot, counting its messages in wants,
// and opens a session with it.
func shipSession(t *testing.T, ctx context.Context, sroot string, wants *wantCounter) (pb.SlaveServiceClient, []byte) {
	t.Helper()
	client, sid, _ := shipSessionAt(t, ctx, sroot, wants)
	return client, sid
}

// shipSessionAt is shipSession, and returns the slave's address too.
func shipSessionAt(t *testing.T, ctx context.Context, sroot string, wants *wantCounter) (pb.SlaveServiceClient, []byte, string) {
	t.Helper()
	return sessionWith(t, ctx, sroot, grpc.StreamInterceptor(wants.intercept))
}

// sessionWith starts a slave on sroot with a stream interceptor (opt) and
// opens a session with it: the client, the session token, the address.
func sessionWith(t *testing.T, ctx context.Context, sroot string, opt grpc.ServerOption) (pb.SlaveServiceClient, []byte, string) {
	t.Helper()
	sl := testenv.StartSlave(t, sroot, opt)
	conn, err := grpc.NewClient(sl.Addr, append(wire.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := pb.NewSlaveServiceClient(conn)
	hs, err := client.Handshake(ctx, &pb.HandshakeRequest{ProtocolVersion: wire.ProtocolVersion, SessionId: []byte("0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	return client, hs.GetSessionToken(), sl.Addr
}

// TestShipManyEmptyFiles: inline files without data still go at most
// inlineBatchFiles (1024) to a message, and all arrive.
func TestShipManyEmptyFiles(t *testing.T) {
	sroot, mdir := t.TempDir(), t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wants wantCounter
	client, sid := shipSession(t, ctx, sroot, &wants)
	src := &source{dir: mdir, names: map[gfid.GFID]string{}}
	var files []*syncer.File
	var ops []*pb.EntryOp
	const n = 2500
	for i := range n {
		g, _ := gfid.New()
		name := fmt.Sprintf("e%04d", i)
		src.names[g] = name
		if err := os.WriteFile(filepath.Join(mdir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		op := &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_CREATE, Gfid: g.Bytes(), Pargfid: gfid.Root.Bytes(), Name: []byte(name), Mode: unix.S_IFREG | 0o644, DataFollows: true}
		ops = append(ops, op)
		files = append(files, &syncer.File{GFID: g, At: syncer.Link{Parent: gfid.Root, Name: name}})
	}
	if _, err := client.EntryOps(ctx, &pb.EntryOpsRequest{SessionToken: sid, Ops: ops}); err != nil {
		t.Fatal(err)
	}
	s := &syncer.Sender{Client: client, Token: sid, Source: src}
	if err := s.Ship(ctx, files); err != nil {
		t.Fatalf("Ship: %v", err)
	}
	for _, f := range files {
		if !f.OK() {
			t.Fatalf("%s: %+v", src.names[f.GFID], f)
		}
	}
	if b := wants.batches.Load(); b != 3 {
		t.Errorf("%d empty files went in %d InlineFiles messages, want 3 (1024 a message)", n, b)
	}
	ents, err := os.ReadDir(sroot)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "e") {
			got++
		}
	}
	if got != n {
		t.Errorf("%d files on the slave, want %d", got, n)
	}
}

func testShipVanishedAndChanged(t *testing.T, size int) {
	sroot, mdir := t.TempDir(), t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wants wantCounter
	client, sid := shipSession(t, ctx, sroot, &wants)
	src := &source{dir: mdir, names: map[gfid.GFID]string{}, vanish: map[gfid.GFID]bool{}, shrink: map[gfid.GFID]bool{}, grow: map[gfid.GFID]bool{}, openErr: map[gfid.GFID]error{}, at: map[gfid.GFID]syncer.Link{}}
	var files []*syncer.File
	var ops []*pb.EntryOp
	for i, kind := range []string{"ok", "vanish", "shrink", "grow", "denied", "ok2"} {
		g, _ := gfid.New()
		src.names[g] = kind
		if err := os.WriteFile(filepath.Join(mdir, kind), make([]byte, size+i), 0o644); err != nil {
			t.Fatal(err)
		}
		switch kind {
		case "vanish":
			src.vanish[g] = true
		case "shrink":
			src.shrink[g] = true
		case "grow":
			src.grow[g] = true
		case "denied":
			src.openErr[g] = fmt.Errorf("reading %q: %w", kind, unix.EACCES)
		}
		ops = append(ops, &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_CREATE, Gfid: g.Bytes(), Pargfid: gfid.Root.Bytes(), Name: []byte(kind), Mode: unix.S_IFREG | 0o644})
		files = append(files, &syncer.File{GFID: g, At: syncer.Link{Parent: gfid.Root, Name: kind}})
	}
	if _, err := client.EntryOps(ctx, &pb.EntryOpsRequest{SessionToken: sid, Ops: ops}); err != nil {
		t.Fatal(err)
	}
	s := &syncer.Sender{Client: client, Token: sid, Source: src}
	if err := s.Ship(ctx, files); err != nil {
		t.Fatalf("Ship: %v", err)
	}
	// Announced: all but the vanished and the unreadable.
	if got, want := wants.n.Load(), int64(4); size <= syncer.InlineMax && got != 0 || size > syncer.InlineMax && got != want {
		t.Errorf("the slave sent %d FileWants for files of %d bytes (inline up to %d)", got, size, syncer.InlineMax)
	}
	// Small files go many to a message: here all in one.
	if b, h := wants.batches.Load(), wants.headers.Load(); size <= syncer.InlineMax && (b != 1 || h != 0) || size > syncer.InlineMax && (b != 0 || h != 4) {
		t.Errorf("files of %d bytes went in %d InlineFiles messages and %d lone headers", size, b, h)
	}
	for _, f := range files {
		kind := src.names[f.GFID]
		if src.at[f.GFID] != f.At {
			t.Errorf("%s: the source was given the hint %v, want %v", kind, src.at[f.GFID], f.At)
		}
		switch kind {
		case "ok", "ok2":
			if !f.OK() || f.Status != pb.OpStatus_OP_STATUS_OK || f.Sent == 0 {
				t.Errorf("%s: %+v", kind, f)
			}
		case "vanish":
			if !f.Vanished || !f.OK() {
				t.Errorf("vanished file: %+v, want Vanished and OK", f)
			}
		case "shrink", "grow":
			if !f.Changed || f.OK() {
				t.Errorf("%s: %+v, want Changed and not OK", kind, f)
			}
			if b, _ := os.ReadFile(filepath.Join(sroot, kind)); len(b) != 0 {
				t.Errorf("the slave installed %d bytes of a file that changed while read (%s)", len(b), kind)
			}
		case "denied":
			if f.OK() || f.Err == nil {
				t.Errorf("unreadable file: %+v, want a failure", f)
			}
		}
	}
}

// TestFDReadAt: an FD reads like an *os.File: whole, at an offset, and
// short with io.EOF at the end; a closed one fails.
func TestFDReadAt(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := syncer.FD(fd)
	buf := make([]byte, 16)
	for _, c := range []struct {
		off, len int
		want     string
		eof      bool
	}{{0, 10, "0123456789", false}, {3, 4, "3456", false}, {6, 8, "6789", true}, {10, 1, "", true}, {0, 0, "", false}} {
		n, err := f.ReadAt(buf[:c.len], int64(c.off))
		if string(buf[:n]) != c.want || errors.Is(err, io.EOF) != c.eof || err != nil && !c.eof {
			t.Errorf("ReadAt(%d bytes at %d) = %q, %v; want %q (EOF %v)", c.len, c.off, buf[:n], err, c.want, c.eof)
		}
	}
	if f.Fd() != uintptr(fd) {
		t.Errorf("Fd() = %d, want %d", f.Fd(), fd)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(buf, 0); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("ReadAt of a closed FD: %v, want an error", err)
	}
}
