// Package master is the master side of a georep session: it finds what
// changed in the master tree (an xsync crawl here; the changelog later),
// turns it into batches, and applies each batch to the slave in order:
// entry ops, then data through the syncer's PostBoxes, then metadata, and
// only when all of that succeeded advances the marks, so that the marks
// never claim more than the slave really has.
package master

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/atomicfile"
	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/bulkconn"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/marks"
	"github.com/georep/georep/internal/monitor"
	"github.com/georep/georep/internal/mtree"
	"github.com/georep/georep/internal/rootid"
	"github.com/georep/georep/internal/rules"
	"github.com/georep/georep/internal/syncstatus"
	"github.com/georep/georep/internal/tlsconf"
	"github.com/georep/georep/internal/wire"
	"github.com/georep/georep/master/batch"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/syncer"
)

// Defaults, with their reasons.
const (
	// DefaultSyncJobs is the number of data workers: gsyncd's default,
	// enough to keep a link busy while one worker reads files.
	DefaultSyncJobs = 3
	// DefaultRetries is how many times a failed batch is retried in a
	// one-shot run before giving up (a live session never gives up).
	DefaultRetries = 3
	// DefaultMaxBackoff caps the back-off of a live session: a slave
	// that comes back is used within half a minute, and a persistent
	// fault costs two attempts a minute.
	DefaultMaxBackoff = 30 * time.Second
	// connectAttempts bounds the handshake retries when the slave is not
	// reachable: about 6 seconds in all.
	connectAttempts = 6
)

// Config configures a Master.
type Config struct {
	Root     string
	Slave    string // host:port
	StateDir string
	SyncJobs int
	// IgnoreDeletes keeps on the slave what the master deleted.
	IgnoreDeletes bool
	// Compress sends file data zstd-compressed where that is smaller.
	Compress bool
	// BWLimit caps the file data sent, in bytes per second (0: no cap),
	// unless Limiter is set.
	BWLimit int64
	// Limiter, when set, paces the file data sent (its limit may change
	// while the master runs: package bwsched).
	Limiter *rate.Limiter
	// NoDataConn keeps all file data on the gRPC data streams: no data
	// connection beside them (internal/bulkconn) for large files' bytes.
	NoDataConn bool
	// TLS secures the link (mutual TLS: see internal/tlsconf). Without
	// it the link is plaintext, which needs Insecure and a loopback
	// slave address.
	TLS      *tls.Config
	Insecure bool
	Retries  int
	Logger   hclog.Logger
	// ChangeInterval is the longest a change waits in the recorder's open
	// segment (live mode; default recorder.DefaultInterval).
	ChangeInterval time.Duration
	// BatchSize is the most journal segments one live batch takes
	// (default DefaultBatchSize).
	BatchSize int
	// Watcher is the recorder's event source (recorder.WatchAuto,
	// WatchFanotify, WatchInotify; "" is auto).
	Watcher string
	// Status is told what the session does (nil: nobody listens).
	Status *syncstatus.Tracker
	// MaxBackoff caps the wait before a failed live batch is tried again
	// and before the monitor restarts a faulty worker (default
	// DefaultMaxBackoff).
	MaxBackoff time.Duration
	// What is replicated (see package rules and RulesFile): the patterns
	// of the root's RulesFile, then those of the ExcludeFrom files, then
	// Excludes ("!pattern" includes again), the last match deciding.
	ExcludeFrom []string
	Excludes    []string
	// DeleteExcluded removes from the slave what the rules leave out
	// (else the slave's copies of newly excluded entries stay).
	DeleteExcluded bool
	// Checksum: a crawl compares every file's content with the slave's
	// copy (a delta), taking none for current by its size and mtime.
	Checksum bool
	// ComparePaths are files (paths from the root) a crawl compares by
	// content: georep verify --repair's.
	ComparePaths map[string]bool
	// ScrubEvery, when set, has a live master verify its slave by content
	// this often (see scrub.go), reading at most ScrubRate bytes a second
	// on each end (0: no limit); ScrubReportOnly reports what differs
	// without repairing it; ScrubQuick trusts the hashes of files unchanged
	// since the last scrub.
	ScrubEvery      time.Duration
	ScrubRate       int64
	ScrubReportOnly bool
	ScrubQuick      bool
	// Hub, when set, is the recorder, journal and gfid index this live
	// session shares with the other sessions of its root in the process
	// (NewHub, with the same root).
	Hub *Hub
}

// RulesFile is the optional rules file in the master root: gitignore-style
// patterns of what is not replicated. It is replicated itself.
const RulesFile = ".georepignore"

// Master runs one session.
type Master struct {
	cfg   Config
	log   hclog.Logger
	tree  *mtree.Source
	marks *marks.Store

	closeOnce sync.Once
	closeErr  error

	sess   sessionState
	sessMu sync.Mutex // held while sess is written (see updateSession)
	ctl    control    // pause, resume, stop and new settings (control.go)
	// rules say what is replicated (nil: everything).
	rules  *rules.Rules
	conn   *grpc.ClientConn
	client pb.SlaveServiceClient
	// token is what every call of the open session carries: the slave
	// answers a new one at each handshake (see connect).
	token    []byte
	volumeID []byte

	prog progress // live mode's marks, for WaitSynced

	// shared is what its batches share (see batch.Shared).
	shared batch.Shared
	// indexDamaged: the gfid index was found damaged (by the recorder or
	// the worker); the next recording pipeline rebuilds it.
	indexDamaged atomic.Bool
	// phaseNow is what the running batch does (a string), for status and
	// for the log of a batch that runs long.
	phaseNow atomic.Value
	// hook, set by tests before Run, is called at each batch's hook points
	// (batch.Config.Hook): the live path's deterministic harness changes
	// the tree there.
	hook func(ctx context.Context, k batch.Kind, at batch.Point) error
	// walkHook, set by tests before Run, is called by a live crawl
	// before it lists each directory (its path relative to the root).
	walkHook func(path string)
}

// phase says what the running batch now does ("" when it ended).
func (m *Master) phase(what string) {
	m.phaseNow.Store(what)
	m.cfg.Status.BatchPhase(what)
}

// longBatch is how long a batch runs before the log says, every as long
// again, what it is doing.
const longBatch = 5 * time.Second

// watchBatch logs, every longBatch while the batch (what) runs, what it
// is doing; the returned function stops it (call it when the batch ends).
func (m *Master) watchBatch(what string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	t0 := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(longBatch)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				phase, _ := m.phaseNow.Load().(string)
				m.log.Info(what+" still running", "phase", phase, "for", time.Since(t0).Round(time.Second))
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		m.phase("")
	}
}

// sessionState is persisted in the state directory.
type sessionState struct {
	SessionID     string `json:"session_id"`
	Slave         string `json:"slave"`
	SlaveVolumeID string `json:"slave_volume_id,omitempty"`
	// Rules is what the last complete crawl replicated by (see
	// rulesState): other rules now call for a crawl.
	Rules string `json:"rules,omitempty"`
	// Paused: `georep pause` stopped the shipping; a restart stays
	// paused until `georep resume`.
	Paused bool `json:"paused,omitempty"`
}

// Summary is the outcome of a one-shot run.
type Summary struct {
	Crawl    CrawlStats
	Batch    batch.Stats
	Stime    time.Time
	Duration time.Duration
}

// New checks the root and the state directory and opens the gfid index.
func New(cfg Config) (*Master, error) {
	if cfg.SyncJobs <= 0 {
		cfg.SyncJobs = DefaultSyncJobs
	}
	if cfg.Retries <= 0 {
		cfg.Retries = DefaultRetries
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if cfg.TLS == nil {
		if err := tlsconf.CheckPlaintext(cfg.Slave, cfg.Insecure); err != nil {
			return nil, fmt.Errorf("master: slave %s: %w", cfg.Slave, err)
		}
	}
	abs, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("master root %s: %w", cfg.Root, err)
	}
	cfg.Root = abs
	st, err := os.Stat(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("master root: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("master root %s is not a directory", cfg.Root)
	}
	root, err := beneath.Open(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("master root: %w", err)
	}
	if _, err := listDir(root.FD()); err != nil {
		root.Close()
		return nil, fmt.Errorf("master root %s is not readable: %w", cfg.Root, err)
	}
	if err := atomicfile.PrivateDir(cfg.StateDir); err != nil {
		root.Close()
		return nil, fmt.Errorf("master state dir: %w", err)
	}
	ns := gfid.DefaultNamespace()
	if h := cfg.Hub; h != nil {
		root.Close()
		if h.Root() != cfg.Root {
			return nil, fmt.Errorf("master: the shared recorder is of %s, not of this session's root %s", h.Root(), cfg.Root)
		}
		return newMaster(cfg, log, h.tree)
	}
	idxPath := filepath.Join(cfg.StateDir, "gfid.db")
	idx, err := gfidx.Open(idxPath)
	if err != nil && !errors.Is(err, gfidx.ErrInUse) {
		// The index is a cache of the tree's gfid xattrs, and every start
		// of the process crawls the tree (which refills it): a damaged
		// one is rebuilt, never trusted.
		log.Warn("gfid index unreadable; rebuilding it from the tree", "path", idxPath, "error", err)
		if rerr := gfidx.Remove(idxPath); rerr != nil {
			root.Close()
			return nil, fmt.Errorf("master: %w", rerr)
		}
		idx, err = gfidx.Open(idxPath)
	}
	if err != nil {
		root.Close()
		return nil, err
	}
	return newMaster(cfg, log, &mtree.Tree{Root: root, NS: ns, Idx: idx})
}

// newMaster is New's end, with the tree open (root and index: the
// session's own, or its Hub's).
func newMaster(cfg Config, log hclog.Logger, tree *mtree.Tree) (*Master, error) {
	m := &Master{cfg: cfg, log: log, tree: &mtree.Source{Tree: tree}}
	root, ns := tree.Root, tree.NS
	var err error
	if m.rules, err = loadRules(root, cfg); err != nil {
		m.Close()
		return nil, err
	}
	if m.rules.Len() > 0 {
		log.Info("replication rules", "patterns", m.rules.Len(), "delete_excluded", cfg.DeleteExcluded)
	}
	m.marks = marks.NewStore(cfg.Root, ns, filepath.Join(cfg.StateDir, "marks.json"))
	if m.volumeID, err = m.marks.VolumeID(true); err != nil {
		m.Close()
		return nil, err
	}
	if err := m.loadSession(); err != nil {
		m.Close()
		return nil, err
	}
	cfg.Status.SetIdentity(m.identity())
	m.ctl.cur = settingsOf(m.cfg)
	if m.sess.Paused {
		m.ctl.paused = true
		cfg.Status.SetPaused(true)
		log.Info("the session is paused (georep resume ships again)")
	}
	return m, nil
}

// Close releases everything; calling it again is harmless.
func (m *Master) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.close() })
	return m.closeErr
}

func (m *Master) close() error {
	var errs []error
	if m.conn != nil {
		errs = append(errs, m.conn.Close())
	}
	m.tree.ResetDirs()
	if m.cfg.Hub != nil {
		m.cfg.Hub.leave(m) // the index and root are the hub's
		return errors.Join(errs...)
	}
	if m.tree.Idx != nil {
		errs = append(errs, m.tree.Idx.Sync(), m.tree.Idx.Close())
	}
	errs = append(errs, m.tree.Root.Close())
	return errors.Join(errs...)
}

func (m *Master) sessionFile() string { return filepath.Join(m.cfg.StateDir, "session.json") }

func (m *Master) loadSession() error {
	data, err := os.ReadFile(m.sessionFile())
	if err == nil {
		if err := json.Unmarshal(data, &m.sess); err != nil {
			return fmt.Errorf("session file %s is corrupt (%v); remove it to start a new session (a full crawl)", m.sessionFile(), err)
		}
		if b, err := hex.DecodeString(m.sess.SessionID); err != nil || len(b) != 16 {
			return fmt.Errorf("session file %s holds a malformed session id", m.sessionFile())
		}
		if m.sess.Slave != m.cfg.Slave {
			m.log.Info("slave address changed since the last run", "was", m.sess.Slave, "now", m.cfg.Slave)
			m.sess.Slave = m.cfg.Slave
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reading session file: %w", err)
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return fmt.Errorf("session id: %w", err)
	}
	m.sess = sessionState{SessionID: hex.EncodeToString(id), Slave: m.cfg.Slave}
	return m.saveSession()
}

// updateSession changes the persisted session state: the worker and the
// status socket's control ops (pause) both do.
func (m *Master) updateSession(fn func(s *sessionState)) error {
	m.sessMu.Lock()
	defer m.sessMu.Unlock()
	fn(&m.sess)
	return m.saveSessionLocked()
}

func (m *Master) saveSession() error {
	m.sessMu.Lock()
	defer m.sessMu.Unlock()
	return m.saveSessionLocked()
}

func (m *Master) saveSessionLocked() error {
	data, err := json.MarshalIndent(m.sess, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(m.sessionFile(), append(data, '\n'), 0o600)
}

func (m *Master) sessionID() []byte {
	b, _ := hex.DecodeString(m.sess.SessionID)
	return b
}

// dataConnTimeout bounds opening a data connection (TCP, TLS, hello);
// until it is up, or if it fails, the data goes on the stream.
const dataConnTimeout = 10 * time.Second

// ErrUnreachable says the slave could not be reached.
var ErrUnreachable = errors.New("slave unreachable")

// connect dials the slave and opens the session, retrying a few times.
func (m *Master) connect(ctx context.Context) (*pb.HandshakeResponse, error) {
	creds := insecure.NewCredentials()
	if m.cfg.TLS != nil {
		creds = credentials.NewTLS(m.cfg.TLS)
	} else if err := tlsconf.CheckPlaintext(m.cfg.Slave, m.cfg.Insecure); err != nil {
		return nil, err // New checked it already
	}
	conn, err := grpc.NewClient(m.cfg.Slave, append(wire.DialOptions(), grpc.WithTransportCredentials(creds))...)
	if err != nil {
		return nil, &monitor.Fatal{Err: fmt.Errorf("slave %s: %w", m.cfg.Slave, err)}
	}
	if m.conn != nil {
		m.conn.Close() // a worker's earlier connection
	}
	m.conn = conn
	m.client = pb.NewSlaveServiceClient(conn)
	host, _ := os.Hostname()
	req := &pb.HandshakeRequest{
		ProtocolVersion: wire.ProtocolVersion, SessionId: m.sessionID(),
		MasterVolumeId: m.volumeID, MasterHost: host, MasterRoot: m.cfg.Root,
	}
	if id, err := rootid.Of(m.tree.Root.FD()); err == nil {
		req.BootId, req.RootDev, req.RootIno = id.Boot, id.Dev, id.Ino
	}
	delay := 200 * time.Millisecond
	var last error
	for attempt := 1; attempt <= connectAttempts; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := m.client.Handshake(cctx, req, grpc.WaitForReady(false))
		cancel()
		if err == nil {
			if len(resp.GetSessionToken()) == 0 {
				return nil, &monitor.Fatal{Err: fmt.Errorf("slave %s answered the handshake without a session token", m.cfg.Slave)}
			}
			m.token = resp.GetSessionToken()
			if err := m.checkNotNested(ctx, resp); err != nil {
				return nil, err
			}
			return resp, nil
		}
		last = err
		if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
			err := fmt.Errorf("slave %s refused the session: %s", m.cfg.Slave, status.Convert(err).Message())
			switch c {
			case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented:
				// A configuration the slave will refuse every time.
				return nil, &monitor.Fatal{Err: err}
			}
			return nil, err // e.g. held by another master until its lease ends
		}
		if m.cfg.TLS != nil && !isTLSFailure(err) {
			// A slave that refuses our certificate sends an alert after
			// TLS 1.3's handshake, and closes; gRPC may be writing then
			// and see only a broken pipe or a reset. A plain TLS dial
			// that waits for the slave's first bytes reads the alert.
			if perr := probeTLS(ctx, m.cfg.Slave, m.cfg.TLS); perr != nil && isTLSFailure(perr) {
				err = perr
			}
		}
		if m.cfg.TLS != nil && notTLS(err) {
			// Not a certificate problem: nothing at that address speaks
			// TLS (issue 18.12: this was blamed on the certificates).
			return nil, &monitor.Fatal{Err: fmt.Errorf("%w: %s does not speak TLS: it is not a georep slave, or one serving plaintext (--insecure): %s",
				ErrTLS, m.cfg.Slave, status.Convert(err).Message())}
		}
		if m.cfg.TLS != nil && isTLSFailure(err) {
			// Retrying cannot help: the certificates do not fit.
			return nil, &monitor.Fatal{Err: fmt.Errorf("%w with slave %s (whose certificate must be named %q): %s; check --ca/--cert/--key, --slave-name, and the slave's --allow-master",
				ErrTLS, m.cfg.Slave, m.cfg.TLS.ServerName, status.Convert(err).Message())}
		}
		m.log.Debug("slave not reachable yet", "attempt", attempt, "error", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
	hint := ""
	if m.cfg.TLS == nil {
		hint = " (a slave serving TLS drops plaintext connections like this)"
	}
	return nil, fmt.Errorf("%w: %s after %d attempts: %s%s", ErrUnreachable, m.cfg.Slave, connectAttempts, status.Convert(last).Message(), hint)
}

// checkNotNested refuses a slave whose root contains the master's (the
// slave refuses the other way round, and the same root): a tree
// replicated into itself feeds on its own writes. The session the
// handshake opened is ended.
func (m *Master) checkNotNested(ctx context.Context, resp *pb.HandshakeResponse) error {
	if len(resp.GetBootId()) == 0 {
		return nil
	}
	in, err := rootid.Within(m.tree.Root.FD(), rootid.ID{Boot: resp.GetBootId(), Dev: resp.GetRootDev(), Ino: resp.GetRootIno()})
	if err != nil || !in {
		return err
	}
	ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m.client.EndSession(ectx, &pb.EndSessionRequest{SessionToken: m.token})
	return &monitor.Fatal{Err: fmt.Errorf("the slave's root %s contains this master's root %s: a tree cannot be replicated into itself", resp.GetSlaveRoot(), m.cfg.Root)}
}

// ErrTLS says the TLS handshake with the slave failed: one side's
// certificate did not verify, or the slave does not admit this master.
var ErrTLS = errors.New("TLS handshake failed")

// isTLSFailure reports whether a failed call failed in the TLS handshake.
// gRPC reports those as Unavailable, like a slave that is not up yet; only
// the message tells them apart: the client's own verification failing
// ("authentication handshake failed: tls: ... x509: ..."), or the slave
// refusing this master's certificate with an alert ("remote error: tls:
// ...").
func isTLSFailure(err error) bool {
	msg := status.Convert(err).Message()
	return strings.Contains(msg, "authentication handshake failed") || strings.Contains(msg, "remote error: tls:")
}

// notTLS reports whether a call failed because the server answered the TLS
// handshake with something else (an HTTP or SSH server, a plaintext
// slave).
func notTLS(err error) bool {
	msg := status.Convert(err).Message()
	return strings.Contains(msg, "first record does not look like a TLS handshake") || strings.Contains(msg, "tls: oversized record received")
}

// probeTLS dials addr with cfg (and gRPC's ALPN protocol), completes the
// handshake and waits up to 2 s for the slave's first bytes: nil when
// they come (the slave took the certificate), else the error, which names
// the slave's alert when it refused it.
func probeTLS(ctx context.Context, addr string, cfg *tls.Config) error {
	c := cfg.Clone()
	c.NextProtos = []string{"h2"}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 3 * time.Second}, Config: c}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	var b [1]byte
	_, err = conn.Read(b[:])
	return err
}

// keepAlive renews the session lease every lease/3 until ctx is done. It
// ends the session through fail when the slave says it no longer holds
// it (it restarted, or dropped this master), or when it has been silent
// so long that the next try would come after its lease ran out: a silent
// slave is detected within the slave's timeout.
func (m *Master) keepAlive(ctx context.Context, lease time.Duration, fail func(error)) {
	every := max(lease/3, 100*time.Millisecond)
	last := time.Now()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, every)
		_, err := m.client.KeepAlive(cctx, &pb.KeepAliveRequest{SessionToken: m.token})
		cancel()
		if err == nil {
			last = time.Now()
			continue
		}
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("keep-alive failed", "error", err)
		if status.Code(err) == codes.FailedPrecondition {
			fail(fmt.Errorf("the slave dropped the session: %s", status.Convert(err).Message()))
			return
		}
		if silent := time.Since(last); silent+every > lease {
			fail(fmt.Errorf("slave silent for %s, its lease is %s (keep-alive: %v)", silent.Round(time.Millisecond), lease, err))
			return
		}
	}
}

// link is an open session with the slave: keep-alive and data workers
// running until close.
type link struct {
	ctx   context.Context // cancelled when the session is lost
	syn   *syncer.Syncer[*syncer.File]
	close func()
}

// open handshakes, starts the keep-alive and the syncer's workers.
func (m *Master) open(ctx context.Context) (*link, error) {
	hs, err := m.connect(ctx)
	if err != nil {
		return nil, err
	}
	if vid := hex.EncodeToString(hs.GetSlaveVolumeId()); vid != m.sess.SlaveVolumeID {
		if m.sess.SlaveVolumeID != "" {
			m.log.Warn("the slave tree is not the one this session synced before (its volume id changed); syncing it from scratch",
				"was", m.sess.SlaveVolumeID, "now", vid)
		}
		if err := m.updateSession(func(s *sessionState) { s.SlaveVolumeID = vid }); err != nil {
			return nil, err
		}
	}
	m.log.Info("session open", "slave", m.cfg.Slave, "slave_root", hs.GetSlaveRoot(), "privileged_slave", hs.GetPrivileged())
	privileged := os.Geteuid() == 0
	m.tree.SetPrivileged(privileged && hs.GetPrivileged())
	m.shared.SlaveEmpty.Store(hs.GetEmpty())
	if privileged && !hs.GetPrivileged() {
		m.log.Warn("the slave runs unprivileged: owners it may not set are reported per entry (applied in part), " +
			"trusted.* and security.* xattrs are not replicated, and device nodes are not made there (each is left out with a warning, and counted)")
	}
	m.cfg.Status.SetIdentity(m.identity())
	m.cfg.Status.SessionOpen()

	lctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.keepAlive(lctx, time.Duration(hs.GetLeaseMs())*time.Millisecond, func(err error) { cancel(err) })
	}()
	sender := &syncer.Sender{Client: m.client, Token: m.token, Source: m.tree, Compress: m.cfg.Compress, Log: m.log}
	if !m.cfg.NoDataConn {
		slaveAddr, tlsCfg := m.cfg.Slave, m.cfg.TLS
		sender.Bulk = func(ctx context.Context, tok bulkconn.Token) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, dataConnTimeout)
			defer cancel()
			return bulkconn.Dial(ctx, slaveAddr, tlsCfg, tok)
		}
	}
	switch {
	case m.cfg.Limiter != nil:
		sender.Limit = m.cfg.Limiter
	case m.cfg.BWLimit > 0:
		// A burst of one chunk: pacing is smooth at the scale of a chunk.
		sender.Limit = rate.NewLimiter(rate.Limit(m.cfg.BWLimit), 256<<10)
	}
	syn := syncer.New(m.cfg.SyncJobs, sender.Ship)
	wg.Add(1)
	go func() {
		defer wg.Done()
		syn.Run(lctx)
	}()
	return &link{ctx: lctx, syn: syn, close: func() {
		failed := lctx.Err() != nil && !errors.Is(context.Cause(lctx), context.Canceled)
		cancel(nil)
		wg.Wait()
		sender.Close() // idle data connections
		// Release the slave root for the next session (best effort: the
		// lease expires anyway), unless the session failed: then the slave
		// dropped it or does not answer.
		if !failed {
			cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer ccancel()
			if _, err := m.client.EndSession(cctx, &pb.EndSessionRequest{SessionToken: m.token}); err != nil {
				m.log.Debug("ending the session", "error", err)
			}
		}
		m.conn.Close()
		m.conn = nil
	}}, nil
}

// batchConfig is what the batches of the session l work with; sync waits
// for the recorder (nil: none runs).
func (m *Master) batchConfig(l *link, k batch.Kind, sync func(context.Context) error) batch.Config {
	c := batch.Config{
		Tree: m.tree, Client: m.client, Token: m.token, Syncer: l.syn, Shared: &m.shared,
		IgnoreDeletes: m.cfg.IgnoreDeletes, SyncRecorder: sync, Status: m.cfg.Status, Phase: m.phase,
		Rules: m.rules, DeleteExcluded: m.cfg.DeleteExcluded, Checksum: m.cfg.Checksum, ComparePaths: m.cfg.ComparePaths,
		Log: m.log,
	}
	if h := m.hook; h != nil {
		c.Hook = func(ctx context.Context, at batch.Point) error { return h(ctx, k, at) }
	}
	return c
}

// RunOnce does one xsync crawl of the whole tree, applies it to the slave,
// and advances the marks: `georep master --oneshot`.
func (m *Master) RunOnce(ctx context.Context) (*Summary, error) {
	t0 := time.Now()
	l, err := m.open(ctx)
	if err != nil {
		return nil, err
	}
	defer l.close()
	ctx = l.ctx
	defer m.phase("")

	sum := &Summary{}
	var lastErr error
	for attempt := 1; attempt <= m.cfg.Retries; attempt++ {
		if attempt > 1 {
			m.log.Warn("batch incomplete, retrying it whole", "attempt", attempt, "error", lastErr)
			select {
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			case <-time.After(time.Duration(attempt-1) * 500 * time.Millisecond):
			}
		}
		stime := time.Now()
		var stats batch.Stats
		crawl, crawlErr, err := m.crawlInto(ctx, l, &stats)
		if crawlErr != nil {
			return nil, crawlErr
		}
		sum.Crawl = crawl
		m.cfg.Status.BatchEnded(time.Since(stime), err)
		sum.Batch.Add(stats)
		if err == nil {
			if err := m.advance(ctx, stime); err != nil {
				return nil, err
			}
			if err := m.rulesSynced(); err != nil {
				return nil, err
			}
			sum.Stime = stime
			sum.Duration = time.Since(t0)
			return sum, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%v)", context.Cause(ctx), err)
		}
		lastErr = err
		var opErr *batch.OpError
		if !errors.As(err, &opErr) && status.Code(err) == codes.FailedPrecondition {
			return nil, err
		}
	}
	return nil, fmt.Errorf("sync incomplete after %d attempts: %w", m.cfg.Retries, lastErr)
}

// crawl crawls the whole tree beside the recorder (recorderSync waits
// until it has indexed every change made so far) into a journal, and
// returns its path: the crawl adds what it finds to the index the
// recorder keeps, and drops the names it no longer finds.
func (m *Master) crawl(stime time.Time, recorderSync func() error) (CrawlStats, string, error) {
	x := m.liveXsync(recorderSync)
	m.cfg.Status.CrawlStarted(syncstatus.HybridCrawl)
	t0 := time.Now()
	path, err := m.crawlJournal(stime, "XSYNC-CHANGELOG.", x, x.crawlRoot)
	if err != nil {
		return CrawlStats{}, "", err
	}
	m.cfg.Status.CrawlListed()
	m.log.Info("xsync crawl done", "dirs", x.stats.Dirs, "files", x.stats.Files, "bytes", x.stats.Bytes,
		"symlinks", x.stats.Symlinks, "others", x.stats.Others, "took", time.Since(t0))
	return x.stats, path, nil
}

// liveXsync is a crawl beside the recorder (see xsync.live).
func (m *Master) liveXsync(recorderSync func() error) *xsync {
	return &xsync{t: m.tree, log: m.log, hard: map[gfid.GFID]uint64{}, pending: map[gfid.GFID]uint64{}, live: true, sync: recorderSync, st: m.cfg.Status, rules: m.rules, beforeList: m.walkHook}
}

// crawlJournal runs walk (a crawl by x) into a new XSYNC journal in the
// state dir and returns its path. The journal is not synced: it is read
// once by the processor and removed, and after a crash the crawl runs
// again.
func (m *Master) crawlJournal(stime time.Time, prefix string, x *xsync, walk func() error) (string, error) {
	dir := filepath.Join(m.cfg.StateDir, "xsync")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("xsync dir: %w", err)
	}
	path := filepath.Join(dir, prefix+strconv.FormatInt(stime.UnixNano(), 10))
	w, err := changelog.Create(path, changelog.Header{Type: changelog.TypeXsync, StartNS: stime.UnixNano()})
	if err != nil {
		return "", err
	}
	x.w = w
	if err := walk(); err != nil {
		w.Abort()
		return "", err
	}
	if err := w.CommitVolatile(); err != nil {
		return "", err
	}
	return path, nil
}

// crawlDirs writes an XSYNC journal of directories dirs alone (not what
// is below them), and of directories deep with everything below them,
// beside the recorder: what reconciles the slave's copies of the
// directories a changelog batch touched with the master's now.
func (m *Master) crawlDirs(stime time.Time, dirs, deep []gfid.GFID, recorderSync func() error) (string, error) {
	x := m.liveXsync(recorderSync)
	x.visited = map[gfid.GFID]bool{}
	return m.crawlJournal(stime, "XSYNC-DIRS.", x, func() error {
		// Directories the slave lacked: what they hold, all the way down
		// (outermost first: a nested one is listed by its ancestor's
		// crawl, once).
		if err := x.crawlDirs(m.parentsFirst(deep)); err != nil {
			return err
		}
		// Then the others, alone, unless listed already.
		x.shallow = true
		return x.crawlDirs(dirs)
	})
}

// advance records that the slave has everything up to stime: first on the
// slave (which makes its tree durable first), then the session's stime and
// entry stime on the master root.
func (m *Master) advance(ctx context.Context, stime time.Time) error {
	ns := stime.UnixNano()
	t0 := time.Now()
	if _, err := m.client.SetMark(ctx, &pb.SetMarkRequest{SessionToken: m.token, StimeNs: ns}); err != nil {
		return fmt.Errorf("setting the slave mark: %w", err)
	}
	m.log.Debug("slave mark set", "stime", stime, "took", time.Since(t0))
	// Never back: a later batch's entry ops may be applied already.
	if err := m.setEntryStime(stime); err != nil {
		return err
	}
	if err := m.marks.SetTime(marks.Stime(m.sessionID()), ns); err != nil {
		return err
	}
	if err := m.tree.Idx.Sync(); err != nil {
		return err
	}
	if err := unix.Fsync(m.tree.Root.FD()); err != nil {
		return err
	}
	m.cfg.Status.Synced(stime)
	return nil
}

// Stime returns the session's stime on the master root (zero if none).
func (m *Master) Stime() (time.Time, error) { return m.timeMark(marks.Stime(m.sessionID())) }

// EntryStime returns the session's entry stime on the master root (zero
// if none): the slave has every entry op recorded before it, and at least
// the stime. A live batch whose entry ops were applied before its data
// failed sets it to the batch's end, so that its retry does not replay
// them.
func (m *Master) EntryStime() (time.Time, error) { return m.timeMark(marks.EntryStime(m.sessionID())) }

// changedSince is when the slave last held every change (see
// batch.CrawlOptions), for a live crawl: the stime (zero: none, or
// unreadable); before there is one,
// when the session's first live crawl had listed the tree (a crawl killed
// half-way left copies that may have changed since), which it notes now
// if no crawl got that far before. Called once the crawl has listed the
// tree. (A one-shot is rsync's quick check, size and mtime. The gfids a
// one-shot or a killed master wrote are newer than their stime: the batch
// tells those writes from changes by the gfid's own time.)
func (m *Master) changedSince(stime time.Time) (batch.CrawlOptions, error) {
	if !stime.IsZero() {
		return batch.CrawlOptions{ChangedSince: stime}, nil
	}
	k := marks.CrawlStart(m.sessionID())
	t0, err := m.timeMark(k)
	if err == nil && !t0.IsZero() {
		return batch.CrawlOptions{ChangedSince: t0}, nil
	}
	if err != nil {
		m.log.Warn("the first crawl's mark is unreadable; writing it again", "error", err)
	}
	return batch.CrawlOptions{}, m.marks.SetTime(k, time.Now().UnixNano())
}

func (m *Master) timeMark(k marks.Key) (time.Time, error) {
	ns, err := m.marks.GetTime(k)
	if errors.Is(err, marks.ErrNoMark) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, ns), nil
}

// setEntryStime moves the entry stime forward to t (never back).
func (m *Master) setEntryStime(t time.Time) error {
	if es, err := m.EntryStime(); err == nil && !es.Before(t) {
		return nil
	}
	return m.marks.SetTime(marks.EntryStime(m.sessionID()), t.UnixNano())
}
