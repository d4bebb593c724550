// Package monitor supervises a worker: it runs it, and after each fault
// runs it again with capped exponential back-off, until the worker's
// context ends or it fails in a way a restart cannot mend (gsyncd's
// monitor, which restarts a faulty worker, in one process).
//
// The back-off is plain logic (Backoff); Run only sleeps and calls.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Backoff is a capped exponential back-off that starts over after a run
// that lasted long enough to count as healthy.
type Backoff struct {
	Min, Max time.Duration
	// Healthy: a run that lasted at least this long was not part of a
	// fault loop; the next delay is Min again.
	Healthy time.Duration

	next time.Duration
}

// Next returns the delay before the next run, given how long the run
// that just failed lasted.
func (b *Backoff) Next(ran time.Duration) time.Duration {
	if b.next == 0 || (b.Healthy > 0 && ran >= b.Healthy) {
		b.next = b.Min
	}
	d := min(b.next, b.Max)
	b.next = min(2*b.next, b.Max)
	return d
}

// Fatal marks an error as one a restart cannot mend (a configuration or
// authentication error): Run returns it instead of running the worker
// again.
type Fatal struct{ Err error }

func (e *Fatal) Error() string { return e.Err.Error() }
func (e *Fatal) Unwrap() error { return e.Err }

// IsFatal reports whether err (or one it wraps) is marked Fatal.
func IsFatal(err error) bool {
	var f *Fatal
	return errors.As(err, &f)
}

// Config tells Run how to supervise.
type Config struct {
	Backoff Backoff
	// OnFault is told of every fault that will be followed by a restart,
	// and when (status, logs). Optional.
	OnFault func(err error, restartIn time.Duration)
	// Sleep waits d or until ctx ends (tests pass their own); nil waits
	// on a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// Run runs work until ctx ends (then it returns nil), work returns nil
// (finished: Run returns nil), or work returns an error marked Fatal (Run
// returns it). Any other error is a fault: OnFault hears of it, and work
// runs again after the back-off.
func Run(ctx context.Context, cfg Config, work func(ctx context.Context) error) error {
	sleep, now := cfg.Sleep, cfg.Now
	if sleep == nil {
		sleep = sleepCtx
	}
	if now == nil {
		now = time.Now
	}
	if cfg.Backoff.Min <= 0 || cfg.Backoff.Max < cfg.Backoff.Min {
		return fmt.Errorf("monitor: back-off bounds %s..%s", cfg.Backoff.Min, cfg.Backoff.Max)
	}
	b := cfg.Backoff
	for {
		t0 := now()
		err := work(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			return nil
		}
		if IsFatal(err) {
			return err
		}
		d := b.Next(now().Sub(t0))
		if cfg.OnFault != nil {
			cfg.OnFault(err, d)
		}
		if sleep(ctx, d) != nil {
			return nil
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
