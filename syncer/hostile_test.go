package syncer_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/georep/georep/internal/gfid"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/syncer"
	"github.com/georep/georep/syncer/delta"
)

// lyingStream passes what a real slave sends on a data stream through
// rewrite, which may change it or send more.
type lyingStream struct {
	grpc.ServerStream
	rewrite func(*pb.SyncDataResponse) []*pb.SyncDataResponse
}

func (s lyingStream) SendMsg(m any) error {
	r, ok := m.(*pb.SyncDataResponse)
	if !ok {
		return s.ServerStream.SendMsg(m)
	}
	for _, x := range s.rewrite(r) {
		if err := s.ServerStream.SendMsg(x); err != nil {
			return err
		}
	}
	return nil
}

// lyingSession starts a real slave on sroot whose data streams' answers go
// through rewrite, and opens a session with it.
func lyingSession(t *testing.T, ctx context.Context, sroot string, rewrite func(*pb.SyncDataResponse) []*pb.SyncDataResponse) (pb.SlaveServiceClient, []byte) {
	t.Helper()
	lie := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, lyingStream{ss, rewrite})
	}
	client, tok, _ := sessionWith(t, ctx, sroot, grpc.StreamInterceptor(lie))
	return client, tok
}

// hostileFiles makes n files of size bytes in mdir, announces them to the
// slave (CREATE, data to follow) and returns them with their source.
func hostileFiles(t *testing.T, ctx context.Context, client pb.SlaveServiceClient, tok []byte, mdir string, n, size int) (*source, []*syncer.File) {
	t.Helper()
	src := &source{dir: mdir, names: map[gfid.GFID]string{}}
	var files []*syncer.File
	var ops []*pb.EntryOp
	for i := range n {
		g, _ := gfid.New()
		name := "f" + string(rune('a'+i))
		src.names[g] = name
		if err := os.WriteFile(filepath.Join(mdir, name), randomContent(size, i), 0o644); err != nil {
			t.Fatal(err)
		}
		ops = append(ops, &pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_CREATE, Gfid: g.Bytes(), Pargfid: gfid.Root.Bytes(), Name: []byte(name), Mode: unix.S_IFREG | 0o644, DataFollows: true})
		files = append(files, &syncer.File{GFID: g, At: syncer.Link{Parent: gfid.Root, Name: name}})
	}
	if _, err := client.EntryOps(ctx, &pb.EntryOpsRequest{SessionToken: tok, Ops: ops}); err != nil {
		t.Fatal(err)
	}
	return src, files
}

func randomContent(size, seed int) []byte {
	b := make([]byte, size)
	x := uint32(seed*2654435761 + 1)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// TestIssue18SlaveResultFlood: a slave that answers with results for ids
// the master never announced (a flood of them grew a master by 1.5 GB in
// seconds) ends the shipment with a protocol error at the first one.
func TestIssue18SlaveResultFlood(t *testing.T) {
	sroot, mdir := t.TempDir(), t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	flood := func(r *pb.SyncDataResponse) []*pb.SyncDataResponse {
		if r.GetResult() == nil && r.GetResults() == nil {
			return []*pb.SyncDataResponse{r}
		}
		var out []*pb.SyncDataResponse
		for i := range 1000 {
			out = append(out, &pb.SyncDataResponse{Msg: &pb.SyncDataResponse_Result{Result: &pb.FileResult{Id: uint64(1)<<40 + uint64(i)}}})
		}
		return append(out, r)
	}
	client, tok := lyingSession(t, ctx, sroot, flood)
	src, files := hostileFiles(t, ctx, client, tok, mdir, 2, 1000)
	s := &syncer.Sender{Client: client, Token: tok, Source: src}
	err := s.Ship(ctx, files)
	if err == nil || !strings.Contains(err.Error(), "not announced") {
		t.Fatalf("Ship against a slave flooding results: %v, want a protocol error naming the unannounced id", err)
	}

	// A second result for one id is refused too.
	dup := func(r *pb.SyncDataResponse) []*pb.SyncDataResponse {
		if r.GetResults() != nil || r.GetResult() != nil {
			return []*pb.SyncDataResponse{r, r}
		}
		return []*pb.SyncDataResponse{r}
	}
	client, tok = lyingSession(t, ctx, t.TempDir(), dup)
	src, files = hostileFiles(t, ctx, client, tok, t.TempDir(), 2, 1000)
	s = &syncer.Sender{Client: client, Token: tok, Source: src}
	if err := s.Ship(ctx, files); err == nil || !strings.Contains(err.Error(), "second result") {
		t.Fatalf("Ship against a slave repeating results: %v, want a protocol error", err)
	}
}

// TestIssue18SlaveHugeSignature: a slave that answers a 100 KiB file with
// a signature of 60 MB (valid, for a 3 GB copy: 12 such files took a
// master to 1.3 GB) does not get it used: a signature is bounded by the
// file's size, and the file goes whole and arrives.
func TestIssue18SlaveHugeSignature(t *testing.T) {
	sroot, mdir := t.TempDir(), t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const blocks = 3_000_000
	huge := &delta.Signature{BlockSize: delta.MinBlock, Size: blocks * delta.MinBlock, Weak: make([]uint32, blocks), Strong: make([][16]byte, blocks)}
	hb, err := huge.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	inflate := func(r *pb.SyncDataResponse) []*pb.SyncDataResponse {
		if w := r.GetWant(); w != nil && w.GetSend() {
			w.Signature = hb
		}
		return []*pb.SyncDataResponse{r}
	}
	client, tok := lyingSession(t, ctx, sroot, inflate)
	src, files := hostileFiles(t, ctx, client, tok, mdir, 1, 100<<10)
	files[0].NoInline = true
	s := &syncer.Sender{Client: client, Token: tok, Source: src}
	if err := s.Ship(ctx, files); err != nil {
		t.Fatalf("Ship: %v", err)
	}
	f := files[0]
	if !f.OK() || f.Delta {
		t.Fatalf("file: %+v, want it sent whole and OK", f)
	}
	got, err := os.ReadFile(filepath.Join(sroot, src.names[f.GFID]))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(mdir, src.names[f.GFID]))
	if string(got) != string(want) {
		t.Fatal("the slave's copy differs from the master's")
	}
}
