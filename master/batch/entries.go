package batch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/mtree"
	"github.com/georep/georep/internal/wire"
	"github.com/georep/georep/internal/xattrs"
	pb "github.com/georep/georep/proto/georep/v1"
)

// Call sizes: ops per EntryOps/MetaOps call, and PURGE names per call.
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

// record takes one record of the batch: an entry op goes into the next
// call (sent when it is full), the rest is collected.
func (b *Batch) record(ctx context.Context) func(r changelog.Record) error {
	return func(r changelog.Record) error {
		switch r.Kind {
		case changelog.KindData:
			// A crawl's data records are of files it found and the rules
			// let in (it skips what they leave out): only a changelog's
			// may be of an excluded file (W6 in make bench: the check
			// was 6 % of a half-excluded one-shot's CPU).
			if !b.kind.crawl() && b.dataExcluded(r.GFID) {
				b.stats.Excluded++
				return nil
			}
			b.addData(r.GFID)
			return nil
		case changelog.KindMeta:
			if b.metaSet == nil || !b.metaSet[r.GFID] {
				if b.metaSet != nil {
					b.metaSet[r.GFID] = true
				}
				b.meta = append(b.meta, r.GFID)
			}
			return nil
		}
		if b.touched != nil {
			b.touched[r.Parent] = true
			switch r.Op {
			case changelog.OpRename, changelog.OpExchange:
				b.touched[r.Parent2] = true
			case changelog.OpPurge, changelog.OpMkdir:
				b.touched[r.GFID] = true
			}
		}
		if b.skipEntries {
			return nil
		}
		if b.cfg.IgnoreDeletes && (r.Op == changelog.OpPurge || r.Op == changelog.OpUnlink || r.Op == changelog.OpRmdir) {
			return nil
		}
		if r.Op == changelog.OpPurge {
			// Purges wait for every create of the batch, so that an entry
			// that moved between directories is moved, not deleted and
			// sent again.
			if b.purgeSet == nil || !b.purgeSet[r.GFID] {
				if b.purgeSet != nil {
					b.purgeSet[r.GFID] = true
				}
				b.purges = append(b.purges, r.GFID)
			}
			return nil
		}
		if err := b.entry(ctx, &r); err != nil {
			return err
		}
		if len(b.ops) >= b.callOps() {
			return b.flushEntries(ctx)
		}
		return nil
	}
}

// callOps is how many entry ops the next call takes (see firstCallOps).
func (b *Batch) callOps() int {
	return min(firstCallOps<<min(b.calls, 8), opsPerCall)
}

// describe fills in what an op needs to create its entry where the slave
// lacks it: the entry's stat (st, of name in dirfd), a symlink's target, a
// regular file's data.
func (b *Batch) describe(op *pb.EntryOp, st *unix.Stat_t, dirfd int, name string, g gfid.GFID) {
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
		b.addData(g)
	}
}

// addData queues g's data once per batch (a crawl names each file once; a
// changelog batch may name a busy file in every segment).
func (b *Batch) addData(g gfid.GFID) {
	if b.dataSet != nil {
		if b.dataSet[g] {
			return
		}
		b.dataSet[g] = true
	}
	b.pendingData = append(b.pendingData, g)
}

// errLag says an entry was not found where the index says, and the index
// may lag the tree (the recorder indexes changes a few ms after them).
var errLag = errors.New("batch: the index may lag the tree")

// lagWindow: an entry not found within this long after the recorder last
// caught up is taken for gone (a change newer than that is in a later
// segment, whose records see it).
const lagWindow = 50 * time.Millisecond

// entry turns an E record into an EntryOp.
func (b *Batch) entry(ctx context.Context, r *changelog.Record) error {
	err := b.entryTx(r)
	if errors.Is(err, errLag) {
		if err := b.syncRecorder(ctx); err != nil {
			return err
		}
		b.dir.close()
		err = b.entryTx(r)
	}
	return err
}

func (b *Batch) entryTx(r *changelog.Record) error {
	return b.cfg.Tree.Idx.View(func(tx *gfidx.Tx) error {
		op := &pb.EntryOp{Gfid: r.GFID.Bytes(), Pargfid: r.Parent.Bytes(), Name: []byte(r.Name)}
		switch r.Op {
		case changelog.OpUnlink, changelog.OpRmdir:
			if b.excluded(tx, r.Parent, r.Name, r.Op == changelog.OpRmdir) {
				b.stats.Excluded++ // the slave's copy, if any, is not ours to remove
				return nil
			}
			op.Type = pb.EntryOpType_ENTRY_OP_TYPE_UNLINK
			if r.Op == changelog.OpRmdir {
				op.Type = pb.EntryOpType_ENTRY_OP_TYPE_RMDIR
			}
			b.ops = append(b.ops, op)
			if b.bestEffort != nil {
				b.bestEffort[op] = true
			}
			return nil
		}
		if b.kind.crawl() {
			return b.crawlEntry(tx, r, op)
		}
		return b.liveEntry(tx, r, op)
	})
}

// crawlEntry makes the op of a crawl's record: the tree as the crawl found
// it (the batch claims no later time).
func (b *Batch) crawlEntry(tx *gfidx.Tx, r *changelog.Record, op *pb.EntryOp) error {
	// Into a slave that was not empty (pre-seeded: cp -a, a shipped disk),
	// what is at the name already, with no gfid and of the type, is
	// adopted rather than moved aside: its content is then found current
	// (check_current) or sent as a delta, not again whole.
	op.Adopt = r.Op != changelog.OpLink && !b.cfg.Shared.SlaveEmpty.Load()
	switch r.Op {
	case changelog.OpMkdir:
		op.Mode, op.Uid, op.Gid = r.Mode, r.UID, r.GID
		op.Type = pb.EntryOpType_ENTRY_OP_TYPE_MKDIR
		b.ops = append(b.ops, op)
		return nil
	case changelog.OpCreate:
		op.Mode, op.Uid, op.Gid = r.Mode, r.UID, r.GID
		op.Type = pb.EntryOpType_ENTRY_OP_TYPE_CREATE
		// A crawl follows every regular file's CREATE with its D record:
		// the data stream creates the file, whole.
		op.DataFollows = true
		// If the slave has it already, let it say whether it is current:
		// then neither data nor metadata need to go. The crawl's stat is
		// what this batch claims; only the xattrs are read here. Not in
		// the first batch into a slave that was empty: nothing there can
		// be current.
		// A file changed since the last sync is not asked: its copy may
		// have the size and mtime and not the content (see CrawlOptions).
		// With Checksum, nothing is taken for current by size and mtime:
		// every file's content is compared (a delta: block hashes cross
		// the link, and the blocks that differ).
		if b.changedSinceSync(r) || b.cfg.Checksum || b.compareByContent(tx, r) {
			if b.changed == nil {
				b.changed = map[gfid.GFID]bool{}
			}
			b.changed[r.GFID] = true
		} else if r.HasStat && !b.cfg.Shared.SlaveEmpty.Load() {
			if dirfd, err := b.dir.get(tx, r.Parent); err == nil {
				if xs, err := mtree.XattrsPB(xattrs.ListAt(dirfd, r.Name, b.cfg.Tree.Replicated())); err == nil {
					op.CheckCurrent, op.Size, op.MtimeNs, op.Xattrs = true, r.Size, r.MtimeNS, xs
				}
			}
		}
		b.ops = append(b.ops, op)
		return nil
	case changelog.OpLink:
		op.Type = pb.EntryOpType_ENTRY_OP_TYPE_LINK
		b.ops = append(b.ops, op)
		return nil
	case changelog.OpSymlink, changelog.OpMknod:
	default:
		return fmt.Errorf("batch: entry op %s not handled in a crawl's records", r.Op)
	}
	dirfd, err := b.dir.get(tx, r.Parent)
	var st unix.Stat_t
	if err == nil {
		st, err = b.cfg.Tree.Lookup(dirfd, r.Parent, r.Name, r.GFID)
	}
	if errors.Is(err, mtree.ErrGone) {
		b.stats.Skipped++
		return nil
	}
	if err != nil {
		return err
	}
	op.Type = pb.EntryOpType_ENTRY_OP_TYPE_MKNOD
	if r.Op == changelog.OpSymlink {
		op.Type = pb.EntryOpType_ENTRY_OP_TYPE_SYMLINK
	}
	b.describe(op, &st, dirfd, r.Name, r.GFID)
	if op.Mode == 0 {
		b.stats.Skipped++ // a symlink that could not be read
		return nil
	}
	b.ops = append(b.ops, op)
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
func (b *Batch) liveEntry(tx *gfidx.Tx, r *changelog.Record, op *pb.EntryOp) error {
	e, err := b.cfg.Tree.Find(tx, r.GFID)
	found := err == nil
	if err != nil && !errors.Is(err, mtree.ErrGone) {
		return err
	}
	if !found && b.cfg.SyncRecorder != nil && time.Since(b.lastSync) > lagWindow {
		return errLag // not found: perhaps moved just now; look again once indexed
	}
	if found {
		defer unix.Close(e.DirFD)
	}
	if b.cfg.Rules.Len() > 0 {
		// The type decides dir/ patterns: as found, else as recorded,
		// else (a rename record carries none) whether the index holds
		// something beneath it.
		isDir := r.Op == changelog.OpMkdir || (found && e.St.Mode&unix.S_IFMT == unix.S_IFDIR) ||
			(!found && (r.Mode&unix.S_IFMT == unix.S_IFDIR || len(tx.Children(r.GFID)) > 0))
		switch ex := b.excluded(tx, r.Parent, r.Name, isDir); {
		case r.Op == changelog.OpRename || r.Op == changelog.OpExchange:
			ex2 := b.excluded(tx, r.Parent2, r.Name2, isDir)
			switch {
			case ex && ex2:
				b.stats.Excluded++
				return nil
			case r.Op == changelog.OpExchange && (ex || ex2):
				// One side in, one out: the reconciliation of both
				// directories (touched) makes the included one hold
				// what the master's does.
				b.stats.Excluded++
				return nil
			case ex2:
				// Moved out of what is replicated: removed on the slave.
				op.Type = pb.EntryOpType_ENTRY_OP_TYPE_UNLINK
				if isDir {
					op.Type = pb.EntryOpType_ENTRY_OP_TYPE_RMDIR
				}
				b.ops = append(b.ops, op)
				b.bestEffort[op] = true
				return nil
			}
			if ex && r.Op == changelog.OpRename && !isDir {
				// Moved in: a new name for the inode, never a move of
				// the slave's copy from elsewhere (another name of a
				// hardlinked file is in, and stays): a LINK, which the
				// slave makes from its description when it has the
				// inode nowhere.
				op.Pargfid, op.Name = r.Parent2.Bytes(), []byte(r.Name2)
				lr := *r
				lr.Op, lr.Parent, lr.Name = changelog.OpLink, r.Parent2, r.Name2
				r = &lr
			}
			// A directory moved in: the slave has no copy, and makes it
			// from the rename's description; or it still has one (kept
			// while excluded): moved, it is stale, and what changed in it
			// meanwhile was not journaled (a write that put the mtime
			// back too). Crawled whole, by content (see MovedIn). Or
			// both in: a move.
			if ex && isDir {
				b.movedIn = append(b.movedIn, r.GFID)
			}
		case ex:
			b.stats.Excluded++
			return nil
		}
	}
	switch r.Op {
	case changelog.OpExchange:
		// Both entries are where the record says or the slave parks the
		// one in the way; either way the reconciliation of both
		// directories puts them where the master has them now.
		op.Type = pb.EntryOpType_ENTRY_OP_TYPE_EXCHANGE
		op.Pargfid2, op.Name2 = r.Parent2.Bytes(), []byte(r.Name2)
		b.ops = append(b.ops, op)
		b.bestEffort[op] = true
		return nil
	case changelog.OpRename:
		op.Type = pb.EntryOpType_ENTRY_OP_TYPE_RENAME
		op.Pargfid2, op.Name2 = r.Parent2.Bytes(), []byte(r.Name2)
		if found {
			b.describe(op, &e.St, e.DirFD, e.Name, r.GFID)
		} else {
			// If the slave cannot move it, it goes at the batch's end
			// (not now: later records may move things out of it first).
			b.removeOnFail[op] = true
		}
		b.ops = append(b.ops, op)
		b.bestEffort[op] = true
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
		return fmt.Errorf("batch: entry op %s not handled", r.Op)
	}
	if !found {
		return b.goneEntry(r, op)
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
		b.stats.Skipped++ // a directory has no second name
		return nil
	}
	b.describe(op, &e.St, e.DirFD, e.Name, r.GFID)
	if op.Mode == 0 {
		b.stats.Skipped++ // a symlink that could not be read
		return nil
	}
	// No CheckCurrent: the slave's copy may have the new size and mtime
	// with old content (a metadata op of an earlier batch read the tree
	// after the write), and "current" would drop the data this batch's D
	// record must send (see post).
	b.ops = append(b.ops, op)
	b.bestEffort[op] = true
	return nil
}

// goneEntry makes the op of a changelog record whose entry is not on the
// master (gone since, or moved just now while the index lags the tree): a
// directory is still made, as the record describes it (later records may
// move things into it and out of it before it goes); a file or FIFO too
// (made empty here, its data follows with its D record; if it is really
// gone a later record removes it); a symlink whose record carries its
// target; a LINK, a name more for an inode the slave may have. Anything
// else is skipped.
func (b *Batch) goneEntry(r *changelog.Record, op *pb.EntryOp) error {
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
	default:
		b.stats.Skipped++
		return nil
	}
	b.ops = append(b.ops, op)
	b.bestEffort[op] = true
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
// its own while the batch builds the next one (reading the master's tree
// and index), so that the two sides work at once; its answer is handled
// when the next call is due, or at settleEntries. Calls stay in order: one
// is sent only once the previous one is answered.
func (b *Batch) flushEntries(ctx context.Context) error {
	if err := b.settleEntries(ctx); err != nil {
		return err
	}
	if len(b.ops) == 0 {
		return nil
	}
	if err := b.hook(ctx, BeforeEntryCall); err != nil {
		return err
	}
	// Every D record read so far follows its E record, which is in this
	// call or an earlier one: once this call is applied, their data can go.
	c := &entryCall{ops: b.ops, ready: b.pendingData, done: make(chan struct{})}
	b.ops, b.pendingData = nil, nil
	b.calls++
	b.sending(c.ops)
	req := &pb.EntryOpsRequest{SessionToken: b.cfg.Token, Ops: c.ops}
	go func() {
		defer close(c.done)
		c.resp, c.err = b.cfg.Client.EntryOps(ctx, req)
	}()
	b.call = c
	return nil
}

// settleEntries waits for the entry call on its way, if any, and takes
// in its answer (see decide).
func (b *Batch) settleEntries(ctx context.Context) (err error) {
	c := b.call
	if c == nil {
		return nil
	}
	<-c.done // the call honours ctx
	b.call = nil
	b.sending(nil)
	if c.err != nil {
		return fmt.Errorf("batch: entry ops: %w", c.err)
	}
	ops, ready, resp := c.ops, c.ready, c.resp
	b.prevAnswers, b.answers = b.answers, map[gfid.GFID]answer{}
	defer func() {
		if perr := b.post(ctx, ready, false); perr != nil && err == nil {
			err = perr
		}
		if rerr := b.reap(ctx, false); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if len(resp.GetResults()) != len(ops) {
		return fmt.Errorf("batch: slave answered %d results for %d entry ops", len(resp.GetResults()), len(ops))
	}
	for i, r := range resp.GetResults() {
		b.rep.answered(ops[i], r)
		b.alsoDirs(r)
		if b.cfg.Log.IsTrace() {
			b.cfg.Log.Trace("entry op", "op", describe(ops[i]), "parent", fmt.Sprintf("%x", ops[i].GetPargfid()),
				"to", fmt.Sprintf("%x/%q", ops[i].GetPargfid2(), ops[i].GetName2()), "status", r.GetStatus(), "error", r.GetError())
		}
		bestEffort, removeOnFail := b.bestEffort[ops[i]], b.removeOnFail[ops[i]]
		delete(b.bestEffort, ops[i])
		delete(b.removeOnFail, ops[i])
		b.apply(ops[i], r, decide(b.kind, ops[i], r, bestEffort, removeOnFail))
	}
	return nil
}

// apply does what decide said of op's answer r.
func (b *Batch) apply(op *pb.EntryOp, r *pb.OpResult, d decision) {
	if d.skip != "" {
		b.stats.Skipped++
		if !d.missing.IsZero() {
			b.missing[d.missing] = true
		}
		if d.removal != nil {
			b.removals = append(b.removals, d.removal)
		}
		if d.skip == skipReconciled || d.skip == skipDropped {
			b.cfg.Log.Debug("replayed op not applied", "op", describe(op), "why", d.skip, "error", r.GetError())
		}
		return
	}
	if d.notMade {
		b.notMade(op, r)
		return
	}
	if d.purgeReport {
		b.purgeReport(op, r)
	}
	g, _ := gfid.FromBytes(op.GetGfid())
	if d.current {
		a := b.answers[g]
		a.copy |= copyCurrent
		b.answers[g] = a
		if b.metaDone != nil {
			b.metaDone[g] = true
		}
		b.stats.FilesUnchanged++
	} else if d.absent {
		a := b.answers[g]
		a.copy |= copyAbsent
		b.answers[g] = a
	}
	if d.dataAt != nil {
		a := b.answers[g]
		a.at = *d.dataAt
		b.answers[g] = a
	}
	if !d.madeDir.IsZero() {
		b.made = append(b.made, d.madeDir)
	}
	if d.needMeta && (b.metaSet == nil || !b.metaSet[g]) {
		if b.metaSet != nil {
			b.metaSet[g] = true
		}
		b.meta = append(b.meta, g)
	}
	if d.tally {
		b.tally(func() string { return describe(op) }, r, &b.stats.EntryOps, &b.stats.EntryNoops)
	}
	if d.purged {
		b.stats.Purged++
	}
}

// alsoDirs takes in the directories the slave says an op changed or
// relied on beyond those it names (it found the entry elsewhere and moved
// or linked it from there): a changelog batch reconciles them with the
// ones its records name, a reconciliation in its next round. A crawl of
// the whole tree lists them anyway.
func (b *Batch) alsoDirs(r *pb.OpResult) {
	for _, raw := range r.GetAlsoDirs() {
		g, err := gfid.FromBytes(raw)
		if err != nil {
			continue
		}
		switch b.kind {
		case Reconcile:
			b.also[g] = true
		case Changelog:
			b.touched[g] = true
		}
	}
}

// notMade counts an entry op the slave answered SKIPPED: an entry it
// cannot hold (a device node on an unprivileged slave), left out there
// while replication goes on. The log warns of each such entry, naming its
// path on the master and why, once while the master runs (every crawl
// and every reconciliation of its directory asks the slave again), and
// tells of it again at debug level.
func (b *Batch) notMade(op *pb.EntryOp, r *pb.OpResult) {
	b.stats.NotMade++
	l := gfidx.Link{Name: string(op.GetName())}
	pg := op.GetPargfid()
	if op.GetType() == pb.EntryOpType_ENTRY_OP_TYPE_RENAME {
		l.Name, pg = string(op.GetName2()), op.GetPargfid2()
	}
	path := l.Name
	if g, err := gfid.FromBytes(pg); err == nil {
		l.Parent = g
		b.cfg.Tree.Idx.View(func(tx *gfidx.Tx) error {
			if lp, err := mtree.LinkPath(tx, l); err == nil {
				path = lp
			}
			return nil
		})
	}
	g, _ := gfid.FromBytes(op.GetGfid())
	level := hclog.Warn
	if _, warned := b.cfg.Shared.notMade.LoadOrStore(g, true); warned {
		level = hclog.Debug
	}
	b.cfg.Log.Log(level, "entry not made on the slave; replication goes on without it", "path", path, "op", describe(op), "reason", r.GetError())
}

// tally counts an op's result; what describes the op (only made when the
// result is told: fmt per op showed in profiles of a 100,000-file no-op).
func (b *Batch) tally(what func() string, r *pb.OpResult, applied, noops *int64) {
	switch r.GetStatus() {
	case pb.OpStatus_OP_STATUS_OK:
		*applied++
	case pb.OpStatus_OP_STATUS_NOOP:
		*noops++
	case pb.OpStatus_OP_STATUS_RESOLVED:
		*applied++
		b.stats.Conflicts++
		b.cfg.Log.Info("conflict resolved on the slave", "op", what())
	case pb.OpStatus_OP_STATUS_PARTIAL:
		*applied++
		b.stats.Partial = append(b.stats.Partial, what()+": "+r.GetError())
		b.cfg.Log.Warn("applied in part on the slave", "op", what(), "error", r.GetError())
	default:
		b.fail("%s: %s (%s)", what(), r.GetError(), strings.TrimPrefix(r.GetCode().String(), "ERROR_CODE_"))
	}
}

// purgeReport turns what a report-only PURGE found beyond the master's
// names into removals: every extra name, but a directory the master has
// elsewhere (removing it would lose its subtree, which the op that moves
// it keeps).
func (b *Batch) purgeReport(op *pb.EntryOp, r *pb.OpResult) {
	names, gs := r.GetExtraNames(), r.GetExtraGfids()
	if len(names) != len(gs) {
		b.fail("PURGE %x: the slave reported %d names and %d gfids", op.GetGfid(), len(names), len(gs))
		return
	}
	pg, _ := gfid.FromBytes(op.GetGfid())
	b.cfg.Tree.Idx.View(func(tx *gfidx.Tx) error {
		for i, n := range names {
			g, err := gfid.FromBytes(gs[i])
			if !b.cfg.DeleteExcluded && b.cfg.Rules.Len() > 0 {
				// The slave's copy of an entry the rules leave out is
				// not ours to remove (see Config.DeleteExcluded). Its
				// type, for dir/ patterns: the master's inode's, else a
				// directory if the index holds something beneath it.
				isDir := false
				if err == nil {
					if e, ferr := b.cfg.Tree.Find(tx, g); ferr == nil {
						unix.Close(e.DirFD)
						isDir = e.St.Mode&unix.S_IFMT == unix.S_IFDIR
					} else {
						isDir = len(tx.Children(g)) > 0
					}
				}
				if b.excluded(tx, pg, string(n), isDir) {
					continue
				}
			}
			if err == nil {
				if e, ferr := b.cfg.Tree.Find(tx, g); ferr == nil {
					unix.Close(e.DirFD)
					if e.St.Mode&unix.S_IFMT == unix.S_IFDIR && b.linksExcluded(tx, g, true) {
						// Moved out of what is replicated (a crawl
						// skips it there, so nothing would move it): it
						// goes from the slave, subtree and all.
						b.removals = append(b.removals, &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_RMDIR,
							Gfid: gs[i], Pargfid: op.GetGfid(), Name: n})
						continue
					}
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
			b.removals = append(b.removals, &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_UNLINK,
				Gfid: gs[i], Pargfid: op.GetGfid(), Name: n})
		}
		return nil
	})
}

// purge sends one PURGE per directory crawled, naming what the master's
// directory holds now, and then the removals the answers call for.
func (b *Batch) purge(ctx context.Context) error {
	names := 0
	for _, g := range b.purges {
		keep, err := b.keepNames(ctx, g)
		if errors.Is(err, mtree.ErrGone) {
			continue // the directory itself went; its removal is recorded
		}
		if err != nil {
			return err
		}
		b.ops = append(b.ops, &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_PURGE, Gfid: g.Bytes(), KeepNames: keep, ReportOnly: b.kind.live()})
		names += len(keep)
		if len(b.ops) >= opsPerCall || names >= namesPerCall {
			if err := b.flushEntries(ctx); err != nil {
				return err
			}
			names = 0
		}
	}
	// The removals come from the answers to report-only purges: all in.
	if err := b.flushEntries(ctx); err != nil {
		return err
	}
	if err := b.settleEntries(ctx); err != nil {
		return err
	}
	if err := b.hook(ctx, BeforeRemovals); err != nil {
		return err
	}
	b.ops = append(b.ops, b.removals...)
	b.removals = nil
	if err := b.flushEntries(ctx); err != nil {
		return err
	}
	return b.settleEntries(ctx)
}

// keepNames lists what directory g holds on the master now (a top-level
// reserved name aside); mtree.ErrGone when g is gone.
func (b *Batch) keepNames(ctx context.Context, g gfid.GFID) ([][]byte, error) {
	var keep [][]byte
	list := func() error {
		return b.cfg.Tree.Idx.View(func(tx *gfidx.Tx) error {
			fd, err := b.cfg.Tree.OpenDir(tx, g)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			list, err := beneath.ReadNames(fd)
			if errors.Is(err, unix.ENOENT) {
				return mtree.ErrGone // removed while listed
			}
			if err != nil {
				return err
			}
			keep = make([][]byte, 0, len(list))
			dropExcluded := b.cfg.DeleteExcluded && b.cfg.Rules.Len() > 0
			for _, n := range list {
				if g == gfid.Root && n == wire.ReservedName {
					continue
				}
				if dropExcluded {
					// Not kept: the slave's copy of an excluded entry goes.
					var st unix.Stat_t
					if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil &&
						b.excluded(tx, g, n, st.Mode&unix.S_IFMT == unix.S_IFDIR) {
						continue
					}
				}
				keep = append(keep, []byte(n))
			}
			return nil
		})
	}
	err := list()
	if errors.Is(err, mtree.ErrGone) && b.cfg.SyncRecorder != nil {
		// Perhaps moved just now: once the recorder has caught up, the
		// index says where.
		if err := b.syncRecorder(ctx); err != nil {
			return nil, err
		}
		err = list()
	}
	return keep, err
}
