#!/usr/bin/env bash
# Benchmark: ranking every process (`oomguard top --once --json`) against
# `ps -e -o pid,rss,comm` on the same process set, side by side with hyperfine, with the
# machine's own processes plus 0, 3,000 and 10,000 extra sleeping processes.
# Usage: benches/top_vs_ps.sh [EXTRA ...]     Needs: hyperfine, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin=$PWD/target/release/oomguard
command -v hyperfine >/dev/null || { echo "hyperfine missing: apt-get install hyperfine" >&2; exit 1; }
tmp=$(mktemp -d)
sleepers=""
cleanup() { [ -n "$sleepers" ] && kill -TERM -- "-$sleepers" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

# N forked python children that pause (copy-on-write: little memory each), in their own
# process group so they all go at once.
start_sleepers() {
  setsid python3 -c '
import os, signal, sys
n = int(sys.argv[1])
for _ in range(n):
    if os.fork() == 0:
        signal.pause(); os._exit(0)
print("ready", flush=True)
signal.pause()' "$1" > "$tmp/ready" &
  sleepers=$!
  until grep -q ready "$tmp/ready" 2>/dev/null; do sleep 0.2; done
}

echo "| extra processes | processes in /proc | ps -e -o pid,rss,comm | oomguard top --once --json | ratio top/ps |"
echo "|---:|---:|---:|---:|---:|"
[ $# -gt 0 ] || set -- 0 3000 10000
for n in "$@"; do
  [ "$n" -gt 0 ] && start_sleepers "$n"
  count=$(ls /proc | grep -c '^[0-9]')
  hyperfine -N --warmup 3 --min-runs 15 --export-json "$tmp/r.json" \
    "ps -e -o pid,rss,comm" "$bin top --once --json" >/dev/null 2>&1
  python3 - "$tmp/r.json" "$n" "$count" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
ps, top = r[0]["mean"] * 1000, r[1]["mean"] * 1000
sd = lambda x: x["stddev"] * 1000
print(f"| {sys.argv[2]} | {sys.argv[3]} | {ps:.1f} ms ± {sd(r[0]):.1f} | {top:.1f} ms ± {sd(r[1]):.1f} | {top/ps:.2f} |")
PY
  if [ -n "$sleepers" ]; then kill -TERM -- "-$sleepers" 2>/dev/null || true; wait "$sleepers" 2>/dev/null || true; sleepers=""; fi
done
