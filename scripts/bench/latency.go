package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// The latency workloads: a live replicator (georep without --oneshot, and
// lsyncd) is started on a prepared tree, its initial sync awaited, then
// changes are made in the master tree and the slave tree is polled until
// it shows them.
//
//	L1  one 4 KiB file created in an idle replica, until it is on the slave
//	L2  500 mixed ops/s (create, overwrite, rename, unlink), change-to-replica latency of each
//	L3  a directory of 10,000 files renamed, until the slave has it all under the new name

const (
	l1Timeout   = 10 * time.Second // per sample
	l2Timeout   = 10 * time.Second // per op
	l3Timeout   = 120 * time.Second
	l2Rate      = 500 // ops/s
	l2Files     = 300 // working set
	l2Dirs      = 6
	l1Poll      = time.Millisecond
	l2Poll      = 2 * time.Millisecond // pause between two passes over the pending ops
	l3Poll      = 2 * time.Millisecond
	wireTarget  = 1 << 20
	quietPeriod = time.Second
)

// never stands for a change the slave did not show within the timeout.
const never = time.Duration(math.MaxInt64)

// latTable is one latency workload: a row per figure, a column per tool.
type latTable struct {
	id, title string
	rows      []latRow
	unavail   [numLive]error
	notes     []string
}

type latRow struct {
	metric, target string
	vals           [numLive]string
}

// row declares a figure (in display order) with its target.
func (w *latTable) row(metric, target string) {
	w.rows = append(w.rows, latRow{metric: metric, target: target})
}

func (w *latTable) set(metric string, t liveTool, format string, args ...any) {
	for i := range w.rows {
		if w.rows[i].metric == metric {
			w.rows[i].vals[t] = fmt.Sprintf(format, args...)
			return
		}
	}
	r := latRow{metric: metric}
	r.vals[t] = fmt.Sprintf(format, args...)
	w.rows = append(w.rows, r)
}

func (w *latTable) note(format string, args ...any) {
	w.notes = append(w.notes, fmt.Sprintf(format, args...))
}

func (w *latTable) cells() (header []string, rows [][]string, notes []string) {
	header = []string{"figure"}
	for t := liveTool(0); t < numLive; t++ {
		header = append(header, t.String())
	}
	header = append(header, "target")
	for _, r := range w.rows {
		row := []string{r.metric}
		for t := liveTool(0); t < numLive; t++ {
			switch {
			case w.unavail[t] != nil:
				row = append(row, "unavailable")
			case r.vals[t] == "":
				row = append(row, "-")
			default:
				row = append(row, r.vals[t])
			}
		}
		if r.target == "" {
			row = append(row, "")
		} else {
			row = append(row, r.target)
		}
		rows = append(rows, row)
	}
	for t := liveTool(0); t < numLive; t++ {
		if w.unavail[t] != nil {
			notes = append(notes, fmt.Sprintf("%s: unavailable: %v", t, w.unavail[t]))
		}
	}
	return header, rows, append(notes, w.notes...)
}

func (w *latTable) text() string {
	header, rows, notes := w.cells()
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s: %s\n", w.id, w.title)
	width := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	for _, r := range append([][]string{header}, rows...) {
		b.WriteString("  ")
		for i, c := range r {
			if i == 0 {
				fmt.Fprintf(&b, "%-*s", width[i], c)
			} else {
				fmt.Fprintf(&b, "  %*s", width[i], c)
			}
		}
		b.WriteString("\n")
	}
	for _, n := range notes {
		fmt.Fprintf(&b, "  - %s\n", n)
	}
	return b.String()
}

func (w *latTable) markdown() string {
	header, rows, notes := w.cells()
	var b strings.Builder
	fmt.Fprintf(&b, "\n### %s: %s\n\n", w.id, w.title)
	markdownTable(&b, header, rows, notes)
	return b.String()
}

// percentile is the nearest-rank p-th percentile (0 < p <= 100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return -1
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// ms renders a latency; never (a change not seen within the timeout) as
// "> timeout".
func ms(d, timeout time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d == never:
		return fmt.Sprintf("> %gs", timeout.Seconds())
	}
	return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond))
}

// sleepCtx sleeps for d unless ctx is done first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// makeContent is size bytes: a first line carrying token, then random
// bytes.
func makeContent(token string, size int, rng *rand.Rand) []byte {
	b := make([]byte, size)
	n := copy(b, token+"\n")
	for i := n; i < size; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < size; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// writeNew creates name (which must not exist), writes data and closes it.
func writeNew(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return !errors.Is(err, fs.ErrNotExist)
}

// cpuNote explains the CPU rows of the latency tables.
const cpuNote = "CPU: user + system seconds from start to stop of the session (the initial sync included); client / server: the georep master / slave, lsyncd with its rsyncs / the rsync daemon"

// latency runs the wanted latency workloads.
func (b *bench) latency(ctx context.Context) error {
	s := b.cfg.scale
	if b.want("L1") {
		n := max(3, scaled(50, s))
		w := &latTable{id: "L1", title: fmt.Sprintf("one 4 KiB file created (write + close) in the master tree of an idle replica, until on the slave with equal content; %d samples per tool", n)}
		w.row("p50 ms", "<= 300 ms")
		w.row("p90 ms", "")
		w.row("max ms", "")
		w.row(fmt.Sprintf("not on the slave within %gs", l1Timeout.Seconds()), "")
		w.row("initial sync s (untimed)", "")
		w.row("CPU s, whole session", "")
		w.row("CPU s, client / server", "")
		if err := b.eachLive(ctx, w, func(t liveTool) error { return b.l1(ctx, w, t, n) }); err != nil {
			return err
		}
		w.note("timed: from the return of close() on the master to the first poll of the slave path (every %s: read, compare bytes) that finds the same content; %s to %s of idle time (random, to sample every phase of a change-interval) before each file; a sample not seen within %gs counts as > %gs in the percentiles",
			l1Poll, 200*time.Millisecond, 700*time.Millisecond, l1Timeout.Seconds(), l1Timeout.Seconds())
		w.note(cpuNote)
		b.done(w)
	}
	if b.want("L2") {
		dur := time.Duration(max(1, 30*s) * float64(time.Second)).Round(100 * time.Millisecond)
		w := &latTable{id: "L2", title: fmt.Sprintf("%d mixed ops/s for %s (create, overwrite, rename, unlink) on %d files in %d dirs: change-to-replica latency of each op", l2Rate, dur, l2Files, l2Dirs)}
		w.row("ops made", "")
		w.row("p50 ms", "")
		w.row("p90 ms", "")
		w.row("p99 ms", "<= 1000 ms")
		w.row("max ms", "")
		w.row(fmt.Sprintf("ops not converged within %gs", l2Timeout.Seconds()), "")
		w.row("ops seen only through a later state", "")
		w.row("trees equal at the end", "")
		w.row("initial sync s (untimed)", "")
		w.row("CPU s, whole session", "")
		w.row("CPU s, client / server", "")
		if err := b.eachLive(ctx, w, func(t liveTool) error { return b.l2(ctx, w, t, dur) }); err != nil {
			return err
		}
		w.note("ops: 20%% create, 40%% overwrite (O_TRUNC, new size), 20%% rename (to a new name, maybe in another dir), 20%% unlink, paced at %d/s; names are never reused; every content starts with a unique token",
			l2Rate)
		w.note("timed: from the return of the op's last syscall on the master to the first pass of the checker (a pass over all pending ops, then %s of sleep) that finds its effect on the slave: the file at its name with the op's content; and every name it had before gone (a rename's old name, …); for an unlink its names gone. A later state of the same file (e.g. a rename seen after an overwrite) also settles the earlier ops. Ops not settled within %gs count as > %gs in the percentiles",
			l2Poll, l2Timeout.Seconds(), l2Timeout.Seconds())
		w.note(cpuNote)
		b.done(w)
	}
	if b.want("L3") {
		n := scaled(10000, s)
		w := &latTable{id: "L3", title: fmt.Sprintf("rename of a replicated directory of %s files (1-8 KiB), until the slave has all of them under the new name and the old name is gone; %d rename(s) per tool", commas(int64(n)), b.cfg.runs)}
		w.row("wall s (median)", "<= 1 s")
		w.row("wall s min-max", "")
		w.row("wire bytes until converged (median)", "<= 1 MiB")
		w.row("wire bytes until the link was quiet (median)", "")
		w.row("idle wire bytes/s before the rename (median)", "")
		w.row("initial sync s (untimed)", "")
		w.row("CPU s, whole session", "")
		w.row("CPU s, client / server", "")
		if err := b.eachLive(ctx, w, func(t liveTool) error { return b.l3(ctx, w, t, n) }); err != nil {
			return err
		}
		w.note("timed: from the return of rename(2) on the master until a poll (every %s) finds the old name gone and the new one with exactly the %d names (no temp files), confirmed by a comparison of that directory with the master's (modes, sizes, mtimes, content). Wire: bytes both ways through the counting relay from just before the rename until then, and until it had carried nothing for %s (at most 5 s more); before each rename the replicator is left idle (1 s without traffic, at most 3 s), then its traffic over 1 s is counted (idle bytes/s)",
			l3Poll, n, quietPeriod)
		w.note(cpuNote)
		b.done(w)
	}
	return nil
}

// eachLive runs f for every live tool; a tool that fails is reported as
// unavailable, with the reason, and the bench goes on.
func (b *bench) eachLive(ctx context.Context, w *latTable, f func(t liveTool) error) error {
	for t := liveTool(0); t < numLive; t++ {
		err := f(t)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			var ue unavailableError
			if !errors.As(err, &ue) {
				err = fmt.Errorf("bench error: %w", err)
			}
			w.unavail[t] = err
			b.progress("%s %s: unavailable: %v", w.id, t, err)
		}
		syncFS(b.tmp)
	}
	b.progress("%s done", w.id)
	return nil
}

// session starts t on tg and reports its startup in w; stop must be called.
func (b *bench) session(ctx context.Context, w *latTable, t liveTool, tg target, readyTimeout time.Duration) (*liveSession, error) {
	b.progress("%s %s: starting, waiting for the initial sync", w.id, t)
	s, err := b.startLive(ctx, t, tg, readyTimeout)
	if err != nil {
		return nil, err
	}
	b.progress("%s %s: initial sync seen complete after %.2fs", w.id, t, s.ready.Seconds())
	w.set("initial sync s (untimed)", t, "%.2f", s.ready.Seconds())
	return s, nil
}

// finish stops s and reports what only the stop tells.
func (w *latTable) finish(s *liveSession) {
	s.stop()
	w.set("CPU s, whole session", s.tool, "%.2f", s.cpu.Seconds())
	// georep: master / slave; lsyncd: lsyncd with its rsyncs / the daemon
	w.set("CPU s, client / server", s.tool, "%.2f / %.2f", s.cpuClient.Seconds(), s.cpuServer.Seconds())
	if s.exit != "" {
		w.note("%s: %s", s.tool, s.exit)
	}
}

// treesEqual compares a session's master and slave trees in full (they
// are small) and sums up the differences.
func treesEqual(tg target) (summary string, examples []string) {
	type entry struct {
		desc    string
		regular bool
	}
	list := func(root string) (map[string]entry, error) {
		m := map[string]entry{}
		err := walkTree(root, func(rel string, fi fs.FileInfo, desc string) error {
			m[rel] = entry{desc, fi.Mode().IsRegular()}
			return nil
		})
		return m, err
	}
	a, err := list(tg.src())
	if err != nil {
		return "error: " + err.Error(), nil
	}
	bm, err := list(tg.dst())
	if err != nil {
		return "error: " + err.Error(), nil
	}
	var missing, extra, content, meta int
	var example string
	bad := func(rel string) {
		if len(examples) < 3 {
			examples = append(examples, rel)
		}
	}
	for rel, e := range a {
		f, ok := bm[rel]
		if !ok {
			missing++
			bad(rel)
			example = cmp.Or(example, "missing "+rel)
			continue
		}
		same := true
		if e.regular && f.regular {
			same, err = sameContent(filepath.Join(tg.src(), rel), filepath.Join(tg.dst(), rel), make([]byte, 64<<10), make([]byte, 64<<10))
			if err != nil {
				return "error: " + err.Error(), nil
			}
		}
		switch {
		case !same:
			content++
			bad(rel)
			example = cmp.Or(example, "content of "+rel)
		case e.desc != f.desc:
			meta++
			bad(rel)
			example = cmp.Or(example, fmt.Sprintf("%s: %s on the slave, %s on the master", rel, f.desc, e.desc))
		}
	}
	for rel := range bm {
		if _, ok := a[rel]; !ok {
			extra++
			bad(rel)
			example = cmp.Or(example, "extra "+rel)
		}
	}
	if missing+extra+content+meta == 0 {
		return "yes", nil
	}
	fmt.Fprintf(os.Stderr, "bench: %s: trees differ, e.g. %s\n", tg.dir, example)
	var parts []string
	for _, p := range []struct {
		n    int
		what string
	}{{missing, "missing"}, {extra, "extra"}, {content, "content differs"}, {meta, "same content, metadata differs"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.what))
		}
	}
	return "NO: " + strings.Join(parts, ", "), examples
}

func (b *bench) l1(ctx context.Context, w *latTable, t liveTool, n int) error {
	tg, err := b.newLiveTarget("L1", t)
	if err != nil {
		return err
	}
	if _, err := genSmallTree(tg.src(), 200, 4); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(tg.src(), "l1"), 0o755); err != nil {
		return err
	}
	s, err := b.session(ctx, w, t, tg, time.Minute)
	if err != nil {
		return err
	}
	defer w.finish(s)
	s.settle(quietPeriod/2, 3*time.Second)
	rng := rand.New(rand.NewPCG(uint64(t)+1, uint64(time.Now().UnixNano())))
	var lats []time.Duration
	late := 0
	for i := 0; i < n; i++ {
		if err := sleepCtx(ctx, 200*time.Millisecond+time.Duration(rng.IntN(500))*time.Millisecond); err != nil {
			return err
		}
		if err := s.check(); err != nil {
			return err
		}
		rel := filepath.Join("l1", fmt.Sprintf("f%04d.dat", i))
		content := makeContent(fmt.Sprintf("L1 %s sample %d %016x", t, i, rng.Uint64()), 4096, rng)
		if err := writeNew(filepath.Join(tg.src(), rel), content); err != nil {
			return err
		}
		t0 := time.Now()
		lat, err := pollContent(ctx, s, filepath.Join(tg.dst(), rel), content, t0, l1Timeout)
		if err != nil {
			return err
		}
		lats = append(lats, lat)
		if lat == never {
			late++
			if late == 3 {
				return unavailable("3 of %d files not on the slave within %s each: replication stalled", i+1, l1Timeout)
			}
		}
	}
	w.set("p50 ms", t, "%s", ms(percentile(lats, 50), l1Timeout))
	w.set("p90 ms", t, "%s", ms(percentile(lats, 90), l1Timeout))
	w.set("max ms", t, "%s", ms(percentile(lats, 100), l1Timeout))
	w.set(fmt.Sprintf("not on the slave within %gs", l1Timeout.Seconds()), t, "%d", late)
	b.progress("L1 %s: p50 %s ms, p90 %s ms, max %s ms", t, ms(percentile(lats, 50), l1Timeout),
		ms(percentile(lats, 90), l1Timeout), ms(percentile(lats, 100), l1Timeout))
	return nil
}

// pollContent polls path every l1Poll until it holds content, and returns
// the time from t0 to the end of that poll (never after timeout).
func pollContent(ctx context.Context, s *liveSession, path string, content []byte, t0 time.Time, timeout time.Duration) (time.Duration, error) {
	for i := 0; ; i++ {
		if data, err := os.ReadFile(path); err == nil && bytes.Equal(data, content) {
			return time.Since(t0), nil
		}
		if time.Since(t0) > timeout {
			return never, nil
		}
		if i%200 == 199 {
			if err := s.check(); err != nil {
				return 0, err
			}
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
		}
		time.Sleep(l1Poll)
	}
}

// l2op is one change made in L2, with the state of the slave that shows it.
type l2op struct {
	kind    string
	at      time.Time // the op's last syscall returned
	path    string    // must hold content ("" for an unlink)
	content []byte
	gone    []string // must not exist: the file's former names (and for an unlink its name)
	from    string   // a rename's old name
	file    *l2file
	lat     time.Duration
	done    bool
	direct  bool // seen in its own state, not a later one
}

// l2file is one file of the working set, followed across renames.
type l2file struct {
	path    string
	former  []string // names it had before (never reused by another file)
	content []byte
	pending []*l2op // ops not yet seen on the slave, oldest first
}

// l2checker finds, for each file with pending ops, the latest of them
// whose state the slave shows, and settles it with every earlier one.
type l2checker struct {
	dst      string
	mu       sync.Mutex
	dirty    map[*l2file]struct{}
	npending int
	passes   int
	passTime time.Duration
}

func (c *l2checker) add(f *l2file, op *l2op) {
	c.mu.Lock()
	f.pending = append(f.pending, op)
	c.dirty[f] = struct{}{}
	c.npending++
	c.mu.Unlock()
}

func (c *l2checker) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.npending
}

// slaveFile is what one pass saw at a path of the slave: it stats each
// path once, and reads it only when its size is one that an op expects
// (every overwrite changes the size), at most once.
type slaveFile struct {
	stated, exists bool
	size           int64
	read           bool
	data           []byte
}

type passCache map[string]*slaveFile

func (pc passCache) stat(dst, rel string) *slaveFile {
	f := pc[rel]
	if f == nil {
		f = &slaveFile{}
		pc[rel] = f
	}
	if !f.stated {
		f.stated = true
		if fi, err := os.Lstat(filepath.Join(dst, rel)); err == nil {
			f.exists, f.size = true, fi.Size()
		} else {
			f.exists = !errors.Is(err, fs.ErrNotExist)
		}
	}
	return f
}

func (pc passCache) holds(dst, rel string, content []byte) bool {
	f := pc.stat(dst, rel)
	if !f.exists || f.size != int64(len(content)) {
		return false
	}
	if !f.read {
		f.read = true
		f.data, _ = os.ReadFile(filepath.Join(dst, rel))
	}
	return bytes.Equal(f.data, content)
}

// shows reports whether the slave, as seen in this pass, is in op's state.
func (c *l2checker) shows(pc passCache, op *l2op) bool {
	for _, g := range op.gone {
		if pc.stat(c.dst, g).exists {
			return false
		}
	}
	return op.path == "" || pc.holds(c.dst, op.path, op.content)
}

func (c *l2checker) pass() {
	start := time.Now()
	type item struct {
		f   *l2file
		ops []*l2op
	}
	c.mu.Lock()
	items := make([]item, 0, len(c.dirty))
	for f := range c.dirty {
		items = append(items, item{f, slices.Clone(f.pending)})
	}
	c.mu.Unlock()
	pc := passCache{}
	for _, it := range items {
		for k := len(it.ops) - 1; k >= 0; k-- {
			if !c.shows(pc, it.ops[k]) {
				continue
			}
			now := time.Now()
			c.mu.Lock()
			for j, op := range it.ops[:k+1] {
				op.lat, op.done, op.direct, op.content = now.Sub(op.at), true, j == k, nil
			}
			it.f.pending = it.f.pending[k+1:]
			if len(it.f.pending) == 0 {
				delete(c.dirty, it.f)
			}
			c.npending -= k + 1
			c.mu.Unlock()
			break
		}
	}
	c.mu.Lock()
	c.passes++
	c.passTime += time.Since(start)
	c.mu.Unlock()
}

func (b *bench) l2(ctx context.Context, w *latTable, t liveTool, dur time.Duration) error {
	tg, err := b.newLiveTarget("L2", t)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(uint64(t)+7, uint64(time.Now().UnixNano())))
	seq := 0
	newName := func(prefix string) string {
		seq++
		return filepath.Join(fmt.Sprintf("d%d", rng.IntN(l2Dirs)), fmt.Sprintf("%s%07d", prefix, seq))
	}
	newContent := func(what string, old int) []byte {
		size := old
		for size == old {
			size = 512 + rng.IntN(3585)
		}
		return makeContent(fmt.Sprintf("L2 %s %s %d %016x", t, what, seq, rng.Uint64()), size, rng)
	}
	for d := 0; d < l2Dirs; d++ {
		if err := os.Mkdir(filepath.Join(tg.src(), fmt.Sprintf("d%d", d)), 0o755); err != nil {
			return err
		}
	}
	var files []*l2file
	for i := 0; i < l2Files; i++ {
		f := &l2file{path: newName("f")}
		f.content = newContent("initial", 0)
		if err := writeNew(filepath.Join(tg.src(), f.path), f.content); err != nil {
			return err
		}
		files = append(files, f)
	}
	s, err := b.session(ctx, w, t, tg, time.Minute)
	if err != nil {
		return err
	}
	defer w.finish(s)
	s.settle(quietPeriod/2, 3*time.Second)

	c := &l2checker{dst: tg.dst(), dirty: map[*l2file]struct{}{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			c.pass()
			time.Sleep(l2Poll)
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	var ops []*l2op
	interval := time.Second / l2Rate
	begin := time.Now()
	var kinds [4]int
	for i := 0; ; i++ {
		due := begin.Add(time.Duration(i) * interval)
		if due.Sub(begin) >= dur {
			break
		}
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if i%250 == 0 {
			if err := s.check(); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		k := rng.IntN(5) // 0 create, 1-2 overwrite, 3 rename, 4 unlink
		switch k {
		case 1, 2:
			k = 1
		case 3:
			k = 2
		case 4:
			k = 3
		}
		if k == 3 && len(files) < l2Files/2 || len(files) == 0 {
			k = 0
		} else if k == 0 && len(files) >= l2Files*3/2 {
			k = 3
		}
		kinds[k]++
		var f *l2file
		var op *l2op
		switch k {
		case 0:
			f = &l2file{path: newName("c")}
			f.content = newContent("create", 0)
			if err := writeNew(filepath.Join(tg.src(), f.path), f.content); err != nil {
				return err
			}
			files = append(files, f)
			op = &l2op{kind: "create", path: f.path, content: f.content}
		case 1:
			f = files[rng.IntN(len(files))]
			f.content = newContent("write", len(f.content))
			if err := os.WriteFile(filepath.Join(tg.src(), f.path), f.content, 0o644); err != nil {
				return err
			}
			op = &l2op{kind: "overwrite", path: f.path, content: f.content, gone: slices.Clone(f.former)}
		case 2:
			f = files[rng.IntN(len(files))]
			old := f.path
			f.path = newName("r")
			if err := os.Rename(filepath.Join(tg.src(), old), filepath.Join(tg.src(), f.path)); err != nil {
				return err
			}
			f.former = append(f.former, old)
			op = &l2op{kind: "rename", path: f.path, content: f.content, gone: slices.Clone(f.former), from: old}
		case 3:
			j := rng.IntN(len(files))
			f = files[j]
			if err := os.Remove(filepath.Join(tg.src(), f.path)); err != nil {
				return err
			}
			files[j] = files[len(files)-1]
			files = files[:len(files)-1]
			op = &l2op{kind: "unlink", gone: append(slices.Clone(f.former), f.path)}
		}
		op.at = time.Now()
		op.file = f
		ops = append(ops, op)
		c.add(f, op)
	}
	genTime := time.Since(begin)
	last := ops[len(ops)-1].at
	for c.pending() > 0 && time.Since(last) < l2Timeout {
		if err := s.check(); err != nil {
			return err
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	close(stop)
	wg.Wait()

	lats := make([]time.Duration, len(ops))
	notConverged, later := 0, 0
	for i, op := range ops {
		switch {
		case !op.done || op.lat > l2Timeout:
			lats[i] = never
			notConverged++
		default:
			lats[i] = op.lat
			if !op.direct {
				later++
			}
		}
	}
	w.set("ops made", t, "%d (%.0f/s)", len(ops), float64(len(ops))/genTime.Seconds())
	w.set("p50 ms", t, "%s", ms(percentile(lats, 50), l2Timeout))
	w.set("p90 ms", t, "%s", ms(percentile(lats, 90), l2Timeout))
	w.set("p99 ms", t, "%s", ms(percentile(lats, 99), l2Timeout))
	w.set("max ms", t, "%s", ms(percentile(lats, 100), l2Timeout))
	w.set(fmt.Sprintf("ops not converged within %gs", l2Timeout.Seconds()), t, "%d", notConverged)
	w.set("ops seen only through a later state", t, "%d", later)
	s.settle(quietPeriod, 5*time.Second) // let a last transfer finish
	eq, bad := treesEqual(tg)
	w.set("trees equal at the end", t, "%s", eq)
	for _, rel := range bad {
		w.note("%s: %s at the end: %s", t, rel, history(ops, rel, begin))
	}
	c.mu.Lock()
	if c.passes > 0 {
		w.note("%s: ops made: %d create, %d overwrite, %d rename, %d unlink; the checker made %d passes of %.2f ms on average (plus %s of sleep each)",
			t, kinds[0], kinds[1], kinds[2], kinds[3], c.passes, float64(c.passTime)/float64(c.passes)/float64(time.Millisecond), l2Poll)
	}
	c.mu.Unlock()
	b.progress("L2 %s: %d ops, p50 %s ms, p99 %s ms, %d not converged", t, len(ops),
		ms(percentile(lats, 50), l2Timeout), ms(percentile(lats, 99), l2Timeout), notConverged)
	return nil
}

func (b *bench) l3(ctx context.Context, w *latTable, t liveTool, n int) error {
	tg, err := b.newLiveTarget("L3", t)
	if err != nil {
		return err
	}
	if _, err := genSmallTree(tg.src(), n, 1); err != nil { // src/d0000/f*.dat
		return err
	}
	s, err := b.session(ctx, w, t, tg, time.Minute+time.Duration(n)*10*time.Millisecond)
	if err != nil {
		return err
	}
	defer w.finish(s)
	var walls []time.Duration
	var wires, quietWires, idles []int64
	notQuiet := 0
	cur := "d0000"
	for r := 0; r < b.cfg.runs; r++ {
		// Idle: quiet for a second (a replicator that sends something
		// all the time gets 3 s), then what it sends in a second.
		s.settle(quietPeriod, 3*time.Second)
		i0 := s.relay.count()
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
		if err := s.check(); err != nil {
			return err
		}
		next := fmt.Sprintf("renamed-%d", r+1)
		w0 := s.relay.count()
		idles = append(idles, w0-i0)
		if err := os.Rename(filepath.Join(tg.src(), cur), filepath.Join(tg.src(), next)); err != nil {
			return err
		}
		t0 := time.Now()
		wall, wire, err := pollRenamed(ctx, s, tg, cur, next, n, t0)
		if err != nil {
			return err
		}
		wq, quiet := s.relay.quietFor(quietPeriod, 5*time.Second)
		walls = append(walls, wall)
		wires = append(wires, wire-w0)
		if quiet {
			quietWires = append(quietWires, wq-w0)
		} else {
			notQuiet++
		}
		b.progress("L3 %s rename %d/%d: %s ms, wire %s until converged, %s until quiet (quiet: %v; idle before: %s B/s)", t, r+1, b.cfg.runs,
			ms(wall, l3Timeout), commas(wire-w0), commas(wq-w0), quiet, commas(w0-i0))
		if wall == never {
			w.note("%s: rename %d not complete on the slave within %s", t, r+1, l3Timeout)
			break
		}
		cur = next
	}
	med := percentile(walls, 50)
	if med == never {
		w.set("wall s (median)", t, "> %gs", l3Timeout.Seconds())
	} else {
		w.set("wall s (median)", t, "%.3f", med.Seconds())
	}
	lo, hi := slices.Min(walls), slices.Max(walls)
	if hi != never {
		w.set("wall s min-max", t, "%.3f-%.3f", lo.Seconds(), hi.Seconds())
	}
	w.set("wire bytes until converged (median)", t, "%s", commas(medianI64(wires)))
	if len(quietWires) > 0 {
		w.set("wire bytes until the link was quiet (median)", t, "%s", commas(medianI64(quietWires)))
	}
	if notQuiet > 0 {
		w.note("%s: after %d of %d renames the link was not quiet for %s within 5 s of convergence", t, notQuiet, len(walls), quietPeriod)
	}
	w.set("idle wire bytes/s before the rename (median)", t, "%s", commas(medianI64(idles)))
	return nil
}

// pollRenamed polls the slave until from is gone and to holds n names,
// none of them a temp file, and the directory matches the master's. It
// returns the time since t0 (never after l3Timeout) and the relay's count
// at that moment.
func pollRenamed(ctx context.Context, s *liveSession, tg target, from, to string, n int, t0 time.Time) (time.Duration, int64, error) {
	oldPath, newPath := filepath.Join(tg.dst(), from), filepath.Join(tg.dst(), to)
	for i := 0; ; i++ {
		if time.Since(t0) > l3Timeout {
			return never, s.relay.count(), nil
		}
		if i%250 == 249 {
			if err := s.check(); err != nil {
				return 0, 0, err
			}
			if ctx.Err() != nil {
				return 0, 0, ctx.Err()
			}
		}
		if !exists(oldPath) && complete(newPath, n) {
			wall, wire := time.Since(t0), s.relay.count()
			if dirEqual(filepath.Join(tg.src(), to), newPath) {
				return wall, wire, nil
			}
		}
		time.Sleep(l3Poll)
	}
}

// complete reports whether dir holds exactly n names and no dot file
// (rsync's temp files are dot files).
func complete(dir string, n int) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil || len(names) != n {
		return false
	}
	for _, name := range names {
		if strings.HasPrefix(name, ".") {
			return false
		}
	}
	return true
}

// history lists the L2 ops on the file(s) that had the name rel, for a
// difference at the end.
func history(ops []*l2op, rel string, begin time.Time) string {
	files := map[*l2file]bool{}
	for _, op := range ops {
		if op.path == rel || op.from == rel {
			files[op.file] = true
		}
	}
	var h []string
	for _, op := range ops {
		if !files[op.file] {
			continue
		}
		what := op.kind
		switch op.kind {
		case "create", "overwrite":
			what += " " + op.path
		case "rename":
			what += " " + op.from + " -> " + op.path
		case "unlink":
			what += " " + op.gone[len(op.gone)-1]
		}
		seen := "never seen on the slave"
		if op.done {
			seen = fmt.Sprintf("seen after %.1f ms", float64(op.lat)/float64(time.Millisecond))
			if !op.direct {
				seen += " (through a later state)"
			}
		}
		h = append(h, fmt.Sprintf("%s at +%.3fs, %s", what, op.at.Sub(begin).Seconds(), seen))
	}
	if len(h) == 0 {
		return "no op of L2 touched it (an initial file)"
	}
	if len(h) > 12 {
		h = append(h[:12], fmt.Sprintf("... (%d more)", len(h)-12))
	}
	return strings.Join(h, "; ")
}

// medianI64 is the (lower) median of v.
func medianI64(v []int64) int64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// dirEqual compares two trees in full (metadata and content).
func dirEqual(src, dst string) bool {
	want, err := summarize(src)
	if err != nil {
		return false
	}
	return verify(src, dst, want, true) == nil
}
