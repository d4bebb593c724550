package main

import (
	"crypto/tls"
	"flag"
	"net"
	"strings"

	"github.com/georep/georep/internal/tlsconf"
)

// tlsOptions are the link-security flags of `georep slave` and `georep
// master`: TLS files, one by one or as a `georep cert` directory, or
// --insecure (plaintext, loopback only).
type tlsOptions struct {
	dir      string // --tls-dir
	name     string // --tls-name
	files    tlsconf.Files
	insecure bool
}

func (o *tlsOptions) register(fs *flag.FlagSet, role string) {
	fs.StringVar(&o.files.CA, "ca", "", "CA certificate (PEM) the peer's certificate must be signed by")
	fs.StringVar(&o.files.Cert, "cert", "", "this "+role+"'s certificate (PEM)")
	fs.StringVar(&o.files.Key, "key", "", "this "+role+"'s private key (PEM, mode 0600)")
	fs.StringVar(&o.dir, "tls-dir", "", "a `georep cert` directory: --ca DIR/ca.pem --cert DIR/NAME.pem --key DIR/NAME.key, NAME from --tls-name")
	fs.StringVar(&o.name, "tls-name", role, "the certificate name in --tls-dir")
	fs.BoolVar(&o.insecure, "insecure", false, "plaintext, no TLS: refused unless the address is a loopback address (127.0.0.0/8, ::1)")
}

// files returns the TLS files to load, or ok false for plaintext. It is a
// usage error to mix --insecure with TLS flags or to name only some files.
func (o *tlsOptions) resolve() (f tlsconf.Files, ok bool, err error) {
	f = o.files
	if o.dir != "" {
		d := tlsconf.DirFiles(o.dir, o.name)
		if f.CA == "" {
			f.CA = d.CA
		}
		if f.Cert == "" {
			f.Cert = d.Cert
		}
		if f.Key == "" {
			f.Key = d.Key
		}
	}
	switch {
	case o.insecure && f.Set():
		return f, false, usageErr("--insecure (plaintext) and TLS flags (--ca, --cert, --key, --tls-dir) exclude each other")
	case o.insecure:
		return f, false, nil
	case !f.Set():
		return f, false, nil // CheckPlaintext refuses it with the reason
	case f.CA == "" || f.Cert == "" || f.Key == "":
		return f, false, usageErr("TLS needs --ca, --cert and --key (or --tls-dir)")
	}
	return f, true, nil
}

// serverTLS is the slave's TLS configuration, or nil for plaintext (after
// checking that plaintext may go ahead on listen).
func (o *tlsOptions) serverTLS(listen string, allowMasters []string) (*tls.Config, error) {
	f, ok, err := o.resolve()
	if err != nil {
		return nil, err
	}
	if !ok {
		if len(allowMasters) > 0 {
			return nil, usageErr("--allow-master needs TLS (it names the masters' certificates)")
		}
		if err := tlsconf.CheckPlaintext(listen, o.insecure); err != nil {
			// Decided from the flags alone: a command-line mistake.
			return nil, usageErr("refusing to serve: %v", err)
		}
		return nil, nil
	}
	return tlsconf.ServerConfig(f, allowMasters)
}

// clientTLS is the master's TLS configuration for slave addr (expecting
// the certificate name slaveName, by default addr's host), or nil for
// plaintext (after checking that plaintext may go ahead to addr).
func (o *tlsOptions) clientTLS(addr, slaveName string) (*tls.Config, error) {
	f, ok, err := o.resolve()
	if err != nil {
		return nil, err
	}
	if !ok {
		if err := tlsconf.CheckPlaintext(addr, o.insecure); err != nil {
			return nil, usageErr("refusing to connect: %v", err)
		}
		return nil, nil
	}
	if slaveName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, usageErr("--slave %q: %v", addr, err)
		}
		slaveName = host
	}
	return tlsconf.ClientConfig(f, slaveName)
}

// stringList is a repeatable flag whose values may also be
// comma-separated.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}
