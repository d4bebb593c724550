package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/georep/georep/internal/syncstatus"
)

// TestScrape serves a session's figures on a loopback port and scrapes
// them as Prometheus would: the text parses, and the values are the
// session's.
func TestScrape(t *testing.T) {
	m := New()
	tr, err := syncstatus.NewTracker(syncstatus.Options{StateDir: t.TempDir(), OnBatch: m.ObserveBatch})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Watch(tr.Snapshot); err != nil {
		t.Fatal(err)
	}
	tr.SetIdentity(syncstatus.Identity{Session: "s", MasterVolume: "m"})
	tr.SessionOpen()
	tr.CrawlStarted(syncstatus.HybridCrawl)
	tr.CrawlFound(100)
	tr.CrawlListed()
	tr.BatchProgress(syncstatus.Batch{FilesSynced: 4, BytesSynced: 4096, Deletes: 2, DataPending: 3, EntryPending: 5})
	tr.BatchEnded(1500*time.Millisecond, errors.New("link failed"))
	tr.BatchProgress(syncstatus.Batch{DataPending: 3, EntryPending: 5, FilesDone: 1, BytesDone: 100})
	synced := time.Now().Add(-90 * time.Second)
	tr.Synced(synced)
	if _, err := tr.SetCheckpoint(synced.Add(time.Second)); err != nil {
		t.Fatal(err)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, lis, m.Handler()) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	resp, err := http.Get("http://" + lis.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	value := func(name string, labels ...string) float64 {
		t.Helper()
		f, ok := fams[name]
		if !ok {
			t.Fatalf("no %s in the scrape", name)
		}
	next:
		for _, mt := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(mt, labels[i], labels[i+1]) {
					continue next
				}
			}
			switch {
			case mt.GetCounter() != nil:
				return mt.GetCounter().GetValue()
			case mt.GetGauge() != nil:
				return mt.GetGauge().GetValue()
			}
		}
		t.Fatalf("no %s%v in the scrape", name, labels)
		return 0
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"georep_files_synced_total", nil, 4},
		{"georep_bytes_synced_total", nil, 4096},
		{"georep_deletes_total", nil, 2},
		{"georep_failures_total", nil, 1},
		{"georep_pending", []string{"kind", "data"}, 3},
		{"georep_pending", []string{"kind", "entry"}, 5},
		{"georep_pending", []string{"kind", "files"}, 0},
		{"georep_status", []string{"status", "Faulty"}, 1},
		{"georep_status", []string{"status", "Active"}, 0},
		{"georep_crawl_progress", []string{"measure", "bytes_total"}, 100},
		{"georep_checkpoint_completed", nil, 0},
	} {
		if got := value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if lag := value("georep_lag_seconds"); lag < 90 || lag > 600 {
		t.Errorf("lag %v s, want about 90", lag)
	}
	h := fams["georep_batch_duration_seconds"]
	if h == nil || len(h.GetMetric()) != 1 || h.GetMetric()[0].GetHistogram().GetSampleCount() != 1 ||
		!hasLabel(h.GetMetric()[0], "result", "failed") || h.GetMetric()[0].GetHistogram().GetSampleSum() != 1.5 {
		t.Errorf("batch histogram: %v", h)
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}
