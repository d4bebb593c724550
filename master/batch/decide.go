package batch

import (
	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/syncer"
)

// decision is what the master makes of the slave's answer to one entry
// op: a pure function of the batch's kind, the op and the answer (decide),
// applied to the batch by settleEntries. Keeping it apart is what lets a
// table test every case without a slave.
type decision struct {
	// skip, when set, says why the op counts neither as applied nor as
	// failed (Stats.Skipped): the batch goes on without it.
	skip string
	// missing is a directory the slave lacks (a reconciliation makes it
	// by reconciling its parent first), or zero.
	missing gfid.GFID
	// removal is an op to send at the batch's end: the old name of a move
	// the slave could not make.
	removal *pb.EntryOp
	// notMade: the slave cannot hold the entry (SKIPPED).
	notMade bool
	// purgeReport: the op is a report-only PURGE whose extra names the
	// batch turns into removals.
	purgeReport bool
	// current: the slave's copy of the file is current (content and
	// metadata): nothing of it is sent. absent: the slave has no copy (a
	// CREATE made it anew), so its data may go inline.
	current, absent bool
	// dataAt is where the op leaves a file whose data follows (the
	// syncer opens it there), or nil.
	dataAt *syncer.Link
	// madeDir is a directory the slave made from the op's description
	// (it had the gfid nowhere): empty there, it is crawled whole.
	madeDir gfid.GFID
	// needMeta: a non-directory the slave made from the description of a
	// RENAME, LINK or EXCHANGE (it had the gfid nowhere): made with the
	// slave's times, it gets a metadata op in this batch. Nothing else
	// sent one: a symlink renamed during the crawl that missed it kept
	// the slave's creation time for good (the soak).
	needMeta bool
	// tally: the op counts as applied, a no-op, a conflict resolved, in
	// part, or failed (see Batch.tally).
	tally bool
	// purged: a PURGE that removed something.
	purged bool
}

// Why a replayed op is skipped.
const (
	skipNoDir       = "the slave lacks the directory; its parent is reconciled first"
	skipReconciled  = "replayed on a slave the reconciliation brought ahead; left to the reconciliation"
	skipDropped     = "best effort: its entry or directory is not on the slave"
	skipNeverHadDir = "a directory the slave never had holds nothing to purge"
)

// decide says what the answer r to op means in a batch of kind k.
// bestEffort: the op is a replayed record that may fail for want of its
// entry or directory; removeOnFail: if the slave cannot make it (a move of
// an entry gone from the master), its old name goes at the batch's end.
func decide(k Kind, op *pb.EntryOp, r *pb.OpResult, bestEffort, removeOnFail bool) decision {
	typ := op.GetType()
	failed := r.GetStatus() == pb.OpStatus_OP_STATUS_FAILED
	unknown := failed && r.GetCode() == pb.ErrorCode_ERROR_CODE_UNKNOWN_GFID
	if k == Reconcile && unknown && typ != pb.EntryOpType_ENTRY_OP_TYPE_PURGE {
		// The slave lacks the directory (its making was dropped, or its
		// parent was not reconciled yet).
		g, _ := gfid.FromBytes(op.GetPargfid())
		return decision{skip: skipNoDir, missing: g}
	}
	if bestEffort {
		switch {
		case failed && k == Changelog && !unknown:
			// Replayed on a slave that a reconciliation brought ahead of
			// this record (a directory already moved beneath its
			// destination, a name already taken): the batch's
			// reconciliation of the directories it names decides. What
			// truly cannot be applied there (no space, no permission)
			// fails that reconciliation.
			return decision{skip: skipReconciled}
		case unknown:
			d := decision{skip: skipDropped}
			if removeOnFail {
				d.removal = &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_UNLINK,
					Gfid: op.GetGfid(), Pargfid: op.GetPargfid(), Name: op.GetName()}
			}
			return d
		}
	}
	if r.GetStatus() == pb.OpStatus_OP_STATUS_SKIPPED {
		return decision{notMade: true}
	}
	var d decision
	if typ == pb.EntryOpType_ENTRY_OP_TYPE_PURGE {
		switch {
		case op.GetReportOnly() && !failed:
			d.purgeReport = true
		case unknown && k.live():
			d = decision{skip: skipNeverHadDir}
			if k == Reconcile {
				d.missing, _ = gfid.FromBytes(op.GetGfid())
			}
			return d
		}
	}
	switch {
	case r.GetCurrent():
		d.current = true
	case r.GetMade() && typ == pb.EntryOpType_ENTRY_OP_TYPE_CREATE:
		d.absent = true
	}
	if op.GetDataFollows() {
		pg, name := op.GetPargfid(), op.GetName()
		if typ == pb.EntryOpType_ENTRY_OP_TYPE_RENAME {
			pg, name = op.GetPargfid2(), op.GetName2()
		}
		parent, _ := gfid.FromBytes(pg)
		d.dataAt = &syncer.Link{Parent: parent, Name: string(name)}
	}
	if r.GetMade() && (typ == pb.EntryOpType_ENTRY_OP_TYPE_MKDIR || op.GetMode()&unix.S_IFMT == unix.S_IFDIR) {
		d.madeDir, _ = gfid.FromBytes(op.GetGfid())
	} else if r.GetMade() && (typ == pb.EntryOpType_ENTRY_OP_TYPE_RENAME || typ == pb.EntryOpType_ENTRY_OP_TYPE_LINK || typ == pb.EntryOpType_ENTRY_OP_TYPE_EXCHANGE) {
		d.needMeta = true
	}
	d.tally = true
	if typ == pb.EntryOpType_ENTRY_OP_TYPE_PURGE {
		// A purge is not an entry: it counts as "directories purged"
		// when it removed something, and in the entries' figures only
		// when it failed (every directory of a crawl has one: counted as
		// an entry "already there", they made the figures not add up).
		st := r.GetStatus()
		d.purged = st == pb.OpStatus_OP_STATUS_OK
		d.tally = st != pb.OpStatus_OP_STATUS_OK && st != pb.OpStatus_OP_STATUS_NOOP
	}
	return d
}
