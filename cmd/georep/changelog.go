package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/gfid"
)

// journalSubdir is where a master keeps its live changelog journal, under
// its state directory.
const journalSubdir = "changelog"

func changelogUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: georep changelog dump [--state-dir DIR | --root DIR --slave HOST:PORT]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "  dump   print a master's live changelog journal: its entries and their records")
}

func runChangelogCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		changelogUsage(stderr)
		return usageErr("missing subcommand (dump)")
	}
	switch args[0] {
	case "dump":
		return runChangelogDumpCmd(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		changelogUsage(stderr)
		return flag.ErrHelp
	}
	return usageErr("unknown subcommand %q (want dump)", args[0])
}

func runChangelogDumpCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var session sessionFlags
	flags := newFlagSet("changelog dump", stderr)
	session.register(flags)
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	stateDir, err := session.dir(false)
	if err != nil {
		return err
	}
	return dumpChangelog(ctx, stateDir, stdout)
}

// dumpChangelog prints the journal under stateDir: each index entry, then
// its records, names unescaped and quoted.
func dumpChangelog(ctx context.Context, stateDir string, stdout io.Writer) error {
	dir := filepath.Join(stateDir, journalSubdir)
	if st, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) || (err == nil && !st.IsDir()) {
		return fmt.Errorf("no changelog journal in %s: has a live master run with this state dir?", stateDir)
	} else if err != nil {
		return fmt.Errorf("changelog journal: %w", err)
	}
	v, err := changelog.ReadIndexView(dir)
	if err != nil {
		return err
	}
	out := bufio.NewWriter(stdout)
	fmt.Fprintf(out, "journal %s: %d entries\n", dir, len(v.Segments))
	if v.Consumed {
		fmt.Fprintf(out, "consumed %s (files deleted)\n", nsRange(v.ConsumedStart, v.ConsumedEnd))
	}
	for _, s := range v.Segments {
		if err := ctx.Err(); err != nil {
			out.Flush()
			return err
		}
		file := "-"
		if s.Path != "" {
			file = filepath.Base(s.Path)
		}
		if s.Gap {
			fmt.Fprintf(out, "GAP %s %s %s\n", nsRange(s.Start, s.End), file, strconv.Quote(s.Reason))
		} else {
			fmt.Fprintf(out, "segment %s %s\n", nsRange(s.Start, s.End), file)
		}
		if s.Path == "" {
			continue
		}
		n := 0
		_, err := changelog.ReadFile(s.Path, func(r changelog.Record) error {
			n++
			fmt.Fprintf(out, "  %s\n", formatRecord(r))
			return nil
		})
		switch {
		case n == 0 && errors.Is(err, fs.ErrNotExist):
			// A running master consumed it after the index was read.
			fmt.Fprintln(out, "  (consumed while dumping)")
		case err != nil:
			out.Flush()
			return err
		}
	}
	if v.Torn {
		fmt.Fprintln(out, "(the index's last line is incomplete, a commit in progress or a crash: left out)")
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("writing the dump: %w", err)
	}
	return nil
}

func nsRange(start, end int64) string {
	return "(" + changelog.FormatNS(start) + " .. " + changelog.FormatNS(end) + "]"
}

// formatRecord renders a record for people: the op, the gfid it is about,
// then its fields, with names and targets unescaped and quoted Go-style so
// that newlines and non-UTF-8 bytes show and nothing is ambiguous.
func formatRecord(r changelog.Record) string {
	entry := func(p gfid.GFID, name string) string { return p.String() + "/" + strconv.Quote(name) }
	switch r.Kind {
	case changelog.KindData:
		return "DATA " + r.GFID.String()
	case changelog.KindMeta:
		return string(r.Op) + " " + r.GFID.String()
	}
	head := string(r.Op) + " " + r.GFID.String()
	switch r.Op {
	case changelog.OpCreate, changelog.OpMkdir, changelog.OpMknod:
		s := fmt.Sprintf("%s %#o %d:%d %s", head, r.Mode, r.UID, r.GID, entry(r.Parent, r.Name))
		if r.HasStat {
			s += fmt.Sprintf(" size=%d mtime=%s", r.Size, changelog.FormatNS(r.MtimeNS))
			if r.CtimeNS != 0 {
				s += " ctime=" + changelog.FormatNS(r.CtimeNS)
			}
		}
		return s
	case changelog.OpSymlink:
		if r.HasTarget {
			return head + " " + entry(r.Parent, r.Name) + " -> " + strconv.Quote(r.Target)
		}
		return head + " " + entry(r.Parent, r.Name)
	case changelog.OpRename:
		return head + " " + entry(r.Parent, r.Name) + " -> " + entry(r.Parent2, r.Name2)
	case changelog.OpPurge:
		return head
	}
	return head + " " + entry(r.Parent, r.Name)
}
