package livecheck

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// StepKind is what one step of a script does.
type StepKind int

// The steps: changes to the tree, and the master's own steps.
const (
	// StepOps applies Ops to the tree.
	StepOps StepKind = iota
	// StepPoll has the recorder read what is queued.
	StepPoll
	// StepCut has the recorder commit its open segment.
	StepCut
	// StepBatch has the master take one step of its loop: a crawl if one
	// is due, else a batch of at most Max committed segments. Its Hooks
	// change the tree in the middle of it, or crash the master there.
	StepBatch
	// StepCrash kills the master (nothing is closed cleanly: the journal's
	// open segment is lost, a gap) and starts it again.
	StepCrash
)

func (k StepKind) String() string {
	return [...]string{"StepOps", "StepPoll", "StepCut", "StepBatch", "StepCrash"}[k]
}

// Step is one step of a script.
type Step struct {
	Kind  StepKind
	Ops   []Op
	Max   int
	Hooks []Hook
}

// Hook is what a batch step does at one of the batch's hook points (the
// Call-th, counted from 0 over the whole step, crawls and reconciliations
// included): apply Ops (and have the recorder read them), or crash the
// master there.
type Hook struct {
	Call  int
	Ops   []Op
	Crash bool
}

// Script is a whole run: the steps, then the master left to catch up.
type Script struct {
	Seed  uint64
	Steps []Step
}

// String renders the script as Go, to paste into a regression test.
func (s Script) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "livecheck.Script{Seed: %d, Steps: []livecheck.Step{\n", s.Seed)
	for _, st := range s.Steps {
		fmt.Fprintf(&b, "\t{Kind: livecheck.%s", st.Kind)
		if len(st.Ops) > 0 {
			b.WriteString(", Ops: []livecheck.Op{")
			for i, o := range st.Ops {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(o.String())
			}
			b.WriteString("}")
		}
		if st.Max != 0 {
			fmt.Fprintf(&b, ", Max: %d", st.Max)
		}
		if len(st.Hooks) > 0 {
			b.WriteString(", Hooks: []livecheck.Hook{")
			for i, h := range st.Hooks {
				if i > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "{Call: %d", h.Call)
				if h.Crash {
					b.WriteString(", Crash: true")
				}
				if len(h.Ops) > 0 {
					b.WriteString(", Ops: []livecheck.Op{")
					for j, o := range h.Ops {
						if j > 0 {
							b.WriteString(", ")
						}
						b.WriteString(o.String())
					}
					b.WriteString("}")
				}
				b.WriteString("}")
			}
			b.WriteString("}")
		}
		b.WriteString("},\n")
	}
	b.WriteString("}}")
	return b.String()
}

// Ops counts the script's ops.
func (s Script) Ops() int {
	n := 0
	for _, st := range s.Steps {
		n += len(st.Ops)
		for _, h := range st.Hooks {
			n += len(h.Ops)
		}
	}
	return n
}

// Source gives a run its steps: a Planner makes them from a seed as the
// run goes (its ops from the tree as it is then), a Replay gives those of
// a recorded script.
type Source interface {
	// Next is the next step; false when the script is done.
	Next() (Step, bool)
	// AtHook is what the current batch step does at its call-th hook.
	AtHook(call int) Hook
}

// Planner makes a seeded script as it runs, and records it (Script).
type Planner struct {
	rng   *rand.Rand
	gen   *Gen
	left  int
	cur   *Step
	crash bool // this run may crash the master
	rec   Script
}

// PlanOptions shape a planner's scripts.
type PlanOptions struct {
	// Steps is how many steps the script takes (the master's included).
	Steps int
	// Crashes lets the script kill the master.
	Crashes bool
}

// NewPlanner plans a script from seed for the tree at root.
func NewPlanner(seed uint64, root string, o PlanOptions) *Planner {
	return &Planner{rng: rand.New(rand.NewPCG(seed, 0x706c616e)), gen: NewGen(seed, root), left: o.Steps, crash: o.Crashes,
		rec: Script{Seed: seed}}
}

// SetRoot says where the tree is (the generator looks at it).
func (p *Planner) SetRoot(root string) { p.gen.root = root }

// Script is what the planner planned so far: the script to replay.
func (p *Planner) Script() Script {
	s := p.rec
	s.Steps = append([]Step(nil), s.Steps...)
	if p.cur != nil && len(s.Steps) > 0 {
		s.Steps[len(s.Steps)-1] = *p.cur
	}
	return s
}

// Next implements Source.
func (p *Planner) Next() (Step, bool) {
	if p.cur != nil {
		p.rec.Steps[len(p.rec.Steps)-1] = *p.cur
		p.cur = nil
	}
	if p.left <= 0 {
		return Step{}, false
	}
	p.left--
	var st Step
	switch x := p.rng.IntN(100); {
	case x < 55:
		st = Step{Kind: StepOps}
		for n := 1 + p.rng.IntN(4); n > 0; n-- {
			st.Ops = append(st.Ops, p.gen.Next()...)
		}
	case x < 65:
		st = Step{Kind: StepPoll}
	case x < 80:
		st = Step{Kind: StepCut}
	case x < 98 || !p.crash:
		st = Step{Kind: StepBatch, Max: 1 + p.rng.IntN(3)}
	default:
		st = Step{Kind: StepCrash}
	}
	p.rec.Steps = append(p.rec.Steps, st)
	if st.Kind == StepBatch {
		p.cur = &p.rec.Steps[len(p.rec.Steps)-1]
	}
	return st, true
}

// AtHook implements Source: now and then, ops in the middle of a batch,
// and rarely a crash there.
func (p *Planner) AtHook(call int) Hook {
	h := Hook{Call: call}
	switch x := p.rng.IntN(100); {
	case x < 30:
		for n := 1 + p.rng.IntN(2); n > 0; n-- {
			h.Ops = append(h.Ops, p.gen.Next()...)
		}
	case x < 32 && p.crash:
		h.Crash = true
	}
	if p.cur != nil && (len(h.Ops) > 0 || h.Crash) {
		p.cur.Hooks = append(p.cur.Hooks, h)
	}
	return h
}

// Replay gives the steps of a recorded script.
type Replay struct {
	s   Script
	i   int
	cur *Step
}

// NewReplay replays s.
func NewReplay(s Script) *Replay { return &Replay{s: s} }

// Next implements Source.
func (r *Replay) Next() (Step, bool) {
	if r.i >= len(r.s.Steps) {
		return Step{}, false
	}
	st := r.s.Steps[r.i]
	r.cur = &r.s.Steps[r.i]
	r.i++
	return st, true
}

// AtHook implements Source.
func (r *Replay) AtHook(call int) Hook {
	if r.cur != nil {
		for _, h := range r.cur.Hooks {
			if h.Call == call {
				return h
			}
		}
	}
	return Hook{Call: call}
}
