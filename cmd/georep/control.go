package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/georep/georep/internal/bwsched"
	"github.com/georep/georep/master"
)

// masterControl is what a running master's status socket lets its clients
// do (syncstatus.Control): pause, resume and stop it, and read and change
// its settings. A change is checked as the master's own flags check it
// (over the same command line and config file), persisted in the state
// directory, and applied at once where the setting allows.
type masterControl struct {
	m      *master.Master
	bw     *bwsched.Limiter
	log    hclog.Logger
	stderr io.Writer

	mu sync.Mutex
	o  masterOptions // in force
}

// liveSettings are applied to a running master, each by the way named.
var liveSettings = map[string]string{
	"bwlimit":              "bandwidth",
	"bwlimit-schedule":     "bandwidth",
	"log-level":            "log",
	"sync-jobs":            "master",
	"changelog-batch-size": "master",
	"ignore-deletes":       "master",
	"exclude":              "master",
	"exclude-from":         "master",
	"delete-excluded":      "master",
}

func (c *masterControl) Pause() (string, error)  { return c.m.Pause() }
func (c *masterControl) Resume() (string, error) { return c.m.Resume() }
func (c *masterControl) Stop() (string, error)   { return c.m.Stop() }

// ConfigGet returns the settings in force (all, or key's).
func (c *masterControl) ConfigGet(key string) (map[string]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return settingsView(c.o, key)
}

// settingsView is config get's answer from the options o.
func settingsView(o masterOptions, key string) (map[string]string, error) {
	var tmp masterOptions
	fs := masterFlagSet(&tmp, io.Discard)
	all := optionValues(o.values, &o)
	if key == "" {
		return all, nil
	}
	v, ok := all[key]
	if !ok {
		return nil, checkSettable(fs, key)
	}
	return map[string]string{key: v}, nil
}

// ConfigSet checks, persists and applies key=value.
func (c *masterControl) ConfigSet(key, value string) (string, error) {
	return c.change(key, func(st *settings) { st.vals[key] = settingValues(key, value) })
}

// ConfigReset drops what config set persisted for key: the config file's
// value (or the default) is in force again.
func (c *masterControl) ConfigReset(key string) (string, error) {
	return c.change(key, func(st *settings) { delete(st.vals, key) })
}

func (c *masterControl) change(key string, edit func(st *settings)) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, msg, err := changeSettings(c.o, key, edit)
	if err != nil {
		return "", err
	}
	applied, err := c.apply(o, key)
	if err != nil {
		return "", err
	}
	c.o = o
	return applied + msg, nil
}

// changeSettings checks key, edits the persisted settings of the session
// of o, checks the options they give (over o's command line and config
// file) and saves them; msg notes a command line that overrides key.
func changeSettings(o masterOptions, key string, edit func(st *settings)) (masterOptions, string, error) {
	var tmp masterOptions
	if err := checkSettable(masterFlagSet(&tmp, io.Discard), key); err != nil {
		return o, "", err
	}
	st, err := loadSettings(o.stateDir)
	if err != nil {
		return o, "", err
	}
	st = st.clone()
	edit(st)
	n, err := buildMasterSession(o.args, o.session, io.Discard, st)
	if err != nil {
		return o, "", err
	}
	if n.stateDir != o.stateDir {
		return o, "", fmt.Errorf("the setting would move the session's state directory (%s -> %s)", o.stateDir, n.stateDir)
	}
	if err := st.save(); err != nil {
		return o, "", err
	}
	msg := ""
	if o.cmdline[key] || (key == "exclude" && o.cmdline["include"]) {
		msg = fmt.Sprintf(" (note: the master's command line sets %s, which wins at its next start)", key)
	}
	return n, msg, nil
}

// apply gives the running master the settings of o, as key's kind allows.
func (c *masterControl) apply(o masterOptions, key string) (string, error) {
	switch liveSettings[key] {
	case "bandwidth":
		s, err := o.schedule()
		if err != nil {
			return "", err
		}
		c.bw.SetSchedule(s)
		limit, _ := c.bw.Current()
		return "applied: the cap on file data is now " + bwsched.FormatLimit(limit) + " (" + s.String() + ")", nil
	case "log":
		c.log.SetLevel(hclog.LevelFromString(o.log.level))
		return "applied", nil
	case "master":
		return c.m.Apply(master.Settings{
			BatchSize: o.batchSize, IgnoreDeletes: o.ignoreDeletes, SyncJobs: o.syncJobs,
			Excludes: o.excludes, ExcludeFrom: o.excludeFrom, DeleteExcluded: o.deleteExcluded,
		})
	}
	return "saved: takes effect at the master's next start (" + key + " cannot change while it runs)", nil
}

// liveKeys lists the settings a running master applies at once.
func liveKeys() string {
	var ks []string
	for k := range liveSettings {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}
