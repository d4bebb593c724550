package syncstatus

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/georep/georep/internal/atomicfile"
)

// Checkpoint asks "has everything changed on the master before Target
// reached the slave?". It is completed when the stime reaches Target; the
// completion time is persisted with it, so it survives restarts.
type Checkpoint struct {
	Target time.Time `json:"target"`
	SetAt  time.Time `json:"set_at"`
	// Identity is the session's when the checkpoint was set.
	Identity Identity `json:"identity"`
	// Completed is when the master saw the stime reach Target (zero: not
	// yet).
	Completed time.Time `json:"completed"`
	// Invalid: the marks were reset since the checkpoint was set (the
	// session or a root's volume id changed), so the stime no longer
	// answers its question. Not persisted: worked out against the
	// session's identity each time.
	Invalid bool `json:"invalid"`
}

// The checkpoint's answers, as the table shows them.
const (
	CheckpointYes     = "Yes"
	CheckpointNo      = "No"
	CheckpointInvalid = "invalid"
)

// Answer is the CHECKPOINT COMPLETED column: Yes, No or invalid.
func (c *Checkpoint) Answer() string {
	switch {
	case c.Invalid:
		return CheckpointInvalid
	case !c.Completed.IsZero():
		return CheckpointYes
	}
	return CheckpointNo
}

// evaluate brings c up to date with the session's identity and stime:
// it reports whether the checkpoint just completed (the caller persists
// it). An invalid checkpoint never completes.
func (c *Checkpoint) evaluate(id Identity, stime, now time.Time) (completed bool) {
	c.Invalid = !c.Identity.Same(id)
	if c.Invalid || !c.Completed.IsZero() || stime.Before(c.Target) {
		return false
	}
	c.Completed = now
	return true
}

// File names in the state directory.
const (
	checkpointFile = "checkpoint.json"
	statusFile     = "status.json"
	socketFile     = "status.sock"
	lockFile       = "status.lock"
	sessionFile    = "session.json" // the master's (see package master)
)

// SocketPath is where the master of the session in stateDir serves its
// status.
func SocketPath(stateDir string) string { return filepath.Join(stateDir, socketFile) }

func loadCheckpoint(stateDir string) (*Checkpoint, error) {
	path := filepath.Join(stateDir, checkpointFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("status: reading checkpoint: %w", err)
	}
	var c Checkpoint
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("status: checkpoint file %s is corrupt (%v); clear the checkpoint and set it again", path, err)
	}
	if c.Target.IsZero() {
		return nil, fmt.Errorf("status: checkpoint file %s has no target; clear the checkpoint and set it again", path)
	}
	c.Invalid = false
	return &c, nil
}

func saveCheckpoint(stateDir string, c *Checkpoint) error {
	if err := atomicfile.WriteJSON(filepath.Join(stateDir, checkpointFile), c, 0o600); err != nil {
		return fmt.Errorf("status: saving checkpoint: %w", err)
	}
	return nil
}

func removeCheckpoint(stateDir string) error {
	err := os.Remove(filepath.Join(stateDir, checkpointFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("status: clearing checkpoint: %w", err)
	}
	return nil
}
