package slave_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/wire"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/slave"
	"github.com/georep/georep/syncer/delta"
)

// fuzzTree is the fixture FuzzEntryOp runs against: a few known gfids, a
// symlink to the outside planted in the tree, and a directory the index
// believes in whose path is now a symlink to the outside.
type fuzzTree struct {
	f     *fixture
	gfids []gfid.GFID // selectable with a 1-byte gfid input
	types map[string]uint32
	rig   []*pb.EntryOp
	E     gfid.GFID
}

func newFuzzTree(tb testing.TB) *fuzzTree {
	f := newFixture(tb)
	ft := &fuzzTree{f: f}
	D, S, F, L, H, E, P := newGFID(tb), newGFID(tb), newGFID(tb), newGFID(tb), newGFID(tb), newGFID(tb), newGFID(tb)
	ft.E = E
	ft.gfids = []gfid.GFID{gfid.Root, D, S, F, L, H, E, P, {15: 2}, {15: 3}, newGFID(tb)}
	ft.types = map[string]uint32{}
	for g, typ := range map[gfid.GFID]uint32{gfid.Root: unix.S_IFDIR, D: unix.S_IFDIR, S: unix.S_IFDIR, E: unix.S_IFDIR,
		F: unix.S_IFREG, H: unix.S_IFREG, L: unix.S_IFLNK, P: unix.S_IFIFO} {
		ft.types[string(g[:])] = typ
	}
	ft.rig = []*pb.EntryOp{
		opMkdir(D, gfid.Root, "d"),
		opMkdir(S, D, "s"),
		opCreate(F, gfid.Root, "f"),
		opSymlink(L, D, "l", "../../outside"),
		opCreate(H, D, "h"),
		opLink(H, S, "h2"),
		opMknod(P, S, "p", unix.S_IFIFO|0o644, 0),
	}
	f.entry(ft.rig...)
	// E: the index says "e", the disk says symlink to the outside, and the
	// outside carries E's gfid.
	f.ok(opMkdir(E, gfid.Root, "e"))
	if err := os.Rename(f.path("e"), f.path("e.real")); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Lsetxattr(f.outside, gfidAttr, E[:], 0); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Lsetxattr(filepath.Join(f.outside, "sub"), gfidAttr, S[:], 0); err != nil {
		tb.Fatal(err)
	}
	ft.replant(tb)
	f.outsideSnap = snapshot(tb, f.outside)
	return ft
}

// replant puts the symlinks to the outside back where ops may have
// removed them.
func (ft *fuzzTree) replant(tb testing.TB) {
	for name, target := range map[string]string{"e": ft.f.outside, "trap": "../outside"} {
		p := ft.f.path(name)
		if got, err := os.Readlink(p); err == nil && got == target {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			tb.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			tb.Fatal(err)
		}
	}
}

func (ft *fuzzTree) pick(b []byte) []byte {
	if len(b) == 1 {
		return ft.gfids[int(b[0])%len(ft.gfids)].Bytes()
	}
	return b
}

func FuzzEntryOp(f *testing.F) {
	long := strings.Repeat("n", 255)
	seeds := []struct {
		typ                               uint8
		g, par, name, par2, name2, target string
		mode                              uint32
	}{
		{1, "\x0a", "\x00", "x", "", "", "", unix.S_IFREG | 0o644},
		{1, "\x0a", "\x00", "..", "", "", "", 0},
		{1, "\x0a", "\x00", "/", "", "", "", 0},
		{1, "\x0a", "\x00", "../outside/x", "", "", "", 0},
		{2, "\x0a", "\x06", "x", "", "", "", unix.S_IFDIR | 0o755},
		{2, "\x0a", "\x02", "x", "", "", "", unix.S_IFDIR | 0o755},
		{1, "\x0a", "\x00", "a\x00b", "", "", "", 0},
		{1, "\x0a", "\x00", long, "", "", "", 0},
		{1, "\x0a", "\x00", long + "n", "", "", "", 0},
		{1, "\x0a", "\x00", ".georep", "", "", "", 0},
		{2, "\x0a", "\x09", "x", "", "", "", 0},
		{3, "\x0a", "\x01", "dev", "", "", "", unix.S_IFCHR | 0o600},
		{3, "\x0a", "\x01", "fifo", "", "", "", unix.S_IFIFO | 0o600},
		{4, "\x0a", "\x01", "sl", "", "", "/etc/passwd", 0},
		{4, "\x0a", "\x01", "sl", "", "", "a\x00b", 0},
		{5, "\x03", "\x06", "lnk", "", "", "", 0},
		{5, "\x05", "\x00", "trap", "", "", "", 0},
		{6, "\x01", "\x00", "d", "\x06", "moved", "", 0},
		{6, "\x03", "\x00", "f", "\x00", "trap", "", 0},
		{6, "\x03", "\x00", "f", "\x00", "..", "", 0},
		{6, "\x01", "\x00", "d", "\x02", "into-self", "", 0},
		{7, "\x03", "\x00", "f", "", "", "", 0},
		{7, "\x00", "\x00", "trap", "", "", "", 0},
		{8, "\x01", "\x00", "d", "", "", "", 0},
		{8, "\x06", "\x00", "e", "", "", "", 0},
		{9, "\x06", "", "", "", "", "", 0},
		{9, "\x00", "", "d", "", "f", "", 0},
		{9, "\x01", "", "s", "", "", "", 0},
		{0, "", "", "", "", "", "", 0},
		{200, "0123456789abcdef", "0123456789abcde", "x", "", "", "", 0},
	}
	for _, s := range seeds {
		f.Add(s.typ, []byte(s.g), []byte(s.par), []byte(s.name), []byte(s.par2), []byte(s.name2), []byte(s.target), s.mode)
	}
	f.Fuzz(func(t *testing.T, typ uint8, g, par, name, par2, name2, target []byte, mode uint32) {
		// A fresh tree per input, so that a failure reproduces from its
		// input alone.
		ft := newFuzzTree(t)
		fx := ft.f
		op := &pb.EntryOp{
			Type:     pb.EntryOpType(typ % 11),
			Gfid:     ft.pick(g),
			Pargfid:  ft.pick(par),
			Name:     name,
			Pargfid2: ft.pick(par2),
			Name2:    name2,
			Mode:     mode,
			Rdev:     uint64(mode >> 16),
			Target:   target,
		}
		if op.Type == pb.EntryOpType_ENTRY_OP_TYPE_PURGE {
			op.KeepNames = [][]byte{name, name2, []byte("d"), []byte("f")}
		}
		first := fx.entry(op)[0]
		fx.checkOutside()
		before := snapshot(t, fx.root)
		replay := fx.entry(op)[0]
		fx.checkOutside()
		for i, r := range []*pb.OpResult{first, replay} {
			if r.GetStatus() < stOK || r.GetStatus() > stFailed {
				t.Fatalf("result %d: status %v", i, r.GetStatus())
			}
			if (r.GetStatus() == stFailed || r.GetStatus() == stPartial) != (r.GetError() != "") {
				t.Fatalf("result %d: %v with error %q", i, r.GetStatus(), r.GetError())
			}
		}
		if !exists(filepath.Join(fx.root, wire.ReservedName, "limbo")) {
			t.Fatal("the slave's limbo is gone")
		}
		// A replay is a NOOP and changes nothing...
		diff := diffSnap(before, snapshot(t, fx.root))
		if diff == "" && (first.GetStatus() == stFailed || replay.GetStatus() == stNoop) {
			return
		}
		t.Fatalf("replaying %v (first %v %q, replay %v %q) is not a NOOP; changes:\n%s",
			op, first.GetStatus(), first.GetError(), replay.GetStatus(), replay.GetError(), diff)
	})
}

// checkResult fails t when r breaks the result invariants: a known status,
// and an error text exactly with FAILED and PARTIAL.
func checkResult(t *testing.T, what string, r *pb.OpResult) {
	t.Helper()
	if r.GetStatus() < stOK || r.GetStatus() > stFailed {
		t.Fatalf("%s: status %v", what, r.GetStatus())
	}
	if (r.GetStatus() == stFailed || r.GetStatus() == stPartial) != (r.GetError() != "") {
		t.Fatalf("%s: %v with error %q", what, r.GetStatus(), r.GetError())
	}
}

// FuzzMetaOp sends one metadata op, twice, against the fuzz tree (with its
// symlinks to the outside and the gfids the outside carries): nothing
// outside the root changes, and the replay changes nothing.
func FuzzMetaOp(f *testing.F) {
	seeds := []struct {
		g              string
		mode, uid, gid uint32
		atime, mtime   int64
		sync           bool
		xname, xval    string
	}{
		{"\x03", unix.S_IFREG | 0o644, 0, 0, 1e9, 2e9, false, "", ""},
		{"\x03", unix.S_IFREG | 0o6755, 1234, 5678, 1e9, 2e9, true, "user.k", "v"},
		{"\x01", unix.S_IFDIR | 0o1777, 0, 0, 1, 1, true, "trusted.k", "\x00"},
		{"\x06", unix.S_IFDIR | 0o755, 4321, 4321, 5, 5, false, "", ""}, // E: its path is a symlink to the outside
		{"\x02", unix.S_IFDIR | 0o700, 0, 0, 5, 5, true, "user.georep.gfid", "0123456789abcdef"},
		{"\x04", unix.S_IFLNK | 0o777, 7, 7, 5, 5, false, "", ""},
		{"\x07", unix.S_IFIFO | 0o600, 0, 0, 5, 5, true, "user.x", "y"},
		{"\x00", unix.S_IFDIR | 0o755, 0, 0, 5, 5, false, "", ""},
		{"\x08", unix.S_IFDIR | 0o755, 0, 0, 5, 5, false, "", ""}, // reserved
		{"\x0a", unix.S_IFREG | 0o644, 0, 0, 5, 5, false, "", ""}, // unknown
		{"\x03", 0o644, 0, 0, 5, 5, false, "", ""},
		{"\x03", unix.S_IFREG | 0o644, 0, 0, -1, -1 << 62, false, "", ""},
		{"\x03", unix.S_IFREG | 0o644, 0, 0, 5, 5, true, "user.a\x00b", "v"},
		{"0123456789abcde", unix.S_IFREG | 0o644, 0, 0, 5, 5, false, "", ""},
	}
	for _, s := range seeds {
		f.Add([]byte(s.g), s.mode, s.uid, s.gid, s.atime, s.mtime, s.sync, []byte(s.xname), []byte(s.xval))
	}
	f.Fuzz(func(t *testing.T, g []byte, mode, uid, gid uint32, atime, mtime int64, sync bool, xname, xval []byte) {
		ft := newFuzzTree(t)
		fx := ft.f
		op := &pb.MetaOp{Gfid: ft.pick(g), Mode: mode, Uid: uid, Gid: gid, AtimeNs: atime, MtimeNs: mtime, SyncXattrs: sync}
		if len(xname) > 0 {
			op.Xattrs = []*pb.Xattr{{Name: xname, Value: xval}}
		}
		first := fx.meta(op)[0]
		checkResult(t, "first", first)
		fx.checkOutside()
		before := snapshot(t, fx.root)
		replay := fx.meta(op)[0]
		checkResult(t, "replay", replay)
		fx.checkOutside()
		if !exists(filepath.Join(fx.root, wire.ReservedName, "limbo")) {
			t.Fatal("the slave's limbo is gone")
		}
		// A PARTIAL op (an owner or a time the slave could not apply)
		// is tried again on a replay; anything else is a NOOP.
		if diff := diffSnap(before, snapshot(t, fx.root)); diff != "" && first.GetStatus() != stPartial {
			t.Fatalf("replaying %v (first %v %q, replay %v %q) changed:\n%s",
				op, first.GetStatus(), first.GetError(), replay.GetStatus(), replay.GetError(), diff)
		}
	})
}

// FuzzDataHeader drives one file through a data stream with a fuzzed
// header and chunk against the fuzz tree: the stream answers every file
// (or ends with a clear error), nothing outside the root changes, no
// staging file is left behind, and the slave serves on.
func FuzzDataHeader(f *testing.F) {
	seeds := []struct {
		g              string
		size           int64
		mode, uid, gid uint32
		mtime, off     int64
		data           string
		abort, sync    bool
		xname          string
	}{
		{"\x03", 4, unix.S_IFREG | 0o644, 0, 0, 1e9, 0, "data", false, false, ""},
		{"\x03", 4, unix.S_IFREG | 0o4755, 1, 2, 1e9, 0, "data", false, true, "user.k"},
		{"\x05", 2, unix.S_IFREG | 0o644, 0, 0, 1e9, 0, "hh", false, false, ""}, // hardlinked
		{"\x03", 4, unix.S_IFREG | 0o644, 0, 0, 1e9, 2, "data", false, false, ""},
		{"\x03", 4, unix.S_IFREG | 0o644, 0, 0, 1e9, -1, "d", false, false, ""},
		{"\x03", 4, unix.S_IFREG | 0o644, 0, 0, 1e9, 0, "data", true, false, ""},
		{"\x03", -1, unix.S_IFREG | 0o644, 0, 0, 1e9, 0, "", false, false, ""},
		{"\x03", 1 << 62, unix.S_IFREG | 0o644, 0, 0, 1e9, 1 << 62, "x", false, false, ""},
		{"\x01", 4, unix.S_IFREG | 0o644, 0, 0, 1e9, 0, "data", false, false, ""}, // a directory
		{"\x04", 4, unix.S_IFREG | 0o644, 0, 0, 1e9, 0, "data", false, false, ""}, // a symlink
		{"\x06", 4, unix.S_IFREG | 0o644, 0, 0, 1e9, 0, "data", false, false, ""}, // E, behind a symlink
		{"\x00", 4, unix.S_IFREG | 0o644, 0, 0, 1e9, 0, "data", false, false, ""}, // the root
		{"\x09", 4, unix.S_IFREG | 0o644, 0, 0, 1e9, 0, "data", false, false, ""}, // limbo
		{"\x0a", 4, unix.S_IFREG | 0o644, 0, 0, 1e9, 0, "data", false, false, ""}, // unknown
		{"\x03", 4, unix.S_IFDIR | 0o755, 0, 0, 1e9, 0, "data", false, true, "trusted.georep.gfid"},
	}
	for _, s := range seeds {
		f.Add([]byte(s.g), s.size, s.mode, s.uid, s.gid, s.mtime, s.off, []byte(s.data), s.abort, s.sync, []byte(s.xname))
	}
	f.Fuzz(func(t *testing.T, g []byte, size int64, mode, uid, gid uint32, mtime, off int64, data []byte, abort, sync bool, xname []byte) {
		ft := newFuzzTree(t)
		fx := ft.f
		st := fuzzDataStream(t, fx)
		hdr := &pb.FileHeader{Id: 1, Gfid: ft.pick(g), Size: size, Mode: mode, Uid: uid, Gid: gid, AtimeNs: mtime, MtimeNs: mtime, SyncXattrs: sync}
		if len(xname) > 0 {
			hdr.Xattrs = []*pb.Xattr{{Name: xname, Value: []byte("v")}}
		}
		send := func(m *pb.SyncDataRequest) bool { return st.Send(m) == nil }
		ok := send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Open{Open: &pb.DataOpen{SessionToken: fx.tok}}}) &&
			send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Header{Header: hdr}})
		result, streamErr := fuzzOneFile(st, ok, func() bool {
			sum := delta.SumOf(data)
			return send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Chunk{Chunk: &pb.FileChunk{Id: 1, Offset: off, Data: data}}}) &&
				send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_End{End: &pb.FileEnd{Id: 1, Aborted: abort, Sum: sum[:]}}})
		})
		fuzzCheckEnd(t, result, streamErr, codes.InvalidArgument)
		fuzzDataAfter(t, fx)
	})
}

// hasTempFile reports whether a staging file is anywhere under dir.
func hasTempFile(dir string) bool {
	found := false
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && slave.IsTempName(d.Name()) {
			found = true
		}
		return nil
	})
	return found
}

// FuzzInlineFiles sends two inline files in one InlineFiles message, with
// fuzzed gfids, sizes and data: the slave answers with both results in one
// FileResults (each a well-formed result) or refuses the message as
// invalid, never writes outside its root, leaves no staging file, and
// serves on.
func FuzzInlineFiles(f *testing.F) {
	f.Add([]byte("\x03"), []byte("\x05"), int64(4), []byte("data"), []byte("hh"), false, false, false)
	f.Add([]byte("\x03"), []byte("\x03"), int64(4), []byte("data"), []byte("more"), true, false, false)
	f.Add([]byte("\x01"), []byte("\x06"), int64(2), []byte("data"), []byte(""), false, true, false)
	f.Add([]byte("\x0a"), []byte("\x00"), int64(-1), []byte("x"), []byte("y"), false, false, true)
	f.Add([]byte("\x04"), []byte("\x09"), int64(1<<40), []byte("x"), []byte("y"), false, false, false)
	f.Fuzz(func(t *testing.T, g1, g2 []byte, size1 int64, data1, data2 []byte, abort, badSum, notInline bool) {
		ft := newFuzzTree(t)
		fx := ft.f
		st := fuzzDataStream(t, fx)
		header := func(id uint64, g []byte, size int64, data []byte) *pb.FileHeader {
			sum := delta.SumOf(data)
			if badSum {
				sum[0] ^= 1
			}
			h := &pb.FileHeader{Id: id, Gfid: ft.pick(g), Size: size, Mode: unix.S_IFREG | 0o644, MtimeNs: 1e9, AtimeNs: 1e9,
				InlineEnd: &pb.FileEnd{Id: id, Aborted: abort, Sum: sum[:]}}
			if len(data) > 0 {
				h.InlineData = &pb.FileChunk{Id: id, Data: data}
			}
			return h
		}
		hs := []*pb.FileHeader{header(1, g1, size1, data1), header(2, g2, int64(len(data2)), data2)}
		if notInline {
			hs[1].InlineEnd, hs[1].InlineData = nil, nil
		}
		send := func(m *pb.SyncDataRequest) bool { return st.Send(m) == nil }
		ok := send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Open{Open: &pb.DataOpen{SessionToken: fx.tok}}}) &&
			send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_InlineFiles{InlineFiles: &pb.InlineFiles{Headers: hs}}})
		var streamErr error
		var results []*pb.FileResult
		if ok {
			st.CloseSend()
			for {
				m, err := st.Recv()
				if err != nil {
					if !errors.Is(err, io.EOF) {
						streamErr = err
					}
					break
				}
				if r := m.GetResults(); r != nil {
					results = append(results, r.GetResults()...)
				} else if m.GetCommit() == nil {
					t.Fatalf("unexpected answer to InlineFiles: %v", m)
				}
			}
		}
		if streamErr != nil && grpcCode(streamErr) != codes.InvalidArgument {
			t.Fatalf("stream ended with %v", streamErr)
		}
		if streamErr == nil {
			if len(results) != 2 || results[0].GetId() != 1 || results[1].GetId() != 2 {
				t.Fatalf("results %v, want ids 1 and 2", results)
			}
			for _, r := range results {
				checkResult(t, "inline file", r.GetResult())
			}
		}
		fuzzDataAfter(t, fx)
	})
}

// fuzzDataStream opens a data stream to fx's slave for the test's life.
func fuzzDataStream(t *testing.T, fx *fixture) pb.SlaveService_SyncDataClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	st, err := fx.serve().SyncData(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// fuzzOneFile reads a one-file data stream after its header until the
// file's result, calling sendData when the slave asks for the data (it
// reports whether the sends went); then it half-closes the stream and
// reads it to its end. sent says whether the messages before went (if
// not, the slave ended the stream: only its end is read). It returns the
// result (nil if none came) and the error the stream ended with (nil for
// a clean end).
func fuzzOneFile(st pb.SlaveService_SyncDataClient, sent bool, sendData func() bool) (*pb.OpResult, error) {
	var result *pb.OpResult
	for ok := sent; ok && result == nil; {
		m, err := st.Recv()
		if err != nil {
			return nil, err
		}
		switch {
		case m.GetWant() != nil && m.GetWant().GetSend():
			ok = sendData()
		case m.GetResult() != nil:
			result = m.GetResult().GetResult()
		}
	}
	st.CloseSend()
	for {
		if _, err := st.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return result, nil
			}
			return result, err
		}
	}
}

// fuzzCheckEnd checks how a fuzzed one-file stream ended: with a
// well-formed result, or refused with one of the codes allowed.
func fuzzCheckEnd(t *testing.T, result *pb.OpResult, streamErr error, allowed ...codes.Code) {
	t.Helper()
	if streamErr != nil && !slices.Contains(allowed, grpcCode(streamErr)) {
		t.Fatalf("stream ended with %v", streamErr)
	}
	if result != nil {
		checkResult(t, "data", result)
	} else if streamErr == nil {
		t.Fatal("no result for the file and no stream error")
	}
}

// fuzzDataAfter checks what a fuzzed data stream must leave: nothing
// outside the root, no staging file, and a slave that serves on.
func fuzzDataAfter(t *testing.T, fx *fixture) {
	t.Helper()
	fx.checkOutside()
	waitFor(t, "staging files to go", func() bool { return !hasTempFile(fx.root) })
	fx.ok(opCreate(newGFID(t), gfid.Root, "after"))
}
