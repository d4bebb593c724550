package changelog

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func readAll(t *testing.T, path string) (Header, []Record, error) {
	t.Helper()
	var recs []Record
	h, err := ReadFile(path, func(r Record) error {
		recs = append(recs, r)
		return nil
	})
	return h, recs, err
}

func journalRecords(t *testing.T) []Record {
	var recs []Record
	names := testNames()
	targets := testTargets()
	for i, n := range names {
		recs = append(recs, allRecords(t, n, names[(i+1)%len(names)], targets[i%len(targets)])...)
	}
	// Longest lines: two escaped 255-byte names, a 4095-byte target of
	// bytes that all need escaping.
	big := strings.Repeat("\xff", MaxNameLen)
	recs = append(recs, allRecords(t, big, big, strings.Repeat("\x01", 4095))...)
	return recs
}

func TestJournalRoundTrip(t *testing.T) {
	for _, h := range []Header{{Type: TypeXsync, StartNS: 1700000000000000000}, {Type: TypeLive, StartNS: 0}} {
		dir := t.TempDir()
		path := filepath.Join(dir, "CHANGELOG.1")
		w, err := Create(path, h)
		if err != nil {
			t.Fatal(err)
		}
		if exists(path) {
			t.Fatalf("%s exists before Commit", path)
		}
		recs := journalRecords(t)
		for i := range recs {
			if err := w.Add(&recs[i]); err != nil {
				t.Fatalf("Add(%v): %v", recs[i], err)
			}
		}
		// An invalid record is refused and leaves no trace.
		if err := w.Add(&Record{Kind: KindData}); !errors.Is(err, ErrMalformed) {
			t.Fatalf("Add of a zero-gfid record = %v, want ErrMalformed", err)
		}
		if w.Len() != len(recs) {
			t.Fatalf("Len = %d, want %d", w.Len(), len(recs))
		}
		if exists(path) {
			t.Fatalf("%s exists before Commit", path)
		}
		if got := dirNames(t, dir); len(got) != 1 || got[0] != "CHANGELOG.1.tmp" {
			t.Fatalf("before Commit the directory holds %q, want only the temp file", got)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		if got := dirNames(t, dir); len(got) != 1 || got[0] != "CHANGELOG.1" {
			t.Fatalf("after Commit the directory holds %q, want only the journal", got)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(string(data), "\n")
		wantHeader := "GEOREP-CHANGELOG v1 " + string(h.Type) + " "
		if !strings.HasPrefix(first, wantHeader) {
			t.Fatalf("header line %q, want prefix %q", first, wantHeader)
		}
		gh, got, err := readAll(t, path)
		if err != nil {
			t.Fatal(err)
		}
		if gh != h {
			t.Fatalf("header %#v, want %#v", gh, h)
		}
		if len(got) != len(recs) {
			t.Fatalf("read %d records, want %d", len(got), len(recs))
		}
		for i := range recs {
			if got[i] != recs[i] {
				t.Fatalf("record %d: got %#v, want %#v", i, got[i], recs[i])
			}
		}
	}
}

func TestJournalEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	w, err := Create(path, Header{Type: TypeLive, StartNS: 42})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	h, recs, err := readAll(t, path)
	if err != nil || len(recs) != 0 || h != (Header{Type: TypeLive, StartNS: 42}) {
		t.Fatalf("ReadFile = %#v, %d records, %v", h, len(recs), err)
	}
}

func TestJournalAbort(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "j")
	w, err := Create(path, Header{Type: TypeXsync, StartNS: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := Record{Kind: KindData, GFID: newGFID(t)}
	if err := w.Add(&r); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	if got := dirNames(t, dir); len(got) != 0 {
		t.Fatalf("after Abort the directory holds %q", got)
	}
}

func TestJournalCreateMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "j")
	if _, err := Create(path, Header{Type: TypeXsync}); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Create in a missing directory = %v, want an error naming %s", err, path)
	}
}

// TestJournalReplaceTemp: a temp file left by a crashed writer is replaced.
func TestJournalReplaceTemp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "j")
	if err := os.WriteFile(path+".tmp", []byte("garbage without newline"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := Create(path, Header{Type: TypeXsync, StartNS: 5})
	if err != nil {
		t.Fatal(err)
	}
	r := Record{Kind: KindMeta, GFID: newGFID(t), Op: OpSetattr}
	if err := w.Add(&r); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	_, recs, err := readAll(t, path)
	if err != nil || len(recs) != 1 || recs[0] != r {
		t.Fatalf("ReadFile = %v, %v", recs, err)
	}
}

const hdr = "GEOREP-CHANGELOG v1 XSYNC 1700000000000000000\n"

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "journal")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestJournalTorn(t *testing.T) {
	cases := []string{
		hdr + "D " + gs1,
		hdr + "D " + gs1 + "\nD " + gs2,
		// A torn line that happens to parse: the torn check must come
		// first, or a truncated name would be taken for a real one.
		hdr + "E " + gs1 + " LINK " + gs2 + "/name-trunc",
		strings.TrimSuffix(hdr, "\n"),
		"GEOREP-CHANGELOG v1 XS",
	}
	for _, c := range cases {
		path := writeFile(t, c)
		called := 0
		_, err := ReadFile(path, func(Record) error { called++; return nil })
		if err == nil || !strings.Contains(err.Error(), "torn") || !errors.Is(err, ErrMalformed) {
			t.Errorf("ReadFile of %q = %v, want a torn error wrapping ErrMalformed", c, err)
		}
		if err != nil && !strings.Contains(err.Error(), path) {
			t.Errorf("error %v does not name %s", err, path)
		}
		if called != 0 {
			t.Errorf("ReadFile of a torn file delivered %d records", called)
		}
	}
}

func TestJournalBadHeader(t *testing.T) {
	cases := []struct{ content, mention string }{
		{"", "empty"},
		{"\n", ""},
		{"GEOREP-CHANGELOX v1 XSYNC 1\n", "not a georep journal"},
		{"georep-changelog v1 XSYNC 1\n", "not a georep journal"},
		{"D " + gs1 + "\n", "not a georep journal"},
		{"GEOREP-CHANGELOG v2 XSYNC 1\n", `"v2"`},
		{"GEOREP-CHANGELOG v0 XSYNC 1\n", `"v0"`},
		{"GEOREP-CHANGELOG v1 BOGUS 1\n", `"BOGUS"`},
		{"GEOREP-CHANGELOG v1 xsync 1\n", `"xsync"`},
		{"GEOREP-CHANGELOG v1 XSYNC -1\n", `"-1"`},
		{"GEOREP-CHANGELOG v1 XSYNC 1x\n", `"1x"`},
		{"GEOREP-CHANGELOG v1 XSYNC\n", "not a georep journal"},
		{"GEOREP-CHANGELOG v1 XSYNC 1 extra\n", "not a georep journal"},
		{"GEOREP-CHANGELOG  v1 XSYNC 1\n", "not a georep journal"},
	}
	for _, c := range cases {
		path := writeFile(t, c.content)
		_, err := ReadFile(path, func(Record) error { t.Errorf("record delivered from %q", c.content); return nil })
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("ReadFile with header %q = %v, want ErrMalformed", c.content, err)
			continue
		}
		if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.mention) {
			t.Errorf("ReadFile with header %q = %v: want it to name %s and mention %s", c.content, err, path, c.mention)
		}
	}
}

func TestParseHeader(t *testing.T) {
	h, err := ParseHeader([]byte("GEOREP-CHANGELOG v1 CHANGELOG 9223372036854775807"))
	if err != nil || h != (Header{Type: TypeLive, StartNS: 9223372036854775807}) {
		t.Fatalf("ParseHeader = %#v, %v", h, err)
	}
	if _, err := ParseHeader([]byte("GEOREP-CHANGELOG v1 CHANGELOG 9223372036854775808")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("ParseHeader of an overflowing time = %v", err)
	}
}

func TestJournalMalformedLine(t *testing.T) {
	good := "D " + gs1 + "\n"
	path := writeFile(t, hdr+good+"M "+gs2+" SETATTR\n"+"E "+gs1+" LINK "+gs2+"/a b\n"+good)
	var recs []Record
	_, err := ReadFile(path, func(r Record) error { recs = append(recs, r); return nil })
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("ReadFile = %v, want ErrMalformed", err)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 4") {
		t.Fatalf("error %q does not name %s and line 4", err, path)
	}
	if len(recs) != 2 {
		t.Fatalf("delivered %d records before the bad line, want 2", len(recs))
	}
}

func TestJournalCallbackError(t *testing.T) {
	path := writeFile(t, hdr+"D "+gs1+"\nD "+gs2+"\nD "+gs3+"\n")
	stop := errors.New("stop")
	n := 0
	h, err := ReadFile(path, func(r Record) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Fatalf("ReadFile = %v after %d records, want the callback's error after 2", err, n)
	}
	if h.Type != TypeXsync {
		t.Fatalf("header %#v", h)
	}
}

func TestJournalMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope")
	_, err := ReadFile(path, func(Record) error { return nil })
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("ReadFile of a missing file = %v", err)
	}
}

func TestReaderLineNumbers(t *testing.T) {
	rd, err := NewReader("name-in-errors", strings.NewReader(hdr+"D "+gs1+"\nD x\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := rd.Next(); err != nil || r.GFID != mustParseGFID(t, gs1) {
		t.Fatalf("Next = %v, %v", r, err)
	}
	_, err = rd.Next()
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "name-in-errors line 3") {
		t.Fatalf("Next on a bad line = %v", err)
	}
	rd, err = NewReader("n", strings.NewReader(hdr))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Next(); err != io.EOF {
		t.Fatalf("Next at the end = %v, want io.EOF", err)
	}
}

// TestReaderTorn: Reader.Next's documentation says a file that does not end
// in a newline is reported as torn, but only ReadFile checks it; Next hands
// out the torn last line as a record when it happens to parse.
func TestReaderTorn(t *testing.T) {
	rd, err := NewReader("j", strings.NewReader(hdr+"E "+gs1+" LINK "+gs2+"/name-trunc"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := rd.Next()
	if err == nil {
		t.Fatalf("Next on a torn last line = %v, nil; want a torn error", r)
	}
}

// TestJournalCRLF: a CR before the newline is not part of the format
// (Parse refuses a raw CR), but bufio.ScanLines strips it.
func TestJournalCRLF(t *testing.T) {
	path := writeFile(t, strings.ReplaceAll(hdr+"D "+gs1+"\n", "\n", "\r\n"))
	if _, recs, err := readAll(t, path); err == nil {
		t.Fatalf("ReadFile of a CRLF journal = %d records, nil; want ErrMalformed", len(recs))
	}
}

// TestJournalCreateWritesReadableHeader: what Create writes, ReadFile must
// read.
func TestJournalCreateWritesReadableHeader(t *testing.T) {
	for _, h := range []Header{{Type: "", StartNS: 1}, {Type: "A B", StartNS: 1}, {Type: TypeXsync, StartNS: -1}} {
		path := filepath.Join(t.TempDir(), "j")
		w, err := Create(path, h)
		if err != nil {
			continue // refusing is fine
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := readAll(t, path); err != nil {
			t.Errorf("Create(%#v) succeeded, but ReadFile refuses its journal: %v", h, err)
		}
	}
}

// TestJournalLongTarget: Add accepts a record whose line the reader cannot
// read back (the reader bounds lines at 64 KiB; Validate bounds no target).
func TestJournalLongTarget(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	w, err := Create(path, Header{Type: TypeLive, StartNS: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := Record{Kind: KindEntry, GFID: newGFID(t), Op: OpSymlink, Parent: newGFID(t), Name: "l",
		Target: strings.Repeat("\x01", 30000), HasTarget: true}
	if err := w.Add(&r); err != nil {
		w.Abort()
		return // refusing is fine
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readAll(t, path); err != nil {
		t.Errorf("a journal Add accepted cannot be read: %v", err)
	}
}
