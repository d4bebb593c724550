package master_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/master"
	pb "github.com/georep/georep/proto/georep/v1"
)

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDeltaSendsOnlyChanges: 1 MiB overwritten in the middle of a 16 MiB
// file the slave already has goes as a delta: about 1 MiB of literal data,
// the rest rebuilt from the slave's old copy.
func TestDeltaSendsOnlyChanges(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	const size, change = 16 << 20, 1 << 20
	data := randomBytes(size, 1)
	write(t, filepath.Join(mroot, "big"), data)
	sl := testenv.StartSlave(t, sroot)
	m := newMaster(t, mroot, sl.Addr, nil)
	runOnce(t, m)
	copy(data[size/2:], randomBytes(change, 2))
	write(t, filepath.Join(mroot, "big"), data)
	sum := runOnce(t, m)
	testenv.RequireEqual(t, mroot, sroot)
	b := sum.Batch
	if b.Deltas != 1 {
		t.Errorf("deltas = %d, want 1", b.Deltas)
	}
	if b.BytesSent > change+256<<10 {
		t.Errorf("sent %d bytes for a %d-byte change", b.BytesSent, change)
	}
	if b.BytesMatched < size-change-256<<10 {
		t.Errorf("rebuilt %d bytes from the old copy, want about %d", b.BytesMatched, size-change)
	}
}

// tamper corrupts the first byte of literal data of the first n files'
// transfers on their way into the slave, as a faulty link or disk would.
func tamper(n int64) (grpc.ServerOption, *atomic.Int64) {
	var hits atomic.Int64
	return grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &tamperStream{ServerStream: ss, left: n, hits: &hits})
	}), &hits
}

type tamperStream struct {
	grpc.ServerStream
	left int64
	hits *atomic.Int64
	done map[uint64]bool
}

func (s *tamperStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	req, ok := m.(*pb.SyncDataRequest)
	if !ok {
		return nil
	}
	for _, c := range testenv.DataChunks(req) {
		if len(c.Data) > 0 && !c.Compressed {
			if s.done == nil {
				s.done = map[uint64]bool{}
			}
			if !s.done[c.Id] && s.hits.Load() < s.left {
				s.done[c.Id] = true
				s.hits.Add(1)
				c.Data[0] ^= 0xff
			}
		}
	}
	return nil
}

// TestHashMismatchRetriedOnceWhole: a file the slave built wrong is sent
// again whole, once; it converges.
func TestHashMismatchRetriedOnceWhole(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	write(t, filepath.Join(mroot, "f"), randomBytes(100<<10, 3))
	opt, hits := tamper(1)
	sl := testenv.StartSlave(t, sroot, opt)
	sum := runOnce(t, newMaster(t, mroot, sl.Addr, nil))
	if hits.Load() != 1 || sum.Batch.HashRetries != 1 {
		t.Errorf("tampered %d transfers, %d hash retries; want 1 and 1", hits.Load(), sum.Batch.HashRetries)
	}
	testenv.RequireEqual(t, mroot, sroot)
}

// TestHashMismatchTwiceFails: when the whole-file retry is corrupted too,
// the run fails with HASH_MISMATCH and the marks do not move.
func TestHashMismatchTwiceFails(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	write(t, filepath.Join(mroot, "f"), randomBytes(100<<10, 4))
	opt, _ := tamper(1 << 30)
	sl := testenv.StartSlave(t, sroot, opt)
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.Retries = 1 })
	_, err := m.RunOnce(context.Background())
	if err == nil || !strings.Contains(err.Error(), "HASH_MISMATCH") {
		t.Fatalf("RunOnce with a corrupting link = %v, want a HASH_MISMATCH failure", err)
	}
	if st, err := m.Stime(); err != nil || !st.IsZero() {
		t.Errorf("stime advanced to %v (%v) although data failed", st, err)
	}
	if b, _ := os.ReadFile(filepath.Join(sroot, "f")); len(b) != 0 {
		t.Errorf("the slave installed %d bytes of a file that failed its hash", len(b))
	}
}

// TestCompress: compressible data crosses the wire compressed, in big
// files and in small ones (sent inline, in their headers).
func TestCompress(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	text := bytes.Repeat([]byte("georep replicates directory trees. "), 200000) // 7 MB
	write(t, filepath.Join(mroot, "text"), text)
	write(t, filepath.Join(mroot, "random"), randomBytes(1<<20, 5))
	small := text[:60<<10] // inline (at most syncer.InlineMax)
	for i := range 40 {
		write(t, filepath.Join(mroot, "small", fmt.Sprintf("t%02d", i)), small)
	}
	sl := testenv.StartSlave(t, sroot)
	sum := runOnce(t, newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.Compress = true }))
	testenv.RequireEqual(t, mroot, sroot)
	compressible := int64(len(text) + 40*len(small))
	raw := compressible + 1<<20
	if sum.Batch.BytesSent > int64(1<<20)+compressible/10 {
		t.Errorf("with --compress sent %d bytes of %d (text should shrink >10x; random data not at all)", sum.Batch.BytesSent, raw)
	}
}

// TestBWLimit: 3 MiB at 1 MiB/s cannot take less than about 2 s (the first
// 256 KiB burst is free). Only a lower bound is checked: a slow machine
// cannot make it fail.
func TestBWLimit(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	write(t, filepath.Join(mroot, "f"), randomBytes(3<<20, 6))
	sl := testenv.StartSlave(t, sroot)
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.BWLimit = 1 << 20 })
	t0 := time.Now()
	runOnce(t, m)
	if d := time.Since(t0); d < 2500*time.Millisecond {
		t.Errorf("3 MiB at 1 MiB/s took %s", d)
	}
	testenv.RequireEqual(t, mroot, sroot)
}

// TestSparseStaysSparse: holes are sent as zero runs and stay holes.
func TestSparseStaysSparse(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	size := int64(256 << 20)
	if !testing.Short() && !raceEnabled {
		// Past 4 GiB, so that offsets must not wrap (under the race
		// detector hashing 5 GiB of zeros takes minutes: 256 MiB then).
		size = 5 << 30
	}
	p := filepath.Join(mroot, "sparse")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, size / 3, size - 4096} {
		if _, err := f.WriteAt(randomBytes(4096, uint64(off)), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	sl := testenv.StartSlave(t, sroot)
	sum := runOnce(t, newMaster(t, mroot, sl.Addr, nil))
	if sum.Batch.BytesSent > 1<<20 {
		t.Errorf("sent %d bytes for 12 KiB of data in holes", sum.Batch.BytesSent)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(sroot, "sparse"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != size || st.Blocks*512 > 16<<20 {
		t.Errorf("slave copy: size %d (want %d), %d bytes allocated (want it sparse)", st.Size, size, st.Blocks*512)
	}
	testenv.RequireEqual(t, mroot, sroot)
}

// bulkDescriptors counts the chunks a slave is told to read from a data
// connection, and the literal bytes that come in messages.
func bulkDescriptors() (grpc.ServerOption, *atomic.Int64, *atomic.Int64) {
	var descs, inMsgs atomic.Int64
	return grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &observeStream{ServerStream: ss, see: func(req *pb.SyncDataRequest) {
			for _, c := range testenv.DataChunks(req) {
				if c.GetBulkLength() > 0 {
					descs.Add(1)
				}
				inMsgs.Add(int64(len(c.GetData())))
			}
		}})
	}), &descs, &inMsgs
}

type observeStream struct {
	grpc.ServerStream
	see func(*pb.SyncDataRequest)
}

func (s *observeStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if req, ok := m.(*pb.SyncDataRequest); ok && err == nil {
		s.see(req)
	}
	return err
}

// TestDataConnection: by default a one-shot sends a large file's bytes on
// a data connection beside the stream (a few first chunks may go in
// messages while it opens); with NoDataConn, all of them go in messages.
// Both replicate exactly.
func TestDataConnection(t *testing.T) {
	const size = 6 << 20
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoDataConn=%v", off), func(t *testing.T) {
			mroot, sroot := t.TempDir(), t.TempDir()
			write(t, filepath.Join(mroot, "big"), randomBytes(size, 9))
			write(t, filepath.Join(mroot, "small"), randomBytes(5000, 10))
			opt, descs, inMsgs := bulkDescriptors()
			sl := testenv.StartSlave(t, sroot, opt)
			m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.NoDataConn = off })
			sum := runOnce(t, m)
			testenv.RequireEqual(t, mroot, sroot)
			if sum.Batch.BytesSent != size+5000 {
				t.Errorf("sent %d bytes, want %d", sum.Batch.BytesSent, size+5000)
			}
			switch {
			case off && (descs.Load() != 0 || inMsgs.Load() != size+5000):
				t.Errorf("NoDataConn: %d chunks on a data connection, %d bytes in messages", descs.Load(), inMsgs.Load())
			case !off && (descs.Load() == 0 || inMsgs.Load() > size/2):
				t.Errorf("%d chunks on a data connection, %d of %d bytes in messages", descs.Load(), inMsgs.Load(), size+5000)
			}
		})
	}
}
