package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/georep/georep/slave"
)

func trashUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: georep trash list --root SLAVE_ROOT [--json]")
	fmt.Fprintln(w, "       georep trash restore --root SLAVE_ROOT [--time T] [--into-replica] PATH --to DEST")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "A slave started with --trash keeps what replicated deletes and overwrites")
	fmt.Fprintln(w, "remove, in SLAVE_ROOT/.georep/trash (georep slave -h: --trash-keep, --trash-max-size).")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "  list     the kept versions: when each was kept (UTC), its type, size and path")
	fmt.Fprintln(w, "  restore  move the newest version of PATH (or the one kept at --time T, as list")
	fmt.Fprintln(w, "           prints it) to DEST, by a rename (a copy when DEST is on another")
	fmt.Fprintln(w, "           filesystem); PATH may also name something inside a directory kept")
	fmt.Fprintln(w, "           whole. DEST must not exist. DEST inside the replica is refused: the")
	fmt.Fprintln(w, "           master would remove it again (--into-replica does it all the same)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "PATH is relative to the slave root; a path list prints quoted is taken quoted.")
}

func runTrashCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		trashUsage(stderr)
		return usageErr("missing subcommand (list or restore)")
	}
	switch args[0] {
	case "list":
		return runTrashListCmd(args[1:], stdout, stderr)
	case "restore":
		return runTrashRestoreCmd(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		trashUsage(stderr)
		return flag.ErrHelp
	}
	return usageErr("unknown subcommand %q (want list or restore)", args[0])
}

// trashEntry is one version in `georep trash list --json`.
type trashEntry struct {
	Path string `json:"path"`
	// PathBytes is the path's bytes when they are not UTF-8 (JSON
	// strings cannot hold them): base64.
	PathBytes []byte `json:"path_bytes,omitempty"`
	Time      string `json:"time"`
	Type      string `json:"type"`
	Size      int64  `json:"size"`
	Entry     string `json:"entry"`
}

func runTrashListCmd(args []string, stdout, stderr io.Writer) error {
	var root string
	var asJSON bool
	fs := newFlagSet("trash list", stderr)
	fs.StringVar(&root, "root", "", "the slave root (required)")
	fs.BoolVar(&asJSON, "json", false, "print a JSON list, one object per version")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if root == "" {
		return usageErr("--root is required")
	}
	vs, err := slave.ListTrash(root)
	if err != nil {
		return err
	}
	if asJSON {
		out := make([]trashEntry, 0, len(vs))
		for _, v := range vs {
			e := trashEntry{Path: v.Path, Time: trashTime(v.Time), Type: v.Type, Size: v.Size, Entry: v.Entry}
			if !utf8.ValidString(v.Path) {
				e.PathBytes = []byte(v.Path)
			}
			out = append(out, e)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if len(vs) == 0 {
		fmt.Fprintln(stdout, "the trash is empty")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEPT (UTC)\tTYPE\tSIZE\tPATH")
	var total int64
	for _, v := range vs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", trashTime(v.Time), v.Type, v.Size, showPath(v.Path))
		total += max(v.Size, 0)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d versions, %d bytes\n", len(vs), total)
	return nil
}

func runTrashRestoreCmd(args []string, stdout, stderr io.Writer) error {
	var root, when, dest string
	var into bool
	fs := newFlagSet("trash restore", stderr)
	fs.StringVar(&root, "root", "", "the slave root (required)")
	fs.StringVar(&when, "time", "", "the version kept at this time, as list prints it (default: the newest)")
	fs.StringVar(&dest, "to", "", "where to put it (required; must not exist; not inside the replica, see --into-replica)")
	fs.BoolVar(&into, "into-replica", false, "allow DEST inside the slave root: the master removes it again at its next crawl of that directory, unless it has it")
	// PATH may come between flags: parse on after each positional.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if i := len(args) - len(rest) - 1; i >= 0 && args[i] == "--" {
			pos = append(pos, rest...) // after "--": all positional
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	switch {
	case root == "":
		return usageErr("--root is required")
	case len(pos) == 0:
		return usageErr("the PATH to restore is required")
	case len(pos) > 1:
		return usageErr("unexpected argument %q (one PATH)", pos[1])
	case dest == "":
		return usageErr("--to DEST is required")
	}
	var at time.Time
	if when != "" {
		var err error
		if at, err = parseTrashTime(when); err != nil {
			return err
		}
	}
	p := pos[0]
	if strings.HasPrefix(p, `"`) {
		if u, err := strconv.Unquote(p); err == nil {
			p = u
		}
	}
	v, err := slave.RestoreTrash(root, slave.RestoreOptions{Path: p, Time: at, Dest: dest, IntoReplica: into})
	if errors.Is(err, slave.ErrIntoReplica) {
		return fmt.Errorf("%w (--into-replica restores there all the same)", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %s (%s kept %s) to %s\n", showPath(v.Path), v.Type, trashTime(v.Time), dest)
	return nil
}

// trashTime is how a version's time is printed (and taken by --time).
func trashTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000000Z") }

// parseTrashTime reads --time: RFC 3339 (as list prints it), or the
// time in a trash name (20060102-150405.000000000, UTC).
func parseTrashTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("20060102-150405.000000000", s, time.UTC); err == nil {
		return t, nil
	}
	return time.Time{}, usageErr("--time %q: want a time as list prints it (2006-01-02T15:04:05.000000000Z)", s)
}

// showPath prints a path as it is when it is plain text, else quoted.
func showPath(p string) string {
	if !utf8.ValidString(p) || strings.HasPrefix(p, `"`) {
		return strconv.Quote(p)
	}
	for _, r := range p {
		if !unicode.IsPrint(r) {
			return strconv.Quote(p)
		}
	}
	return p
}

// byteSize is a flag of bytes with an optional unit: K, M, G, T (and
// KiB... alike) are powers of 1024, KB, MB, GB, TB powers of 1000.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	n, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func parseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	}
	mult := map[string]float64{"": 1, "b": 1,
		"k": 1 << 10, "ki": 1 << 10, "kib": 1 << 10, "kb": 1e3,
		"m": 1 << 20, "mi": 1 << 20, "mib": 1 << 20, "mb": 1e6,
		"g": 1 << 30, "gi": 1 << 30, "gib": 1 << 30, "gb": 1e9,
		"t": 1 << 40, "ti": 1 << 40, "tib": 1 << 40, "tb": 1e12,
	}[unit]
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 0 || f < 0 {
		return 0, fmt.Errorf("size %q: want bytes, or a number with K, M, G, T (1024s) or KB, MB, GB, TB (1000s)", s)
	}
	v := f * mult
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(v), nil
}
