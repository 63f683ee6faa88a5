"""NODE: "Towards Natural Robustness Against Adversarial Examples" (Chu, Wei, Zhao, arXiv 2012.02452).

Fig. 1: CIFAR-10 ResNet-56 whose residual branch is scaled by a step size h, clean and adversarial
accuracy against h. Table 1 (and the clean accuracies of Sec. 4.2): ResNet-50 against an ODE-Net
under FGSM and PGD at four radii, MNIST and CIFAR-10. Table 1 reports each radius attacked alone
from every clean-correct point, as the paper does, with the worst case up to that radius beside it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .. import reporting as R
from ..attacks import parse_eps
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
        return [*self._fig1_runs(), *self._table1_runs()]

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
    """Clean and adversarial accuracy of the ResNet-56 family against the step size h."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    docs = R.load_all(paths, "attack")
    rows = []
    for d in docs:
        h, e, src = d["labels"]["h"], d["per_eps"][0], d["provenance"]["data_source"]
        label = f"{d['attack'].upper()} (eps={d['eps_labels'][0]})"
        rows += [
            {"h": h, "accuracy": 100 * d["clean_acc"], "curve": "clean", "data": src},
            {"h": h, "accuracy": 100 * e["robust_acc"], "curve": label, "data": src},
        ]
    df = pd.DataFrame(rows).sort_values(["curve", "h"]).reset_index(drop=True)
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    sns.lineplot(data=df, x="h", y="accuracy", hue="curve", marker="o", ax=ax)
    ax.set_xscale("log")
    ax.set_xlabel("residual step size h")
    ax.set_ylabel("accuracy (%)")
    m = docs[0]["model"]
    arch = "ResNet-56" if m["name"] == "resnet56" else f"{m['name']} (depth {m.get('depth', '?')}, width {m.get('width', '?')})"
    ax.set_title(R.figure_title(f"NODE Fig. 1: {arch} accuracy vs step size", df, docs), fontsize=9)
    R.save_figure(fig, outputs)
    plt.close(fig)
    R.write_figure_data(df, outputs)
    return df
