package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/wire"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/slave"
)

// trashSlave is a slave with the trash on, driven by its API (no
// network); its clock moves by a second per call of ops.
type trashSlave struct {
	t    *testing.T
	s    *slave.Slave
	root string
	tok  []byte
	now  time.Time
}

func newTrashSlave(t *testing.T) *trashSlave {
	t.Helper()
	ts := &trashSlave{t: t, root: t.TempDir(), now: time.Date(2026, 3, 4, 5, 6, 7, 890, time.UTC)}
	s, err := slave.New(slave.Config{Root: ts.root, StateDir: filepath.Join(t.TempDir(), "state"), Lease: 1000 * time.Hour,
		Now: func() time.Time { return ts.now }, Trash: slave.TrashConfig{Enabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ts.s = s
	sid, _ := gfid.New()
	resp, err := s.Handshake(context.Background(), &pb.HandshakeRequest{ProtocolVersion: wire.ProtocolVersion, SessionId: sid.Bytes(), MasterHost: "test", MasterRoot: "/m"})
	if err != nil {
		t.Fatal(err)
	}
	ts.tok = resp.GetSessionToken()
	return ts
}

func (ts *trashSlave) ops(ops ...*pb.EntryOp) {
	ts.t.Helper()
	resp, err := ts.s.EntryOps(context.Background(), &pb.EntryOpsRequest{SessionToken: ts.tok, Ops: ops})
	if err != nil {
		ts.t.Fatal(err)
	}
	for i, r := range resp.GetResults() {
		if r.GetStatus() != pb.OpStatus_OP_STATUS_OK {
			ts.t.Fatalf("op %d: %v %s", i, r.GetStatus(), r.GetError())
		}
	}
	ts.now = ts.now.Add(time.Second)
}

// file makes a file name with content in parent and returns its gfid.
func (ts *trashSlave) file(parent gfid.GFID, rel, name, content string) gfid.GFID {
	ts.t.Helper()
	g := testenv.NewGFID(ts.t)
	ts.ops(&pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_CREATE, Gfid: g.Bytes(), Pargfid: parent.Bytes(), Name: []byte(name), Mode: unix.S_IFREG | 0o644})
	if err := os.WriteFile(filepath.Join(ts.root, rel, name), []byte(content), 0o644); err != nil {
		ts.t.Fatal(err)
	}
	return g
}

func (ts *trashSlave) unlink(g, parent gfid.GFID, name string) {
	ts.t.Helper()
	ts.ops(&pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_UNLINK, Gfid: g.Bytes(), Pargfid: parent.Bytes(), Name: []byte(name)})
}

// TestTrashCLI: `georep trash list` and `restore` on a slave root whose
// trash keeps two versions of one file, one of a name with a newline,
// and a directory; the errors and their exit statuses.
func TestTrashCLI(t *testing.T) {
	ts := newTrashSlave(t)
	const nl = "new\nline"
	a1 := ts.file(gfid.Root, "", "a", "first")
	ts.unlink(a1, gfid.Root, "a")
	t1 := ts.now.Add(-time.Second)
	a2 := ts.file(gfid.Root, "", "a", "second!")
	ts.unlink(a2, gfid.Root, "a")
	D := testenv.NewGFID(t)
	ts.ops(&pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_MKDIR, Gfid: D.Bytes(), Pargfid: gfid.Root.Bytes(), Name: []byte("d"), Mode: unix.S_IFDIR | 0o755})
	n := ts.file(D, "d", nl, "newline")
	ts.unlink(n, D, nl)
	ts.file(D, "d", "inner", "in d")
	ts.ops(&pb.EntryOp{Type: pb.EntryOpType_ENTRY_OP_TYPE_PURGE, Gfid: gfid.Root.Bytes()})
	root := ts.root

	code, out, errs := runCLI(t, "trash", "list", "--root", root)
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, errs)
	}
	for _, want := range []string{"KEPT (UTC)", "file  5     a", "file  7     a", "dir   4     d\n", `file  7     "d/new\nline"`, "4 versions, 23 bytes",
		trashTime(t1)} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	code, out, errs = runCLI(t, "trash", "list", "--root", root, "--json")
	var list []trashEntry
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 4 {
		t.Fatalf("list --json: exit %d: %s %s", code, out, errs)
	}
	if list[3].Path != "d/"+nl || list[3].Type != "file" || list[3].Size != 7 {
		t.Errorf("list --json: %+v", list[3])
	}

	dest := t.TempDir()
	// The newest version, by default; PATH between the flags.
	code, out, errs = runCLI(t, "trash", "restore", "--root", root, "a", "--to", filepath.Join(dest, "a"))
	if code != 0 || !strings.Contains(out, "restored a") {
		t.Fatalf("restore: exit %d: %s %s", code, out, errs)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "a")); string(b) != "second!" {
		t.Errorf("restored a: %q", b)
	}
	// The one of a time, as list prints it; a quoted path.
	if code, out, errs = runCLI(t, "trash", "restore", "--root", root, "--time", trashTime(t1), "--to", filepath.Join(dest, "a1"), "a"); code != 0 {
		t.Fatalf("restore --time: exit %d: %s %s", code, out, errs)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "a1")); string(b) != "first" {
		t.Errorf("restored a at %s: %q", trashTime(t1), b)
	}
	if code, out, errs = runCLI(t, "trash", "restore", "--root", root, `"d/new\nline"`, "--to", filepath.Join(dest, "nl")); code != 0 {
		t.Fatalf("restore of a quoted path: exit %d: %s %s", code, out, errs)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "nl")); string(b) != "newline" {
		t.Errorf("restored d/new\\nline: %q", b)
	}

	checkExitCodes(t, true, []exitCase{
		{"trash without a subcommand", []string{"trash"}, 2, "missing subcommand"},
		{"trash help", []string{"trash", "-h"}, 0, "georep trash restore"},
		{"trash unknown subcommand", []string{"trash", "empty"}, 2, "unknown subcommand"},
		{"list without root", []string{"trash", "list"}, 2, "--root is required"},
		{"restore without DEST", []string{"trash", "restore", "--root", root, "d"}, 2, "--to DEST is required"},
		{"restore without PATH", []string{"trash", "restore", "--root", root, "--to", filepath.Join(dest, "x")}, 2, "PATH to restore is required"},
		{"restore two PATHs", []string{"trash", "restore", "--root", root, "d", "e", "--to", filepath.Join(dest, "x")}, 2, "unexpected argument"},
		{"restore bad time", []string{"trash", "restore", "--root", root, "--time", "yesterday", "d", "--to", filepath.Join(dest, "x")}, 2, "--time"},
		{"restore over a file", []string{"trash", "restore", "--root", root, "d", "--to", filepath.Join(dest, "a")}, 1, "restore never overwrites"},
		{"restore into the replica", []string{"trash", "restore", "--root", root, "d", "--to", filepath.Join(root, "d")}, 1, "--into-replica"},
		{"restore what is not kept", []string{"trash", "restore", "--root", root, "nothing", "--to", filepath.Join(dest, "x")}, 1, `no version of "nothing"`},
		{"restore what is gone", []string{"trash", "restore", "--root", root, "a", "--to", filepath.Join(dest, "x")}, 1, `no version of "a"`},
		{"list a root without trash", []string{"trash", "list", "--root", dest}, 1, "no trash"},
		{"slave trash bound without trash", []string{"slave", "--root", root, "--listen", "127.0.0.1:0", "--insecure", "--trash-keep", "1h"}, 2, "--trash-keep without --trash"},
		{"slave bad trash size", []string{"slave", "--root", root, "--listen", "127.0.0.1:0", "--insecure", "--trash", "--trash-max-size", "lots"}, 2, "size \"lots\""},
		{"slave negative trash keep", []string{"slave", "--root", root, "--listen", "127.0.0.1:0", "--insecure", "--trash", "--trash-keep", "-1h"}, 2, "negative"},
	})
	// A relative root and destination: into the replica all the same.
	t.Chdir(filepath.Dir(root))
	rel := filepath.Base(root)
	if code, _, errs = runCLI(t, "trash", "restore", "--root", rel, "d", "--to", filepath.Join(rel, "d")); code != 1 || !strings.Contains(errs, "--into-replica") {
		t.Errorf("restore into the replica, relative paths: exit %d: %s", code, errs)
	}
	// The directory kept whole, into the replica when asked.
	if code, out, errs = runCLI(t, "trash", "restore", "--root", root, "--into-replica", "d", "--to", filepath.Join(root, "d-back")); code != 0 {
		t.Fatalf("restore --into-replica: exit %d: %s %s", code, out, errs)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "d-back", "inner")); string(b) != "in d" {
		t.Errorf("restored d/inner: %q", b)
	}
	if code, out, _ = runCLI(t, "trash", "list", "--root", root); code != 0 || !strings.Contains(out, "the trash is empty") {
		t.Errorf("list of an emptied trash: %d %q", code, out)
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1234": 1234, "10GiB": 10 << 30, "10G": 10 << 30, "10GB": 10e9, "1.5k": 1536,
		"512 MiB": 512 << 20, "2T": 2 << 40, "7b": 7} {
		if got, err := parseByteSize(in); err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "lots", "-1", "10XB", "1e30"} {
		if _, err := parseByteSize(in); err == nil {
			t.Errorf("parseByteSize(%q) took it", in)
		}
	}
}
