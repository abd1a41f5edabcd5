#!/usr/bin/env python3
"""A stand-in job: hold MIB MiB (touched) for SECONDS, touching it twice a second; print progress;
print DONE at the end. Usage: hold.py MIB SECONDS"""
import sys, time
mib, secs = int(sys.argv[1]), float(sys.argv[2])
buf = bytearray(mib << 20)  # zero pages, made resident below (no transient copy)
for off in range(0, len(buf), 4096):
    buf[off] = 1
print("holding", mib, "MiB", flush=True)
end = time.monotonic() + secs
i = 0
while time.monotonic() < end:
    for off in range(0, len(buf), 4096):
        buf[off] = (buf[off] + 1) & 0xFF
    i += 1
    print("tick", i, flush=True)
    time.sleep(0.5)
print("DONE", flush=True)
