package syncstatus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// ErrNoSession: the state directory holds no georep master session.
var ErrNoSession = errors.New("status: no session")

// Get returns the status of the session in stateDir: the running
// master's, through its socket, or else the figures the last master
// persisted, as Stopped.
func Get(ctx context.Context, stateDir string) (*Snapshot, error) {
	rep, err := Call(ctx, stateDir, Request{Op: OpStatus})
	if err == nil {
		if rep.Status == nil {
			return nil, errors.New("status: the master's reply holds no status")
		}
		return rep.Status, nil
	}
	if !errors.Is(err, ErrNotRunning) {
		return nil, err
	}
	return Read(stateDir)
}

// Read returns the figures the last master of the session in stateDir
// persisted, as Stopped (ErrNoSession when there is no session there).
func Read(stateDir string) (*Snapshot, error) {
	s, err := readStatusFile(stateDir)
	if errors.Is(err, os.ErrNotExist) {
		// A session whose master never wrote figures (it stopped before,
		// or predates them): what session.json says.
		s, err = fromSessionFile(stateDir)
	}
	if err != nil {
		return nil, err
	}
	s.StateDir = stateDir
	if s.State != Faulty {
		s.Fault = ""
	}
	s.State, s.Started, s.Crawl = Stopped, time.Time{}, NoCrawl
	cp, err := loadCheckpoint(stateDir)
	if err != nil {
		return nil, err
	}
	if cp != nil && s.Identity.Session != "" {
		cp.Invalid = !cp.Identity.Same(s.Identity)
	}
	s.Checkpoint = cp
	return s, nil
}

func fromSessionFile(stateDir string) (*Snapshot, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, sessionFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoSession, stateDir)
	}
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	var sess struct {
		SessionID     string `json:"session_id"`
		Slave         string `json:"slave"`
		SlaveVolumeID string `json:"slave_volume_id"`
	}
	if err := json.Unmarshal(data, &sess); err != nil {
		return nil, fmt.Errorf("status: session file in %s is corrupt: %w", stateDir, err)
	}
	return &Snapshot{Version: snapshotVersion, Slave: sess.Slave,
		Identity: Identity{Session: sess.SessionID, SlaveVolume: sess.SlaveVolumeID}}, nil
}

// SetCheckpoint sets the checkpoint of the session in stateDir at target:
// through the running master's socket, or, with no master running, in the
// checkpoint file against the identity the last master recorded (the
// next master checks it against the marks it finds).
func SetCheckpoint(ctx context.Context, stateDir string, target time.Time) (*Checkpoint, error) {
	if err := ValidTarget(target); err != nil {
		return nil, err
	}
	rep, err := Call(ctx, stateDir, Request{Op: OpCheckpointSet, Target: target})
	if err == nil {
		return rep.Checkpoint, nil
	}
	if !errors.Is(err, ErrNotRunning) {
		return nil, err
	}
	s, err := Read(stateDir)
	if err != nil {
		return nil, err
	}
	if s.Identity.Session == "" || s.Identity.MasterVolume == "" {
		return nil, fmt.Errorf("status: the session in %s has not recorded its identity yet (start its master once first)", stateDir)
	}
	now := time.Now()
	cp := &Checkpoint{Target: target, SetAt: now, Identity: s.Identity}
	cp.evaluate(s.Identity, s.LastSynced, now)
	if err := saveCheckpoint(stateDir, cp); err != nil {
		return nil, err
	}
	// A master that started meanwhile read the file before it was
	// written: tell it.
	if rep, err := Call(ctx, stateDir, Request{Op: OpCheckpointSet, Target: target}); err == nil {
		return rep.Checkpoint, nil
	}
	return cp, nil
}

// ClearCheckpoint clears the checkpoint of the session in stateDir.
func ClearCheckpoint(ctx context.Context, stateDir string) error {
	_, err := Call(ctx, stateDir, Request{Op: OpCheckpointClear})
	if err == nil || !errors.Is(err, ErrNotRunning) {
		return err
	}
	if _, err := Read(stateDir); err != nil {
		return err
	}
	if err := removeCheckpoint(stateDir); err != nil {
		return err
	}
	// A master that started meanwhile may have read the file.
	if _, err := Call(ctx, stateDir, Request{Op: OpCheckpointClear}); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	return nil
}
