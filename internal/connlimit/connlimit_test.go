package connlimit

import (
	"net"
	"testing"
	"time"
)

// dialFrom opens a TCP connection to addr from source IP src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// closedSoon reports whether the server closed c within a second.
func closedSoon(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(time.Second))
	_, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

// TestLimits: one peer gets at most perPeer connections and cannot take
// another peer's; the total is bounded; closing one frees its slot.
func TestLimits(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(raw, 6, 4)
	defer l.Close()
	accepted := make(chan net.Conn, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	addr := raw.Addr().String()
	var hostile []net.Conn
	for range 10 {
		hostile = append(hostile, dialFrom(t, "127.0.0.2", addr))
	}
	held := 0
	for _, c := range hostile {
		if !closedSoon(c) {
			held++
		}
	}
	if held != 4 {
		t.Fatalf("one peer holds %d connections, want 4", held)
	}
	// Another peer still gets in, up to the total.
	good := dialFrom(t, "127.0.0.1", addr)
	if closedSoon(good) {
		t.Fatal("another peer was refused while one peer held its share")
	}
	a := dialFrom(t, "127.0.0.3", addr)
	b := dialFrom(t, "127.0.0.4", addr)
	if closedSoon(a) || !closedSoon(b) {
		t.Fatal("the total bound (6) was not kept")
	}
	if n := l.Open(); n != 6 {
		t.Fatalf("%d open, want 6", n)
	}
	// A server-side close frees the slot.
	for range 6 {
		(<-accepted).Close()
	}
	waitOpen := time.Now().Add(5 * time.Second)
	for l.Open() != 0 && time.Now().Before(waitOpen) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := l.Open(); n != 0 {
		t.Fatalf("%d open after closing every accepted one", n)
	}
	c := dialFrom(t, "127.0.0.2", addr)
	if closedSoon(c) {
		t.Fatal("a freed slot was not given again")
	}
}
