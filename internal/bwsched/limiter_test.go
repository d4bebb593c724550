package bwsched

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// fakeClock is a Clock whose time moves only by Advance.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
	armed   int // After calls so far
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(now time.Time) *fakeClock { return &fakeClock{now: now} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed++
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{c.now.Add(d), ch})
	return ch
}

// Advance moves the time on by d and fires the waiters then due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			keep = append(keep, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = keep
}

func (c *fakeClock) Armed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.armed
}

// waitArmed waits until After has been called n times in all: Run has
// looked at the schedule and waits again.
func (c *fakeClock) waitArmed(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.Armed() < n {
		if time.Now().After(deadline) {
			t.Fatalf("Run did not wait again (%d waits, want %d)", c.Armed(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkRate checks the rate.Limiter is set for limit.
func checkRate(t *testing.T, l *Limiter, limit int64, what string) {
	t.Helper()
	rl := l.RateLimiter()
	wantRate, wantBurst := rate.Inf, MinBurst
	if limit > 0 {
		wantRate, wantBurst = rate.Limit(limit), max(MinBurst, int(limit/8))
	}
	if rl.Limit() != wantRate || rl.Burst() != wantBurst {
		t.Errorf("%s: rate.Limiter at %v/s, burst %d; want %v, burst %d", what, rl.Limit(), rl.Burst(), wantRate, wantBurst)
	}
}

func checkCurrent(t *testing.T, l *Limiter, limit int64, next time.Time, what string) {
	t.Helper()
	gl, gn := l.Current()
	if gl != limit || !gn.Equal(next) {
		t.Errorf("%s: Current() = %s, %s; want %s, %s", what, FormatLimit(gl), gn, FormatLimit(limit), next)
	}
	checkRate(t, l, limit, what)
}

func TestLimiterFollowsSchedule(t *testing.T) {
	s := mustParse(t, []string{"Mon-Fri 08:00-18:00 2MiB", "Sat,Sun 16MiB"}, "unlimited", time.UTC)
	clock := newFakeClock(at(0, 7, 59, 0)) // Monday 07:59
	l := NewLimiter(s, clock)
	rl := l.RateLimiter()
	checkCurrent(t, l, 0, at(0, 8, 0, 0), "before Run")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	clock.waitArmed(t, 1)

	// Not yet: Run waits for 08:00.
	clock.Advance(59*time.Second + 999*time.Millisecond)
	checkRate(t, l, 0, "07:59:59.999")

	n := clock.Armed()
	clock.Advance(time.Millisecond)
	clock.waitArmed(t, n+1)
	checkCurrent(t, l, 2*MiB, at(0, 18, 0, 0), "08:00")

	// A leap over several changes lands on the limit of its time.
	n = clock.Armed()
	clock.Advance(5*24*time.Hour + 2*time.Hour) // Saturday 10:00
	clock.waitArmed(t, n+1)
	checkCurrent(t, l, 16*MiB, at(7, 0, 0, 0), "Saturday")

	// Run wakes every minute at most (a step of the wall clock is seen).
	n = clock.Armed()
	clock.Advance(time.Minute)
	clock.waitArmed(t, n+1)
	checkCurrent(t, l, 16*MiB, at(7, 0, 0, 0), "Saturday 10:01")

	n = clock.Armed()
	clock.Advance(38*time.Hour - time.Minute) // Monday 00:00
	clock.waitArmed(t, n+1)
	checkCurrent(t, l, 0, at(7, 8, 0, 0), "Monday 00:00")

	// A new schedule is in force when SetSchedule returns, and Run
	// follows it.
	n = clock.Armed()
	l.SetSchedule(mustParse(t, []string{"* 00:00-06:00 8MiB"}, "1MiB", time.UTC))
	checkCurrent(t, l, 8*MiB, at(7, 6, 0, 0), "new schedule")
	clock.waitArmed(t, n+1)
	n = clock.Armed()
	clock.Advance(6 * time.Hour)
	clock.waitArmed(t, n+1)
	checkCurrent(t, l, MiB, at(8, 0, 0, 0), "new schedule, 06:00")

	l.SetSchedule(Fixed(3 * MiB))
	checkCurrent(t, l, 3*MiB, time.Time{}, "fixed")
	l.SetSchedule(nil)
	checkCurrent(t, l, 0, time.Time{}, "nil schedule")
	if l.RateLimiter() != rl {
		t.Error("RateLimiter() changed")
	}
	if l.Schedule().String() != "default unlimited" {
		t.Errorf("Schedule() = %s", l.Schedule())
	}

	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop with its context")
	}
}

// TestCurrentWithoutRun: Current applies a change that is due, should
// Run not be running.
func TestCurrentWithoutRun(t *testing.T) {
	s := mustParse(t, []string{"Mon 08:00-18:00 2MiB"}, "", time.UTC)
	clock := newFakeClock(at(0, 7, 0, 0))
	l := NewLimiter(s, clock)
	checkCurrent(t, l, 0, at(0, 8, 0, 0), "07:00")
	clock.Advance(time.Hour)
	checkCurrent(t, l, 2*MiB, at(0, 18, 0, 0), "08:00")
	clock.Advance(7 * 24 * time.Hour)
	checkCurrent(t, l, 2*MiB, at(7, 18, 0, 0), "a week on")

	// Nil arguments: unlimited, the system's clock.
	l = NewLimiter(nil, nil)
	if lim, next := l.Current(); lim != 0 || !next.IsZero() || l.RateLimiter().Limit() != rate.Inf {
		t.Errorf("NewLimiter(nil, nil): %d, %s, %v", lim, next, l.RateLimiter().Limit())
	}
}

// sendAll sends bytes in the sender's chunks (256 KiB), waiting for each
// as syncer's waitN does, from workers goroutines, until ctx is done (it
// must have no deadline), and counts them. An error of the limiter is
// returned.
func sendAll(ctx context.Context, rl *rate.Limiter, workers int, sent *atomic.Int64) error {
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				// syncer/send.go's waitN.
				n := 256 << 10
				for n > 0 {
					k := min(n, rl.Burst())
					if err := rl.WaitN(ctx, k); err != nil {
						if ctx.Err() == nil {
							errs <- err
						}
						return
					}
					n -= k
					sent.Add(int64(k))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// TestMeasuredRate measures the bytes the limiter lets through in real
// time: at a limit of 4 MiB/s, then unlimited.
func TestMeasuredRate(t *testing.T) {
	if testing.Short() {
		t.Skip("measures for two seconds")
	}
	const limit = 4 * MiB
	l := NewLimiter(Fixed(limit), SystemClock{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- l.Run(ctx) }()
	rl := l.RateLimiter()

	// Empty the bucket, so that the measure is of the rate, not the burst.
	if err := rl.WaitN(ctx, rl.Burst()); err != nil {
		t.Fatal(err)
	}
	measure := func(d time.Duration) float64 {
		var sent atomic.Int64
		// A cancel, not a deadline: rate.Limiter.WaitN refuses a wait
		// that would end past a deadline.
		mctx, mcancel := context.WithCancel(ctx)
		defer mcancel()
		time.AfterFunc(d, mcancel)
		start := time.Now()
		if err := sendAll(mctx, rl, 4, &sent); err != nil {
			t.Fatal(err)
		}
		return float64(sent.Load()) / time.Since(start).Seconds()
	}
	got := measure(1500 * time.Millisecond)
	t.Logf("at %s: %.2f MiB/s", FormatLimit(limit), got/MiB)
	if got < 0.75*limit || got > 1.25*limit {
		t.Errorf("at %s: %.2f MiB/s, want within 25%%", FormatLimit(limit), got/MiB)
	}

	l.SetSchedule(Fixed(0))
	fast := measure(200 * time.Millisecond)
	t.Logf("unlimited: %.0f MiB/s", fast/MiB)
	if fast < 4*limit {
		t.Errorf("unlimited: %.2f MiB/s, want far more than %s", fast/MiB, FormatLimit(limit))
	}

	// And back to a limit, lower: it holds again.
	l.SetSchedule(Fixed(limit / 2))
	if err := rl.WaitN(ctx, rl.Burst()); err != nil {
		t.Fatal(err)
	}
	got = measure(500 * time.Millisecond)
	t.Logf("at %s: %.2f MiB/s", FormatLimit(limit/2), got/MiB)
	if got < 0.75*limit/2 || got > 1.25*limit/2 {
		t.Errorf("at %s: %.2f MiB/s, want within 25%%", FormatLimit(limit/2), got/MiB)
	}
	cancel()
	if err := <-runDone; !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v", err)
	}
}

// TestWaitAcrossChanges: waiters keep going while the schedule changes
// under them, between limits with bursts larger and smaller than their
// pieces: the sender's 256 KiB chunks always fit (MinBurst), and WaitN
// takes larger ones in pieces that fit.
func TestWaitAcrossChanges(t *testing.T) {
	l := NewLimiter(Fixed(64*MiB), SystemClock{})
	rl := l.RateLimiter()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(600*time.Millisecond, cancel)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// As fast as it goes: a plain loop of rl.WaitN over 3 MiB in
		// pieces of the burst fails here a few times a second.
		limits := []int64{64 * MiB, 0, 8 * MiB, 512 * MiB, 2 * MiB, 0, 1 * MiB, 100 * MiB}
		for i := 0; ctx.Err() == nil; i++ {
			l.SetSchedule(Fixed(limits[i%len(limits)]))
			runtime.Gosched()
		}
	}()
	var sent, big atomic.Int64
	errs := make(chan error, 4)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := WaitN(ctx, rl, 3*MiB+5); err != nil {
					if ctx.Err() == nil {
						errs <- err
					}
					return
				}
				big.Add(1)
			}
		}()
	}
	if err := sendAll(ctx, rl, 3, &sent); err != nil {
		t.Errorf("the sender's waits: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("WaitN: %v", err)
	}
	t.Logf("%d MiB in chunks, %d waits of 3 MiB", sent.Load()>>20, big.Load())
	if sent.Load() == 0 || big.Load() == 0 {
		t.Error("nothing went")
	}
	if Burst(0) != MinBurst || Burst(MiB) != MinBurst || Burst(16*MiB) != 2*MiB || Burst(MaxLimit) != 1<<30 {
		t.Errorf("Burst: %d %d %d %d", Burst(0), Burst(MiB), Burst(16*MiB), Burst(MaxLimit))
	}
	// WaitN on a limiter with no burst: only unlimited lets it go.
	if err := WaitN(context.Background(), rate.NewLimiter(rate.Inf, 0), 10); err != nil {
		t.Errorf("WaitN at rate.Inf, no burst: %v", err)
	}
	if err := WaitN(context.Background(), rate.NewLimiter(1, 0), 10); err == nil {
		t.Error("WaitN with no burst: no error")
	}
}
