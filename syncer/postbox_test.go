package syncer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a ShipFunc that remembers, for every item, which ship call
// (session) carried it, and gives some sessions a distinct error.
type recorder struct {
	mu       sync.Mutex
	session  map[int]int   // item -> session index
	count    map[int]int   // item -> times shipped
	results  []error       // session index -> returned error
	sizes    []int         // session index -> items shipped
	sleepMax time.Duration // random sleep up to this per session
	honour   bool          // return early on ctx.Done
	failing  func(session int) bool
}

func newRecorder(sleepMax time.Duration) *recorder {
	return &recorder{
		session:  map[int]int{},
		count:    map[int]int{},
		sleepMax: sleepMax,
		failing:  func(s int) bool { return s%3 == 1 },
	}
}

func (r *recorder) ship(ctx context.Context, items []int) error {
	r.mu.Lock()
	idx := len(r.results)
	var err error
	if r.failing(idx) {
		err = fmt.Errorf("session %d failed", idx)
	}
	r.results = append(r.results, nil)
	r.sizes = append(r.sizes, len(items))
	for _, it := range items {
		r.session[it] = idx
		r.count[it]++
	}
	r.mu.Unlock()
	if r.sleepMax > 0 {
		d := rand.N(r.sleepMax)
		if r.honour {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				err = ctx.Err()
			}
		} else {
			time.Sleep(d)
		}
	}
	// Record what is returned before returning it: the worker wakes the
	// box only after ship returns.
	r.mu.Lock()
	r.results[idx] = err
	r.mu.Unlock()
	return err
}

func (r *recorder) sessions() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.results)
}

type posted struct {
	item int
	box  *PostBox[int]
}

func waitBox(t *testing.T, b *PostBox[int], d time.Duration) error {
	t.Helper()
	select {
	case <-b.Done():
		return b.Wait(context.Background())
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err := b.Wait(ctx)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		t.Fatalf("box not woken within %v", d)
	}
	return err
}

// waitGroup waits for wg, failing the test after d.
func waitGroup(t *testing.T, wg *sync.WaitGroup, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("goroutines (producers calling Add) still running after %v", d)
	}
}

// addWithin calls s.Add, failing the test if it does not return within d.
func addWithin(t *testing.T, s *Syncer[int], item int, d time.Duration) *PostBox[int] {
	t.Helper()
	c := make(chan *PostBox[int], 1)
	go func() { c <- s.Add(item) }()
	select {
	case b := <-c:
		return b
	case <-time.After(d):
		t.Fatalf("Add(%d) did not return within %v", item, d)
		return nil
	}
}

// runSyncer starts s.Run and returns a stop function that cancels it and
// checks that Run returns within bound.
func runSyncer(t *testing.T, s *Syncer[int], bound time.Duration) (context.Context, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.Run(ctx)
		close(done)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(bound):
				t.Fatalf("Run did not return within %v of cancel", bound)
			}
		})
	}
	t.Cleanup(stop)
	return ctx, stop
}

func TestSyncerExactlyOnce(t *testing.T) {
	for _, jobs := range []int{1, 3, 8} {
		t.Run(fmt.Sprintf("jobs=%d", jobs), func(t *testing.T) {
			rec := newRecorder(2 * time.Millisecond)
			s := New(jobs, rec.ship)
			_, stop := runSyncer(t, s, 2*time.Second)

			const producers, perProducer = 16, 400
			total := producers * perProducer
			posts := make([][]posted, producers)
			var wg sync.WaitGroup
			for p := 0; p < producers; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < perProducer; i++ {
						item := p*perProducer + i
						b := s.Add(item)
						posts[p] = append(posts[p], posted{item, b})
						// Some producers wait for their item right away.
						if p%4 == 0 && i%50 == 0 {
							ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
							err := b.Wait(ctx)
							cancel()
							if errors.Is(err, context.DeadlineExceeded) {
								t.Errorf("box of item %d not woken within 5s", item)
								return
							}
						}
					}
				}()
			}
			waitGroup(t, &wg, 30*time.Second)
			if t.Failed() {
				return
			}

			// Every box is woken, with its session's result.
			boxSession := map[*PostBox[int]]int{}
			sessionBox := map[int]*PostBox[int]{}
			for _, ps := range posts {
				for _, po := range ps {
					err := waitBox(t, po.box, 10*time.Second)
					select {
					case <-po.box.Done():
					default:
						t.Fatalf("Wait returned but Done is open")
					}
					rec.mu.Lock()
					sess, shipped := rec.session[po.item]
					var want error
					if shipped {
						want = rec.results[sess]
					}
					rec.mu.Unlock()
					if !shipped {
						t.Fatalf("item %d: its box was woken (%v) but it was never shipped", po.item, err)
					}
					if err != want {
						t.Fatalf("item %d was shipped in session %d (result %v), but its box says %v", po.item, sess, want, err)
					}
					// A box is one session: everything in it went together.
					if s0, ok := boxSession[po.box]; ok && s0 != sess {
						t.Fatalf("box of item %d was shipped in sessions %d and %d", po.item, s0, sess)
					}
					boxSession[po.box] = sess
					if b0, ok := sessionBox[sess]; ok && b0 != po.box {
						t.Fatalf("session %d shipped items of two different boxes", sess)
					}
					sessionBox[sess] = po.box
				}
			}

			rec.mu.Lock()
			if len(rec.count) != total {
				t.Errorf("%d distinct items shipped, want %d", len(rec.count), total)
			}
			for it, n := range rec.count {
				if n != 1 {
					t.Errorf("item %d shipped %d times", it, n)
				}
				if it < 0 || it >= total {
					t.Errorf("unknown item %d shipped", it)
				}
			}
			nsess := len(rec.results)
			failed := 0
			for _, e := range rec.results {
				if e != nil {
					failed++
				}
			}
			rec.mu.Unlock()
			if len(boxSession) != nsess {
				t.Errorf("%d boxes returned by Add, %d sessions shipped", len(boxSession), nsess)
			}
			t.Logf("jobs=%d: %d items in %d sessions (%d failed)", jobs, total, nsess, failed)

			stop()
			// After stop, Add answers at once with ErrStopped.
			b := addWithin(t, s, -1, 2*time.Second)
			select {
			case <-b.Done():
			default:
				t.Fatal("Add after stop returned a box not yet done")
			}
			if err := b.Wait(context.Background()); !errors.Is(err, ErrStopped) {
				t.Fatalf("Add after stop: %v, want ErrStopped", err)
			}
			rec.mu.Lock()
			if rec.count[-1] != 0 {
				t.Fatal("item added after stop was shipped")
			}
			rec.mu.Unlock()
		})
	}
}

// TestSyncerStopWakesPending: a box being shipped gets the session's
// (context) error; boxes not yet taken get ErrStopped and are not shipped.
func TestSyncerStopWakesPending(t *testing.T) {
	started := make(chan []int, 10)
	var shipped atomic.Int32
	ship := func(ctx context.Context, items []int) error {
		shipped.Add(int32(len(items)))
		started <- append([]int(nil), items...)
		<-ctx.Done()
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	s := New(1, ship)
	_, stop := runSyncer(t, s, 2*time.Second)
	b1 := s.Add(1)
	select {
	case got := <-started:
		if len(got) != 1 || got[0] != 1 {
			t.Fatalf("first session shipped %v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("first box never shipped")
	}
	b2 := s.Add(2)
	b3 := s.Add(3)
	if b2 != b3 || b2 == b1 {
		t.Fatalf("items 2 and 3 should share a new box while the only worker is busy")
	}
	select {
	case <-b2.Done():
		t.Fatal("pending box done before stop")
	case <-time.After(20 * time.Millisecond):
	}
	t0 := time.Now()
	stop()
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("stop took %v", d)
	}
	if err := waitBox(t, b1, time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("box in flight: %v, want the session's context error", err)
	}
	// The pending box is either abandoned (ErrStopped, not shipped) or,
	// since the worker's select may pick the ready token over ctx.Done,
	// shipped with the cancelled ctx (see TestSyncerNoSessionAfterCancel).
	err := waitBox(t, b2, time.Second)
	switch n := shipped.Load(); {
	case errors.Is(err, ErrStopped) && n == 1:
	case errors.Is(err, context.Canceled) && n == 3:
	default:
		t.Fatalf("pending box: %v with %d items shipped; want ErrStopped and 1 shipped", err, n)
	}
	if err := waitBox(t, addWithin(t, s, 4, 2*time.Second), time.Second); !errors.Is(err, ErrStopped) {
		t.Fatalf("Add after stop: %v, want ErrStopped", err)
	}
}

// TestSyncerShutdownRace: producers keep adding while the syncer stops.
// Every box is woken; an item was shipped iff its box's result is not
// ErrStopped; nothing is shipped twice; workers stop within a bound.
func TestSyncerShutdownRace(t *testing.T) {
	for _, jobs := range []int{1, 3, 8} {
		t.Run(fmt.Sprintf("jobs=%d", jobs), func(t *testing.T) {
			rec := newRecorder(3 * time.Millisecond)
			rec.honour = true
			s := New(jobs, rec.ship)
			_, stop := runSyncer(t, s, 2*time.Second)

			const producers = 8
			var stopAdding atomic.Bool
			posts := make([][]posted, producers)
			var wg sync.WaitGroup
			for p := 0; p < producers; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						item := p<<32 | i
						posts[p] = append(posts[p], posted{item, s.Add(item)})
						if stopAdding.Load() && i > 2000 {
							return
						}
						if i%16 == 0 {
							time.Sleep(50 * time.Microsecond)
						}
					}
				}()
			}
			time.Sleep(30 * time.Millisecond)
			stop()
			stopAdding.Store(true)
			waitGroup(t, &wg, 10*time.Second)

			stopped, total := 0, 0
			for _, ps := range posts {
				for _, po := range ps {
					total++
					err := waitBox(t, po.box, 5*time.Second)
					rec.mu.Lock()
					n := rec.count[po.item]
					sess, shipped := rec.session[po.item]
					var want error
					if shipped {
						want = rec.results[sess]
					}
					rec.mu.Unlock()
					if n > 1 {
						t.Fatalf("item %x shipped %d times", po.item, n)
					}
					if errors.Is(err, ErrStopped) {
						stopped++
						if shipped {
							t.Fatalf("item %x was shipped, but its box says ErrStopped", po.item)
						}
						continue
					}
					if !shipped {
						t.Fatalf("item %x was never shipped, but its box says %v", po.item, err)
					}
					// The session's result, or the context error the worker
					// reports when ctx ended during a successful session.
					if err != want && !(want == nil && errors.Is(err, context.Canceled)) {
						t.Fatalf("item %x: box says %v, session %d returned %v", po.item, err, sess, want)
					}
				}
			}
			if stopped == 0 {
				t.Errorf("no item was added after stop (test did not exercise shutdown)")
			}
			t.Logf("jobs=%d: %d items, %d stopped, %d sessions", jobs, total, stopped, rec.sessions())
		})
	}
}

// TestSyncerStopsPromptlyUnderLoad: a slow ship that honours ctx does not
// hold Run up after cancel, even with a constant stream of new items.
func TestSyncerStopsPromptlyUnderLoad(t *testing.T) {
	ship := func(ctx context.Context, items []int) error {
		select {
		case <-time.After(time.Minute):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s := New(8, ship)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for p := 0; p < 4; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-quit:
					return
				default:
				}
				s.Add(i)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	t0 := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		close(quit)
		t.Fatal("Run did not return within 2s of cancel")
	}
	close(quit)
	wg.Wait()
	t.Logf("Run returned %v after cancel", time.Since(t0))
}

// TestSyncerBatching: while the only worker ships slowly, items pile up in
// the next box.
func TestSyncerBatching(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	ship := func(ctx context.Context, items []int) error {
		mu.Lock()
		sizes = append(sizes, len(items))
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		return nil
	}
	s := New(1, ship)
	runSyncer(t, s, 2*time.Second)
	var boxes []*PostBox[int]
	distinct := map[*PostBox[int]]bool{}
	for i := 0; i < 1000; i++ {
		b := s.Add(i)
		boxes = append(boxes, b)
		distinct[b] = true
	}
	for _, b := range boxes {
		if err := waitBox(t, b, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	sum, max := 0, 0
	for _, n := range sizes {
		sum += n
		if n > max {
			max = n
		}
	}
	if sum != 1000 {
		t.Fatalf("%d items shipped, want 1000", sum)
	}
	if len(sizes) > 5 || max < 500 {
		t.Fatalf("1000 quick items shipped in %d sessions %v: no batching", len(sizes), sizes)
	}
	if len(distinct) != len(sizes) {
		t.Fatalf("%d boxes, %d sessions", len(distinct), len(sizes))
	}
}

// TestSyncerAddNeverBlocks: with no worker at all, or with every worker
// stuck in ship, Add returns at once.
func TestSyncerAddNeverBlocks(t *testing.T) {
	s := New(2, func(ctx context.Context, items []int) error {
		<-ctx.Done()
		return ctx.Err()
	})
	const n = 100000
	done := make(chan *PostBox[int])
	go func() {
		var b *PostBox[int]
		for i := 0; i < n; i++ {
			b = s.Add(i)
		}
		done <- b
	}()
	var last *PostBox[int]
	select {
	case last = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Add blocked with no worker running")
	}
	// Items posted before Run are shipped once it starts: here the two
	// workers get stuck, and more Adds still return.
	_, stop := runSyncer(t, s, 2*time.Second)
	go func() {
		var b *PostBox[int]
		for i := 0; i < n; i++ {
			b = s.Add(n + i)
		}
		done <- b
	}()
	var last2 *PostBox[int]
	select {
	case last2 = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Add blocked with every worker busy")
	}
	stop()
	for _, b := range []*PostBox[int]{last, last2} {
		if err := waitBox(t, b, time.Second); err == nil {
			t.Fatalf("box woken with nil after a stop in the middle of shipping")
		}
	}
}

func TestSyncerItemsBeforeRun(t *testing.T) {
	rec := newRecorder(0)
	rec.failing = func(int) bool { return false }
	s := New(0, rec.ship) // jobs < 1 means one worker
	if s.jobs != 1 {
		t.Fatalf("jobs = %d, want 1", s.jobs)
	}
	b := s.Add(7)
	if b2 := s.Add(8); b2 != b {
		t.Fatal("two Adds before Run went to different boxes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := b.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait before Run = %v, want the context's deadline", err)
	}
	runSyncer(t, s, 2*time.Second)
	if err := waitBox(t, b, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.sizes) != 1 || rec.sizes[0] != 2 || rec.count[7] != 1 || rec.count[8] != 1 {
		t.Fatalf("sessions %v, counts %v", rec.sizes, rec.count)
	}
}

// TestSyncerCancelAfterSuccess: a session that returned nil while ctx was
// being cancelled is reported with the context error (conservative: the
// caller retries).
func TestSyncerCancelAfterSuccess(t *testing.T) {
	inShip := make(chan struct{})
	release := make(chan struct{})
	s := New(1, func(ctx context.Context, items []int) error {
		close(inShip)
		<-release
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	b := s.Add(1)
	<-inShip
	cancel()
	close(release)
	<-done
	if err := waitBox(t, b, time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("box = %v, want context.Canceled", err)
	}
}

// TestSyncerRunTwice: Run on a syncer that already ran wakes the last box a
// second time, which panics (close of a closed channel).
func TestSyncerRunTwice(t *testing.T) {
	s := New(1, func(ctx context.Context, items []int) error { return nil })
	for i := 0; i < 2; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("Run #%d panicked: %v", i+1, p)
				}
			}()
			s.Run(ctx)
		}()
	}
}

// TestSyncerNoSessionAfterCancel: once ctx is cancelled, a worker that
// finishes its box should not start shipping another one (Run's doc: boxes
// still unshipped are woken with ErrStopped). The worker's select picks at
// random between ctx.Done and a pending ready token, so it sometimes does.
func TestSyncerNoSessionAfterCancel(t *testing.T) {
	for i := 0; i < 50; i++ {
		started := make(chan struct{}, 10)
		var sessions atomic.Int32
		s := New(1, func(ctx context.Context, items []int) error {
			sessions.Add(1)
			started <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()
		s.Add(1)
		<-started
		b := s.Add(2)
		cancel()
		<-done
		if err := waitBox(t, b, time.Second); !errors.Is(err, ErrStopped) || sessions.Load() != 1 {
			t.Fatalf("try %d: pending box = %v after %d sessions; want ErrStopped after 1", i, err, sessions.Load())
		}
	}
}

// TestBoxItemsBound: a box that reaches its bound is set aside for the next
// free worker, and posts go to a new box; full boxes ship oldest first, and
// every item once. While the only worker is busy, 95 items in boxes of 10
// make nine full boxes and a current one of five.
func TestBoxItemsBound(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var shipped [][]int
	ship := func(ctx context.Context, items []int) error {
		mu.Lock()
		first := len(shipped) == 0
		shipped = append(shipped, append([]int(nil), items...))
		mu.Unlock()
		if first {
			<-release
		}
		return nil
	}
	s := newWithBoxItems(1, 10, ship)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	first := s.Add(-1)
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(shipped)
		mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the worker did not take the first box")
		}
		time.Sleep(time.Millisecond)
	}
	var boxes []*PostBox[int]
	for i := range 95 {
		boxes = append(boxes, s.Add(i))
	}
	close(release)
	for _, b := range append(boxes, first) {
		if err := b.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(shipped) != 11 {
		t.Fatalf("%d sessions, want 11 (the first, nine full boxes, the rest): %v", len(shipped), shipped)
	}
	next := 0
	for i, items := range shipped[1:] {
		want := 10
		if i == 9 {
			want = 5
		}
		if len(items) != want {
			t.Errorf("session %d shipped %d items, want %d", i+1, len(items), want)
		}
		for _, it := range items {
			if it != next {
				t.Fatalf("session %d shipped item %d, want %d (oldest box first, each item once)", i+1, it, next)
			}
			next++
		}
	}
}
