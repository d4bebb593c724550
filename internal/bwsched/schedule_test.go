package bwsched

import (
	"errors"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the DST tests need real zones, whatever the host has
)

const (
	KiB = 1 << 10
	MiB = 1 << 20
	GiB = 1 << 30
)

func TestParseLimit(t *testing.T) {
	good := []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"unlimited", 0}, {"Unlimited", 0}, {" 0B ", 0}, {"0MiB", 0},
		{"1", 1}, {"100", 100}, {"100B", 100}, {"100b", 100}, {"100B/s", 100},
		{"1K", KiB}, {"1k", KiB}, {"1KiB", KiB}, {"1kib", KiB}, {"1KiB/s", KiB},
		{"2M", 2 * MiB}, {"2MiB", 2 * MiB}, {"2mib/S", 2 * MiB},
		{"3G", 3 * GiB}, {"3GiB", 3 * GiB},
		{"1.5MiB", 3 * MiB / 2}, {"0.5K", 512}, {"1.0", 1}, {"007K", 7 * KiB},
		{"1048576G", 1 << 50},
	}
	for _, c := range good {
		got, err := ParseLimit(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseLimit(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	bad := []struct{ in, want string }{
		{"", "want a number"},
		{"MiB", "want a number"},
		{"-1", "want a number"},
		{"1.", "want a number"},
		{".5", "want a number"},
		{"1.2.3", "want a number"},
		{"1e6", `unknown unit "e6"`},
		{"0x10", `unknown unit "x10"`},
		{"inf", "want a number"},
		{"NaN", "want a number"},
		{"2MB", `unit "MB" is ambiguous`},
		{"2 MiB", `unknown unit " MiB"`},
		{"2TiB", `unknown unit "TiB"`},
		{"2Mbit", `unknown unit "Mbit"`},
		{"1048577G", "more than 1 PiB/s"},
		{strings.Repeat("9", 400), "more than 1 PiB/s"},
		{"0.4", "less than 1 byte/s"},
		{"unlimited/s", "want a number"},
	}
	for _, c := range bad {
		got, err := ParseLimit(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseLimit(%q) = %d, %v; want an ErrSyntax with %q", c.in, got, err, c.want)
		}
	}
}

func TestFormatLimit(t *testing.T) {
	for n, want := range map[int64]string{
		0: "unlimited", -5: "unlimited", 1: "1B/s", 1023: "1023B/s", KiB: "1KiB/s",
		3 * MiB / 2: "1536KiB/s", 2 * MiB: "2MiB/s", 10 * GiB: "10GiB/s", GiB + 1: "1073741825B/s",
	} {
		if got := FormatLimit(n); got != want {
			t.Errorf("FormatLimit(%d) = %q, want %q", n, got, want)
		}
		if n > 0 {
			if back, err := ParseLimit(FormatLimit(n)); err != nil || back != n {
				t.Errorf("ParseLimit(FormatLimit(%d)) = %d, %v", n, back, err)
			}
		}
	}
}

func days(ws ...time.Weekday) Days {
	var d Days
	for _, w := range ws {
		d |= 1 << uint(w)
	}
	return d
}

const (
	sun = time.Sunday
	mon = time.Monday
	tue = time.Tuesday
	wed = time.Wednesday
	thu = time.Thursday
	fri = time.Friday
	sat = time.Saturday
)

func TestParseRule(t *testing.T) {
	weekdays := days(mon, tue, wed, thu, fri)
	cases := []struct {
		in    string
		want  Rule
		canon string
	}{
		{"Mon-Fri 08:00-18:00 2MiB", Rule{weekdays, 8 * 60, 18 * 60, 2 * MiB}, "Mon-Fri 08:00-18:00 2MiB"},
		{"Sat,Sun 00:00-24:00 10MiB", Rule{days(sat, sun), 0, 24 * 60, 10 * MiB}, "Sat,Sun 00:00-24:00 10MiB"},
		{"* 22:00-06:00 unlimited", Rule{AllDays, 22 * 60, 6 * 60, 0}, "* 22:00-06:00 unlimited"},
		{"  *\t22:00-06:00   0 ", Rule{AllDays, 22 * 60, 6 * 60, 0}, "* 22:00-06:00 unlimited"},
		{"Fri-Mon 20:30-02:15 512K", Rule{days(fri, sat, sun, mon), 20*60 + 30, 2*60 + 15, 512 * KiB}, "Fri-Mon 20:30-02:15 512KiB"},
		{"mon,WED,friday 9:05-9:06 1", Rule{days(mon, wed, fri), 9*60 + 5, 9*60 + 6, 1}, "Mon,Wed,Fri 09:05-09:06 1B"},
		{"Sunday-Tuesday 00:00-00:01 1G", Rule{days(sun, mon, tue), 0, 1, GiB}, "Sun-Tue 00:00-00:01 1GiB"},
		{"Mon-Mon 12:00-13:00 1M", Rule{days(mon), 12 * 60, 13 * 60, MiB}, "Mon 12:00-13:00 1MiB"},
		{"Tue-Mon 12:00-13:00 1M", Rule{AllDays, 12 * 60, 13 * 60, MiB}, "* 12:00-13:00 1MiB"},
		{"Sat-Sun,Mon 12:00-13:00 1M", Rule{days(sat, sun, mon), 12 * 60, 13 * 60, MiB}, "Sat-Mon 12:00-13:00 1MiB"},
		{"Sun,Mon 12:00-13:00 1M", Rule{days(sun, mon), 12 * 60, 13 * 60, MiB}, "Mon,Sun 12:00-13:00 1MiB"},
		{"Sun,Tue,Thu,Sat 12:00-13:00 1M", Rule{days(sun, tue, thu, sat), 12 * 60, 13 * 60, MiB}, "Tue,Thu,Sat,Sun 12:00-13:00 1MiB"},
		{"Mon,Mon 22:00-00:00 1M", Rule{days(mon), 22 * 60, 0, MiB}, "Mon 22:00-00:00 1MiB"},
		{"23:59-24:00 1M", Rule{AllDays, 23*60 + 59, 24 * 60, MiB}, "* 23:59-24:00 1MiB"},
		{"Sat,Sun 3MiB/s", Rule{days(sat, sun), 0, 24 * 60, 3 * MiB}, "Sat,Sun 00:00-24:00 3MiB"},
		{"12:00-00:00 1.5M", Rule{AllDays, 12 * 60, 0, 3 * MiB / 2}, "* 12:00-00:00 1536KiB"},
	}
	for _, c := range cases {
		got, err := ParseRule(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseRule(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		if s := got.String(); s != c.canon {
			t.Errorf("ParseRule(%q).String() = %q, want %q", c.in, s, c.canon)
		}
		if back, err := ParseRule(got.String()); err != nil || back != got {
			t.Errorf("ParseRule(%q) = %+v, %v; want %+v", got.String(), back, err, got)
		}
	}
}

func TestParseBad(t *testing.T) {
	cases := []struct{ rule, want string }{
		{"", "empty rule"},
		{"   ", "empty rule"},
		{"2MiB", "one word is not enough"},
		{"Mon-Fri 08:00-18:00 2MiB extra", "4 words is too many"},
		{"Mon-Fry 08:00-18:00 2MiB", `unknown day "Fry"`},
		{"Mon-Fri 08:00-18:00 2MB", `unit "MB" is ambiguous`},
		{"Mon-Fri 08:00-18:00 fast", `limit "fast"`},
		{"Mon, Fri 08:00-18:00 1M", "4 words is too many"},
		{"Mon 08:00-18:00", `"08:00-18:00" is not a limit`},
		{"08:00-18:00", "one word"},
		{"Mon,,Fri 08:00-18:00 1M", "missing day"},
		{"Mon, 08:00-18:00 1M", "missing day"},
		{"-Fri 08:00-18:00 1M", "missing day"},
		{"Mon-Fri-Sat 08:00-18:00 1M", `unknown day "Fri-Sat"`},
		{"*,Mon 08:00-18:00 1M", `unknown day "*"`},
		{"Mon 08:00 1M", `time range "08:00": want HH:MM-HH:MM`},
		{"Mon 08-18 1M", `"08" is not a time HH:MM`},
		{"Mon 8:0-18:00 1M", `"8:0" is not a time`},
		{"Mon 008:00-18:00 1M", `"008:00" is not a time`},
		{"Mon 08:00-18:00-20:00 1M", `"18:00-20:00" is not a time`},
		{"Mon 08:60-18:00 1M", "minutes past 59"},
		{"Mon 25:00-26:00 1M", "hours past 23"},
		{"Mon 08:00-24:01 1M", "hours past 23"},
		{"Mon 24:00-06:00 1M", "24:00 may only end a range"},
		{"Mon 08:00-08:00 1M", "is empty (use 00:00-24:00"},
		{"Mon 00:00-00:00 1M", "is empty"},
		{"Mon +8:00-18:00 1M", "not a time"},
		{"Mon 08:00-18:00 -1M", "want a number"},
		{"Mon 08:00-18:00 1e3", "unknown unit"},
		{"Mon\n08:00-18:00\n2MB", `unit "MB" is ambiguous`},
	}
	for _, c := range cases {
		_, err := Parse([]string{"* 00:00-24:00 1M", c.rule}, "unlimited", time.UTC)
		if err == nil {
			t.Errorf("Parse(%q): no error, want %q", c.rule, c.want)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.want) || !errors.Is(err, ErrSyntax) ||
			!strings.HasPrefix(msg, "rule 2 ") || strings.ContainsAny(msg, "\n\r") {
			t.Errorf("Parse(%q): %q; want one line starting \"rule 2\", with %q, matching ErrSyntax", c.rule, msg, c.want)
		}
		if _, err := ParseRule(c.rule); err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "rule \"") {
			t.Errorf("ParseRule(%q): %v; want \"rule ...\" with %q", c.rule, err, c.want)
		}
	}
	if _, err := Parse(nil, "2MB", nil); err == nil || err.Error() != `default: limit "2MB": unit "MB" is ambiguous (use KiB, MiB, GiB: powers of 1024)` {
		t.Errorf("bad default: %v", err)
	}
	if _, err := Parse([]string{"Mon-Fry 08:00-18:00 2MiB"}, "", nil); err == nil ||
		err.Error() != `rule 1 "Mon-Fry 08:00-18:00 2MiB": unknown day "Fry" (want Mon, Tue, Wed, Thu, Fri, Sat, Sun, a range such as Mon-Fri, or *)` {
		t.Errorf("bad day: %v", err)
	}
	// New checks rules made by hand.
	for _, r := range []Rule{
		{Days: 0, Start: 0, End: 60, Limit: 1},
		{Days: 1 << 7, Start: 0, End: 60, Limit: 1},
		{Days: AllDays, Start: -1, End: 60, Limit: 1},
		{Days: AllDays, Start: 1440, End: 60, Limit: 1},
		{Days: AllDays, Start: 0, End: 1441, Limit: 1},
		{Days: AllDays, Start: 60, End: 60, Limit: 1},
		{Days: AllDays, Start: 0, End: 60, Limit: -1},
		{Days: AllDays, Start: 0, End: 60, Limit: MaxLimit + 1},
	} {
		if _, err := New([]Rule{r}, 0, nil); err == nil || !errors.Is(err, ErrSyntax) {
			t.Errorf("New(%+v): %v, want an ErrSyntax", r, err)
		}
	}
	if _, err := New(nil, -1, nil); err == nil {
		t.Error("New with a negative default: no error")
	}
}

// week is the Monday 2024-01-01 (UTC).
var week = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// at is day d (0: Monday) of week, at h:m:s.
func at(d, h, m, s int) time.Time {
	return week.Add(time.Duration(d)*24*time.Hour + time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second)
}

func mustParse(t testing.TB, rules []string, def string, loc *time.Location) *Schedule {
	t.Helper()
	s, err := Parse(rules, def, loc)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAt(t *testing.T) {
	s := mustParse(t, []string{
		"Mon-Fri 08:00-18:00 2MiB",
		"Fri-Mon 22:00-06:00 1MiB", // starts Fri, Sat, Sun, Mon; ends Sat..Tue
		"Sat,Sun 10MiB",            // after the previous: it wins at night
	}, "512KiB", time.UTC)
	cases := []struct {
		t     time.Time
		limit int64
		next  time.Time
	}{
		{at(0, 0, 0, 0), MiB, at(0, 6, 0, 0)}, // Sunday's night, into Monday
		{at(0, 5, 59, 59), MiB, at(0, 6, 0, 0)},
		{at(0, 6, 0, 0), 512 * KiB, at(0, 8, 0, 0)},
		{at(0, 7, 59, 59), 512 * KiB, at(0, 8, 0, 0)},
		{at(0, 8, 0, 0), 2 * MiB, at(0, 18, 0, 0)},
		{at(0, 17, 59, 59).Add(999999999), 2 * MiB, at(0, 18, 0, 0)},
		{at(0, 18, 0, 0), 512 * KiB, at(0, 22, 0, 0)},
		{at(0, 23, 0, 0), MiB, at(1, 6, 0, 0)}, // Monday is in Fri-Mon: till Tuesday 06:00
		{at(1, 5, 59, 0), MiB, at(1, 6, 0, 0)},
		{at(1, 6, 0, 0), 512 * KiB, at(1, 8, 0, 0)},
		{at(1, 22, 0, 0), 512 * KiB, at(2, 8, 0, 0)}, // Tuesday is not
		{at(2, 3, 0, 0), 512 * KiB, at(2, 8, 0, 0)},
		{at(4, 17, 0, 0), 2 * MiB, at(4, 18, 0, 0)},
		{at(4, 18, 0, 0), 512 * KiB, at(4, 22, 0, 0)},
		{at(4, 22, 30, 0), MiB, at(5, 6, 0, 0)},     // Friday night to Saturday 06:00: the wrap wins over Sat
		{at(5, 6, 0, 0), 10 * MiB, at(5, 22, 0, 0)}, // Saturday
		{at(5, 23, 0, 0), MiB, at(6, 6, 0, 0)},      // first match: the night rule
		{at(6, 12, 0, 0), 10 * MiB, at(6, 22, 0, 0)},
		{at(6, 23, 0, 0), MiB, at(7, 6, 0, 0)}, // Sunday night into next week's Monday
		{at(6, 23, 59, 59), MiB, at(7, 6, 0, 0)},
		{at(7, 6, 0, 0), 512 * KiB, at(7, 8, 0, 0)},
		{at(-364, 8, 0, 0), 2 * MiB, at(-364, 18, 0, 0)}, // 2023-01-02, a Monday
	}
	for _, c := range cases {
		limit, next := s.At(c.t)
		if limit != c.limit || !next.Equal(c.next) {
			t.Errorf("At(%s) = %s, %s; want %s, %s", c.t.Format("Mon 2006-01-02 15:04:05.999"),
				FormatLimit(limit), next.Format("Mon 15:04"), FormatLimit(c.limit), c.next.Format("Mon 15:04"))
		}
	}
	// The same instants in another zone give the same answers: At reads
	// the schedule's zone, not t's.
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		limit, next := s.At(c.t.In(ny))
		if limit != c.limit || !next.Equal(c.next) {
			t.Errorf("At(%s) = %s, %s; want %s, %s", c.t.In(ny), FormatLimit(limit), next, FormatLimit(c.limit), c.next)
		}
	}
}

func TestAtMerges(t *testing.T) {
	cases := []struct {
		rules []string
		def   string
		t     time.Time
		limit int64
		next  time.Time
	}{
		// Two rules with one limit make one change.
		{[]string{"Mon 08:00-12:00 1M", "Mon 12:00-18:00 1M"}, "", at(0, 9, 0, 0), MiB, at(0, 18, 0, 0)},
		// A rule with the default's limit makes none.
		{[]string{"Mon 08:00-12:00 1M", "Mon 12:00-18:00 2M"}, "1M", at(0, 0, 0, 0), MiB, at(0, 12, 0, 0)},
		// Rules over the whole week with one limit: never a change.
		{[]string{"* 22:00-06:00 1M", "* 06:00-22:00 1M"}, "", at(3, 1, 2, 3), MiB, time.Time{}},
		{[]string{"Mon-Sun 1M"}, "5M", at(3, 1, 2, 3), MiB, time.Time{}},
		{[]string{"Tue 1M"}, "1M", at(3, 1, 2, 3), MiB, time.Time{}},
		{nil, "", at(3, 1, 2, 3), 0, time.Time{}},
		{nil, "7M", at(3, 1, 2, 3), 7 * MiB, time.Time{}},
		// Shadowed: the second rule never applies.
		{[]string{"* 1M", "Mon 08:00-09:00 2M"}, "", at(0, 8, 30, 0), MiB, time.Time{}},
		// One change a week, a week ahead.
		{[]string{"Mon 08:00-09:00 2M"}, "", at(0, 9, 0, 0), 0, at(7, 8, 0, 0)},
		{[]string{"Mon 08:00-09:00 2M"}, "", at(0, 8, 59, 0), 2 * MiB, at(0, 9, 0, 0)},
		// Round the week: Sunday night to Monday and on.
		{[]string{"Sun 00:00-24:00 1M", "Mon 00:00-24:00 1M"}, "", at(6, 0, 0, 0), MiB, at(8, 0, 0, 0)},
		{[]string{"Sun 00:00-24:00 1M", "Mon 00:00-24:00 1M"}, "", at(1, 0, 0, 0), 0, at(6, 0, 0, 0)},
	}
	for _, c := range cases {
		s := mustParse(t, c.rules, c.def, time.UTC)
		limit, next := s.At(c.t)
		if limit != c.limit || !next.Equal(c.next) {
			t.Errorf("%q default %q: At(%s) = %s, %s; want %s, %s", c.rules, c.def, c.t.Format(time.DateTime),
				FormatLimit(limit), next, FormatLimit(c.limit), c.next)
		}
	}
	if l, n := Fixed(3 * MiB).At(time.Now()); l != 3*MiB || !n.IsZero() {
		t.Errorf("Fixed(3MiB).At = %d, %s", l, n)
	}
	if l, n := Fixed(-3).At(time.Now()); l != 0 || !n.IsZero() {
		t.Errorf("Fixed(-3).At = %d, %s", l, n)
	}
	var nilSched *Schedule
	if l, n := nilSched.At(time.Now()); l != 0 || !n.IsZero() || nilSched.String() != "default unlimited" {
		t.Errorf("nil.At = %d, %s", l, n)
	}
	if l, n := new(Schedule).At(time.Now()); l != 0 || !n.IsZero() || new(Schedule).String() != "default unlimited" {
		t.Errorf("zero Schedule: At = %d, %s", l, n)
	}
}

func berlin(t testing.TB) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no tzdata: %v", err)
	}
	return loc
}

func TestAtDST(t *testing.T) {
	loc := berlin(t)
	utc := func(mo time.Month, d, h, m int) time.Time { return time.Date(2024, mo, d, h, m, 0, 0, time.UTC) }
	s := mustParse(t, []string{"* 02:30-04:00 1MiB", "Sun 08:00-09:00 2MiB"}, "unlimited", loc)
	cases := []struct {
		t     time.Time
		limit int64
		next  time.Time
	}{
		// 2024-03-31: at 01:00 UTC the clocks go from 02:00 CET to 03:00
		// CEST; 02:30 does not happen, and the range starts at 03:00.
		{utc(3, 31, 0, 59), 0, utc(3, 31, 1, 0)},
		{utc(3, 31, 1, 0), MiB, utc(3, 31, 2, 0)}, // 03:00 CEST, to 04:00 CEST
		{utc(3, 31, 2, 0), 0, utc(3, 31, 6, 0)},   // 08:00 CEST
		{utc(3, 31, 6, 30), 2 * MiB, utc(3, 31, 7, 0)},
		{utc(3, 30, 1, 30), MiB, utc(3, 30, 3, 0)}, // the day before: 02:30 CET
		// 2024-10-27: at 01:00 UTC the clocks go from 03:00 CEST back to
		// 02:00 CET; 02:30 happens twice, and so does the range's start.
		{utc(10, 27, 0, 0), 0, utc(10, 27, 0, 30)},   // 02:00 CEST
		{utc(10, 27, 0, 30), MiB, utc(10, 27, 1, 0)}, // 02:30 CEST, until the clocks go back
		{utc(10, 27, 1, 0), 0, utc(10, 27, 1, 30)},   // 02:00 CET
		{utc(10, 27, 1, 30), MiB, utc(10, 27, 3, 0)}, // 02:30 CET, to 04:00 CET
		{utc(10, 27, 3, 0), 0, utc(10, 27, 7, 0)},    // Sunday 08:00 CET
	}
	for _, c := range cases {
		limit, next := s.At(c.t)
		if limit != c.limit || !next.Equal(c.next) {
			t.Errorf("At(%s) = %s, %s; want %s, %s", c.t.In(loc).Format("Mon 01-02 15:04 MST"),
				FormatLimit(limit), next.In(loc).Format("Mon 01-02 15:04 MST"), FormatLimit(c.limit), c.next.In(loc).Format("Mon 01-02 15:04 MST"))
		}
	}
	// A change of the clocks with one limit either side is no change.
	s = mustParse(t, []string{"* 00:00-12:00 1MiB"}, "unlimited", loc)
	if l, n := s.At(utc(3, 30, 23, 30)); l != MiB || !n.Equal(utc(3, 31, 10, 0)) {
		t.Errorf("over the spring change: %s, %s; want 1MiB/s till 12:00 CEST", FormatLimit(l), n.In(loc))
	}
	if l, n := s.At(utc(10, 26, 22, 30)); l != MiB || !n.Equal(utc(10, 27, 11, 0)) {
		t.Errorf("over the autumn change: %s, %s; want 1MiB/s till 12:00 CET", FormatLimit(l), n.In(loc))
	}
	if got := s.String(); got != "* 00:00-12:00 1MiB; default unlimited (Europe/Berlin)" {
		t.Errorf("String() = %q", got)
	}
}

// oracle gives the limit of rules at t in loc the plain way: the wall
// clock's day and minute, and the first rule whose range, started on
// that day or the day before, holds it.
func oracle(rules []Rule, def int64, loc *time.Location, t time.Time) int64 {
	wt := t.In(loc)
	m := wt.Hour()*60 + wt.Minute()
	for _, r := range rules {
		dur := r.End - r.Start
		if dur <= 0 {
			dur += 24 * 60
		}
		for back := 0; back < 2; back++ {
			day := time.Weekday((int(wt.Weekday()) + 7 - back) % 7)
			since := m + back*24*60 // minutes since the start of that day
			if r.Days&(1<<uint(day)) != 0 && since >= r.Start && since < r.Start+dur {
				return r.Limit
			}
		}
	}
	return def
}

// TestNextBruteForce steps through weeks minute by minute, in zones with
// and without daylight saving time (and with half-hour shifts), and
// checks At against the oracle: the limit at each minute, and that next
// is the first minute whose limit differs.
func TestNextBruteForce(t *testing.T) {
	schedules := []struct {
		rules []string
		def   string
	}{
		{[]string{"Mon-Fri 08:00-18:00 2MiB", "Sat,Sun 00:00-24:00 10MiB", "* 22:00-06:00 unlimited"}, "1MiB"},
		{[]string{"Fri-Mon 22:00-06:00 1MiB", "Mon-Fri 08:00-18:00 2MiB", "Sat,Sun 10MiB"}, "512KiB"},
		{[]string{"* 02:00-02:30 1M", "* 02:30-03:00 2M", "Sun 01:59-03:01 3M", "Sat 23:00-00:00 1M"}, "unlimited"},
		{[]string{"Mon 08:00-12:00 1M", "Mon 12:00-18:00 1M", "Wed 00:00-24:00 3M", "Thu 00:00-24:00 3M"}, "0"},
		{[]string{"Sun 12:00-11:59 5M"}, "0"}, // a day less a minute, over midnight
		{[]string{"* 1M"}, "0"},               // constant
	}
	// Weeks in zones without a change of the clocks, and weeks that hold
	// one (forward or back, by an hour or by half an hour).
	weeks := []struct {
		zone  string
		start time.Time
	}{
		{"UTC", time.Date(2024, 1, 8, 0, 0, 0, 0, time.UTC)},
		{"Asia/Kathmandu", time.Date(2024, 1, 8, 0, 0, 0, 0, time.UTC)},       // +05:45
		{"Europe/Berlin", time.Date(2024, 3, 27, 0, 0, 0, 0, time.UTC)},       // forward on 03-31
		{"Europe/Berlin", time.Date(2024, 10, 24, 0, 0, 0, 0, time.UTC)},      // back on 10-27
		{"America/St_Johns", time.Date(2024, 3, 8, 0, 0, 0, 0, time.UTC)},     // -03:30, forward on 03-10
		{"America/St_Johns", time.Date(2024, 11, 1, 0, 0, 0, 0, time.UTC)},    // back on 11-03
		{"Australia/Lord_Howe", time.Date(2024, 4, 4, 0, 0, 0, 0, time.UTC)},  // back half an hour on 04-07
		{"Australia/Lord_Howe", time.Date(2024, 10, 4, 0, 0, 0, 0, time.UTC)}, // forward half an hour on 10-06
	}
	if testing.Short() {
		weeks = weeks[2:4]
	}
	const week = 7 * 24 * 60
	for _, wk := range weeks {
		t.Run(wk.zone+"/"+wk.start.Format("01-02"), func(t *testing.T) {
			t.Parallel()
			loc, err := time.LoadLocation(wk.zone)
			if err != nil {
				t.Skipf("no tzdata: %v", err)
			}
			for _, sc := range schedules {
				s := mustParse(t, sc.rules, sc.def, loc)
				start := wk.start
				// Limits by the oracle over the week and the week after
				// (where the next change of the last minute may be), and
				// for each minute the first later minute that differs
				// (-1: none).
				n := 2*week + 60
				lim := make([]int64, n)
				for i := range lim {
					lim[i] = oracle(s.Rules(), s.Default(), loc, start.Add(time.Duration(i)*time.Minute))
				}
				diff := make([]int, n)
				diff[n-1] = -1
				for i := n - 2; i >= 0; i-- {
					if lim[i+1] != lim[i] {
						diff[i] = i + 1
					} else {
						diff[i] = diff[i+1]
					}
				}
				bad := 0
				for i := 0; i < week && bad < 5; i++ {
					// Within the minute, at a second that varies.
					tm := start.Add(time.Duration(i)*time.Minute + time.Duration(i*7919%60)*time.Second)
					l, next := s.At(tm)
					var want time.Time
					if diff[i] >= 0 {
						want = start.Add(time.Duration(diff[i]) * time.Minute)
					}
					if l != lim[i] || !next.Equal(want) {
						bad++
						t.Errorf("%q: At(%s) = %s, %s; want %s, %s", sc.rules, tm.In(loc).Format("Mon 01-02 15:04:05 MST"),
							FormatLimit(l), next.In(loc).Format("Mon 01-02 15:04 MST"), FormatLimit(lim[i]), want.In(loc).Format("Mon 01-02 15:04 MST"))
					}
				}
			}
		})
	}
}

func TestStringRoundTrip(t *testing.T) {
	loc := berlin(t)
	rules := []string{"mon-fri 8:00-18:00 2048K", "Saturday,Sunday 10M/s", "22:00-06:00 0", "Fri-Mon 23:00-01:00 1.5M"}
	s := mustParse(t, rules, "3000", loc)
	want := "Mon-Fri 08:00-18:00 2MiB; Sat,Sun 00:00-24:00 10MiB; * 22:00-06:00 unlimited; Fri-Mon 23:00-01:00 1536KiB; default 3000B (Europe/Berlin)"
	if got := s.String(); got != want {
		t.Errorf("String() = %q\nwant       %q", got, want)
	}
	texts, def := s.Texts()
	back := mustParse(t, texts, def, loc)
	if !back.Equal(s) || back.String() != s.String() {
		t.Errorf("round trip: %s", back)
	}
	if back.Equal(mustParse(t, texts, def, time.UTC)) || back.Equal(mustParse(t, texts[1:], def, loc)) || back.Equal(mustParse(t, texts, "3001", loc)) {
		t.Error("Equal: schedules that differ are equal")
	}
	if got := Fixed(0).String(); got != "default unlimited" {
		t.Errorf("Fixed(0).String() = %q", got)
	}
}

func TestDaysString(t *testing.T) {
	for d, want := range map[Days]string{
		AllDays: "*", 0: "none",
		days(mon): "Mon", days(mon, tue): "Mon,Tue", days(mon, tue, wed): "Mon-Wed",
		days(sat, sun): "Sat,Sun", days(fri, sat, sun, mon): "Fri-Mon", days(sun): "Sun",
		days(sun, mon, wed): "Mon,Wed,Sun", days(mon, wed, fri, sun): "Mon,Wed,Fri,Sun",
		AllDays &^ days(wed): "Thu-Tue", days(sat, sun, mon, wed): "Wed,Sat-Mon",
		days(mon, tue, wed, fri, sat, sun): "Fri-Wed", days(sun, mon, tue, thu): "Thu,Sun-Tue",
	} {
		if got := d.String(); got != want {
			t.Errorf("Days(%07b).String() = %q, want %q", d, got, want)
		}
		if d != 0 {
			if back, err := parseDays(d.String()); err != nil || back != d {
				t.Errorf("parseDays(%q) = %07b, %v; want %07b", d.String(), back, err, d)
			}
		}
	}
}

// BenchmarkAt: the cost of a look at the schedule (made once a change,
// and by status).
func BenchmarkAt(b *testing.B) {
	s := mustParse(b, []string{"Mon-Fri 08:00-18:00 2MiB", "Sat,Sun 00:00-24:00 10MiB", "* 22:00-06:00 unlimited"}, "1MiB", berlin(b))
	t0 := time.Date(2024, 3, 29, 0, 0, 0, 0, time.UTC)
	for i := 0; b.Loop(); i++ {
		s.At(t0.Add(time.Duration(i%20000) * time.Minute))
	}
}
