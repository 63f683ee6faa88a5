"""Figures fit to print: built from small hand-made results, then measured on the drawn figure.

Each builder is run on a few result documents written here (no training), with ``save_figure``
wrapped so that the test sees the matplotlib figure it wrote. The checks are what a referee looks
at: no legend over the data, tick labels that do not run into each other, axis labels in words,
accuracy in %, the published value drawn where the paper gives one, and a title that says so
where it gives none.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from robrepro import tables_figures as R
from robrepro.papers import gm, node, ssp, trdnn

PROVENANCE = {"data_source": "real", "git": {"commit": "0123456789abcdef", "dirty": False}, "spec": {"tier": "lite"}}


def _write(tmp_path, name: str, doc: dict) -> str:
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps({**doc, "provenance": PROVENANCE, "complete": True}))
    return str(p)


def _outputs(tmp_path, name: str) -> dict[str, str]:
    return {ext: str(tmp_path / f"{name}.{ext}") for ext in ("png", "pdf", "csv")}


# --- hand-made results -------------------------------------------------------------------------


def growth_docs(tmp_path, n: int, k: int) -> list[str]:
    rng = np.random.default_rng(0)
    return [
        _write(
            tmp_path,
            f"pgr-{block}",
            {
                "kind": "growth",
                "labels": {"N": n, "K": k, "block": block},
                "per_group": [{"group": g, "L1": float(rng.uniform(2, 15)), "L2": float(rng.uniform(2, 15))} for g in (1, 2, 3)],
            },
        )
        for block in ssp.BLOCK_NAMES
    ]


def landscape_docs(tmp_path) -> list[str]:
    rng = np.random.default_rng(1)
    out = []
    for ds, n in (("iris", 40), ("mnist", 25)):
        # Iris energies differ in the fourth decimal: the case whose tick labels ran together.
        energy = 0.0512 + rng.uniform(0, 0.0009, n)
        minima = [
            {
                "index": i,
                "energy": float(e),
                "test_err": float(rng.uniform(0.02, 0.2)),
                "train_err": float(rng.uniform(0.0, 0.1)),
                "mean_log_volume_logits": float(rng.normal(-3, 1)),
                "mean_log_volume_probs": float(rng.normal(-9, 1)),
                "fgsm_acc@0.1": float(rng.uniform(0.5, 0.95)),
                "pgd_acc@0.1": float(rng.uniform(0.4, 0.9)),
            }
            for i, e in enumerate(energy)
        ]
        out.append(_write(tmp_path, f"landscape-{ds}", {"kind": "landscape", "labels": {"dataset": ds}, "minima": minima, "seconds": {"search": 1.0}}))
    return out


def _attack(tmp_path, name: str, labels: dict, clean: float, robust: list[float], eps: list[float], model=None) -> str:
    doc = {
        "kind": "attack",
        "attack": "pgd",
        "labels": labels,
        "model": model or {"name": "resnet56"},
        "n": 200,
        "clean_acc": clean,
        "eps_labels": [f"{e:g}" for e in eps],
        "per_eps": [{"eps": e, "robust_acc": r} for e, r in zip(eps, robust)],
    }
    return _write(tmp_path, name, doc)


def fig1_docs(tmp_path) -> list[str]:
    return [_attack(tmp_path, f"h{h:g}", {"h": h}, 0.9 - 0.1 * i, [0.2 + 0.1 * i], [8 / 255]) for i, h in enumerate((0.01, 0.1, 1.0))]


def fig2_docs(tmp_path) -> list[str]:
    eps = [0.05, 0.1, 0.2, 0.3]
    return [
        _attack(tmp_path, f"{ds}-{m}", {"dataset": ds, "model": m}, 0.97, [0.9 - 0.2 * i for i in range(4)], eps)
        for ds in ("mnist", "cifar10")
        for m in ("resnet50", "odenet")
    ]


def fig3_docs(tmp_path) -> list[str]:
    rng = np.random.default_rng(2)
    return [
        _write(
            tmp_path,
            f"bnd-{ds}-{m}",
            {
                "kind": "min_norm",
                "labels": {"dataset": ds, "model": m},
                "n": 50,
                "distance": [0.0] * 3 + [float(d) for d in rng.uniform(0.1, 3.0, 47)],
                "queries": [int(q) for q in rng.integers(100, 1000, 50)],
            },
        )
        for ds in ("mnist", "cifar10")
        for m in ("resnet50", "odenet")
    ]


def _verify(tmp_path, name: str, ds: str, method: str, eps_train, eps: list[float], experiment="table3", variants=(), objective=None) -> str:
    """A verification result: verified error under two bounds growing with eps, as GM's curves."""
    doc = {
        "kind": "verify",
        "run": name,
        "experiment": experiment,
        "labels": {"dataset": ds, "method": method, "eps_train": eps_train, "variants": list(variants)},
        "objective": objective or {},
        "n": 200,
        "std_err": 0.1,
        "eps_labels": [f"{e:g}" for e in eps],
        "per_eps": [{"eps": e, "attack_err": 0.2 + e, "verified_err": {"ibp": min(1.0, 0.3 + e), "crown_ibp": min(1.0, 0.25 + e)}} for e in eps],
    }
    return _write(tmp_path, name, doc)


def gm_fig3_docs(tmp_path, eps_train: float) -> list[str]:
    # eps_train 0.5 is a setting of Table 3 (published verified errors at 0.2, 0.3, 0.4); 0.1 is none.
    eps = [0.1, 0.2, 0.3, 0.4, 0.5] if eps_train == 0.5 else [0.05, 0.1]
    return [_verify(tmp_path, f"{m}-{eps_train}", "mnist", m, eps_train, eps) for m in ("ibp", "crown_ibp", "gm_crown_ibp")]


def gm_fig4_docs(tmp_path) -> list[str]:
    eps = [0.1, 0.2, 0.3]
    weights = [_verify(tmp_path, f"w-{w}", "mnist", "gm_crown_ibp", 0.5, eps, "fig4", [f"w-{w}"], {"gm_weight": w}) for w in ("uniform", "inverse", "exp")]
    sizes = [_verify(tmp_path, f"n{n}", "mnist", "gm_crown_ibp", 0.5, eps, "fig4", [f"n{n}"], {"gm_n": n}) for n in (1, 5)]
    return weights + sizes


def build_all(tmp_path) -> dict[str, object]:
    """Every figure builder of SSP, TRDNN and NODE on hand-made results; returns name -> returned frame."""
    return {
        "ssp_pgr_published": ssp.fig_pgr(growth_docs(tmp_path / "a", 6, 7), _outputs(tmp_path, "ssp_pgr_published"), ["note"]),
        "ssp_pgr_unpublished": ssp.fig_pgr(growth_docs(tmp_path / "b", 1, 2), _outputs(tmp_path, "ssp_pgr_unpublished"), ["note"]),
        "trdnn_landscape": trdnn.fig_landscape(landscape_docs(tmp_path / "c"), _outputs(tmp_path, "trdnn_landscape"), bootstrap=20),
        "node_fig1": node.fig1(fig1_docs(tmp_path / "d"), _outputs(tmp_path, "node_fig1")),
        "node_fig2": node.fig2(fig2_docs(tmp_path / "e"), _outputs(tmp_path, "node_fig2")),
        "node_fig3": node.fig3(fig3_docs(tmp_path / "f"), _outputs(tmp_path, "node_fig3"), {"mnist": 3.0, "cifar10": 3.0}, 16, 33.0),
        "gm_fig3_published": gm.fig3(gm_fig3_docs(tmp_path / "g", 0.5), _outputs(tmp_path, "gm_fig3_published"), {"mnist": 0.1}),
        "gm_fig3_unpublished": gm.fig3(gm_fig3_docs(tmp_path / "h", 0.1), _outputs(tmp_path, "gm_fig3_unpublished"), {"mnist": 0.05}),
        "gm_fig4": gm.fig4(gm_fig4_docs(tmp_path / "i"), _outputs(tmp_path, "gm_fig4")),
    }


# --- what is measured on a drawn figure ------------------------------------------------------------


def _renderer(fig):
    # save_figure closed the figure, which drops its canvas: draw it again on a fresh Agg canvas.
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _legends(fig):
    return list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]


def legend_overlaps(fig) -> list[str]:
    """Panels whose data area a legend covers."""
    r = _renderer(fig)
    return [ax.get_title() or "panel" for leg in _legends(fig) for ax in fig.axes if leg.get_window_extent(r).overlaps(ax.get_window_extent(r))]


def crowded_ticks(fig) -> list[str]:
    """Axes whose neighbouring tick labels touch."""
    r = _renderer(fig)
    bad = []
    for ax in fig.axes:
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            boxes = [t.get_window_extent(r) for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
            lo, hi = ("x0", "x1") if name == "x" else ("y0", "y1")
            boxes.sort(key=lambda b: getattr(b, lo))
            if any(getattr(a, hi) > getattr(b, lo) for a, b in zip(boxes, boxes[1:])):
                bad.append(f"{ax.get_title()}: {name}")
    return bad


def raw_labels(fig) -> list[str]:
    """Axis labels that are column names, not words."""
    return [lab for ax in fig.axes for lab in (ax.get_xlabel(), ax.get_ylabel()) if "_" in lab or "@" in lab]


def accuracy_not_in_percent(fig) -> list[str]:
    """Accuracy axes whose label lacks the unit or whose data are fractions."""
    bad = []
    for ax in fig.axes:
        lab = ax.get_ylabel()
        if "accuracy" in lab.lower():
            ys = [y for line in ax.get_lines() for y in np.asarray(line.get_ydata(), dtype=float)]
            ys += [y for c in ax.collections for y in np.asarray(c.get_offsets())[:, 1]] if ax.collections else []
            if "%" not in lab or (ys and max(ys) <= 1.0) or ax.get_ylim()[1] > 102:
                bad.append(lab)
    return bad


def published_labels(fig) -> list[str]:
    return [lab for ax in fig.axes for lab in ax.get_legend_handles_labels()[1] if lab.startswith("published")] + [
        t.get_text() for leg in fig.legends for t in leg.get_texts() if t.get_text().startswith("published")
    ]


def title_of(fig) -> str:
    return fig._suptitle.get_text() if fig._suptitle is not None else " ".join(ax.get_title() for ax in fig.axes)


# --- the tests ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    """Every figure drawn once for the module (drawing is the slow part): name -> figure."""
    tmp = tmp_path_factory.mktemp("figs")
    for d in "abcdefghi":
        (tmp / d).mkdir()
    figs = []
    save = R.save_figure
    mp = pytest.MonkeyPatch()
    mp.setattr(R, "save_figure", lambda fig, outputs: (figs.append(fig), save(fig, outputs)))
    try:
        names = list(build_all(tmp))
    finally:
        mp.undo()
    assert len(figs) == len(names)
    return dict(zip(names, figs))


NAMES = [
    "ssp_pgr_published",
    "ssp_pgr_unpublished",
    "trdnn_landscape",
    "node_fig1",
    "node_fig2",
    "node_fig3",
    "gm_fig3_published",
    "gm_fig3_unpublished",
    "gm_fig4",
]


@pytest.mark.parametrize("name", NAMES)
def test_no_legend_covers_the_data(figures, name):
    assert legend_overlaps(figures[name]) == []


@pytest.mark.parametrize("name", NAMES)
def test_tick_labels_do_not_touch(figures, name):
    assert crowded_ticks(figures[name]) == []


@pytest.mark.parametrize("name", NAMES)
def test_axes_are_labelled_in_words_and_accuracy_in_percent(figures, name):
    fig = figures[name]
    # Panels sharing an axis may leave the label to their neighbour; the figure must have both.
    assert any(ax.get_xlabel() for ax in fig.axes) and any(ax.get_ylabel() for ax in fig.axes)
    assert raw_labels(fig) == []
    assert accuracy_not_in_percent(fig) == []


@pytest.mark.parametrize("name", ["ssp_pgr_published", "node_fig2", "node_fig3", "gm_fig3_published"])
def test_published_values_are_drawn_where_the_paper_has_them(figures, name):
    assert published_labels(figures[name])
    assert R.NOTHING_PUBLISHED not in title_of(figures[name])


@pytest.mark.parametrize("name", ["ssp_pgr_unpublished", "trdnn_landscape", "node_fig1", "gm_fig3_unpublished", "gm_fig4"])
def test_a_figure_with_nothing_published_says_so(figures, name):
    assert not published_labels(figures[name])
    assert R.NOTHING_PUBLISHED in title_of(figures[name])


@pytest.mark.parametrize("name", ["gm_fig3_published", "gm_fig3_unpublished", "gm_fig4"])
def test_legend_entries_are_words(figures, name):
    """GM's curves are named by methods, bounds and variants: in words, never their identifiers."""
    texts = [t.get_text() for leg in _legends(figures[name]) for t in leg.get_texts()]
    assert texts and not [t for t in texts if "_" in t or "=" in t.split(" = ")[0]]


def test_gm_published_points_sit_at_table3_radii(figures):
    """Table 3's verified errors of MNIST at eps_train 0.5 (eps 0.2, 0.3, 0.4; three methods) in the
    verified panel, none in the total-error panel."""
    fig = figures["gm_fig3_published"]
    verified, total = (ax for ax in fig.axes[:2])
    xs = sorted(round(float(x), 6) for c in verified.containers for x in np.asarray(c.lines[0].get_xdata()))
    assert xs == sorted([0.2, 0.3, 0.4] * 3)
    assert not total.containers


def test_gm_figure_data_keep_their_columns(tmp_path):
    """The figures' CSV keeps the data's identifiers (the words are for the reader only)."""
    (tmp_path / "g").mkdir()
    df = gm.fig3(gm_fig3_docs(tmp_path / "g", 0.5), _outputs(tmp_path, "f3"), {"mnist": 0.1})
    assert {"method", "bound", "eps", "eps_train", "verified_err", "total_err", "panel"} <= set(df.columns)
    assert set(df["method"]) == {"ibp", "crown_ibp", "gm_crown_ibp"} and set(df["panel"]) == {"verified", "total"}
