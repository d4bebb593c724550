package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/georep/georep/internal/syncstatus"
)

// progressBar draws a hybrid crawl's progress on the last line of a
// terminal. Log lines go through it (Write), so that each is written
// above the bar instead of through it.
type progressBar struct {
	mu    sync.Mutex
	w     io.Writer
	width func() int
	shown string // the bar on screen now ("" none)
}

// newProgressBar returns a bar on stderr when stderr is a terminal, nil
// otherwise: a bar is never drawn into a file or a pipe.
func newProgressBar(stderr io.Writer) *progressBar {
	f, ok := stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return &progressBar{w: f, width: func() int {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 0 {
			return w
		}
		return 80
	}}
}

// Write writes log lines above the bar.
func (b *progressBar) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.shown != "" {
		io.WriteString(b.w, "\r\x1b[K")
	}
	n, err := b.w.Write(p)
	if b.shown != "" {
		io.WriteString(b.w, b.shown)
	}
	return n, err
}

// set replaces the bar (empty: remove it); with keep, the old bar's last
// state stays on screen as a line of its own.
func (b *progressBar) set(line string, keep bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.width(); len(line) >= w {
		line = line[:w-1]
	}
	if line == b.shown {
		return
	}
	switch {
	case keep && b.shown != "":
		io.WriteString(b.w, "\n")
	case b.shown != "":
		io.WriteString(b.w, "\r\x1b[K")
	}
	io.WriteString(b.w, "\r"+line)
	b.shown = line
}

// progressEvery is how often the bar is redrawn.
const progressEvery = 250 * time.Millisecond

// run draws the progress of every hybrid crawl of the session snap
// describes until ctx ends; a crawl that finished keeps its last line.
func (b *progressBar) run(ctx context.Context, snap func() syncstatus.Snapshot) {
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	var drawing time.Time // the Started of the crawl on screen
	for {
		stop := false
		select {
		case <-ctx.Done():
			stop = true
		case <-t.C:
		}
		s := snap()
		p := s.Progress
		switch {
		case p == nil || (drawing.IsZero() && (p.Finished || s.Crawl != syncstatus.HybridCrawl)):
		case p.Finished && p.Started.Equal(drawing):
			b.set(progressLine(s, time.Now()), false)
			b.set("", true)
			drawing = time.Time{}
		case stop:
		default:
			if !p.Started.Equal(drawing) && !drawing.IsZero() {
				b.set("", false) // a crawl that did not finish; a new one began
			}
			drawing = p.Started
			b.set(progressLine(s, time.Now()), false)
		}
		if stop {
			b.set("", false)
			return
		}
	}
}

// progressLine is a hybrid crawl's progress in one line: the files and
// bytes found while the crawl walks the tree (the totals grow), then the
// files and bytes done of those totals, with an ETA.
func progressLine(s syncstatus.Snapshot, now time.Time) string {
	p := s.Progress
	if p == nil {
		return ""
	}
	if p.Listing {
		return fmt.Sprintf("Hybrid Crawl: walking the tree: %d files, %s found", p.FilesTotal, humanBytes(p.BytesTotal))
	}
	if p.Finished {
		return fmt.Sprintf("Hybrid Crawl: done: %d files, %s", p.FilesTotal, humanBytes(p.BytesTotal))
	}
	frac := 1.0
	switch {
	case p.BytesTotal > 0:
		frac = float64(p.BytesDone) / float64(p.BytesTotal)
	case p.FilesTotal > 0:
		frac = float64(p.FilesDone) / float64(p.FilesTotal)
	}
	frac = min(max(frac, 0), 1)
	const barWidth = 20
	fill := int(frac * barWidth)
	eta := "ETA --"
	if left, ok := p.ETA(now); ok {
		eta = "ETA " + left.Round(time.Second).String()
	}
	return fmt.Sprintf("Hybrid Crawl: %d/%d files, %s/%s [%s%s] %3.0f%% %s",
		p.FilesDone, p.FilesTotal, humanBytes(p.BytesDone), humanBytes(p.BytesTotal),
		strings.Repeat("=", fill), strings.Repeat(" ", barWidth-fill), frac*100, eta)
}

// humanBytes formats a byte count with IEC units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
