"""Expand a validated configuration into the workflow's runs, evaluations and targets.

The rule files stay declarative: they ask this module which runs exist (the wildcard values), the
JSON spec of each job (passed as a rule param, so a changed setting re-runs exactly the jobs it
touches) and the final targets of each paper. Path grammar, relative to the workflow directory:

  results/data/{dataset}.json                      dataset manifest (real files' md5, or synthetic)
  results/{paper}/models/{run}/model.pt|train.json trained model and its training result
  results/{paper}/checkpoints/{run}.pt             resumable checkpoint (undeclared, deleted at the end)
  results/{paper}/eval/{run}/{attack}.json         clean + robust accuracy over an epsilon grid
  results/{paper}/verify/{run}.json                standard, verified (per bound) and attack errors over a grid
  results/{paper}/tables/{name}.csv|md|tex         tables, published numbers beside reproduced ones
  results/{paper}/figures/{name}.png|pdf|csv       figures and the data behind them
"""

from __future__ import annotations

import copy
import json
from typing import Any

from .attacks import parse_eps

PAPERS = ("ssp", "trdnn", "node", "gm")
TABLE_EXT = ("csv", "md", "tex")
FIGURE_EXT = ("png", "pdf", "csv")


def fmt_h(h: float) -> str:
    return f"{h:g}"


def data_spec(config: dict[str, Any], name: str, train_limit: int | None = None) -> dict[str, Any]:
    d = config["data"][name]
    return {
        "name": name,
        "source": d["source"],
        "mean": d["mean"],
        "std": d["std"],
        "synthetic_seed": d["synthetic_seed"],
        "train_limit": train_limit,
        "test_limit": d["test_limit"],
    }


def _train_spec(config, paper, experiment, run, dataset, model, train) -> dict[str, Any]:
    train = copy.deepcopy(train)
    limit = train.pop("train_limit", None)
    return {
        "paper": paper,
        "experiment": experiment,
        "run": run,
        "tier": config["tier"],
        "seed": config["seed"],
        "data": data_spec(config, dataset, limit),
        "model": copy.deepcopy(model),
        "train": train,
    }


# --- NODE ------------------------------------------------------------------------------------


def node_runs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    node, out = config["node"], {}
    f1 = node["fig1"]
    for h in f1["step_sizes"]:
        run = f"fig1-h{fmt_h(h)}"
        out[run] = _train_spec(config, "node", "fig1", run, f1["dataset"], {**f1["model"], "h": h}, f1["train"])
    t1 = node["table1"]
    for ds in t1["datasets"]:
        for arch, r in t1["runs"][ds].items():
            run = f"t1-{ds}-{arch}"
            out[run] = _train_spec(config, "node", "table1", run, ds, r["model"], r["train"])
    return out


def node_evals(config: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(run, attack) -> eval spec: every epsilon of a dataset's grid in one job."""
    node, out = config["node"], {}
    f1 = node["fig1"]
    for h in f1["step_sizes"]:
        run = f"fig1-h{fmt_h(h)}"
        out[(run, f1["attack"])] = _eval_spec(config, "node", run, f1["dataset"], node["attacks"][f1["attack"]], [f1["eps"]], node["eval_batch_size"])
    t1 = node["table1"]
    for ds in t1["datasets"]:
        for arch in t1["runs"][ds]:
            for atk in t1["attacks"]:
                out[(f"t1-{ds}-{arch}", atk)] = _eval_spec(
                    config, "node", f"t1-{ds}-{arch}", ds, node["attacks"][atk], t1["eps_grid"][ds], node["eval_batch_size"]
                )
    return out


def _eval_spec(config, paper, run, dataset, attack, eps_list, batch_size) -> dict[str, Any]:
    return {
        "paper": paper,
        "run": run,
        "tier": config["tier"],
        "seed": config["seed"],
        "data": data_spec(config, dataset),
        "attack": copy.deepcopy(attack),
        "eps": [parse_eps(e) for e in eps_list],
        "eps_labels": [str(e) for e in eps_list],
        "batch_size": batch_size,
    }


def node_targets(config: dict[str, Any]) -> dict[str, list[str]]:
    """Target name -> output files, for the experiments enabled in the config."""
    node, out = config["node"], {}
    if node["fig1"]["enabled"]:
        out["node_fig1"] = [f"results/node/figures/fig1.{e}" for e in FIGURE_EXT]
    if node["table1"]["enabled"]:
        out["node_table1"] = [f"results/node/tables/table1.{e}" for e in TABLE_EXT]
        out["node_clean"] = [f"results/node/tables/clean.{e}" for e in TABLE_EXT]
    return out


# --- GM ----------------------------------------------------------------------------------------


def slug(eps) -> str:
    """A path-safe label of an epsilon as written in the config ("17.6/255" -> "17.6_255")."""
    return str(eps).replace("/", "_")


def _grid_to(eps_train, step) -> list[float]:
    """step, 2 step, ... up to eps_train (inclusive, within rounding)."""
    top, st = parse_eps(eps_train), parse_eps(step)
    n = int(top / st + 1e-6)
    return [round(st * k, 10) for k in range(1, n + 1)]


def gm_runs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every trained model of the GM experiments; a setting used by several experiments is trained once."""
    gm, out, by_content = config["gm"], {}, {}

    def add(experiment, ds, method, objective, eps_train, label):
        base = gm["models"][ds]
        train = {**copy.deepcopy(base["train"]), "objective": {**copy.deepcopy(objective), **({"eps_max": eps_train} if eps_train is not None else {})}}
        key = json.dumps([ds, base["model"], train], sort_keys=True)
        if key in by_content:
            return by_content[key]
        run = f"{ds}-{label}" + (f"-e{slug(eps_train)}" if eps_train is not None else "")
        spec = _train_spec(config, "gm", experiment, run, ds, base["model"], train)
        spec["labels"] = {"method": method, "eps_train": None if eps_train is None else str(eps_train)}
        out[run] = spec
        by_content[key] = run
        return run

    datasets = sorted({s["dataset"] for s in gm["table3"]["settings"]} | {gm["fig4"]["dataset"]})
    if gm["nominal"]["enabled"]:
        for ds in datasets:
            out_run = f"{ds}-nominal"
            spec = _train_spec(
                config, "gm", "nominal", out_run, ds, gm["models"][ds]["model"], {**copy.deepcopy(gm["models"][ds]["train"]), "objective": {"name": "natural"}}
            )
            spec["labels"] = {"method": "nominal", "eps_train": None}
            out[out_run] = spec
    for st in gm["table3"]["settings"]:
        for m in gm["table3"]["methods"]:
            add("table3", st["dataset"], m, gm["methods"][m], st["eps_train"], m)
    f4 = gm["fig4"]
    if f4["enabled"]:
        gm_base = gm["methods"]["gm_crown_ibp"]
        variants = [(f"w-{w}", {"gm_weight": w}) for w in dict.fromkeys(f4["weight_types"] + f4["decreasing_weights"])]
        variants += [(f"n{n}", {"gm_n": n}) for n in f4["sizes"]]
        for label, change in variants:
            run = add("fig4", f4["dataset"], "gm_crown_ibp", {**gm_base, **change}, f4["eps_train"], f"gm_crown_ibp-{label}")
            labels = out[run]["labels"]
            labels["variants"] = sorted(set(labels.get("variants", [])) | {label})
    return out


def gm_verifies(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """run -> certified-evaluation spec: one job per model over the union of the radii it is shown at."""
    gm, out = config["gm"], {}
    table_eps: dict[tuple[str, str], list] = {}
    for st in gm["table3"]["settings"]:
        table_eps[(st["dataset"], str(st["eps_train"]))] = list(st["eps_eval"])
    for run, spec in gm_runs(config).items():
        ds, eps_train = spec["data"]["name"], spec["labels"]["eps_train"]
        radii = [parse_eps(e) for e in table_eps.get((ds, eps_train), [])]
        if eps_train is not None:
            radii += _grid_to(eps_train, gm["fig3"]["eval_step"][ds])
        else:  # Nominal: the radii of every Table 3 setting of its dataset
            radii += [parse_eps(e) for (d, _), es in table_eps.items() if d == ds for e in es]
        grid = sorted({round(r, 10) for r in radii})
        out[run] = {
            "paper": "gm",
            "run": run,
            "tier": config["tier"],
            "seed": config["seed"],
            "data": data_spec(config, ds),
            "eps": grid,
            "eps_labels": [f"{e:g}" for e in grid],
            "methods": list(gm["eval"]["bounds"]),
            "attack": copy.deepcopy(gm["eval"]["attack"]),
            "batch_size": gm["eval"]["batch_size"],
        }
    return out


def gm_targets(config: dict[str, Any]) -> dict[str, list[str]]:
    gm, out = config["gm"], {}
    if gm["table3"]["enabled"]:
        out["gm_table3"] = [f"results/gm/tables/table3.{e}" for e in TABLE_EXT]
    if gm["fig3"]["enabled"]:
        out["gm_fig3"] = [f"results/gm/figures/fig3.{e}" for e in FIGURE_EXT]
    if gm["fig4"]["enabled"]:
        out["gm_fig4"] = [f"results/gm/figures/fig4.{e}" for e in FIGURE_EXT]
    return out


# --- all papers -----------------------------------------------------------------------------

_RUNS = {"node": node_runs, "gm": gm_runs}
_EVALS = {"node": node_evals}
_VERIFIES = {"gm": gm_verifies}
_TARGETS = {"node": node_targets, "gm": gm_targets}


class Plan:
    """Everything the rule files need, computed once from the validated config."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.runs = {p: f(config) for p, f in _RUNS.items()}
        self.evals = {p: f(config) for p, f in _EVALS.items()}
        self.verifies = {p: f(config) for p, f in _VERIFIES.items()}
        self.targets = {p: f(config) for p, f in _TARGETS.items()}

    def train_spec(self, paper: str, run: str) -> dict[str, Any]:
        try:
            return self.runs[paper][run]
        except KeyError:
            raise KeyError(f"no run {run!r} of paper {paper!r} in the configuration") from None

    def eval_spec(self, paper: str, run: str, attack: str) -> dict[str, Any]:
        try:
            return self.evals[paper][(run, attack)]
        except KeyError:
            raise KeyError(f"no evaluation {attack!r} of run {run!r} ({paper}) in the configuration") from None

    def verify_spec(self, paper: str, run: str) -> dict[str, Any]:
        try:
            return self.verifies[paper][run]
        except KeyError:
            raise KeyError(f"no certified evaluation of run {run!r} ({paper}) in the configuration") from None

    def verify_files(self, paper: str, *experiments: str) -> list[str]:
        return [f"results/{paper}/verify/{run}.json" for run in self.verifies.get(paper, {}) if self.runs[paper][run]["experiment"] in experiments]

    def variant_files(self, paper: str) -> list[str]:
        """Certified evaluations of the ablation variants (runs labelled with ``variants``)."""
        return [
            f"results/{paper}/verify/{run}.json"
            for run, spec in self.runs.get(paper, {}).items()
            if spec.get("labels", {}).get("variants") and run in self.verifies.get(paper, {})
        ]

    def all_targets(self) -> list[str]:
        return [f for p in self.config["papers"] for files in self.targets.get(p, {}).values() for f in files]

    def eval_files(self, paper: str, experiment: str) -> list[str]:
        return [f"results/{paper}/eval/{run}/{atk}.json" for (run, atk) in self.evals[paper] if self.runs[paper][run]["experiment"] == experiment]
