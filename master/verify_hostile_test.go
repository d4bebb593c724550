package master_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/wire"
	"github.com/georep/georep/master"
	pb "github.com/georep/georep/proto/georep/v1"
)

// lyingSlave answers verify as told: a hostile or broken peer.
type lyingSlave struct {
	pb.UnimplementedSlaveServiceServer
	list func(req *pb.DigestListRequest) (*pb.DigestListResponse, error)
}

func (l *lyingSlave) DigestBegin(context.Context, *pb.DigestBeginRequest) (*pb.DigestBeginResponse, error) {
	return &pb.DigestBeginResponse{Pass: []byte("p")}, nil
}

func (l *lyingSlave) DigestList(_ context.Context, req *pb.DigestListRequest) (*pb.DigestListResponse, error) {
	return l.list(req)
}

func startLiar(t *testing.T, l *lyingSlave) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append(wire.ServerOptions(nil), grpc.MaxSendMsgSize(1<<30))...)
	pb.RegisterSlaveServiceServer(srv, l)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// TestVerifyHostileSlave: a slave that lies (a digest of the wrong size,
// names out of order or invalid, a listing that never ends, an answer
// over the message limit, hashing that never finishes) ends the verify
// with a clear error; nothing is written to the master's tree.
func TestVerifyHostileSlave(t *testing.T) {
	mroot := t.TempDir()
	write(t, mroot+"/a", []byte("a"))
	write(t, mroot+"/d/b", []byte("b"))
	sum := bytes.Repeat([]byte{1}, 32)
	entry := func(name string) *pb.DigestEntry {
		return &pb.DigestEntry{Name: []byte(name), Mode: 0o100644, Content: sum}
	}
	for _, tc := range []struct {
		name string
		list func(req *pb.DigestListRequest) (*pb.DigestListResponse, error)
		want string
	}{
		{"short root digest", func(*pb.DigestListRequest) (*pb.DigestListResponse, error) {
			return &pb.DigestListResponse{Ready: true, Sum: []byte{1, 2}}, nil
		}, "root's digest is 2 bytes"},
		{"unsorted names", func(*pb.DigestListRequest) (*pb.DigestListResponse, error) {
			return &pb.DigestListResponse{Ready: true, Sum: sum, Entries: []*pb.DigestEntry{entry("b"), entry("a")}}, nil
		}, "not in name order"},
		{"invalid name", func(*pb.DigestListRequest) (*pb.DigestListResponse, error) {
			return &pb.DigestListResponse{Ready: true, Sum: sum, Entries: []*pb.DigestEntry{entry("../x")}}, nil
		}, `entry "../x"`},
		{"bad content digest", func(*pb.DigestListRequest) (*pb.DigestListResponse, error) {
			e := entry("a")
			e.Content = []byte{9}
			return &pb.DigestListResponse{Ready: true, Sum: sum, Entries: []*pb.DigestEntry{e}}, nil
		}, "content digest is 1 bytes"},
		{"listing that never ends", func(req *pb.DigestListRequest) (*pb.DigestListResponse, error) {
			// Always one more entry, after whatever was asked.
			n := 0
			fmt.Sscanf(string(req.GetAfter()), "e%d", &n)
			return &pb.DigestListResponse{Ready: true, Sum: sum, Entries: []*pb.DigestEntry{entry(fmt.Sprintf("e%09d", n+1))}, More: true}, nil
		}, "does not end"},
		{"oversized answer", func(*pb.DigestListRequest) (*pb.DigestListResponse, error) {
			return &pb.DigestListResponse{Ready: true, Sum: sum, Entries: []*pb.DigestEntry{{Name: []byte("a"), Target: bytes.Repeat([]byte("x"), wire.MaxMessage+1)}}}, nil
		}, "ResourceExhausted"},
		{"never ready", func(*pb.DigestListRequest) (*pb.DigestListResponse, error) {
			return &pb.DigestListResponse{Files: 1}, nil
		}, "no progress"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startLiar(t, &lyingSlave{list: tc.list})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := master.Verify(ctx, master.VerifyConfig{Root: mroot, Slave: addr, Insecure: true, Stall: time.Second, MaxDirEntries: 500, Logger: testenv.Logger(t, "verify")})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify against a slave that lies (%s): %v, %+v; want an error with %q", tc.name, err, res, tc.want)
			}
		})
	}
}
