package master

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/digest"
	"github.com/georep/georep/internal/tlsconf"
	"github.com/georep/georep/internal/wire"
	"github.com/georep/georep/internal/xattrs"
	pb "github.com/georep/georep/proto/georep/v1"
)

// VerifyConfig configures Verify.
type VerifyConfig struct {
	Root, Slave string
	TLS         *tls.Config
	Insecure    bool
	// The rules (see Config): what they leave out is not compared, and the
	// slave's copies of it are not extras.
	Excludes, ExcludeFrom []string
	// RateLimit caps the file data each end reads, in bytes per second
	// (0: none).
	RateLimit int64
	// Stall is how long the slave's hashing may make no progress before
	// Verify gives up (default 5 minutes).
	Stall time.Duration
	// MaxDirEntries bounds the entries the slave may list for one
	// directory (default 1<<20): a listing that goes on is an error, not
	// memory spent for ever.
	MaxDirEntries int
	// Quick trusts the hashes of files unchanged since the last pass
	// (inode, ctime and size): the slave's, and Cache here (nil: a full
	// pass here).
	Quick  bool
	Cache  *digest.Cache
	Logger hclog.Logger
}

// VerifyResult is what Verify found.
type VerifyResult struct {
	Diffs []digest.Diff
	// Files and Bytes hashed on the master and on the slave.
	Files, Bytes           int64
	SlaveFiles, SlaveBytes int64
	// Dirs is how many directories' listings crossed the link, WireBytes
	// the size of the slave's answers.
	Dirs      int
	WireBytes int64
}

// Limits on what a slave may answer a verify (it may lie, or be broken).
const (
	verifyPage   = 4096
	verifyMaxDir = 1 << 20
	verifyPoll   = 300 * time.Millisecond
)

// Verify compares the master root with the slave's by content (package
// digest): both ends hash their trees, and only the digests of the
// directories that differ cross the link. It reads only (files are opened
// with O_NOATIME where the process may): it changes neither tree and
// needs no session, so it runs beside a live master. An answer the slave
// could not honestly give (unsorted or invalid names, digests of the wrong
// size, pages that never end) is an error.
func Verify(ctx context.Context, cfg VerifyConfig) (*VerifyResult, error) {
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if cfg.Stall <= 0 {
		cfg.Stall = 5 * time.Minute
	}
	if cfg.MaxDirEntries <= 0 {
		cfg.MaxDirEntries = verifyMaxDir
	}
	abs, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("master root %s: %w", cfg.Root, err)
	}
	root, err := beneath.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("master root: %w", err)
	}
	defer root.Close()
	rs, err := loadRules(root, Config{Root: abs, Excludes: cfg.Excludes, ExcludeFrom: cfg.ExcludeFrom})
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS)
	} else if err := tlsconf.CheckPlaintext(cfg.Slave, cfg.Insecure); err != nil {
		return nil, fmt.Errorf("slave %s: %w", cfg.Slave, err)
	}
	conn, err := grpc.NewClient(cfg.Slave, append(wire.DialOptions(), grpc.WithTransportCredentials(creds))...)
	if err != nil {
		return nil, fmt.Errorf("slave %s: %w", cfg.Slave, err)
	}
	defer conn.Close()
	client := pb.NewSlaveServiceClient(conn)
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	begin, err := client.DigestBegin(bctx, &pb.DigestBeginRequest{Privileged: os.Geteuid() == 0, RateLimit: cfg.RateLimit, Quick: cfg.Quick})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("slave %s: starting the verify: %w", cfg.Slave, err)
	}
	priv := begin.GetPrivileged()
	log.Info("verify: hashing both trees", "root", abs, "slave", cfg.Slave, "privileged_xattrs", priv)

	// The master's tree, while the slave hashes its own.
	type built struct {
		t   *digest.Tree
		err error
	}
	mine := make(chan built, 1)
	var cache *digest.Cache
	if cfg.Quick {
		cache = cfg.Cache
	}
	hctx, stopHash := context.WithCancel(ctx)
	defer stopHash()
	go func() {
		var lim *rate.Limiter
		if cfg.RateLimit > 0 {
			lim = rate.NewLimiter(rate.Limit(cfg.RateLimit), max(256<<10, int(min(cfg.RateLimit, 1<<30))))
		}
		t, err := digest.Build(hctx, root, digest.Options{
			Skip:  func(rel string, isDir bool) bool { return rs.Excluded(rel, isDir) },
			Xattr: func(n string) bool { return xattrs.Replicated(n, priv) },
			Limit: lim,
			Cache: cache,
		})
		mine <- built{t, err}
	}()
	v := &verifier{client: client, pass: begin.GetPass(), res: &VerifyResult{}, maxDir: cfg.MaxDirEntries}
	rootSum, err := v.waitReady(ctx, cfg.Stall, log)
	if err != nil {
		return nil, err
	}
	var m built
	select {
	case m = <-mine:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if m.err != nil {
		return nil, fmt.Errorf("hashing the master's tree: %w", m.err)
	}
	v.res.Files, v.res.Bytes = m.t.Files, m.t.Bytes
	ignore := func(rel string, isDir bool) bool { return rs.Excluded(rel, isDir) }
	if rootSum != m.t.Dirs[""].Sum {
		queue := []string{""}
		for len(queue) > 0 {
			dir := queue[0]
			queue = queue[1:]
			md := m.t.Dirs[dir]
			entries, absent, err := v.list(ctx, dir, len(md.Entries))
			if err != nil {
				return nil, err
			}
			if absent {
				// Listed as a directory on both sides a moment ago: the
				// slave contradicts itself.
				return nil, fmt.Errorf("the slave says %q is not a directory, after listing it as one", dir)
			}
			diffs, descend := digest.Compare(dir, md.Entries, entries, ignore)
			v.res.Diffs = append(v.res.Diffs, diffs...)
			for _, d := range descend {
				if m.t.Dirs[d] != nil {
					queue = append(queue, d)
				}
			}
		}
		if len(v.res.Diffs) == 0 {
			// The digests differ and no entry does: an excluded extra, or
			// a slave whose digest is wrong.
			log.Debug("verify: the roots' digests differ, yet no entry compared does")
		}
	}
	log.Info("verify: done", "differences", len(v.res.Diffs), "dirs_listed", v.res.Dirs, "wire_bytes", v.res.WireBytes)
	return v.res, nil
}

type verifier struct {
	client pb.SlaveServiceClient
	pass   []byte
	res    *VerifyResult
	maxDir int
}

// call asks the slave for a page of dir.
func (v *verifier) call(ctx context.Context, dir, after string, n int) (*pb.DigestListResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	resp, err := v.client.DigestList(cctx, &pb.DigestListRequest{Pass: v.pass, Path: []byte(dir), After: []byte(after), Max: uint32(n)})
	if err != nil {
		return nil, fmt.Errorf("verify: asking the slave for %q: %w", dir, err)
	}
	v.res.WireBytes += int64(proto.Size(resp))
	return resp, nil
}

// waitReady waits until the slave has hashed its tree, and returns its
// root's digest. A slave whose hashing makes no progress for stall is
// given up on.
func (v *verifier) waitReady(ctx context.Context, stall time.Duration, log hclog.Logger) (digest.Sum, error) {
	var last [2]int64
	moved := time.Now()
	for {
		resp, err := v.call(ctx, "", "", 1)
		if err != nil {
			return digest.Sum{}, err
		}
		v.res.SlaveFiles, v.res.SlaveBytes = resp.GetFiles(), resp.GetBytes()
		if resp.GetReady() {
			if resp.GetAbsent() {
				return digest.Sum{}, errors.New("the slave says its root is not a directory")
			}
			return sumOf(resp.GetSum(), "the root's digest")
		}
		if now := [2]int64{resp.GetFiles(), resp.GetBytes()}; now != last {
			last, moved = now, time.Now()
		} else if time.Since(moved) > stall {
			return digest.Sum{}, fmt.Errorf("the slave's hashing made no progress for %s (at %d files, %d bytes)", stall, last[0], last[1])
		}
		select {
		case <-ctx.Done():
			return digest.Sum{}, ctx.Err()
		case <-time.After(verifyPoll):
		}
	}
}

// list reads the slave's listing of dir, page by page, checking it: names
// valid and strictly increasing, digests of their size, pages no longer
// than asked and not empty while more follow, a listing that ends (at
// most maxDir entries).
func (v *verifier) list(ctx context.Context, dir string, masterEntries int) ([]digest.Entry, bool, error) {
	var out []digest.Entry
	after := ""
	for page := 0; ; page++ {
		if len(out) > v.maxDir {
			return nil, false, fmt.Errorf("the slave's listing of %q does not end (over %d entries)", dir, v.maxDir)
		}
		resp, err := v.call(ctx, dir, after, verifyPage)
		if err != nil {
			return nil, false, err
		}
		if page == 0 {
			v.res.Dirs++
		}
		if !resp.GetReady() {
			return nil, false, fmt.Errorf("the slave says it is hashing again while answering %q (another verify began?)", dir)
		}
		if resp.GetAbsent() {
			return nil, true, nil
		}
		if len(resp.GetEntries()) > verifyPage || (resp.GetMore() && len(resp.GetEntries()) == 0) {
			return nil, false, fmt.Errorf("the slave's page of %q is malformed (%d entries, more %v)", dir, len(resp.GetEntries()), resp.GetMore())
		}
		for _, pe := range resp.GetEntries() {
			e, err := entryOf(pe)
			if err != nil {
				return nil, false, fmt.Errorf("the slave's listing of %q: %w", dir, err)
			}
			if (len(out) > 0 || after != "") && e.Name <= after {
				return nil, false, fmt.Errorf("the slave's listing of %q is not in name order at %q", dir, e.Name)
			}
			after = e.Name
			out = append(out, e)
		}
		if !resp.GetMore() {
			return out, false, nil
		}
	}
}

func sumOf(b []byte, what string) (digest.Sum, error) {
	var s digest.Sum
	if len(b) != digest.Size {
		return s, fmt.Errorf("%s is %d bytes, not %d", what, len(b), digest.Size)
	}
	copy(s[:], b)
	return s, nil
}

// optSum is sumOf for a digest that may be absent (all zero).
func optSum(b []byte, what string) (digest.Sum, error) {
	if len(b) == 0 {
		return digest.Sum{}, nil
	}
	return sumOf(b, what)
}

func entryOf(pe *pb.DigestEntry) (digest.Entry, error) {
	name := string(pe.GetName())
	if err := wire.ValidName(name); err != nil {
		return digest.Entry{}, fmt.Errorf("entry %q: %w", name, err)
	}
	if bytes.IndexByte(pe.GetLinkKey(), 0) >= 0 || len(pe.GetLinkKey()) > 1<<16 || len(pe.GetTarget()) > 1<<20 {
		return digest.Entry{}, fmt.Errorf("entry %q: malformed link key or target", name)
	}
	e := digest.Entry{Name: name, Mode: pe.GetMode(), UID: pe.GetUid(), GID: pe.GetGid(), Size: pe.GetSize(),
		MtimeNS: pe.GetMtimeNs(), Rdev: pe.GetRdev(), Target: string(pe.GetTarget()), LinkKey: string(pe.GetLinkKey())}
	var err error
	if e.Content, err = optSum(pe.GetContent(), "a content digest"); err != nil {
		return e, fmt.Errorf("entry %q: %w", name, err)
	}
	if e.Xattrs, err = optSum(pe.GetXattrs(), "an xattr digest"); err != nil {
		return e, fmt.Errorf("entry %q: %w", name, err)
	}
	if e.Sub, err = optSum(pe.GetSub(), "a directory digest"); err != nil {
		return e, fmt.Errorf("entry %q: %w", name, err)
	}
	return e, nil
}
