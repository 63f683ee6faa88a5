"""TRDNN: "Towards Robust Deep Neural Networks" (arXiv 1810.11726), reconstructed from its abstract.

Nothing beyond the abstract is known (catalog section 3): every setting is a configuration key and
no table has a published value. Three targets:

* ``trdnn_fig_landscape``: basin-hopping databases of distinct minima of the training loss (Iris,
  4-H-3 tanh network; MNIST, a small tanh network on pooled images). For every minimum: energy
  against mean log-sensitivity and against FGSM/PGD accuracy, with Spearman and Kendall
  coefficients and bootstrap intervals (the abstract's claim: lower minima are less sensitive).
* ``trdnn_table_sensitivity_loss``: the sensitivity loss over a lambda_s grid, an MLP and a small
  CNN on MNIST: test error, log-sensitivity, FGSM/PGD accuracy at several eps, IBP-verified accuracy.
* ``trdnn_table_baselines``: the sensitivity loss against plain training, an input-Jacobian
  regulariser (sensitivity-based baseline), PGD adversarial training and IBP training, same metrics.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import tables_figures as R
from ..eps import parse_eps
from . import Job, Paper, Run, Target, register_paper

NO_PUBLISHED = "The paper publishes no numbers (only its abstract is available): there is no published value to compare with."


@register_paper
class Trdnn(Paper):
    name = "trdnn"
    title = "TRDNN: sensitivity (output-box volume), energy landscapes and a sensitivity loss"

    # --- runs ----------------------------------------------------------------------------------

    def _loss_runs(self):
        s = self.cfg["sensitivity_loss"]
        for arch in s["models"]:
            for lam in s["lambda_grid"]:
                obj = {"name": "sensitivity", **s["objective"], "lambda_s": lam}
                train = {**s["train"], **s.get("train_by_model", {}).get(arch, {}), "objective": obj}
                yield Run(
                    f"sl-{arch}-lam{lam:g}",
                    "sensitivity_loss",
                    s["dataset"],
                    s["models"][arch],
                    train,
                    {"dataset": s["dataset"], "model": arch, "lambda_s": lam},
                )

    def _baseline_runs(self):
        b, s = self.cfg["baselines"], self.cfg["sensitivity_loss"]
        arch = b["model"]
        for method, obj in b["methods"].items():
            train = {**s["train"], **s.get("train_by_model", {}).get(arch, {}), "objective": obj}
            yield Run(f"bl-{arch}-{method}", "baselines", s["dataset"], s["models"][arch], train, {"dataset": s["dataset"], "model": arch, "method": method})

    def _baseline_reused(self):
        """Rows of the baselines table taken from the lambda grid: plain (lambda_s = 0) and the sensitivity loss."""
        b = self.cfg["baselines"]
        by_lam = {r.labels["lambda_s"]: r for r in self._loss_runs() if r.labels["model"] == b["model"]}
        return {"plain": by_lam.get(0.0) or by_lam.get(0), "sensitivity_loss": by_lam.get(b["lambda_s"])}

    def runs(self) -> list[Run]:
        out = []
        if self.cfg["sensitivity_loss"]["enabled"] or self.cfg["baselines"]["enabled"]:
            out += list(self._loss_runs())
        if self.cfg["baselines"]["enabled"]:
            out += list(self._baseline_runs())
        return out

    # --- jobs ----------------------------------------------------------------------------------

    def _eval_jobs(self, run: Run) -> list[Job]:
        e = self.cfg["eval"]
        data = {"test_limit": e["test_limit"]} if e["test_limit"] else {}
        out = []
        for atk in e["attacks"]:
            params = {
                "attack": self.cfg["attacks"][atk],
                "eps": [parse_eps(x) for x in e["attack_eps"]],
                "eps_labels": [str(x) for x in e["attack_eps"]],
                "batch_size": e["batch_size"],
                "independent": True,
                "batch_check": 0,
            }
            out.append(Job("attack", atk, run.id, run.dataset, params, {**run.labels, "attack": atk}, data))
        params = {
            "eps": [parse_eps(x) for x in e["sens_eps"]],
            "spaces": e["spaces"],
            "method": "ibp",
            "verify_eps": [parse_eps(x) for x in e["verify_eps"]],
            "verify_method": "ibp",
            "containment": e["containment"],
            "batch_size": e["batch_size"],
        }
        out.append(Job("sensitivity", "ibp", run.id, run.dataset, params, run.labels, data))
        return out

    def _landscape_jobs(self):
        ls = self.cfg["landscape"]
        for ds in ls["datasets"]:
            st = ls["settings"][ds]
            params = {
                "hidden": st["hidden"],
                "weight_decay": st["weight_decay"],
                "pool": st["pool"],
                "search": st["search"],
                "sens_eps": parse_eps(st["sens_eps"]),
                "spaces": ls["spaces"],
                "attacks": {a: self.cfg["attacks"][a] for a in ls["attacks"]},
                "attack_eps": [parse_eps(x) for x in st["attack_eps"]],
            }
            data = {k: st[k] for k in ("train_limit", "test_limit") if st.get(k)}
            yield Job("landscape", ds, None, ds, params, {"dataset": ds, "hidden": st["hidden"]}, data)

    def jobs(self) -> list[Job]:
        out = [j for r in self.runs() for j in self._eval_jobs(r)]
        if self.cfg["landscape"]["enabled"]:
            out += list(self._landscape_jobs())
        return out

    # --- targets -------------------------------------------------------------------------------

    def targets(self) -> list[Target]:
        out = []
        kinds = [("attack", a) for a in self.cfg["eval"]["attacks"]] + [("sensitivity", "ibp")]
        if self.cfg["landscape"]["enabled"]:
            keys = [j.key for j in self._landscape_jobs()]
            params = {"bootstrap": self.cfg["landscape"]["bootstrap"]}
            out.append(
                Target(
                    "trdnn_fig_landscape",
                    "figure",
                    "Energy of each minimum against its log-sensitivity and robust accuracy",
                    fig_landscape,
                    keys,
                    params=params,
                )
            )
        if self.cfg["sensitivity_loss"]["enabled"]:
            keys = [(r.id, k, n) for r in self._loss_runs() for k, n in kinds]
            out.append(Target("trdnn_table_sensitivity_loss", "table", "Sensitivity loss over a lambda_s grid", table_sensitivity_loss, keys))
        if self.cfg["baselines"]["enabled"]:
            reused = self._baseline_reused()
            runs = [r for r in reused.values() if r is not None] + list(self._baseline_runs())
            keys = [(r.id, k, n) for r in runs for k, n in kinds]
            method_of = {r.id: m for m, r in reused.items() if r is not None}
            out.append(Target("trdnn_table_baselines", "table", "Sensitivity loss against baselines", table_baselines, keys, params={"method_of": method_of}))
        return out


# --- builders --------------------------------------------------------------------------------------


def _metric_rows(docs: list[dict[str, Any]], group: list[str]) -> pd.DataFrame:
    """One row per run: test error, log-sensitivity, attack and verified accuracies (%)."""
    rows: dict[str, dict[str, Any]] = {}
    for d in docs:
        lab = d["train_labels"]
        # A model trained under several seeds: one row per seed, the seed beside the identifying labels.
        ident = [*group, "seed"] if "seed" in lab else group
        row = rows.setdefault(d["run"], {k: lab.get(k) for k in ident} | {"data": d["provenance"]["data_source"]})
        if d["kind"] == "attack":
            row["test_err"] = round(100 * (1 - d["clean_acc"]), 2)
            row["n"] = d["n"]  # test points: the sample size of every percentage (claims judge by it)
            for lab_e, e in zip(d["eps_labels"], d["per_eps"]):
                row[f"{d['attack']}_acc@{lab_e}"] = round(100 * e["robust_acc"], 2)
        else:
            for space, r in d["sensitivity"].items():
                for e in r["per_eps"]:
                    row[f"mean_log_S_{space}@{e['eps']:g}"] = round(e["mean_log_volume"], 3)
                    row[f"log_mean_S_{space}@{e['eps']:g}"] = round(e["log_mean_volume"], 3)
            for e in d["verified"]["per_eps"]:
                row[f"ibp_verified_acc@{e['eps']:g}"] = round(100 * e["verified_acc"], 2)
    df = pd.DataFrame(list(rows.values()))
    return df


def _seeds_note(docs) -> str:
    """How many training seeds stand behind each model of the table (read off its results)."""
    seeds: dict[str, set] = {}
    for d in docs:
        lab = d["train_labels"]
        seeds.setdefault(lab.get("declared_run", d["run"]), set()).add(lab.get("seed"))
    counts = sorted({len(s) for s in seeds.values()})
    if counts == [1]:
        return "training seeds: 1 per model."
    k = counts[0] if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"training seeds: {k} per model (one row each, column seed); the verdicts judge these models on the seed-to-seed spread."


def _notes(docs) -> list[str]:
    return R.provenance_notes(docs) + [
        _seeds_note(docs),
        NO_PUBLISHED,
        "test_err and attack accuracies in %; *_acc@eps: FGSM/PGD at that radius alone; ibp_verified_acc: points whose margins IBP certifies over the eps-box.",
        "mean_log_S: mean over test points of the log-volume sum_k log(u_k - l_k) of the IBP output box (logits or softmax probabilities); "
        "log_mean_S: log of the mean volume (the paper's robustness estimate is 1 / mean volume).",
    ]


def table_sensitivity_loss(paths: list[str], outputs: dict[str, str]) -> pd.DataFrame:
    docs = R.load_all(paths)
    df = _metric_rows(docs, ["dataset", "model", "lambda_s"])
    df = df.sort_values([c for c in ("model", "lambda_s", "seed") if c in df]).reset_index(drop=True)
    df["published"] = "no published value"
    R.write_table(df, outputs, "TRDNN: sensitivity loss over the lambda_s grid", _notes(docs))
    return df


def table_baselines(paths: list[str], outputs: dict[str, str], method_of: dict[str, str]) -> pd.DataFrame:
    docs = R.load_all(paths)
    for d in docs:
        run = d["train_labels"].get("declared_run", d["run"])  # every seed of a reused model
        if run in method_of:
            d["train_labels"] = {**d["train_labels"], "method": method_of[run]}
    df = _metric_rows(docs, ["dataset", "model", "method"]).reset_index(drop=True)
    df["published"] = "no published value"
    R.write_table(df, outputs, "TRDNN: sensitivity loss against plain, input-Jacobian, PGD-AT and IBP training", _notes(docs))
    return df


def _axis_label(col: str) -> str:
    """Words and units for a column of the minima database (``mean_log_volume_logits``, ``pgd_acc@0.1``...)."""
    if col.startswith("mean_log_volume_"):
        return f"log-sensitivity (natural log):\nmean log-volume of the IBP {col.removeprefix('mean_log_volume_')} box"
    if "_acc@" in col:
        attack, eps = col.split("_acc@")
        return f"{attack.upper()} accuracy at eps {eps} (%)"
    if col == "test_err":
        return "test error (%)"
    return col


# Fractions in the minima database; the figure shows them in %, the unit of every table.
PERCENT_COLUMNS = ("_acc@", "test_err", "train_err")


def fig_landscape(paths: list[str], outputs: dict[str, str], bootstrap: int) -> pd.DataFrame:
    """Per dataset: energy vs mean log-sensitivity and vs PGD accuracy of every minimum, with rank correlations."""
    from ..landscape import rank_correlations

    docs = R.load_all(paths, "landscape")
    rows, stats = [], []
    for d in docs:
        ds = d["labels"]["dataset"]
        for m in d["minima"]:
            rows.append({"dataset": ds, "data": d["provenance"]["data_source"], **m})
    df = pd.DataFrame(rows)
    for c in df.columns:
        if any(k in c for k in PERCENT_COLUMNS):
            df[c] = 100 * df[c]
    panels = []
    for d in docs:
        ds = d["labels"]["dataset"]
        sub = df[df.dataset == ds].dropna(axis=1, how="all")  # the other dataset's radii are not columns here
        cols = [c for c in sub.columns if c.startswith("mean_log_volume_")] + [c for c in sub.columns if c.startswith("pgd_acc@") or c.startswith("fgsm_acc@")]
        for c in cols + ["test_err"]:
            r = rank_correlations(sub["energy"], sub[c], n_boot=bootstrap, seed=0)
            stats.append({"dataset": ds, "against": c, **r})
        panels.append((ds, sub, [c for c in cols if c.startswith("mean_log_volume_logits")] + [c for c in cols if c.startswith("pgd_acc@")][-1:]))
    st = pd.DataFrame(stats)
    fig, axes = R.new_figure(max(1, len(panels)), 2, panel=(4.6, 3.4))
    for i, (ds, sub, cols) in enumerate(panels):
        for j, c in enumerate(cols[:2]):
            ax = axes[i][j]
            ax.scatter(sub["energy"], sub[c], s=10, alpha=0.7)
            r = st[(st.dataset == ds) & (st.against == c)].iloc[0]
            ax.set_title(
                f"{ds}: {len(sub)} minima\nSpearman {r['spearman']:.2f} [{r['spearman_lo']:.2f}, {r['spearman_hi']:.2f}], Kendall {r['kendall']:.2f}",
            )
            ax.set_xlabel("energy of the minimum (training loss, nats)")
            if sub["energy"].min() > 0 and sub["energy"].max() > 20 * sub["energy"].min():
                # A few high minima would squeeze all others into one column (Iris): log scale.
                ax.set_xscale("log")
                ax.set_xlabel("energy of the minimum (training loss, nats, log scale)")
            if "_acc@" in c:
                R.accuracy_axis(ax, _axis_label(c), full=False)
            else:
                ax.set_ylabel(_axis_label(c))
    fig.suptitle(R.figure_title("TRDNN: minima of the training loss, sensitivity and robustness", df, docs, published=False))
    R.save_figure(fig, outputs)
    # The figure's data file holds the minima and, below them, the coefficients (one CSV).
    st["data"] = df["data"].iloc[0] if len(df) else "real"
    out = pd.concat([df.assign(table="minima"), st.assign(table="rank_correlations")], ignore_index=True)
    R.write_figure_data(out, outputs)
    for d in docs:
        print(f"[trdnn_fig_landscape] {d['labels']['dataset']}: {len(d['minima'])} minima, search {d['seconds']}", flush=True)
    with np.printoptions(precision=3):
        print(st[["dataset", "against", "n", "spearman", "spearman_lo", "spearman_hi", "kendall", "kendall_lo", "kendall_hi"]].to_string(index=False))
    return out
