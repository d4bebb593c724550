package master_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/testenv"
	"github.com/georep/georep/internal/treecmp"
	"github.com/georep/georep/master"
)

// mkfile writes data at rel under root, making its directories.
func mkfile(t *testing.T, root, rel, data string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func exists(t *testing.T, p string) bool {
	t.Helper()
	_, err := os.Lstat(p)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return err == nil
}

// requireIncludedEqual compares the trees on what the rules replicate:
// every path of the master that want says is in must be on the slave,
// equal (treecmp's differences under excluded paths are ignored), and the
// slave must hold nothing excluded but what keep allows.
func requireIncludedEqual(t *testing.T, mroot, sroot string, excluded func(rel string) bool) {
	t.Helper()
	diffs, err := treecmp.Compare(mroot, sroot, testenv.CompareOptions)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range diffs {
		if d.Path == treecmp.RootPath || excluded(d.Path) {
			continue // the root's mtime moves with excluded names; excluded paths differ by design
		}
		t.Errorf("replica differs: %s", d)
		n++
	}
	if n > 0 {
		t.FailNow()
	}
}

// TestRulesOneShotAndLive: excluded paths are not sent (one-shot and
// live), the root's rules file and --exclude/--include flags combine, a
// rename from an included to an excluded name is a removal on the slave
// and the reverse a creation, names that are not UTF-8 are matched byte
// for byte, and what the slave holds of an excluded path is left alone.
func TestRulesOneShotAndLive(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	mkfile(t, mroot, master.RulesFile, "# test rules\n*.tmp\n/build/\ncache/\n!keep.tmp\n\xffbin*\n")
	mkfile(t, mroot, "a.txt", "a")
	mkfile(t, mroot, "a.tmp", "temp")
	mkfile(t, mroot, "keep.tmp", "kept by the negation")
	mkfile(t, mroot, "d/b.tmp", "temp too")
	mkfile(t, mroot, "d/c.txt", "c")
	mkfile(t, mroot, "build/out.o", strings.Repeat("o", 10000))
	mkfile(t, mroot, "src/build/x.c", "an unanchored build is in")
	mkfile(t, mroot, "x/cache/big", strings.Repeat("c", 10000))
	mkfile(t, mroot, "x/cache.txt", "a file named like the dir pattern is in")
	mkfile(t, mroot, "\xffbinary", "non-UTF-8 excluded")
	mkfile(t, mroot, "\xfebinary", "non-UTF-8 included")
	mkfile(t, mroot, "logs/app.log", "log")
	// A copy of an excluded file the slave has already (from before the
	// rules): never touched.
	mkfile(t, sroot, "build/stale.o", "the slave's own")

	sl := testenv.StartSlave(t, sroot)
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.Excludes = []string{"logs/", "!logs/"} })
	sum := runOnce(t, m)
	excluded := func(rel string) bool {
		return strings.HasSuffix(rel, ".tmp") && !strings.HasSuffix(rel, "keep.tmp") || rel == "build" || strings.HasPrefix(rel, "build/") ||
			strings.Contains(rel, "cache/") || strings.HasSuffix(rel, "/cache") || strings.HasPrefix(rel, "\xffbin")
	}
	requireIncludedEqual(t, mroot, sroot, excluded)
	for _, rel := range []string{"a.tmp", "d/b.tmp", "build/out.o", "x/cache", "\xffbinary"} {
		if exists(t, filepath.Join(sroot, rel)) {
			t.Errorf("%q is excluded but on the slave", rel)
		}
	}
	for _, rel := range []string{"keep.tmp", "src/build/x.c", "x/cache.txt", "\xfebinary", "logs/app.log", master.RulesFile} {
		if !exists(t, filepath.Join(sroot, rel)) {
			t.Errorf("%q is included but not on the slave", rel)
		}
	}
	if data, err := os.ReadFile(filepath.Join(sroot, "build/stale.o")); err != nil || string(data) != "the slave's own" {
		t.Errorf("the slave's copy under an excluded directory was touched: %q %v", data, err)
	}
	if sum.Crawl.Excluded == 0 || sum.Batch.BytesSent >= 20000 {
		t.Errorf("crawl excluded %d entries, sent %d bytes: the excluded data went", sum.Crawl.Excluded, sum.Batch.BytesSent)
	}

	live := startLive(t, m)
	waitSynced(t, m, time.Minute)
	mkfile(t, mroot, "new.tmp", "excluded, made live")
	mkfile(t, mroot, "d/new.txt", "included, made live")
	mkfile(t, mroot, "build/new.o", "excluded dir, live")
	mv := func(from, to string) {
		t.Helper()
		if err := os.Rename(filepath.Join(mroot, from), filepath.Join(mroot, to)); err != nil {
			t.Fatal(err)
		}
	}
	mv("a.txt", "a-now.tmp")           // in -> out: removed on the slave
	mv("d/b.tmp", "src/b-now.txt")     // out -> in: made on the slave, data and all
	mv("d", "d.tmp")                   // a directory in -> out
	mkfile(t, mroot, "y/cache/z", "z") // an excluded directory with content...
	mv("y/cache", "y/nocache")         // ...moved in: made and crawled whole
	mkfile(t, mroot, "x/cache/big", "rewritten, still excluded")
	if err := os.Remove(filepath.Join(mroot, "a.tmp")); err != nil {
		t.Fatal(err)
	}
	waitSynced(t, m, time.Minute)
	if err := live.stop(); err != nil {
		t.Fatal(err)
	}
	requireIncludedEqual(t, mroot, sroot, excluded)
	for _, rel := range []string{"a.txt", "a-now.tmp", "d", "d.tmp", "new.tmp", "build/new.o", "y/cache"} {
		if exists(t, filepath.Join(sroot, rel)) {
			t.Errorf("%q is not on the master or is excluded, but on the slave", rel)
		}
	}
	for rel, want := range map[string]string{"src/b-now.txt": "temp too", "y/nocache/z": "z", "keep.tmp": "kept by the negation"} {
		if got, err := os.ReadFile(filepath.Join(sroot, rel)); err != nil || string(got) != want {
			t.Errorf("%q moved into what is replicated: on the slave %q, %v; want %q", rel, got, err, want)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(sroot, "d.tmp/b-now.txt")); got != nil {
		t.Errorf("d.tmp is excluded, yet on the slave")
	}
}

// TestRulesChangedReconciles: a restart with other rules crawls (status
// says why): newly included entries are sent; newly excluded ones stay on
// the slave, unless DeleteExcluded, which removes them.
func TestRulesChangedReconciles(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	mkfile(t, mroot, "a.log", "log a")
	mkfile(t, mroot, "b.dat", "data b")
	mkfile(t, mroot, "sub/c.dat", "data c")
	sl := testenv.StartSlave(t, sroot)
	state := filepath.Join(t.TempDir(), "state")
	start := func(excl []string, del bool) *master.Master {
		t.Helper()
		return newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir, c.Excludes, c.DeleteExcluded = state, excl, del })
	}
	runLive := func(m *master.Master) {
		t.Helper()
		live := startLive(t, m)
		waitSynced(t, m, time.Minute)
		if err := live.stop(); err != nil {
			t.Fatal(err)
		}
		m.Close()
	}
	runLive(start([]string{"*.log"}, false))
	if exists(t, filepath.Join(sroot, "a.log")) || !exists(t, filepath.Join(sroot, "b.dat")) {
		t.Fatal("first rules not applied")
	}
	// *.dat excluded now, *.log included: a.log is sent, the .dat files stay.
	runLive(start([]string{"*.dat"}, false))
	if !exists(t, filepath.Join(sroot, "a.log")) {
		t.Error("a newly included file was not sent")
	}
	if !exists(t, filepath.Join(sroot, "b.dat")) || !exists(t, filepath.Join(sroot, "sub/c.dat")) {
		t.Error("newly excluded files were removed without DeleteExcluded")
	}
	// The same rules with DeleteExcluded: they go.
	runLive(start([]string{"*.dat"}, true))
	if exists(t, filepath.Join(sroot, "b.dat")) || exists(t, filepath.Join(sroot, "sub/c.dat")) {
		t.Error("DeleteExcluded left excluded files on the slave")
	}
	if !exists(t, filepath.Join(sroot, "a.log")) || !exists(t, filepath.Join(sroot, "sub")) {
		t.Error("DeleteExcluded removed included entries")
	}
}

// TestRulesBadInput: a pattern that does not parse, or a rules file that
// cannot be read, stops the master before it does anything, with the
// reason; nothing on the slave is removed because of it.
func TestRulesBadInput(t *testing.T) {
	mroot := t.TempDir()
	mkfile(t, mroot, master.RulesFile, "ok\n[unterminated\n")
	cfg := master.Config{Root: mroot, Slave: "127.0.0.1:1", StateDir: filepath.Join(t.TempDir(), "s"), Insecure: true}
	if _, err := master.New(cfg); err == nil || !strings.Contains(err.Error(), master.RulesFile+":2") || !strings.Contains(err.Error(), "[unterminated") {
		t.Errorf("bad rules file: %v; want its name, line 2 and the pattern", err)
	}
	os.Remove(filepath.Join(mroot, master.RulesFile))
	cfg.Excludes = []string{"a//b"}
	if _, err := master.New(cfg); err == nil || !strings.Contains(err.Error(), "a//b") {
		t.Errorf("bad --exclude: %v", err)
	}
	cfg.Excludes = nil
	cfg.ExcludeFrom = []string{filepath.Join(t.TempDir(), "missing")}
	if _, err := master.New(cfg); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing --exclude-from file: %v", err)
	}
	// A rules file that is a directory cannot be read.
	cfg.ExcludeFrom = nil
	if err := os.Mkdir(filepath.Join(mroot, master.RulesFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := master.New(cfg); err == nil || !bytes.Contains([]byte(err.Error()), []byte(master.RulesFile)) {
		t.Errorf("rules file that is a directory: %v", err)
	}
}

// TestRulesMovedInComparedByContent: a directory the slave kept while it
// was excluded (rules changed without DeleteExcluded) and that changed
// meanwhile, by a write that put the mtime back, is compared by content
// when it is moved into what is replicated: its files' size and mtime
// tell nothing (a quick soak with rules ended with such a file's content
// wrong on the slave).
func TestRulesMovedInComparedByContent(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	mkfile(t, mroot, "a.ex/f", "AAAA old content")
	sl := testenv.StartSlave(t, sroot)
	state := filepath.Join(t.TempDir(), "state")
	m := newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir = state })
	runOnce(t, m)
	m.Close()

	m = newMaster(t, mroot, sl.Addr, func(c *master.Config) { c.StateDir, c.Excludes = state, []string{"*.ex/"} })
	live := startLive(t, m)
	waitSynced(t, m, time.Minute)
	if !exists(t, filepath.Join(sroot, "a.ex/f")) {
		t.Fatal("the slave's copy of a newly excluded directory went without DeleteExcluded")
	}
	// Well after the write of f's gfid (a ctime within 50 ms of it is
	// taken for that write: see batch.stampedOnly).
	time.Sleep(200 * time.Millisecond)
	f := filepath.Join(mroot, "a.ex/f")
	fi, err := os.Stat(f)
	if err != nil {
		t.Fatal(err)
	}
	mkfile(t, mroot, "a.ex/f", "BBBB new content")
	if err := os.Chtimes(f, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the stime passes the write
	waitSynced(t, m, time.Minute)
	if err := os.Rename(filepath.Join(mroot, "a.ex"), filepath.Join(mroot, "a2")); err != nil {
		t.Fatal(err)
	}
	waitSynced(t, m, time.Minute)
	if err := live.stop(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(sroot, "a2/f")); err != nil || string(got) != "BBBB new content" {
		t.Fatalf("a2/f on the slave: %q, %v; want the master's content", got, err)
	}
}
