"""GM: GM-CROWN-IBP (Liang et al., FITEE 2023) against IBP and CROWN-IBP.

Table 3: standard and verified errors against large perturbations, with the Nominal (naturally
trained) baseline. Fig. 3: verified error against the evaluation radius per method (the
"drawdown", panels a and c) and the total error on a coarser grid (panels b and d; see
``total_errors`` for the reading of a term the paper does not define). Fig. 4: ablations of GM's weights and of the robustness size N. Each dataset has its
own recipe (architecture, training schedule, normalisation and per-method objectives): MNIST follows
CROWN-IBP's DM-large MNIST recipe on raw pixels, CIFAR-10 its smoothed-ramp, pure-robust CIFAR recipe.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pandas as pd

from .. import tables_figures as R
from ..eps import parse_eps
from . import Job, Paper, Run, Target, register_paper


def slug(eps) -> str:
    """A path-safe label of an epsilon as written in the config ("17.6/255" -> "17.6_255")."""
    return str(eps).replace("/", "_")


def _grid_to(eps_train, step) -> list[float]:
    """step, 2 step, ... up to eps_train (inclusive, within rounding)."""
    top, st = parse_eps(eps_train), parse_eps(step)
    n = int(top / st + 1e-6)
    return [round(st * k, 10) for k in range(1, n + 1)]


@register_paper
class GM(Paper):
    name = "gm"
    title = "GM-CROWN-IBP: certified training against large perturbations"

    def _datasets(self) -> list[str]:
        return sorted({s["dataset"] for s in self.cfg["table3"]["settings"]} | ({self.cfg["fig4"]["dataset"]} if self.cfg["fig4"]["enabled"] else set()))

    def runs(self) -> list[Run]:
        """Every trained model; a setting used by several experiments is trained once."""
        gm, out, by_content = self.cfg, {}, {}

        def recipe(ds):
            r = gm["recipes"][ds]
            norm = r["normalize"] or {}
            return r, {k: norm[k] for k in ("mean", "std") if k in norm}

        def add(experiment, ds, method, objective, eps_train, label, extra_labels=None):
            r, norm = recipe(ds)
            train = {**copy.deepcopy(r["train"]), "objective": {**copy.deepcopy(objective), **({"eps_max": eps_train} if eps_train is not None else {})}}
            key = json.dumps([ds, r["model"], norm, train], sort_keys=True)
            if key in by_content:
                run = out[by_content[key]]
                out[run.id] = Run(
                    run.id,
                    run.experiment,
                    ds,
                    run.model,
                    run.train,
                    {**run.labels, "variants": sorted(set(run.labels["variants"]) | set(extra_labels or []))},
                    run.data,
                )
                return
            rid = f"{ds}-{label}" + (f"-e{slug(eps_train)}" if eps_train is not None else "")
            labels = {"dataset": ds, "method": method, "eps_train": None if eps_train is None else str(eps_train), "variants": sorted(extra_labels or [])}
            out[rid] = Run(rid, experiment, ds, r["model"], train, labels, norm)
            by_content[key] = rid

        if gm["nominal"]["enabled"]:
            for ds in self._datasets():
                add("nominal", ds, "nominal", {"name": "natural"}, None, "nominal")
        for st in gm["table3"]["settings"]:
            for m in gm["table3"]["methods"]:
                add("table3", st["dataset"], m, gm["recipes"][st["dataset"]]["methods"][m], st["eps_train"], m)
        f4 = gm["fig4"]
        if f4["enabled"]:
            base = gm["recipes"][f4["dataset"]]["methods"]["gm_crown_ibp"]
            variants = [(f"w-{w}", {"gm_weight": w}) for w in dict.fromkeys(f4["weight_types"] + f4["decreasing_weights"])]
            variants += [(f"n{n}", {"gm_n": n}) for n in f4["sizes"]]
            for label, change in variants:
                add("fig4", f4["dataset"], "gm_crown_ibp", {**base, **change}, f4["eps_train"], f"gm_crown_ibp-{label}", [label])
        return list(out.values())

    def jobs(self) -> list[Job]:
        """One certified evaluation per model over the union of the radii it is shown at."""
        gm, out = self.cfg, []
        table_eps: dict[tuple[str, str], list] = {(st["dataset"], str(st["eps_train"])): list(st["eps_eval"]) for st in gm["table3"]["settings"]}
        for run in self.runs():
            ds, eps_train = run.dataset, run.labels["eps_train"]
            radii = [parse_eps(e) for e in table_eps.get((ds, eps_train), [])]
            if eps_train is not None:
                radii += _grid_to(eps_train, gm["fig3"]["eval_step"][ds]) + _grid_to(eps_train, gm["fig3"]["total_step"][ds])
            else:  # Nominal: the radii of every Table 3 setting of its dataset
                radii += [parse_eps(e) for (d, _), es in table_eps.items() if d == ds for e in es]
            grid = sorted({round(r, 10) for r in radii})
            params = {
                "eps": grid,
                "eps_labels": [f"{e:g}" for e in grid],
                "bounds": list(gm["eval"]["bounds"]),
                "attack": gm["eval"]["attack"],
                "batch_size": gm["eval"]["batch_size"],
            }
            out.append(Job("verify", "certified", run.id, ds, params, dict(run.labels)))
        return out

    def targets(self) -> list[Target]:
        gm, runs = self.cfg, self.runs()

        def keys(pred):
            return [(r.id, "verify", "certified") for r in runs if pred(r)]

        out = []
        if gm["table3"]["enabled"]:
            params = {"settings": gm["table3"]["settings"], "compare_with": gm["eval"]["compare_with"]}
            out.append(
                Target(
                    "gm_table3", "table", "Table 3: standard and verified errors", table3, keys(lambda r: r.experiment in ("table3", "nominal")), params=params
                )
            )
        if gm["fig3"]["enabled"]:
            out.append(
                Target(
                    "gm_fig3",
                    "figure",
                    "Fig. 3: verified and total error vs eps (drawdown)",
                    fig3,
                    keys(lambda r: r.experiment == "table3"),
                    params={"total_step": gm["fig3"]["total_step"]},
                )
            )
        if gm["fig4"]["enabled"]:
            out.append(Target("gm_fig4", "figure", "Fig. 4: GM ablations", fig4, keys(lambda r: bool(r.labels["variants"]))))
        return out


# --- builders --------------------------------------------------------------------------------------


def _rows(docs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (run, eps): errors in %, with the run's dataset, method and training radius."""
    rows = []
    for d in docs:
        lab = d["labels"]
        for e, label in zip(d["per_eps"], d["eps_labels"]):
            row = {
                "run": d["run"],
                "experiment": d.get("experiment"),
                "dataset": lab["dataset"],
                "method": lab["method"],
                "eps_train": lab["eps_train"],
                "variants": ",".join(lab.get("variants", [])),
                "eps": e["eps"],
                "eps_label": label,
                "std_err": 100 * d["std_err"],
                "pgd_err": 100 * e["attack_err"],
                "n": d["n"],
                "data": d["provenance"]["data_source"],
            }
            row.update({f"verified_err_{b}": 100 * v for b, v in e["verified_err"].items()})
            rows.append(row)
    return pd.DataFrame(rows)


def table3(paths: list[str], outputs: dict[str, str], settings: list[dict[str, Any]], compare_with: str) -> pd.DataFrame:
    """Standard and verified errors (%) per (dataset, eps_eval, eps_train, method), beside the paper's."""
    docs = R.load_all(paths, "verify")
    ev = _rows(docs)
    bounds = sorted(c.removeprefix("verified_err_") for c in ev.columns if c.startswith("verified_err_"))
    rows = []
    for st in settings:
        for e_label in st["eps_eval"]:
            sub = ev[(ev.dataset == st["dataset"]) & (ev.experiment == "table3") & ((ev.eps - parse_eps(e_label)).abs() < 1e-9)]
            sub = sub[[R.same_value(t, st["eps_train"]) for t in sub.eps_train]]
            for r in sub.drop_duplicates("method").itertuples():
                row = {
                    "dataset": st["dataset"],
                    "eps_eval": str(e_label),
                    "eps_train": str(st["eps_train"]),
                    "method": r.method,
                    "std_err": round(r.std_err, 2),
                }
                row.update({f"verified_err_{b}": round(getattr(r, f"verified_err_{b}"), 2) for b in bounds})
                rows.append({**row, "pgd_err": round(r.pgd_err, 2), "n": r.n, "data": r.data})
    for ds in sorted({st["dataset"] for st in settings}):
        nom = ev[(ev.dataset == ds) & (ev.method == "nominal")]
        if len(nom):
            r = nom.iloc[0]
            rows.append({"dataset": ds, "eps_eval": "", "eps_train": "", "method": "nominal", "std_err": round(r.std_err, 2), "n": r.n, "data": r.data})
    df = pd.DataFrame(rows)
    df = R.join_published(df, "gm", "table3", "std_err", "std_err", prefix="std_err_")
    df = R.join_published(df, "gm", "table3", "verified_err", f"verified_err_{compare_with}", prefix="verified_err_")
    # A row reproduces the paper when every published number of it lies within its tolerance.
    df["within_tol"] = [
        None if s is None and v is None else all(x is not False for x in (s, v)) for s, v in zip(df["std_err_within_tol"], df["verified_err_within_tol"])
    ]
    notes = R.provenance_notes(docs) + [
        f"Verified error under each bound; the published value is compared with the {compare_with}-verified error (the paper's bound is unknown).",
        "Errors in %, lower is better; pgd_err (PGD, worst case over the radii up to eps) is a lower bound on the true robust error, verified_err an upper bound.",
        "Models are the final ones of each run (CROWN-IBP's code keeps the best verified error on the test set; this workflow does not select on test data).",
    ]
    R.write_table(df, outputs, "GM Table 3: standard and verified errors (%)", notes)
    return df


# Names a reader knows, for the identifiers of the data (the CSV keeps the identifiers).
METHOD_NAMES = {"ibp": "IBP", "crown_ibp": "CROWN-IBP", "gm_crown_ibp": "GM-CROWN-IBP", "nominal": "nominal"}
BOUND_NAMES = {"ibp": "IBP", "crown_ibp": "CROWN-IBP", "crown": "CROWN"}
WEIGHT_NAMES = {"inverse": "1/r", "inverse_square": "1/r\u00b2", "exp": "exponential", "reverse_rank": "reverse rank", "uniform": "uniform", "linear": "linear"}
BOUND_DASHES = ["-", "--", ":", "-."]


def _variant_name(variant: str) -> str:
    """Fig. 4's variant (``w=<weight>`` or ``N=<n>``) in words."""
    key, _, value = variant.partition("=")
    return f"weights {WEIGHT_NAMES.get(value, value)}" if key == "w" else f"robustness size N = {value}"


def _per_255(eps_train) -> bool:
    """Radii given in 1/255 (CIFAR-10): their axis reads in that unit, as the paper's."""
    return str(eps_train).endswith("/255")


def _published_verified(ds: str, eps_train) -> pd.DataFrame:
    """Table 3's published verified errors (%) of one (dataset, eps_train), one row per (method, eps_eval)."""
    pub = R.published("gm")
    pub = pub[(pub["item"] == "table3") & (pub["metric"] == "verified_err")]
    hit = [r for r in pub.itertuples() if r.key.get("dataset") == ds and R.same_value(r.key.get("eps_train"), eps_train)]
    return pd.DataFrame(
        [{"method": r.key["method"], "eps": parse_eps(r.key["eps_eval"]), "value": r.value, "tolerance": r.tolerance} for r in hit],
        columns=["method", "eps", "value", "tolerance"],
    )


def _plot_curves(
    df: pd.DataFrame, panels: list[tuple], outputs: dict[str, str], title: str, docs: list[dict[str, Any]], notes: list[str], n_rows: int = 1
) -> None:
    """One axis per panel (name, rows, hue, names of hue's values[, y column, y label, published]),
    ``n_rows`` rows of them; one colour per hue value and one dash per bound across the figure, and
    one legend beside the panels. ``published``: Table 3's points of the panel, drawn in the colour
    of their method."""
    hues = {h: f"C{i}" for i, h in enumerate(sorted({v for _, sub, hue, *_ in panels for v in sub[hue].dropna().unique()}))}
    bounds = sorted(df["bound"].dropna().unique())
    dashes = {b: BOUND_DASHES[i % len(BOUND_DASHES)] for i, b in enumerate(bounds)}
    n_cols = -(-len(panels) // n_rows)
    fig, axes = R.new_figure(n_rows, n_cols, panel=(4.2, 3.2))
    drawn = False
    names: dict[str, str] = {}
    for ax, (name, sub, hue, hue_names, *rest) in zip(axes.flat, panels):
        y, ylabel, pub = rest if rest else ("verified_err", "verified error (%)", None)
        per_255 = len(sub) > 0 and _per_255(sub["eps_train"].iloc[0])
        scale = 255 if per_255 else 1
        for (h, b), part in sub.sort_values("eps").groupby([hue, "bound"], sort=True):
            ax.plot(part["eps"] * scale, part[y], color=hues[h], ls=dashes[b], marker="o", ms=4)
            names[h] = hue_names(h)
        if pub is not None:
            for m, part in pub.groupby("method"):
                R.draw_published(ax, part["eps"] * scale, part["value"], part["tolerance"], color=hues.get(m, "black"), label="published (Table 3)")
                drawn = True
        ax.set_title(name)
        ax.set_xlabel("evaluation radius \u03b5 (in 1/255)" if per_255 else "evaluation radius \u03b5 (pixels in [0, 1])")
        R.accuracy_axis(ax, ylabel)
    # The legend's entries: the colours (methods or variants), then the dashes (bounds).
    first = axes.flat[0]
    for h, color in hues.items():
        first.plot([], [], color=color, marker="o", ms=4, label=names.get(h, h))
    for b, ls in dashes.items():
        first.plot([], [], color="0.35", ls=ls, label=f"verified with the {BOUND_NAMES.get(b, b)} bound")
    R.legend_outside(fig)
    R.figure_notes(fig, R.provenance_notes(docs) + notes)
    fig.suptitle(R.figure_title(title, df, docs, published=drawn))
    R.save_figure(fig, outputs)
    R.write_figure_data(df, outputs)


def _long(ev: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ev.columns if c.startswith("verified_err_")]
    out = ev.melt(id_vars=[c for c in ev.columns if c not in cols], value_vars=cols, var_name="bound", value_name="verified_err")
    out["bound"] = out["bound"].str.removeprefix("verified_err_")
    return out


def total_errors(verified: pd.DataFrame, step: dict[str, Any]) -> pd.DataFrame:
    """Fig. 3 (b, d): the total error of each curve of ``verified`` (the long rows of panels a, c).

    The paper's caption gives only "total errors ... with step size 0.1" (MNIST) and "4/255" (CIFAR)
    and no definition [UNKNOWN]. Read here [INF] as the mean verified error over the coarse grid
    step, 2 step, ... up to eps: the discrete form of GM's global robustness (1/eps) int_0^eps, the
    quantity its loss averages over r_i = i eps / N, so a curve that is good only near eps_train
    (or only at small radii) pays for the rest. The mean of proportions measured on the same points
    has a sampling error no larger than one proportion's at the mean's value, so the binomial
    error of a claim on it (n = the test points) does not understate it."""
    out = []
    for (ds, et, *_), sub in verified.groupby(["dataset", "eps_train", "method", "bound"], sort=True):
        grid = _grid_to(et, step[ds])
        on = sub[[any(abs(e - g) < 1e-9 for g in grid) for e in sub.eps]].sort_values("eps").reset_index(drop=True)
        if len(on) != len(grid):  # a radius of the coarse grid was not evaluated: no total error for this curve
            continue
        out.append(on.assign(total_err=on.verified_err.expanding().mean().round(2), panel="total"))
    return pd.concat(out, ignore_index=True) if out else verified.iloc[0:0].assign(total_err=[], panel=[])


def fig3(paths: list[str], outputs: dict[str, str], total_step: dict[str, Any]) -> pd.DataFrame:
    """GM Fig. 3: verified error vs eps_eval (a, c) and total error on the coarse grid (b, d), one
    panel per (dataset, eps_train) in each row, one curve per method; ``panel`` says which row."""
    docs = [R.load_result(p, "verify") for p in paths]
    ev = _rows(docs)
    ev = ev[ev.experiment == "table3"]
    verified = _long(ev).assign(panel="verified")
    df = pd.concat([verified, total_errors(verified, total_step)], ignore_index=True)
    settings = sorted(set(zip(df.dataset, df.eps_train)))
    method = lambda m: METHOD_NAMES.get(m, m)  # noqa: E731
    name = {"mnist": "MNIST", "cifar10": "CIFAR-10"}
    panels = [
        (
            f"verified: {name.get(ds, ds)}, trained at \u03b5 = {et}",
            verified[(verified.dataset == ds) & (verified.eps_train == et)],
            "method",
            method,
            "verified_err",
            "verified error (%)",
            _published_verified(ds, et),
        )
        for ds, et in settings
    ]
    total = df[df.panel == "total"]
    panels += [
        (
            f"total (step {total_step[ds]}): {name.get(ds, ds)}, trained at \u03b5 = {et}",
            total[(total.dataset == ds) & (total.eps_train == et)],
            "method",
            method,
            "total_err",
            "total error (%)",
            None,
        )
        for ds, et in settings
    ]
    notes = [
        "Top: verified error (upper bound on the robust error) against the radius it is certified at; "
        + (
            "diamonds: Table 3's published verified error, with its tolerance, in its method's colour."
            if any(len(p[6]) for p in panels if p[6] is not None)
            else "Table 3 publishes no verified error at these training radii (it does at the paper tier's)."
        ),
        "Bottom: total error = mean verified error over the radii step, 2 step, ... up to \u03b5 (a reading of a term the paper does not define).",
    ]
    _plot_curves(df, panels, outputs, "GM Fig. 3: verified error (top) and total error (bottom) vs \u03b5", docs, notes, n_rows=2)
    return df


def fig4(paths: list[str], outputs: dict[str, str]) -> pd.DataFrame:
    """GM Fig. 4: verified error vs eps_eval for (a) weight types, (b) decreasing weights, (c) sizes N."""
    docs = [R.load_result(p, "verify") for p in paths]
    rows = []
    for d in docs:
        gm = d["objective"]
        rows.append((d, gm.get("gm_weight", "inverse"), int(gm.get("gm_n", 5)), d.get("labels", {}).get("variants", [])))
    ev = _long(_rows(docs))
    panel_of = {"(a) weight types": [], "(b) decreasing weights": [], "(c) robustness size N": []}
    for d, weight, n, variants in rows:
        for v in variants:
            sub = ev[ev.run == d["run"]].assign(variant=f"w={weight}" if v.startswith("w-") else f"N={n}")
            if v.startswith("w-") and weight in ("uniform", "inverse", "linear"):
                panel_of["(a) weight types"].append(sub)
            if v.startswith("w-") and weight in ("inverse", "inverse_square", "exp", "reverse_rank"):
                panel_of["(b) decreasing weights"].append(sub)
            if v.startswith("n"):
                panel_of["(c) robustness size N"].append(sub)
    panels = [(name, pd.concat(parts) if parts else ev.iloc[0:0].assign(variant=[]), "variant", _variant_name) for name, parts in panel_of.items()]
    df = pd.concat([p[1].assign(panel=p[0]) for p in panels if len(p[1])], ignore_index=True)
    # The paper gives Fig. 4 as plots only: no published number to draw beside the curves.
    notes = ["GM-CROWN-IBP with GM's weight over the radii r (a, b) or its number of radii N (c); the paper publishes these curves as plots only."]
    _plot_curves(df, panels, outputs, "GM Fig. 4: ablations of GM-CROWN-IBP", docs, notes)
    return df
