#!/usr/bin/env bash
# The VM lab: boots Debian bookworm with a real systemd, systemd-oomd (configured as Ubuntu
# 22.04 ships it), cgroup v2 and full root under qemu (TCG), with the freshly built oomguard
# installed as the systemd service dist/oomguard.service, runs the scenarios in one boot and
# prints each one's outcome. Exits non-zero when a protected job died or a control survived.
#
# Usage: tests/vm/run.sh [SCENARIO...]   (oomd protect memcg earlyoom top valve oomdckpt history;
# default: all). Needs root, mmdebstrap, qemu-system-x86, e2fsprogs. OOMGUARD_BIN overrides the
# binary; OOMGUARD_DEB=path/to/oomguard_*.deb installs the package with dpkg -i instead (and
# checks the install: unit enabled and running, man page, completions).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
t0=$(date +%s)
"$here/build-image.sh"
work=$(mktemp -d "$here/cache/work.XXXX")
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir "$root"
tar -C "$root" -xf "$here/cache/rootfs.tar"
mkdir -p "$root/lab" "$root/etc/systemd/system/multi-user.target.wants"
if [ -n "${OOMGUARD_DEB:-}" ]; then
  # The Debian package, installed with dpkg -i inside the VM by lab.sh (its postinst enables
  # and starts the daemon).
  cp "$OOMGUARD_DEB" "$root/lab/oomguard.deb"
  echo "vm lab: installing $(basename "$OOMGUARD_DEB") with dpkg -i in the VM"
else
  if [ -z "${OOMGUARD_BIN:-}" ]; then
    (cd "$repo" && cargo build --release -q)
    OOMGUARD_BIN=$repo/target/release/oomguard
  fi
  install -s -m 755 "$OOMGUARD_BIN" "$root/usr/bin/oomguard"
  install -m 644 "$repo/dist/oomguard.service" "$root/etc/systemd/system/oomguard.service"
  sed -i 's#^ExecStart=[^ ]*oomguard#ExecStart=/usr/bin/oomguard#' "$root/etc/systemd/system/oomguard.service"
  ln -sf /etc/systemd/system/oomguard.service "$root/etc/systemd/system/multi-user.target.wants/oomguard.service"
fi
cp "$here"/lab/* "$root/lab/"
cp "$repo/examples/train.py" "$root/lab/train.py"
cat > "$root/etc/systemd/system/lab.service" <<X
[Unit]
Description=oomguard VM lab scenarios
After=multi-user.target oomguard.service user@1000.service
Wants=user@1000.service
[Service]
Type=oneshot
ExecStart=/lab/lab.sh ${*:-}
X
ln -sf /etc/systemd/system/lab.service "$root/etc/systemd/system/multi-user.target.wants/lab.service"
mkfs.ext4 -q -F -d "$root" "$work/root.img" 3G
rm -rf "$root"
t1=$(date +%s)
echo "vm lab: image ready in $((t1 - t0)) s; booting"
timeout 1500 qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 2048 -nographic -no-reboot \
  -kernel "$here/cache/vmlinuz" -initrd "$here/cache/initrd.img" \
  -drive "file=$work/root.img,format=raw,if=virtio" \
  -append "console=ttyS0 root=/dev/vda rw panic=-1 quiet systemd.unified_cgroup_hierarchy=1" \
  < /dev/null > "$work/console.log" 2>&1 || true
t2=$(date +%s)
grep -a "^LAB" "$work/console.log" | tr -d '\r' || true
cp "$work/console.log" "$here/cache/last-console.log"
pass=$(grep -ac "^LAB RESULT .* PASS" "$work/console.log" || true)
fail=$(grep -ac "^LAB RESULT .* FAIL" "$work/console.log" || true)
echo "vm lab: $pass passed, $fail failed; boot+scenarios $((t2 - t1)) s, total $((t2 - t0)) s (console: tests/vm/cache/last-console.log)"
if ! grep -aq "^LAB END" "$work/console.log"; then
  echo "vm lab: the scenarios did not finish (see the console log)"; exit 1
fi
[ "$fail" = 0 ] && [ "$pass" -gt 0 ]
