package slave

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/georep/georep/internal/connlimit"
	"github.com/georep/georep/internal/tlsconf"
	"github.com/georep/georep/internal/wire"
	pb "github.com/georep/georep/proto/georep/v1"
)

// The connections the slave holds at a time (gRPC and data connections,
// admitted or still in their handshake), in all and from one peer address:
// a master needs one, and one per data stream (at most 64). Beyond them a connection
// is closed at once (internal/connlimit); a handshake that does not end
// within wire's ConnectionTimeout frees its slot.
const (
	maxConns        = 1024
	maxConnsPerPeer = 160
)

// Serve serves s on lis until ctx is done, then stops gracefully (giving
// in-flight calls a few seconds). creds secures the link (mutual TLS, see
// internal/tlsconf); nil serves plaintext, which only a loopback listener
// may. extra adds server options (tests use it for interceptors and
// limits).
func (s *Slave) Serve(ctx context.Context, lis net.Listener, creds credentials.TransportCredentials, extra ...grpc.ServerOption) error {
	if creds == nil {
		if err := tlsconf.CheckListener(lis.Addr()); err != nil {
			return fmt.Errorf("slave: %w", err)
		}
	}
	if creds != nil {
		creds = handshakeLogger{creds, s.log}
	} else {
		creds = insecure.NewCredentials()
	}
	// The listener also takes the data connections beside data streams;
	// they are closed when serving ends, if no stream claimed them.
	creds = s.bulk.Credentials(creds)
	defer s.bulk.Close()
	lis = connlimit.New(lis, maxConns, maxConnsPerPeer)
	srv := grpc.NewServer(append(wire.ServerOptions(creds), extra...)...)
	pb.RegisterSlaveServiceServer(srv, s)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	reapCtx, stopReap := context.WithCancel(ctx)
	reaped := make(chan struct{})
	go func() { defer close(reaped); s.reapLeases(reapCtx) }()
	flushed := make(chan struct{})
	go func() { defer close(flushed); s.writeback(reapCtx) }()
	pruned := make(chan struct{})
	go func() { defer close(pruned); s.pruneTrash(reapCtx) }()
	defer func() { stopReap(); <-reaped; <-flushed; <-pruned }()
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("slave: serving: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		srv.Stop()
	}
	<-errc
	return nil
}

// handshakeLogger logs the connections refused in the TLS handshake (a
// certificate from another CA, a master not allowed, a plaintext client),
// which gRPC would drop without a word in the slave's log.
type handshakeLogger struct {
	credentials.TransportCredentials
	log hclog.Logger
}

func (h handshakeLogger) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := h.TransportCredentials.ServerHandshake(c)
	if err != nil {
		h.log.Warn("refused a connection in the TLS handshake", "from", c.RemoteAddr().String(), "error", err)
	}
	return conn, info, err
}

func (h handshakeLogger) Clone() credentials.TransportCredentials {
	return handshakeLogger{h.TransportCredentials.Clone(), h.log}
}
