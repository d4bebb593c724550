package batch

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/testenv"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/syncer"
)

// TestDecide: what the master makes of each answer, for each kind of
// batch, from a table: no slave, no tree.
func TestDecide(t *testing.T) {
	g, parent, p2 := testenv.NewGFID(t), testenv.NewGFID(t), testenv.NewGFID(t)
	op := func(typ pb.EntryOpType) *pb.EntryOp {
		return &pb.EntryOp{Type: typ, Gfid: g.Bytes(), Pargfid: parent.Bytes(), Name: []byte("n"),
			Pargfid2: p2.Bytes(), Name2: []byte("n2"), Mode: unix.S_IFREG | 0o644}
	}
	withData := func(o *pb.EntryOp) *pb.EntryOp { o.DataFollows = true; return o }
	withMode := func(o *pb.EntryOp, m uint32) *pb.EntryOp { o.Mode = m; return o }
	reportOnly := func(o *pb.EntryOp) *pb.EntryOp { o.ReportOnly = true; return o }
	ok := &pb.OpResult{Status: pb.OpStatus_OP_STATUS_OK}
	noop := &pb.OpResult{Status: pb.OpStatus_OP_STATUS_NOOP}
	unknown := &pb.OpResult{Status: pb.OpStatus_OP_STATUS_FAILED, Code: pb.ErrorCode_ERROR_CODE_UNKNOWN_GFID}
	io := &pb.OpResult{Status: pb.OpStatus_OP_STATUS_FAILED, Code: pb.ErrorCode_ERROR_CODE_IO}
	skipped := &pb.OpResult{Status: pb.OpStatus_OP_STATUS_SKIPPED}
	current := &pb.OpResult{Status: pb.OpStatus_OP_STATUS_NOOP, Current: true}
	made := &pb.OpResult{Status: pb.OpStatus_OP_STATUS_OK, Made: true}
	unlinkOld := &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_UNLINK, Gfid: g.Bytes(), Pargfid: parent.Bytes(), Name: []byte("n")}
	at := func(p gfid.GFID, n string) *syncer.Link { return &syncer.Link{Parent: p, Name: n} }

	for _, tc := range []struct {
		name                     string
		k                        Kind
		op                       *pb.EntryOp
		r                        *pb.OpResult
		bestEffort, removeOnFail bool
		want                     decision
	}{
		{"applied", OneShot, op(pb.EntryOpType_ENTRY_OP_TYPE_MKDIR), ok, false, false, decision{tally: true}},
		{"no-op", LiveCrawl, op(pb.EntryOpType_ENTRY_OP_TYPE_LINK), noop, false, false, decision{tally: true}},
		{"a crawl's failure is tallied (fails the batch)", OneShot, op(pb.EntryOpType_ENTRY_OP_TYPE_CREATE), io, false, false, decision{tally: true}},
		{"a one-shot's unknown directory fails it", OneShot, op(pb.EntryOpType_ENTRY_OP_TYPE_CREATE), unknown, false, false, decision{tally: true}},
		{"reconcile: the slave lacks the directory", Reconcile, op(pb.EntryOpType_ENTRY_OP_TYPE_MKDIR), unknown, false, false,
			decision{skip: skipNoDir, missing: parent}},
		{"reconcile: a PURGE of a directory the slave lacks", Reconcile, op(pb.EntryOpType_ENTRY_OP_TYPE_PURGE), unknown, false, false,
			decision{skip: skipNeverHadDir, missing: g}},
		{"live crawl: a PURGE of a directory the slave lacks", LiveCrawl, op(pb.EntryOpType_ENTRY_OP_TYPE_PURGE), unknown, false, false,
			decision{skip: skipNeverHadDir}},
		{"one-shot: a PURGE of a directory the slave lacks fails", OneShot, op(pb.EntryOpType_ENTRY_OP_TYPE_PURGE), unknown, false, false,
			decision{tally: true}},
		{"changelog: replayed op refused, left to the reconciliation", Changelog, op(pb.EntryOpType_ENTRY_OP_TYPE_RENAME), io, true, false,
			decision{skip: skipReconciled}},
		{"changelog: replayed move of an unknown entry", Changelog, op(pb.EntryOpType_ENTRY_OP_TYPE_RENAME), unknown, true, false,
			decision{skip: skipDropped}},
		{"changelog: move of a gone entry the slave cannot make: its old name goes", Changelog, op(pb.EntryOpType_ENTRY_OP_TYPE_RENAME), unknown, true, true,
			decision{skip: skipDropped, removal: unlinkOld}},
		{"changelog: a non-best-effort op's failure is tallied", Changelog, op(pb.EntryOpType_ENTRY_OP_TYPE_UNLINK), io, false, false,
			decision{tally: true}},
		{"skipped: not made", Changelog, op(pb.EntryOpType_ENTRY_OP_TYPE_MKNOD), skipped, true, false, decision{notMade: true}},
		{"skipped in a crawl", OneShot, op(pb.EntryOpType_ENTRY_OP_TYPE_MKNOD), skipped, false, false, decision{notMade: true}},
		{"report-only PURGE: not an entry already there", LiveCrawl, reportOnly(op(pb.EntryOpType_ENTRY_OP_TYPE_PURGE)), noop, false, false,
			decision{purgeReport: true}},
		{"PURGE that removed: a directory purged, not an entry applied", OneShot, op(pb.EntryOpType_ENTRY_OP_TYPE_PURGE), ok, false, false, decision{purged: true}},
		{"PURGE that failed is tallied", OneShot, op(pb.EntryOpType_ENTRY_OP_TYPE_PURGE), io, false, false, decision{tally: true}},
		{"current copy", OneShot, withData(op(pb.EntryOpType_ENTRY_OP_TYPE_CREATE)), current, false, false,
			decision{current: true, dataAt: at(parent, "n"), tally: true}},
		{"no copy: data may go inline", LiveCrawl, withData(op(pb.EntryOpType_ENTRY_OP_TYPE_CREATE)), made, false, false,
			decision{absent: true, dataAt: at(parent, "n"), tally: true}},
		{"a renamed file's data is opened at its new name", Changelog, withData(op(pb.EntryOpType_ENTRY_OP_TYPE_RENAME)), ok, true, false,
			decision{dataAt: at(p2, "n2"), tally: true}},
		{"a directory made from nothing is crawled whole", Changelog, withMode(op(pb.EntryOpType_ENTRY_OP_TYPE_RENAME), unix.S_IFDIR|0o755), made, true, false,
			decision{madeDir: g, tally: true}},
		{"MKDIR made", Reconcile, op(pb.EntryOpType_ENTRY_OP_TYPE_MKDIR), made, false, false, decision{madeDir: g, tally: true}},
		{"a symlink made from a RENAME's description gets its metadata", Changelog, withMode(op(pb.EntryOpType_ENTRY_OP_TYPE_RENAME), unix.S_IFLNK|0o777), made, true, false,
			decision{needMeta: true, tally: true}},
		{"a file made from a LINK's description gets its metadata", Changelog, withMode(op(pb.EntryOpType_ENTRY_OP_TYPE_LINK), unix.S_IFREG|0o644), made, true, false,
			decision{needMeta: true, tally: true}},
		{"a SYMLINK made by its own op: its M record says", Changelog, op(pb.EntryOpType_ENTRY_OP_TYPE_SYMLINK), made, true, false, decision{tally: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := decide(tc.k, tc.op, tc.r, tc.bestEffort, tc.removeOnFail)
			if !proto.Equal(got.removal, tc.want.removal) {
				t.Errorf("removal %v, want %v", got.removal, tc.want.removal)
			}
			g, w := got, tc.want
			g.removal, w.removal = nil, nil
			if !reflect.DeepEqual(g, w) {
				t.Errorf("decide(%s, %s, %v) =\n  %+v\nwant\n  %+v", tc.k, describe(tc.op), tc.r, got, tc.want)
			}
		})
	}
}

// TestHintsOfEntryOps: the file an entry op announces data for is hinted
// at the name the op leaves it at: a CREATE's name, a RENAME's new name.
func TestHintsOfEntryOps(t *testing.T) {
	var mu sync.Mutex
	got := map[gfid.GFID]syncer.Link{}
	syn := syncer.New(1, func(ctx context.Context, fs []*syncer.File) error {
		mu.Lock()
		defer mu.Unlock()
		for _, f := range fs {
			got[f.GFID] = f.At
			f.Status = pb.OpStatus_OP_STATUS_OK
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go syn.Run(ctx)
	created, renamed, from, to := testenv.NewGFID(t), testenv.NewGFID(t), testenv.NewGFID(t), testenv.NewGFID(t)
	ops := []*pb.EntryOp{
		{Type: pb.EntryOpType_ENTRY_OP_TYPE_CREATE, Gfid: created.Bytes(), Pargfid: from.Bytes(), Name: []byte("made"),
			Mode: unix.S_IFREG | 0o644, DataFollows: true},
		{Type: pb.EntryOpType_ENTRY_OP_TYPE_RENAME, Gfid: renamed.Bytes(), Pargfid: from.Bytes(), Name: []byte("old"),
			Pargfid2: to.Bytes(), Name2: []byte("new"), Mode: unix.S_IFREG | 0o644, DataFollows: true},
	}
	c := &entryCall{ops: ops, ready: []gfid.GFID{created, renamed}, done: make(chan struct{}),
		resp: &pb.EntryOpsResponse{Results: []*pb.OpResult{{Status: pb.OpStatus_OP_STATUS_OK}, {Status: pb.OpStatus_OP_STATUS_OK}}}}
	close(c.done)
	b := newBatch(Config{Syncer: syn}, OneShot, nil)
	b.call, b.answers = c, map[gfid.GFID]answer{}
	b.boxFiles, b.rounds = map[*syncer.PostBox[*syncer.File]][]*syncer.File{}, map[gfid.GFID]int{}
	if err := b.settleEntries(ctx); err != nil {
		t.Fatal(err)
	}
	for box := range b.boxFiles {
		<-box.Done()
	}
	mu.Lock()
	defer mu.Unlock()
	if want := (syncer.Link{Parent: from, Name: "made"}); got[created] != want {
		t.Errorf("hint of a created file: %v, want %v", got[created], want)
	}
	if want := (syncer.Link{Parent: to, Name: "new"}); got[renamed] != want {
		t.Errorf("hint of a renamed file: %v, want %v (where it was renamed to)", got[renamed], want)
	}
}

// TestCallOpsSlowStart: a batch's entry calls start at firstCallOps and
// double up to opsPerCall, so that data can start flowing before the crawl
// has found 4,096 entries.
func TestCallOpsSlowStart(t *testing.T) {
	var b Batch
	var got []int
	for range 7 {
		got = append(got, b.callOps())
		b.calls++
	}
	want := []int{256, 512, 1024, 2048, 4096, 4096, 4096}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("entry call sizes %v, want %v", got, want)
	}
	b.calls = 1000
	if n := b.callOps(); n != opsPerCall {
		t.Errorf("after 1000 calls: %d ops a call, want %d", n, opsPerCall)
	}
}
