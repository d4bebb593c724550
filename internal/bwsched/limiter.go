package bwsched

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// MinBurst is the least burst the rate limiter is given (256 KiB, the
// sender's literal chunk): the sender waits for a chunk at a time, in
// pieces no larger than the burst (see WaitN), and a chunk no larger than
// MinBurst always fits, whatever limit a change of schedule sets
// meanwhile.
const MinBurst = 256 << 10

// recheck bounds the wait between two looks at the schedule, so that a
// step of the wall clock (set by hand, a resume from suspend) is noticed
// within a minute.
const recheck = time.Minute

// maxBurst bounds the burst (it is an int, 32 bits on some platforms).
const maxBurst = 1 << 30

// Burst is the burst a limit gets (bytes per second, 0: unlimited): an
// eighth of a second at the limit, at least MinBurst (at most 1 GiB).
// Unlimited gets MinBurst (rate.Limiter ignores the burst at rate.Inf).
func Burst(limit int64) int {
	return int(min(max(MinBurst, limit/8), maxBurst))
}

// Clock tells the time to a Limiter; tests give it a fake one.
type Clock interface {
	Now() time.Time
	// After sends the time on the channel once d has passed.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the clock of the system (time.Now and time.After).
type SystemClock struct{}

// Now is time.Now.
func (SystemClock) Now() time.Time { return time.Now() }

// After is time.After.
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Limiter applies a Schedule to one rate.Limiter, in bytes per second:
// NewLimiter sets the limit in force, Run changes it at each change of
// the schedule, and SetSchedule replaces the schedule at once. The
// schedule is read by the Clock; the rate.Limiter keeps its own time
// (the system's), as its waiters do.
//
// A Limiter is made by NewLimiter, and is safe for concurrent use.
type Limiter struct {
	clock Clock
	rl    *rate.Limiter
	wake  chan struct{}

	mu      sync.Mutex
	sched   *Schedule
	limit   int64     // the limit set on rl
	next    time.Time // when the schedule changes it next (zero: never)
	applied bool      // limit is set on rl
}

// NewLimiter makes a limiter on the schedule s (nil: unlimited) and the
// clock (nil: SystemClock), with the limit s gives now already set.
func NewLimiter(s *Schedule, clock Clock) *Limiter {
	if clock == nil {
		clock = SystemClock{}
	}
	if s == nil {
		s = Fixed(0)
	}
	l := &Limiter{
		clock: clock,
		rl:    rate.NewLimiter(rate.Inf, MinBurst),
		wake:  make(chan struct{}, 1),
		sched: s,
	}
	l.mu.Lock()
	l.refresh(clock.Now())
	l.mu.Unlock()
	return l
}

// RateLimiter gives the rate.Limiter the sender waits on: always the same
// one, its limit and burst changed in place.
func (l *Limiter) RateLimiter() *rate.Limiter { return l.rl }

// Schedule gives the schedule in use.
func (l *Limiter) Schedule() *Schedule {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sched
}

// SetSchedule replaces the schedule (nil: unlimited): the limit it gives
// now is set before SetSchedule returns, and Run follows the new one.
func (l *Limiter) SetSchedule(s *Schedule) {
	if s == nil {
		s = Fixed(0)
	}
	l.mu.Lock()
	l.sched = s
	l.applied = false
	l.refresh(l.clock.Now())
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default: // Run is woken already
	}
}

// Current gives the limit in force (bytes per second, 0: unlimited) and
// when the schedule changes it next (zero: not within two weeks), for
// status and metrics. It applies a change that is due, should Run be
// late or not running.
func (l *Limiter) Current() (limit int64, next time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := l.clock.Now(); !l.next.IsZero() && !now.Before(l.next) {
		l.refresh(now)
	}
	return l.limit, l.next
}

// Run sets the limit at each change of the schedule, and at once when
// SetSchedule replaces it, until ctx is done; it returns ctx.Err().
func (l *Limiter) Run(ctx context.Context) error {
	for {
		now := l.clock.Now()
		l.mu.Lock()
		next := l.refresh(now)
		l.mu.Unlock()
		wait := recheck
		if !next.IsZero() {
			wait = max(min(wait, next.Sub(now)), 0)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.wake:
		case <-l.clock.After(wait):
		}
	}
}

// refresh sets the limit the schedule gives at now, if it is not set
// already, and returns when it changes next. l.mu is held.
func (l *Limiter) refresh(now time.Time) time.Time {
	lim, next := l.sched.At(now)
	l.next = next
	if l.applied && lim == l.limit {
		return next
	}
	// The rate.Limiter counts its tokens by the system's clock, which its
	// waiters read: set it at that time, not the schedule's clock's.
	// Unlimited ignores the burst: lift the limit first, and set the
	// burst of a limit before the limit, so that no waiter sees a finite
	// limit with the burst of another.
	t := time.Now()
	if lim == 0 {
		l.rl.SetLimitAt(t, rate.Inf)
		l.rl.SetBurstAt(t, Burst(0))
	} else {
		l.rl.SetBurstAt(t, Burst(lim))
		l.rl.SetLimitAt(t, rate.Limit(lim))
	}
	l.limit, l.applied = lim, true
	return next
}

// WaitN waits until l lets n bytes go, asking for no more than l's burst
// at a time, as the sender does; unlike a plain loop of l.WaitN it goes
// on when a change of schedule shrinks the burst while it waits (a plain
// loop may then fail with "exceeds limiter's burst" for a piece larger
// than MinBurst).
func WaitN(ctx context.Context, l *rate.Limiter, n int) error {
	for n > 0 {
		b := l.Burst()
		if b <= 0 {
			return l.WaitN(ctx, n) // no burst: only rate.Inf lets anything go
		}
		k := min(n, b)
		if err := l.WaitN(ctx, k); err != nil {
			if ctx.Err() != nil {
				return err
			}
			// Without a deadline, WaitN fails only for a piece larger
			// than the burst: the burst shrank since it was read. With
			// one, it also fails for a wait past the deadline.
			if _, ok := ctx.Deadline(); ok && k <= l.Burst() {
				return err
			}
			continue
		}
		n -= k
	}
	return nil
}
