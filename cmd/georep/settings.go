package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/georep/georep/internal/atomicfile"
	"github.com/georep/georep/internal/config"
)

// settingsFile holds, in a session's state directory, what `georep config
// set` changed: flag name -> values (several for a repeatable flag). They
// apply over the config file and under the command line, at every start
// of the session's master, and to a running master at once where the
// setting allows it.
const settingsFile = "settings.json"

// settings is a session's persisted settings.
type settings struct {
	path string
	vals map[string][]string
}

// listFlags are the repeatable flags a setting replaces whole, and how to
// empty each in the options before.
var listFlags = map[string]func(o *masterOptions){
	"exclude":          func(o *masterOptions) { o.excludes = nil },
	"exclude-from":     func(o *masterOptions) { o.excludeFrom = nil },
	"bwlimit-schedule": func(o *masterOptions) { o.bwSchedule = nil },
	"event-header":     func(o *masterOptions) { o.eventHeaders = nil },
}

// notSettable are the flags `config set` refuses, and why.
var notSettable = map[string]string{
	"root":            "it names the session: edit the config file or the command line",
	"slave":           "it names the session: edit the config file or the command line",
	"state-dir":       "the settings live in it: edit the config file or the command line",
	"config":          "it is the config file itself",
	"session":         "it names the session",
	"oneshot":         "it is how the master is run, not a setting",
	"change-detector": "it is how the master is run, not a setting",
	"include":         "set the rules with exclude: a pattern '!PATTERN' includes again",
	"help":            "not a setting",
}

func loadSettings(stateDir string) (*settings, error) {
	st := &settings{path: filepath.Join(stateDir, settingsFile), vals: map[string][]string{}}
	data, err := os.ReadFile(st.path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	if err := json.Unmarshal(data, &st.vals); err != nil {
		return nil, fmt.Errorf("settings file %s is corrupt (%v); remove it to go back to the config file's settings", st.path, err)
	}
	return st, nil
}

func (st *settings) save() error {
	data, err := json.MarshalIndent(st.vals, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(st.path), 0o700); err != nil {
		return fmt.Errorf("settings: %w", err)
	}
	return atomicfile.Write(st.path, append(data, '\n'), 0o600)
}

func (st *settings) clone() *settings {
	c := &settings{path: st.path, vals: map[string][]string{}}
	for k, v := range st.vals {
		c.vals[k] = slices.Clone(v)
	}
	return c
}

// apply sets the flags of fs (into o) from the settings, but those the
// command line set (cmdline). A setting the flag refuses is an error
// naming it and the file.
func (st *settings) apply(fs *flag.FlagSet, o *masterOptions, cmdline map[string]bool) error {
	keys := make([]string, 0, len(st.vals))
	for k := range st.vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if cmdline[k] || (k == "exclude" && cmdline["include"]) {
			continue
		}
		if fs.Lookup(k) == nil {
			return fmt.Errorf("%s: no setting %q (georep config reset %s removes it)", st.path, k, k)
		}
		if clear, ok := listFlags[k]; ok {
			clear(o)
		}
		for _, v := range st.vals[k] {
			if err := fs.Set(k, v); err != nil {
				return fmt.Errorf("%s: setting %s=%q: %v (georep config reset %s removes it)", st.path, k, v, err, k)
			}
		}
	}
	return nil
}

// settingValues splits what `config set KEY VALUE` gives: a repeatable
// flag takes one value per line (empty lines dropped: none empties the
// list), any other exactly one.
func settingValues(key, value string) []string {
	if _, ok := listFlags[key]; !ok {
		return []string{value}
	}
	var out []string
	for _, v := range strings.Split(value, "\n") {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// checkSettable says why key cannot be set, if it cannot.
func checkSettable(fs *flag.FlagSet, key string) error {
	if why, ok := notSettable[key]; ok {
		return fmt.Errorf("%s cannot be changed with config set: %s", key, why)
	}
	if fs.Lookup(key) == nil {
		msg := fmt.Sprintf("no setting %q", key)
		if best := config.Suggest(fs, key); best != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", best)
		}
		return errors.New(msg)
	}
	return nil
}

// optionValues are the settings in force, as config get shows them: every
// flag's value (values, from the flag set), a repeatable flag's values one
// per line.
func optionValues(values map[string]string, o *masterOptions) map[string]string {
	out := map[string]string{}
	for k, v := range values {
		if _, skip := notSettable[k]; skip && k != "root" && k != "slave" {
			continue
		}
		out[k] = v
	}
	out["exclude"] = strings.Join(o.excludes, "\n")
	out["exclude-from"] = strings.Join(o.excludeFrom, "\n")
	out["bwlimit-schedule"] = strings.Join(o.bwSchedule, "\n")
	out["event-header"] = strings.Join(o.eventHeaders, "\n")
	out["state-dir"] = o.stateDir
	return out
}
