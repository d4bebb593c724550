package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/georep/georep/internal/syncstatus"
)

// runCheckpointCmd is `georep checkpoint set [now|UNIX-TIME]` and
// `georep checkpoint clear`, with the session's flags before or after the
// time.
func runCheckpointCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		var session sessionFlags
		fs := newFlagSet("checkpoint", stderr)
		session.register(fs)
		fmt.Fprintln(stderr, "usage: georep checkpoint set [now|UNIX-TIME] [flags]")
		fmt.Fprintln(stderr, "       georep checkpoint clear [flags]")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "A checkpoint answers: has everything changed on the master before T reached the slave? (georep status shows it)")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "flags (name the session by its state dir, or by its root and slave):")
		fs.PrintDefaults()
		return flag.ErrHelp
	}
	if len(args) == 0 || (args[0] != "set" && args[0] != "clear") {
		return usageErr("want 'checkpoint set [now|UNIX-TIME]' or 'checkpoint clear' (-h for the flags)")
	}
	sub, args := args[0], args[1:]
	var when string
	if sub == "set" && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		when, args = args[0], args[1:]
	}
	var session sessionFlags
	fs := newFlagSet("checkpoint "+sub, stderr)
	session.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	rest := fs.Args()
	if sub == "set" && when == "" && len(rest) > 0 {
		when, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		return usageErr("unexpected argument %q", rest[0])
	}
	dir, err := session.dir(false)
	if err != nil {
		return err
	}
	if sub == "clear" {
		if err := syncstatus.ClearCheckpoint(ctx, dir); err != nil {
			return checkpointErr(dir, err)
		}
		fmt.Fprintln(stdout, "checkpoint cleared")
		return nil
	}
	target, err := parseCheckpointTime(when, time.Now())
	if err != nil {
		return err
	}
	cp, err := syncstatus.SetCheckpoint(ctx, dir, target)
	if err != nil {
		return checkpointErr(dir, err)
	}
	fmt.Fprintf(stdout, "checkpoint set at %s (%d); completed: %s\n", formatTime(cp.Target, time.Local), cp.Target.Unix(), cp.Answer())
	return nil
}

func checkpointErr(dir string, err error) error {
	if errors.Is(err, syncstatus.ErrNoSession) {
		return fmt.Errorf("no georep session in %s", dir)
	}
	return err
}

// parseCheckpointTime reads a checkpoint's target: now (the default), or
// seconds since the epoch (a fraction allowed).
func parseCheckpointTime(s string, now time.Time) (time.Time, error) {
	if s == "" || s == "now" {
		return now, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return time.Time{}, usageErr("checkpoint time %q: want now or seconds since the epoch", s)
	}
	// Marks hold nanoseconds in an int64: up to 2262.
	if !(f > 0 && f < 9e9) {
		return time.Time{}, usageErr("checkpoint time %q is out of range", s)
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
}
