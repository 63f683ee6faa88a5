"""Toy table: one CSV row per evaluated seed (usage: table.py OUT EVAL...)."""

import json
import sys

out_path, *eval_paths = sys.argv[1:]
rows = []
for path in eval_paths:
    with open(path) as fh:
        rows.append(json.load(fh))
with open(out_path, "w") as fh:
    fh.write("seed,score\n")
    for row in sorted(rows, key=lambda r: r["seed"]):
        fh.write(f"{row['seed']},{row['score']:.12f}\n")
