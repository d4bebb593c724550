package main

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// relay is a TCP forwarder on 127.0.0.1 that counts the bytes it carries in
// both directions, in all and each on its own (up: from the client that
// connected to the relay to the server behind it, e.g. georep master to
// slave; down: the server's answers). Between *net.TCPConn, io.Copy splices, so the relay
// itself costs little CPU; but then a connection's bytes are only counted
// when it closes. A live relay (newLiveRelay) copies through a buffer
// instead and counts every chunk as it passes, so that the count can be
// read while a long-lived connection (georep live) is open.
type relay struct {
	ln     net.Listener
	target string
	live   bool
	bytes  atomic.Int64 // both directions
	up     atomic.Int64 // client -> server
	down   atomic.Int64 // server -> client
	last   atomic.Int64 // live: UnixNano of the last chunk carried
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

// newLiveRelay is newRelay with the count kept up to date chunk by chunk.
func newLiveRelay(target string) (*relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &relay{ln: ln, target: target, live: true, conns: map[net.Conn]struct{}{}}
	r.last.Store(time.Now().UnixNano())
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// count is the number of bytes carried so far (for a relay made by
// newRelay, only those of the connections already closed).
func (r *relay) count() int64 { return r.bytes.Load() }

// quietFor waits until the live relay has carried nothing for d, or until
// limit has passed, and returns the count then and whether it was quiet.
func (r *relay) quietFor(d, limit time.Duration) (int64, bool) {
	deadline := time.Now().Add(limit)
	for {
		idle := time.Since(time.Unix(0, r.last.Load()))
		if idle >= d {
			return r.bytes.Load(), true
		}
		if time.Now().Add(d - idle).After(deadline) {
			time.Sleep(time.Until(deadline))
			return r.bytes.Load(), false
		}
		time.Sleep(d - idle)
	}
}

// split is count by direction: client to server (up), server to client
// (down); with the same caveat as count.
func (r *relay) split() (up, down int64) { return r.up.Load(), r.down.Load() }

// copyCounting copies src to dst through a buffer, counting each chunk in
// dir too.
func (r *relay) copyCounting(dst, src net.Conn, dir *atomic.Int64) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.bytes.Add(int64(n))
			dir.Add(int64(n))
			r.last.Store(time.Now().UnixNano())
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
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
	half := func(dst, src net.Conn, dir *atomic.Int64) {
		defer inner.Done()
		if r.live {
			r.copyCounting(dst, src, dir)
		} else {
			n, _ := io.Copy(dst, src)
			r.bytes.Add(n)
			dir.Add(n)
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
	go half(s, c, &r.up)
	go half(c, s, &r.down)
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
