package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/georep/georep/internal/syncstatus"
	"github.com/georep/georep/master"
)

// runPauseCmd, runResumeCmd and runStopCmd control running masters
// through their status sockets: every session of a config file, or the
// one named. A session whose master is not running is paused or resumed
// in its state (its next master starts so); stopping it is an error.
func runPauseCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runControlCmd(ctx, "pause", syncstatus.OpPause, args, stdout, stderr)
}

func runResumeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runControlCmd(ctx, "resume", syncstatus.OpResume, args, stdout, stderr)
}

func runStopCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runControlCmd(ctx, "stop", syncstatus.OpStop, args, stdout, stderr)
}

func runControlCmd(ctx context.Context, name, op string, args []string, stdout, stderr io.Writer) error {
	var session sessionFlags
	fs := newFlagSet(name, stderr)
	session.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ts, err := session.targets(false)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range ts {
		msg, err := control(ctx, op, t)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t.label(), err))
			continue
		}
		fmt.Fprintf(stdout, "%s: %s\n", t.label(), msg)
	}
	return errors.Join(errs...)
}

// control carries out op on the session t.
func control(ctx context.Context, op string, t sessionTarget) (string, error) {
	rep, err := syncstatus.Call(ctx, t.stateDir, syncstatus.Request{Op: op})
	if err == nil {
		return rep.Message, nil
	}
	if !errors.Is(err, syncstatus.ErrNotRunning) {
		return "", err
	}
	switch op {
	case syncstatus.OpPause, syncstatus.OpResume:
		paused := op == syncstatus.OpPause
		if err := master.SetPausedOffline(t.stateDir, paused); err != nil {
			return "", err
		}
		// A master that started meanwhile read the state before: tell it.
		if rep, err := syncstatus.Call(ctx, t.stateDir, syncstatus.Request{Op: op}); err == nil {
			return rep.Message, nil
		}
		if paused {
			return "paused (no master is running; it will start paused)", nil
		}
		return "resumed (no master is running; it will start shipping)", nil
	}
	return "", err
}

func (t sessionTarget) label() string {
	if t.name != "" {
		return "session " + t.name
	}
	return t.stateDir
}

// runConfigCmd reads and changes a session's settings:
//
//	georep config get   [SESSION FLAGS] [KEY]
//	georep config set   [SESSION FLAGS] KEY VALUE...
//	georep config reset [SESSION FLAGS] KEY
//
// A running master is asked through its socket (it checks, persists and
// applies); otherwise the settings are checked and persisted here, for
// its next start. Several values are a repeatable setting's list.
func runConfigCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "get" && args[0] != "set" && args[0] != "reset") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintln(stderr, "usage: georep config get|set|reset [--config FILE [--session NAME] | --root DIR --slave HOST:PORT | --state-dir DIR] [KEY [VALUE...]]")
			fmt.Fprintln(stderr, "settings applied to a running master at once: "+liveKeys())
			return nil
		}
		return usageErr("want get, set or reset")
	}
	sub, args := args[0], args[1:]
	var session sessionFlags
	fs := newFlagSet("config "+sub, stderr)
	session.register(fs)
	// Flags may come before or after KEY VALUE.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	var key, value string
	switch {
	case sub == "get" && len(pos) <= 1:
		if len(pos) == 1 {
			key = pos[0]
		}
	case sub == "set" && len(pos) >= 2:
		key, value = pos[0], strings.Join(pos[1:], "\n")
	case sub == "reset" && len(pos) == 1:
		key = pos[0]
	default:
		return usageErr("config %s: wrong arguments %q", sub, pos)
	}
	if key != "" {
		if err := syncstatus.ValidKey(key); err != nil {
			return usageErr("%v", err)
		}
	}
	ts, err := session.targets(false)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range ts {
		out, err := configOne(ctx, sub, key, value, t)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t.label(), err))
			continue
		}
		if len(ts) > 1 {
			fmt.Fprintf(stdout, "# %s\n", t.label())
		}
		fmt.Fprint(stdout, out)
	}
	return errors.Join(errs...)
}

// configOne carries out a config subcommand for one session; its output
// ends with a newline.
func configOne(ctx context.Context, sub, key, value string, t sessionTarget) (string, error) {
	op := map[string]string{"get": syncstatus.OpConfigGet, "set": syncstatus.OpConfigSet, "reset": syncstatus.OpConfigReset}[sub]
	rep, err := syncstatus.Call(ctx, t.stateDir, syncstatus.Request{Op: op, Key: key, Value: value})
	if err == nil {
		if sub == "get" {
			return formatSettings(rep.Config), nil
		}
		return rep.Message + "\n", nil
	}
	if !errors.Is(err, syncstatus.ErrNotRunning) {
		return "", err
	}
	if t.opts == nil {
		return "", errors.New("no master is running for this state directory: name the session by --config, or --root and --slave, to read or change its settings")
	}
	if sub == "get" {
		vals, err := settingsView(*t.opts, key)
		if err != nil {
			return "", err
		}
		return formatSettings(vals), nil
	}
	_, note, err := changeSettings(*t.opts, key, func(st *settings) {
		if sub == "set" {
			st.vals[key] = settingValues(key, value)
		} else {
			delete(st.vals, key)
		}
	})
	if err != nil {
		return "", err
	}
	return "saved: no master is running; it takes effect at its next start" + note + "\n", nil
}

// formatSettings prints settings as KEY = VALUE lines, sorted; a list's
// values one line each.
func formatSettings(vals map[string]string) string {
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		v := vals[k]
		if _, list := listFlags[k]; list {
			if v == "" {
				fmt.Fprintf(&b, "%s = (none)\n", k)
			}
			for _, e := range strings.Split(v, "\n") {
				if e != "" {
					fmt.Fprintf(&b, "%s = %s\n", k, e)
				}
			}
			continue
		}
		fmt.Fprintf(&b, "%s = %s\n", k, v)
	}
	return b.String()
}

// runSessionCmd manages sessions' state:
//
//	georep session delete [--reset-sync-time] [SESSION FLAGS]
func runSessionCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintln(stderr, "usage: georep session delete [--reset-sync-time] (--config FILE [--session NAME] | --root DIR --slave HOST:PORT | --state-dir DIR)")
		return nil
	}
	if len(args) == 0 || args[0] != "delete" {
		return usageErr("want: session delete [--reset-sync-time] (--config FILE [--session NAME] | --root DIR --slave HOST:PORT)")
	}
	var session sessionFlags
	fs := newFlagSet("session delete", stderr)
	session.register(fs)
	reset := fs.Bool("reset-sync-time", false, "also remove the session's marks on the master root: its next start is a new session, with a full crawl")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	ts, err := session.targets(false)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range ts {
		if err := deleteSession(ctx, t, *reset); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t.label(), err))
			continue
		}
		how := "its marks stay: a master started again resumes from them"
		if *reset {
			how = "its marks on the master root are gone: the next start is a full crawl"
		}
		fmt.Fprintf(stdout, "%s: deleted (%s)\n", t.label(), how)
	}
	return errors.Join(errs...)
}

func deleteSession(ctx context.Context, t sessionTarget, reset bool) error {
	if _, err := syncstatus.Call(ctx, t.stateDir, syncstatus.Request{Op: syncstatus.OpStatus}); err == nil {
		return errors.New("its master is running: stop it first (georep stop)")
	} else if !errors.Is(err, syncstatus.ErrNotRunning) {
		return err
	}
	root := ""
	if t.opts != nil {
		root = t.opts.root
	} else if reset {
		return errors.New("--reset-sync-time needs the session's root: name it by --config, or --root and --slave")
	}
	return master.DeleteSession(t.stateDir, root, reset)
}
