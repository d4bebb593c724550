package bwsched

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzParse: Parse never panics; its errors match ErrSyntax and are one
// line; a schedule it accepts gives its canonical text back, which parses
// to an equal schedule, and At keeps its word (next is later, and the
// limit differs there).
func FuzzParse(f *testing.F) {
	for _, seed := range []struct{ rules, def string }{
		{"Mon-Fri 08:00-18:00 2MiB\nSat,Sun 00:00-24:00 10MiB\n* 22:00-06:00 unlimited", "unlimited"},
		{"Fri-Mon 22:00-06:00 1.5M", "512K"},
		{"Sat,Sun 3MiB/s\n12:00-00:00 1", "0"},
		{"mon,WED,friday 9:05-9:06 1", ""},
		{"Mon 24:00-06:00 1M", "2MB"},
		{"Mon-Fry 08:00-18:00 2MiB", "x"},
		{"* 23:59-24:00 1G", "1048576G"},
		{"Sun-Sat 00:00-00:01 7B", "99999999999999999999"},
	} {
		f.Add(seed.rules, seed.def)
	}
	loc := time.FixedZone("X", 5*3600+45*60)
	instants := []time.Time{
		time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 3, 31, 1, 30, 17, 5, time.UTC),
		time.Date(2024, 10, 27, 23, 59, 59, 999999999, time.UTC),
	}
	f.Fuzz(func(t *testing.T, rules, def string) {
		var list []string
		if rules != "" {
			list = strings.Split(rules, "\n")
		}
		s, err := Parse(list, def, loc)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("error does not match ErrSyntax: %v", err)
			}
			if msg := err.Error(); strings.ContainsAny(msg, "\n\r") || msg == "" {
				t.Errorf("error not on one line: %q", msg)
			}
			return
		}
		if strings.ContainsAny(s.String(), "\n\r") {
			t.Errorf("String() not on one line: %q", s)
		}
		texts, d := s.Texts()
		back, err := Parse(texts, d, loc)
		if err != nil {
			t.Fatalf("canonical text %q, default %q: %v", texts, d, err)
		}
		if !back.Equal(s) || back.String() != s.String() {
			t.Fatalf("round trip: %s, then %s", s, back)
		}
		limits := map[int64]bool{s.Default(): true}
		for _, r := range s.Rules() {
			limits[r.Limit] = true
			if back, err := ParseRule(r.String()); err != nil || back != r {
				t.Errorf("ParseRule(%q) = %+v, %v; want %+v", r.String(), back, err, r)
			}
		}
		for _, tm := range instants {
			l, next := s.At(tm)
			if !limits[l] {
				t.Errorf("At(%s) = %d: no rule's limit", tm, l)
			}
			if next.IsZero() {
				continue
			}
			if !next.After(tm) || next.Sub(tm) > 8*24*time.Hour {
				t.Errorf("At(%s): next %s", tm, next)
			}
			if l2, _ := s.At(next); l2 == l {
				t.Errorf("At(%s) = %d till %s, where it is the same", tm, l, next)
			}
			if l2, _ := s.At(next.Add(-time.Nanosecond)); l2 != l {
				t.Errorf("At(%s) = %d till %s, but %d just before", tm, l, next, l2)
			}
		}
	})
}
