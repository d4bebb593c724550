package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/georep/georep/internal/digest"
	"github.com/georep/georep/master"
)

// verifyReport is `georep verify --json`'s output.
type verifyReport struct {
	Equal       bool          `json:"equal"`
	Differences []digest.Diff `json:"differences"`
	Files       int64         `json:"files"`
	Bytes       int64         `json:"bytes"`
	SlaveFiles  int64         `json:"slave_files"`
	SlaveBytes  int64         `json:"slave_bytes"`
	DirsListed  int           `json:"dirs_listed"`
	WireBytes   int64         `json:"wire_bytes"`
	Repaired    bool          `json:"repaired,omitempty"`
	// Before is what differed before the repair (with --repair).
	Before []digest.Diff `json:"before_repair,omitempty"`
}

// runVerifyCmd compares a session's master and slave by content:
//
//	georep verify [master flags: --root --slave TLS | --config FILE [--session NAME]] [--json] [--repair] [--rate MIB/S]
//
// Exit status 0: equal; 1: differences (listed, with their kind); 2: an
// error. It reads only, and runs beside a live master; --repair (which
// needs the session's master stopped) sends what differs through a
// one-shot that compares those files by content, then verifies again.
func runVerifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var asJSON, repair bool
	var rateMiB float64
	own := func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
		fs.BoolVar(&repair, "repair", false, "send what differs (a one-shot comparing those files by content; the session's master must be stopped), then verify again")
		fs.Float64Var(&rateMiB, "rate", 0, "read each tree's files at most this many MiB/s (0: no limit)")
	}
	var first masterOptions
	fs := masterFlagSet(&first, stderr)
	fs.Init("georep verify", flag.ContinueOnError)
	own(fs)
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitCode{2, err}
	}
	// The session's options: the command line over its config file and
	// settings, as its master has them.
	o, err := loadMasterSession(args, first.config.session, stderr, own)
	if err != nil {
		return &exitCode{2, err}
	}
	tlsCfg, err := o.tls.clientTLS(o.slave, o.slaveName)
	if err != nil {
		return &exitCode{2, err}
	}
	log, err := o.log.logger("verify", stderr)
	if err != nil {
		return &exitCode{2, err}
	}
	vcfg := master.VerifyConfig{Root: o.root, Slave: o.slave, TLS: tlsCfg, Insecure: o.tls.insecure,
		Excludes: o.excludes, ExcludeFrom: o.excludeFrom, RateLimit: int64(rateMiB * (1 << 20)), Logger: log}
	t0 := time.Now()
	res, err := master.Verify(ctx, vcfg)
	if err != nil {
		return &exitCode{2, err}
	}
	rep := verifyReport{Differences: res.Diffs}
	if repair && len(res.Diffs) > 0 {
		rep.Before = res.Diffs
		o.oneshot, o.changeDetector, o.comparePaths = true, "xsync", map[string]bool{}
		for _, d := range res.Diffs {
			o.comparePaths[d.Path] = true
		}
		if _, err := runMasterOnce(ctx, o, io.Discard, stderr); err != nil {
			return &exitCode{2, fmt.Errorf("repair: %w", err)}
		}
		if res, err = master.Verify(ctx, vcfg); err != nil {
			return &exitCode{2, fmt.Errorf("verifying the repair: %w", err)}
		}
		rep.Differences, rep.Repaired = res.Diffs, true
	}
	rep.Equal = len(rep.Differences) == 0
	if rep.Differences == nil {
		rep.Differences = []digest.Diff{}
	}
	rep.Files, rep.Bytes, rep.SlaveFiles, rep.SlaveBytes = res.Files, res.Bytes, res.SlaveFiles, res.SlaveBytes
	rep.DirsListed, rep.WireBytes = res.Dirs, res.WireBytes
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return &exitCode{2, err}
		}
	} else {
		if rep.Repaired {
			fmt.Fprintf(stdout, "repaired %d differences:\n", len(rep.Before))
			printDiffs(stdout, rep.Before)
		}
		if !rep.Equal {
			fmt.Fprintf(stdout, "%d differences:\n", len(rep.Differences))
			printDiffs(stdout, rep.Differences)
		}
		state := "equal"
		if !rep.Equal {
			state = "different"
		}
		fmt.Fprintf(stdout, "%s: %d files (%s) compared by content in %s; %d directories listed, %s on the wire\n",
			state, rep.Files, humanBytes(rep.Bytes), time.Since(t0).Round(time.Millisecond), rep.DirsListed, humanBytes(rep.WireBytes))
	}
	if !rep.Equal {
		return &exitCode{1, nil}
	}
	return nil
}

func printDiffs(w io.Writer, diffs []digest.Diff) {
	for _, d := range diffs {
		line := fmt.Sprintf("  %-9s %q", d.Kind, d.Path)
		if d.Detail != "" {
			line += "  (" + d.Detail + ")"
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
}
