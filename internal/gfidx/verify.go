package gfidx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
)

// verifyFile reads the bbolt file at path page by page, without mapping
// it, and checks the structure bbolt would walk: a valid meta page, and
// from its root every branch and leaf page, every nested bucket (inline or
// not), and the freelist page, each where it belongs, of the right kind,
// within the file, reached once, with its elements inside it. A missing
// file is fine (Open creates it).
//
// Why here and not with bbolt's own check: bbolt reads a damaged page
// through its map and panics ("page expected to be ...", "invalid page
// type"), and on Open of a file without a stored freelist, and on the
// rollback of a write transaction, it walks the tree in a goroutine of its
// own, where that panic cannot be recovered: 4 KiB of garbage in gfid.db
// took the whole master down. A file this check refuses is ErrCorrupt: its
// owner removes it and rebuilds the index from the tree.
func verifyFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("gfidx: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("gfidx: %w", err)
	}
	if st.Size() == 0 {
		return nil // bbolt initialises an empty file
	}
	v := &verifier{f: f, size: st.Size(), seen: map[uint64]bool{}}
	if err := v.run(); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	return nil
}

// bbolt's on-disk format (go.etcd.io/bbolt/internal/common): a page
// header {id u64, flags u16, count u16, overflow u32}, then count elements
// of 16 bytes, whose key (and value) offsets are relative to the element.
const (
	pageHeader     = 16
	elemSize       = 16
	branchFlag     = 0x01
	leafFlag       = 0x02
	metaFlag       = 0x04
	freelistFlag   = 0x10
	bucketLeafFlag = 0x01
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	noFreelist     = ^uint64(0)
	// metaSize is the meta struct up to its checksum (which covers it).
	metaSize = 56
	// maxTreeDepth bounds the walk (a real index is a few levels deep).
	maxTreeDepth = 64
)

type verifier struct {
	f        io.ReaderAt
	size     int64
	pageSize int64
	highMark uint64 // the meta's pgid: pages at or above it are unused
	seen     map[uint64]bool
}

type meta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64
	txid     uint64
}

// readMeta reads and validates the meta page at off.
func (v *verifier) readMeta(off int64) (meta, error) {
	b := make([]byte, pageHeader+metaSize+8)
	if _, err := v.f.ReadAt(b, off); err != nil {
		return meta{}, err
	}
	if binary.LittleEndian.Uint16(b[8:]) != metaFlag {
		return meta{}, errors.New("not a meta page")
	}
	m := b[pageHeader:]
	if binary.LittleEndian.Uint32(m[0:]) != boltMagic || binary.LittleEndian.Uint32(m[4:]) != boltVersion {
		return meta{}, errors.New("bad magic or version")
	}
	h := fnv.New64a()
	h.Write(m[:metaSize])
	if h.Sum64() != binary.LittleEndian.Uint64(m[metaSize:]) {
		return meta{}, errors.New("bad checksum")
	}
	return meta{
		pageSize: binary.LittleEndian.Uint32(m[8:]),
		root:     binary.LittleEndian.Uint64(m[16:]),
		freelist: binary.LittleEndian.Uint64(m[32:]),
		pgid:     binary.LittleEndian.Uint64(m[40:]),
		txid:     binary.LittleEndian.Uint64(m[48:]),
	}, nil
}

func (v *verifier) run() error {
	// bbolt uses the meta with the higher transaction id that validates.
	m0, err0 := v.readMeta(0)
	ps := int64(4096)
	if err0 == nil {
		ps = int64(m0.pageSize)
	}
	m1, err1 := v.readMeta(ps)
	var m meta
	switch {
	case err0 == nil && err1 == nil:
		m = m0
		if m1.txid > m0.txid && m1.pageSize == m0.pageSize {
			m = m1
		}
	case err0 == nil:
		m = m0
	case err1 == nil:
		m = m1
	default:
		return fmt.Errorf("no valid meta page (%v; %v)", err0, err1)
	}
	if m.pageSize < 512 || m.pageSize > 1<<20 || m.pageSize&(m.pageSize-1) != 0 {
		return fmt.Errorf("page size %d", m.pageSize)
	}
	v.pageSize = int64(m.pageSize)
	if m.pgid < 2 || int64(m.pgid) > v.size/v.pageSize {
		return fmt.Errorf("high water mark %d beyond the file's %d pages", m.pgid, v.size/v.pageSize)
	}
	v.highMark = m.pgid
	if m.freelist != noFreelist {
		if err := v.freelist(m.freelist); err != nil {
			return err
		}
	}
	return v.tree(m.root, 0)
}

// page reads page id (with its overflow pages) after checking its header.
func (v *verifier) page(id uint64, want uint16) ([]byte, error) {
	if id < 2 || id >= v.highMark {
		return nil, fmt.Errorf("page %d outside 2..%d", id, v.highMark)
	}
	if v.seen[id] {
		return nil, fmt.Errorf("page %d reached twice", id)
	}
	v.seen[id] = true
	hdr := make([]byte, pageHeader)
	if _, err := v.f.ReadAt(hdr, int64(id)*v.pageSize); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	if got := binary.LittleEndian.Uint64(hdr); got != id {
		return nil, fmt.Errorf("page %d says it is page %d", id, got)
	}
	flags := binary.LittleEndian.Uint16(hdr[8:])
	if flags&want == 0 || flags&^want != 0 {
		return nil, fmt.Errorf("page %d has flags %#x, want %#x", id, flags, want)
	}
	overflow := uint64(binary.LittleEndian.Uint32(hdr[12:]))
	if id+overflow >= v.highMark {
		return nil, fmt.Errorf("page %d overflows past the high water mark", id)
	}
	for i := uint64(1); i <= overflow; i++ {
		if v.seen[id+i] {
			return nil, fmt.Errorf("page %d reached twice", id+i)
		}
		v.seen[id+i] = true
	}
	b := make([]byte, (1+overflow)*uint64(v.pageSize))
	if _, err := v.f.ReadAt(b, int64(id)*v.pageSize); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return b, nil
}

func (v *verifier) freelist(id uint64) error {
	b, err := v.page(id, freelistFlag)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	count, idx := uint64(binary.LittleEndian.Uint16(b[10:])), uint64(0)
	if count == 0xFFFF {
		if len(b) < pageHeader+8 {
			return errors.New("freelist: truncated")
		}
		count, idx = binary.LittleEndian.Uint64(b[pageHeader:]), 1
	}
	if (idx+count)*8 > uint64(len(b)-pageHeader) {
		return fmt.Errorf("freelist: %d ids do not fit its pages", count)
	}
	for i := idx; i < idx+count; i++ {
		if fid := binary.LittleEndian.Uint64(b[pageHeader+8*i:]); fid < 2 || fid >= v.highMark {
			return fmt.Errorf("freelist: page id %d outside 2..%d", fid, v.highMark)
		}
	}
	return nil
}

// tree checks the bucket tree whose root is page id.
func (v *verifier) tree(id uint64, depth int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("tree deeper than %d", maxTreeDepth)
	}
	b, err := v.page(id, branchFlag|leafFlag)
	if err != nil {
		return err
	}
	return v.node(b, depth)
}

// node checks one branch or leaf page (b: the page with its overflow, or
// an inline bucket's page).
func (v *verifier) node(b []byte, depth int) error {
	if len(b) < pageHeader {
		return errors.New("truncated page")
	}
	id := binary.LittleEndian.Uint64(b)
	flags := binary.LittleEndian.Uint16(b[8:])
	count := int(binary.LittleEndian.Uint16(b[10:]))
	if pageHeader+count*elemSize > len(b) {
		return fmt.Errorf("page %d: %d elements do not fit", id, count)
	}
	for i := 0; i < count; i++ {
		e := pageHeader + i*elemSize
		switch flags {
		case branchFlag:
			pos := int(binary.LittleEndian.Uint32(b[e:]))
			ksize := int(binary.LittleEndian.Uint32(b[e+4:]))
			if e+pos+ksize > len(b) || pos < 0 || ksize < 0 {
				return fmt.Errorf("page %d: element %d outside the page", id, i)
			}
			if err := v.tree(binary.LittleEndian.Uint64(b[e+8:]), depth+1); err != nil {
				return err
			}
		case leafFlag:
			eflags := binary.LittleEndian.Uint32(b[e:])
			pos := int(binary.LittleEndian.Uint32(b[e+4:]))
			ksize := int(binary.LittleEndian.Uint32(b[e+8:]))
			vsize := int(binary.LittleEndian.Uint32(b[e+12:]))
			end := e + pos + ksize + vsize
			if pos < 0 || ksize < 0 || vsize < 0 || end > len(b) || end < e {
				return fmt.Errorf("page %d: element %d outside the page", id, i)
			}
			if eflags&bucketLeafFlag == 0 {
				continue
			}
			val := b[e+pos+ksize : end]
			if len(val) < 16 {
				return fmt.Errorf("page %d: bucket header of %d bytes", id, len(val))
			}
			if root := binary.LittleEndian.Uint64(val); root != 0 {
				if err := v.tree(root, depth+1); err != nil {
					return err
				}
			} else if len(val) > 16 {
				inline := val[16:]
				if len(inline) < pageHeader || binary.LittleEndian.Uint16(inline[8:]) != leafFlag {
					return fmt.Errorf("page %d: element %d: bad inline bucket", id, i)
				}
				if err := v.node(inline, depth+1); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("page %d has flags %#x", id, flags)
		}
	}
	return nil
}
