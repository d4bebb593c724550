package rules

import (
	"strings"
	"testing"
)

// naiveGlob is a plain recursive matcher of tokens against a name, the
// reference globMatch is checked against (exponential, fine on the short
// inputs the fuzzer gives it).
func naiveGlob(toks []token, name string) bool {
	if len(toks) == 0 {
		return name == ""
	}
	t := toks[0]
	switch t.kind {
	case tStar:
		for i := 0; i <= len(name); i++ {
			if naiveGlob(toks[1:], name[i:]) {
				return true
			}
		}
		return false
	case tAny:
		return name != "" && naiveGlob(toks[1:], name[1:])
	case tLit:
		return name != "" && name[0] == t.lit && naiveGlob(toks[1:], name[1:])
	default:
		return name != "" && t.set[name[0]/8]&(1<<(name[0]%8)) != 0 && naiveGlob(toks[1:], name[1:])
	}
}

// naiveComps is matchComps by plain recursion.
func naiveComps(pat [][]token, comps []string) bool {
	if len(pat) == 0 {
		return len(comps) == 0
	}
	if pat[0] == nil {
		from := 0
		if len(pat) == 1 {
			from = 1 // a trailing "**" takes at least one
		}
		for k := from; k <= len(comps); k++ {
			if naiveComps(pat[1:], comps[k:]) {
				return true
			}
		}
		return false
	}
	return len(comps) > 0 && naiveGlob(pat[0], comps[0]) && naiveComps(pat[1:], comps[1:])
}

// FuzzRules: parsing never panics; a pattern that parses matches paths as
// the plain recursive reference does; a literal name matches itself.
func FuzzRules(f *testing.F) {
	for _, s := range [][2]string{
		{"*.tmp", "a/b.tmp"}, {"a/**/b", "a/x/b"}, {"!x\n*", "x"}, {"[a-c]?", "b\xff"},
		{"**/[[:digit:]]*", "d/7"}, {`\#\ `, "# "}, {"a/**", "a/b/c"}, {"[!/]", "x"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, text, path string) {
		if len(text) > 256 || len(path) > 256 {
			return
		}
		rs, err := Parse(strings.NewReader(text), "fuzz")
		if err != nil {
			return
		}
		dir := len(path)%2 == 0
		got := rs.Match(path, dir)
		rs.Excluded(path, dir)
		// The reference verdict: the last pattern that matches.
		want := None
		comps := splitPath(path)
		for i := len(rs.pats) - 1; i >= 0; i-- {
			p := &rs.pats[i]
			if p.dirOnly && !dir {
				continue
			}
			var m bool
			if !p.anchored {
				m = len(comps) > 0 && naiveGlob(p.comps[0], comps[len(comps)-1])
			} else {
				m = naiveComps(p.comps, comps)
			}
			if m {
				want = Exclude
				if p.negate {
					want = Include
				}
				break
			}
		}
		if got != want {
			t.Fatalf("rules %q, path %q: %v, reference %v", text, path, got, want)
		}
		// A name with no special bytes, as a pattern, matches itself.
		if name := comps; len(name) == 1 && !strings.ContainsAny(name[0], "*?[\\!# /\r\n") && name[0] != "**" {
			lit, err := New([]string{name[0]}, "lit")
			if err != nil {
				t.Fatalf("literal %q: %v", name[0], err)
			}
			if !lit.Excluded(path, false) {
				t.Fatalf("literal %q does not match itself", name[0])
			}
		}
	})
}
