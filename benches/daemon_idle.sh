#!/usr/bin/env bash
# Benchmark: the oomguard daemon guarding 3 jobs, idle for DURATION seconds (default 60), against
# earlyoom polling memory at the same rate, side by side in one run: CPU time (utime+stime from
# /proc/PID/stat) and resident memory of each. Needs root, earlyoom and python3.
# Two windows of DURATION each: from 2 s after the jobs were shielded, and the one after it.
# Usage: benches/daemon_idle.sh [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-60}
cargo build --release -q
bin=$PWD/target/release/oomguard
command -v earlyoom >/dev/null || { echo "earlyoom missing: apt-get install earlyoom" >&2; exit 1; }
tmp=$(mktemp -d)
chmod 755 "$tmp"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
export OOMGUARD_SOCKET=$tmp/oomguard.sock OOMGUARD_STATE_DIR=$tmp/state

"$bin" daemon --no-prekill >"$tmp/daemon.log" 2>&1 &
pids+=($!); dpid=$!
for _ in $(seq 50); do [ -S "$OOMGUARD_SOCKET" ] && break; sleep 0.1; done
# Three jobs of user nobody, shielded with `protect` as that user: the request goes through
# the daemon and it guards them. (`run --detach` would add a supervisor per job that wakes
# each second too, for the user's own --on-risk and notifications: separate processes, not
# counted here, but waking in step with the daemon's guard they make its wake-ups dearer.)
mkdir -m 777 "$OOMGUARD_STATE_DIR"
for i in 1 2 3; do
  setpriv --reuid=65534 --regid=65534 --clear-groups sleep $((2 * dur + 30)) &
  pids+=($!)
  sleep 0.1
  setpriv --reuid=65534 --regid=65534 --clear-groups "$bin" protect --adj 0 "$!" >/dev/null
done
# earlyoom's poll interval adapts (100 ms..1 s) to the headroom; with memory free it polls
# every second, as the guard does for calm jobs. -M/-S far below so it never acts.
earlyoom -m 1 -s 1 -r 3600 >"$tmp/earlyoom.log" 2>&1 &
pids+=($!); epid=$!
sleep 2
# CPU time in ns from schedstat (clock ticks are too coarse for idle daemons), all threads.
cpu() { cat /proc/$1/task/*/schedstat | awk '{s += $1} END {print s}'; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
d0=$(cpu "$dpid"); e0=$(cpu "$epid")
sleep "$dur"
d1=$(cpu "$dpid"); e1=$(cpu "$epid"); r1d=$(rss "$dpid"); r1e=$(rss "$epid")
# A second window: the daemon settled (its first looks at each job's cgroups, at 1, 3, 7,
# 15, 31 s, are behind it; then one a minute).
sleep "$dur"
d2=$(cpu "$dpid"); e2=$(cpu "$epid")
guarded=$(grep -c "guarding job" "$tmp/daemon.log" || true)
python3 - "$d0" "$d1" "$d2" "$e0" "$e1" "$e2" "$r1d" "$r1e" "$(rss "$dpid")" "$(rss "$epid")" "$dur" "$guarded" <<'PY'
import sys
d0, d1, d2, e0, e1, e2, r1d, r1e, r2d, r2e, dur, guarded = sys.argv[1:]
for name, (da, db, ea, eb, dr, er) in [
    (f"first {dur} s", (d0, d1, e0, e1, r1d, r1e)),
    (f"next {dur} s", (d1, d2, e1, e2, r2d, r2e)),
]:
    d = (int(db) - int(da)) / 1e9; e = (int(eb) - int(ea)) / 1e9
    print(f"| {name} idle, 3 jobs ({guarded} guarded) | {d * 1000:.1f} ms | {e * 1000:.1f} ms | "
          f"{(d / e) if e > 0 else float('nan'):.2f} | {int(dr) / 1024:.1f} MiB | {int(er) / 1024:.1f} MiB |")
PY
