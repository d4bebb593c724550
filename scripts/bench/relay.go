package main

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// relay is a TCP forwarder on 127.0.0.1 that counts the bytes it carries in
// both directions. Between *net.TCPConn, io.Copy splices, so the relay
// itself costs little CPU.
type relay struct {
	ln     net.Listener
	target string
	bytes  atomic.Int64
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func newRelay(target string) (*relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &relay{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		if !r.track(c) || !r.track(s) {
			c.Close()
			s.Close()
			return
		}
		r.wg.Add(1)
		go r.pipe(c, s)
	}
}

func (r *relay) pipe(c, s net.Conn) {
	defer r.wg.Done()
	var inner sync.WaitGroup
	inner.Add(2)
	half := func(dst, src net.Conn) {
		defer inner.Done()
		n, _ := io.Copy(dst, src)
		r.bytes.Add(n)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
	go half(s, c)
	go half(c, s)
	inner.Wait()
	c.Close()
	s.Close()
}

// close stops accepting, lets open connections drain for up to grace, then
// closes them, and returns the bytes carried in both directions.
func (r *relay) close(grace time.Duration) int64 {
	r.ln.Close()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		r.mu.Lock()
		r.closed = true
		for c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		<-done
	}
	return r.bytes.Load()
}
