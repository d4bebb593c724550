package master

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/tlsconf"
)

// TestProbeTLS: the probe reads the slave's alert when the slave refuses
// the master's certificate (what gRPC may see only as a broken pipe), and
// gets the slave's first bytes when it takes it.
func TestProbeTLS(t *testing.T) {
	now := time.Now()
	mine, foreign := t.TempDir(), t.TempDir()
	issue := func(dir, name string) tlsconf.Files {
		t.Helper()
		f, err := tlsconf.IssueInDir(dir, name, roleOf(name), []string{"127.0.0.1"}, filepath.Join(dir, name), time.Hour, now, false)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	for _, d := range []string{mine, foreign} {
		if _, err := tlsconf.InitDir(d, "test", time.Hour, now); err != nil {
			t.Fatal(err)
		}
	}
	sf := issue(mine, "slave")
	scfg, err := tlsconf.ServerConfig(sf, nil)
	if err != nil {
		t.Fatal(err)
	}
	scfg.NextProtos = []string{"h2"}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if c.(*tls.Conn).Handshake() == nil {
					c.Write([]byte{0})
				}
			}()
		}
	}()
	// The master trusts both CAs (its own certificate must verify
	// locally); the slave only its own.
	both := filepath.Join(t.TempDir(), "both.pem")
	var pems []byte
	for _, d := range []string{mine, foreign} {
		b, err := os.ReadFile(filepath.Join(d, tlsconf.CACertFile))
		if err != nil {
			t.Fatal(err)
		}
		pems = append(pems, b...)
	}
	if err := os.WriteFile(both, pems, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cert tlsconf.Files
		want string // "" for nil
	}{
		{"taken", issue(mine, "master"), ""},
		{"from another CA", issue(foreign, "master"), "remote error: tls:"},
	} {
		cfg, err := tlsconf.ClientConfig(tlsconf.Files{CA: both, Cert: c.cert.Cert, Key: c.cert.Key}, "slave")
		if err != nil {
			t.Fatal(err)
		}
		err = probeTLS(context.Background(), ln.Addr().String(), cfg)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: probe says %v, want %q", c.name, err, c.want)
		}
	}
}

// roleOf is the role of a test certificate: a slave's when its name says
// so, else a master's.
func roleOf(name string) tlsconf.Role {
	if name == "slave" {
		return tlsconf.RoleSlave
	}
	return tlsconf.RoleMaster
}
