// Command georep replicates a directory tree from a master to a slave.
//
//	georep slave  [--config FILE] --root DIR --listen HOST:PORT [--state-dir DIR] (--tls-dir DIR | --ca F --cert F --key F | --insecure)
//	georep master [--config FILE [--session NAME]] --root DIR --slave HOST:PORT [--state-dir DIR] [--oneshot] [--sync-jobs N] [--metrics-addr HOST:PORT] (TLS flags | --insecure)
//	georep cert init|issue --dir DIR ...
//	georep status [--state-dir DIR | --root DIR --slave HOST:PORT] [--detail] [--json]
//	georep checkpoint set [now|UNIX-TIME] | clear  [--state-dir DIR | --root DIR --slave HOST:PORT]
//	georep pause|resume|stop [--config FILE [--session NAME] | --state-dir DIR | --root DIR --slave HOST:PORT]
//	georep config get|set|reset [SESSION FLAGS] [KEY [VALUE...]]
//	georep session delete [--reset-sync-time] [SESSION FLAGS]
//	georep completion bash|zsh|fish
//	georep trash list|restore --root SLAVE_ROOT ...
//	georep demo
//	georep version
//
// Each subcommand lives in its own file: an options struct, its flags, and
// a run function that tests call directly.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// errUsage marks a command-line mistake (exit status 2).
var errUsage = errors.New("usage")

type command struct {
	name  string
	short string
	run   func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"slave", "serve a slave root to one master", runSlaveCmd},
		{"master", "replicate a master root to a slave", runMasterCmd},
		{"cert", "make a CA and certificates for mutual TLS (init, issue)", runCertCmd},
		{"demo", "replicate a sample tree between temp dirs and show the result", runDemoCmd},
		{"changelog", "inspect a master's live changelog journal (dump)", runChangelogCmd},
		{"status", "show a session's status (the running master's, or the last figures)", runStatusCmd},
		{"checkpoint", "set or clear a checkpoint: has everything before T reached the slave?", runCheckpointCmd},
		{"pause", "pause a session: the batch in flight finishes, nothing more ships; changes are journaled", runPauseCmd},
		{"resume", "resume a paused session from its marks (no crawl)", runResumeCmd},
		{"stop", "stop a running session's master cleanly", runStopCmd},
		{"config", "get, set or reset a session's settings (applied live where they can be)", runConfigCmd},
		{"session", "delete a session's state (delete [--reset-sync-time])", runSessionCmd},
		{"verify", "compare master and slave by content (only digests cross the link); --repair mends what differs", runVerifyCmd},
		{"trash", "list or restore what a slave with --trash kept of deletes and overwrites", runTrashCmd},
		{"version", "print georep's version and its protocol version", runVersionCmd},
		{"completion", "print a shell completion script (bash, zsh, fish)", runCompletionCmd},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: georep <command> [flags]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.short)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'georep <command> -h' for a command's flags.")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit status: 0 success,
// 1 failure (with a one-line reason on stderr), 2 usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		var ec *exitCode
		switch {
		case err == nil:
			return 0
		case errors.As(err, &ec):
			if ec.err != nil {
				fmt.Fprintf(stderr, "georep %s: %v\n", c.name, ec.err)
			}
			return ec.code
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "georep %s: %v\n", c.name, err)
			return 2
		}
		fmt.Fprintf(stderr, "georep %s: %v\n", c.name, err)
		return 1
	}
	fmt.Fprintf(stderr, "georep: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

// exitCode is an error with its own exit status (georep verify: 1 for
// differences, 2 for an error); err, if any, is printed.
type exitCode struct {
	code int
	err  error
}

func (e *exitCode) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitCode) Unwrap() error { return e.err }

func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}
