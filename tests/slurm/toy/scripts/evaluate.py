"""Toy evaluation: a score from the training metrics (usage: evaluate.py METRICS OUT)."""

import json
import sys

metrics_path, out_path = sys.argv[1:3]
with open(metrics_path) as fh:
    metrics = json.load(fh)
result = {"seed": metrics["seed"], "score": 1.0 / (1.0 + metrics["final_loss"])}
with open(out_path, "w") as fh:
    json.dump(result, fh)
