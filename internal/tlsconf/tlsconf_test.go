package tlsconf_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/tlsconf"
)

var now = time.Now()

// pki is a CA directory with certificates issued in it.
type pki struct{ dir string }

func newPKI(t *testing.T, names ...string) pki {
	t.Helper()
	p := pki{dir: filepath.Join(t.TempDir(), "certs")}
	if _, err := tlsconf.InitDir(p.dir, "georep-test-ca", time.Hour, now); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if _, err := tlsconf.IssueInDir(p.dir, n, testRole(n), nil, "", time.Hour, now, false); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func (p pki) files(name string) tlsconf.Files { return tlsconf.DirFiles(p.dir, name) }

// handshake runs a TLS handshake between a slave (server) and a master
// (client) on loopback; it returns the errors of both sides.
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, server)
		if err := tc.Handshake(); err != nil {
			srvErr <- err
			return
		}
		_, err = tc.Write([]byte("ok"))
		srvErr <- err
	}()
	c, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, client)
	cliErr := tc.Handshake()
	if cliErr == nil {
		// In TLS 1.3 the server checks the client's certificate after
		// the client finished: its verdict arrives with the first read.
		buf := make([]byte, 2)
		if _, err := io.ReadFull(tc, buf); err != nil {
			cliErr = err
		}
	}
	return errors.Join(<-srvErr, cliErr)
}

func serverConf(t *testing.T, f tlsconf.Files, allow ...string) *tls.Config {
	t.Helper()
	c, err := tlsconf.ServerConfig(f, allow)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func clientConf(t *testing.T, f tlsconf.Files, slaveName string) *tls.Config {
	t.Helper()
	c, err := tlsconf.ClientConfig(f, slaveName)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHandshake(t *testing.T) {
	p := newPKI(t, "slave", "master", "intruder", "slave-b", "127.0.0.1")
	other := newPKI(t, "slave", "master")
	slave, master := p.files("slave"), p.files("master")
	// A master with a certificate of another CA, which would trust the
	// slave.
	foreignMaster := clientConf(t, other.files("master"), "slave")
	foreignMaster.RootCAs = clientConf(t, master, "slave").RootCAs

	t.Run("right certificates", func(t *testing.T) {
		if err := handshake(t, serverConf(t, slave), clientConf(t, master, "slave")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("allowed master", func(t *testing.T) {
		if err := handshake(t, serverConf(t, slave, "backup", "master"), clientConf(t, master, "slave")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("slave named by IP", func(t *testing.T) {
		if err := handshake(t, serverConf(t, p.files("127.0.0.1")), clientConf(t, master, "127.0.0.1")); err != nil {
			t.Fatal(err)
		}
	})
	fails := []struct {
		name   string
		server *tls.Config
		client *tls.Config
		want   string
	}{
		{"master cert from another CA", serverConf(t, slave), foreignMaster, "unknown authority"},
		{"slave cert from another CA", serverConf(t, other.files("slave")), clientConf(t, master, "slave"), "unknown authority"},
		{"master name not allowed", serverConf(t, slave, "master-b"), clientConf(t, p.files("intruder"), "slave"), `master "intruder" is not allowed`},
		{"slave cert with the wrong name", serverConf(t, p.files("slave-b")), clientConf(t, master, "slave"), "not slave"},
		// Issue 18.4: a slave's certificate (stolen from a compromised
		// slave host) used as a master's, with the tool's own check
		// bypassed: the slave admits no certificate without clientAuth.
		{"a slave's certificate as a master's", serverConf(t, slave), func() *tls.Config {
			c := clientConf(t, master, "slave")
			pair, err := tls.LoadX509KeyPair(p.files("slave-b").Cert, p.files("slave-b").Key)
			if err != nil {
				t.Fatal(err)
			}
			c.Certificates = []tls.Certificate{pair}
			return c
		}(), "bad certificate"},
		// And a master's as a slave's: the master admits no server
		// certificate without serverAuth.
		{"a master's certificate as a slave's", func() *tls.Config {
			c := serverConf(t, slave)
			pair, err := tls.LoadX509KeyPair(p.files("intruder").Cert, p.files("intruder").Key)
			if err != nil {
				t.Fatal(err)
			}
			c.Certificates = []tls.Certificate{pair}
			return c
		}(), func() *tls.Config {
			c := clientConf(t, master, "slave")
			c.ServerName = "intruder"
			return c
		}(), "incompatible key usage"},
		{"no client certificate", serverConf(t, slave), func() *tls.Config {
			c := clientConf(t, master, "slave")
			c.Certificates = nil
			return c
		}(), "didn't provide a certificate"},
		{"TLS 1.2 client", serverConf(t, slave), func() *tls.Config {
			c := clientConf(t, master, "slave")
			c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			return c
		}(), "unsupported versions"},
	}
	for _, c := range fails {
		t.Run(c.name, func(t *testing.T) {
			err := handshake(t, c.server, c.client)
			if err == nil {
				t.Fatal("handshake succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q lacks %q", err, c.want)
			}
		})
	}
}

func TestConfigs(t *testing.T) {
	p := newPKI(t, "slave", "master")
	s := serverConf(t, p.files("slave"))
	if s.MinVersion != tls.VersionTLS13 || s.ClientAuth != tls.RequireAndVerifyClientCert || s.ClientCAs == nil {
		t.Fatalf("server config %+v", s)
	}
	c := clientConf(t, p.files("master"), "slave")
	if c.MinVersion != tls.VersionTLS13 || c.RootCAs == nil || c.ServerName != "slave" || c.InsecureSkipVerify {
		t.Fatalf("client config %+v", c)
	}
}

func TestLoadRefuses(t *testing.T) {
	p := newPKI(t, "slave")
	other := newPKI(t, "slave")
	good := p.files("slave")
	loose := p.files("loose")
	if _, err := tlsconf.IssueInDir(p.dir, "loose", tlsconf.RoleSlave, nil, "", time.Hour, now, false); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose.Key, 0o640); err != nil {
		t.Fatal(err)
	}
	mixed := good
	mixed.Cert, mixed.Key = other.files("slave").Cert, other.files("slave").Key
	mismatched := good
	mismatched.Key = other.files("slave").Key
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		f    tlsconf.Files
		want string
	}{
		{"key readable by others", loose, "chmod 600"},
		{"certificate of another CA", mixed, "does not verify against CA"},
		{"key of another certificate", mismatched, "private key does not match"},
		{"no key", tlsconf.Files{CA: good.CA, Cert: good.Cert}, "needs a CA certificate, a certificate and a key"},
		{"missing CA", tlsconf.Files{CA: filepath.Join(p.dir, "nope.pem"), Cert: good.Cert, Key: good.Key}, "no such file"},
		{"CA not PEM", tlsconf.Files{CA: garbage, Cert: good.Cert, Key: good.Key}, "no certificate in PEM"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err1 := tlsconf.ServerConfig(c.f, nil)
			_, err2 := tlsconf.ClientConfig(c.f, "slave")
			for _, err := range []error{err1, err2} {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("error %v, want one containing %q", err, c.want)
				}
			}
		})
	}
	if _, err := tlsconf.ServerConfig(good, []string{"bad name"}); err == nil {
		t.Error("an invalid allowed name was accepted")
	}
	if _, err := tlsconf.ClientConfig(good, ""); err == nil {
		t.Error("an empty slave name was accepted")
	}
}

func TestDirFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	ca, err := tlsconf.InitDir(dir, "my-ca", 24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tlsconf.InitDir(dir, "my-ca", 24*time.Hour, now); err == nil || !strings.Contains(err.Error(), "not replacing") {
		t.Fatalf("second init: %v", err)
	}
	out := filepath.Join(t.TempDir(), "out")
	f, err := tlsconf.IssueInDir(dir, "backup.example.org", tlsconf.RoleSlave, []string{"10.0.0.7", "backup"}, out, 48*time.Hour, now, false)
	if err != nil {
		t.Fatal(err)
	}
	if f.CA != ca.CA || f.Cert != filepath.Join(out, "backup.example.org.pem") || f.Key != filepath.Join(out, "backup.example.org.key") {
		t.Fatalf("files %+v", f)
	}
	for _, k := range []string{ca.Key, f.Key} {
		st, err := os.Stat(k)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %o", k, st.Mode().Perm())
		}
	}
	if _, err := tlsconf.IssueInDir(dir, "backup.example.org", tlsconf.RoleSlave, nil, out, time.Hour, now, false); err == nil {
		t.Fatal("issue over an existing certificate succeeded without force")
	}
	if _, err := tlsconf.IssueInDir(dir, "backup.example.org", tlsconf.RoleSlave, nil, out, time.Hour, now, true); err != nil {
		t.Fatalf("issue with force: %v", err)
	}
	// The certificate: names, uses, signed by the CA, validity capped by
	// the CA's.
	data, err := os.ReadFile(f.Cert)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "backup.example.org" || len(cert.DNSNames) != 1 || len(cert.IPAddresses) != 0 {
		t.Errorf("forced reissue without hosts: CN %q DNS %q IP %v", cert.Subject.CommonName, cert.DNSNames, cert.IPAddresses)
	}
	if cert.NotAfter.After(now.Add(24*time.Hour)) || cert.IsCA {
		t.Errorf("not after %v (CA until %v), CA %v", cert.NotAfter, now.Add(24*time.Hour), cert.IsCA)
	}
	for _, bad := range []string{"", "ca", "a b", "a/b", "../x", "-x", "x.", strings.Repeat("n", 65), "é"} {
		if _, err := tlsconf.IssueInDir(dir, bad, tlsconf.RoleSlave, nil, out, time.Hour, now, false); err == nil {
			t.Errorf("issued a certificate named %q", bad)
		}
	}
	if _, err := tlsconf.IssueInDir(filepath.Join(t.TempDir(), "none"), "x", tlsconf.RoleMaster, nil, "", time.Hour, now, false); err == nil ||
		!strings.Contains(err.Error(), "georep cert init") {
		t.Errorf("issue without a CA: %v", err)
	}
}

func TestPlaintext(t *testing.T) {
	for _, c := range []struct {
		addr     string
		insecure bool
		ok       bool
	}{
		{"127.0.0.1:7070", true, true},
		{"127.8.9.10:7070", true, true},
		{"[::1]:7070", true, true},
		{"127.0.0.1:7070", false, false},
		{"localhost:7070", true, false},
		{"0.0.0.0:7070", true, false},
		{"[::]:7070", true, false},
		{"192.0.2.1:7070", true, false},
		{":7070", true, false},
		{"127.0.0.1", true, false},
	} {
		err := tlsconf.CheckPlaintext(c.addr, c.insecure)
		if (err == nil) != c.ok {
			t.Errorf("CheckPlaintext(%q, %v) = %v", c.addr, c.insecure, err)
		}
		if err != nil && !errors.Is(err, tlsconf.ErrPlaintext) {
			t.Errorf("CheckPlaintext(%q): %v is not ErrPlaintext", c.addr, err)
		}
	}
	if err := tlsconf.CheckListener(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}); err != nil {
		t.Error(err)
	}
	if err := tlsconf.CheckListener(&net.TCPAddr{IP: net.IPv4zero, Port: 1}); err == nil {
		t.Error("a listener on 0.0.0.0 passed")
	}
	if err := tlsconf.CheckListener(&net.UnixAddr{Name: "/x", Net: "unix"}); err == nil {
		t.Error("a unix listener passed")
	}
}

func FuzzValidName(f *testing.F) {
	for _, s := range []string{"slave", "a.b-c_d", "127.0.0.1", "::1", "", "a b", "..", "x\x00y", strings.Repeat("a", 65)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if tlsconf.ValidName(name) != nil {
			return
		}
		// Whatever is valid can be put in a certificate and matched.
		if len(name) > 64 || strings.ContainsAny(name, " /\x00") {
			t.Fatalf("%q accepted", name)
		}
	})
}

// testRole is the role of a test certificate: a slave's for "slave",
// names starting "slave-" and IP addresses, a master's otherwise.
func testRole(name string) tlsconf.Role {
	if name == "slave" || strings.HasPrefix(name, "slave-") || net.ParseIP(name) != nil {
		return tlsconf.RoleSlave
	}
	return tlsconf.RoleMaster
}

// TestRoles: a certificate is issued for one role, and the tool refuses to
// start an end with a certificate of the other role, saying which to issue
// (issue 18.4).
func TestRoles(t *testing.T) {
	p := newPKI(t, "slave", "master")
	if _, err := tlsconf.ClientConfig(p.files("slave"), "slave"); err == nil || !strings.Contains(err.Error(), "--role master") {
		t.Errorf("a master with a slave's certificate: %v", err)
	}
	if _, err := tlsconf.ServerConfig(p.files("master"), nil); err == nil || !strings.Contains(err.Error(), "--role slave") {
		t.Errorf("a slave with a master's certificate: %v", err)
	}
	if _, err := tlsconf.ParseRole("both"); err == nil {
		t.Error("role both accepted")
	}
	for _, c := range []struct {
		name string
		want x509.ExtKeyUsage
	}{{"slave", x509.ExtKeyUsageServerAuth}, {"master", x509.ExtKeyUsageClientAuth}} {
		b, err := os.ReadFile(p.files(c.name).Cert)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != c.want {
			t.Errorf("%s: extended key usage %v, want only %v", c.name, cert.ExtKeyUsage, c.want)
		}
	}
}
