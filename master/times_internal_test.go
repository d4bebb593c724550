package master

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/changelog"
)

// TestBatchSetsTimesRecordedAfterSegmentEnd: a segment holds the records
// the recorder read until its rollover's last drain, so a change made just
// after the segment's end (the time the rollover began) can be in it. The
// batch of that segment must apply the change's times: no later record
// names the file (the soak, seed 3, lost utimes this way when a batch left
// the times of a file changed after its end alone).
func TestBatchSetsTimesRecordedAfterSegmentEnd(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	f := filepath.Join(mroot, "f")
	if err := os.WriteFile(f, []byte("same content"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, once := oneShotMaster(t, mroot, sroot)
	once()
	g, err := m.tree.NS.Get(f)
	if err != nil {
		t.Fatal(err)
	}

	end := time.Now() // the segment's end: the rollover began here
	time.Sleep(20 * time.Millisecond)
	want := time.Date(2114, 3, 4, 5, 6, 7, 8, time.UTC)
	if err := os.Chtimes(f, want, want); err != nil { // then the change, read by the rollover's drain
		t.Fatal(err)
	}
	seg := filepath.Join(t.TempDir(), "seg")
	w, err := changelog.Create(seg, changelog.Header{Type: changelog.TypeLive, StartNS: end.Add(-time.Second).UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(&changelog.Record{Kind: changelog.KindMeta, GFID: g, Op: changelog.OpSetattr}); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := m.open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	segs := []changelog.Segment{{Start: end.Add(-time.Second).UnixNano(), End: end.UnixNano(), Path: seg}}
	if err := m.liveBatch(ctx, l, segs, nil, nil); err != nil {
		t.Fatalf("batch: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(sroot, "f"), &st); err != nil {
		t.Fatal(err)
	}
	if got := time.Unix(0, st.Mtim.Nano()); !got.Equal(want) {
		t.Fatalf("slave mtime %v, want the master's %v", got.UTC(), want)
	}
}
