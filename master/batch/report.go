package batch

import (
	"time"

	"github.com/georep/georep/internal/syncstatus"
	pb "github.com/georep/georep/proto/georep/v1"
)

// report is what a batch counts only for the status tracker (the rest
// it reads from the batch's own state).
type report struct {
	last      time.Time
	inRPC     []*pb.EntryOp // entry ops sent and not answered yet
	metaLeft  int           // metadata ops still to send (syncMeta)
	bytesDone int64         // sizes of files synced or found current
	deletes   int64         // UNLINK and RMDIR ops applied
	purging   bool          // the batch's purges are queued as ops
	// base: what the batch's earlier passes synced (a changelog batch's
	// replay, before its reconciliation rounds).
	base syncstatus.Batch
}

// reportEvery bounds how often a processor reports while it works: the
// figures are for people and scrapes, not worth a lock per file.
const reportEvery = 50 * time.Millisecond

// report tells the status tracker where the batch is (at most every
// reportEvery, unless final).
func (b *Batch) report(final bool) {
	st := b.cfg.Status
	if st == nil || (!final && time.Since(b.rep.last) < reportEvery) {
		return
	}
	b.rep.last = time.Now()
	deletes := int64(len(b.removals))
	for _, ops := range [][]*pb.EntryOp{b.ops, b.rep.inRPC} {
		for _, op := range ops {
			if isRemoval(op) {
				deletes++
			}
		}
	}
	if !b.rep.purging {
		deletes += int64(len(b.purges))
	}
	s := b.synced()
	s.EntryPending = int64(len(b.ops) + len(b.rep.inRPC))
	s.DataPending = int64(len(b.pendingData) + b.inflight + len(b.again) + len(b.whole) + len(b.lagged) + len(b.later))
	if b.call != nil {
		s.DataPending += int64(len(b.call.ready)) // posted once its entry call is answered
	}
	s.MetaPending = int64(max(b.rep.metaLeft, 0))
	s.DeletesPending = deletes
	st.BatchProgress(s)
}

// synced is what the batch has synced so far, its earlier passes included.
func (b *Batch) synced() syncstatus.Batch {
	s := b.rep.base
	s.FilesSynced += b.stats.Files
	s.BytesSynced += b.stats.BytesSent
	s.Deletes += b.rep.deletes + b.stats.Purged
	s.FilesDone += b.stats.Files + b.stats.FilesUnchanged + b.stats.Vanished
	s.BytesDone += b.rep.bytesDone
	return s
}

// sending notes entry ops on their way to the slave (nil: answered).
func (b *Batch) sending(ops []*pb.EntryOp) {
	b.rep.inRPC = ops
	b.report(ops == nil)
}

// answered counts what the slave's answer to an entry op did.
func (r *report) answered(op *pb.EntryOp, res *pb.OpResult) {
	if res.GetCurrent() {
		r.bytesDone += op.GetSize()
	}
	if res.GetStatus() == pb.OpStatus_OP_STATUS_OK && (op.GetType() == pb.EntryOpType_ENTRY_OP_TYPE_UNLINK || op.GetType() == pb.EntryOpType_ENTRY_OP_TYPE_RMDIR) {
		r.deletes++
	}
}

func isRemoval(op *pb.EntryOp) bool {
	switch op.GetType() {
	case pb.EntryOpType_ENTRY_OP_TYPE_UNLINK, pb.EntryOpType_ENTRY_OP_TYPE_RMDIR, pb.EntryOpType_ENTRY_OP_TYPE_PURGE:
		return true
	}
	return false
}
