// Package config reads a georep config file: a TOML file whose keys are
// the flags of one command (`georep master` or `georep slave`), so that
// every tunable that is a flag can be written in the file, and applies
// it to that command's flag.FlagSet.
//
// # The file
//
// Keys are flag names exactly, values of the TOML type the flag takes:
//
//	root = "/srv/data"               # a string flag: a TOML string
//	sync-jobs = 4                    # int, int64, uint flags: an integer
//	compress = true                  # a boolean flag: true or false
//	change-interval = "500ms"        # a duration: a string time.ParseDuration reads
//	exclude = ["*.tmp", "build/"]    # a repeatable flag: an array, one element per --exclude
//	trash-max-size = "10G"           # any other flag: a string (or a number), as on the command line
//
// A repeatable flag also takes a single value (one element). Values go
// through the flag itself (flag.Value.Set with the value's string form,
// once per array element, in order), so they are checked exactly as on
// the command line.
//
// A master file may list sessions: [[session]] tables, each with a
// `name` (required, unique, 1 to 64 of [a-zA-Z0-9._-]) and any flag keys,
// which override the top level for that session; the top-level keys are
// the defaults of every session. With no [[session]] table the top level
// is the one session, named by a top-level `name` or "default". A file
// for a command without sessions (the slave) has neither.
//
// Besides flags only `name` and `session` belong in a file; `config` may
// not (a file does not name another).
//
// # Precedence
//
// Apply sets, lowest first: the top level, the chosen session, and leaves
// alone every flag that the command line set. Repeatable flags that share
// one ordered list (`exclude` and `include`) form a group, declared with
// Repeatable: a layer (the session, the command line) that gives any flag
// of a group replaces the lower layers' values of the whole group, never
// appends to them. An empty array (`exclude = []`) in a session so clears
// the top level's.
//
// # Errors
//
// Every mistake in a file is one line, `FILE:LINE: key "KEY": reason`
// (an *Error), found before anything is applied: a TOML syntax error, a
// key that is no flag (with the closest flag name when it is within two
// edits), a value of the wrong TOML type, a value the flag refuses. Apply
// checks the keys and types of every session, not only the chosen one; a
// value refused by the flag is found when it is applied (its session
// run). Checks that a command makes after parsing its flags (ranges,
// combinations) are the command's, and name the flag, not the line.
//
// # Paths
//
// TOML strings are UTF-8: a root, a state dir or a TLS file whose path is
// not valid UTF-8 cannot be written in the file; give it on the command
// line, which overrides the file.
//
// # The parser
//
// github.com/pelletier/go-toml/v2: it decodes the file (syntax errors,
// duplicate keys and redefined tables come with their line), and its
// unstable.Parser gives the byte range of every key and array element, so
// that an error about a key or a value names its line. BurntSushi/toml's
// MetaData tells the keys and their types but not where they are.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// MaxSize is the largest config file Load reads.
const MaxSize = 1 << 20

// DefaultSession is the name of a file's one session when it has no
// [[session]] table and no top-level name.
const DefaultSession = "default"

// Keys that are not flags.
const (
	keyName    = "name"
	keySession = "session"
	keyConfig  = "config"
)

var sessionNameRE = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,64}$`)

// Error is a mistake in a config file. Line is 0 when it concerns no
// line (a session that is not in the file); Key is "" when it concerns no
// key (a syntax error).
type Error struct {
	File string
	Line int
	Key  string
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		fmt.Fprintf(&b, "key %q: ", e.Key)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// File is a parsed config file.
type File struct {
	path string
	// top is the top level's keys (name and session left out), in file
	// order.
	top []entry
	// topName is the top-level name, if given.
	topName *entry
	// sessions are the [[session]] tables, in file order (nil: none).
	sessions []session
}

type session struct {
	name    string
	line    int
	entries []entry // name left out, in file order
}

// entry is one key and its decoded value.
type entry struct {
	key   string
	line  int
	col   int
	value any
	// elemLines are the lines of an array's elements (0 where unknown).
	elemLines []int
}

// Load reads and parses the config file at path. A mistake in it is an
// *Error naming the line.
func Load(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if len(data) > MaxSize {
		return nil, &Error{File: path, Err: fmt.Errorf("larger than %d bytes: not a config file", MaxSize)}
	}
	return Parse(path, data)
}

// Parse parses a config file's contents; path names it in errors.
func Parse(path string, data []byte) (*File, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, col := de.Position()
			return nil, &Error{File: path, Line: line, Err: fmt.Errorf("%w: %s (column %d)", errSyntax, syntaxMsg(de), col)}
		}
		return nil, &Error{File: path, Err: err}
	}
	pos := positions(data)
	f := &File{path: path}
	errAt := func(e entry, format string, a ...any) error {
		return &Error{File: path, Line: e.line, Key: e.key, Err: fmt.Errorf(format, a...)}
	}

	top := entries(doc, nil, pos)
	var sessionEntry *entry
	for i := range top {
		e := top[i]
		switch e.key {
		case keyConfig:
			return nil, errAt(e, "%w", errConfigKey)
		case keySession:
			sessionEntry = &top[i]
			continue
		case keyName:
			f.topName = &top[i]
			continue
		}
		if err := checkValue(path, e); err != nil {
			return nil, err
		}
		f.top = append(f.top, e)
	}
	if f.topName != nil {
		if err := checkName(path, *f.topName); err != nil {
			return nil, err
		}
	}
	if sessionEntry == nil {
		return f, nil
	}

	// [[session]] tables (or session = [{...}, ...]).
	list, ok := sessionEntry.value.([]any)
	if !ok || len(list) == 0 {
		return nil, errAt(*sessionEntry, "want [[session]] tables, got %s", typeName(sessionEntry.value))
	}
	if f.topName != nil {
		return nil, errAt(*f.topName, "with [[session]] tables each session has its own name: a top-level name names the one session of a file without them")
	}
	seen := make(map[string]int)
	for i, v := range list {
		tbl, ok := v.(map[string]any)
		hdr := pos.at(keySession, strconv.Itoa(i))
		if !ok {
			return nil, &Error{File: path, Line: hdr.line, Key: keySession, Err: fmt.Errorf("want [[session]] tables, got an array holding %s", typeName(v))}
		}
		s := session{line: hdr.line}
		if s.line == 0 {
			s.line = sessionEntry.line
		}
		var nameEntry *entry
		es := entries(tbl, []string{keySession, strconv.Itoa(i)}, pos)
		for j := range es {
			e := es[j]
			switch e.key {
			case keyConfig:
				return nil, errAt(e, "%w", errConfigKey)
			case keySession:
				return nil, errAt(e, "sessions do not nest: a [[session]] table holds flag keys and its name")
			case keyName:
				nameEntry = &es[j]
				continue
			}
			if err := checkValue(path, e); err != nil {
				return nil, err
			}
			s.entries = append(s.entries, e)
		}
		if nameEntry == nil {
			return nil, &Error{File: path, Line: s.line, Key: keySession,
				Err: fmt.Errorf("session %d has no name: every [[session]] needs name = \"...\"", i+1)}
		}
		if err := checkName(path, *nameEntry); err != nil {
			return nil, err
		}
		s.name = nameEntry.value.(string)
		if first, dup := seen[s.name]; dup {
			return nil, errAt(*nameEntry, "session %q is named twice (first on line %d)", s.name, first)
		}
		seen[s.name] = nameEntry.line
		f.sessions = append(f.sessions, s)
	}
	return f, nil
}

var (
	errSyntax    = errors.New("invalid TOML")
	errConfigKey = errors.New("a config file cannot name another: give --config on the command line")
)

// syntaxMsg is a decode error's message without the library's prefix.
func syntaxMsg(de *toml.DecodeError) string {
	return strings.TrimPrefix(de.Error(), "toml: ")
}

// checkName checks a name key's value.
func checkName(path string, e entry) error {
	s, ok := e.value.(string)
	if !ok {
		return &Error{File: path, Line: e.line, Key: e.key, Err: fmt.Errorf("want a string, got %s", typeName(e.value))}
	}
	if !sessionNameRE.MatchString(s) {
		return &Error{File: path, Line: e.line, Key: e.key, Err: fmt.Errorf("session name %q: want 1 to 64 of a-z, A-Z, 0-9, '.', '_', '-'", s)}
	}
	return nil
}

// checkValue refuses what no flag takes: a table, an array of tables or
// arrays.
func checkValue(path string, e entry) error {
	switch v := e.value.(type) {
	case map[string]any:
		return &Error{File: path, Line: e.line, Key: e.key, Err: fmt.Errorf("want a value, got a table (keys are the flags' names, as on the command line)")}
	case []any:
		for i, el := range v {
			switch el.(type) {
			case map[string]any, []any:
				return &Error{File: path, Line: e.elemLine(i), Key: e.key, Err: fmt.Errorf("element %d: want a string or a number, got %s", i+1, typeName(el))}
			}
		}
	}
	return nil
}

func (e entry) elemLine(i int) int {
	if i < len(e.elemLines) && e.elemLines[i] > 0 {
		return e.elemLines[i]
	}
	return e.line
}

// entries are a decoded table's keys with their places, in file order.
func entries(tbl map[string]any, path []string, pos posIndex) []entry {
	es := make([]entry, 0, len(tbl))
	for k, v := range tbl {
		kp := append(slices.Clip(path), k)
		p := pos.at(kp...)
		e := entry{key: k, line: p.line, col: p.col, value: v}
		if arr, ok := v.([]any); ok {
			e.elemLines = make([]int, len(arr))
			for i := range arr {
				e.elemLines[i] = pos.at(append(slices.Clip(kp), strconv.Itoa(i))...).line
			}
		}
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b entry) int {
		if a.line != b.line {
			return a.line - b.line
		}
		if a.col != b.col {
			return a.col - b.col
		}
		return strings.Compare(a.key, b.key)
	})
	return es
}

// Sessions returns the names of the file's sessions, in file order: the
// [[session]] tables' names, or the one session of a file without them
// (its top-level name, or DefaultSession).
func (f *File) Sessions() []string {
	if f.sessions == nil {
		if f.topName != nil {
			return []string{f.topName.value.(string)}
		}
		return []string{DefaultSession}
	}
	names := make([]string, len(f.sessions))
	for i, s := range f.sessions {
		names[i] = s.name
	}
	return names
}

// HasSessionTables reports whether the file has [[session]] tables.
func (f *File) HasSessionTables() bool { return f.sessions != nil }

// Path is the file's path, as given to Load.
func (f *File) Path() string { return f.path }

// An Option adjusts Apply.
type Option func(*options)

type options struct {
	group      map[string]int // flag name -> group number, for repeatable flags
	groups     int            // groups declared so far
	noSessions bool
}

// Repeatable declares flags that are given several times (one element of
// a TOML array each) and whose values form one ordered list: a layer
// that gives any of them (the session, the command line) replaces the
// lower layers' values of them all. Flags not declared take one value;
// names that are no flag of the set are ignored.
func Repeatable(names ...string) Option {
	return func(o *options) {
		o.groups++
		for _, name := range names {
			o.group[name] = o.groups
		}
	}
}

// NoSessions is for a command that runs no sessions (the slave): a file
// with [[session]] tables or a name is refused.
func NoSessions() Option {
	return func(o *options) { o.noSessions = true }
}

// Apply sets fs's flags from the file: the top level, then the session
// named name ("" is the file's only one), skipping every flag that the
// command line set (fs.Visit). It first checks every key of every
// session against fs: a key that is no flag, or a value of a type the
// flag does not take, is an *Error and nothing is set. A value the flag
// refuses is an *Error too, after the values before it were set.
func (f *File) Apply(fs *flag.FlagSet, name string, opts ...Option) error {
	o := options{group: make(map[string]int)}
	for _, opt := range opts {
		opt(&o)
	}
	if o.noSessions {
		if f.sessions != nil {
			return &Error{File: f.path, Line: f.sessions[0].line, Key: keySession, Err: fmt.Errorf("%s runs no sessions: no [[session]] tables here", fs.Name())}
		}
		if f.topName != nil {
			return &Error{File: f.path, Line: f.topName.line, Key: keyName, Err: fmt.Errorf("%s runs no sessions: no name here", fs.Name())}
		}
	}
	// Check every key first, top level and all sessions, in file order.
	for _, e := range f.top {
		if err := f.check(fs, &o, e); err != nil {
			return err
		}
	}
	for _, s := range f.sessions {
		for _, e := range s.entries {
			if err := f.check(fs, &o, e); err != nil {
				return err
			}
		}
	}
	layers := [][]entry{f.top}
	switch {
	case f.sessions == nil:
		if name != "" && name != f.Sessions()[0] {
			return &Error{File: f.path, Err: fmt.Errorf("no session %q: the file's one session is %q", name, f.Sessions()[0])}
		}
	case name == "" && len(f.sessions) > 1:
		return &Error{File: f.path, Err: fmt.Errorf("the file has %d sessions (%s): give --session NAME", len(f.sessions), strings.Join(f.Sessions(), ", "))}
	case name == "":
		layers = append(layers, f.sessions[0].entries)
	default:
		i := slices.IndexFunc(f.sessions, func(s session) bool { return s.name == name })
		if i < 0 {
			return &Error{File: f.path, Err: fmt.Errorf("no session %q (the file has %s)", name, strings.Join(f.Sessions(), ", "))}
		}
		layers = append(layers, f.sessions[i].entries)
	}

	// Which layer supplies each group: the highest that gives any of its
	// flags; none when the command line did.
	groupOf := func(flagName string) string {
		if n, ok := o.group[flagName]; ok {
			return "#" + strconv.Itoa(n)
		}
		return flagName
	}
	from := make(map[string]int) // group -> layer index
	for li, l := range layers {
		for _, e := range l {
			from[groupOf(e.key)] = li
		}
	}
	fs.Visit(func(fl *flag.Flag) { from[groupOf(fl.Name)] = -1 })
	for li, l := range layers {
		for _, e := range l {
			if from[groupOf(e.key)] != li {
				continue
			}
			if err := f.set(fs, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// kind is what TOML values a flag takes.
type kind int

const (
	kindValue    kind = iota // a custom flag.Value: a string or a number, its string form to Set
	kindBool                 // a boolean
	kindInt                  // an integer
	kindUint                 // a non-negative integer
	kindFloat                // a number
	kindString               // a string
	kindDuration             // a duration string
)

func kindOf(v flag.Value) kind {
	if b, ok := v.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return kindBool
	}
	if g, ok := v.(flag.Getter); ok {
		switch g.Get().(type) {
		case int, int64:
			return kindInt
		case uint, uint64:
			return kindUint
		case float64:
			return kindFloat
		case string:
			return kindString
		case time.Duration:
			return kindDuration
		}
	}
	return kindValue
}

var wantOf = map[kind]string{
	kindValue:    "a string or a number",
	kindBool:     "a boolean (true or false)",
	kindInt:      "an integer",
	kindUint:     "a non-negative integer",
	kindFloat:    "a number",
	kindString:   "a string",
	kindDuration: `a duration string like "30s" or "1h30m"`,
}

// check checks that e names a flag of fs and has a type the flag takes.
func (f *File) check(fs *flag.FlagSet, o *options, e entry) error {
	fl := fs.Lookup(e.key)
	if fl == nil {
		reason := "not a flag of " + fs.Name()
		if s := f.suggest(fs, o, e.key); s != "" {
			reason += fmt.Sprintf(" (did you mean %q?)", s)
		}
		return &Error{File: f.path, Line: e.line, Key: e.key, Err: errors.New(reason)}
	}
	k := kindOf(fl.Value)
	if arr, ok := e.value.([]any); ok {
		if _, rep := o.group[e.key]; !rep {
			return &Error{File: f.path, Line: e.line, Key: e.key,
				Err: fmt.Errorf("want %s, got an array (only repeatable flags take arrays)", wantOf[k])}
		}
		for i, el := range arr {
			if _, err := valueString(k, el); err != nil {
				return &Error{File: f.path, Line: e.elemLine(i), Key: e.key, Err: fmt.Errorf("element %d: %w", i+1, err)}
			}
		}
		return nil
	}
	if _, err := valueString(k, e.value); err != nil {
		return &Error{File: f.path, Line: e.line, Key: e.key, Err: err}
	}
	return nil
}

// set applies e to its flag: Set once, or once per array element.
func (f *File) set(fs *flag.FlagSet, e entry) error {
	fl := fs.Lookup(e.key)
	k := kindOf(fl.Value)
	vals, lines := []any{e.value}, []int{e.line}
	if arr, ok := e.value.([]any); ok {
		vals, lines = arr, make([]int, len(arr))
		for i := range arr {
			lines[i] = e.elemLine(i)
		}
	}
	for i, v := range vals {
		s, err := valueString(k, v)
		if err == nil {
			err = fs.Set(e.key, s)
		}
		if err != nil {
			return &Error{File: f.path, Line: lines[i], Key: e.key, Err: fmt.Errorf("invalid value %q: %w", s, err)}
		}
	}
	return nil
}

// valueString is the string form of a decoded TOML value for a flag of
// kind k, or why the flag does not take it.
func valueString(k kind, v any) (string, error) {
	bad := func() (string, error) {
		return "", fmt.Errorf("want %s, got %s", wantOf[k], typeName(v))
	}
	switch v := v.(type) {
	case bool:
		if k != kindBool {
			return bad()
		}
		return strconv.FormatBool(v), nil
	case int64:
		switch k {
		case kindInt, kindFloat, kindValue:
		case kindUint:
			if v < 0 {
				return "", fmt.Errorf("want %s, got %d", wantOf[k], v)
			}
		default:
			return bad()
		}
		return strconv.FormatInt(v, 10), nil
	case float64:
		if k != kindFloat && k != kindValue {
			return bad()
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return "", fmt.Errorf("want %s, got %v", wantOf[k], v)
		}
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	case string:
		switch k {
		case kindString, kindValue:
		case kindDuration:
			if _, err := time.ParseDuration(v); err != nil {
				return "", fmt.Errorf("want %s: %w", wantOf[k], err)
			}
		default:
			return bad()
		}
		return v, nil
	}
	return bad()
}

// typeName names a decoded value's TOML type.
func typeName(v any) string {
	switch v.(type) {
	case bool:
		return "a boolean"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time, toml.LocalDateTime:
		return "a date-time"
	case toml.LocalDate:
		return "a date"
	case toml.LocalTime:
		return "a time of day"
	}
	return fmt.Sprintf("a %T", v)
}

// suggest returns the flag name (or name) closest to key, within two
// edits, or "".
func (f *File) suggest(fs *flag.FlagSet, o *options, key string) string {
	var extra []string
	if !o.noSessions {
		extra = append(extra, keyName)
	}
	return Suggest(fs, key, extra...)
}

// Suggest returns the name of a flag of fs (but config), or of extra,
// closest to key within two edits, or "": for "did you mean" messages.
func Suggest(fs *flag.FlagSet, key string, extra ...string) string {
	best, bestD := "", 3
	try := func(name string) {
		d := editDistance(key, name)
		if d < bestD && d < len(key) || d == bestD && name < best {
			best, bestD = name, d
		}
	}
	fs.VisitAll(func(fl *flag.Flag) {
		if fl.Name != keyConfig {
			try(fl.Name)
		}
	})
	for _, n := range extra {
		try(n)
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// posIndex maps a key path (parts joined by NUL; array elements and
// [[array tables]] by their index) to where it is in the file.
type posIndex map[string]place

type place struct{ line, col int }

func (p posIndex) at(path ...string) place { return p[strings.Join(path, "\x00")] }

func (p posIndex) record(path []string, pl place) {
	for i := 1; i <= len(path); i++ {
		k := strings.Join(path[:i], "\x00")
		if _, ok := p[k]; !ok {
			p[k] = pl
		}
	}
}

// positions walks the file's syntax tree (data decoded without error) and
// records where each key, array element and [[table]] is.
func positions(data []byte) posIndex {
	pos := make(posIndex)
	// lineStarts[i] is the offset of line i+1's first byte.
	lineStarts := []int{0}
	for i, b := range data {
		if b == '\n' {
			lineStarts = append(lineStarts, i+1)
		}
	}
	placeOf := func(n *unstable.Node) place {
		off := int(n.Raw.Offset)
		i, found := slices.BinarySearch(lineStarts, off)
		if !found {
			i--
		}
		return place{line: i + 1, col: off - lineStarts[i] + 1}
	}
	var p unstable.Parser
	p.Reset(data)
	keyParts := func(it unstable.Iterator) ([]string, place) {
		var parts []string
		var first place
		for it.Next() {
			n := it.Node()
			if parts == nil {
				first = placeOf(n)
			}
			parts = append(parts, string(n.Data))
		}
		return parts, first
	}
	arrays := make(map[string]int) // [[array table]] path -> tables so far
	// resolve turns a table header's parts into a path, stepping into the
	// last table of each [[array table]] on the way.
	resolve := func(parts []string, last bool) []string {
		var path []string
		for i, part := range parts {
			path = append(path, part)
			if i == len(parts)-1 && !last {
				break
			}
			if n, ok := arrays[strings.Join(path, "\x00")]; ok {
				path = append(path, strconv.Itoa(n-1))
			}
		}
		return path
	}
	var walkValue func(n *unstable.Node, path []string)
	walkKeyValue := func(kv *unstable.Node, base []string) {
		parts, pl := keyParts(kv.Key())
		path := append(slices.Clip(base), parts...)
		pos.record(path, pl)
		walkValue(kv.Value(), path)
	}
	walkValue = func(n *unstable.Node, path []string) {
		switch n.Kind {
		case unstable.Array:
			i := 0
			for it := n.Children(); it.Next(); {
				el := it.Node()
				if el.Kind == unstable.Comment {
					continue
				}
				ep := append(slices.Clip(path), strconv.Itoa(i))
				if el.Kind != unstable.Array && el.Raw.Length > 0 {
					pos.record(ep, placeOf(el))
				}
				walkValue(el, ep)
				i++
			}
		case unstable.InlineTable:
			for it := n.Children(); it.Next(); {
				if kv := it.Node(); kv.Kind == unstable.KeyValue {
					walkKeyValue(kv, path)
				}
			}
		}
	}
	var ctx []string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.KeyValue:
			walkKeyValue(e, ctx)
		case unstable.Table:
			parts, pl := keyParts(e.Key())
			ctx = resolve(parts, true)
			pos.record(ctx, pl)
		case unstable.ArrayTable:
			parts, pl := keyParts(e.Key())
			base := resolve(parts, false)
			bk := strings.Join(base, "\x00")
			n := arrays[bk]
			arrays[bk] = n + 1
			ctx = append(base, strconv.Itoa(n))
			pos.record(ctx, pl)
		}
	}
	return pos
}
