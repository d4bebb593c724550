package master

import (
	"encoding/hex"
	"time"

	"github.com/georep/georep/internal/syncstatus"
	pb "github.com/georep/georep/proto/georep/v1"
)

// batchReport is what a processor counts only for the status tracker
// (the rest it reads from the processor's own state).
type batchReport struct {
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
func (p *processor) report(final bool) {
	st := p.m.cfg.Status
	if st == nil || (!final && time.Since(p.rep.last) < reportEvery) {
		return
	}
	p.rep.last = time.Now()
	deletes := int64(len(p.removals))
	for _, ops := range [][]*pb.EntryOp{p.ops, p.rep.inRPC} {
		for _, op := range ops {
			if isRemoval(op) {
				deletes++
			}
		}
	}
	if !p.rep.purging {
		deletes += int64(len(p.purges))
	}
	b := p.synced()
	b.EntryPending = int64(len(p.ops) + len(p.rep.inRPC))
	b.DataPending = int64(len(p.pendingData) + p.inflight + len(p.again) + len(p.whole) + len(p.lagged) + len(p.later))
	if p.call != nil {
		b.DataPending += int64(len(p.call.ready)) // posted once its entry call is answered
	}
	b.MetaPending = int64(max(p.rep.metaLeft, 0))
	b.DeletesPending = deletes
	st.BatchProgress(b)
}

// synced is what the batch has synced so far, its earlier passes included.
func (p *processor) synced() syncstatus.Batch {
	b := p.rep.base
	b.FilesSynced += p.stats.Files
	b.BytesSynced += p.stats.BytesSent
	b.Deletes += p.rep.deletes + p.stats.Purged
	b.FilesDone += p.stats.Files + p.stats.FilesUnchanged + p.stats.Vanished
	b.BytesDone += p.rep.bytesDone
	return b
}

// sending notes entry ops on their way to the slave (nil: answered).
func (p *processor) sending(ops []*pb.EntryOp) {
	p.rep.inRPC = ops
	p.report(ops == nil)
}

// answered counts what the slave's answer to an entry op did.
func (r *batchReport) answered(op *pb.EntryOp, res *pb.OpResult) {
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

// FailureCount is how many ops failed (the status tracker's FAILURES).
func (e *OpError) FailureCount() int { return len(e.Failures) }

// identity is the session's identity as the status tracker keeps it for
// checkpoints: the session id and both roots' volume ids.
func (m *Master) identity() syncstatus.Identity {
	return syncstatus.Identity{Session: m.sess.SessionID, MasterVolume: hex.EncodeToString(m.volumeID), SlaveVolume: m.sess.SlaveVolumeID}
}
