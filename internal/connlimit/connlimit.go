// Package connlimit bounds the connections a server holds: in total, and
// from one peer address. A listener that accepts without bound lets
// anyone who reaches the port fill the process's descriptor table with
// idle connections (19,990 of them, without TLS, made a slave's real
// master time out in its handshake); one that blocks at the bound lets
// them lock everyone out. Here a connection over either bound is closed
// at once, and one peer cannot take the slots of the others.
package connlimit

import (
	"net"
	"sync"
)

// Listener wraps a net.Listener with the bounds.
type Listener struct {
	net.Listener
	total, perPeer int

	mu    sync.Mutex
	open  int
	peers map[string]int
}

// New bounds lis to total connections at a time, at most perPeer of them
// from one peer IP address.
func New(lis net.Listener, total, perPeer int) *Listener {
	return &Listener{Listener: lis, total: total, perPeer: perPeer, peers: map[string]int{}}
}

// Accept returns the next connection within the bounds; connections over
// them are closed and not returned.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		peer := peerOf(c.RemoteAddr())
		l.mu.Lock()
		if l.open >= l.total || l.peers[peer] >= l.perPeer {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.open++
		l.peers[peer]++
		l.mu.Unlock()
		return &conn{Conn: c, l: l, peer: peer}, nil
	}
}

// Open is how many connections are held now.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

func (l *Listener) release(peer string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.peers[peer]--; l.peers[peer] <= 0 {
		delete(l.peers, peer)
	}
}

func peerOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

type conn struct {
	net.Conn
	l    *Listener
	peer string
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.peer) })
	return err
}
