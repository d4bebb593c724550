package batch

import (
	"context"
	"fmt"
	"strings"

	"github.com/georep/georep/internal/gfid"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/syncer"
)

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
func (b *Batch) answered(g gfid.GFID) answer {
	a, prev := b.answers[g], b.prevAnswers[g]
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
func (b *Batch) post(ctx context.Context, gs []gfid.GFID, noDelta bool) error {
	for _, g := range gs {
		a := b.answered(g)
		if a.copy&copyCurrent != 0 {
			continue
		}
		for b.inflight >= maxInflight {
			if err := b.reapOne(ctx); err != nil {
				return err
			}
		}
		// A changelog's data record says the content changed: no quick
		// check (a metadata op of an earlier batch, read from the tree as
		// it was then, may have given the slave's old copy the new mtime).
		// A copy that may have the content already (it is not known
		// to be absent) is asked about before the data goes (no inline
		// data), unless the quick check is off anyway.
		// So does a crawl's of a file changed since the last sync (see
		// CrawlOptions).
		f := &syncer.File{GFID: g, At: a.at, NoDelta: noDelta, NoQuickCheck: !b.kind.crawl() || b.changed[g],
			NoInline: b.kind.crawl() && a.copy&copyAbsent == 0}
		box := b.cfg.Syncer.Add(f)
		b.boxFiles[box] = append(b.boxFiles[box], f)
		b.inflight++
	}
	return nil
}

// reapOne waits until some box in flight is done and accounts for it.
func (b *Batch) reapOne(ctx context.Context) error {
	if err := b.reap(ctx, false); err != nil || b.inflight < maxInflight {
		return err
	}
	for box := range b.boxFiles {
		select {
		case <-box.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
		break
	}
	return b.reap(ctx, false)
}

// reap accounts for the boxes that are done (waiting for all of them when
// block is set).
func (b *Batch) reap(ctx context.Context, block bool) error {
	for box, files := range b.boxFiles {
		if block {
			if err := box.Wait(ctx); err != nil {
				return fmt.Errorf("batch: data: %w", err)
			}
		} else {
			select {
			case <-box.Done():
				if err := box.Wait(ctx); err != nil {
					return fmt.Errorf("batch: data: %w", err)
				}
			default:
				continue
			}
		}
		delete(b.boxFiles, box)
		b.inflight -= len(files)
		b.account(files)
		b.report(false)
	}
	return nil
}

// drain waits for the entry call and every box in flight (their outcome
// no longer matters).
func (b *Batch) drain() {
	if b.call != nil {
		<-b.call.done
		b.call = nil
	}
	for box := range b.boxFiles {
		<-box.Done()
	}
	b.boxFiles = map[*syncer.PostBox[*syncer.File]][]*syncer.File{}
	b.inflight = 0
}

// account records the outcome of shipped files: a file that changed while
// read goes again (up to maxDataRounds); one the slave built with the wrong
// hash goes again once, whole, then counts as a failure (seed 001's
// HASH_MISMATCH class).
func (b *Batch) account(files []*syncer.File) {
	for _, f := range files {
		if b.cfg.Log.IsTrace() {
			b.cfg.Log.Trace("data", "gfid", f.GFID, "status", f.Status, "code", f.Code, "vanished", f.Vanished, "changed", f.Changed, "error", f.Err)
		}
		b.stats.BytesSent += f.Sent
		b.stats.BytesMatched += f.Matched
		if f.Delta {
			b.stats.Deltas++
		}
		switch {
		case f.Vanished && b.cfg.SyncRecorder != nil && b.rounds[f.GFID] == 0:
			// Perhaps moved just now (the index lags the tree a little):
			// once more after the recorder has caught ub.
			b.rounds[f.GFID]++
			b.lagged = append(b.lagged, f.GFID)
			continue
		case f.Vanished:
			// Gone, or moved again since the recorder caught up: where
			// the index has it now is reconciled.
			b.stats.Vanished++
			b.reconcileWhereIs(f.GFID)
			continue
		case f.Code == pb.ErrorCode_ERROR_CODE_UNKNOWN_GFID && b.kind.live() && b.rounds[f.GFID] == 0 && !b.entriesDone:
			// Not where the slave looked: an entry op of this batch moved
			// it while its data was on the way. Send it again once all of
			// the batch's entry ops are applied.
			b.rounds[f.GFID]++
			b.later = append(b.later, f.GFID)
			continue
		case f.Code == pb.ErrorCode_ERROR_CODE_UNKNOWN_GFID && b.kind.live():
			// Not on the slave at all: its entry moved on the master after
			// this batch's records (skipped here), and the record that
			// moved it creates it with its data; and its directory is
			// reconciled after the batch, in case no record does.
			b.stats.Skipped++
			b.reconcileWhereIs(f.GFID)
			continue
		case f.Code == pb.ErrorCode_ERROR_CODE_HASH_MISMATCH && !f.NoDelta:
			b.cfg.Log.Warn("file built on the slave does not match the master's hash; sending it again whole", "gfid", f.GFID, "error", f.Err)
			b.stats.HashRetries++
			b.whole = append(b.whole, f.GFID)
			continue
		case f.Code == pb.ErrorCode_ERROR_CODE_HASH_MISMATCH:
			b.cfg.Log.Error("file built on the slave does not match the master's hash, even sent whole", "gfid", f.GFID, "error", f.Err)
			b.fail("data of %s: %v (HASH_MISMATCH)", f.GFID, f.Err)
			continue
		case f.Changed:
			b.rounds[f.GFID]++
			if b.rounds[f.GFID] >= maxDataRounds && b.kind.live() {
				// Still being written: its next write is recorded and
				// sends it again; retrying the whole batch would not helb.
				b.stats.Vanished++
				b.cfg.Log.Debug("file keeps changing while read; its next change sends it", "gfid", f.GFID)
			} else if b.rounds[f.GFID] >= maxDataRounds {
				b.fail("data of %s: kept changing while being read (%d tries)", f.GFID, b.rounds[f.GFID])
			} else if f.NoDelta {
				b.whole = append(b.whole, f.GFID)
			} else {
				b.again = append(b.again, f.GFID)
			}
			continue
		case f.Status == pb.OpStatus_OP_STATUS_NOOP:
			b.stats.FilesUnchanged++
		case f.OK():
			b.stats.Files++
		case f.Status == pb.OpStatus_OP_STATUS_PARTIAL:
			b.stats.Files++
			b.stats.Partial = append(b.stats.Partial, fmt.Sprintf("data of %s: %v", f.GFID, f.Err))
		default:
			b.fail("data of %s: %v (%s)", f.GFID, f.Err, strings.TrimPrefix(f.Code.String(), "ERROR_CODE_"))
			continue
		}
		b.rep.bytesDone += f.Size
		if f.MetaDone {
			if b.metaDone != nil {
				b.metaDone[f.GFID] = true
			}
		} else if b.metaSet == nil || !b.metaSet[f.GFID] {
			// The header could not carry the file's metadata (its xattrs
			// were unreadable, or the file could not be opened).
			b.needMeta = append(b.needMeta, f.GFID)
		}
	}
}

// syncData waits for the files in flight and sends again those that need
// it, until none does.
func (b *Batch) syncData(ctx context.Context) error {
	for {
		if err := b.reap(ctx, true); err != nil {
			return err
		}
		if len(b.again) == 0 && len(b.whole) == 0 && len(b.lagged) == 0 {
			return nil
		}
		if len(b.lagged) > 0 {
			if err := b.syncRecorder(ctx); err != nil {
				return err
			}
			b.again = append(b.again, b.lagged...)
			b.lagged = nil
		}
		again, whole := b.again, b.whole
		b.again, b.whole = nil, nil
		b.answers, b.prevAnswers = nil, nil
		if err := b.post(ctx, again, false); err != nil {
			return err
		}
		if err := b.post(ctx, whole, true); err != nil {
			return err
		}
	}
}
