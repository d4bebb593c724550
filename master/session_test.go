package master_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/tlsconf"
	"github.com/georep/georep/internal/wire"
	"github.com/georep/georep/master"
	pb "github.com/georep/georep/proto/georep/v1"
)

// TestIssue18SessionBoundToCertificate: a second master the slave admits
// (another certificate of the same CA) that learnt the holder's session
// id (from its logs, its state dir, a refusal) could open the holder's
// session, write in it, end it and lock the real master out. A session is
// now bound to the certificate that opened it: the same id from another
// certificate is a second master, refused while the holder's lease lives.
func TestIssue18SessionBoundToCertificate(t *testing.T) {
	now := time.Now()
	ca := t.TempDir()
	if _, err := tlsconf.InitDir(ca, "ca", time.Hour, now); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"lab", "thief"} {
		if _, err := tlsconf.IssueInDir(ca, n, tlsconf.RoleMaster, nil, "", time.Hour, now, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tlsconf.IssueInDir(ca, "slave", tlsconf.RoleSlave, []string{"127.0.0.1"}, "", time.Hour, now, false); err != nil {
		t.Fatal(err)
	}
	scfg, err := tlsconf.ServerConfig(tlsconf.DirFiles(ca, "slave"), nil)
	if err != nil {
		t.Fatal(err)
	}
	lab, err := tlsconf.ClientConfig(tlsconf.DirFiles(ca, "lab"), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	thief, err := tlsconf.ClientConfig(tlsconf.DirFiles(ca, "thief"), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	mroot, sroot := t.TempDir(), t.TempDir()
	write(t, filepath.Join(mroot, "f"), []byte("x"))
	sl := testenv.StartSlaveWith(t, sroot, testenv.SlaveOptions{Creds: credentials.NewTLS(scfg)})
	state := filepath.Join(t.TempDir(), "master-state")
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.TLS = lab; c.Insecure = false; c.StateDir = state })
	startLive(t, m)
	waitSynced(t, m, time.Minute)

	var sess struct {
		SessionID string `json:"session_id"`
	}
	b, err := os.ReadFile(filepath.Join(state, "session.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sess); err != nil {
		t.Fatal(err)
	}
	id, _ := hex.DecodeString(sess.SessionID)
	conn, err := grpc.NewClient(sl.Addr, grpc.WithTransportCredentials(credentials.NewTLS(thief)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewSlaveServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = c.Handshake(ctx, &pb.HandshakeRequest{ProtocolVersion: wire.ProtocolVersion, SessionId: id})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("the holder's session id from another certificate: %v, want FailedPrecondition", err)
	}
	_, err = c.EntryOps(ctx, &pb.EntryOpsRequest{SessionToken: id})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("a call with the session id for a token: %v", err)
	}
	// The holder goes on.
	write(t, filepath.Join(mroot, "g"), []byte("y"))
	waitSynced(t, m, time.Minute)
	testenv.RequireEqual(t, mroot, sroot)
}
