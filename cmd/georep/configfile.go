package main

import (
	"errors"
	"flag"
	"fmt"

	"github.com/georep/georep/internal/config"
)

// configFlags are --config FILE and, for the master, --session NAME: a
// TOML file whose keys are the command's flags (internal/config; see
// examples/georep-master.toml and examples/georep-slave.toml).
type configFlags struct {
	path    string
	session string
}

// registerConfigFlags adds --config to fs, and --session for the master
// (role "master"), whose file may list sessions. Call its apply right
// after the command line is parsed, before the flags' values are checked.
func registerConfigFlags(fs *flag.FlagSet, role string) *configFlags {
	c := &configFlags{}
	fs.StringVar(&c.path, "config", "", "read flags from this TOML `FILE` (keys are the flags' names: see examples/georep-"+role+".toml); flags given here override it")
	if role == "master" {
		fs.StringVar(&c.session, "session", "", "the session of --config to run (required when the file has several)")
	}
	return c
}

// apply applies the config file, if one was named, to fs (already
// parsed).
func (c *configFlags) apply(fs *flag.FlagSet) error {
	if c.path == "" {
		if c.session != "" {
			return usageErr("--session needs --config")
		}
		return nil
	}
	return applyConfigFile(fs, c.path, c.session)
}

// applyConfigFile sets the flags of fs, which has parsed the command
// line, from the config file at path: its top level, then the session
// named (session "" when the file has one), leaving alone every flag set
// on the command line. Of the repeatable flags, --exclude and --include
// are one list: any of them on the command line replaces all of the
// file's. A command whose flags have no --session (the slave) runs no
// sessions: a file with [[session]] tables is refused for it.
//
// A mistake in the file is a usage error (exit status 2) naming the file,
// line and key; a file that cannot be read is an error (exit status 1).
func applyConfigFile(fs *flag.FlagSet, path, session string) error {
	f, err := config.Load(path)
	if err == nil {
		err = f.Apply(fs, session, configOptions(fs)...)
	}
	return configErr(err)
}

// configErr makes a mistake in a config file a usage error (exit status
// 2); other errors (the file cannot be read) stay as they are.
func configErr(err error) error {
	var ce *config.Error
	if errors.As(err, &ce) {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return err
}

// configOptions declare the repeatable flags, each group one ordered
// list, and whether fs's command runs sessions.
func configOptions(fs *flag.FlagSet) []config.Option {
	opts := []config.Option{
		config.Repeatable("exclude", "include"), // master: the rules, in order (--include P is --exclude !P)
		config.Repeatable("exclude-from"),       // master
		config.Repeatable("bwlimit-schedule"),   // master
		config.Repeatable("event-header"),       // master
		config.Repeatable("allow-master"),       // slave
	}
	if fs.Lookup("session") == nil {
		opts = append(opts, config.NoSessions())
	}
	return opts
}
