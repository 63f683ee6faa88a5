"""Published numbers are joined to reproduced ones by one generic function; within_tol is exact."""

import pandas as pd
import pytest

from robrepro import tables_figures as R


def test_every_published_file_is_in_the_long_format_and_its_keys_are_unique():
    from robrepro import papers

    for name in papers.registry():
        pub = R.published(name)
        assert list(pub.columns[:9]) == ["paper", "item", "keys", "metric", "value", "unit", "tolerance", "source", "note"]
        assert (pub["paper"] == name).all() and (pub["tolerance"] >= 0).all()
        assert not pub.duplicated(["item", "keys", "metric"]).any()


def test_join_matches_cells_by_keys_and_compares_with_the_tolerance():
    df = pd.DataFrame(
        [
            {"dataset": "mnist", "model": "resnet50", "attack": "fgsm", "column": 1, "reproduced": 25.20 + 5.0},  # at the tolerance
            {"dataset": "mnist", "model": "resnet50", "attack": "fgsm", "column": 2, "reproduced": 10.95 - 5.01},  # just outside
            {"dataset": "mnist", "model": "resnet50", "attack": "fgsm", "column": 3, "reproduced": 9.80},  # exact
            {"dataset": "mnist", "model": "nosuch", "attack": "fgsm", "column": 1, "reproduced": 1.0},  # no published value
        ]
    )
    out = R.join_published(df, "node", "table1", "robust_acc", "reproduced")
    assert out["published"].tolist()[:3] == [25.20, 10.95, 9.80] and pd.isna(out["published"].iloc[3])
    assert out["diff"].tolist()[:3] == [5.0, -5.01, 0.0]
    assert out["within_tol"].tolist() == [True, False, True, None]


def test_synthetic_rows_get_no_verdict():
    df = pd.DataFrame([{"dataset": "mnist", "model": "odenet", "reproduced": 99.05, "data": d} for d in ("real", "synthetic")])
    out = R.join_published(df, "node", "clean", "clean_acc", "reproduced")
    assert out["within_tol"].tolist() == [True, None] and out["diff"].tolist() == [0.0, 0.0]


def test_keys_match_as_numbers_when_they_are_numbers():
    df = pd.DataFrame([{"dataset": "cifar10", "eps_train": str(17.6 / 255), "eps_eval": "0.0039215686", "method": "ibp", "std_err": 71.77}])
    out = R.join_published(df, "gm", "table3", "std_err", "std_err", prefix="std_err_")
    assert out["std_err_published"].iloc[0] == 71.77 and out["std_err_within_tol"].iloc[0] is True
    assert R.same_value("8/255", 8 / 255) and not R.same_value("8/255", 7 / 255) and R.same_value("mnist", "mnist")


def test_an_ambiguous_published_file_is_an_error(monkeypatch):
    pub = R.published("node")
    monkeypatch.setattr(R, "published", lambda paper: pd.concat([pub, pub]))
    with pytest.raises(ValueError, match="match one row"):
        R.join_published(pd.DataFrame([{"dataset": "mnist", "model": "odenet", "reproduced": 99.0}]), "node", "clean", "clean_acc", "reproduced")
