package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testFlags is a flag set like georep master's: a flag of every kind,
// repeatable flag.Func ones sharing a list, a custom flag.Value.
type testFlags struct {
	fs          *flag.FlagSet
	root, slave string
	tlsName     string
	syncJobs    int
	bwlimit     int64
	jobs        uint
	ratio       float64
	compress    bool
	insecure    bool
	interval    time.Duration
	watcher     string
	rules       []string // --exclude P is P, --include P is !P
	excludeFrom []string
	size        sizeValue
}

// sizeValue is a custom flag.Value (no Getter): bytes, or with a K
// suffix.
type sizeValue int64

func (s *sizeValue) String() string { return strconv.FormatInt(int64(*s), 10) }
func (s *sizeValue) Set(v string) error {
	mult := int64(1)
	if t, ok := strings.CutSuffix(v, "K"); ok {
		v, mult = t, 1024
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("size %q: want bytes, or a number with K", v)
	}
	*s = sizeValue(n * mult)
	return nil
}

func newTestFlags() *testFlags {
	t := &testFlags{fs: flag.NewFlagSet("georep master", flag.ContinueOnError)}
	fs := t.fs
	fs.SetOutput(io.Discard)
	fs.StringVar(&t.root, "root", "", "")
	fs.StringVar(&t.slave, "slave", "", "")
	fs.StringVar(&t.tlsName, "tls-name", "master", "")
	fs.IntVar(&t.syncJobs, "sync-jobs", 3, "")
	fs.Int64Var(&t.bwlimit, "bwlimit", 0, "")
	fs.UintVar(&t.jobs, "jobs", 1, "")
	fs.Float64Var(&t.ratio, "ratio", 0.5, "")
	fs.BoolVar(&t.compress, "compress", false, "")
	fs.BoolVar(&t.insecure, "insecure", false, "")
	fs.DurationVar(&t.interval, "change-interval", 500*time.Millisecond, "")
	fs.Func("watcher", "", func(s string) error {
		switch s {
		case "auto", "fanotify", "inotify":
			t.watcher = s
			return nil
		}
		return errors.New("want auto, fanotify or inotify")
	})
	fs.Func("exclude", "", func(s string) error { t.rules = append(t.rules, s); return nil })
	fs.Func("include", "", func(s string) error { t.rules = append(t.rules, "!"+s); return nil })
	fs.Func("exclude-from", "", func(s string) error { t.excludeFrom = append(t.excludeFrom, s); return nil })
	fs.Var(&t.size, "max-size", "")
	fs.String("config", "", "")
	fs.String("session", "", "")
	return t
}

var masterOpts = []Option{Repeatable("exclude", "include"), Repeatable("exclude-from")}

// apply parses args into a new test flag set, then applies the file
// (session name) to it.
func apply(t *testing.T, file, name string, args []string, opts ...Option) (*testFlags, error) {
	t.Helper()
	tf := newTestFlags()
	if err := tf.fs.Parse(args); err != nil {
		t.Fatalf("parsing %q: %v", args, err)
	}
	f, err := Parse("georep.toml", []byte(file))
	if err != nil {
		return tf, err
	}
	if opts == nil {
		opts = masterOpts
	}
	return tf, f.Apply(tf.fs, name, opts...)
}

func TestConfigBadFiles(t *testing.T) {
	for _, tc := range []struct {
		name    string
		file    string
		session string
		args    []string
		opts    []Option
		line    int    // the line the error names (0: none)
		key     string // the key it names
		want    string // in the message
	}{
		{name: "syntax", file: "root = \"/srv\"\nsync-jobs = = 4\n", line: 2, want: "invalid TOML"},
		{name: "unterminated string", file: "root = \"/srv\nslave = \"x\"\n", line: 1, want: "invalid TOML"},
		{name: "duplicate key", file: "sync-jobs = 1\n\nsync-jobs = 2\n", line: 3, want: "invalid TOML"},
		{name: "unknown key with suggestion", file: "root = \"/a\"\n\nsync-job = 4\n", line: 3, key: "sync-job",
			want: `not a flag of georep master (did you mean "sync-jobs"?)`},
		{name: "underscore key", file: "sync_jobs = 4\n", line: 1, key: "sync_jobs", want: `did you mean "sync-jobs"?`},
		{name: "unknown key far from any", file: "\nfrobnicate = 1\n", line: 2, key: "frobnicate", want: "not a flag of georep master"},
		{name: "unknown key in a session", file: "root = \"/a\"\n[[session]]\nname = \"a\"\n[[session]]\nname = \"b\"\ncompres = true\n",
			session: "a", line: 6, key: "compres", want: `did you mean "compress"?`},
		{name: "string for int", file: "sync-jobs = \"4\"\n", line: 1, key: "sync-jobs", want: "want an integer, got a string"},
		{name: "float for int", file: "bwlimit = 2.5\n", line: 1, key: "bwlimit", want: "want an integer, got a float"},
		{name: "negative for uint", file: "jobs = -1\n", line: 1, key: "jobs", want: "want a non-negative integer, got -1"},
		{name: "string for bool", file: "compress = \"yes\"\n", line: 1, key: "compress", want: "want a boolean (true or false), got a string"},
		{name: "int for bool", file: "compress = 1\n", line: 1, key: "compress", want: "got an integer"},
		{name: "int for duration", file: "change-interval = 30\n", line: 1, key: "change-interval", want: `want a duration string like "30s"`},
		{name: "bad duration", file: "change-interval = \"30 parsecs\"\n", line: 1, key: "change-interval", want: `time: unknown unit`},
		{name: "int for string", file: "root = 5\n", line: 1, key: "root", want: "want a string, got an integer"},
		{name: "date", file: "root = 2024-01-02\n", line: 1, key: "root", want: "got a date"},
		{name: "bool for custom", file: "max-size = true\n", line: 1, key: "max-size", want: "want a string or a number, got a boolean"},
		{name: "array for scalar", file: "sync-jobs = [1, 2]\n", line: 1, key: "sync-jobs", want: "got an array (only repeatable flags take arrays)"},
		{name: "array for custom scalar", file: "max-size = [\"1K\"]\n", line: 1, key: "max-size", want: "got an array"},
		{name: "table for value", file: "[tls]\ndir = \"/etc\"\n", line: 1, key: "tls", want: "want a value, got a table"},
		{name: "dotted key", file: "root = \"/a\"\ntls.dir = \"/etc\"\n", line: 2, key: "tls", want: "got a table"},
		{name: "inline table for value", file: "root = { path = \"/a\" }\n", line: 1, key: "root", want: "got a table"},
		{name: "bool in repeatable array", file: "exclude = [\n  \"*.tmp\",\n  true,\n]\n", line: 3, key: "exclude", want: "element 2: want a string or a number, got a boolean"},
		{name: "nested array", file: "exclude = [\"a\", [\"b\"]]\n", line: 1, key: "exclude", want: "element 2"},
		{name: "refused by the flag", file: "root = \"/a\"\nwatcher = \"fanotfy\"\n", line: 2, key: "watcher",
			want: `invalid value "fanotfy": want auto, fanotify or inotify`},
		{name: "refused by a custom flag", file: "max-size = \"12Q\"\n", line: 1, key: "max-size", want: `invalid value "12Q": size "12Q"`},
		{name: "refused in a multi-line array", file: "exclude-from = [\n \"a\",\n]\nwatcher = [\n]\n", line: 4, key: "watcher", want: "got an array"},
		{name: "refused in a session", file: "[[session]]\nname = \"a\"\nwatcher = \"x\"\n", line: 3, key: "watcher", want: "want auto, fanotify or inotify"},
		{name: "config key", file: "config = \"/etc/other.toml\"\n", line: 1, key: "config", want: "a config file cannot name another"},
		{name: "config key in a session", file: "[[session]]\nname = \"a\"\nconfig = \"x\"\n", line: 3, key: "config", want: "cannot name another"},
		{name: "session name missing", file: "root = \"/a\"\n\n[[session]]\nslave = \"b:1\"\n", line: 3, key: "session", want: "session 1 has no name"},
		{name: "second session name missing", file: "[[session]]\nname = \"a\"\n[[session]]\nslave = \"b:1\"\n", line: 3, key: "session", want: "session 2 has no name"},
		{name: "duplicate session names", file: "[[session]]\nname = \"a\"\n[[session]]\nname = \"b\"\n[[session]]\nname = \"a\"\n",
			line: 6, key: "name", want: `session "a" is named twice (first on line 2)`},
		{name: "bad session name", file: "[[session]]\nname = \"a b\"\n", line: 2, key: "name", want: `session name "a b": want 1 to 64 of`},
		{name: "long session name", file: "[[session]]\nname = \"" + strings.Repeat("x", 65) + "\"\n", line: 2, key: "name", want: "1 to 64"},
		{name: "session name not a string", file: "[[session]]\nname = 3\n", line: 2, key: "name", want: "want a string, got an integer"},
		{name: "top name with sessions", file: "name = \"x\"\n[[session]]\nname = \"a\"\n", line: 1, key: "name", want: "each session has its own name"},
		{name: "session not tables", file: "session = \"a\"\n", line: 1, key: "session", want: "want [[session]] tables, got a string"},
		{name: "session a table", file: "[session]\nname = \"a\"\n", line: 1, key: "session", want: "got a table"},
		{name: "nested session", file: "[[session]]\nname = \"a\"\n[[session.session]]\nname = \"b\"\n", line: 3, key: "session", want: "sessions do not nest"},
		{name: "session not found", file: "[[session]]\nname = \"a\"\n[[session]]\nname = \"b\"\n", session: "c", want: `no session "c" (the file has a, b)`},
		{name: "session not named", file: "[[session]]\nname = \"a\"\n[[session]]\nname = \"b\"\n", want: "the file has 2 sessions (a, b): give --session NAME"},
		{name: "implicit session not found", file: "root = \"/a\"\n", session: "x", want: `no session "x": the file's one session is "default"`},
		{name: "no sessions: tables", file: "root = \"/a\"\n[[session]]\nname = \"a\"\n", opts: []Option{NoSessions()}, line: 2, key: "session", want: "georep master runs no sessions"},
		{name: "no sessions: name", file: "name = \"a\"\n", opts: []Option{NoSessions()}, line: 1, key: "name", want: "runs no sessions"},
		// A wrong type is refused even where the command line overrides it.
		{name: "wrong type under a command-line flag", file: "sync-jobs = \"x\"\n", args: []string{"--sync-jobs", "2"}, line: 1, key: "sync-jobs", want: "want an integer"},
		// Every session is checked, not only the one run.
		{name: "other session's wrong type", file: "[[session]]\nname = \"a\"\n[[session]]\nname = \"b\"\ncompress = \"no\"\n", session: "a", line: 5, key: "compress", want: "want a boolean"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := apply(t, tc.file, tc.session, tc.args, tc.opts...)
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("%v: not an *Error", err)
			}
			if ce.Line != tc.line || ce.Key != tc.key {
				t.Errorf("%v: line %d key %q, want line %d key %q", err, ce.Line, ce.Key, tc.line, tc.key)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			prefix := "georep.toml: "
			if tc.line > 0 {
				prefix = fmt.Sprintf("georep.toml:%d: ", tc.line)
			}
			if tc.key != "" {
				prefix += fmt.Sprintf("key %q: ", tc.key)
			}
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is more than one line", err)
			}
		})
	}
}

// A file whose keys are not all valid sets nothing.
func TestConfigNothingSetOnError(t *testing.T) {
	tf, err := apply(t, "sync-jobs = 9\ncompress = true\n[[session]]\nname = \"a\"\n[[session]]\nname = \"b\"\nbwlimit = \"x\"\n", "a", nil)
	if err == nil {
		t.Fatal("no error")
	}
	if tf.syncJobs != 3 || tf.compress {
		t.Errorf("sync-jobs %d compress %v set before the error", tf.syncJobs, tf.compress)
	}
	n := 0
	tf.fs.Visit(func(*flag.Flag) { n++ })
	if n != 0 {
		t.Errorf("%d flags set", n)
	}
}

const twoSessions = `# defaults of every session
root = "/srv/data"
slave = "backup.example.org:7070"
sync-jobs = 2
compress = true
change-interval = "1s"
exclude = ["*.tmp", "build/"]
include = ["keep.tmp"]
exclude-from = ["/etc/georep/ignore"]

[[session]]
name = "near"

[[session]]
name = "far"
slave = "offsite.example.net:7070"
sync-jobs = 4
compress = false
change-interval = "250ms"
exclude = [
  "*.iso",
]
max-size = "2K"
ratio = 1
`

func TestConfigOverrideOrder(t *testing.T) {
	for _, tc := range []struct {
		name     string
		session  string
		args     []string
		slave    string
		syncJobs int
		compress bool
		interval time.Duration
		rules    []string
		from     []string
		size     sizeValue
		ratio    float64
	}{
		{name: "top level", session: "near", slave: "backup.example.org:7070", syncJobs: 2, compress: true, interval: time.Second,
			rules: []string{"*.tmp", "build/", "!keep.tmp"}, from: []string{"/etc/georep/ignore"}, ratio: 0.5},
		{name: "session over top level", session: "far", slave: "offsite.example.net:7070", syncJobs: 4, compress: false,
			interval: 250 * time.Millisecond, rules: []string{"*.iso"}, from: []string{"/etc/georep/ignore"}, size: 2048, ratio: 1},
		{name: "command line over session", session: "far",
			args:  []string{"--sync-jobs", "8", "--compress", "--slave", "x:1", "--change-interval", "2s", "--max-size", "5", "--ratio", "0.25"},
			slave: "x:1", syncJobs: 8, compress: true, interval: 2 * time.Second, rules: []string{"*.iso"}, from: []string{"/etc/georep/ignore"}, size: 5, ratio: 0.25},
		// --include on the command line replaces the whole exclude/include
		// list of the file; exclude-from is its own list.
		{name: "command-line include replaces the file's excludes", session: "near", args: []string{"--include", "x"},
			slave: "backup.example.org:7070", syncJobs: 2, compress: true, interval: time.Second, rules: []string{"!x"}, from: []string{"/etc/georep/ignore"}, ratio: 0.5},
		{name: "command-line exclude-from", session: "far", args: []string{"--exclude-from", "a", "--exclude-from", "b"},
			slave: "offsite.example.net:7070", syncJobs: 4, interval: 250 * time.Millisecond, rules: []string{"*.iso"}, from: []string{"a", "b"}, size: 2048, ratio: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tf, err := apply(t, twoSessions, tc.session, tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if tf.root != "/srv/data" || tf.slave != tc.slave || tf.syncJobs != tc.syncJobs || tf.compress != tc.compress ||
				tf.interval != tc.interval || tf.size != tc.size || tf.ratio != tc.ratio {
				t.Errorf("root %q slave %q sync-jobs %d compress %v change-interval %v max-size %d ratio %v; want /srv/data %q %d %v %v %d %v",
					tf.root, tf.slave, tf.syncJobs, tf.compress, tf.interval, tf.size, tf.ratio,
					tc.slave, tc.syncJobs, tc.compress, tc.interval, tc.size, tc.ratio)
			}
			if !slices.Equal(tf.rules, tc.rules) || !slices.Equal(tf.excludeFrom, tc.from) {
				t.Errorf("rules %q exclude-from %q, want %q %q", tf.rules, tf.excludeFrom, tc.rules, tc.from)
			}
		})
	}
}

func TestConfigSessions(t *testing.T) {
	for _, tc := range []struct {
		file  string
		names []string
	}{
		{"root = \"/a\"\n", []string{DefaultSession}},
		{"name = \"lab-1.x_y\"\nroot = \"/a\"\n", []string{"lab-1.x_y"}},
		{twoSessions, []string{"near", "far"}},
		{"session = [{ name = \"a\", sync-jobs = 5 }, { name = \"b\" }]\n", []string{"a", "b"}},
	} {
		f, err := Parse("s.toml", []byte(tc.file))
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Sessions(); !slices.Equal(got, tc.names) {
			t.Errorf("%q: sessions %q, want %q", tc.file, got, tc.names)
		}
		if f.HasSessionTables() != (tc.names[0] == "a" || tc.names[0] == "near") {
			t.Errorf("%q: HasSessionTables %v", tc.file, f.HasSessionTables())
		}
	}
	// The one session is chosen by "" or its name.
	for _, name := range []string{"", "lab"} {
		tf, err := apply(t, "name = \"lab\"\nsync-jobs = 6\n", name, nil)
		if err != nil || tf.syncJobs != 6 {
			t.Errorf("session %q: sync-jobs %d, %v", name, tf.syncJobs, err)
		}
	}
	tf, err := apply(t, "[[session]]\nname = \"only\"\nsync-jobs = 7\n", "", nil)
	if err != nil || tf.syncJobs != 7 {
		t.Errorf("the only [[session]]: sync-jobs %d, %v", tf.syncJobs, err)
	}
	// Inline tables: a session's keys, with their lines.
	_, err = apply(t, "session = [\n  { name = \"a\", sync-jobs = 5 },\n  { name = \"b\", bwlimit = \"x\" },\n]\n", "a", nil)
	var ce *Error
	if !errors.As(err, &ce) || ce.Line != 3 || ce.Key != "bwlimit" {
		t.Errorf("inline session's bad key: %v", err)
	}
	tf, err = apply(t, "session = [{ name = \"a\", sync-jobs = 5 }]\n", "a", nil)
	if err != nil || tf.syncJobs != 5 {
		t.Errorf("inline session: sync-jobs %d, %v", tf.syncJobs, err)
	}
}

func TestConfigValues(t *testing.T) {
	file := `
"root" = 'C:\literal'    # a quoted key, a literal string
slave = "h\u00e9:1"
bwlimit = 0x800
jobs = 1_000
ratio = 2.5e-1
insecure = true
compress = false
max-size = 3
exclude = "one"          # a repeatable flag given one value
include = []
watcher = "inotify"
tls-name = """
lab"""
`
	tf, err := apply(t, file, "", []string{"--compress"})
	if err != nil {
		t.Fatal(err)
	}
	if tf.root != `C:\literal` || tf.slave != "hé:1" || tf.bwlimit != 2048 || tf.jobs != 1000 || tf.ratio != 0.25 ||
		!tf.insecure || !tf.compress || tf.size != 3 || !slices.Equal(tf.rules, []string{"one"}) || tf.watcher != "inotify" || tf.tlsName != "lab" {
		t.Errorf("got %+v", *tf)
	}
	// An empty array in a session clears the top level's.
	tf, err = apply(t, "exclude = [\"a\"]\ninclude = [\"b\"]\n[[session]]\nname = \"s\"\nexclude = []\n", "s", nil)
	if err != nil || len(tf.rules) != 0 {
		t.Errorf("rules %q, %v", tf.rules, err)
	}
	// Without Repeatable an array is refused even for a flag.Func.
	_, err = apply(t, "exclude = [\"a\"]\n", "", nil, NoSessions())
	if err == nil || !strings.Contains(err.Error(), "only repeatable flags take arrays") {
		t.Errorf("array for an undeclared flag: %v", err)
	}
}

func TestConfigLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.toml")
	if err := os.WriteFile(p, []byte("sync-jobs = 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if f.Path() != p {
		t.Errorf("path %q", f.Path())
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, []byte(strings.Repeat("# x\n", MaxSize/4+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	var ce *Error
	if _, err := Load(big); !errors.As(err, &ce) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("big file: %v", err)
	}
	// Not UTF-8: refused with its line.
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("root = \"/a\"\nslave = \"\xff\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); !errors.As(err, &ce) || ce.Line != 2 {
		t.Errorf("invalid UTF-8: %v", err)
	}
}

func TestConfigEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"a", "", 1}, {"sync-job", "sync-jobs", 1}, {"kitten", "sitting", 3}, {"bwlimt", "bwlimit", 1}} {
		if d := editDistance(tc.a, tc.b); d != tc.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, d, tc.d)
		}
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(twoSessions))
	f.Add([]byte("session = [{ name = \"a\", sync-jobs = 5 }, { name = \"b\" }]\n"))
	f.Add([]byte("[a.b]\n[[a.c]]\n[[a.c]]\nx = [1, [2], {y = 3}]\n[a.c.d]\nz = 1979-05-27T07:32:00Z\n"))
	f.Add([]byte("exclude = [\n  \"a\",\n  true,\n]\n"))
	for _, p := range []string{"../../examples/georep-master.toml", "../../examples/georep-slave.toml"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz.toml", data)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("%v: not an *Error", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of more than one line: %q", err)
			}
			return
		}
		names := file.Sessions()
		if len(names) == 0 {
			t.Fatal("no sessions")
		}
		for _, name := range append(names, "", "no such session") {
			tf := newTestFlags()
			if err := file.Apply(tf.fs, name, masterOpts...); err != nil {
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("error of more than one line: %q", err)
				}
			}
			_ = file.Apply(newTestFlags().fs, name, NoSessions())
		}
	})
}
