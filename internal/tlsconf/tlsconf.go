// Package tlsconf is the security of the master–slave link: it makes the
// certificates of a deployment (a private CA, and certificates it issues to
// slaves and masters), loads them, builds the TLS configuration of each end
// (mutual TLS 1.3: the slave requires a master certificate signed by the CA,
// optionally of a named identity; the master verifies the slave's
// certificate and name), and decides where plaintext is allowed (a loopback
// address, when asked for).
//
// Certificates are X.509 with ECDSA P-256 keys (every TLS stack speaks it).
// Each issued certificate names its identity in the subject common name and
// as a subject alternative name (DNS, or IP for an address), and carries
// both server and client use, so one tool makes both kinds; which
// identities a slave admits is its --allow-master list.
package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"slices"
	"strings"
	"time"
)

// File names inside a certificate directory (`georep cert init/issue --dir`).
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca.key"
	CertSuffix = ".pem"
	KeySuffix  = ".key"
)

// Default validities, chosen so that nobody renews by surprise: a CA lives
// ten years, the certificates it issues two (rotate them with `cert issue`;
// the slave and master read their files at start).
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultCertValidity = 2 * 365 * 24 * time.Hour
)

// KeyMode is the permission of every private key file written; a key file
// readable by group or others is refused when loaded.
const KeyMode = 0o600

// maxName bounds an identity: the X.509 upper bound of a common name.
const maxName = 64

// ErrPlaintext says plaintext was refused (not asked for, or not loopback).
var ErrPlaintext = errors.New("tlsconf: plaintext refused")

// ValidName checks an identity given to `cert issue --name` or expected by
// --allow-master / --slave-name: an IP address, or a host-name-like word of
// letters, digits, '.', '-' and '_' (so that it can be matched as a DNS
// subject alternative name), at most 64 bytes.
func ValidName(name string) error {
	if name == "" {
		return errors.New("tlsconf: empty name")
	}
	if len(name) > maxName {
		return fmt.Errorf("tlsconf: name of %d bytes, at most %d", len(name), maxName)
	}
	if net.ParseIP(name) != nil {
		return nil
	}
	if name[0] == '.' || name[0] == '-' || name[len(name)-1] == '.' || strings.Contains(name, "..") {
		return fmt.Errorf("tlsconf: name %q: no leading '.' or '-', trailing '.', or empty label", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		default:
			return fmt.Errorf("tlsconf: name %q: byte %q not allowed (letters, digits, '.', '-', '_')", name, c)
		}
	}
	return nil
}

// CA is a certificate authority able to issue certificates.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA makes a self-signed CA valid from notBefore to notAfter. It returns
// the CA and its certificate and key in PEM.
func NewCA(name string, notBefore, notAfter time.Time) (*CA, []byte, []byte, error) {
	if err := ValidName(name); err != nil {
		return nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tlsconf: CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"georep"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true, // it signs leaf certificates only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tlsconf: creating CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tlsconf: parsing the new CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return &CA{Cert: cert, Key: key}, encodeCert(der), keyPEM, nil
}

// Role is what a certificate is for. A master's is for TLS clients only
// (extended key usage clientAuth), a slave's for TLS servers only
// (serverAuth): a slave admits only clients whose certificate allows
// clientAuth, so a slave's certificate, stolen from a compromised slave
// host, cannot be used to write to the other slaves (before, every issued
// certificate had both usages and was admitted as a master). A
// certificate of an older georep has both and is taken for either.
type Role string

// The roles.
const (
	RoleMaster Role = "master"
	RoleSlave  Role = "slave"
)

// ParseRole reads a role's name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleMaster, RoleSlave:
		return r, nil
	}
	return "", fmt.Errorf("tlsconf: role %q: want master or slave", s)
}

func (r Role) usage() x509.ExtKeyUsage {
	if r == RoleSlave {
		return x509.ExtKeyUsageServerAuth
	}
	return x509.ExtKeyUsageClientAuth
}

// Issue makes a certificate for identity name (see ValidName) in role, with
// hosts as further subject alternative names (DNS names or IP addresses),
// valid from notBefore to notAfter. It returns the certificate and key in
// PEM.
func (ca *CA) Issue(name string, role Role, hosts []string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	if err := ValidName(name); err != nil {
		return nil, nil, err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return nil, nil, err
	}
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	if !notAfter.After(notBefore) {
		return nil, nil, fmt.Errorf("tlsconf: the CA expires %s: no validity left to issue", ca.Cert.NotAfter.Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"georep"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{role.usage()},
	}
	for _, h := range append([]string{name}, hosts...) {
		if err := ValidName(h); err != nil {
			return nil, nil, err
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: creating certificate for %s: %w", name, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return encodeCert(der), keyPEM, nil
}

// ParseCA reads a CA from its certificate and key in PEM.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	certs, err := parseCerts(certPEM)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 || !certs[0].IsCA {
		return nil, errors.New("tlsconf: not a CA certificate")
	}
	b, _ := pem.Decode(keyPEM)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, errors.New("tlsconf: no PKCS#8 private key in PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: CA key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(certs[0].PublicKey) {
		return nil, errors.New("tlsconf: the CA key does not match the CA certificate")
	}
	return &CA{Cert: certs[0], Key: key}, nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("tlsconf: serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: encoding key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// parseCerts reads every CERTIFICATE block of a PEM file; anything else in
// it, or none, is an error.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("tlsconf: unexpected PEM block %q", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tlsconf: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("tlsconf: no certificate in PEM")
	}
	return out, nil
}

// Files names the PEM files one end of the link loads.
type Files struct {
	CA   string // the CA certificate the peer's certificate must chain to
	Cert string // this end's certificate
	Key  string // its private key (mode 0600)
}

// Set reports whether any file is named.
func (f Files) Set() bool { return f.CA != "" || f.Cert != "" || f.Key != "" }

// load reads the CA pool and this end's key pair, which must be for role.
func (f Files) load(role Role) (*x509.CertPool, tls.Certificate, error) {
	var none tls.Certificate
	if f.CA == "" || f.Cert == "" || f.Key == "" {
		return nil, none, errors.New("tlsconf: TLS needs a CA certificate, a certificate and a key")
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, none, fmt.Errorf("tlsconf: CA certificate: %w", err)
	}
	cas, err := parseCerts(caPEM)
	if err != nil {
		return nil, none, fmt.Errorf("tlsconf: CA certificate %s: %w", f.CA, err)
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	if _, err := os.Stat(f.Cert); err != nil {
		return nil, none, fmt.Errorf("tlsconf: certificate: %w", err)
	}
	if swapped(f.Cert, f.Key) {
		return nil, none, fmt.Errorf("tlsconf: %s is a private key and %s a certificate: --cert and --key are swapped", f.Cert, f.Key)
	}
	st, err := os.Stat(f.Key)
	if err != nil {
		return nil, none, fmt.Errorf("tlsconf: key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, none, fmt.Errorf("tlsconf: key %s is readable by group or others (mode %04o): chmod 600 it", f.Key, st.Mode().Perm())
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, none, fmt.Errorf("tlsconf: certificate %s with key %s: %w", f.Cert, f.Key, err)
	}
	// The chain is checked now, not at the first connection, so that a
	// certificate from another CA stops the process at start.
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, none, fmt.Errorf("tlsconf: certificate %s does not verify against CA %s: %w", f.Cert, f.CA, err)
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{role.usage()}}); err != nil {
		other := RoleMaster
		if role == RoleMaster {
			other = RoleSlave
		}
		return nil, none, fmt.Errorf("tlsconf: certificate %s is not a %s's (it is a %s's, or not georep's): issue one with `georep cert issue --role %s`", f.Cert, role, other, role)
	}
	return pool, pair, nil
}

// swapped reports whether the file given as the certificate holds a
// private key and the one given as the key a certificate (the key's mode
// check would otherwise complain about a certificate's 0644).
func swapped(cert, key string) bool {
	c, err1 := os.ReadFile(cert)
	k, err2 := os.ReadFile(key)
	if err1 != nil || err2 != nil {
		return false
	}
	cb, _ := pem.Decode(c)
	kb, _ := pem.Decode(k)
	return cb != nil && kb != nil && strings.HasSuffix(cb.Type, "PRIVATE KEY") && kb.Type == "CERTIFICATE"
}

// Identity is the name a certificate stands for: its subject common name.
func Identity(c *x509.Certificate) string { return c.Subject.CommonName }

// hasName reports whether certificate c stands for name (its common name,
// or one of its DNS or IP subject alternative names).
func hasName(c *x509.Certificate, name string) bool {
	if Identity(c) == name || slices.Contains(c.DNSNames, name) {
		return true
	}
	ip := net.ParseIP(name)
	return ip != nil && slices.ContainsFunc(c.IPAddresses, ip.Equal)
}

// DataALPN is the TLS application protocol of a data connection (see
// internal/bulkconn).
const DataALPN = "georep-bulk/1"

// ServerConfig is the slave's TLS configuration: TLS 1.3, its certificate,
// and a client certificate required and verified against the CA; with
// allowMasters, the client certificate must also stand for one of those
// names.
func ServerConfig(f Files, allowMasters []string) (*tls.Config, error) {
	for _, n := range allowMasters {
		if err := ValidName(n); err != nil {
			return nil, fmt.Errorf("allowed master: %w", err)
		}
	}
	pool, pair, err := f.load(RoleSlave)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		// gRPC's HTTP/2, and the data connections beside its streams
		// (internal/bulkconn), which must agree on a protocol too.
		NextProtos: []string{"h2", DataALPN},
	}
	if len(allowMasters) > 0 {
		allowed := slices.Clone(allowMasters)
		// VerifyConnection runs after the chain was verified.
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("tlsconf: no client certificate")
			}
			leaf := cs.PeerCertificates[0]
			for _, n := range allowed {
				if hasName(leaf, n) {
					return nil
				}
			}
			return fmt.Errorf("tlsconf: master %q is not allowed here (allowed: %s)", Identity(leaf), strings.Join(allowed, ", "))
		}
	}
	return cfg, nil
}

// ClientConfig is the master's TLS configuration: TLS 1.3, its
// certificate, and the slave's certificate verified against the CA for the
// name slaveName.
func ClientConfig(f Files, slaveName string) (*tls.Config, error) {
	if err := ValidName(slaveName); err != nil {
		return nil, fmt.Errorf("slave name: %w", err)
	}
	pool, pair, err := f.load(RoleMaster)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		ServerName:   slaveName,
	}, nil
}

// IsLoopback reports whether hostport names a loopback address: an IP
// literal in 127.0.0.0/8 or ::1. Names ("localhost" included) are not
// taken: what they resolve to is up to the resolver's configuration.
func IsLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckPlaintext decides whether plaintext to or on addr may go ahead:
// only when insecure was asked for, and only on a loopback address.
func CheckPlaintext(addr string, insecure bool) error {
	if !insecure {
		return fmt.Errorf("%w: no TLS configured for %s (give --ca, --cert and --key; or --insecure, which only a loopback address allows)", ErrPlaintext, addr)
	}
	if !IsLoopback(addr) {
		return fmt.Errorf("%w: --insecure allows only a loopback address (127.0.0.0/8, ::1), not %s; use TLS", ErrPlaintext, addr)
	}
	return nil
}

// CheckListener is CheckPlaintext for an address already bound: what the
// socket really is, whatever name it was asked for by.
func CheckListener(addr net.Addr) error {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsLoopback() {
		return fmt.Errorf("%w: plaintext listener on %s, which is not a loopback address", ErrPlaintext, addr)
	}
	return nil
}
