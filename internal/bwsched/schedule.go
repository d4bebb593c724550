// Package bwsched turns the master's bandwidth cap into a schedule: a
// limit by day of week and time of day (weekdays 08:00-18:00 at 2 MiB/s,
// otherwise unlimited), applied live to the one rate.Limiter the sender
// waits on, and changeable while the master runs.
//
// A Schedule is a list of rules and a default limit. Each rule is text of
// the form
//
//	DAYS TIME-TIME LIMIT
//
// for example
//
//	Mon-Fri 08:00-18:00 2MiB
//	Sat,Sun 00:00-24:00 10MiB
//	* 22:00-06:00 unlimited
//
// DAYS is "*" (every day) or a comma list of days and day ranges: Mon,
// Tue, Wed, Thu, Fri, Sat, Sun (or the full names, any case), and ranges
// such as Mon-Fri or Fri-Mon (a range wraps round the end of the week).
// It may be left out, meaning every day.
//
// TIME-TIME is a start and an end, HH:MM each, in the 24-hour clock; the
// start is 00:00 to 23:59, the end 00:00 to 24:00 and not equal to the
// start. An end at or before the start runs past midnight into the next
// day, and the whole range belongs to the day it starts on: "Fri
// 22:00-06:00" covers Friday 22:00 to Saturday 06:00. It may be left out,
// meaning 00:00-24:00.
//
// LIMIT is in bytes per second: a number (decimals allowed) and a unit B,
// KiB, MiB, GiB (or K, M, G, the same binary multiples; any case; an
// optional "/s"), a plain number being bytes per second. "0" and
// "unlimited" mean no cap. KB, MB and GB are refused as ambiguous.
//
// The first rule that covers an instant gives the limit in force; where
// no rule does, the default does. Rules are read in the wall-clock time
// of the schedule's location (local time unless another is given), so a
// rule from 08:00 starts at 08:00 on the clock on the wall whatever the
// daylight saving time; on the night the clocks go forward, a range that
// starts in the skipped hour starts when the clock jumps past it, and on
// the night they go back, the repeated hour is covered twice.
//
// A Limiter applies a Schedule to a *rate.Limiter: it sets the limit in
// force, and changes it at each change of the schedule (see Run).
package bwsched

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrSyntax is matched (errors.Is) by every error of Parse, New,
// ParseRule and ParseLimit.
var ErrSyntax = errors.New("bad bandwidth schedule")

// syntaxError is an error that matches ErrSyntax without repeating its
// text.
type syntaxError struct{ msg string }

func (e *syntaxError) Error() string        { return e.msg }
func (e *syntaxError) Is(target error) bool { return target == ErrSyntax }

func syntaxf(format string, a ...any) error {
	return &syntaxError{fmt.Sprintf(format, a...)}
}

// Minutes in a day and in a week.
const (
	dayMinutes  = 24 * 60
	weekMinutes = 7 * dayMinutes
)

// MaxLimit is the largest limit that can be written (1 PiB/s); larger
// values are refused (use "unlimited").
const MaxLimit = 1 << 50

// horizon bounds how far ahead At looks for the next change.
const horizon = 15 * 24 * time.Hour

// Days is a set of days of the week: bit i is time.Weekday(i) (Sunday is
// bit 0).
type Days uint8

// AllDays holds every day of the week.
const AllDays Days = 1<<7 - 1

// Has reports whether d holds w.
func (d Days) Has(w time.Weekday) bool { return w >= 0 && w < 7 && d&(1<<uint(w)) != 0 }

// dayNames are the short names, three bytes each, from Sunday.
const dayNames = "SunMonTueWedThuFriSat"

// dayName gives w's short name.
func dayName(w time.Weekday) string { return dayNames[3*w : 3*w+3] }

// runLen gives the number of days of d in a row from w on (w in d).
func runLen(d Days, w time.Weekday) int {
	n := 1
	for n < 7 && d.Has((w+time.Weekday(n))%7) {
		n++
	}
	return n
}

// String gives d in the rule syntax: "*", or days and ranges in the order
// of the week from Monday ("Mon-Fri", "Sat,Sun", "Fri-Mon", "Tue,Thu").
func (d Days) String() string {
	d &= AllDays
	if d == AllDays {
		return "*"
	}
	if d == 0 {
		return "none"
	}
	// Runs of three days or more round the circle are written as ranges
	// ("Fri-Mon"), in the place of their first day; other days one by
	// one; in the order of the week from Monday.
	var parts []string
	inRun := Days(0)
	for i := 0; i < 7; i++ {
		w := time.Weekday((i + 1) % 7) // Mon, Tue, ..., Sun
		if !d.Has(w) || inRun.Has(w) {
			continue
		}
		if d.Has((w + 6) % 7) {
			// Inside a run that starts earlier: a range if it is long.
			first := w
			for d.Has((first + 6) % 7) {
				first = (first + 6) % 7
			}
			if runLen(d, first) >= 3 {
				continue // written from its first day
			}
		}
		if n := runLen(d, w); n >= 3 {
			last := (w + time.Weekday(n) - 1) % 7
			parts = append(parts, dayName(w)+"-"+dayName(last))
			for k := 0; k < n; k++ {
				inRun |= 1 << uint((int(w)+k)%7)
			}
			continue
		}
		parts = append(parts, dayName(w))
	}
	return strings.Join(parts, ",")
}

// Rule is one parsed rule.
type Rule struct {
	// Days are the days the rule's time range starts on.
	Days Days
	// Start is the minute of the day the range starts (0 to 1439), End
	// the one it ends (1 to 1440, or 0); an End at or before Start runs
	// into the next day.
	Start, End int
	// Limit is in bytes per second, 0 for no cap.
	Limit int64
}

// String gives r in the canonical rule syntax, which ParseRule reads back
// to r.
func (r Rule) String() string {
	return fmt.Sprintf("%s %s-%s %s", r.Days, clock(r.Start), clock(r.End), formatSize(r.Limit))
}

// wraps reports whether r runs past midnight.
func (r Rule) wraps() bool { return r.End <= r.Start }

// covers reports whether r covers minute m of weekday w.
func (r Rule) covers(w time.Weekday, m int) bool {
	if !r.wraps() {
		return r.Days.Has(w) && r.Start <= m && m < r.End
	}
	return (r.Days.Has(w) && m >= r.Start) || (r.Days.Has((w+6)%7) && m < r.End)
}

func clock(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

// Schedule is a parsed schedule. It is immutable, and safe to share
// between goroutines.
type Schedule struct {
	rules []Rule
	def   int64
	loc   *time.Location
	// changes are the minutes of the week (Sunday 00:00 is 0) where the
	// limit differs from the minute before (the minute before 0 being
	// the last of the week), ascending; limits[i] is in force from
	// changes[i] to the next. Empty: constant is in force at all times.
	changes  []int
	limits   []int64
	constant int64
}

// Parse parses rules (first match wins) and the default limit def ("" is
// unlimited); loc is the time zone the rules are read in (nil: local
// time). Errors name the rule and what is wrong, on one line, and match
// ErrSyntax, e.g.
//
//	rule 2 "Mon-Fry 08:00-18:00 2MiB": unknown day "Fry" (want Mon, ...)
func Parse(rules []string, def string, loc *time.Location) (*Schedule, error) {
	d := int64(0)
	if strings.TrimSpace(def) != "" {
		var err error
		if d, err = ParseLimit(def); err != nil {
			return nil, fmt.Errorf("default: %w", err)
		}
	}
	rs := make([]Rule, 0, len(rules))
	for i, text := range rules {
		r, err := parseRule(text)
		if err != nil {
			return nil, fmt.Errorf("rule %d %q: %w", i+1, strings.TrimSpace(text), err)
		}
		rs = append(rs, r)
	}
	return New(rs, d, loc)
}

// New makes a schedule of parsed rules (first match wins), a default
// limit in bytes per second (0: unlimited) and the time zone the rules are
// read in (nil: local time).
func New(rules []Rule, def int64, loc *time.Location) (*Schedule, error) {
	if def < 0 || def > MaxLimit {
		return nil, syntaxf("default limit %d: out of range 0 to %d bytes/s", def, int64(MaxLimit))
	}
	for i, r := range rules {
		if err := r.check(); err != nil {
			return nil, fmt.Errorf("rule %d (%+v): %w", i+1, r, err)
		}
	}
	if loc == nil {
		loc = time.Local
	}
	s := &Schedule{rules: append([]Rule(nil), rules...), def: def, loc: loc}
	s.profile()
	return s, nil
}

// Fixed is the schedule of one limit at all times (bytes per second, 0 or
// less: unlimited), as a plain --bwlimit is.
func Fixed(limit int64) *Schedule {
	limit = max(min(limit, MaxLimit), 0)
	return &Schedule{def: limit, loc: time.Local, constant: limit}
}

func (r Rule) check() error {
	switch {
	case r.Days&AllDays == 0 || r.Days&^AllDays != 0:
		return syntaxf("bad set of days %#x", uint8(r.Days))
	case r.Start < 0 || r.Start >= dayMinutes:
		return syntaxf("start minute %d out of range 0 to 1439", r.Start)
	case r.End < 0 || r.End > dayMinutes:
		return syntaxf("end minute %d out of range 0 to 1440", r.End)
	case r.Start == r.End:
		return syntaxf("empty time range")
	case r.Limit < 0 || r.Limit > MaxLimit:
		return syntaxf("limit %d out of range 0 to %d bytes/s", r.Limit, int64(MaxLimit))
	}
	return nil
}

// profile computes the changes over a week of wall-clock time.
func (s *Schedule) profile() {
	points := []int{0}
	for _, r := range s.rules {
		dur := r.End - r.Start
		if r.wraps() {
			dur += dayMinutes
		}
		for w := 0; w < 7; w++ {
			if r.Days.Has(time.Weekday(w)) {
				start := w*dayMinutes + r.Start
				points = append(points, start, (start+dur)%weekMinutes)
			}
		}
	}
	sort.Ints(points)
	lim := make([]int64, 0, len(points))
	uniq := points[:0]
	for i, p := range points {
		if i > 0 && p == points[i-1] {
			continue
		}
		uniq = append(uniq, p)
		lim = append(lim, s.match(p))
	}
	s.changes, s.limits = nil, nil
	for i, p := range uniq {
		prev := lim[(i+len(lim)-1)%len(lim)]
		if lim[i] != prev {
			s.changes = append(s.changes, p)
			s.limits = append(s.limits, lim[i])
		}
	}
	s.constant = lim[0]
}

// match gives the limit the rules give minute mw of the week (Sunday
// 00:00 is 0): the first rule that covers it, else the default.
func (s *Schedule) match(mw int) int64 {
	w, m := time.Weekday(mw/dayMinutes), mw%dayMinutes
	for _, r := range s.rules {
		if r.covers(w, m) {
			return r.Limit
		}
	}
	return s.def
}

// limitAt gives the limit at minute mw of the week and the next minute of
// the week (mw < next <= mw+weekMinutes) where it changes; next is -1 if
// it never does.
func (s *Schedule) limitAt(mw int) (int64, int) {
	n := len(s.changes)
	if n == 0 {
		return s.constant, -1
	}
	// i: the first change after mw.
	i := sort.SearchInts(s.changes, mw+1)
	cur := s.limits[(i+n-1)%n]
	if i == n {
		return cur, s.changes[0] + weekMinutes
	}
	return cur, s.changes[i]
}

// wall gives t's minutes since the epoch in wall-clock time and its minute
// of the week (Sunday 00:00 is 0), with off its zone's offset in seconds.
func wall(t time.Time, off int) (wallMin int64, mw int) {
	ws := t.Unix() + int64(off)
	wallMin = floorDiv(ws, 60)
	// 1970-01-01 was a Thursday.
	mw = int(floorMod(wallMin+4*dayMinutes, weekMinutes))
	return wallMin, mw
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }

// At gives the limit in force at t (bytes per second, 0: unlimited) and
// the next instant the limit in force changes, that is where it differs
// from the limit at t (zero if it does not within two weeks, as for a
// schedule of one limit). Rules that follow one another with the same
// limit make no change; a change of the clocks (daylight saving time) may
// make one.
func (s *Schedule) At(t time.Time) (limit int64, next time.Time) {
	if s == nil {
		return 0, time.Time{}
	}
	loc := s.Location()
	t = t.In(loc)
	_, off := t.Zone()
	wallMin, mw := wall(t, off)
	cur, nmw := s.limitAt(mw)
	if nmw < 0 {
		return cur, time.Time{}
	}
	end := t.Add(horizon)
	for range 64 {
		// Within t's zone period the wall clock runs with the instant:
		// the next change is at wall minute nmw unless the zone ends
		// first.
		_, zoneEnd := t.ZoneBounds()
		at := time.Unix((wallMin+int64(nmw-mw))*60-int64(off), 0).In(loc)
		if zoneEnd.IsZero() || at.Before(zoneEnd) {
			if at.After(end) {
				break
			}
			return cur, at
		}
		// The clocks change before: the limit changes then if it
		// differs at the new wall-clock time; else go on from there.
		t = zoneEnd
		if t.After(end) {
			break
		}
		_, off = t.Zone()
		wallMin, mw = wall(t, off)
		var lim int64
		lim, nmw = s.limitAt(mw)
		if lim != cur {
			return cur, t
		}
	}
	return cur, time.Time{}
}

// Rules gives the rules, in order.
func (s *Schedule) Rules() []Rule {
	if s == nil {
		return nil
	}
	return append([]Rule(nil), s.rules...)
}

// Default gives the default limit, in bytes per second (0: unlimited).
func (s *Schedule) Default() int64 {
	if s == nil {
		return 0
	}
	return s.def
}

// Location gives the time zone the rules are read in.
func (s *Schedule) Location() *time.Location {
	if s == nil || s.loc == nil {
		return time.Local
	}
	return s.loc
}

// Texts gives the rules in the canonical syntax and the default limit,
// which Parse reads back to an equal schedule.
func (s *Schedule) Texts() (rules []string, def string) {
	for _, r := range s.Rules() {
		rules = append(rules, r.String())
	}
	return rules, formatSize(s.Default())
}

// String gives the schedule for display: the rules in order, then the
// default, separated by "; ", and the time zone unless it is local time,
// e.g. "Mon-Fri 08:00-18:00 2MiB; default unlimited".
func (s *Schedule) String() string {
	rules, def := s.Texts()
	out := strings.Join(append(rules, "default "+def), "; ")
	if loc := s.Location(); loc != time.Local {
		out += " (" + loc.String() + ")"
	}
	return out
}

// Equal reports whether s and o have the same rules in the same order,
// the same default and the same time zone (by name).
func (s *Schedule) Equal(o *Schedule) bool {
	a, b := s.Rules(), o.Rules()
	if len(a) != len(b) || s.Default() != o.Default() || s.Location().String() != o.Location().String() {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// ParseRule parses one rule, "DAYS TIME-TIME LIMIT" (see the package
// documentation). Errors quote the rule and say what is wrong, and match
// ErrSyntax.
func ParseRule(text string) (Rule, error) {
	r, err := parseRule(text)
	if err != nil {
		return Rule{}, fmt.Errorf("rule %q: %w", strings.TrimSpace(text), err)
	}
	return r, nil
}

func parseRule(text string) (Rule, error) {
	f := strings.Fields(text)
	r := Rule{Days: AllDays, Start: 0, End: dayMinutes}
	var days, times string
	switch len(f) {
	case 3:
		days, times = f[0], f[1]
	case 2:
		if strings.ContainsRune(f[0], ':') {
			times = f[0]
		} else {
			days = f[0]
		}
	case 0:
		return r, syntaxf("empty rule (want DAYS HH:MM-HH:MM LIMIT, e.g. \"Mon-Fri 08:00-18:00 2MiB\")")
	case 1:
		return r, syntaxf("a rule is DAYS HH:MM-HH:MM LIMIT, e.g. \"Mon-Fri 08:00-18:00 2MiB\": one word is not enough")
	default:
		return r, syntaxf("a rule is DAYS HH:MM-HH:MM LIMIT, e.g. \"Mon-Fri 08:00-18:00 2MiB\": %d words is too many", len(f))
	}
	if last := f[len(f)-1]; strings.ContainsRune(last, ':') {
		return r, syntaxf("%q is not a limit: a rule ends with its limit, e.g. \"Mon-Fri 08:00-18:00 2MiB\"", last)
	}
	var err error
	if days != "" {
		if r.Days, err = parseDays(days); err != nil {
			return r, err
		}
	}
	if times != "" {
		if r.Start, r.End, err = parseTimes(times); err != nil {
			return r, err
		}
	}
	if r.Limit, err = ParseLimit(f[len(f)-1]); err != nil {
		return r, err
	}
	return r, nil
}

func parseDays(s string) (Days, error) {
	if s == "*" {
		return AllDays, nil
	}
	var d Days
	for _, item := range strings.Split(s, ",") {
		from, to, isRange := strings.Cut(item, "-")
		a, err := parseDay(from)
		if err != nil {
			return 0, err
		}
		if !isRange {
			d |= 1 << uint(a)
			continue
		}
		b, err := parseDay(to)
		if err != nil {
			return 0, err
		}
		for w := a; ; w = (w + 1) % 7 {
			d |= 1 << uint(w)
			if w == b {
				break
			}
		}
	}
	return d, nil
}

func parseDay(s string) (time.Weekday, error) {
	if s == "" {
		return 0, syntaxf("missing day in the list (want Mon..Sun, a range such as Mon-Fri, a comma list, or *)")
	}
	for w := time.Sunday; w <= time.Saturday; w++ {
		if strings.EqualFold(s, dayName(w)) || strings.EqualFold(s, w.String()) {
			return w, nil
		}
	}
	return 0, syntaxf("unknown day %q (want Mon, Tue, Wed, Thu, Fri, Sat, Sun, a range such as Mon-Fri, or *)", s)
}

func parseTimes(s string) (start, end int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, syntaxf("time range %q: want HH:MM-HH:MM", s)
	}
	if start, err = parseClock(a, false); err != nil {
		return 0, 0, fmt.Errorf("time range %q: start: %w", s, err)
	}
	if end, err = parseClock(b, true); err != nil {
		return 0, 0, fmt.Errorf("time range %q: end: %w", s, err)
	}
	if start == end {
		return 0, 0, syntaxf("time range %q is empty (use 00:00-24:00 for a whole day)", s)
	}
	return start, end, nil
}

// parseClock parses H:MM or HH:MM; 24:00 only as an end.
func parseClock(s string, isEnd bool) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) < 1 || len(h) > 2 || len(m) != 2 || !digits(h) || !digits(m) {
		return 0, syntaxf("%q is not a time HH:MM", s)
	}
	hh, _ := strconv.Atoi(h)
	mm, _ := strconv.Atoi(m)
	switch {
	case mm > 59:
		return 0, syntaxf("%q: minutes past 59", s)
	case hh == 24 && mm == 0 && isEnd:
		return dayMinutes, nil
	case hh == 24 && mm == 0:
		return 0, syntaxf("%q: 24:00 may only end a range (start at 00:00)", s)
	case hh > 23:
		return 0, syntaxf("%q: hours past 23", s)
	}
	return hh*60 + mm, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// ParseLimit parses a limit in bytes per second: "unlimited" or 0 (no
// cap), or a number and a unit B, KiB, MiB, GiB or K, M, G (any case,
// optional "/s"; none: bytes). "1.5MiB" is 1572864. Errors match
// ErrSyntax.
func ParseLimit(s string) (int64, error) {
	v := strings.TrimSpace(s)
	if strings.EqualFold(v, "unlimited") {
		return 0, nil
	}
	if len(v) >= 2 && strings.EqualFold(v[len(v)-2:], "/s") {
		v = v[:len(v)-2]
	}
	i := 0
	for i < len(v) && (v[i] >= '0' && v[i] <= '9' || v[i] == '.') {
		i++
	}
	num, unit := v[:i], v[i:]
	whole, frac, dot := strings.Cut(num, ".")
	if !digits(whole) || (dot && !digits(frac)) {
		return 0, syntaxf("limit %q: want a number and a unit (B, KiB, MiB, GiB), e.g. 2MiB, or \"unlimited\"", s)
	}
	var mult float64
	switch strings.ToLower(unit) {
	case "", "b":
		mult = 1
	case "k", "kib":
		mult = 1 << 10
	case "m", "mib":
		mult = 1 << 20
	case "g", "gib":
		mult = 1 << 30
	case "kb", "mb", "gb":
		return 0, syntaxf("limit %q: unit %q is ambiguous (use KiB, MiB, GiB: powers of 1024)", s, unit)
	default:
		return 0, syntaxf("limit %q: unknown unit %q (want B, KiB, MiB, GiB or K, M, G)", s, unit)
	}
	f, err := strconv.ParseFloat(num, 64)
	b := math.Round(f * mult)
	switch {
	case err != nil || b > MaxLimit:
		return 0, syntaxf("limit %q: more than 1 PiB/s (say \"unlimited\")", s)
	case b == 0 && f != 0:
		return 0, syntaxf("limit %q: less than 1 byte/s (say 0 or \"unlimited\" for no cap)", s)
	}
	return int64(b), nil
}

// formatSize gives a limit in the rule syntax: "unlimited", or the
// largest unit that holds it whole ("2MiB", "1536KiB", "100B").
func formatSize(n int64) string {
	switch {
	case n <= 0:
		return "unlimited"
	case n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10) + "B"
}

// FormatLimit gives a limit for display: "unlimited", or e.g. "2MiB/s",
// which ParseLimit reads back.
func FormatLimit(n int64) string {
	if n <= 0 {
		return "unlimited"
	}
	return formatSize(n) + "/s"
}
