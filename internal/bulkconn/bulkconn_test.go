package bulkconn

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/georep/georep/internal/tlsconf"
)

// server is a gRPC server (the health service) whose listener also takes
// data connections into reg.
type server struct {
	addr string
	reg  *Registry
}

func serve(t *testing.T, creds credentials.TransportCredentials) *server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry(nil)
	srv := grpc.NewServer(grpc.Creds(reg.Credentials(creds)))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done; reg.Close() })
	return &server{addr: lis.Addr().String(), reg: reg}
}

// checkGRPC makes a call: gRPC connections still reach gRPC.
func checkGRPC(t *testing.T, addr string, creds credentials.TransportCredentials) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("gRPC call through the dispatching listener: %v", err)
	}
}

func token(t *testing.T) Token {
	t.Helper()
	tok, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func dial(t *testing.T, addr string, cfg *tls.Config, tok Token) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, cfg, tok)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func claim(t *testing.T, r *Registry, tok Token) net.Conn {
	t.Helper()
	c, err := r.Claim(context.Background(), tok, 10*time.Second)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends bytes both ways between the master's and the slave's
// ends of a data connection.
func roundTrip(t *testing.T, master, slave net.Conn) {
	t.Helper()
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<14) // 256 KiB
	errc := make(chan error, 1)
	go func() { _, err := master.Write(want); errc <- err }()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(slave, got); err != nil {
		t.Fatalf("slave reading the data connection: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the data connection changed the bytes")
	}
	if _, err := slave.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	if _, err := io.ReadFull(master, b); err != nil || string(b) != "ok" {
		t.Fatalf("master read %q, %v", b, err)
	}
}

// closedByServer reports whether the server closed c: reading it (past
// whatever the server wrote first, such as gRPC's settings) ends with EOF
// or a reset, not a timeout.
func closedByServer(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// waitParked waits until n connections wait in r.
func waitParked(t *testing.T, r *Registry, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		r.mu.Lock()
		k := r.unclaimed
		r.mu.Unlock()
		if k == n {
			return
		}
	}
	t.Fatalf("never %d parked data connections", n)
}

// TestPlaintext: on one plaintext listener, gRPC calls still work and a
// data connection reaches the stream that claims its token, whether the
// claim comes before or after the connection.
func TestPlaintext(t *testing.T) {
	s := serve(t, insecure.NewCredentials())
	checkGRPC(t, s.addr, insecure.NewCredentials())

	tok := token(t)
	m := dial(t, s.addr, nil, tok)
	waitParked(t, s.reg, 1)
	roundTrip(t, m, claim(t, s.reg, tok))

	// The claim first: it waits for the connection.
	tok2 := token(t)
	got := make(chan net.Conn, 1)
	go func() {
		c, err := s.reg.Claim(context.Background(), tok2, 10*time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	time.Sleep(50 * time.Millisecond)
	m2 := dial(t, s.addr, nil, tok2)
	c := <-got
	if c == nil {
		t.FailNow()
	}
	defer c.Close()
	roundTrip(t, m2, c)
	checkGRPC(t, s.addr, insecure.NewCredentials())
}

// TestTLS: the same under mutual TLS with tlsconf's configurations: the
// data connection negotiates its own ALPN protocol, and gRPC's still
// negotiates h2 (which gRPC insists on).
func TestTLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if _, err := tlsconf.InitDir(dir, "test-ca", time.Hour, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, n := range []tlsconf.Role{tlsconf.RoleSlave, tlsconf.RoleMaster} {
		if _, err := tlsconf.IssueInDir(dir, string(n), n, []string{"127.0.0.1"}, "", time.Hour, time.Now(), false); err != nil {
			t.Fatal(err)
		}
	}
	scfg, err := tlsconf.ServerConfig(tlsconf.DirFiles(dir, "slave"), []string{"master"})
	if err != nil {
		t.Fatal(err)
	}
	ccfg, err := tlsconf.ClientConfig(tlsconf.DirFiles(dir, "master"), "slave")
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, credentials.NewTLS(scfg))
	checkGRPC(t, s.addr, credentials.NewTLS(ccfg))

	tok := token(t)
	m := dial(t, s.addr, ccfg, tok)
	if p := m.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != tlsconf.DataALPN {
		t.Errorf("data connection negotiated %q, want %q", p, tlsconf.DataALPN)
	}
	if len(ccfg.NextProtos) != 0 {
		t.Errorf("Dial changed the caller's TLS configuration: NextProtos %q", ccfg.NextProtos)
	}
	roundTrip(t, m, claim(t, s.reg, tok))
	checkGRPC(t, s.addr, credentials.NewTLS(ccfg))

	// A client without a certificate gets no data connection.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	anon := ccfg.Clone()
	anon.Certificates = nil
	if c, err := Dial(ctx, s.addr, anon, token(t)); err == nil {
		// TLS 1.3: the client may finish before the server refuses.
		if !closedByServer(t, c) {
			t.Error("a data connection without a client certificate was kept open")
		}
		c.Close()
	}
	s.reg.mu.Lock()
	n := s.reg.unclaimed
	s.reg.mu.Unlock()
	if n != 0 {
		t.Errorf("%d data connections parked; want none", n)
	}
}

// TestClaimTimesOut: a token whose connection never comes fails the claim
// after the timeout, and a connection that comes later is not given to
// anyone: it is closed when it expires.
func TestClaimTimesOut(t *testing.T) {
	s := serve(t, insecure.NewCredentials())
	s.reg.ttl = 100 * time.Millisecond
	tok := token(t)
	start := time.Now()
	if _, err := s.reg.Claim(context.Background(), tok, 50*time.Millisecond); err == nil {
		t.Fatal("claimed a connection that never came")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("claim took %v", d)
	}
	late := dial(t, s.addr, nil, tok)
	if !closedByServer(t, late) {
		t.Error("a data connection nobody claimed was not closed")
	}
	waitParked(t, s.reg, 0)
	if _, err := s.reg.Claim(context.Background(), tok, 50*time.Millisecond); err == nil {
		t.Error("claimed an expired connection")
	}
}

// TestClaimCancelled: a claim ends with its context.
func TestClaimCancelled(t *testing.T) {
	r := NewRegistry(nil)
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if _, err := r.Claim(ctx, Token{1}, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("claim with a cancelled context: %v", err)
	}
}

// TestRefused: a second connection with a token already parked, and
// connections beyond the cap of unclaimed ones, are closed; a token is
// claimed once.
func TestRefused(t *testing.T) {
	s := serve(t, insecure.NewCredentials())
	s.reg.max = 2
	tok := token(t)
	first := dial(t, s.addr, nil, tok)
	waitParked(t, s.reg, 1)
	if dup := dial(t, s.addr, nil, tok); !closedByServer(t, dup) {
		t.Error("a second connection with the same token was kept")
	}
	dial(t, s.addr, nil, token(t))
	waitParked(t, s.reg, 2)
	if over := dial(t, s.addr, nil, token(t)); !closedByServer(t, over) {
		t.Error("a connection beyond the cap was kept")
	}
	roundTrip(t, first, claim(t, s.reg, tok))
	if _, err := s.reg.Claim(context.Background(), tok, 50*time.Millisecond); err == nil {
		t.Error("a token was claimed twice")
	}
	checkGRPC(t, s.addr, insecure.NewCredentials())
}

// TestClose: closing the registry closes the parked connections, wakes
// the claims waiting, refuses later claims and closes later arrivals.
func TestClose(t *testing.T) {
	s := serve(t, insecure.NewCredentials())
	parked := dial(t, s.addr, nil, token(t))
	waitParked(t, s.reg, 1)
	waiting := make(chan error, 1)
	go func() {
		_, err := s.reg.Claim(context.Background(), token(t), time.Minute)
		waiting <- err
	}()
	time.Sleep(20 * time.Millisecond)
	s.reg.Close()
	if err := <-waiting; !errors.Is(err, ErrClosed) {
		t.Errorf("waiting claim: %v, want ErrClosed", err)
	}
	if !closedByServer(t, parked) {
		t.Error("Close left a parked connection open")
	}
	if _, err := s.reg.Claim(context.Background(), token(t), time.Second); !errors.Is(err, ErrClosed) {
		t.Errorf("claim after Close: %v, want ErrClosed", err)
	}
	if late := dial(t, s.addr, nil, token(t)); !closedByServer(t, late) {
		t.Error("a connection after Close was kept")
	}
}

// TestShortHello: a client that sends a few bytes and hangs up, or
// garbage, changes nothing: gRPC keeps serving, nothing is parked.
func TestShortHello(t *testing.T) {
	s := serve(t, insecure.NewCredentials())
	for _, b := range []string{"", "GEO", "GEOREPB1abc", "GARBAGE!and more bytes than a hello"} {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(b)); err != nil {
			t.Fatal(err)
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		if !closedByServer(t, c) {
			t.Errorf("%q: the server kept the connection", b)
		}
		c.Close()
	}
	waitParked(t, s.reg, 0)
	checkGRPC(t, s.addr, insecure.NewCredentials())
}

// TestParseToken refuses tokens of the wrong length.
func TestParseToken(t *testing.T) {
	for _, n := range []int{0, 15, 17} {
		if _, err := ParseToken(make([]byte, n)); err == nil {
			t.Errorf("took a %d-byte token", n)
		}
	}
	tok := token(t)
	if got, err := ParseToken(tok[:]); err != nil || got != tok {
		t.Errorf("ParseToken(%x) = %x, %v", tok, got, err)
	}
}

// FuzzHello sends fuzzed first bytes to a dispatching listener and hangs
// up: the connection is closed, not kept, whatever they are; only a full
// hello parks a connection (then claimed by its token); gRPC serves on.
func FuzzHello(f *testing.F) {
	tok := Token{1, 2, 3}
	f.Add([]byte(magic + string(tok[:])))
	f.Add([]byte(magic))
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	f.Add([]byte("GEOREPB2" + string(tok[:])))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s := serve(t, insecure.NewCredentials())
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		if len(b) >= len(magic)+len(tok) && string(b[:len(magic)]) == magic {
			want, _ := ParseToken(b[len(magic) : len(magic)+len(tok)])
			got, err := s.reg.Claim(context.Background(), want, 10*time.Second)
			if err != nil {
				t.Fatalf("a hello with token %x parked nothing: %v", want, err)
			}
			got.Close()
		} else if !closedByServer(t, c) {
			t.Fatalf("%q: the server kept the connection", b)
		}
		waitParked(t, s.reg, 0)
		checkGRPC(t, s.addr, insecure.NewCredentials())
	})
}
