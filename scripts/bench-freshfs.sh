#!/bin/bash
# bench-freshfs.sh runs the bench (scripts/bench) on a freshly made,
# loop-mounted ext4 without a journal, and removes it afterwards: ext4
# slows file creation down for minutes after mass deletions, and a new
# filesystem per run takes that noise (and /tmp's history) out of W1, W2
# and W1x2. Needs root (mkfs, mount).
#
# usage: scripts/bench-freshfs.sh [GEOREP-BINARY]
#
# Everything else is the bench's own environment (BENCH_ONLY, RUNS,
# BENCH_SCALE, BENCH_OUT, ...), passed through. To compare two commits,
# build each and alternate: A, B, A, B.
#   BENCH_ONLY=W1,W2,W5 RUNS=5 BENCH_OUT=a1.md scripts/bench-freshfs.sh /tmp/a/georep
set -euo pipefail
bin=${1:-}
img=$(mktemp /var/tmp/georep-benchfs-XXXXXX.img)
mnt=$(mktemp -d /mnt/georep-benchfs-XXXXXX)
cleanup() {
	umount "$mnt" 2>/dev/null || true
	rmdir "$mnt" 2>/dev/null || true
	rm -f "$img"
}
trap cleanup EXIT
truncate -s "${BENCH_FS_SIZE:-40G}" "$img"
mkfs.ext4 -q -F -N "${BENCH_FS_INODES:-5000000}" -O ^has_journal "$img"
mount -o loop "$img" "$mnt"
cd "$(dirname "$0")/.."
if [ -n "$bin" ]; then
	export GEOREP=$bin
elif [ -z "${GEOREP:-}" ]; then
	make build >/dev/null
fi
TMPDIR=$mnt go run ./scripts/bench
