package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"
)

// workload collects the runs of every tool on one workload.
type workload struct {
	id, title       string
	payload         int64 // bytes for MB/s
	payloadNote     string
	tree            treeSum
	throughputRatio bool
	runs            [numTools][]runResult
	notes           []string
}

func (w *workload) add(t tool, r runResult) { w.runs[t] = append(w.runs[t], r) }

func (r runResult) brief() string {
	var parts []string
	if r.wire >= 0 {
		parts = append(parts, "wire "+human(r.wire))
	}
	if r.cpuSlave >= 0 {
		parts = append(parts, fmt.Sprintf("cpu %.2f/%.2fs", r.cpuMaster.Seconds(), r.cpuSlave.Seconds()))
	} else {
		parts = append(parts, fmt.Sprintf("cpu %.2fs", r.cpuMaster.Seconds()))
	}
	switch {
	case r.rssMaster < 0:
	case r.rssSlave >= 0:
		parts = append(parts, fmt.Sprintf("rss %.1f", mib(r.rssMaster)), fmt.Sprintf("/%.1f MiB", mib(r.rssSlave)))
	default:
		parts = append(parts, fmt.Sprintf("rss %.1f", mib(r.rssMaster)), "MiB")
	}
	if r.sentFiles >= 0 {
		parts = append(parts, fmt.Sprintf("sent %d files (%d bytes)", r.sentFiles, r.sentBytes))
	}
	return strings.Join(parts, " ")
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

func medianDur(rs []runResult, f func(runResult) time.Duration) time.Duration {
	v := make([]time.Duration, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func medianInt(rs []runResult, f func(runResult) int64) int64 {
	v := make([]int64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func maxInt(rs []runResult, f func(runResult) int64) int64 {
	m := int64(-1)
	for _, r := range rs {
		m = max(m, f(r))
	}
	return m
}

// table renders the workload as a header, rows and notes.
func (w *workload) table() (header []string, rows [][]string, notes []string) {
	header = append(append([]string{"tool"}, statsHeader...), "time / rsync-daemon")
	if w.throughputRatio {
		header = append(header, "MB/s / rsync-daemon")
	}
	wall := func(r runResult) time.Duration { return r.wall }
	var refWall time.Duration
	if rs := w.runs[toolRsyncd]; len(rs) > 0 {
		refWall = medianDur(rs, wall)
	}
	for t := tool(0); t < numTools; t++ {
		rs := w.runs[t]
		if len(rs) == 0 {
			continue
		}
		med := medianDur(rs, wall)
		row := statsRow(t.String(), rs, w.payload)
		if refWall > 0 {
			ratio := med.Seconds() / refWall.Seconds()
			row = append(row, fmt.Sprintf("%.2fx", ratio))
			if w.throughputRatio {
				row = append(row, fmt.Sprintf("%.2fx", 1/ratio))
			}
		} else {
			row = append(row, "-")
			if w.throughputRatio {
				row = append(row, "-")
			}
		}
		rows = append(rows, row)
	}
	if rs := w.runs[toolGeorep]; len(rs) > 0 {
		notes = append(notes, fmt.Sprintf("georep peak anonymous RSS (heap, stacks; the rest of peak RSS is file-backed: the mmapped gfid index, the binary): master %.1f MiB, slave %.1f MiB",
			float64(maxInt(rs, func(r runResult) int64 { return r.anonMaster }))/1024,
			float64(maxInt(rs, func(r runResult) int64 { return r.anonSlave }))/1024))
		notes = append(notes, fmt.Sprintf("georep reported (median): %d files sent, %d bytes of file data; slave ready in %.2fs (untimed)",
			medianInt(rs, func(r runResult) int64 { return r.sentFiles }),
			medianInt(rs, func(r runResult) int64 { return r.sentBytes }),
			medianDur(rs, func(r runResult) time.Duration { return r.startup }).Seconds()))
	}
	if n := w.durableNote(); n != "" {
		notes = append(notes, n)
	}
	if w.payloadNote != "" {
		notes = append(notes, w.payloadNote)
	}
	notes = append(notes, w.notes...)
	return header, rows, notes
}

// statsHeader is the header of statsRow's cells.
var statsHeader = []string{"wall s (median)", "min-max s", "MB/s", "wire bytes", "RSS master MiB", "RSS slave MiB",
	"CPU s master", "CPU s slave"}

// statsRow is a table row of name and the figures of its runs: median
// wall with min-max, MB/s (payload / median wall; "-" for a payload of
// 0), median wire bytes, peak RSS (max over runs), median CPU; "-" where a
// figure does not apply (negative).
func statsRow(name string, rs []runResult, payload int64) []string {
	wall := func(r runResult) time.Duration { return r.wall }
	med := medianDur(rs, wall)
	lo, hi := rs[0].wall, rs[0].wall
	for _, r := range rs {
		lo, hi = min(lo, r.wall), max(hi, r.wall)
	}
	row := []string{name, fmt.Sprintf("%.3f", med.Seconds()), fmt.Sprintf("%.3f-%.3f", lo.Seconds(), hi.Seconds())}
	if payload > 0 {
		row = append(row, fmt.Sprintf("%.1f", float64(payload)/1e6/med.Seconds()))
	} else {
		row = append(row, "-")
	}
	if wire := medianInt(rs, func(r runResult) int64 { return r.wire }); wire >= 0 {
		row = append(row, commas(wire))
	} else {
		row = append(row, "-")
	}
	for _, f := range []func(runResult) int64{
		func(r runResult) int64 { return r.rssMaster },
		func(r runResult) int64 { return r.rssSlave },
	} {
		if v := maxInt(rs, f); v >= 0 {
			row = append(row, fmt.Sprintf("%.1f", mib(v)))
		} else {
			row = append(row, "-")
		}
	}
	for _, f := range []func(runResult) time.Duration{
		func(r runResult) time.Duration { return r.cpuMaster },
		func(r runResult) time.Duration { return r.cpuSlave },
	} {
		if c := medianDur(rs, f); c >= 0 {
			row = append(row, fmt.Sprintf("%.2f", c.Seconds()))
		} else {
			row = append(row, "-")
		}
	}
	return row
}

// durableNote compares the tools once each copy is durable: rsync's wall
// plus the syncfs of its destination right after (timed separately), and
// georep's wall as is (it syncs before it reports success). Medians of
// the sums. Empty when there is no rsync-daemon run.
func (w *workload) durableNote() string {
	durable := func(r runResult) time.Duration { return r.wall + r.flush }
	ref := w.runs[toolRsyncd]
	if len(ref) == 0 || len(w.runs[toolGeorep]) == 0 {
		return ""
	}
	refD := medianDur(ref, durable)
	parts := []string{}
	for t := tool(0); t < numTools; t++ {
		if rs := w.runs[t]; len(rs) > 0 {
			d := medianDur(rs, durable)
			parts = append(parts, fmt.Sprintf("%s %.3fs (%.2fx)", t, d.Seconds(), d.Seconds()/refD.Seconds()))
		}
	}
	return fmt.Sprintf("durable (median of wall + a syncfs of the destination right after the run, which georep does inside its wall; vs rsync-daemon's): %s; rsync-daemon's syncfs alone %.3fs",
		strings.Join(parts, ", "), medianDur(ref, func(r runResult) time.Duration { return r.flush }).Seconds())
}

func (w *workload) subtitle() string {
	return fmt.Sprintf("payload %s (%d bytes); source tree: %d files, %d dirs, %d symlinks, %d others; %d runs per tool",
		human(w.payload), w.payload, w.tree.files, w.tree.dirs, w.tree.links, w.tree.others, len(w.runs[toolGeorep]))
}

func (w *workload) text() string {
	header, rows, notes := w.table()
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s: %s\n  %s\n", w.id, w.title, w.subtitle())
	width := make([]int, len(header))
	for i, h := range header {
		width[i] = len(h)
	}
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	line := func(cells []string) {
		b.WriteString("  ")
		for i, c := range cells {
			if i == 0 {
				fmt.Fprintf(&b, "%-*s", width[i], c)
			} else {
				fmt.Fprintf(&b, "  %*s", width[i], c)
			}
		}
		b.WriteString("\n")
	}
	line(header)
	for _, r := range rows {
		line(r)
	}
	for _, n := range notes {
		fmt.Fprintf(&b, "  - %s\n", n)
	}
	return b.String()
}

func (w *workload) markdown() string {
	header, rows, notes := w.table()
	var b strings.Builder
	fmt.Fprintf(&b, "\n### %s: %s\n\n%s\n\n", w.id, w.title, w.subtitle())
	markdownTable(&b, header, rows, notes)
	return b.String()
}

// markdownTable writes a table (first column left-aligned, the rest
// right-aligned) and its notes as a list.
func markdownTable(b *strings.Builder, header []string, rows [][]string, notes []string) {
	fmt.Fprintf(b, "| %s |\n|---|", strings.Join(header, " | "))
	for range header[1:] {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| %s |\n", strings.Join(r, " | "))
	}
	if len(notes) > 0 {
		b.WriteString("\n")
		for _, n := range notes {
			fmt.Fprintf(b, "- %s\n", n)
		}
	}
}

const legend = `wall: the master / rsync client process from start to exit (the slave and the rsync daemon are started, untimed, before each run).
MB/s: payload bytes (10^6) / median wall. wire bytes: both directions through a counting TCP relay on 127.0.0.1 (median).
RSS: peak resident set from wait4 rusage (max over runs); CPU: user+system seconds from the same rusage (median). For rsync, "master" is the client (with the children it reaped), "slave" the daemon with its per-connection children.
Before each run the work filesystem is flushed (syncfs, untimed); the georep slave syncfs()es the slave tree before it reports success (durability), rsync does not fsync; the "durable" note under each table adds, to rsync's wall, a syncfs of its destination timed right after the run.
Initial syncs start from an empty destination and, for georep, fresh slave and master state dirs. Tools run in rotated order run by run.
rsync: -a -H -X --numeric-ids; rsync-daemon over rsync://127.0.0.1 (through the relay); rsync-local src/ dst/ on one machine.
`

type machine struct {
	date, cpu, kernel, rsync, georep, tmpfs string
	lsyncd                                  string // when L1-L3 run
	ncpu                                    int
	cfg                                     config
}

func machineInfo(cfg config) machine {
	m := machine{date: time.Now().Format(time.RFC3339), ncpu: runtime.NumCPU(), cfg: cfg, cpu: "unknown"}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command(cfg.rsync, "--version").Output(); err == nil {
		m.rsync, _, _ = strings.Cut(string(out), "\n")
	}
	m.georep = cfg.georep
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		if def, _ := filepath.Abs("bin/georep"); cfg.georep == def {
			m.georep += " (git " + strings.TrimSpace(string(out)) + ")"
		} else {
			// GEOREP named another binary: what it was built from is not
			// known here.
			m.georep += " (named by GEOREP; the working tree is at git " + strings.TrimSpace(string(out)) + ")"
		}
	}
	m.tmpfs = os.TempDir()
	var st syscall.Statfs_t
	if syscall.Statfs(os.TempDir(), &st) == nil {
		names := map[int64]string{0xEF53: "ext4", 0x01021994: "tmpfs", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x794c7630: "overlayfs", 0x2FC12FC1: "zfs"}
		if n, ok := names[int64(st.Type)]; ok {
			m.tmpfs += " (" + n
			if n == "ext4" && !ext4HasJournal(os.TempDir()) {
				m.tmpfs += " WITHOUT a journal: file creation slows down for minutes after many deletions, by anyone; expect noise in W1/W2/W1x2"
			}
			m.tmpfs += ")"
		} else {
			m.tmpfs += fmt.Sprintf(" (fs magic %#x)", st.Type)
		}
	}
	return m
}

// ext4HasJournal reports whether the ext4 filesystem holding dir has a
// jbd2 journal (true when it cannot tell).
func ext4HasJournal(dir string) bool {
	var st syscall.Stat_t
	if syscall.Stat(dir, &st) != nil {
		return true
	}
	dev := uint64(st.Dev)
	major, minor := (dev>>8)&0xfff|(dev>>32)&^0xfff, dev&0xff|(dev>>12)&^0xff
	uevent, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/uevent", major, minor))
	if err != nil {
		return true
	}
	name := ""
	for _, l := range strings.Split(string(uevent), "\n") {
		if v, ok := strings.CutPrefix(l, "DEVNAME="); ok {
			name = v
		}
	}
	if _, err := os.Stat("/proc/fs/ext4/" + name); name == "" || err != nil {
		return true
	}
	ents, err := os.ReadDir("/proc/fs/jbd2")
	if err != nil {
		return !os.IsNotExist(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), name+"-") {
			return true
		}
	}
	return false
}

func (m machine) lines() []string {
	l := []string{
		"date: " + m.date,
		fmt.Sprintf("machine: %d CPUs (nproc), %s, kernel %s, %s", m.ncpu, m.cpu, m.kernel, runtime.Version()),
		"georep: " + m.georep,
		"rsync: " + m.rsync,
	}
	if m.lsyncd != "" {
		l = append(l, "lsyncd: "+m.lsyncd)
	}
	l = append(l,
		"work dir: "+m.tmpfs,
		fmt.Sprintf("BENCH_SCALE=%g RUNS=%d; content verification: %s", m.cfg.scale, m.cfg.runs,
			map[bool]string{true: "full", false: "quick (W3/W4 full)"}[m.cfg.fullVerify]),
	)
	return append(l, m.cfg.notes...)
}

func (m machine) text() string {
	var b strings.Builder
	b.WriteString("georep vs rsync benchmark\n")
	for _, l := range m.lines() {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	for _, l := range strings.Split(strings.TrimSpace(legend), "\n") {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	return b.String()
}

func (b *bench) markdown(m machine) string {
	var s strings.Builder
	s.WriteString("# georep vs rsync benchmark\n\n")
	for _, l := range m.lines() {
		fmt.Fprintf(&s, "- %s\n", l)
	}
	s.WriteString("\n")
	for _, l := range strings.Split(strings.TrimSpace(legend), "\n") {
		fmt.Fprintf(&s, "%s\n\n", l)
	}
	for _, w := range b.results {
		s.WriteString(w.markdown())
	}
	fmt.Fprintf(&s, "\ntotal bench time %s\n", time.Since(b.started).Round(100*time.Millisecond))
	return s.String()
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func commas(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
