package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"syscall"
)

// seedFor derives a ChaCha8 seed from a label and a number.
func seedFor(label string, n uint64) [32]byte {
	var s [32]byte
	copy(s[:], label)
	binary.LittleEndian.PutUint64(s[24:], n)
	return s
}

// fileGen is the sequence of files of the small-file trees (W1, W1x2,
// W6): file i's size (1-8 KiB) and content depend only on i and nFiles.
type fileGen struct {
	sizes   *rand.Rand
	content *rand.ChaCha8
	buf     []byte
}

func newFileGen(nFiles int) *fileGen {
	return &fileGen{
		sizes:   rand.New(rand.NewPCG(1, 2)),
		content: rand.NewChaCha8(seedFor("georep-bench-w1", uint64(nFiles))),
		buf:     make([]byte, 8<<10),
	}
}

// next is the next file's content (valid until the next call).
func (g *fileGen) next() []byte {
	n := 1<<10 + g.sizes.IntN(7<<10+1)
	b := g.buf[:n]
	_, _ = g.content.Read(b)
	return b
}

// genSmallTree writes nFiles files of 1–8 KiB (deterministic sizes and
// content) spread over nDirs directories, and returns the payload bytes.
func genSmallTree(root string, nFiles, nDirs int) (int64, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return 0, err
	}
	for d := 0; d < nDirs; d++ {
		if err := os.Mkdir(filepath.Join(root, fmt.Sprintf("d%04d", d)), 0o755); err != nil {
			return 0, err
		}
	}
	g := newFileGen(nFiles)
	var total int64
	for i := 0; i < nFiles; i++ {
		b := g.next()
		name := filepath.Join(root, fmt.Sprintf("d%04d", i%nDirs), fmt.Sprintf("f%07d.dat", i))
		if err := os.WriteFile(name, b, 0o644); err != nil {
			return 0, err
		}
		total += int64(len(b))
	}
	return total, nil
}

// genBigFile writes size bytes of random data to name.
func genBigFile(name string, size int64) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	src := rand.NewChaCha8(seedFor("georep-bench-w3", uint64(size)))
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		b := buf
		if int64(len(b)) > left {
			b = b[:left]
		}
		_, _ = src.Read(b)
		if _, err := f.Write(b); err != nil {
			f.Close()
			return err
		}
		left -= int64(len(b))
	}
	return f.Close()
}

// overwriteMiddle overwrites n bytes in the middle of name (at a 4 KiB
// aligned offset) with fresh random data; version makes each call differ.
func overwriteMiddle(name string, n int64, version uint64) (off int64, err error) {
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return 0, err
	}
	off = (st.Size() - n) / 2 &^ 4095
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(seedFor("georep-bench-w4", version)).Read(b)
	if _, err := f.WriteAt(b, off); err != nil {
		f.Close()
		return 0, err
	}
	return off, f.Close()
}

// warmup reads every regular file under root once (untimed), so that the
// first timed run does not pay for a cold cache alone.
func warmup(root string) error {
	buf := make([]byte, 1<<20)
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
		f.Close()
		return err
	})
}

// treeSum summarizes a tree in constant memory: counts, payload bytes, and
// an order-independent hash of each entry's path, type, permissions,
// owner, size, mtime (regular files) and link target.
type treeSum struct {
	files, dirs, links, others int64
	bytes                      int64
	hash                       uint64
}

func (s treeSum) String() string {
	return fmt.Sprintf("%d files (%d bytes), %d dirs, %d symlinks, %d others, hash %016x",
		s.files, s.bytes, s.dirs, s.links, s.others, s.hash)
}

// describe renders one entry for hashing and for diagnostics.
func describe(root, p string, fi fs.FileInfo) (string, error) {
	st, _ := fi.Sys().(*syscall.Stat_t)
	var uid, gid uint32
	if st != nil {
		uid, gid = st.Uid, st.Gid
	}
	m := fi.Mode()
	switch {
	case m.IsRegular():
		return fmt.Sprintf("f %o %d:%d size=%d mtime=%d", m.Perm()|m&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky), uid, gid, fi.Size(), fi.ModTime().UnixNano()), nil
	case m.IsDir():
		return fmt.Sprintf("d %o %d:%d", m.Perm()|m&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky), uid, gid), nil
	case m&fs.ModeSymlink != 0:
		t, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("l -> %q", t), nil
	default:
		return fmt.Sprintf("o %v %d:%d", m, uid, gid), nil
	}
}

// walkTree calls fn for every entry under root except root itself and a
// top-level ".georep" (the slave's working directory).
func walkTree(root string, fn func(rel string, fi fs.FileInfo, desc string) error) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		if rel == ".georep" {
			return filepath.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc, err := describe(root, p, fi)
		if err != nil {
			return err
		}
		return fn(rel, fi, desc)
	})
}

func summarize(root string) (treeSum, error) {
	var s treeSum
	err := walkTree(root, func(rel string, fi fs.FileInfo, desc string) error {
		m := fi.Mode()
		switch {
		case m.IsRegular():
			s.files++
			s.bytes += fi.Size()
		case m.IsDir():
			s.dirs++
		case m&fs.ModeSymlink != 0:
			s.links++
		default:
			s.others++
		}
		h := fnv.New64a()
		h.Write([]byte(rel))
		h.Write([]byte{0})
		h.Write([]byte(desc))
		s.hash += h.Sum64()
		return nil
	})
	return s, err
}

// verify checks dst against src's summary; with full it also compares the
// content of every regular file. On a mismatch it lists the differences.
func verify(src, dst string, want treeSum, full bool) error {
	got, err := summarize(dst)
	if err != nil {
		return fmt.Errorf("walking %s: %w", dst, err)
	}
	if got != want {
		return fmt.Errorf("destination differs from source:\n  src: %v\n  dst: %v\n%s", want, got, diffTrees(src, dst, 20))
	}
	if !full {
		return nil
	}
	return compareContent(src, dst)
}

// compareContent compares every regular file under src with its copy.
func compareContent(src, dst string) error {
	a := make([]byte, 256<<10)
	b := make([]byte, 256<<10)
	return walkTree(src, func(rel string, fi fs.FileInfo, _ string) error {
		if !fi.Mode().IsRegular() {
			return nil
		}
		same, err := sameContent(filepath.Join(src, rel), filepath.Join(dst, rel), a, b)
		if err != nil {
			return err
		}
		if !same {
			return fmt.Errorf("content differs: %s", rel)
		}
		return nil
	})
}

func sameContent(p, q string, a, b []byte) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	g, err := os.Open(q)
	if err != nil {
		return false, err
	}
	defer g.Close()
	for {
		n, errA := io.ReadFull(f, a)
		m, errB := io.ReadFull(g, b[:len(a)])
		if n != m || !bytes.Equal(a[:n], b[:m]) {
			return false, nil
		}
		if errA == io.EOF || errA == io.ErrUnexpectedEOF {
			return errB == io.EOF || errB == io.ErrUnexpectedEOF, nil
		}
		if errA != nil {
			return false, errA
		}
		if errB != nil {
			return false, errB
		}
	}
}

// diffTrees lists up to max differences between two trees (only on the
// failure path, so holding both listings in memory is acceptable).
func diffTrees(src, dst string, max int) string {
	list := func(root string) map[string]string {
		m := map[string]string{}
		_ = walkTree(root, func(rel string, _ fs.FileInfo, desc string) error {
			m[rel] = desc
			return nil
		})
		return m
	}
	a, b := list(src), list(dst)
	var lines []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			lines = append(lines, fmt.Sprintf("  missing in dst: %q (%s)", k, v))
		} else if v != w {
			lines = append(lines, fmt.Sprintf("  differs: %q\n    src: %s\n    dst: %s", k, v, w))
		}
	}
	for k, w := range b {
		if _, ok := a[k]; !ok {
			lines = append(lines, fmt.Sprintf("  extra in dst: %q (%s)", k, w))
		}
	}
	sort.Strings(lines)
	more := ""
	if len(lines) > max {
		more = fmt.Sprintf("  ... and %d more\n", len(lines)-max)
		lines = lines[:max]
	}
	var buf bytes.Buffer
	for _, l := range lines {
		buf.WriteString(l + "\n")
	}
	buf.WriteString(more)
	return buf.String()
}
