// Package slave is the slave agent: a gRPC service that applies a master's
// entry ops, metadata ops and file data beneath one directory (the slave
// root), keyed by gfid, and keeps the session's mark on that root.
//
// Every file access goes through internal/beneath, so no request can reach
// outside the root or through a symlink. Every op is idempotent: a master
// that retries a batch after a failure or a crash does no harm.
package slave

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/georep/georep/internal/atomicfile"
	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/bulkconn"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/gfidx"
	"github.com/georep/georep/internal/marks"
	"github.com/georep/georep/internal/rootid"
	"github.com/georep/georep/internal/tlsconf"
	"github.com/georep/georep/internal/wire"
	pb "github.com/georep/georep/proto/georep/v1"
)

// DefaultLease is how long a session lives without any call from its
// master. The master sends keep-alives at a third of it.
const DefaultLease = 60 * time.Second

// Config configures a Slave.
type Config struct {
	Root     string
	StateDir string
	Lease    time.Duration // 0 = DefaultLease
	Logger   hclog.Logger  // nil = discard
	// Now is the clock, for tests; nil = time.Now.
	Now func() time.Time
	// Trash keeps what replicated deletes and overwrites would destroy
	// (off by default; see TrashConfig).
	Trash TrashConfig
}

// Slave applies one master's changes beneath its root.
type Slave struct {
	pb.UnimplementedSlaveServiceServer

	cfg        Config
	log        hclog.Logger
	tree       *tree
	marks      *marks.Store
	volumeID   []byte
	rootID     rootid.ID // where the root is (see Handshake)
	privileged bool
	// canMknod: the slave may make device nodes: it has CAP_MKNOD (which
	// the root of many containers lacks), and no mknod of a device was
	// refused yet (a device cgroup refuses them with the capability).
	canMknod atomic.Bool

	closeOnce sync.Once
	closeErr  error

	// nsLock orders namespace changes (EntryOps, one index transaction of
	// ops at a time, and SetMark's limbo sweep: writers) against data
	// streams and metadata ops (readers), so that a data stream never sees
	// a half-applied transaction of entry ops.
	nsLock sync.RWMutex

	// gen counts namespace changes (EntryOps, SetMark); data streams drop
	// their cached directory descriptors when it moves.
	gen atomic.Uint64

	// dirTimes keeps the times of directories while files are staged in
	// them (see stageDir).
	dirTimes dirTimes

	// digests is georep verify's pass (digest.go).
	digests digestPasses

	// closers are the goroutines closing replaced big files' old copies
	// (see incoming.close); Close waits for them.
	closers sync.WaitGroup

	// unflushed counts the bytes data streams wrote since writeback last
	// ran; flushKick wakes it.
	unflushed atomic.Int64
	flushKick chan struct{}

	// bulk holds the data connections that arrived on the listener until
	// their streams claim them (see internal/bulkconn); Serve closes it.
	bulk *bulkconn.Registry

	mu sync.Mutex // guards the fields below
	// The open session: its id (stable across the master's restarts; it
	// names the marks), the token of the handshake that opened it (what
	// every call carries), and the fingerprint of the TLS certificate of
	// the master that opened it ("" on a plaintext link).
	session  []byte
	token    []byte
	peer     string
	holder   string // who opened the session: identity, host and root
	lastSeen time.Time
	dirty    bool // the index changed since it was last marked clean
}

// New opens the slave root and state, checks that the root is a georep
// slave root (or makes it one), and rebuilds the gfid index if it was not
// closed cleanly.
func New(cfg Config) (_ *Slave, err error) {
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	abs, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("slave: root %s: %w", cfg.Root, err)
	}
	cfg.Root = abs
	if st, err := os.Stat(cfg.Root); err != nil {
		return nil, fmt.Errorf("slave: root: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("slave: root %s is not a directory", cfg.Root)
	}
	_, serr := os.Stat(cfg.StateDir)
	madeState := errors.Is(serr, fs.ErrNotExist)
	if err := atomicfile.PrivateDir(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("slave: state dir: %w", err)
	}
	defer func() {
		// A start that failed leaves no state dir it made (issue 18.12).
		if madeState && err != nil {
			os.RemoveAll(cfg.StateDir)
		}
	}()
	s := &Slave{cfg: cfg, log: log, privileged: os.Geteuid() == 0, flushKick: make(chan struct{}, 1),
		bulk: bulkconn.NewRegistry(log)}
	s.canMknod.Store(s.privileged && hasCap(unix.CAP_MKNOD))
	ns := gfid.NewNamespace(s.privileged)
	root, err := beneath.Open(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("slave: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	s.tree = &tree{root: root, ns: ns, unprivileged: !s.privileged}
	// One slave process per root: an exclusive lock on the root itself.
	if err := unix.Flock(root.FD(), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil, fmt.Errorf("slave: root %s is in use by another georep slave: %w", cfg.Root, err)
	}
	if err := s.claimRoot(); err != nil {
		return nil, err
	}
	if s.rootID, err = rootid.Of(root.FD()); err != nil {
		return nil, fmt.Errorf("slave: %w", err)
	}
	s.marks = marks.NewStore(cfg.Root, ns, filepath.Join(cfg.StateDir, "marks.json"))
	if s.volumeID, err = s.marks.VolumeID(true); err != nil {
		return nil, fmt.Errorf("slave: %w", err)
	}
	idxPath := filepath.Join(cfg.StateDir, "gfid.db")
	idx, err := gfidx.Open(idxPath)
	if err != nil {
		log.Warn("gfid index unreadable, rebuilding it", "path", idxPath, "error", err)
		if err := gfidx.Remove(idxPath); err != nil {
			return nil, fmt.Errorf("slave: %w", err)
		}
		if idx, err = gfidx.Open(idxPath); err != nil {
			return nil, fmt.Errorf("slave: %w", err)
		}
		if err := idx.SetClean(false); err != nil {
			return nil, fmt.Errorf("slave: %w", err)
		}
	}
	s.tree.idx = idx
	wasClean := idx.Clean()
	if err := s.reservedDirs(); err != nil {
		return nil, err
	}
	if cfg.Trash.Enabled {
		if s.tree.trash, err = newTrash(s); err != nil {
			return nil, err
		}
		keep, size := "none", "none"
		if cfg.Trash.Keep > 0 {
			keep = cfg.Trash.Keep.String()
		}
		if cfg.Trash.MaxSize > 0 {
			size = fmt.Sprintf("%d bytes", cfg.Trash.MaxSize)
		}
		log.Info("trash enabled: what deletes and overwrites remove is kept", "dir", TrashPath(cfg.Root),
			"age_limit", keep, "size_limit", size, "prune_every", s.tree.trash.cfg.PruneEvery)
	}
	if !wasClean {
		t0 := time.Now()
		n, missing, err := idx.Rebuild(cfg.Root, ns, nil, IsTempName)
		if err != nil {
			return nil, fmt.Errorf("slave: %w", err)
		}
		log.Info("rebuilt gfid index from the slave tree", "entries", n, "without_gfid", missing, "took", time.Since(t0))
		if err := idx.SetClean(true); err != nil {
			return nil, fmt.Errorf("slave: %w", err)
		}
	}
	ok = true
	return s, nil
}

// claimRoot gives the root its fixed gfid, or checks it has it.
func (s *Slave) claimRoot() error {
	g, err := s.tree.ns.FGet(s.tree.root.FD())
	switch {
	case errors.Is(err, gfid.ErrNoGFID):
		if err := s.tree.ns.FSet(s.tree.root.FD(), gfid.Root); err != nil {
			return fmt.Errorf("slave: marking root %s (the slave needs xattrs on its filesystem): %w", s.cfg.Root, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("slave: %w", err)
	case g != gfid.Root:
		return fmt.Errorf("slave: %s carries gfid %s: it is a directory inside a replicated tree, not a tree root", s.cfg.Root, g)
	}
	return nil
}

// reservedDirs makes wire.ReservedName and its limbo, and indexes them;
// and the trash, when it is on (never indexed: see trashDir).
func (s *Slave) reservedDirs() error {
	rootfd := s.tree.root.FD()
	mk := func(dirfd int, name string, g gfid.GFID) (int, error) {
		if err := unix.Mkdirat(dirfd, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, fmt.Errorf("slave: creating %s: %w", name, err)
		}
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, fmt.Errorf("slave: opening %s: %w", name, err)
		}
		if err := s.tree.ns.FSet(fd, g); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("slave: %w", err)
		}
		return fd, nil
	}
	rfd, err := mk(rootfd, wire.ReservedName, reservedGFID)
	if err != nil {
		return err
	}
	defer unix.Close(rfd)
	lfd, err := mk(rfd, limboName, limboGFID)
	if err != nil {
		return err
	}
	unix.Close(lfd)
	if err := s.trashDir(rfd); err != nil {
		return err
	}
	rl := gfidx.Link{Parent: gfid.Root, Name: wire.ReservedName}
	ll := gfidx.Link{Parent: reservedGFID, Name: limboName}
	have := false
	s.tree.idx.View(func(tx *gfidx.Tx) error {
		have = tx.HasLink(reservedGFID, rl) && tx.HasLink(limboGFID, ll)
		return nil
	})
	if have {
		return nil // writing them again would mark the index unclean
	}
	return s.tree.idx.Update(func(tx *gfidx.Tx) error {
		if err := tx.AddLink(reservedGFID, rl); err != nil {
			return err
		}
		return tx.AddLink(limboGFID, ll)
	})
}

// Close releases the root, the lock and the index (marking it clean when
// nothing is in flight). Calling it again is harmless.
func (s *Slave) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Slave) close() error {
	var errs []error
	s.closeDigests()
	s.bulk.Close()
	s.closers.Wait()
	if s.tree != nil && s.tree.idx != nil {
		s.nsLock.Lock()
		if err := s.tree.idx.Sync(); err == nil {
			errs = append(errs, s.tree.idx.SetClean(true))
		}
		errs = append(errs, s.tree.idx.Close())
		s.nsLock.Unlock()
	}
	if s.tree != nil && s.tree.root != nil {
		errs = append(errs, s.tree.root.Close())
	}
	return errors.Join(errs...)
}

// Privileged reports whether the slave may set owners and trusted xattrs.
func (s *Slave) Privileged() bool { return s.privileged }

func statusInvalid(msg string) error { return status.Error(codes.InvalidArgument, msg) }

// errStale answers a call whose session is no longer the open one.
var errStale = status.Error(codes.FailedPrecondition, "no open session with this token: handshake first (another handshake, EndSession or an expired lease ended it)")

// checkSession admits a call of the open session (by the token its
// handshake answered, from a connection with the certificate that opened
// it) and renews the session's lease.
func (s *Slave) checkSession(ctx context.Context, token []byte) error {
	if len(token) == 0 {
		return status.Error(codes.InvalidArgument, "missing session token")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == nil || !bytes.Equal(s.token, token) {
		return errStale
	}
	if s.peer != "" && peerFingerprint(ctx) != s.peer {
		return status.Error(codes.PermissionDenied, "a call of this session from another certificate than the one that opened it")
	}
	if s.cfg.Now().Sub(s.lastSeen) > s.cfg.Lease {
		s.endSession()
		return status.Error(codes.FailedPrecondition, "session lease expired: handshake again")
	}
	s.lastSeen = s.cfg.Now()
	return nil
}

// current says whether token is still the open session's. The steps that
// change the slave tree check it while they hold the namespace lock,
// which a handshake takes (once) after it opened a new session: a call of
// the session before (a killed master's data stream, a restarted worker's
// entry call) finishes the step it is in before the new session is
// answered, and changes nothing after. Without that fence, a dead
// master's last file could land over the one the new session had just
// sent, for good.
func (s *Slave) current(token []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == nil || !bytes.Equal(s.token, token) {
		return errStale
	}
	return nil
}

// endSession forgets the open session; s.mu is held.
func (s *Slave) endSession() { s.session, s.token, s.peer, s.holder = nil, nil, "", "" }

// sessionTag names a session in logs without giving away its id: a
// digest's first bytes.
func sessionTag(id []byte) string {
	h := sha256.Sum256(id)
	return hex.EncodeToString(h[:6])
}

// peerFingerprint is the SHA-256 of the calling master's TLS certificate
// (hex), or "" on a plaintext link.
func peerFingerprint(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			h := sha256.Sum256(ti.State.PeerCertificates[0].Raw)
			return hex.EncodeToString(h[:])
		}
	}
	return ""
}

// Handshake implements SlaveService: it opens a session (a new one, or
// the same session again for a master that restarted) and answers with a
// new token, which fences off every call of the handshake before.
func (s *Slave) Handshake(ctx context.Context, req *pb.HandshakeRequest) (*pb.HandshakeResponse, error) {
	if req.GetProtocolVersion() != wire.ProtocolVersion {
		// Unimplemented: a master that gets it stops (a configuration
		// error) instead of retrying.
		return nil, status.Errorf(codes.Unimplemented, "protocol version %d, this slave speaks %d", req.GetProtocolVersion(), wire.ProtocolVersion)
	}
	if n := len(req.GetSessionId()); n < 8 || n > 64 {
		return nil, status.Errorf(codes.InvalidArgument, "session id of %d bytes", n)
	}
	if len(req.GetBootId()) > 0 {
		master := rootid.ID{Boot: req.GetBootId(), Dev: req.GetRootDev(), Ino: req.GetRootIno()}
		if in, err := rootid.Within(s.tree.root.FD(), master); err != nil {
			return nil, status.Errorf(codes.Internal, "checking where the master's root is: %v", err)
		} else if in {
			s.log.Warn("refused a master whose root is this slave's root or contains it", "master_root", req.GetMasterRoot(), "slave_root", s.cfg.Root)
			return nil, status.Errorf(codes.InvalidArgument,
				"the master's root %s is this slave's root %s or contains it: a tree cannot be replicated into itself", req.GetMasterRoot(), s.cfg.Root)
		}
	}
	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		return nil, status.Errorf(codes.Internal, "session token: %v", err)
	}
	fp := peerFingerprint(ctx)
	who := masterIdentity(ctx, req)
	s.mu.Lock()
	now := s.cfg.Now()
	if s.token != nil {
		// The same session again from the certificate that opened it (the
		// master restarted) takes over at once; anything else waits for
		// the holder's lease to run out. The refusal never says the
		// holder's session id: it is not a credential any more, but it
		// names the session's marks.
		same := bytes.Equal(s.session, req.GetSessionId()) && s.peer == fp
		if left := s.cfg.Lease - now.Sub(s.lastSeen); left > 0 && !same {
			holder := s.holder
			s.mu.Unlock()
			s.log.Warn("refused a second master: the root is held", "refused", who, "holder", holder)
			return nil, status.Errorf(codes.FailedPrecondition,
				"slave root %s is held by another master (%s): one master per slave root; its lease expires %s after its last call unless renewed (in %s now)",
				s.cfg.Root, holder, s.cfg.Lease, left.Round(time.Second))
		}
		if !same {
			s.log.Warn("taking over from a master session whose lease expired", "old", sessionTag(s.session), "old_master", s.holder, "new_master", who)
		}
	}
	s.session = append([]byte(nil), req.GetSessionId()...)
	s.token, s.peer, s.holder, s.lastSeen = token, fp, who, now
	s.mu.Unlock()
	// The fence (see current): whatever a call of the session before is
	// applying now finishes before this answer, and it applies nothing
	// more.
	s.nsLock.Lock()
	//lint:ignore SA2001 an empty critical section: waiting for the holders is the point
	s.nsLock.Unlock()
	s.log.Info("master session opened", "session", sessionTag(req.GetSessionId()), "master", who)
	return &pb.HandshakeResponse{
		ProtocolVersion: wire.ProtocolVersion,
		SlaveVolumeId:   s.volumeID,
		SlaveRoot:       s.cfg.Root,
		LeaseMs:         s.cfg.Lease.Milliseconds(),
		Privileged:      s.privileged,
		Empty:           s.rootEmpty(),
		SessionToken:    token,
		BootId:          s.rootID.Boot,
		RootDev:         s.rootID.Dev,
		RootIno:         s.rootID.Ino,
	}, nil
}

// rootEmpty reports whether the slave root holds nothing but the reserved
// directory (read until a first other name; an error says not empty).
func (s *Slave) rootEmpty() bool {
	fd, err := unix.Openat(s.tree.root.FD(), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	f := os.NewFile(uintptr(fd), "root")
	defer f.Close()
	for {
		names, err := f.Readdirnames(16)
		for _, n := range names {
			if n != wire.ReservedName {
				return false
			}
		}
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// masterIdentity describes the master of a handshake for logs and refusals:
// the identity of its TLS certificate (when the link has one), and the host
// and root it says it has (which only describe; the certificate is what was
// verified).
func masterIdentity(ctx context.Context, req *pb.HandshakeRequest) string {
	where := fmt.Sprintf("%q on host %q", req.GetMasterRoot(), req.GetMasterHost())
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			return fmt.Sprintf("master %q, root %s", tlsconf.Identity(ti.State.PeerCertificates[0]), where)
		}
	}
	return "master root " + where
}

// KeepAlive implements SlaveService.
func (s *Slave) KeepAlive(ctx context.Context, req *pb.KeepAliveRequest) (*pb.KeepAliveResponse, error) {
	if err := s.checkSession(ctx, req.GetSessionToken()); err != nil {
		return nil, err
	}
	return &pb.KeepAliveResponse{}, nil
}

// EndSession implements SlaveService.
func (s *Slave) EndSession(ctx context.Context, req *pb.EndSessionRequest) (*pb.EndSessionResponse, error) {
	if err := s.checkSession(ctx, req.GetSessionToken()); err != nil {
		return nil, err
	}
	s.mu.Lock()
	tag := sessionTag(s.session)
	s.endSession()
	s.mu.Unlock()
	s.log.Info("master session ended", "session", tag)
	return &pb.EndSessionResponse{}, nil
}

// dropExpired ends the session when its master has been silent for a
// whole lease (it stopped sending keep-alives: killed, cut off), so that
// the root is free and the slave's log says so; a call from that master
// afterwards is refused until it handshakes again.
func (s *Slave) dropExpired() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == nil {
		return
	}
	if silent := s.cfg.Now().Sub(s.lastSeen); silent > s.cfg.Lease {
		s.log.Warn("dropped a master session: no call for a whole lease", "session", sessionTag(s.session),
			"master", s.holder, "silent", silent.Round(time.Millisecond), "lease", s.cfg.Lease)
		s.endSession()
	}
}

// reapLeases drops expired sessions until ctx ends (Serve runs it).
func (s *Slave) reapLeases(ctx context.Context) {
	t := time.NewTicker(min(max(s.cfg.Lease/4, 10*time.Millisecond), time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.dropExpired()
		}
	}
}

// writebackEvery is how many bytes the data streams write between two
// background writebacks of the slave's filesystem (see writeback).
const writebackEvery = 64 << 20

// wrote counts n bytes written by a data stream, and wakes writeback each
// time writebackEvery more have been written.
func (s *Slave) wrote(n int) {
	if s.unflushed.Add(int64(n)) < writebackEvery {
		return
	}
	s.unflushed.Store(0)
	select {
	case s.flushKick <- struct{}{}:
	default: // one is under way or already asked for
	}
}

// writeback syncs the slave's filesystem each time the data streams have
// written writebackEvery bytes more, until ctx ends (Serve runs it). Only a
// head start: SetMark's syncfs is what makes a batch durable and must wait
// for every dirty page; run now and then while the streams write, it finds
// little left, and the disk works while the streams go on (the kernel's own
// writeback would wait for 10 % of memory to be dirty, or 30 s).
func (s *Slave) writeback(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.flushKick:
		}
		if err := unix.Syncfs(s.tree.root.FD()); err != nil {
			s.log.Debug("background writeback", "error", err)
		}
	}
}

// markDirty records, before the first change after a clean point, that the
// index may lag the tree until the next clean point.
func (s *Slave) markDirty() error {
	s.mu.Lock()
	d := s.dirty
	s.dirty = true
	s.mu.Unlock()
	if d {
		return nil
	}
	return s.tree.idx.SetClean(false)
}

// opsPerTxn bounds the entry ops applied in one index transaction (see
// EntryOps).
const opsPerTxn = 1000

// EntryOps implements SlaveService.
func (s *Slave) EntryOps(ctx context.Context, req *pb.EntryOpsRequest) (*pb.EntryOpsResponse, error) {
	if err := s.checkSession(ctx, req.GetSessionToken()); err != nil {
		return nil, err
	}
	if len(req.GetOps()) > wire.MaxOpsPerCall {
		return nil, status.Errorf(codes.InvalidArgument, "%d ops in one call, at most %d", len(req.GetOps()), wire.MaxOpsPerCall)
	}
	resp := &pb.EntryOpsResponse{Results: make([]*pb.OpResult, len(req.GetOps()))}
	if err := s.markDirty(); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	// The ops go in index transactions of at most opsPerTxn: a transaction
	// holds every index page it dirties in memory, and random gfid keys
	// dirty pages all over the tree, so a large one would cost memory in
	// proportion to the tree (the index is a cache: it need not change
	// atomically with the whole request; an unclean stop rebuilds it).
	// The namespace lock is taken per transaction, not for the whole call:
	// data streams (which wait for it) then go on between them, as they
	// would between calls of opsPerTxn ops — the ops are applied in order
	// all the same, and the master sends a file's data only once the call
	// with its entry op has returned. (Held for a whole 4,096-op call, it
	// left the slave's second core idle while the call ran.)
	ops := req.GetOps()
	var err error
	for start := 0; start < len(ops) && err == nil; start += opsPerTxn {
		end := min(start+opsPerTxn, len(ops))
		err = s.entryTxn(req.GetSessionToken(), ops[start:end], resp.Results[start:end])
	}
	if errors.Is(err, errStale) {
		return nil, err
	}
	if err != nil {
		// The tree changed but the index did not record it: leave the
		// index marked unclean so that the next start rebuilds it.
		return nil, status.Errorf(codes.Internal, "recording entry ops in the gfid index: %v", err)
	}
	return resp, nil
}

// entryTxn applies ops, putting their results in results, in one index
// transaction under the namespace lock.
func (s *Slave) entryTxn(token []byte, ops []*pb.EntryOp, results []*pb.OpResult) error {
	s.nsLock.Lock()
	defer s.nsLock.Unlock()
	if err := s.current(token); err != nil {
		return err
	}
	s.gen.Add(1)
	c := s.tree.newDirCache(nil)
	defer c.close()
	return s.tree.idx.Update(func(tx *gfidx.Tx) error {
		c.tx = tx
		for i, op := range ops {
			r, err := validateEntry(op, s.privileged)
			var o outcome
			if err != nil {
				o = failed(err)
			} else {
				o = s.applyEntry(c, r)
			}
			if o.err != nil {
				s.log.Debug("entry op", "type", op.GetType(), "status", o.status, "error", o.err)
			}
			s.tree.trash.noteErr(o.err)
			results[i] = o.result()
		}
		return nil
	})
}

// MetaOps implements SlaveService.
func (s *Slave) MetaOps(ctx context.Context, req *pb.MetaOpsRequest) (*pb.MetaOpsResponse, error) {
	if err := s.checkSession(ctx, req.GetSessionToken()); err != nil {
		return nil, err
	}
	if len(req.GetOps()) > wire.MaxOpsPerCall {
		return nil, status.Errorf(codes.InvalidArgument, "%d ops in one call, at most %d", len(req.GetOps()), wire.MaxOpsPerCall)
	}
	resp := &pb.MetaOpsResponse{Results: make([]*pb.OpResult, len(req.GetOps()))}
	s.nsLock.RLock()
	defer s.nsLock.RUnlock()
	if err := s.current(req.GetSessionToken()); err != nil {
		return nil, err
	}
	err := s.tree.idx.View(func(tx *gfidx.Tx) error {
		c := s.tree.newDirCache(tx)
		defer c.close()
		for i, op := range req.GetOps() {
			r, err := validateMeta(op, s.privileged)
			var o outcome
			if err != nil {
				o = failed(err)
			} else {
				o = s.applyMeta(c, r)
			}
			s.tree.trash.noteErr(o.err)
			resp.Results[i] = o.result()
		}
		return nil
	})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "reading the gfid index: %v", err)
	}
	return resp, nil
}

// SyncData implements SlaveService.
func (s *Slave) SyncData(stream pb.SlaveService_SyncDataServer) error {
	return s.serveData(stream)
}

// GetMark implements SlaveService.
func (s *Slave) GetMark(ctx context.Context, req *pb.GetMarkRequest) (*pb.GetMarkResponse, error) {
	if err := s.checkSession(ctx, req.GetSessionToken()); err != nil {
		return nil, err
	}
	ns, err := s.marks.GetTime(marks.Stime(s.sessionID()))
	if errors.Is(err, marks.ErrNoMark) {
		return &pb.GetMarkResponse{}, nil
	}
	if err != nil {
		return nil, status.Errorf(codes.DataLoss, "slave mark: %v", err)
	}
	return &pb.GetMarkResponse{StimeNs: ns}, nil
}

// SetMark implements SlaveService: empty the limbo (whatever a batch moved
// aside and did not claim back is gone on the master), make everything
// durable, then record the mark.
func (s *Slave) SetMark(ctx context.Context, req *pb.SetMarkRequest) (*pb.SetMarkResponse, error) {
	if err := s.checkSession(ctx, req.GetSessionToken()); err != nil {
		return nil, err
	}
	if req.GetStimeNs() <= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "mark %d", req.GetStimeNs())
	}
	s.nsLock.Lock()
	defer s.nsLock.Unlock()
	if err := s.current(req.GetSessionToken()); err != nil {
		return nil, err
	}
	id := s.sessionID()
	s.gen.Add(1)
	err := s.tree.idx.Update(func(tx *gfidx.Tx) error {
		c := s.tree.newDirCache(tx)
		defer c.close()
		lfd, err := c.dir(limboGFID)
		if err != nil {
			return err
		}
		names, err := readNames(lfd)
		if err != nil {
			return err
		}
		for _, n := range names {
			if err := c.sweepLimbo(lfd, n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "emptying limbo: %v", err)
	}
	s.tree.trash.limboSwept()
	if err := unix.Syncfs(s.tree.root.FD()); err != nil {
		return nil, status.Errorf(codes.Internal, "syncfs %s: %v", s.cfg.Root, err)
	}
	if err := s.tree.idx.Sync(); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := s.marks.SetTime(marks.Stime(id), req.GetStimeNs()); err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	if err := unix.Fsync(s.tree.root.FD()); err != nil {
		return nil, status.Errorf(codes.Internal, "fsync %s: %v", s.cfg.Root, err)
	}
	s.mu.Lock()
	s.dirty = false
	s.mu.Unlock()
	if err := s.tree.idx.SetClean(true); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &pb.SetMarkResponse{}, nil
}

// sessionID is the open session's id (the marks' name).
func (s *Slave) sessionID() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.session
}

// hasCap reports whether this process has capability c in its effective
// set (false when that cannot be told).
func hasCap(c uint) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil || c >= 64 {
		return false
	}
	return data[c/32].Effective&(1<<(c%32)) != 0
}
