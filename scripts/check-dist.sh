#!/usr/bin/env bash
# Checks what dist/ ships, with the tools that read it (make check-dist;
# CI runs it):
#   - the systemd units: systemd-analyze verify (any warning fails), and
#     systemd-analyze security under a ceiling, on copies whose ExecStart
#     is a georep built here (verify wants the binary to exist);
#   - the Prometheus alerting rules: promtool check rules, and promtool
#     test rules, which proves each alert fires when it should;
#   - the completion scripts (georep completion bash|zsh|fish): each
#     shell's syntax check (-n).
# A missing tool is installed with apt-get. It is skipped, with a message,
# only where it cannot be had: apt has no such package, there is no
# apt-get, or (outside CI) we are not root. A failed install fails.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

apt_updated=
# need CMD PKG: makes CMD available, installing Debian's PKG when it is
# missing; returns 1 (the caller skips) when it cannot be had.
need() {
	local cmd=$1 pkg=$2
	command -v "$cmd" >/dev/null && return 0
	if ! command -v apt-get >/dev/null; then
		echo "-- skipped: $cmd is not installed, and there is no apt-get to install $pkg"
		return 1
	fi
	if [[ $(id -u) != 0 && ${CI:-} != true ]]; then
		echo "-- skipped: $cmd is not installed (apt-get install $pkg as root)"
		return 1
	fi
	# (set -e does not hold in a function called as a condition: each
	# step that must not fail exits by itself.)
	if [[ -z $apt_updated ]]; then
		apt-get update -qq || { echo "check-dist: apt-get update failed" >&2; exit 1; }
		apt_updated=1
	fi
	if ! apt-cache show "$pkg" >/dev/null 2>&1; then
		echo "-- skipped: $cmd is not installed, and apt has no package $pkg"
		return 1
	fi
	# No recommends: prometheus would bring node-exporter and its timers.
	# (Debian's packages start no service where policy-rc.d forbids it,
	# as in containers; promtool is all that is used here.)
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null ||
		{ echo "check-dist: apt-get install $pkg failed" >&2; exit 1; }
	command -v "$cmd" >/dev/null || { echo "check-dist: $pkg installed, but no $cmd" >&2; exit 1; }
}

echo "-- building georep"
go build -o "$work/georep" ./cmd/georep

echo "-- systemd units"
if need systemd-analyze systemd; then
	for unit in dist/systemd/*.service; do
		sed "s|/usr/local/bin/georep|$work/georep|g" "$unit" >"$work/${unit##*/}"
		grep -q "^ExecStart=$work/georep " "$work/${unit##*/}" ||
			{ echo "check-dist: $unit: ExecStart is not /usr/local/bin/georep ..." >&2; exit 1; }
	done
	# verify reports most mistakes (an unknown key, a bad value) as
	# warnings with exit status 0: any output fails.
	out=$(cd "$work" && systemd-analyze verify --man=no ./*.service 2>&1) || { echo "$out" >&2; exit 1; }
	if [[ -n $out ]]; then
		echo "check-dist: systemd-analyze verify:" >&2
		echo "$out" >&2
		exit 1
	fi
	echo "systemd-analyze verify: $(cd dist/systemd && echo *.service) ok"
	# The sandbox's rating (0 best, 10 worst): the master is about 4, the
	# slave (which needs more) about 5; a change that weakens either past
	# 6 fails.
	if systemd-analyze security --help 2>/dev/null | grep -q -- --offline; then
		for unit in "$work"/*.service; do
			if ! out=$(cd "$work" && systemd-analyze security --offline=true --threshold=60 "${unit##*/}" 2>&1); then
				echo "$out" >&2
				echo "check-dist: ${unit##*/}: exposure above 6.0" >&2
				exit 1
			fi
			echo "$out" | grep 'Overall exposure' || true
		done
	fi
fi

echo "-- Prometheus alerting rules"
if need promtool prometheus; then
	promtool check rules dist/prometheus/georep-alerts.yml
	(cd dist/prometheus && promtool test rules georep-alerts_test.yml)
fi

echo "-- completion scripts"
"$work/georep" completion bash >"$work/georep.bash"
bash -n "$work/georep.bash"
echo "bash -n: ok"
if need zsh zsh; then
	"$work/georep" completion zsh >"$work/_georep"
	zsh -n "$work/_georep"
	echo "zsh -n: ok"
fi
if need fish fish; then
	"$work/georep" completion fish >"$work/georep.fish"
	fish -n "$work/georep.fish"
	echo "fish -n: ok"
fi
