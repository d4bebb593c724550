package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/georep/georep/internal/bwsched"
	"github.com/georep/georep/internal/syncstatus"
)

type statusOptions struct {
	session sessionFlags
	detail  bool
	json    bool
	// base is where the sessions are listed from when none is named
	// (default stateBase(); tests).
	base string
}

func runStatusCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o statusOptions
	fs := newFlagSet("status", stderr)
	o.session.register(fs)
	fs.BoolVar(&o.detail, "detail", false, "also pending ops, failures, totals, uptime and the checkpoint")
	fs.BoolVar(&o.json, "json", false, "print the figures as JSON (a list, one object per session)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return runStatus(ctx, o, stdout)
}

// runStatus prints the status of the named session, or of every session
// under the default state directories when none is named.
func runStatus(ctx context.Context, o statusOptions, stdout io.Writer) error {
	ts, err := o.session.targets(true)
	if err != nil {
		return err
	}
	var dirs []string
	for _, t := range ts {
		dirs = append(dirs, t.stateDir)
	}
	dir := strings.Join(dirs, ", ")
	if o.base == "" {
		o.base = stateBase()
	}
	if len(dirs) == 0 {
		if dirs, err = filepath.Glob(filepath.Join(o.base, "master-*")); err != nil {
			return err
		}
	}
	var snaps []*syncstatus.Snapshot
	for _, d := range dirs {
		s, err := syncstatus.Get(ctx, d)
		if errors.Is(err, syncstatus.ErrNoSession) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
		snaps = append(snaps, s)
	}
	if len(snaps) == 0 {
		if dir != "" {
			return fmt.Errorf("no georep session in %s", dir)
		}
		return fmt.Errorf("no georep session under %s (name one with --state-dir, or --root and --slave)", o.base)
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(snaps)
	}
	renderStatus(stdout, snaps, o.detail, time.Local)
	return nil
}

// notAvailable is what the table shows for a figure that has no value.
const notAvailable = "N/A"

// renderStatus prints sessions as a table, as `gluster volume
// geo-replication status` does, times in loc; below it, why a session is
// Faulty. With detail, each session is a block of one figure per line
// instead (gluster's detail table is some 300 columns wide; this fits an
// 80-column terminal), with the last hybrid crawl's progress.
func renderStatus(w io.Writer, snaps []*syncstatus.Snapshot, detail bool, loc *time.Location) {
	sort.SliceStable(snaps, func(i, j int) bool { return snaps[i].Master < snaps[j].Master })
	if detail {
		for i, s := range snaps {
			if i > 0 {
				fmt.Fprintln(w)
			}
			renderDetail(w, s, loc)
		}
		return
	}
	cols := []string{"MASTER", "SLAVE", "STATUS", "CRAWL STATUS", "LAST_SYNCED"}
	named := false
	for _, s := range snaps {
		named = named || (s.Name != "" && s.Name != "default")
	}
	if named {
		cols = append([]string{"SESSION"}, cols...)
	}
	rows := [][]string{cols}
	for _, s := range snaps {
		r := []string{orNA(s.Master), orNA(s.Slave), string(s.State), orNA(string(s.Crawl)), formatTime(s.LastSynced, loc)}
		if named {
			r = append([]string{orNA(s.Name)}, r...)
		}
		rows = append(rows, r)
	}
	// The dashes under the header span the table, as gluster's do.
	widths := make([]int, len(cols))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	const pad = 4
	total := -pad
	for _, wd := range widths {
		total += wd + pad
	}
	for i, r := range rows {
		var b strings.Builder
		for j, c := range r {
			b.WriteString(c)
			if j < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[j]-len(c)+pad))
			}
		}
		fmt.Fprintln(w, b.String())
		if i == 0 {
			fmt.Fprintln(w, strings.Repeat("-", total))
		}
	}
	for _, s := range snaps {
		if s.Fault != "" {
			fmt.Fprintf(w, "\n%s: %s: %s\n", orNA(s.Master), faultLabel(s), s.Fault)
		}
	}
}

func faultLabel(s *syncstatus.Snapshot) string {
	if s.State == syncstatus.Stopped {
		return "stopped Faulty"
	}
	return "Faulty"
}

// renderDetail prints one session's figures, one per line.
func renderDetail(w io.Writer, s *syncstatus.Snapshot, loc *time.Location) {
	n := func(v int64) string { return strconv.FormatInt(v, 10) }
	cpTime, cpDone, cpWhen := notAvailable, notAvailable, notAvailable
	if cp := s.Checkpoint; cp != nil {
		cpTime, cpDone = formatTime(cp.Target, loc), cp.Answer()
		if cp.Answer() == syncstatus.CheckpointYes {
			cpWhen = formatTime(cp.Completed, loc)
		}
	}
	uptime := notAvailable
	if up := s.Uptime(); up > 0 {
		uptime = up.Round(time.Second).String()
	}
	var lines [][2]string
	if s.Name != "" && s.Name != "default" {
		lines = append(lines, [2]string{"SESSION", s.Name})
	}
	lines = append(lines, [][2]string{
		{"MASTER", orNA(s.Master)},
		{"SLAVE", orNA(s.Slave)},
		{"STATUS", string(s.State)},
		{"CRAWL STATUS", orNA(string(s.Crawl))},
		{"LAST_SYNCED", formatTime(s.LastSynced, loc)},
		{"PENDING ENTRY/DATA/META", n(s.Pending.Entry) + " / " + n(s.Pending.Data) + " / " + n(s.Pending.Meta)},
		{"FILES PENDING", n(s.Pending.Files) + " (" + humanBytes(s.Pending.Bytes) + ")"},
		{"DELETES PENDING", n(s.Pending.Deletes)},
		{"FILES SYNCED", n(s.Totals.FilesSynced)},
		{"FAILURES", n(s.Totals.Failures)},
		{"UPTIME", uptime},
		{"CHECKPOINT TIME", cpTime},
		{"CHECKPOINT COMPLETED", cpDone},
		{"CHECKPOINT COMPLETION TIME", cpWhen},
	}...)
	if s.Fault != "" {
		lines = append(lines, [2]string{strings.ToUpper(faultLabel(s)), s.Fault})
	}
	if s.Progress != nil {
		lines = append(lines, [2]string{"LAST CRAWL", crawlSummary(s, loc)})
		if s.CrawlReason != "" {
			lines = append(lines, [2]string{"WHY IT CRAWLED", s.CrawlReason})
		}
	}
	if s.Batch != nil && s.State != syncstatus.Stopped {
		lines = append(lines, [2]string{"BATCH", fmt.Sprintf("running for %s: %s (for %s)",
			s.Updated.Sub(s.Batch.Started).Round(time.Second), s.Batch.Phase, s.Updated.Sub(s.Batch.Since).Round(time.Second))})
	}
	if bw := s.Bandwidth; bw != nil && s.State != syncstatus.Stopped {
		v := bwsched.FormatLimit(bw.Limit)
		if !bw.Next.IsZero() {
			v += ", changes at " + formatTime(bw.Next, loc)
		}
		lines = append(lines, [2]string{"BANDWIDTH", v}, [2]string{"BANDWIDTH SCHEDULE", bw.Schedule})
	}
	if sc := s.Scrub; sc != nil {
		v := "not yet"
		switch {
		case sc.Running:
			v = "running since " + formatTime(sc.Started, loc)
		case sc.Error != "":
			v = "failed at " + formatTime(sc.Finished, loc) + ": " + sc.Error
		case !sc.Finished.IsZero():
			v = fmt.Sprintf("%s: %d files (%s), %d differences, %d in flight", formatTime(sc.Finished, loc), sc.Files, humanBytes(sc.Bytes), sc.Differences, sc.InFlight)
			if sc.Repairing {
				v += ", repairing"
			}
		}
		if !sc.Next.IsZero() && !sc.Running && s.State != syncstatus.Stopped {
			v += "; next " + formatTime(sc.Next, loc)
		}
		lines = append(lines, [2]string{"LAST SCRUB", v}, [2]string{"SCRUB DIFFERENCES", strconv.FormatInt(s.Totals.ScrubDifferences, 10) + " in " + strconv.FormatInt(s.Totals.Scrubs, 10) + " scrubs"})
	}
	if ev := s.Events; ev != nil && s.State != syncstatus.Stopped {
		lines = append(lines, [2]string{"EVENTS", fmt.Sprintf("%d emitted, %d delivered, %d failed, %d dropped", ev.Emitted, ev.Delivered, ev.Failed, ev.Dropped)})
	}
	for _, l := range lines {
		fmt.Fprintf(w, "%-28s%s\n", l[0], l[1])
	}
}

// crawlSummary says where the last hybrid crawl got to: the same figures
// as the progress bar.
func crawlSummary(s *syncstatus.Snapshot, loc *time.Location) string {
	p := s.Progress
	started := formatTime(p.Started, loc)
	switch {
	case p.Finished:
		return fmt.Sprintf("Hybrid Crawl (started %s): done, %d files, %s", started, p.FilesTotal, humanBytes(p.BytesTotal))
	case s.State == syncstatus.Stopped:
		return fmt.Sprintf("Hybrid Crawl (started %s): interrupted at %d/%d files, %s/%s", started,
			p.FilesDone, p.FilesTotal, humanBytes(p.BytesDone), humanBytes(p.BytesTotal))
	}
	line := strings.TrimPrefix(progressLine(*s, s.Updated), "Hybrid Crawl: ")
	if i, j := strings.Index(line, " ["), strings.Index(line, "]"); i >= 0 && j > i {
		line = line[:i] + ", " + strings.TrimLeft(line[j+1:], " ") // the bar is for a terminal line of its own
	}
	return fmt.Sprintf("Hybrid Crawl (started %s): %s", started, line)
}

func formatTime(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return notAvailable
	}
	return t.In(loc).Format("2006-01-02 15:04:05")
}

func orNA(s string) string {
	if s == "" {
		return notAvailable
	}
	return s
}
