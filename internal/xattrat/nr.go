//go:build linux && (amd64 || arm64 || riscv64 || loong64 || 386 || arm || ppc64 || ppc64le || s390x)

package xattrat

// haveAt: on these architectures the *xattrat calls have the common
// table's numbers (463-465).
const haveAt = true
