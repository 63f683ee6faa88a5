"""The path grammar of the workflow, defined once: the plan, the rules and the CLI all ask here.

Everything lives under ``results/<tier>/``, so the smoke, lite and paper tiers never overwrite each
other and switching tiers re-runs nothing of another tier::

  data/<dataset>.json                              dataset manifest (md5 of the real files, or synthetic)
  <paper>/models/<run>/model.pt | train.json       trained model and its training result
  <paper>/checkpoints/<run>.pt                     resumable training checkpoint (undeclared; removed at the end)
  <paper>/eval/<run>/<kind>/<name>.json            an evaluation job of a trained model
  <paper>/jobs/<kind>/<name>.json                  a job that needs no trained model (e.g. a landscape search)
  <paper>/partial/...                              resumable state of long evaluation jobs (undeclared)
  <paper>/tables/<target>.csv|md|tex               tables, published numbers beside reproduced ones
  <paper>/figures/<target>.png|pdf|csv             figures and the data behind them
  logs/..., benchmarks/...                         mirror the tree above

Arguments may be Snakemake wildcards (``"{paper}"``), so the rules use the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass

TABLE_EXT = ("csv", "md", "tex")
FIGURE_EXT = ("png", "pdf", "csv")


@dataclass(frozen=True)
class Paths:
    tier: str

    @property
    def root(self) -> str:
        return f"results/{self.tier}"

    def data(self, dataset: str) -> str:
        return f"{self.root}/data/{dataset}.json"

    def model(self, paper: str, run: str) -> str:
        return f"{self.root}/{paper}/models/{run}/model.pt"

    def train_result(self, paper: str, run: str) -> str:
        return f"{self.root}/{paper}/models/{run}/train.json"

    def checkpoint(self, paper: str, run: str) -> str:
        return f"{self.root}/{paper}/checkpoints/{run}.pt"

    def evaluation(self, paper: str, run: str, kind: str, name: str) -> str:
        return f"{self.root}/{paper}/eval/{run}/{kind}/{name}.json"

    def standalone(self, paper: str, kind: str, name: str) -> str:
        return f"{self.root}/{paper}/jobs/{kind}/{name}.json"

    def partial(self, result_path: str) -> str:
        """Where a long job keeps its resumable state: beside the results tree, never a declared output."""
        rel = result_path.removeprefix(self.root + "/")
        return f"{self.root}/partial/{rel.removesuffix('.json')}.pt"

    def target(self, paper: str, name: str, kind: str) -> dict[str, str]:
        """ext -> path of a table (csv, md, tex) or figure (png, pdf, csv)."""
        folder, exts = ("tables", TABLE_EXT) if kind == "table" else ("figures", FIGURE_EXT)
        return {e: f"{self.root}/{paper}/{folder}/{name}.{e}" for e in exts}

    def log(self, *parts: str) -> str:
        return f"{self.root}/logs/" + "/".join(parts) + ".log"

    def benchmark(self, *parts: str) -> str:
        return f"{self.root}/benchmarks/" + "/".join(parts) + ".tsv"

    # The benchmark file of each kind of job, named once for the rules and the report.
    def train_benchmark(self, paper: str, run: str) -> str:
        return self.benchmark(paper, "train", run)

    def evaluation_benchmark(self, paper: str, run: str, kind: str, name: str) -> str:
        return self.benchmark(paper, "eval", run, kind, name)

    def standalone_benchmark(self, paper: str, kind: str, name: str) -> str:
        return self.benchmark(paper, "jobs", kind, name)
