#!/usr/bin/env python3
"""A stand-in training job for oomguard's demo and tests (Python standard library only).

It runs `--steps` steps, printing tqdm-like progress; holds `--hold-mib` MiB from the start and grows by
`--grow-mib` MiB per step (touched, so it is really resident); writes a checkpoint on SIGUSR1 and on
SIGTERM (then exits 143), and resumes from the last checkpoint when started again.

    python3 examples/train.py --steps 20 --hold-mib 100 --grow-mib 5 --step-seconds 0.1
"""

import argparse
import json
import os
import signal
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30, help="training steps in all (default 30)")
    p.add_argument("--step-seconds", type=float, default=0.2, help="time per step (default 0.2)")
    p.add_argument("--hold-mib", type=int, default=64, help="memory held from the start, MiB (default 64)")
    p.add_argument("--grow-mib", type=int, default=0, help="memory added each step, MiB (default 0)")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint file (default: train.ckpt.json in $OOMGUARD_JOB_DIR or the cwd)")
    return p.parse_args()


def main():
    args = parse_args()
    ckpt = args.checkpoint or os.path.join(os.environ.get("OOMGUARD_JOB_DIR", "."), "train.ckpt.json")
    state = {"step": 0, "loss": 2.5}
    if os.path.exists(ckpt):
        with open(ckpt) as f:
            state = json.load(f)
        print(f"resumed from {ckpt} at step {state['step']}", flush=True)

    def save(reason):
        tmp = ckpt + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, ckpt)
        print(f"checkpoint written to {ckpt} at step {state['step']} ({reason})", flush=True)

    def on_usr1(_sig, _frame):
        save("SIGUSR1")

    def on_term(_sig, _frame):
        save("SIGTERM")
        sys.exit(143)

    signal.signal(signal.SIGUSR1, on_usr1)
    signal.signal(signal.SIGTERM, on_term)

    held = [b"\x01" * (args.hold_mib << 20)] if args.hold_mib > 0 else []
    mib = max(args.hold_mib, 0)
    start, first = time.monotonic(), state["step"]
    while state["step"] < args.steps:
        time.sleep(args.step_seconds)
        if args.grow_mib > 0:
            held.append(b"\x02" * (args.grow_mib << 20))
            mib += args.grow_mib
        state["step"] += 1
        state["loss"] = round(state["loss"] * 0.97, 4)
        done = state["step"]
        bar = "#" * (20 * done // args.steps)
        rate = (done - first) / max(time.monotonic() - start, 1e-9)
        print(f"train: {100 * done // args.steps:3d}%|{bar:<20}| {done}/{args.steps} "
              f"[{rate:.1f} it/s, loss={state['loss']}, mem={mib} MiB]", flush=True)
    save("finished")
    print("training complete", flush=True)


if __name__ == "__main__":
    main()
