package batch

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/mtree"
	"github.com/georep/georep/internal/xattrs"
	pb "github.com/georep/georep/proto/georep/v1"
)

// syncMeta sends the metadata of every M gfid, read from the master now.
func (b *Batch) syncMeta(ctx context.Context) error {
	var ops []*pb.MetaOp
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		resp, err := b.cfg.Client.MetaOps(ctx, &pb.MetaOpsRequest{SessionToken: b.cfg.Token, Ops: ops})
		if err != nil {
			return fmt.Errorf("batch: metadata ops: %w", err)
		}
		if len(resp.GetResults()) != len(ops) {
			return fmt.Errorf("batch: slave answered %d results for %d metadata ops", len(resp.GetResults()), len(ops))
		}
		for i, r := range resp.GetResults() {
			g, _ := gfid.FromBytes(ops[i].GetGfid())
			if b.cfg.Log.IsTrace() {
				b.cfg.Log.Trace("metadata", "gfid", g, "mode", fmt.Sprintf("%o", ops[i].GetMode()), "mtime", ops[i].GetMtimeNs(), "status", r.GetStatus(), "error", r.GetError())
			}
			if r.GetCode() == pb.ErrorCode_ERROR_CODE_UNKNOWN_GFID && b.kind.live() {
				b.stats.Skipped++ // as for data (see account)
				b.reconcileWhereIs(g)
				continue
			}
			if r.GetStatus() == pb.OpStatus_OP_STATUS_SKIPPED {
				// An entry the slave did not make (its entry op was
				// counted and told of: see notMade).
				b.stats.Skipped++
				b.cfg.Log.Debug("metadata not applied: the slave did not make the entry", "gfid", g, "reason", r.GetError())
				continue
			}
			b.tally(func() string { return "metadata of " + g.String() }, r, &b.stats.MetaOps, &b.stats.MetaNoops)
		}
		b.rep.metaLeft -= len(ops)
		b.report(false)
		ops = ops[:0]
		return nil
	}
	var gone []gfid.GFID
	add := func(gs []gfid.GFID, last bool) error {
		for _, g := range gs {
			if b.metaDone[g] {
				continue // applied with the file's data
			}
			op, err := b.metaOp(g)
			if errors.Is(err, errExcluded) {
				b.stats.Excluded++
				continue
			}
			if errors.Is(err, mtree.ErrGone) {
				if !last && b.cfg.SyncRecorder != nil {
					gone = append(gone, g)
				} else {
					// Gone, or moved again since the recorder caught up
					// (a rename of an ancestor carries no metadata):
					// where the index has it now is reconciled.
					b.stats.Skipped++
					b.reconcileWhereIs(g)
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
	b.rep.metaLeft = len(b.meta) + len(b.needMeta)
	if err := add(append(b.meta, b.needMeta...), false); err != nil {
		return err
	}
	if len(gone) > 0 {
		// Not found where the index says: perhaps moved just now, and the
		// index lags the tree a little. Once the recorder has caught up,
		// only then is it gone.
		if err := b.syncRecorder(ctx); err != nil {
			return err
		}
		if err := add(gone, true); err != nil {
			return err
		}
	}
	return flush()
}

// reconcileWhereIs has a changelog batch's reconciliation list the
// directories that hold g on the master now: the slave did not find g for
// its data or metadata, or the master did not find it where the index
// said even once the recorder had caught up (moved again meanwhile); if no
// later record names it, the listing of its directory makes it, or finds
// its copy not current, metadata and all. Skipped silently, a change of
// times was lost for good when nothing touched the file again. An entry
// the index no longer has (removed) lists nothing.
func (b *Batch) reconcileWhereIs(g gfid.GFID) {
	if b.touched == nil {
		return // a crawl lists every directory anyway
	}
	b.cfg.Tree.Idx.View(func(tx *gfidx.Tx) error {
		for _, l := range tx.Links(g) {
			b.touched[l.Parent] = true
		}
		return nil
	})
}

// metaOp reads g's metadata on the master.
func (b *Batch) metaOp(g gfid.GFID) (*pb.MetaOp, error) {
	var op *pb.MetaOp
	err := b.cfg.Tree.Idx.View(func(tx *gfidx.Tx) error {
		var st unix.Stat_t
		var list func(keep func(string) bool) ([]*pb.Xattr, error)
		if g == gfid.Root {
			if err := unix.Fstat(b.cfg.Tree.Root.FD(), &st); err != nil {
				return fmt.Errorf("batch: stat root: %w", err)
			}
			list = func(keep func(string) bool) ([]*pb.Xattr, error) {
				return mtree.XattrsPB(xattrs.ListFD(b.cfg.Tree.Root.FD(), keep))
			}
		} else {
			e, err := b.cfg.Tree.Find(tx, g)
			if err != nil {
				return err
			}
			defer unix.Close(e.DirFD)
			st = e.St
			if b.linksExcluded(tx, g, st.Mode&unix.S_IFMT == unix.S_IFDIR) {
				return errExcluded
			}
			list = func(keep func(string) bool) ([]*pb.Xattr, error) {
				return mtree.XattrsPB(xattrs.ListAt(e.DirFD, e.Name, keep))
			}
		}
		op = &pb.MetaOp{
			Gfid: g.Bytes(), Mode: st.Mode, Uid: st.Uid, Gid: st.Gid,
			AtimeNs: st.Atim.Nano(), MtimeNs: st.Mtim.Nano(),
		}
		keep := b.cfg.Tree.Replicated()
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			return nil // no ACLs, and user.* xattrs are not allowed
		case unix.S_IFIFO, unix.S_IFSOCK, unix.S_IFCHR, unix.S_IFBLK:
			// Their ACLs only (user.* xattrs are not allowed on them): a
			// FIFO made on the slave in a directory with a default ACL
			// inherits what that directory has then (the soak).
			keep = xattrs.IsACL
		}
		xs, err := list(keep)
		if errors.Is(err, unix.ENOENT) {
			// Removed or renamed between its lookup and the listing (the
			// soak): gone from where it was found, as if not found.
			return mtree.ErrGone
		}
		if err != nil {
			return fmt.Errorf("batch: xattrs of %s: %w", g, err)
		}
		op.SyncXattrs = true
		op.Xattrs = xs
		return nil
	})
	return op, err
}
