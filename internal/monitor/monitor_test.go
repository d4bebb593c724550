package monitor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestBackoffDoublesCapsAndResets(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 10 * time.Second, Healthy: time.Minute}
	var got []time.Duration
	for range 6 {
		got = append(got, b.Next(time.Millisecond))
	}
	want := []time.Duration{1, 2, 4, 8, 10, 10}
	for i := range want {
		want[i] *= time.Second
	}
	if !slices.Equal(got, want) {
		t.Fatalf("delays %v, want %v", got, want)
	}
	if d := b.Next(2 * time.Minute); d != time.Second {
		t.Errorf("after a healthy run: %s, want the minimum again", d)
	}
	if d := b.Next(0); d != 2*time.Second {
		t.Errorf("then %s, want 2s", d)
	}
}

// fakeClock moves only when the monitor sleeps, so the test needs no real
// time and asserts none.
type fakeClock struct {
	now    time.Time
	slept  []time.Duration
	cancel context.CancelFunc
	stopAt int
}

func (c *fakeClock) Now() time.Time { return c.now }
func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.slept = append(c.slept, d)
	c.now = c.now.Add(d)
	if c.stopAt > 0 && len(c.slept) == c.stopAt {
		c.cancel()
	}
	return ctx.Err()
}

func TestRunRestartsWithBackoffUntilFatal(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	var faults []string
	runs := 0
	err := Run(context.Background(), Config{
		Backoff: Backoff{Min: time.Second, Max: 4 * time.Second, Healthy: time.Minute},
		OnFault: func(err error, d time.Duration) { faults = append(faults, fmt.Sprintf("%v in %s", err, d)) },
		Sleep:   clk.Sleep, Now: clk.Now,
	}, func(ctx context.Context) error {
		runs++
		switch runs {
		case 5:
			clk.now = clk.now.Add(2 * time.Minute) // a long, healthy run
			return errors.New("slave gone")
		case 7:
			return fmt.Errorf("handshake: %w", &Fatal{Err: errors.New("bad certificate")})
		}
		return fmt.Errorf("fault %d", runs)
	})
	if err == nil || !IsFatal(err) || err.Error() != "handshake: bad certificate" {
		t.Fatalf("Run = %v, want the fatal error", err)
	}
	if runs != 7 {
		t.Errorf("%d runs, want 7", runs)
	}
	want := []time.Duration{1, 2, 4, 4, 1, 2}
	for i := range want {
		want[i] *= time.Second
	}
	if !slices.Equal(clk.slept, want) {
		t.Errorf("slept %v, want %v", clk.slept, want)
	}
	if len(faults) != 6 || faults[0] != "fault 1 in 1s" || faults[4] != "slave gone in 1s" {
		t.Errorf("faults told: %q", faults)
	}
}

func TestRunStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	clk := &fakeClock{now: time.Unix(0, 0), cancel: cancel, stopAt: 3}
	runs := 0
	err := Run(ctx, Config{Backoff: Backoff{Min: time.Second, Max: time.Second}, Sleep: clk.Sleep, Now: clk.Now},
		func(ctx context.Context) error { runs++; return errors.New("down") })
	if err != nil || runs != 3 {
		t.Fatalf("Run = %v after %d runs; want nil after 3 (cancelled during the third back-off)", err, runs)
	}
	// A worker that ends with its context is not a fault.
	ctx2, cancel2 := context.WithCancel(context.Background())
	err = Run(ctx2, Config{Backoff: Backoff{Min: time.Second, Max: time.Second},
		OnFault: func(error, time.Duration) { t.Error("a cancelled worker counted as a fault") }},
		func(ctx context.Context) error { cancel2(); return ctx.Err() })
	if err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}

func TestRunRefusesBadBounds(t *testing.T) {
	err := Run(context.Background(), Config{Backoff: Backoff{Min: time.Second, Max: time.Millisecond}},
		func(context.Context) error { t.Error("ran"); return nil })
	if err == nil {
		t.Error("bounds max < min accepted")
	}
}
