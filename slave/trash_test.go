package slave_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/wire"
	pb "github.com/georep/georep/proto/georep/v1"
	"github.com/georep/georep/slave"
)

// trashOn turns the trash on (with tc's bounds) and, when clock is set,
// drives the slave's clock with it (with a lease long enough for the
// clock's jumps).
func trashOn(clock *fakeClock, tc slave.TrashConfig) func(*slave.Config) {
	return func(c *slave.Config) {
		tc.Enabled = true
		c.Trash = tc
		if clock != nil {
			c.Now = clock.Now
			c.Lease = 1000 * time.Hour
		}
	}
}

// trashed lists what the trash of f keeps.
func (f *fixture) trashed() []slave.TrashVersion {
	f.t.Helper()
	vs, err := slave.ListTrash(f.root)
	if err != nil {
		f.t.Fatalf("ListTrash: %v", err)
	}
	return vs
}

// inTrash is where version v is on disk.
func (f *fixture) inTrash(v slave.TrashVersion) string {
	return filepath.Join(slave.TrashPath(f.root), v.Entry)
}

// version finds the one version of path in vs.
func version(t testing.TB, vs []slave.TrashVersion, path string) slave.TrashVersion {
	t.Helper()
	var found []slave.TrashVersion
	for _, v := range vs {
		if v.Path == path {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d versions of %q in the trash, want 1; the trash: %s", len(found), path, showVersions(vs))
	}
	return found[0]
}

func showVersions(vs []slave.TrashVersion) string {
	var b strings.Builder
	for _, v := range vs {
		fmt.Fprintf(&b, "\n  %q %s %s %d (%q)", v.Path, v.Time.Format(time.RFC3339Nano), v.Type, v.Size, v.Entry)
	}
	return b.String()
}

// replicaView describes the replica under root, its reserved directory
// left out: each entry's type and permission bits, a file's content, a
// symlink's target.
func replicaView(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == wire.ReservedName {
			return filepath.SkipDir
		}
		st := lstat(t, p)
		desc := fmt.Sprintf("%o", st.Mode)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			desc += " " + readFile(t, p)
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameView(t testing.TB, a, b map[string]string) {
	t.Helper()
	for k, v := range a {
		if b[k] != v {
			t.Errorf("replica %q: without the trash %q, with it %q", k, v, b[k])
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			t.Errorf("replica %q: only with the trash (%q)", k, v)
		}
	}
}

func writeAt(t testing.TB, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// trashScenario makes a tree on f, then removes and overwrites in every
// way the trash keeps (and some it does not); it returns the gfids the
// checks need.
func trashScenario(t testing.TB, f *fixture) map[string]gfid.GFID {
	g := map[string]gfid.GFID{}
	for _, n := range []string{"d", "e", "sub", "r", "empty", "f1", "nl", "bad", "h", "s", "mover", "victim", "g", "rf", "ow", "k"} {
		g[n] = newGFID(t)
	}
	const nl, bad = "new\nline", "bad\xff\xfe name"
	R := gfid.Root
	f.ok(opMkdir(g["d"], R, "d"), opMkdir(g["e"], R, "e"), opMkdir(g["sub"], g["e"], "sub"), opMkdir(g["r"], R, "r"),
		opMkdir(g["empty"], R, "empty"),
		opCreate(g["f1"], g["d"], "f1"), opCreate(g["nl"], g["d"], nl), opCreate(g["bad"], g["d"], bad),
		opCreate(g["h"], R, "h1"), opLink(g["h"], g["d"], "h2"), opSymlink(g["s"], R, "s", "d/f1"),
		opCreate(g["mover"], R, "mover"), opCreate(g["victim"], R, "victim"), opCreate(g["g"], g["sub"], "g"),
		opCreate(g["rf"], g["r"], "rf"), opCreate(g["ow"], R, "ow"), opCreate(g["k"], R, "k1"), opLink(g["k"], g["d"], "k2"))
	for p, c := range map[string]string{"d/f1": "f1 data", "d/" + nl: "newline data", "d/" + bad: "bad name data",
		"h1": "hard", "mover": "mover data", "victim": "victim data", "e/sub/g": "g data", "r/rf": "rf data",
		"ow": "old ow", "k1": "old k"} {
		writeAt(t, f.path(p), c)
	}
	// The removals: an UNLINK each (odd names too), of a hard link (not
	// kept: the data lives on), of a symlink; a RENAME over a file; an
	// RMDIR of a tree and of an empty directory; a PURGE of a tree.
	f.ok(opUnlink(g["f1"], g["d"], "f1"), opUnlink(g["nl"], g["d"], nl), opUnlink(g["bad"], g["d"], bad),
		opUnlink(g["h"], g["d"], "h2"), opUnlink(g["s"], R, "s"), opRename(g["mover"], R, "mover", R, "victim"),
		opRmdir(g["r"], R, "r"), opRmdir(g["empty"], R, "empty"), opPurge(g["e"]))
	// The overwrites: a file with one link (renamed over), one with two
	// (patched in place).
	d := f.openData(f.tok)
	if r := d.sendFile(1, g["ow"], "new ow content", 5e9); r.GetResult().GetStatus() != stOK {
		t.Fatalf("overwrite: %v", r)
	}
	if r := d.sendFile(2, g["k"], "new k content", 6e9); r.GetResult().GetStatus() != stOK {
		t.Fatalf("overwrite of a hard-linked file: %v", r)
	}
	d.commit()
	return g
}

// TestTrashKeeps: each removal and overwrite the trash keeps ends there,
// with its path and content, and the replica is exactly what it is
// without the trash; nothing in the trash is found by its gfid, neither
// through the index nor after an index rebuild.
func TestTrashKeeps(t *testing.T) {
	off := newFixture(t)
	trashScenario(t, off)
	if _, err := os.Stat(slave.TrashPath(off.root)); !os.IsNotExist(err) {
		t.Fatalf("a slave without the trash made %s (%v)", slave.TrashPath(off.root), err)
	}

	clock := newFakeClock()
	f := newFixture(t, trashOn(clock, slave.TrashConfig{}))
	g := trashScenario(t, f)
	sameView(t, replicaView(t, off.root), replicaView(t, f.root))

	vs := f.trashed()
	want := map[string]string{ // path -> type and content
		"d/f1": "file f1 data", "d/new\nline": "file newline data", "d/bad\xff\xfe name": "file bad name data",
		"s": "symlink d/f1", "victim": "file victim data", "r": "dir", "e/sub": "dir", "ow": "file old ow",
	}
	for p, w := range want {
		v := version(t, vs, p)
		got := v.Type
		switch v.Type {
		case "file":
			got += " " + readFile(t, f.inTrash(v))
		case "symlink":
			target, _ := os.Readlink(f.inTrash(v))
			got += " " + target
		}
		if got != w {
			t.Errorf("trash %q: %q, want %q", p, got, w)
		}
		if !v.Time.Equal(clock.Now()) {
			t.Errorf("trash %q kept at %v, want %v", p, v.Time, clock.Now())
		}
	}
	if got := readFile(t, filepath.Join(f.inTrash(version(t, vs, "r")), "rf")); got != "rf data" {
		t.Errorf("r/rf in the trash: %q", got)
	}
	if got := readFile(t, filepath.Join(f.inTrash(version(t, vs, "e/sub")), "g")); got != "g data" {
		t.Errorf("e/sub/g in the trash: %q", got)
	}
	if v := version(t, vs, "r"); v.Size != int64(len("rf data")) {
		t.Errorf("r's size %d, want %d", v.Size, len("rf data"))
	}
	// The hard-linked file's old content: a copy (the one), at the name
	// its data went to, without a gfid.
	var k []slave.TrashVersion
	for _, v := range vs {
		if v.Path == "k1" || v.Path == "d/k2" {
			k = append(k, v)
		}
	}
	if len(k) != 1 || readFile(t, f.inTrash(k[0])) != "old k" {
		t.Fatalf("the hard-linked file's old content: %s", showVersions(k))
	}
	if _, err := unix.Lgetxattr(f.inTrash(k[0]), gfidAttr, make([]byte, 16)); err == nil {
		t.Error("the copy of the hard-linked file's old content carries a gfid")
	}
	if st := lstat(t, f.inTrash(k[0])); st.Nlink != 1 || lstat(t, f.path("k1")).Nlink != 2 {
		t.Error("the kept copy shares the live file's inode")
	}
	if len(vs) != len(want)+1 {
		t.Fatalf("the trash keeps %d versions, want %d (not the hard link h2, the empty directory, mover):%s", len(vs), len(want)+1, showVersions(vs))
	}
	// The trash carries no gfid (the rebuild does not walk it), and the
	// index knows nothing in it.
	if _, err := unix.Lgetxattr(slave.TrashPath(f.root), gfidAttr, make([]byte, 16)); err == nil {
		t.Error("the trash directory carries a gfid")
	}
	checkUnreachable := func(when string) {
		t.Helper()
		for _, n := range []string{"f1", "nl", "bad", "s", "victim", "r", "rf", "sub", "g"} {
			if l := f.s.LinksForTest(g[n]); l != 0 {
				t.Errorf("%s: the index holds %d links of %s (in the trash)", when, l, n)
			}
		}
		// A CREATE of a trashed gfid makes a new file: nothing reuses
		// what the trash keeps.
		name := "again-" + when
		if r := f.entry(opCreate(g["f1"], gfid.Root, name))[0]; r.GetStatus() != stOK || !r.GetMade() {
			t.Errorf("%s: CREATE of a trashed gfid: %v (%s), made %v; want made anew", when, r.GetStatus(), r.GetError(), r.GetMade())
		}
		if lstat(t, f.path(name)).Ino == lstat(t, f.inTrash(version(t, vs, "d/f1"))).Ino {
			t.Errorf("%s: the trashed inode was reused", when)
		}
		f.ok(opUnlink(g["f1"], gfid.Root, name))
		checkFailed(t, f.meta(metaOf(g["g"], unix.S_IFREG|0o600, 0, 0, 1, 1))[0], ecUnknown, when+": meta of a file in a trashed tree")
	}
	checkUnreachable("live")
	// An unclean stop: the index is rebuilt from the tree's xattrs.
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	f.s = nil
	if err := os.Remove(filepath.Join(f.cfg.StateDir, "gfid.db")); err != nil {
		t.Fatal(err)
	}
	f.open()
	f.handshake(f.sid)
	checkUnreachable("rebuilt")
	if got := f.s.TrashStats().Kept; got != 1 {
		t.Errorf("the slave restarted counts %d kept, want 1 (the unlink of %q)", got, "again-rebuilt")
	}
	f.checkOutside()
}

// TestTrashNames: names are bytes in the trash too ('~' and '%', which
// its names escape, a directory whose name looks like a version, a
// 255-byte name, which is cut to fit).
func TestTrashNames(t *testing.T) {
	f := newFixture(t, trashOn(nil, slave.TrashConfig{}))
	X, A, B, C := newGFID(t), newGFID(t), newGFID(t), newGFID(t)
	long := strings.Repeat("ü", 127) + "x" // 255 bytes
	const odd = "x~20240101-120000.000000000"
	f.ok(opMkdir(X, gfid.Root, odd), opCreate(A, X, "a~b%c d"), opCreate(B, X, long), opCreate(C, gfid.Root, "%7E"))
	writeAt(t, f.path(odd+"/a~b%c d"), "A")
	writeAt(t, f.path(odd+"/"+long), "B")
	writeAt(t, f.path("%7E"), "C")
	f.ok(opUnlink(A, X, "a~b%c d"), opUnlink(B, X, long), opUnlink(C, gfid.Root, "%7E"))
	vs := f.trashed()
	if len(vs) != 3 {
		t.Fatalf("the trash:%s", showVersions(vs))
	}
	if v := version(t, vs, odd+"/a~b%c d"); readFile(t, f.inTrash(v)) != "A" || v.Type != "file" || v.Size != 1 {
		t.Errorf("%q: %+v", v.Path, v)
	}
	if v := version(t, vs, "%7E"); readFile(t, f.inTrash(v)) != "C" {
		t.Errorf("%q: %+v", v.Path, v)
	}
	var cut *slave.TrashVersion
	for i := range vs {
		if strings.HasPrefix(vs[i].Path, odd+"/ü") {
			cut = &vs[i]
		}
	}
	if cut == nil || !strings.HasSuffix(cut.Path, "…") || !strings.HasPrefix(long, strings.TrimSuffix(strings.TrimPrefix(cut.Path, odd+"/"), "…")) {
		t.Fatalf("the 255-byte name: %s", showVersions(vs))
	}
	if readFile(t, f.inTrash(*cut)) != "B" {
		t.Error("the 255-byte name's content")
	}
}

// TestTrashDataIntoTrashedDir: a file whose directory goes to the trash
// while its data is on the way is gone (UNKNOWN_GFID, as without the
// trash); the data does not land over the version kept.
func TestTrashDataIntoTrashedDir(t *testing.T) {
	f := newFixture(t, trashOn(nil, slave.TrashConfig{}))
	D, F := newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"), opCreate(F, D, "f"))
	writeAt(t, f.path("d/f"), "old f")
	d := f.openData(f.tok)
	d.header(1, F, 5, 7e9)
	d.expectWant(1, true)
	f.ok(opRmdir(D, gfid.Root, "d"))
	d.chunk(1, 0, "new f")
	d.end(1, false)
	checkFailed(t, d.expectResult(1).GetResult(), ecUnknown, "data into a trashed directory")
	d.commit()
	v := version(t, f.trashed(), "d")
	if got := readFile(t, filepath.Join(f.inTrash(v), "f")); got != "old f" {
		t.Errorf("the kept d/f: %q", got)
	}
	if names := listNames(t, f.inTrash(v)); len(names) != 1 {
		t.Errorf("the kept d holds %q", names)
	}
}

// TestTrashLimbo: what a conflict moved aside and no op took back is kept
// when SetMark empties limbo, under the path it was moved from; a file
// with other links is not.
func TestTrashLimbo(t *testing.T) {
	f := newFixture(t, trashOn(nil, slave.TrashConfig{}))
	D, A, B, T, U, H := newGFID(t), newGFID(t), newGFID(t), newGFID(t), newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"), opCreate(A, D, "n"), opMkdir(T, gfid.Root, "t"), opCreate(newGFID(t), T, "inner"),
		opCreate(H, D, "h"), opLink(H, gfid.Root, "h-other"))
	writeAt(t, f.path("d/n"), "A's data")
	writeAt(t, f.path("t/inner"), "inner data")
	f.mustEntry([]pb.OpStatus{stResolved, stResolved, stResolved},
		opCreate(B, D, "n"), opMkdir(U, gfid.Root, "t"), opCreate(newGFID(t), D, "h"))
	if vs := f.trashed(); len(vs) != 0 {
		t.Fatalf("kept before SetMark:%s", showVersions(vs))
	}
	f.setMark(1)
	if got := f.limboNames(); len(got) != 0 {
		t.Fatalf("limbo: %q", got)
	}
	vs := f.trashed()
	if len(vs) != 2 {
		t.Fatalf("the trash:%s", showVersions(vs))
	}
	if v := version(t, vs, "d/n"); readFile(t, f.inTrash(v)) != "A's data" {
		t.Error("d/n from limbo")
	}
	if v := version(t, vs, "t"); readFile(t, filepath.Join(f.inTrash(v), "inner")) != "inner data" {
		t.Error("t from limbo")
	}
	if got := readFile(t, f.path("h-other")); got != "" || lstat(t, f.path("h-other")).Nlink != 1 {
		t.Error("the hard link's other name")
	}
	// After a restart, what is in limbo is kept as .georep/limbo/<name>.
	C := newGFID(t)
	f.ok(opCreate(C, gfid.Root, "c"))
	writeAt(t, f.path("c"), "C's data")
	f.mustEntry([]pb.OpStatus{stResolved}, opCreate(newGFID(t), gfid.Root, "c"))
	f.reopen()
	f.setMark(2)
	var fromLimbo []slave.TrashVersion
	for _, v := range f.trashed() {
		if strings.HasPrefix(v.Path, wire.ReservedName+"/limbo/") {
			fromLimbo = append(fromLimbo, v)
		}
	}
	if len(fromLimbo) != 1 || readFile(t, f.inTrash(fromLimbo[0])) != "C's data" {
		t.Fatalf("kept from limbo after a restart:%s", showVersions(fromLimbo))
	}
}

// TestTrashPruneAge: versions older than Keep go; the trash directories
// they leave empty go with them.
func TestTrashPruneAge(t *testing.T) {
	clock := newFakeClock()
	f := newFixture(t, trashOn(clock, slave.TrashConfig{Keep: time.Hour}))
	D, A, B := newGFID(t), newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"), opCreate(A, D, "a"), opCreate(B, gfid.Root, "b"))
	writeAt(t, f.path("d/a"), "aaaa")
	writeAt(t, f.path("b"), "bb")
	f.ok(opUnlink(A, D, "a"))
	clock.Advance(30 * time.Minute)
	f.ok(opUnlink(B, gfid.Root, "b"))
	clock.Advance(45 * time.Minute) // a: 75 min old, b: 45
	res, err := f.s.PruneTrash(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Versions != 1 || res.Bytes != 4 {
		t.Errorf("pruned %+v, want 1 version of 4 bytes", res)
	}
	vs := f.trashed()
	if len(vs) != 1 || vs[0].Path != "b" {
		t.Fatalf("after pruning:%s", showVersions(vs))
	}
	if exists(filepath.Join(slave.TrashPath(f.root), "d")) {
		t.Error("the emptied trash directory d is still there")
	}
	clock.Advance(time.Hour)
	if _, err := f.s.PruneTrash(context.Background()); err != nil {
		t.Fatal(err)
	}
	if vs := f.trashed(); len(vs) != 0 {
		t.Fatalf("after pruning again:%s", showVersions(vs))
	}
	if st := f.s.TrashStats(); st.Kept != 2 || st.Pruned != 2 || st.PrunedBytes != 6 {
		t.Errorf("stats %+v", st)
	}
}

// TestTrashPruneSize: beyond MaxSize the oldest versions go, a directory
// counting its tree.
func TestTrashPruneSize(t *testing.T) {
	clock := newFakeClock()
	f := newFixture(t, trashOn(clock, slave.TrashConfig{MaxSize: 250}))
	D, A, B, C := newGFID(t), newGFID(t), newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"), opCreate(A, D, "a"), opCreate(newGFID(t), D, "a2"), opCreate(B, gfid.Root, "b"), opCreate(C, gfid.Root, "c"))
	hundred := strings.Repeat("x", 100)
	for _, p := range []string{"d/a", "d/a2", "b", "c"} {
		writeAt(t, f.path(p), hundred)
	}
	f.ok(opRmdir(D, gfid.Root, "d")) // 200 bytes
	clock.Advance(time.Second)
	f.ok(opUnlink(B, gfid.Root, "b"))
	clock.Advance(time.Second)
	f.ok(opUnlink(C, gfid.Root, "c"))
	if res, err := f.s.PruneTrash(context.Background()); err != nil || res.Versions != 1 || res.Bytes != 200 {
		t.Fatalf("prune: %+v, %v; want the directory (200 bytes)", res, err)
	}
	vs := f.trashed()
	if len(vs) != 2 || vs[0].Path != "b" || vs[1].Path != "c" {
		t.Fatalf("after pruning:%s", showVersions(vs))
	}
	// Within the bound: nothing goes.
	if res, err := f.s.PruneTrash(context.Background()); err != nil || res.Versions != 0 {
		t.Fatalf("prune within the bound: %+v, %v", res, err)
	}
}

// TestTrashPrunedInTheBackground: a serving slave prunes by itself, and
// stops doing so when Serve returns.
func TestTrashPrunedInTheBackground(t *testing.T) {
	clock := newFakeClock()
	f := newFixture(t, trashOn(clock, slave.TrashConfig{Keep: time.Minute, PruneEvery: 10 * time.Millisecond}))
	A := newGFID(t)
	f.ok(opCreate(A, gfid.Root, "a"))
	writeAt(t, f.path("a"), "a")
	f.serve()
	f.ok(opUnlink(A, gfid.Root, "a"))
	if vs := f.trashed(); len(vs) != 1 {
		t.Fatalf("the trash:%s", showVersions(vs))
	}
	clock.Advance(2 * time.Minute)
	waitFor(t, "the pruner", func() bool { return len(f.trashed()) == 0 })
}

// TestTrashRestore: a version restored by a rename; the newest or the one
// of a time; a file inside a directory kept whole; never over an
// existing destination, never into the replica unless asked.
func TestTrashRestore(t *testing.T) {
	clock := newFakeClock()
	f := newFixture(t, trashOn(clock, slave.TrashConfig{}))
	D, A, A2, X := newGFID(t), newGFID(t), newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"), opCreate(A, gfid.Root, "a"), opCreate(X, D, "x\ny"))
	writeAt(t, f.path("a"), "first")
	writeAt(t, f.path("d/x\ny"), "in d")
	f.ok(opUnlink(A, gfid.Root, "a"))
	t1 := clock.Now()
	clock.Advance(time.Second)
	f.ok(opCreate(A2, gfid.Root, "a"))
	writeAt(t, f.path("a"), "second")
	f.ok(opUnlink(A2, gfid.Root, "a"), opPurge(gfid.Root))
	out := t.TempDir()

	v, err := slave.RestoreTrash(f.root, slave.RestoreOptions{Path: "a", Dest: filepath.Join(out, "a")})
	if err != nil || v.Path != "a" || !v.Time.Equal(clock.Now()) || readFile(t, filepath.Join(out, "a")) != "second" {
		t.Fatalf("restore the newest: %+v, %v", v, err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(out, "a"), gfidAttr, make([]byte, 16)); err == nil {
		t.Error("the restored file carries its gfid")
	}
	if _, err := slave.RestoreTrash(f.root, slave.RestoreOptions{Path: "a", Dest: filepath.Join(out, "a")}); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("restore over an existing file: %v", err)
	}
	if readFile(t, filepath.Join(out, "a")) != "second" {
		t.Error("the existing destination changed")
	}
	if _, err := slave.RestoreTrash(f.root, slave.RestoreOptions{Path: "a", Time: t1, Dest: filepath.Join(out, "a1")}); err != nil || readFile(t, filepath.Join(out, "a1")) != "first" {
		t.Fatalf("restore the version of a time: %v", err)
	}
	if _, err := slave.RestoreTrash(f.root, slave.RestoreOptions{Path: "a", Dest: filepath.Join(out, "a2")}); err == nil {
		t.Error("a version restored twice")
	}
	// Inside a directory kept whole (the purge of the root kept d).
	if _, err := slave.RestoreTrash(f.root, slave.RestoreOptions{Path: "d/x\ny", Dest: filepath.Join(out, "x")}); err != nil || readFile(t, filepath.Join(out, "x")) != "in d" {
		t.Fatalf("restore from inside a kept directory: %v", err)
	}
	// Into the replica: refused, unless asked; never into .georep.
	if _, err := slave.RestoreTrash(f.root, slave.RestoreOptions{Path: "d", Dest: f.path("d")}); err == nil || !strings.Contains(err.Error(), "replica") {
		t.Errorf("restore into the replica: %v", err)
	}
	if _, err := slave.RestoreTrash(f.root, slave.RestoreOptions{Path: "d", Dest: f.path(wire.ReservedName + "/d"), IntoReplica: true}); err == nil {
		t.Error("restored into the reserved directory")
	}
	if _, err := slave.RestoreTrash(f.root, slave.RestoreOptions{Path: "d", Dest: f.path("d-back"), IntoReplica: true}); err != nil || !exists(f.path("d-back")) {
		t.Fatalf("restore into the replica, asked: %v", err)
	}
	if vs := f.trashed(); len(vs) != 0 {
		t.Errorf("left in the trash:%s", showVersions(vs))
	}
	// Another filesystem: a copy, then the version goes.
	var shm, tmp unix.Stat_t
	if unix.Stat("/dev/shm", &shm) == nil && unix.Stat(out, &tmp) == nil && shm.Dev != tmp.Dev && unix.Access("/dev/shm", unix.W_OK) == nil {
		B := newGFID(t)
		f.ok(opMkdir(B, gfid.Root, "b"), opCreate(newGFID(t), B, "f"), opSymlink(newGFID(t), B, "l", "f"))
		writeAt(t, f.path("b/f"), "across")
		f.ok(opPurge(gfid.Root, "d-back"))
		dir, err := os.MkdirTemp("/dev/shm", "georep-trash-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		if _, err := slave.RestoreTrash(f.root, slave.RestoreOptions{Path: "b", Dest: filepath.Join(dir, "b")}); err != nil {
			t.Fatalf("restore to another filesystem: %v", err)
		}
		if readFile(t, filepath.Join(dir, "b/f")) != "across" {
			t.Error("the copy's content")
		}
		if target, _ := os.Readlink(filepath.Join(dir, "b/l")); target != "f" {
			t.Error("the copy's symlink")
		}
		if vs := f.trashed(); len(vs) != 0 {
			t.Errorf("left in the trash after a copy:%s", showVersions(vs))
		}
	}
}

// BenchmarkTrash measures what the trash costs a removal: UNLINKs of
// 4 KiB files (and of empty ones: the syscalls alone), RENAMEs over 4 KiB
// files, RMDIRs of directories of 10 such files; applied in calls of 100
// ops, without and with the trash.
func BenchmarkTrash(b *testing.B) {
	for _, kind := range []string{"unlink", "unlink-empty", "rename-over", "rmdir-tree"} {
		for _, on := range []bool{false, true} {
			name := kind + "/off"
			if on {
				name = kind + "/on"
			}
			b.Run(name, func(b *testing.B) {
				var tweak []func(*slave.Config)
				if on {
					tweak = append(tweak, trashOn(nil, slave.TrashConfig{}))
				}
				f := newFixture(b, tweak...)
				content := strings.Repeat("z", 4096)
				D := newGFID(b)
				f.ok(opMkdir(D, gfid.Root, "d"))
				var setup, ops []*pb.EntryOp
				var files []string
				for i := 0; i < b.N; i++ {
					n := fmt.Sprintf("f%d", i)
					switch kind {
					case "unlink", "unlink-empty":
						g := newGFID(b)
						setup = append(setup, opCreate(g, D, n))
						if kind == "unlink" {
							files = append(files, "d/"+n)
						}
						ops = append(ops, opUnlink(g, D, n))
					case "rename-over":
						g, v := newGFID(b), newGFID(b)
						setup = append(setup, opCreate(g, D, n), opCreate(v, D, n+".old"))
						files = append(files, "d/"+n, "d/"+n+".old")
						ops = append(ops, opRename(g, D, n, D, n+".old"))
					case "rmdir-tree":
						g := newGFID(b)
						setup = append(setup, opMkdir(g, D, n))
						for j := 0; j < 10; j++ {
							setup = append(setup, opCreate(newGFID(b), g, fmt.Sprint(j)))
							files = append(files, fmt.Sprintf("d/%s/%d", n, j))
						}
						ops = append(ops, opRmdir(g, D, n))
					}
				}
				for len(setup) > 0 {
					k := min(len(setup), 1000)
					f.entry(setup[:k]...)
					setup = setup[k:]
				}
				for _, p := range files {
					writeAt(b, f.path(p), content)
				}
				unix.Sync()
				b.ResetTimer()
				for len(ops) > 0 {
					k := min(len(ops), 100)
					for _, r := range f.entry(ops[:k]...) {
						if r.GetStatus() != stOK {
							b.Fatalf("%v: %s", r.GetStatus(), r.GetError())
						}
					}
					ops = ops[k:]
				}
				b.StopTimer()
			})
		}
	}
}

// BenchmarkTrashPrune measures where the trash puts the cost it saves a
// removal: the pruner's, per version (a 4 KiB file) it removes.
func BenchmarkTrashPrune(b *testing.B) {
	clock := newFakeClock()
	f := newFixture(b, trashOn(clock, slave.TrashConfig{Keep: time.Hour}))
	D := newGFID(b)
	f.ok(opMkdir(D, gfid.Root, "d"))
	content := strings.Repeat("z", 4096)
	var setup, ops []*pb.EntryOp
	for i := 0; i < b.N; i++ {
		g, n := newGFID(b), fmt.Sprintf("f%d", i)
		setup = append(setup, opCreate(g, D, n))
		ops = append(ops, opUnlink(g, D, n))
	}
	for len(setup) > 0 {
		k := min(len(setup), 1000)
		f.entry(setup[:k]...)
		setup = setup[k:]
	}
	for i := 0; i < b.N; i++ {
		writeAt(b, f.path(fmt.Sprintf("d/f%d", i)), content)
	}
	for len(ops) > 0 {
		k := min(len(ops), 1000)
		f.entry(ops[:k]...)
		ops = ops[k:]
	}
	unix.Sync()
	clock.Advance(2 * time.Hour)
	b.ResetTimer()
	res, err := f.s.PruneTrash(context.Background())
	b.StopTimer()
	if err != nil || res.Versions != b.N {
		b.Fatalf("pruned %+v, %v; want %d versions", res, err, b.N)
	}
}

// TestTrashTreeWithSharedLink: a directory kept whole does not keep a
// name of a file that has another name in the replica (its data lives on
// there): the replica's copy has as many links as the master's (a quick
// soak with the trash on found nlink 2 on the slave, 1 on the master).
// Names linked to each other within the tree keep their data once.
func TestTrashTreeWithSharedLink(t *testing.T) {
	f := newFixture(t, trashOn(nil, slave.TrashConfig{}))
	D, F, G := newGFID(t), newGFID(t), newGFID(t)
	f.ok(opMkdir(D, gfid.Root, "d"), opCreate(F, gfid.Root, "outside"), opLink(F, D, "inside"),
		opCreate(G, D, "g1"), opLink(G, D, "g2"))
	writeAt(t, f.path("outside"), "shared")
	writeAt(t, f.path("d/g1"), "both inside")
	f.ok(opRmdir(D, gfid.Root, "d"))
	if st := lstat(t, f.path("outside")); st.Nlink != 1 {
		t.Errorf("outside: %d links after its other name's directory went to the trash, want 1", st.Nlink)
	}
	v := version(t, f.trashed(), "d")
	names := listNames(t, f.inTrash(v))
	if len(names) != 1 || (names[0] != "g1" && names[0] != "g2") {
		t.Fatalf("the kept d holds %q; want one of g1, g2", names)
	}
	if got := readFile(t, filepath.Join(f.inTrash(v), names[0])); got != "both inside" {
		t.Errorf("kept %s: %q", names[0], got)
	}
}
