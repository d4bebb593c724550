//go:build !(linux && (amd64 || arm64 || riscv64 || loong64 || 386 || arm || ppc64 || ppc64le || s390x))

package xattrat

// haveAt: elsewhere (mips, alpha: other numbering) only the /proc path.
const haveAt = false
