// Package rules decides which paths of a tree are replicated: gitignore-style
// include/exclude patterns, parsed and matched here (a small matcher of our
// own, byte-exact on names that are not UTF-8, fuzzed).
//
// The syntax is gitignore's (gitignore(5)):
//
//   - one pattern per line; blank lines and lines starting with '#' are
//     ignored; trailing spaces are ignored unless escaped with '\';
//   - '!' negates: a path excluded by an earlier pattern is included again
//     (but never beneath an excluded directory: it is not even looked at);
//   - a trailing '/' matches directories only;
//   - a pattern with a '/' at its start or middle is anchored: it matches the
//     path relative to the root of the rules; otherwise it matches the name
//     at any depth;
//   - '*' matches any bytes but '/', '?' any one byte but '/', '[...]' one
//     byte of a set ('[!...]' or '[^...]' negated, ranges 'a-z'), '\' quotes
//     the next byte;
//   - '**' as a whole path component matches any number of components:
//     "**/x" is x at any depth, "a/**" everything beneath a, "a/**/b" b at
//     any depth beneath a.
//
// The last pattern that matches a path decides. Matching is on bytes: a
// name is whatever bytes the filesystem holds, and '?' is one byte, as in
// git.
package rules

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Verdict is what the rules say of one path.
type Verdict int8

const (
	// None: no pattern matches the path.
	None Verdict = iota
	// Exclude: the last pattern that matches excludes it.
	Exclude
	// Include: the last pattern that matches is a negation.
	Include
)

// Rules is a parsed set of patterns, in order. The zero value excludes
// nothing.
type Rules struct {
	pats []pattern
}

// pattern is one parsed line.
type pattern struct {
	text     string    // as written (for errors and String)
	source   string    // where it was read: "FILE:LINE" or "flag"
	negate   bool      // '!'
	dirOnly  bool      // trailing '/'
	anchored bool      // a '/' at the start or middle
	comps    [][]token // per path component; nil component: '**'
}

// token is one element of a component's glob.
type token struct {
	kind tokKind
	lit  byte      // tLit
	set  *[32]byte // tSet: a bitmap of the bytes it matches
}

type tokKind uint8

const (
	tLit  tokKind = iota // one byte
	tAny                 // '?'
	tStar                // '*'
	tSet                 // '[...]'
)

// SyntaxError is a pattern that does not parse.
type SyntaxError struct {
	Source  string // "FILE:LINE", or what gave the pattern
	Pattern string
	Reason  string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s: pattern %q: %s", e.Source, e.Pattern, e.Reason)
}

// MaxPatternLen bounds one pattern (a rules file is not a place for
// megabyte lines; PATH_MAX is 4096).
const MaxPatternLen = 4096

// Parse reads patterns from r, one per line; source names r in errors
// ("FILE", then ":LINE" is added).
func Parse(r io.Reader, source string) (*Rules, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxPatternLen+2)
	rs := &Rules{}
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSuffix(sc.Text(), "\r")
		if err := rs.add(text, fmt.Sprintf("%s:%d", source, line)); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &SyntaxError{Source: fmt.Sprintf("%s:%d", source, line+1), Pattern: "…", Reason: fmt.Sprintf("longer than %d bytes", MaxPatternLen)}
		}
		return nil, fmt.Errorf("rules: reading %s: %w", source, err)
	}
	return rs, nil
}

// New parses patterns given one by one (flags, a config list); source
// names them in errors.
func New(patterns []string, source string) (*Rules, error) {
	rs := &Rules{}
	for i, p := range patterns {
		if strings.ContainsAny(p, "\n") {
			return nil, &SyntaxError{Source: fmt.Sprintf("%s #%d", source, i+1), Pattern: p, Reason: "a pattern is one line"}
		}
		if err := rs.add(p, fmt.Sprintf("%s #%d", source, i+1)); err != nil {
			return nil, err
		}
	}
	return rs, nil
}

// Then returns the rules of rs followed by those of more (which decide
// over rs where both match).
func (rs *Rules) Then(more *Rules) *Rules {
	out := &Rules{}
	if rs != nil {
		out.pats = append(out.pats, rs.pats...)
	}
	if more != nil {
		out.pats = append(out.pats, more.pats...)
	}
	return out
}

// Len is the number of patterns.
func (rs *Rules) Len() int {
	if rs == nil {
		return 0
	}
	return len(rs.pats)
}

// String lists the patterns as written, one per line.
func (rs *Rules) String() string {
	if rs == nil {
		return ""
	}
	var b strings.Builder
	for _, p := range rs.pats {
		b.WriteString(p.text)
		b.WriteByte('\n')
	}
	return b.String()
}

// add parses one line.
func (rs *Rules) add(line, source string) error {
	if len(line) > MaxPatternLen {
		return &SyntaxError{Source: source, Pattern: line[:64] + "…", Reason: fmt.Sprintf("longer than %d bytes", MaxPatternLen)}
	}
	if line == "" || line[0] == '#' {
		return nil
	}
	orig := line
	line = trimTrailingSpaces(line)
	if line == "" {
		return nil
	}
	p := pattern{text: orig, source: source}
	if line[0] == '!' {
		p.negate = true
		line = line[1:]
	} else if strings.HasPrefix(line, `\!`) || strings.HasPrefix(line, `\#`) {
		line = line[1:]
	}
	if line == "" {
		return &SyntaxError{Source: source, Pattern: orig, Reason: "nothing after '!'"}
	}
	if strings.HasSuffix(line, "/") && !strings.HasSuffix(line, `\/`) {
		p.dirOnly = true
		line = strings.TrimRight(line, "/")
		if line == "" {
			return &SyntaxError{Source: source, Pattern: orig, Reason: "matches nothing (only '/')"}
		}
	}
	if i := strings.IndexByte(line, '/'); i >= 0 {
		p.anchored = true
		line = strings.TrimPrefix(line, "/")
	}
	for _, c := range strings.Split(line, "/") {
		if c == "" {
			return &SyntaxError{Source: source, Pattern: orig, Reason: "empty path component ('//')"}
		}
		if c == "**" {
			if n := len(p.comps); n > 0 && p.comps[n-1] == nil {
				continue // "**/**" is "**"
			}
			p.comps = append(p.comps, nil)
			continue
		}
		toks, err := compile(c)
		if err != nil {
			return &SyntaxError{Source: source, Pattern: orig, Reason: err.Error()}
		}
		p.comps = append(p.comps, toks)
	}
	if !p.anchored && len(p.comps) == 1 && p.comps[0] == nil {
		// A lone "**": every path.
		p.anchored = true
	}
	rs.pats = append(rs.pats, p)
	return nil
}

// trimTrailingSpaces drops trailing spaces not quoted by a backslash.
func trimTrailingSpaces(s string) string {
	end := len(s)
	for end > 0 && s[end-1] == ' ' {
		// Count the backslashes before this space.
		k := end - 1
		n := 0
		for k > 0 && s[k-1] == '\\' {
			k--
			n++
		}
		if n%2 == 1 {
			break // quoted: kept
		}
		end--
	}
	return s[:end]
}

// compile turns one path component's glob into tokens.
func compile(c string) ([]token, error) {
	var out []token
	for i := 0; i < len(c); i++ {
		switch b := c[i]; b {
		case '\\':
			if i+1 == len(c) {
				return nil, errors.New("ends with an unquoting '\\'")
			}
			i++
			out = append(out, token{kind: tLit, lit: c[i]})
		case '?':
			out = append(out, token{kind: tAny})
		case '*':
			if len(out) > 0 && out[len(out)-1].kind == tStar {
				continue // "**" inside a component is '*'
			}
			out = append(out, token{kind: tStar})
		case '[':
			set, n, err := compileSet(c[i:])
			if err != nil {
				return nil, err
			}
			out = append(out, token{kind: tSet, set: set})
			i += n - 1
		default:
			out = append(out, token{kind: tLit, lit: b})
		}
	}
	return out, nil
}

// compileSet parses a bracket expression at the start of s; it returns the
// set and the bytes it took.
func compileSet(s string) (*[32]byte, int, error) {
	var set [32]byte
	i := 1
	neg := false
	if i < len(s) && (s[i] == '!' || s[i] == '^') {
		neg = true
		i++
	}
	first := true
	for {
		if i >= len(s) {
			return nil, 0, errors.New("unterminated '[' character class")
		}
		b := s[i]
		if b == ']' && !first {
			i++
			break
		}
		first = false
		if b == '[' && i+1 < len(s) && s[i+1] == ':' {
			end := strings.Index(s[i+2:], ":]")
			if end < 0 {
				return nil, 0, errors.New("unterminated '[:' character class")
			}
			name := s[i+2 : i+2+end]
			if err := addClass(&set, name); err != nil {
				return nil, 0, err
			}
			i += 2 + end + 2
			continue
		}
		if b == '\\' {
			i++
			if i >= len(s) {
				return nil, 0, errors.New("unterminated '[' character class")
			}
			b = s[i]
		}
		lo := b
		i++
		if i+1 < len(s) && s[i] == '-' && s[i+1] != ']' {
			hi := s[i+1]
			i += 2
			if hi == '\\' {
				if i >= len(s) {
					return nil, 0, errors.New("unterminated '[' character class")
				}
				hi = s[i]
				i++
			}
			if hi < lo {
				return nil, 0, fmt.Errorf("range %q-%q is backwards", lo, hi)
			}
			for c := int(lo); c <= int(hi); c++ {
				set[c/8] |= 1 << (c % 8)
			}
			continue
		}
		set[lo/8] |= 1 << (lo % 8)
	}
	if neg {
		for k := range set {
			set[k] = ^set[k]
		}
	}
	set['/'/8] &^= 1 << ('/' % 8) // never a separator
	return &set, i, nil
}

// addClass adds the bytes of a POSIX class ([:alpha:] ...), ASCII only.
func addClass(set *[32]byte, name string) error {
	var in func(c byte) bool
	switch name {
	case "alnum":
		in = func(c byte) bool { return isAlpha(c) || isDigit(c) }
	case "alpha":
		in = isAlpha
	case "blank":
		in = func(c byte) bool { return c == ' ' || c == '\t' }
	case "cntrl":
		in = func(c byte) bool { return c < 0x20 || c == 0x7f }
	case "digit":
		in = isDigit
	case "graph":
		in = func(c byte) bool { return c > 0x20 && c < 0x7f }
	case "lower":
		in = func(c byte) bool { return c >= 'a' && c <= 'z' }
	case "print":
		in = func(c byte) bool { return c >= 0x20 && c < 0x7f }
	case "punct":
		in = func(c byte) bool { return c > 0x20 && c < 0x7f && !isAlpha(c) && !isDigit(c) }
	case "space":
		in = func(c byte) bool { return c == ' ' || (c >= '\t' && c <= '\r') }
	case "upper":
		in = func(c byte) bool { return c >= 'A' && c <= 'Z' }
	case "xdigit":
		in = func(c byte) bool { return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') }
	default:
		return fmt.Errorf("unknown character class [:%s:]", name)
	}
	for c := 0; c < 256; c++ {
		if in(byte(c)) {
			set[c/8] |= 1 << (c % 8)
		}
	}
	return nil
}

func isAlpha(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// Match says what the patterns say of path alone (relative to the rules'
// root, components separated by '/', no leading or trailing '/'); isDir
// says whether it is a directory. It does not look at the parents: see
// Excluded.
func (rs *Rules) Match(path string, isDir bool) Verdict {
	if rs == nil || len(rs.pats) == 0 {
		return None
	}
	comps := splitPath(path)
	for i := len(rs.pats) - 1; i >= 0; i-- {
		p := &rs.pats[i]
		if p.dirOnly && !isDir {
			continue
		}
		if p.matches(comps) {
			if p.negate {
				return Include
			}
			return Exclude
		}
	}
	return None
}

// Excluded reports whether path is left out: it or one of its parent
// directories is excluded (a path beneath an excluded directory cannot be
// included again, as in git).
func (rs *Rules) Excluded(path string, isDir bool) bool {
	if rs == nil || len(rs.pats) == 0 {
		return false
	}
	for i := 0; i < len(path); i++ {
		if path[i] == '/' && i > 0 && rs.Match(path[:i], true) == Exclude {
			return true
		}
	}
	return rs.Match(path, isDir) == Exclude
}

func splitPath(path string) []string {
	path = strings.Trim(path, "/")
	if path == "" {
		return nil
	}
	return strings.Split(path, "/")
}

// matches matches p against the components of a path.
func (p *pattern) matches(comps []string) bool {
	if !p.anchored {
		// A single component (the pattern has no '/'): the last name.
		return len(comps) > 0 && globMatch(p.comps[0], comps[len(comps)-1])
	}
	return matchComps(p.comps, comps)
}

// matchComps matches pattern components (nil: '**') against path
// components, by dynamic programming over both (no exponential
// backtracking on many '**').
func matchComps(pat [][]token, comps []string) bool {
	// ok[j]: pat[i:] matches comps[j:], computed from the end.
	ok := make([]bool, len(comps)+1)
	ok[len(comps)] = true // empty pattern matches empty path
	for i := len(pat) - 1; i >= 0; i-- {
		next := make([]bool, len(comps)+1)
		if pat[i] == nil {
			// '**' takes zero or more components: next[j] = ok[j] || next[j+1].
			// A trailing "**" must take at least one ("a/**" is what is
			// inside a, not a itself).
			trailing := i == len(pat)-1
			for j := len(comps); j >= 0; j-- {
				if !trailing && ok[j] {
					next[j] = true
				}
				if j < len(comps) && (next[j+1] || ok[j+1]) {
					next[j] = true
				}
			}
		} else {
			for j := len(comps) - 1; j >= 0; j-- {
				next[j] = ok[j+1] && globMatch(pat[i], comps[j])
			}
		}
		ok = next
	}
	return ok[0]
}

// globMatch matches one component's tokens against a name, byte by byte:
// the classic greedy algorithm with one backtracking point per '*'
// (linear in practice, O(len(toks)*len(name)) at worst).
func globMatch(toks []token, name string) bool {
	ti, ni := 0, 0
	starT, starN := -1, 0
	for ni < len(name) {
		if ti < len(toks) {
			t := &toks[ti]
			switch t.kind {
			case tStar:
				starT, starN = ti, ni
				ti++
				continue
			case tAny:
				ti++
				ni++
				continue
			case tLit:
				if name[ni] == t.lit {
					ti++
					ni++
					continue
				}
			case tSet:
				c := name[ni]
				if t.set[c/8]&(1<<(c%8)) != 0 {
					ti++
					ni++
					continue
				}
			}
		}
		if starT < 0 {
			return false
		}
		starN++
		ti, ni = starT+1, starN
	}
	for ti < len(toks) && toks[ti].kind == tStar {
		ti++
	}
	return ti == len(toks)
}

// HasNegation reports whether some pattern includes again ('!').
func (rs *Rules) HasNegation() bool {
	if rs == nil {
		return false
	}
	for _, p := range rs.pats {
		if p.negate {
			return true
		}
	}
	return false
}

// Equal reports whether a and b are the same patterns in the same order
// (a change of rules calls for a reconciliation).
func Equal(a, b *Rules) bool {
	return bytes.Equal([]byte(a.String()), []byte(b.String()))
}
