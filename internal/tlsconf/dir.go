package tlsconf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/georep/georep/internal/atomicfile"
)

// clockSkew backdates every certificate, so that a peer whose clock is a
// little behind does not refuse a certificate made just now.
const clockSkew = time.Hour

// DirFiles names the files of identity name in a certificate directory as
// `georep cert` lays it out: DIR/ca.pem, DIR/NAME.pem, DIR/NAME.key.
func DirFiles(dir, name string) Files {
	return Files{
		CA:   filepath.Join(dir, CACertFile),
		Cert: filepath.Join(dir, name+CertSuffix),
		Key:  filepath.Join(dir, name+KeySuffix),
	}
}

// InitDir makes a new CA named name in dir (created 0700 if missing):
// ca.pem and ca.key (mode 0600). An existing CA is never overwritten:
// every certificate it issued would stop verifying.
func InitDir(dir, name string, validity time.Duration, now time.Time) (Files, error) {
	f := Files{CA: filepath.Join(dir, CACertFile), Key: filepath.Join(dir, CAKeyFile)}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, fmt.Errorf("tlsconf: %w", err)
	}
	if err := refuseExisting(false, f.CA, f.Key); err != nil {
		return f, err
	}
	_, certPEM, keyPEM, err := NewCA(name, now.Add(-clockSkew), now.Add(validity))
	if err != nil {
		return f, err
	}
	// The key first: a directory with a certificate and no key is a CA
	// nobody can use, one with a key and no certificate is retried.
	if err := atomicfile.Write(f.Key, keyPEM, KeyMode); err != nil {
		return f, fmt.Errorf("tlsconf: %w", err)
	}
	if err := atomicfile.Write(f.CA, certPEM, 0o644); err != nil {
		return f, fmt.Errorf("tlsconf: %w", err)
	}
	f.Cert = f.CA
	return f, nil
}

// IssueInDir issues a certificate for identity name in role (see ValidName; hosts
// are further names it stands for) with the CA in dir, and writes
// outDir/NAME.pem and outDir/NAME.key (mode 0600); outDir "" is dir.
// Existing files are replaced only with force.
func IssueInDir(dir, name string, role Role, hosts []string, outDir string, validity time.Duration, now time.Time, force bool) (Files, error) {
	if err := ValidName(name); err != nil {
		return Files{}, err
	}
	if name == "ca" {
		return Files{}, errors.New("tlsconf: \"ca\" is the CA's own name in the directory; choose another")
	}
	if outDir == "" {
		outDir = dir
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return Files{}, fmt.Errorf("tlsconf: reading the CA (make one with `georep cert init`): %w", err)
	}
	caKey, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return Files{}, fmt.Errorf("tlsconf: reading the CA key: %w", err)
	}
	ca, err := ParseCA(caPEM, caKey)
	if err != nil {
		return Files{}, fmt.Errorf("tlsconf: CA in %s: %w", dir, err)
	}
	f := DirFiles(outDir, name)
	f.CA = filepath.Join(dir, CACertFile)
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return f, fmt.Errorf("tlsconf: %w", err)
	}
	if err := refuseExisting(force, f.Cert, f.Key); err != nil {
		return f, err
	}
	certPEM, keyPEM, err := ca.Issue(name, role, hosts, now.Add(-clockSkew), now.Add(validity))
	if err != nil {
		return f, err
	}
	if err := atomicfile.Write(f.Key, keyPEM, KeyMode); err != nil {
		return f, fmt.Errorf("tlsconf: %w", err)
	}
	if err := atomicfile.Write(f.Cert, certPEM, 0o644); err != nil {
		return f, fmt.Errorf("tlsconf: %w", err)
	}
	return f, nil
}

func refuseExisting(force bool, paths ...string) error {
	if force {
		return nil
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("tlsconf: %s exists; not replacing it", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("tlsconf: %w", err)
		}
	}
	return nil
}
