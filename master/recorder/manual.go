package recorder

// Poll reads and records every change queued now, pairing the halves of
// renames (a half whose other half is not queued by now is a move out of
// the tree): for a caller that drives the recorder itself instead of Run,
// step by step (the live path's deterministic harness), with the tree
// quiet while it polls. Not while Run runs.
func (r *Recorder) Poll() error {
	if err := r.drain(); err != nil {
		return err
	}
	r.settleMoves(true)
	return nil
}

// Cut commits the open segment now, as Run does when it is due (after a
// Poll). Not while Run runs.
func (r *Recorder) Cut() error {
	if err := r.Poll(); err != nil {
		return err
	}
	return r.rollover()
}
