package events

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Sink names: the hooks, as named in Stats and in the log.
const (
	SinkCommand = "command"
	SinkURL     = "url"
)

// dropLogEvery is the least time between two log lines about events
// dropped from a full queue: an event storm must not become a log storm.
const dropLogEvery = 10 * time.Second

// ErrRunning is returned by Run when the dispatcher already ran.
var ErrRunning = errors.New("events: Run called more than once")

// Stats are the counters of a Dispatcher, for status and metrics. All
// counters only grow.
type Stats struct {
	// Emitted counts the calls to Emit.
	Emitted uint64
	// Command and URL are the counters of each hook; Enabled is false,
	// and the counters zero, for a hook that is not configured.
	Command SinkStats
	URL     SinkStats
}

// SinkStats are the counters of one hook. Once the dispatcher has
// stopped, Delivered+Failed+Dropped equals Stats.Emitted for an enabled
// hook; while it runs the difference is Queued plus the event in flight.
type SinkStats struct {
	// Enabled reports whether the hook is configured.
	Enabled bool
	// Queued is the events waiting now (a gauge, not a counter).
	Queued int
	// Delivered counts the events the hook accepted (exit status 0, or
	// a 2xx reply).
	Delivered uint64
	// Failed counts the events given up after all their attempts failed.
	Failed uint64
	// Dropped counts the events never tried, or not tried to the end:
	// the queue was full, or the dispatcher stopped first.
	Dropped uint64
}

// Dispatcher delivers events to the configured hooks. Emit may be called
// from any goroutine, before, during and after Run; the hooks are only
// run while Run runs. A nil *Dispatcher is valid: Emit does nothing and
// Stats returns zeros, so callers need not check whether events are
// configured.
type Dispatcher struct {
	log     hclog.Logger
	emitted atomic.Uint64
	sinks   []*sink // the enabled hooks, the command first
	command *sink   // nil when not configured
	url     *sink   // nil when not configured
	client  *http.Client
	started atomic.Bool

	// mu orders Emit's sends against Run's shutdown: once closed is
	// set no event enters a queue, so the final drain counts them all.
	// Emit holds it shared, only around non-blocking sends.
	mu     sync.RWMutex
	closed bool
}

// New returns a dispatcher for cfg, or the error from cfg.Validate. A
// nil logger discards the log.
func New(cfg Config, logger hclog.Logger) (*Dispatcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	cfg = cfg.withDefaults()
	d := &Dispatcher{log: logger}
	if len(cfg.Command) > 0 {
		c := &commandHook{argv: append([]string(nil), cfg.Command...), timeout: cfg.Timeout, log: logger}
		d.command = newSink(SinkCommand, cfg, logger, c.deliver)
		d.sinks = append(d.sinks, d.command)
	}
	if cfg.URL != "" {
		h, err := newURLHook(cfg)
		if err != nil {
			return nil, err
		}
		d.client = h.client
		d.url = newSink(SinkURL, cfg, logger, h.deliver)
		d.sinks = append(d.sinks, d.url)
	}
	return d, nil
}

// Emit queues ev for each hook and returns at once: it never waits for a
// hook, a queue or the network. It fills in ev.ID and ev.Time when they
// are empty. An event that finds a hook's queue full, or comes after Run
// has returned, is dropped for that hook, counted, and logged (at most
// once every 10 seconds per hook).
func (d *Dispatcher) Emit(ev Event) {
	if d == nil {
		return
	}
	d.emitted.Add(1)
	if len(d.sinks) == 0 {
		return
	}
	ev, body := encode(ev, time.Now())
	it := &item{kind: ev.Kind, id: ev.ID, session: ev.Session, body: body}
	var full [2]bool // by index in d.sinks
	d.mu.RLock()
	closed := d.closed
	for i, s := range d.sinks {
		if closed {
			s.dropped.Add(1)
			continue
		}
		select {
		case s.queue <- it:
		default:
			full[i] = true
		}
	}
	d.mu.RUnlock()
	if closed {
		d.log.Debug("event dropped: the dispatcher has stopped", "event", ev.Kind, "id", ev.ID)
		return
	}
	for i, s := range d.sinks {
		if full[i] {
			s.dropFull(it)
		}
	}
}

// Run delivers the queued events, and those emitted meanwhile, until ctx
// ends; it then stops the attempts in flight, drops what is left in the
// queues (counting it) and returns nil. It may be called only once; a
// second call returns ErrRunning.
func (d *Dispatcher) Run(ctx context.Context) error {
	if !d.started.CompareAndSwap(false, true) {
		return ErrRunning
	}
	var wg sync.WaitGroup
	for _, s := range d.sinks {
		wg.Go(func() { s.work(ctx) })
	}
	<-ctx.Done()
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	wg.Wait()
	for _, s := range d.sinks {
		s.drain()
	}
	if d.client != nil {
		d.client.CloseIdleConnections()
	}
	return nil
}

// Stats returns the counters.
func (d *Dispatcher) Stats() Stats {
	if d == nil {
		return Stats{}
	}
	return Stats{Emitted: d.emitted.Load(), Command: d.command.stats(), URL: d.url.stats()}
}

// item is an emitted event as the hooks need it, shared by them and
// never modified.
type item struct {
	kind    Kind
	id      string
	session string
	body    []byte // the JSON and a newline
}

// sink is one hook: its queue, its worker's retry loop and its counters.
type sink struct {
	name    string
	log     hclog.Logger
	queue   chan *item
	deliver func(ctx context.Context, it *item) error
	retries int
	backoff time.Duration

	delivered, failed, dropped atomic.Uint64

	// Rate limit of the "dropped" log line: when it was last written
	// (UnixNano), and the drops since.
	lastDropLog atomic.Int64
	unlogged    atomic.Uint64
}

func newSink(name string, cfg Config, log hclog.Logger, deliver func(context.Context, *item) error) *sink {
	return &sink{
		name:    name,
		log:     log.With("sink", name),
		queue:   make(chan *item, cfg.QueueSize),
		deliver: deliver,
		retries: cfg.Retries,
		backoff: min(cfg.Backoff, MaxBackoff),
	}
}

func (s *sink) stats() SinkStats {
	if s == nil {
		return SinkStats{}
	}
	return SinkStats{
		Enabled:   true,
		Queued:    len(s.queue),
		Delivered: s.delivered.Load(),
		Failed:    s.failed.Load(),
		Dropped:   s.dropped.Load(),
	}
}

// dropFull counts an event that found the queue full, and logs it unless
// a drop was logged less than dropLogEvery ago.
func (s *sink) dropFull(it *item) {
	total := s.dropped.Add(1)
	s.unlogged.Add(1)
	now := time.Now().UnixNano()
	last := s.lastDropLog.Load()
	if last != 0 && now-last < int64(dropLogEvery) {
		return
	}
	if !s.lastDropLog.CompareAndSwap(last, now) {
		return // another Emit is logging
	}
	s.log.Warn("events dropped: the hook's queue is full (the hook is slow or failing)",
		"event", it.kind, "id", it.id, "dropped", s.unlogged.Swap(0), "dropped_total", total,
		"queue_size", cap(s.queue))
}

// work delivers the queued events in order until ctx ends.
func (s *sink) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case it := <-s.queue:
			if ctx.Err() != nil {
				s.dropped.Add(1)
				return
			}
			s.send(ctx, it)
		}
	}
}

// send tries it up to 1+retries times, waiting the back-off between
// attempts, and counts the outcome.
func (s *sink) send(ctx context.Context, it *item) {
	attempts := 1 + s.retries
	wait := s.backoff
	for n := 1; ; n++ {
		err := s.deliver(ctx, it)
		switch {
		case err == nil:
			s.delivered.Add(1)
			if n > 1 {
				s.log.Info("event delivered after retries", "event", it.kind, "id", it.id, "attempts", n)
			}
			return
		case ctx.Err() != nil:
			s.dropped.Add(1)
			s.log.Debug("event dropped: stopping during its delivery", "event", it.kind, "id", it.id)
			return
		case n == attempts:
			s.failed.Add(1)
			s.log.Error("event delivery failed, giving it up", "event", it.kind, "id", it.id,
				"attempts", n, "error", err)
			return
		}
		s.log.Warn("event delivery failed, will retry", "event", it.kind, "id", it.id,
			"attempt", n, "of", attempts, "retry_in", wait, "error", err)
		if !sleep(ctx, wait) {
			s.dropped.Add(1)
			s.log.Debug("event dropped: stopping during its delivery", "event", it.kind, "id", it.id)
			return
		}
		wait = min(2*wait, MaxBackoff)
	}
}

// drain drops, counting them, the events left in the queue once the
// worker has stopped.
func (s *sink) drain() {
	var n uint64
	for {
		select {
		case <-s.queue:
			n++
			continue
		default:
		}
		break
	}
	if n > 0 {
		s.dropped.Add(n)
		s.log.Warn("events dropped: stopping with events queued", "dropped", n)
	}
}

// sleep waits d or until ctx ends, and reports whether it waited d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
