package changelog

// The live journal: the recorder appends records to an open segment and
// rolls it over every few hundred milliseconds; the master's changelog crawl
// consumes the committed segments. One directory holds the segment files
// (CHANGELOG.<end-ns>, written through Create and committed like any other
// journal file) and an append-only index, INDEX:
//
//	GEOREP-CHANGELOG-INDEX v1
//	SEG <start> <end> <file>|-            changes read in (start, end]; "-": none
//	GAP <start> <end> <file>|- <reason>   the same, but changes may have been missed
//	DONE <start> <end>                    (start, end] is consumed: files deleted
//
// Times are ns since the epoch, in canonical decimal; <file> is always
// CHANGELOG.<end>; <reason> is percent-escaped like a record's names. The
// entries are contiguous: each starts where the previous one (or the
// consumed range) ends. A commit appends one line (O_APPEND, fsync), so a
// rollover costs the same however many segments wait for the slave; the
// file is rewritten atomically (compacted: header, one DONE line, the live
// entries) on open and once DONE lines have made enough lines obsolete.
//
// Crash safety: a segment file is fsynced and renamed before its index line
// is appended, and consumed files are deleted only after their DONE line is
// durable. So after a crash the directory may hold a committed segment that
// the index lacks (it is re-added, as a gap: the lost line may have been a
// GAP, and claiming coverage the journal may not have is the one thing it
// must never do), consumed files (deleted), and temporary files (deleted);
// the index may end in a torn line (dropped: its commit never completed).

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/atomicfile"
)

const (
	indexName  = "INDEX"
	indexMagic = "GEOREP-CHANGELOG-INDEX v1"
	// segmentPrefix names committed segments: CHANGELOG.<end-ns>.
	segmentPrefix = "CHANGELOG."
	// openSegment is the name the open segment is created under; it is
	// only ever seen as its temporary file (openSegment + ".tmp"), and
	// committed under its real name once its end is known.
	openSegment = "CHANGELOG.open"

	// DefaultIdleCommit is Journal.IdleCommit's initial value.
	DefaultIdleCommit = 10 * time.Second

	// MaxGapReason bounds a gap's reason (bytes); longer ones are cut.
	MaxGapReason = 1024

	// defaultCompactAfter is how many obsolete index lines (superseded by
	// DONE) trigger a rewrite, when they also outnumber the live ones.
	defaultCompactAfter = 1024
)

// Segment is one entry of the journal's index.
type Segment struct {
	Start, End int64  // ns since the epoch: the segment holds the changes the recorder read in (Start, End]
	Path       string // absolute path of the segment file; "" when the segment holds no records
	Gap        bool   // the recorder may have missed changes in (Start, End]; its records, if any, are still valid
	Reason     string // why, for a gap
}

// ErrNotAvailable says the journal cannot replay a range: every *GapError
// matches it with errors.Is.
var ErrNotAvailable = errors.New("changelog: history not available")

// ErrClosed is returned by a Journal's methods after Close.
var ErrClosed = errors.New("changelog: journal closed")

// ErrCorruptIndex wraps every error about the content of a journal index.
var ErrCorruptIndex = errors.New("changelog: corrupt journal index")

// GapError says the journal cannot replay a range continuously: (From, To]
// is the first part of the requested range that it lacks or that is a gap.
type GapError struct {
	From, To int64
	Reason   string
}

func (e *GapError) Error() string {
	return fmt.Sprintf("changelog: history not available for (%s .. %s]: %s", FormatNS(e.From), FormatNS(e.To), e.Reason)
}

// Is makes errors.Is(err, ErrNotAvailable) true for every *GapError.
func (e *GapError) Is(target error) bool { return target == ErrNotAvailable }

// FormatNS renders a journal time (ns since the epoch) as RFC 3339 UTC.
func FormatNS(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

// Journal is the live changelog journal of one master. All its methods are
// safe for concurrent use; one process at a time may have a directory open
// (an exclusive flock on it).
//
// The recorder calls Begin, then Add and Rollover (and MarkGap when it may
// have missed changes), and End on a clean stop. The consumer reads Covered
// (before Next, so that whatever the recorder committed up to that time is
// in Next's answer), Next or History, and Done once the slave holds what it
// read.
type Journal struct {
	// IdleCommit is how long an open segment may stay empty before a
	// Rollover commits it as an entry without records (so the index keeps
	// saying how far the recorder got). Set it before the journal is
	// shared between goroutines.
	IdleCommit time.Duration

	dir    string
	notify chan struct{}
	// subs are Subscribe's channels, each told like notify.
	subs map[chan struct{}]struct{}

	mu           sync.Mutex
	lock         *os.File // the directory, flocked
	index        *os.File // INDEX, O_APPEND
	st           indexState
	compactAfter int
	closed       bool
	failed       error // a write to disk failed: the journal refuses to write more
	buf          []byte

	// The open segment.
	begun      bool
	start      int64
	covered    int64
	w          *Writer
	pendingGap bool
	gapReason  string
}

// OpenJournal opens (creating it, mode 0700, if needed) the journal in dir,
// repairs what a crash left (see the file's comment) and rewrites its index.
func OpenJournal(dir string) (*Journal, error) {
	if dir == "" {
		return nil, errors.New("changelog: journal dir not set")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("changelog: journal dir %s: %w", dir, err)
	}
	if _, err := os.Stat(abs); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return nil, fmt.Errorf("changelog: creating journal dir: %w", err)
		}
		// Segments committed in it must not vanish with it.
		if err := syncDir(filepath.Dir(abs)); err != nil {
			return nil, err
		}
	}
	lock, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("changelog: opening journal dir: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("changelog: journal %s is in use by another process", abs)
		}
		return nil, fmt.Errorf("changelog: locking journal %s: %w", abs, err)
	}
	j := &Journal{
		IdleCommit:   DefaultIdleCommit,
		dir:          abs,
		notify:       make(chan struct{}, 1),
		lock:         lock,
		compactAfter: defaultCompactAfter,
	}
	if err := j.load(); err != nil {
		if j.index != nil {
			j.index.Close()
		}
		lock.Close()
		return nil, err
	}
	return j, nil
}

func segmentName(end int64) string { return segmentPrefix + strconv.FormatInt(end, 10) }

// segmentEnd parses a committed segment's file name.
func segmentEnd(name string) (int64, bool) {
	s, ok := strings.CutPrefix(name, segmentPrefix)
	if !ok {
		return 0, false
	}
	n, err := parseNS(s)
	return n, err == nil
}

// load reads the index and the directory, repairs them and rewrites the
// index; it runs before the journal is shared.
func (j *Journal) load() error {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return fmt.Errorf("changelog: reading journal dir: %w", err)
	}
	var files []int64
	present := map[string]bool{}
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, segmentPrefix) && strings.HasSuffix(name, ".tmp"),
			strings.HasPrefix(name, "."+indexName+".tmp"):
			if err := os.Remove(filepath.Join(j.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("changelog: removing temporary file: %w", err)
			}
		default:
			if end, ok := segmentEnd(name); ok && e.Type().IsRegular() {
				files = append(files, end)
				present[name] = true
			}
		}
	}
	sort.Slice(files, func(a, b int) bool { return files[a] < files[b] })

	st, err := readIndex(j.dir)
	if errors.Is(err, fs.ErrNotExist) {
		st, err = indexState{}, nil
	}
	if err != nil {
		return err
	}
	indexed := map[string]bool{}
	for _, e := range st.entries {
		if e.Path != "" {
			indexed[filepath.Base(e.Path)] = true
		}
	}
	for _, end := range files {
		name := segmentName(end)
		path := filepath.Join(j.dir, name)
		last, known := st.lastEnd()
		switch {
		case indexed[name]:
		case st.consumed && end <= st.consEnd:
			// Consumed, but the crash came before its deletion.
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("changelog: removing consumed segment: %w", err)
			}
		case !known || end > last:
			seg, err := recoverSegment(path, end, last, known)
			if err != nil {
				return err
			}
			st.entries = append(st.entries, seg)
		default:
			return fmt.Errorf("changelog: %s: %w: segment file %s is not in the index, which covers up to %d", j.dir, ErrCorruptIndex, name, last)
		}
	}
	for _, e := range st.entries {
		if e.Path != "" && !present[filepath.Base(e.Path)] {
			return fmt.Errorf("changelog: %s: %w: segment file %s of (%d, %d] is missing", j.dir, ErrCorruptIndex, filepath.Base(e.Path), e.Start, e.End)
		}
	}
	j.st = st
	return j.compact()
}

// recoverSegment re-adds a committed segment file the index lacks: its
// header gives its start, its name its end. It becomes a gap: the index line
// the crash lost may have been one.
func recoverSegment(path string, end, last int64, known bool) (Segment, error) {
	h, err := ReadFile(path, func(Record) error { return nil })
	if err != nil {
		return Segment{}, fmt.Errorf("changelog: recovering a segment the index lacks: %w", err)
	}
	if h.Type != TypeLive {
		return Segment{}, fmt.Errorf("changelog: %s: %w: a %s journal among the live segments", path, ErrCorruptIndex, h.Type)
	}
	start := h.StartNS
	if known {
		if start < last {
			return Segment{}, fmt.Errorf("changelog: %s: %w: segment starts at %d, before the index's end %d", path, ErrCorruptIndex, start, last)
		}
		// If it starts later, the gap covers what lies between.
		start = last
	}
	if start >= end {
		return Segment{}, fmt.Errorf("changelog: %s: %w: segment starts at %d, not before its end", path, ErrCorruptIndex, start)
	}
	return Segment{Start: start, End: end, Path: path, Gap: true,
		Reason: "recovered after a crash: the segment was committed but missing from the index"}, nil
}

// IndexView is the content of a journal's index.
type IndexView struct {
	Segments []Segment
	// Consumed says Done consumed (ConsumedStart, ConsumedEnd]: its files
	// are gone.
	Consumed                   bool
	ConsumedStart, ConsumedEnd int64
	// Torn says the last line lacked its newline (a commit in progress, or
	// a crash) and was left out.
	Torn bool
}

// ReadIndex returns the entries of the journal index in dir without
// repairing or writing anything (a master may be running).
func ReadIndex(dir string) ([]Segment, error) {
	v, err := ReadIndexView(dir)
	return v.Segments, err
}

// ReadIndexView is ReadIndex with the consumed range.
func ReadIndexView(dir string) (IndexView, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return IndexView{}, fmt.Errorf("changelog: journal dir %s: %w", dir, err)
	}
	st, err := readIndex(abs)
	if err != nil {
		return IndexView{}, err
	}
	return IndexView{Segments: st.entries, Consumed: st.consumed, ConsumedStart: st.consStart,
		ConsumedEnd: st.consEnd, Torn: st.torn}, nil
}

// indexState is what an index says.
type indexState struct {
	entries            []Segment
	consumed           bool
	consStart, consEnd int64
	lines              int // in the file, header included
	torn               bool
}

// lastEnd is the end of the last entry, or of the consumed range.
func (st *indexState) lastEnd() (int64, bool) {
	if n := len(st.entries); n > 0 {
		return st.entries[n-1].End, true
	}
	return st.consEnd, st.consumed
}

// readIndex parses dir's INDEX. A missing file is an error wrapping
// fs.ErrNotExist.
func readIndex(dir string) (indexState, error) {
	path := filepath.Join(dir, indexName)
	data, err := os.ReadFile(path)
	if err != nil {
		return indexState{}, fmt.Errorf("changelog: reading journal index: %w", err)
	}
	var st indexState
	for n := 1; len(data) > 0; n++ {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if n == 1 {
				return indexState{}, fmt.Errorf("changelog: %s: %w: torn header %q", path, ErrCorruptIndex, data)
			}
			st.torn = true
			break
		}
		line := string(data[:i])
		data = data[i+1:]
		st.lines++
		if n == 1 {
			if line != indexMagic {
				return indexState{}, fmt.Errorf("changelog: %s line 1: %w: header %q, want %q", path, ErrCorruptIndex, line, indexMagic)
			}
			continue
		}
		l, err := parseIndexLine(line)
		if err == nil {
			err = st.apply(l, dir)
		}
		if err != nil {
			return indexState{}, fmt.Errorf("changelog: %s line %d: %w", path, n, err)
		}
	}
	if st.lines == 0 {
		return indexState{}, fmt.Errorf("changelog: %s: %w: empty file", path, ErrCorruptIndex)
	}
	return st, nil
}

// apply adds one index line to st, checking that it continues it.
func (st *indexState) apply(l indexLine, dir string) error {
	if l.kind != kindDone {
		if last, ok := st.lastEnd(); ok && l.start != last {
			return fmt.Errorf("%w: entry (%d, %d] does not start where the journal ends (%d)", ErrCorruptIndex, l.start, l.end, last)
		}
		seg := Segment{Start: l.start, End: l.end, Gap: l.kind == kindGap, Reason: l.reason}
		if l.file {
			seg.Path = filepath.Join(dir, segmentName(l.end))
		}
		st.entries = append(st.entries, seg)
		return nil
	}
	if st.consumed && l.end <= st.consEnd {
		return fmt.Errorf("%w: DONE up to %d after DONE up to %d", ErrCorruptIndex, l.end, st.consEnd)
	}
	k := sort.Search(len(st.entries), func(i int) bool { return st.entries[i].End > l.end })
	switch {
	case k > 0:
		want := st.entries[0].Start
		if st.consumed {
			want = st.consStart
		}
		if st.entries[k-1].End != l.end || l.start != want {
			return fmt.Errorf("%w: DONE (%d, %d] does not match the entries (%d, %d]", ErrCorruptIndex, l.start, l.end, want, st.entries[k-1].End)
		}
	case len(st.entries) > 0 || st.consumed:
		return fmt.Errorf("%w: DONE (%d, %d] consumes no entry", ErrCorruptIndex, l.start, l.end)
	}
	clear(st.entries[:k])
	st.entries = st.entries[k:]
	st.consumed, st.consStart, st.consEnd = true, l.start, l.end
	return nil
}

type lineKind string

const (
	kindSeg  lineKind = "SEG"
	kindGap  lineKind = "GAP"
	kindDone lineKind = "DONE"
)

// indexLine is one line of the index (after the header).
type indexLine struct {
	kind       lineKind
	start, end int64
	file       bool   // SEG, GAP: the entry has a file, CHANGELOG.<end>
	reason     string // GAP
}

func lineOf(s Segment) indexLine {
	l := indexLine{kind: kindSeg, start: s.Start, end: s.End, file: s.Path != ""}
	if s.Gap {
		l.kind, l.reason = kindGap, s.Reason
	}
	return l
}

// parseNS reads a time: canonical non-negative decimal.
func parseNS(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != s {
		return 0, fmt.Errorf("%w: time %q", ErrCorruptIndex, s)
	}
	return n, nil
}

// parseIndexLine reads one index line (without its newline). It accepts
// exactly what appendIndexLine writes; it never panics.
func parseIndexLine(s string) (indexLine, error) {
	f := strings.Split(s, " ")
	var l indexLine
	l.kind = lineKind(f[0])
	want := 0
	switch l.kind {
	case kindSeg:
		want = 4
	case kindGap:
		want = 5
	case kindDone:
		want = 3
	default:
		return indexLine{}, fmt.Errorf("%w: %q: unknown entry", ErrCorruptIndex, s)
	}
	if len(f) != want {
		return indexLine{}, fmt.Errorf("%w: %q: %d fields, want %d", ErrCorruptIndex, s, len(f), want)
	}
	var err1, err2 error
	l.start, err1 = parseNS(f[1])
	l.end, err2 = parseNS(f[2])
	if err := errors.Join(err1, err2); err != nil {
		return indexLine{}, fmt.Errorf("%q: %w", s, err)
	}
	if l.start >= l.end {
		return indexLine{}, fmt.Errorf("%w: %q: start not before end", ErrCorruptIndex, s)
	}
	if l.kind == kindDone {
		return l, nil
	}
	switch f[3] {
	case "-":
	case segmentName(l.end):
		l.file = true
	default:
		return indexLine{}, fmt.Errorf("%w: %q: file %q, want - or %s", ErrCorruptIndex, s, f[3], segmentName(l.end))
	}
	if l.kind == kindGap {
		r, err := Unescape(f[4])
		if err != nil {
			return indexLine{}, fmt.Errorf("%w: %q: reason: %v", ErrCorruptIndex, s, err)
		}
		if len(r) > MaxGapReason {
			return indexLine{}, fmt.Errorf("%w: reason of %d bytes exceeds %d", ErrCorruptIndex, len(r), MaxGapReason)
		}
		l.reason = r
	}
	return l, nil
}

// appendIndexLine writes l, with its newline, to b.
func appendIndexLine(b []byte, l indexLine) []byte {
	b = append(b, l.kind...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, l.start, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, l.end, 10)
	if l.kind != kindDone {
		b = append(b, ' ')
		if l.file {
			b = append(b, segmentName(l.end)...)
		} else {
			b = append(b, '-')
		}
		if l.kind == kindGap {
			b = append(b, ' ')
			b = append(b, Escape(l.reason)...)
		}
	}
	return append(b, '\n')
}

// compact rewrites the index (header, the consumed range, the entries)
// atomically and reopens it for appending. Any failure leaves the journal
// refusing writes: which index a crash would bring back is then unknown.
func (j *Journal) compact() error {
	b := append(make([]byte, 0, 64*(len(j.st.entries)+2)), indexMagic+"\n"...)
	lines := 1
	if j.st.consumed {
		b = appendIndexLine(b, indexLine{kind: kindDone, start: j.st.consStart, end: j.st.consEnd})
		lines++
	}
	for _, e := range j.st.entries {
		b = appendIndexLine(b, lineOf(e))
		lines++
	}
	path := filepath.Join(j.dir, indexName)
	if j.index != nil {
		j.index.Close()
		j.index = nil
	}
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return j.fail(fmt.Errorf("changelog: rewriting journal index: %w", err))
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return j.fail(fmt.Errorf("changelog: opening journal index: %w", err))
	}
	j.index = f
	j.st.lines = lines
	j.st.torn = false
	return nil
}

// fail puts the journal in the state where it writes nothing more.
func (j *Journal) fail(err error) error {
	if j.failed == nil {
		j.failed = err
	}
	return err
}

// appendIndex appends one line to the index and fsyncs it.
func (j *Journal) appendIndex(l indexLine) error {
	j.buf = appendIndexLine(j.buf[:0], l)
	if _, err := j.index.Write(j.buf); err != nil {
		return j.fail(fmt.Errorf("changelog: appending to journal index: %w", err))
	}
	if err := j.index.Sync(); err != nil {
		return j.fail(fmt.Errorf("changelog: fsync journal index: %w", err))
	}
	j.st.lines++
	return nil
}

// usable says why the journal cannot be used (for recording, when begun).
func (j *Journal) usable(recording bool) error {
	switch {
	case j.closed:
		return ErrClosed
	case j.failed != nil:
		return fmt.Errorf("changelog: journal %s failed earlier (reopen it): %w", j.dir, j.failed)
	case recording && !j.begun:
		return fmt.Errorf("changelog: journal %s: not recording (Begin first)", j.dir)
	}
	return nil
}

// commit commits the open segment as covering (j.start, end], end > j.start.
func (j *Journal) commit(end int64, gap bool, reason string) error {
	seg := Segment{Start: j.start, End: end, Gap: gap, Reason: reason}
	if !gap {
		seg.Reason = ""
	}
	if j.w != nil {
		w := j.w
		j.w = nil
		path := filepath.Join(j.dir, segmentName(end))
		w.final = path // the open segment's end was not known at Create
		if err := w.Commit(); err != nil {
			return j.fail(err)
		}
		seg.Path = path
	}
	if err := j.appendIndex(lineOf(seg)); err != nil {
		return err
	}
	j.st.entries = append(j.st.entries, seg)
	j.start = end
	j.pendingGap, j.gapReason = false, ""
	select {
	case j.notify <- struct{}{}:
	default:
	}
	for c := range j.subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	return nil
}

// checkEnd checks an end time the recorder passes: it must not move back
// from what Covered says (the consumer may have moved on that far).
func (j *Journal) checkEnd(endNS int64) error {
	if endNS < j.covered {
		return fmt.Errorf("changelog: journal %s: end %d is before the recorder's last time %d (start %d)", j.dir, endNS, j.covered, j.start)
	}
	return nil
}

func cutReason(r string) string {
	if len(r) > MaxGapReason {
		return r[:MaxGapReason]
	}
	return r
}

// Begin starts recording at startNS. If the index ends before startNS, the
// time in between is recorded as a gap (the recorder was not running); if
// it ends after (the clock went back), the open segment starts where the
// index ends.
func (j *Journal) Begin(startNS int64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.usable(false); err != nil {
		return err
	}
	if j.begun {
		return fmt.Errorf("changelog: journal %s: Begin while recording", j.dir)
	}
	if startNS < 0 {
		return fmt.Errorf("changelog: journal %s: start time %d", j.dir, startNS)
	}
	start := startNS
	if last, ok := j.st.lastEnd(); ok {
		if last < startNS {
			j.start = last
			if err := j.commit(startNS, true, "recorder not running"); err != nil {
				return err
			}
		}
		start = max(start, last)
	}
	j.start, j.covered, j.begun = start, start, true
	j.pendingGap, j.gapReason = false, ""
	return nil
}

// Add appends a record to the open segment.
func (j *Journal) Add(r *Record) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("changelog: journal: %w", err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.usable(true); err != nil {
		return err
	}
	if j.w == nil {
		w, err := Create(filepath.Join(j.dir, openSegment), Header{Type: TypeLive, StartNS: j.start})
		if err != nil {
			return err
		}
		j.w = w
	}
	if err := j.w.Add(r); err != nil {
		// The segment's buffer is in an unknown state.
		return j.fail(err)
	}
	return nil
}

// Pending is the number of records in the open segment.
func (j *Journal) Pending() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.w == nil {
		return 0
	}
	return j.w.Len()
}

// Rollover says the recorder has read every change up to endNS. An open
// segment with records is committed as covering (start, endNS]; an empty
// one only once it is IdleCommit old (or a gap was marked in it), else it
// keeps its start. endNS equal to the start commits nothing (a zero-width
// segment cannot be told from its predecessor by its end); endNS before
// Covered() is an error.
func (j *Journal) Rollover(endNS int64) (committed bool, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.usable(true); err != nil {
		return false, err
	}
	if err := j.checkEnd(endNS); err != nil {
		return false, err
	}
	if endNS == j.start || (j.w == nil && !j.pendingGap && endNS-j.start < int64(j.IdleCommit)) {
		j.covered = endNS
		return false, nil
	}
	if err := j.commit(endNS, j.pendingGap, j.gapReason); err != nil {
		return false, err
	}
	j.covered = endNS
	return true, nil
}

// MarkGap commits the open segment, records and all, as a gap covering
// (start, endNS]: the recorder may have missed changes up to endNS. If
// endNS is the start, the open segment is marked and will be committed as a
// gap.
func (j *Journal) MarkGap(endNS int64, reason string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.usable(true); err != nil {
		return err
	}
	if err := j.checkEnd(endNS); err != nil {
		return err
	}
	if j.pendingGap && j.gapReason != reason {
		reason = j.gapReason + "; " + reason
	}
	reason = cutReason(reason)
	if endNS == j.start {
		j.pendingGap, j.gapReason = true, reason
		return nil
	}
	if err := j.commit(endNS, true, reason); err != nil {
		return err
	}
	j.covered = endNS
	return nil
}

// Covered is the time of the last Begin, Rollover, MarkGap or End: the
// recorder has read everything up to it, and what it read is committed
// except for the open segment's records. 0 before the first Begin.
func (j *Journal) Covered() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.covered
}

// Start is the earliest time from which the journal can say what changed
// (its consumed range's start, else its first entry's, else where the
// recorder began); ok is false for a journal that has neither entries nor
// a recorder. A consumer whose position is before it has lost changes to
// nobody knows where: a gap.
func (j *Journal) Start() (ns int64, ok bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	switch {
	case j.st.consumed:
		return j.st.consStart, true
	case len(j.st.entries) > 0:
		return j.st.entries[0].Start, true
	case j.begun:
		return j.start, true
	}
	return 0, false
}

// End stops recording cleanly: the open segment is committed as covering
// (start, endNS], even if empty. If endNS is the start and the segment has
// records or a gap, End fails (and recording goes on): they cannot be
// committed as covering no time.
func (j *Journal) End(endNS int64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.usable(true); err != nil {
		return err
	}
	if err := j.checkEnd(endNS); err != nil {
		return err
	}
	if endNS == j.start {
		if j.w != nil || j.pendingGap {
			return fmt.Errorf("changelog: journal %s: End at the open segment's start %d, which holds records or a gap", j.dir, endNS)
		}
	} else if err := j.commit(endNS, j.pendingGap, j.gapReason); err != nil {
		return err
	}
	j.begun, j.covered = false, endNS
	return nil
}

// Notify returns a channel that receives (without blocking the committer;
// it holds at most one signal) after every commit. It is one channel: with
// several consumers, each takes its own (Subscribe).
func (j *Journal) Notify() <-chan struct{} { return j.notify }

// Subscribe returns a channel of its own that receives as Notify's does,
// for one of several consumers of the journal, until cancel.
func (j *Journal) Subscribe() (c <-chan struct{}, cancel func()) {
	ch := make(chan struct{}, 1)
	j.mu.Lock()
	if j.subs == nil {
		j.subs = map[chan struct{}]struct{}{}
	}
	j.subs[ch] = struct{}{}
	j.mu.Unlock()
	return ch, func() {
		j.mu.Lock()
		delete(j.subs, ch)
		j.mu.Unlock()
	}
}

// Next returns the committed entries (segments, empty segments and gaps)
// with End > after, oldest first, at most max of them (max <= 0: all). The
// first may start before after (an entry is never split), or after it (the
// journal does not go back that far): a consumer that needs continuity
// checks the first entry's Start, or uses History.
func (j *Journal) Next(after int64, max int) ([]Segment, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil, ErrClosed
	}
	e := j.st.entries
	i := sort.Search(len(e), func(i int) bool { return e[i].End > after })
	n := len(e) - i
	if max > 0 && n > max {
		n = max
	}
	if n == 0 {
		return nil, nil
	}
	return append([]Segment(nil), e[i:i+n]...), nil
}

// History returns the committed entries that together cover (from, to]
// continuously, with no gap among them; else a *GapError naming the first
// range of (from, to] that is missing (never recorded, already consumed,
// not committed yet) or a gap. from >= to returns nil, nil.
func (j *Journal) History(from, to int64) ([]Segment, error) {
	if from >= to {
		return nil, nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil, ErrClosed
	}
	st := &j.st
	switch {
	case st.consumed && from < st.consEnd:
		return nil, &GapError{From: from, To: min(to, st.consEnd), Reason: "already consumed (Done): its segment files are gone"}
	case !st.consumed && (len(st.entries) == 0 || from < st.entries[0].Start):
		end := to
		if len(st.entries) > 0 {
			end = min(to, st.entries[0].Start)
		}
		return nil, &GapError{From: from, To: end, Reason: "before the journal's first entry"}
	}
	e := st.entries
	i := sort.Search(len(e), func(i int) bool { return e[i].End > from })
	var out []Segment
	pos := from
	for ; i < len(e) && pos < to; i++ {
		if e[i].Start > pos {
			return nil, &GapError{From: pos, To: min(to, e[i].Start), Reason: "missing from the journal"}
		}
		if e[i].Gap {
			return nil, &GapError{From: pos, To: min(to, e[i].End), Reason: e[i].Reason}
		}
		out = append(out, e[i])
		pos = e[i].End
	}
	if pos < to {
		return nil, &GapError{From: pos, To: to, Reason: fmt.Sprintf("not committed yet (the journal ends at %s)", FormatNS(pos))}
	}
	return out, nil
}

// Done consumes the entries with End <= upTo: the index records the
// consumed range (merged with any before) and their files are deleted.
func (j *Journal) Done(upTo int64) error {
	j.mu.Lock()
	if err := j.usable(false); err != nil {
		j.mu.Unlock()
		return err
	}
	st := &j.st
	k := sort.Search(len(st.entries), func(i int) bool { return st.entries[i].End > upTo })
	if k == 0 {
		j.mu.Unlock()
		return nil
	}
	start := st.entries[0].Start
	if st.consumed {
		start = st.consStart
	}
	end := st.entries[k-1].End
	if err := j.appendIndex(indexLine{kind: kindDone, start: start, end: end}); err != nil {
		j.mu.Unlock()
		return err
	}
	var paths []string
	for _, e := range st.entries[:k] {
		if e.Path != "" {
			paths = append(paths, e.Path)
		}
	}
	clear(st.entries[:k])
	st.entries = st.entries[k:]
	st.consumed, st.consStart, st.consEnd = true, start, end
	var err error
	obsolete := st.lines - 2 - len(st.entries)
	if obsolete >= j.compactAfter && obsolete >= len(st.entries) {
		err = j.compact()
	}
	j.mu.Unlock()

	// The DONE line is durable: a crash from here on leaves files that the
	// next open deletes. Deleting outside the lock keeps rollovers quick.
	var errs []error
	for _, p := range paths {
		if e := os.Remove(p); e != nil && !errors.Is(e, fs.ErrNotExist) {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		err = errors.Join(err, fmt.Errorf("changelog: deleting consumed segments: %w", errors.Join(errs...)))
	}
	return err
}

// Consumed returns the range Done consumed, if any.
func (j *Journal) Consumed() (start, end int64, ok bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.st.consStart, j.st.consEnd, j.st.consumed
}

// Dir is the journal's directory (absolute).
func (j *Journal) Dir() string { return j.dir }

// Close closes the journal without committing the open segment, as a crash
// would: its records are lost, and the next Begin records the gap.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	if j.w != nil {
		j.w.Abort()
		j.w = nil
	}
	var err error
	if j.index != nil {
		if e := j.index.Close(); e != nil {
			err = fmt.Errorf("changelog: closing journal index: %w", e)
		}
	}
	if e := j.lock.Close(); e != nil && err == nil {
		err = fmt.Errorf("changelog: closing journal dir: %w", e)
	}
	return err
}
