package slave

import (
	"context"
	"crypto/rand"
	"sort"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georep/georep/internal/digest"
	"github.com/georep/georep/internal/wire"
	"github.com/georep/georep/internal/xattrs"
	pb "github.com/georep/georep/proto/georep/v1"
)

// Verify (`georep verify`): the slave hashes its tree once per pass, in
// the background, and answers the master's questions about its
// directories from the result. A pass reads only; it needs no session, so
// it runs beside a live master's. One pass at a time: a new one cancels
// the last; an idle one is dropped after digestIdle.

// Limits of a pass.
const (
	digestIdle     = 30 * time.Minute
	digestMaxPage  = 10000
	digestMinBurst = 256 << 10
)

// digestPasses holds the pass in progress or done.
type digestPasses struct {
	begin sync.Mutex
	mu    sync.Mutex
	cur   *digestPass
	// cache keeps the hashes of the last passes, for a quick one (used by
	// one pass at a time: a new pass waits for the last to stop).
	cache *digest.Cache
	wg    sync.WaitGroup
	done  bool // the slave closed: no more passes
}

type digestPass struct {
	id      [16]byte
	cancel  context.CancelFunc
	stopped chan struct{} // closed when its goroutine is done

	mu           sync.Mutex
	ready        bool
	err          error
	tree         *digest.Tree
	files, bytes int64
	used         time.Time
}

// DigestBegin starts a pass (see digestPasses).
func (s *Slave) DigestBegin(ctx context.Context, req *pb.DigestBeginRequest) (*pb.DigestBeginResponse, error) {
	if req.GetRateLimit() < 0 {
		return nil, statusInvalid("negative rate limit")
	}
	priv := req.GetPrivileged() && s.privileged
	p := &digestPass{used: time.Now(), stopped: make(chan struct{})}
	if _, err := rand.Read(p.id[:]); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	pctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	d := &s.digests
	d.begin.Lock() // one DigestBegin at a time: one pass uses the cache
	defer d.begin.Unlock()
	d.mu.Lock()
	old := d.cur
	d.cur = nil
	d.mu.Unlock()
	if old != nil {
		old.cancel()
		<-old.stopped
	}
	d.mu.Lock()
	if d.done {
		d.mu.Unlock()
		cancel()
		return nil, status.Error(codes.Unavailable, "the slave is stopping")
	}
	if d.cache == nil {
		d.cache = digest.NewCache()
	}
	cache := d.cache
	if !req.GetQuick() {
		cache = nil // a full pass reads everything (and leaves the cache as it was)
	}
	d.cur = p
	d.wg.Add(1)
	d.mu.Unlock()
	var lim *rate.Limiter
	if r := req.GetRateLimit(); r > 0 {
		lim = rate.NewLimiter(rate.Limit(r), max(digestMinBurst, int(min(r, 1<<30))))
	}
	s.log.Info("verify: hashing the tree", "privileged_xattrs", priv, "rate_limit", req.GetRateLimit())
	go func() {
		defer d.wg.Done()
		defer close(p.stopped)
		defer cancel()
		t0 := time.Now()
		t, err := digest.Build(pctx, s.tree.root, digest.Options{
			Skip:  func(rel string, isDir bool) bool { return rel == wire.ReservedName },
			Xattr: func(n string) bool { return xattrs.Replicated(n, priv) },
			Limit: lim,
			Cache: cache,
			Progress: func(files, bytes int64) {
				p.mu.Lock()
				p.files, p.bytes = files, bytes
				p.mu.Unlock()
			},
		})
		p.mu.Lock()
		p.ready, p.err, p.tree = true, err, t
		p.mu.Unlock()
		if err != nil {
			s.log.Warn("verify: hashing the tree failed", "error", err)
			return
		}
		s.log.Info("verify: tree hashed", "files", t.Files, "bytes", t.Bytes, "dirs", len(t.Dirs), "took", time.Since(t0).Round(time.Millisecond))
		// Kept while the master asks; dropped once idle.
		tick := time.NewTicker(time.Minute)
		defer tick.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
				p.mu.Lock()
				idle := time.Since(p.used) > digestIdle
				p.mu.Unlock()
				if idle {
					d.mu.Lock()
					if d.cur == p {
						d.cur = nil
					}
					d.mu.Unlock()
					return
				}
			}
		}
	}()
	return &pb.DigestBeginResponse{Pass: p.id[:], Privileged: priv}, nil
}

// DigestList answers one directory of the pass.
func (s *Slave) DigestList(ctx context.Context, req *pb.DigestListRequest) (*pb.DigestListResponse, error) {
	d := &s.digests
	d.mu.Lock()
	p := d.cur
	d.mu.Unlock()
	if p == nil || string(p.id[:]) != string(req.GetPass()) {
		return nil, status.Error(codes.NotFound, "no such verify pass (another began, or it was idle too long)")
	}
	max := int(req.GetMax())
	if max <= 0 || max > digestMaxPage {
		max = digestMaxPage
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.used = time.Now()
	if !p.ready {
		return &pb.DigestListResponse{Files: p.files, Bytes: p.bytes}, nil
	}
	if p.err != nil {
		return nil, status.Errorf(codes.Internal, "hashing the slave's tree: %v", p.err)
	}
	resp := &pb.DigestListResponse{Ready: true, Files: p.tree.Files, Bytes: p.tree.Bytes}
	dir, ok := p.tree.Dirs[string(req.GetPath())]
	if !ok {
		resp.Absent = true
		return resp, nil
	}
	resp.Sum = dir.Sum[:]
	after := string(req.GetAfter())
	i := 0
	if after != "" {
		i = sort.Search(len(dir.Entries), func(i int) bool { return dir.Entries[i].Name > after })
	}
	for ; i < len(dir.Entries) && len(resp.Entries) < max; i++ {
		resp.Entries = append(resp.Entries, digestEntryPB(&dir.Entries[i]))
	}
	resp.More = i < len(dir.Entries)
	return resp, nil
}

func digestEntryPB(e *digest.Entry) *pb.DigestEntry {
	return &pb.DigestEntry{
		Name: []byte(e.Name), Mode: e.Mode, Uid: e.UID, Gid: e.GID, Size: e.Size, MtimeNs: e.MtimeNS, Rdev: e.Rdev,
		Target: []byte(e.Target), Content: e.Content[:], Xattrs: e.Xattrs[:], LinkKey: []byte(e.LinkKey), Sub: e.Sub[:],
	}
}

// closeDigests cancels the pass and waits for it (Close).
func (s *Slave) closeDigests() {
	d := &s.digests
	d.mu.Lock()
	d.done = true
	if d.cur != nil {
		d.cur.cancel()
	}
	d.mu.Unlock()
	d.wg.Wait()
}
