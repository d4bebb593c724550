package wire

import (
	"context"
	"fmt"
	"math/rand"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/georep/georep/proto/georep/v1"
)

// hungSlave answers nothing: every EntryOps call waits until it is
// cancelled (a slave hung on its disk, or a hostile one; its keep-alives
// still answered).
type hungSlave struct {
	pb.UnimplementedSlaveServiceServer
}

func (hungSlave) EntryOps(ctx context.Context, _ *pb.EntryOpsRequest) (*pb.EntryOpsResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestCallDeadline: a unary call without a deadline of its own ends after
// the call timeout (issue 18.8: a one-shot master waited for ever); one
// with an earlier deadline keeps it.
func TestCallDeadline(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(ServerOptions(nil)...)
	pb.RegisterSlaveServiceServer(srv, hungSlave{})
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), append(dialOptions(200*time.Millisecond), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewSlaveServiceClient(conn)

	start := time.Now()
	_, err = client.EntryOps(context.Background(), &pb.EntryOpsRequest{})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a call to a hung slave: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the call ended after %v", d)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = client.EntryOps(ctx, &pb.EntryOpsRequest{})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a call with its own deadline: %v", err)
	}
	if CallTimeout < time.Minute {
		t.Fatalf("CallTimeout %v is too short for a slave's slowest call", CallTimeout)
	}
}

// echoSlave answers EntryOps with one result per op.
type echoSlave struct {
	pb.UnimplementedSlaveServiceServer
}

func (echoSlave) EntryOps(_ context.Context, req *pb.EntryOpsRequest) (*pb.EntryOpsResponse, error) {
	resp := &pb.EntryOpsResponse{}
	for range req.GetOps() {
		resp.Results = append(resp.Results, &pb.OpResult{Status: pb.OpStatus_OP_STATUS_NOOP})
	}
	return resp, nil
}

// countingConn counts the bytes a client writes.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.n.Add(int64(len(b)))
	return c.Conn.Write(b)
}

// echoClient serves echoSlave on loopback and dials it as a master does
// (DialOptions), counting the bytes the client writes.
func echoClient(t *testing.T) (pb.SlaveServiceClient, *atomic.Int64) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(ServerOptions(nil)...)
	pb.RegisterSlaveServiceServer(srv, echoSlave{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	var sent atomic.Int64
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return countingConn{c, &sent}, nil
	}
	conn, err := grpc.NewClient(lis.Addr().String(), append(DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dial))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewSlaveServiceClient(conn), &sent
}

// TestUnaryCallsCompressed: the master's unary calls go zstd-compressed,
// the slave reads them and answers, and a run of alike entry ops (a crawl
// of a pre-seeded slave: 93 bytes an op uncompressed) takes a fraction of
// its size on the wire.
func TestUnaryCallsCompressed(t *testing.T) {
	client, sent := echoClient(t)

	req := &pb.EntryOpsRequest{SessionToken: make([]byte, 16)}
	parent := []byte("0123456789abcdef")
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 4096; i++ {
		g := make([]byte, 16)
		copy(g, parent[:6])
		rng.Read(g[6:])
		req.Ops = append(req.Ops, &pb.EntryOp{
			Type: pb.EntryOpType_ENTRY_OP_TYPE_CREATE, Gfid: g, Pargfid: parent,
			Name: []byte(fmt.Sprintf("file%04d.dat", i)), Mode: 0o100644, Uid: 1000, Gid: 1000,
			CheckCurrent: true, Adopt: true, Size: int64(rng.Intn(9400)), MtimeNs: 1796690948_000000000 + int64(i)*1_000_003,
		})
	}
	raw := proto.Size(req)
	resp, err := client.EntryOps(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResults()) != len(req.GetOps()) {
		t.Fatalf("%d results for %d ops", len(resp.GetResults()), len(req.GetOps()))
	}
	if got := sent.Load(); got > int64(raw)/2 {
		t.Fatalf("%d bytes on the wire for a %d-byte request: not compressed", got, raw)
	}
	t.Logf("%d ops: %d bytes of request, %d on the wire (%.1f per op)", len(req.Ops), raw, sent.Load(), float64(sent.Load())/float64(len(req.Ops)))
}

// TestCompressedBombRefused: a compressed message that expands past the
// receive limit (a peer's zip bomb: 80 MiB of zeros in a few KiB) is
// refused, not decompressed whole.
func TestCompressedBombRefused(t *testing.T) {
	client, sent := echoClient(t)
	req := &pb.EntryOpsRequest{Ops: []*pb.EntryOp{{Target: make([]byte, MaxMessage+16<<20)}}}
	_, err := client.EntryOps(context.Background(), req, grpc.MaxCallSendMsgSize(1<<30))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a message expanding past %d bytes: %v, want ResourceExhausted", MaxMessage, err)
	}
	if sent.Load() > 1<<20 {
		t.Fatalf("%d bytes sent: the bomb was not compressed", sent.Load())
	}
}
