"""SSP: "Robust Neural Networks inspired by Strong Stability Preserving Runge-Kutta methods" (Kim et al., ECCV 2020).

ResNet, mid-RK2, SSP2, SSP3 and SSP-adap (Ark) blocks (Eqs. 9-15) compared on robustness:

* E1 MNIST (uniform-noise ``ball`` training; PGD adversarial training as a second recipe), with the
  growth ratio of the block group beside the accuracies;
* E2 CIFAR-10 natural training, N in {6, 10}; E3 CIFAR-10 PGD-K adversarial training, (N, K) grid;
* E4 the perturbation growth ratio per block group of the E3 models, L1 and L2, with the group-3
  values read off the authors' figure beside them;
* E5 Fashion-MNIST and E6 Tiny ImageNet (supplement), PGD adversarial training.

Evaluation as the paper: FGSM and PGD on the 8-bit grid without random start (``fgsm_grid``,
``pgd_grid``), plus the project's standard PGD (random start, restarts) as the stronger reference;
``ball`` accuracy on MNIST. The paper kept the epoch with the best clean *test* accuracy: that is the
default (``ssp.select: test``) and every table says which selection its models used.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .. import tables_figures as R
from ..eps import parse_eps
from . import Job, Paper, Run, Target, register_paper

EXPERIMENTS = ("mnist", "cifar_natural", "cifar_adv", "fmnist", "tiny")
DATASET = {"mnist": "mnist", "cifar_natural": "cifar10", "cifar_adv": "cifar10", "fmnist": "fashion_mnist", "tiny": "tiny_imagenet"}
TABLE_TITLES = {
    "mnist": "SSP-E1: MNIST, accuracy (%) under FGSM, PGD and uniform noise, and growth ratio",
    "cifar_natural": "SSP-E2: CIFAR-10, natural training, accuracy (%) under FGSM and PGD",
    "cifar_adv": "SSP-E3: CIFAR-10, PGD-K adversarial training, accuracy (%) under FGSM and PGD",
    "fmnist": "SSP-E5: Fashion-MNIST, PGD adversarial training, accuracy (%) under FGSM and PGD",
    "tiny": "SSP-E6: Tiny ImageNet, PGD adversarial training, accuracy (%) under FGSM and PGD",
}
TABLE_TARGETS = {
    "mnist": "ssp_table_mnist",
    "cifar_natural": "ssp_table_cifar_natural",
    "cifar_adv": "ssp_table_cifar_adv",
    "fmnist": "ssp_table_fmnist",
    "tiny": "ssp_table_tiny",
}
BLOCK_NAMES = {"res": "ResNet", "midrk2": "mid-RK2", "ssp2": "SSP-2", "ssp3": "SSP-3", "ark": "SSP-adap"}


@register_paper
class Ssp(Paper):
    name = "ssp"
    title = "SSP: robust networks inspired by strong-stability-preserving Runge-Kutta methods"

    # --- runs -------------------------------------------------------------------------------------

    def _train(self, base: dict[str, Any], **over) -> dict[str, Any]:
        # Model selection is one paper-wide setting; a table must be able to say which one it used.
        return {**base, **over, "select": self.cfg["select"], "val_size": self.cfg["val_size"]}

    def _runs(self, exp: str) -> list[Run]:
        c = self.cfg[exp]
        if not c["enabled"]:
            return []
        ds, data = DATASET[exp], dict(c["data"])
        out = []
        for block in c["blocks"]:
            model = {**c["model"], "block": block}
            if exp == "mnist":
                for method in c["methods"]:
                    lab = {"dataset": ds, "method": method, "block": block, "depth": c["model"].get("n_blocks")}
                    out.append(Run(f"mnist-{method}-{block}", "E1", ds, model, self._train(c["train"], objective=c["recipes"][method]["objective"]), lab, data))
            elif exp == "cifar_natural":
                for n in c["ns"]:
                    ms = c["milestones"].get(block, c["milestones"]["default"])
                    train = self._train(c["train"], lr_schedule={**c["train"]["lr_schedule"], "milestones": ms})
                    lab = {"dataset": ds, "method": "natural", "block": block, "N": n}
                    out.append(Run(f"cifar-nat-n{n}-{block}", "E2", ds, {**model, "n": n}, train, lab, data))
            elif exp == "cifar_adv":
                for n, k in c["grid"]:
                    train = self._train(c["train"], objective={**c["objective"], "steps": k})
                    lab = {"dataset": ds, "method": f"PGD-{k}", "block": block, "N": n, "K": k}
                    out.append(Run(f"cifar-adv-n{n}-k{k}-{block}", "E3", ds, {**model, "n": n}, train, lab, data))
            else:
                lab = {"dataset": ds, "method": f"PGD-{c['objective'].get('steps')}", "block": block}
                out.append(Run(f"{exp}-{block}", "E5" if exp == "fmnist" else "E6", ds, model, self._train(c["train"], objective=c["objective"]), lab, data))
        return out

    def runs(self) -> list[Run]:
        return [r for exp in EXPERIMENTS for r in self._runs(exp)]

    # --- jobs -------------------------------------------------------------------------------------

    def _attack_jobs(self, exp: str, run: Run) -> list[Job]:
        c = self.cfg[exp]
        out = []
        for atk in c["attacks"]:
            params = {
                "attack": self.cfg["attacks"][atk],
                "eps": [parse_eps(e) for e in c["eps"]],
                "eps_labels": [str(e) for e in c["eps"]],
                "batch_size": self.cfg["eval_batch_size"],
                "independent": True,
            }
            out.append(Job("attack", atk, run.id, run.dataset, params, {**run.labels, "attack": atk}))
        return out

    def _growth_job(self, run: Run) -> Job:
        g = self.cfg["growth"]
        params = {"attack": g["attack"], "eps": g["eps"], "batch_size": self.cfg["eval_batch_size"], "norms": g["norms"]}
        return Job("growth", "pgr", run.id, run.dataset, params, dict(run.labels), {"test_limit": g["test_limit"]} if g["test_limit"] else {})

    def _jobs(self, exp: str) -> list[Job]:
        c, out = self.cfg[exp], []
        for run in self._runs(exp):
            out += self._attack_jobs(exp, run)
            if exp == "mnist":
                b = c["ball"]
                params = {"radii": b["radii"], "copies": b["copies"], "batch_size": self.cfg["eval_batch_size"]}
                out.append(Job("ball", "ball", run.id, run.dataset, params, dict(run.labels)))
            if c.get("growth"):
                out.append(self._growth_job(run))
        return out

    def jobs(self) -> list[Job]:
        return [j for exp in EXPERIMENTS for j in self._jobs(exp)]

    # --- targets ----------------------------------------------------------------------------------

    def _settings(self, exp: str) -> list[str]:
        c = self.cfg[exp]
        t = c["train"]
        notes = [
            f"settings: model {c['model']}; data normalisation {c['data'] or 'the dataset default'}; "
            f"train epochs {t['epochs']}, batch {t['batch_size']}, optimiser {t['optimizer']}, schedule {t['lr_schedule']}, augment {t['augment']}"
            + (f", train_limit {t['train_limit']}" if t.get("train_limit") else "")
        ]
        if exp == "mnist":
            notes.append(f"training objectives: { {m: c['recipes'][m]['objective'] for m in c['methods']} }; ball evaluation {c['ball']}")
        elif exp == "cifar_natural":
            notes.append(f"LR milestones per block: {c['milestones']}")
        else:
            notes.append(f"training objective: {c['objective']} (cifar_adv: steps = K of each row)")
        notes.append("attacks: " + "; ".join(f"{a} = {self.cfg['attacks'][a]}" for a in c["attacks"]) + f"; eps {c['eps']}")
        notes.append(self.seeds_note(self._runs(exp)))
        sel = self.cfg["select"]
        notes.append(
            {
                "test": "MODEL SELECTION ON TEST DATA (as the paper): each model is the epoch with the best clean test accuracy.",
                "val": f"model selection: the epoch with the best clean accuracy on {self.cfg['val_size']} held-out training images.",
                "none": "model selection: none (the last epoch's weights).",
            }[sel]
        )
        return notes

    def targets(self) -> list[Target]:
        out = []
        for exp in EXPERIMENTS:
            c = self.cfg[exp]
            if not c["enabled"]:
                continue
            keys = [j.key for j in self._jobs(exp)]
            params = {"title": TABLE_TITLES[exp], "notes": self._settings(exp), "columns": self.cfg["table_columns"][exp]}
            out.append(Target(TABLE_TARGETS[exp], "table", TABLE_TITLES[exp], accuracy_table, keys, [r.id for r in self._runs(exp)], params))
        adv = self.cfg["cifar_adv"]
        if adv["enabled"] and adv["growth"]:
            keys = [(r.id, "growth", "pgr") for r in self._runs("cifar_adv")]
            notes = [f"growth-ratio attack: {self.cfg['growth']['attack']} at eps {self.cfg['growth']['eps']}", *self._settings("cifar_adv")[-1:]]
            out.append(Target("ssp_fig_pgr", "figure", "SSP-E4: perturbation growth ratio per block group", fig_pgr, keys, params={"notes": notes}))
        return out


# --- builders --------------------------------------------------------------------------------------


def _row_id(lab: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    row = {c: lab.get(c) for c in columns}
    if "seed" in lab:  # a model trained under several seeds: one row per seed (the verdicts' spread)
        row["seed"] = lab["seed"]
    if "block" in row:
        row["block"] = BLOCK_NAMES.get(row["block"], row["block"])
    return row


def accuracy_table(paths: list[str], outputs: dict[str, str], title: str, notes: list[str], columns: list[str]) -> pd.DataFrame:
    """One row per model: clean accuracy, accuracy under each attack and radius, ball accuracy and growth ratio where measured."""
    evals = [p for p in paths if not p.endswith("train.json")]
    docs = R.load_all(evals)
    trains = {d["run"]: d for d in R.load_all([p for p in paths if p.endswith("train.json")], "train")}
    rows: dict[str, dict[str, Any]] = {}
    for d in docs:
        row = rows.setdefault(d["run"], {**_row_id(d["labels"], columns), "run": d["run"]})
        row["data"] = d["provenance"]["data_source"]
        if d["kind"] == "attack":
            row["clean"] = round(100 * d["clean_acc"], 2)
            row["n"] = d["n"]
            for lab, e in zip(d["eps_labels"], d["per_eps"]):
                row[f"{d['name']}@{lab}"] = round(100 * e["robust_acc"], 2)
        elif d["kind"] == "ball":
            for r in d["per_radius"]:
                row[f"ball@{r['label']}"] = round(100 * r["ball_acc"], 2)
        elif d["kind"] == "growth":
            for g in d["per_group"]:
                row[f"pgr_L1_g{g['group']}"] = round(g["L1"], 3)
                row[f"pgr_L2_g{g['group']}"] = round(g["L2"], 3)
    for run, row in rows.items():
        sel = trains.get(run, {}).get("selection", {})
        row["selected_epoch"] = sel.get("epoch")
    df = pd.DataFrame(list(rows.values()))
    # The seed beside the identifying labels: one row per trained model, its seeds together.
    order = [c for c in [*columns, "seed"] if c in df] + ["run"]
    lead = [c for c in ["clean"] if c in df]
    rest = [c for c in df.columns if c not in order + lead + ["data", "n", "selected_epoch"]]
    df = df[order + lead + rest + ["selected_epoch", "n", "data"]].sort_values(order).reset_index(drop=True)
    all_notes = R.provenance_notes(docs) + notes
    all_notes.append(
        "columns attack@eps: accuracy under that attack at that radius alone (fgsm, pgd: the paper's grid attacks, no random start; "
        "pgd_std: the project's PGD with random start and restarts); ball@r: accuracy over noisy copies; pgr_Lp_gi: growth ratio of block group i."
    )
    all_notes.append("The paper publishes no numbers for these tables (not recoverable): no published column.")
    R.write_table(df, outputs, title, all_notes)
    return df


def fig_pgr(paths: list[str], outputs: dict[str, str], notes: list[str]) -> pd.DataFrame:
    """Growth ratio per group, one panel per norm and (N, K), lines per block type; the published
    group-3 values (read off the authors' plot) as open diamonds wherever the (N, K) was published."""
    docs = R.load_all(paths, "growth")
    rows = []
    for d in docs:
        lab = d["labels"]
        for g in d["per_group"]:
            for norm in ("L1", "L2"):
                rows.append(
                    {
                        "N": lab["N"],
                        "K": lab["K"],
                        "block": lab["block"],
                        "group": g["group"],
                        "norm": norm,
                        "reproduced": g[norm],
                        "data": d["provenance"]["data_source"],
                    }
                )
    df = pd.DataFrame(rows)
    df = R.join_published(df, "ssp", "fig_pgr", "pgr", "reproduced").sort_values(["norm", "N", "K", "block", "group"]).reset_index(drop=True)
    panels = sorted({(n, k) for n, k in zip(df["N"], df["K"])})
    fig, axes = R.new_figure(2, len(panels), panel=(4.0, 2.8), sharex=True)
    colors = dict(zip(BLOCK_NAMES, ("tab:red", "tab:orange", "tab:blue", "tab:green", "tab:purple")))
    for i, norm in enumerate(("L1", "L2")):
        for j, (n, k) in enumerate(panels):
            ax = axes[i][j]
            sub = df[(df["norm"] == norm) & (df["N"] == n) & (df["K"] == k)]
            for block, part in sub.groupby("block", sort=False):
                part = part.sort_values("group")
                ax.plot(part["group"], part["reproduced"], marker="o", color=colors.get(block), label=f"{BLOCK_NAMES.get(block, block)} (reproduced)")
                pub = part.dropna(subset=["published"])
                R.draw_published(
                    ax, pub["group"] + 0.08, pub["published"], pub["tolerance"], color=colors.get(block), label="published, group 3 (read off the plot)"
                )
            ax.set_title(f"{norm} norm, (N, K) = ({n}, {k})")
            ax.set_xticks(sorted(df["group"].unique()))
            ax.margins(x=0.12)  # room for the published diamonds drawn just right of group 3
            if j == 0:
                ax.set_ylabel(f"growth ratio ({norm} norm, no unit)")
            if i == 1:
                ax.set_xlabel("block group")
    R.legend_outside(fig)
    # The settings travel with the figure itself, as the tables' notes do.
    has_pub = bool(df["published"].notna().any())
    published = sorted({(int(r.key["N"]), int(r.key["K"])) for r in R.published("ssp").itertuples() if r.item == "fig_pgr"})
    extra = [] if has_pub else [f"Published group-3 values exist only for (N, K) in {published}; none at the (N, K) of this figure."]
    fig.suptitle(R.figure_title("SSP Fig. (PGR): perturbation growth ratio per block group", df, docs, published=None if has_pub else False))
    R.figure_notes(fig, R.provenance_notes(docs) + notes + extra)
    R.save_figure(fig, outputs)
    R.write_figure_data(df, outputs)
    return df
