// Package metrics exposes a master's figures in the Prometheus text format:
// the session's status (read from its syncstatus snapshot at each scrape,
// so there is one set of counters, not two), the batch durations, and the
// Go runtime's and process's own metrics. Everything lives in the
// Metrics' own registry: nothing is global.
//
// Why client_golang: the exposition format has escaping, histogram and
// content-negotiation rules that the well-kept client gets right.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/georep/georep/internal/syncstatus"
)

// Metrics is one master's registry.
type Metrics struct {
	reg   *prometheus.Registry
	batch *prometheus.HistogramVec
}

// batchBuckets: from a few ms (a small live batch on loopback) to about
// 20 minutes (the initial crawl of a large tree), by factors of 4.
var batchBuckets = prometheus.ExponentialBuckets(0.005, 4, 10)

// New returns a registry with the batch histogram and the Go and process
// collectors; Watch adds the session's figures.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		batch: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "georep_batch_duration_seconds",
			Help:    "Time one attempt at a batch took (a crawl's journal or changelog segments), by result.",
			Buckets: batchBuckets,
		}, []string{"result"}),
	}
	m.reg.MustRegister(m.batch,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveBatch records one batch attempt (syncstatus.Options.OnBatch).
func (m *Metrics) ObserveBatch(d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "failed"
	}
	m.batch.WithLabelValues(result).Observe(d.Seconds())
}

// Watch exposes the figures snapshot returns, read at each scrape.
func (m *Metrics) Watch(snapshot func() syncstatus.Snapshot) error {
	if err := m.reg.Register(&statusCollector{snapshot: snapshot}); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Serve serves h at /metrics on lis until ctx ends.
func Serve(ctx context.Context, lis net.Listener, h http.Handler) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	defer stop()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: serving: %w", err)
	}
	return nil
}

var (
	descFiles    = prometheus.NewDesc("georep_files_synced_total", "Files whose data was sent to the slave (files found current are not counted).", nil, nil)
	descBytes    = prometheus.NewDesc("georep_bytes_synced_total", "File data sent on the wire, after compression, without what deltas let the slave rebuild.", nil, nil)
	descDeletes  = prometheus.NewDesc("georep_deletes_total", "Removals applied on the slave.", nil, nil)
	descFailures = prometheus.NewDesc("georep_failures_total", "Ops the slave could not apply, and batch attempts that failed whole, over every attempt.", nil, nil)
	descPending  = prometheus.NewDesc("georep_pending", "Work not yet done: the current batch's entry, data and meta ops; a hybrid crawl's files, bytes and deletes.", []string{"kind"}, nil)
	descLag      = prometheus.NewDesc("georep_lag_seconds", "How far the slave is behind: now minus the stime (absent until the slave has a first stime).", nil, nil)
	descSynced   = prometheus.NewDesc("georep_last_synced_timestamp_seconds", "The stime: the slave holds every change made before it.", nil, nil)
	descStatus   = prometheus.NewDesc("georep_status", "1 for the session's status.", []string{"status"}, nil)
	descCrawl    = prometheus.NewDesc("georep_crawl_progress", "The last hybrid crawl's files and bytes, done and in all.", []string{"measure"}, nil)
	descCkpt     = prometheus.NewDesc("georep_checkpoint_completed", "1 when the checkpoint is completed, 0 when not, -1 when invalid (absent without a checkpoint).", nil, nil)
	descCkptTime = prometheus.NewDesc("georep_checkpoint_target_timestamp_seconds", "The checkpoint's target time.", nil, nil)
	descBW       = prometheus.NewDesc("georep_bandwidth_limit_bytes_per_second", "The cap on file data now in force (0: none).", nil, nil)
	descBWNext   = prometheus.NewDesc("georep_bandwidth_next_change_timestamp_seconds", "When the bandwidth schedule next changes the cap (absent: never).", nil, nil)
	descScrubs   = prometheus.NewDesc("georep_scrubs_total", "Scrubs finished (a verify of the slave by content beside replication).", nil, nil)
	descScrubDif = prometheus.NewDesc("georep_scrub_differences_total", "Differences scrubs found on the slave where nothing was in flight (damage).", nil, nil)
	descScrubAt  = prometheus.NewDesc("georep_scrub_last_finished_timestamp_seconds", "When the last scrub finished (absent before the first).", nil, nil)
	descEvents   = prometheus.NewDesc("georep_events_total", "Event hook deliveries, by result: delivered, failed (after its retries), dropped (queue full).", []string{"result"}, nil)
)

type statusCollector struct {
	snapshot func() syncstatus.Snapshot
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFiles, descBytes, descDeletes, descFailures, descPending, descLag, descSynced, descStatus, descCrawl, descCkpt, descCkptTime, descBW, descBWNext, descEvents, descScrubs, descScrubDif, descScrubAt} {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshot()
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(descFiles, s.Totals.FilesSynced)
	counter(descBytes, s.Totals.BytesSynced)
	counter(descDeletes, s.Totals.Deletes)
	counter(descFailures, s.Totals.Failures)
	for _, p := range []struct {
		kind string
		v    int64
	}{{"entry", s.Pending.Entry}, {"data", s.Pending.Data}, {"meta", s.Pending.Meta},
		{"files", s.Pending.Files}, {"bytes", s.Pending.Bytes}, {"deletes", s.Pending.Deletes}} {
		gauge(descPending, float64(p.v), p.kind)
	}
	if !s.LastSynced.IsZero() {
		gauge(descLag, max(s.Updated.Sub(s.LastSynced).Seconds(), 0))
		gauge(descSynced, float64(s.LastSynced.UnixNano())/1e9)
	}
	for _, st := range []syncstatus.State{syncstatus.Initializing, syncstatus.Active, syncstatus.Faulty, syncstatus.Paused, syncstatus.Stopped} {
		v := 0.0
		if s.State == st {
			v = 1
		}
		gauge(descStatus, v, string(st))
	}
	if p := s.Progress; p != nil {
		gauge(descCrawl, float64(p.FilesDone), "files_done")
		gauge(descCrawl, float64(p.FilesTotal), "files_total")
		gauge(descCrawl, float64(p.BytesDone), "bytes_done")
		gauge(descCrawl, float64(p.BytesTotal), "bytes_total")
	}
	if cp := s.Checkpoint; cp != nil {
		v := 0.0
		switch cp.Answer() {
		case syncstatus.CheckpointYes:
			v = 1
		case syncstatus.CheckpointInvalid:
			v = -1
		}
		gauge(descCkpt, v)
		gauge(descCkptTime, float64(cp.Target.UnixNano())/1e9)
	}
	if s.Scrub != nil || s.Totals.Scrubs > 0 {
		counter(descScrubs, s.Totals.Scrubs)
		counter(descScrubDif, s.Totals.ScrubDifferences)
	}
	if sc := s.Scrub; sc != nil && !sc.Finished.IsZero() {
		gauge(descScrubAt, float64(sc.Finished.UnixNano())/1e9)
	}
	if bw := s.Bandwidth; bw != nil {
		gauge(descBW, float64(bw.Limit))
		if !bw.Next.IsZero() {
			gauge(descBWNext, float64(bw.Next.UnixNano())/1e9)
		}
	}
	if ev := s.Events; ev != nil {
		for _, r := range []struct {
			result string
			n      uint64
		}{{"delivered", ev.Delivered}, {"failed", ev.Failed}, {"dropped", ev.Dropped}} {
			ch <- prometheus.MustNewConstMetric(descEvents, prometheus.CounterValue, float64(r.n), r.result)
		}
	}
}
