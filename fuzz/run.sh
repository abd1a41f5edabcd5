#!/usr/bin/env bash
# Run every fuzz target for RUNS inputs (default 10 million), seeded with the real log
# lines of tests/fixtures/corpus. Needs the nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly; cargo install cargo-fuzz
# Usage: fuzz/run.sh [RUNS] [TARGET...]     Prints each target's executions and time.
set -euo pipefail
cd "$(dirname "$0")"
runs=${1:-10000000}; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=($(sed -n 's/^name = "\(.*\)"/\1/p' Cargo.toml | grep -v oomguard-fuzz))
cargo +nightly fuzz build -s none -O >/dev/null
fix=../tests/fixtures/corpus
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  if [ -z "$(ls -A "corpus/$t")" ]; then
    i=0
    { cut -f4 "$fix/public_reports.tsv"; cat "$fix/dmesg_memcg_v1_kernel6.18.txt"; } | while IFS= read -r l; do
      i=$((i + 1)); printf '%s' "$l" > "corpus/$t/seed-$i"
    done
    cp "$fix/dmesg_memcg_v1_kernel6.18.txt" "corpus/$t/seed-capture"
    printf '%s\n' '{"__REALTIME_TIMESTAMP":"1700000000000000","MESSAGE":"Out of memory: Killed process 1 (x)","_TRANSPORT":"kernel"}' > "corpus/$t/seed-json"
    printf '%s' '6,1234,310642620,-;Memory cgroup out of memory: Killed process 2242 (python3)' > "corpus/$t/seed-kmsg"
    printf '%s\n' '{"op":"shield","pid":1234,"adj":-1000}' > "corpus/$t/seed-req"
    printf '%s\0' '{"method":"io.systemd.oom.Prekill.Notify","parameters":{"cgroup":"/user.slice/x.scope"}}' > "corpus/$t/seed-varlink"
  fi
  s=$(date +%s)
  out=$(cargo +nightly fuzz run -s none -O "$t" -- -runs="$runs" -max_len=8192 -print_final_stats=1 2>&1) || { echo "$out" | tail -30; echo "FUZZ $t: CRASH"; exit 1; }
  e=$(date +%s)
  execs=$(echo "$out" | sed -n 's/^stat::number_of_executed_units: *//p' | tail -1)
  echo "FUZZ $t: $execs inputs, no crash, $((e - s)) s"
done
