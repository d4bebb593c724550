// Package wire is the contract a master and its slave share beyond the
// protobuf messages (proto/georep/v1): the protocol version, the name the
// slave reserves at its root, what a name may be, the limits of a message
// and of a call, the size below which a file goes whole and inline, and
// the gRPC options both ends use. The master and the slave import it and
// not each other.
package wire

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"

	"github.com/georep/georep/internal/beneath"
	"github.com/georep/georep/internal/rpccodec"

	"time"
)

// ProtocolVersion is the wire protocol both ends speak; a slave refuses a
// master that speaks another. Version 2: files inline in their header, and
// BLAKE3 as the end-to-end hash. Version 3: many inline files in one
// message (InlineFiles, answered by one FileResults). Version 4: seeded
// XXH3-128 as the end-to-end hash (see delta.Sum). Version 5: chunks whose
// bytes come on a data connection beside the stream (BulkOpen,
// FileChunk.bulk_length). Version 6: calls carry the token their
// handshake answered (session_token), not the session id, so that a new
// handshake fences off the calls of the one before; an op says which
// other directory it took its entry from (OpResult.also_dirs). Version 7:
// the master's unary calls (entry and metadata ops, digests, marks) are
// compressed with zstd (rpccodec.Zstd); a slave of version 6 could not
// read them.
const ProtocolVersion = 7

// ReservedName is the top-level name the slave keeps for itself (its
// working directory, like GlusterFS's .glusterfs): a master neither
// replicates nor watches a top-level entry of that name, and a slave
// refuses any op that names it at its root.
const ReservedName = ".georep"

// ValidName reports why name cannot be a single path component of a
// replicated tree, or nil: not empty, no '/' or NUL, not "." or "..", at
// most 255 bytes. Names are bytes: anything else is valid (spaces,
// newlines, non-UTF-8). Both ends and the journal use this one rule.
func ValidName(name string) error { return beneath.ValidName(name) }

// MaxMessage is the largest gRPC message either side accepts. It is set
// deliberately: the largest legitimate message is a PURGE naming every
// entry of one huge directory (a million 40-byte names is about 45 MiB).
const MaxMessage = 64 << 20

// MaxOpsPerCall bounds the ops of one EntryOps or MetaOps call (a master
// sends at most 4,096).
const MaxOpsPerCall = 100000

// SmallFile is the size up to which a file is sent whole and inline (its
// data and end ride in its header: one message instead of three, and no
// round trip), and below which a slave's old copy is not worth a delta:
// such a file costs at most this on the wire whichever way it goes. The
// master's sender and the slave's receiver must agree on it.
const SmallFile = 64 << 10

// MaxZeroRun bounds the hole one FileChunk may describe (its
// zero_length). The slave hashes a hole's zeros (the end-to-end sum covers
// them) without writing them; a bound per message keeps each message's
// work short, so that the slave notices a cancelled stream and lets entry
// ops in between messages. The master splits larger holes.
const MaxZeroRun = 1 << 30

// ServerOptions are the gRPC options the slave serves with (creds nil:
// none set here).
func ServerOptions(creds credentials.TransportCredentials) []grpc.ServerOption {
	codec := rpccodec.New()
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessage),
		grpc.MaxSendMsgSize(MaxMessage),
		// Stop (after a graceful stop timed out) returns only once every
		// handler has: the slave is closed after Serve, and a data
		// stream must not touch its index, root or closers after that.
		grpc.WaitForHandlers(true),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 20 * time.Second}),
		// A connection must finish its TLS and HTTP/2 handshakes within
		// this (gRPC's default is 120 s): idle connections that never
		// handshake do not hold their slots long (see slave.Serve).
		grpc.ConnectionTimeout(HandshakeTimeout),
		// Calls at a time per connection: a master uses one per data
		// stream (at most 64) plus a few; 24 concurrent calls of 64 MiB took a
		// slave past 3.6 GB.
		grpc.MaxConcurrentStreams(MaxStreamsPerConn),
		grpc.ForceServerCodecV2(codec),
		experimental.BufferPool(codec.Pool()),
	}
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	return opts
}

// HandshakeTimeout bounds a connection's TLS and HTTP/2 handshakes on the
// slave.
const HandshakeTimeout = 10 * time.Second

// MaxStreamsPerConn bounds the calls at a time on one connection to the
// slave.
const MaxStreamsPerConn = 128

// CallTimeout bounds every unary call a master makes that has no earlier
// deadline of its own: a slave that answers keep-alives but never answers
// a call (hung on a disk, or hostile) made a one-shot master wait for
// ever. Generous: the slowest legitimate call is a mark's syncfs of a
// slave tree with gigabytes not yet on disk, or an EntryOps of thousands
// of ops on a slow disk.
const CallTimeout = 5 * time.Minute

// DialOptions are the gRPC options a master dials its slave with: the same
// message limit both ways, so that neither end accepts (or builds) a
// message the other would refuse, the same codec (rpccodec), and a
// deadline on every unary call (CallTimeout). Unary calls are compressed
// (rpccodec.Zstd; the slave answers in kind); data streams are not.
func DialOptions() []grpc.DialOption { return dialOptions(CallTimeout) }

func dialOptions(callTimeout time.Duration) []grpc.DialOption {
	codec := rpccodec.New()
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessage), grpc.MaxCallSendMsgSize(MaxMessage),
			grpc.ForceCodecV2(codec)),
		experimental.WithBufferPool(codec.Pool()),
		grpc.WithUnaryInterceptor(callDeadline(callTimeout)),
	}
}

// callDeadline gives a unary call without a deadline one of d, and
// compresses every unary call (see DialOptions).
func callDeadline(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, append(opts, grpc.UseCompressor(rpccodec.Zstd))...)
	}
}
