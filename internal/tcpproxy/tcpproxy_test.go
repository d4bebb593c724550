package tcpproxy

import (
	"bufio"
	"io"
	"net"
	"testing"
)

// echo serves a line echo on loopback until the test ends.
func echo(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return lis.Addr().String()
}

func TestForwardCountCut(t *testing.T) {
	p, err := Start("127.0.0.1:0", echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := c.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "hello\n" {
		t.Fatalf("echo through the proxy: %q, %v", line, err)
	}
	if p.Up() != 6 || p.Down() != 6 {
		t.Errorf("counted %d up, %d down; want 6 and 6", p.Up(), p.Down())
	}
	if n := p.Cut(); n != 1 {
		t.Errorf("cut %d connections, want 1", n)
	}
	if _, err := r.ReadString('\n'); err == nil {
		t.Error("the connection still reads after the cut")
	}
	// New connections go through after a cut.
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.Write([]byte("again\n"))
	if line, err := bufio.NewReader(c2).ReadString('\n'); err != nil || line != "again\n" {
		t.Fatalf("after the cut: %q, %v", line, err)
	}
}

func TestLoopbackOnly(t *testing.T) {
	for _, a := range [][2]string{{"0.0.0.0:0", "127.0.0.1:1"}, {"127.0.0.1:0", "192.0.2.1:80"}, {"localhost:0", "127.0.0.1:1"}} {
		if p, err := Start(a[0], a[1]); err == nil {
			p.Close()
			t.Errorf("Start(%s, %s) accepted a non-loopback address", a[0], a[1])
		}
	}
}
