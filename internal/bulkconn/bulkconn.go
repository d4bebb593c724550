// Package bulkconn is the data connection beside a SyncData stream: a
// second connection from the master to the slave's own listener (through
// the same TLS, when there is TLS) that carries the literal bytes of large
// files, in the order of their chunks on the stream and with no framing
// of its own, while the stream carries everything else (headers, chunk
// descriptors, copy ops, ends, answers).
//
// Why: gRPC cuts every message into 16 KiB HTTP/2 frames and copies the
// bytes five times in user space on their way (marshal, frame writer,
// frame reader, reassembly, unmarshal). On a 1 GiB file those copies and
// the per-frame work were the largest costs left on a two-core machine.
// On the data connection the master writes what it read, and the slave
// reads straight into the buffer it writes to the file from.
//
// A connection starts with a hello: the magic "GEOREPB1" and a 16-byte
// token the master chose for its stream. The slave's listener tells the
// hello apart from gRPC's HTTP/2 preface (Credentials), parks the
// connection under its token (Registry), and the stream that names the
// token (BulkOpen) claims it. A connection nobody claims is closed after
// a while.
package bulkconn

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/credentials"

	"github.com/georep/georep/internal/tlsconf"
)

// magic opens a data connection. gRPC's HTTP/2 preface starts with "PRI ".
const magic = "GEOREPB1"

// helloTimeout bounds how long a new connection may take to send its
// first bytes (the hello, or gRPC's preface, which a client sends at once).
const helloTimeout = 10 * time.Second

// Unclaimed connections: at most maxUnclaimed wait, each at most
// UnclaimedTTL. A master names its connection soon after opening it, or
// keeps it for its next stream (for a third of that time); the bounds keep
// a confused or hostile client from piling them up.
const (
	maxUnclaimed = 64
	UnclaimedTTL = 30 * time.Second
)

// Token names a stream's data connection; the master picks it at random.
type Token [16]byte

// NewToken returns a random token.
func NewToken() (Token, error) {
	var t Token
	if _, err := rand.Read(t[:]); err != nil {
		return t, fmt.Errorf("bulkconn: token: %w", err)
	}
	return t, nil
}

// ParseToken checks that b is a token.
func ParseToken(b []byte) (Token, error) {
	var t Token
	if len(b) != len(t) {
		return t, fmt.Errorf("bulkconn: a token is %d bytes, not %d", len(t), len(b))
	}
	copy(t[:], b)
	return t, nil
}

// Dial opens a data connection to the slave listening on addr: TCP, then
// TLS with cfg (offering only tlsconf.DataALPN) unless cfg is nil, then
// the hello with tok. The caller owns the connection.
func Dial(ctx context.Context, addr string, cfg *tls.Config, tok Token) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("bulkconn: dialing %s: %w", addr, err)
	}
	if cfg != nil {
		cfg = cfg.Clone()
		cfg.NextProtos = []string{tlsconf.DataALPN}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("bulkconn: TLS with %s: %w", addr, err)
		}
		c = tc
	}
	hello := append([]byte(magic), tok[:]...)
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetWriteDeadline(dl)
	}
	if _, err := c.Write(hello); err != nil {
		c.Close()
		return nil, fmt.Errorf("bulkconn: hello to %s: %w", addr, err)
	}
	_ = c.SetWriteDeadline(time.Time{})
	return c, nil
}

// ErrClosed is returned by Claim once the registry is closed.
var ErrClosed = errors.New("bulkconn: the slave is stopping")

// Registry holds the data connections that arrived until their streams
// claim them. Safe for concurrent use; make one with NewRegistry.
type Registry struct {
	log hclog.Logger
	ttl time.Duration // UnclaimedTTL but in tests
	max int           // maxUnclaimed but in tests

	mu        sync.Mutex
	slots     map[Token]*slot
	unclaimed int // slots holding a connection
	closed    bool
	done      chan struct{} // closed by Close
}

// slot is one token's meeting point: the connection, when it has arrived
// (ready is then closed), and whether a stream took it.
type slot struct {
	conn    net.Conn
	ready   chan struct{}
	claimed bool
	expiry  *time.Timer
}

// NewRegistry returns an empty registry that logs refused connections to
// log.
func NewRegistry(log hclog.Logger) *Registry {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Registry{log: log, ttl: UnclaimedTTL, max: maxUnclaimed, slots: map[Token]*slot{}, done: make(chan struct{})}
}

// arrive parks conn under tok, or closes it: a second connection with
// the same token, too many waiting, or a closed registry.
func (r *Registry) arrive(tok Token, conn net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.slots[tok]
	switch {
	case r.closed:
		conn.Close()
		return
	case s != nil && (s.conn != nil || s.claimed):
		r.log.Warn("refused a second data connection with the same token", "from", conn.RemoteAddr().String())
		conn.Close()
		return
	case r.unclaimed >= r.max:
		r.log.Warn("refused a data connection: too many unclaimed", "from", conn.RemoteAddr().String(), "unclaimed", r.unclaimed)
		conn.Close()
		return
	}
	if s == nil {
		s = &slot{ready: make(chan struct{})}
		r.slots[tok] = s
	}
	s.conn = conn
	r.unclaimed++
	close(s.ready)
	s.expiry = time.AfterFunc(r.ttl, func() { r.expire(tok, s) })
}

// expire closes s's connection if no stream claimed it.
func (r *Registry) expire(tok Token, s *slot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.slots[tok] != s || s.claimed {
		return
	}
	delete(r.slots, tok)
	r.unclaimed--
	// Normal enough: a master keeps one it did not use for a while.
	r.log.Debug("closed a data connection no stream claimed", "from", s.conn.RemoteAddr().String())
	s.conn.Close()
	s.conn = nil // a claim woken meanwhile must not take it
}

// Claim returns the data connection with token tok, waiting up to timeout
// for it to arrive (the master opens it before naming it, but the slave
// may see the name first). The caller owns the connection.
func (r *Registry) Claim(ctx context.Context, tok Token, timeout time.Duration) (net.Conn, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	s := r.slots[tok]
	if s == nil {
		s = &slot{ready: make(chan struct{})}
		r.slots[tok] = s
	}
	r.mu.Unlock()

	t := time.NewTimer(timeout)
	defer t.Stop()
	var werr error
	select {
	case <-s.ready:
	case <-ctx.Done():
		werr = ctx.Err()
	case <-t.C:
		werr = fmt.Errorf("bulkconn: the data connection did not arrive within %v", timeout)
	case <-r.done:
		werr = ErrClosed
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if s.conn == nil || s.claimed || r.closed {
		if r.slots[tok] == s && s.conn == nil {
			delete(r.slots, tok) // a late arrival makes a new slot, which expires
		}
		switch {
		case werr != nil:
			return nil, werr
		case r.closed:
			return nil, ErrClosed
		}
		return nil, errors.New("bulkconn: the data connection was claimed already, or expired")
	}
	s.claimed = true
	s.expiry.Stop()
	delete(r.slots, tok)
	r.unclaimed--
	return s.conn, nil
}

// Close closes every connection not claimed, makes waiting Claims return
// ErrClosed, and closes connections that arrive later. Idempotent.
func (r *Registry) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	close(r.done)
	for tok, s := range r.slots {
		if s.conn != nil && !s.claimed {
			s.expiry.Stop()
			s.conn.Close()
		}
		delete(r.slots, tok)
	}
	r.unclaimed = 0
}

// Credentials wraps a gRPC server's transport credentials (TLS, or
// insecure ones for plaintext) so that the server's listener also takes
// data connections: after the inner handshake it reads the first eight
// bytes; a hello hands the connection to r, anything else goes on to gRPC
// with those bytes given back.
func (r *Registry) Credentials(inner credentials.TransportCredentials) credentials.TransportCredentials {
	return dispatcher{TransportCredentials: inner, r: r}
}

type dispatcher struct {
	credentials.TransportCredentials
	r *Registry
}

func (d dispatcher) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := d.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return nil, nil, err
	}
	// gRPC clears the deadline once the handshake is over (both ways).
	_ = conn.SetReadDeadline(time.Now().Add(helloTimeout))
	var head [len(magic)]byte
	if n, err := io.ReadFull(conn, head[:]); err != nil {
		conn.Close()
		if n == 0 && errors.Is(err, io.EOF) {
			return nil, nil, io.EOF // a prober: gRPC says nothing of it
		}
		return nil, nil, fmt.Errorf("bulkconn: reading the first bytes: %w", err)
	}
	if string(head[:]) != magic {
		return &replayConn{Conn: conn, head: head[:]}, info, nil
	}
	var tok Token
	if _, err := io.ReadFull(conn, tok[:]); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("bulkconn: reading a data connection's token: %w", err)
	}
	d.r.arrive(tok, conn)
	return nil, nil, credentials.ErrConnDispatched
}

func (d dispatcher) Clone() credentials.TransportCredentials {
	return dispatcher{TransportCredentials: d.TransportCredentials.Clone(), r: d.r}
}

// replayConn gives back the bytes read to tell a gRPC connection from a
// data connection before reading on.
type replayConn struct {
	net.Conn
	head []byte
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(b, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
