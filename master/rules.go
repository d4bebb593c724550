package master

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/rules"
)

// maxRulesFile bounds a rules file: patterns, not data.
const maxRulesFile = 4 << 20

// loadRules reads the rules of cfg: the root's RulesFile (if it exists),
// the ExcludeFrom files, then the Excludes. A file that cannot be read or
// a pattern that does not parse is an error naming it: the master does
// not start with rules it cannot read (it would send, or with
// DeleteExcluded remove, what the user meant otherwise).
func loadRules(root *beneath.Root, cfg Config) (*rules.Rules, error) {
	var all *rules.Rules
	fd, err := unix.Openat(root.FD(), RulesFile, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	switch {
	case err == nil:
		f := os.NewFile(uintptr(fd), cfg.Root+"/"+RulesFile)
		rs, err := parseRulesFile(f, f.Name())
		f.Close()
		if err != nil {
			return nil, err
		}
		all = all.Then(rs)
	case !errors.Is(err, unix.ENOENT):
		return nil, fmt.Errorf("master: rules file %s/%s: %w", cfg.Root, RulesFile, err)
	}
	for _, name := range cfg.ExcludeFrom {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("master: rules file: %w", err)
		}
		rs, err := parseRulesFile(f, name)
		f.Close()
		if err != nil {
			return nil, err
		}
		all = all.Then(rs)
	}
	rs, err := rules.New(cfg.Excludes, "--exclude")
	if err != nil {
		return nil, fmt.Errorf("master: %w", err)
	}
	return all.Then(rs), nil
}

// parseRulesFile parses an open rules file (a regular file, bounded).
func parseRulesFile(f *os.File, name string) (*rules.Rules, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("master: rules file %s: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("master: rules file %s is not a regular file", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxRulesFile+1))
	if err != nil {
		return nil, fmt.Errorf("master: rules file %s: %w", name, err)
	}
	if len(data) > maxRulesFile {
		return nil, fmt.Errorf("master: rules file %s is larger than %d bytes", name, maxRulesFile)
	}
	rs, err := rules.Parse(bytes.NewReader(data), name)
	if err != nil {
		return nil, fmt.Errorf("master: %w", err)
	}
	return rs, nil
}

// rulesState is what the session records of the rules a complete crawl
// replicated by: the patterns and whether excluded entries were deleted.
func (m *Master) rulesState() string {
	if m.rules.Len() == 0 && !m.cfg.DeleteExcluded {
		return ""
	}
	return fmt.Sprintf("delete-excluded=%v\n%s", m.cfg.DeleteExcluded, m.rules.String())
}

// rulesSynced records that a complete crawl replicated by the current
// rules.
func (m *Master) rulesSynced() error {
	if m.sess.Rules == m.rulesState() {
		return nil
	}
	state := m.rulesState()
	return m.updateSession(func(s *sessionState) { s.Rules = state })
}
