// Package marks keeps georep's progress marks as xattrs: the volume identity
// of a tree's root, the session's stime ("the slave has everything up to
// here") and entry stime ("the slave has every entry op up to here") on the
// master root, and the session mark on the slave root. Where the filesystem
// refuses xattrs, the marks go to a file in the state directory instead.
package marks

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/atomicfile"
	"github.com/georep/georep/internal/gfid"
)

// Key names a mark.
type Key string

// Keys of the marks georep keeps.
const (
	KeyVolumeID = Key("volume-id")
)

// Stime is the key of a session's stime.
func Stime(session []byte) Key { return Key(hex.EncodeToString(session) + ".stime") }

// CrawlStart is the key of when a session's first crawl began (until its
// first stime: the slave's copies are not older than it).
func CrawlStart(session []byte) Key { return Key(hex.EncodeToString(session) + ".crawl-start") }

// EntryStime is the key of a session's entry stime.
func EntryStime(session []byte) Key { return Key(hex.EncodeToString(session) + ".entry-stime") }

// ErrNoMark says the mark is absent.
var ErrNoMark = errors.New("marks: no such mark")

// timeVersion prefixes an encoded time mark, so that a format change is
// detected instead of misread.
const timeVersion = 1

// EncodeTime encodes a time mark (ns since the epoch).
func EncodeTime(ns int64) []byte {
	b := make([]byte, 9)
	b[0] = timeVersion
	binary.BigEndian.PutUint64(b[1:], uint64(ns))
	return b
}

// DecodeTime decodes a time mark written by EncodeTime.
func DecodeTime(b []byte) (int64, error) {
	if len(b) != 9 || b[0] != timeVersion {
		return 0, fmt.Errorf("marks: malformed time mark (%d bytes)", len(b))
	}
	ns := int64(binary.BigEndian.Uint64(b[1:]))
	if ns < 0 {
		return 0, fmt.Errorf("marks: negative time mark %d", ns)
	}
	return ns, nil
}

// Store reads and writes the marks of one tree root.
type Store struct {
	root     string
	ns       gfid.Namespace
	fallback string // file used when the root refuses xattrs; "" = none

	mu   sync.Mutex
	file map[Key][]byte // loaded fallback marks, nil until used
}

// NewStore keeps marks on root in namespace ns; fallbackFile (in a state
// directory) takes them when the filesystem refuses xattrs.
func NewStore(root string, ns gfid.Namespace, fallbackFile string) *Store {
	return &Store{root: root, ns: ns, fallback: fallbackFile}
}

func unsupported(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP)
}

// full reports a setxattr refused for want of room.
func full(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.E2BIG)
}

// Get reads mark k.
func (s *Store) Get(k Key) ([]byte, error) {
	buf := make([]byte, 256)
	n, err := unix.Getxattr(s.root, s.ns.Name(string(k)), buf)
	switch {
	case err == nil:
		return buf[:n], nil
	case errors.Is(err, unix.ENODATA):
		// Maybe it lives in the fallback file (the fs refused once). A
		// fallback file that cannot be read must not pass for "no mark":
		// that would mint a new volume identity.
		return s.fileGet(k)
	case unsupported(err) && s.fallback != "":
		return s.fileGet(k)
	}
	return nil, fmt.Errorf("marks: reading %s on %s: %w", k, s.root, err)
}

// Set writes mark k.
func (s *Store) Set(k Key, v []byte) error {
	err := unix.Setxattr(s.root, s.ns.Name(string(k)), v, 0)
	if err == nil {
		return nil
	}
	if unsupported(err) && s.fallback != "" {
		return s.fileSet(k, v)
	}
	if full(err) && s.fallback != "" {
		// The root's xattr space is full (a few KiB on ext4: the marks
		// of a few dozen slaves this tree was ever replicated to). The
		// file takes this mark, first (if it cannot, the old mark stays
		// as it was); then no older copy may stay on the root, where Get
		// would find it first.
		if ferr := s.fileSet(k, v); ferr != nil {
			return fmt.Errorf("marks: writing %s on %s: %w (and in the fallback file: %v)", k, s.root, err, ferr)
		}
		if rerr := unix.Removexattr(s.root, s.ns.Name(string(k))); rerr != nil && !errors.Is(rerr, unix.ENODATA) {
			return fmt.Errorf("marks: %s is in %s, but its older copy on %s stays: %w", k, s.fallback, s.root, rerr)
		}
		return nil
	}
	return fmt.Errorf("marks: writing %s on %s: %w", k, s.root, err)
}

// Remove removes mark k (from the root and the fallback file); an absent
// mark is no error.
func (s *Store) Remove(k Key) error {
	err := unix.Removexattr(s.root, s.ns.Name(string(k)))
	if err != nil && !errors.Is(err, unix.ENODATA) && !unsupported(err) {
		return fmt.Errorf("marks: removing %s on %s: %w", k, s.root, err)
	}
	if s.fallback == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return err
	}
	if _, ok := s.file[k]; !ok {
		return nil
	}
	delete(s.file, k)
	data, err := json.Marshal(s.file)
	if err != nil {
		return fmt.Errorf("marks: encoding: %w", err)
	}
	return atomicfile.Write(s.fallback, data, 0o600)
}

// GetTime reads a time mark; an absent mark is (0, ErrNoMark).
func (s *Store) GetTime(k Key) (int64, error) {
	v, err := s.Get(k)
	if err != nil {
		return 0, err
	}
	ns, err := DecodeTime(v)
	if err != nil {
		return 0, fmt.Errorf("%s on %s: %w", k, s.root, err)
	}
	return ns, nil
}

// SetTime writes a time mark.
func (s *Store) SetTime(k Key, ns int64) error { return s.Set(k, EncodeTime(ns)) }

// VolumeID returns the root's volume identity, creating it when absent and
// create is true.
func (s *Store) VolumeID(create bool) ([]byte, error) {
	v, err := s.Get(KeyVolumeID)
	if err == nil {
		if len(v) != 16 {
			return nil, fmt.Errorf("marks: volume-id on %s is %d bytes, want 16 (corrupt)", s.root, len(v))
		}
		return v, nil
	}
	if !errors.Is(err, ErrNoMark) || !create {
		return nil, err
	}
	g, err := gfid.New()
	if err != nil {
		return nil, err
	}
	if err := s.Set(KeyVolumeID, g[:]); err != nil {
		return nil, err
	}
	return g[:], nil
}

func (s *Store) load() error {
	if s.file != nil {
		return nil
	}
	s.file = map[Key][]byte{}
	data, err := os.ReadFile(s.fallback)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("marks: reading %s: %w", s.fallback, err)
	}
	var m map[Key][]byte
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		s.file = nil
		return fmt.Errorf("marks: %s is corrupt: %v", s.fallback, err)
	}
	s.file = m
	return nil
}

func (s *Store) fileGet(k Key) ([]byte, error) {
	if s.fallback == "" {
		return nil, ErrNoMark
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return nil, err
	}
	v, ok := s.file[k]
	if !ok {
		return nil, ErrNoMark
	}
	return append([]byte(nil), v...), nil
}

func (s *Store) fileSet(k Key, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return err
	}
	s.file[k] = append([]byte(nil), v...)
	data, err := json.Marshal(s.file)
	if err != nil {
		return fmt.Errorf("marks: encoding: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(s.fallback), 0o700); err != nil {
		return fmt.Errorf("marks: %w", err)
	}
	return atomicfile.Write(s.fallback, data, 0o600)
}
