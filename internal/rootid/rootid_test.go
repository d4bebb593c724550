package rootid

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func openDir(t *testing.T, p string) int {
	t.Helper()
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func idOf(t *testing.T, p string) ID {
	t.Helper()
	id, err := Of(openDir(t, p))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestWithin: a directory is within itself and its ancestors, not within
// a sibling or its own descendant; another boot's ID matches nothing.
func TestWithin(t *testing.T) {
	base := t.TempDir()
	a := filepath.Join(base, "a")
	inner := filepath.Join(a, "b", "c")
	sib := filepath.Join(base, "sib")
	for _, d := range []string{inner, sib} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if len(idOf(t, a).Boot) == 0 {
		t.Skip("no boot id (/proc not mounted)")
	}
	for _, c := range []struct {
		dir, other string
		want       bool
	}{
		{a, a, true},
		{inner, a, true},
		{inner, base, true},
		{a, inner, false},
		{sib, a, false},
		{a, sib, false},
	} {
		got, err := Within(openDir(t, c.dir), idOf(t, c.other))
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("Within(%s, %s) = %v, want %v", c.dir, c.other, got, c.want)
		}
	}
	other := idOf(t, a)
	other.Boot = []byte("another-boot")
	if got, _ := Within(openDir(t, a), other); got {
		t.Error("an ID of another boot matched")
	}
}
