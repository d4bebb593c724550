package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/georep/georep/slave"
)

type slaveOptions struct {
	root     string
	listen   string
	stateDir string
	lease    time.Duration
	tls      tlsOptions
	// allowMasters, when set, are the only master identities admitted.
	allowMasters stringList
	// trash: keep what deletes and overwrites remove (slave.TrashConfig).
	trash        slave.TrashConfig
	trashMaxSize byteSize
	log          logOptions
	// ready, when set, receives the listening address (tests, demo).
	ready func(addr string)
}

func runSlaveCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o slaveOptions
	fs := newFlagSet("slave", stderr)
	fs.StringVar(&o.root, "root", "", "slave root directory (required)")
	fs.StringVar(&o.listen, "listen", "", "address to serve on, HOST:PORT (required; with --insecure a loopback address)")
	fs.StringVar(&o.stateDir, "state-dir", "", "state directory (default: derived from the root under /var/lib/georep or ~/.local/state/georep)")
	fs.DurationVar(&o.lease, "timeout", slave.DefaultLease, "drop a master session silent for this long")
	o.tls.register(fs, "slave")
	fs.Var(&o.allowMasters, "allow-master", "admit only masters whose certificate has this name (repeat, or comma-separate; default: any the CA signed)")
	fs.BoolVar(&o.trash.Enabled, "trash", false, "keep what replicated deletes and overwrites remove, in ROOT/.georep/trash, out of the replica (list and restore them: georep trash -h; restoring into the replica is refused, the master would remove it again)")
	fs.DurationVar(&o.trash.Keep, "trash-keep", slave.DefaultTrashKeep, "with --trash: prune what was kept longer ago than this (0: no age limit)")
	fs.Var(&o.trashMaxSize, "trash-max-size", "with --trash: prune the oldest versions while the trash holds more than `SIZE` bytes (K, M, G, T or KiB...: 1024s; KB, MB...: 1000s; 0: no size limit)")
	o.log.register(fs)
	cfg := registerConfigFlags(fs, "slave")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.apply(fs); err != nil {
		return err
	}
	if o.root == "" || o.listen == "" {
		return usageErr("--root and --listen are required")
	}
	if err := o.checkTrash(fs); err != nil {
		return err
	}
	return runSlave(ctx, o, stderr)
}

// checkTrash checks the trash flags: their bounds need --trash.
func (o *slaveOptions) checkTrash(fs *flag.FlagSet) error {
	var bounds []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "trash-keep" || f.Name == "trash-max-size" {
			bounds = append(bounds, "--"+f.Name)
		}
	})
	if len(bounds) > 0 && !o.trash.Enabled {
		return usageErr("%s without --trash", strings.Join(bounds, " and "))
	}
	if o.trash.Keep < 0 {
		return usageErr("--trash-keep %s is negative", o.trash.Keep)
	}
	o.trash.MaxSize = int64(o.trashMaxSize)
	return nil
}

func runSlave(ctx context.Context, o slaveOptions, stderr io.Writer) error {
	tlsCfg, err := o.tls.serverTLS(o.listen, o.allowMasters)
	if err != nil {
		return err
	}
	var creds credentials.TransportCredentials
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	log, err := o.log.logger("slave", stderr)
	if err != nil {
		return err
	}
	stopProfile, err := o.log.profile()
	if err != nil {
		return err
	}
	defer stopProfile()
	if o.stateDir == "" {
		o.stateDir = defaultStateDir("slave", o.root)
	}
	// Listen first: a port in use stops the start before anything is
	// made (a state dir, the root's reserved directory).
	lis, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", o.listen, err)
	}
	s, err := slave.New(slave.Config{Root: o.root, StateDir: o.stateDir, Lease: o.lease, Logger: log, Trash: o.trash})
	if err != nil {
		lis.Close()
		return err
	}
	defer s.Close()
	log.Info("serving", "root", o.root, "listen", lis.Addr().String(), "state_dir", o.stateDir, "privileged", s.Privileged(),
		"tls", tlsCfg != nil, "allow_master", o.allowMasters.String())
	if o.ready != nil {
		o.ready(lis.Addr().String())
	}
	defer notifySystemd(ctx, o.log, stderr, "slave", "serving "+o.root+" on "+lis.Addr().String())()
	return s.Serve(ctx, lis, creds)
}
