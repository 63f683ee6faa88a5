"""TRDNN sensitivity outside the bound engine, against hand-computed values: the ``space`` argument of
the evaluation (logits or probabilities) and the sensitivity loss's modes (log-volume or volume, each
space, the eps ramp). Gradient checks pass for any function; these pin the function itself."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robrepro.evaluations import sensitivity as S
from robrepro.objectives import Progress, build_objective

DT = torch.float64
EPS = 0.1


def _sig(t):
    return 1 / (1 + math.exp(-t))


def _two_logit_net():
    """z = (2 x, -x) on one input: at x = 0.3, eps = 0.1 the logit box is exact, z1 in [0.4, 0.8],
    z2 in [-0.4, -0.2]."""
    net = nn.Sequential(nn.Linear(1, 2)).to(DT)
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[2.0], [-1.0]], dtype=DT))
        net[0].bias.zero_()
    return net, torch.tensor([[0.3]], dtype=DT)


# Logits: widths 0.4 and 0.2. Probabilities (the softmax box of that logit box):
# p1 in [sig(l1 - u2), sig(u1 - l2)] = [sig(0.6), sig(1.2)], p2 = the mirror image, same width.
LOG_S = {"logits": math.log(0.4) + math.log(0.2), "probs": 2 * math.log(_sig(1.2) - _sig(0.6))}


@pytest.mark.parametrize("space", ["logits", "probs"])
def test_sensitivity_evaluation_uses_its_space(space):
    # The evaluation takes images or float32 features (to_input), so the net is float32 here.
    net, x = _two_logit_net()
    out = S.sensitivity(net.float(), x.float(), [EPS], space=space, domain=(None, None))
    assert out["space"] == space
    (row,) = out["per_eps"]
    assert row["log_volume"][0] == pytest.approx(LOG_S[space], rel=1e-5)
    assert row["mean_log_volume"] == pytest.approx(LOG_S[space], rel=1e-5)


def test_sensitivity_evaluation_summaries_by_hand():
    """Two samples: the mean of log S, and log of the mean volume (not the mean of log S)."""
    net, _ = _two_logit_net()
    x2 = torch.tensor([[0.3], [0.3]])
    out = S.sensitivity(net.float(), x2, [EPS, 2 * EPS], space="logits", domain=(None, None), batch_size=1)
    # The box widths scale with eps: at 2 eps, log S = log(0.8) + log(0.4).
    assert [r["mean_log_volume"] for r in out["per_eps"]] == pytest.approx([LOG_S["logits"], math.log(0.8 * 0.4)], rel=1e-5)
    lv = torch.tensor([math.log(1.0), math.log(3.0)], dtype=DT)
    s = S.summarize(lv)
    assert s["mean_log_volume"] == pytest.approx(math.log(3.0) / 2)
    assert s["log_mean_volume"] == pytest.approx(math.log(2.0))


# A second sample at x = 0.05, where the input domain [0, 1] clips the box to [0, 0.15]: z1 in
# [0, 0.3], z2 in [-0.15, 0]; p1 in [sig(0), sig(0.45)]. Two different volumes, so that the mean of
# the volumes and the volume of the mean log differ.
LOG_S_CLIPPED = {"logits": math.log(0.3) + math.log(0.15), "probs": 2 * math.log(_sig(0.45) - _sig(0.0))}


@pytest.mark.parametrize("term", ["logvolume", "volume"])
@pytest.mark.parametrize("space", ["logits", "probs"])
def test_sensitivity_loss_modes_by_value(term, space):
    net, _ = _two_logit_net()
    x, y = torch.tensor([[0.3], [0.05]], dtype=DT), torch.tensor([1, 0])
    obj = build_objective({"name": "sensitivity", "eps": EPS, "lambda_s": 0.5, "sens_term": term, "sens_space": space, "input_domain": [0.0, 1.0]})
    loss, metrics = obj.loss(net, x, y, Progress(0, 0, 10, 1))
    ce = F.cross_entropy(torch.tensor([[0.6, -0.3], [0.1, -0.05]], dtype=DT), y).item()
    lv = [LOG_S[space], LOG_S_CLIPPED[space]]
    penalty = sum(lv) / 2 if term == "logvolume" else sum(map(math.exp, lv)) / 2
    assert loss.item() == pytest.approx(ce + 0.5 * penalty, rel=1e-9)
    assert metrics["sens_term"] == pytest.approx(penalty, rel=1e-9)


def test_sensitivity_loss_eps_ramps_linearly():
    obj = build_objective({"name": "sensitivity", "eps": 0.2, "lambda_s": 0.3, "eps_ramp": 0.5, "input_domain": [None, None]})
    # 100 steps in all: the ramp ends at step 50; at step 10 (fraction 0.1) eps is a fifth of 0.2.
    assert obj.current_eps(Progress(0, 10, 100, 1)) == pytest.approx(0.04)
    assert obj.current_eps(Progress(0, 25, 100, 1)) == pytest.approx(0.1)
    assert obj.current_eps(Progress(0, 80, 100, 1)) == pytest.approx(0.2)
    # The ramped eps is the one the box is taken at: its log-volume at eps/2 is log(0.2 * 0.1).
    net, x = _two_logit_net()
    half = build_objective({"name": "sensitivity", "eps": 2 * EPS, "lambda_s": 1.0, "eps_ramp": 0.5, "input_domain": [None, None]})
    _, metrics = half.loss(net, x, torch.tensor([0]), Progress(0, 25, 100, 1))
    assert metrics["eps"] == pytest.approx(EPS) and metrics["sens_term"] == pytest.approx(LOG_S["logits"])
