"""Toy training loop that checkpoints every step and resumes from its checkpoint.

The "model" is one number pulled towards a target with seeded noise. The noise of
step k depends only on (seed, k), and the checkpoint holds the whole state, so a
run that is killed and resumed produces exactly the metrics of an uninterrupted
run. Every (re)start appends a line to <ckpt>.starts, so tests can see resumes.
"""

import argparse
import json
import os
import random
import time


def atomic_write(path, data):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)  # a kill mid-write never leaves a torn file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    os.makedirs(os.path.dirname(args.ckpt) or ".", exist_ok=True)
    state = {"step": 0, "w": float(args.seed), "losses": []}
    if os.path.exists(args.ckpt):
        with open(args.ckpt) as fh:
            state = json.load(fh)
    with open(args.ckpt + ".starts", "a") as fh:
        fh.write(f"start step={state['step']} job={os.environ.get('SLURM_JOB_ID', 'none')} restart={os.environ.get('SLURM_RESTART_COUNT', '0')}\n")
    print(f"seed {args.seed}: starting at step {state['step']} of {args.steps}", flush=True)

    target = 3.0
    while state["step"] < args.steps:
        k = state["step"]
        noise = random.Random(args.seed * 1_000_003 + k).gauss(0.0, 1.0)
        w = state["w"] - 0.1 * (state["w"] - target) + 0.01 * noise
        state = {"step": k + 1, "w": w, "losses": state["losses"] + [(w - target) ** 2]}
        time.sleep(args.sleep)
        atomic_write(args.ckpt, state)
        print(f"step {k + 1}", flush=True)

    metrics = {
        "seed": args.seed,
        "steps": args.steps,
        "final_w": state["w"],
        "final_loss": state["losses"][-1] if state["losses"] else None,
        "mean_loss": sum(state["losses"]) / max(1, len(state["losses"])),
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    atomic_write(args.out, metrics)
    os.remove(args.ckpt)  # finished: a forced rerun starts from scratch


if __name__ == "__main__":
    main()
