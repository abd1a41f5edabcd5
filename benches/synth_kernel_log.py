#!/usr/bin/env python3
"""Write a synthetic kernel log of SIZE bytes to PATH: realistic noise (USB, network,
filesystems, audit/AppArmor, GPU, thermal, the odd "memory" line) with a real two-kill
memcg OOM incident (tests/fixtures/corpus/dmesg_memcg_v1_kernel6.18.txt) every EVERY
bytes or so. Prints how many kills it wrote.

Usage: synth_kernel_log.py PATH SIZE_MB [EVERY_KB]"""
import os, random, sys

path, size = sys.argv[1], int(sys.argv[2]) << 20
every = (int(sys.argv[3]) if len(sys.argv) > 3 else 1024) << 10
here = os.path.dirname(os.path.abspath(__file__))
incident = open(os.path.join(here, "..", "tests", "fixtures", "corpus",
                             "dmesg_memcg_v1_kernel6.18.txt")).read().splitlines()
incident = [l.split("] ", 1)[1] for l in incident]
rnd = random.Random(42)
noise = [
    "usb 1-1.{a}: new high-speed USB device number {b} using xhci_hcd",
    "usb 1-1.{a}: USB disconnect, device number {b}",
    "audit: type=1400 audit(1700000{b}.123:{c}): apparmor=\"DENIED\" operation=\"open\" profile=\"snap.firefox.firefox\" name=\"/sys/devices/pci0000:00/{a}/uevent\" pid={c} comm=\"firefox\" requested_mask=\"r\" denied_mask=\"r\" fsuid=1000 ouid=0",
    "IPv6: ADDRCONF(NETDEV_CHANGE): wlp{a}s0: link becomes ready",
    "wlp2s0: associated (aid {a}) to 7c:10:c9:{b:02x}:aa:{a:02x}",
    "EXT4-fs (nvme0n1p{a}): mounted filesystem {c} r/w with ordered data mode. Quota mode: none.",
    "nvme nvme0: I/O tag {c} (1{b:03x}) QID {a} timeout, completion polled",
    "CPU{a}: Core temperature above threshold, cpu clock throttled (total events = {c})",
    "i915 0000:00:02.0: [drm] *ERROR* CPU pipe {a} FIFO underrun",
    "Bluetooth: hci0: unexpected event for opcode 0x0c{b:02x}",
    "br-{c:x}: port {a}(veth{b:x}) entered blocking state",
    "perf: interrupt took too long ({c} > {b}), lowering kernel.perf_event_max_sample_rate to {c}",
    "TCP: request_sock_TCP: Possible SYN flooding on port {c}. Sending cookies.",
]
# Boot-time lines that mention memory: rare, as in a real log.
rare = ["Freeing unused kernel image (initmem) memory: {c}K", "Memory: 16118072K/16657464K available"]
written = kills = 0
since_kill = 0
t = 10.0
with open(path, "w") as f:
    buf = []
    while written < size:
        t += rnd.random() * 0.01
        if since_kill >= every:
            for l in incident:
                line = f"[{t:12.6f}] {l}\n"
                buf.append(line); written += len(line)
            kills += 2; since_kill = 0
            continue
        a, b, c = rnd.randrange(1, 9), rnd.randrange(1, 250), rnd.randrange(100, 99999)
        pick = rare[rnd.randrange(len(rare))] if rnd.randrange(20000) == 0 else noise[rnd.randrange(len(noise))]
        line = f"[{t:12.6f}] " + pick.format(a=a, b=b, c=c) + "\n"
        buf.append(line); written += len(line); since_kill += len(line)
        if len(buf) >= 4096:
            f.write("".join(buf)); buf = []
    f.write("".join(buf))
print(kills)
