package changelog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Journal files start with a header line naming the format version, the
// journal's type and the time (ns since the epoch) it starts covering:
//
//	GEOREP-CHANGELOG v1 XSYNC 1700000000000000000
const (
	magic         = "GEOREP-CHANGELOG"
	formatVersion = "v1"
)

// Type says who wrote a journal file.
type Type string

const (
	// TypeXsync is written by a crawl: the tree as it was found.
	TypeXsync Type = "XSYNC"
	// TypeLive is written by the recorder: changes as they happened.
	TypeLive Type = "CHANGELOG"
)

// Header is the first line of a journal file.
type Header struct {
	Type    Type
	StartNS int64
}

// Writer appends records to a journal file being built under a temporary
// name; Commit makes it durable and gives it its final name, so a reader
// never sees a half-written journal.
type Writer struct {
	f     *os.File
	w     *bufio.Writer
	tmp   string
	final string
	buf   []byte
	n     int
}

// Create starts the journal that Commit will name path.
func Create(path string, h Header) (*Writer, error) {
	if h.Type != TypeXsync && h.Type != TypeLive {
		return nil, fmt.Errorf("changelog: journal type %q", h.Type)
	}
	if h.StartNS < 0 {
		return nil, fmt.Errorf("changelog: journal start time %d", h.StartNS)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("changelog: creating %s: %w", tmp, err)
	}
	w := &Writer{f: f, w: bufio.NewWriterSize(f, 256<<10), tmp: tmp, final: path}
	if _, err := fmt.Fprintf(w.w, "%s %s %s %d\n", magic, formatVersion, h.Type, h.StartNS); err != nil {
		w.Abort()
		return nil, fmt.Errorf("changelog: writing header of %s: %w", tmp, err)
	}
	return w, nil
}

// Add appends one record.
func (w *Writer) Add(r *Record) error {
	var err error
	w.buf, err = r.Append(w.buf[:0])
	if err != nil {
		return err
	}
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("changelog: writing %s: %w", w.tmp, err)
	}
	w.n++
	return nil
}

// Len is the number of records added.
func (w *Writer) Len() int { return w.n }

// Commit flushes, fsyncs, renames the journal to its final name and fsyncs
// the directory.
func (w *Writer) Commit() error { return w.commit(true) }

// CommitVolatile names the journal like Commit, without syncing it: for
// a journal of the moment, which a crash may lose (it is made again).
func (w *Writer) CommitVolatile() error { return w.commit(false) }

func (w *Writer) commit(durable bool) error {
	if err := w.w.Flush(); err != nil {
		w.Abort()
		return fmt.Errorf("changelog: flushing %s: %w", w.tmp, err)
	}
	if durable {
		if err := w.f.Sync(); err != nil {
			w.Abort()
			return fmt.Errorf("changelog: fsync %s: %w", w.tmp, err)
		}
	}
	if err := w.f.Close(); err != nil {
		os.Remove(w.tmp)
		return fmt.Errorf("changelog: closing %s: %w", w.tmp, err)
	}
	if err := os.Rename(w.tmp, w.final); err != nil {
		os.Remove(w.tmp)
		return fmt.Errorf("changelog: naming %s: %w", w.final, err)
	}
	if !durable {
		return nil
	}
	return syncDir(filepath.Dir(w.final))
}

// Abort discards the journal.
func (w *Writer) Abort() {
	w.f.Close()
	os.Remove(w.tmp)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("changelog: opening dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("changelog: fsync dir %s: %w", dir, err)
	}
	return nil
}

// ParseHeader reads a journal header line (without newline).
func ParseHeader(line []byte) (Header, error) {
	f := strings.Split(string(line), " ")
	if len(f) != 4 || f[0] != magic {
		return Header{}, fmt.Errorf("%w: not a georep journal header: %q", ErrMalformed, line)
	}
	if f[1] != formatVersion {
		return Header{}, fmt.Errorf("%w: journal format %q, this georep reads %q", ErrMalformed, f[1], formatVersion)
	}
	h := Header{Type: Type(f[2])}
	if h.Type != TypeXsync && h.Type != TypeLive {
		return Header{}, fmt.Errorf("%w: journal type %q", ErrMalformed, f[2])
	}
	ns, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil || ns < 0 {
		return Header{}, fmt.Errorf("%w: journal start time %q", ErrMalformed, f[3])
	}
	h.StartNS = ns
	return h, nil
}

// Reader reads a journal file record by record.
type Reader struct {
	name   string
	s      *bufio.Scanner
	line   int
	Header Header
}

// maxLine bounds a record: two escaped 255-byte names (3 bytes a byte at
// worst), a symlink target of PATH_MAX escaped, and the fixed fields.
const maxLine = 64 << 10

// NewReader reads the header from r; name is used in errors.
func NewReader(name string, r io.Reader) (*Reader, error) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 64<<10), maxLine)
	s.Split(splitLines)
	rd := &Reader{name: name, s: s}
	if !s.Scan() {
		if err := s.Err(); err != nil {
			return nil, fmt.Errorf("changelog: reading %s: %w", name, err)
		}
		return nil, fmt.Errorf("changelog: %s: %w: empty file", name, ErrMalformed)
	}
	rd.line = 1
	h, err := ParseHeader(s.Bytes())
	if err != nil {
		return nil, fmt.Errorf("changelog: %s: %w", name, err)
	}
	rd.Header = h
	return rd, nil
}

// errTorn says the last line of a journal lacks its newline: the writer
// stopped in the middle of it.
var errTorn = fmt.Errorf("%w: torn (no final newline)", ErrMalformed)

// splitLines is bufio.ScanLines without its leniency: a CR stays part of
// the line (and Parse refuses it), and a final line without a newline is
// an error, not a record.
func splitLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return 0, nil, errTorn
	}
	return 0, nil, nil
}

// Next returns the next record, or io.EOF after the last. A malformed line
// is an error naming the file and line; a file that does not end in a
// newline is torn and reported as such.
func (rd *Reader) Next() (Record, error) {
	if !rd.s.Scan() {
		if err := rd.s.Err(); err != nil {
			return Record{}, fmt.Errorf("changelog: %s line %d: %w", rd.name, rd.line+1, err)
		}
		return Record{}, io.EOF
	}
	rd.line++
	r, err := Parse(rd.s.Bytes())
	if err != nil {
		return Record{}, fmt.Errorf("changelog: %s line %d: %w", rd.name, rd.line, err)
	}
	return r, nil
}

// ReadFile streams a journal file and calls fn for each record, in order.
func ReadFile(path string, fn func(Record) error) (Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return Header{}, fmt.Errorf("changelog: reading %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Header{}, fmt.Errorf("changelog: stat %s: %w", path, err)
	}
	// Checked before any record is delivered: a torn journal yields none
	// (the reader alone would report the tear only after the good lines).
	if st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err != nil {
			return Header{}, fmt.Errorf("changelog: reading %s: %w", path, err)
		}
		if last[0] != '\n' {
			return Header{}, fmt.Errorf("changelog: %s: %w: torn (no final newline)", path, ErrMalformed)
		}
	}
	rd, err := NewReader(path, bufio.NewReaderSize(f, 256<<10))
	if err != nil {
		return Header{}, err
	}
	for {
		r, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return rd.Header, nil
		}
		if err != nil {
			return rd.Header, err
		}
		if err := fn(r); err != nil {
			return rd.Header, err
		}
	}
}
