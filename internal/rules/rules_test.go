package rules

import (
	"errors"
	"strings"
	"testing"
)

func mustNew(t *testing.T, pats ...string) *Rules {
	t.Helper()
	rs, err := New(pats, "test")
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestExcluded(t *testing.T) {
	for _, tc := range []struct {
		pats  []string
		path  string
		dir   bool
		want  bool
		about string
	}{
		{[]string{"*.tmp"}, "a.tmp", false, true, "unanchored at the top"},
		{[]string{"*.tmp"}, "x/y/a.tmp", false, true, "unanchored at depth"},
		{[]string{"*.tmp"}, "x/a.tmp/b", false, true, "beneath an excluded directory"},
		{[]string{"*.tmp"}, "a.tmpx", false, false, "no partial name match"},
		{[]string{"/build"}, "build", true, true, "anchored"},
		{[]string{"/build"}, "src/build", true, false, "anchored: not at depth"},
		{[]string{"doc/out"}, "doc/out", true, true, "middle slash anchors"},
		{[]string{"doc/out"}, "x/doc/out", true, false, "middle slash anchors: not at depth"},
		{[]string{"cache/"}, "cache", true, true, "directory only: a directory"},
		{[]string{"cache/"}, "cache", false, false, "directory only: not a file"},
		{[]string{"cache/"}, "a/cache/f", false, true, "directory only: beneath it"},
		{[]string{"**/logs"}, "logs", true, true, "leading **: top"},
		{[]string{"**/logs"}, "a/b/logs", true, true, "leading **: depth"},
		{[]string{"**/logs/*.log"}, "a/logs/x.log", false, true, "leading ** then more"},
		{[]string{"a/**"}, "a", true, false, "trailing **: not a itself"},
		{[]string{"a/**"}, "a/x", false, true, "trailing **: inside"},
		{[]string{"a/**"}, "a/x/y", false, true, "trailing **: deep inside"},
		{[]string{"a/**/b"}, "a/b", true, true, "middle **: zero dirs"},
		{[]string{"a/**/b"}, "a/x/y/b", true, true, "middle **: many dirs"},
		{[]string{"a/**/b"}, "a/x/y/c", true, false, "middle **: other name"},
		{[]string{"**"}, "anything/at/all", false, true, "lone **"},
		{[]string{"*.log", "!keep.log"}, "keep.log", false, false, "negation"},
		{[]string{"*.log", "!keep.log"}, "d/keep.log", false, false, "negation at depth"},
		{[]string{"*.log", "!keep.log"}, "other.log", false, true, "negation: others still out"},
		{[]string{"dir/", "!dir/keep"}, "dir/keep", false, true, "no re-include beneath an excluded directory"},
		{[]string{"dir/*", "!dir/keep"}, "dir/keep", false, false, "re-include when only the contents are excluded"},
		{[]string{"!x", "x"}, "x", false, true, "the last match decides"},
		{[]string{"f?o"}, "foo", false, true, "?"},
		{[]string{"f?o"}, "f/o", false, false, "? never matches /"},
		{[]string{"f[a-c]o"}, "fbo", false, true, "range"},
		{[]string{"f[!a-c]o"}, "fbo", false, false, "negated range"},
		{[]string{"f[^a-c]o"}, "fdo", false, true, "^ negates too"},
		{[]string{"f[]]o"}, "f]o", false, true, "] first in a set"},
		{[]string{"[[:digit:]]*"}, "7up", false, true, "class"},
		{[]string{`\#x`}, "#x", false, true, "quoted #"},
		{[]string{`\!x`}, "!x", false, true, "quoted !"},
		{[]string{`a\*b`}, "a*b", false, true, "quoted *"},
		{[]string{`a\*b`}, "axb", false, false, "quoted * is literal"},
		{[]string{"trail  "}, "trail", false, true, "trailing spaces dropped"},
		{[]string{`trail\ `}, "trail ", false, true, "quoted trailing space kept"},
		{[]string{"# comment", "", "x"}, "x", false, true, "comments and blanks"},
		{[]string{"\xff*"}, "\xffname\xfe", false, true, "non-UTF-8 bytes"},
		{[]string{"?"}, "\xc3\xa9", false, false, "? is one byte (é is two)"},
		{[]string{"??"}, "\xc3\xa9", false, true, "two bytes"},
		{[]string{"[\x80-\xff]x"}, "\xe9x", false, true, "byte range above ASCII"},
		{[]string{"a b"}, "a b", false, true, "spaces inside"},
		{[]string{"*\n*"}, "", false, false, "(refused below)"},
	} {
		if strings.Contains(strings.Join(tc.pats, ""), "\n") {
			continue
		}
		rs := mustNew(t, tc.pats...)
		if got := rs.Excluded(tc.path, tc.dir); got != tc.want {
			t.Errorf("%s: %q Excluded(%q, dir=%v) = %v, want %v", tc.about, tc.pats, tc.path, tc.dir, got, tc.want)
		}
	}
}

func TestParseFile(t *testing.T) {
	rs, err := Parse(strings.NewReader("# georep rules\n*.o\r\n\n!keep.o\n/build/\n"), "/m/.georepignore")
	if err != nil {
		t.Fatal(err)
	}
	if rs.Len() != 3 {
		t.Fatalf("%d patterns, want 3", rs.Len())
	}
	if !rs.Excluded("x/a.o", false) || rs.Excluded("keep.o", false) || !rs.Excluded("build/x", false) || rs.Excluded("src/build", true) {
		t.Fatal("wrong verdicts")
	}
}

func TestSyntaxErrors(t *testing.T) {
	for _, tc := range []struct{ pat, reason string }{
		{"[abc", "unterminated"},
		{"a\\", "unquoting"},
		{"!", "nothing after"},
		{"/", "matches nothing"},
		{"a//b", "empty path component"},
		{"[z-a]", "backwards"},
		{"[[:nope:]]", "unknown character class"},
		{strings.Repeat("x", MaxPatternLen+1), "longer than"},
	} {
		_, err := Parse(strings.NewReader("ok\n"+tc.pat+"\n"), "rules.txt")
		var se *SyntaxError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.reason) || !strings.HasPrefix(err.Error(), "rules.txt:2: ") {
			t.Errorf("%.20q: error %v; want a SyntaxError at rules.txt:2 saying %q", tc.pat, err, tc.reason)
		}
	}
	if _, err := New([]string{"a\nb"}, "--exclude"); err == nil {
		t.Error("a pattern with a newline was accepted")
	}
}

// TestManyStarsLinear: patterns that make a backtracking matcher
// exponential stay fast (fuzzing would time out otherwise).
func TestManyStarsLinear(t *testing.T) {
	pat := strings.Repeat("*a", 40) + "b"
	name := strings.Repeat("a", 4000)
	rs := mustNew(t, pat, strings.Repeat("**/", 40)+"z")
	if rs.Excluded(name, false) {
		t.Fatal("matched")
	}
	if rs.Excluded(strings.Repeat("d/", 1000)+"y", false) {
		t.Fatal("matched")
	}
}

func TestNilRules(t *testing.T) {
	var rs *Rules
	if rs.Excluded("x", false) || rs.Match("x", true) != None || rs.Len() != 0 || rs.HasNegation() {
		t.Fatal("nil rules exclude")
	}
	both := rs.Then(mustNew(t, "x"))
	if !both.Excluded("x", false) {
		t.Fatal("Then lost the patterns")
	}
}
