package testenv

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// Nobody is the uid and gid of the user nobody, as which tests run what
// must run unprivileged.
const Nobody = 65534

// RunAsNobody re-runs test name of this test binary as uid/gid nobody in a
// temp dir nobody owns (TMPDIR and HOME point there), and fails t when it
// fails there.
func RunAsNobody(t testing.TB, name string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "georep-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { MakeWritable(dir); os.RemoveAll(dir) })
	// The test binary may sit in a directory only root can enter.
	bin := filepath.Join(dir, "test.bin")
	if err := copyFile(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, bin, tmp} {
		if err := os.Chown(p, Nobody, Nobody); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-test.run=^"+name+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: Nobody, Gid: Nobody}}
	out, err := cmd.CombinedOutput()
	t.Logf("as nobody:\n%s", out)
	if err != nil {
		t.Fatalf("the test failed as nobody: %v", err)
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// MakeWritable undoes read-only directories so that the tree can be
// removed.
func MakeWritable(root string) {
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
}
