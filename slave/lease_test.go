package slave_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/wire"
	pb "github.com/georep/georep/proto/georep/v1"
)

// syncBuffer is a log sink safe for the slave's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeDropsSilentMaster: a serving slave drops the session of a
// master that stopped calling for a whole lease (it says so in its log),
// so the root is free at once and that master must handshake again.
func TestServeDropsSilentMaster(t *testing.T) {
	var logs syncBuffer
	lg := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})
	sl := testenv.StartSlaveWith(t, t.TempDir(), testenv.SlaveOptions{Lease: 300 * time.Millisecond, Logger: lg})
	conn, err := grpc.NewClient(sl.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewSlaveServiceClient(conn)
	ctx := context.Background()
	A, B := newSessionID(t), newSessionID(t)
	if _, err := c.Handshake(ctx, &pb.HandshakeRequest{ProtocolVersion: wire.ProtocolVersion, SessionId: A}); err != nil {
		t.Fatal(err)
	}
	// A falls silent.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "dropped a master session") {
		if time.Now().After(deadline) {
			t.Fatalf("the slave never dropped the silent session; log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err = c.KeepAlive(ctx, &pb.KeepAliveRequest{SessionToken: A})
	wantCode(t, "A after it was dropped", err, codes.FailedPrecondition)
	if !strings.Contains(err.Error(), "no open session") {
		t.Errorf("A's keep-alive: %v; want the session gone", err)
	}
	if _, err := c.Handshake(ctx, &pb.HandshakeRequest{ProtocolVersion: wire.ProtocolVersion, SessionId: B}); err != nil {
		t.Fatalf("B after A was dropped: %v", err)
	}
	if strings.Contains(logs.String(), "taking over") {
		t.Error("B took over a session that should have been dropped already")
	}
}
