package master

// SetWalkHook has m's live crawls call fn before they list a directory,
// with its path relative to the root ("" for the root). Call it before
// Run.
func SetWalkHook(m *Master, fn func(path string)) { m.walkHook = fn }
