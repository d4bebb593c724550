package changelog

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/georep/georep/internal/gfid"
)

func newGFID(t testing.TB) gfid.GFID {
	t.Helper()
	g, err := gfid.New()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func mustParseGFID(t testing.TB, s string) gfid.GFID {
	t.Helper()
	g, err := gfid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// Fixed gfids, for golden lines.
const (
	gs1 = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0"
	gs2 = "11111111-2222-4333-8444-555555555555"
	gs3 = "aaaaaaaa-bbbb-4ccc-9ddd-eeeeeeeeeeee"
	gsZ = "00000000-0000-0000-0000-000000000000"
)

// highBytes is every byte 0x80..0xff: not UTF-8, no '/'.
func highBytes() string {
	b := make([]byte, 0, 128)
	for c := 0x80; c <= 0xff; c++ {
		b = append(b, byte(c))
	}
	return string(b)
}

// testNames are names every entry record must carry intact.
func testNames() []string {
	return []string{
		"plain",
		"with space",
		" leading and trailing ",
		"new\nline",
		"\n",
		"tab\there",
		"100%",
		"%",
		"%25",
		"%zz",
		"cr\r",
		"ctl\x01\x1f\x7f",
		highBytes(),
		"\xff",
		"caf\xc3\xa9",
		"...",
		".hidden",
		"back\\slash",
		strings.Repeat("n", MaxNameLen),
		strings.Repeat("\xff", MaxNameLen),
		strings.Repeat(" ", MaxNameLen),
	}
}

func testTargets() []string {
	return []string{
		"",
		"target",
		"/abs/path/with space/file",
		"../rel/dir/x",
		"a%b\nc\td",
		"/" + highBytes(),
		strings.Repeat("/x y", 1023) + "/xy", // 4095 bytes: the longest target
		".",
		"/",
	}
}

// allRecords returns one record of every form with the given names.
func allRecords(t testing.TB, name, name2, target string) []Record {
	g, p, p2 := newGFID(t), newGFID(t), newGFID(t)
	return []Record{
		{Kind: KindEntry, GFID: g, Op: OpCreate, Mode: 0o100644, UID: 1000, GID: 100, Parent: p, Name: name},
		{Kind: KindEntry, GFID: g, Op: OpMkdir, Mode: 0o40755, UID: 0, GID: 0, Parent: p, Name: name},
		{Kind: KindEntry, GFID: g, Op: OpMknod, Mode: 0o20660, UID: 4294967295, GID: 4294967294, Parent: p, Name: name},
		{Kind: KindEntry, GFID: g, Op: OpMknod, Mode: 0o10600, UID: 1, GID: 2, Parent: gfid.Root, Name: name},
		{Kind: KindEntry, GFID: g, Op: OpCreate, Mode: 0o107777, UID: 1, GID: 2, Parent: p, Name: name},
		{Kind: KindEntry, GFID: g, Op: OpSymlink, Parent: p, Name: name},
		{Kind: KindEntry, GFID: g, Op: OpSymlink, Parent: p, Name: name, Target: target, HasTarget: true},
		{Kind: KindEntry, GFID: g, Op: OpLink, Parent: p, Name: name},
		{Kind: KindEntry, GFID: g, Op: OpRename, Parent: p, Name: name, Parent2: p2, Name2: name2},
		{Kind: KindEntry, GFID: g, Op: OpRename, Parent: p, Name: name, Parent2: p, Name2: name},
		{Kind: KindEntry, GFID: g, Op: OpExchange, Parent: p, Name: name, Parent2: p2, Name2: name2},
		{Kind: KindEntry, GFID: g, Op: OpUnlink, Parent: p, Name: name},
		{Kind: KindEntry, GFID: g, Op: OpRmdir, Parent: p, Name: name},
		{Kind: KindEntry, GFID: g, Op: OpPurge},
		{Kind: KindData, GFID: g},
		{Kind: KindMeta, GFID: g, Op: OpSetattr},
		{Kind: KindMeta, GFID: g, Op: OpSetxattr},
	}
}

// fieldCount is the number of space-separated fields r's line must have.
func fieldCount(r Record) int {
	switch r.Kind {
	case KindData:
		return 2
	case KindMeta:
		return 3
	}
	switch r.Op {
	case OpCreate, OpMkdir, OpMknod:
		return 7
	case OpSymlink:
		if r.HasTarget {
			return 5
		}
		return 4
	case OpRename, OpExchange:
		return 5
	case OpPurge:
		return 3
	}
	return 4
}

func checkRoundTrip(t *testing.T, r Record) {
	t.Helper()
	prefix := []byte("prefix")
	b, err := r.Append(prefix)
	if err != nil {
		t.Fatalf("Append(%v): %v", r, err)
	}
	if !bytes.HasPrefix(b, prefix) {
		t.Fatalf("Append clobbered the buffer's prefix: %q", b)
	}
	line := b[len(prefix):]
	if len(line) == 0 || line[len(line)-1] != '\n' {
		t.Fatalf("Append(%v) = %q: no final newline", r, line)
	}
	line = line[:len(line)-1]
	if bytes.IndexByte(line, '\n') >= 0 {
		t.Fatalf("Append(%v) = %q: embedded newline", r, line)
	}
	for _, c := range line {
		if c < ' ' || c >= 0x7f {
			t.Fatalf("Append(%v) = %q: raw byte 0x%02x", r, line, c)
		}
	}
	if n := len(bytes.Split(line, []byte(" "))); n != fieldCount(r) {
		t.Fatalf("Append(%v) = %q: %d fields, want %d", r, line, n, fieldCount(r))
	}
	got, err := Parse(line)
	if err != nil {
		t.Fatalf("Parse(%q): %v", line, err)
	}
	if got != r {
		t.Fatalf("round trip of %q:\n got  %#v\n want %#v", line, got, r)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("Validate of parsed %v: %v", got, err)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	names := testNames()
	targets := testTargets()
	for i, name := range names {
		name2 := names[(i+3)%len(names)]
		target := targets[i%len(targets)]
		for _, r := range allRecords(t, name, name2, target) {
			checkRoundTrip(t, r)
		}
	}
	for _, target := range targets {
		for _, r := range allRecords(t, "n", "m", target) {
			checkRoundTrip(t, r)
		}
	}
}

// TestRecordGolden pins the exact line format.
func TestRecordGolden(t *testing.T) {
	g, p, p2 := mustParseGFID(t, gs1), mustParseGFID(t, gs2), mustParseGFID(t, gs3)
	cases := []struct {
		r    Record
		line string
	}{
		{Record{Kind: KindEntry, GFID: g, Op: OpCreate, Mode: 0o100644, UID: 1000, GID: 100, Parent: p, Name: "a b%"},
			"E " + gs1 + " CREATE 100644 1000 100 " + gs2 + "/a%20b%25"},
		{Record{Kind: KindEntry, GFID: g, Op: OpMkdir, Mode: 0o40700, Parent: gfid.Root, Name: "d"},
			"E " + gs1 + " MKDIR 40700 0 0 00000000-0000-0000-0000-000000000001/d"},
		{Record{Kind: KindEntry, GFID: g, Op: OpMknod, Mode: 0o20644, UID: 7, GID: 8, Parent: p, Name: "dev\n"},
			"E " + gs1 + " MKNOD 20644 7 8 " + gs2 + "/dev%0A"},
		{Record{Kind: KindEntry, GFID: g, Op: OpSymlink, Parent: p, Name: "l"},
			"E " + gs1 + " SYMLINK " + gs2 + "/l"},
		{Record{Kind: KindEntry, GFID: g, Op: OpSymlink, Parent: p, Name: "l", Target: "/x y/z", HasTarget: true},
			"E " + gs1 + " SYMLINK " + gs2 + "/l %2Fx%20y%2Fz"},
		{Record{Kind: KindEntry, GFID: g, Op: OpSymlink, Parent: p, Name: "l", Target: "", HasTarget: true},
			"E " + gs1 + " SYMLINK " + gs2 + "/l %"},
		{Record{Kind: KindEntry, GFID: g, Op: OpLink, Parent: p, Name: "\xff\t"},
			"E " + gs1 + " LINK " + gs2 + "/%FF%09"},
		{Record{Kind: KindEntry, GFID: g, Op: OpRename, Parent: p, Name: "a", Parent2: p2, Name2: "b"},
			"E " + gs1 + " RENAME " + gs2 + "/a " + gs3 + "/b"},
		{Record{Kind: KindEntry, GFID: g, Op: OpUnlink, Parent: p, Name: "u"},
			"E " + gs1 + " UNLINK " + gs2 + "/u"},
		{Record{Kind: KindEntry, GFID: g, Op: OpRmdir, Parent: p, Name: "r"},
			"E " + gs1 + " RMDIR " + gs2 + "/r"},
		{Record{Kind: KindEntry, GFID: g, Op: OpPurge}, "E " + gs1 + " PURGE"},
		{Record{Kind: KindData, GFID: g}, "D " + gs1},
		{Record{Kind: KindMeta, GFID: g, Op: OpSetattr}, "M " + gs1 + " SETATTR"},
		{Record{Kind: KindMeta, GFID: g, Op: OpSetxattr}, "M " + gs1 + " SETXATTR"},
	}
	for _, c := range cases {
		b, err := c.r.Append(nil)
		if err != nil {
			t.Fatalf("Append(%v): %v", c.r, err)
		}
		if string(b) != c.line+"\n" {
			t.Errorf("Append(%v)\n got  %q\n want %q", c.r, b, c.line+"\n")
		}
		r, err := Parse([]byte(c.line))
		if err != nil {
			t.Errorf("Parse(%q): %v", c.line, err)
			continue
		}
		if r != c.r {
			t.Errorf("Parse(%q)\n got  %#v\n want %#v", c.line, r, c.r)
		}
	}
}

// TestParseLenient pins the non-canonical spellings Parse accepts today.
// TestParseStrict: only Escape's own spelling of a name is accepted, so
// that every name has exactly one encoding in a journal.
func TestParseStrict(t *testing.T) {
	g := mustParseGFID(t, gs1)
	ok := "E " + gs1 + " CREATE 0100644 0 0 " + gs2 + "/f"
	if r, err := Parse([]byte(ok)); err != nil || r.Mode != 0o100644 || r.GFID != g {
		t.Errorf("Parse(%q) = %+v, %v (an octal mode with a leading zero is fine)", ok, r, err)
	}
	for _, line := range []string{
		"E " + gs1 + " LINK " + gs2 + "/%ff%0a", // lower-case hex
		"E " + gs1 + " LINK " + gs2 + "/%41",    // an escape of a byte that needs none
		"E " + gs1 + " SYMLINK " + gs2 + "/l ",  // an empty field
	} {
		if r, err := Parse([]byte(line)); err == nil {
			t.Errorf("Parse(%q) = %+v; want a non-canonical spelling refused", line, r)
		}
	}
}

func TestAppendRefusesInvalid(t *testing.T) {
	g, p := newGFID(t), newGFID(t)
	cases := []Record{
		{},
		{Kind: KindData},
		{Kind: KindData, GFID: g, Op: OpSetattr},
		{Kind: KindMeta, GFID: g},
		{Kind: KindMeta, GFID: g, Op: OpCreate},
		{Kind: 'X', GFID: g},
		{Kind: KindEntry, GFID: g},
		{Kind: KindEntry, GFID: g, Op: "CHOWN", Parent: p, Name: "n"},
		{Kind: KindEntry, GFID: g, Op: OpSetattr},
		{Kind: KindEntry, GFID: g, Op: OpCreate, Name: "n"},
		{Kind: KindEntry, GFID: g, Op: OpCreate, Parent: p},
		{Kind: KindEntry, GFID: g, Op: OpLink, Parent: p, Name: "."},
		{Kind: KindEntry, GFID: g, Op: OpLink, Parent: p, Name: ".."},
		{Kind: KindEntry, GFID: g, Op: OpLink, Parent: p, Name: "a/b"},
		{Kind: KindEntry, GFID: g, Op: OpLink, Parent: p, Name: "a\x00b"},
		{Kind: KindEntry, GFID: g, Op: OpLink, Parent: p, Name: strings.Repeat("x", MaxNameLen+1)},
		{Kind: KindEntry, GFID: g, Op: OpUnlink, Parent: p, Name: ""},
		{Kind: KindEntry, GFID: g, Op: OpRmdir, Parent: gfid.Zero, Name: "d"},
		{Kind: KindEntry, GFID: g, Op: OpSymlink, Parent: p, Name: "/"},
		{Kind: KindEntry, GFID: g, Op: OpRename, Parent: p, Name: "a", Name2: "b"},
		{Kind: KindEntry, GFID: g, Op: OpRename, Parent: p, Name: "a", Parent2: p},
		{Kind: KindEntry, GFID: g, Op: OpRename, Parent2: p, Name: "a", Name2: "b"},
	}
	for _, r := range cases {
		in := []byte("keep")
		b, err := r.Append(in)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("Append(%#v) = %q, %v; want an error wrapping ErrMalformed", r, b, err)
		}
		if string(b) != "keep" {
			t.Errorf("Append(%#v) changed the buffer to %q on error", r, b)
		}
		if err := r.Validate(); !errors.Is(err, ErrMalformed) {
			t.Errorf("Validate(%#v) = %v; want ErrMalformed", r, err)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"a", "...", ".a", "a.", " ", "\n", strings.Repeat("x", MaxNameLen), "\xff"} {
		if err := ValidName(ok); err != nil {
			t.Errorf("ValidName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "/", "a/", "/a", "a\x00", strings.Repeat("x", MaxNameLen+1)} {
		if err := ValidName(bad); err == nil {
			t.Errorf("ValidName(%q) = nil", bad)
		}
	}
}

func TestParseErrors(t *testing.T) {
	p := gs2
	long := strings.Repeat("x", MaxNameLen+1)
	longEsc := strings.Repeat("%FF", MaxNameLen+1)
	cases := []string{
		"",
		" ",
		"D",
		"E",
		// wrong kind
		"X " + gs1,
		"DD " + gs1,
		"d " + gs1,
		"e " + gs1 + " PURGE",
		"m " + gs1 + " SETATTR",
		// bad gfid
		"D x",
		"D " + strings.ToUpper(gs1),
		"D " + gs1[:35],
		"D " + gs1 + "0",
		"D " + strings.ReplaceAll(gs1, "-", ""),
		"D 0f1e2d3c_4b5a-4978-8695-a4b3c2d1e0f0",
		"D 0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0fg",
		"D  " + gs1,
		"E " + gsZ + " PURGE",
		// missing and extra fields
		"D " + gs1 + " ",
		"D " + gs1 + " x",
		"M " + gs1,
		"M " + gs1 + " ",
		"M " + gs1 + " SETATTR x",
		"M " + gs1 + " SETATTR ",
		"M " + gs1 + " CREATE",
		"M " + gs1 + " setattr",
		"E " + gs1,
		"E " + gs1 + " ",
		"E " + gs1 + " CHOWN " + p + "/n",
		"E " + gs1 + " create 755 0 0 " + p + "/n",
		"E " + gs1 + " SETATTR",
		"E " + gs1 + " CREATE 755 0 0",
		"E " + gs1 + " CREATE 755 0 " + p + "/n",
		"E " + gs1 + " CREATE 755 0 0 " + p + "/n x",
		"E " + gs1 + " CREATE 755 0 0 " + p + "/n ",
		"E " + gs1 + " CREATE  755 0 0 " + p + "/n",
		"E " + gs1 + " MKDIR 755 0 0 " + p + "/n " + p + "/m",
		"E " + gs1 + " MKNOD",
		"E " + gs1 + " SYMLINK",
		"E " + gs1 + " SYMLINK " + p + "/n t x",
		"E " + gs1 + " SYMLINK " + p + "/n t ",
		"E " + gs1 + " LINK",
		"E " + gs1 + " LINK " + p + "/n x",
		"E " + gs1 + " UNLINK " + p + "/a b",
		"E " + gs1 + " RMDIR",
		"E " + gs1 + " RENAME " + p + "/n",
		"E " + gs1 + " RENAME " + p + "/n " + p + "/m " + p + "/o",
		"E " + gs1 + " PURGE x",
		"E " + gs1 + " PURGE ",
		// bad numbers
		"E " + gs1 + " CREATE 789 0 0 " + p + "/n",
		"E " + gs1 + " CREATE 0o755 0 0 " + p + "/n",
		"E " + gs1 + " CREATE -1 0 0 " + p + "/n",
		"E " + gs1 + " CREATE +755 0 0 " + p + "/n",
		"E " + gs1 + " CREATE  0 0 " + p + "/n",
		"E " + gs1 + " CREATE 7_55 0 0 " + p + "/n",
		"E " + gs1 + " CREATE 40000000000 0 0 " + p + "/n",
		"E " + gs1 + " CREATE 755 x 0 " + p + "/n",
		"E " + gs1 + " CREATE 755 0 -1 " + p + "/n",
		"E " + gs1 + " CREATE 755 4294967296 0 " + p + "/n",
		"E " + gs1 + " CREATE 755 0 0x10 " + p + "/n",
		// bad entries
		"E " + gs1 + " LINK " + p,
		"E " + gs1 + " LINK n",
		"E " + gs1 + " LINK " + gsZ + "/n",
		"E " + gs1 + " LINK " + strings.ToUpper(gs3) + "/n",
		"E " + gs1 + " LINK /n",
		"E " + gs1 + " LINK " + p + "/a/b",
		"E " + gs1 + " LINK " + p + "/a%2Fb",
		"E " + gs1 + " LINK " + p + "/a%2fb",
		"E " + gs1 + " LINK " + p + "/%2F",
		"E " + gs1 + " LINK " + p + "/.",
		"E " + gs1 + " LINK " + p + "/..",
		"E " + gs1 + " LINK " + p + "/%2E",
		"E " + gs1 + " LINK " + p + "/%2E%2E",
		"E " + gs1 + " LINK " + p + "/",
		"E " + gs1 + " LINK " + p + "/%",
		"E " + gs1 + " LINK " + p + "/%00",
		"E " + gs1 + " LINK " + p + "/a%00",
		"E " + gs1 + " LINK " + p + "/" + long,
		"E " + gs1 + " LINK " + p + "/" + longEsc,
		"E " + gs1 + " LINK " + p + "/a%",
		"E " + gs1 + " LINK " + p + "/a%4",
		"E " + gs1 + " LINK " + p + "/a%4g",
		"E " + gs1 + " LINK " + p + "/%%",
		"E " + gs1 + " LINK " + p + "/100%",
		"E " + gs1 + " LINK " + p + "/a\tb",
		"E " + gs1 + " LINK " + p + "/a\rb",
		"E " + gs1 + " LINK " + p + "/caf\xc3\xa9",
		"E " + gs1 + " LINK " + p + "/\x7f",
		"E " + gs1 + " RENAME " + p + "/a " + p + "/.",
		"E " + gs1 + " RENAME " + p + "/. " + p + "/a",
		"E " + gs1 + " RENAME " + p + "/a " + gsZ + "/b",
		"E " + gs1 + " CREATE 755 0 0 " + p + "/..",
		"E " + gs1 + " MKNOD 755 0 0 " + p + "/",
		"E " + gs1 + " SYMLINK " + p + "/",
		"E " + gs1 + " SYMLINK " + p + "/l a b",
		"E " + gs1 + " SYMLINK " + p + "/l a%",
		"E " + gs1 + " SYMLINK " + p + "/l /abs",
		"E " + gs1 + " SYMLINK " + p + "/l a%2",
		// embedded newline
		"D " + gs1 + "\n",
		"D " + gs1 + "\nD " + gs1,
		"E " + gs1 + " LINK " + p + "/a\nb",
		"M " + gs1 + " SETATTR\n",
		"\n",
	}
	for _, line := range cases {
		r, err := Parse([]byte(line))
		if err == nil {
			t.Errorf("Parse(%q) = %#v, nil; want an error", line, r)
			continue
		}
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q) error %v does not wrap ErrMalformed", line, err)
		}
		if r != (Record{}) {
			t.Errorf("Parse(%q) returned a non-zero record %#v with its error", line, r)
		}
	}
}

// TestParseNameLimits checks the 255-byte limit applies to the unescaped
// name, not to its escaped spelling.
func TestParseNameLimits(t *testing.T) {
	p := gs2
	ok := []string{
		strings.Repeat("x", MaxNameLen),
		strings.Repeat("%FF", MaxNameLen),
		strings.Repeat("%20", MaxNameLen),
	}
	for _, n := range ok {
		line := "E " + gs1 + " LINK " + p + "/" + n
		r, err := Parse([]byte(line))
		if err != nil {
			t.Errorf("Parse of a %d-byte name: %v", MaxNameLen, err)
			continue
		}
		if len(r.Name) != MaxNameLen {
			t.Errorf("name of %d bytes, want %d", len(r.Name), MaxNameLen)
		}
	}
	for _, n := range []string{strings.Repeat("x", MaxNameLen+1), strings.Repeat("%FF", MaxNameLen+1), strings.Repeat("x", 4096)} {
		line := "E " + gs1 + " LINK " + p + "/" + n
		if _, err := Parse([]byte(line)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse of a %d-byte name = %v, want ErrMalformed", len(n), err)
		}
	}
}

// TestParseZeroGFIDDataMeta: Validate says a record with a zero gfid is
// malformed (Append refuses it), so Parse must refuse it too: otherwise a
// line can be read that can never be written back.
func TestParseZeroGFIDDataMeta(t *testing.T) {
	for _, line := range []string{"D " + gsZ, "M " + gsZ + " SETATTR", "M " + gsZ + " SETXATTR"} {
		r, err := Parse([]byte(line))
		if err == nil {
			_, aerr := r.Append(nil)
			t.Errorf("Parse(%q) = %#v, nil; want ErrMalformed (Append of it fails: %v)", line, r, aerr)
		}
	}
}

func TestEscapeAllBytes(t *testing.T) {
	for c := 0; c < 256; c++ {
		s := string([]byte{byte(c)})
		e := Escape(s)
		printable := c > ' ' && c < 0x7f && c != '%' && c != '/'
		if printable {
			if e != s {
				t.Errorf("Escape(%q) = %q, want it unchanged", s, e)
			}
		} else {
			want := "%" + string("0123456789ABCDEF"[c>>4]) + string("0123456789ABCDEF"[c&15])
			if e != want {
				t.Errorf("Escape(%q) = %q, want %q", s, e, want)
			}
		}
		u, err := Unescape(e)
		if err != nil || u != s {
			t.Errorf("Unescape(Escape(%q)) = %q, %v", s, u, err)
		}
		// Twice the byte, and in the middle of other text.
		for _, s2 := range []string{s + s, "a" + s + "b", s + "%" + s} {
			u, err := Unescape(Escape(s2))
			if err != nil || u != s2 {
				t.Errorf("Unescape(Escape(%q)) = %q, %v", s2, u, err)
			}
		}
	}
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	e := Escape(string(all))
	checkEscaped(t, e)
	if u, err := Unescape(e); err != nil || u != string(all) {
		t.Errorf("Unescape(Escape(all bytes)) = %q, %v", u, err)
	}
}

func checkEscaped(t testing.TB, e string) {
	t.Helper()
	for i := 0; i < len(e); i++ {
		if c := e[i]; c <= ' ' || c >= 0x7f || c == '/' {
			t.Fatalf("escaped text %q holds byte 0x%02x at %d", e, c, i)
		}
	}
}

func TestEscapeEmpty(t *testing.T) {
	if e := Escape(""); e != "%" {
		t.Errorf(`Escape("") = %q, want "%%"`, e)
	}
	if u, err := Unescape("%"); err != nil || u != "" {
		t.Errorf(`Unescape("%%") = %q, %v; want ""`, u, err)
	}
	// An empty field is not Escape's spelling of anything: refused.
	if u, err := Unescape(""); err == nil {
		t.Errorf(`Unescape("") = %q, nil; want an error`, u)
	}
	if e := Escape("%"); e != "%25" {
		t.Errorf(`Escape("%%") = %q, want "%%25"`, e)
	}
	if u, err := Unescape("%25"); err != nil || u != "%" {
		t.Errorf(`Unescape("%%25") = %q, %v`, u, err)
	}
}

func TestUnescapeRefusesNonCanonical(t *testing.T) {
	bad := []string{
		" ", "a b", "a\nb", "a\tb", "\x00", "\x7f", "\xff", "a/b", "/",
		"%%",
		"a%", "%2", "a%2", "%zz", "%G0", "%0G", "% 20", "%-1", "100%", "%%41",
		"%2" + "\xff", "ok%20then raw",
	}
	for _, s := range bad {
		if u, err := Unescape(s); err == nil {
			t.Errorf("Unescape(%q) = %q, nil; want an error", s, u)
		}
	}
	// Other spellings of a string Escape would write differently.
	for _, in := range []string{"%2f", "%ff%0a", "%41", "a%2eb", ""} {
		if u, err := Unescape(in); err == nil {
			t.Errorf("Unescape(%q) = %q, nil; want a non-canonical spelling refused", in, u)
		}
	}
	for in, want := range map[string]string{"%2F": "/", "%FF%0A": "\xff\n", "%25": "%", "%00": "\x00", "%": ""} {
		if u, err := Unescape(in); err != nil || u != want {
			t.Errorf("Unescape(%q) = %q, %v; want %q", in, u, err, want)
		}
	}
}

// FuzzParse: Parse never panics; what it accepts it can write back, and
// reading that back gives the same record.
func FuzzParse(f *testing.F) {
	names := []string{"n", "a b", "x\ny", "%", "\xff\x80", strings.Repeat("z", MaxNameLen)}
	for i, n := range names {
		for _, r := range allRecords(f, n, names[(i+1)%len(names)], "/t a%") {
			b, err := r.Append(nil)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b[:len(b)-1])
		}
	}
	for _, s := range []string{
		"", " ", "D", "E " + gs1 + " PURGE x", "E " + gs1 + " LINK " + gs2 + "/%2e",
		"E " + gs1 + " CREATE 0755 1 2 " + gs2 + "/%41", "E " + gs1 + " SYMLINK " + gs2 + "/l ",
		"M " + gs1 + " SETATTR\n", "E " + gs1 + " LINK " + gs2 + "/a%",
		"D " + gsZ, "M " + gsZ + " SETXATTR",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := Parse(line)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrMalformed", line, err)
			}
			return
		}
		b, err := r.Append(nil)
		if err != nil {
			t.Fatalf("Parse(%q) = %#v, but Append refuses it: %v", line, r, err)
		}
		if len(b) == 0 || b[len(b)-1] != '\n' || bytes.IndexByte(b[:len(b)-1], '\n') >= 0 {
			t.Fatalf("Append(%#v) = %q: not one line", r, b)
		}
		r2, err := Parse(b[:len(b)-1])
		if err != nil {
			t.Fatalf("Parse(Append(Parse(%q))) = %v (line %q)", line, err, b)
		}
		if r2 != r {
			t.Fatalf("Parse(%q) = %#v, but its re-encoding %q parses to %#v", line, r, b, r2)
		}
		// The canonical encoding is a fixed point.
		b2, err := r2.Append(nil)
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("re-encoding is not stable: %q then %q (%v)", b, b2, err)
		}
	})
}

// FuzzEscape: Escape is reversible and its output holds no separator.
func FuzzEscape(f *testing.F) {
	for _, s := range append(testNames(), testTargets()...) {
		f.Add(s)
	}
	f.Add("\x00")
	f.Add("%25%")
	f.Fuzz(func(t *testing.T, s string) {
		e := Escape(s)
		checkEscaped(t, e)
		if strings.Contains(e, " ") || strings.Contains(e, "\n") {
			t.Fatalf("Escape(%q) = %q holds a separator", s, e)
		}
		u, err := Unescape(e)
		if err != nil {
			t.Fatalf("Unescape(Escape(%q) = %q): %v", s, e, err)
		}
		if u != s {
			t.Fatalf("Unescape(Escape(%q)) = %q", s, u)
		}
		// Escape of a non-empty string that needs no escaping is itself.
		if s != "" && e == s {
			for i := 0; i < len(s); i++ {
				if needsEscape(s[i]) {
					t.Fatalf("Escape(%q) left byte 0x%02x unescaped", s, s[i])
				}
			}
		}
	})
}

// TestCreateWithStat: a crawl's CREATE carries size, mtime and ctime; they
// round trip, are optional (ctime alone too), and are refused on other ops
// or when negative.
func TestCreateWithStat(t *testing.T) {
	g, p := mustParseGFID(t, gs1), mustParseGFID(t, gs2)
	r := Record{Kind: KindEntry, GFID: g, Op: OpCreate, Mode: 0o100644, Parent: p, Name: "f", Size: 4096, MtimeNS: 1_700_000_000_123_456_789, HasStat: true}
	b, err := r.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := " " + gs2 + "/f 4096 1700000000123456789\n"; !strings.HasSuffix(string(b), want) {
		t.Errorf("encoded %q, want it to end in %q", b, want)
	}
	got, err := Parse(b[:len(b)-1])
	if err != nil || got != r {
		t.Errorf("Parse(%q) = %+v, %v; want %+v", b, got, err, r)
	}
	r.CtimeNS = 1_700_000_001_000_000_007
	if b, err = r.Append(nil); err != nil {
		t.Fatal(err)
	}
	if want := " " + gs2 + "/f 4096 1700000000123456789 1700000001000000007\n"; !strings.HasSuffix(string(b), want) {
		t.Errorf("encoded %q, want it to end in %q", b, want)
	}
	if got, err := Parse(b[:len(b)-1]); err != nil || got != r {
		t.Errorf("Parse(%q) = %+v, %v; want %+v", b, got, err, r)
	}
	for _, line := range []string{
		"E " + gs1 + " CREATE 100644 0 0 " + gs2 + "/f 1 5 0",
		"E " + gs1 + " CREATE 100644 0 0 " + gs2 + "/f 1 5 -3",
		"E " + gs1 + " CREATE 100644 0 0 " + gs2 + "/f 1 5 x",
		"E " + gs1 + " CREATE 100644 0 0 " + gs2 + "/f 1 5 6 7",
		"E " + gs1 + " MKDIR 40755 0 0 " + gs2 + "/d 1 5 6",
		"E " + gs1 + " CREATE 100644 0 0 " + gs2 + "/f -1 5",
		"E " + gs1 + " CREATE 100644 0 0 " + gs2 + "/f 1",
		"E " + gs1 + " MKDIR 40755 0 0 " + gs2 + "/d 1 5",
		"E " + gs1 + " CREATE 100644 0 0 " + gs2 + "/f x 5",
	} {
		if r, err := Parse([]byte(line)); err == nil {
			t.Errorf("Parse(%q) = %+v; want an error", line, r)
		}
	}
	bad := Record{Kind: KindEntry, GFID: g, Op: OpMkdir, Parent: p, Name: "d", HasStat: true}
	if _, err := bad.Append(nil); err == nil {
		t.Error("Append of a MKDIR with size/mtime succeeded")
	}
}
