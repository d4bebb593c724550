package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/config"
)

var exampleFiles = map[string]string{
	"master": "../../examples/georep-master.toml",
	"slave":  "../../examples/georep-slave.toml",
}

// realFlag is a flag of a real command, as its -h prints it.
type realFlag struct {
	name, typ, usage string
}

// realFlags returns the flags of `georep ROLE` from its -h output (the
// flag sets are built inside runMasterCmd and runSlaveCmd). --config and
// --session are left out.
func realFlags(t *testing.T, role string) []realFlag {
	t.Helper()
	run := runMasterCmd
	if role == "slave" {
		run = runSlaveCmd
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, io.Discard, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("georep %s -h: %v", role, err)
	}
	var flags []realFlag
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "  -"):
			name, typ, _ := strings.Cut(strings.TrimPrefix(line, "  -"), " ")
			name, usage, _ := strings.Cut(name, "\t") // one-letter flags: usage on the same line
			flags = append(flags, realFlag{name: name, typ: strings.TrimSpace(typ), usage: usage})
		case strings.HasPrefix(line, "    \t") && len(flags) > 0:
			flags[len(flags)-1].usage += " " + strings.TrimSpace(line)
		}
	}
	flags = slices.DeleteFunc(flags, func(f realFlag) bool { return f.name == "config" || f.name == "session" })
	if len(flags) < 10 {
		t.Fatalf("georep %s -h: %d flags in %q", role, len(flags), out.String())
	}
	return flags
}

// anyValue stands for a flag whose type -h does not name (a flag.Func,
// a custom flag.Value): it takes any string, as such a flag's kind does
// in a config file.
type anyValue struct{ vals []string }

func (v *anyValue) String() string     { return strings.Join(v.vals, ",") }
func (v *anyValue) Set(s string) error { v.vals = append(v.vals, s); return nil }

// mirrorFlagSet is a flag set with the real command's flags, of their
// kinds (bool, int, duration, string, other), and --config (and
// --session) as the command will register them.
// TODO: build the real flag set once master.go and slave.go have a
// function that does (its custom values would then check too).
func mirrorFlagSet(t *testing.T, role string) *flag.FlagSet {
	t.Helper()
	fs := newFlagSet(role, io.Discard)
	for _, f := range realFlags(t, role) {
		switch f.typ {
		case "":
			fs.Bool(f.name, false, f.usage)
		case "int":
			fs.Int64(f.name, 0, f.usage)
		case "uint":
			fs.Uint64(f.name, 0, f.usage)
		case "float":
			fs.Float64(f.name, 0, f.usage)
		case "duration":
			fs.Duration(f.name, 0, f.usage)
		case "string":
			fs.String(f.name, "", f.usage)
		default:
			fs.Var(&anyValue{}, f.name, f.usage)
		}
	}
	registerConfigFlags(fs, role)
	return fs
}

// uncommentRE finds an example's commented-out keys and [[session]]
// headers.
var uncommentRE = regexp.MustCompile(`(?m)^# ?(\[\[session\]\]|[a-z][a-z0-9-]* = .+)$`)

// TestConfigFileExamples applies the example files, as they are and with
// every commented-out key and session uncommented, to the commands' flags.
func TestConfigFileExamples(t *testing.T) {
	for role, path := range exampleFiles {
		t.Run(role, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			fs := mirrorFlagSet(t, role)
			if err := fs.Parse(nil); err != nil {
				t.Fatal(err)
			}
			if err := applyConfigFile(fs, path, ""); err != nil {
				t.Fatalf("the example as it is: %v", err)
			}
			for _, k := range []string{"root", "tls-dir", "tls-name"} {
				if fs.Lookup(k).Value.String() == "" {
					t.Errorf("the example sets no %s", k)
				}
			}

			full := uncommentRE.ReplaceAll(data, []byte("$1"))
			fullPath := filepath.Join(t.TempDir(), role+".toml")
			if err := os.WriteFile(fullPath, full, 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := config.Load(fullPath)
			if err != nil {
				t.Fatalf("the example uncommented: %v", err)
			}
			if role == "master" && !slices.Equal(f.Sessions(), []string{"backup", "offsite"}) {
				t.Errorf("the master example's sessions, uncommented: %q", f.Sessions())
			}
			for _, s := range f.Sessions() {
				fs := mirrorFlagSet(t, role)
				if err := fs.Parse(nil); err != nil {
					t.Fatal(err)
				}
				if err := applyConfigFile(fs, fullPath, s); err != nil {
					t.Errorf("the example uncommented, session %s: %v", s, err)
				}
			}

			// Every flag is documented: a key in the file, set or not.
			keys := make(map[string]bool)
			for _, m := range regexp.MustCompile(`(?m)^(?:# ?)?([a-z][a-z0-9-]*) = `).FindAllSubmatch(data, -1) {
				keys[string(m[1])] = true
			}
			for _, fl := range realFlags(t, role) {
				if !keys[fl.name] {
					t.Errorf("georep %s --%s is not in %s: add it (commented out, with its default) and a comment saying what it does", role, fl.name, path)
				}
			}
		})
	}
}

// TestConfigFileRepeatable checks that configOptions declares exactly
// the repeatable flags (those whose usage says so).
func TestConfigFileRepeatable(t *testing.T) {
	declared := []string{"exclude", "include", "exclude-from", "allow-master", "bwlimit-schedule", "event-header"}
	for _, role := range []string{"master", "slave"} {
		for _, fl := range realFlags(t, role) {
			says := strings.Contains(fl.usage, "repeat")
			if says != slices.Contains(declared, fl.name) {
				t.Errorf("georep %s --%s: usage says repeatable %v, configOptions declares it %v", role, fl.name, says, !says)
			}
		}
	}
}

// masterLikeFlags is a flag set like georep master's, of its real types:
// runMasterCmd builds its own inside.
type masterLikeFlags struct {
	fs       *flag.FlagSet
	root     string
	syncJobs int
	bwlimit  int64
	compress bool
	backoff  time.Duration
	tls      tlsOptions
	rules    []string
	size     byteSize
	allow    stringList
	cfg      *configFlags
}

func newMasterLikeFlags(role string) *masterLikeFlags {
	m := &masterLikeFlags{fs: newFlagSet(role, io.Discard)}
	fs := m.fs
	fs.StringVar(&m.root, "root", "", "")
	fs.IntVar(&m.syncJobs, "sync-jobs", 3, "")
	fs.Int64Var(&m.bwlimit, "bwlimit", 0, "")
	fs.BoolVar(&m.compress, "compress", false, "")
	fs.DurationVar(&m.backoff, "max-backoff", 30*time.Second, "")
	fs.Func("exclude", "(repeatable)", func(s string) error { m.rules = append(m.rules, s); return nil })
	fs.Func("include", "(repeatable)", func(s string) error { m.rules = append(m.rules, "!"+s); return nil })
	fs.Var(&m.size, "trash-max-size", "")
	fs.Var(&m.allow, "allow-master", "")
	m.tls.register(fs, role)
	m.cfg = registerConfigFlags(fs, role)
	return m
}

// parse parses args and applies the config file, as the commands do.
func (m *masterLikeFlags) parse(args ...string) error {
	if err := parseFlags(m.fs, args); err != nil {
		return err
	}
	return m.cfg.apply(m.fs)
}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "georep.toml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFileApply(t *testing.T) {
	p := writeConfig(t, `root = "/srv/data"
sync-jobs = 2
max-backoff = "1m"
tls-dir = "/etc/georep/tls"
exclude = ["*.tmp", "build/"]
include = ["keep.tmp"]
trash-max-size = "2K"
allow-master = ["a,b", "c"]

[[session]]
name = "near"

[[session]]
name = "far"
sync-jobs = 4
compress = true
exclude = ["*.iso"]
`)
	m := newMasterLikeFlags("master")
	if err := m.parse("--config", p, "--session", "near"); err != nil {
		t.Fatal(err)
	}
	if m.root != "/srv/data" || m.syncJobs != 2 || m.compress || m.backoff != time.Minute || m.tls.dir != "/etc/georep/tls" ||
		m.size != 2048 || !slices.Equal(m.rules, []string{"*.tmp", "build/", "!keep.tmp"}) || !slices.Equal(m.allow, stringList{"a", "b", "c"}) {
		t.Errorf("session near: %+v", *m)
	}
	m = newMasterLikeFlags("master")
	if err := m.parse("--config", p, "--session", "far", "--sync-jobs", "8", "--exclude", "x"); err != nil {
		t.Fatal(err)
	}
	if m.syncJobs != 8 || !m.compress || !slices.Equal(m.rules, []string{"x"}) {
		t.Errorf("session far, --sync-jobs 8 --exclude x: %+v", *m)
	}

	// Mistakes in the file are usage errors naming file, line and key.
	for _, tc := range []struct {
		file, session, want string
	}{
		{"sync-jobs = \"x\"\n", "", ":1: key \"sync-jobs\": want an integer, got a string"},
		{"\nbwlimt = 1\n", "", `:2: key "bwlimt": not a flag of georep master (did you mean "bwlimit"?)`},
		{"trash-max-size = \"12Q\"\n", "", `:1: key "trash-max-size": invalid value "12Q": size "12Q"`},
		{"root = [\n", "", ":1: invalid TOML"},
		{"config = \"x\"\n", "", `:1: key "config": a config file cannot name another`},
		{"[[session]]\nname = \"a\"\n[[session]]\nname = \"b\"\n", "", "the file has 2 sessions (a, b): give --session NAME"},
		{"[[session]]\nname = \"a\"\n", "b", `no session "b" (the file has a)`},
	} {
		m := newMasterLikeFlags("master")
		args := []string{"--config", writeConfig(t, tc.file)}
		if tc.session != "" {
			args = append(args, "--session", tc.session)
		}
		err := m.parse(args...)
		var ce *config.Error
		if !errors.Is(err, errUsage) || !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want a usage error saying %q", tc.file, err, tc.want)
		}
	}

	// The slave runs no sessions.
	s := newMasterLikeFlags("slave")
	err := s.parse("--config", writeConfig(t, "root = \"/r\"\n[[session]]\nname = \"a\"\n"))
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), ":2: key \"session\": georep slave runs no sessions") {
		t.Errorf("a slave file with sessions: %v", err)
	}
	s = newMasterLikeFlags("slave")
	if err := s.parse("--config", writeConfig(t, "root = \"/r\"\nallow-master = \"m1\"\n")); err != nil || s.root != "/r" || !slices.Equal(s.allow, stringList{"m1"}) {
		t.Errorf("a slave file: %v, %+v", err, *s)
	}

	// A file that cannot be read is an error, not a usage error.
	m = newMasterLikeFlags("master")
	if err := m.parse("--config", filepath.Join(t.TempDir(), "missing.toml")); err == nil || errors.Is(err, errUsage) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
	m = newMasterLikeFlags("master")
	if err := m.parse("--session", "a"); !errors.Is(err, errUsage) {
		t.Errorf("--session without --config: %v", err)
	}
	m = newMasterLikeFlags("master")
	if err := m.parse("--sync-jobs", "5"); err != nil || m.syncJobs != 5 {
		t.Errorf("no --config: %v", err)
	}
}

// TestConfigFileCommands runs the real commands with the example files,
// once master.go and slave.go take --config: each stops at a check made
// after the file was applied, before anything starts.
func TestConfigFileCommands(t *testing.T) {
	for _, tc := range []struct {
		role  string
		run   func(context.Context, []string, io.Writer, io.Writer) error
		extra []string
		want  string
	}{
		// sync-jobs 0 is checked after the flags, before the master starts.
		{"master", runMasterCmd, []string{"--sync-jobs", "0"}, "--sync-jobs must be between 1 and 64"},
		// --trash-keep needs --trash, or is negative: checked before the
		// slave listens.
		{"slave", runSlaveCmd, []string{"--trash-keep", "-1s"}, "--trash-keep"},
	} {
		t.Run(tc.role, func(t *testing.T) {
			var help bytes.Buffer
			_ = tc.run(context.Background(), []string{"-h"}, io.Discard, &help)
			if !strings.Contains(help.String(), "  -config FILE") {
				t.Skipf("georep %s has no --config yet", tc.role)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // nothing may start
			args := append([]string{"--config", exampleFiles[tc.role]}, tc.extra...)
			err := tc.run(ctx, args, io.Discard, io.Discard)
			var ce *config.Error
			if err == nil || errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("georep %s %q: %v, want an error saying %q", tc.role, args, err, tc.want)
			}
		})
	}
}
