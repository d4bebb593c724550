package recorder

import "github.com/georep/georep/internal/gfid"

// dirMap maps an event source's name for a registered directory (an
// inotify watch descriptor, a fanotify file handle) to the directory's
// gfid and back.
type dirMap[K comparable] struct {
	byKey map[K]gfid.GFID
	byDir map[gfid.GFID]K
}

func newDirMap[K comparable]() dirMap[K] {
	return dirMap[K]{byKey: map[K]gfid.GFID{}, byDir: map[gfid.GFID]K{}}
}

// set registers directory g under k, dropping what either was before: the
// same inode given a new gfid, or the gfid met under another key.
func (m dirMap[K]) set(k K, g gfid.GFID) {
	if old, ok := m.byKey[k]; ok && old != g {
		delete(m.byDir, old)
	}
	if old, ok := m.byDir[g]; ok && old != k {
		delete(m.byKey, old)
	}
	m.byKey[k] = g
	m.byDir[g] = k
}

func (m dirMap[K]) has(g gfid.GFID) bool {
	_, ok := m.byDir[g]
	return ok
}

// remove drops directory g, returning its key.
func (m dirMap[K]) remove(g gfid.GFID) (K, bool) {
	k, ok := m.byDir[g]
	if ok {
		delete(m.byDir, g)
		delete(m.byKey, k)
	}
	return k, ok
}

// removeKey drops key k (the kernel dropped it).
func (m dirMap[K]) removeKey(k K) {
	if g, ok := m.byKey[k]; ok {
		delete(m.byKey, k)
		if m.byDir[g] == k {
			delete(m.byDir, g)
		}
	}
}
