package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// W6: what excluding costs a one-shot (issue 22, point 3). The W1 tree
// (same file count, sizes and content) laid out so that rules leave half
// of it out: a third of the files in directories cache-NNNN (excluded by
// "cache-*/"), and a quarter of the rest named *.tmp beside the included
// files (excluded by "*.tmp"). Timed: georep with those rules on the full
// tree; georep on a second source tree holding only the included half
// (the same generator with the excluded files left out); a walk of the
// full tree; the rsync daemon with the same --exclude patterns; and georep
// with the same rules on the included half, where they match nothing (the
// cost of the checks alone). Target:
// georep with rules takes at most what it takes on the included half plus
// the walk.

// w6Excludes are W6's rules, as --exclude patterns for both tools.
var w6Excludes = []string{"cache-*/", "*.tmp"}

// w6Class is what a file of W6 is: file i's class is w6Classes[i%6], so
// that exactly half are excluded when nFiles is a multiple of 6 or
// leaves a remainder of 2 or 4 (100,000 does), and one more or fewer
// otherwise.
type w6Class int

const (
	w6Included w6Class = iota
	w6Cache            // in a cache-NNNN directory
	w6Tmp              // *.tmp, beside included files
)

var w6Classes = [6]w6Class{w6Cache, w6Included, w6Cache, w6Included, w6Tmp, w6Included}

// rulesTree counts what genRulesTree made (the full tree's counts, also
// when only the included half was written).
type rulesTree struct {
	files, bytes           int64 // all files
	inclFiles, inclBytes   int64
	cacheFiles, cacheBytes int64
	tmpFiles, tmpBytes     int64
	cacheDirs, dirs        int // cache-NNNN dirs; dNNNN dirs (included, holding the included and *.tmp files)
}

func (t rulesTree) exclFiles() int64 { return t.cacheFiles + t.tmpFiles }
func (t rulesTree) exclBytes() int64 { return t.cacheBytes + t.tmpBytes }

// w6Mtime is file i's mtime: the same in both source trees, so that the
// replica of the full tree can be compared with the included half.
func w6Mtime(i int) time.Time {
	return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
}

// genRulesTree writes W6's tree under root: nFiles files of the W1
// generator (fileGen) over nDirs directories, a third of them cache-NNNN.
// With full false, only the included part is written (the cache
// directories and the *.tmp files are left out; the generator runs
// through them all the same, so the included files are the same).
func genRulesTree(root string, nFiles, nDirs int, full bool) (rulesTree, error) {
	t := rulesTree{cacheDirs: max(1, nDirs/3)}
	t.dirs = max(1, nDirs-t.cacheDirs)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return t, err
	}
	mkdir := func(name string) error { return os.Mkdir(filepath.Join(root, name), 0o755) }
	for d := 0; d < t.dirs; d++ {
		if err := mkdir(fmt.Sprintf("d%04d", d)); err != nil {
			return t, err
		}
	}
	if full {
		for d := 0; d < t.cacheDirs; d++ {
			if err := mkdir(fmt.Sprintf("cache-%04d", d)); err != nil {
				return t, err
			}
		}
	}
	g := newFileGen(nFiles)
	var nCache, nOther int
	for i := 0; i < nFiles; i++ {
		b := g.next()
		n := int64(len(b))
		t.files++
		t.bytes += n
		var rel string
		class := w6Classes[i%len(w6Classes)]
		switch class {
		case w6Cache:
			rel = filepath.Join(fmt.Sprintf("cache-%04d", nCache%t.cacheDirs), fmt.Sprintf("f%07d.dat", i))
			nCache++
			t.cacheFiles++
			t.cacheBytes += n
		case w6Tmp:
			rel = filepath.Join(fmt.Sprintf("d%04d", nOther%t.dirs), fmt.Sprintf("f%07d.tmp", i))
			nOther++
			t.tmpFiles++
			t.tmpBytes += n
		default:
			rel = filepath.Join(fmt.Sprintf("d%04d", nOther%t.dirs), fmt.Sprintf("f%07d.dat", i))
			nOther++
			t.inclFiles++
			t.inclBytes += n
		}
		if !full && class != w6Included {
			continue
		}
		name := filepath.Join(root, rel)
		if err := os.WriteFile(name, b, 0o644); err != nil {
			return t, err
		}
		if err := os.Chtimes(name, w6Mtime(i), w6Mtime(i)); err != nil {
			return t, err
		}
	}
	return t, nil
}

// w6Col is a column (a row of the table) of W6.
type w6Col int

const (
	w6Rules     w6Col = iota // georep with the rules, full tree
	w6Half                   // georep, the included half only
	w6Walk                   // a walk of the full tree
	w6Rsync                  // rsync daemon with the same --exclude patterns, full tree
	w6HalfRules              // georep with the same rules on the included half (nothing to exclude: the checks alone)
	numW6
)

func (c w6Col) String() string {
	return [...]string{"georep, rules, full tree", "georep, included half only", "walk of the full tree", "rsync-daemon, --exclude, full tree",
		"georep, rules, included half only"}[c]
}

func (c w6Col) short() string {
	return [...]string{"georep-rules", "georep-half", "walk", "rsyncd-excl", "georep-half-rules"}[c]
}

// rulesTable is W6's result.
type rulesTable struct {
	id, title  string
	tree       rulesTree
	full, half treeSum // summaries of the two source trees
	runs       [numW6][]runResult
	notes      []string
}

func (w *rulesTable) add(c w6Col, r runResult) { w.runs[c] = append(w.runs[c], r) }

func (w *rulesTable) median(c w6Col) time.Duration {
	if len(w.runs[c]) == 0 {
		return 0
	}
	return medianDur(w.runs[c], func(r runResult) time.Duration { return r.wall })
}

// allowance is the target's bound: georep on the included half plus the
// walk (medians).
func (w *rulesTable) allowance() time.Duration { return w.median(w6Half) + w.median(w6Walk) }

func (w *rulesTable) table() (header []string, rows [][]string, notes []string) {
	header = append(append([]string{"column"}, statsHeader...), "time / (half + walk)")
	allow := w.allowance()
	for c := w6Col(0); c < numW6; c++ {
		rs := w.runs[c]
		if len(rs) == 0 {
			continue
		}
		payload := w.tree.inclBytes
		if c == w6Walk {
			payload = 0
		}
		row := statsRow(c.String(), rs, payload)
		if allow > 0 {
			row = append(row, fmt.Sprintf("%.2fx", w.median(c).Seconds()/allow.Seconds()))
		} else {
			row = append(row, "-")
		}
		rows = append(rows, row)
	}
	t := w.tree
	pct := func(a, b int64) float64 { return 100 * float64(a) / float64(b) }
	notes = append(notes,
		fmt.Sprintf("full tree: %s files (%s bytes) in %d dirs; excluded: %s files in %d cache-NNNN dirs (%s bytes) by 'cache-*/' and %s *.tmp files (%s bytes) by '*.tmp', %s files (%.1f %% of the count, %.1f %% of the bytes); included: %s files (%s bytes) in %d dirs, the second source tree",
			commas(t.files), commas(t.bytes), t.dirs+t.cacheDirs,
			commas(t.cacheFiles), t.cacheDirs, commas(t.cacheBytes), commas(t.tmpFiles), commas(t.tmpBytes),
			commas(t.exclFiles()), pct(t.exclFiles(), t.files), pct(t.exclBytes(), t.bytes),
			commas(t.inclFiles), commas(t.inclBytes), t.dirs))
	if allow > 0 && len(w.runs[w6Rules]) > 0 {
		ratio := w.median(w6Rules).Seconds() / allow.Seconds()
		verdict := "met"
		if ratio > 1 {
			verdict = fmt.Sprintf("NOT met (%.0f %% over)", 100*(ratio-1))
		}
		var per []string
		for i, r := range w.runs[w6Rules] {
			if i < len(w.runs[w6Half]) && i < len(w.runs[w6Walk]) {
				per = append(per, fmt.Sprintf("%.2f", r.wall.Seconds()/(w.runs[w6Half][i].wall+w.runs[w6Walk][i].wall).Seconds()))
			}
		}
		notes = append(notes, fmt.Sprintf("georep with rules / (georep on the included half + walk) = %.3fs / (%.3fs + %.3fs) = %.2f (medians; run by run %s); target <= 1.0, at most that of the included half plus the cost of a walk: %s",
			w.median(w6Rules).Seconds(), w.median(w6Half).Seconds(), w.median(w6Walk).Seconds(), ratio, strings.Join(per, ", "), verdict))
		notes = append(notes, fmt.Sprintf("georep with rules - georep on the included half = %+.3fs (medians)",
			(w.median(w6Rules)-w.median(w6Half)).Seconds()))
	}
	notes = append(notes, "walk: filepath.WalkDir of the full tree in the bench's process (getdents, then an lstat of every entry: what a crawl does at least), timed in the same rotation as the other columns, so as warm as they are: the trees were read once, untimed, before the first run; CPU is the bench process's user+sys over the walk")
	if len(w.runs[w6HalfRules]) > 0 && len(w.runs[w6Half]) > 0 {
		cpu := func(c w6Col) time.Duration {
			return medianDur(w.runs[c], func(r runResult) time.Duration { return r.cpuMaster })
		}
		notes = append(notes, fmt.Sprintf("the rule checks alone (the same rules on the included half, where they match nothing): wall %+.3fs, master CPU %+.2fs against no rules (medians); with rules, full tree against the included half without: master CPU %+.2fs",
			(w.median(w6HalfRules)-w.median(w6Half)).Seconds(), (cpu(w6HalfRules)-cpu(w6Half)).Seconds(), (cpu(w6Rules)-cpu(w6Half)).Seconds()))
	}
	for _, c := range []w6Col{w6Rules, w6Half, w6HalfRules} {
		rs := w.runs[c]
		if len(rs) == 0 {
			continue
		}
		notes = append(notes, fmt.Sprintf("%s: georep reported (median) %s files sent, %s bytes of file data; peak anonymous RSS master %.1f / slave %.1f MiB",
			c, commas(medianInt(rs, func(r runResult) int64 { return r.sentFiles })),
			commas(medianInt(rs, func(r runResult) int64 { return r.sentBytes })),
			mib(maxInt(rs, func(r runResult) int64 { return r.anonMaster })),
			mib(maxInt(rs, func(r runResult) int64 { return r.anonSlave }))))
	}
	if rs := w.runs[w6Rsync]; len(rs) > 0 {
		notes = append(notes, fmt.Sprintf("rsync-daemon durable (median of wall + a syncfs of its destination right after, which georep does inside its wall): %.3fs",
			medianDur(rs, func(r runResult) time.Duration { return r.wall + r.flush }).Seconds()))
	}
	notes = append(notes, fmt.Sprintf("georep: --exclude %s; rsync: -a -H -X --numeric-ids --exclude=%s; MB/s = included bytes / wall; every destination is compared with the included-half source tree",
		strings.Join(w6Excludes, " --exclude "), strings.Join(w6Excludes, " --exclude=")))
	return header, rows, append(notes, w.notes...)
}

func (w *rulesTable) subtitle() string {
	return fmt.Sprintf("full tree %s (%d bytes): %d files, %d dirs; included half %s (%d bytes): %d files, %d dirs; %d runs per column",
		human(w.full.bytes), w.full.bytes, w.full.files, w.full.dirs, human(w.half.bytes), w.half.bytes, w.half.files, w.half.dirs, len(w.runs[w6Rules]))
}

func (w *rulesTable) text() string {
	header, rows, notes := w.table()
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s: %s\n  %s\n", w.id, w.title, w.subtitle())
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

func (w *rulesTable) markdown() string {
	header, rows, notes := w.table()
	var b strings.Builder
	fmt.Fprintf(&b, "\n### %s: %s\n\n%s\n\n", w.id, w.title, w.subtitle())
	markdownTable(&b, header, rows, notes)
	return b.String()
}

// w6 runs W6.
func (b *bench) w6(ctx context.Context, nFiles, nDirs int) error {
	full, half := filepath.Join(b.tmp, "w6-src"), filepath.Join(b.tmp, "w6-half")
	b.progress("W6: generating %d files in %d dirs, and the included half in a second tree", nFiles, nDirs)
	tree, err := genRulesTree(full, nFiles, nDirs, true)
	if err != nil {
		return err
	}
	if _, err := genRulesTree(half, nFiles, nDirs, false); err != nil {
		return err
	}
	w := &rulesTable{id: "W6", tree: tree,
		title: fmt.Sprintf("%s files of 1-8 KiB in %d dirs, rules exclude %s of them (%s): initial sync into an empty dir with the rules, against the included half alone plus a walk",
			commas(tree.files), tree.dirs+tree.cacheDirs, commas(tree.exclFiles()), "--exclude 'cache-*/' --exclude '*.tmp'")}
	if w.full, err = summarize(full); err != nil {
		return err
	}
	if w.half, err = summarize(half); err != nil {
		return err
	}
	if w.full.files != tree.files || w.half.files != tree.inclFiles || w.half.bytes != tree.inclBytes {
		return fmt.Errorf("W6: generated trees do not add up: full %v, half %v, expected %d files, %d included (%d bytes)",
			w.full, w.half, tree.files, tree.inclFiles, tree.inclBytes)
	}
	b.progress("W6: %d files (%d bytes); excluded %d files (%d in cache dirs, %d *.tmp), %d bytes; included %d files, %d bytes",
		tree.files, tree.bytes, tree.exclFiles(), tree.cacheFiles, tree.tmpFiles, tree.exclBytes(), tree.inclFiles, tree.inclBytes)
	for _, src := range []string{full, half} {
		b.progress("W6: warm-up read of %s", src)
		if err := warmup(src); err != nil {
			return err
		}
	}
	var gArgs, rArgs []string
	for _, p := range w6Excludes {
		gArgs = append(gArgs, "--exclude", p)
		rArgs = append(rArgs, "--exclude="+p)
	}
	withRules := runOpts{georepArgs: gArgs, rsyncArgs: rArgs}
	var all []string
	defer func() { b.remove(all...) }()
	logs := map[string]bool{}
	for r := 0; r < b.cfg.runs; r++ {
		// Run r visits the columns from 2r in steps of 1 + r%4 (numW6 is
		// prime, so every step visits every column): from run to run a
		// column starts, ends and follows another column in turn (a plain
		// rotation would put the same column after rsync's unsynced writes
		// every time). Runs 1-3: 0 1 2 3 4, 2 4 1 3 0, 4 2 0 3 1.
		for i := 0; i < int(numW6); i++ {
			c := w6Col((2*r + i*(1+r%(int(numW6)-1))) % int(numW6))
			var res runResult
			var tg target
			if c != w6Walk {
				if tg, err = b.newTargetNamed(w.id, c.short(), r); err != nil {
					return err
				}
				all = append(all, tg.dir)
			}
			switch c {
			case w6Rules:
				res, err = b.runTool(ctx, toolGeorep, full, tg, withRules)
			case w6Half:
				res, err = b.runTool(ctx, toolGeorep, half, tg, runOpts{})
			case w6Rsync:
				res, err = b.runTool(ctx, toolRsyncd, full, tg, withRules)
			case w6HalfRules:
				res, err = b.runTool(ctx, toolGeorep, half, tg, withRules)
			default:
				syncFS(b.tmp)
				res, err = walkCost(full)
			}
			if err != nil {
				return fmt.Errorf("%s run %d, %s: %w", w.id, r+1, c, err)
			}
			if c != w6Walk {
				if err := verify(half, tg.dst(), w.half, b.cfg.fullVerify); err != nil {
					return fmt.Errorf("%s run %d, %s: wrong result (compared with the included half): %w", w.id, r+1, c, err)
				}
			}
			if c == w6Rules || c == w6Half || c == w6HalfRules {
				if res.sentFiles != tree.inclFiles {
					w.notes = append(w.notes, fmt.Sprintf("ANOMALY: run %d, %s: georep sent %d files, the included half has %d", r+1, c, res.sentFiles, tree.inclFiles))
				}
				if l := strings.TrimSpace(res.masterLog); l != "" && !logs[c.String()] {
					logs[c.String()] = true
					w.notes = append(w.notes, fmt.Sprintf("%s: the master wrote to stderr (run %d; first time only): %s", c, r+1, tail(l, 600)))
				}
			}
			w.add(c, res)
			b.progress("%s run %d/%d %-12s %8.3fs %s", w.id, r+1, b.cfg.runs, c.short(), res.wall.Seconds(), res.brief())
		}
	}
	b.done(w)
	b.remove(full, half)
	return nil
}

// walkCost times a walk of root: each directory listed, every entry
// lstat()ed, in this process; CPU is the process's over the walk.
func walkCost(root string) (runResult, error) {
	res := runResult{wire: -1, rssMaster: -1, rssSlave: -1, cpuSlave: -1, sentFiles: -1, sentBytes: -1}
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	t0 := time.Now()
	var n int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if _, err := d.Info(); err != nil { // lstat
			return err
		}
		n++
		return nil
	})
	res.wall = time.Since(t0)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := func(ru *syscall.Rusage) time.Duration {
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	res.cpuMaster = cpu(&ru1) - cpu(&ru0)
	if err != nil {
		return res, fmt.Errorf("walking %s: %w", root, err)
	}
	if n == 0 {
		return res, fmt.Errorf("walking %s: no entries", root)
	}
	return res, nil
}
