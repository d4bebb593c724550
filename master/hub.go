package master

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/atomicfile"
	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/mtree"
	"github.com/georep/georep/master/recorder"
)

// Hub is what the live sessions of one master root share in one process
// (Config.Hub): one gfid index, one journal and one recorder that fills
// them, however many slaves the root is replicated to. Each session keeps
// its own marks, state, worker and status; it reads the journal from its
// own stime, and the journal keeps what the slowest of them has not
// applied. The recorder records everything under the root: each session's
// rules are applied by its batches.
//
// The recording pipeline runs while a session is attached (a session's
// record); a pipeline that stops (the recorder failed, or a session found
// the index damaged) ends every session's worker, whose monitors attach
// them again to a new one.
type Hub struct {
	dir  string // state: gfid.db, changelog/
	cfg  HubConfig
	log  hclog.Logger
	tree *mtree.Tree

	mu       sync.Mutex
	cond     *sync.Cond // broadcast when refs or cur change
	cur      *pipeline  // the running pipeline (nil, or dead: a new one is made)
	refs     int        // attachments over all pipelines
	damaged  bool       // the index is damaged: rebuilt once no one is attached
	consumed map[*Master]int64
	closed   bool
}

// HubConfig configures a Hub.
type HubConfig struct {
	// Root is the master root; StateDir holds the shared index and
	// journal.
	Root, StateDir string
	Interval       time.Duration
	Watcher        string
	Logger         hclog.Logger
}

// pipeline is one run of the shared recorder.
type pipeline struct {
	j    *changelog.Journal
	rec  *recorder.Recorder
	stop context.CancelFunc
	done chan struct{} // closed when the recorder stopped
	err  error         // why (after done)
	refs int
	dead bool
}

// NewHub opens the shared index of root's sessions in cfg.StateDir.
func NewHub(cfg HubConfig) (*Hub, error) {
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	abs, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("master root %s: %w", cfg.Root, err)
	}
	cfg.Root = abs
	if err := atomicfile.PrivateDir(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("shared state dir: %w", err)
	}
	root, err := beneath.Open(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("master root: %w", err)
	}
	h := &Hub{dir: cfg.StateDir, cfg: cfg, log: log, consumed: map[*Master]int64{}}
	h.cond = sync.NewCond(&h.mu)
	idx, err := h.openIndex()
	if err != nil {
		root.Close()
		return nil, err
	}
	h.tree = &mtree.Tree{Root: root, NS: gfid.DefaultNamespace(), Idx: idx}
	return h, nil
}

func (h *Hub) openIndex() (*gfidx.Index, error) {
	path := filepath.Join(h.dir, "gfid.db")
	idx, err := gfidx.Open(path)
	if err != nil && !errors.Is(err, gfidx.ErrInUse) {
		h.log.Warn("gfid index unreadable; rebuilding it from the tree", "path", path, "error", err)
		if rerr := gfidx.Remove(path); rerr != nil {
			return nil, fmt.Errorf("master: %w", rerr)
		}
		idx, err = gfidx.Open(path)
	}
	return idx, err
}

// Root is the hub's master root (absolute).
func (h *Hub) Root() string { return h.cfg.Root }

// Close closes the index and the root; every session must have ended.
func (h *Hub) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	return errors.Join(h.tree.Idx.Sync(), h.tree.Idx.Close(), h.tree.Root.Close())
}

// markDamaged says a session found the index damaged: the pipeline stops,
// and the index is rebuilt before the next one starts.
func (h *Hub) markDamaged() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.damaged = true
	if p := h.cur; p != nil && !p.dead {
		p.dead = true
		p.stop()
	}
}

// attach attaches m to the running pipeline, starting one if none runs
// (after rebuilding a damaged index, once no session is attached). The
// returned release detaches it; the last to leave a pipeline stops it.
func (h *Hub) attach(ctx context.Context, m *Master) (*pipeline, func(), error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.damaged {
		stop := context.AfterFunc(ctx, func() {
			h.mu.Lock()
			h.cond.Broadcast()
			h.mu.Unlock()
		})
		for h.refs > 0 && ctx.Err() == nil {
			h.cond.Wait()
		}
		stop()
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		if h.damaged {
			if err := h.rebuildLocked(); err != nil {
				return nil, nil, err
			}
		}
	}
	if h.cur == nil || h.cur.dead {
		p, err := h.startLocked(m)
		if err != nil {
			return nil, nil, err
		}
		h.cur = p
	}
	p := h.cur
	p.refs++
	h.refs++
	if _, ok := h.consumed[m]; !ok {
		h.consumed[m] = 0 // nothing dropped until it says how far it got
	}
	var once sync.Once
	return p, func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			p.refs--
			h.refs--
			if p.refs == 0 {
				h.stopLocked(p)
			}
			h.cond.Broadcast()
		})
	}, nil
}

// leave says m's session ended: the journal no longer keeps what only it
// had not applied.
func (h *Hub) leave(m *Master) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.consumed, m)
}

func (h *Hub) rebuildLocked() error {
	path := filepath.Join(h.dir, "gfid.db")
	h.log.Warn("the shared gfid index is damaged; rebuilding it from the tree", "path", path)
	h.tree.Idx.Close() // whatever it says: it is damaged
	if err := gfidx.Remove(path); err != nil {
		return err
	}
	idx, err := gfidx.Open(path)
	if err != nil {
		return err
	}
	h.tree.Idx = idx
	h.damaged = false
	return nil
}

// startLocked opens the journal and starts the recorder (m's logger and
// its damaged-journal handling).
func (h *Hub) startLocked(m *Master) (*pipeline, error) {
	j, err := openJournal(filepath.Join(h.dir, "changelog"), h.log)
	if err != nil {
		return nil, err
	}
	rec, err := recorder.New(recorder.Config{
		Tree: h.tree, Journal: j, Interval: h.cfg.Interval, Watcher: h.cfg.Watcher, Logger: h.log.Named("recorder"),
	})
	if err != nil {
		j.Close()
		return nil, err
	}
	t0 := time.Now()
	if err := rec.Start(); err != nil {
		rec.Close()
		j.Close()
		if errors.Is(err, gfidx.ErrCorrupt) {
			h.damaged = true
		}
		return nil, fmt.Errorf("recorder: %w", err)
	}
	h.log.Info("shared recorder started", "root", h.cfg.Root, "watcher", rec.Watcher(), "took", time.Since(t0).Round(time.Millisecond))
	ctx, stop := context.WithCancel(context.Background())
	p := &pipeline{j: j, rec: rec, stop: stop, done: make(chan struct{})}
	go func() {
		err := rec.Run(ctx)
		if err == nil && ctx.Err() == nil {
			err = errors.New("stopped")
		}
		h.mu.Lock()
		p.err, p.dead = err, true
		h.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// stopLocked stops p's recorder and closes its journal (its last session
// left).
func (h *Hub) stopLocked(p *pipeline) {
	p.dead = true
	p.stop()
	h.mu.Unlock()
	<-p.done
	p.rec.Close()
	p.j.Close()
	h.mu.Lock()
	if h.cur == p {
		h.cur = nil
	}
}

// done records that m's slave holds the journal up to upTo, and lets the
// journal drop what every attached session has applied.
func (h *Hub) done(j *changelog.Journal, m *Master, upTo int64) error {
	h.mu.Lock()
	h.consumed[m] = upTo
	low := upTo
	for _, t := range h.consumed {
		low = min(low, t)
	}
	h.mu.Unlock()
	if low <= 0 {
		return nil
	}
	return j.Done(low)
}

// openJournal opens the live journal in dir. A journal whose index or
// files are damaged is moved aside (to dir.damaged, with a warning) and a
// new one begun: its history is lost, which the worker sees as a gap since
// the stime and closes with a crawl.
func openJournal(dir string, log hclog.Logger) (*changelog.Journal, error) {
	j, err := changelog.OpenJournal(dir)
	if err == nil || !(errors.Is(err, changelog.ErrCorruptIndex) || errors.Is(err, changelog.ErrMalformed)) {
		return j, err
	}
	aside := dir + ".damaged"
	log.Warn("the journal is damaged; setting it aside and starting a new one (the next batch is a crawl)",
		"error", err, "moved_to", aside)
	if rerr := os.RemoveAll(aside); rerr != nil {
		return nil, fmt.Errorf("removing an older damaged journal: %w", rerr)
	}
	if rerr := os.Rename(dir, aside); rerr != nil {
		return nil, fmt.Errorf("setting a damaged journal aside: %w (it was: %v)", rerr, err)
	}
	return changelog.OpenJournal(dir)
}

// journalDone lets the journal drop what the slave holds up to upTo: at
// once for a session of its own, or what every session of its Hub holds.
func (m *Master) journalDone(j *changelog.Journal, upTo int64) error {
	if m.cfg.Hub != nil {
		return m.cfg.Hub.done(j, m, upTo)
	}
	return j.Done(upTo)
}
