package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"

	"github.com/hashicorp/go-hclog"
)

// logOptions are the logging (and profiling) flags every long-running
// command takes.
type logOptions struct {
	level      string
	json       bool
	cpuprofile string
	memprofile string
}

func (o *logOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.level, "log-level", "info", "log level: trace, debug, info, warn, error")
	fs.BoolVar(&o.json, "log-json", false, "log JSON lines")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile (pprof) to this file")
	fs.StringVar(&o.memprofile, "memprofile", "", "write a heap profile (pprof) to this file when the command ends")
}

// profile starts the CPU profile when asked; the returned stop writes it,
// and the heap profile when asked (what is still held at the end: memory
// that grows with the tree shows there).
func (o *logOptions) profile() (stop func(), err error) {
	stopCPU := func() {}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
		stopCPU = func() { pprof.StopCPUProfile(); f.Close() }
	}
	return func() {
		stopCPU()
		if o.memprofile == "" {
			return
		}
		f, err := os.Create(o.memprofile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "georep: heap profile: %v\n", err)
			return
		}
		defer f.Close()
		runtime.GC()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			fmt.Fprintf(os.Stderr, "georep: heap profile: %v\n", err)
		}
	}, nil
}

func (o *logOptions) logger(name string, w io.Writer) (hclog.Logger, error) {
	lvl := hclog.LevelFromString(o.level)
	if lvl == hclog.NoLevel {
		return nil, usageErr("unknown log level %q", o.level)
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: lvl, Output: w, JSONFormat: o.json}), nil
}

// defaultStateDir picks a state directory for a role and a key (the root,
// or root and slave): under /var/lib/georep when root, else under the
// user's state directory.
func defaultStateDir(role string, key ...string) string {
	h := sha256.New()
	for _, k := range key {
		if abs, err := filepath.Abs(k); err == nil && role != "" && k != "" && k[0] != ':' {
			k = abs
		}
		fmt.Fprintf(h, "%s\x00", k)
	}
	return filepath.Join(stateBase(), role+"-"+hex.EncodeToString(h.Sum(nil))[:16])
}

// stateBase is where default state directories go: /var/lib/georep as
// root, else the user's state directory.
func stateBase() string {
	if os.Geteuid() == 0 {
		return "/var/lib/georep"
	}
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return filepath.Join(os.TempDir(), "georep")
		}
		base = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(base, "georep")
}

// sessionFlags name a master's session for the commands that inspect
// one: its state directory, or its root and slave (from which the master
// derived its default state directory).
type sessionFlags struct {
	stateDir, root, slave string
}

func (s *sessionFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.stateDir, "state-dir", "", "the master's state directory")
	fs.StringVar(&s.root, "root", "", "the master's root, to derive its default state directory (with --slave)")
	fs.StringVar(&s.slave, "slave", "", "the master's slave HOST:PORT, to derive its default state directory (with --root)")
}

// dir returns the session's state directory; "" when none was named and
// optional is set.
func (s *sessionFlags) dir(optional bool) (string, error) {
	switch {
	case s.stateDir != "" && (s.root != "" || s.slave != ""):
		return "", usageErr("give either --state-dir or --root and --slave, not both")
	case s.stateDir != "":
		return s.stateDir, nil
	case s.root != "" && s.slave != "":
		return defaultStateDir("master", s.root, ":"+s.slave), nil
	case optional && s.root == "" && s.slave == "":
		return "", nil
	}
	return "", usageErr("--state-dir, or --root and --slave, is required")
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("georep "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args; a mistake is a usage error (exit status 2).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
