#!/usr/bin/env python3
"""A hog: adj $HOG_ADJ (default +500), grows by 10 MiB every 50 ms (about 200 MB/s) up to MIB MiB, then holds."""
import os, sys, time
open('/proc/self/oom_score_adj', 'w').write(os.environ.get('HOG_ADJ', '500'))
cap = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
held = []
while len(held) * 10 < cap:
    held.append(b'\x02' * (10 << 20))
    time.sleep(0.05)
time.sleep(3600)
