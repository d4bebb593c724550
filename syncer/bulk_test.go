package syncer_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/bulkconn"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/testenv"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/slave"
	"github.com/georep/georep/syncer"
)

// countConn counts the bytes written to a data connection and, when
// failAfter is set, breaks it after that many.
type countConn struct {
	net.Conn
	n         *atomic.Int64
	failAfter int64
}

func (c countConn) Write(b []byte) (int, error) {
	if c.failAfter > 0 && c.n.Load()+int64(len(b)) > c.failAfter {
		c.Conn.Close()
		return 0, errors.New("link cut (test)")
	}
	n, err := c.Conn.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// bulkFixture is a slave, a session with it, and files on the master side
// made on the slave by entry ops.
type bulkFixture struct {
	t           *testing.T
	sroot, mdir string
	addr        string
	client      pb.SlaveServiceClient
	sid         []byte
	src         *source
	wire        *wantCounter
	contents    map[string][]byte
	files       []*syncer.File
	filesByName map[string]*syncer.File
	ctx         context.Context
}

func newBulkFixture(t *testing.T, sizes map[string]int) *bulkFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	f := &bulkFixture{t: t, sroot: t.TempDir(), mdir: t.TempDir(), wire: &wantCounter{}, ctx: ctx,
		contents: map[string][]byte{}, filesByName: map[string]*syncer.File{}}
	f.client, f.sid, f.addr = shipSessionAt(t, ctx, f.sroot, f.wire)
	f.src = &source{dir: f.mdir, names: map[gfid.GFID]string{}}
	var ops []*pb.EntryOp
	rng := rand.New(rand.NewPCG(7, 8))
	for name, size := range sizes {
		g, _ := gfid.New()
		f.src.names[g] = name
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		f.contents[name] = b
		if err := os.WriteFile(filepath.Join(f.mdir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		ops = append(ops, &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_CREATE, Gfid: g.Bytes(), Pargfid: gfid.Root.Bytes(), Name: []byte(name), Mode: unix.S_IFREG | 0o644, DataFollows: true})
		sf := &syncer.File{GFID: g, At: syncer.Link{Parent: gfid.Root, Name: name}}
		f.files = append(f.files, sf)
		f.filesByName[name] = sf
	}
	if _, err := f.client.EntryOps(ctx, &pb.EntryOpsRequest{SessionToken: f.sid, Ops: ops}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *bulkFixture) sender(bulk func(context.Context, bulkconn.Token) (net.Conn, error)) *syncer.Sender {
	return &syncer.Sender{Client: f.client, Token: f.sid, Source: f.src, Bulk: bulk, Log: testenv.Logger(f.t, "sender")}
}

// requireSame checks every file on the slave against the master's.
func (f *bulkFixture) requireSame() {
	f.t.Helper()
	for name, want := range f.contents {
		got, err := os.ReadFile(filepath.Join(f.sroot, name))
		if err != nil {
			f.t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			f.t.Fatalf("%s: %d bytes on the slave differ from the master's %d", name, len(got), len(want))
		}
	}
}

// dialCounting opens real data connections to the fixture's slave,
// counting what they carry in n.
func (f *bulkFixture) dialCounting(n *atomic.Int64, failAfter int64) func(context.Context, bulkconn.Token) (net.Conn, error) {
	return func(ctx context.Context, tok bulkconn.Token) (net.Conn, error) {
		c, err := bulkconn.Dial(ctx, f.addr, nil, tok)
		if err != nil {
			return nil, err
		}
		return countConn{Conn: c, n: n, failAfter: failAfter}, nil
	}
}

// TestShipDataConnection: with Bulk set, a box holding large files sends
// their literal bytes on the data connection (all but the chunks sent
// before it was up), small files stay in messages, a delta against the
// slave's old copy sends its literals there too, and everything arrives.
func TestShipDataConnection(t *testing.T) {
	f := newBulkFixture(t, map[string]int{"big": 8 << 20, "mid": 2<<20 + 3, "small": 10 << 10, "medium": 200 << 10})
	var onConn atomic.Int64
	s := f.sender(f.dialCounting(&onConn, 0))
	if err := s.Ship(f.ctx, f.files); err != nil {
		t.Fatalf("Ship: %v", err)
	}
	var sent int64
	for name, sf := range f.filesByName {
		if !sf.OK() || sf.Status != pb.OpStatus_OP_STATUS_OK {
			t.Fatalf("%s: %+v", name, sf)
		}
		sent += sf.Sent
	}
	f.requireSame()
	if onConn.Load() < 8<<20 {
		t.Errorf("%d bytes went on the data connection, want most of the 10 MiB of the large files", onConn.Load())
	}
	if got := onConn.Load() + f.wire.data.Load(); got != sent {
		t.Errorf("%d bytes on the connection + %d in messages; the files counted %d sent", onConn.Load(), f.wire.data.Load(), sent)
	}
	if f.wire.bulkChunks.Load() == 0 {
		t.Error("no chunk descriptor named the data connection")
	}

	// A delta: 300 KiB changed in the middle of big; its literals go on
	// a new data connection.
	big := f.contents["big"]
	for i := 4 << 20; i < 4<<20+300<<10; i++ {
		big[i] ^= 0x5a
	}
	if err := os.WriteFile(filepath.Join(f.mdir, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	onConn.Store(0)
	sf := &syncer.File{GFID: f.filesByName["big"].GFID, At: f.filesByName["big"].At}
	if err := s.Ship(f.ctx, []*syncer.File{sf}); err != nil {
		t.Fatalf("Ship of the delta: %v", err)
	}
	if !sf.OK() || !sf.Delta {
		t.Fatalf("delta: %+v", sf)
	}
	f.requireSame()
	if onConn.Load() == 0 || onConn.Load() > 2<<20 {
		t.Errorf("the delta sent %d bytes on the data connection; want the changed region's literals", onConn.Load())
	}
}

// TestShipDataConnectionFails: when a data connection cannot be opened,
// the data goes on the stream and the box still arrives whole; one
// warning is logged however many boxes try.
func TestShipDataConnectionFails(t *testing.T) {
	f := newBulkFixture(t, map[string]int{"big": 3 << 20, "small": 1000})
	var logs bytes.Buffer
	var dials atomic.Int64
	s := f.sender(func(context.Context, bulkconn.Token) (net.Conn, error) {
		dials.Add(1)
		return nil, errors.New("refused (test)")
	})
	s.Log = hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn})
	for round := range 2 {
		for _, sf := range f.files {
			sf.Status, sf.Sent = 0, 0
		}
		if err := s.Ship(f.ctx, f.files); err != nil {
			t.Fatalf("round %d: Ship: %v", round, err)
		}
		for _, sf := range f.files {
			if !sf.OK() {
				t.Fatalf("round %d: %+v", round, sf)
			}
		}
	}
	f.requireSame()
	if dials.Load() != 2 {
		t.Errorf("%d dials for 2 boxes with a large file", dials.Load())
	}
	if n := strings.Count(logs.String(), "no data connection"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, logs.String())
	}
	if f.wire.bulkChunks.Load() != 0 {
		t.Error("a chunk named a data connection that was never opened")
	}
}

// TestShipDataConnectionBreaks: a data connection cut in the middle of a
// file fails the box (the caller retries it) without hanging, leaves no
// partial file on the slave, and the next box goes through.
func TestShipDataConnectionBreaks(t *testing.T) {
	f := newBulkFixture(t, map[string]int{"big": 6 << 20})
	var n atomic.Int64
	s := f.sender(f.dialCounting(&n, 2<<20))
	start := time.Now()
	err := s.Ship(f.ctx, f.files)
	if err == nil {
		t.Fatal("Ship succeeded over a cut data connection")
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Ship took %v to fail", d)
	}
	t.Logf("Ship: %v", err)
	waitGone := time.Now().Add(10 * time.Second)
	for {
		// A file created with data to follow appears with its data.
		var size int64
		if st, err := os.Stat(filepath.Join(f.sroot, "big")); err == nil {
			size = st.Size()
		} else if !os.IsNotExist(err) {
			t.Fatal(err)
		}
		ents, _ := os.ReadDir(f.sroot)
		staged := 0
		for _, e := range ents {
			if slave.IsTempName(e.Name()) {
				staged++
			}
		}
		if size == 0 && staged == 0 {
			break
		}
		if time.Now().After(waitGone) {
			t.Fatalf("after the cut: big has %d bytes, %d staging files left", size, staged)
		}
		time.Sleep(10 * time.Millisecond)
	}
	n.Store(0)
	s = f.sender(f.dialCounting(&n, 0))
	for _, sf := range f.files {
		sf.Status, sf.Sent, sf.Err = 0, 0, nil
	}
	if err := s.Ship(f.ctx, f.files); err != nil {
		t.Fatalf("Ship after the cut: %v", err)
	}
	f.requireSame()
	if n.Load() == 0 {
		t.Error("the retry used no data connection")
	}

}

// TestShipKeepsUnusedDataConnection: a data connection that came up only
// after its box's large file was sent is kept, not closed, and the next
// box uses it at once instead of dialling.
func TestShipKeepsUnusedDataConnection(t *testing.T) {
	f := newBulkFixture(t, map[string]int{"one": 2 << 20, "two": 2 << 20})
	var onConn, dials atomic.Int64
	dial := f.dialCounting(&onConn, 0)
	s := f.sender(func(ctx context.Context, tok bulkconn.Token) (net.Conn, error) {
		dials.Add(1)
		c, err := dial(ctx, tok)
		// Up only once the box's file has ended on the stream.
		for f.wire.ends.Load() < 1 && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		return c, err
	})
	defer s.Close()
	one, two := f.filesByName["one"], f.filesByName["two"]
	if err := s.Ship(f.ctx, []*syncer.File{one}); err != nil {
		t.Fatalf("first box: %v", err)
	}
	if onConn.Load() != 0 || f.wire.bulkChunks.Load() != 0 {
		t.Fatalf("the first box used a connection that came up after its file: %d bytes", onConn.Load())
	}
	if err := s.Ship(f.ctx, []*syncer.File{two}); err != nil {
		t.Fatalf("second box: %v", err)
	}
	f.requireSame()
	if dials.Load() != 1 {
		t.Errorf("%d dials; the second box should have used the first's connection", dials.Load())
	}
	if onConn.Load() == 0 || f.wire.bulkChunks.Load() == 0 {
		t.Error("the second box sent nothing on the kept connection")
	}
}
