// Package tcpproxy is a loopback TCP proxy for fault tests: it forwards
// each connection it accepts to a target, counts the bytes each way, and
// cuts every open connection when told (a broken link the test
// controls). It listens on and dials loopback addresses only.
package tcpproxy

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/georep/georep/internal/tlsconf"
)

// Proxy forwards connections from its listener to a target.
type Proxy struct {
	lis net.Listener

	up, down atomic.Int64 // bytes client → target, target → client

	mu     sync.Mutex
	target string
	conns  map[net.Conn]bool
	closed bool
	wg     sync.WaitGroup
}

// Start listens on listen (a loopback HOST:PORT; port 0 picks one) and
// forwards to target (a loopback HOST:PORT).
func Start(listen, target string) (*Proxy, error) {
	if !tlsconf.IsLoopback(listen) || !tlsconf.IsLoopback(target) {
		return nil, fmt.Errorf("tcpproxy: loopback addresses only (%s -> %s)", listen, target)
	}
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("tcpproxy: %w", err)
	}
	p := &Proxy{lis: lis, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address the proxy listens on.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// Up is the number of bytes forwarded from clients to the target.
func (p *Proxy) Up() int64 { return p.up.Load() }

// Down is the number of bytes forwarded from the target to clients.
func (p *Proxy) Down() int64 { return p.down.Load() }

// Cut closes every open connection (both ends); new connections are
// forwarded as before. It returns how many were cut.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for c := range p.conns {
		c.Close()
		n++
	}
	return n / 2
}

// Close stops listening, cuts every connection and waits for the
// proxy's goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.lis.Close()
	p.Cut()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// track adds c to the open connections; false when the proxy is closed.
func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range cs {
		p.conns[c] = true
	}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		c.Close()
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	server, err := net.Dial("tcp", target)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(client, server) {
		client.Close()
		server.Close()
		return
	}
	defer p.untrack(client, server)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn, n *atomic.Int64) {
		_, _ = io.Copy(counter{dst, n}, src)
		// One direction ended: end the other too (a proxy does not keep
		// half-open links).
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(server, client, &p.up)
	go pipe(client, server, &p.down)
	<-done
	<-done
}

// counter counts what is written through it (before the write, so that
// the count never lags what the other end has read).
type counter struct {
	w io.Writer
	n *atomic.Int64
}

func (c counter) Write(b []byte) (int, error) {
	c.n.Add(int64(len(b)))
	n, err := c.w.Write(b)
	if n < len(b) {
		c.n.Add(int64(n - len(b)))
	}
	return n, err
}
