package wire

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

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
