package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/georep/georep/internal/tlsconf"
)

func certUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: georep cert init  --dir DIR [--name NAME] [--days N]")
	fmt.Fprintln(w, "       georep cert issue --dir DIR --name NAME --role master|slave [--host H]... [--out DIR] [--days N] [--force]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "  init    make a certificate authority in DIR: ca.pem, ca.key (keep ca.key off the slave and master hosts)")
	fmt.Fprintln(w, "  issue   make a certificate for a slave or a master with DIR's CA: NAME.pem, NAME.key")
}

func runCertCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		certUsage(stderr)
		return usageErr("missing subcommand (init or issue)")
	}
	switch args[0] {
	case "init":
		return runCertInitCmd(args[1:], stdout, stderr)
	case "issue":
		return runCertIssueCmd(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		certUsage(stderr)
		return flag.ErrHelp
	}
	return usageErr("unknown subcommand %q (want init or issue)", args[0])
}

func runCertInitCmd(args []string, stdout, stderr io.Writer) error {
	var dir, name string
	var days int
	fs := newFlagSet("cert init", stderr)
	fs.StringVar(&dir, "dir", "", "directory for the CA (required; created 0700)")
	fs.StringVar(&name, "name", "georep-ca", "the CA's name")
	fs.IntVar(&days, "days", int(tlsconf.DefaultCAValidity/(24*time.Hour)), "validity in days")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if dir == "" {
		return usageErr("--dir is required")
	}
	if days < 1 {
		return usageErr("--days must be at least 1")
	}
	f, err := tlsconf.InitDir(dir, name, time.Duration(days)*24*time.Hour, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "CA certificate %s (give it to every slave and master: --ca)\n", f.CA)
	fmt.Fprintf(stdout, "CA key         %s (only for `georep cert issue`; keep it off the slave and master hosts)\n", f.Key)
	return nil
}

func runCertIssueCmd(args []string, stdout, stderr io.Writer) error {
	var dir, name, out, role string
	var hosts stringList
	var days int
	var force bool
	fs := newFlagSet("cert issue", stderr)
	fs.StringVar(&dir, "dir", "", "the CA's directory (required)")
	fs.StringVar(&name, "name", "", "identity: the slave's name masters verify (--slave-name, by default the host of --slave), or the master's name slaves admit (--allow-master) (required)")
	fs.StringVar(&role, "role", "", "master or slave (required): a master's certificate is for TLS clients only, a slave's for servers only, so that a slave's certificate cannot be used as a master's")
	fs.Var(&hosts, "host", "a further host name or IP address the certificate stands for (repeat, or comma-separate)")
	fs.StringVar(&out, "out", "", "directory for NAME.pem and NAME.key (default: --dir)")
	fs.IntVar(&days, "days", int(tlsconf.DefaultCertValidity/(24*time.Hour)), "validity in days (at most the CA's)")
	fs.BoolVar(&force, "force", false, "replace an existing certificate and key of that name")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if dir == "" || name == "" || role == "" {
		return usageErr("--dir, --name and --role are required")
	}
	r, err := tlsconf.ParseRole(role)
	if err != nil {
		return usageErr("--role %q: want master or slave", role)
	}
	if days < 1 {
		return usageErr("--days must be at least 1")
	}
	f, err := tlsconf.IssueInDir(dir, name, r, hosts, out, time.Duration(days)*24*time.Hour, time.Now(), force)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "certificate %s\nkey         %s (mode 0600)\nCA          %s\n", f.Cert, f.Key, f.CA)
	return nil
}
