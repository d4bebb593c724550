package beneath

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestChmodByPath covers the fallback for kernels without fchmodat2: it
// changes a file's mode, refuses a symlink, and never follows one.
func TestChmodByPath(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	if err := chmodByPath(dfd, "f", 0o4711); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "f")); st.Mode()&os.ModePerm != 0o711 || st.Mode()&os.ModeSetuid == 0 {
		t.Errorf("mode after chmodByPath = %v, want setuid 0711", st.Mode())
	}
	if err := chmodByPath(dfd, "l", 0o600); !errors.Is(err, unix.EOPNOTSUPP) {
		t.Errorf("chmodByPath on a symlink = %v, want EOPNOTSUPP", err)
	}
	if st, _ := os.Stat(outside); st.Mode()&os.ModePerm != 0o644 {
		t.Errorf("the symlink's target changed mode to %v", st.Mode())
	}
	if err := Chmod(dfd, "l", 0o600, false); err == nil {
		t.Errorf("Chmod on a symlink succeeded")
	}
}
