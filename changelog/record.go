// Package changelog is georep's journal of changes: line records keyed by
// gfid (E for entry ops, D for data, M for metadata), in files written by
// the recorder (live changes) or by the xsync crawl (a one-shot walk), and
// read by the master's batch processor.
//
// A record is one line; names and symlink targets are percent-escaped so
// that any byte string (spaces, newlines, non-UTF-8) fits:
//
//	E <gfid> CREATE|MKDIR|MKNOD <mode> <uid> <gid> <pargfid>/<name> [<size> <mtime-ns> [<ctime-ns>]]
//	E <gfid> SYMLINK <pargfid>/<name> [<target>]
//	E <gfid> LINK <pargfid>/<name>
//	E <gfid> RENAME <pargfid>/<name> <pargfid2>/<name2>
//	E <gfid> UNLINK|RMDIR <pargfid>/<name>
//	E <gfid> PURGE
//	D <gfid>
//	M <gfid> SETATTR|SETXATTR
//
// PURGE (written by xsync after it listed directory <gfid>) asks that the
// slave's copy of the directory hold only the names the master's holds. A
// crawl also records a regular file's size, mtime and ctime with its
// CREATE, so that the processor can ask the slave whether its copy is
// current without looking at the file again (and knows not to, for a file
// changed since the last sync: see master/batch).
// Mode is octal st_mode; uid and gid are decimal.
package changelog

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/georep/georep/internal/beneath"

	"github.com/georep/georep/internal/gfid"
)

// Kind is a record's class.
type Kind byte

const (
	KindEntry Kind = 'E'
	KindData  Kind = 'D'
	KindMeta  Kind = 'M'
)

// Op is an entry or metadata operation.
type Op string

const (
	OpCreate  Op = "CREATE"
	OpMkdir   Op = "MKDIR"
	OpMknod   Op = "MKNOD"
	OpSymlink Op = "SYMLINK"
	OpLink    Op = "LINK"
	OpRename  Op = "RENAME"
	// OpExchange: the entries at the two names swapped places (renameat2
	// with RENAME_EXCHANGE); GFID is the one that was at the first name.
	OpExchange Op = "EXCHANGE"
	OpUnlink   Op = "UNLINK"
	OpRmdir    Op = "RMDIR"
	OpPurge    Op = "PURGE"
	OpSetattr  Op = "SETATTR"
	OpSetxattr Op = "SETXATTR"
)

// Record is one journal line.
type Record struct {
	Kind Kind
	GFID gfid.GFID
	Op   Op // empty for D

	// Entry fields.
	Mode      uint32
	UID, GID  uint32
	Parent    gfid.GFID
	Name      string
	Parent2   gfid.GFID // RENAME destination
	Name2     string
	Target    string // SYMLINK target, when recorded
	HasTarget bool
	// CREATE from a crawl: the size, mtime and ctime (ns) it found, when
	// HasStat (CtimeNS 0: not recorded).
	Size, MtimeNS, CtimeNS int64
	HasStat                bool
}

// ErrMalformed wraps every parse error.
var ErrMalformed = errors.New("changelog: malformed record")

// MaxNameLen is the longest name a record may carry (NAME_MAX).
const MaxNameLen = beneath.MaxNameLen

// MaxTargetLen is the longest symlink target (PATH_MAX less the NUL).
const MaxTargetLen = 4095

// ValidName reports why name cannot be a single path component, or nil
// (beneath.ValidName: the slave resolves names with the same rule).
func ValidName(name string) error { return beneath.ValidName(name) }

// needsEscape reports whether byte c must be percent-escaped: everything but
// printable ASCII other than '%' and '/'.
func needsEscape(c byte) bool { return c <= ' ' || c >= 0x7f || c == '%' || c == '/' }

const hexDigits = "0123456789ABCDEF"

// Escape percent-escapes s so that it holds no space, newline, '/', '%' or
// byte outside printable ASCII. The empty string is written as "%".
func Escape(s string) string {
	if s == "" {
		return "%"
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if needsEscape(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if needsEscape(c) {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Unescape reverses Escape. It accepts only what Escape writes (upper-case
// hex, escapes only of bytes that need them, "%" for the empty string and
// never an empty field), so that each string has exactly one encoding.
func Unescape(s string) (string, error) {
	if s == "%" {
		return "", nil
	}
	if s == "" {
		return "", errors.New("empty field (the empty string is written %)")
	}
	if strings.IndexByte(s, '%') < 0 {
		for i := 0; i < len(s); i++ {
			if needsEscape(s[i]) {
				return "", fmt.Errorf("raw byte 0x%02x in escaped text", s[i])
			}
		}
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) {
				return "", errors.New("truncated escape")
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", fmt.Errorf("bad escape %q", s[i:i+3])
			}
			d := hi<<4 | lo
			if !needsEscape(d) {
				return "", fmt.Errorf("escape %q of a byte that needs none", s[i:i+3])
			}
			b = append(b, d)
			i += 2
			continue
		}
		if needsEscape(c) {
			return "", fmt.Errorf("raw byte 0x%02x in escaped text", c)
		}
		b = append(b, c)
	}
	return string(b), nil
}

func entryOf(parent gfid.GFID, name string) string {
	return parent.String() + "/" + Escape(name)
}

func parseEntry(s string) (gfid.GFID, string, error) {
	i := strings.IndexByte(s, '/')
	if i < 0 {
		return gfid.Zero, "", fmt.Errorf("entry %q lacks '/'", s)
	}
	p, err := gfid.Parse(s[:i])
	if err != nil {
		return gfid.Zero, "", err
	}
	name, err := Unescape(s[i+1:])
	if err != nil {
		return gfid.Zero, "", fmt.Errorf("entry name: %w", err)
	}
	if err := ValidName(name); err != nil {
		return gfid.Zero, "", err
	}
	return p, name, nil
}

// Validate checks that r is a record Encode can write and Parse would read.
func (r *Record) Validate() error {
	if r.GFID.IsZero() {
		return fmt.Errorf("%w: zero gfid", ErrMalformed)
	}
	checkEntry := func(p gfid.GFID, name string) error {
		if p.IsZero() {
			return fmt.Errorf("%w: zero parent gfid", ErrMalformed)
		}
		if err := ValidName(name); err != nil {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return nil
	}
	switch r.Kind {
	case KindData:
		if r.Op != "" {
			return fmt.Errorf("%w: data record with op %q", ErrMalformed, r.Op)
		}
		return nil
	case KindMeta:
		if r.Op != OpSetattr && r.Op != OpSetxattr {
			return fmt.Errorf("%w: metadata op %q", ErrMalformed, r.Op)
		}
		return nil
	case KindEntry:
		if r.HasStat && (r.Op != OpCreate || r.Size < 0 || r.CtimeNS < 0) {
			return fmt.Errorf("%w: size/mtime on %s", ErrMalformed, r.Op)
		}
		switch r.Op {
		case OpSymlink:
			if len(r.Target) > MaxTargetLen {
				return fmt.Errorf("%w: symlink target of %d bytes exceeds %d", ErrMalformed, len(r.Target), MaxTargetLen)
			}
			return checkEntry(r.Parent, r.Name)
		case OpCreate, OpMkdir, OpMknod, OpLink, OpUnlink, OpRmdir:
			return checkEntry(r.Parent, r.Name)
		case OpRename, OpExchange:
			if err := checkEntry(r.Parent, r.Name); err != nil {
				return err
			}
			return checkEntry(r.Parent2, r.Name2)
		case OpPurge:
			return nil
		}
		return fmt.Errorf("%w: entry op %q", ErrMalformed, r.Op)
	}
	return fmt.Errorf("%w: kind %q", ErrMalformed, byte(r.Kind))
}

// Append writes r as one line, with its trailing newline, to b.
func (r *Record) Append(b []byte) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return b, err
	}
	b = append(b, byte(r.Kind), ' ')
	b = append(b, r.GFID.String()...)
	switch r.Kind {
	case KindData:
	case KindMeta:
		b = append(b, ' ')
		b = append(b, r.Op...)
	case KindEntry:
		b = append(b, ' ')
		b = append(b, r.Op...)
		switch r.Op {
		case OpCreate, OpMkdir, OpMknod:
			b = append(b, ' ')
			b = strconv.AppendUint(b, uint64(r.Mode), 8)
			b = append(b, ' ')
			b = strconv.AppendUint(b, uint64(r.UID), 10)
			b = append(b, ' ')
			b = strconv.AppendUint(b, uint64(r.GID), 10)
			b = append(b, ' ')
			b = append(b, entryOf(r.Parent, r.Name)...)
			if r.HasStat {
				b = append(b, ' ')
				b = strconv.AppendInt(b, r.Size, 10)
				b = append(b, ' ')
				b = strconv.AppendInt(b, r.MtimeNS, 10)
				if r.CtimeNS != 0 {
					b = append(b, ' ')
					b = strconv.AppendInt(b, r.CtimeNS, 10)
				}
			}
		case OpSymlink:
			b = append(b, ' ')
			b = append(b, entryOf(r.Parent, r.Name)...)
			if r.HasTarget {
				b = append(b, ' ')
				b = append(b, Escape(r.Target)...)
			}
		case OpLink, OpUnlink, OpRmdir:
			b = append(b, ' ')
			b = append(b, entryOf(r.Parent, r.Name)...)
		case OpRename, OpExchange:
			b = append(b, ' ')
			b = append(b, entryOf(r.Parent, r.Name)...)
			b = append(b, ' ')
			b = append(b, entryOf(r.Parent2, r.Name2)...)
		}
	}
	return append(b, '\n'), nil
}

// String renders r human-readably (names unescaped, quoted).
func (r Record) String() string {
	switch r.Kind {
	case KindData:
		return fmt.Sprintf("D %s", r.GFID)
	case KindMeta:
		return fmt.Sprintf("M %s %s", r.GFID, r.Op)
	}
	switch r.Op {
	case OpCreate, OpMkdir, OpMknod:
		if r.HasStat {
			return fmt.Sprintf("E %s %s mode=%o uid=%d gid=%d size=%d mtime=%d ctime=%d %s/%q", r.GFID, r.Op, r.Mode, r.UID, r.GID, r.Size, r.MtimeNS, r.CtimeNS, r.Parent, r.Name)
		}
		return fmt.Sprintf("E %s %s mode=%o uid=%d gid=%d %s/%q", r.GFID, r.Op, r.Mode, r.UID, r.GID, r.Parent, r.Name)
	case OpSymlink:
		return fmt.Sprintf("E %s %s %s/%q -> %q", r.GFID, r.Op, r.Parent, r.Name, r.Target)
	case OpRename:
		return fmt.Sprintf("E %s %s %s/%q -> %s/%q", r.GFID, r.Op, r.Parent, r.Name, r.Parent2, r.Name2)
	case OpExchange:
		return fmt.Sprintf("E %s %s %s/%q <-> %s/%q", r.GFID, r.Op, r.Parent, r.Name, r.Parent2, r.Name2)
	case OpPurge:
		return fmt.Sprintf("E %s %s", r.GFID, r.Op)
	}
	return fmt.Sprintf("E %s %s %s/%q", r.GFID, r.Op, r.Parent, r.Name)
}

// Parse reads one record from line (without its newline). Any deviation
// from the format is an error wrapping ErrMalformed; Parse never panics.
func Parse(line []byte) (Record, error) {
	var r Record
	if bytes.IndexByte(line, '\n') >= 0 {
		return r, fmt.Errorf("%w: embedded newline", ErrMalformed)
	}
	f := strings.Split(string(line), " ")
	bad := func(format string, a ...any) (Record, error) {
		return Record{}, fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
	}
	if len(f) < 2 || len(f[0]) != 1 {
		return bad("%q: want '<kind> <gfid> ...'", line)
	}
	r.Kind = Kind(f[0][0])
	g, err := gfid.Parse(f[1])
	if err != nil {
		return bad("%v", err)
	}
	r.GFID = g
	switch r.Kind {
	case KindData:
		if len(f) != 2 {
			return bad("D record with %d fields", len(f))
		}
		return r, r.Validate()
	case KindMeta:
		if len(f) != 3 {
			return bad("M record with %d fields", len(f))
		}
		r.Op = Op(f[2])
		if r.Op != OpSetattr && r.Op != OpSetxattr {
			return bad("metadata op %q", f[2])
		}
		return r, r.Validate()
	case KindEntry:
	default:
		return bad("kind %q", f[0])
	}
	if len(f) < 3 {
		return bad("E record without op")
	}
	r.Op = Op(f[2])
	args := f[3:]
	want := func(n int) error {
		if len(args) != n {
			return fmt.Errorf("%w: %s with %d arguments, want %d", ErrMalformed, r.Op, len(args), n)
		}
		return nil
	}
	switch r.Op {
	case OpCreate, OpMkdir, OpMknod:
		if r.Op == OpCreate && len(args) == 7 {
			ctime, err := strconv.ParseInt(args[6], 10, 64)
			if err != nil || ctime <= 0 {
				return bad("CREATE ctime %q", args[6])
			}
			r.CtimeNS = ctime
			args = args[:6]
		}
		if r.Op == OpCreate && len(args) == 6 {
			size, err1 := strconv.ParseInt(args[4], 10, 64)
			mtime, err2 := strconv.ParseInt(args[5], 10, 64)
			if err := errors.Join(err1, err2); err != nil || size < 0 {
				return bad("CREATE size/mtime %q %q", args[4], args[5])
			}
			r.Size, r.MtimeNS, r.HasStat = size, mtime, true
			args = args[:4]
		}
		if err := want(4); err != nil {
			return Record{}, err
		}
		mode, err1 := strconv.ParseUint(args[0], 8, 32)
		uid, err2 := strconv.ParseUint(args[1], 10, 32)
		gid, err3 := strconv.ParseUint(args[2], 10, 32)
		if err := errors.Join(err1, err2, err3); err != nil {
			return bad("%s: %v", r.Op, err)
		}
		r.Mode, r.UID, r.GID = uint32(mode), uint32(uid), uint32(gid)
		if r.Parent, r.Name, err = parseEntry(args[3]); err != nil {
			return bad("%s: %v", r.Op, err)
		}
	case OpSymlink:
		if len(args) != 1 && len(args) != 2 {
			return bad("SYMLINK with %d arguments", len(args))
		}
		if r.Parent, r.Name, err = parseEntry(args[0]); err != nil {
			return bad("%s: %v", r.Op, err)
		}
		if len(args) == 2 {
			if r.Target, err = Unescape(args[1]); err != nil {
				return bad("SYMLINK target: %v", err)
			}
			r.HasTarget = true
		}
	case OpLink, OpUnlink, OpRmdir:
		if err := want(1); err != nil {
			return Record{}, err
		}
		if r.Parent, r.Name, err = parseEntry(args[0]); err != nil {
			return bad("%s: %v", r.Op, err)
		}
	case OpRename, OpExchange:
		if err := want(2); err != nil {
			return Record{}, err
		}
		if r.Parent, r.Name, err = parseEntry(args[0]); err != nil {
			return bad("%s: %v", r.Op, err)
		}
		if r.Parent2, r.Name2, err = parseEntry(args[1]); err != nil {
			return bad("%s: %v", r.Op, err)
		}
	case OpPurge:
		if err := want(0); err != nil {
			return Record{}, err
		}
	default:
		return bad("entry op %q", f[2])
	}
	if err := r.Validate(); err != nil {
		return Record{}, err
	}
	return r, nil
}
