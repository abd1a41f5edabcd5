# The `doctor` scenario of the VM lab, sourced by lab.sh (it uses lab.sh's result, log and
# user_job helpers; defining the function runs nothing). Inside the VM systemd-oomd runs with
# the Ubuntu-like rules (user@.service watched for pressure at 50 %, swap rule on -.slice) and
# we start earlyoom here (its service is masked in the image): `oomguard doctor --json` must
# report both as running, with the user@.service 50 % rule, read-only.
scenario_doctor() {
  local s=doctor why="" out eo job
  # Thresholds far below what is available: earlyoom runs but never acts during the lab.
  earlyoom -m 1 -s 1 -r 0 > /tmp/doctor-earlyoom.log 2>&1 & eo=$!
  sleep 1
  if ! out=$(oomguard doctor --json 2> /tmp/doctor.err); then
    result $s FAIL "oomguard doctor --json failed: $(tr '\n' ' ' < /tmp/doctor.err)"
    kill $eo 2>/dev/null; return
  fi
  log $s "$(head -c 1500 <<< "$out")"
  why=$(python3 -c '
import json, sys
eo = int(sys.argv[1])
d = json.loads(sys.stdin.read())
bad = []
o = d["systemd_oomd"]
if not o["running"]:
    bad.append("systemd_oomd not reported running")
rule = [r for r in o["rules"] if r["unit"].startswith("user@") and r["unit"].endswith(".service") and r["kind"] == "memory_pressure"]
if not rule:
    bad.append("no user@.service pressure rule (rules from %s: %s; error %s)" % (o["rules_from"], [r["unit"] for r in o["rules"]], o["error"]))
elif abs(rule[0]["limit_pct"] - 50.0) > 0.01:
    bad.append("user@.service limit %s, not 50%%" % rule[0]["limit_pct"])
e = d["earlyoom"]
if not e["running"] or e["pid"] != eo:
    bad.append("earlyoom (pid %d) not reported running: %s" % (eo, e))
f = {x["killer"]: x["status"] for x in d["findings"]}
if f.get("systemd-oomd") != "armed" or f.get("earlyoom") != "armed":
    bad.append("findings: %s" % f)
if d["cgroup"]["version"] != "v2" or not d["cgroup"]["v2_memory_controller"]:
    bad.append("cgroup: %s" % d["cgroup"]["version"])
print("; ".join(bad))
' "$eo" <<< "$out" 2>&1)
  # Without oomctl on PATH: the same rules through `systemctl show`.
  mkdir -p /tmp/doctor-path && ln -sf "$(command -v systemctl)" /tmp/doctor-path/systemctl
  out=$(env PATH=/tmp/doctor-path "$(command -v oomguard)" doctor --json 2>&1)
  log $s "via systemctl: $(python3 -c 'import json,sys; o=json.load(sys.stdin)["systemd_oomd"]; print(o["rules_from"], o["rules"], o["error"])' <<< "$out" 2>&1)"
  why+=$(python3 -c '
import json, sys
o = json.loads(sys.stdin.read())["systemd_oomd"]
r = [r for r in o["rules"] if r["unit"] == "user@1000.service" and r["kind"] == "memory_pressure"]
ok = o["rules_from"] == "systemctl" and r and abs(r[0]["limit_pct"] - 50.0) < 0.01
print("" if ok else "; via systemctl show: %s %s %s" % (o["rules_from"], o["rules"], o["error"]))
' <<< "$out" 2>&1)
  # With a PID: a user's terminal job is covered by the user@1000.service rule and not shielded.
  user_job dr python3 /lab/hold.py 20 20
  job=$(newest "hold.py 20 20")
  if [ -n "$job" ] && out=$(oomguard doctor "$job" --json 2>&1); then
    log $s "$(oomguard doctor "$job" 2>&1 | grep -A3 '^systemd-oomd')"
    why+=$(python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
l = {x["layer"]: x["state"] for x in d["layers"]}
f = {x["killer"]: x for x in d["findings"]}
bad = []
if l.get("systemd-oomd") != "failed" or "user@1000.service" not in f["systemd-oomd"]["detail"]:
    bad.append("job %s: oomd layer %s, finding %s" % (d["pid"], l.get("systemd-oomd"), f["systemd-oomd"]["detail"]))
if not any(t["killer"] == "systemd-oomd" for t in d["threats"]):
    bad.append("no systemd-oomd threat for the job")
print(("; " if bad else "") + "; ".join(bad))
' <<< "$out" 2>&1)
  else
    why+="; doctor PID failed: ${out:-no job}"
  fi
  kill "$job" 2>/dev/null
  kill $eo 2>/dev/null; wait $eo 2>/dev/null
  why=${why#; }
  if [ -z "$why" ]; then
    result $s PASS "systemd-oomd running with the user@.service 50% rule (via oomctl and via systemctl show), earlyoom running, a terminal job shown exposed to systemd-oomd"
  else
    result $s FAIL "$why"
  fi
}
