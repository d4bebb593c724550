// Package testtree builds directory trees full of the cases a replicator gets
// wrong, and mutates them deterministically for a second replication round.
//
// Build creates empty, small, big and boundary-sized files, a deep directory
// chain, every kind of symlink, hardlinks across directories, FIFOs and
// device nodes, setuid/setgid/sticky and unreadable modes, foreign numeric
// owners, nanosecond mtimes, user.* (and trusted.*) xattrs with binary,
// empty and large values, and names with spaces, newlines, tabs, '%',
// backslashes, non-UTF-8 bytes and 255 bytes. Cases that need root (device
// nodes, chown to other uids, trusted.* xattrs) are built only when running
// as root.
//
// Two trees built with the same Options are identical for treecmp.Compare
// (contents, modes, owners, mtimes, xattrs, hardlink groups), and so are two
// such trees after Mutate.
package testtree

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Options tunes Build and Mutate.
type Options struct {
	// BigFileSize is the size of the big file; the integration test uses
	// 100 MiB; 0 means 4 MiB.
	BigFileSize int64
	// Seed makes the pseudo-random content and times deterministic.
	Seed int64
}

// DefaultBigFileSize is the big file's size when Options.BigFileSize is 0.
const DefaultBigFileSize = 4 << 20

// BigFile is the relative path of the big pseudo-random file.
const BigFile = "big.bin"

// Numeric owners without passwd entries, used when running as root.
const (
	UID1, GID1 = 12345, 54321
	UID2, GID2 = 4242, 4243
)

// Paths of a few entries, relative to the root, that tests may look at.
const (
	// LongName is a 255-byte file name under names/.
	LongName = "names/" + "L123456789" + "0123456789" + "0123456789" + "0123456789" + "0123456789" +
		"0123456789" + "0123456789" + "0123456789" + "0123456789" + "0123456789" +
		"0123456789" + "0123456789" + "0123456789" + "0123456789" + "0123456789" +
		"0123456789" + "0123456789" + "0123456789" + "0123456789" + "0123456789" +
		"0123456789" + "0123456789" + "0123456789" + "0123456789" + "0123456789" + "end.t"
	// HardlinkA, HardlinkB and HardlinkC are the three links of one file.
	HardlinkA = "hard/a/one"
	HardlinkB = "hard/b/two"
	HardlinkC = "hard/c/three"
	// BinaryXattrFile carries user.binary = BinaryXattrValue.
	BinaryXattrFile  = "xattrs/binary"
	BinaryXattrValue = "\x00\xff\x00bin\xfe\xff\x00"
	// CharDev and BlockDev exist only when Build ran as root.
	CharDev  = "special/null"
	BlockDev = "special/loop200"
)

const (
	// Build's mtimes lie in [buildBase, buildBase+5e7) seconds, Mutate's in
	// [mutateBase, mutateBase+5e7): all in the past, and a mutated entry
	// is always newer than before.
	buildBase  = 1_600_000_000
	mutateBase = 1_700_000_000
)

// builder accumulates the first error so that the tree descriptions below
// read as plain lists of steps.
type builder struct {
	root   string
	opt    Options
	asRoot bool
	err    error
	// touched lists paths whose mtime Mutate sets at the end.
	touched map[string]bool
}

func newBuilder(root string, opt Options) (*builder, error) {
	st, err := os.Lstat(root)
	if err != nil {
		return nil, fmt.Errorf("testtree: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("testtree: %q is not a directory", root)
	}
	if opt.BigFileSize == 0 {
		opt.BigFileSize = DefaultBigFileSize
	}
	if opt.BigFileSize < 0 {
		return nil, fmt.Errorf("testtree: negative BigFileSize %d", opt.BigFileSize)
	}
	return &builder{
		root:    strings.TrimRight(root, "/"),
		opt:     opt,
		asRoot:  os.Geteuid() == 0,
		touched: map[string]bool{},
	}, nil
}

func (b *builder) abs(rel string) string {
	if rel == "" || rel == "." {
		return b.root
	}
	return b.root + "/" + rel
}

func (b *builder) fail(op, rel string, err error) {
	if b.err == nil && err != nil {
		b.err = fmt.Errorf("testtree: %s %q: %w", op, rel, err)
	}
}

// hash mixes the seed with labels, for per-path content and times.
func (b *builder) hash(labels ...string) uint64 {
	h := fnv.New64a()
	var s [8]byte
	binary.LittleEndian.PutUint64(s[:], uint64(b.opt.Seed))
	h.Write(s[:])
	for _, l := range labels {
		h.Write([]byte(l))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// rng returns a fast deterministic generator for one label.
func (b *builder) rng(label string) *rand.ChaCha8 {
	var seed [32]byte
	for i := 0; i < 4; i++ {
		binary.LittleEndian.PutUint64(seed[i*8:], b.hash(label, fmt.Sprint(i)))
	}
	return rand.NewChaCha8(seed)
}

func (b *builder) random(label string, n int) []byte {
	buf := make([]byte, n)
	_, _ = b.rng(label).Read(buf) // never fails
	return buf
}

func (b *builder) mkdir(rel string, perm uint32) {
	if b.err != nil {
		return
	}
	if err := unix.Mkdir(b.abs(rel), 0700); err != nil {
		b.fail("mkdir", rel, err)
		return
	}
	b.chmod(rel, perm)
}

func (b *builder) file(rel string, data []byte, perm uint32) {
	if b.err != nil {
		return
	}
	f, err := os.OpenFile(b.abs(rel), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0600)
	if err != nil {
		b.fail("create", rel, err)
		return
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.fail("write", rel, err)
		return
	}
	b.chmod(rel, perm)
}

// bigFile writes size pseudo-random bytes in 1 MiB chunks.
func (b *builder) bigFile(rel string, size int64, perm uint32) {
	if b.err != nil {
		return
	}
	f, err := os.OpenFile(b.abs(rel), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0600)
	if err != nil {
		b.fail("create", rel, err)
		return
	}
	r := b.rng("big:" + rel)
	buf := make([]byte, 1<<20)
	for left := size; left > 0 && err == nil; {
		n := int64(len(buf))
		if left < n {
			n = left
		}
		_, _ = r.Read(buf[:n])
		_, err = f.Write(buf[:n])
		left -= n
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.fail("write", rel, err)
		return
	}
	b.chmod(rel, perm)
}

func (b *builder) chmod(rel string, perm uint32) {
	if b.err != nil {
		return
	}
	b.fail("chmod", rel, unix.Chmod(b.abs(rel), perm))
}

// chown changes the owner without following symlinks; only as root.
func (b *builder) chown(rel string, uid, gid int) {
	if b.err != nil || !b.asRoot {
		return
	}
	b.fail("chown", rel, unix.Fchownat(unix.AT_FDCWD, b.abs(rel), uid, gid, unix.AT_SYMLINK_NOFOLLOW))
}

func (b *builder) symlink(target, rel string) {
	if b.err != nil {
		return
	}
	b.fail("symlink", rel, unix.Symlink(target, b.abs(rel)))
}

func (b *builder) link(oldRel, newRel string) {
	if b.err != nil {
		return
	}
	b.fail("link", newRel, unix.Link(b.abs(oldRel), b.abs(newRel)))
}

func (b *builder) fifo(rel string, perm uint32) {
	if b.err != nil {
		return
	}
	if err := unix.Mkfifo(b.abs(rel), 0600); err != nil {
		b.fail("mkfifo", rel, err)
		return
	}
	b.chmod(rel, perm)
}

func (b *builder) mknod(rel string, typ uint32, major, minor uint32, perm uint32) {
	if b.err != nil {
		return
	}
	if err := unix.Mknod(b.abs(rel), typ|0600, int(unix.Mkdev(major, minor))); err != nil {
		b.fail("mknod", rel, err)
		return
	}
	b.chmod(rel, perm)
}

func (b *builder) setxattr(rel, name string, value []byte) {
	if b.err != nil {
		return
	}
	b.fail("lsetxattr "+name, rel, unix.Lsetxattr(b.abs(rel), name, value, 0))
}

func (b *builder) removexattr(rel, name string) {
	if b.err != nil {
		return
	}
	b.fail("lremovexattr "+name, rel, unix.Lremovexattr(b.abs(rel), name))
}

func (b *builder) rename(oldRel, newRel string) {
	if b.err != nil {
		return
	}
	b.fail("rename", oldRel, unix.Rename(b.abs(oldRel), b.abs(newRel)))
}

func (b *builder) remove(rel string) {
	if b.err != nil {
		return
	}
	b.fail("remove", rel, os.Remove(b.abs(rel)))
}

func (b *builder) removeAll(rel string) {
	if b.err != nil {
		return
	}
	var st unix.Stat_t
	if err := unix.Lstat(b.abs(rel), &st); err != nil {
		b.fail("lstat", rel, err)
		return
	}
	b.fail("remove tree", rel, os.RemoveAll(b.abs(rel)))
}

// setTime gives rel a deterministic nanosecond mtime (and atime) derived
// from the seed, the round and the path.
func (b *builder) setTime(rel string, round string, base int64) {
	if b.err != nil {
		return
	}
	h := b.hash("time", round, rel)
	sec := base + int64(h%50_000_000)
	nsec := int64((h >> 27) % 1_000_000_000)
	if nsec%1000 == 0 {
		nsec++ // make sure sub-microsecond digits matter
	}
	ts := []unix.Timespec{
		{Sec: sec - 3600, Nsec: nsec},
		{Sec: sec, Nsec: nsec},
	}
	b.fail("utimensat", rel, unix.UtimesNanoAt(unix.AT_FDCWD, b.abs(rel), ts, unix.AT_SYMLINK_NOFOLLOW))
}

// setAllTimes gives every entry its Build time, children before their
// directory, and the root last.
func (b *builder) setAllTimes(rel string) {
	if b.err != nil {
		return
	}
	var st unix.Stat_t
	if err := unix.Lstat(b.abs(rel), &st); err != nil {
		b.fail("lstat", rel, err)
		return
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		f, err := os.Open(b.abs(rel))
		if err != nil {
			b.fail("open", rel, err)
			return
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			b.fail("readdir", rel, err)
			return
		}
		sort.Strings(names)
		for _, n := range names {
			child := n
			if rel != "" {
				child = rel + "/" + n
			}
			b.setAllTimes(child)
		}
	}
	b.setTime(rel, "build", buildBase)
}

// touch records that Mutate changed rel (and so its parent directories).
func (b *builder) touch(rel string) {
	for {
		b.touched[rel] = true
		i := strings.LastIndexByte(rel, '/')
		if i < 0 {
			break
		}
		rel = rel[:i]
	}
	b.touched[""] = true
}

// Build fills root (which exists and is empty) with the cases a replicator
// gets wrong. Device nodes, foreign owners and trusted.* xattrs are created
// only when running as root. The file system must support user.* xattrs.
func Build(root string, opt Options) error {
	b, err := newBuilder(root, opt)
	if err != nil {
		return err
	}
	f, err := os.Open(b.root)
	if err != nil {
		return fmt.Errorf("testtree: %w", err)
	}
	_, err = f.Readdirnames(1)
	f.Close()
	if err == nil {
		return fmt.Errorf("testtree: %q is not empty", root)
	}
	if !errors.Is(err, io.EOF) {
		return fmt.Errorf("testtree: read %q: %w", root, err)
	}

	b.buildFiles()
	b.buildDeep()
	b.buildLinks()
	b.buildHardlinks()
	b.buildSpecial()
	b.buildModes()
	b.buildOwners()
	b.buildXattrs()
	b.buildNames()
	b.buildDirs()
	// Times last, deepest first: creating entries changes a dir's mtime.
	b.setAllTimes("")
	return b.err
}

func (b *builder) buildFiles() {
	b.file("empty", nil, 0644)
	b.file("x", []byte("target of ../x\n"), 0644)
	b.mkdir("small", 0755)
	b.file("small/hello.txt", []byte("hello, world\n"), 0644)
	b.file("small/one", []byte("1"), 0644)
	b.file("small/three", []byte("abc"), 0664)
	b.file("small/kib.bin", b.random("small/kib.bin", 1024), 0644)
	b.file("small/3000.bin", b.random("small/3000.bin", 3000), 0600)
	b.file("small/4k.txt", b.random("small/4k.txt", 4096), 0644)
	b.bigFile(BigFile, b.opt.BigFileSize, 0644)
	b.mkdir("size", 0755)
	b.file("size/64k", b.random("size/64k", 64<<10), 0644)
	b.file("size/64k+1", b.random("size/64k+1", 64<<10+1), 0644)
	b.file("size/64k-1", b.random("size/64k-1", 64<<10-1), 0644)
}

func (b *builder) buildDeep() {
	b.mkdir("deep", 0755)
	p := "deep"
	for i := 0; i < 20; i++ {
		p = fmt.Sprintf("%s/d%d", p, i)
		b.mkdir(p, 0755)
	}
	b.file(p+"/bottom.txt", []byte("at the bottom\n"), 0644)
}

func (b *builder) buildLinks() {
	b.mkdir("links", 0755)
	b.symlink("../x", "links/rel")
	b.symlink("/etc/passwd", "links/abs")
	b.symlink("does-not-exist", "links/dangling")
	b.symlink("../small", "links/to-dir")
	b.symlink("target with space \xff", "links/weird")
	b.symlink("../names/new\nline", "links/to-newline")
}

func (b *builder) buildHardlinks() {
	b.mkdir("hard", 0755)
	b.mkdir("hard/a", 0755)
	b.mkdir("hard/b", 0755)
	b.mkdir("hard/c", 0755)
	b.file(HardlinkA, b.random(HardlinkA, 2000), 0644)
	b.link(HardlinkA, HardlinkB)
	b.link(HardlinkA, HardlinkC)
	b.mkdir("hard/pair", 0755)
	b.file("hard/pair/p1", []byte("a hardlinked pair\n"), 0640)
	b.link("hard/pair/p1", "hard/pair/p2")
	// Same content as the pair but a separate inode.
	b.file("hard/pair/copy", []byte("a hardlinked pair\n"), 0640)
}

func (b *builder) buildSpecial() {
	b.mkdir("special", 0755)
	b.fifo("special/fifo", 0644)
	b.fifo("special/fifo-0600", 0600)
	if b.asRoot {
		b.mknod(CharDev, unix.S_IFCHR, 1, 3, 0666)
		b.mknod(BlockDev, unix.S_IFBLK, 7, 200, 0660)
	}
}

func (b *builder) buildModes() {
	b.mkdir("modes", 0755)
	// chmod after chown: chown clears setuid/setgid.
	b.file("modes/setuid", []byte("#!/bin/sh\n"), 0755)
	b.chown("modes/setuid", UID2, GID2)
	b.chmod("modes/setuid", 04755)
	b.file("modes/setgid", []byte("#!/bin/sh\n"), 0755)
	b.chown("modes/setgid", UID1, GID1)
	b.chmod("modes/setgid", 02755)
	b.file("modes/setuid-setgid-sticky", []byte("all three\n"), 0755)
	b.chmod("modes/setuid-setgid-sticky", 07755)

	// A setgid directory: entries created inside inherit its group, and
	// subdirectories inherit the setgid bit.
	b.mkdir("modes/setgid-dir", 0755)
	b.chown("modes/setgid-dir", 0, GID1)
	b.chmod("modes/setgid-dir", 02775)
	b.file("modes/setgid-dir/inherits-group", []byte("group from the dir\n"), 0644)
	b.mkdir("modes/setgid-dir/subdir", 0755)
	b.chmod("modes/setgid-dir/subdir", 02755)

	b.mkdir("modes/sticky-dir", 0755)
	b.chmod("modes/sticky-dir", 01777)
	b.file("modes/sticky-dir/file", []byte("in a sticky dir\n"), 0666)

	b.file("modes/ro", []byte("read only\n"), 0400)
	// Unreadable: only root can read it back, so it has content only then.
	var none []byte
	if b.asRoot {
		none = []byte("nobody may read this\n")
	}
	b.file("modes/none", none, 0000)
	b.file("modes/exec", []byte("#!/bin/sh\nexit 0\n"), 0711)
	b.mkdir("modes/private-dir", 0755)
	b.file("modes/private-dir/secret", []byte("secret\n"), 0600)
	b.chmod("modes/private-dir", 0700)
	b.mkdir("modes/ro-dir", 0755)
	b.file("modes/ro-dir/inside", []byte("in a read-only dir\n"), 0644)
	b.chmod("modes/ro-dir", 0555)
}

func (b *builder) buildOwners() {
	b.mkdir("owners", 0755)
	b.file("owners/f-12345", []byte("owned by 12345:54321\n"), 0644)
	b.chown("owners/f-12345", UID1, GID1)
	b.file("owners/f-4242", []byte("owned by 4242:4243\n"), 0640)
	b.chown("owners/f-4242", UID2, GID2)
	b.file("owners/group-only", []byte("owned by 0:4243\n"), 0640)
	b.chown("owners/group-only", 0, GID2)
	b.mkdir("owners/dir", 0750)
	b.file("owners/dir/inner", []byte("inner\n"), 0644)
	b.chown("owners/dir/inner", UID2, GID2)
	b.chown("owners/dir", UID1, GID1)
	b.chmod("owners/dir", 0750)
	b.symlink("f-12345", "owners/link")
	b.chown("owners/link", UID2, GID2)
	b.fifo("owners/fifo", 0620)
	b.chown("owners/fifo", UID1, GID1)
	b.chmod("owners/fifo", 0620)
	if b.asRoot {
		b.mknod("owners/chardev", unix.S_IFCHR, 1, 5, 0640)
		b.chown("owners/chardev", UID2, GID2)
		b.chmod("owners/chardev", 0640)
	}
}

func (b *builder) buildXattrs() {
	b.mkdir("xattrs", 0755)
	b.setxattr("xattrs", "user.dir", []byte("on a directory"))
	b.file("xattrs/text", []byte("text xattrs\n"), 0644)
	b.setxattr("xattrs/text", "user.comment", []byte("hello xattr"))
	b.setxattr("xattrs/text", "user.mime_type", []byte("text/plain"))
	b.file("xattrs/empty-value", []byte("empty xattr value\n"), 0644)
	b.setxattr("xattrs/empty-value", "user.empty", []byte{})
	b.file(BinaryXattrFile, []byte("binary xattr\n"), 0644)
	b.setxattr(BinaryXattrFile, "user.binary", []byte(BinaryXattrValue))
	b.file("xattrs/large", []byte("large xattr\n"), 0644)
	b.setxattr("xattrs/large", "user.large", b.random("xattr large", 4000))
	b.file("xattrs/multi", []byte("several xattrs\n"), 0644)
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		b.setxattr("xattrs/multi", "user."+n, []byte("value of "+n))
	}
	b.setxattr("xattrs/multi", "user.weird name\t%\xff", []byte("weird name"))
	b.mkdir("xattrs/subdir", 0755)
	b.setxattr("xattrs/subdir", "user.x", []byte("y"))
	b.file("xattrs/subdir/plain", []byte("no xattrs\n"), 0644)
	// A 0400 file with xattrs: a replicator setting them after the chmod
	// as non-root would fail.
	b.file("xattrs/readonly", []byte("ro with xattr\n"), 0644)
	b.setxattr("xattrs/readonly", "user.ro", []byte("still here"))
	b.chmod("xattrs/readonly", 0400)
	if b.asRoot {
		b.file("xattrs/trusted", []byte("trusted xattr\n"), 0644)
		b.setxattr("xattrs/trusted", "trusted.testtree", []byte("trusted value"))
		b.setxattr("xattrs/trusted", "user.also", []byte("user value"))
	}
}

// longName returns a name of exactly n bytes starting with prefix.
func longName(prefix string, n int) string {
	return prefix + strings.Repeat("x", n-len(prefix))
}

func (b *builder) buildNames() {
	b.mkdir("names", 0755)
	for _, n := range []string{
		"with space",
		" leading space",
		"trailing space ",
		"new\nline",
		"\n",
		"tab\there",
		"percent%",
		"%41",
		"%2F%00",
		"back\\slash",
		"\xff\xfe",
		"caf\xe9",
		"café",
		"quote\"'`",
		"star*?[x]",
		"-dash",
		"..dots",
		"dots..",
	} {
		b.file("names/"+n, []byte("name: "+n+"\n"), 0644)
	}
	b.file(LongName, []byte("255-byte name\n"), 0644)
	// 255 bytes but only 128 characters.
	b.file("names/"+strings.Repeat("é", 127)+"x", []byte("255 bytes of UTF-8\n"), 0644)
	longDir := "names/" + longName("dir-", 255)
	b.mkdir(longDir, 0755)
	b.file(longDir+"/"+longName("file-", 255), []byte("255-byte name in a 255-byte dir\n"), 0644)
	b.mkdir("names/dir\nwith newline", 0755)
	b.file("names/dir\nwith newline/a", []byte("a\n"), 0644)
	b.file("names/dir\nwith newline/b\nc", []byte("b c\n"), 0644)
	b.mkdir("names/dir\nwith newline/sub \xff", 0755)
	b.file("names/dir\nwith newline/sub \xff/d", []byte("d\n"), 0644)
	b.mkdir("names/\xe9t\xe9", 0755)
	b.file("names/\xe9t\xe9/latin1", []byte("latin-1 dir\n"), 0644)
}

func (b *builder) buildDirs() {
	b.mkdir("emptydir", 0755)
	b.mkdir("many", 0755)
	for i := 0; i < 500; i++ {
		b.file(fmt.Sprintf("many/f%03d", i), []byte(fmt.Sprintf("file %d of 500\n", i)), 0644)
	}
}

// Mutate makes the master-side changes of a second round, deterministically,
// on a tree made by Build with the same Options: new, modified, appended,
// truncated, renamed, relinked, re-moded, re-owned (as root), re-xattred,
// retargeted, replaced and deleted entries. The changed entries and their
// parent directories get new nanosecond mtimes last, later than Build's.
// It expects the tree exactly as Build left it and is meant to be applied
// once.
func Mutate(root string, opt Options) error {
	b, err := newBuilder(root, opt)
	if err != nil {
		return err
	}

	// New files and dirs, with weird names.
	b.mkdir("new", 0755)
	b.file("new/fresh.txt", b.random("new/fresh.txt", 777), 0644)
	b.mkdir("new/sub\tdir", 0750)
	b.file("new/sub\tdir/with\nnewline \xff", []byte("new weird file\n"), 0600)
	b.file("names/added caf\xe9 %", []byte("added in round 2\n"), 0644)
	b.mkdir("names/new dir\n", 0755)
	b.file("names/new dir\n/inside", []byte("inside\n"), 0644)
	b.setxattr("new/fresh.txt", "user.new", []byte("new file xattr"))
	b.touch("new/sub\tdir/with\nnewline \xff")
	b.touch("new/fresh.txt")
	b.touch("names/added caf\xe9 %")
	b.touch("names/new dir\n/inside")

	// Content changes keeping the size.
	b.overwrite("small/4k.txt", 100, b.random("mutate 4k", 100))
	b.touch("small/4k.txt")
	b.flipMiddle(BigFile)
	b.touch(BigFile)

	// Append, truncate to 0 and to half.
	b.appendFile("small/hello.txt", []byte("appended line\n"))
	b.touch("small/hello.txt")
	b.truncate("size/64k", 0)
	b.touch("size/64k")
	b.truncate("size/64k+1", (64<<10+1)/2)
	b.touch("size/64k+1")

	// Renames: within a dir, into another dir, a populated dir into
	// another parent, and over an existing different file.
	b.rename("small/three", "small/three renamed")
	b.touch("small/three renamed")
	b.rename("small/one", "deep/d0/one")
	b.touch("small")
	b.touch("deep/d0/one")
	b.rename("many", "deep/d0/d1/many moved")
	b.touch("deep/d0/d1/many moved")
	b.rename("names/percent%", "names/%41")
	b.touch("names/%41")

	// Hardlinks: a new link to an existing file, one link of the 3-link
	// group removed.
	b.link("hard/pair/p1", "new/p1 link")
	b.touch("new/p1 link")
	b.remove(HardlinkC)
	b.touch("hard/c")
	b.touch(HardlinkA)

	// Modes and owners.
	b.chmod("modes/ro", 0644)
	b.touch("modes/ro")
	b.chmod("modes/private-dir", 0755)
	b.touch("modes/private-dir")
	b.chmod("modes/setuid", 0755)
	b.touch("modes/setuid")
	b.chmod("small/3000.bin", 0640)
	b.chown("owners/f-12345", UID2, GID2)
	b.chown("owners/dir", UID2, GID1)
	b.chmod("owners/dir", 0750)

	// Xattrs: change a value, add one, remove one.
	b.setxattr("xattrs/text", "user.comment", []byte("changed value"))
	b.setxattr("xattrs/empty-value", "user.added", []byte("added"))
	b.removexattr("xattrs/multi", "user.b")
	b.setxattr("xattrs", "user.dir", []byte("changed on a directory"))

	// A symlink retargeted (remove + recreate).
	b.remove("links/rel")
	b.symlink("../small/4k.txt", "links/rel")
	b.touch("links/rel")

	// A file replaced by a directory of the same name, and the reverse.
	b.remove("empty")
	b.mkdir("empty", 0755)
	b.file("empty/inside", []byte("was a file\n"), 0644)
	b.touch("empty/inside")
	b.remove("emptydir")
	b.file("emptydir", []byte("was a directory\n"), 0644)
	b.touch("emptydir")

	// Deletions: files, a symlink, a FIFO, non-empty trees.
	b.remove("names/tab\there")
	b.touch("names")
	b.remove("small/kib.bin")
	b.remove("links/dangling")
	b.remove("special/fifo")
	b.touch("special")
	b.removeAll("deep/d0/d1/d2")
	b.removeAll("names/dir\nwith newline")

	// New mtimes last, deepest first.
	paths := make([]string, 0, len(b.touched))
	for p := range b.touched {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool {
		di, dj := depth(paths[i]), depth(paths[j])
		if di != dj {
			return di > dj
		}
		return paths[i] < paths[j]
	})
	for _, p := range paths {
		b.setTime(p, "mutate", mutateBase)
	}
	return b.err
}

func depth(rel string) int {
	if rel == "" {
		return 0
	}
	return strings.Count(rel, "/") + 1
}

// overwrite writes data at off in rel without changing its size.
func (b *builder) overwrite(rel string, off int64, data []byte) {
	if b.err != nil {
		return
	}
	f, err := os.OpenFile(b.abs(rel), os.O_WRONLY, 0)
	if err != nil {
		b.fail("open", rel, err)
		return
	}
	_, err = f.WriteAt(data, off)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	b.fail("write", rel, err)
}

// flipMiddle inverts up to 4 KiB in the middle of rel, keeping its size.
func (b *builder) flipMiddle(rel string) {
	if b.err != nil {
		return
	}
	f, err := os.OpenFile(b.abs(rel), os.O_RDWR, 0)
	if err != nil {
		b.fail("open", rel, err)
		return
	}
	err = flip(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	b.fail("flip", rel, err)
}

func flip(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	n := min(st.Size(), 4096)
	off := (st.Size() - n) / 2
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off); err != nil {
		return err
	}
	for i := range buf {
		buf[i] ^= 0xff
	}
	_, err = f.WriteAt(buf, off)
	return err
}

func (b *builder) appendFile(rel string, data []byte) {
	if b.err != nil {
		return
	}
	f, err := os.OpenFile(b.abs(rel), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		b.fail("open", rel, err)
		return
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	b.fail("append", rel, err)
}

func (b *builder) truncate(rel string, size int64) {
	if b.err != nil {
		return
	}
	b.fail("truncate", rel, unix.Truncate(b.abs(rel), size))
}
