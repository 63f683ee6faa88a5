"""Tests of the TRDNN sensitivity measure and objectives: log-volume, soundness by sampling, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robrepro import bounds
from robrepro.evaluations import sensitivity as S
from robrepro.models import build
from robrepro.objectives import Progress, build_objective

DT = torch.float64


def _tanh_mlp(seed=0, sizes=(4, 6, 3)):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(sizes[0], sizes[1]), nn.Tanh(), nn.Linear(sizes[1], sizes[2])).to(DT)


def test_log_volume_is_log_of_product_of_widths():
    model = _tanh_mlp()
    x = torch.randn(5, 4, dtype=DT)
    lo, hi = bounds.output_box(model, x, 0.3, domain=None)
    lv = S.log_volume(model, x, 0.3, domain=None)
    torch.testing.assert_close(lv, torch.log(torch.prod(hi - lo, 1)))
    torch.testing.assert_close(S.log_widths(model, x, 0.3, domain=None).sum(1), lv)
    s = S.summarize(lv)
    assert s["log_mean_volume"] == pytest.approx(math.log(torch.prod(hi - lo, 1).mean().item()))
    assert s["mean_log_volume"] == pytest.approx(lv.mean().item())


def test_hand_computed_linear_case():
    """A linear map z = W x: the exact box has widths 2 eps |W| 1, so log S = sum_k log(2 eps sum_j |W_kj|)."""
    net = nn.Sequential(nn.Linear(2, 2)).to(DT)
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.0]], dtype=DT))
        net[0].bias.zero_()
    lv = S.log_volume(net, torch.zeros(1, 2, dtype=DT), 0.1, domain=None)
    assert lv.item() == pytest.approx(math.log(2 * 0.1 * 3.0) + math.log(2 * 0.1 * 0.5))


@pytest.mark.parametrize("space", ["logits", "probs"])
def test_boxes_contain_1e5_sampled_outputs(space):
    model = _tanh_mlp(1)
    x = torch.randn(10, 4, dtype=DT)
    res = S.check_containment(model, x, 0.2, n_per_sample=10_000, space=space, domain=(None, None), seed=1)
    assert res["outputs"] == 100_000 and res["outside"] == 0


def test_containment_check_catches_a_too_small_box(monkeypatch):
    model = _tanh_mlp(2)
    x = torch.randn(2, 4, dtype=DT)
    real = bounds.output_box

    def shrunk(model, x, eps, **k):  # the box of a ten times smaller radius
        return real(model, x, eps / 10, **k)

    monkeypatch.setattr(bounds, "output_box", shrunk)
    assert S.check_containment(model, x, 0.2, n_per_sample=2000, domain=None)["outside"] > 0


def test_images_are_clipped_to_the_unit_box():
    """An image at 0 or 1 has half the box; the log-volume must be smaller than without clipping."""
    model = build("act_mlp", in_channels=1, image_size=4, num_classes=3, mean=[0.0], std=[1.0], hidden_sizes=[8]).to(DT)
    x = torch.zeros(1, 1, 4, 4, dtype=DT)
    clipped = S.log_volume(model, x, 0.1)
    free = S.log_volume(model, x, 0.1, domain=None)
    assert clipped.item() < free.item()


def _grad_check(obj, model, x, y):
    params = [p for p in model.parameters()]
    loss, _ = obj.loss(model, x, y, Progress(epoch=0, step=3, steps_per_epoch=10, epochs=1))
    grads = torch.autograd.grad(loss, params)
    h = 1e-6
    for p, g in zip(params[:2], grads[:2]):
        for idx in [(0, 0), (1, 2)] if p.dim() == 2 else [(0,), (2,)]:
            with torch.no_grad():
                p[idx] += h
            lp = obj.loss(model, x, y, Progress(0, 3, 10, 1))[0].item()
            with torch.no_grad():
                p[idx] -= 2 * h
            lm = obj.loss(model, x, y, Progress(0, 3, 10, 1))[0].item()
            with torch.no_grad():
                p[idx] += h
            assert (lp - lm) / (2 * h) == pytest.approx(g[idx].item(), rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("term,space", [("logvolume", "logits"), ("volume", "probs"), ("logvolume", "probs")])
def test_sensitivity_loss_gradient_by_finite_differences(term, space):
    model = _tanh_mlp(3)
    x, y = torch.randn(6, 4, dtype=DT), torch.tensor([0, 1, 2, 0, 1, 2])
    obj = build_objective(
        {"name": "sensitivity", "eps": 0.2, "lambda_s": 0.5, "sens_term": term, "sens_space": space, "weight_decay": 0.01, "input_domain": [None, None]}
    )
    _grad_check(obj, model, x, y)


def test_sensitivity_loss_terms():
    model = _tanh_mlp(4)
    x, y = torch.randn(6, 4, dtype=DT), torch.tensor([0, 1, 2, 0, 1, 2])
    prog = Progress(0, 0, 10, 1)
    plain = build_objective({"name": "sensitivity", "eps": 0.2, "lambda_s": 0.0, "input_domain": [None, None]}).loss(model, x, y, prog)[0]
    wd = build_objective({"name": "sensitivity", "eps": 0.2, "lambda_s": 0.0, "weight_decay": 0.1, "input_domain": [None, None]}).loss(model, x, y, prog)[0]
    full = build_objective({"name": "sensitivity", "eps": 0.2, "lambda_s": 0.3, "input_domain": [None, None]}).loss(model, x, y, prog)[0]
    l2 = sum((p * p).sum() for p in model.parameters())
    assert wd.item() == pytest.approx(plain.item() + 0.1 * l2.item())
    assert full.item() == pytest.approx(plain.item() + 0.3 * S.log_volume(model, x, 0.2, domain=None).mean().item())
    # The eps ramp: at the start of training the sensitivity term is off.
    ramp = build_objective({"name": "sensitivity", "eps": 0.2, "lambda_s": 0.3, "eps_ramp": 0.5, "input_domain": [None, None]})
    assert ramp.loss(model, x, y, prog)[0].item() == pytest.approx(plain.item())
    assert ramp.current_eps(Progress(0, 5, 10, 1)) == pytest.approx(0.2)


def test_jacobian_regulariser_matches_exact_frobenius_norm_on_average():
    model = _tanh_mlp(5)
    x, y = torch.randn(4, 4, dtype=DT), torch.tensor([0, 1, 2, 0])
    jac = torch.stack([torch.autograd.functional.jacobian(model, x[i : i + 1]).reshape(3, 4) for i in range(4)])
    exact = jac.pow(2).sum((1, 2)).mean().item()
    obj = build_objective({"name": "jacobian_reg", "lambda_j": 1.0, "n_proj": 4000})
    xr = x.clone().requires_grad_(True)
    est = obj.jacobian_sq_norm(model(xr), xr, Progress(0, 0, 1, 1)).item()
    assert est == pytest.approx(exact, rel=0.1)
    _grad_check(build_objective({"name": "jacobian_reg", "lambda_j": 0.5, "weight_decay": 0.01}), model, x, y)


def test_models_are_bounded_by_the_engine():
    for name, kw, shape in (
        ("act_mlp", {"hidden_sizes": [8, 8], "activation": "sigmoid"}, (2, 1, 28, 28)),
        ("act_cnn", {"channels": [2, 4], "hidden": 8}, (2, 1, 28, 28)),
    ):
        model = build(name, in_channels=1, image_size=28, num_classes=10, mean=[0.1307], std=[0.3081], **kw).to(DT)
        x = torch.rand(*shape, dtype=DT)
        res = S.check_containment(model, x, 0.05, n_per_sample=500, seed=0)
        assert res["outside"] == 0
        lb = bounds.margin_bounds(model, x, torch.tensor([1, 2]), 0.05, method="crown_ibp")
        assert lb.shape == (2, 9)
