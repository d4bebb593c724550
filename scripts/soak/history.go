package main

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strings"
)

// under reports whether p is strictly below dir.
func under(p, dir string) bool {
	if dir == "" || dir == "." {
		return p != "" && p != "."
	}
	return len(p) > len(dir) && p[len(dir)] == '/' && p[:len(dir)] == dir
}

func parentOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// relevantEvents returns the events (oldest first, at most limit: the
// latest) that touched path p, following p back through renames (of it
// and of its ancestors) and through the objects those events acted on
// (so another link of a hardlinked file, or the inode a name pointed at
// before it was renamed over, is followed too). An event touches a name
// when one of its paths is the name, one of its ancestors, or a direct
// child (a child's creation changes a directory's mtime).
func relevantEvents(h []Event, p string, limit int) (out []Event, total int) {
	if p == "." {
		p = ""
	}
	names := map[string]bool{p: true}
	ids := map[uint64]bool{}
	const maxNames = 256
	var rev []Event
	for i := len(h) - 1; i >= 0; i-- {
		e := &h[i]
		hit := false
		for _, q := range e.Paths {
			for n := range names {
				if q == "" && n != "" {
					continue // the root: an ancestor of everything, rarely the cause
				}
				if q == n || under(n, q) || (n != "" && parentOf(q) == n) || (n == "" && !strings.Contains(q, "/")) {
					hit = true
					break
				}
			}
			if hit {
				break
			}
		}
		if !hit {
			for _, id := range e.IDs {
				if ids[id] {
					hit = true
					break
				}
			}
		}
		if hit {
			rev = append(rev, *e)
			// Follow the objects of events on the name itself (not of
			// events on its ancestors or children: too wide).
			for _, q := range e.Paths {
				if names[q] {
					for _, id := range e.IDs {
						ids[id] = true
					}
					break
				}
			}
		}
		// Before a rename from A to B, what is now at B (or below it) was at A.
		if len(names) < maxNames {
			var add []string
			for _, mv := range e.Moves {
				for n := range names {
					if n == mv.To {
						add = append(add, mv.From)
					} else if under(n, mv.To) {
						add = append(add, mv.From+n[len(mv.To):])
					}
				}
			}
			for _, a := range add {
				names[a] = true
			}
		}
	}
	total = len(rev)
	if len(rev) > limit {
		rev = rev[:limit]
	}
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	return rev, total
}

// String renders an event on one line, paths quoted.
func (e Event) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d +%.3fs %s", e.Seq, e.At.Seconds(), e.Kind)
	for _, p := range e.Paths {
		fmt.Fprintf(&b, " %q", p)
	}
	if e.Arg != 0 {
		fmt.Fprintf(&b, " arg=%d", e.Arg)
	}
	if e.Note != "" {
		fmt.Fprintf(&b, " (%s)", e.Note)
	}
	if len(e.Moves) > 0 {
		b.WriteString(" moves:")
		for _, m := range e.Moves {
			fmt.Fprintf(&b, " %q->%q", m.From, m.To)
		}
	}
	if len(e.IDs) > 0 {
		fmt.Fprintf(&b, " ids=%v", e.IDs)
	}
	if e.Err != "" {
		fmt.Fprintf(&b, " SKIPPED:%s", e.Err)
	}
	return b.String()
}

// writeHistory writes every event, one a line, gzipped.
func writeHistory(path string, h []Event) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("writing op history: %w", err)
	}
	zw := gzip.NewWriter(f)
	w := bufio.NewWriterSize(zw, 1<<20)
	for _, e := range h {
		if _, err := io.WriteString(w, e.String()+"\n"); err != nil {
			f.Close()
			return fmt.Errorf("writing op history: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("writing op history: %w", err)
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return fmt.Errorf("writing op history: %w", err)
	}
	return f.Close()
}
