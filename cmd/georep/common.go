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

	"github.com/georep/georep/internal/config"
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
// or control one: its state directory, or its root and slave (from which
// the master derived its default state directory), or its config file
// (and the session's name, when the file has several).
type sessionFlags struct {
	stateDir, root, slave string
	config, session       string
}

func (s *sessionFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.stateDir, "state-dir", "", "the master's state directory")
	fs.StringVar(&s.root, "root", "", "the master's root, to derive its default state directory (with --slave)")
	fs.StringVar(&s.slave, "slave", "", "the master's slave HOST:PORT, to derive its default state directory (with --root)")
	fs.StringVar(&s.config, "config", "", "the master's config `FILE` (every session of it, or --session's)")
	fs.StringVar(&s.session, "session", "", "the session of --config")
}

// dir returns the session's state directory; "" when none was named and
// optional is set. A config file must name one session (see targets).
func (s *sessionFlags) dir(optional bool) (string, error) {
	ts, err := s.targets(optional)
	if err != nil || len(ts) == 0 {
		return "", err
	}
	if len(ts) > 1 {
		return "", usageErr("%s has %d sessions: name one with --session", s.config, len(ts))
	}
	return ts[0].stateDir, nil
}

// sessionTarget is one session the flags name.
type sessionTarget struct {
	name     string
	stateDir string
	// opts are its options when a config file or root and slave named it
	// (nil for a bare state directory).
	opts *masterOptions
}

// targets returns the sessions named: one, or every session of a config
// file without --session; none when nothing was named and optional is
// set.
func (s *sessionFlags) targets(optional bool) ([]sessionTarget, error) {
	named := 0
	for _, v := range []bool{s.stateDir != "", s.root != "" || s.slave != "", s.config != ""} {
		if v {
			named++
		}
	}
	switch {
	case named > 1:
		return nil, usageErr("give one of --state-dir, --root and --slave, or --config, not both")
	case s.session != "" && s.config == "":
		return nil, usageErr("--session needs --config")
	case s.stateDir != "":
		return []sessionTarget{{name: "", stateDir: s.stateDir}}, nil
	case s.root != "" && s.slave != "":
		o, err := loadMasterSession([]string{"--root", s.root, "--slave", s.slave}, "", io.Discard)
		if err != nil {
			// Settings that no longer check still leave the session found.
			return []sessionTarget{{stateDir: defaultStateDir("master", s.root, ":"+s.slave)}}, nil
		}
		return []sessionTarget{{name: o.session, stateDir: o.stateDir, opts: &o}}, nil
	case s.config != "":
		names := []string{s.session}
		if s.session == "" {
			f, err := config.Load(s.config)
			if err != nil {
				return nil, configErr(err)
			}
			if names = f.Sessions(); len(names) == 1 {
				names = []string{""}
			}
		}
		var out []sessionTarget
		for _, n := range names {
			o, err := loadMasterSession([]string{"--config", s.config}, n, io.Discard)
			if err != nil {
				if n != "" {
					return nil, fmt.Errorf("session %q: %w", n, err)
				}
				return nil, err
			}
			out = append(out, sessionTarget{name: o.session, stateDir: o.stateDir, opts: &o})
		}
		return out, nil
	case optional && s.root == "" && s.slave == "":
		return nil, nil
	}
	return nil, usageErr("--state-dir, or --root and --slave, or --config, is required")
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
