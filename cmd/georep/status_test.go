package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/georep/georep/internal/syncstatus"
	"github.com/georep/georep/internal/testtree"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update to accept):\n--- got\n%s--- want\n%s", name, got, want)
	}
}

// tableSnapshots are three sessions as the table must show them: one
// Active in a changelog crawl with a completed checkpoint, one Faulty in
// its hybrid crawl, one Stopped that never synced, with an invalid
// checkpoint.
func tableSnapshots() []*syncstatus.Snapshot {
	at := func(s int) time.Time { return time.Date(2026, 11, 21, 9, 40, s, 0, time.UTC) }
	return []*syncstatus.Snapshot{
		{Master: "db1:/srv/data", Slave: "127.0.0.1:7070", State: syncstatus.Active, Crawl: syncstatus.ChangelogCrawl,
			LastSynced: at(10), Started: at(0).Add(-time.Hour), Updated: at(12),
			Pending: syncstatus.Pending{Entry: 12, Data: 3, Meta: 1},
			Totals:  syncstatus.Totals{FilesSynced: 123456, Failures: 2},
			Progress: &syncstatus.Progress{Started: at(0).Add(-time.Hour), Finished: true, FilesTotal: 100000, BytesTotal: 5 << 30,
				FilesDone: 100000, BytesDone: 5 << 30},
			Checkpoint: &syncstatus.Checkpoint{Target: at(5), Completed: at(11)}},
		{Master: "db2:/srv/lab", Slave: "127.0.0.1:7071", State: syncstatus.Faulty, Crawl: syncstatus.HybridCrawl,
			Fault: "master: entry ops: slave unreachable", Started: at(0), Updated: at(30),
			Pending: syncstatus.Pending{Data: 40, Files: 500, Bytes: 3 << 20, Deletes: 4},
			Progress: &syncstatus.Progress{Started: at(0), DataStarted: at(10), FilesTotal: 1000, BytesTotal: 6 << 20,
				FilesDone: 500, BytesDone: 3 << 20},
			Checkpoint: &syncstatus.Checkpoint{Target: at(20)}},
		{Master: "db3:/srv/web", Slave: "127.0.0.1:7072", State: syncstatus.Stopped,
			Checkpoint: &syncstatus.Checkpoint{Target: at(1), Invalid: true}},
	}
}

// TestStatusTable pins the table's columns and cells.
func TestStatusTable(t *testing.T) {
	var plain, detail bytes.Buffer
	renderStatus(&plain, tableSnapshots(), false, time.UTC)
	renderStatus(&detail, tableSnapshots(), true, time.UTC)
	golden(t, "status.golden", plain.String())
	golden(t, "status-detail.golden", detail.String())
	// --detail fits a 120-column terminal (issue 18.13: it was some 300
	// columns wide).
	for _, l := range strings.Split(detail.String(), "\n") {
		if len([]rune(l)) > 120 {
			t.Errorf("detail line of %d columns: %q", len([]rune(l)), l)
		}
	}
}

func TestProgressLine(t *testing.T) {
	s := *tableSnapshots()[1]
	got := progressLine(s, s.Updated)
	// 3 MiB in the 20 s since the walk ended: 3 MiB left take 20 s.
	want := "Hybrid Crawl: 500/1000 files, 3.0 MiB/6.0 MiB [==========          ]  50% ETA 20s"
	if got != want {
		t.Errorf("progress line\n got %q\nwant %q", got, want)
	}
	s.Progress = &syncstatus.Progress{Listing: true, FilesTotal: 7, BytesTotal: 1536}
	if got := progressLine(s, s.Updated); got != "Hybrid Crawl: walking the tree: 7 files, 1.5 KiB found" {
		t.Errorf("while walking: %q", got)
	}
	// Not a terminal: no bar at all.
	if newProgressBar(&bytes.Buffer{}) != nil {
		t.Error("a progress bar on a buffer")
	}
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if newProgressBar(f) != nil {
		t.Error("a progress bar on a regular file")
	}
}

// TestStatusNoSession: a state dir with no session is a one-line error
// and exit status 1.
func TestStatusNoSession(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"status", "--state-dir", dir},
		{"status", "--state-dir", filepath.Join(dir, "missing"), "--detail"},
		{"checkpoint", "set", "now", "--state-dir", dir},
		{"checkpoint", "clear", "--state-dir", dir},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != 1 {
			t.Errorf("%v: exit %d, want 1", args, code)
		}
		if msg := errb.String(); strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "no georep session in") {
			t.Errorf("%v: stderr %q", args, msg)
		}
	}
}

func TestCheckpointTimeArg(t *testing.T) {
	now := time.Unix(1795255072, 0)
	for _, c := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"", now, true}, {"now", now, true}, {"1700000000", time.Unix(1700000000, 0), true},
		{"1700000000.5", time.Unix(1700000000, 5e8), true},
		{"0", time.Time{}, false}, {"-5", time.Time{}, false}, {"1e30", time.Time{}, false},
		{"NaN", time.Time{}, false}, {"yesterday", time.Time{}, false},
	} {
		got, err := parseCheckpointTime(c.in, now)
		if (err == nil) != c.ok || !got.Equal(c.want) {
			t.Errorf("%q: %v %v", c.in, got, err)
		}
		if err != nil && !errors.Is(err, errUsage) {
			t.Errorf("%q: %v is not a usage error", c.in, err)
		}
	}
}

// statusJSON runs `georep status --json` as a process.
func statusJSON(t *testing.T, stateDir string) syncstatus.Snapshot {
	t.Helper()
	out, err := exec.Command(georepBin, "status", "--state-dir", stateDir, "--json").Output()
	if err != nil {
		t.Fatalf("georep status: %v", err)
	}
	var snaps []syncstatus.Snapshot
	if err := json.Unmarshal(out, &snaps); err != nil || len(snaps) != 1 {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return snaps[0]
}

var metricsRE = regexp.MustCompile(`url=(http://127\.0\.0\.1:[0-9]+/metrics)`)

// TestProcessesStatus runs it all as processes: a one-shot master, then
// `georep status` with no master (Stopped, its figures); a live master
// with metrics, which a second master may not displace; `georep status`
// while it runs, a checkpoint set from the command line that the master
// completes, a scrape; and after SIGTERM, the totals kept (a restart goes
// on counting from them).
func TestProcessesStatus(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	if err := testtree.Build(mroot, testtree.Options{BigFileSize: 1 << 20, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	addr := startSlaveProcess(t, sroot)
	state := filepath.Join(t.TempDir(), "master-state")
	args := []string{"--root", mroot, "--slave", addr, "--state-dir", state, "--insecure"}
	if code, out, errs := runMasterProcess(t, append(args, "--oneshot")...); code != 0 {
		t.Fatalf("one-shot exited %d: %s %s", code, out, errs)
	}
	s := statusJSON(t, state)
	if s.State != syncstatus.Stopped || s.Totals.FilesSynced == 0 || s.LastSynced.IsZero() || s.Progress == nil || !s.Progress.Finished {
		t.Fatalf("after the one-shot run: %+v", s)
	}
	synced := s.Totals.FilesSynced
	table, err := exec.Command(georepBin, "status", "--root", mroot, "--slave", addr, "--state-dir", state).CombinedOutput()
	if err == nil || !strings.Contains(string(table), "not both") {
		t.Errorf("status with both ways of naming a session: %v %s", err, table)
	}
	table, err = exec.Command(georepBin, "status", "--state-dir", state).Output()
	if err != nil || !strings.Contains(string(table), "Stopped") || !strings.Contains(string(table), "LAST_SYNCED") {
		t.Fatalf("status table: %v\n%s", err, table)
	}

	cmd := exec.Command(georepBin, append([]string{"master", "--metrics-addr", "127.0.0.1:0", "--change-interval", "50ms"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	logs := make(chan string, 1)
	metricsURL := make(chan string, 1)
	go func() {
		var all strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if m := metricsRE.FindStringSubmatch(sc.Text()); m != nil {
				metricsURL <- m[1]
			}
		}
		logs <- all.String()
		exited <- cmd.Wait()
	}()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	var url string
	select {
	case url = <-metricsURL:
	case <-time.After(time.Minute):
		t.Fatal("the live master did not report its metrics address")
	}
	waitFor := func(what string, ok func(syncstatus.Snapshot) bool) syncstatus.Snapshot {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			s := statusJSON(t, state)
			if ok(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: status %+v", what, s)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("live master in its changelog crawl", func(s syncstatus.Snapshot) bool {
		return s.State == syncstatus.Active && s.Crawl == syncstatus.ChangelogCrawl
	})
	if code, out, errs := runMasterProcess(t, append(args, "--oneshot")...); code != 1 || !strings.Contains(errs, "already running") {
		t.Errorf("a second master beside the live one: exit %d: %s %s", code, out, errs)
	}
	if err := os.WriteFile(filepath.Join(mroot, "after checkpoint"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(georepBin, "checkpoint", "set", "now", "--state-dir", state).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "checkpoint set at") {
		t.Fatalf("checkpoint set: %v %s", err, out)
	}
	live := waitFor("checkpoint completed", func(s syncstatus.Snapshot) bool {
		return s.Checkpoint != nil && s.Checkpoint.Answer() == syncstatus.CheckpointYes
	})
	if _, err := os.Stat(filepath.Join(sroot, "after checkpoint")); err != nil {
		t.Errorf("checkpoint completed without the file written before it: %v", err)
	}
	if live.Totals.FilesSynced != synced+1 {
		t.Errorf("files synced %d, want %d (the one-shot's and the new file)", live.Totals.FilesSynced, synced+1)
	}
	table, err = exec.Command(georepBin, "status", "--state-dir", state, "--detail").Output()
	if err != nil || !strings.Contains(string(table), "Active") || !strings.Contains(string(table), "Yes") {
		t.Errorf("status --detail while live: %v\n%s", err, table)
	}

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"georep_files_synced_total ", "georep_checkpoint_completed 1", `georep_status{status="Active"} 1`, "georep_lag_seconds ", "georep_batch_duration_seconds_count"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("scrape lacks %q", want)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-logs:
		if err := <-exited; err != nil {
			t.Fatalf("live master after SIGTERM: %v\n%s", err, l)
		}
		exited <- nil
		// At info, the log says when the session starts, opens, catches
		// up and stops (issue 18.13).
		for _, want := range []string{"live session starting", "session open", "caught up", "live session stopped"} {
			if !strings.Contains(l, want) {
				t.Errorf("the live master's log lacks %q:\n%s", want, l)
			}
		}
	case <-time.After(time.Minute):
		t.Fatal("the live master did not stop")
	}
	s = statusJSON(t, state)
	if s.State != syncstatus.Stopped || s.Totals.FilesSynced != synced+1 || s.Checkpoint.Answer() != syncstatus.CheckpointYes ||
		!s.Checkpoint.Completed.Equal(live.Checkpoint.Completed) {
		t.Fatalf("after the stop: %+v", s)
	}
	if _, err := os.Lstat(syncstatus.SocketPath(state)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	// A restart counts on from the kept totals.
	if err := os.WriteFile(filepath.Join(mroot, "after restart"), []byte("y"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runMasterProcess(t, append(args, "--oneshot")...); code != 0 {
		t.Fatalf("one-shot after live exited %d: %s %s", code, out, errs)
	}
	if s := statusJSON(t, state); s.Totals.FilesSynced != synced+2 || s.Checkpoint.Answer() != syncstatus.CheckpointYes {
		t.Errorf("after a restart: files synced %d, want %d; checkpoint %s", s.Totals.FilesSynced, synced+2, s.Checkpoint.Answer())
	}
}

// TestStatusAfterFailedRun: a master that stopped on an error leaves it
// as the session's last fault.
func TestStatusAfterFailedRun(t *testing.T) {
	dir, state := t.TempDir(), filepath.Join(t.TempDir(), "state")
	var out, errb bytes.Buffer
	ctx := context.Background()
	if code := run(ctx, []string{"master", "--root", dir, "--slave", "127.0.0.1:1", "--oneshot", "--state-dir", state, "--insecure"}, &out, &errb); code != 1 {
		t.Fatalf("master with an unreachable slave: exit %d: %s", code, errb.String())
	}
	out.Reset()
	if code := run(ctx, []string{"status", "--state-dir", state}, &out, &errb); code != 0 {
		t.Fatalf("status: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "Stopped") || !strings.Contains(out.String(), "stopped Faulty: ") || !strings.Contains(out.String(), "unreachable") {
		t.Errorf("status after a failed run:\n%s", out.String())
	}
}

// TestStatusListsSessions: with no session named, status shows every
// session under the default state directories, one row each.
func TestStatusListsSessions(t *testing.T) {
	base := t.TempDir()
	ctx := context.Background()
	o := statusOptions{base: base}
	var out bytes.Buffer
	if err := runStatus(ctx, o, &out); err == nil || !strings.Contains(err.Error(), "no georep session under "+base) {
		t.Fatalf("no sessions: %v", err)
	}
	for i, name := range []string{"master-b", "master-a", "slave-c"} {
		svc, err := syncstatus.Start(syncstatus.Options{StateDir: filepath.Join(base, name), Master: "h:/" + name, Slave: "127.0.0.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		svc.Tracker.SetIdentity(syncstatus.Identity{Session: name, MasterVolume: "v"})
		if i > 0 {
			if err := svc.Close(); err != nil { // one stays running
				t.Fatal(err)
			}
		} else {
			defer svc.Close()
		}
	}
	if err := runStatus(ctx, o, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[2], "h:/master-a ") || !strings.Contains(lines[2], "Stopped") ||
		!strings.HasPrefix(lines[3], "h:/master-b ") || !strings.Contains(lines[3], "Initializing") {
		t.Errorf("sessions listed:\n%s", out.String())
	}
}
