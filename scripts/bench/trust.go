package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// W7 and V1: issue 20's measurements (trust: a pre-seeded slave, verify).
//
// W7, a pre-seeded slave adopted (issue 20, point 3): the W1 tree, copied
// by `cp -a` (untimed) into each tool's destination; then, timed, georep's
// first one-shot into its copy (fresh master and slave state dirs: every
// entry is adopted, none should be sent), and the rsync daemon into its
// copy (a no-op: it finds nothing to do). Before the copies and before
// each timed run, georep's own xattrs (gfids, marks, volume id: the
// earlier workloads' one-shots left them on the source) are taken off the
// source, untimed: the copy is then what a user makes of a tree that georep
// never replicated, and rsync -X finds nothing to do either. Targets: at
// most 1 % of the tree's data bytes on the wire, and at most 2x the time of
// the rsync no-op (medians).
//
// V1, verify an unchanged tree (issue 20, "How it is checked"): `georep
// verify --json` of the W1 tree against a slave synced with it (W1's last
// georep copy, after W5; or, when W1 does not run, a one-shot made here),
// RUNS times, each beside a georep no-op one-shot into the same slave (in
// alternating order). The wire: the relay's bytes, master to slave and
// back, against the tree's data bytes (target < 1 %), and verify's own
// wire_bytes (the size of the slave's answers). Then 10 files are changed
// on the slave behind georep's back (their bytes inverted, size and mtime
// kept) and verify runs once more: it must exit 1 and list exactly those
// 10, of kind content.

const (
	w7WireTarget = 0.01 // georep's wire bytes / the tree's data bytes
	w7TimeTarget = 2.0  // georep's one-shot / the rsync no-op (wall)
	v1WireTarget = 0.01 // verify's wire bytes (both ways) / the tree's data bytes
	v1NChanged   = 10   // files changed on the slave behind georep's back
)

// georepXattr reports whether an xattr is one georep sets (gfids, marks,
// the volume id).
func georepXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.georep.") || strings.HasPrefix(name, "user.georep.")
}

// stripGeorepXattrs removes georep's xattrs from every entry under root,
// root included, and returns how many it removed.
func stripGeorepXattrs(root string) (int, error) {
	buf := make([]byte, 64<<10)
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		sz, err := unix.Llistxattr(p, buf)
		if err != nil {
			if errors.Is(err, unix.ENOTSUP) {
				return nil
			}
			return fmt.Errorf("listxattr %s: %w", p, err)
		}
		for _, name := range strings.Split(string(buf[:sz]), "\x00") {
			if !georepXattr(name) {
				continue
			}
			if err := unix.Lremovexattr(p, name); err != nil && !errors.Is(err, unix.ENODATA) {
				return fmt.Errorf("removexattr %s %s: %w", p, name, err)
			}
			n++
		}
		return nil
	})
	return n, err
}

// cpA copies src to dst (which must not exist) with `cp -a` and returns
// how long that took.
func cpA(ctx context.Context, src, dst string) (time.Duration, error) {
	t0 := time.Now()
	if out, err := exec.CommandContext(ctx, "cp", "-a", src, dst).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("cp -a %s %s: %v: %s", src, dst, err, out)
	}
	return time.Since(t0), nil
}

// w7 runs W7 on src (summarized by sum).
func (b *bench) w7(ctx context.Context, src string, sum treeSum) error {
	w := &workload{id: "W7", tree: sum, payload: sum.bytes, payloadNote: "MB/s = tree bytes / wall",
		title: fmt.Sprintf("a pre-seeded slave: the W1 tree (%s files) copied by cp -a (untimed), then georep's first one-shot into the copy (adoption) against an rsync no-op into another copy",
			commas(sum.files))}
	var all []string
	defer func() { b.remove(all...) }()
	var cps []time.Duration
	stripped := 0
	strip := func() error {
		n, err := stripGeorepXattrs(src)
		stripped += n
		return err
	}
	b.progress("W7: warm-up read of %s", src)
	if err := warmup(src); err != nil {
		return err
	}
	tools := []tool{toolGeorep, toolRsyncd}
	for r := 0; r < b.cfg.runs; r++ {
		if err := strip(); err != nil {
			return err
		}
		tgs := map[tool]target{}
		for _, t := range tools {
			tg, err := b.newTarget(w, t, r)
			if err != nil {
				return err
			}
			all = append(all, tg.dir)
			if err := os.Remove(tg.dst()); err != nil {
				return err
			}
			d, err := cpA(ctx, src, tg.dst())
			if err != nil {
				return err
			}
			cps = append(cps, d)
			tgs[t] = tg
			b.progress("W7 run %d/%d: cp -a into %s's destination took %.3fs (untimed)", r+1, b.cfg.runs, t, d.Seconds())
		}
		ts := slices.Clone(tools)
		if r%2 == 1 {
			slices.Reverse(ts)
		}
		for _, t := range ts {
			// georep's one-shot marks the source: take the marks off
			// before the other tool's run too (a no-op otherwise).
			if err := strip(); err != nil {
				return err
			}
			res, err := b.runTool(ctx, t, src, tgs[t], runOpts{})
			if err != nil {
				return fmt.Errorf("%s run %d, %s: %w", w.id, r+1, t, err)
			}
			if err := verify(src, tgs[t].dst(), sum, b.cfg.fullVerify); err != nil {
				return fmt.Errorf("%s run %d, %s: wrong result: %w", w.id, r+1, t, err)
			}
			if t == toolGeorep {
				if res.sentFiles != 0 {
					w.notes = append(w.notes, fmt.Sprintf("ANOMALY: run %d: georep sent %d files (%d bytes) into a cp -a copy of the tree", r+1, res.sentFiles, res.sentBytes))
				}
				if r == 0 {
					w.notes = append(w.notes, "georep master's summary (run 1): "+summaryLines(res.masterOut))
				}
				if l := strings.TrimSpace(res.masterLog); l != "" {
					w.notes = append(w.notes, fmt.Sprintf("the georep master wrote to stderr (run %d): %s", r+1, tail(l, 600)))
				}
			}
			w.add(t, res)
			b.progress("%s run %d/%d %-12s %8.3fs %s", w.id, r+1, b.cfg.runs, t, res.wall.Seconds(), res.brief())
		}
	}
	w.notes = append(w.notes, w7Verdicts(w, sum)...)
	w.notes = append(w.notes, fmt.Sprintf("untimed before each run: georep's xattrs taken off the source (%d removed in all: the earlier one-shots' gfids and marks, and each W7 georep run's), then cp -a of the source into each tool's destination (%.3fs median, %.3f-%.3fs); no cache dropped",
		stripped, medianOf(cps).Seconds(), slices.Min(cps).Seconds(), slices.Max(cps).Seconds()))
	b.done(w)
	return nil
}

// w7Verdicts are W7's figures against its targets.
func w7Verdicts(w *workload, sum treeSum) []string {
	g, rs := w.runs[toolGeorep], w.runs[toolRsyncd]
	if len(g) == 0 || len(rs) == 0 || sum.bytes == 0 {
		return nil
	}
	wire := medianInt(g, func(r runResult) int64 { return r.wire })
	ratio := float64(wire) / float64(sum.bytes)
	var per []string
	for _, r := range g {
		per = append(per, fmt.Sprintf("%.2f %%", 100*float64(r.wire)/float64(sum.bytes)))
	}
	notes := []string{fmt.Sprintf("georep's wire bytes / the tree's data bytes = %s / %s = %.2f %% (median; run by run %s; master to slave %s, slave to master %s); target <= %.0f %%: %s",
		commas(wire), commas(sum.bytes), 100*ratio, strings.Join(per, ", "),
		commas(medianInt(g, func(r runResult) int64 { return r.wireUp })), commas(medianInt(g, func(r runResult) int64 { return r.wireDown })),
		100*w7WireTarget, verdict(ratio, w7WireTarget))}
	notes = append(notes, fmt.Sprintf("for comparison, the rsync no-op's wire bytes: %s (%.2f %% of the data)",
		commas(medianInt(rs, func(r runResult) int64 { return r.wire })), 100*float64(medianInt(rs, func(r runResult) int64 { return r.wire }))/float64(sum.bytes)))
	wall := func(r runResult) time.Duration { return r.wall }
	gw, rw := medianDur(g, wall), medianDur(rs, wall)
	tr := gw.Seconds() / rw.Seconds()
	per = per[:0]
	for i := range min(len(g), len(rs)) {
		per = append(per, fmt.Sprintf("%.2f", g[i].wall.Seconds()/rs[i].wall.Seconds()))
	}
	notes = append(notes, fmt.Sprintf("georep's one-shot / the rsync no-op = %.3fs / %.3fs = %.2fx (medians; run by run %s); target <= %.1fx: %s",
		gw.Seconds(), rw.Seconds(), tr, strings.Join(per, ", "), w7TimeTarget, verdict(tr, w7TimeTarget)))
	return notes
}

// verdict is "met" when v <= limit, else by how much it is not.
func verdict(v, limit float64) string {
	if v <= limit {
		return "met"
	}
	return fmt.Sprintf("NOT met (%.1fx the target)", v/limit)
}

func medianOf(ds []time.Duration) time.Duration {
	rs := make([]runResult, len(ds))
	for i, d := range ds {
		rs[i].wall = d
	}
	return medianDur(rs, func(r runResult) time.Duration { return r.wall })
}

// summaryLines joins the lines of a georep master's summary.
func summaryLines(out string) string {
	var l []string
	for _, s := range strings.Split(strings.TrimSpace(out), "\n") {
		if s = strings.Join(strings.Fields(s), " "); s != "" {
			l = append(l, s)
		}
	}
	return strings.Join(l, "; ")
}

// verifyReport is what `georep verify --json` prints.
type verifyReport struct {
	Equal       bool         `json:"equal"`
	Differences []verifyDiff `json:"differences"`
	Files       int64        `json:"files"`
	Bytes       int64        `json:"bytes"`
	SlaveFiles  int64        `json:"slave_files"`
	SlaveBytes  int64        `json:"slave_bytes"`
	DirsListed  int64        `json:"dirs_listed"`
	WireBytes   int64        `json:"wire_bytes"`
}

type verifyDiff struct {
	Path   string `json:"path"`
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

func (d verifyDiff) String() string {
	s := d.Kind + " " + d.Path
	if d.Detail != "" {
		s += " (" + d.Detail + ")"
	}
	return s
}

// v1Col is a row of V1's table.
type v1Col int

const (
	v1Verify  v1Col = iota // georep verify, the unchanged tree
	v1NoOp                 // a georep no-op one-shot into the same slave
	v1Changed              // georep verify once 10 files were changed on the slave
	numV1
)

func (c v1Col) String() string {
	return [...]string{"georep verify, unchanged tree", "georep one-shot, no-op (same slave)",
		fmt.Sprintf("georep verify, %d files changed on the slave", v1NChanged)}[c]
}

func (c v1Col) short() string {
	return [...]string{"verify", "oneshot-noop", "verify-changed"}[c]
}

// verifyTable is V1's result.
type verifyTable struct {
	id, title string
	sum       treeSum
	runs      [numV1][]runResult
	reps      [numV1][]verifyReport // verify's reports (the verify rows)
	// initial is the one-shot that made the slave (W1's georep median, or
	// V1's own), for comparison; initialFrom says which.
	initial     time.Duration
	initialFrom string
	notes       []string
}

func (w *verifyTable) median(c v1Col) time.Duration {
	return medianDur(w.runs[c], func(r runResult) time.Duration { return r.wall })
}

func (w *verifyTable) table() (header []string, rows [][]string, notes []string) {
	header = append(append([]string{"row"}, statsHeader...), "master->slave bytes", "slave->master bytes", "wire / data", "verify's wire_bytes", "dirs listed")
	data := w.sum.bytes
	for c := v1Col(0); c < numV1; c++ {
		rs := w.runs[c]
		if len(rs) == 0 {
			continue
		}
		row := statsRow(c.String(), rs, data)
		wire := medianInt(rs, func(r runResult) int64 { return r.wire })
		row = append(row, commas(medianInt(rs, func(r runResult) int64 { return r.wireUp })),
			commas(medianInt(rs, func(r runResult) int64 { return r.wireDown })),
			fmt.Sprintf("%.4f %%", 100*float64(wire)/float64(data)))
		if reps := w.reps[c]; len(reps) > 0 {
			row = append(row, commas(medianRep(reps, func(r verifyReport) int64 { return r.WireBytes })),
				commas(medianRep(reps, func(r verifyReport) int64 { return r.DirsListed })))
		} else {
			row = append(row, "-", "-")
		}
		rows = append(rows, row)
	}
	if rs := w.runs[v1Verify]; len(rs) > 0 && data > 0 {
		wire := medianInt(rs, func(r runResult) int64 { return r.wire })
		ratio := float64(wire) / float64(data)
		var per []string
		for _, r := range rs {
			per = append(per, commas(r.wire))
		}
		notes = append(notes, fmt.Sprintf("verify of the unchanged tree: wire bytes (relay, both ways) / the tree's data bytes = %s / %s = %.4f %% (median; run by run %s bytes); target < %.0f %%: %s",
			commas(wire), commas(data), 100*ratio, strings.Join(per, ", "), 100*v1WireTarget, verdict(ratio, v1WireTarget)))
		reps := w.reps[v1Verify]
		notes = append(notes, fmt.Sprintf("verify's own count (wire_bytes: the size of the slave's answers, gRPC payloads, polls included): %s bytes (median), %.5f %% of the data; it listed %s directories; it compared %s files (%s bytes) here and %s (%s bytes) on the slave",
			commas(medianRep(reps, func(r verifyReport) int64 { return r.WireBytes })),
			100*float64(medianRep(reps, func(r verifyReport) int64 { return r.WireBytes }))/float64(data),
			commas(medianRep(reps, func(r verifyReport) int64 { return r.DirsListed })),
			commas(reps[0].Files), commas(reps[0].Bytes), commas(reps[0].SlaveFiles), commas(reps[0].SlaveBytes)))
		if len(w.runs[v1NoOp]) > 0 {
			noop := w.median(v1NoOp)
			s := fmt.Sprintf("verify / the no-op one-shot = %.3fs / %.3fs = %.2fx (medians, informational)", w.median(v1Verify).Seconds(), noop.Seconds(), w.median(v1Verify).Seconds()/noop.Seconds())
			if w.initial > 0 {
				s += fmt.Sprintf("; verify / the initial one-shot into an empty slave (%s) = %.3fs / %.3fs = %.2fx", w.initialFrom, w.median(v1Verify).Seconds(), w.initial.Seconds(), w.median(v1Verify).Seconds()/w.initial.Seconds())
			}
			notes = append(notes, s)
		}
	}
	if rs := w.runs[v1NoOp]; len(rs) > 0 {
		notes = append(notes, fmt.Sprintf("the no-op one-shots: georep reported %s files sent (median)", commas(medianInt(rs, func(r runResult) int64 { return r.sentFiles }))))
	}
	for c := v1Col(0); c < numV1; c++ {
		if rs := w.runs[c]; len(rs) > 0 {
			notes = append(notes, fmt.Sprintf("%s: peak anonymous RSS master %.1f / slave %.1f MiB", c,
				mib(maxInt(rs, func(r runResult) int64 { return r.anonMaster })), mib(maxInt(rs, func(r runResult) int64 { return r.anonSlave }))))
		}
	}
	notes = append(notes, "verify: georep verify --root SRC --slave RELAY --state-dir MASTER-STATE --insecure --json --log-level warn, against a slave started (untimed) for each run; wall is verify's process, both trees hashed (SHA-256) in it; MB/s = tree bytes / wall; every verify exit status and report checked; the trees were read once, untimed, before the first run")
	return header, rows, append(notes, w.notes...)
}

func medianRep(reps []verifyReport, f func(verifyReport) int64) int64 {
	rs := make([]runResult, len(reps))
	for i, r := range reps {
		rs[i].wire = f(r)
	}
	return medianInt(rs, func(r runResult) int64 { return r.wire })
}

func (w *verifyTable) subtitle() string {
	return fmt.Sprintf("tree %s (%d bytes): %d files, %d dirs; %d runs of the first two rows, in alternating order; one of the last",
		human(w.sum.bytes), w.sum.bytes, w.sum.files, w.sum.dirs, len(w.runs[v1Verify]))
}

func (w *verifyTable) text() string {
	header, rows, notes := w.table()
	return textTable(w.id, w.title, w.subtitle(), header, rows, notes)
}

func (w *verifyTable) markdown() string {
	header, rows, notes := w.table()
	var b strings.Builder
	fmt.Fprintf(&b, "\n### %s: %s\n\n%s\n\n", w.id, w.title, w.subtitle())
	markdownTable(&b, header, rows, notes)
	return b.String()
}

// textTable renders a table for the terminal: title, subtitle, aligned
// columns (the first left-aligned), notes.
func textTable(id, title, subtitle string, header []string, rows [][]string, notes []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s: %s\n  %s\n", id, title, subtitle)
	width := make([]int, len(header))
	all := append([][]string{header}, rows...)
	for _, r := range all {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	for _, r := range all {
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

// runVerify runs `georep verify --json` of src against a slave on tg
// (started for it, untimed), through a counting relay. The exit status
// is returned, not an error, when it is 0 or 1 and the report parses.
func (b *bench) runVerify(ctx context.Context, src string, tg target) (runResult, verifyReport, int, error) {
	res := runResult{sentFiles: -1, sentBytes: -1}
	var rep verifyReport
	syncFS(b.tmp)
	t0 := time.Now()
	sl, addr, err := b.startSlave(ctx, tg)
	if err != nil {
		return res, rep, -1, err
	}
	defer sl.kill()
	res.startup = time.Since(t0)
	rl, err := newRelay(addr)
	if err != nil {
		return res, rep, -1, err
	}
	p, err := startProc(ctx, b.cfg.georep, "verify", "--root", src, "--slave", rl.addr(), "--state-dir", tg.mstate(),
		"--insecure", "--json", "--log-level", "warn")
	if err != nil {
		rl.close(time.Second)
		return res, rep, -1, err
	}
	werr := p.wait()
	res.wire = rl.close(10 * time.Second)
	res.wireUp, res.wireDown = rl.split()
	serr := sl.stop(30 * time.Second)
	if ctx.Err() != nil {
		return res, rep, -1, ctx.Err()
	}
	code := 0
	if werr != nil {
		var ee *exec.ExitError
		if !errors.As(werr, &ee) {
			return res, rep, -1, fmt.Errorf("georep verify: %v\n%s", werr, p.report())
		}
		code = ee.ExitCode()
	}
	if code != 0 && code != 1 {
		return res, rep, code, fmt.Errorf("georep verify exited %s\n%s%s", exitDesc(werr), p.report(), sl.report())
	}
	if err := json.Unmarshal([]byte(p.stdout.String()), &rep); err != nil {
		return res, rep, code, fmt.Errorf("georep verify --json (exit %d): %v\n%s", code, err, p.report())
	}
	if serr != nil {
		return res, rep, code, fmt.Errorf("georep slave did not exit 0 on SIGTERM: %v\n%s", exitDesc(serr), sl.report())
	}
	res.wall = p.wall()
	res.rssMaster, res.rssSlave = p.maxRSS(), sl.maxRSS()
	res.anonMaster, res.anonSlave = p.maxAnon(), sl.maxAnon()
	res.cpuMaster, res.cpuSlave = p.cpu(), sl.cpu()
	res.masterLog = p.stderr.String()
	return res, rep, code, nil
}

// changeBehindBack changes n regular files under root (spread over the
// tree: evenly spaced in walk order, so in different directories when
// there are several), each byte inverted, size, mode and mtime kept (and
// atime), and returns their paths relative to root, sorted.
func changeBehindBack(root string, n int) ([]string, error) {
	var files []string
	err := walkTree(root, func(rel string, fi fs.FileInfo, _ string) error {
		if fi.Mode().IsRegular() && fi.Size() > 0 {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	n = min(n, len(files))
	var picked []string
	for k := 0; k < n; k++ {
		picked = append(picked, files[(2*k+1)*len(files)/(2*n)])
	}
	for _, rel := range picked {
		if err := invertKeepingTimes(filepath.Join(root, rel)); err != nil {
			return nil, err
		}
	}
	slices.Sort(picked)
	return picked, nil
}

// invertKeepingTimes inverts every byte of a file in place, then sets its
// atime and mtime back; it checks that size and mtime are as before.
func invertKeepingTimes(name string) error {
	fi, err := os.Lstat(name)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	atime := time.Unix(st.Atim.Sec, st.Atim.Nsec)
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(f)
	if err == nil {
		for i := range data {
			data[i] ^= 0xff
		}
		_, err = f.WriteAt(data, 0)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("changing %s: %w", name, err)
	}
	if err := os.Chtimes(name, atime, fi.ModTime()); err != nil {
		return err
	}
	after, err := os.Lstat(name)
	if err != nil {
		return err
	}
	if after.Size() != fi.Size() || !after.ModTime().Equal(fi.ModTime()) {
		return fmt.Errorf("changing %s: size or mtime moved (%d %v -> %d %v)", name, fi.Size(), fi.ModTime(), after.Size(), after.ModTime())
	}
	return nil
}

// v1 runs V1: src (summarized by sum) against the slave tree of tg, which
// holds a synced copy of it. initial is the wall time of the one-shot
// that made that copy (from says which), for comparison.
func (b *bench) v1(ctx context.Context, src string, sum treeSum, tg target, initial time.Duration, from string) error {
	w := &verifyTable{id: "V1", sum: sum, initial: initial, initialFrom: from,
		title: fmt.Sprintf("georep verify of an unchanged %s-file tree (W1's) against its synced slave, beside a no-op one-shot; then %d files changed on the slave behind georep's back (same size and mtime)",
			commas(sum.files), v1NChanged)}
	for _, d := range []string{src, tg.dst()} {
		b.progress("V1: warm-up read of %s", d)
		if err := warmup(d); err != nil {
			return err
		}
	}
	for r := 0; r < b.cfg.runs; r++ {
		cols := []v1Col{v1Verify, v1NoOp}
		if r%2 == 1 {
			slices.Reverse(cols)
		}
		for _, c := range cols {
			var res runResult
			var err error
			if c == v1Verify {
				var rep verifyReport
				var code int
				res, rep, code, err = b.runVerify(ctx, src, tg)
				if err == nil && (code != 0 || !rep.Equal || len(rep.Differences) != 0) {
					err = fmt.Errorf("georep verify of an unchanged tree: exit %d, equal %v, %d differences: %s",
						code, rep.Equal, len(rep.Differences), diffList(rep.Differences, 10))
				}
				if err == nil {
					w.reps[c] = append(w.reps[c], rep)
					if rep.Files != sum.files || rep.Bytes != sum.bytes || rep.SlaveFiles != sum.files || rep.SlaveBytes != sum.bytes {
						w.notes = append(w.notes, fmt.Sprintf("ANOMALY: run %d: verify compared %d files (%d bytes) here and %d (%d bytes) on the slave; the tree has %d (%d bytes)",
							r+1, rep.Files, rep.Bytes, rep.SlaveFiles, rep.SlaveBytes, sum.files, sum.bytes))
					}
				}
			} else {
				res, err = b.runTool(ctx, toolGeorep, src, tg, runOpts{})
				if err == nil {
					err = verify(src, tg.dst(), sum, b.cfg.fullVerify)
				}
				if err == nil && res.sentFiles != 0 {
					w.notes = append(w.notes, fmt.Sprintf("ANOMALY: run %d: the no-op one-shot sent %d files (%d bytes)", r+1, res.sentFiles, res.sentBytes))
				}
			}
			if err != nil {
				return fmt.Errorf("%s run %d, %s: %w", w.id, r+1, c, err)
			}
			if l := strings.TrimSpace(res.masterLog); l != "" {
				w.notes = append(w.notes, fmt.Sprintf("%s wrote to stderr (run %d): %s", c, r+1, tail(l, 600)))
			}
			w.runs[c] = append(w.runs[c], res)
			b.progress("%s run %d/%d %-14s %8.3fs %s", w.id, r+1, b.cfg.runs, c.short(), res.wall.Seconds(), res.brief())
		}
	}

	// Damage behind georep's back (no slave runs now), then verify again.
	changed, err := b.damage(tg.dst())
	if err != nil {
		return err
	}
	res, rep, code, err := b.runVerify(ctx, src, tg)
	if err != nil {
		return fmt.Errorf("%s, %s: %w", w.id, v1Changed, err)
	}
	w.runs[v1Changed] = append(w.runs[v1Changed], res)
	w.reps[v1Changed] = append(w.reps[v1Changed], rep)
	b.progress("%s %-14s %8.3fs exit %d, %d differences %s", w.id, v1Changed.short(), res.wall.Seconds(), code, len(rep.Differences), res.brief())
	var got []string
	kinds := true
	for _, d := range rep.Differences {
		got = append(got, d.Path)
		kinds = kinds && d.Kind == "content"
	}
	slices.Sort(got)
	ok := code == 1 && !rep.Equal && kinds && slices.Equal(got, changed)
	result := fmt.Sprintf("after %d files were changed on the slave (every byte inverted; size, mode and mtime kept): verify exited %d, equal %v, %d differences (%s)",
		len(changed), code, rep.Equal, len(rep.Differences), diffList(rep.Differences, v1NChanged))
	if ok {
		w.notes = append(w.notes, result+": exactly the changed files, all of kind content, as expected")
	} else {
		w.notes = append(w.notes, "ANOMALY: "+result+"; expected exit 1 and exactly "+strings.Join(changed, ", ")+", of kind content")
	}
	b.done(w)
	if !ok {
		return fmt.Errorf("%s: georep verify did not report exactly the %d files changed on the slave (see its table)", w.id, len(changed))
	}
	return nil
}

// damage changes v1NChanged files of the slave tree dst behind georep's
// back.
func (b *bench) damage(dst string) ([]string, error) {
	changed, err := changeBehindBack(dst, v1NChanged)
	if err != nil {
		return nil, fmt.Errorf("V1: changing files on the slave: %w", err)
	}
	b.progress("V1: changed %d files on the slave (same size and mtime): %s", len(changed), strings.Join(changed, " "))
	syncFS(dst)
	return changed, nil
}

// diffList renders up to n differences.
func diffList(ds []verifyDiff, n int) string {
	var s []string
	for i, d := range ds {
		if i == n {
			s = append(s, fmt.Sprintf("and %d more", len(ds)-n))
			break
		}
		s = append(s, d.String())
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, "; ")
}

// v1setup runs V1 against W1's last georep copy when W1 ran (W5 synced it
// again), else against a copy made here by a one-shot into an empty slave.
func (b *bench) v1setup(ctx context.Context, src string, sum treeSum, w1 *workload, w1targets map[tool]target) error {
	wall := func(r runResult) time.Duration { return r.wall }
	if tg, ok := w1targets[toolGeorep]; ok && w1 != nil && len(w1.runs[toolGeorep]) > 0 {
		return b.v1(ctx, src, sum, tg, medianDur(w1.runs[toolGeorep], wall), "W1's georep median")
	}
	tg, err := b.newTargetNamed("V1", "georep", 0)
	if err != nil {
		return err
	}
	defer b.remove(tg.dir)
	b.progress("V1: warm-up read of %s, then a georep one-shot into an empty slave", src)
	if err := warmup(src); err != nil {
		return err
	}
	res, err := b.runTool(ctx, toolGeorep, src, tg, runOpts{})
	if err != nil {
		return fmt.Errorf("V1, the one-shot that makes the slave: %w", err)
	}
	if err := verify(src, tg.dst(), sum, b.cfg.fullVerify); err != nil {
		return fmt.Errorf("V1, the one-shot that makes the slave: wrong result: %w", err)
	}
	b.progress("V1 one-shot into an empty slave %8.3fs %s", res.wall.Seconds(), res.brief())
	return b.v1(ctx, src, sum, tg, res.wall, "V1's own, one run")
}
