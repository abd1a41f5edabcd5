#!/usr/bin/env bash
# history --file over a 1 GiB synthetic kernel log (noise with a real memcg OOM incident
# every ~1 MiB) against `grep -c` with the same words (oomguard's prefilter needles, as
# fixed strings), side by side, file in page cache, best of 3 runs each.
# Usage: benches/history_vs_grep.sh [SIZE_MB (default 1024)]
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1024}
cargo build --release -q
bin=target/release/oomguard
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log=$tmp/kern.log
k=$(python3 benches/synth_kernel_log.py "$tmp/part.log" 64)
: > "$log"
for _ in $(seq $((size / 64))); do cat "$tmp/part.log" >> "$log"; done
kills=$((k * size / 64))
bytes=$(stat -c %s "$log")
# The prefilter's needles, one per line, for grep -F.
sed -n '/^pub const NEEDLES/,/^];/p' src/model/parse/prefilter.rs | grep -o '"[^"]*"' | tr -d '"' > "$tmp/needles"
cat "$log" > /dev/null   # into the page cache
best() { # best wall seconds of 3 runs of "$@"
  local b=999
  for _ in 1 2 3; do
    local s e
    s=$(date +%s.%N); "$@" > "$tmp/out"; e=$(date +%s.%N)
    b=$(python3 -c "print(min($b, $e - $s))")
  done
  echo "$b"
}
th=$(best "$bin" history --json --file "$log")
got=$(python3 -c "import json; print(len(json.load(open('$tmp/out'))))")
tg=$(best env LC_ALL=C grep -c -F -f "$tmp/needles" "$log")
glines=$(cat "$tmp/out")
# grep's best case, for scale: one fixed string (finds only the kernel's kill lines).
t1=$(best env LC_ALL=C grep -c -F 'Killed process' "$log")
g1=$(cat "$tmp/out")
python3 - "$bytes" "$th" "$tg" "$got" "$kills" "$glines" "$t1" "$g1" <<'PY'
import sys
b, th, tg, got, kills, gl = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
t1, g1 = float(sys.argv[7]), int(sys.argv[8])
print(f"log: {b/1e9:.2f} GB, {kills} kills planted")
print(f"oomguard history --json --file: {th:.3f} s  {b/th/1e9:.2f} GB/s  ({got} events)")
print(f"LC_ALL=C grep -c -F -f needles:  {tg:.3f} s  {b/tg/1e9:.2f} GB/s  ({gl} lines)")
print(f"LC_ALL=C grep -c -F 'Killed process': {t1:.3f} s  {b/t1/1e9:.2f} GB/s  ({g1} lines; one string, for scale)")
print(f"ratio history/grep time: {th/tg:.2f} (below 1 = history faster); vs one-string grep {th/t1:.2f}")
if got != kills:
    sys.exit(f"FAIL: {got} events, {kills} kills planted")
PY
