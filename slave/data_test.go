package slave_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/georep/georep/internal/gfid"
	pb "github.com/georep/georep/proto/georep/v1"
)

const tmpPrefix = ".georep-tmp."

// stagedSize reports whether some regular file under the root other than
// the target name has the given size: a staging copy, wherever the slave
// keeps it.
// staged reports whether a staging file of size bytes exists for target:
// an unnamed O_TMPFILE inode the (in-process) slave holds open under the
// slave root, or a named temp file in the tree.
func (f *fixture) staged(target string, size int64) bool {
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, e := range fds {
		p := "/proc/self/fd/" + e.Name()
		l, err := os.Readlink(p)
		if err != nil || !strings.HasPrefix(l, f.root+"/") || !strings.HasSuffix(l, " (deleted)") {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == size {
			return true
		}
	}
	found := false
	filepath.WalkDir(f.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // raced with a removal
		}
		var st unix.Stat_t
		if p != f.path(target) && unix.Lstat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == size {
			found = true
		}
		return nil
	})
	return found
}

func noTmp(t *testing.T, dir string) {
	t.Helper()
	for _, n := range listNames(t, dir) {
		if strings.HasPrefix(n, tmpPrefix) {
			t.Fatalf("staging file %s left in %s", n, dir)
		}
	}
}

func TestDataNewFile(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"))
	const mtime = int64(1_700_000_000_111_222_333)
	d := f.openData(f.tok)
	d.header(1, F, 11, mtime)
	d.expectWant(1, true)
	d.chunk(1, 0, "hello")
	// The data lands in a staging file; until FileEnd a reader of f still
	// sees the old (empty) file, never half of the new one.
	waitFor(t, "the first chunk to be written", func() bool { return f.staged("f", 5) })
	if got := readFile(t, f.path("f")); got != "" {
		t.Fatalf("mid-transfer, f reads %q", got)
	}
	if st := lstat(t, f.path("f")); st.Size != 0 {
		t.Fatalf("mid-transfer, f has size %d", st.Size)
	}
	d.chunk(1, 5, " world")
	d.end(1, false)
	r := d.expectResult(1)
	if r.GetResult().GetStatus() != stOK || r.GetBytesWritten() != 11 {
		t.Fatalf("result %v", r)
	}
	if got := readFile(t, f.path("f")); got != "hello world" {
		t.Fatalf("f = %q", got)
	}
	st := lstat(t, f.path("f"))
	if st.Mtim.Nano() != mtime || st.Mode != unix.S_IFREG|0o640 || st.Nlink != 1 {
		t.Fatalf("f: mtime %d mode %o nlink %d", st.Mtim.Nano(), st.Mode, st.Nlink)
	}
	checkGFID(t, f.path("f"), F)
	// Same size and mtime: not wanted again.
	ino, ctime := st.Ino, st.Ctim
	d.header(2, F, 11, mtime)
	d.expectWant(2, false)
	if r := d.expectResult(2); r.GetResult().GetStatus() != stNoop || r.GetBytesWritten() != 0 {
		t.Fatalf("unchanged file: %v", r)
	}
	d.commit()
	if st := lstat(t, f.path("f")); st.Ino != ino || st.Ctim != ctime {
		t.Fatal("a NOOP header changed the file")
	}
	noTmp(t, f.root)
	// Later ops still find the file by its gfid (the index survived the
	// rename of the staged copy over it).
	checkStatuses(t, f.meta(metaOf(F, unix.S_IFREG|0o600, 0, 0, mtime, mtime)), stOK)
	f.checkOutside()
}

// TestDataOutOfOrderRefused: a file's data must come in order (the slave
// hashes it as it arrives); a gap or a step back fails the file, clearly.
func TestDataOutOfOrderRefused(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"))
	d := f.openData(f.tok)
	d.header(1, F, 6, 1e9)
	d.expectWant(1, true)
	d.chunk(1, 3, "def")
	d.chunk(1, 0, "abc")
	d.end(1, false)
	checkFailed(t, d.expectResult(1).GetResult(), pb.ErrorCode_ERROR_CODE_INVALID, "contiguous")
	if got := readFile(t, f.path("f")); got != "" {
		t.Fatalf("f = %q after a refused transfer", got)
	}
}

func TestDataManyFilesInterleaved(t *testing.T) {
	f := newFixture(t)
	D := newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"))
	gs := []gfid.GFID{newGFID(t), newGFID(t), newGFID(t)}
	for i, g := range gs {
		f.ok(opCreate(g, D, string(rune('a'+i))))
	}
	d := f.openData(f.tok)
	for i, g := range gs {
		d.header(uint64(i+10), g, 6, int64(i+1)*1e9)
		d.expectWant(uint64(i+10), true)
	}
	// Chunks interleaved across files (each file's own data in order).
	for i := range gs {
		d.chunk(uint64(i+10), 0, "abc")
	}
	for i := range gs {
		d.chunk(uint64(i+10), 3, "def")
	}
	for i := len(gs) - 1; i >= 0; i-- {
		d.end(uint64(i+10), false)
		if r := d.expectResult(uint64(i + 10)); r.GetResult().GetStatus() != stOK {
			t.Fatalf("file %d: %v", i, r)
		}
	}
	d.commit()
	for i := range gs {
		if got := readFile(t, f.path("d/"+string(rune('a'+i)))); got != "abcdef" {
			t.Fatalf("file %d = %q", i, got)
		}
	}
	noTmp(t, f.path("d"))
}

func TestDataHardlinkPatchedInPlace(t *testing.T) {
	f := newFixture(t)
	D, F := newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"), opCreate(F, gfid.Root, "a"), opLink(F, D, "b"))
	ino := lstat(t, f.path("a")).Ino
	d := f.openData(f.tok)
	if r := d.sendFile(1, F, "shared content", 5e9); r.GetResult().GetStatus() != stOK {
		t.Fatalf("result %v", r)
	}
	// Shrinking works in place too.
	if r := d.sendFile(2, F, "short", 6e9); r.GetResult().GetStatus() != stOK {
		t.Fatalf("result %v", r)
	}
	d.commit()
	for _, p := range []string{"a", "d/b"} {
		st := lstat(t, f.path(p))
		if st.Ino != ino || st.Nlink != 2 {
			t.Fatalf("%s: ino %d nlink %d, want %d and 2", p, st.Ino, st.Nlink, ino)
		}
		if got := readFile(t, f.path(p)); got != "short" {
			t.Fatalf("%s = %q", p, got)
		}
		if st.Mtim.Nano() != 6e9 {
			t.Fatalf("%s: mtime %d", p, st.Mtim.Nano())
		}
	}
	noTmp(t, f.root)
	noTmp(t, f.path("d"))
}

func TestDataEmptyFile(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"))
	d := f.openData(f.tok)
	d.sendFile(1, F, "something", 1e9)
	// Size 0 needs no data: want=false and the result at once.
	if r := d.sendFile(2, F, "", 2e9); r.GetResult().GetStatus() != stOK {
		t.Fatalf("result %v", r)
	}
	d.commit()
	if st := lstat(t, f.path("f")); st.Size != 0 || st.Mtim.Nano() != 2e9 {
		t.Fatalf("f: size %d mtime %d", st.Size, st.Mtim.Nano())
	}
}

func TestDataAbortedKeepsOld(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"))
	d := f.openData(f.tok)
	if r := d.sendFile(1, F, "old content", 1e9); r.GetResult().GetStatus() != stOK {
		t.Fatalf("result %v", r)
	}
	before := lstat(t, f.path("f"))
	d.header(2, F, 3, 2e9)
	d.expectWant(2, true)
	d.chunk(2, 0, "new")
	d.end(2, true)
	r := d.expectResult(2)
	if r.GetResult().GetStatus() != stFailed || r.GetResult().GetError() == "" {
		t.Fatalf("aborted file: %v", r)
	}
	d.commit()
	if got := readFile(t, f.path("f")); got != "old content" {
		t.Fatalf("after abort f = %q", got)
	}
	after := lstat(t, f.path("f"))
	if after.Ino != before.Ino || after.Mtim != before.Mtim || after.Ctim != before.Ctim {
		t.Fatal("an aborted transfer changed the file")
	}
	noTmp(t, f.root)
}

func TestDataChunkOutOfBounds(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"))
	d := f.openData(f.tok)
	d.sendFile(1, F, "keep", 1e9)
	cases := []struct {
		off  int64
		data string
	}{{0, "too long!"}, {2, "xyz"}, {-1, "a"}, {4, "a"}}
	for i, c := range cases {
		id := uint64(10 + i)
		d.header(id, F, 4, 2e9)
		d.expectWant(id, true)
		d.chunk(id, c.off, c.data)
		d.chunk(id, 0, "ok") // dropped: the file already failed
		d.end(id, false)
		checkFailed(t, d.expectResult(id).GetResult(), ecInvalid, "chunk outside the announced size")
	}
	d.commit()
	if got := readFile(t, f.path("f")); got != "keep" {
		t.Fatalf("f = %q", got)
	}
	noTmp(t, f.root)
}

func TestDataRefusedHeaders(t *testing.T) {
	f := newFixture(t)
	F, D := newGFID(t), newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"), opMkdir(D, gfid.Root, "d"), opSymlink(newGFID(t), gfid.Root, "l", "f"))
	L := gfidAt(t, f.path("l"))
	d := f.openData(f.tok)
	cases := []struct {
		name string
		g    []byte
		size int64
		code pb.ErrorCode
	}{
		{"unknown gfid", gb(newGFID(t)), 3, ecUnknown},
		{"zero gfid", make([]byte, 16), 3, ecInvalid},
		{"short gfid", F.Bytes()[:15], 3, ecInvalid},
		{"root", gb(gfid.Root), 3, ecInvalid},
		{"reserved", gb(gfid.GFID{15: 2}), 3, ecInvalid},
		{"limbo", gb(gfid.GFID{15: 3}), 3, ecInvalid},
		{"a directory", gb(D), 3, ecInvalid},
		{"a symlink", gb(L), 3, ecInvalid},
		{"negative size", gb(F), -1, ecInvalid},
	}
	before := snapshot(t, f.root)
	for i, c := range cases {
		id := uint64(i + 1)
		d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Header{Header: &pb.FileHeader{Id: id, Gfid: c.g, Size: c.size, Mode: unix.S_IFREG | 0o644, MtimeNs: 1}}})
		d.expectWant(id, false)
		checkFailed(t, d.expectResult(id).GetResult(), c.code, c.name)
	}
	d.commit()
	if diff := diffSnap(before, snapshot(t, f.root)); diff != "" {
		t.Fatalf("refused headers changed the tree:\n%s", diff)
	}
	f.checkOutside()
}

func TestDataStreamEndsBeforeFileEnd(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"))
	d := f.openData(f.tok)
	d.header(7, F, 10, 1e9)
	d.expectWant(7, true)
	d.chunk(7, 0, "01234")
	if err := d.st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	checkFailed(t, d.expectResult(7).GetResult(), pb.ErrorCode_ERROR_CODE_IO, "file without FileEnd")
	if m := d.recv(); m.GetCommit() == nil {
		t.Fatalf("got %v, want DataCommit", m)
	}
	if got := readFile(t, f.path("f")); got != "" {
		t.Fatalf("f = %q", got)
	}
	noTmp(t, f.root)
}

func TestDataCancelledStreamCleansUp(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"))
	d := f.openData(f.tok)
	d.header(1, F, 10, 1e9)
	d.expectWant(1, true)
	d.chunk(1, 0, "01234")
	waitFor(t, "the staging file", func() bool { return f.staged("f", 5) })
	d.cancel()
	waitFor(t, "the staging file to go", func() bool { return !f.staged("f", 5) })
	if got := readFile(t, f.path("f")); got != "" {
		t.Fatalf("f = %q", got)
	}
	// The slave is not stuck: entry ops (which wait for data streams) run.
	f.ok(opCreate(newGFID(t), gfid.Root, "after"))
}

func TestDataProtocolErrors(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"))
	c := f.serve()
	expectStreamErr := func(name string, code codes.Code, msgs ...*pb.SyncDataRequest) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := c.SyncData(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if err := st.Send(m); err != nil {
				break
			}
		}
		for {
			_, err := st.Recv()
			if err != nil {
				if grpcCode(err) != code {
					t.Errorf("%s: %v, want %v", name, err, code)
				}
				return
			}
		}
	}
	open := func(sid []byte) *pb.SyncDataRequest {
		return &pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Open{Open: &pb.DataOpen{SessionToken: sid}}}
	}
	hdr := &pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Header{Header: &pb.FileHeader{Id: 1, Gfid: gb(F), Size: 3, MtimeNs: 5}}}
	expectStreamErr("no handshake", codes.FailedPrecondition, open(newSessionID(t)))
	expectStreamErr("no session id", codes.InvalidArgument, open(nil))
	expectStreamErr("header first", codes.InvalidArgument, hdr)
	expectStreamErr("open twice", codes.InvalidArgument, open(f.tok), open(f.tok))
	expectStreamErr("id announced twice", codes.InvalidArgument, open(f.tok), hdr, hdr)
	expectStreamErr("chunk for an unannounced id", codes.InvalidArgument, open(f.tok),
		&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Chunk{Chunk: &pb.FileChunk{Id: 9, Data: []byte("x")}}})
	expectStreamErr("end for an unannounced id", codes.InvalidArgument, open(f.tok),
		&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_End{End: &pb.FileEnd{Id: 9}}})
	if got := readFile(t, f.path("f")); got != "" {
		t.Fatalf("f = %q", got)
	}
	waitFor(t, "staging files to go", func() bool { return !exists(f.path(tmpPrefix + F.String())) })
}

// TestDataEscape: a file whose directory was replaced by a symlink to the
// outside is not written, neither is the outside.
func TestDataEscape(t *testing.T) {
	f := newFixture(t)
	D, F := newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"), opCreate(F, D, "f"))
	if err := os.Rename(f.path("d"), f.path("d.real")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(f.outside, f.path("d")); err != nil {
		t.Fatal(err)
	}
	// An impostor outside with F's gfid.
	imp := filepath.Join(f.outside, "f")
	if err := os.WriteFile(imp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(imp, gfidAttr, F[:], 0); err != nil {
		t.Fatal(err)
	}
	f.outsideSnap = snapshot(t, f.outside)
	d := f.openData(f.tok)
	d.header(1, F, 4, 1e9)
	m := d.recv()
	if w := m.GetWant(); w == nil || w.GetSend() {
		// Should it be wanted, send it anyway and make sure it did not
		// land outside.
		d.chunk(1, 0, "evil")
		d.end(1, false)
		d.expectResult(1)
		f.checkOutside()
		t.Fatalf("header for a file behind a symlink was wanted: %v", m)
	}
	r := d.expectResult(1).GetResult()
	if r.GetStatus() != stFailed || (r.GetCode() != ecUnknown && r.GetCode() != ecEscape) {
		t.Fatalf("result %v", r)
	}
	d.commit()
	f.checkOutside()
}

// TestDataKeepsXattrs: a staged copy replaces the file's inode; it must
// carry over the gfid and the user xattrs set by MetaOps, and take mode and
// times from the header.
func TestDataKeepsXattrs(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"))
	checkStatuses(t, f.meta(xattrOp(F, unix.S_IFREG|0o644, 1, "user.keep", "\x00me")), stOK)
	d := f.openData(f.tok)
	d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Header{Header: &pb.FileHeader{
		Id: 1, Gfid: gb(F), Size: 4, Mode: unix.S_IFREG | 0o4750, Uid: 0, Gid: 0, AtimeNs: 3e9, MtimeNs: 4e9}}})
	d.expectWant(1, true)
	d.chunk(1, 0, "data")
	d.end(1, false)
	if r := d.expectResult(1); r.GetResult().GetStatus() != stOK {
		t.Fatalf("result %v", r)
	}
	d.commit()
	checkGFID(t, f.path("f"), F)
	if got, ok := getX(t, f.path("f"), "user.keep"); !ok || string(got) != "\x00me" {
		t.Fatalf("user.keep = %q (present %v)", got, ok)
	}
	st := lstat(t, f.path("f"))
	if st.Mode != unix.S_IFREG|0o4750 || st.Mtim.Nano() != 4e9 || st.Atim.Nano() != 3e9 {
		t.Fatalf("f: mode %o atime %d mtime %d", st.Mode, st.Atim.Nano(), st.Mtim.Nano())
	}
	// And a later meta op with the same values is a NOOP.
	checkStatuses(t, f.meta(xattrOp(F, unix.S_IFREG|0o4750, 4e9, "user.keep", "\x00me")), stNoop)
}

// A CREATE announced a name for a gfid while the index did not know where
// the gfid lived; the index learnt it before the data came, so the data
// patches the file there — and the announced name is linked to it, not
// left announced forever.
func TestDataLinksAnnouncedNames(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	const mtime = int64(1_700_000_000_111_222_333)
	f.ok(opCreate(F, gfid.Root, "one"))
	d := f.openData(f.tok)
	d.header(1, F, 5, mtime)
	d.expectWant(1, true)
	d.chunk(1, 0, "hello")
	d.end(1, false)
	if r := d.expectResult(1); r.GetResult().GetStatus() != stOK {
		t.Fatalf("first result %v", r)
	}
	d.commit()
	if err := f.s.SetLinkForTest(F, gfid.Root, "one", false); err != nil {
		t.Fatal(err)
	}
	two := opCreate(F, gfid.Root, "two")
	two.DataFollows = true
	f.ok(two)
	if err := f.s.SetLinkForTest(F, gfid.Root, "one", true); err != nil {
		t.Fatal(err)
	}
	d = f.openData(f.tok)
	d.header(2, F, 6, mtime+1)
	d.expectWant(2, true)
	d.chunk(2, 0, "hello!")
	d.end(2, false)
	if r := d.expectResult(2); r.GetResult().GetStatus() != stOK {
		t.Fatalf("second result %v", r)
	}
	d.commit()
	a, b := lstat(t, f.path("one")), lstat(t, f.path("two"))
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Fatalf("one and two: inodes %d and %d, nlink %d; want one inode with two names", a.Ino, b.Ino, a.Nlink)
	}
	if got := readFile(t, f.path("two")); got != "hello!" {
		t.Fatalf("two = %q", got)
	}
	f.checkOutside()
}

// A name announced by a CREATE and then renamed onto another name of the
// same gfid before the data came is not made by the data.
func TestDataDropsSupersededAnnouncement(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	f.ok(opCreate(F, gfid.Root, "y"))
	if err := f.s.SetLinkForTest(F, gfid.Root, "y", false); err != nil {
		t.Fatal(err)
	}
	x := opCreate(F, gfid.Root, "x")
	x.DataFollows = true
	f.ok(x)
	if err := f.s.SetLinkForTest(F, gfid.Root, "y", true); err != nil {
		t.Fatal(err)
	}
	checkStatuses(t, f.entry(opRename(F, gfid.Root, "x", gfid.Root, "y")), stNoop)
	d := f.openData(f.tok)
	d.header(1, F, 5, 1_700_000_000_000_000_000)
	d.expectWant(1, true)
	d.chunk(1, 0, "hello")
	d.end(1, false)
	if r := d.expectResult(1); r.GetResult().GetStatus() != stOK {
		t.Fatalf("result %v", r)
	}
	d.commit()
	if exists(f.path("x")) {
		t.Fatal("the data made a name a rename had moved on from")
	}
	if got := readFile(t, f.path("y")); got != "hello" {
		t.Fatalf("y = %q", got)
	}
	f.checkOutside()
}

// A small file's data and end may ride in its header: the slave answers
// with the result alone (no FileWant), for a new file, a current one, an
// aborted one and a bad hash alike; an inline part of another id, or data
// without an end, is a protocol error.
func TestDataInline(t *testing.T) {
	f := newFixture(t)
	F, E := newGFID(t), newGFID(t)
	f.ok(opCreate(F, gfid.Root, "f"), opCreate(E, gfid.Root, "e"))
	d := f.openData(f.tok)
	d.inline(1, F, "hello inline", 1e9, false, nil)
	if r := d.expectResult(1); r.GetResult().GetStatus() != stOK || r.GetBytesWritten() != 12 {
		t.Fatalf("inline file: %v", r)
	}
	d.inline(2, E, "", 1e9, false, nil)
	if r := d.expectResult(2); r.GetResult().GetStatus() != stOK {
		t.Fatalf("inline empty file: %v", r)
	}
	// Current (same size and mtime): NOOP, the inline data unused.
	st := lstat(t, f.path("f"))
	d.inline(3, F, "HELLO INLINE", 1e9, false, nil)
	if r := d.expectResult(3); r.GetResult().GetStatus() != stNoop {
		t.Fatalf("current inline file: %v", r)
	}
	// Aborted, or built with another hash: failed, the old copy kept.
	d.inline(4, F, "changed", 2e9, true, nil)
	if r := d.expectResult(4); r.GetResult().GetStatus() != stFailed {
		t.Fatalf("aborted inline file: %v", r)
	}
	d.inline(5, F, "changed", 2e9, false, make([]byte, 32))
	if r := d.expectResult(5); r.GetResult().GetStatus() != stFailed || !strings.Contains(r.GetResult().GetError(), "XXH3-128") {
		t.Fatalf("inline file with a bad hash: %v", r)
	}
	d.commit()
	if got := readFile(t, f.path("f")); got != "hello inline" {
		t.Fatalf("f = %q", got)
	}
	if after := lstat(t, f.path("f")); after.Ino != st.Ino || after.Ctim != st.Ctim {
		t.Fatal("a NOOP, aborted or mismatched inline file changed f")
	}
	if st := lstat(t, f.path("e")); st.Size != 0 || st.Mtim.Nano() != 1e9 {
		t.Fatalf("e: size %d mtime %d", st.Size, st.Mtim.Nano())
	}
	checkGFID(t, f.path("f"), F)
	checkGFID(t, f.path("e"), E)
	noTmp(t, f.root)

	for name, h := range map[string]*pb.FileHeader{
		"data without end":   {Id: 7, Gfid: gb(F), Size: 1, InlineData: &pb.FileChunk{Id: 7, Data: []byte("x")}},
		"end of another id":  {Id: 7, Gfid: gb(F), Size: 0, InlineEnd: &pb.FileEnd{Id: 8}},
		"data of another id": {Id: 7, Gfid: gb(F), Size: 1, InlineData: &pb.FileChunk{Id: 8, Data: []byte("x")}, InlineEnd: &pb.FileEnd{Id: 7}},
	} {
		d := f.openData(f.tok)
		d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_Header{Header: h}})
		if _, err := d.st.Recv(); grpcCode(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	f.checkOutside()
}

// TestDataInlineFiles: many inline files in one InlineFiles message get
// their results in one FileResults, in order, each as it would alone: new
// files made, an empty one, a current one left (NOOP), an aborted one and
// one with a bad hash failed, and one whose announced name was taken by
// another file (guessed new, then looked up) failed without touching it.
// A batch with a header that is not inline is refused.
func TestDataInlineFiles(t *testing.T) {
	f := newFixture(t)
	A, B, C, E, X, Y := newGFID(t), newGFID(t), newGFID(t), newGFID(t), newGFID(t), newGFID(t)
	var ops []*pb.EntryOp
	for g, name := range map[gfid.GFID]string{A: "a", B: "b", C: "c", E: "e", X: "x", Y: "y"} {
		op := opCreate(g, gfid.Root, name)
		op.DataFollows = true
		ops = append(ops, op)
	}
	f.ok(ops...)
	d := f.openData(f.tok)
	d.inline(1, C, "current", 1e9, false, nil)
	if r := d.expectResult(1); r.GetResult().GetStatus() != stOK {
		t.Fatalf("c: %v", r)
	}
	// y's name is taken by a file the slave did not make.
	if err := os.WriteFile(f.path("y"), []byte("not georep's"), 0o600); err != nil {
		t.Fatal(err)
	}
	hs := []*pb.FileHeader{
		inlineHeader(2, A, "first", 2e9, false, nil),
		inlineHeader(3, E, "", 2e9, false, nil),
		inlineHeader(4, C, "CURRENT", 1e9, false, nil),
		inlineHeader(5, X, "aborted", 2e9, true, nil),
		inlineHeader(6, B, "bad hash", 2e9, false, make([]byte, 32)),
		inlineHeader(7, Y, "mine", 2e9, false, nil),
	}
	d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_InlineFiles{InlineFiles: &pb.InlineFiles{Headers: hs}}})
	m := d.recv()
	rs := m.GetResults().GetResults()
	want := []pb.OpStatus{stOK, stOK, stNoop, stFailed, stFailed, stFailed}
	if len(rs) != len(want) {
		t.Fatalf("got %v, want FileResults with %d results", m, len(want))
	}
	for i, r := range rs {
		if r.GetId() != hs[i].GetId() || r.GetResult().GetStatus() != want[i] {
			t.Errorf("result %d: %v, want id %d %v", i, r, hs[i].GetId(), want[i])
		}
	}
	d.commit()
	for name, want := range map[string]string{"a": "first", "e": "", "c": "current", "y": "not georep's"} {
		if got := readFile(t, f.path(name)); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"x", "b"} {
		if _, err := os.Lstat(f.path(name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v, want it absent (its transfer failed)", name, err)
		}
	}
	checkGFID(t, f.path("a"), A)
	checkGFID(t, f.path("e"), E)
	noTmp(t, f.root)

	// A batch with a header that is not inline is refused before any of
	// its files is touched.
	d = f.openData(f.tok)
	d.send(&pb.SyncDataRequest{Msg: &pb.SyncDataRequest_InlineFiles{InlineFiles: &pb.InlineFiles{Headers: []*pb.FileHeader{
		inlineHeader(8, A, "x", 3e9, false, nil), {Id: 9, Gfid: gb(B), Size: 1, Mode: unix.S_IFREG | 0o640}}}}})
	if _, err := d.st.Recv(); grpcCode(err) != codes.InvalidArgument {
		t.Errorf("a batch with a header not inline: %v, want InvalidArgument", err)
	}
	if got := readFile(t, f.path("a")); got != "first" {
		t.Errorf("a = %q after a refused batch, want %q", got, "first")
	}
	f.checkOutside()
}

// A new file whose data is all in its header (inline, announced by a
// CREATE with data to follow) is made at its name, with its gfid, mode and
// times; one that is aborted or built with another hash leaves nothing
// there, nor a staging file; a name taken meanwhile by something else is
// left alone. Its directory's times are kept.
func TestDataInlineNewFile(t *testing.T) {
	f := newFixture(t)
	D, N, A, B, C, Z := newGFID(t), newGFID(t), newGFID(t), newGFID(t), newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"))
	const dirTime = int64(1_600_000_000_123_456_789)
	checkStatuses(t, f.meta(metaOf(D, unix.S_IFDIR|0o755, 0, 0, dirTime, dirTime)), stOK)
	var ops []*pb.EntryOp
	for _, c := range []struct {
		g    gfid.GFID
		name string
	}{{N, "new"}, {A, "aborted"}, {B, "badhash"}, {C, "taken"}, {Z, "empty"}} {
		op := opCreate(c.g, D, c.name)
		op.DataFollows = true
		ops = append(ops, op)
	}
	checkStatuses(t, f.entry(ops...), stOK, stOK, stOK, stOK, stOK)
	for _, n := range []string{"new", "aborted", "badhash", "taken", "empty"} {
		if exists(f.path("d/" + n)) {
			t.Fatalf("d/%s made before its data", n)
		}
	}
	if err := os.WriteFile(f.path("d/taken"), []byte("someone else's"), 0o600); err != nil {
		t.Fatal(err)
	}
	checkStatuses(t, f.meta(metaOf(D, unix.S_IFDIR|0o755, 0, 0, dirTime, dirTime)), stOK)
	// Watched: the new file is created at its name, not renamed there
	// from a staging name.
	ino, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ino)
	if _, err := unix.InotifyAddWatch(ino, f.path("d"), unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
		t.Fatal(err)
	}
	d := f.openData(f.tok)
	d.inline(1, N, "a new small file", 1e9, false, nil)
	if r := d.expectResult(1); r.GetResult().GetStatus() != stOK || r.GetBytesWritten() != 16 {
		t.Fatalf("new inline file: %v", r)
	}
	var created, moved []string
	buf := make([]byte, 64<<10)
	n, _ := unix.Read(ino, buf)
	for off := 0; n > 0 && off+unix.SizeofInotifyEvent <= n; {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
		if ev.Mask&unix.IN_CREATE != 0 {
			created = append(created, name)
		}
		if ev.Mask&unix.IN_MOVED_TO != 0 {
			moved = append(moved, name)
		}
		off += unix.SizeofInotifyEvent + int(ev.Len)
	}
	if len(created) != 1 || created[0] != "new" || len(moved) != 0 {
		t.Errorf("making a new inline file: created %q, moved in %q; want \"new\" created, nothing moved", created, moved)
	}
	d.inline(2, A, "aborted", 1e9, true, nil)
	if r := d.expectResult(2); r.GetResult().GetStatus() != stFailed {
		t.Fatalf("aborted new inline file: %v", r)
	}
	d.inline(3, B, "bad hash", 1e9, false, make([]byte, 32))
	if r := d.expectResult(3); r.GetResult().GetStatus() != stFailed || !strings.Contains(r.GetResult().GetError(), "XXH3-128") {
		t.Fatalf("new inline file with a bad hash: %v", r)
	}
	d.inline(4, C, "mine", 1e9, false, nil)
	if r := d.expectResult(4); r.GetResult().GetStatus() != stFailed {
		t.Fatalf("new inline file whose name was taken: %v", r)
	}
	d.inline(5, Z, "", 3e9, false, nil)
	if r := d.expectResult(5); r.GetResult().GetStatus() != stOK {
		t.Fatalf("new empty inline file: %v", r)
	}
	d.commit()
	if got := readFile(t, f.path("d/new")); got != "a new small file" {
		t.Fatalf("d/new = %q", got)
	}
	st := lstat(t, f.path("d/new"))
	if st.Mode != unix.S_IFREG|0o640 || st.Mtim.Nano() != 1e9 || st.Nlink != 1 {
		t.Errorf("d/new: mode %o mtime %d nlink %d", st.Mode, st.Mtim.Nano(), st.Nlink)
	}
	checkGFID(t, f.path("d/new"), N)
	if st := lstat(t, f.path("d/empty")); st.Size != 0 || st.Mtim.Nano() != 3e9 {
		t.Errorf("d/empty: size %d mtime %d", st.Size, st.Mtim.Nano())
	}
	checkGFID(t, f.path("d/empty"), Z)
	for _, n := range []string{"aborted", "badhash"} {
		if exists(f.path("d/" + n)) {
			t.Errorf("d/%s left behind by a failed transfer", n)
		}
	}
	if got := readFile(t, f.path("d/taken")); got != "someone else's" {
		t.Errorf("d/taken = %q: the data replaced what took its name", got)
	}
	if st := lstat(t, f.path("d")); st.Mtim.Nano() != dirTime {
		t.Errorf("d: mtime %d after new files were made in it, want %d", st.Mtim.Nano(), dirTime)
	}
	noTmp(t, f.root)
}

// Data into files that are there changes no directory's mtime: the stream
// holds a directory's times across the files it stages there one after
// the other, and gives them back when it moves on and at its end.
func TestDataKeepsDirTimes(t *testing.T) {
	f := newFixture(t)
	D, E := newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"), opMkdir(E, gfid.Root, "e"))
	var files []gfid.GFID
	for _, p := range []struct {
		dir  gfid.GFID
		name string
	}{{D, "a"}, {D, "b"}, {E, "c"}, {D, "z"}} {
		g := newGFID(t)
		f.ok(opCreate(g, p.dir, p.name))
		files = append(files, g)
	}
	const dirTime = int64(1_600_000_000_123_456_789)
	checkStatuses(t, f.meta(metaOf(D, unix.S_IFDIR|0o755, 0, 0, dirTime, dirTime), metaOf(E, unix.S_IFDIR|0o755, 0, 0, dirTime, dirTime)), stOK, stOK)
	d := f.openData(f.tok)
	for i, g := range files {
		if r := d.sendFile(uint64(i+1), g, fmt.Sprintf("content %d", i), 1e9); r.GetResult().GetStatus() != stOK {
			t.Fatalf("file %d: %v", i, r)
		}
	}
	for i, g := range files { // inline, the same
		d.inline(uint64(10+i), g, fmt.Sprintf("inline content %d", i), 2e9, false, nil)
		if r := d.expectResult(uint64(10 + i)); r.GetResult().GetStatus() != stOK {
			t.Fatalf("inline file %d: %v", i, r)
		}
	}
	d.commit()
	for _, dir := range []string{"d", "e"} {
		if st := lstat(t, f.path(dir)); st.Mtim.Nano() != dirTime {
			t.Errorf("%s: mtime %d after data into its files, want %d", dir, st.Mtim.Nano(), dirTime)
		}
	}
	noTmp(t, f.root)
}

// Headers go ahead of their data (the master's window): a file announced
// in d, then one in e, then the data of both. d's times are held until its
// file is installed, though the stream staged e's in between.
func TestDataDirTimesAcrossInterleavedFiles(t *testing.T) {
	f := newFixture(t)
	D, E := newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"), opMkdir(E, gfid.Root, "e"))
	A, C := newGFID(t), newGFID(t)
	f.ok(opCreate(A, D, "a"), opCreate(C, E, "c"))
	const dirTime = int64(1_600_000_000_123_456_789)
	checkStatuses(t, f.meta(metaOf(D, unix.S_IFDIR|0o755, 0, 0, dirTime, dirTime), metaOf(E, unix.S_IFDIR|0o755, 0, 0, dirTime, dirTime)), stOK, stOK)
	d := f.openData(f.tok)
	d.header(1, A, 5, 1e9)
	d.expectWant(1, true)
	d.header(2, C, 5, 1e9)
	d.expectWant(2, true)
	for id, content := range map[uint64]string{1: "aaaaa", 2: "ccccc"} {
		d.chunk(id, 0, content)
		d.end(id, false)
		if r := d.expectResult(id); r.GetResult().GetStatus() != stOK {
			t.Fatalf("file %d: %v", id, r)
		}
	}
	d.commit()
	for _, dir := range []string{"d", "e"} {
		if st := lstat(t, f.path(dir)); st.Mtim.Nano() != dirTime {
			t.Errorf("%s: mtime %d after data into its files, want %d", dir, st.Mtim.Nano(), dirTime)
		}
	}
	noTmp(t, f.root)
}

// A name announced by a CREATE whose data has not come, then removed on
// the master (its UNLINK, or a purge of its directory that does not keep
// it), is not made when the data comes for the file's other name: before,
// linkPending made it after the purge that would have removed it, and the
// slave kept a name the master did not have (the soak's extra hard links).
func TestDataDropsRemovedAnnouncement(t *testing.T) {
	for _, how := range []string{"unlink", "purge"} {
		t.Run(how, func(t *testing.T) {
			f := newFixture(t)
			D, F := newGFID(t), newGFID(t)
			f.ok(opMkdir(D, gfid.Root, "d"))
			a, b := opCreate(F, D, "a"), opCreate(F, gfid.Root, "b")
			a.DataFollows, b.DataFollows = true, true
			f.ok(a, b)
			switch how {
			case "unlink":
				checkStatuses(t, f.entry(opUnlink(F, D, "a")), stNoop)
			case "purge":
				p := opPurge(D)
				p.ReportOnly = true
				checkStatuses(t, f.entry(p), stNoop)
			}
			d := f.openData(f.tok)
			if r := d.sendFile(1, F, "hello", 1_700_000_000_000_000_000); r.GetResult().GetStatus() != stOK {
				t.Fatalf("result %v", r)
			}
			d.commit()
			if exists(f.path("d/a")) {
				t.Fatal("the data made a name the master had removed")
			}
			if got := readFile(t, f.path("b")); got != "hello" {
				t.Fatalf("b = %q", got)
			}
			if st := lstat(t, f.path("b")); st.Nlink != 1 {
				t.Fatalf("b has %d links", st.Nlink)
			}
			f.checkOutside()
		})
	}
}

// The same with the data already on its way: a name removed on the master
// after the header came is not made when the file ends (the master is
// told the gfid is unknown, and sends it again where it is, if anywhere).
func TestDataAnnouncementRemovedInFlight(t *testing.T) {
	f := newFixture(t)
	D, F := newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"))
	a := opCreate(F, D, "a")
	a.DataFollows = true
	f.ok(a)
	d := f.openData(f.tok)
	d.header(1, F, 5, 1_700_000_000_000_000_000)
	d.expectWant(1, true)
	d.chunk(1, 0, "hello")
	checkStatuses(t, f.entry(opUnlink(F, D, "a")), stNoop)
	d.end(1, false)
	if r := d.expectResult(1); r.GetResult().GetStatus() != stFailed || r.GetResult().GetCode() != ecUnknown {
		t.Fatalf("result %v, want FAILED UNKNOWN_GFID", r)
	}
	d.commit()
	if exists(f.path("d/a")) {
		t.Fatal("the data made a name the master had removed")
	}
	noTmp(t, f.path("d"))
	f.checkOutside()
}

// A new file's data on its way while an entry op links it (LINK of the
// announced file makes it empty at its name and links it): the data goes
// into that inode in place and every name shares it. Before, the file
// failed ("linked meanwhile; send it again") and the master's status
// counted a failure for a transfer it then repeated.
func TestDataNewFileLinkedMeanwhile(t *testing.T) {
	f := newFixture(t)
	F := newGFID(t)
	a := opCreate(F, gfid.Root, "a")
	a.DataFollows = true
	f.ok(a)
	d := f.openData(f.tok)
	d.header(1, F, 70000, 5e9) // not inline: staged, installed at the end
	d.expectWant(1, true)
	content := strings.Repeat("x", 70000)
	d.chunk(1, 0, content)
	f.ok(opLink(F, gfid.Root, "b"))
	d.end(1, false)
	if r := d.expectResult(1); r.GetResult().GetStatus() != stOK {
		t.Fatalf("result %v, want OK", r)
	}
	d.commit()
	sa, sb := lstat(t, f.path("a")), lstat(t, f.path("b"))
	if sa.Ino != sb.Ino || sa.Nlink != 2 || sa.Size != 70000 || sa.Mtim.Nano() != 5e9 {
		t.Fatalf("a and b: ino %d/%d nlink %d size %d mtime %d", sa.Ino, sb.Ino, sa.Nlink, sa.Size, sa.Mtim.Nano())
	}
	if got := readFile(t, f.path("b")); got != content {
		t.Fatal("b lacks the data")
	}
	noTmp(t, f.root)
}
