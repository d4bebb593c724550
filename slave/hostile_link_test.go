package slave_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/wire"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/slave"
	"github.com/georep/georep/syncer/delta"
)

// asNobody runs sh -c script (with args) as the user nobody.
func asNobody(t *testing.T, script string, args ...string) {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, "sh"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: testenv.Nobody, Gid: testenv.Nobody}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("as nobody: %s: %v\n%s", script, err, out)
	}
}

// searchable lets everyone through p and its ancestors below /tmp's level
// (test temp dirs are 0700), without letting them list or write there.
func searchable(t *testing.T, p string) {
	t.Helper()
	tmp := filepath.Clean(os.TempDir())
	for ; p != tmp && p != "/" && p != "."; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, st.Mode().Perm()|0o111); err != nil {
			t.Fatal(err)
		}
	}
}

// TestIssue18HardlinkSwapOutsideRoot: a local user who may write in a
// replicated directory of a root slave replaces a file that has a derived
// gfid (one the master could not mark) with a hard link to a file of its
// own elsewhere on the filesystem. Before, the slave read "no xattr" as
// "the derived gfid" and made the outside file root:root 4755 with the
// master's content. Now an xattr-less inode on a slave that marks
// everything is foreign: the metadata op fails (unknown gfid), the data
// replaces the name, not the inode behind it, and a purge removes the
// name; the outside file keeps its owner, mode and content throughout.
func TestIssue18HardlinkSwapOutsideRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the slave must be privileged and the attacker another user")
	}
	f := newFixture(t)
	if !f.s.Privileged() {
		t.Fatal("the slave does not run privileged as root")
	}
	P := newGFID(t)
	V := gfid.Derived(P, "victim", unix.S_IFREG)
	f.ok(opMkdir(P, gfid.Root, "pub"), opCreate(V, P, "victim"))
	d := f.openData(f.tok)
	if r := d.sendFile(1, V, "the master's first content", 5e9); r.GetResult().GetStatus() != stOK {
		t.Fatalf("first data: %v", r)
	}
	d.commit()
	if err := os.Chmod(f.path("pub"), 0o777); err != nil {
		t.Fatal(err)
	}
	searchable(t, f.path("pub"))

	// The attacker's file, outside the slave's root, on the same
	// filesystem.
	outDir := t.TempDir()
	searchable(t, outDir)
	if err := os.Chmod(outDir, 0o777); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(outDir, "mine")
	asNobody(t, `printf '#!/bin/sh\nid\n' > "$1" && chmod 0755 "$1"`, outside)
	check := func(when string) {
		t.Helper()
		st := lstat(t, outside)
		if st.Uid != testenv.Nobody || st.Gid != testenv.Nobody || st.Mode != unix.S_IFREG|0o755 {
			t.Fatalf("%s: the outside file is %d:%d %o, want %d:%d 100755", when, st.Uid, st.Gid, st.Mode, testenv.Nobody, testenv.Nobody)
		}
		if got := readFile(t, outside); got != "#!/bin/sh\nid\n" {
			t.Fatalf("%s: the outside file holds %q", when, got)
		}
		if _, err := unix.Lgetxattr(outside, gfidAttr, make([]byte, 64)); err == nil {
			t.Fatalf("%s: the outside file got a gfid", when)
		}
	}
	check("before")
	asNobody(t, `rm -f "$1" && ln "$2" "$1"`, f.path("pub/victim"), outside)
	if st := lstat(t, outside); st.Nlink != 2 {
		t.Fatalf("the swap did not happen: nlink %d", st.Nlink)
	}

	// The master's metadata op for the file: root:root 4755.
	res := f.meta(metaOf(V, unix.S_IFREG|0o4755, 0, 0, 6e9, 6e9))
	if res[0].GetStatus() == stOK || res[0].GetStatus() == stNoop {
		t.Errorf("metadata op through the swapped name: %v, want it refused", res[0])
	}
	check("after the metadata op")

	// Its data: the name is replaced; the inode behind it is not written.
	d = f.openData(f.tok)
	const secret = "root-only content"
	d.header(2, V, int64(len(secret)), 7e9)
	want := d.recv().GetWant()
	if want.GetId() != 2 {
		t.Fatalf("answer to the header: %v", want)
	}
	if want.GetSend() {
		d.chunk(2, 0, secret)
		d.end(2, false)
	}
	r := d.expectResult(2)
	d.commit()
	check("after the data")
	if r.GetResult().GetStatus() == stOK {
		st := lstat(t, f.path("pub/victim"))
		if st.Ino == lstat(t, outside).Ino {
			t.Fatal("the data was written into the outside file")
		}
		if got := readFile(t, f.path("pub/victim")); got != secret {
			t.Fatalf("pub/victim = %q", got)
		}
	}

	// Swapped again, then a report-only purge of the directory (every
	// crawl sends one): the foreign name goes, the outside file stays.
	asNobody(t, `rm -f "$1" && ln "$2" "$1"`, f.path("pub/victim"), outside)
	purge := opPurge(P)
	purge.ReportOnly = true
	res = f.entry(purge)
	if res[0].GetStatus() != stOK || len(res[0].GetExtraNames()) != 0 {
		t.Errorf("report-only purge: %v, want OK with nothing left to report", res[0])
	}
	if exists(f.path("pub/victim")) {
		t.Error("the foreign name is still there after the purge")
	}
	check("after the purge")
	if st := lstat(t, outside); st.Nlink != 1 {
		t.Errorf("outside file nlink %d after the purge, want 1", st.Nlink)
	}
}

// TestIssue18UnmarkedHardlinkUnprivileged: an unprivileged slave names an
// inode without a gfid xattr by its derived gfid, but never one with more
// links than that gfid has (one): a hard link to a file elsewhere, put at
// a derived name, is not chmod'ed. Run as root, the test re-runs itself as
// nobody.
func TestIssue18UnmarkedHardlinkUnprivileged(t *testing.T) {
	if os.Geteuid() == 0 {
		testenv.RunAsNobody(t, "TestIssue18UnmarkedHardlinkUnprivileged")
		return
	}
	f := newFixture(t)
	if f.s.Privileged() {
		t.Fatal("the slave runs privileged as uid", os.Geteuid())
	}
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	P := newGFID(t)
	mk := opMkdir(P, gfid.Root, "pub")
	mk.Uid, mk.Gid = uid, gid
	// A file of the derived gfid (the master's, for a file it could not
	// mark) that lost its gfid xattr (as one on a filesystem that cannot
	// carry it has none).
	V := gfid.Derived(P, "victim", unix.S_IFREG)
	cr := opCreate(V, P, "victim")
	cr.Uid, cr.Gid = uid, gid
	f.ok(mk, cr)
	if err := unix.Removexattr(f.path("pub/victim"), gfidAttr); err != nil {
		t.Fatal(err)
	}
	res := f.meta(metaOf(V, unix.S_IFREG|0o640, uid, gid, 5e9, 5e9))
	if res[0].GetStatus() != stOK && res[0].GetStatus() != stNoop {
		t.Fatalf("metadata op of the unmarked file: %v", res[0])
	}
	// Replaced by a hard link to a file elsewhere.
	outside := filepath.Join(t.TempDir(), "mine")
	if err := os.WriteFile(outside, []byte("mine"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(f.path("pub/victim")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(outside, f.path("pub/victim")); err != nil {
		t.Fatal(err)
	}
	res = f.meta(metaOf(V, unix.S_IFREG|0o666, uid, gid, 6e9, 6e9))
	if res[0].GetStatus() == stOK || res[0].GetStatus() == stNoop {
		t.Errorf("metadata op of a hard-linked unmarked inode: %v, want it refused", res[0])
	}
	if st := lstat(t, outside); st.Mode != unix.S_IFREG|0o640 {
		t.Errorf("the linked file's mode became %o", st.Mode)
	}
	// With one link it is the derived gfid's, as before.
	if err := os.Remove(outside); err != nil {
		t.Fatal(err)
	}
	res = f.meta(metaOf(V, unix.S_IFREG|0o600, uid, gid, 6e9, 6e9))
	if res[0].GetStatus() != stOK {
		t.Errorf("metadata op of an unmarked single-link file: %v, want OK", res[0])
	}
	if st := lstat(t, f.path("pub/victim")); st.Mode != unix.S_IFREG|0o600 {
		t.Errorf("pub/victim mode %o, want 100600", st.Mode)
	}
}

// TestIssue18HugeHoleDoesNotHang: a data header of 2^62 bytes and a chunk
// describing a 2^62-byte hole kept a slave hashing zeros for ever under
// the namespace lock: every entry op waited. Now a hole is bounded per
// chunk (wire.MaxZeroRun): the file fails at once, entry ops go on, and a
// legitimate large hole (one chunk of MaxZeroRun, the master splits) still
// works while entry ops run between its chunks.
func TestIssue18HugeHoleDoesNotHang(t *testing.T) {
	f := newFixture(t)
	F, G, D := newGFID(t), newGFID(t), newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"), opCreate(G, gfid.Root, "g"))
	d := f.openData(f.tok)
	d.header(1, F, 1<<62, 5e9)
	d.expectWant(1, true)
	d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Chunk{Chunk: &pb.FileChunk{Id: 1, Offset: 0, ZeroLength: 1 << 62}}})
	done := make(chan []*pb.OpResult, 1)
	go func() { done <- f.entry(opMkdir(D, gfid.Root, "d")) }()
	select {
	case res := <-done:
		checkStatuses(t, res, stOK)
	case <-time.After(10 * time.Second):
		t.Fatal("an entry op waited more than 10 s behind a hole of 2^62 bytes")
	}
	d.end(1, false)
	if r := d.expectResult(1); r.GetResult().GetStatus() != stFailed || r.GetResult().GetCode() != ecInvalid {
		t.Fatalf("result of the 2^62-byte hole: %v, want FAILED INVALID", r)
	}
	// A file of two maximal holes and a byte, as the master sends one.
	size := int64(2*wire.MaxZeroRun + 1)
	d.header(2, G, size, 6e9)
	d.expectWant(2, true)
	for i := int64(0); i < 2; i++ {
		d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Chunk{Chunk: &pb.FileChunk{Id: 2, Offset: i * wire.MaxZeroRun, ZeroLength: wire.MaxZeroRun}}})
	}
	d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Chunk{Chunk: &pb.FileChunk{Id: 2, Offset: 2 * wire.MaxZeroRun, Data: []byte("x")}}})
	h := delta.NewHasher()
	zero := make([]byte, 1<<20)
	for i := 0; i < 2*wire.MaxZeroRun/len(zero); i++ {
		h.Write(zero)
	}
	h.Write([]byte("x"))
	sum := h.Sum()
	d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_End{End: &pb.FileEnd{Id: 2, Sum: sum[:]}}})
	if r := d.expectResult(2); r.GetResult().GetStatus() != stOK {
		t.Fatalf("a file of two 1 GiB holes: %v", r)
	}
	d.commit()
	if st := lstat(t, f.path("g")); st.Size != size || st.Blocks*512 > 1<<20 {
		t.Fatalf("g: size %d, %d blocks (want %d bytes, sparse)", st.Size, st.Blocks, size)
	}
}

// TestIssue18FilesInFlightBounded: headers without their ends, each holding
// a staging file open, ran a slave out of descriptors (EMFILE, reported as
// UNKNOWN_GFID). One data stream may have at most 1,024 files in flight:
// the next header ends the stream with InvalidArgument, and the slave's
// staging files go with it.
func TestIssue18FilesInFlightBounded(t *testing.T) {
	f := newFixture(t)
	var ops []*pb.EntryOp
	var gs []gfid.GFID
	for i := range 1025 {
		g := newGFID(t)
		gs = append(gs, g)
		op := opCreate(g, gfid.Root, fmt.Sprintf("f%04d", i))
		op.DataFollows = true
		ops = append(ops, op)
	}
	f.ok(ops...)
	d := f.openData(f.tok)
	for i, g := range gs[:1024] {
		d.header(uint64(i), g, 1<<20, 5e9)
		d.expectWant(uint64(i), true)
	}
	d.header(1024, gs[1024], 1<<20, 5e9)
	_, err := d.st.Recv()
	if grpcCode(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "files in flight") {
		t.Fatalf("the 1,025th file in flight: %v, want InvalidArgument", err)
	}
	waitFor(t, "staging files removed", func() bool {
		ents, _ := os.ReadDir(f.root)
		for _, e := range ents {
			if slave.IsTempName(e.Name()) {
				return false
			}
		}
		return true
	})
}

// TestIssue18IdleConnectionsDoNotLockOut: 19,990 idle TCP connections
// without TLS filled a slave's descriptor table and its master's handshake
// timed out. One peer address now holds at most 160 connections (the rest
// are closed at once): 400 idle connections from 127.0.0.2 leave the
// master on 127.0.0.1 its handshake.
func TestIssue18IdleConnectionsDoNotLockOut(t *testing.T) {
	sl := testenv.StartSlave(t, t.TempDir())
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	for range 400 {
		c, err := d.Dial("tcp", sl.Addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	held := 0
	for _, c := range idle {
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			held++
		}
	}
	if held > 160 {
		t.Errorf("one peer holds %d idle connections, want at most 160", held)
	}
	conn, err := grpc.NewClient(sl.Addr, append(wire.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := pb.NewSlaveServiceClient(conn).Handshake(ctx, &pb.HandshakeRequest{ProtocolVersion: wire.ProtocolVersion, SessionId: []byte("0123456789abcdef")}); err != nil {
		t.Fatalf("the master's handshake beside 400 idle connections: %v", err)
	}
}
