package batch

import (
	"testing"
	"time"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/gfid"
)

// madeAt is a gfid as gfid.New would have made it at t.
func madeAt(t time.Time) gfid.GFID {
	g := gfid.GFID{6: 0x70, 8: 0x80, 15: 0x5a}
	ms := uint64(t.UnixMilli())
	for i := 0; i < 6; i++ {
		g[i] = byte(ms >> (40 - 8*i))
	}
	return g
}

// TestChangedSinceSync: a crawl's file is compared by content when its
// ctime is after ChangedSince less ctimeSlack, or not recorded, unless
// that ctime is the write of its own gfid (a one-shot's or a killed
// master's gfids are newer than the stime); never when the crawl has no
// ChangedSince (a first sync).
func TestChangedSinceSync(t *testing.T) {
	since := time.Unix(1_700_000_000, 0)
	at := func(d time.Duration) int64 { return since.Add(d).UnixNano() }
	old := madeAt(since.Add(-time.Hour))
	stamped := madeAt(since.Add(10 * time.Second)) // made at since+10s exactly (whole ms)
	for _, tc := range []struct {
		name  string
		since time.Time
		rec   changelog.Record
		want  bool
	}{
		{"first sync", time.Time{}, changelog.Record{GFID: old, HasStat: true, CtimeNS: at(time.Hour)}, false},
		{"changed after", since, changelog.Record{GFID: old, HasStat: true, CtimeNS: at(time.Millisecond)}, true},
		{"changed just before, within the slack", since, changelog.Record{GFID: old, HasStat: true, CtimeNS: at(-ctimeSlack)}, true},
		{"changed before the slack", since, changelog.Record{GFID: old, HasStat: true, CtimeNS: at(-ctimeSlack - 1)}, false},
		{"no ctime recorded", since, changelog.Record{GFID: old, HasStat: true}, true},
		{"no stat (not a crawl's file)", since, changelog.Record{GFID: old, CtimeNS: at(time.Hour)}, false},
		{"its gfid written after the stime, nothing since", since, changelog.Record{GFID: stamped, HasStat: true, CtimeNS: at(10*time.Second + 3*time.Millisecond)}, false},
		{"its gfid written, ctime a coarse tick behind", since, changelog.Record{GFID: stamped, HasStat: true, CtimeNS: at(10*time.Second - 4*time.Millisecond)}, false},
		{"changed after its gfid was written", since, changelog.Record{GFID: stamped, HasStat: true, CtimeNS: at(10*time.Second + time.Millisecond + stampAfter)}, true},
		{"changed well before its gfid's time (a copy carrying it)", since, changelog.Record{GFID: stamped, HasStat: true, CtimeNS: at(10*time.Second - stampBefore - 1)}, true},
		{"a derived gfid tells no time", since, changelog.Record{GFID: gfid.Derived(gfid.Root, "f", 0o100000), HasStat: true, CtimeNS: at(time.Second)}, true},
	} {
		b := (&Batch{}).crawlOptions(CrawlOptions{ChangedSince: tc.since})
		if got := b.changedSinceSync(&tc.rec); got != tc.want {
			t.Errorf("%s: changedSinceSync = %v, want %v", tc.name, got, tc.want)
		}
	}
}
