package syncstatus

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

// fakeControl records what the socket asked of the master.
type fakeControl struct {
	mu   sync.Mutex
	ops  []string
	conf map[string]string
}

func (c *fakeControl) note(op string) {
	c.mu.Lock()
	c.ops = append(c.ops, op)
	c.mu.Unlock()
}
func (c *fakeControl) Pause() (string, error)  { c.note("pause"); return "paused", nil }
func (c *fakeControl) Resume() (string, error) { c.note("resume"); return "resumed", nil }
func (c *fakeControl) Stop() (string, error)   { c.note("stop"); return "stopping", nil }
func (c *fakeControl) ConfigGet(k string) (map[string]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k == "" {
		return c.conf, nil
	}
	v, ok := c.conf[k]
	if !ok {
		return nil, errors.New("no setting " + k)
	}
	return map[string]string{k: v}, nil
}
func (c *fakeControl) ConfigSet(k, v string) (string, error) {
	if v == "bad" {
		return "", errors.New("bad value")
	}
	c.mu.Lock()
	c.conf[k] = v
	c.mu.Unlock()
	return "applied", nil
}
func (c *fakeControl) ConfigReset(k string) (string, error) {
	c.mu.Lock()
	delete(c.conf, k)
	c.mu.Unlock()
	return "reset", nil
}

// The control ops reach the master's Control once it is set, with their
// arguments checked first; before, they fail and change nothing.
func TestSocketControl(t *testing.T) {
	dir := t.TempDir()
	svc := startService(t, dir)
	ctx := context.Background()
	if _, err := Call(ctx, dir, Request{Op: OpPause}); err == nil || !strings.Contains(err.Error(), "starting") {
		t.Fatalf("pause before a Control: %v", err)
	}
	c := &fakeControl{conf: map[string]string{"bwlimit": "0"}}
	svc.SetControl(c)
	for _, tc := range []struct {
		req  Request
		ok   bool
		want string
	}{
		{Request{Op: OpPause}, true, "paused"},
		{Request{Op: OpResume}, true, "resumed"},
		{Request{Op: OpConfigSet, Key: "bwlimit", Value: "2048"}, true, "applied"},
		{Request{Op: OpConfigSet, Key: "bwlimit", Value: "bad"}, false, "bad value"},
		{Request{Op: OpConfigSet, Key: "BW", Value: "1"}, false, "setting name"},
		{Request{Op: OpConfigSet, Value: "1"}, false, "needs a key"},
		{Request{Op: OpPause, Key: "x"}, false, "takes no key"},
		{Request{Op: OpConfigReset, Key: "bwlimit", Value: "1"}, false, "takes no value"},
		{Request{Op: OpConfigSet, Key: "bwlimit", Value: strings.Repeat("9", maxValueLen+1)}, false, "too long"},
		{Request{Op: OpStop}, true, "stopping"},
	} {
		rep, err := Call(ctx, dir, tc.req)
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = rep.Message
		}
		if (err == nil) != tc.ok || !strings.Contains(got, tc.want) {
			t.Errorf("%+v: got %q (err %v), want ok=%v with %q", tc.req, got, err, tc.ok, tc.want)
		}
	}
	rep, err := Call(ctx, dir, Request{Op: OpConfigGet, Key: "bwlimit"})
	if err != nil || !rep.OK || rep.Config["bwlimit"] != "2048" {
		t.Fatalf("config-get: %+v %v", rep, err)
	}
	if got := strings.Join(c.ops, ","); got != "pause,resume,stop" {
		t.Errorf("ops carried out: %s", got)
	}
}

// The tracker reports its turns: Faulty, Active again, a finished crawl, a
// completed checkpoint (when it completes and when set already complete);
// Paused is kept across a reconnection and shown unless Faulty.
func TestTrackerEvents(t *testing.T) {
	var mu sync.Mutex
	var got []string
	opts := Options{StateDir: t.TempDir(), OnEvent: func(kind, msg string, _ map[string]any) {
		mu.Lock()
		got = append(got, kind)
		mu.Unlock()
	}}
	tr, err := NewTracker(opts)
	if err != nil {
		t.Fatal(err)
	}
	tr.SetIdentity(testID)
	tr.SessionOpen()
	tr.CrawlStarted(HybridCrawl)
	tr.CrawlListed()
	tr.BatchEnded(0, nil)
	tr.BatchEnded(0, nil) // no second CRAWL_FINISHED
	tr.Fault(errors.New("link down"))
	tr.Fault(errors.New("still down")) // no second FAULTY
	tr.BatchEnded(0, nil)
	if _, err := tr.SetCheckpoint(t0); err != nil {
		t.Fatal(err)
	}
	tr.Synced(t0)
	tr.SetPaused(true)
	if s := tr.Snapshot(); s.State != Paused {
		t.Errorf("state %s after SetPaused(true)", s.State)
	}
	tr.SessionOpen()
	if s := tr.Snapshot(); s.State != Paused {
		t.Errorf("state %s after a reconnection while paused", s.State)
	}
	tr.SetPaused(false)
	if s := tr.Snapshot(); s.State != Active {
		t.Errorf("state %s after SetPaused(false)", s.State)
	}
	tr.Event(EventBatchFailed, "x", nil)
	want := "CRAWL_FINISHED,FAULTY,ACTIVE,CHECKPOINT_COMPLETED,BATCH_FAILED"
	if g := strings.Join(got, ","); g != want {
		t.Errorf("events %s, want %s", g, want)
	}
}
