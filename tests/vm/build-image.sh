#!/usr/bin/env bash
# Build (or reuse) the VM lab's base image: Debian bookworm with systemd, systemd-oomd, earlyoom
# and python3, configured as Ubuntu 22.04 ships systemd-oomd. Output in tests/vm/cache/:
# rootfs.tar, vmlinuz, initrd.img. Rebuilt only when this script changes.
# Needs root, mmdebstrap (and network access to Debian's mirror).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=$here/cache
stamp=$(sha256sum "$0" | cut -c1-16)
if [ -f "$cache/stamp" ] && [ "$(cat "$cache/stamp")" = "$stamp" ] && [ -f "$cache/rootfs.tar" ]; then
  echo "vm image: cached ($cache)"; exit 0
fi
mkdir -p "$cache"
root=$(mktemp -d "$cache/rootfs.XXXX")
trap 'rm -rf "$root"' EXIT
echo "vm image: building with mmdebstrap (about a minute)"
mmdebstrap --variant=minbase --quiet \
  --include=systemd,systemd-sysv,systemd-oomd,dbus,dbus-user-session,libpam-systemd,udev,procps,python3,earlyoom,linux-image-cloud-amd64,initramfs-tools,util-linux \
  --customize-hook='chroot "$1" passwd -d root' \
  --customize-hook='chroot "$1" useradd -m -u 1000 -s /bin/bash user' \
  --customize-hook='mkdir -p "$1/var/lib/systemd/linger" && touch "$1/var/lib/systemd/linger/user"' \
  --customize-hook='chroot "$1" systemctl mask serial-getty@ttyS0.service getty@tty1.service earlyoom.service' \
  --customize-hook='chroot "$1" systemctl enable systemd-oomd.service' \
  bookworm "$root"
# systemd-oomd as Ubuntu 22.04 ships it (user@.service watched for pressure at 50 %, swap rule on
# -.slice), with a short duration to keep runs short.
mkdir -p "$root/etc/systemd/system/user@.service.d" "$root/etc/systemd/system/-.slice.d" "$root/etc/systemd/oomd.conf.d"
cat > "$root/etc/systemd/system/user@.service.d/10-oomd-user-service-defaults.conf" <<'X'
[Service]
ManagedOOMMemoryPressure=kill
ManagedOOMMemoryPressureLimit=50%
X
cat > "$root/etc/systemd/system/-.slice.d/10-oomd-root-slice-defaults.conf" <<'X'
[Slice]
ManagedOOMSwap=kill
X
cat > "$root/etc/systemd/oomd.conf.d/lab.conf" <<'X'
[OOM]
DefaultMemoryPressureDurationSec=5s
X
cp "$root"/boot/vmlinuz-* "$cache/vmlinuz"
cp "$root"/boot/initrd.img-* "$cache/initrd.img"
chmod 644 "$cache/vmlinuz" "$cache/initrd.img"
tar -C "$root" -cf "$cache/rootfs.tar" .
echo "$stamp" > "$cache/stamp"
echo "vm image: built ($(du -sh "$cache/rootfs.tar" | cut -f1))"
