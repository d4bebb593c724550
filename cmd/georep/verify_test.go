package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProcessesVerify: georep verify's exit status is 0 for equal trees,
// 1 with the differences listed, 2 for an error; --repair mends what
// differs and says what it was; --json is a report.
func TestProcessesVerify(t *testing.T) {
	mroot, sroot := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(mroot, "d"), 0o755)
	os.WriteFile(filepath.Join(mroot, "d/f"), []byte("master"), 0o644)
	os.WriteFile(filepath.Join(mroot, "g"), []byte("gone soon"), 0o644)
	addr := startSlaveProcess(t, sroot)
	state := filepath.Join(t.TempDir(), "st")
	base := []string{"--root", mroot, "--slave", addr, "--state-dir", state, "--insecure"}
	if code, out, errs := runMasterProcess(t, append(base, "--oneshot")...); code != 0 {
		t.Fatalf("one-shot: %d %s %s", code, out, errs)
	}
	verify := func(extra ...string) (int, string) {
		return georepCmd(t, append(append([]string{"verify"}, base...), extra...)...)
	}
	if code, out := verify(); code != 0 || !strings.Contains(out, "equal:") {
		t.Fatalf("verify of equal trees: %d %s", code, out)
	}
	os.WriteFile(filepath.Join(sroot, "d/f"), []byte("SLAVE!"), 0o644)
	os.Remove(filepath.Join(sroot, "g"))
	code, out := verify()
	if code != 1 || !strings.Contains(out, `content   "d/f"`) || !strings.Contains(out, `missing   "g"`) {
		t.Fatalf("verify of different trees: %d %s", code, out)
	}
	code, out = verify("--repair", "--json")
	var rep verifyReport
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &rep); err != nil || code != 0 || !rep.Equal || !rep.Repaired || len(rep.Before) != 3 {
		t.Fatalf("verify --repair --json: %d %v %+v\n%s", code, err, rep, out)
	}
	if got, _ := os.ReadFile(filepath.Join(sroot, "d/f")); string(got) != "master" {
		t.Errorf("after the repair the slave holds %q", got)
	}
	if code, out := georepCmd(t, "verify", "--root", mroot, "--slave", "127.0.0.1:1", "--state-dir", state, "--insecure"); code != 2 {
		t.Errorf("verify against no slave: %d %s", code, out)
	}
}
