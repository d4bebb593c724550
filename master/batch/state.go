package batch

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/mtree"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/syncer"
)

// Batch is one batch on its way to the slave (see the package comment).
// It is used by one goroutine; the entry call on its way and the syncer's
// workers report to it through channels and PostBoxes.
type Batch struct {
	cfg     Config
	kind    Kind
	records func(func(changelog.Record) error) error

	stats    Stats
	failures []string

	// What the records ask for beyond entry ops, in first-seen order. A
	// crawl's records name each gfid once, so the dedupe sets (whose size
	// grows with the batch) are kept only for a changelog (nil for a
	// crawl); memory must not grow with the tree.
	dataSet     map[gfid.GFID]bool // D records seen
	pendingData []gfid.GFID        // D records whose entry ops are not yet applied
	meta        []gfid.GFID        // M records (a crawl writes them for non-files only)
	metaSet     map[gfid.GFID]bool
	metaDone    map[gfid.GFID]bool // metadata applied with the data
	needMeta    []gfid.GFID        // files whose data did not carry their metadata
	// What the last two entry calls said of their files (a D record is
	// posted at the call after its E record's at the latest).
	answers, prevAnswers map[gfid.GFID]answer
	call                 *entryCall // the entry call on its way, if any
	calls                int        // entry calls sent (see callOps)
	purges               []gfid.GFID
	purgeSet             map[gfid.GFID]bool

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
	// For a changelog: ops that may fail for want of their directory (made
	// by a record that was skipped because that directory is gone from the
	// master); moves of entries gone from the master, whose old names go
	// at the batch's end if the slave cannot make them.
	bestEffort   map[*pb.EntryOp]bool
	removeOnFail map[*pb.EntryOp]bool
	// removals go at the batch's end, after the purges: the old names of
	// such moves, and what report-only purges found that the master no
	// longer has (live kinds).
	removals []*pb.EntryOp
	// lastSync is when the recorder last caught up (live kinds).
	lastSync time.Time
	dir      dirFDs

	// touched (Changelog): the directories the entry records named and
	// the slave said its ops used, reconciled after the batch.
	touched map[gfid.GFID]bool
	// missing and also (Reconcile): directories the slave lacks, and those
	// it used beyond the ones named; the next round takes them.
	missing map[gfid.GFID]bool
	also    map[gfid.GFID]bool
	made    []gfid.GFID // directories the slave made from an op: it has none of their content
	movedIn []gfid.GFID // directories moved from an excluded place into a replicated one
	rep     report      // for the status tracker (report.go)
	// Crawls: see CrawlOptions. changed holds the files the crawl found
	// changed since then (their slave copies are never taken for current
	// on size and mtime): as many as changed, not as the tree.
	changedSince int64
	changed      map[gfid.GFID]bool
	// Changelog: see ChangelogOptions.
	skipEntries    bool
	entriesApplied func() error
}

// dirFDs caches a few master directory descriptors by gfid while records
// of the same directory follow each other (as a crawl writes them).
type dirFDs struct {
	t  *mtree.Source
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
