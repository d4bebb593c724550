package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/georep/georep/internal/sample"
	"github.com/georep/georep/internal/syncstatus"
	"github.com/georep/georep/internal/tlsconf"
	"github.com/georep/georep/internal/wire"
)

type demoOptions struct {
	dir  string
	keep bool
}

func runDemoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o demoOptions
	fs := newFlagSet("demo", stderr)
	fs.StringVar(&o.dir, "dir", "", "work directory (default: a new temp dir, removed afterwards)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return runDemo(ctx, o, stdout, stderr)
}

// runDemo starts a slave and runs one-shot masters against it on temp
// dirs: a sample tree, a sync, a change, another sync, each checked with an
// entry-by-entry comparison.
func runDemo(ctx context.Context, o demoOptions, stdout, stderr io.Writer) error {
	if o.dir == "" {
		d, err := os.MkdirTemp("", "georep-demo-")
		if err != nil {
			return err
		}
		o.dir = d
		if !o.keep {
			defer os.RemoveAll(d)
		}
	}
	masterRoot := filepath.Join(o.dir, "master")
	slaveRoot := filepath.Join(o.dir, "slave")
	for _, d := range []string{masterRoot, slaveRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "== building a sample tree in %s\n", masterRoot)
	if err := sample.Build(masterRoot); err != nil {
		return err
	}

	// Mutual TLS, as a real deployment runs, with a throwaway CA.
	certs := filepath.Join(o.dir, "certs")
	if _, err := tlsconf.InitDir(certs, "georep-demo-ca", 24*time.Hour, time.Now()); err != nil {
		return err
	}
	for _, n := range []tlsconf.Role{tlsconf.RoleSlave, tlsconf.RoleMaster} {
		if _, err := tlsconf.IssueInDir(certs, string(n), n, nil, "", 24*time.Hour, time.Now(), false); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "== a throwaway CA and certificates for \"slave\" and \"master\" in %s (georep cert init/issue)\n", certs)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan string, 1)
	slaveErr := make(chan error, 1)
	logs := io.Discard
	if os.Getenv("GEOREP_DEMO_LOGS") != "" {
		logs = stderr
	}
	go func() {
		slaveErr <- runSlave(ctx, slaveOptions{
			root: slaveRoot, listen: "127.0.0.1:0", stateDir: filepath.Join(o.dir, "slave-state"),
			tls: tlsOptions{dir: certs, name: "slave"}, allowMasters: stringList{"master"},
			log: logOptions{level: "warn"}, ready: func(a string) { ready <- a },
		}, logs)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-slaveErr:
		return fmt.Errorf("slave: %w", err)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("slave did not start")
	}
	defer func() {
		cancel()
		<-slaveErr
	}()
	fmt.Fprintf(stdout, "== slave serving %s on %s (mutual TLS 1.3, admitting master \"master\" only)\n", slaveRoot, addr)

	mo := masterOptions{root: masterRoot, slave: addr, stateDir: filepath.Join(o.dir, "master-state"),
		oneshot: true, syncJobs: 3, retries: 3, log: logOptions{level: "warn"},
		tls: tlsOptions{dir: certs, name: "master"}, slaveName: "slave"}
	check := func() error {
		diffs, err := sample.Compare(masterRoot, slaveRoot, []string{wire.ReservedName}, []string{"trusted.georep.", "user.georep."})
		if err != nil {
			return err
		}
		if len(diffs) > 0 {
			for _, d := range diffs[:min(10, len(diffs))] {
				fmt.Fprintf(stdout, "   DIFF %s\n", d)
			}
			return fmt.Errorf("the slave differs from the master in %d places", len(diffs))
		}
		fmt.Fprintln(stdout, "== compared entry by entry (types, content, modes, owners, mtimes, symlinks, hardlinks, xattrs): identical")
		return nil
	}
	steps := []struct {
		title  string
		before func() error
	}{
		{"first one-shot sync", nil},
		{"second one-shot sync of the unchanged tree (nothing to send)", nil},
		{"changing the master (create, modify, truncate, rename, hardlink, chmod, delete), then syncing", func() error {
			return sample.Mutate(masterRoot)
		}},
	}
	for _, s := range steps {
		if s.before != nil {
			if err := s.before(); err != nil {
				return err
			}
		}
		fmt.Fprintf(stdout, "\n== %s\n", s.title)
		if _, err := runMasterOnce(ctx, mo, stdout, logs); err != nil {
			return err
		}
		if err := check(); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "\n== the slave tree (top level)\n")
	entries, err := os.ReadDir(slaveRoot)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		n := fmt.Sprintf("%q", e.Name())
		if e.IsDir() {
			n += "/"
		}
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(stdout, "   %s\n", strings.Join(names, "  "))
	if o.keep {
		fmt.Fprintf(stdout, "\nwork directory kept: %s\n", o.dir)
	}
	return demoLive(ctx, mo, stdout, logs, check)
}

// demoLive runs a live master on the demo's session: a change and a
// checkpoint set after it, which the master completes once the change is
// on the slave; then the status table, while it runs and after it stopped.
func demoLive(ctx context.Context, mo masterOptions, stdout, logs io.Writer, check func() error) error {
	mo.oneshot = false
	mo.changeInterval, mo.batchSize = 100*time.Millisecond, 64
	fmt.Fprintf(stdout, "\n== a live master on the same session; a new file, then `georep checkpoint set now`\n")
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- runMasterLive(lctx, mo, logs) }()
	stopMaster := func() error {
		stop()
		return <-done
	}
	wait := func(what string, ok func(*syncstatus.Snapshot) bool) error {
		deadline := time.Now().Add(time.Minute)
		for {
			s, err := syncstatus.Get(ctx, mo.stateDir)
			if err == nil && s.State != syncstatus.Stopped && ok(s) {
				return nil
			}
			select {
			case err := <-done:
				return fmt.Errorf("live master stopped while %s: %v", what, err)
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				stopMaster()
				return fmt.Errorf("live master: %s took over a minute", what)
			}
		}
	}
	if err := wait("starting", func(s *syncstatus.Snapshot) bool { return s.Crawl == syncstatus.ChangelogCrawl }); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(mo.root, "written before the checkpoint"), []byte("live\n"), 0o644); err != nil {
		stopMaster()
		return err
	}
	if err := runCheckpointCmd(ctx, []string{"set", "now", "--state-dir", mo.stateDir}, stdout, logs); err != nil {
		stopMaster()
		return err
	}
	if err := wait("completing the checkpoint", func(s *syncstatus.Snapshot) bool {
		return s.Checkpoint != nil && s.Checkpoint.Answer() == syncstatus.CheckpointYes
	}); err != nil {
		return err
	}
	if err := check(); err != nil {
		stopMaster()
		return err
	}
	fmt.Fprintf(stdout, "\n== georep status --detail (the live master, through its socket)\n")
	session := sessionFlags{stateDir: mo.stateDir}
	if err := runStatus(ctx, statusOptions{session: session, detail: true}, stdout); err != nil {
		stopMaster()
		return err
	}
	if err := stopMaster(); err != nil {
		return fmt.Errorf("live master: %w", err)
	}
	fmt.Fprintf(stdout, "\n== georep status (no master running: the figures it left)\n")
	return runStatus(ctx, statusOptions{session: session}, stdout)
}
