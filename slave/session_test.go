package slave_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/wire"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/slave"
)

func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if grpcCode(err) != code {
		t.Errorf("%s: %v, want %v", what, err, code)
	}
}

func TestHandshake(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	resp := f.handshake(f.sid)
	if resp.GetProtocolVersion() != wire.ProtocolVersion || len(resp.GetSlaveVolumeId()) != 16 ||
		resp.GetLeaseMs() != slave.DefaultLease.Milliseconds() || resp.GetPrivileged() != (os.Geteuid() == 0) {
		t.Fatalf("handshake response %v", resp)
	}
	// The volume id is stable.
	if again := f.handshake(f.sid); !bytes.Equal(again.GetSlaveVolumeId(), resp.GetSlaveVolumeId()) {
		t.Fatal("volume id changed between handshakes")
	}
	_, err := f.s.Handshake(ctx, &pb.HandshakeRequest{ProtocolVersion: wire.ProtocolVersion + 1, SessionId: f.sid})
	wantCode(t, "wrong protocol", err, codes.Unimplemented)
	_, err = f.s.Handshake(ctx, &pb.HandshakeRequest{ProtocolVersion: wire.ProtocolVersion, SessionId: []byte("short")})
	wantCode(t, "short session id", err, codes.InvalidArgument)
	_, err = f.s.Handshake(ctx, &pb.HandshakeRequest{ProtocolVersion: wire.ProtocolVersion, SessionId: make([]byte, 65)})
	wantCode(t, "long session id", err, codes.InvalidArgument)
	// A second master is refused while the first one's lease lives.
	_, err = f.s.Handshake(ctx, &pb.HandshakeRequest{ProtocolVersion: wire.ProtocolVersion, SessionId: newSessionID(t)})
	wantCode(t, "second session", err, codes.FailedPrecondition)
	// The first one still works.
	f.ok(opCreate(newGFID(t), gfid.Root, "x"))
}

func TestCallsWithoutHandshake(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := slave.New(slave.Config{Root: root, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for _, sid := range [][]byte{newSessionID(t), nil} {
		want := codes.FailedPrecondition
		if sid == nil {
			want = codes.InvalidArgument
		}
		_, err := s.EntryOps(ctx, &pb.EntryOpsRequest{SessionToken: sid, Ops: []*pb.EntryOp{opCreate(newGFID(t), gfid.Root, "x")}})
		wantCode(t, "EntryOps", err, want)
		_, err = s.MetaOps(ctx, &pb.MetaOpsRequest{SessionToken: sid, Ops: []*pb.MetaOp{metaOf(gfid.Root, unix.S_IFDIR|0o700, 0, 0, 1, 1)}})
		wantCode(t, "MetaOps", err, want)
		_, err = s.SetMark(ctx, &pb.SetMarkRequest{SessionToken: sid, StimeNs: 5})
		wantCode(t, "SetMark", err, want)
		_, err = s.GetMark(ctx, &pb.GetMarkRequest{SessionToken: sid})
		wantCode(t, "GetMark", err, want)
		_, err = s.KeepAlive(ctx, &pb.KeepAliveRequest{SessionToken: sid})
		wantCode(t, "KeepAlive", err, want)
	}
	if got := listNames(t, root); !equalStrings(got, []string{wire.ReservedName}) {
		t.Fatalf("root holds %q", got)
	}
	if st := lstat(t, root); st.Mode&0o777 != 0o755 {
		t.Fatalf("root mode changed to %o", st.Mode)
	}
}

func TestSessionLeaseTakeover(t *testing.T) {
	clock := newFakeClock()
	f := newFixture(t, func(c *slave.Config) { c.Now = clock.Now; c.Lease = time.Minute })
	ctx := context.Background()
	A, B := f.tok, newSessionID(t) // A: the first session's token; B: a second session's id
	hsB := func() error {
		resp, err := f.s.Handshake(ctx, &pb.HandshakeRequest{ProtocolVersion: wire.ProtocolVersion, SessionId: B})
		if err == nil {
			f.tok = resp.GetSessionToken()
		}
		return err
	}
	wantCode(t, "B at once", hsB(), codes.FailedPrecondition)
	// A's calls renew its lease: 3 x 40 s is beyond one lease.
	for i := 0; i < 3; i++ {
		clock.Advance(40 * time.Second)
		if _, err := f.s.KeepAlive(ctx, &pb.KeepAliveRequest{SessionToken: A}); err != nil {
			t.Fatalf("KeepAlive %d: %v", i, err)
		}
		wantCode(t, "B while A renews", hsB(), codes.FailedPrecondition)
	}
	// A goes quiet; its lease runs out and B takes over.
	clock.Advance(61 * time.Second)
	if err := hsB(); err != nil {
		t.Fatalf("B after A's lease expired: %v", err)
	}
	_, err := f.s.EntryOps(ctx, &pb.EntryOpsRequest{SessionToken: A, Ops: []*pb.EntryOp{opCreate(newGFID(t), gfid.Root, "fromA")}})
	wantCode(t, "A's EntryOps after takeover", err, codes.FailedPrecondition)
	_, err = f.s.MetaOps(ctx, &pb.MetaOpsRequest{SessionToken: A})
	wantCode(t, "A's MetaOps after takeover", err, codes.FailedPrecondition)
	_, err = f.s.SetMark(ctx, &pb.SetMarkRequest{SessionToken: A, StimeNs: 1})
	wantCode(t, "A's SetMark after takeover", err, codes.FailedPrecondition)
	_, err = f.s.GetMark(ctx, &pb.GetMarkRequest{SessionToken: A})
	wantCode(t, "A's GetMark after takeover", err, codes.FailedPrecondition)
	_, err = f.s.KeepAlive(ctx, &pb.KeepAliveRequest{SessionToken: A})
	wantCode(t, "A's KeepAlive after takeover", err, codes.FailedPrecondition)
	if exists(f.path("fromA")) {
		t.Fatal("A's refused op was applied")
	}
	// A cannot take it back while B's lease lives.
	_, err = f.s.Handshake(ctx, &pb.HandshakeRequest{ProtocolVersion: wire.ProtocolVersion, SessionId: f.sid})
	wantCode(t, "A's handshake while B holds the root", err, codes.FailedPrecondition)
	f.sid = B
	f.ok(opCreate(newGFID(t), gfid.Root, "fromB"))

	// A session whose lease ran out is refused even without a rival, and
	// handshakes again.
	clock.Advance(2 * time.Minute)
	_, err = f.s.KeepAlive(ctx, &pb.KeepAliveRequest{SessionToken: f.tok})
	wantCode(t, "B after its lease expired", err, codes.FailedPrecondition)
	f.handshake(B)
	f.ok(opCreate(newGFID(t), gfid.Root, "fromB2"))
}

func TestEndSession(t *testing.T) {
	clock := newFakeClock()
	f := newFixture(t, func(c *slave.Config) { c.Now = clock.Now; c.Lease = time.Hour })
	ctx := context.Background()
	B := newSessionID(t)
	_, err := f.s.EndSession(ctx, &pb.EndSessionRequest{SessionToken: B})
	wantCode(t, "EndSession with a token that is not the session's", err, codes.FailedPrecondition)
	_, err = f.s.EndSession(ctx, &pb.EndSessionRequest{SessionToken: f.sid})
	wantCode(t, "EndSession with the session id for a token", err, codes.FailedPrecondition)
	if _, err := f.s.EndSession(ctx, &pb.EndSessionRequest{SessionToken: f.tok}); err != nil {
		t.Fatalf("EndSession: %v", err)
	}
	_, err = f.s.EntryOps(ctx, &pb.EntryOpsRequest{SessionToken: f.tok, Ops: []*pb.EntryOp{opCreate(newGFID(t), gfid.Root, "x")}})
	wantCode(t, "EntryOps after EndSession", err, codes.FailedPrecondition)
	// Another master need not wait for the lease.
	f.handshake(B)
	f.sid = B
	f.ok(opCreate(newGFID(t), gfid.Root, "y"))
	if exists(f.path("x")) {
		t.Fatal("a call of the ended session was applied")
	}
}

func TestMarks(t *testing.T) {
	f := newFixture(t)
	if got := f.getMark(); got != 0 {
		t.Fatalf("fresh slave: mark %d", got)
	}
	_, err := f.s.SetMark(context.Background(), &pb.SetMarkRequest{SessionToken: f.tok, StimeNs: 0})
	wantCode(t, "zero mark", err, codes.InvalidArgument)
	_, err = f.s.SetMark(context.Background(), &pb.SetMarkRequest{SessionToken: f.tok, StimeNs: -5})
	wantCode(t, "negative mark", err, codes.InvalidArgument)
	const m1, m2 = int64(1_700_000_000_123_456_789), int64(1_700_000_001_000_000_001)
	f.setMark(m1)
	if got := f.getMark(); got != m1 {
		t.Fatalf("mark %d, want %d", got, m1)
	}
	f.setMark(m2)
	if got := f.getMark(); got != m2 {
		t.Fatalf("mark %d, want %d", got, m2)
	}
	vol := f.handshake(f.sid).GetSlaveVolumeId()
	f.reopen()
	if got := f.getMark(); got != m2 {
		t.Fatalf("after restart: mark %d, want %d", got, m2)
	}
	if got := f.handshake(f.sid).GetSlaveVolumeId(); !bytes.Equal(got, vol) {
		t.Fatal("volume id changed across a restart")
	}
	// Marks are per session.
	other := newSessionID(t)
	f.s.Close()
	f.s = nil
	f.open()
	f.sid = other
	f.handshake(other)
	if got := f.getMark(); got != 0 {
		t.Fatalf("another session sees mark %d", got)
	}
}

// TestIndexSurvivesRestart: gfids created before a restart resolve after it.
func TestIndexSurvivesRestart(t *testing.T) {
	f := newFixture(t)
	D, S, F := newGFID(t), newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"), opMkdir(S, D, "s"), opCreate(F, S, "f"))
	f.setMark(1)
	f.reopen()
	f.ok(opCreate(newGFID(t), S, "after-restart"), opLink(F, D, "f2"))
	checkStatuses(t, f.meta(metaOf(F, unix.S_IFREG|0o600, 0, 0, 1e9, 1e9)), stOK)
	if !exists(f.path("d/s/after-restart")) || lstat(t, f.path("d/f2")).Ino != lstat(t, f.path("d/s/f")).Ino {
		t.Fatal("ops after restart went elsewhere")
	}
	// Also without a SetMark before Close.
	f.ok(opRename(S, D, "s", gfid.Root, "s-moved"))
	f.reopen()
	f.ok(opCreate(newGFID(t), S, "after-second-restart"))
	if !exists(f.path("s-moved/after-second-restart")) {
		t.Fatal("op after second restart went elsewhere")
	}
}

// TestIndexRebuilt: a lost or corrupt index is rebuilt from the tree.
func TestIndexRebuilt(t *testing.T) {
	for _, how := range []string{"deleted", "corrupt"} {
		t.Run(how, func(t *testing.T) {
			f := newFixture(t)
			D, S, F, L := newGFID(t), newGFID(t), newGFID(t), newGFID(t)
			f.ok(opMkdir(D, gfid.Root, "d"), opMkdir(S, D, "s"), opCreate(F, S, "f"), opLink(F, gfid.Root, "f-link"),
				opSymlink(L, D, "l", "s/f"))
			if err := f.s.Close(); err != nil {
				t.Fatal(err)
			}
			f.s = nil
			idx := filepath.Join(f.cfg.StateDir, "gfid.db")
			if _, err := os.Stat(idx); err != nil {
				t.Fatalf("index file: %v", err)
			}
			switch how {
			case "deleted":
				if err := os.Remove(idx); err != nil {
					t.Fatal(err)
				}
			case "corrupt":
				if err := os.WriteFile(idx, bytes.Repeat([]byte("garbage!"), 1024), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			// Meanwhile the tree changed behind the slave's back.
			if err := os.Rename(f.path("d/s"), f.path("s-moved")); err != nil {
				t.Fatal(err)
			}
			f.open()
			f.handshake(f.sid)
			f.ok(opCreate(newGFID(t), S, "new"), opCreate(newGFID(t), D, "new"))
			if !exists(f.path("s-moved/new")) || !exists(f.path("d/new")) {
				t.Fatal("ops after the rebuild went elsewhere")
			}
			checkStatuses(t, f.meta(metaOf(F, unix.S_IFREG|0o600, 0, 0, 1e9, 1e9), metaOf(L, unix.S_IFLNK|0o777, 0, 0, 1e9, 1e9)), stOK, stOK)
			// Replays are still NOOPs: the rebuilt index knows every link.
			f.replayNoop(opCreate(F, gfid.Root, "f-link"), opMkdir(D, gfid.Root, "d"), opSymlink(L, D, "l", "s/f"))
			f.ok(opUnlink(F, gfid.Root, "f-link"))
			f.setMark(7)
			if got := f.getMark(); got != 7 {
				t.Fatalf("mark %d", got)
			}
		})
	}
}

func TestNewRefusesBadRoots(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := slave.New(slave.Config{Root: file, StateDir: t.TempDir()}); err == nil {
		t.Fatal("New on a file succeeded")
	}
	if _, err := slave.New(slave.Config{Root: filepath.Join(base, "missing"), StateDir: t.TempDir()}); err == nil {
		t.Fatal("New on a missing root succeeded")
	}
	// A directory inside a replicated tree (it carries a gfid) is not a root.
	f := newFixture(t)
	D := newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"))
	if s, err := slave.New(slave.Config{Root: f.path("d"), StateDir: t.TempDir()}); err == nil {
		s.Close()
		t.Fatal("New on a directory inside a slave tree succeeded")
	}
	// One slave per root; the refused one leaves no state dir it made
	// (issue 18.12).
	state := filepath.Join(t.TempDir(), "second")
	if s, err := slave.New(slave.Config{Root: f.root, StateDir: state}); err == nil {
		s.Close()
		t.Fatal("a second slave opened a root in use")
	}
	if _, err := os.Stat(state); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a slave that failed to start left its new state dir: %v", err)
	}
}

// The handshake says whether the slave tree is empty (nothing but the
// reserved directory): the master skips asking whether copies are current
// in a first sync.
func TestHandshakeEmpty(t *testing.T) {
	f := newFixture(t)
	if !f.handshake(f.sid).GetEmpty() {
		t.Fatal("a fresh slave root is not reported empty")
	}
	D := newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"))
	if f.handshake(f.sid).GetEmpty() {
		t.Fatal("a slave root holding a directory is reported empty")
	}
	f.ok(opRmdir(D, gfid.Root, "d"))
	if !f.handshake(f.sid).GetEmpty() {
		t.Fatal("a slave root emptied again is not reported empty")
	}
}
