// Package batch applies one batch of journal records to the slave: the
// master's batch processor (gsyncd's process_change). A batch is, in
// order:
//
//  1. entry ops, many to an EntryOps call, in journal order (the next call
//     is built while the slave applies the last one), then the purges and
//     the removals their answers call for;
//  2. data, through the syncer's PostBoxes: each file as soon as the call
//     with its entry op is answered, again what changed while it was read
//     or came out wrong;
//  3. metadata, last (data renames touch directories' times).
//
// It returns an *OpError when ops failed (the caller retries the batch
// whole and never moves its marks past it), and another error when the
// batch could not be carried out at all (the link failed).
//
// A batch is of one Kind, each made by its own constructor: a one-shot
// crawl (OneShot), a crawl beside the recorder (LiveCrawl), journal
// segments replayed as recorded (Changelog), and the reconciliation of
// the directories a changelog batch touched (Reconcile). The kind decides
// how records are read (a crawl's carry the stat they are true for; a
// changelog's are described from the tree as it is now), whether purges
// remove or only report, and what an op's result means (decide, a pure
// function of the kind, the op and the slave's answer).
//
// A batch talks to the slave through Config.Client and reads the master
// tree through Config.Tree; it keeps no pointer to the master.
package batch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/mtree"
	"github.com/georep/georep/internal/rules"
	"github.com/georep/georep/internal/syncstatus"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/syncer"
)

// Kind is what a batch is made of.
type Kind int

// The kinds of batch.
const (
	// OneShot is a one-shot crawl (georep master --oneshot): its records
	// come while the crawl runs; its purges remove what the master's
	// directories lack.
	OneShot Kind = iota
	// LiveCrawl is a crawl of the whole tree beside the recorder (the
	// first sync of a live session, and after a gap): its purges report
	// what is extra, and the batch removes it unless the master has it
	// elsewhere.
	LiveCrawl
	// Changelog replays journal segments as recorded: every entry op in
	// order, each entry described from the master's tree as it is now.
	Changelog
	// Reconcile is a crawl of the directories a changelog batch touched,
	// each alone, after its replay.
	Reconcile
)

func (k Kind) String() string {
	switch k {
	case OneShot:
		return "one-shot crawl"
	case LiveCrawl:
		return "live crawl"
	case Changelog:
		return "changelog"
	case Reconcile:
		return "reconciliation"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// crawl reports whether the kind's records come from a crawl, which
// carries the stat each entry had when listed (the batch claims no later
// time): they are not read from the tree again.
func (k Kind) crawl() bool { return k != Changelog }

// live reports whether the batch belongs to a live session (the recorder
// runs): then an entry, a file's data or metadata that the slave lacks is
// not a failure (the journal, recorded since before any crawl, moves or
// removes it), and purges only report.
func (k Kind) live() bool { return k != OneShot }

// Config is what a batch works with: the master tree, the slave, the data
// plane, and where it reports.
type Config struct {
	// Tree is the master tree: gfids, the index, and opening files.
	Tree *mtree.Source
	// Client and Token reach the slave's open session.
	Client pb.SlaveServiceClient
	Token  []byte
	// Syncer ships file data; its workers run for the session.
	Syncer *syncer.Syncer[*syncer.File]
	// Shared is what the batches of one master share.
	Shared *Shared
	// IgnoreDeletes keeps on the slave what the master removed.
	IgnoreDeletes bool
	// Rules say what is replicated (nil: everything; see package rules).
	// A changelog batch skips the records of excluded paths, makes a
	// rename from an included to an excluded name a removal on the slave
	// (and the reverse a creation, by the rename's description), and
	// sends no data or metadata of an excluded entry.
	Rules *rules.Rules
	// DeleteExcluded: a directory's purge does not keep what the rules
	// exclude, so the slave's copies of newly excluded entries go.
	// Without it they stay (as rsync leaves excluded files alone).
	DeleteExcluded bool
	// Checksum: a crawl takes no file for current by its size and mtime;
	// each one's content is compared (georep master --checksum).
	Checksum bool
	// ComparePaths are files (paths from the root) a crawl compares by
	// content, as Checksum does for all: what georep verify found to
	// differ, for its repair.
	ComparePaths map[string]bool
	// SyncRecorder waits until the recorder has indexed every change made
	// before the call (live kinds; nil for a one-shot).
	SyncRecorder func(context.Context) error
	// Status hears the batch's progress (nil: nobody).
	Status *syncstatus.Tracker
	// Phase is told what the batch does now, for status and the log of a
	// batch that runs long (nil: nobody). A reconciliation says nothing:
	// its caller says which round it is.
	Phase func(string)
	Log   hclog.Logger
	// Hook, when set, is called at each Point, with no data in flight
	// (the batch waits for it first): tests change the tree there to
	// replay an interleaving. An error from it ends the batch.
	Hook func(ctx context.Context, at Point) error
}

// Point is where a batch calls Config.Hook.
type Point int

// The hook points, in the order a batch passes them.
const (
	// BeforeEntryCall: an entry call is about to be sent.
	BeforeEntryCall Point = iota
	// BeforeRemovals: every entry op and purge is answered; the removals
	// the purges found go next.
	BeforeRemovals
	// BeforeData: every entry op is applied; the batch waits for its data.
	BeforeData
	// BeforeMeta: the data is done; the metadata goes next.
	BeforeMeta
)

func (p Point) String() string {
	return [...]string{"before an entry call", "before the removals", "before the data", "before the metadata"}[p]
}

// Shared is what the batches of one master share across sessions.
type Shared struct {
	// SlaveEmpty: the slave said at the handshake that its tree was
	// empty, and no batch has run since: nothing there can be current, so
	// a crawl's CREATE does not ask (see crawlEntry).
	SlaveEmpty atomic.Bool
	// notMade: the entries (by gfid) the slave said it cannot make, of
	// which the log has warned while this master runs.
	notMade sync.Map
}

// Stats counts what one batch did.
type Stats struct {
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
	Excluded                        int64 // records of paths the rules leave out (see Config.Rules)
	Partial                         []string
}

// Add accumulates o into s.
func (s *Stats) Add(o Stats) {
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
	s.Excluded += o.Excluded
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

// FailureCount is how many ops failed (the status tracker's FAILURES).
func (e *OpError) FailureCount() int { return len(e.Failures) }

// ErrJournalDamaged marks a journal segment of a batch that could not be
// read (torn, malformed, or gone): its changes are found by a crawl
// instead, never by retrying for ever.
var ErrJournalDamaged = errors.New("batch: journal segment damaged")

// Feed brings a one-shot crawl's records while the crawl runs: Read calls
// fn for every record in crawl order until the crawl ends, and returns the
// crawl's error if it failed (the records then are not the whole tree: the
// batch must not act as if they were, PURGE above all).
type Feed interface {
	Read(fn func(changelog.Record) error) error
}

// CrawlOptions are a live crawl's own.
type CrawlOptions struct {
	// ChangedSince is when the slave was last known to hold every change
	// (the stime; zero: never). A file whose ctime is later (less
	// ctimeSlack) changed since, maybe while no recorder ran (the master
	// was down or killed): its slave copy is compared by content (a
	// delta), never taken for current because its size and mtime match.
	// A write that puts the old mtime back (tar, rsync -t, cp -p, an
	// editor's touch -r) changes the ctime all the same; the kernel sets
	// it, nobody can put it back.
	ChangedSince time.Time
}

// ctimeSlack covers the coarse clock the kernel stamps ctimes with (up to
// a tick, 1–10 ms, behind the clock the stime was read from) ten times
// over: a file changed this long before the stime is compared by content
// too. (A small file compared by content is sent whole.)
const ctimeSlack = 100 * time.Millisecond

// NewOneShot is a one-shot crawl's batch, over its records as they come.
// Its files are compared with the slave's copies by size and mtime, as
// rsync does.
func NewOneShot(cfg Config, feed Feed) *Batch {
	return newBatch(cfg, OneShot, feed.Read)
}

// NewLiveCrawl is a crawl's batch beside the recorder, over the crawl's
// journal.
func NewLiveCrawl(cfg Config, journal string, o CrawlOptions) *Batch {
	return newBatch(cfg, LiveCrawl, readJournal(journal)).crawlOptions(o)
}

func (b *Batch) crawlOptions(o CrawlOptions) *Batch {
	if !o.ChangedSince.IsZero() {
		b.changedSince = o.ChangedSince.Add(-ctimeSlack).UnixNano()
		b.changed = map[gfid.GFID]bool{}
	}
	return b
}

// changedSinceSync reports whether a crawl's record is of a file changed
// since ChangedSince (a record without a ctime counts as changed), other
// than by the write of its own gfid (see stampedOnly).
func (b *Batch) changedSinceSync(r *changelog.Record) bool {
	if b.changed == nil || !r.HasStat {
		return false
	}
	return r.CtimeNS == 0 || (r.CtimeNS >= b.changedSince && !stampedOnly(r.GFID, r.CtimeNS))
}

// The window around a gfid's making (gfid.GFID.Made) in which an inode's
// ctime is taken for the write of that gfid: the kernel's ctime clock is
// coarse (a tick behind) and the gfid's time is cut to the millisecond;
// the xattr is written right after the gfid is made (a loaded machine may
// take longer: the file then counts as changed, which costs a compare,
// not a copy).
const (
	stampBefore = 20 * time.Millisecond
	stampAfter  = 50 * time.Millisecond
)

// stampedOnly reports whether ctimeNS is that of the write of g itself: a
// file given its gfid by a crawl or the recorder after the stime (a
// one-shot's stime is its start, older than every gfid it writes; a
// killed master's, older than the gfids its recorder wrote since) and
// not changed after. A content change after the gfid was written moves
// the ctime past the window; one within it (a write that puts the mtime
// back, within 50 ms of the gfid, after the data was read) is missed, as
// a one-shot's quick check misses any.
func stampedOnly(g gfid.GFID, ctimeNS int64) bool {
	made, ok := g.Made()
	if !ok {
		return false
	}
	m := made.UnixNano()
	return ctimeNS >= m-int64(stampBefore) && ctimeNS < m+int64(time.Millisecond)+int64(stampAfter)
}

// ChangelogOptions are a changelog batch's own.
type ChangelogOptions struct {
	// SkipEntries: the batch's entry ops were applied by an earlier
	// attempt (its entry stime says so); only its data and metadata go,
	// and its directories are still reported touched.
	SkipEntries bool
	// EntriesApplied, if set, is called once every entry op of the batch
	// is applied (the caller moves the entry stime).
	EntriesApplied func() error
}

// NewChangelog is the batch of journal segments at paths, replayed as
// recorded.
func NewChangelog(cfg Config, paths []string, o ChangelogOptions) *Batch {
	b := newBatch(cfg, Changelog, readSegments(paths))
	b.touched = map[gfid.GFID]bool{}
	b.skipEntries = o.SkipEntries
	b.entriesApplied = o.EntriesApplied
	return b
}

// NewReconcile is the batch of a crawl of directories a changelog batch
// touched (its journal); base is what the batch's earlier passes synced,
// which its reports go on from.
func NewReconcile(cfg Config, journal string, base syncstatus.Batch) *Batch {
	b := newBatch(cfg, Reconcile, readJournal(journal))
	b.missing, b.also = map[gfid.GFID]bool{}, map[gfid.GFID]bool{}
	b.rep.base = base
	b.lastSync = time.Now()
	return b
}

func newBatch(cfg Config, k Kind, records func(func(changelog.Record) error) error) *Batch {
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	if cfg.Shared == nil {
		cfg.Shared = &Shared{}
	}
	b := &Batch{cfg: cfg, kind: k, records: records}
	if !k.crawl() {
		// A changelog may name a busy file in every segment (gsyncd #4321
		// sent one 92 GB file 127 times): its gfids are deduplicated. A
		// crawl names each gfid once, and keeps no per-gfid state: memory
		// must not grow with the tree.
		b.dataSet = map[gfid.GFID]bool{}
		b.metaSet = map[gfid.GFID]bool{}
		b.metaDone = map[gfid.GFID]bool{}
		b.purgeSet = map[gfid.GFID]bool{}
		b.bestEffort = map[*pb.EntryOp]bool{}
		b.removeOnFail = map[*pb.EntryOp]bool{}
	}
	return b
}

// readJournal reads one crawl journal.
func readJournal(path string) func(func(changelog.Record) error) error {
	return func(fn func(changelog.Record) error) error {
		_, err := changelog.ReadFile(path, fn)
		return err
	}
}

// readSegments reads the segments at paths in order; one that cannot be
// read is ErrJournalDamaged.
func readSegments(paths []string) func(func(changelog.Record) error) error {
	return func(fn func(changelog.Record) error) error {
		for _, path := range paths {
			var fnErr error
			_, err := changelog.ReadFile(path, func(r changelog.Record) error {
				fnErr = fn(r)
				return fnErr
			})
			if err != nil && fnErr == nil && (errors.Is(err, changelog.ErrMalformed) || errors.Is(err, fs.ErrNotExist)) {
				return fmt.Errorf("%w: %w", ErrJournalDamaged, err)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
}

// Kind is the batch's kind.
func (b *Batch) Kind() Kind { return b.kind }

// Stats is what the batch did (valid after Run).
func (b *Batch) Stats() Stats { return b.stats }

// Synced is what the batch synced, its earlier passes' included (for the
// next pass's base).
func (b *Batch) Synced() syncstatus.Batch { return b.synced() }

// Touched lists the directories a changelog batch's entry records named
// and those the slave said its ops used (see alsoDirs): what its
// reconciliation crawls.
func (b *Batch) Touched() []gfid.GFID {
	out := make([]gfid.GFID, 0, len(b.touched))
	for g := range b.touched {
		out = append(out, g)
	}
	return out
}

// Made lists the directories the slave made from an op's description (it
// had their gfid nowhere): empty there, they are crawled whole.
func (b *Batch) Made() []gfid.GFID { return b.made }

// MovedIn lists the directories a changelog batch saw moved from a place
// the rules exclude into a replicated one: crawled whole, every file
// compared by content (see CompareAll), since a copy the slave kept may be
// stale in ways size and mtime do not tell.
func (b *Batch) MovedIn() []gfid.GFID { return b.movedIn }

// CompareAll has a crawl's batch compare every file by content, never
// taking the slave's copy for current on its size and mtime (but a file
// whose only change is the write of its own gfid: see stampedOnly).
// CompareChangedSince has a reconciliation's files compared as a live
// crawl's are (see CrawlOptions): by content where changed since
// o.ChangedSince.
func (b *Batch) CompareChangedSince(o CrawlOptions) *Batch { return b.crawlOptions(o) }

func (b *Batch) CompareAll() *Batch {
	b.changedSince = math.MinInt64
	b.changed = map[gfid.GFID]bool{}
	return b
}

// Missing lists the directories a reconciliation found the slave lacks
// (their parents are reconciled next).
func (b *Batch) Missing() []gfid.GFID { return keys(b.missing) }

// Also lists the directories a reconciliation's ops used beyond those they
// name (see alsoDirs): reconciled next.
func (b *Batch) Also() []gfid.GFID { return keys(b.also) }

func keys(m map[gfid.GFID]bool) []gfid.GFID {
	out := make([]gfid.GFID, 0, len(m))
	for g := range m {
		out = append(out, g)
	}
	return out
}

// Run applies the batch: entry ops, then data, then metadata. It returns
// an *OpError when any op failed, and another error when the batch could
// not be carried out at all (the link failed). A batch runs once.
func (b *Batch) Run(ctx context.Context) error {
	b.answers, b.prevAnswers = map[gfid.GFID]answer{}, map[gfid.GFID]answer{}
	b.boxFiles = map[*syncer.PostBox[*syncer.File]][]*syncer.File{}
	b.rounds = map[gfid.GFID]int{}
	defer b.dir.close()
	// After a batch, the slave holds what it applied of it.
	defer b.cfg.Shared.SlaveEmpty.Store(false)
	// The syncer's directories, once no file is read in them (a deleted
	// directory's inode is not kept).
	defer b.cfg.Tree.ResetDirs()
	// Whatever happens, never leave with data of this batch in flight.
	defer b.drain()
	defer b.report(true)
	b.dir.t = b.cfg.Tree
	if b.kind == Changelog && b.cfg.SyncRecorder != nil {
		// The index follows the tree as the recorder sees it: let it
		// catch up before the batch reads the tree.
		if err := b.syncRecorder(ctx); err != nil {
			return err
		}
	}
	if err := b.applyEntries(ctx); err != nil {
		return err
	}
	if len(b.failures) > 0 {
		// Data and metadata of entries that failed would fail too; the
		// batch is retried as a whole.
		return &OpError{Failures: b.failures}
	}
	if b.entriesApplied != nil {
		if err := b.entriesApplied(); err != nil {
			return err
		}
	}
	if err := b.sendData(ctx); err != nil {
		return err
	}
	if err := b.sendMeta(ctx); err != nil {
		return err
	}
	if len(b.failures) > 0 {
		return &OpError{Failures: b.failures}
	}
	return nil
}

// applyEntries is phase 1: the records' entry ops in order, many per call,
// then the purges and the removals they call for.
func (b *Batch) applyEntries(ctx context.Context) error {
	if err := b.records(b.record(ctx)); err != nil {
		return err
	}
	if err := b.flushEntries(ctx); err != nil {
		return err
	}
	b.rep.purging = true
	b.phase("purges and removals")
	return b.purge(ctx)
}

// sendData is phase 2: most of the data is on its way already (each file
// once its entry op was answered); wait for it, and send again what needs
// another try.
func (b *Batch) sendData(ctx context.Context) error {
	b.phase(fmt.Sprintf("data: %d files in flight", b.inflight))
	if err := b.hook(ctx, BeforeData); err != nil {
		return err
	}
	if err := b.reap(ctx, true); err != nil {
		return err
	}
	b.entriesDone = true
	b.pendingData = append(b.pendingData, b.later...)
	b.later = nil
	if err := b.post(ctx, b.pendingData, false); err != nil {
		return err
	}
	b.pendingData = nil
	return b.syncData(ctx)
}

// sendMeta is phase 3: metadata last, since data renames touch
// directories' mtimes.
func (b *Batch) sendMeta(ctx context.Context) error {
	b.phase(fmt.Sprintf("metadata: %d ops", len(b.meta)+len(b.needMeta)))
	if err := b.hook(ctx, BeforeMeta); err != nil {
		return err
	}
	return b.syncMeta(ctx)
}

// phase tells what the batch does now.
func (b *Batch) phase(what string) {
	if b.kind == Reconcile || b.cfg.Phase == nil {
		return // the reconciliation's caller says which round it is
	}
	b.cfg.Phase(what)
}

// hook calls Config.Hook at, once no data is in flight.
func (b *Batch) hook(ctx context.Context, at Point) error {
	if b.cfg.Hook == nil {
		return nil
	}
	if err := b.reap(ctx, true); err != nil {
		return err
	}
	return b.cfg.Hook(ctx, at)
}

func (b *Batch) fail(format string, a ...any) {
	b.failures = append(b.failures, fmt.Sprintf(format, a...))
}

// syncRecorder waits until the recorder has caught up (live kinds).
func (b *Batch) syncRecorder(ctx context.Context) error {
	if err := b.cfg.SyncRecorder(ctx); err != nil {
		return err
	}
	b.lastSync = time.Now()
	return nil
}
