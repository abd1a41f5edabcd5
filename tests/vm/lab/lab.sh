#!/bin/bash
# Runs inside the VM as root (lab.service). Prints "LAB ..." lines on the serial console:
#   LAB RESULT <scenario> PASS|FAIL <what>        LAB LOG <scenario> <evidence line>
# A protected job that dies or a control that survives is a FAIL.
exec > /dev/ttyS0 2>&1
set -u
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
SCENARIOS=${*:-doctor oomd protect memcg earlyoom top valve oomdckpt history}
U=/run/user/1000
as_user() { runuser -u user -- env XDG_RUNTIME_DIR=$U DBUS_SESSION_BUS_ADDRESS=unix:path=$U/bus HOME=/home/user "$@"; }
result() { echo "LAB RESULT $1 $2 ${*:3}"; }
log() { local s=$1; shift; while IFS= read -r l; do echo "LAB LOG $s $l"; done <<< "$*"; }
# Wait until the process $1 ends or $2 seconds pass; 0 if it ended.
wait_end() { local i; for ((i = 0; i < $2 * 10; i++)); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; return 1; }
# The pid of the newest python3 running /lab/$1 (not a wrapper whose arguments mention it).
newest() { local i p; for i in $(seq 100); do p=$(pgrep -n -f "^(/usr/bin/)?python3 /lab/$1") && { echo "$p"; return; }; sleep 0.1; done; }
oomd_kills() { journalctl -b -u systemd-oomd --no-pager -o cat | grep -E "Killed|killed" | tail -n "${1:-3}"; }
crunch_on() { systemctl set-property --runtime user@1000.service MemoryHigh=150M; }
crunch_off() {
  systemctl set-property --runtime user@1000.service MemoryHigh=infinity
  for f in /sys/fs/cgroup/user.slice/user-1000.slice/*/memory.high; do echo max > "$f" 2>/dev/null; done
}

echo "LAB BOOTED $(uname -r) systemd $(systemctl --version | head -1 | cut -d' ' -f2)"
# The Debian package, when the lab was given one: install it as a user would, and check what
# its postinst must do (unit enabled and running) and what it ships.
if [ -f /lab/oomguard.deb ]; then
  if out=$(dpkg -i /lab/oomguard.deb 2>&1); then
    for i in $(seq 50); do systemctl is-active -q oomguard.service && break; sleep 0.2; done
    missing=""
    systemctl is-enabled -q oomguard.service || missing+=" unit-not-enabled"
    systemctl is-active -q oomguard.service || missing+=" daemon-not-running"
    [ "$(systemctl show -p ExecStart --value oomguard.service | grep -o 'path=[^ ;]*')" = "path=/usr/bin/oomguard" ] || missing+=" execstart"
    for f in /usr/bin/oomguard /usr/share/man/man1/oomguard.1.gz /usr/share/bash-completion/completions/oomguard /etc/oomguard/config.toml; do
      [ -e "$f" ] || missing+=" $f"
    done
    dpkg-query -W -f='${Conffiles}' oomguard | grep -q /etc/oomguard/config.toml || missing+=" conffile"
    if [ -z "$missing" ]; then
      echo "LAB RESULT deb PASS dpkg -i installed $(dpkg-query -W -f='${Package} ${Version}' oomguard); unit enabled and running /usr/bin/oomguard; man page, completions, conffile"
    else
      echo "LAB RESULT deb FAIL missing:$missing"
    fi
  else
    echo "LAB RESULT deb FAIL dpkg -i failed: $(echo "$out" | tail -3 | tr '\n' ' ')"
  fi
fi
for i in $(seq 100); do [ -S $U/bus ] && systemctl is-active -q oomguard.service && break; sleep 0.2; done
echo "LAB INFO user-manager $(systemctl is-active user@1000.service) oomguard $(systemctl is-active oomguard.service) oomd $(systemctl is-active systemd-oomd)"

# A terminal-like job of the user: a scope under user@1000.service. Prints the job's pid.
user_job() { # name cmd...
  local name=$1; shift
  # A scenario before may have cost the user their manager (a killer's bystander): say so and
  # start it again, or the job never starts.
  if [ ! -S $U/bus ]; then
    echo "LAB LOG $name user manager was down: $(journalctl -q -u user@1000.service -n 3 --no-pager | tr '\n' '|')"
    systemctl start user@1000.service
    for i in $(seq 50); do [ -S $U/bus ] && break; sleep 0.2; done
  fi
  as_user systemd-run --user --scope --quiet --unit="app-lab-$name-$$.scope" -- "$@" > "/tmp/$name.out" 2>&1 &
}

scenario_oomd() {
  local s=oomd
  crunch_on
  # 1. Control: the user's terminal job under pressure: systemd-oomd kills it.
  user_job ctl python3 /lab/hold.py 250 40
  local ctl; ctl=$(newest "hold.py 250 40")
  if wait_end "$ctl" 45 && ! grep -q DONE /tmp/ctl.out; then result $s PASS "control killed"; else result $s FAIL "control survived: the scenario tests nothing"; fi
  log $s "$(oomd_kills 2)"
  # 2. The folk fix: root writes -1000 into its oom_score_adj. systemd-oomd kills it all the same.
  user_job folk python3 /lab/hold.py 250 40
  local folk; folk=$(newest "hold.py 250 40")
  echo -1000 > "/proc/$folk/oom_score_adj"
  if wait_end "$folk" 45 && ! grep -q DONE /tmp/folk.out; then result $s PASS "folk fix (adj -1000) killed, as measured"; else result $s FAIL "folk fix survived"; fi
  log $s "$(oomd_kills 1)"
  # 3. The same job under `oomguard run`, started by the user in a terminal scope.
  user_job prot oomguard run --name prot --log /tmp/prot.log -- python3 /lab/hold.py 250 30
  local job; job=$(newest "hold.py 250 30")
  sleep 25
  if kill -0 "$job" 2>/dev/null; then result $s PASS "protected job alive after 25 s of pressure"; else result $s FAIL "protected job died"; log $s "$(oomd_kills 2)"; log $s "$(cat /tmp/prot.out)"; fi
  log $s "$(as_user oomguard ps --json 2>&1 | tr -d '\n' | head -c 600)"
  log $s "$(cat /proc/$job/cgroup 2>/dev/null)"
  crunch_off
  if wait_end "$job" 60 && grep -q DONE /tmp/prot.log; then result $s PASS "protected job completed, log complete"; else result $s FAIL "protected job did not complete"; tail -3 /tmp/prot.log; fi
}

scenario_protect() {
  local s=protect
  crunch_on
  user_job late python3 /lab/hold.py 250 30
  local job; job=$(newest "hold.py 250 30")
  sleep 0.5
  if out=$(as_user oomguard protect "$job" 2>&1); then log $s "$out"; else result $s FAIL "protect refused: $out"; fi
  sleep 25
  if kill -0 "$job" 2>/dev/null; then result $s PASS "job protected while running survived 25 s of pressure"; else result $s FAIL "protected job died"; log $s "$(oomd_kills 2)"; fi
  crunch_off
  if wait_end "$job" 60 && grep -q DONE /tmp/late.out; then result $s PASS "job completed"; else result $s FAIL "job did not complete"; fi
}

# A job (250 MiB) and a hog growing at ~200 MB/s under one MemoryMax=400M (cgroup v2).
memcg_case() { # label wrapper...
  systemd-run --scope --quiet --unit="lab-memcg-$1-$$" -p MemoryMax=400M -p MemorySwapMax=0 -p OOMPolicy=continue -- \
    sh -c "${*:2} python3 /lab/hold.py 250 15 > /tmp/mc-$1.out 2>&1 & j=\$!; sleep 4; HOG_ADJ=1 python3 /lab/hog.py 1000 & h=\$!; wait \$j; echo job-exit=\$? >> /tmp/mc-$1.out; kill -9 \$h 2>/dev/null; wait"
}
scenario_memcg() {
  local s=memcg
  memcg_case ctl ""
  if grep -q "job-exit=137" /tmp/mc-ctl.out; then result $s PASS "control: the kernel killed the job (the biggest)"; else result $s FAIL "control job not killed"; log $s "$(cat /tmp/mc-ctl.out)"; fi
  log $s "$(dmesg | grep -E 'Killed process|oom-kill:' | tail -2)"
  memcg_case prot "oomguard run --log /tmp/mc-prot.log --"
  if grep -q "job-exit=0" /tmp/mc-prot.out && grep -q DONE /tmp/mc-prot.log; then result $s PASS "protected job completed, the hog was killed"; else result $s FAIL "protected job: $(tail -1 /tmp/mc-prot.out)"; log $s "$(cat /tmp/mc-prot.out)"; fi
  log $s "$(dmesg | grep -E 'Killed process' | tail -1)"
}

scenario_top() {
  local s=top t pass=0 n=3
  for t in $(seq $n); do
    local a=$((100 + RANDOM % 160)) b=$((100 + RANDOM % 160)) aa=$((RANDOM % 300)) ba=$((RANDOM % 300))
    local lim=$((a + b + 80)) unit="lab-top-$t-$$"
    systemd-run --scope --quiet --unit=$unit -p MemoryMax=${lim}M -p MemorySwapMax=0 -p OOMPolicy=continue -- sh -c "
      (echo $aa > /proc/self/oom_score_adj; exec python3 /lab/hold.py $a 60) > /dev/null & A=\$!
      (echo $ba > /proc/self/oom_score_adj; exec python3 /lab/hold.py $b 60) > /dev/null & B=\$!
      sleep 3
      P=\$(oomguard top --once --json --cgroup /sys/fs/cgroup/system.slice/$unit.scope | python3 -c 'import json,sys; print(json.load(sys.stdin)[0][\"pid\"])')
      HOG_ADJ=1 python3 /lab/hog.py 130 > /dev/null & H=\$!
      for i in \$(seq 300); do kill -0 \$A 2>/dev/null || { V=\$A; break; }; kill -0 \$B 2>/dev/null || { V=\$B; break; }; sleep 0.1; done
      echo predicted=\$P killed=\${V:-none} > /tmp/top-$t.out
      kill -9 \$A \$B \$H 2>/dev/null; wait"
    log $s "trial $t: a=${a}MiB adj $aa b=${b}MiB adj $ba limit ${lim}M: $(cat /tmp/top-$t.out)"
    grep -qE "predicted=([0-9]+) killed=\1$" /tmp/top-$t.out && pass=$((pass + 1))
  done
  if [ $pass = $n ]; then result $s PASS "$n/$n cgroup-v2 trials: the kernel killed the process top ranked first"; else result $s FAIL "$pass/$n trials predicted"; fi
}

scenario_earlyoom() {
  local s=earlyoom avail
  # Act at 700 MiB below what is available now: the job (500 MiB) and the hog together cross
  # it, the job alone does not. (With less, earlyoom goes on killing bystanders once the hog is
  # gone, the user's systemd among them, and the next scenarios lose the user's bus.)
  # earlyoom uses the lower of -m and -M, so give the threshold as -m (percent of MemTotal).
  local total pct
  avail=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
  total=$(awk '/MemTotal/ {print $2}' /proc/meminfo)
  pct=$(( (avail - 700 * 1024) * 100 / total ))
  earlyoom -m "$pct" -s 100 -r 0 > /tmp/earlyoom.log 2>&1 &
  local eo=$!
  sleep 1
  python3 /lab/hold.py 500 25 > /tmp/eo-ctl.out 2>&1 & local j=$!
  echo $j > /tmp/eo-ctl.pid
  # The hog at adj 0 and smaller than the job: earlyoom's pick (oom_score) is the job.
  sleep 4; HOG_ADJ=0 python3 /lab/hog.py 450 & local h=$!
  wait $j; local rc=$?
  kill -9 $h 2>/dev/null; wait $h 2>/dev/null
  if [ $rc != 0 ] && ! grep -q DONE /tmp/eo-ctl.out; then result $s PASS "control: earlyoom killed the job (exit $rc)"; else result $s FAIL "control survived earlyoom"; log $s "$(cat /tmp/earlyoom.log)"; fi
  log $s "$(grep -E 'sending|killing' /tmp/earlyoom.log | tail -2)"
  oomguard run --log /tmp/eo-prot.log -- python3 /lab/hold.py 500 25 > /dev/null 2>&1 & local p=$!
  sleep 4; HOG_ADJ=0 python3 /lab/hog.py 450 & h=$!
  wait $p; rc=$?
  local hog_killed=yes
  if kill -0 $h 2>/dev/null; then hog_killed=no; kill -9 $h; fi
  wait $h 2>/dev/null
  if [ $rc = 0 ] && grep -q DONE /tmp/eo-prot.log && [ $hog_killed = yes ]; then result $s PASS "protected job completed, earlyoom killed the hog"; else result $s FAIL "protected rc=$rc, hog killed: $hog_killed"; fi
  log $s "$(grep -E 'sending|killing' /tmp/earlyoom.log | tail -1)"
  kill $eo
}

# The runaway safety valve: a job shielded at -1000 that itself grows past its memcg limit gets
# its checkpoint signal, then its shield lowered, then is killed by the kernel; the other process
# in the group survives (without the valve the kernel would have to kill the other one).
scenario_valve() {
  local s=valve
  systemd-run --scope --quiet --unit="lab-valve-$$" -p MemoryMax=600M -p MemorySwapMax=0 -p OOMPolicy=continue -- sh -c "
    python3 /lab/hold.py 100 90 > /tmp/valve-other.out 2>&1 & o=\$!
    oomguard run --checkpoint-signal USR1 --valve-grace 3 --no-notify --log /tmp/valve.log -- \
      python3 /lab/train.py --hold-mib 100 --grow-mib 2 --step-seconds 0.1 --steps 100000 --checkpoint /tmp/valve.ckpt > /tmp/valve.out 2>&1
    echo job-exit=\$? >> /tmp/valve.out
    kill -0 \$o && echo other-alive >> /tmp/valve.out
    kill \$o; wait"
  local ev; ev=$(cat /root/.local/state/oomguard/jobs/*/events.log 2>/dev/null | tail -4)
  log $s "$ev"
  log $s "$(dmesg | grep -E 'Killed process' | tail -1)"
  if grep -q "job-exit=137" /tmp/valve.out && grep -q other-alive /tmp/valve.out && [ -f /tmp/valve.ckpt ] \
     && grep -q "valve: lowered" <<< "$ev"; then
    result $s PASS "checkpoint written, shield lowered, the kernel killed the runaway job, the other process survived"
  else
    result $s FAIL "$(tr '\n' ' ' < /tmp/valve.out | tail -c 300)"
  fi
}

# The guard warns before systemd-oomd kills a job run without the shield (no daemon, so
# `--allow-unprotected`): the job's checkpoint lands before the kill of its terminal scope.
scenario_oomdckpt() {
  local s=oomdckpt
  systemctl stop oomguard.service
  rm -f /tmp/ockpt.json
  # Ubuntu's real duration (20 s) for this one: with the lab's 5 s, a job throttled under
  # MemoryHigh cannot even write a file between the warning and the kill.
  mkdir -p /run/systemd/oomd.conf.d
  printf '[OOM]\nDefaultMemoryPressureDurationSec=20s\n' > /run/systemd/oomd.conf.d/zz-ubuntu.conf
  systemctl restart systemd-oomd
  # The job grows into the limit (8 MiB/s past 150 MiB, MemoryHigh 200M) as a real crunch
  # builds: a job thrashing from its first second could not run its handler at all.
  systemctl set-property --runtime user@1000.service MemoryHigh=200M
  user_job ockpt oomguard run --allow-unprotected --no-notify --checkpoint-signal USR1 --log /tmp/ockpt.log -- \
    python3 /lab/train.py --hold-mib 150 --grow-mib 4 --steps 100000 --step-seconds 0.5 --checkpoint /tmp/ockpt.json
  local job; job=$(newest "train.py --hold-mib 150")
  wait_end "$job" 90
  crunch_off
  rm /run/systemd/oomd.conf.d/zz-ubuntu.conf
  systemctl restart systemd-oomd
  systemctl start oomguard.service
  log $s "$(grep -vE '^train:' /tmp/ockpt.out | tail -12)"
  log $s "job log: $(tail -4 /tmp/ockpt.log | tr '\n' '|') files: $(ls /tmp/ockpt* | tr '\n' ' ')"
  log $s "$(cat /home/user/.local/state/oomguard/jobs/*/events.log 2>/dev/null | tail -5)"
  log $s "$(oomd_kills 1)"
  local out
  out=$(oomguard history --json --killer systemd-oomd | python3 -c '
import json, os, sys, datetime
ev = [e for e in json.load(sys.stdin) if "app-lab-ockpt-" in (e["cgroup"] or "")]
if len(ev) != 1: print(f"FAIL {len(ev)} oomd kills of the job scope"); sys.exit()
kill = datetime.datetime.fromisoformat(ev[0]["time"]).timestamp()
if not os.path.exists("/tmp/ockpt.json"): print("FAIL no checkpoint before the kill"); sys.exit()
lead = kill - os.path.getmtime("/tmp/ockpt.json")
r = ev[0]["reason"]
print(("PASS" if lead > 0 else "FAIL") + f" checkpoint {lead:.1f} s before systemd-oomd killed the unshielded job ({r})")')
  if kill -0 "$job" 2>/dev/null || grep -q DONE /tmp/ockpt.log; then result $s FAIL "the unshielded job was not killed: the scenario tests nothing"; return; fi
  result $s ${out%% *} "${out#* }"
}

# `oomguard history` finds the kills of the scenarios above, each once, with the right
# killer, cgroup and pid: from /dev/kmsg and the journal (merged), and earlyoom's log file.
scenario_history() {
  local s=history
  oomguard history --json > /tmp/history.json 2> /tmp/history.err || { result $s FAIL "history failed: $(cat /tmp/history.err)"; return; }
  oomguard history --json --file /tmp/earlyoom.log > /tmp/history-eo.json 2>> /tmp/history.err
  log $s "$(oomguard history 2>&1 | grep -E 'systemd-oomd|kernel|earlyoom' | head -12)"
  local out
  out=$(python3 - "$(cat /tmp/eo-ctl.pid 2>/dev/null)" <<'PY'
import json, sys
ev = json.load(open("/tmp/history.json")); eo = json.load(open("/tmp/history-eo.json"))
fails = []
def one(what, pred, pool=ev):
    hits = [e for e in pool if pred(e)]
    if len(hits) != 1:
        fails.append(f"{what}: {len(hits)} events")
    return hits[0] if hits else None
for scope in ("app-lab-ctl-", "app-lab-folk-"):
    e = one(scope, lambda e: e["killer"] == "systemd-oomd" and scope in (e["cgroup"] or ""))
    if e and not (e["constraint"] == "pressure" and "user@1000.service" in (e["reason"] or "")):
        fails.append(f"{scope}: {e['constraint']} {e['reason']}")
one("memcg control", lambda e: e["killer"] == "kernel" and e["constraint"] == "memcg" and "lab-memcg-ctl-" in (e["cgroup"] or "") and e["process"] == "python3" and e["pid"])
one("valve", lambda e: e["killer"] == "kernel" and "lab-valve-" in (e["cgroup"] or ""))
if any(e["killer"] == "systemd-oomd" and ("oomguard-" in (e["cgroup"] or "")) for e in ev):
    fails.append("a protected job's scope was killed")
pid = int(sys.argv[1]) if sys.argv[1] else -1
one("earlyoom control", lambda e: e["killer"] == "earlyoom" and e["pid"] == pid, eo)
print("; ".join(fails) if fails else f"ok: {len(ev)} events from kmsg+journal, {len(eo)} from earlyoom's log")
PY
)
  if [[ $out == ok:* ]]; then result $s PASS "kills found once each with killer, cgroup and pid ($out)"; else result $s FAIL "$out"; log $s "$(head -c 1500 /tmp/history.json)"; fi
}

# scenario_doctor: `oomguard doctor` against the real systemd-oomd, oomctl and earlyoom.
. "$(dirname "$0")/doctor.sh"

for sc in $SCENARIOS; do
  echo "LAB START $sc"
  start=$(date +%s)
  # Each scenario in a subshell with a time cap, so one that hangs cannot stall the lab.
  ( "scenario_$sc" ) & sp=$!
  ( sleep 240; kill -9 -- -$sp 2>/dev/null; kill -9 $sp 2>/dev/null ) & wd=$!
  wait $sp || true
  kill $wd 2>/dev/null
  [ $(( $(date +%s) - start )) -ge 240 ] && result "$sc" FAIL "timed out after 240 s"
  echo "LAB TIME $sc $(( $(date +%s) - start ))"
done
echo "LAB END"
systemctl poweroff --no-block
