package slave_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/wire"
	pb "github.com/georep/georep/proto/georep/v1"
)

// dialSlave returns a client of the fixture's slave served over gRPC with
// the limits a master dials with (wire.DialOptions), plus opts.
func (f *fixture) dialSlave(opts ...grpc.DialOption) pb.SlaveServiceClient {
	f.t.Helper()
	f.serve()
	conn, err := grpc.NewClient(f.addr, append(append(wire.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials())), opts...)...)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { conn.Close() })
	return pb.NewSlaveServiceClient(conn)
}

// TestOversizedMessages: the gRPC message limit is set on both ends. A
// master cannot send a message over it (its client refuses before the
// wire), and a client that raised its own limit is refused by the slave.
// Either way nothing changes on the slave.
func TestOversizedMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 64 MiB messages")
	}
	f := newFixture(t)
	D := newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"))
	before := snapshot(t, f.root)
	huge := opSymlink(newGFID(t), D, "huge", strings.Repeat("t", wire.MaxMessage))
	good := opCreate(newGFID(t), D, "good")
	req := &pb.EntryOpsRequest{SessionToken: f.tok, Ops: []*pb.EntryOp{good, huge}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	_, err := f.dialSlave().EntryOps(ctx, req)
	if grpcCode(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "larger than max") {
		t.Errorf("master-side limit: %v, want ResourceExhausted", err)
	}
	loose := f.dialSlave(grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(2 * wire.MaxMessage)))
	_, err = loose.EntryOps(ctx, req)
	if grpcCode(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "larger than max") {
		t.Errorf("slave-side limit: %v, want ResourceExhausted", err)
	}
	if diff := diffSnap(before, snapshot(t, f.root)); diff != "" {
		t.Fatalf("oversized messages changed the slave:\n%s", diff)
	}
	// The same on a data stream: a chunk over the limit ends the stream.
	F := newGFID(t)
	f.ok(opCreate(F, D, "f"))
	fBefore := lstat(t, f.path("d/f"))
	st, err := loose.SyncData(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []*pb.SyncDataRequest{
		{Msg: &pb.SyncDataRequest_Open{Open: &pb.DataOpen{SessionToken: f.tok}}},
		{Msg: &pb.SyncDataRequest_Header{Header: &pb.FileHeader{Id: 1, Gfid: gb(F), Size: wire.MaxMessage + 1, Mode: unix.S_IFREG | 0o644, MtimeNs: 1}}},
		{Msg: &pb.SyncDataRequest_Chunk{Chunk: &pb.FileChunk{Id: 1, Data: make([]byte, wire.MaxMessage+1)}}},
	}
	for _, m := range msgs {
		if err := st.Send(m); err != nil {
			break
		}
	}
	for err == nil {
		_, err = st.Recv()
	}
	if grpcCode(err) != codes.ResourceExhausted {
		t.Errorf("oversized chunk: %v, want ResourceExhausted", err)
	}
	// The stream's staging file goes (the directory's ctime moves with
	// it), f is untouched, and the slave serves on: the good op applies in
	// a call of normal size.
	waitFor(t, "the staging file to go", func() bool {
		for _, n := range listNames(t, f.path("d")) {
			if strings.HasPrefix(n, tmpPrefix) {
				return false
			}
		}
		return true
	})
	if got := listNames(t, f.path("d")); !equalStrings(got, []string{"f"}) {
		t.Fatalf("d holds %q after the refused stream", got)
	}
	if st := lstat(t, f.path("d/f")); st.Ino != fBefore.Ino || st.Size != 0 || st.Ctim != fBefore.Ctim {
		t.Fatalf("f changed: size %d", st.Size)
	}
	f.checkOutside()
	f.ok(good)
}

// TestTooManyOps: a call with more ops than the slave takes at once is
// refused whole, before any op applies.
func TestTooManyOps(t *testing.T) {
	f := newFixture(t)
	before := snapshot(t, f.root)
	const n = 100_001
	ops := make([]*pb.EntryOp, n)
	metas := make([]*pb.MetaOp, n)
	for i := range ops {
		ops[i] = opCreate(newGFID(t), gfid.Root, fmt.Sprintf("f%d", i))
		metas[i] = metaOf(gfid.Root, unix.S_IFDIR|0o700, 0, 0, 1, 1)
	}
	_, err := f.s.EntryOps(context.Background(), &pb.EntryOpsRequest{SessionToken: f.tok, Ops: ops})
	wantCode(t, "EntryOps", err, codes.InvalidArgument)
	_, err = f.s.MetaOps(context.Background(), &pb.MetaOpsRequest{SessionToken: f.tok, Ops: metas})
	wantCode(t, "MetaOps", err, codes.InvalidArgument)
	if diff := diffSnap(before, snapshot(t, f.root)); diff != "" {
		t.Fatalf("refused calls changed the slave:\n%s", diff)
	}
}

// TestSwapDirForSymlinkRace swaps a replicated directory and a symlink to
// a directory outside the root (made to look like it, gfid xattr and all)
// with RENAME_EXCHANGE, as fast as it can, while entry ops, metadata ops
// and data go into that directory. Between the slave's check and its use
// the name may point outside at any moment: nothing may land there. Each
// op either applies inside the root or is refused.
func TestSwapDirForSymlinkRace(t *testing.T) {
	f := newFixture(t)
	D, F := newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"), opCreate(F, D, "f"))
	if err := os.Symlink(f.outside, f.path("evil")); err != nil {
		t.Fatal(err)
	}
	for p, g := range map[string]gfid.GFID{f.outside: D, filepath.Join(f.outside, "canary"): F} {
		if err := unix.Lsetxattr(p, gfidAttr, g[:], 0); err != nil {
			t.Fatal(err)
		}
	}
	f.outsideSnap = snapshot(t, f.outside)

	var swaps atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := unix.Renameat2(unix.AT_FDCWD, f.path("d"), unix.AT_FDCWD, f.path("evil"), unix.RENAME_EXCHANGE); err != nil {
				t.Errorf("RENAME_EXCHANGE: %v", err)
				return
			}
			swaps.Add(1)
		}
	}()
	const rounds = 200
	var applied, refused int
	tally := func(r *pb.OpResult) {
		switch r.GetStatus() {
		case stOK, stNoop, stResolved:
			applied++
		case stFailed:
			if c := r.GetCode(); c != ecEscape && c != ecUnknown {
				t.Errorf("refused with %v: %s", c, r.GetError())
			}
			refused++
		default:
			t.Errorf("status %v: %s", r.GetStatus(), r.GetError())
		}
	}
	d := f.openData(f.tok)
	for i := 0; i < rounds; i++ {
		for _, r := range f.entry(opCreate(newGFID(t), D, fmt.Sprintf("c%d", i)), opMkdir(newGFID(t), D, fmt.Sprintf("m%d", i)),
			opSymlink(newGFID(t), D, fmt.Sprintf("l%d", i), "canary")) {
			tally(r)
		}
		tally(f.meta(metaOf(F, unix.S_IFREG|uint32(0o600+i%2*0o40), 0, 0, int64(i+1)*1e9, int64(i+1)*1e9))[0])
		// Data into F, through whichever name D has now.
		id := uint64(i + 1)
		content := fmt.Sprintf("round %d", i)
		d.header(id, F, int64(len(content)), int64(i+1)*1e9+1)
		if m := d.recv(); m.GetWant().GetSend() {
			d.chunk(id, 0, content)
			d.end(id, false)
		}
		tally(d.expectResult(id).GetResult())
	}
	d.commit()
	close(stop)
	wg.Wait()
	t.Logf("%d swaps; %d ops applied inside the root, %d refused", swaps.Load(), applied, refused)
	f.checkOutside()
	// Whatever applied is inside the root, in the real directory,
	// wherever the swaps left it.
	real := f.path("d")
	if lstat(t, real).Mode&unix.S_IFMT != unix.S_IFDIR {
		real = f.path("evil")
	}
	if gfidAt(t, real) != D {
		t.Fatalf("the real directory lost its gfid")
	}
	if got := readFile(t, filepath.Join(real, "f")); !strings.HasPrefix(got, "round ") && got != "" {
		t.Fatalf("f = %q", got)
	}
	if got := readFile(t, filepath.Join(f.outside, "canary")); got != "do not touch" {
		t.Fatalf("the outside canary reads %q", got)
	}
}
