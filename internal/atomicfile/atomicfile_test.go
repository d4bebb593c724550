package atomicfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func check(t *testing.T, path string, data []byte, perm os.FileMode) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("%s holds %d bytes %.40q, want %d bytes %.40q", path, len(got), got, len(data), data)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != perm {
		t.Fatalf("%s mode %v, want %v", path, st.Mode(), perm)
	}
}

func TestWriteCreateReplace(t *testing.T) {
	old := syscall.Umask(0o077) // the mode must not depend on the umask
	defer syscall.Umask(old)

	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := Write(path, []byte("first"), 0o644); err != nil {
		t.Fatal(err)
	}
	check(t, path, []byte("first"), 0o644)
	if names := entries(t, dir); len(names) != 1 || names[0] != "state.json" {
		t.Fatalf("dir holds %q after Write", names)
	}
	st1, _ := os.Stat(path)

	// Replace with shorter content and another mode.
	if err := Write(path, []byte("2"), 0o600); err != nil {
		t.Fatal(err)
	}
	check(t, path, []byte("2"), 0o600)
	st2, _ := os.Stat(path)
	if os.SameFile(st1, st2) {
		t.Fatal("Write rewrote the file in place instead of replacing it")
	}

	// Empty and large content.
	if err := Write(path, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	check(t, path, []byte{}, 0o640)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	if err := Write(path, big, 0o600); err != nil {
		t.Fatal(err)
	}
	check(t, path, big, 0o600)
	if names := entries(t, dir); len(names) != 1 {
		t.Fatalf("dir holds %q: temp files left", names)
	}
}

// TestWriteKeepsOldOnReader: a reader that opened the old file keeps
// reading the old content.
func TestWriteKeepsOldOnReader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := Write(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Write(path, []byte("new content"), 0o600); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := f.Read(buf)
	if string(buf[:n]) != "old" {
		t.Fatalf("open reader sees %q", buf[:n])
	}
	check(t, path, []byte("new content"), 0o600)
}

func TestWriteConcurrent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := bytes.Repeat([]byte{byte('a' + i)}, 4096)
			for j := 0; j < 10; j++ {
				if err := Write(path, data, 0o600); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4096 || !bytes.Equal(got, bytes.Repeat(got[:1], 4096)) {
		t.Fatalf("torn content after concurrent writes: %d bytes", len(got))
	}
	if names := entries(t, dir); len(names) != 1 {
		t.Fatalf("dir holds %q", names)
	}
}

func TestWriteMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "state.json")
	err := Write(path, []byte("x"), 0o600)
	if err == nil {
		t.Fatal("Write into a missing directory succeeded")
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("error %q does not mention %s", err, path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("error %v does not wrap ErrNotExist", err)
	}
}

func TestWriteOntoDirectory(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "sub")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	err := Write(target, []byte("x"), 0o600)
	if err == nil || !strings.Contains(err.Error(), target) {
		t.Fatalf("Write onto a directory = %v", err)
	}
	if names := entries(t, dir); len(names) != 1 || names[0] != "sub" {
		t.Fatalf("dir holds %q after a failed Write: temp file left", names)
	}
	if st, err := os.Stat(target); err != nil || !st.IsDir() {
		t.Fatalf("target directory damaged: %v", err)
	}
}

func TestWriteReadOnlyDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	path := filepath.Join(dir, "f")
	if err := Write(path, []byte("x"), 0o600); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Write into a read-only dir = %v", err)
	}
}

func TestWriteJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := WriteJSON(path, map[string]int{"a": 1}, 0o600); err != nil {
		t.Fatal(err)
	}
	check(t, path, []byte("{\n  \"a\": 1\n}\n"), 0o600)
	if err := WriteJSON(path, func() {}, 0o600); err == nil {
		t.Error("a value JSON cannot encode was written")
	}
	check(t, path, []byte("{\n  \"a\": 1\n}\n"), 0o600)
}

// TestPrivateDir: a new state dir is 0700; one that existed 0755 is
// narrowed to 0700 (issue 18.9); a file in the way is an error.
func TestPrivateDir(t *testing.T) {
	base := t.TempDir()
	fresh := filepath.Join(base, "a", "state")
	existing := filepath.Join(base, "open")
	if err := os.Mkdir(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{fresh, existing} {
		if err := PrivateDir(d); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %o, want 700", d, st.Mode().Perm())
		}
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := PrivateDir(file); err == nil {
		t.Error("a file taken for a state dir")
	}
}
