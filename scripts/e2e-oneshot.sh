#!/usr/bin/env bash
# End-to-end check as a new user would do it: build georep, make a CA and
# certificates, start a slave process (mutual TLS), run a one-shot master on a tree of awkward cases, and compare the
# trees with tools that share no code with georep (GNU find, cmp, getfattr).
# Then rerun (nothing may be rewritten), change the master, rerun, compare.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/georep-e2e.XXXXXX)
slave_pid=
cleanup() { [ -n "$slave_pid" ] && kill "$slave_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
go build -o "$work/georep" ./cmd/georep
M=$work/master S=$work/slave
mkdir -p "$M" "$S"

# Awkward cases, made with coreutils.
mkdir -p "$M/deep/$(printf 'd/%.0s' {1..20})"
echo bottom > "$M/deep/$(printf 'd/%.0s' {1..20})/f"
printf 'x%.0s' {1..255} | xargs -I{} touch "$M/{}"
touch "$M/with space" "$M/$(printf 'new\nline')" "$M/per%cent" "$M/$(printf 'tab\there')" "$M/$(printf 'caf\xe9')"
head -c 3000000 /dev/urandom > "$M/big"; : > "$M/empty"
ln -s ../big "$M/deep/rel"; ln -s /etc/passwd "$M/abs"; ln -s nowhere "$M/dangling"
mkdir "$M/h1" "$M/h2"; echo linked > "$M/h1/a"; ln "$M/h1/a" "$M/h2/b"
mkfifo "$M/fifo"
chmod 4755 "$M/big"; chmod 0400 "$M/empty"; mkdir "$M/sticky"; chmod 1777 "$M/sticky"
if [ "$(id -u)" = 0 ]; then mknod "$M/null" c 1 3; chown 12345:54321 "$M/h1/a"; fi
if command -v setfattr >/dev/null; then setfattr -n user.k -v 0x00ff01 "$M/big"; fi
touch -h -d '2021-02-03 04:05:06.123456789' "$M/abs" "$M/fifo" "$M/big"

"$work/georep" cert init --dir "$work/certs" > /dev/null
"$work/georep" cert issue --dir "$work/certs" --name slave --role slave > /dev/null
"$work/georep" cert issue --dir "$work/certs" --name master --role master > /dev/null
"$work/georep" slave --root "$S" --listen 127.0.0.1:0 --state-dir "$work/sstate" --tls-dir "$work/certs" --allow-master master 2> "$work/slave.log" &
slave_pid=$!
for _ in $(seq 100); do grep -q 'listen=127' "$work/slave.log" && break; sleep 0.1; done
addr=$(grep -o 'listen=127[0-9.:]*' "$work/slave.log" | head -1 | cut -d= -f2)
run() { "$work/georep" master --root "$M" --slave "$addr" --slave-name slave --tls-dir "$work/certs" --state-dir "$work/mstate" --oneshot --log-level warn; }

# Metadata listing: path, type, mode, owner, size, mtime(ns), link target, inode group, rdev.
listing() {
	(cd "$1" && find . -path ./.georep -prune -o ! -path . -printf '%P\0%y %m %U %G %s %T@ %l %n %D\0' | tr '\0\n' '\n?' | paste - - | sort)
}
xattrs() {
	command -v getfattr >/dev/null || return 0
	(cd "$1" && find . -path ./.georep -prune -o ! -path . -type f -print0 | sort -z | xargs -0 -r getfattr -h -d -m '^user\.' -e hex 2>/dev/null | grep -v '^user.georep' || true)
}
compare() {
	diff <(listing "$M" | sed 's/ [0-9]* [0-9]*$//') <(listing "$S" | sed 's/ [0-9]* [0-9]*$//')
	(cd "$M" && find . -type f -print0) | while IFS= read -r -d '' f; do cmp -s "$M/$f" "$S/$f" || { echo "content differs: $f"; exit 1; }; done
	diff <(xattrs "$M") <(xattrs "$S")
	[ "$(stat -c %i "$S/h1/a")" = "$(stat -c %i "$S/h2/b")" ] || { echo "hardlink lost"; exit 1; }
}

run; compare; echo "first sync: equal"
before=$(cd "$S" && find . -path ./.georep -prune -o ! -path . -printf '%P %Z %i\n' 2>/dev/null | sort; find "$S" -mindepth 1 -path "$S/.georep" -prune -o -printf '%P %C@\n' | sort)
run | grep -q '0 files sent (0 bytes)' || { echo "second run sent data"; exit 1; }
after=$(cd "$S" && find . -path ./.georep -prune -o ! -path . -printf '%P %Z %i\n' 2>/dev/null | sort; find "$S" -mindepth 1 -path "$S/.georep" -prune -o -printf '%P %C@\n' | sort)
[ "$before" = "$after" ] || { echo "second run rewrote something:"; diff <(echo "$before") <(echo "$after"); exit 1; }
echo "second sync: nothing rewritten"

echo more >> "$M/h1/a"; mv "$M/deep" "$M/moved"; rm "$M/dangling"; chmod 600 "$M/with space"
echo new > "$M/$(printf 'new\nline')"; ln "$M/big" "$M/h2/big-link"; truncate -s 10 "$M/big"
run; compare; echo "after changes: equal"
echo "e2e: OK"
