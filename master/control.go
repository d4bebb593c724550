package master

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/georep/georep/internal/atomicfile"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/marks"
)

// Settings are what a running live master can change without a restart of
// its process (Master.Apply): most at the next batch, the sync jobs by
// starting its worker again (the history since the marks is replayed, no
// crawl), the rules by starting its recording pipeline again (a crawl
// reconciles the tree by the new rules, as at a restart).
type Settings struct {
	BatchSize      int
	IgnoreDeletes  bool
	SyncJobs       int
	Excludes       []string
	ExcludeFrom    []string
	DeleteExcluded bool
}

// restartKind is what a change of settings needs started again.
type restartKind int

const (
	restartNone     restartKind = iota
	restartWorker               // the worker: a new link with the new sync jobs
	restartPipeline             // recorder and worker: new rules
)

// errRestart ends a worker (or pipeline) for new settings: not a fault.
type errRestart struct{ kind restartKind }

func (e *errRestart) Error() string {
	if e.kind == restartPipeline {
		return "restarting the recording pipeline for new settings"
	}
	return "restarting the worker for new settings"
}

// control is what the status socket's clients change while the master
// runs. The worker and the pipeline read it at safe points (between
// batches) and take new settings into their own Config there: nothing of
// m.cfg is written from another goroutine.
type control struct {
	mu      sync.Mutex
	paused  bool
	pending *Settings
	wake    chan struct{} // closed (and replaced) at every change
	stop    context.CancelFunc
	// cur is the settings in force (as last applied or asked for).
	cur Settings
	// repair: paths a scrub found different, for the worker's next crawl.
	repair map[string]bool
}

// changed returns a channel closed at the next change.
func (c *control) changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wake == nil {
		c.wake = make(chan struct{})
	}
	return c.wake
}

// notifyLocked wakes whoever waits for a change.
func (c *control) notifyLocked() {
	if c.wake != nil {
		close(c.wake)
		c.wake = nil
	}
}

// state returns whether the master is paused, and the channel closed at
// the next change (taken together: no change is missed in between).
func (c *control) state() (paused bool, ch <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wake == nil {
		c.wake = make(chan struct{})
	}
	return c.paused, c.wake
}

// Pause lets the batch in flight finish and ships nothing more until
// Resume; the recorder goes on journaling. It is persisted: a master
// started again stays paused.
func (m *Master) Pause() (string, error) {
	return m.setPaused(true)
}

// Resume ships again from the marks (the journal kept what changed; no
// crawl).
func (m *Master) Resume() (string, error) {
	return m.setPaused(false)
}

func (m *Master) setPaused(p bool) (string, error) {
	m.ctl.mu.Lock()
	was := m.ctl.paused
	m.ctl.paused = p
	m.ctl.notifyLocked()
	m.ctl.mu.Unlock()
	if err := m.updateSession(func(s *sessionState) { s.Paused = p }); err != nil {
		return "", fmt.Errorf("master: persisting the pause: %w", err)
	}
	m.cfg.Status.SetPaused(p)
	switch {
	case p && was:
		return "already paused", nil
	case p:
		m.log.Info("paused: the batch in flight finishes, nothing more is shipped; the recorder keeps journaling")
		return "paused (the batch in flight finishes; changes are journaled until resume)", nil
	case !was:
		return "not paused", nil
	}
	m.log.Info("resumed: shipping from the marks")
	return "resumed", nil
}

// Paused reports whether the master is paused.
func (m *Master) Paused() bool {
	m.ctl.mu.Lock()
	defer m.ctl.mu.Unlock()
	return m.ctl.paused
}

// Stop ends a live Run cleanly, as its context's end does.
func (m *Master) Stop() (string, error) {
	m.ctl.mu.Lock()
	stop := m.ctl.stop
	m.ctl.mu.Unlock()
	if stop == nil {
		return "", errors.New("master: not running")
	}
	m.log.Info("stop asked for; ending the session")
	stop()
	return "stopping", nil
}

// Settings returns the settings in force (or asked for, and taken at the
// next batch).
func (m *Master) Settings() Settings {
	m.ctl.mu.Lock()
	defer m.ctl.mu.Unlock()
	s := m.ctl.cur
	s.Excludes = slices.Clone(s.Excludes)
	s.ExcludeFrom = slices.Clone(s.ExcludeFrom)
	return s
}

// Apply checks new settings and has the running master take them at its
// next batch; the message says how. Rules that do not parse are refused
// and change nothing.
func (m *Master) Apply(s Settings) (string, error) {
	if s.BatchSize < 1 {
		return "", errors.New("the changelog batch size must be at least 1")
	}
	if s.SyncJobs < 1 || s.SyncJobs > 64 {
		return "", errors.New("sync jobs must be between 1 and 64")
	}
	m.ctl.mu.Lock()
	defer m.ctl.mu.Unlock()
	kind := m.ctl.cur.restartFor(s)
	if kind == restartPipeline {
		c := m.cfg // only the rules' fields and the root are read
		c.Excludes, c.ExcludeFrom, c.DeleteExcluded = s.Excludes, s.ExcludeFrom, s.DeleteExcluded
		if _, err := loadRules(m.tree.Root, c); err != nil {
			return "", err
		}
	}
	s.Excludes, s.ExcludeFrom = slices.Clone(s.Excludes), slices.Clone(s.ExcludeFrom)
	m.ctl.cur = s
	cp := s
	m.ctl.pending = &cp
	m.ctl.notifyLocked()
	switch kind {
	case restartPipeline:
		return "applied: the recorder and worker start again after the batch in flight, and a crawl reconciles the tree by the new rules", nil
	case restartWorker:
		return "applied: the worker starts again with the new sync jobs after the batch in flight (no crawl)", nil
	}
	return "applied from the next batch", nil
}

// restartFor is what going from settings c to s needs started again.
func (c Settings) restartFor(s Settings) restartKind {
	if !slices.Equal(c.Excludes, s.Excludes) || !slices.Equal(c.ExcludeFrom, s.ExcludeFrom) || c.DeleteExcluded != s.DeleteExcluded {
		return restartPipeline
	}
	if c.SyncJobs != s.SyncJobs {
		return restartWorker
	}
	return restartNone
}

// settingsOf is the part of cfg that Settings holds.
func settingsOf(cfg Config) Settings {
	return Settings{
		BatchSize: cfg.BatchSize, IgnoreDeletes: cfg.IgnoreDeletes, SyncJobs: cfg.SyncJobs,
		Excludes: slices.Clone(cfg.Excludes), ExcludeFrom: slices.Clone(cfg.ExcludeFrom), DeleteExcluded: cfg.DeleteExcluded,
	}
}

// takeSettings is called by the worker between batches: it moves settings
// asked for into m.cfg and says what must start again for them (an
// errRestart), or nil. The rules' fields are taken by the pipeline (see
// Run), which a restartPipeline ends.
func (m *Master) takeSettings() error {
	m.ctl.mu.Lock()
	p := m.ctl.pending
	m.ctl.mu.Unlock()
	if p == nil {
		return nil
	}
	kind := settingsOf(m.cfg).restartFor(*p)
	if kind == restartPipeline {
		return &errRestart{kind} // pending stays for the pipeline
	}
	m.ctl.mu.Lock()
	if m.ctl.pending == p {
		m.ctl.pending = nil
	}
	m.ctl.mu.Unlock()
	m.cfg.BatchSize, m.cfg.IgnoreDeletes = p.BatchSize, p.IgnoreDeletes
	if kind == restartWorker {
		m.cfg.SyncJobs = p.SyncJobs
		return &errRestart{kind}
	}
	return nil
}

// takeRules is called by Run between pipelines: it moves settings asked
// for (the rules among them) into m.cfg and loads the rules.
func (m *Master) takeRules() error {
	m.ctl.mu.Lock()
	p := m.ctl.pending
	m.ctl.pending = nil
	m.ctl.mu.Unlock()
	if p == nil {
		return nil
	}
	m.cfg.BatchSize, m.cfg.IgnoreDeletes, m.cfg.SyncJobs = p.BatchSize, p.IgnoreDeletes, p.SyncJobs
	m.cfg.Excludes, m.cfg.ExcludeFrom, m.cfg.DeleteExcluded = p.Excludes, p.ExcludeFrom, p.DeleteExcluded
	rs, err := loadRules(m.tree.Root, m.cfg)
	if err != nil {
		return err
	}
	m.rules = rs
	m.log.Info("replication rules changed", "patterns", m.rules.Len(), "delete_excluded", m.cfg.DeleteExcluded)
	return nil
}

// waitResumed waits while the master is paused (status Paused), taking
// settings asked for meanwhile; it returns ctx's error if ctx ends first.
func (m *Master) waitResumed(ctx context.Context) error {
	for {
		if err := m.takeSettings(); err != nil {
			return err
		}
		paused, ch := m.ctl.state()
		if !paused {
			return nil
		}
		m.cfg.Status.SetPaused(true)
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// readSession reads the session state in stateDir (ErrNoSession when
// there is none).
func readSession(stateDir string) (sessionState, error) {
	var s sessionState
	data, err := os.ReadFile(filepath.Join(stateDir, "session.json"))
	if errors.Is(err, os.ErrNotExist) {
		return s, fmt.Errorf("%w in %s", ErrNoSession, stateDir)
	}
	if err != nil {
		return s, fmt.Errorf("reading session file: %w", err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("session file in %s is corrupt: %w", stateDir, err)
	}
	return s, nil
}

// ErrNoSession: the state directory holds no session.
var ErrNoSession = errors.New("no georep master session")

// SetPausedOffline pauses (or resumes) the session in stateDir while no
// master runs it: its next master starts paused (or not). The caller has
// made sure no master runs (the status socket does not answer).
func SetPausedOffline(stateDir string, paused bool) error {
	s, err := readSession(stateDir)
	if err != nil {
		return err
	}
	s.Paused = paused
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(stateDir, "session.json"), append(data, '\n'), 0o600)
}

// DeleteSession removes the state of the session in stateDir (its
// journal, gfid index, status, checkpoint and settings) while no master
// runs it. Without resetSyncTime its identity and its marks on the master
// root stay: a master started again for the same root and slave resumes
// from the stime (a crawl compares what changed since). With it, the
// session's marks on the master root (root) go too, and the next master
// starts a new session: a full crawl. The caller has made sure no master
// runs (the status socket does not answer).
func DeleteSession(stateDir, root string, resetSyncTime bool) error {
	s, err := readSession(stateDir)
	if err != nil {
		return err
	}
	if resetSyncTime {
		id, err := hex.DecodeString(s.SessionID)
		if err != nil || len(id) != 16 {
			return fmt.Errorf("session file in %s holds a malformed session id", stateDir)
		}
		st := marks.NewStore(root, gfid.DefaultNamespace(), filepath.Join(stateDir, "marks.json"))
		for _, k := range []marks.Key{marks.Stime(id), marks.EntryStime(id), marks.CrawlStart(id)} {
			if err := st.Remove(k); err != nil {
				return err
			}
		}
		return os.RemoveAll(stateDir)
	}
	ents, err := os.ReadDir(stateDir)
	if err != nil {
		return fmt.Errorf("deleting session: %w", err)
	}
	for _, e := range ents {
		switch e.Name() {
		case "session.json", "marks.json":
			continue // the identity, and marks the filesystem would not keep
		}
		if err := os.RemoveAll(filepath.Join(stateDir, e.Name())); err != nil {
			return fmt.Errorf("deleting session: %w", err)
		}
	}
	s.Paused, s.Rules = false, ""
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(stateDir, "session.json"), append(data, '\n'), 0o600)
}
