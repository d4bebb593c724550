// Package syncer is georep's data plane: a staged queue of files (the
// PostBox pattern of gsyncd's Syncer) drained by a pool of workers, each of
// which takes the whole current box and ships it to the slave in one
// streaming session, then wakes everyone waiting on that box.
//
// Batching is the point: one stream carries many small files with no round
// trip per file.
package syncer

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// ErrStopped is the result of a box the syncer stopped before shipping.
var ErrStopped = errors.New("syncer: stopped")

// PostBox collects items until a worker takes it; then it is closed and,
// once shipped, done with a result.
type PostBox[T any] struct {
	mu     sync.Mutex
	items  []T
	closed bool
	done   chan struct{}
	err    error // valid once done is closed
}

func newBox[T any]() *PostBox[T] { return &PostBox[T]{done: make(chan struct{})} }

// add posts an item and returns how many the box holds; false means the
// box was closed meanwhile.
func (b *PostBox[T]) add(item T) (int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, false
	}
	b.items = append(b.items, item)
	return len(b.items), true
}

// close forbids further posts and returns the items.
func (b *PostBox[T]) close() []T {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return b.items
}

func (b *PostBox[T]) empty() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.items) == 0
}

// wakeup records the result and releases every waiter. Called once.
func (b *PostBox[T]) wakeup(err error) {
	b.err = err
	close(b.done)
}

// Done is closed when the box has been shipped (or abandoned).
func (b *PostBox[T]) Done() <-chan struct{} { return b.done }

// Wait blocks until the box was shipped and returns the session's error
// (nil when the stream completed; per-item outcomes are in the items).
func (b *PostBox[T]) Wait(ctx context.Context) error {
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ShipFunc ships a box's items in one session. It records per-item
// outcomes in the items themselves and returns an error only when the
// session as a whole failed. It must honour ctx.
type ShipFunc[T any] func(ctx context.Context, items []T) error

// Syncer is the staged queue plus its workers.
//
// Producers call Add from any goroutine. Workers (started by Run) arbitrate
// among themselves with takeMu; producers post into whatever box is
// current and retry when it was closed under them, and take takeMu only to
// set a full box aside (once per boxItems posts).
type Syncer[T any] struct {
	ship     ShipFunc[T]
	jobs     int
	boxItems int

	cur    atomic.Pointer[PostBox[T]]
	takeMu sync.Mutex    // serialises box exchanges
	full   []*PostBox[T] // boxes that reached boxItems, oldest first; under takeMu
	ready  chan struct{} // holds a token while a box may be waiting

	stopped atomic.Bool
	ran     atomic.Bool
}

// DefaultBoxItems is the most items a box takes before it is set aside
// for the next free worker and a new box opens (see New). One box per
// worker, as in gsyncd, made a one-shot's tail one stream long: files are
// posted a few thousand at a time (one entry-op call), and the first
// worker took a handful while the last took most of them. On a copy of
// GOROOT (15,000 files) four boxes of 3,500 to 4,000 files took 0.3 to
// 1.1 s each. 1024 items still make the per-stream costs vanish.
const DefaultBoxItems = 1024

// New returns a Syncer with jobs workers (at least one) shipping with ship,
// in boxes of at most DefaultBoxItems (a few more when producers race).
func New[T any](jobs int, ship ShipFunc[T]) *Syncer[T] {
	return newWithBoxItems(jobs, DefaultBoxItems, ship)
}

// newWithBoxItems is New with boxes of at most boxItems (unbounded when
// boxItems <= 0): a full box waits for the next free worker, and posts go
// to a new one.
func newWithBoxItems[T any](jobs, boxItems int, ship ShipFunc[T]) *Syncer[T] {
	if jobs < 1 {
		jobs = 1
	}
	s := &Syncer[T]{ship: ship, jobs: jobs, boxItems: boxItems, ready: make(chan struct{}, 1)}
	s.cur.Store(newBox[T]())
	return s
}

// Add posts item and returns the box it went into; Wait on the box to learn
// when it was shipped. After the syncer stopped, the returned box is
// already done with ErrStopped.
func (s *Syncer[T]) Add(item T) *PostBox[T] {
	for {
		if s.stopped.Load() {
			b := newBox[T]()
			b.items = []T{item}
			b.closed = true
			b.wakeup(ErrStopped)
			return b
		}
		b := s.cur.Load()
		if n, ok := b.add(item); ok {
			if s.boxItems > 0 && n >= s.boxItems {
				s.setAside(b)
			}
			select {
			case s.ready <- struct{}{}:
			default:
			}
			// A box closed by Run's shutdown after our add: answer it.
			return b
		}
		// The box was taken between our load and our add: the current
		// one is new; post there.
	}
}

// setAside queues full box b for the workers and opens a new current box,
// unless another producer did so already.
func (s *Syncer[T]) setAside(b *PostBox[T]) {
	s.takeMu.Lock()
	defer s.takeMu.Unlock()
	if s.cur.Load() != b {
		return
	}
	s.full = append(s.full, b)
	s.cur.Store(newBox[T]())
}

// take returns the oldest full box, or swaps the current box for an empty
// one and returns the old one; nil when there is none with items. It also
// says whether another box may be waiting.
func (s *Syncer[T]) take() (b *PostBox[T], items []T, more bool) {
	s.takeMu.Lock()
	defer s.takeMu.Unlock()
	if len(s.full) > 0 {
		b = s.full[0]
		s.full[0] = nil
		s.full = s.full[1:]
	} else {
		b = s.cur.Load()
		if b.empty() {
			return nil, nil, false
		}
		s.cur.Store(newBox[T]())
	}
	return b, b.close(), len(s.full) > 0 || !s.cur.Load().empty()
}

// Run starts the workers and blocks until ctx is done and every worker has
// finished its current box. Boxes still unshipped then are woken with
// ErrStopped, and so is every later Add.
//
// Run may be called once; a second call returns at once.
func (s *Syncer[T]) Run(ctx context.Context) {
	if s.ran.Swap(true) {
		return
	}
	var wg sync.WaitGroup
	for i := 0; i < s.jobs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.worker(ctx)
		}()
	}
	wg.Wait()
	s.stopped.Store(true)
	// Close the last box under the workers' lock; an Add that raced in
	// either landed before the close (and is answered here) or sees the
	// closed box, retries, and finds stopped set.
	s.takeMu.Lock()
	left := append(s.full, s.cur.Load())
	s.full = nil
	for _, b := range left {
		b.close()
	}
	s.takeMu.Unlock()
	for _, b := range left {
		b.wakeup(ErrStopped)
	}
}

func (s *Syncer[T]) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.ready:
		}
		// select picks at random when both are ready: never start a
		// session after the context ended.
		if ctx.Err() != nil {
			return
		}
		b, items, more := s.take()
		if b == nil {
			continue
		}
		// More boxes may be waiting (full ones, or posts into the new
		// current box already); make sure another worker looks.
		if more {
			select {
			case s.ready <- struct{}{}:
			default:
			}
		}
		err := s.ship(ctx, items)
		if err == nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		b.wakeup(err)
	}
}
