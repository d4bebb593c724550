package livecheck

// Shrink cuts a failing script down: it leaves out steps, then hooks, then
// single ops, keeping each cut while fails still says the script fails
// (delta debugging, by chunks that halve). tries bounds the runs of fails
// (each is a whole run of the harness); what is left when they run out is
// returned. The result fails (if s did).
func Shrink(s Script, fails func(Script) bool, tries int) Script {
	run := func(c Script) bool {
		if tries <= 0 {
			return false
		}
		tries--
		return fails(c)
	}
	// Whole steps.
	s.Steps = ddmin(s.Steps, func(steps []Step) bool { return run(Script{Seed: s.Seed, Steps: steps}) })
	// Hooks of batch steps, and ops of op steps, one step at a time.
	for i := range s.Steps {
		if len(s.Steps[i].Hooks) > 0 {
			hooks := ddmin(s.Steps[i].Hooks, func(hs []Hook) bool {
				c := clone(s)
				c.Steps[i].Hooks = hs
				return run(c)
			})
			s.Steps[i].Hooks = hooks
		}
		if len(s.Steps[i].Ops) > 1 {
			ops := ddmin(s.Steps[i].Ops, func(os []Op) bool {
				c := clone(s)
				c.Steps[i].Ops = os
				return run(c)
			})
			s.Steps[i].Ops = ops
		}
		for j := range s.Steps[i].Hooks {
			if len(s.Steps[i].Hooks[j].Ops) > 1 {
				ops := ddmin(s.Steps[i].Hooks[j].Ops, func(os []Op) bool {
					c := clone(s)
					c.Steps[i].Hooks[j].Ops = os
					return run(c)
				})
				s.Steps[i].Hooks[j].Ops = ops
			}
		}
	}
	return s
}

// clone copies s deeply enough for one step's ops or hooks to change.
func clone(s Script) Script {
	c := Script{Seed: s.Seed, Steps: make([]Step, len(s.Steps))}
	for i, st := range s.Steps {
		st.Ops = append([]Op(nil), st.Ops...)
		st.Hooks = append([]Hook(nil), st.Hooks...)
		for j := range st.Hooks {
			st.Hooks[j].Ops = append([]Op(nil), st.Hooks[j].Ops...)
		}
		c.Steps[i] = st
	}
	return c
}

// ddmin removes chunks of xs while fails still holds, halving the chunk
// size when no chunk can go.
func ddmin[T any](xs []T, fails func([]T) bool) []T {
	n := 2
	for len(xs) >= 1 {
		size := (len(xs) + n - 1) / n
		cut := false
		for start := 0; start < len(xs); start += size {
			end := min(start+size, len(xs))
			c := append(append([]T(nil), xs[:start]...), xs[end:]...)
			if fails(c) {
				xs, cut = c, true
				n = max(n-1, 2)
				break
			}
		}
		if !cut {
			if size == 1 {
				break
			}
			n = min(2*n, len(xs))
		}
	}
	return xs
}
