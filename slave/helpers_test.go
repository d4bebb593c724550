package slave_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/wire"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/slave"
	"github.com/georep/georep/syncer/delta"
)

// Shorthands for statuses and codes.
const (
	stOK       = pb.OpStatus_OP_STATUS_OK
	stNoop     = pb.OpStatus_OP_STATUS_NOOP
	stResolved = pb.OpStatus_OP_STATUS_RESOLVED
	stPartial  = pb.OpStatus_OP_STATUS_PARTIAL
	stFailed   = pb.OpStatus_OP_STATUS_FAILED
	stSkipped  = pb.OpStatus_OP_STATUS_SKIPPED

	ecInvalid = pb.ErrorCode_ERROR_CODE_INVALID
	ecUnknown = pb.ErrorCode_ERROR_CODE_UNKNOWN_GFID
	ecEscape  = pb.ErrorCode_ERROR_CODE_ESCAPE
)

// gfidAttr is the xattr the slave keeps gfids in (trusted.georep.gfid as
// root, user.georep.gfid otherwise).
var gfidAttr = gfid.DefaultNamespace().GFIDAttr()

// fakeClock is an injectable clock for Config.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fixture is a slave on <base>/root with a sibling <base>/outside that no
// request may touch, and a handshaken session.
type fixture struct {
	t       testing.TB
	s       *slave.Slave
	cfg     slave.Config
	base    string
	root    string
	outside string
	sid     []byte
	tok     []byte // the token the last handshake answered

	outsideSnap map[string]entryInfo
	baseNames   []string

	client pb.SlaveServiceClient
	addr   string // where serve serves
}

func newSessionID(t testing.TB) []byte {
	t.Helper()
	g, err := gfid.New()
	if err != nil {
		t.Fatal(err)
	}
	return g.Bytes()
}

func newGFID(t testing.TB) gfid.GFID { return testenv.NewGFID(t) }

// newFixture makes the directories, opens a slave and handshakes.
func newFixture(t testing.TB, tweak ...func(*slave.Config)) *fixture {
	t.Helper()
	base := t.TempDir()
	f := &fixture{t: t, base: base, root: filepath.Join(base, "root"), outside: filepath.Join(base, "outside")}
	for _, d := range []string{f.root, f.outside, filepath.Join(f.outside, "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.outside, "canary"), []byte("do not touch"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.cfg = slave.Config{Root: f.root, StateDir: t.TempDir()}
	for _, fn := range tweak {
		fn(&f.cfg)
	}
	f.open()
	t.Cleanup(func() {
		if f.s != nil {
			f.s.Close()
		}
	})
	f.sid = newSessionID(t)
	f.handshake(f.sid)
	f.outsideSnap = snapshot(t, f.outside)
	f.baseNames = listNames(t, f.base)
	return f
}

func (f *fixture) open() {
	f.t.Helper()
	s, err := slave.New(f.cfg)
	if err != nil {
		f.t.Fatalf("slave.New: %v", err)
	}
	f.s = s
}

// reopen closes the slave and opens it again on the same root and state.
func (f *fixture) reopen() {
	f.t.Helper()
	if err := f.s.Close(); err != nil {
		f.t.Fatalf("Close: %v", err)
	}
	f.s = nil
	f.open()
	f.handshake(f.sid)
}

func (f *fixture) handshake(sid []byte) *pb.HandshakeResponse {
	f.t.Helper()
	resp, err := f.s.Handshake(context.Background(), &pb.HandshakeRequest{ProtocolVersion: wire.ProtocolVersion, SessionId: sid, MasterHost: "test", MasterRoot: "/m"})
	if err != nil {
		f.t.Fatalf("Handshake: %v", err)
	}
	f.tok = resp.GetSessionToken()
	return resp
}

// checkOutside fails the test if anything outside the slave root changed.
func (f *fixture) checkOutside() {
	f.t.Helper()
	if diff := diffSnap(f.outsideSnap, snapshot(f.t, f.outside)); diff != "" {
		f.t.Fatalf("the directory outside the slave root changed:\n%s", diff)
	}
	if got := listNames(f.t, f.base); !equalStrings(got, f.baseNames) {
		f.t.Fatalf("the slave root's parent changed: %q, was %q", got, f.baseNames)
	}
}

func (f *fixture) path(rel string) string { return filepath.Join(f.root, rel) }

// entry applies ops in one EntryOps call and returns one result per op.
func (f *fixture) entry(ops ...*pb.EntryOp) []*pb.OpResult {
	f.t.Helper()
	resp, err := f.s.EntryOps(context.Background(), &pb.EntryOpsRequest{SessionToken: f.tok, Ops: ops})
	if err != nil {
		f.t.Fatalf("EntryOps: %v", err)
	}
	if len(resp.GetResults()) != len(ops) {
		f.t.Fatalf("EntryOps: %d results for %d ops", len(resp.GetResults()), len(ops))
	}
	return resp.GetResults()
}

// mustEntry applies ops and requires each result's status.
func (f *fixture) mustEntry(want []pb.OpStatus, ops ...*pb.EntryOp) []*pb.OpResult {
	f.t.Helper()
	res := f.entry(ops...)
	checkStatuses(f.t, res, want...)
	return res
}

// ok applies ops and requires every one to be OK.
func (f *fixture) ok(ops ...*pb.EntryOp) {
	f.t.Helper()
	want := make([]pb.OpStatus, len(ops))
	for i := range want {
		want[i] = stOK
	}
	f.mustEntry(want, ops...)
}

func (f *fixture) meta(ops ...*pb.MetaOp) []*pb.OpResult {
	f.t.Helper()
	resp, err := f.s.MetaOps(context.Background(), &pb.MetaOpsRequest{SessionToken: f.tok, Ops: ops})
	if err != nil {
		f.t.Fatalf("MetaOps: %v", err)
	}
	if len(resp.GetResults()) != len(ops) {
		f.t.Fatalf("MetaOps: %d results for %d ops", len(resp.GetResults()), len(ops))
	}
	return resp.GetResults()
}

func (f *fixture) setMark(ns int64) {
	f.t.Helper()
	if _, err := f.s.SetMark(context.Background(), &pb.SetMarkRequest{SessionToken: f.tok, StimeNs: ns}); err != nil {
		f.t.Fatalf("SetMark: %v", err)
	}
}

func (f *fixture) getMark() int64 {
	f.t.Helper()
	resp, err := f.s.GetMark(context.Background(), &pb.GetMarkRequest{SessionToken: f.tok})
	if err != nil {
		f.t.Fatalf("GetMark: %v", err)
	}
	return resp.GetStimeNs()
}

func checkStatuses(t testing.TB, res []*pb.OpResult, want ...pb.OpStatus) {
	t.Helper()
	if len(res) != len(want) {
		t.Fatalf("%d results, want %d", len(res), len(want))
	}
	for i, r := range res {
		if r.GetStatus() != want[i] {
			t.Errorf("op %d: status %v (code %v: %q), want %v", i, r.GetStatus(), r.GetCode(), r.GetError(), want[i])
		}
		switch r.GetStatus() {
		case stFailed, stPartial, stSkipped:
			if r.GetError() == "" {
				t.Errorf("op %d: %v without an error message", i, r.GetStatus())
			}
		default:
			if r.GetError() != "" || r.GetCode() != pb.ErrorCode_ERROR_CODE_UNSPECIFIED {
				t.Errorf("op %d: %v carries error %v %q", i, r.GetStatus(), r.GetCode(), r.GetError())
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

func checkFailed(t testing.TB, r *pb.OpResult, code pb.ErrorCode, what string) {
	t.Helper()
	if r.GetStatus() != stFailed || r.GetCode() != code || r.GetError() == "" {
		t.Errorf("%s: got %v %v %q, want FAILED %v with a message", what, r.GetStatus(), r.GetCode(), r.GetError(), code)
	}
}

// Op builders. Names are raw bytes.

func gb(g gfid.GFID) []byte { return g.Bytes() }

func opCreate(g, parent gfid.GFID, name string) *pb.EntryOp {
	return &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_CREATE, Gfid: gb(g), Pargfid: gb(parent), Name: []byte(name), Mode: unix.S_IFREG | 0o644}
}

func opMkdir(g, parent gfid.GFID, name string) *pb.EntryOp {
	return &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_MKDIR, Gfid: gb(g), Pargfid: gb(parent), Name: []byte(name), Mode: unix.S_IFDIR | 0o755}
}

func opMknod(g, parent gfid.GFID, name string, mode uint32, rdev uint64) *pb.EntryOp {
	return &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_MKNOD, Gfid: gb(g), Pargfid: gb(parent), Name: []byte(name), Mode: mode, Rdev: rdev}
}

func opSymlink(g, parent gfid.GFID, name, target string) *pb.EntryOp {
	return &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_SYMLINK, Gfid: gb(g), Pargfid: gb(parent), Name: []byte(name), Mode: unix.S_IFLNK | 0o777, Target: []byte(target)}
}

func opLink(g, parent gfid.GFID, name string) *pb.EntryOp {
	return &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_LINK, Gfid: gb(g), Pargfid: gb(parent), Name: []byte(name)}
}

func opRename(g, parent gfid.GFID, name string, parent2 gfid.GFID, name2 string) *pb.EntryOp {
	return &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_RENAME, Gfid: gb(g), Pargfid: gb(parent), Name: []byte(name), Pargfid2: gb(parent2), Name2: []byte(name2)}
}

func opUnlink(g, parent gfid.GFID, name string) *pb.EntryOp {
	return &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_UNLINK, Gfid: gb(g), Pargfid: gb(parent), Name: []byte(name)}
}

func opRmdir(g, parent gfid.GFID, name string) *pb.EntryOp {
	return &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_RMDIR, Gfid: gb(g), Pargfid: gb(parent), Name: []byte(name)}
}

func opPurge(dir gfid.GFID, keep ...string) *pb.EntryOp {
	op := &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_PURGE, Gfid: gb(dir)}
	for _, k := range keep {
		op.KeepNames = append(op.KeepNames, []byte(k))
	}
	return op
}

// metaOf builds a MetaOp that leaves xattrs alone.
func metaOf(g gfid.GFID, mode, uid, gid uint32, atime, mtime int64) *pb.MetaOp {
	return &pb.MetaOp{Gfid: gb(g), Mode: mode, Uid: uid, Gid: gid, AtimeNs: atime, MtimeNs: mtime}
}

// Filesystem inspection.

type entryInfo struct {
	ino, nlink, rdev uint64
	mode, uid, gid   uint32
	size             int64
	ctime, mtime     int64
	target           string
	gfid             string
	xattrs           string
}

func lstat(t testing.TB, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return st
}

func exists(p string) bool {
	var st unix.Stat_t
	return unix.Lstat(p, &st) == nil
}

func userXattrs(p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return "!" + err.Error()
	}
	var names []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name != "" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			b.WriteString(name + "=!" + err.Error() + ";")
			continue
		}
		b.WriteString(name + "=" + string(v[:m]) + ";")
	}
	return b.String()
}

func infoOf(p string, st *unix.Stat_t) entryInfo {
	e := entryInfo{ino: st.Ino, nlink: uint64(st.Nlink), rdev: st.Rdev, mode: st.Mode, uid: st.Uid, gid: st.Gid,
		size: st.Size, ctime: st.Ctim.Nano(), mtime: st.Mtim.Nano()}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		e.target, _ = os.Readlink(p)
	}
	var g [16]byte
	if n, err := unix.Lgetxattr(p, gfidAttr, g[:]); err == nil {
		e.gfid = string(g[:n])
	}
	e.xattrs = userXattrs(p)
	return e
}

// snapshot records every entry under dir (dir itself as "."), never
// following symlinks.
func snapshot(t testing.TB, dir string) map[string]entryInfo {
	t.Helper()
	out := map[string]entryInfo{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		out[rel] = infoOf(p, &st)
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return out
}

func diffSnap(a, b map[string]entryInfo) string {
	var lines []string
	for k, va := range a {
		vb, ok := b[k]
		if !ok {
			lines = append(lines, "removed: "+k)
			continue
		}
		if va != vb {
			lines = append(lines, "changed: "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			lines = append(lines, "added: "+k)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func listNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// gfidAt reads the gfid xattr of path (not following it).
func gfidAt(t testing.TB, p string) gfid.GFID {
	t.Helper()
	var g gfid.GFID
	n, err := unix.Lgetxattr(p, gfidAttr, g[:])
	if err != nil {
		t.Fatalf("reading %s of %s: %v", gfidAttr, p, err)
	}
	if n != 16 {
		t.Fatalf("%s of %s has %d bytes", gfidAttr, p, n)
	}
	return g
}

func checkGFID(t testing.TB, p string, want gfid.GFID) {
	t.Helper()
	if got := gfidAt(t, p); got != want {
		t.Fatalf("%s carries gfid %s, want %s", p, got, want)
	}
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// limboNames lists <root>/.georep/limbo.
func (f *fixture) limboNames() []string {
	f.t.Helper()
	return listNames(f.t, filepath.Join(f.root, wire.ReservedName, "limbo"))
}

// ---- gRPC (loopback only) for SyncData ----

// serve starts an in-process gRPC server for f.s on 127.0.0.1 and returns a
// client; everything stops at the end of the test.
func (f *fixture) serve() pb.SlaveServiceClient {
	f.t.Helper()
	if f.client != nil {
		return f.client
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	s := f.s
	go func() { done <- s.Serve(ctx, lis, nil) }()
	f.addr = lis.Addr().String()
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		conn.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				f.t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			f.t.Errorf("Serve did not return")
		}
	})
	f.client = pb.NewSlaveServiceClient(conn)
	return f.client
}

// dataStream is the master's half of a SyncData stream in a test.
type dataStream struct {
	t      testing.TB
	st     pb.SlaveService_SyncDataClient
	cancel context.CancelFunc
	// sent is the content each file id's chunks make (for FileEnd's
	// end-to-end hash, as a master computes it).
	sent map[uint64][]byte
}

func (d *dataStream) record(id uint64, off int64, data []byte) {
	if d.sent == nil {
		d.sent = map[uint64][]byte{}
	}
	if off < 0 || off > 1<<30 {
		return // a deliberately bad chunk
	}
	b := d.sent[id]
	if end := off + int64(len(data)); end > int64(len(b)) {
		b = append(b, make([]byte, end-int64(len(b)))...)
	}
	copy(b[off:], data)
	d.sent[id] = b
}

// openData opens a SyncData stream with session token tok.
func (f *fixture) openData(tok []byte) *dataStream {
	f.t.Helper()
	c := f.serve()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	st, err := c.SyncData(ctx)
	if err != nil {
		cancel()
		f.t.Fatalf("SyncData: %v", err)
	}
	d := &dataStream{t: f.t, st: st, cancel: cancel}
	f.t.Cleanup(cancel)
	d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Open{Open: &pb.DataOpen{SessionToken: tok}}})
	return d
}

func (d *dataStream) send(m *pb.SyncDataRequest) {
	d.t.Helper()
	if err := d.st.Send(m); err != nil {
		d.t.Fatalf("SyncData send: %v", err)
	}
}

func (d *dataStream) header(id uint64, g gfid.GFID, size int64, mtime int64) {
	d.t.Helper()
	d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Header{Header: &pb.FileHeader{
		Id: id, Gfid: gb(g), Size: size, Mode: unix.S_IFREG | 0o640, AtimeNs: mtime, MtimeNs: mtime}}})
}

func (d *dataStream) chunk(id uint64, off int64, data string) {
	d.t.Helper()
	d.record(id, off, []byte(data))
	d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Chunk{Chunk: &pb.FileChunk{Id: id, Offset: off, Data: []byte(data)}}})
}

// end closes file id with the end-to-end hash of the chunks sent for it.
func (d *dataStream) end(id uint64, aborted bool) {
	d.t.Helper()
	sum := delta.SumOf(d.sent[id])
	d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_End{End: &pb.FileEnd{Id: id, Aborted: aborted, Sum: sum[:]}}})
}

func (d *dataStream) recv() *pb.SyncDataResponse {
	d.t.Helper()
	m, err := d.st.Recv()
	if err != nil {
		d.t.Fatalf("SyncData recv: %v", err)
	}
	return m
}

func (d *dataStream) expectWant(id uint64, send bool) {
	d.t.Helper()
	m := d.recv()
	w := m.GetWant()
	if w == nil || w.GetId() != id || w.GetSend() != send {
		d.t.Fatalf("got %v, want FileWant{id %d send %v}", m, id, send)
	}
}

func (d *dataStream) expectResult(id uint64) *pb.FileResult {
	d.t.Helper()
	m := d.recv()
	r := m.GetResult()
	if r == nil || r.GetId() != id {
		d.t.Fatalf("got %v, want FileResult for id %d", m, id)
	}
	return r
}

// commit half-closes the stream and expects DataCommit and then the end.
func (d *dataStream) commit() {
	d.t.Helper()
	if err := d.st.CloseSend(); err != nil {
		d.t.Fatalf("CloseSend: %v", err)
	}
	m := d.recv()
	if m.GetCommit() == nil {
		d.t.Fatalf("got %v, want DataCommit", m)
	}
	if _, err := d.st.Recv(); !errors.Is(err, io.EOF) {
		d.t.Fatalf("after DataCommit: %v, want EOF", err)
	}
}

// sendFile ships content for g in one go and expects OK.
func (d *dataStream) sendFile(id uint64, g gfid.GFID, content string, mtime int64) *pb.FileResult {
	d.t.Helper()
	d.header(id, g, int64(len(content)), mtime)
	if len(content) == 0 {
		d.expectWant(id, false)
		return d.expectResult(id)
	}
	d.expectWant(id, true)
	d.chunk(id, 0, content)
	d.end(id, false)
	return d.expectResult(id)
}

func grpcCode(err error) codes.Code { return status.Code(err) }

// waitFor polls cond for up to 5 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// inline sends file id with its data and end in the header (an empty
// content sends no data); sum, when not nil, replaces the end-to-end hash.
func (d *dataStream) inline(id uint64, g gfid.GFID, content string, mtime int64, aborted bool, sum []byte) {
	d.t.Helper()
	d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Header{Header: inlineHeader(id, g, content, mtime, aborted, sum)}})
}

// inlineHeader is the header of an inline file (see inline).
func inlineHeader(id uint64, g gfid.GFID, content string, mtime int64, aborted bool, sum []byte) *pb.FileHeader {
	if sum == nil {
		s := delta.SumOf([]byte(content))
		sum = s[:]
	}
	h := &pb.FileHeader{Id: id, Gfid: gb(g), Size: int64(len(content)), Mode: unix.S_IFREG | 0o640, AtimeNs: mtime, MtimeNs: mtime,
		InlineEnd: &pb.FileEnd{Id: id, Aborted: aborted, Sum: sum}}
	if content != "" {
		h.InlineData = &pb.FileChunk{Id: id, Data: []byte(content)}
	}
	return h
}
