package master

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/wire"
	"github.com/georep/georep/internal/xattrs"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/syncer"
)

// BatchStats counts what one batch did.
type BatchStats struct {
	EntryOps, EntryNoops, Conflicts int64
	MetaOps, MetaNoops              int64
	Files, FilesUnchanged           int64 // files shipped with data / found current on the slave
	Vanished                        int64 // files gone before they could be read
	BytesSent                       int64 // file data on the wire (literal, after compression)
	BytesMatched                    int64 // bytes the slave rebuilt from its old copies
	Deltas                          int64 // files sent as a delta
	HashRetries                     int64 // files sent again whole after a hash mismatch
	Purged                          int64 // PURGE ops that removed something
	Skipped                         int64 // records whose entry was gone on the master
	NotMade                         int64 // entries the slave cannot hold (device nodes on an unprivileged slave): SKIPPED
	Partial                         []string
}

// Add accumulates o into s.
func (s *BatchStats) Add(o BatchStats) {
	s.EntryOps += o.EntryOps
	s.EntryNoops += o.EntryNoops
	s.Conflicts += o.Conflicts
	s.MetaOps += o.MetaOps
	s.MetaNoops += o.MetaNoops
	s.Files += o.Files
	s.FilesUnchanged += o.FilesUnchanged
	s.Vanished += o.Vanished
	s.BytesSent += o.BytesSent
	s.BytesMatched += o.BytesMatched
	s.Deltas += o.Deltas
	s.HashRetries += o.HashRetries
	s.Purged += o.Purged
	s.Skipped += o.Skipped
	s.NotMade += o.NotMade
	s.Partial = append(s.Partial, o.Partial...)
}

// OpError is a batch failure: ops the slave refused or could not apply.
type OpError struct {
	Failures []string
}

func (e *OpError) Error() string {
	const show = 5
	msg := strings.Join(e.Failures[:min(show, len(e.Failures))], "; ")
	if len(e.Failures) > show {
		msg += fmt.Sprintf("; and %d more", len(e.Failures)-show)
	}
	return fmt.Sprintf("%d op(s) failed: %s", len(e.Failures), msg)
}

// Chunk sizes: ops per EntryOps/MetaOps call, and PURGE names per call.
// Each call is one round trip, so larger is cheaper; but a call's names
// are all in memory at once on both sides (on the slave, a set of them
// per directory), so that a cap of 200,000 names made the slave's heap at
// the end of a one-shot grow with the tree (live heap 18 MB at 100,000
// files, 25 MB at 200,000): 16,384 names cost a few calls more per
// 100,000 files and keep it flat.
//
// The entry calls of a batch start small (firstCallOps) and double up to
// opsPerCall: no file's data can go before the call that announces it is
// applied, and a first call of 4,096 ops kept the data streams idle for
// the first quarter of a second of a one-shot (the crawl finding 4,096
// entries, then the slave applying them).
const (
	opsPerCall   = 4096
	firstCallOps = 256
	namesPerCall = 16384
)

// processor applies one journal to the slave.
type processor struct {
	m       *Master
	session []byte
	client  pb.SlaveServiceClient
	sync    *syncer.Syncer[*syncer.File]

	stats    BatchStats
	failures []string

	// trustRecords: the journal was just written by a crawl, so its
	// records' mode and owner are the tree's (a changelog's are replayed
	// from the tree as it is now).
	trustRecords bool
	// live: the batch belongs to a live session (the recorder runs).
	live bool
	// feed, when set, brings a one-shot crawl's records while the crawl
	// runs (before the journals at run's paths, if any).
	feed *feed

	// What the journal asks for beyond entry ops, in first-seen order. A
	// crawl's journal names each gfid once, so the dedupe sets (whose size
	// grows with the batch) are kept only for other journals; memory must
	// not grow with the tree.
	dataSet     map[gfid.GFID]bool // nil for a crawl's journal
	pendingData []gfid.GFID        // D records whose entry ops are not yet applied
	meta        []gfid.GFID        // M records (a crawl writes them for non-files only)
	metaSet     map[gfid.GFID]bool // nil for a crawl's journal
	metaDone    map[gfid.GFID]bool // metadata applied with the data (not for a crawl's journal)
	needMeta    []gfid.GFID        // files whose data did not carry their metadata
	// What the last two entry calls said of their files (a D record is
	// posted at the call after its E record's at the latest).
	answers, prevAnswers map[gfid.GFID]answer
	call                 *entryCall // the entry call on its way, if any
	calls                int        // entry calls sent (see callOps)
	purges               []gfid.GFID
	purgeSet             map[gfid.GFID]bool // nil for a crawl's journal

	// Data in flight: posted to the syncer as soon as the entry ops before
	// them were applied, so that data flows while later entry ops go;
	// boxes are reaped as they complete, so only what is in flight is held.
	boxFiles map[*syncer.PostBox[*syncer.File]][]*syncer.File
	inflight int               // files in boxFiles
	rounds   map[gfid.GFID]int // tries of files sent more than once
	again    []gfid.GFID       // to send again (changed while read)
	later    []gfid.GFID       // to send again after the entry ops (moved meanwhile)
	lagged   []gfid.GFID       // to send again once the recorder caught up (not found)
	// entriesDone: every entry op of the batch is applied (data that
	// misses its entry now really has none).
	entriesDone bool
	whole       []gfid.GFID // to send again whole (hash mismatch)

	ops []*pb.EntryOp
	// For a changelog batch: ops that may fail for want of their
	// directory (made by a record that was skipped because that directory
	// is gone from the master); moves of entries gone from the master,
	// whose old names go at the batch's end if the slave cannot make them.
	bestEffort   map[*pb.EntryOp]bool
	removeOnFail map[*pb.EntryOp]bool
	// removals go at the batch's end, after the purges: the old names of
	// such moves, and what report-only purges found that the master no
	// longer has (live sessions).
	removals []*pb.EntryOp
	// syncRecorder waits until the recorder has indexed every change made
	// so far (live batches; nil for a crawl's journal); lastSync is when it
	// last did.
	syncRecorder func(context.Context) error
	lastSync     time.Time
	dir          dirFDs
	// touched: the directories a changelog batch's entry records name
	// (reconciled after it); nil for a crawl's journal. reconcile: this
	// is such a reconciliation, whose purges remove every extra name but
	// a directory the master has elsewhere.
	touched   map[gfid.GFID]bool
	reconcile bool
	missing   map[gfid.GFID]bool // reconcile: directories the slave lacks
	also      map[gfid.GFID]bool // reconcile: directories the slave used beyond those named (see alsoDirs)
	made      []gfid.GFID        // directories the slave made from an op: it has none of their content
	rep       batchReport        // for the status tracker (status.go)
	// skipEntries: the batch's entry ops were applied by an earlier
	// attempt (its entry stime says so); only its data and metadata go
	// (and its directories are reconciled). entriesApplied, if set, is
	// called once every entry op of the batch is applied.
	skipEntries    bool
	entriesApplied func() error
	// notAfter (ns; 0: none) is a changelog batch's end: a regular file
	// changed after it (ctime) has its times left alone by this batch's
	// metadata op, since they may come with content the slave does not
	// have yet (the later change's record sends both). Otherwise a crash
	// before that record would leave the slave a stale copy with the new
	// size and mtime, which a restart's crawl would take for current.
	notAfter int64
}

// dirFDs caches a few master directory descriptors by gfid while records
// of the same directory follow each other (as xsync writes them).
type dirFDs struct {
	t  *tree
	fd map[gfid.GFID]int
}

const dirCacheSize = 64

func (d *dirFDs) get(tx *gfidx.Tx, g gfid.GFID) (int, error) {
	if fd, ok := d.fd[g]; ok {
		return fd, nil
	}
	if len(d.fd) >= dirCacheSize {
		d.close()
	}
	fd, err := d.t.OpenDir(tx, g)
	if err != nil {
		return -1, err
	}
	if d.fd == nil {
		d.fd = map[gfid.GFID]int{}
	}
	d.fd[g] = fd
	return fd, nil
}

func (d *dirFDs) close() {
	for _, fd := range d.fd {
		unix.Close(fd)
	}
	d.fd = nil
}

// phase tells status what the batch does now (a one-shot's too).
func (p *processor) phase(what string) {
	if p.reconcile {
		return // the reconciliation's own phase says it
	}
	p.m.phase(what)
}

func (p *processor) fail(format string, a ...any) {
	p.failures = append(p.failures, fmt.Sprintf(format, a...))
}

// run processes the journals at paths, in order, as one batch: entry ops,
// then data, then metadata. It returns an *OpError when any op failed, and
// another error when the batch could not be carried out at all (the link
// failed).
func (p *processor) run(ctx context.Context, paths ...string) error {
	if !p.trustRecords {
		p.dataSet = map[gfid.GFID]bool{}
		p.metaSet = map[gfid.GFID]bool{}
		p.metaDone = map[gfid.GFID]bool{}
		p.purgeSet = map[gfid.GFID]bool{}
		p.bestEffort = map[*pb.EntryOp]bool{}
		p.removeOnFail = map[*pb.EntryOp]bool{}
	}
	p.answers, p.prevAnswers = map[gfid.GFID]answer{}, map[gfid.GFID]answer{}
	p.boxFiles = map[*syncer.PostBox[*syncer.File]][]*syncer.File{}
	p.rounds = map[gfid.GFID]int{}
	defer p.dir.close()
	// After a batch, the slave holds what it applied of it.
	defer p.m.slaveEmpty.Store(false)
	// The syncer's directories, once no file is read in them (a deleted
	// directory's inode is not kept).
	defer p.m.tree.dirs.reset()
	// Whatever happens, never leave with data of this batch in flight.
	defer p.drain()
	defer p.report(true)
	// 1. Entry ops, in journal order, many per call.
	if p.feed != nil {
		if err := p.feed.read(p.record(ctx)); err != nil {
			return err
		}
	}
	for _, path := range paths {
		if err := p.readEntries(ctx, path); err != nil {
			return err
		}
	}
	if err := p.flushEntries(ctx); err != nil {
		return err
	}
	p.rep.purging = true
	p.phase("purges and removals")
	if err := p.purge(ctx); err != nil {
		return err
	}
	if len(p.failures) > 0 {
		// Data and metadata of entries that failed would fail too; the
		// batch is retried as a whole.
		return &OpError{Failures: p.failures}
	}
	if p.entriesApplied != nil {
		if err := p.entriesApplied(); err != nil {
			return err
		}
	}
	// 2. Data, through the syncer's PostBoxes: most of it is on its way
	// already; wait for it, and send again what needs another try.
	p.phase(fmt.Sprintf("data: %d files in flight", p.inflight))
	if err := p.reap(ctx, true); err != nil {
		return err
	}
	p.entriesDone = true
	p.pendingData = append(p.pendingData, p.later...)
	p.later = nil
	if err := p.post(ctx, p.pendingData, false); err != nil {
		return err
	}
	p.pendingData = nil
	if err := p.syncData(ctx); err != nil {
		return err
	}
	// 3. Metadata, last: data renames touch directories' mtimes.
	p.phase(fmt.Sprintf("metadata: %d ops", len(p.meta)+len(p.needMeta)))
	if err := p.syncMeta(ctx); err != nil {
		return err
	}
	if len(p.failures) > 0 {
		return &OpError{Failures: p.failures}
	}
	return nil
}

// readEntries reads one journal of the batch, sending its entry ops as
// they fill calls and collecting the rest.
func (p *processor) readEntries(ctx context.Context, path string) error {
	rec := p.record(ctx)
	var recErr error
	_, err := changelog.ReadFile(path, func(r changelog.Record) error {
		recErr = rec(r)
		return recErr
	})
	if err != nil && recErr == nil && (errors.Is(err, changelog.ErrMalformed) || errors.Is(err, fs.ErrNotExist)) {
		return &errJournalDamaged{err}
	}
	return err
}

// record takes one record of the batch: an entry op goes into the next
// call (sent when it is full), the rest is collected.
func (p *processor) record(ctx context.Context) func(r changelog.Record) error {
	return func(r changelog.Record) error {
		switch r.Kind {
		case changelog.KindData:
			p.addData(r.GFID)
			return nil
		case changelog.KindMeta:
			if p.metaSet == nil || !p.metaSet[r.GFID] {
				if p.metaSet != nil {
					p.metaSet[r.GFID] = true
				}
				p.meta = append(p.meta, r.GFID)
			}
			return nil
		}
		if p.touched != nil {
			p.touched[r.Parent] = true
			switch r.Op {
			case changelog.OpRename:
				p.touched[r.Parent2] = true
			case changelog.OpPurge, changelog.OpMkdir:
				p.touched[r.GFID] = true
			}
		}
		if p.skipEntries {
			return nil
		}
		if p.m.cfg.IgnoreDeletes && (r.Op == changelog.OpPurge || r.Op == changelog.OpUnlink || r.Op == changelog.OpRmdir) {
			return nil
		}
		if r.Op == changelog.OpPurge {
			// Purges wait for every create of the batch, so that an entry
			// that moved between directories is moved, not deleted and
			// sent again.
			if p.purgeSet == nil || !p.purgeSet[r.GFID] {
				if p.purgeSet != nil {
					p.purgeSet[r.GFID] = true
				}
				p.purges = append(p.purges, r.GFID)
			}
			return nil
		}
		if err := p.entry(ctx, &r); err != nil {
			return err
		}
		if len(p.ops) >= p.callOps() {
			return p.flushEntries(ctx)
		}
		return nil
	}
}

// callOps is how many entry ops the next call takes (see firstCallOps).
func (p *processor) callOps() int {
	return min(firstCallOps<<min(p.calls, 8), opsPerCall)
}

// describe fills in what an op needs to create its entry where the slave
// lacks it: the entry's stat (st, of name in dirfd), a symlink's target, a
// regular file's data.
func (p *processor) describe(op *pb.EntryOp, st *unix.Stat_t, dirfd int, name string, g gfid.GFID) {
	op.Mode, op.Uid, op.Gid, op.Rdev = st.Mode, st.Uid, st.Gid, st.Rdev
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		buf := make([]byte, 4096)
		if n, err := unix.Readlinkat(dirfd, name, buf); err == nil && n > 0 {
			op.Target = buf[:n]
		} else {
			op.Mode = 0 // cannot describe it: a pure move
		}
	case unix.S_IFREG:
		op.DataFollows = true
		p.addData(g)
	}
}

// addData queues g's data once per batch (a crawl's journal names each
// file once; a changelog batch may name a busy file in every segment: gsyncd
// #4321 sent one 92 GB file 127 times).
func (p *processor) addData(g gfid.GFID) {
	if p.dataSet != nil {
		if p.dataSet[g] {
			return
		}
		p.dataSet[g] = true
	}
	p.pendingData = append(p.pendingData, g)
}

// touchedDirs lists the directories the batch's entry records named
// (Master.parentsFirst orders them).
func (p *processor) touchedDirs() []gfid.GFID {
	out := make([]gfid.GFID, 0, len(p.touched))
	for g := range p.touched {
		out = append(out, g)
	}
	return out
}

// errLag says an entry was not found where the index says, and the index
// may lag the tree (the recorder indexes changes a few ms after them).
var errLag = errors.New("master: the index may lag the tree")

// entry turns an E record into an EntryOp.
func (p *processor) entry(ctx context.Context, r *changelog.Record) error {
	err := p.entryTx(r)
	if errors.Is(err, errLag) {
		if err := p.syncRecorder(ctx); err != nil {
			return err
		}
		p.lastSync = time.Now()
		p.dir.close()
		err = p.entryTx(r)
	}
	return err
}

func (p *processor) entryTx(r *changelog.Record) error {
	return p.m.tree.Idx.View(func(tx *gfidx.Tx) error {
		op := &pb.EntryOp{Gfid: r.GFID.Bytes(), Pargfid: r.Parent.Bytes(), Name: []byte(r.Name)}
		switch r.Op {
		case changelog.OpUnlink, changelog.OpRmdir:
			op.Type = pb.EntryOpType_ENTRY_OP_TYPE_UNLINK
			if r.Op == changelog.OpRmdir {
				op.Type = pb.EntryOpType_ENTRY_OP_TYPE_RMDIR
			}
			p.ops = append(p.ops, op)
			if p.bestEffort != nil {
				p.bestEffort[op] = true
			}
			return nil
		}
		if p.trustRecords {
			return p.crawlEntry(tx, r, op)
		}
		return p.liveEntry(tx, r, op)
	})
}

// lagWindow: an entry not found within this long after the recorder last
// caught up is taken for gone (a change newer than that is in a later
// segment, whose records see it).
const lagWindow = 50 * time.Millisecond

// tolerant reports whether data or metadata that finds no entry on the
// slave is not a failure: in a live session, whose journal (recorded since
// before any crawl) moves or removes the entry.
func (p *processor) tolerant() bool { return !p.trustRecords || p.live }

// crawlEntry makes the op of a crawl's record: the tree as the crawl found
// it (the batch claims no later time).
func (p *processor) crawlEntry(tx *gfidx.Tx, r *changelog.Record, op *pb.EntryOp) error {
	switch r.Op {
	case changelog.OpMkdir:
		op.Mode, op.Uid, op.Gid = r.Mode, r.UID, r.GID
		op.Type = pb.EntryOpType_ENTRY_OP_TYPE_MKDIR
		p.ops = append(p.ops, op)
		return nil
	case changelog.OpCreate:
		op.Mode, op.Uid, op.Gid = r.Mode, r.UID, r.GID
		op.Type = pb.EntryOpType_ENTRY_OP_TYPE_CREATE
		// xsync follows every regular file's CREATE with its D
		// record: the data stream creates the file, whole.
		op.DataFollows = true
		// If the slave has it already, let it say whether it is
		// current: then neither data nor metadata need to go.
		// The crawl's stat is what this batch claims (its stime is
		// the crawl's start); only the xattrs are read here. Not in
		// the first batch into a slave that was empty: nothing there
		// can be current.
		if r.HasStat && !p.m.slaveEmpty.Load() {
			if dirfd, err := p.dir.get(tx, r.Parent); err == nil {
				if xs, err := toPB(xattrs.ListAt(dirfd, r.Name, p.m.tree.replicated())); err == nil {
					op.CheckCurrent, op.Size, op.MtimeNs, op.Xattrs = true, r.Size, r.MtimeNS, xs
				}
			}
		}
		p.ops = append(p.ops, op)
		return nil
	case changelog.OpLink:
		op.Type = pb.EntryOpType_ENTRY_OP_TYPE_LINK
		p.ops = append(p.ops, op)
		return nil
	case changelog.OpSymlink, changelog.OpMknod:
	default:
		return fmt.Errorf("master: entry op %s not handled in a crawl's journal", r.Op)
	}
	dirfd, err := p.dir.get(tx, r.Parent)
	var st unix.Stat_t
	if err == nil {
		st, err = p.m.tree.Lookup(dirfd, r.Parent, r.Name, r.GFID)
	}
	if errors.Is(err, errGone) {
		p.stats.Skipped++
		return nil
	}
	if err != nil {
		return err
	}
	op.Type = pb.EntryOpType_ENTRY_OP_TYPE_MKNOD
	if r.Op == changelog.OpSymlink {
		op.Type = pb.EntryOpType_ENTRY_OP_TYPE_SYMLINK
	}
	p.describe(op, &st, dirfd, r.Name, r.GFID)
	if op.Mode == 0 {
		p.stats.Skipped++ // a symlink that could not be read
		return nil
	}
	p.ops = append(p.ops, op)
	return nil
}

// liveEntry makes the op of a changelog record: the op as recorded, in
// journal order, so that the slave goes through the same namespace
// history as the master (a later record acts on the names an earlier one
// made); the entry is described as it is on the master now, wherever it
// is, so that a slave that lacks it can create it. An entry gone from the
// master is not created; its moves are still made (a later record removes
// it where it went). Ops whose directory the slave lacks (made by a record
// that was skipped because that directory is gone) are best effort.
func (p *processor) liveEntry(tx *gfidx.Tx, r *changelog.Record, op *pb.EntryOp) error {
	e, err := p.m.tree.Find(tx, r.GFID)
	found := err == nil
	if err != nil && !errors.Is(err, errGone) {
		return err
	}
	if !found && p.syncRecorder != nil && time.Since(p.lastSync) > lagWindow {
		return errLag // not found: perhaps moved just now; look again once indexed
	}
	if found {
		defer unix.Close(e.DirFD)
	}
	switch r.Op {
	case changelog.OpRename:
		op.Type = pb.EntryOpType_ENTRY_OP_TYPE_RENAME
		op.Pargfid2, op.Name2 = r.Parent2.Bytes(), []byte(r.Name2)
		if found {
			p.describe(op, &e.St, e.DirFD, e.Name, r.GFID)
		} else {
			// If the slave cannot move it, it goes at the batch's end
			// (not now: later records may move things out of it first).
			p.removeOnFail[op] = true
		}
		p.ops = append(p.ops, op)
		p.bestEffort[op] = true
		return nil
	case changelog.OpLink:
		op.Type = pb.EntryOpType_ENTRY_OP_TYPE_LINK
	case changelog.OpCreate, changelog.OpMknod:
		op.Type = pb.EntryOpType_ENTRY_OP_TYPE_CREATE
		if found && e.St.Mode&unix.S_IFMT != unix.S_IFREG {
			op.Type = pb.EntryOpType_ENTRY_OP_TYPE_MKNOD
		}
	case changelog.OpMkdir:
		op.Type = pb.EntryOpType_ENTRY_OP_TYPE_MKDIR
	case changelog.OpSymlink:
		op.Type = pb.EntryOpType_ENTRY_OP_TYPE_SYMLINK
	default:
		return fmt.Errorf("master: entry op %s not handled", r.Op)
	}
	if !found {
		// Gone from the master since; a later record removes it. A
		// directory is still made, as the record describes it: later
		// records may move things into it and out of it before it goes.
		// (A file or node is not needed for that, nor can its data be.)
		// Files and FIFOs too: not found may also mean moved just now
		// (the index lags the tree a little), and then no later record
		// would bring it if only its directory moves; made empty here, its
		// data follows with its D record, and if it is really gone a later
		// record removes it.
		ft := r.Mode & unix.S_IFMT
		switch {
		case r.Op == changelog.OpMkdir && ft == unix.S_IFDIR,
			r.Op == changelog.OpCreate && ft == unix.S_IFREG,
			r.Op == changelog.OpMknod && (ft == unix.S_IFIFO || ft == unix.S_IFSOCK):
			op.Mode, op.Uid, op.Gid = r.Mode, r.UID, r.GID
			if r.Op == changelog.OpMknod {
				op.Type = pb.EntryOpType_ENTRY_OP_TYPE_MKNOD
			}
		case r.Op == changelog.OpSymlink && r.HasTarget:
			op.Target = []byte(r.Target)
			op.Mode = unix.S_IFLNK | 0o777
		case r.Op == changelog.OpLink:
			// A name more for an inode the slave may have.
		default:
			p.stats.Skipped++
			return nil
		}
		p.ops = append(p.ops, op)
		p.bestEffort[op] = true
		return nil
	}
	if op.Type != pb.EntryOpType_ENTRY_OP_TYPE_LINK {
		// The entry as it is decides the type (the record's may be out of
		// date if the gfid has been given to another inode since).
		switch e.St.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			op.Type = pb.EntryOpType_ENTRY_OP_TYPE_CREATE
		case unix.S_IFDIR:
			op.Type = pb.EntryOpType_ENTRY_OP_TYPE_MKDIR
		case unix.S_IFLNK:
			op.Type = pb.EntryOpType_ENTRY_OP_TYPE_SYMLINK
		default:
			op.Type = pb.EntryOpType_ENTRY_OP_TYPE_MKNOD
		}
	} else if e.St.Mode&unix.S_IFMT == unix.S_IFDIR {
		p.stats.Skipped++ // a directory has no second name
		return nil
	}
	p.describe(op, &e.St, e.DirFD, e.Name, r.GFID)
	if op.Mode == 0 {
		p.stats.Skipped++ // a symlink that could not be read
		return nil
	}
	// No CheckCurrent: the slave's copy may have the new size and mtime
	// with old content (a metadata op of an earlier batch read the tree
	// after the write), and "current" would drop the data this batch's D
	// record must send (see post).
	p.ops = append(p.ops, op)
	p.bestEffort[op] = true
	return nil
}

func describe(op *pb.EntryOp) string {
	g, _ := gfid.FromBytes(op.GetGfid())
	if op.GetType() == pb.EntryOpType_ENTRY_OP_TYPE_PURGE {
		return fmt.Sprintf("PURGE %s", g)
	}
	return fmt.Sprintf("%s %q (%s)", strings.TrimPrefix(op.GetType().String(), "ENTRY_OP_TYPE_"), op.GetName(), g)
}

// entryCall is an EntryOps call on its way (see flushEntries).
type entryCall struct {
	ops   []*pb.EntryOp
	ready []gfid.GFID // data that may go once the call is applied
	done  chan struct{}
	resp  *pb.EntryOpsResponse // set when done is closed
	err   error
}

// flushEntries sends the queued entry ops in one call. The call goes on
// its own while the processor builds the next one (reading the master's
// tree and index), so that the two sides work at once; its answer is
// handled when the next call is due, or at settleEntries. Calls stay in
// order: one is sent only once the previous one is answered.
func (p *processor) flushEntries(ctx context.Context) error {
	if err := p.settleEntries(ctx); err != nil {
		return err
	}
	if len(p.ops) == 0 {
		return nil
	}
	// Every D record read so far follows its E record, which is in this
	// call or an earlier one: once this call is applied, their data can go.
	c := &entryCall{ops: p.ops, ready: p.pendingData, done: make(chan struct{})}
	p.ops, p.pendingData = nil, nil
	p.calls++
	p.sending(c.ops)
	req := &pb.EntryOpsRequest{SessionToken: p.session, Ops: c.ops}
	go func() {
		defer close(c.done)
		c.resp, c.err = p.client.EntryOps(ctx, req)
	}()
	p.call = c
	return nil
}

// settleEntries waits for the entry call on its way, if any, and takes
// in its answer.
func (p *processor) settleEntries(ctx context.Context) (err error) {
	c := p.call
	if c == nil {
		return nil
	}
	<-c.done // the call honours ctx
	p.call = nil
	p.sending(nil)
	if c.err != nil {
		return fmt.Errorf("master: entry ops: %w", c.err)
	}
	ops, ready, resp := c.ops, c.ready, c.resp
	p.prevAnswers, p.answers = p.answers, map[gfid.GFID]answer{}
	defer func() {
		if perr := p.post(ctx, ready, false); perr != nil && err == nil {
			err = perr
		}
		if rerr := p.reap(ctx, false); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if len(resp.GetResults()) != len(ops) {
		return fmt.Errorf("master: slave answered %d results for %d entry ops", len(resp.GetResults()), len(ops))
	}
	for i, r := range resp.GetResults() {
		p.rep.answered(ops[i], r)
		p.alsoDirs(r)
		if p.m.log.IsTrace() {
			p.m.log.Trace("entry op", "op", describe(ops[i]), "parent", fmt.Sprintf("%x", ops[i].GetPargfid()),
				"to", fmt.Sprintf("%x/%q", ops[i].GetPargfid2(), ops[i].GetName2()), "status", r.GetStatus(), "error", r.GetError())
		}
		if p.reconcile && r.GetStatus() == pb.OpStatus_OP_STATUS_FAILED && r.GetCode() == pb.ErrorCode_ERROR_CODE_UNKNOWN_GFID &&
			ops[i].GetType() != pb.EntryOpType_ENTRY_OP_TYPE_PURGE {
			// The slave lacks the directory (its making was dropped, or
			// its parent was not reconciled yet): the directory's
			// ancestors are reconciled next (see Master.reconcile).
			if g, err := gfid.FromBytes(ops[i].GetPargfid()); err == nil {
				p.missing[g] = true
			}
			p.stats.Skipped++
			continue
		}
		if p.bestEffort[ops[i]] {
			delete(p.bestEffort, ops[i])
			remove := p.removeOnFail[ops[i]]
			delete(p.removeOnFail, ops[i])
			if r.GetStatus() == pb.OpStatus_OP_STATUS_FAILED && p.touched != nil && r.GetCode() != pb.ErrorCode_ERROR_CODE_UNKNOWN_GFID {
				// Replayed on a slave that a reconciliation brought ahead
				// of this record (a directory already moved beneath its
				// destination, a name already taken): the batch's
				// reconciliation of the directories it names decides.
				// What truly cannot be applied there (no space, no
				// permission) fails that reconciliation.
				p.stats.Skipped++
				p.m.log.Debug("replayed op not applied; left to the reconciliation", "op", describe(ops[i]), "error", r.GetError())
				continue
			}
			if r.GetStatus() == pb.OpStatus_OP_STATUS_FAILED && r.GetCode() == pb.ErrorCode_ERROR_CODE_UNKNOWN_GFID {
				p.stats.Skipped++
				p.m.log.Debug("best-effort op dropped", "op", describe(ops[i]), "error", r.GetError())
				if remove {
					p.removals = append(p.removals, &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_UNLINK,
						Gfid: ops[i].GetGfid(), Pargfid: ops[i].GetPargfid(), Name: ops[i].GetName()})
				}
				continue
			}
		}
		if r.GetStatus() == pb.OpStatus_OP_STATUS_SKIPPED {
			p.notMade(ops[i], r)
			continue
		}
		if ops[i].GetType() == pb.EntryOpType_ENTRY_OP_TYPE_PURGE && ops[i].GetReportOnly() && r.GetStatus() != pb.OpStatus_OP_STATUS_FAILED {
			p.purgeReport(ops[i], r)
		}
		if ops[i].GetType() == pb.EntryOpType_ENTRY_OP_TYPE_PURGE && p.tolerant() &&
			r.GetStatus() == pb.OpStatus_OP_STATUS_FAILED && r.GetCode() == pb.ErrorCode_ERROR_CODE_UNKNOWN_GFID {
			if p.reconcile {
				if g, err := gfid.FromBytes(ops[i].GetGfid()); err == nil {
					p.missing[g] = true
				}
			}
			// A directory the slave never had holds nothing to purge.
			p.stats.Skipped++
			continue
		}
		if r.GetCurrent() {
			g, _ := gfid.FromBytes(ops[i].GetGfid())
			a := p.answers[g]
			a.copy |= copyCurrent
			p.answers[g] = a
			if p.metaDone != nil {
				p.metaDone[g] = true
			}
			p.stats.FilesUnchanged++
		} else if r.GetMade() && ops[i].GetType() == pb.EntryOpType_ENTRY_OP_TYPE_CREATE {
			// The slave has no copy: the data may go inline.
			g, _ := gfid.FromBytes(ops[i].GetGfid())
			a := p.answers[g]
			a.copy |= copyAbsent
			p.answers[g] = a
		}
		if ops[i].GetDataFollows() {
			// Where the record saw the file (a rename's new name): the
			// syncer opens it there.
			g, _ := gfid.FromBytes(ops[i].GetGfid())
			pg, name := ops[i].GetPargfid(), ops[i].GetName()
			if ops[i].GetType() == pb.EntryOpType_ENTRY_OP_TYPE_RENAME {
				pg, name = ops[i].GetPargfid2(), ops[i].GetName2()
			}
			parent, _ := gfid.FromBytes(pg)
			a := p.answers[g]
			a.at = syncer.Link{Parent: parent, Name: string(name)}
			p.answers[g] = a
		}
		if r.GetMade() && (ops[i].GetType() == pb.EntryOpType_ENTRY_OP_TYPE_MKDIR || ops[i].GetMode()&unix.S_IFMT == unix.S_IFDIR) {
			// A directory the slave had nowhere, made empty from the op
			// (moved or made while a crawl passed it by, its rename
			// replayed here): what it holds is crawled whole by the
			// reconciliation.
			if g, err := gfid.FromBytes(ops[i].GetGfid()); err == nil {
				p.made = append(p.made, g)
			}
		}
		p.tally(func() string { return describe(ops[i]) }, r, &p.stats.EntryOps, &p.stats.EntryNoops)
		if ops[i].GetType() == pb.EntryOpType_ENTRY_OP_TYPE_PURGE && r.GetStatus() == pb.OpStatus_OP_STATUS_OK {
			p.stats.Purged++
		}
	}
	return nil
}

// alsoDirs takes in the directories the slave says an op changed or
// relied on beyond those it names (it found the entry elsewhere and moved
// or linked it from there): a live batch reconciles them with the ones
// its records name, a reconciliation in its next round. A crawl of the
// whole tree lists them anyway.
func (p *processor) alsoDirs(r *pb.OpResult) {
	for _, b := range r.GetAlsoDirs() {
		g, err := gfid.FromBytes(b)
		if err != nil {
			continue
		}
		switch {
		case p.reconcile:
			p.also[g] = true
		case p.touched != nil:
			p.touched[g] = true
		}
	}
}

// notMade counts an entry op the slave answered SKIPPED: an entry it
// cannot hold (a device node on an unprivileged slave), left out there
// while replication goes on. The log warns of each such entry, naming its
// path on the master and why, once while the master runs (every crawl
// and every reconciliation of its directory asks the slave again), and
// tells of it again at debug level.
func (p *processor) notMade(op *pb.EntryOp, r *pb.OpResult) {
	p.stats.NotMade++
	l := gfidx.Link{Name: string(op.GetName())}
	pg := op.GetPargfid()
	if op.GetType() == pb.EntryOpType_ENTRY_OP_TYPE_RENAME {
		l.Name, pg = string(op.GetName2()), op.GetPargfid2()
	}
	path := l.Name
	if g, err := gfid.FromBytes(pg); err == nil {
		l.Parent = g
		p.m.tree.Idx.View(func(tx *gfidx.Tx) error {
			if lp, err := linkPath(tx, l); err == nil {
				path = lp
			}
			return nil
		})
	}
	g, _ := gfid.FromBytes(op.GetGfid())
	level := hclog.Warn
	if _, warned := p.m.notMade.LoadOrStore(g, true); warned {
		level = hclog.Debug
	}
	p.m.log.Log(level, "entry not made on the slave; replication goes on without it", "path", path, "op", describe(op), "reason", r.GetError())
}

// tally counts an op's result; what describes the op (only made when the
// result is told: fmt per op showed in profiles of a 100,000-file no-op).
func (p *processor) tally(what func() string, r *pb.OpResult, applied, noops *int64) {
	switch r.GetStatus() {
	case pb.OpStatus_OP_STATUS_OK:
		*applied++
	case pb.OpStatus_OP_STATUS_NOOP:
		*noops++
	case pb.OpStatus_OP_STATUS_RESOLVED:
		*applied++
		p.stats.Conflicts++
		p.m.log.Info("conflict resolved on the slave", "op", what())
	case pb.OpStatus_OP_STATUS_PARTIAL:
		*applied++
		p.stats.Partial = append(p.stats.Partial, what()+": "+r.GetError())
		p.m.log.Warn("applied in part on the slave", "op", what(), "error", r.GetError())
	default:
		p.fail("%s: %s (%s)", what(), r.GetError(), strings.TrimPrefix(r.GetCode().String(), "ERROR_CODE_"))
	}
}

// purgeReport turns what a report-only PURGE found beyond the master's
// names into removals: every extra name, but a directory the master has
// elsewhere (removing it would lose its subtree, which the op that moves
// it keeps).
func (p *processor) purgeReport(op *pb.EntryOp, r *pb.OpResult) {
	names, gs := r.GetExtraNames(), r.GetExtraGfids()
	if len(names) != len(gs) {
		p.fail("PURGE %x: the slave reported %d names and %d gfids", op.GetGfid(), len(names), len(gs))
		return
	}
	p.m.tree.Idx.View(func(tx *gfidx.Tx) error {
		for i, n := range names {
			g, err := gfid.FromBytes(gs[i])
			if err == nil {
				if e, ferr := p.m.tree.Find(tx, g); ferr == nil {
					unix.Close(e.DirFD)
					if e.St.Mode&unix.S_IFMT == unix.S_IFDIR {
						// Moved, subtree and all: the op that puts it where
						// the master has it (a crawl's or a reconciliation's
						// MKDIR, a RENAME record) moves it.
						continue
					}
					// A file the master has under other names: this name
					// is stale (a crawl that met the inode under two names
					// in turn, a rename replayed as a link). A later
					// record that moves it finds the inode under its
					// other names (the slave makes the move a link).
				}
			}
			p.removals = append(p.removals, &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_UNLINK,
				Gfid: gs[i], Pargfid: op.GetGfid(), Name: n})
		}
		return nil
	})
}

// purge sends one PURGE per directory crawled, naming what the master's
// directory holds now.
func (p *processor) purge(ctx context.Context) error {
	names := 0
	for _, g := range p.purges {
		var keep [][]byte
		list := func() error {
			return p.m.tree.Idx.View(func(tx *gfidx.Tx) error {
				fd, err := p.m.tree.OpenDir(tx, g)
				if err != nil {
					return err
				}
				defer unix.Close(fd)
				list, err := listDir(fd)
				if err != nil {
					return err
				}
				keep = make([][]byte, 0, len(list))
				for _, n := range list {
					if g == gfid.Root && n == wire.ReservedName {
						continue
					}
					keep = append(keep, []byte(n))
				}
				return nil
			})
		}
		err := list()
		if errors.Is(err, errGone) && p.syncRecorder != nil {
			// Perhaps moved just now: once the recorder has caught up,
			// the index says where.
			if err := p.syncRecorder(ctx); err != nil {
				return err
			}
			err = list()
		}
		if errors.Is(err, errGone) {
			continue // the directory itself went; its removal is recorded
		}
		if err != nil {
			return err
		}
		p.ops = append(p.ops, &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_PURGE, Gfid: g.Bytes(), KeepNames: keep, ReportOnly: p.live})
		names += len(keep)
		if len(p.ops) >= opsPerCall || names >= namesPerCall {
			if err := p.flushEntries(ctx); err != nil {
				return err
			}
			names = 0
		}
	}
	// The removals come from the answers to report-only purges: all in.
	if err := p.flushEntries(ctx); err != nil {
		return err
	}
	if err := p.settleEntries(ctx); err != nil {
		return err
	}
	p.ops = append(p.ops, p.removals...)
	p.removals = nil
	if err := p.flushEntries(ctx); err != nil {
		return err
	}
	return p.settleEntries(ctx)
}

// maxDataRounds bounds how often a file that keeps changing while it is
// read is sent again within one batch.
const maxDataRounds = 3

// maxInflight bounds the files posted and not yet accounted for: entry ops
// go faster than data, and without a bound the syncer's queue would grow
// to the size of the tree (about 150 bytes a file, unbounded).
const maxInflight = 16384

// answer is what an entry call said of a regular file: the slave's copy,
// and where the op left the file on the master (a hint for opening it).
type answer struct {
	copy slaveCopy
	at   syncer.Link
}

// answered is what the last two entry calls said of g.
func (p *processor) answered(g gfid.GFID) answer {
	a, prev := p.answers[g], p.prevAnswers[g]
	a.copy |= prev.copy
	if a.at.Parent == gfid.Zero {
		a.at = prev.at
	}
	return a
}

// slaveCopy is what the slave's answer to a CREATE said of its copy.
type slaveCopy uint8

const (
	copyCurrent slaveCopy = 1 << iota // content and metadata current
	copyAbsent                        // no copy (a CREATE made it anew)
)

// post hands files to the syncer (except those the slave has current),
// waiting for shipped boxes while too many files are in flight.
func (p *processor) post(ctx context.Context, gs []gfid.GFID, noDelta bool) error {
	for _, g := range gs {
		a := p.answered(g)
		if a.copy&copyCurrent != 0 {
			continue
		}
		for p.inflight >= maxInflight {
			if err := p.reapOne(ctx); err != nil {
				return err
			}
		}
		// A changelog's data record says the content changed: no quick
		// check (a metadata op of an earlier batch, read from the tree as
		// it was then, may have given the slave's old copy the new mtime).
		// A copy that may have the content already (it is not known
		// to be absent) is asked about before the data goes (no inline
		// data), unless the quick check is off anyway.
		f := &syncer.File{GFID: g, At: a.at, NoDelta: noDelta, NoQuickCheck: !p.trustRecords,
			NoInline: p.trustRecords && a.copy&copyAbsent == 0}
		b := p.sync.Add(f)
		p.boxFiles[b] = append(p.boxFiles[b], f)
		p.inflight++
	}
	return nil
}

// reapOne waits until some box in flight is done and accounts for it.
func (p *processor) reapOne(ctx context.Context) error {
	if err := p.reap(ctx, false); err != nil || p.inflight < maxInflight {
		return err
	}
	for b := range p.boxFiles {
		select {
		case <-b.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
		break
	}
	return p.reap(ctx, false)
}

// reap accounts for the boxes that are done (waiting for all of them when
// block is set).
func (p *processor) reap(ctx context.Context, block bool) error {
	for b, files := range p.boxFiles {
		if block {
			if err := b.Wait(ctx); err != nil {
				return fmt.Errorf("master: data: %w", err)
			}
		} else {
			select {
			case <-b.Done():
				if err := b.Wait(ctx); err != nil {
					return fmt.Errorf("master: data: %w", err)
				}
			default:
				continue
			}
		}
		delete(p.boxFiles, b)
		p.inflight -= len(files)
		p.account(files)
		p.report(false)
	}
	return nil
}

// drain waits for the entry call and every box in flight (their outcome
// no longer matters).
func (p *processor) drain() {
	if p.call != nil {
		<-p.call.done
		p.call = nil
	}
	for b := range p.boxFiles {
		<-b.Done()
	}
	p.boxFiles = map[*syncer.PostBox[*syncer.File]][]*syncer.File{}
	p.inflight = 0
}

// account records the outcome of shipped files: a file that changed while
// read goes again (up to maxDataRounds); one the slave built with the wrong
// hash goes again once, whole, then counts as a failure (seed 001's
// HASH_MISMATCH class).
func (p *processor) account(files []*syncer.File) {
	for _, f := range files {
		if p.m.log.IsTrace() {
			p.m.log.Trace("data", "gfid", f.GFID, "status", f.Status, "code", f.Code, "vanished", f.Vanished, "changed", f.Changed, "error", f.Err)
		}
		p.stats.BytesSent += f.Sent
		p.stats.BytesMatched += f.Matched
		if f.Delta {
			p.stats.Deltas++
		}
		switch {
		case f.Vanished && p.syncRecorder != nil && p.rounds[f.GFID] == 0:
			// Perhaps moved just now (the index lags the tree a little):
			// once more after the recorder has caught up.
			p.rounds[f.GFID]++
			p.lagged = append(p.lagged, f.GFID)
			continue
		case f.Vanished:
			p.stats.Vanished++
			continue
		case f.Code == pb.ErrorCode_ERROR_CODE_UNKNOWN_GFID && p.tolerant() && p.rounds[f.GFID] == 0 && !p.entriesDone:
			// Not where the slave looked: an entry op of this batch moved
			// it while its data was on the way. Send it again once all of
			// the batch's entry ops are applied.
			p.rounds[f.GFID]++
			p.later = append(p.later, f.GFID)
			continue
		case f.Code == pb.ErrorCode_ERROR_CODE_UNKNOWN_GFID && p.tolerant():
			// Not on the slave at all: its entry moved on the master after
			// this batch's records (skipped here), and the record that
			// moved it creates it with its data.
			p.stats.Skipped++
			continue
		case f.Code == pb.ErrorCode_ERROR_CODE_HASH_MISMATCH && !f.NoDelta:
			p.m.log.Warn("file built on the slave does not match the master's hash; sending it again whole", "gfid", f.GFID, "error", f.Err)
			p.stats.HashRetries++
			p.whole = append(p.whole, f.GFID)
			continue
		case f.Code == pb.ErrorCode_ERROR_CODE_HASH_MISMATCH:
			p.m.log.Error("file built on the slave does not match the master's hash, even sent whole", "gfid", f.GFID, "error", f.Err)
			p.fail("data of %s: %v (HASH_MISMATCH)", f.GFID, f.Err)
			continue
		case f.Changed:
			p.rounds[f.GFID]++
			if p.rounds[f.GFID] >= maxDataRounds && p.live {
				// Still being written: its next write is recorded and
				// sends it again; retrying the whole batch would not help.
				p.stats.Vanished++
				p.m.log.Debug("file keeps changing while read; its next change sends it", "gfid", f.GFID)
			} else if p.rounds[f.GFID] >= maxDataRounds {
				p.fail("data of %s: kept changing while being read (%d tries)", f.GFID, p.rounds[f.GFID])
			} else if f.NoDelta {
				p.whole = append(p.whole, f.GFID)
			} else {
				p.again = append(p.again, f.GFID)
			}
			continue
		case f.Status == pb.OpStatus_OP_STATUS_NOOP:
			p.stats.FilesUnchanged++
		case f.OK():
			p.stats.Files++
		case f.Status == pb.OpStatus_OP_STATUS_PARTIAL:
			p.stats.Files++
			p.stats.Partial = append(p.stats.Partial, fmt.Sprintf("data of %s: %v", f.GFID, f.Err))
		default:
			p.fail("data of %s: %v (%s)", f.GFID, f.Err, strings.TrimPrefix(f.Code.String(), "ERROR_CODE_"))
			continue
		}
		p.rep.bytesDone += f.Size
		if f.MetaDone {
			if p.metaDone != nil {
				p.metaDone[f.GFID] = true
			}
		} else if p.metaSet == nil || !p.metaSet[f.GFID] {
			// The header could not carry the file's metadata (its xattrs
			// were unreadable, or the file could not be opened).
			p.needMeta = append(p.needMeta, f.GFID)
		}
	}
}

// syncData waits for the files in flight and sends again those that need
// it, until none does.
func (p *processor) syncData(ctx context.Context) error {
	for {
		if err := p.reap(ctx, true); err != nil {
			return err
		}
		if len(p.again) == 0 && len(p.whole) == 0 && len(p.lagged) == 0 {
			return nil
		}
		if len(p.lagged) > 0 {
			if err := p.syncRecorder(ctx); err != nil {
				return err
			}
			p.again = append(p.again, p.lagged...)
			p.lagged = nil
		}
		again, whole := p.again, p.whole
		p.again, p.whole = nil, nil
		p.answers, p.prevAnswers = nil, nil
		if err := p.post(ctx, again, false); err != nil {
			return err
		}
		if err := p.post(ctx, whole, true); err != nil {
			return err
		}
	}
}

// syncMeta sends the metadata of every M gfid, read from the master now.
func (p *processor) syncMeta(ctx context.Context) error {
	var ops []*pb.MetaOp
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		resp, err := p.client.MetaOps(ctx, &pb.MetaOpsRequest{SessionToken: p.session, Ops: ops})
		if err != nil {
			return fmt.Errorf("master: metadata ops: %w", err)
		}
		if len(resp.GetResults()) != len(ops) {
			return fmt.Errorf("master: slave answered %d results for %d metadata ops", len(resp.GetResults()), len(ops))
		}
		for i, r := range resp.GetResults() {
			g, _ := gfid.FromBytes(ops[i].GetGfid())
			if p.m.log.IsTrace() {
				p.m.log.Trace("metadata", "gfid", g, "mode", fmt.Sprintf("%o", ops[i].GetMode()), "mtime", ops[i].GetMtimeNs(), "status", r.GetStatus(), "error", r.GetError())
			}
			if r.GetCode() == pb.ErrorCode_ERROR_CODE_UNKNOWN_GFID && p.tolerant() {
				p.stats.Skipped++ // as for data (see account)
				continue
			}
			if r.GetStatus() == pb.OpStatus_OP_STATUS_SKIPPED {
				// An entry the slave did not make (its entry op was
				// counted and told of: see notMade).
				p.stats.Skipped++
				p.m.log.Debug("metadata not applied: the slave did not make the entry", "gfid", g, "reason", r.GetError())
				continue
			}
			p.tally(func() string { return "metadata of " + g.String() }, r, &p.stats.MetaOps, &p.stats.MetaNoops)
		}
		p.rep.metaLeft -= len(ops)
		p.report(false)
		ops = ops[:0]
		return nil
	}
	var gone []gfid.GFID
	add := func(gs []gfid.GFID, last bool) error {
		for _, g := range gs {
			if p.metaDone[g] {
				continue // applied with the file's data
			}
			op, err := p.metaOp(g)
			if errors.Is(err, errGone) {
				if !last && p.syncRecorder != nil {
					gone = append(gone, g)
				} else {
					p.stats.Skipped++
				}
				continue
			}
			if err != nil {
				return err
			}
			ops = append(ops, op)
			if len(ops) >= opsPerCall {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	}
	p.rep.metaLeft = len(p.meta) + len(p.needMeta)
	if err := add(append(p.meta, p.needMeta...), false); err != nil {
		return err
	}
	if len(gone) > 0 {
		// Not found where the index says: perhaps moved just now, and the
		// index lags the tree a little. Once the recorder has caught up,
		// only then is it gone.
		if err := p.syncRecorder(ctx); err != nil {
			return err
		}
		if err := add(gone, true); err != nil {
			return err
		}
	}
	return flush()
}

// metaOp reads g's metadata on the master.
func (p *processor) metaOp(g gfid.GFID) (*pb.MetaOp, error) {
	var op *pb.MetaOp
	err := p.m.tree.Idx.View(func(tx *gfidx.Tx) error {
		var st unix.Stat_t
		var list func() ([]*pb.Xattr, error)
		if g == gfid.Root {
			if err := unix.Fstat(p.m.tree.Root.FD(), &st); err != nil {
				return fmt.Errorf("master: stat root: %w", err)
			}
			list = func() ([]*pb.Xattr, error) { return toPB(xattrs.ListFD(p.m.tree.Root.FD(), p.m.tree.replicated())) }
		} else {
			e, err := p.m.tree.Find(tx, g)
			if err != nil {
				return err
			}
			defer unix.Close(e.DirFD)
			st = e.St
			list = func() ([]*pb.Xattr, error) { return toPB(xattrs.ListAt(e.DirFD, e.Name, p.m.tree.replicated())) }
		}
		op = &pb.MetaOp{
			Gfid: g.Bytes(), Mode: st.Mode, Uid: st.Uid, Gid: st.Gid,
			AtimeNs: st.Atim.Nano(), MtimeNs: st.Mtim.Nano(),
			KeepTimes: p.notAfter > 0 && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Ctim.Nano() > p.notAfter,
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG, unix.S_IFDIR:
			xs, err := list()
			if err != nil {
				return fmt.Errorf("master: xattrs of %s: %w", g, err)
			}
			op.SyncXattrs = true
			op.Xattrs = xs
		}
		return nil
	})
	return op, err
}

// toPB turns the xattrs an xattrs.List* call read into wire form, sorted by
// name.
func toPB(m map[string][]byte, err error) ([]*pb.Xattr, error) {
	if err != nil {
		return nil, err
	}
	out := make([]*pb.Xattr, 0, len(m))
	for _, n := range xattrs.Names(m) {
		out = append(out, &pb.Xattr{Name: []byte(n), Value: m[n]})
	}
	return out, nil
}
