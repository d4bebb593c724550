package master

import (
	"testing"

	"github.com/georep/georep/internal/livecheck"
	"github.com/georep/georep/master/recorder"
)

// Scripts the harness found diverging, shrunk: each pins a cause of
// issue 17's silent divergence and fails without its fix.
var harnessRegressions = []struct {
	name   string
	script livecheck.Script
	// fanotifyOnly: a hole inotify cannot close (it names no inode); under
	// inotify a divergence of this script is the documented one.
	fanotifyOnly bool
}{
	// A file renamed into a directory whose ancestor was renamed next: the
	// recorder could not open the new directory yet and recorded only the
	// old name's removal (the lost hard link name of the issue).
	{"seed236", livecheck.Script{Seed: 236, Steps: []livecheck.Step{
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Create, Dest: "a", N: 5273, Seed: 4503518780580078466}, {Kind: livecheck.Link, Path: "a", Dest: "new\nline"}, {Kind: livecheck.Mkdir, Dest: "e"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Mkdir, Dest: "f 1"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "f 1", Dest: "e/-dash"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Mkdir, Dest: "c"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "e", Dest: "c/tab\tx"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "c", Dest: "e"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "new\nline", Dest: "e/\xff\xfe"}}},
		{Kind: livecheck.StepCrash},
		{Kind: livecheck.StepBatch, Max: 1},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "e/\xff\xfe", Dest: "e/tab\tx/-dash/c"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "e", Dest: "new\nline"}}},
	}}, false},
	// The same hole deeper, with a mkdir -p chain and a crash between.
	{"seed124", livecheck.Script{Seed: 124, Steps: []livecheck.Step{
		{Kind: livecheck.StepBatch, Max: 3, Hooks: []livecheck.Hook{{Call: 3, Ops: []livecheck.Op{{Kind: livecheck.Symlink, Dest: "a", Target: "b"}}}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Mkdir, Dest: "-dash"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Mkdir, Dest: "..x"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "a", Dest: "c"}}},
		{Kind: livecheck.StepCut},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "..x", Dest: "-dash/%41"}}},
		{Kind: livecheck.StepBatch, Max: 1, Hooks: []livecheck.Hook{{Call: 1, Ops: []livecheck.Op{{Kind: livecheck.MkdirChain, Dest: "-dash/ lead", N: 73}}}, {Call: 8, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "-dash/%41", Dest: "e"}}}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "e", Dest: "-dash/ lead/c/new\nline"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Link, Path: "c", Dest: "-dash/ lead/c/c/c/c/a"}}},
		{Kind: livecheck.StepCrash},
		{Kind: livecheck.StepBatch, Max: 2},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "-dash/ lead/c/c/c/c/a", Dest: "-dash/ lead/c/new\nline/b"}, {Kind: livecheck.Rename, Path: "-dash/ lead/c", Dest: "new\nline"}}},
	}}, false},
	// A chmod through a hard link removed before the recorder read its
	// event: the change was lost for the file's other name (fanotify only:
	// inotify names no inode, see ARCHITECTURE).
	{"seed52", livecheck.Script{Seed: 52, Steps: []livecheck.Step{
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Mkdir, Dest: "b"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Create, Dest: "\xff\xfe", N: 1990, Seed: 6386336093221587884}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.MkdirChain, Dest: "b/d", N: 52}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Mkdir, Dest: "b/d/new\nline"}}},
		{Kind: livecheck.StepCut},
		{Kind: livecheck.StepBatch, Max: 3},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Link, Path: "\xff\xfe", Dest: "b/d/new\nline/a"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Chmod, Path: "b/d/new\nline/a", N: 384}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Unlink, Path: "b/d/new\nline/a"}}},
	}}, true},
	// A chmod through a hard link that is unlinked and its name made again
	// at once: looked up by name, the change landed on the new file.
	{"seed52b", livecheck.Script{Seed: 52, Steps: []livecheck.Step{
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Mkdir, Dest: "b"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Create, Dest: "\xff\xfe", N: 1990, Seed: 6386336093221587884}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.MkdirChain, Dest: "b/d", N: 52}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Mkdir, Dest: "b/d/new\nline"}}},
		{Kind: livecheck.StepCut},
		{Kind: livecheck.StepBatch, Max: 3},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Link, Path: "\xff\xfe", Dest: "b/d/new\nline/a"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Chmod, Path: "b/d/new\nline/a", N: 384}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Unlink, Path: "b/d/new\nline/a"}, {Kind: livecheck.Create, Dest: "b/d/new\nline/a", N: 2983, Seed: 3637857921699548310}}},
	}}, true},
	// Entries swapped (RENAME_EXCHANGE), a symlink with a directory.
	{"seed152", livecheck.Script{Seed: 152, Steps: []livecheck.Step{
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Symlink, Dest: "-dash", Target: "../../nowhere/d"}}},
		{Kind: livecheck.StepBatch, Max: 1, Hooks: []livecheck.Hook{{Call: 2, Ops: []livecheck.Op{{Kind: livecheck.Mkdir, Dest: "e"}}}, {Call: 4, Ops: []livecheck.Op{{Kind: livecheck.Mkdir, Dest: "b"}}}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Mkdir, Dest: "b/new\nline"}}},
		{Kind: livecheck.StepCut},
		{Kind: livecheck.StepBatch, Max: 2, Hooks: []livecheck.Hook{{Call: 4, Ops: []livecheck.Op{{Kind: livecheck.Exchange, Path: "-dash", Dest: "b/new\nline"}}}}},
		{Kind: livecheck.StepCut},
		{Kind: livecheck.StepBatch, Max: 3, Hooks: []livecheck.Hook{{Call: 1, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "-dash", Dest: "e/f 1"}}}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Exchange, Path: "e/f 1", Dest: "b"}}},
		{Kind: livecheck.StepCut},
		{Kind: livecheck.StepBatch, Max: 2},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Create, Dest: "b/\xff\xfe", N: 216, Seed: 14237773098721264088}}},
	}}, false},
	// Two mkdirs of one name merged in fanotify's queue, the first renamed
	// away between them: the live directory was taken for removed and a
	// later truncate in it was lost.
	{"seed318", livecheck.Script{Seed: 318, Steps: []livecheck.Step{
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Mkdir, Dest: "f 1"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Mkdir, Dest: "tab\tx"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "tab\tx", Dest: "f 1/new\nline"}, {Kind: livecheck.Mkdir, Dest: "tab\tx"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Tmpfile, Dest: "tab\tx/café", N: 5204, Seed: 7222716504001191226}}},
		{Kind: livecheck.StepCut},
		{Kind: livecheck.StepBatch, Max: 3},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Truncate, Path: "tab\tx/café", N: 31557}}},
	}}, false},
	// Content changed with its size and mtime put back, after a crash
	// and before the crawl that follows it: the crawl took the slave's
	// copy for current on size and mtime and claimed it synced (the lost
	// data change after a kill -9 of the issue). A file changed since the
	// stime (ctime) is now compared by content.
	{"seed11", livecheck.Script{Seed: 11, Steps: []livecheck.Step{
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Create, Dest: "café", N: 4805, Seed: 4693157671761929277}}},
		{Kind: livecheck.StepBatch, Max: 2},
		{Kind: livecheck.StepCrash},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Overwrite, Path: "café", N: 2303, Off: 163215, Seed: 8216807015618981817}}},
	}}, false},
	// A directory the first crawl indexed before the recorder read its
	// creation: events in it until then were dropped, and a symlink the
	// crawl had sent, removed in that window, stayed on the slave.
	{"seed519", livecheck.Script{Seed: 519, Steps: []livecheck.Step{
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.MkdirChain, Dest: "café", N: 77}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Symlink, Dest: "café/c/c/c/c/c/d", Target: "weird\n\xff%t"}}},
		{Kind: livecheck.StepBatch, Max: 3},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Unlink, Path: "café/c/c/c/c/c/d"}}},
	}}, false},
	// The same after a crash in the first crawl: the symlink's creation and
	// removal merged in fanotify's queue, in a directory renamed before the
	// event was read; listed again once found, it held nothing to record.
	{"seed519b", livecheck.Script{Seed: 519, Steps: []livecheck.Step{
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.MkdirChain, Dest: "café", N: 77}}},
		{Kind: livecheck.StepBatch, Max: 1, Hooks: []livecheck.Hook{{Call: 1, Crash: true}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Symlink, Dest: "café/c/c/c/c/c/d", Target: "weird\n\xff%t"}}},
		{Kind: livecheck.StepBatch, Max: 3},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Unlink, Path: "café/c/c/c/c/c/d"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "café/c/c", Dest: "d"}}},
	}}, false},
	// Deep renames around a crash: the same hole, found by a longer path.
	{"seed123", livecheck.Script{Seed: 123, Steps: []livecheck.Step{
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Mkdir, Dest: "b"}}},
		{Kind: livecheck.StepBatch, Max: 2, Hooks: []livecheck.Hook{{Call: 2, Ops: []livecheck.Op{{Kind: livecheck.Mkdir, Dest: "b/new\nline"}}}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "b/new\nline", Dest: "b/..x"}, {Kind: livecheck.Rename, Path: "b/..x", Dest: "b/c"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Mkdir, Dest: "b/c/new\nline"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.MkdirChain, Dest: "LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL.long", N: 39}}},
		{Kind: livecheck.StepCut},
		{Kind: livecheck.StepBatch, Max: 3, Hooks: []livecheck.Hook{{Call: 8, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL.long/c", Dest: "new\nline"}, {Kind: livecheck.Mkdir, Dest: "b/c/new\nline/%41"}}}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Mkdir, Dest: "b/c/new\nline/%41/%41"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "new\nline/c/c/c/c/c/c/c/c/c/c/c", Dest: "new\nline/c/café"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "new\nline/c/café/c/c/c/c", Dest: "new\nline/c/café/c/c/c/b"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "new\nline/c/c", Dest: "new\nline/c/café/c/c/c/b/c/ lead"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.MkdirChain, Dest: "new\nline/c/café/c/c/c/b/c/ lead/c/c/c/c/café", N: 40}}},
		{Kind: livecheck.StepCut},
		{Kind: livecheck.StepCrash},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "new\nline/c/café/c/c/c/b/c/ lead/c/c/c/c/café/c/c/c/c/c/c/c/c/c", Dest: "b/c/new\nline/%41/%41/c"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "b/c/new\nline/%41", Dest: "\xff\xfe"}}},
		{Kind: livecheck.StepBatch, Max: 2},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Create, Dest: "\xff\xfe/%41/c/c/c/c/c/c/c/c/c/c/..x", N: 704, Seed: 8991236636923523929}, {Kind: livecheck.Rename, Path: "\xff\xfe/%41/c/c/c/c/c/c/c/c/c/c/c/c/c", Dest: "d"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Unlink, Path: "\xff\xfe/%41/c/c/c/c/c/c/c/c/c/c/..x"}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "\xff\xfe/%41/c", Dest: "d/c/c/c/café"}, {Kind: livecheck.Create, Dest: "\xff\xfe/%41/..x", N: 2911, Seed: 14465811722289178353}}},
	}}, false},
	// A directory the crawl indexed, renamed twice before the recorder read
	// its creation (its name gone by then): never watched, the file made in
	// it later never reached the slave.
	{"seed1113", livecheck.Script{Seed: 1113, Steps: []livecheck.Step{
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Mkdir, Dest: "%41"}}},
		{Kind: livecheck.StepBatch, Max: 1, Hooks: []livecheck.Hook{{Call: 1, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "%41", Dest: "d"}}}}},
		{Kind: livecheck.StepOps, Ops: []livecheck.Op{{Kind: livecheck.Rename, Path: "d", Dest: "\xff\xfe"}}},
		{Kind: livecheck.StepCut},
		{Kind: livecheck.StepBatch, Max: 3, Hooks: []livecheck.Hook{{Call: 1, Ops: []livecheck.Op{{Kind: livecheck.Create, Dest: "\xff\xfe/\xff\xfe", N: 5746, Seed: 12040060367087359260}}}}},
	}}, false},
}

// TestHarnessRegressions replays them.
func TestHarnessRegressions(t *testing.T) {
	base := harnessBase(t)
	for _, tc := range harnessRegressions {
		t.Run(tc.name, func(t *testing.T) {
			var h *harness
			why := runScriptWith(t, base, tc.script.Seed, livecheck.NewReplay(tc.script), func(made *harness) { h = made })
			if why != "" && tc.fanotifyOnly && h.rec != nil && h.rec.Watcher() == recorder.WatchInotify {
				t.Skipf("inotify's documented hole (a change through a name removed before its event is read): %s", why)
			}
			if why != "" {
				t.Errorf("%s", why)
			}
		})
	}
}
