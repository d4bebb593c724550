package testenv

import (
	"fmt"
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
	cmd := rerun(bin, name)
	cmd.Env = append(cmd.Env, "TMPDIR="+tmp, "HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: Nobody, Gid: Nobody}}
	runRerun(t, cmd, "as nobody")
}

// rerun is the command that runs test name of the test binary bin alone
// (prefixed by the command and arguments of wrap, if any), with this
// process's environment.
func rerun(bin, name string, wrap ...string) *exec.Cmd {
	args := append(wrap, bin, "-test.run=^"+name+"$", "-test.v", "-test.count=1")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = os.Environ()
	return cmd
}

// runRerun runs cmd (see rerun), logs its output, and fails t if it fails.
func runRerun(t testing.TB, cmd *exec.Cmd, how string) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	t.Logf("%s:\n%s", how, out)
	if err != nil {
		t.Fatalf("the test failed %s: %v", how, err)
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

// DroppedCapEnv is set (to the capability's name) in a test re-run by
// RunWithoutCap.
const DroppedCapEnv = "GEOREP_TEST_DROPPED_CAP"

// RunWithoutCap re-runs test name of this test binary as root without
// capability capName (e.g. "mknod", as in many containers), through
// util-linux's setpriv; the re-run sees DroppedCapEnv set to capName. It
// skips t where setpriv is missing, and fails t when the re-run fails.
func RunWithoutCap(t testing.TB, name, capName string) {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not found: cannot drop a capability")
	}
	cmd := rerun(os.Args[0], name, setpriv, "--bounding-set=-"+capName, "--inh-caps=-"+capName, "--")
	cmd.Env = append(cmd.Env, DroppedCapEnv+"="+capName)
	runRerun(t, cmd, "without CAP_"+capName)
}

// DeviceCgroupEnv names, in a test re-run by RunInDeviceCgroup, the
// cgroup the re-run must enter (EnterDeviceCgroup).
const DeviceCgroupEnv = "GEOREP_TEST_DEVICE_CGROUP"

// RunInDeviceCgroup re-runs test name of this test binary in a cgroup (v1
// devices controller) that refuses mknod of character and block devices,
// as a container's device policy does, whatever the capabilities. The
// re-run calls EnterDeviceCgroup first. It skips t where the controller
// is not there or not writable, and fails t when the re-run fails.
func RunInDeviceCgroup(t testing.TB, name string) {
	t.Helper()
	const base = "/sys/fs/cgroup/devices"
	if _, err := os.Stat(filepath.Join(base, "devices.deny")); err != nil {
		t.Skip("no cgroup v1 devices controller at " + base)
	}
	dir, err := os.MkdirTemp(base, "georep-test-")
	if err != nil {
		t.Skipf("cannot make a devices cgroup: %v", err)
	}
	defer os.Remove(dir) // empty once the re-run has exited
	for _, rule := range []string{"c *:* m", "b *:* m"} {
		if err := os.WriteFile(filepath.Join(dir, "devices.deny"), []byte(rule), 0o644); err != nil {
			t.Fatalf("devices.deny %q: %v", rule, err)
		}
	}
	cmd := rerun(os.Args[0], name)
	cmd.Env = append(cmd.Env, DeviceCgroupEnv+"="+dir)
	runRerun(t, cmd, "in a devices cgroup refusing mknod")
}

// EnterDeviceCgroup moves this process into the cgroup RunInDeviceCgroup
// made for it.
func EnterDeviceCgroup(t testing.TB) {
	t.Helper()
	dir := os.Getenv(DeviceCgroupEnv)
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(fmt.Sprint(os.Getpid())), 0o644); err != nil {
		t.Fatalf("entering the devices cgroup %s: %v", dir, err)
	}
}
