"""Certified evaluation: verified error bounds the attack error (an unsound bound: tests/test_certified.py)."""

import pytest
from conftest import tiny_certifiable_net

from robrepro.attacks import make_attack
from robrepro.evaluations import certified as evaluate


def test_verified_error_is_an_upper_bound_of_attack_error():
    m, x, y = tiny_certifiable_net()
    res = evaluate.certified_errors(
        m, x, y, [0.0, 0.005, 0.02, 0.1], ["ibp", "crown_ibp"], make_attack({"name": "pgd", "steps": 10, "early_stop": True}), batch_size=16
    )
    prev = -1
    for e in res["per_eps"]:
        for b, v in e["verified_err"].items():
            assert v >= e["attack_err"] - 1e-9, (b, e)
        assert e["verified_err"]["ibp"] >= prev - 1e-9  # IBP boxes grow with eps
        prev = e["verified_err"]["ibp"]
    assert res["per_eps"][0]["verified_err"]["ibp"] == pytest.approx(res["std_err"])
    assert 0 < res["per_eps"][2]["verified_err"]["ibp"] < 1  # neither trivial nor hopeless here
