package changelog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// t0 is an arbitrary journal time; times in these tests are t0 + n.
const t0 = int64(1_700_000_000_000_000_000)

func openJournal(t *testing.T, dir string) *Journal {
	t.Helper()
	j, err := OpenJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

// reopen closes j (as a crash would) and opens its directory again.
func reopen(t *testing.T, j *Journal) *Journal {
	t.Helper()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return openJournal(t, j.Dir())
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func addN(t *testing.T, j *Journal, n int) []Record {
	t.Helper()
	var recs []Record
	for i := 0; i < n; i++ {
		r := Record{Kind: KindEntry, GFID: newGFID(t), Op: OpCreate, Mode: 0o100644, Parent: newGFID(t), Name: fmt.Sprintf("f%d with space\n", i)}
		must(t, j.Add(&r))
		recs = append(recs, r)
	}
	return recs
}

func rollover(t *testing.T, j *Journal, end int64, want bool) {
	t.Helper()
	got, err := j.Rollover(end)
	if err != nil {
		t.Fatalf("Rollover(t0+%d): %v", end-t0, err)
	}
	if got != want {
		t.Fatalf("Rollover(t0+%d) committed = %v, want %v", end-t0, got, want)
	}
}

func next(t *testing.T, j *Journal, after int64, max int) []Segment {
	t.Helper()
	segs, err := j.Next(after, max)
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

func segRecords(t *testing.T, s Segment) (Header, []Record) {
	t.Helper()
	h, recs, err := readAll(t, s.Path)
	if err != nil {
		t.Fatal(err)
	}
	return h, recs
}

// span is a Segment without its path and reason, for comparisons.
type span struct {
	Start, End int64
	File, Gap  bool
}

func spans(segs []Segment) []span {
	var out []span
	for _, s := range segs {
		out = append(out, span{s.Start - t0, s.End - t0, s.Path != "", s.Gap})
	}
	return out
}

func checkSpans(t *testing.T, what string, segs []Segment, want ...span) {
	t.Helper()
	if got := spans(segs); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s = %+v, want %+v", what, got, want)
	}
}

func TestSegmentsRoundTrip(t *testing.T) {
	j := openJournal(t, filepath.Join(t.TempDir(), "changelog"))
	if info, err := os.Stat(j.Dir()); err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("journal dir: %v, %v", info, err)
	}
	if j.Covered() != 0 {
		t.Fatalf("Covered before Begin = %d", j.Covered())
	}
	must(t, j.Begin(t0+100))
	if j.Covered() != t0+100 {
		t.Fatalf("Covered after Begin = %d", j.Covered()-t0)
	}
	recs1 := addN(t, j, 3)
	if j.Pending() != 3 {
		t.Fatalf("Pending = %d, want 3", j.Pending())
	}
	rollover(t, j, t0+200, true)
	if j.Pending() != 0 || j.Covered() != t0+200 {
		t.Fatalf("after Rollover: Pending %d, Covered %d", j.Pending(), j.Covered()-t0)
	}
	recs2 := addN(t, j, 2)
	rollover(t, j, t0+300, true)

	segs := next(t, j, 0, 0)
	checkSpans(t, "Next(0)", segs, span{100, 200, true, false}, span{200, 300, true, false})
	for i, want := range [][]Record{recs1, recs2} {
		if filepath.Base(segs[i].Path) != segmentName(segs[i].End) || !filepath.IsAbs(segs[i].Path) {
			t.Errorf("segment path %q", segs[i].Path)
		}
		h, got := segRecords(t, segs[i])
		if h.Type != TypeLive || h.StartNS != segs[i].Start {
			t.Errorf("segment %d header %+v", i, h)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("segment %d records = %v, want %v", i, got, want)
		}
	}
	checkSpans(t, "Next(0, 1)", next(t, j, 0, 1), span{100, 200, true, false})
	checkSpans(t, "Next(199)", next(t, j, t0+199, 0), span{100, 200, true, false}, span{200, 300, true, false})
	checkSpans(t, "Next(200)", next(t, j, t0+200, 0), span{200, 300, true, false})
	checkSpans(t, "Next(300)", next(t, j, t0+300, 0))

	must(t, j.Done(t0+250))
	if exists(segs[0].Path) || !exists(segs[1].Path) {
		t.Fatalf("after Done(250): files %v", dirNames(t, j.Dir()))
	}
	checkSpans(t, "Next(0) after Done", next(t, j, 0, 0), span{200, 300, true, false})
	if s, e, ok := j.Consumed(); !ok || s != t0+100 || e != t0+200 {
		t.Fatalf("Consumed = %d %d %v", s-t0, e-t0, ok)
	}

	must(t, j.End(t0+400))
	want := next(t, j, 0, 0)
	checkSpans(t, "after End", want, span{200, 300, true, false}, span{300, 400, false, false})
	j = reopen(t, j)
	if got := next(t, j, 0, 0); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopen Next = %+v, want %+v", got, want)
	}
	got, err := ReadIndex(j.Dir())
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("ReadIndex = %+v, %v, want %+v", got, err, want)
	}
	if names := dirNames(t, j.Dir()); !reflect.DeepEqual(names, []string{segmentName(t0 + 300), indexName}) {
		t.Fatalf("journal dir holds %q", names)
	}
	// Another Begin after a clean End still says the recorder was away.
	must(t, j.Begin(t0+500))
	checkSpans(t, "Next(400)", next(t, j, t0+400, 0), span{400, 500, false, true})
}

func TestSegmentsEmptyRollover(t *testing.T) {
	type step struct {
		add int   // records added first
		at  int64 // the rollover's time, t0+
	}
	cases := []struct {
		name  string
		idle  time.Duration
		steps []step
		want  []span
	}{
		{"idle rollovers commit nothing", 10 * time.Second, []step{{0, 100}, {0, 200}, {0, 300}}, nil},
		{"records after idle rollovers cover the idle time", 10 * time.Second, []step{{0, 100}, {0, 200}, {1, 300}},
			[]span{{0, 300, true, false}}},
		{"idle commit after IdleCommit", 250, []step{{0, 100}, {0, 200}, {0, 300}, {0, 400}, {0, 500}},
			[]span{{0, 300, false, false}}},
		{"idle commit, then a segment", 250, []step{{0, 100}, {0, 300}, {2, 350}, {0, 400}},
			[]span{{0, 300, false, false}, {300, 350, true, false}}},
		{"zero IdleCommit commits every rollover", 0, []step{{0, 100}, {0, 200}},
			[]span{{0, 100, false, false}, {100, 200, false, false}}},
		{"a rollover at the start commits nothing", 0, []step{{0, 0}, {1, 0}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := openJournal(t, t.TempDir())
			j.IdleCommit = c.idle
			must(t, j.Begin(t0))
			for _, s := range c.steps {
				addN(t, j, s.add)
				if _, err := j.Rollover(t0 + s.at); err != nil {
					t.Fatal(err)
				}
				if j.Covered() != t0+s.at {
					t.Fatalf("Covered = %d after Rollover(%d)", j.Covered()-t0, s.at)
				}
			}
			checkSpans(t, "Next", next(t, j, 0, 0), c.want...)
		})
	}
}

func TestSegmentsRolloverAtStartKeepsRecords(t *testing.T) {
	j := openJournal(t, t.TempDir())
	j.IdleCommit = 0
	must(t, j.Begin(t0))
	addN(t, j, 2)
	rollover(t, j, t0, false) // no time passed: nothing to commit yet
	if j.Pending() != 2 {
		t.Fatalf("Pending = %d", j.Pending())
	}
	rollover(t, j, t0+1, true)
	segs := next(t, j, 0, 0)
	checkSpans(t, "Next", segs, span{0, 1, true, false})
	if _, recs := segRecords(t, segs[0]); len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
}

func TestSegmentsTimeChecks(t *testing.T) {
	j := openJournal(t, t.TempDir())
	must(t, j.Begin(t0+100))
	rollover(t, j, t0+150, false) // idle: Covered moves, the start does not
	for name, f := range map[string]func() error{
		"Rollover before start":   func() error { _, err := j.Rollover(t0 + 50); return err },
		"Rollover before Covered": func() error { _, err := j.Rollover(t0 + 120); return err },
		"MarkGap before Covered":  func() error { return j.MarkGap(t0+120, "x") },
		"End before Covered":      func() error { return j.End(t0 + 120) },
		"Begin while recording":   func() error { return j.Begin(t0 + 200) },
	} {
		if err := f(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if n := len(next(t, j, 0, 0)); n != 0 {
		t.Fatalf("refused calls committed %d entries", n)
	}
	if j.Covered() != t0+150 {
		t.Fatalf("Covered = %d", j.Covered()-t0)
	}
}

func TestSegmentsNotRecording(t *testing.T) {
	j := openJournal(t, t.TempDir())
	r := Record{Kind: KindData, GFID: newGFID(t)}
	if err := j.Add(&r); err == nil {
		t.Error("Add before Begin: no error")
	}
	if _, err := j.Rollover(t0); err == nil {
		t.Error("Rollover before Begin: no error")
	}
	if err := j.MarkGap(t0, "x"); err == nil {
		t.Error("MarkGap before Begin: no error")
	}
	if err := j.End(t0); err == nil {
		t.Error("End before Begin: no error")
	}
	if err := j.Begin(-1); err == nil {
		t.Error("Begin(-1): no error")
	}
	must(t, j.Begin(t0))
	// An invalid record is refused and creates no file.
	if err := j.Add(&Record{Kind: KindData}); !errors.Is(err, ErrMalformed) {
		t.Errorf("Add of an invalid record = %v, want ErrMalformed", err)
	}
	if j.Pending() != 0 || len(dirNames(t, j.Dir())) != 1 {
		t.Errorf("invalid record left Pending %d, files %q", j.Pending(), dirNames(t, j.Dir()))
	}
	must(t, j.Close())
	for name, err := range map[string]error{
		"Add":   j.Add(&r),
		"Begin": j.Begin(t0),
		"Done":  j.Done(t0),
		"Next":  func() error { _, err := j.Next(0, 0); return err }(),
		"History": func() error {
			_, err := j.History(0, 1)
			return err
		}(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	must(t, j.Close())
}

func TestSegmentsBeginGap(t *testing.T) {
	cases := []struct {
		name     string
		prev     bool  // an earlier recording ended at t0+100
		begin    int64 // t0+
		want     []span
		wantFrom int64 // Covered after Begin, t0+
	}{
		{"first Begin: no gap", false, 500, nil, 500},
		{"restart later: gap", true, 500, []span{{0, 100, false, false}, {100, 500, false, true}}, 500},
		{"restart at the end: no gap", true, 100, []span{{0, 100, false, false}}, 100},
		{"clock went back: start where the index ends", true, 50, []span{{0, 100, false, false}}, 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := openJournal(t, t.TempDir())
			if c.prev {
				must(t, j.Begin(t0))
				must(t, j.End(t0+100))
				j = reopen(t, j)
			}
			must(t, j.Begin(t0+c.begin))
			segs := next(t, j, 0, 0)
			checkSpans(t, "Next", segs, c.want...)
			for _, s := range segs {
				if s.Gap && s.Reason != "recorder not running" {
					t.Errorf("gap reason %q", s.Reason)
				}
			}
			if j.Covered() != t0+c.wantFrom {
				t.Errorf("Covered = %d, want %d", j.Covered()-t0, c.wantFrom)
			}
			// The open segment starts at Covered.
			addN(t, j, 1)
			rollover(t, j, t0+1000, true)
			if segs := next(t, j, t0+999, 0); len(segs) != 1 || segs[0].Start != t0+c.wantFrom {
				t.Errorf("open segment committed as %+v", spans(segs))
			}
		})
	}
}

func TestSegmentsBeginGapAfterConsumed(t *testing.T) {
	j := openJournal(t, t.TempDir())
	must(t, j.Begin(t0))
	addN(t, j, 1)
	rollover(t, j, t0+100, true)
	must(t, j.Done(t0+100))
	j = reopen(t, j)
	must(t, j.Begin(t0+300))
	checkSpans(t, "Next", next(t, j, 0, 0), span{100, 300, false, true})
}

func TestSegmentsMarkGap(t *testing.T) {
	j := openJournal(t, t.TempDir())
	must(t, j.Begin(t0))
	recs := addN(t, j, 2)
	must(t, j.MarkGap(t0+100, "inotify queue overflow"))
	must(t, j.MarkGap(t0+200, "")) // empty
	// A gap at the open segment's start marks the segment.
	must(t, j.MarkGap(t0+200, "could not watch a new directory"))
	rollover(t, j, t0+200, false)
	rollover(t, j, t0+300, true) // empty, but it holds the gap
	addN(t, j, 1)
	rollover(t, j, t0+400, true)
	segs := next(t, j, 0, 0)
	checkSpans(t, "Next", segs, span{0, 100, true, true}, span{100, 200, false, true},
		span{200, 300, false, true}, span{300, 400, true, false})
	for i, want := range []string{"inotify queue overflow", "", "could not watch a new directory", ""} {
		if segs[i].Reason != want {
			t.Errorf("entry %d reason %q, want %q", i, segs[i].Reason, want)
		}
	}
	if _, got := segRecords(t, segs[0]); !reflect.DeepEqual(got, recs) {
		t.Errorf("gap's records = %v, want %v", got, recs)
	}
	// Reasons survive the index, whatever their bytes.
	must(t, j.MarkGap(t0+500, "odd \n%/\xff reason"))
	long := strings.Repeat("r", MaxGapReason+10)
	must(t, j.MarkGap(t0+600, long))
	j = reopen(t, j)
	segs = next(t, j, t0+400, 0)
	if len(segs) != 2 || segs[0].Reason != "odd \n%/\xff reason" || segs[1].Reason != long[:MaxGapReason] {
		t.Fatalf("reasons after reopen: %+v", segs)
	}
	// End with a marked zero-width gap cannot commit it: it says so.
	must(t, j.Begin(t0+600))
	must(t, j.MarkGap(t0+600, "x"))
	if err := j.End(t0 + 600); err == nil {
		t.Fatal("End of a zero-width gap: no error")
	}
	must(t, j.End(t0+601))
	checkSpans(t, "last", next(t, j, t0+600, 0), span{600, 601, false, true})
}

func TestSegmentsHistory(t *testing.T) {
	j := openJournal(t, t.TempDir())
	must(t, j.Begin(t0+100))
	addN(t, j, 1)
	rollover(t, j, t0+200, true)
	addN(t, j, 1)
	rollover(t, j, t0+300, true)
	must(t, j.MarkGap(t0+400, "overflow"))
	j.IdleCommit = 0
	rollover(t, j, t0+450, true) // empty
	addN(t, j, 1)
	rollover(t, j, t0+500, true)
	must(t, j.Done(t0+200))

	type gap struct{ from, to int64 }
	cases := []struct {
		from, to int64
		want     []span
		gap      *gap
		reason   string
	}{
		{from: 200, to: 300, want: []span{{200, 300, true, false}}},
		{from: 250, to: 300, want: []span{{200, 300, true, false}}},
		{from: 200, to: 250, want: []span{{200, 300, true, false}}},
		{from: 400, to: 500, want: []span{{400, 450, false, false}, {450, 500, true, false}}},
		{from: 420, to: 460, want: []span{{400, 450, false, false}, {450, 500, true, false}}},
		{from: 250, to: 350, gap: &gap{300, 350}, reason: "overflow"},
		{from: 200, to: 500, gap: &gap{300, 400}, reason: "overflow"},
		{from: 350, to: 360, gap: &gap{350, 360}, reason: "overflow"},
		{from: 450, to: 600, gap: &gap{500, 600}, reason: "not committed"},
		{from: 500, to: 600, gap: &gap{500, 600}, reason: "not committed"},
		{from: 150, to: 300, gap: &gap{150, 200}, reason: "consumed"},
		{from: 150, to: 180, gap: &gap{150, 180}, reason: "consumed"},
		{from: 50, to: 300, gap: &gap{50, 200}, reason: "consumed"},
		{from: 300, to: 300},
		{from: 400, to: 300},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("(%d,%d]", c.from, c.to), func(t *testing.T) {
			segs, err := j.History(t0+c.from, t0+c.to)
			if c.gap == nil {
				if err != nil {
					t.Fatal(err)
				}
				checkSpans(t, "History", segs, c.want...)
				return
			}
			var ge *GapError
			if !errors.As(err, &ge) || !errors.Is(err, ErrNotAvailable) {
				t.Fatalf("History = %+v, %v; want a GapError", spans(segs), err)
			}
			if segs != nil || ge.From != t0+c.gap.from || ge.To != t0+c.gap.to || !strings.Contains(ge.Reason, c.reason) {
				t.Fatalf("GapError (%d, %d] %q, want (%d, %d] %q", ge.From-t0, ge.To-t0, ge.Reason, c.gap.from, c.gap.to, c.reason)
			}
			if !strings.Contains(err.Error(), FormatNS(ge.From)) {
				t.Errorf("error %q does not name the range", err)
			}
		})
	}
}

func TestSegmentsHistoryEmptyJournal(t *testing.T) {
	j := openJournal(t, t.TempDir())
	_, err := j.History(t0, t0+1)
	var ge *GapError
	if !errors.As(err, &ge) || ge.From != t0 || ge.To != t0+1 {
		t.Fatalf("History of an empty journal = %v", err)
	}
	must(t, j.Begin(t0+10))
	addN(t, j, 1)
	rollover(t, j, t0+20, true)
	if _, err := j.History(t0, t0+20); !errors.As(err, &ge) || ge.From != t0 || ge.To != t0+10 || !strings.Contains(ge.Reason, "first entry") {
		t.Fatalf("History before the first entry = %v", err)
	}
}

// buildJournal leaves a closed journal with three segments (one consumed),
// an empty entry and a gap; it returns the directory and its entries.
func buildJournal(t *testing.T) (string, []Segment) {
	t.Helper()
	dir := t.TempDir()
	j, err := OpenJournal(dir)
	must(t, err)
	defer j.Close()
	j.IdleCommit = 0
	must(t, j.Begin(t0))
	for i := int64(1); i <= 3; i++ {
		addN(t, j, 2)
		rollover(t, j, t0+100*i, true)
	}
	rollover(t, j, t0+400, true)
	must(t, j.MarkGap(t0+500, "overflow"))
	must(t, j.Done(t0+100))
	segs, err := j.Next(0, 0)
	must(t, err)
	checkSpans(t, "built", segs, span{100, 200, true, false}, span{200, 300, true, false},
		span{300, 400, false, false}, span{400, 500, false, true})
	return dir, segs
}

func TestSegmentsTornIndex(t *testing.T) {
	for _, torn := range []string{"S", "SEG 500 60", "SEG 500 600 -", "DONE 0 300"} {
		t.Run(torn, func(t *testing.T) {
			dir, want := buildJournal(t)
			index := filepath.Join(dir, indexName)
			f, err := os.OpenFile(index, os.O_WRONLY|os.O_APPEND, 0)
			must(t, err)
			_, err = f.WriteString(torn)
			must(t, err)
			must(t, f.Close())
			before, err := os.ReadFile(index)
			must(t, err)

			// The read-only view leaves the tear alone.
			v, err := ReadIndexView(dir)
			if err != nil || !v.Torn || !reflect.DeepEqual(v.Segments, want) {
				t.Fatalf("ReadIndexView = %+v, %v", v, err)
			}
			if !v.Consumed || v.ConsumedStart != t0 || v.ConsumedEnd != t0+100 {
				t.Fatalf("consumed range %+v", v)
			}
			if after, _ := os.ReadFile(index); string(after) != string(before) {
				t.Fatal("ReadIndexView wrote the index")
			}

			j := openJournal(t, dir)
			if got := next(t, j, 0, 0); !reflect.DeepEqual(got, want) {
				t.Fatalf("after repair Next = %+v, want %+v", got, want)
			}
			data, err := os.ReadFile(index)
			must(t, err)
			if v, err := ReadIndexView(dir); err != nil || v.Torn || !strings.HasSuffix(string(data), " - overflow\n") {
				t.Fatalf("torn line still in the index:\n%s", data)
			}
			// Appends go on from a clean line.
			must(t, j.Begin(t0+500))
			must(t, j.End(t0+600))
			j = reopen(t, j)
			checkSpans(t, "after append", next(t, j, t0+500, 0), span{500, 600, false, false})
		})
	}
}

func TestSegmentsCorruptIndex(t *testing.T) {
	cases := []struct {
		name    string
		edit    func(lines []string) []string
		wantErr string
	}{
		{"bad header", func(l []string) []string { l[0] = "GEOREP-CHANGELOG-INDEX v2"; return l }, "line 1"},
		{"unknown entry", func(l []string) []string { return insert(l, 2, "BOGUS 1 2") }, "line 3"},
		{"bad number", func(l []string) []string { return insert(l, 2, "SEG 0x10 20 -") }, "line 3"},
		{"CR", func(l []string) []string { l[2] += "\r"; return l }, "line 3"},
		{"overlap", func(l []string) []string {
			return append(l, fmt.Sprintf("SEG %d %d -", t0+450, t0+700))
		}, "does not start"},
		{"hole", func(l []string) []string {
			return append(l, fmt.Sprintf("SEG %d %d -", t0+600, t0+700))
		}, "does not start"},
		{"backwards", func(l []string) []string {
			return append(l, fmt.Sprintf("SEG %d %d -", t0+500, t0+400))
		}, "start not before end"},
		{"DONE off a boundary", func(l []string) []string {
			return append(l, fmt.Sprintf("DONE %d %d", t0, t0+250))
		}, "does not match"},
		{"DONE going back", func(l []string) []string {
			return append(l, fmt.Sprintf("DONE %d %d", t0, t0+50))
		}, "after DONE"},
		{"file named for another end", func(l []string) []string {
			return append(l, fmt.Sprintf("SEG %d %d CHANGELOG.%d", t0+500, t0+600, t0+300))
		}, "want - or"},
		{"missing file", func(l []string) []string {
			return append(l, fmt.Sprintf("SEG %d %d CHANGELOG.%d", t0+500, t0+600, t0+600))
		}, "is missing"},
		{"empty", func([]string) []string { return nil }, "empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, _ := buildJournal(t)
			index := filepath.Join(dir, indexName)
			data, err := os.ReadFile(index)
			must(t, err)
			lines := c.edit(strings.Split(strings.TrimSuffix(string(data), "\n"), "\n"))
			content := strings.Join(lines, "\n")
			if len(lines) > 0 {
				content += "\n"
			}
			must(t, os.WriteFile(index, []byte(content), 0o600))
			j, err := OpenJournal(dir)
			if err == nil {
				j.Close()
				t.Fatalf("OpenJournal accepted:\n%s", content)
			}
			if !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("error %q lacks %q or the path", err, c.wantErr)
			}
			if c.name != "missing file" {
				if !errors.Is(err, ErrCorruptIndex) {
					t.Errorf("error %v does not wrap ErrCorruptIndex", err)
				}
				if _, err := ReadIndex(dir); err == nil {
					t.Error("ReadIndex accepted it")
				}
			}
			if got, _ := os.ReadFile(index); string(got) != content {
				t.Error("a refused index was rewritten")
			}
		})
	}
}

func insert(l []string, i int, s string) []string {
	return append(l[:i], append([]string{s}, l[i:]...)...)
}

func TestSegmentsOrphanFile(t *testing.T) {
	dir, want := buildJournal(t)
	// A crash between the rename of CHANGELOG.<t0+600> and its index line.
	path := filepath.Join(dir, segmentName(t0+600))
	w, err := Create(path, Header{Type: TypeLive, StartNS: t0 + 500})
	must(t, err)
	recs := addNTo(t, w, 3)
	must(t, w.Commit())
	// Temporary files of a commit and of a compaction in progress, and a
	// consumed file whose deletion the crash prevented.
	for _, name := range []string{openSegment + ".tmp", segmentName(t0+700) + ".tmp", "." + indexName + ".tmp123", segmentName(t0 + 100)} {
		must(t, os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600))
	}
	j := openJournal(t, dir)
	got := next(t, j, 0, 0)
	if !reflect.DeepEqual(got[:len(want)], want) {
		t.Fatalf("entries changed: %+v", got)
	}
	checkSpans(t, "re-added", got[len(want):], span{500, 600, true, true})
	if got[len(want)].Path != path || !strings.Contains(got[len(want)].Reason, "crash") {
		t.Fatalf("re-added %+v", got[len(want)])
	}
	if _, r := segRecords(t, got[len(want)]); !reflect.DeepEqual(r, recs) {
		t.Fatalf("re-added records %v, want %v", r, recs)
	}
	wantNames := []string{segmentName(t0 + 200), segmentName(t0 + 300), segmentName(t0 + 600), indexName}
	if names := dirNames(t, dir); !reflect.DeepEqual(names, wantNames) {
		t.Fatalf("dir holds %q, want %q", names, wantNames)
	}
	// The index now has it.
	j = reopen(t, j)
	if got2 := next(t, j, 0, 0); !reflect.DeepEqual(got2, got) {
		t.Fatalf("after reopen %+v", got2)
	}
}

func TestSegmentsOrphanFileRefused(t *testing.T) {
	cases := []struct {
		name       string
		start, end int64
		typ        Type
	}{
		{"overlapping", 450, 600, TypeLive},
		{"inside the index", 100, 250, TypeLive},
		{"xsync journal", 500, 600, TypeXsync},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, _ := buildJournal(t)
			w, err := Create(filepath.Join(dir, segmentName(t0+c.end)), Header{Type: c.typ, StartNS: t0 + c.start})
			must(t, err)
			must(t, w.Commit())
			if j, err := OpenJournal(dir); err == nil {
				j.Close()
				t.Fatal("OpenJournal accepted it")
			}
		})
	}
}

func addNTo(t *testing.T, w *Writer, n int) []Record {
	var recs []Record
	for i := 0; i < n; i++ {
		r := Record{Kind: KindData, GFID: newGFID(t)}
		must(t, w.Add(&r))
		recs = append(recs, r)
	}
	return recs
}

func TestSegmentsCloseWithoutEnd(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, dir)
	must(t, j.Begin(t0))
	recs := addN(t, j, 2)
	rollover(t, j, t0+100, true)
	addN(t, j, 5) // lost: never committed
	j = reopen(t, j)
	segs := next(t, j, 0, 0)
	checkSpans(t, "after crash", segs, span{0, 100, true, false})
	if _, got := segRecords(t, segs[0]); !reflect.DeepEqual(got, recs) {
		t.Fatalf("committed records %v, want %v", got, recs)
	}
	if names := dirNames(t, dir); !reflect.DeepEqual(names, []string{segmentName(t0 + 100), indexName}) {
		t.Fatalf("dir holds %q", names)
	}
	must(t, j.Begin(t0+300))
	checkSpans(t, "after Begin", next(t, j, 0, 0), span{0, 100, true, false}, span{100, 300, false, true})
}

func TestSegmentsLocked(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, dir)
	if j2, err := OpenJournal(dir); err == nil {
		j2.Close()
		t.Fatal("second OpenJournal of an open journal succeeded")
	}
	must(t, j.Close())
	must(t, openJournal(t, dir).Close())
}

func TestSegmentsCompaction(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, dir)
	j.compactAfter = 8
	j.IdleCommit = 0
	must(t, j.Begin(t0))
	lines := func() int {
		data, err := os.ReadFile(filepath.Join(dir, indexName))
		must(t, err)
		return strings.Count(string(data), "\n")
	}
	maxLines := 0
	for i := int64(1); i <= 200; i++ {
		if i%3 == 0 {
			addN(t, j, 1)
		}
		rollover(t, j, t0+i, true)
		if i%4 == 0 {
			must(t, j.Done(t0+i-2))
		}
		maxLines = max(maxLines, lines())
	}
	if maxLines > 30 {
		t.Fatalf("the index grew to %d lines", maxLines)
	}
	want := next(t, j, 0, 0)
	checkSpans(t, "left", want, span{198, 199, false, false}, span{199, 200, false, false})
	j = reopen(t, j)
	if got := next(t, j, 0, 0); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopen %+v", got)
	}
	if s, e, ok := j.Consumed(); !ok || s != t0 || e != t0+198 {
		t.Fatalf("consumed (%d, %d] %v", s-t0, e-t0, ok)
	}
	if lines() != 4 {
		t.Fatalf("reopened index has %d lines, want 4", lines())
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Fatalf("dir holds %q", names)
	}
}

func TestSegmentsNotify(t *testing.T) {
	j := openJournal(t, t.TempDir())
	fired := func() bool {
		select {
		case <-j.Notify():
			return true
		default:
			return false
		}
	}
	if cap(j.Notify()) != 1 {
		t.Fatalf("Notify capacity %d", cap(j.Notify()))
	}
	must(t, j.Begin(t0))
	if fired() {
		t.Fatal("Notify fired on a Begin that committed nothing")
	}
	rollover(t, j, t0+100, false)
	if fired() {
		t.Fatal("Notify fired on an idle rollover")
	}
	addN(t, j, 1)
	rollover(t, j, t0+200, true)
	addN(t, j, 1)
	rollover(t, j, t0+300, true) // a second commit does not block
	if !fired() {
		t.Fatal("Notify did not fire on a commit")
	}
	if fired() {
		t.Fatal("Notify holds more than one signal")
	}
	must(t, j.MarkGap(t0+400, "x"))
	if !fired() {
		t.Fatal("Notify did not fire on MarkGap")
	}
	must(t, j.End(t0+500))
	if !fired() {
		t.Fatal("Notify did not fire on End")
	}
	must(t, j.Begin(t0+600))
	if !fired() {
		t.Fatal("Notify did not fire on Begin's gap")
	}
}

// TestSegmentsConcurrent runs a recorder and a consumer on one journal:
// every record added is read exactly once, in order, from contiguous
// entries.
func TestSegmentsConcurrent(t *testing.T) {
	j := openJournal(t, t.TempDir())
	j.compactAfter = 16
	j.IdleCommit = 0
	const rounds = 150
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	var added []Record
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := j.Begin(t0); err != nil {
			errc <- err
			return
		}
		for i := int64(1); i <= rounds; i++ {
			for k := int64(0); k < i%4; k++ {
				r := Record{Kind: KindData, GFID: newGFID(t)}
				if err := j.Add(&r); err != nil {
					errc <- err
					return
				}
				added = append(added, r)
			}
			var err error
			if i%25 == 0 {
				err = j.MarkGap(t0+10*i, "test gap")
			} else {
				_, err = j.Rollover(t0 + 10*i)
			}
			if err != nil {
				errc <- err
				return
			}
		}
		if err := j.End(t0 + 10*rounds + 5); err != nil {
			errc <- err
		}
	}()
	var read []Record
	after := int64(0)
	gaps := 0
	deadline := time.After(60 * time.Second)
	for after < t0+10*rounds+5 {
		segs, err := j.Next(after, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range segs {
			if after != 0 && s.Start != after {
				t.Fatalf("entry (%d, %d] after %d", s.Start-t0, s.End-t0, after-t0)
			}
			if s.Gap {
				gaps++
			}
			if s.Path != "" {
				_, recs := segRecords(t, s)
				read = append(read, recs...)
			}
			after = s.End
		}
		if len(segs) > 0 {
			if err := j.Done(after); err != nil {
				t.Fatal(err)
			}
			_, _ = j.History(after-20, after)
			continue
		}
		select {
		case <-j.Notify():
		case err := <-errc:
			t.Fatal(err)
		case <-deadline:
			t.Fatalf("consumer stuck at %d", after-t0)
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(read, added) {
		t.Fatalf("read %d records, added %d", len(read), len(added))
	}
	if gaps != rounds/25 {
		t.Fatalf("%d gaps, want %d", gaps, rounds/25)
	}
}

func TestIndexLineRoundTrip(t *testing.T) {
	for _, l := range []indexLine{
		{kind: kindSeg, start: 0, end: 1},
		{kind: kindSeg, start: t0, end: t0 + 1, file: true},
		{kind: kindGap, start: 5, end: 9, reason: ""},
		{kind: kindGap, start: 5, end: 9, file: true, reason: "recorder not running"},
		{kind: kindGap, start: 5, end: 9, reason: "new\nline %/ \xff"},
		{kind: kindDone, start: 1, end: 1<<63 - 1},
	} {
		b := appendIndexLine(nil, l)
		got, err := parseIndexLine(strings.TrimSuffix(string(b), "\n"))
		if err != nil || got != l {
			t.Errorf("%q parsed as %+v, %v; want %+v", b, got, err, l)
		}
	}
}

func indexLineSeeds() (valid, invalid []string) {
	valid = []string{
		"SEG 1 2 -",
		"SEG 0 10 CHANGELOG.10",
		"GAP 5 9 - overflow",
		"GAP 5 9 - %",
		"GAP 5 9 CHANGELOG.9 recorder%20not%20running",
		"DONE 0 100",
		"DONE 1700000000000000000 9223372036854775807",
	}
	invalid = []string{
		"", " ", "SEG", "SEG 1 2", "SEG 1 2 - x", "SEG 2 1 -", "SEG 1 1 -", "SEG 01 2 -", "SEG +1 2 -",
		"SEG -1 2 -", "SEG 1 9223372036854775808 -", "SEG 1 2 CHANGELOG.3", "SEG 1 2 ../CHANGELOG.2",
		"SEG 1 2 CHANGELOG.02", "SEG  1 2 -", "SEG 1 2 - ", "seg 1 2 -", "SEG 1 2 -\r", "SEG 1 2 -\n",
		"GAP 1 2 -", "GAP 1 2 - a b", "GAP 1 2 - %zz", "GAP 1 2 - %41", "GAP 1 2 - \xff", "GAP 1 2 - ",
		"DONE 1", "DONE 1 2 3", "DONE 2 2", "INDEX 1 2",
		"GAP 1 2 - " + strings.Repeat("x", MaxGapReason+1),
	}
	return valid, invalid
}

func TestIndexLineSeeds(t *testing.T) {
	valid, invalid := indexLineSeeds()
	for _, s := range valid {
		l, err := parseIndexLine(s)
		if err != nil {
			t.Errorf("%q: %v", s, err)
			continue
		}
		if got := string(appendIndexLine(nil, l)); got != s+"\n" {
			t.Errorf("%q written back as %q", s, got)
		}
	}
	for _, s := range invalid {
		if l, err := parseIndexLine(s); err == nil {
			t.Errorf("%q accepted as %+v", s, l)
		} else if !errors.Is(err, ErrCorruptIndex) {
			t.Errorf("%q: %v does not wrap ErrCorruptIndex", s, err)
		}
	}
}

func FuzzIndexLine(f *testing.F) {
	valid, invalid := indexLineSeeds()
	for _, s := range append(valid, invalid...) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := parseIndexLine(s)
		if err != nil {
			if !errors.Is(err, ErrCorruptIndex) {
				t.Fatalf("%q: error %v does not wrap ErrCorruptIndex", s, err)
			}
			return
		}
		b := appendIndexLine(nil, l)
		if string(b) != s+"\n" {
			t.Fatalf("%q parsed as %+v, written back as %q", s, l, b)
		}
		l2, err := parseIndexLine(s)
		if err != nil || l2 != l {
			t.Fatalf("%q reparsed as %+v, %v", s, l2, err)
		}
	})
}

// Each subscriber of a journal is told of every commit on its own channel
// (one Notify channel would be taken by one consumer only), until it
// cancels.
func TestJournalSubscribe(t *testing.T) {
	j := openJournal(t, t.TempDir())
	must(t, j.Begin(t0))
	a, cancelA := j.Subscribe()
	b, cancelB := j.Subscribe()
	defer cancelB()
	addN(t, j, 1)
	rollover(t, j, t0+10, true)
	for name, c := range map[string]<-chan struct{}{"a": a, "b": b, "notify": j.Notify()} {
		select {
		case <-c:
		default:
			t.Errorf("%s was not told of the commit", name)
		}
	}
	cancelA()
	addN(t, j, 1)
	rollover(t, j, t0+20, true)
	select {
	case <-a:
		t.Error("a cancelled subscriber was told")
	default:
	}
	select {
	case <-b:
	default:
		t.Error("b was not told of the second commit")
	}
}
