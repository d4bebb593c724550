package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// liveness bounds how long a test waits for something that must happen;
// it is a guard against hanging, not a timing assertion.
const liveness = 60 * time.Second

// logBuf is the test logger's output, safe to read while written.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newDispatcher returns a dispatcher for cfg logging into the returned
// buffer (and, with -v, the test log at the end).
func newDispatcher(t *testing.T, cfg Config) (*Dispatcher, *logBuf) {
	t.Helper()
	lb := &logBuf{}
	d, err := New(cfg, hclog.New(&hclog.LoggerOptions{Name: "events", Output: lb, Level: hclog.Debug}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if testing.Verbose() {
			t.Logf("log:\n%s", lb)
		}
	})
	return d, lb
}

// start runs d until the returned stop is called (or the test ends);
// stop returns once Run has.
func start(t *testing.T, d *Dispatcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(liveness):
				t.Fatal("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(liveness)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// checkBalance checks that, once stopped, every emitted event is
// accounted for by each enabled hook.
func checkBalance(t *testing.T, st Stats) {
	t.Helper()
	for name, s := range map[string]SinkStats{SinkCommand: st.Command, SinkURL: st.URL} {
		if !s.Enabled {
			continue
		}
		if got := s.Delivered + s.Failed + s.Dropped; got != st.Emitted || s.Queued != 0 {
			t.Errorf("%s: delivered %d + failed %d + dropped %d = %d, queued %d; emitted %d",
				name, s.Delivered, s.Failed, s.Dropped, got, s.Queued, st.Emitted)
		}
	}
}

// script writes an executable shell script into dir.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// recorder is a webhook receiver recording what it accepted.
type recorder struct {
	mu     sync.Mutex
	bodies [][]byte
	reqs   []*http.Request
}

func (r *recorder) add(req *http.Request, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bodies = append(r.bodies, body)
	r.reqs = append(r.reqs, req)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies)
}

// events decodes the bodies recorded.
func (r *recorder) events(t *testing.T) []Event {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var evs []Event
	for _, b := range r.bodies {
		var ev Event
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatalf("body %q: %v", b, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// TestWebhookDeliversInOrder: a real HTTP server receives every event,
// in order, as the JSON of the contract, with the configured headers.
func TestWebhookDeliversInOrder(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading the body: %v", err)
		}
		rec.add(r, body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	d, _ := newDispatcher(t, Config{
		URL:     srv.URL + "/hooks/georep?x=1",
		Headers: map[string]string{"Authorization": "Bearer s3cret", "x-team": "storage"},
	})
	stop := start(t, d)

	const n = 100
	zone := time.FixedZone("CEST", 2*3600)
	when := time.Date(2026, 8, 17, 23, 24, 33, 123456789, zone)
	kinds := []Kind{KindFaulty, KindActive, KindCheckpointCompleted, KindBatchFailed, KindCrawlFinished}
	for i := range n {
		d.Emit(Event{
			Kind:       kinds[i%len(kinds)],
			Time:       when.Add(time.Duration(i) * time.Second),
			Session:    "backup",
			MasterRoot: "/srv/data",
			Slave:      "nas.example.net:7400",
			Message:    fmt.Sprintf("event %d", i),
			Details:    map[string]any{"n": i, "error": errors.New("disk full")},
		})
	}
	waitFor(t, "all events delivered", func() bool { return d.Stats().URL.Delivered == n })
	stop()

	evs := rec.events(t)
	if len(evs) != n {
		t.Fatalf("server got %d events, want %d", len(evs), n)
	}
	ids := map[string]bool{}
	for i, ev := range evs {
		want := Event{
			Kind:       kinds[i%len(kinds)],
			ID:         ev.ID,
			Time:       when.Add(time.Duration(i) * time.Second).UTC(),
			Session:    "backup",
			MasterRoot: "/srv/data",
			Slave:      "nas.example.net:7400",
			Message:    fmt.Sprintf("event %d", i),
			Details:    map[string]any{"n": float64(i), "error": "disk full"},
		}
		if !reflect.DeepEqual(ev, want) {
			t.Fatalf("event %d:\n got %+v\nwant %+v", i, ev, want)
		}
		if ev.ID == "" || ids[ev.ID] {
			t.Fatalf("event %d: id %q empty or not unique", i, ev.ID)
		}
		ids[ev.ID] = true
	}

	// The wire form itself: the keys of the contract, the time in UTC.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(rec.bodies[0], &raw); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range raw {
		keys = append(keys, k)
	}
	wantKeys := []string{"details", "event", "id", "master_root", "message", "session", "slave", "time"}
	if !sameSet(keys, wantKeys) {
		t.Errorf("keys %v, want %v", keys, wantKeys)
	}
	if got := string(raw["time"]); got != `"2026-08-17T21:24:33.123456789Z"` {
		t.Errorf("time %s, want UTC RFC 3339 with nanoseconds", got)
	}
	if !bytes.HasSuffix(rec.bodies[0], []byte("}\n")) {
		t.Errorf("body %q does not end with a newline", rec.bodies[0])
	}

	r := rec.reqs[0]
	for k, want := range map[string]string{
		"Content-Type":   "application/json",
		"Authorization":  "Bearer s3cret",
		"X-Team":         "storage",
		"X-Georep-Event": "FAULTY",
	} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("header %s: %q, want %q", k, got, want)
		}
	}
	if r.Method != http.MethodPost || r.URL.Path != "/hooks/georep" || r.URL.RawQuery != "x=1" {
		t.Errorf("request %s %s", r.Method, r.URL)
	}
	st := d.Stats()
	if st.Emitted != n || st.URL.Failed != 0 || st.URL.Dropped != 0 || st.Command.Enabled {
		t.Errorf("stats %+v", st)
	}
	checkBalance(t, st)
}

func sameSet(a, b []string) bool {
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return len(a) == len(b)
}

// TestWebhookRetries: a server that fails the first two attempts gets
// the event on the third, the same event each time.
func TestWebhookRetries(t *testing.T) {
	rec := &recorder{}
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.add(r, body)
		if calls.Add(1) <= 2 {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
	}))
	defer srv.Close()
	d, lb := newDispatcher(t, Config{URL: srv.URL, Retries: 3, Backoff: time.Millisecond})
	stop := start(t, d)
	d.Emit(Event{Kind: KindCheckpointCompleted, Session: "s", Details: map[string]any{"checkpoint": "2026-08-17T21:00:00Z"}})
	waitFor(t, "delivery", func() bool { return d.Stats().URL.Delivered == 1 })
	stop()

	if calls.Load() != 3 {
		t.Errorf("%d attempts, want 3", calls.Load())
	}
	evs := rec.events(t)
	for _, ev := range evs[1:] {
		if ev.ID != evs[0].ID || ev.Kind != KindCheckpointCompleted {
			t.Errorf("retry sent %+v, first attempt %+v", ev, evs[0])
		}
	}
	if st := d.Stats().URL; st.Failed != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
	log := lb.String()
	for _, want := range []string{"will retry", "503 Service Unavailable", `\"not yet\"`, "delivered after retries"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// TestWebhookAlwaysFails: a server that always answers 500 has each
// event tried 1+Retries times, then counted as failed, with the reply in
// the log; the command hook gets every event all the same.
func TestWebhookAlwaysFails(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "database on fire", http.StatusInternalServerError)
	}))
	defer srv.Close()
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	hook := script(t, dir, "hook", `cat >> "$1"`+"\n")
	d, lb := newDispatcher(t, Config{URL: srv.URL, Command: []string{hook, out}, Retries: 2, Backoff: time.Millisecond})
	stop := start(t, d)
	for i := range 3 {
		d.Emit(Event{Kind: KindBatchFailed, Message: strconv.Itoa(i)})
	}
	waitFor(t, "all given up or delivered", func() bool {
		st := d.Stats()
		return st.URL.Failed == 3 && st.Command.Delivered == 3
	})
	stop()

	if calls.Load() != 9 {
		t.Errorf("%d attempts, want 3 events × 3", calls.Load())
	}
	st := d.Stats()
	if st.URL.Delivered != 0 || st.Command.Failed != 0 {
		t.Errorf("stats %+v", st)
	}
	checkBalance(t, st)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(string(data), "\n"); lines != 3 {
		t.Errorf("command got %d events:\n%s", lines, data)
	}
	log := lb.String()
	for _, want := range []string{"giving it up", "500 Internal Server Error", "database on fire", "attempts=3"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, srv.URL) {
		t.Errorf("log holds the URL, which may be a secret:\n%s", log)
	}
}

// TestWebhookFailedEventDoesNotStopOthers: an event the server refuses
// is given up, and those after it are still delivered, in order.
func TestWebhookFailedEventDoesNotStopOthers(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(`"message":"bad"`)) {
			http.Error(w, "refused", http.StatusBadRequest)
			return
		}
		rec.add(r, body)
	}))
	defer srv.Close()
	d, _ := newDispatcher(t, Config{URL: srv.URL, Retries: 1, Backoff: time.Millisecond})
	stop := start(t, d)
	for _, m := range []string{"one", "bad", "two", "three"} {
		d.Emit(Event{Kind: KindActive, Message: m})
	}
	waitFor(t, "the events", func() bool {
		st := d.Stats().URL
		return st.Delivered == 3 && st.Failed == 1
	})
	stop()
	var got []string
	for _, ev := range rec.events(t) {
		got = append(got, ev.Message)
	}
	if want := []string{"one", "two", "three"}; !reflect.DeepEqual(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
}

// hangingServer is a webhook receiver that accepts requests and answers
// none until released (or the client gives up).
type hangingServer struct {
	*httptest.Server
	release   chan struct{}
	arrived   atomic.Int32 // requests received
	cancelled atomic.Int32 // requests the client gave up
	answered  atomic.Int32 // requests answered after the release
}

func newHangingServer(t *testing.T) *hangingServer {
	h := &hangingServer{release: make(chan struct{})}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the body: only then does the server watch the connection
		// and cancel r.Context() when the client goes away.
		_, _ = io.ReadAll(r.Body)
		h.arrived.Add(1)
		select {
		case <-h.release:
			h.answered.Add(1)
		case <-r.Context().Done():
			h.cancelled.Add(1)
		}
	}))
	t.Cleanup(h.Close)
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(h.release) }) }) // runs before h.Close
	return h
}

// TestWebhookTimeout: an attempt the server does not answer is abandoned
// at the timeout (the server sees the request cancelled), retried, and
// the event counted as failed.
func TestWebhookTimeout(t *testing.T) {
	srv := newHangingServer(t)
	d, lb := newDispatcher(t, Config{URL: srv.URL, Timeout: 50 * time.Millisecond, Retries: 1, Backoff: time.Millisecond})
	stop := start(t, d)
	d.Emit(Event{Kind: KindFaulty})
	waitFor(t, "the event given up", func() bool { return d.Stats().URL.Failed == 1 })
	waitFor(t, "the server to see both attempts cancelled", func() bool { return srv.cancelled.Load() == 2 })
	stop()
	if srv.arrived.Load() != 2 || srv.answered.Load() != 0 {
		t.Errorf("server: %d requests, %d answered", srv.arrived.Load(), srv.answered.Load())
	}
	if !strings.Contains(lb.String(), "no reply within 50ms") {
		t.Errorf("log lacks the timeout:\n%s", lb)
	}
}

// TestEmitNeverBlocks: while the webhook hangs on the first event, 10,000
// more are emitted: every Emit returns while the server still hangs, the
// queue holds QueueSize of them and the rest are dropped and counted.
// Stopping then abandons the attempt in flight and drops the queue.
func TestEmitNeverBlocks(t *testing.T) {
	srv := newHangingServer(t)
	const queue, n = 8, 10000
	d, lb := newDispatcher(t, Config{URL: srv.URL, QueueSize: queue, Timeout: time.Hour})
	stop := start(t, d)
	d.Emit(Event{Kind: KindFaulty, Message: "first"})
	waitFor(t, "the first request", func() bool { return srv.arrived.Load() == 1 })

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			d.Emit(Event{Kind: KindBatchFailed, Message: strconv.Itoa(i), Details: map[string]any{"i": i}})
		}
	}()
	select {
	case <-done:
	case <-time.After(liveness):
		t.Fatal("Emit blocked while the webhook hangs")
	}
	// All returned, and the server is still holding the first request.
	if srv.answered.Load() != 0 || srv.cancelled.Load() != 0 || srv.arrived.Load() != 1 {
		t.Fatalf("server no longer hanging: %d arrived, %d answered, %d cancelled",
			srv.arrived.Load(), srv.answered.Load(), srv.cancelled.Load())
	}
	st := d.Stats()
	if st.Emitted != n+1 || st.URL.Queued != queue || st.URL.Dropped != n-queue || st.URL.Delivered != 0 {
		t.Errorf("stats while hanging %+v", st)
	}
	// Drops are logged, but not once each.
	if lines := strings.Count(lb.String(), "queue is full"); lines < 1 || lines > 100 {
		t.Errorf("%d log lines about drops", lines)
	}

	stop() // must return although the server still hangs
	waitFor(t, "the server to see the request cancelled", func() bool { return srv.cancelled.Load() == 1 })
	st = d.Stats()
	if st.URL.Dropped != n+1 || st.URL.Failed != 0 {
		t.Errorf("stats after stop %+v", st)
	}
	checkBalance(t, st)

	// After Run, Emit still returns, and counts the drop.
	d.Emit(Event{Kind: KindActive})
	if st := d.Stats(); st.URL.Dropped != n+2 {
		t.Errorf("emit after stop: stats %+v", st)
	}
}

// TestSlowHookDoesNotDelayOther: the command hook gets every event while
// the webhook hangs on the first.
func TestSlowHookDoesNotDelayOther(t *testing.T) {
	srv := newHangingServer(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	hook := script(t, dir, "hook", `cat >> "$1"`+"\n")
	d, _ := newDispatcher(t, Config{URL: srv.URL, Command: []string{hook, out}, Timeout: time.Hour})
	start(t, d)
	for i := range 5 {
		d.Emit(Event{Kind: KindCrawlFinished, Message: strconv.Itoa(i)})
	}
	waitFor(t, "the command to get the events", func() bool { return d.Stats().Command.Delivered == 5 })
	waitFor(t, "the first request", func() bool { return srv.arrived.Load() == 1 })
	if srv.arrived.Load() != 1 || srv.answered.Load() != 0 || srv.cancelled.Load() != 0 {
		t.Errorf("server no longer hanging: %d arrived", srv.arrived.Load())
	}
	if st := d.Stats().URL; st.Delivered != 0 || st.Queued != 4 {
		t.Errorf("webhook stats %+v", st)
	}
}

// TestCommandDelivers: a real command gets each event, in order, as JSON
// on stdin, with GEOREP_EVENT and GEOREP_SESSION set and georep's own
// environment kept.
func TestCommandDelivers(t *testing.T) {
	t.Setenv("GEOREP_TEST_INHERITED", "kept")
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	hook := script(t, dir, "hook", `{ cat; echo "$GEOREP_EVENT $GEOREP_SESSION $GEOREP_EVENT_ID $GEOREP_TEST_INHERITED"; } >> "$1"`+"\n")
	d, _ := newDispatcher(t, Config{Command: []string{hook, out}})
	stop := start(t, d)
	kinds := []Kind{KindFaulty, KindActive, KindCheckpointCompleted, KindBatchFailed, KindCrawlFinished}
	for i, k := range kinds {
		d.Emit(Event{Kind: k, Session: "sess-" + strconv.Itoa(i), Message: "m" + strconv.Itoa(i)})
	}
	waitFor(t, "delivery", func() bool { return d.Stats().Command.Delivered == uint64(len(kinds)) })
	stop()

	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 2*len(kinds) {
		t.Fatalf("output:\n%s", data)
	}
	for i, k := range kinds {
		var ev Event
		if err := json.Unmarshal([]byte(lines[2*i]), &ev); err != nil {
			t.Fatalf("line %q: %v", lines[2*i], err)
		}
		if ev.Kind != k || ev.Session != "sess-"+strconv.Itoa(i) || ev.Message != "m"+strconv.Itoa(i) || ev.Time.IsZero() {
			t.Errorf("event %d: %+v", i, ev)
		}
		if want := fmt.Sprintf("%s sess-%d %s kept", k, i, ev.ID); lines[2*i+1] != want {
			t.Errorf("environment %q, want %q", lines[2*i+1], want)
		}
	}
	checkBalance(t, d.Stats())
}

// TestCommandFails: a command exiting 1 is tried 1+Retries times, then
// the event is counted as failed, its last stderr line in the log.
func TestCommandFails(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	hook := script(t, dir, "hook", `echo run >> "$1"
echo "some noise" >&2
echo "hook broke: disk full" >&2
exit 1
`)
	d, lb := newDispatcher(t, Config{Command: []string{hook, count}, Retries: 2, Backoff: time.Millisecond})
	stop := start(t, d)
	d.Emit(Event{Kind: KindFaulty})
	waitFor(t, "the event given up", func() bool { return d.Stats().Command.Failed == 1 })
	stop()
	data, _ := os.ReadFile(count)
	if runs := strings.Count(string(data), "run"); runs != 3 {
		t.Errorf("%d runs, want 3", runs)
	}
	log := lb.String()
	for _, want := range []string{"exit status 1", "hook broke: disk full", "giving it up"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "some noise") {
		t.Errorf("log quotes more than the last stderr line:\n%s", log)
	}
	checkBalance(t, d.Stats())
}

// TestCommandMissing: a program that does not exist is a failed delivery.
func TestCommandMissing(t *testing.T) {
	d, lb := newDispatcher(t, Config{Command: []string{filepath.Join(t.TempDir(), "nope")}, Retries: 1, Backoff: time.Millisecond})
	stop := start(t, d)
	d.Emit(Event{Kind: KindFaulty})
	waitFor(t, "the event given up", func() bool { return d.Stats().Command.Failed == 1 })
	stop()
	if !strings.Contains(lb.String(), "no such file") {
		t.Errorf("log:\n%s", lb)
	}
}

// TestCommandTimeoutKillsGroup: a command that never ends and has started
// a child (which holds its stdout) is killed at the timeout with the
// child; the delivery does not hang and no process is left.
func TestCommandTimeoutKillsGroup(t *testing.T) {
	dir := t.TempDir()
	pids := filepath.Join(dir, "pids")
	hook := script(t, dir, "hook", `sleep 1000 &
echo "$$ $!" >> "$1"
wait
`)
	d, lb := newDispatcher(t, Config{Command: []string{hook, pids}, Timeout: time.Second, Retries: 1, Backoff: time.Millisecond})
	stop := start(t, d)
	d.Emit(Event{Kind: KindFaulty})
	waitFor(t, "the event given up", func() bool { return d.Stats().Command.Failed == 1 })
	stop()

	data, err := os.ReadFile(pids)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(data))
	if len(lines) == 0 || len(lines)%2 != 0 {
		t.Fatalf("pid file %q", data)
	}
	for i := 0; i < len(lines); i += 2 {
		group, err1 := strconv.Atoi(lines[i])
		child, err2 := strconv.Atoi(lines[i+1])
		if err1 != nil || err2 != nil {
			t.Fatalf("pid file %q", data)
		}
		for _, pid := range []int{group, child} {
			waitFor(t, fmt.Sprintf("process %d of group %d to end", pid, group), func() bool { return !alive(pid, group) })
		}
	}
	if !strings.Contains(lb.String(), "killed with its process group") {
		t.Errorf("log:\n%s", lb)
	}
}

// alive reports whether process pid exists, is not a zombie, and is in
// process group pgid (else its pid was reused).
func alive(pid, pgid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !os.IsNotExist(err) && !errors.Is(err, syscall.ESRCH)
	}
	// pid (comm) state ppid pgrp ...
	i := bytes.LastIndexByte(stat, ')')
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
		return false
	}
	return f[2] == strconv.Itoa(pgid)
}

// TestUnencodableDetails: details that are not JSON do not lose the
// event: it goes out with the reason in place of the details.
func TestUnencodableDetails(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.add(r, body)
	}))
	defer srv.Close()
	d, _ := newDispatcher(t, Config{URL: srv.URL})
	stop := start(t, d)
	d.Emit(Event{Kind: KindFaulty, Message: "m", Details: map[string]any{"c": make(chan int)}})
	d.Emit(Event{Kind: KindActive})
	waitFor(t, "delivery", func() bool { return d.Stats().URL.Delivered == 2 })
	stop()
	evs := rec.events(t)
	if evs[0].Message != "m" || !strings.Contains(fmt.Sprint(evs[0].Details["details_error"]), "unsupported type") {
		t.Errorf("event %+v", evs[0])
	}
	if evs[1].Details == nil || len(evs[1].Details) != 0 {
		t.Errorf("nil details sent as %#v, want {}", evs[1].Details)
	}
}

// TestMisuse: a nil dispatcher and a dispatcher without hooks accept
// Emit; Run runs once.
func TestMisuse(t *testing.T) {
	var nilD *Dispatcher
	nilD.Emit(Event{Kind: KindFaulty})
	if st := nilD.Stats(); st != (Stats{}) {
		t.Errorf("nil stats %+v", st)
	}

	d, _ := newDispatcher(t, Config{})
	d.Emit(Event{Kind: KindFaulty})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Run(ctx); err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := d.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run: %v", err)
	}
	if st := d.Stats(); st.Emitted != 1 || st.Command.Enabled || st.URL.Enabled {
		t.Errorf("stats %+v", st)
	}

	if _, err := New(Config{URL: "ftp://x"}, nil); err == nil {
		t.Error("New accepted a bad config")
	}
}

// TestEmitBeforeRun: events emitted before Run are delivered once it
// starts.
func TestEmitBeforeRun(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.add(r, body)
	}))
	defer srv.Close()
	d, _ := newDispatcher(t, Config{URL: srv.URL})
	d.Emit(Event{Kind: KindActive})
	start(t, d)
	waitFor(t, "delivery", func() bool { return rec.count() == 1 })
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 8}
	for _, w := range []string{"abc", "defgh", "ij", "0123456789ABC", "x"} {
		if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write %q: %d, %v", w, n, err)
		}
	}
	if got := string(b.Bytes()); got != "6789ABCx" {
		t.Errorf("kept %q", got)
	}
	big := &tailBuffer{max: MaxOutput}
	chunk := bytes.Repeat([]byte("y"), 1000)
	for range 1000 {
		big.Write(chunk)
	}
	if len(big.Bytes()) != MaxOutput || cap(big.Bytes()) > 4*MaxOutput {
		t.Errorf("len %d cap %d", len(big.Bytes()), cap(big.Bytes()))
	}
}

func TestLastLine(t *testing.T) {
	long := strings.Repeat("é", 300)
	for in, want := range map[string]string{
		"":                   "",
		"\n\n":               "",
		"one\ntwo\n\n":       "two",
		"  only  ":           "only",
		"a\n" + long + "\n":  "…" + long[len(long)-maxLogLine:],
		"bad \xff byte\n":    "bad \uFFFD byte",
		"x\r\nwindows\r\n":   "windows",
		"tail without break": "tail without break",
	} {
		if got := lastLine([]byte(in)); got != want {
			t.Errorf("lastLine(%q) = %q, want %q", in, got, want)
		}
	}
}

// panicky is a detail whose encoding panics.
type panicky struct{}

func (panicky) MarshalJSON() ([]byte, error) { panic("boom") }

func TestEncodeSurvivesBadDetails(t *testing.T) {
	for name, v := range map[string]any{"panic": panicky{}, "NaN": math.NaN(), "chan": make(chan int)} {
		ev, b := encode(Event{Kind: KindFaulty, Message: "m", Details: map[string]any{"v": v}}, time.Now())
		var got Event
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %q: %v", name, b, err)
		}
		if got.Kind != KindFaulty || got.Message != "m" || got.ID != ev.ID || got.Details["details_error"] == nil {
			t.Errorf("%s: %+v", name, got)
		}
	}
}
