package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/georep/georep/changelog"
	"github.com/georep/georep/internal/gfid"
	"github.com/georep/georep/internal/testenv"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestChangelogDump builds a journal as a live master would and dumps it
// while the journal is open, then after it is closed.
func TestChangelogDump(t *testing.T) {
	const base = int64(1_700_000_000_000_000_000) // 2023-11-14T22:13:20Z
	g1 := testenv.MustGFID(t, "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0")
	g2 := testenv.MustGFID(t, "11111111-2222-4333-8444-555555555555")
	p := testenv.MustGFID(t, "aaaaaaaa-bbbb-4ccc-9ddd-eeeeeeeeeeee")
	state := t.TempDir()
	j, err := changelog.OpenJournal(filepath.Join(state, "changelog"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.IdleCommit = 0
	recs1 := []changelog.Record{
		{Kind: changelog.KindEntry, GFID: g1, Op: changelog.OpCreate, Mode: 0o100644, Parent: p, Name: "name with space\n"},
		{Kind: changelog.KindData, GFID: g1},
		{Kind: changelog.KindEntry, GFID: g2, Op: changelog.OpMkdir, Mode: 0o40755, UID: 1000, GID: 100, Parent: gfid.Root, Name: "caf\xe9 \xff"},
		{Kind: changelog.KindMeta, GFID: g2, Op: changelog.OpSetxattr},
	}
	recs2 := []changelog.Record{
		{Kind: changelog.KindEntry, GFID: g1, Op: changelog.OpRename, Parent: p, Name: "name with space\n", Parent2: g2, Name2: "%41 "},
		{Kind: changelog.KindEntry, GFID: g2, Op: changelog.OpSymlink, Parent: p, Name: "ln", Target: "../t\tx", HasTarget: true},
		{Kind: changelog.KindEntry, GFID: g1, Op: changelog.OpUnlink, Parent: g2, Name: "\n"},
	}
	steps := []struct {
		recs []changelog.Record
		end  int64
		gap  string
	}{
		{recs1, base + 300_000_000, ""},
		{nil, base + 600_000_000, ""},
		{recs2, base + 900_000_000, "inotify queue overflow"},
	}
	if err := j.Begin(base); err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		for i := range s.recs {
			if err := j.Add(&s.recs[i]); err != nil {
				t.Fatal(err)
			}
		}
		if s.gap != "" {
			err = j.MarkGap(s.end, s.gap)
		} else {
			_, err = j.Rollover(s.end)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	want := `segment (2023-11-14T22:13:20Z .. 2023-11-14T22:13:20.3Z] CHANGELOG.1700000000300000000
  CREATE 0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0 0100644 0:0 aaaaaaaa-bbbb-4ccc-9ddd-eeeeeeeeeeee/"name with space\n"
  DATA 0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0
  MKDIR 11111111-2222-4333-8444-555555555555 040755 1000:100 00000000-0000-0000-0000-000000000001/"caf\xe9 \xff"
  SETXATTR 11111111-2222-4333-8444-555555555555
segment (2023-11-14T22:13:20.3Z .. 2023-11-14T22:13:20.6Z] -
GAP (2023-11-14T22:13:20.6Z .. 2023-11-14T22:13:20.9Z] CHANGELOG.1700000000900000000 "inotify queue overflow"
  RENAME 0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0 aaaaaaaa-bbbb-4ccc-9ddd-eeeeeeeeeeee/"name with space\n" -> 11111111-2222-4333-8444-555555555555/"%41 "
  SYMLINK 11111111-2222-4333-8444-555555555555 aaaaaaaa-bbbb-4ccc-9ddd-eeeeeeeeeeee/"ln" -> "../t\tx"
  UNLINK 0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0 11111111-2222-4333-8444-555555555555/"\n"
`
	check := func(t *testing.T, want string) {
		t.Helper()
		code, out, errs := runCLI(t, "changelog", "dump", "--state-dir", state)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		if out != want {
			t.Fatalf("dump:\n%s\nwant:\n%s", out, want)
		}
	}
	head := "journal " + filepath.Join(state, "changelog")
	// While the master runs: a record in the open segment is not shown.
	if err := j.Add(&changelog.Record{Kind: changelog.KindData, GFID: g2}); err != nil {
		t.Fatal(err)
	}
	check(t, head+": 3 entries\n"+want)
	if err := j.End(base + 1_000_000_000); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	check(t, head+": 4 entries\n"+want+
		"segment (2023-11-14T22:13:20.9Z .. 2023-11-14T22:13:21Z] CHANGELOG.1700000001000000000\n"+
		"  DATA 11111111-2222-4333-8444-555555555555\n")
}

func TestChangelogDumpConsumed(t *testing.T) {
	const base = int64(1_700_000_000_000_000_000)
	state := t.TempDir()
	j, err := changelog.OpenJournal(filepath.Join(state, "changelog"))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Begin(base); err != nil {
		t.Fatal(err)
	}
	r := changelog.Record{Kind: changelog.KindData, GFID: gfid.Root}
	for i := int64(1); i <= 2; i++ {
		if err := j.Add(&r); err != nil {
			t.Fatal(err)
		}
		if _, err := j.Rollover(base + i*1_000_000_000); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Done(base + 1_000_000_000); err != nil {
		t.Fatal(err)
	}
	j.Close()
	code, out, errs := runCLI(t, "changelog", "dump", "--state-dir", state)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	want := "journal " + filepath.Join(state, "changelog") + ": 1 entries\n" +
		"consumed (2023-11-14T22:13:20Z .. 2023-11-14T22:13:21Z] (files deleted)\n" +
		"segment (2023-11-14T22:13:21Z .. 2023-11-14T22:13:22Z] CHANGELOG.1700000002000000000\n" +
		"  DATA 00000000-0000-0000-0000-000000000001\n"
	if out != want {
		t.Fatalf("dump:\n%s\nwant:\n%s", out, want)
	}
}

func TestChangelogCmdErrors(t *testing.T) {
	dir := t.TempDir()
	derived := defaultStateDir("master", filepath.Join(dir, "root"), ":127.0.0.1:9")
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no subcommand", []string{"changelog"}, 2, "missing subcommand"},
		{"unknown subcommand", []string{"changelog", "list"}, 2, `unknown subcommand "list"`},
		{"no state dir", []string{"changelog", "dump"}, 2, "--state-dir, or --root and --slave, or --config, is required"},
		{"root without slave", []string{"changelog", "dump", "--root", dir}, 2, "is required"},
		{"both", []string{"changelog", "dump", "--state-dir", dir, "--root", dir, "--slave", "127.0.0.1:9"}, 2, "not both"},
		{"extra argument", []string{"changelog", "dump", "--state-dir", dir, "x"}, 2, "unexpected argument"},
		{"no journal", []string{"changelog", "dump", "--state-dir", dir}, 1,
			"no changelog journal in " + dir + ": has a live master run with this state dir?"},
		{"derived state dir", []string{"changelog", "dump", "--root", filepath.Join(dir, "root"), "--slave", "127.0.0.1:9"}, 1,
			"no changelog journal in " + derived + ":"},
		{"help", []string{"changelog", "-h"}, 0, "georep changelog dump"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, errs := runCLI(t, c.args...)
			if code != c.code || !strings.Contains(errs, c.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errs, c.code, c.want)
			}
		})
	}
}
