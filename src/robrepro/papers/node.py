"""NODE: "Towards Natural Robustness Against Adversarial Examples" (Chu, Wei, Zhao, arXiv 2012.02452).

Fig. 1: CIFAR-10 ResNet-56 whose residual branch is scaled by a step size h, clean and adversarial
accuracy against h. Table 1 (and the clean accuracies of Sec. 4.2): ResNet-50 against an ODE-Net
under FGSM and PGD at four radii, MNIST and CIFAR-10. Table 1 reports each radius attacked alone
from every clean-correct point, as the paper does, with the worst case up to that radius beside it.
Fig. 2: the same models under DI2-FGSM against eps. Fig. 3: the Boundary Attack (decision-based,
minimum l2) on a fixed test subset, accuracy against the l2 threshold. Table 2: PreAct-ResNet-18
trained with PGD-10, TRADES-10 and YOPO-5-3 against the CIFAR-10 ODE-Net under PGD-20 at 8/255.

The audit (not in the paper): the paper's claim that ODE-Nets are naturally robust rests on
gradient attacks through an adaptive solver, which can mask gradients. Every model of Table 1 and
Table 2 is attacked, at the radii of those tables, by the paper's attacks and by stronger ones
(long restarted PGD, Square, SPSA, AutoAttack, transfer from fixed-step and loose-tolerance solver
twins); the sanity checks and verdict rules are those of robrepro.evaluations.masking.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from .. import tables_figures as R
from ..eps import parse_eps
from . import Job, Paper, Run, Target, register_paper


@register_paper
class Node(Paper):
    name = "node"
    title = "NODE: natural robustness of Neural ODEs"

    def _fig1_runs(self):
        f1 = self.cfg["fig1"]
        for h in f1["step_sizes"]:
            yield Run(f"fig1-h{h:g}", "fig1", f1["dataset"], {**f1["model"], "h": h}, f1["train"], {"dataset": f1["dataset"], "h": h})

    def _table1_runs(self):
        t1 = self.cfg["table1"]
        for ds in t1["datasets"]:
            for arch, r in t1["runs"][ds].items():
                yield Run(f"t1-{ds}-{arch}", "table1", ds, r["model"], r["train"], {"dataset": ds, "model": arch})

    def runs(self) -> list[Run]:
        out = [*self._fig1_runs(), *self._table1_runs()]
        if self.cfg["table2"]["enabled"]:
            out += [*self._table2_runs(), self._table2_ode_run()]
        # Table 2's ODE row is Table 1's CIFAR-10 ODE-Net: one run, declared once.
        return list({r.id: r for r in out}.values())

    def _attack_job(self, run: Run, attack: str, eps_list: list) -> Job:
        params = {
            "attack": self.cfg["attacks"][attack],
            "eps": [parse_eps(e) for e in eps_list],
            "eps_labels": [str(e) for e in eps_list],
            "batch_size": self.cfg["eval_batch_size"],
            "independent": True,
            "batch_check": self.cfg["batch_check"],
        }
        return Job("attack", attack, run.id, run.dataset, params, {**run.labels, "attack": attack})

    def jobs(self) -> list[Job]:
        f1, t1 = self.cfg["fig1"], self.cfg["table1"]
        out = [self._attack_job(r, f1["attack"], [f1["eps"]]) for r in self._fig1_runs()]
        out += [self._attack_job(r, atk, t1["eps_grid"][r.dataset]) for r in self._table1_runs() for atk in t1["attacks"]]
        if self.cfg["fig2"]["enabled"]:
            out += self._fig2_jobs()
        if self.cfg["fig3"]["enabled"]:
            out += self._fig3_jobs()
        if self.cfg["table2"]["enabled"]:
            out += self._table2_jobs()
        if self.cfg["audit"]["enabled"]:
            out += self._audit_jobs()
        return out

    # --- Fig. 2, Fig. 3, Table 2 and the audit ------------------------------------------------------

    def _table2_runs(self):
        t2 = self.cfg["table2"]
        for training, r in t2["runs"].items():
            yield Run(
                f"t2-{training}", "table2", t2["dataset"], r["model"], r["train"], {"dataset": t2["dataset"], "model": "preact_resnet18", "training": training}
            )

    def _table2_ode_run(self) -> Run:
        # The paper's "Neural ODEs" row of Table 2 is the CIFAR-10 ODE-Net of Table 1: the same run.
        r = self.cfg["table1"]["runs"]["cifar10"]["odenet"]
        return Run("t1-cifar10-odenet", "table1", "cifar10", r["model"], r["train"], {"dataset": "cifar10", "model": "odenet"})

    def _limit(self, section: str) -> dict:
        lim = self.cfg[section].get("test_limit")
        return {"test_limit": lim} if lim else {}

    def _fig2_jobs(self) -> list[Job]:
        f2 = self.cfg["fig2"]
        out = []
        for r in self._table1_runs():
            job = self._attack_job(r, f2["attack"], f2["eps_grid"][r.dataset])
            out.append(Job(job.kind, job.name, job.run, job.dataset, job.params, job.labels, self._limit("fig2")))
        return out

    def _fig3_jobs(self) -> list[Job]:
        f3 = self.cfg["fig3"]
        params = {"attack": self.cfg["attacks"][f3["attack"]], "batch_size": f3["batch_size"]}
        return [Job("min_norm", f3["attack"], r.id, r.dataset, params, {**r.labels, "attack": f3["attack"]}, self._limit("fig3")) for r in self._table1_runs()]

    def _table2_jobs(self) -> list[Job]:
        t2 = self.cfg["table2"]
        runs = [*self._table2_runs(), self._table2_ode_run()]
        return [Job(j.kind, "table2", j.run, j.dataset, j.params, j.labels) for j in (self._attack_job(r, t2["attack"], [t2["eps"]]) for r in runs)]

    def _audit_job(self, run: Run, radii: list, paper_attacks: list[str]) -> Job:
        a = self.cfg["audit"]
        suite = {k: self.cfg["attacks"][k] for k in paper_attacks} | a["attacks"]
        params = {
            "suite": suite,
            "radii": [parse_eps(e) for e in radii],
            "radii_labels": [str(e) for e in radii],
            "paper_attacks": list(paper_attacks),
            "large_eps": parse_eps(a["large_eps"]),
            "large_eps_attacks": [k for k in a["large_eps_attacks"] if k in suite],
            "thresholds": dict(a["thresholds"]),
            "batch_size": self.cfg["eval_batch_size"],
        }
        return Job("audit", "audit", run.id, run.dataset, params, dict(run.labels), self._limit("audit"))

    def _audit_jobs(self) -> list[Job]:
        t1, t2 = self.cfg["table1"], self.cfg["table2"]
        out, seen = [], set()
        for r in self._table1_runs():
            radii = list(t1["table_eps"][r.dataset])
            if t2["enabled"] and r.id == self._table2_ode_run().id and not any(parse_eps(e) == parse_eps(t2["eps"]) for e in radii):
                radii.append(t2["eps"])
            out.append(self._audit_job(r, radii, t1["attacks"]))
            seen.add(r.id)
        if t2["enabled"]:
            for r in [*self._table2_runs(), self._table2_ode_run()]:
                if r.id not in seen:
                    out.append(self._audit_job(r, [t2["eps"]], [t2["attack"]]))
        return out

    def targets(self) -> list[Target]:
        f1, t1 = self.cfg["fig1"], self.cfg["table1"]
        out = []
        if f1["enabled"]:
            out.append(
                Target("node_fig1", "figure", "Fig. 1: accuracy vs residual step size h", fig1, [(r.id, "attack", f1["attack"]) for r in self._fig1_runs()])
            )
        if t1["enabled"]:
            keys = [(r.id, "attack", a) for r in self._table1_runs() for a in t1["attacks"]]
            out.append(Target("node_table1", "table", "Table 1: robust accuracy under FGSM and PGD", table1, keys, params={"table_eps": t1["table_eps"]}))
            out.append(Target("node_clean", "table", "Sec. 4.2: clean accuracy", clean, keys))
        if self.cfg["fig2"]["enabled"]:
            out.append(Target("node_fig2", "figure", "Fig. 2: accuracy under DI2-FGSM vs eps", fig2, [j.key for j in self._fig2_jobs()]))
        if self.cfg["fig3"]["enabled"]:
            f3 = self.cfg["fig3"]
            out.append(
                Target(
                    "node_fig3",
                    "figure",
                    "Fig. 3: accuracy under the Boundary Attack vs l2 threshold",
                    fig3,
                    [j.key for j in self._fig3_jobs()],
                    params={"max_threshold": f3["max_threshold"], "n_thresholds": f3["n_thresholds"], "text_threshold": f3["text_threshold"]},
                )
            )
        if self.cfg["table2"]["enabled"]:
            out.append(Target("node_table2", "table", "Table 2: PGD-20 accuracy vs adversarial training", table2, [j.key for j in self._table2_jobs()]))
        if self.cfg["audit"]["enabled"]:
            out.append(
                Target(
                    "node_audit",
                    "table",
                    "Gradient-masking audit of every model",
                    audit,
                    [j.key for j in self._audit_jobs()],
                    params={"table_eps": t1["table_eps"]},
                )
            )
        return out


# --- builders --------------------------------------------------------------------------------------


def _batch_notes(docs: list[dict[str, Any]]) -> list[str]:
    notes = []
    for d in docs:
        dep = d.get("batch_dependence")
        if dep:
            notes.append(
                f"{d['run']}: adaptive solver steps are shared by a batch; {dep['flipped']}/{dep['n_checked']} clean predictions change between "
                f"batch size {d['provenance']['spec']['params']['batch_size']} and 1 (largest logit change {dep['max_logit_change']:.2g})."
            )
    return sorted(set(notes))


def table1(paths: list[str], outputs: dict[str, str], table_eps: dict[str, list]) -> pd.DataFrame:
    """Robust accuracy (%) of ResNet-50 and the ODE-Net per dataset, attack and table column."""
    docs = R.load_all(paths, "attack")
    rows = []
    for d in docs:
        lab = d["labels"]
        for col, e in enumerate(table_eps.get(lab["dataset"], []), start=1):
            hit = [p for p in d["per_eps"] if abs(p["eps"] - parse_eps(e)) < 1e-9]
            if hit:
                rows.append(
                    {
                        "dataset": lab["dataset"],
                        "attack": lab["attack"],
                        "model": lab["model"],
                        "column": col,
                        "eps": str(e),
                        "reproduced": round(100 * hit[0]["robust_acc"], 2),
                        "worst_case_up_to_eps": round(100 * hit[0]["robust_acc_cumulative"], 2),
                        "n": d["n"],
                        "data": d["provenance"]["data_source"],
                    }
                )
    df = R.join_published(pd.DataFrame(rows), "node", "table1", "robust_acc", "reproduced")
    df = df.sort_values(["dataset", "attack", "model", "column"]).reset_index(drop=True)
    notes = R.provenance_notes(docs) + [
        "reproduced: each radius attacked alone from every clean-correct point (the paper's measurement); "
        "worst_case_up_to_eps: a point counts as robust only if the attack failed at every radius of the grid up to eps (never weaker).",
        "The paper's column radii were stripped from its text: published values are matched by column position to config node.table1.table_eps (an assumption).",
    ]
    R.write_table(df, outputs, "NODE Table 1: robust accuracy (%) under FGSM and PGD", notes + _batch_notes(docs))
    return df


def clean(paths: list[str], outputs: dict[str, str]) -> pd.DataFrame:
    """Clean accuracy (%) of ResNet-50 and the ODE-Net, with the ODE-Net's solver cost."""
    docs = R.load_all(paths, "attack")
    rows, seen = [], set()
    for d in docs:
        lab = d["labels"]
        if (lab["dataset"], lab["model"]) in seen:  # every attack file of a run carries the same clean accuracy
            continue
        seen.add((lab["dataset"], lab["model"]))
        rows.append(
            {
                "dataset": lab["dataset"],
                "model": lab["model"],
                "reproduced": round(100 * d["clean_acc"], 2),
                "nfe_per_forward": d["cost"]["nfe_per_clean_forward_mean"],
                "n": d["n"],
                "data": d["provenance"]["data_source"],
            }
        )
    df = R.join_published(pd.DataFrame(rows), "node", "clean", "clean_acc", "reproduced").sort_values(["dataset", "model"]).reset_index(drop=True)
    notes = R.provenance_notes(docs) + ["nfe_per_forward: the ODE solver's function evaluations per clean forward pass, averaged over the test batches."]
    R.write_table(df, outputs, "NODE clean accuracy (%)", notes + _batch_notes(docs))
    return df


def fig1(paths: list[str], outputs: dict[str, str]) -> pd.DataFrame:
    """Clean and adversarial accuracy of the ResNet-56 family against the step size h (the paper gives
    this figure as a plot only: nothing published to draw beside it)."""
    docs = R.load_all(paths, "attack")
    rows = []
    for d in docs:
        h, e, src = d["labels"]["h"], d["per_eps"][0], d["provenance"]["data_source"]
        label = f"{d['attack'].upper()} (eps = {d['eps_labels'][0]})"
        rows += [
            {"h": h, "accuracy": 100 * d["clean_acc"], "curve": "clean", "n": d["n"], "data": src},
            {"h": h, "accuracy": 100 * e["robust_acc"], "curve": label, "n": d["n"], "data": src},
        ]
    df = pd.DataFrame(rows).sort_values(["curve", "h"]).reset_index(drop=True)
    fig, axes = R.new_figure(panel=(4.6, 3.2))
    ax = axes[0][0]
    for curve, part in df.groupby("curve", sort=False):
        ax.plot(part["h"], part["accuracy"], marker="o", label=curve)
    ax.set_xscale("log")
    ax.set_xlabel("residual step size h (no unit, log scale)")
    R.accuracy_axis(ax)
    R.legend_outside(fig)
    m = docs[0]["model"]
    arch = "ResNet-56" if m["name"] == "resnet56" else f"{m['name']} (depth {m.get('depth', '?')}, width {m.get('width', '?')})"
    fig.suptitle(R.figure_title(f"NODE Fig. 1: {arch} accuracy vs step size", df, docs, published=False))
    R.save_figure(fig, outputs)
    R.write_figure_data(df, outputs)
    return df


MODEL_NAMES = {"resnet50": "ResNet-50", "odenet": "ODE-Net"}


def _curve_figure(df: pd.DataFrame, x: str, xlabel: str, title: str, docs: list[dict[str, Any]], outputs: dict[str, str], top_axis=None, vline=None) -> None:
    """One panel per dataset, one line per model, the published clean accuracy (Sec. 4.2) at x = 0
    where the curve starts from the clean accuracy; ``top_axis`` = (forward, inverse, label) of a second x axis."""
    pub = R.published("node")
    pub = pub[pub["item"] == "clean"]
    datasets = list(dict.fromkeys(df["dataset"]))
    fig, axes = R.new_figure(1, len(datasets), panel=(4.2, 3.4))
    drawn = False
    for ax, ds in zip(axes[0], datasets):
        for i, (model, part) in enumerate(df[df["dataset"] == ds].groupby("model", sort=False)):
            color = f"C{i}"
            ax.plot(part[x], part["accuracy"], color=color, label=MODEL_NAMES.get(model, model))
            hit = [r for r in pub.itertuples() if r.key == {"dataset": ds, "model": model}]
            R.draw_published(ax, [0.0] * len(hit), [r.value for r in hit], [r.tolerance for r in hit], color=color, label="published clean accuracy (Sec. 4.2)")
            drawn = drawn or bool(hit)
        ax.set_title(ds)
        ax.set_xlabel(xlabel)
        R.accuracy_axis(ax)
        if top_axis:
            fwd, inv, label = top_axis
            ax.secondary_xaxis("top", functions=(fwd, inv)).set_xlabel(label)
        if vline is not None:
            ax.axvline(vline[0], color="grey", ls=":", lw=1, label=vline[1])
    R.legend_outside(fig)
    # The paper publishes these curves as plots only; the clean accuracies are its only numbers here.
    note = "published: the clean accuracy at x = 0 only (the curves are plots in the paper)" if drawn else None
    fig.suptitle(R.figure_title(title + (f"\n{note}" if note else ""), df, docs, published=None if drawn else False))
    R.save_figure(fig, outputs)
    R.write_figure_data(df, outputs)


def fig2(paths: list[str], outputs: dict[str, str]) -> pd.DataFrame:
    """Accuracy (%) under DI2-FGSM against eps (each radius attacked alone), ResNet-50 and the ODE-Net."""
    docs = R.load_all(paths, "attack")
    rows = []
    for d in docs:
        lab, src = d["labels"], d["provenance"]["data_source"]
        base = {"dataset": lab["dataset"], "model": lab["model"], "n": d["n"], "data": src}
        rows.append({**base, "eps": 0.0, "eps_label": "0", "accuracy": 100 * d["clean_acc"]})
        rows += [{**base, "eps": e["eps"], "eps_label": lbl, "accuracy": 100 * e["robust_acc"]} for e, lbl in zip(d["per_eps"], d["eps_labels"])]
    df = pd.DataFrame(rows).sort_values(["dataset", "model", "eps"]).reset_index(drop=True)
    _curve_figure(df, "eps", "l-inf radius eps (input units, images in [0, 1])", "NODE Fig. 2: accuracy under DI2-FGSM", docs, outputs)
    return df


def fig3(paths: list[str], outputs: dict[str, str], max_threshold: dict[str, float], n_thresholds: int, text_threshold: float) -> pd.DataFrame:
    """Accuracy (%) under the Boundary Attack against the l2 threshold: a point counts as robust at tau
    when the smallest adversarial distance found exceeds tau. Bottom axis in input units (images in
    [0, 1]), top axis in 0-255 pixel units (x 255); the dotted line marks ``text_threshold`` pixel units
    (the paper's "larger than 33", whose unit its text does not give)."""
    import torch

    from ..evaluations.min_norm import accuracy_at_thresholds

    docs = R.load_all(paths, "min_norm")
    rows = []
    for d in docs:
        lab, src = d["labels"], d["provenance"]["data_source"]
        dist = torch.tensor([float("inf") if v is None else v for v in d["distance"]])
        hi = float(max_threshold[lab["dataset"]])
        grid = [hi * i / (n_thresholds - 1) for i in range(n_thresholds)]
        for t, acc in zip(grid, accuracy_at_thresholds(dist, grid)):
            rows.append(
                {
                    "dataset": lab["dataset"],
                    "model": lab["model"],
                    "threshold": round(t, 6),
                    "threshold_255": round(255 * t, 4),
                    "accuracy": 100 * acc,
                    "n": d["n"],
                    "median_queries": float(torch.tensor(d["queries"], dtype=torch.float).median()),
                    "data": src,
                }
            )
    df = pd.DataFrame(rows).sort_values(["dataset", "model", "threshold"]).reset_index(drop=True)
    _curve_figure(
        df,
        "threshold",
        "l2 threshold, input units (images in [0, 1])",
        f"NODE Fig. 3: accuracy under the Boundary Attack ({docs[0]['n']} test images)",
        docs,
        outputs,
        top_axis=(lambda v: v * 255, lambda v: v / 255, "l2 threshold, 0-255 pixel units"),
        vline=(text_threshold / 255, f"{text_threshold:g} in 0-255 units"),
    )
    return df


def table2(paths: list[str], outputs: dict[str, str]) -> pd.DataFrame:
    """Clean and PGD-20 accuracy (%) of the adversarially trained PreAct-ResNet-18s and the ODE-Net."""
    docs = R.load_all(paths, "attack")
    rows = []
    for d in docs:
        lab = d["labels"]
        rows.append(
            {
                "model": lab["model"],
                "training": lab.get("training", "none"),
                "eps": d["eps_labels"][0],
                "clean": round(100 * d["clean_acc"], 2),
                "reproduced": round(100 * d["per_eps"][0]["robust_acc"], 2),
                "n": d["n"],
                "data": d["provenance"]["data_source"],
            }
        )
    df = R.join_published(pd.DataFrame(rows), "node", "table2", "clean_acc", "clean", prefix="clean_")
    df = R.join_published(df, "node", "table2", "robust_acc", "reproduced")
    order = {"pgd10": 0, "trades10": 1, "yopo53": 2, "none": 3}
    df = df.sort_values(by=["training"], key=lambda c: c.map(lambda v: order.get(v, 9))).reset_index(drop=True)
    notes = R.provenance_notes(docs) + [
        "reproduced: accuracy under PGD-20 (step eps/4 = 2/255, random start) at eps 8/255, the YOPO evaluation setting [INF: the paper's radius is stripped].",
        "The baselines' published numbers equal the YOPO paper's; the recipes are the YOPO repository's (config node.table2.runs).",
        "The ODE row is the CIFAR-10 ODE-Net of Table 1 (the same trained model).",
    ]
    R.write_table(df, outputs, "NODE Table 2: clean and PGD-20 accuracy (%) vs adversarial training", notes + _batch_notes(docs))
    return df


def _published_paper_number(pub: pd.DataFrame, lab: dict[str, Any], attack: str, eps: float, table_eps: dict[str, list]) -> tuple[float | None, str]:
    """The paper's number for an audit row: Table 1 (by column position of eps) or Table 2."""
    cols = [i for i, e in enumerate(table_eps.get(lab["dataset"], []), start=1) if abs(parse_eps(e) - eps) < 1e-9]
    want = []
    if "training" not in lab and cols:
        want.append(("table1", {"dataset": lab["dataset"], "model": lab["model"], "attack": attack, "column": str(cols[0])}))
    want.append(("table2", {"model": lab["model"], "training": lab.get("training", "none")}))
    for item, keys in want:
        hit = pub[(pub["item"] == item) & (pub["metric"] == "robust_acc")]
        hit = [r for r in hit.itertuples() if all(R.same_value(keys.get(k), v) for k, v in r.key.items())]
        if hit and (item == "table1" or abs(eps - 8 / 255) < 1e-9):
            return hit[0].value, item
    return None, ""


REFERENCE_MODEL = "resnet50"  # the undefended model of each dataset, on which the gradient-free legs must work


def _audit_rows(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(doc, audit row) pairs recomputed from the stored per-point results: a gradient-free leg that
    fails on the dataset's undefended reference model (Table 1's ResNet) is marked weak for every
    model of that dataset, and a transfer leg below its agreement gate unusable."""
    from ..evaluations.masking import Thresholds, as_attack_results, weak_legs
    from ..evaluations.masking import audit as audit_rows

    out = []
    refs = {d["labels"]["dataset"]: d for d in docs if d["labels"].get("model") == REFERENCE_MODEL and "training" not in d["labels"]}
    for d in docs:
        th = Thresholds(**d["thresholds"])
        ref = refs.get(d["labels"]["dataset"])
        weak = weak_legs(as_attack_results(ref["suite"], th), sorted({r["eps"] for r in ref["rows"]}), th) if ref else {}
        results = as_attack_results(d["suite"], th)
        labels = {r["eps"]: r["eps_label"] for r in d["rows"]}
        for paper_attack in dict.fromkeys(r["paper_attack"] for r in d["rows"]):
            radii = [r["eps"] for r in d["rows"] if r["paper_attack"] == paper_attack]
            for row in audit_rows(results, paper_attack, radii, large_eps=d["large_eps"], n=d["n"], th=th, unusable=weak):
                out.append((d, {**row.__dict__, "eps_label": labels[row.eps]}))
    return out


def audit(paths: list[str], outputs: dict[str, str], table_eps: dict[str, list]) -> pd.DataFrame:
    """Per model, paper attack and radius: the paper's number, ours under the paper's attack, the
    worst case over the whole suite (a point is robust only if every attack failed on it) with the
    gap's interval, the strongest single attack, the legs that cannot count as evidence, the failed
    sanity checks, the verdict and the rule that decided it, then every attack's accuracy (%).

    Column names are stable (claims read them): ``worst_case_acc`` is the robust accuracy verdicts
    use; ``paper_attack_one_step`` marks rows of a one-step paper attack (FGSM)."""
    docs = R.load_all(paths, "audit")
    pub = R.published("node")
    rows, labels, cost, agreement = [], [], [], []
    for d in docs:
        for lbl in d["suite"]:
            if lbl not in labels:
                labels.append(lbl)
    for d, r in _audit_rows(docs):
        lab = d["labels"]
        published, item = _published_paper_number(pub, lab, r["paper_attack"], r["eps"], table_eps)
        row = {
            "dataset": lab["dataset"],
            "model": lab["model"],
            "training": lab.get("training", "none"),
            "paper_attack": r["paper_attack"],
            "paper_attack_one_step": r["one_step"],
            "eps": r["eps_label"],
            "published": published,
            "published_in": item,
            "paper_attack_acc": round(100 * r["paper_acc"], 2),
            "worst_case_acc": round(100 * r["worst_acc"], 2),
            "gap": round(100 * r["gap"], 2),
            "gap_low": round(100 * r["gap_low"], 2),
            "gap_high": round(100 * r["gap_high"], 2),
            "strongest_acc": round(100 * r["strongest_acc"], 2),
            "strongest_attack": r["strongest_attack"],
            "unusable_legs": "; ".join(r["unusable"]),
            "failed_checks": len(r["failed"]),
            "verdict": r["verdict"],
            "rule": r["rule"],
            "n": d["n"],
            "data": d["provenance"]["data_source"],
        }
        for lbl, res in d["suite"].items():
            acc = [e["robust_acc"] for e in res["per_eps"] if abs(e["eps"] - r["eps"]) < 1e-9]
            row[f"acc_{lbl}"] = round(100 * acc[0], 2) if acc else None
        rows.append(row)
    for d in docs:
        lab = d["labels"]
        name = f"{lab['dataset']}/{lab['model']}/{lab.get('training', 'none')}"
        spent = ", ".join(f"{k} {v['seconds']:.0f}s" + (f" ({v['nfe']} NFE)" if v["nfe"] else "") for k, v in d["suite"].items())
        skipped = f"; skipped (no ODE block): {', '.join(d['skipped'])}" if d["skipped"] else ""
        cost.append(f"{name}: {spent}{skipped}")
        agreement += [f"{name} {k} {100 * v['twin_agreement']:.1f} %" for k, v in d["suite"].items() if v.get("twin_agreement") is not None]
    df = pd.DataFrame(rows)
    fixed = [c for c in df.columns if not c.startswith("acc_")]
    df = df[fixed + [f"acc_{lbl}" for lbl in labels if f"acc_{lbl}" in df.columns]]
    if len(df):
        df = df.sort_values(
            ["dataset", "model", "training", "paper_attack", "eps"], key=lambda c: c.map(lambda v: parse_eps(v) if c.name == "eps" else v)
        ).reset_index(drop=True)
    th = docs[0]["thresholds"] if docs else {}

    def pct(key: str) -> str:
        # Thresholds are fractions in the configuration; the table's columns are percentages.
        return f"{100 * th[key]:g} %" if key in th else "?"

    notes = R.provenance_notes(docs) + [
        "Every attack runs on the same test points, each radius attacked alone from every clean-correct point; acc_<attack>: its accuracy (%) at the row's radius.",
        "worst_case_acc: a point counts as robust only if every attack of the suite failed on it (the union of their successes): the robust accuracy "
        "the verdicts use. gap = paper_attack_acc - worst_case_acc (points the paper's attack left that the suite breaks), "
        f"gap_low/gap_high its Wilson interval (z {th.get('z')}); strongest_*: the best single attack.",
        f"unusable_legs: gradient-free attacks that leave more than {pct('gap')} (points) above the best iterative white-box attack on the undefended "
        f"{REFERENCE_MODEL} of the dataset (weak budget), and transfer attacks whose surrogate agrees with the model on fewer than "
        f"{pct('min_agreement')} of clean predictions (or whose agreement was not measured). Their successes count in the worst case; their failures confirm nothing.",
        f"Sanity checks (slack: {pct('tol')} (points) or {th.get('z')} standard errors, whichever is larger): iterative >= one-step; white-box >= black-box/transfer; "
        f"accuracy non-increasing in eps; iterative white-box attacks <= {pct('near_zero')} at eps {docs[0]['large_eps'] if docs else ''}.",
        "Verdict rules, first that fires decides: sanity (a check failed -> masking suspected); floor (the paper's attack leaves 0 % -> not testable); "
        f"gap (gap_low above {pct('gap')} (points): masking suspected for an iterative paper attack, weak attack for FGSM, which is no evidence of masking); "
        "worst-floor (the suite leaves 0 % where the paper's attack left some -> not testable); "
        "no-usable-leg (no usable gradient-free or transfer attack -> not testable); confirmed (gap_high within the tolerance -> paper's number "
        "confirmed by stronger attacks: the number, not robustness); otherwise inconclusive.",
        "published: the paper's number for that cell (Table 1 by column position of eps, an assumption; Table 2 at 8/255); the paper did no such audit.",
        "Attacks and budgets in force (AutoAttack: the standard version, APGD-CE, APGD-T, FAB-T, Square, at the budgets named): "
        + "; ".join(f"{k} {json.dumps(v['attack'], sort_keys=True)}" for k, v in (docs[0]["suite"].items() if docs else [])),
        "Transfer surrogates' agreement with their model (clean predictions): " + (", ".join(agreement) or "none (no ODE model)"),
        "Cost per attack: " + " | ".join(cost),
    ]
    R.write_table(df, outputs, "NODE audit: does the robustness survive stronger attacks?", notes)
    return df
