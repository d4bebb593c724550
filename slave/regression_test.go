package slave_test

// Regression tests: each pins a bug found (and fixed) in the slave.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/wire"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/slave"
	"github.com/georep/georep/syncer/delta"
)

// Two headers for the same gfid (in one stream, or in two concurrent
// streams) share the staging name .georep-tmp.<gfid>: the second header
// unlinks the first one's staging file ("left by a crash"), and the first
// FileEnd renames the second one's half-written, gfid-less staging file over
// the target. The target loses its gfid and shows half a file, and the first
// file is reported OK.
func TestRegressionDataSameGFIDTwiceInOneStream(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"))
	d := f.openData(f.tok)
	d.header(1, F, 10, 1e9)
	d.expectWant(1, true)
	d.header(2, F, 10, 2e9)
	d.expectWant(2, true)
	d.chunk(1, 0, "AAAAAAAAAA")
	d.chunk(2, 0, "BBBBB")
	d.end(1, false)
	r1 := d.expectResult(1)
	got := readFile(t, f.path("f"))
	if r1.GetResult().GetStatus() == stOK && got != "AAAAAAAAAA" {
		t.Errorf("file 1 reported OK, but f reads %q", got)
	}
	d.chunk(2, 5, "BBBBB")
	d.end(2, false)
	d.expectResult(2)
	d.commit()
	var g [16]byte
	if _, err := unix.Lgetxattr(f.path("f"), gfidAttr, g[:]); err != nil || gfid.GFID(g) != F {
		t.Errorf("f lost its gfid: %v", err)
	}
	checkStatuses(t, f.meta(metaOf(F, unix.S_IFREG|0o644, 0, 0, 1, 1)), stOK)
}

func TestRegressionDataSameGFIDInTwoStreams(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"))
	d1 := f.openData(f.tok)
	d2 := f.openData(f.tok)
	d1.header(1, F, 4, 1e9)
	d1.expectWant(1, true)
	d2.header(1, F, 4, 2e9)
	d2.expectWant(1, true)
	d1.chunk(1, 0, "1111")
	d2.chunk(1, 0, "22")
	d1.end(1, false)
	if r := d1.expectResult(1); r.GetResult().GetStatus() == stOK {
		if got := readFile(t, f.path("f")); got != "1111" {
			t.Errorf("stream 1 reported OK, but f reads %q", got)
		}
	}
	d2.chunk(1, 2, "22")
	d2.end(1, false)
	d2.expectResult(1)
	d1.commit()
	d2.commit()
	checkStatuses(t, f.meta(metaOf(F, unix.S_IFREG|0o644, 0, 0, 1, 1)), stOK)
}

// A SyncData stream checks its session only at DataOpen: after the lease ran
// out and another master took the root over, the old master's stream still
// writes files, and each of its messages renews the NEW session's lease
// (touch() does not look at the session), so the new owner never expires.
func TestRegressionDataStreamSurvivesTakeover(t *testing.T) {
	clock := newFakeClock()
	f := newFixture(t, func(c *slave.Config) { c.Now = clock.Now; c.Lease = time.Minute })
	F := newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"))
	d := f.openData(f.tok)
	d.header(1, F, 3, 1e9)
	d.expectWant(1, true) // the stream is open and admitted
	clock.Advance(2 * time.Minute)
	B := newSessionID(t)
	if _, err := f.s.Handshake(context.Background(), &pb.HandshakeRequest{ProtocolVersion: wire.ProtocolVersion, SessionId: B}); err != nil {
		t.Fatal(err)
	}
	// The slave may end the stream at the chunk already (the session is
	// gone): a send that then fails is the refusal this test wants, not a
	// failure of the test (it was flaky under load).
	d.record(1, 0, []byte("old"))
	d.st.Send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Chunk{Chunk: &pb.FileChunk{Id: 1, Offset: 0, Data: []byte("old")}}})
	sum := delta.SumOf([]byte("old"))
	d.st.Send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_End{End: &pb.FileEnd{Id: 1, Sum: sum[:]}}})
	m, err := d.st.Recv()
	if err == nil && m.GetResult().GetResult().GetStatus() == stOK {
		t.Errorf("the old session's stream still wrote f after the takeover: %q", readFile(t, f.path("f")))
	}
	clock.Advance(61 * time.Second) // B's lease ends unless something renews it
	for i := 0; err == nil && i < 4; i++ {
		clock.Advance(40 * time.Second)
		d.st.Send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Header{Header: &pb.FileHeader{Id: uint64(10 + i), Gfid: gb(F), Size: 3, MtimeNs: 1e9}}})
		if _, err = d.st.Recv(); err == nil { // want
			_, err = d.st.Recv() // result
		}
	}
	if _, err := f.s.KeepAlive(context.Background(), &pb.KeepAliveRequest{SessionToken: B}); err == nil {
		t.Errorf("B idle for 160 s with a 60 s lease is still alive: the old stream renewed it")
	}
}

// FileEnd{aborted} promises that "the slave discards what it received and
// leaves the old copy"; a hardlinked file is patched in place, so the chunks
// that arrived before the abort stay.
func TestRegressionAbortedHardlinkKeepsPartialData(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	f.ok(opCreate(F, gfid.Root, "a"), opLink(F, gfid.Root, "b"))
	d := f.openData(f.tok)
	d.sendFile(1, F, "old content", 1e9)
	d.header(2, F, 11, 2e9)
	d.expectWant(2, true)
	d.chunk(2, 0, "NEW")
	d.end(2, true)
	d.expectResult(2)
	d.commit()
	if got := readFile(t, f.path("a")); got != "old content" {
		t.Errorf("after an aborted transfer a reads %q", got)
	}
}

// link() and rename() look the source up (caching its directory's fd) and
// then move aside a directory found at the destination; moveAside's
// forget() closes that directory's cached fd, which is the source's dirfd
// when the directory holds the source. The Linkat/Renameat then uses a
// closed descriptor (EBADF, or whatever file a concurrent goroutine opened
// under that number), and the op reports FAILED after having moved the
// directory, source and all, into limbo (purged at the next SetMark).
func TestRegressionClosedDirFD(t *testing.T) {
	for _, typ := range []string{"LINK", "RENAME"} {
		t.Run(typ, func(t *testing.T) {
			f := newFixture(t)
			D, F := newGFID(t), newGFID(t)
			f.ok(opMkdir(D, gfid.Root, "d"), opCreate(F, D, "f"))
			op := opLink(F, gfid.Root, "d")
			if typ == "RENAME" {
				op = opRename(F, D, "f", gfid.Root, "d")
			}
			r := f.entry(op)[0]
			if r.GetStatus() == stFailed {
				t.Errorf("%s onto the directory holding the source: %v %q", typ, r.GetStatus(), r.GetError())
				if got := f.limboNames(); len(got) != 0 {
					t.Errorf("... and the failed op moved %q into limbo", got)
				}
			}
		})
	}
}

// ensure() does not check that a gfid it is asked to create does not
// already name an entry of another type: it creates a second inode with the
// same gfid. (a) Created inside the directory that owns the gfid, this
// makes a cycle in the index and every op under that directory fails
// ("deeper than 4096 (cycle?)"). (b) Created at the directory's own name,
// the directory goes to limbo and SetMark's removeTree calls RemoveAll on
// the gfid, dropping the new entry's live link too.
func TestRegressionGFIDTypeConfusion(t *testing.T) {
	t.Run("IndexCycle", func(t *testing.T) {
		f := newFixture(t)
		// Fixed gfids so that the new link sorts first in the index.
		P := gfid.GFID{0: 0xf0, 15: 9}
		S := gfid.GFID{0: 0x10, 15: 9}
		f.ok(opMkdir(P, gfid.Root, "p"), opMkdir(S, P, "s"))
		r := f.entry(opCreate(S, S, "x"))[0]
		t.Logf("CREATE of directory S's gfid as a file inside S: %v %q", r.GetStatus(), r.GetError())
		res := f.entry(opCreate(newGFID(t), S, "y"))
		if res[0].GetStatus() != stOK {
			t.Errorf("directory S is no longer usable: %v %q", res[0].GetStatus(), res[0].GetError())
		}
	})
	t.Run("LimboDropsLiveLink", func(t *testing.T) {
		f := newFixture(t)
		G := newGFID(t)
		f.ok(opMkdir(G, gfid.Root, "n"))
		f.mustEntry([]pb.OpStatus{stResolved}, opCreate(G, gfid.Root, "n"))
		checkStatuses(t, f.meta(metaOf(G, unix.S_IFREG|0o600, 0, 0, 1, 1)), stOK)
		f.setMark(1)
		checkGFID(t, f.path("n"), G)
		if r := f.meta(metaOf(G, unix.S_IFREG|0o600, 0, 0, 2, 2))[0]; r.GetStatus() != stOK && r.GetStatus() != stNoop {
			t.Errorf("after SetMark, n (gfid G) is unknown: %v %q", r.GetStatus(), r.GetError())
		}
	})
}

// ensure() reuses an existing inode of the gfid (Linkat) without checking a
// SYMLINK's target (or a MKNOD's device number): the new name gets the old
// target and the op reports success; replaying it then replaces the link.
func TestRegressionSymlinkReuseIgnoresTarget(t *testing.T) {
	f := newFixture(t)
	L := newGFID(t)
	f.ok(opSymlink(L, gfid.Root, "a", "t1"))
	op := opSymlink(L, gfid.Root, "b", "t2")
	f.ok(op)
	if got, _ := os.Readlink(f.path("b")); got != "t2" {
		t.Errorf("SYMLINK reported OK but b -> %q, want t2", got)
	}
	f.replayNoop(op)
}

// A RENAME between two hardlinks of one inode removes the source name but
// reports NOOP, which the protocol defines as "nothing changed".
func TestRegressionRenameBetweenHardlinksReportsNoop(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	f.ok(opCreate(F, gfid.Root, "a"), opLink(F, gfid.Root, "b"))
	f.mustEntry([]pb.OpStatus{stOK}, opRename(F, gfid.Root, "a", gfid.Root, "b"))
}

// The same hole through EndSession: the ended session's open stream keeps
// writing.
func TestRegressionDataStreamSurvivesEndSession(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"))
	d := f.openData(f.tok)
	d.header(1, F, 3, 1e9)
	d.expectWant(1, true)
	if _, err := f.s.EndSession(context.Background(), &pb.EndSessionRequest{SessionToken: f.tok}); err != nil {
		t.Fatal(err)
	}
	// The slave ends the stream at the first message after EndSession,
	// so the second send may already fail (EOF): the outcome is in Recv.
	sum := delta.SumOf([]byte("old"))
	d.st.Send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Chunk{Chunk: &pb.FileChunk{Id: 1, Data: []byte("old")}}})
	d.st.Send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_End{End: &pb.FileEnd{Id: 1, Sum: sum[:]}}})
	if m, err := d.st.Recv(); err == nil && m.GetResult().GetResult().GetStatus() == stOK {
		t.Errorf("the ended session's stream still wrote f: %q", readFile(t, f.path("f")))
	}
}

// TestStagingLeftoversSweptAfterUncleanStop: staging files a crash left in
// the tree are removed by the index rebuild of the next start, and a
// PURGE never removes a staging file (a transfer may be in flight).
func TestStagingLeftoversSweptAfterUncleanStop(t *testing.T) {
	root, state := t.TempDir(), t.TempDir()
	s, err := slave.New(slave.Config{Root: root, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	g := newGFID(t)
	left := filepath.Join(root, ".georep-tmp."+g.String()+".0123456789abcdef")
	if err := os.WriteFile(left, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !slave.IsTempName(filepath.Base(left)) || slave.IsTempName(".georep-tmp.x") {
		t.Fatal("IsTempName")
	}
	sid := newSessionID(t)
	hs, err := s.Handshake(context.Background(), &pb.HandshakeRequest{ProtocolVersion: wire.ProtocolVersion, SessionId: sid})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.EntryOps(context.Background(), &pb.EntryOpsRequest{SessionToken: hs.GetSessionToken(), Ops: []*pb.EntryOp{{Type: pb.EntryOpType_ENTRY_OP_TYPE_PURGE, Gfid: gfid.Root.Bytes()}}})
	if err != nil || resp.GetResults()[0].GetStatus() == stFailed {
		t.Fatalf("PURGE: %v %v", resp, err)
	}
	if _, err := os.Stat(left); err != nil {
		t.Fatalf("PURGE removed a staging file: %v", err)
	}
	s.Close()
	// As after a crash: the index is not known to be in step.
	ix, err := gfidx.Open(filepath.Join(state, "gfid.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.SetClean(false); err != nil {
		t.Fatal(err)
	}
	ix.Close()
	s2, err := slave.New(slave.Config{Root: root, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Errorf("the staging file a crash left is still there after the restart: %v", err)
	}
}

// TestCleanRestartDoesNotRebuild: after a clean stop the index is trusted;
// only an unclean one costs a walk of the tree.
func TestCleanRestartDoesNotRebuild(t *testing.T) {
	root, state := t.TempDir(), t.TempDir()
	s, err := slave.New(slave.Config{Root: root, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A file that has a gfid but is not in the index: a rebuild would
	// index it; a trusted index does not know it.
	g := newGFID(t)
	p := filepath.Join(root, "unindexed")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := gfid.DefaultNamespace().Set(p, g); err != nil {
		t.Fatal(err)
	}
	s2, err := slave.New(slave.Config{Root: root, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	ix, err := gfidx.Open(filepath.Join(state, "gfid.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	ix.View(func(tx *gfidx.Tx) error {
		if links := tx.Links(g); len(links) != 0 {
			t.Errorf("a clean restart rebuilt the index from the tree (found %v)", links)
		}
		return nil
	})
	if !ix.Clean() {
		t.Error("the index is not clean after a clean stop")
	}
}

// TestAnnouncedFileIsNotAnInode: a CREATE whose data follows only
// announces the file; until its data (or a LINK) creates it, ops that need
// the inode see an unknown gfid, and a LINK creates it first.
func TestAnnouncedFileIsNotAnInode(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	op := opCreate(F, gfid.Root, "a")
	op.DataFollows = true
	f.ok(op)
	if _, err := os.Lstat(f.path("a")); !os.IsNotExist(err) {
		t.Fatalf("an announced file exists before its data: %v", err)
	}
	checkFailed(t, f.meta(metaOf(F, unix.S_IFREG|0o644, 0, 0, 1, 1))[0], pb.ErrorCode_ERROR_CODE_UNKNOWN_GFID, "metadata of an announced file")
	f.ok(opLink(F, gfid.Root, "b"))
	if a, b := lstat(t, f.path("a")), lstat(t, f.path("b")); a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("LINK of an announced file: a ino %d nlink %d, b ino %d", a.Ino, a.Nlink, b.Ino)
	}
	checkGFID(t, f.path("a"), F)
}

// TestIssue17RestartedMasterFencesItsOldStreams: a master killed while
// its data stream was on the way, and restarted at once with the same
// session id, sent a file anew; the dead master's stream, still being
// handled, then finished its older copy of the file over the new one,
// and nothing ever sent the file again (the independent kill test's lost
// data change). Each handshake now answers a new token, and a call of an
// earlier one changes nothing once the new one is answered.
func TestIssue17RestartedMasterFencesItsOldStreams(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"))
	old := f.openData(f.tok)
	old.header(1, F, 3, 1e9)
	old.expectWant(1, true)
	old.chunk(1, 0, "old")

	// The master restarts: the same session, a new handshake.
	f.handshake(f.sid)
	d := f.openData(f.tok)
	if r := d.sendFile(1, F, "newer", 2e9); r.GetResult().GetStatus() != stOK {
		t.Fatalf("the restarted master's file: %v", r)
	}
	d.commit()

	// The dead master's stream finishes its file: refused, nothing written.
	sum := delta.SumOf([]byte("old"))
	old.st.Send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_End{End: &pb.FileEnd{Id: 1, Sum: sum[:]}}})
	if m, err := old.st.Recv(); err == nil && m.GetResult().GetResult().GetStatus() == stOK {
		t.Errorf("the old session's stream wrote f after the new handshake")
	} else if grpcCode(err) != codes.FailedPrecondition {
		t.Errorf("the old session's stream: %v, want FailedPrecondition", err)
	}
	if got := readFile(t, f.path("f")); got != "newer" {
		t.Errorf("f holds %q, want the restarted master's %q", got, "newer")
	}
	// Its other calls are refused too, the new session's go on.
	_, err := f.s.EntryOps(context.Background(), &pb.EntryOpsRequest{SessionToken: []byte("not the token"), Ops: []*pb.EntryOp{opCreate(newGFID(t), gfid.Root, "x")}})
	if grpcCode(err) != codes.FailedPrecondition {
		t.Errorf("EntryOps with a stale token: %v", err)
	}
	f.ok(opCreate(newGFID(t), gfid.Root, "y"))
}

// TestIssue18SessionIDIsNotACredential: the refusal of a second master
// gave away the holder's session id, and the id was all a call needed.
// The refusal names no id now, and a call needs the handshake's token.
func TestIssue18SessionIDIsNotACredential(t *testing.T) {
	f := newFixture(t)
	_, err := f.s.Handshake(context.Background(), &pb.HandshakeRequest{ProtocolVersion: wire.ProtocolVersion, SessionId: newSessionID(t)})
	if grpcCode(err) != codes.FailedPrecondition {
		t.Fatalf("second master: %v", err)
	}
	if msg := status.Convert(err).Message(); strings.Contains(msg, fmt.Sprintf("%x", f.sid)) {
		t.Errorf("the refusal gives away the holder's session id: %s", msg)
	}
	_, err = f.s.EntryOps(context.Background(), &pb.EntryOpsRequest{SessionToken: f.sid, Ops: []*pb.EntryOp{opCreate(newGFID(t), gfid.Root, "stolen")}})
	if grpcCode(err) != codes.FailedPrecondition {
		t.Errorf("a call with the session id for a token: %v", err)
	}
	if exists(f.path("stolen")) {
		t.Error("a call with the session id was applied")
	}
}

// TestIssue17RenameOfAnUnknownNameSaysWhereItMoved: a RENAME of a name
// the slave does not have (the LINK that made it never reached it) moves
// the inode from wherever the slave has it, a directory the op does not
// name: the other link of a hardlinked file vanished from the slave,
// silently (the independent churn's lost hardlink names). The slave now
// says which directory it moved the entry from, so that the master
// reconciles it.
func TestIssue17RenameOfAnUnknownNameSaysWhereItMoved(t *testing.T) {
	f := newFixture(t)
	F, A, B, C := newGFID(t), newGFID(t), newGFID(t), newGFID(t)
	f.ok(opMkdir(A, gfid.Root, "a"), opMkdir(B, gfid.Root, "b"), opMkdir(C, gfid.Root, "c"), opCreate(F, A, "f"))
	res := f.entry(opRename(F, B, "link", C, "moved"))
	if res[0].GetStatus() != stOK {
		t.Fatalf("RENAME: %v", res[0])
	}
	got := res[0].GetAlsoDirs()
	if len(got) != 1 || !bytes.Equal(got[0], A.Bytes()) {
		t.Errorf("also_dirs = %x, want the directory it moved the file from (%s)", got, A)
	}
	// A CREATE that reuses the gfid from elsewhere says so too.
	G := newGFID(t)
	f.ok(opCreate(G, A, "g"))
	res = f.entry(opCreate(G, C, "g2"))
	if got := res[0].GetAlsoDirs(); len(got) != 1 || !bytes.Equal(got[0], A.Bytes()) {
		t.Errorf("CREATE reusing a file: also_dirs = %x, want %s", got, A)
	}
	// An op that finds its entry where it names it says nothing more.
	res = f.entry(opRename(F, C, "moved", B, "back"))
	if got := res[0].GetAlsoDirs(); len(got) != 0 {
		t.Errorf("a plain RENAME: also_dirs = %x", got)
	}
}

// TestExchange: EXCHANGE swaps two entries (a file and a directory with
// its content), keeps the index in step, is a no-op when replayed, and
// when the slave does not hold them as the op says, moves the entry to
// the second name and parks what was there (never removing it).
func TestExchange(t *testing.T) {
	f := newFixture(t)
	F, D, X := newGFID(t), newGFID(t), newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"), opMkdir(D, gfid.Root, "d"), opCreate(X, D, "inside"))
	op := &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_EXCHANGE, Gfid: F.Bytes(), Pargfid: gfid.Root.Bytes(), Name: []byte("f"),
		Pargfid2: gfid.Root.Bytes(), Name2: []byte("d")}
	f.ok(op)
	if st := lstat(t, f.path("f")); st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Fatalf("after the exchange, f is %o, want the directory", st.Mode)
	}
	if !exists(f.path("f/inside")) {
		t.Fatal("the directory's content did not move with it")
	}
	f.replayNoop(op)
	// The index follows: an op on the directory's content finds it.
	f.ok(opRename(X, D, "inside", D, "renamed"))
	if !exists(f.path("f/renamed")) {
		t.Fatal("the index does not know where the directory went")
	}
	// Not as the op says (g is not at the first name): g goes to the
	// second name, and what was there is parked, not removed.
	G, H := newGFID(t), newGFID(t)
	f.ok(opCreate(G, gfid.Root, "g"), opCreate(H, gfid.Root, "h"))
	res := f.entry(&pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_EXCHANGE, Gfid: G.Bytes(), Pargfid: gfid.Root.Bytes(), Name: []byte("elsewhere"),
		Pargfid2: gfid.Root.Bytes(), Name2: []byte("h")})
	if res[0].GetStatus() == stFailed {
		t.Fatalf("fallback exchange: %v", res[0])
	}
	// h is parked: a CREATE of its gfid at its new name takes it back.
	f.mustEntry([]pb.OpStatus{stOK}, opCreate(H, gfid.Root, "g"))
	if got := gfidAt(t, f.path("g")); got != H {
		t.Errorf("g holds %v, want the parked %v", got, H)
	}
	if got := gfidAt(t, f.path("h")); got != G {
		t.Errorf("h holds %v, want %v", got, G)
	}
}
