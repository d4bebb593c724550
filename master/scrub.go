package master

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/digest"
	"github.com/georep/georep/internal/syncstatus"
)

// The scrub (Config.ScrubEvery): a live master verifies its slave by
// content now and then (see Verify), beside replication, reading at most
// ScrubRate bytes a second on each end. It first waits until the slave
// holds everything changed before the scrub began, so that what still
// differs, on entries not changed since, was not in flight: damage on the
// slave (bit rot, a stray write, a restore). Those it reports (status,
// metrics, a SCRUB_DIFFERENCES event) and, unless ScrubReportOnly, has the
// worker repair: a crawl that compares those files by content. A full
// scrub reads every file; a quick one (ScrubQuick) trusts the hash of a
// file whose inode, ctime and size are those it was hashed at on the last
// scrub (on both ends).

// scrubLoop scrubs every ScrubEvery until ctx ends.
func (m *Master) scrubLoop(ctx context.Context) {
	cache := digest.NewCache()
	t := time.NewTimer(m.cfg.ScrubEvery)
	defer t.Stop()
	m.cfg.Status.Scrub(syncstatus.ScrubStatus{Next: time.Now().Add(m.cfg.ScrubEvery), Quick: m.cfg.ScrubQuick, ReportOnly: m.cfg.ScrubReportOnly})
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.scrubOnce(ctx, cache)
		t.Reset(m.cfg.ScrubEvery)
	}
}

// scrubOnce runs one scrub and reports it.
func (m *Master) scrubOnce(ctx context.Context, cache *digest.Cache) {
	t0 := time.Now()
	st := syncstatus.ScrubStatus{Started: t0, Quick: m.cfg.ScrubQuick, ReportOnly: m.cfg.ScrubReportOnly}
	report := func(err error) {
		st.Finished, st.Next = time.Now(), time.Now().Add(m.cfg.ScrubEvery)
		if err != nil {
			st.Error = err.Error()
		}
		m.cfg.Status.Scrub(st)
	}
	m.cfg.Status.Scrub(syncstatus.ScrubStatus{Started: t0, Running: true, Quick: st.Quick, ReportOnly: st.ReportOnly})
	if err := m.WaitSynced(ctx, t0); err != nil {
		if ctx.Err() == nil {
			report(fmt.Errorf("waiting for the slave to catch up: %w", err))
		}
		return
	}
	s := m.Settings()
	res, err := Verify(ctx, VerifyConfig{
		Root: m.cfg.Root, Slave: m.cfg.Slave, TLS: m.cfg.TLS, Insecure: m.cfg.Insecure,
		Excludes: s.Excludes, ExcludeFrom: s.ExcludeFrom, RateLimit: m.cfg.ScrubRate,
		Quick: m.cfg.ScrubQuick, Cache: cache, Logger: m.log.Named("scrub"),
	})
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("scrub failed", "error", err)
			report(err)
		}
		return
	}
	st.Files, st.Bytes, st.WireBytes = res.Files, res.Bytes, res.WireBytes
	paths := map[string]bool{}
	for _, d := range res.Diffs {
		if m.changedAfter(d.Path, t0) {
			st.InFlight++
			continue
		}
		st.Differences++
		paths[d.Path] = true
		if len(st.Examples) < 10 {
			st.Examples = append(st.Examples, d.Kind+" "+d.Path)
		}
	}
	m.log.Info("scrub done", "files", res.Files, "bytes", res.Bytes, "differences", st.Differences, "in_flight", st.InFlight,
		"took", time.Since(t0).Round(time.Millisecond))
	if st.Differences > 0 {
		list := make([]string, 0, len(paths))
		for p := range paths {
			list = append(list, p)
		}
		sort.Strings(list)
		m.log.Warn("the scrub found the slave different from the master", "differences", st.Differences, "paths", strings.Join(list[:min(len(list), 20)], ", "))
		m.cfg.Status.Event(syncstatus.EventScrubDifferences,
			fmt.Sprintf("the scrub found %d differences on the slave", st.Differences),
			map[string]any{"differences": st.Differences, "examples": st.Examples, "repair": !m.cfg.ScrubReportOnly})
		if !m.cfg.ScrubReportOnly {
			st.Repairing = true
			m.requestRepair(paths)
		}
	}
	report(nil)
}

// changedAfter reports whether the master's entry at rel, or its
// directory, changed at or after t (ctime): then a difference may be in
// flight, not damage.
func (m *Master) changedAfter(rel string, t time.Time) bool {
	dir, base := filepath.Dir(rel), filepath.Base(rel)
	dfd := m.tree.Root.FD()
	if dir != "." {
		fd, err := m.tree.Root.OpenDir(dir)
		if errors.Is(err, unix.ENOENT) {
			return true // its directory is gone or moved: changed
		}
		if err != nil {
			return true
		}
		defer unix.Close(fd)
		dfd = fd
	}
	var st unix.Stat_t
	if err := unix.Fstat(dfd, &st); err != nil || st.Ctim.Nano() >= t.UnixNano() {
		return true
	}
	st, err := beneath.Lstat(dfd, base)
	if errors.Is(err, unix.ENOENT) {
		return false // gone from the master before t: the directory says when
	}
	return err != nil || st.Ctim.Nano() >= t.UnixNano()
}

// requestRepair has the worker crawl, comparing paths by content.
func (m *Master) requestRepair(paths map[string]bool) {
	m.ctl.mu.Lock()
	defer m.ctl.mu.Unlock()
	if m.ctl.repair == nil {
		m.ctl.repair = map[string]bool{}
	}
	for p := range paths {
		m.ctl.repair[p] = true
	}
	m.ctl.notifyLocked()
}

// takeRepair is called by the worker between batches: the paths a scrub
// asked to repair, if any.
func (m *Master) takeRepair() map[string]bool {
	m.ctl.mu.Lock()
	defer m.ctl.mu.Unlock()
	p := m.ctl.repair
	m.ctl.repair = nil
	return p
}
