"""TRADES against a hand computation; YOPO re-attacks only the first layer; PreAct-ResNet-18."""

import math

import pytest
import torch
from torch import nn

from robrepro import models
from robrepro.objectives import Progress, build_objective
from robrepro.objectives.trades import trades_example, trades_kl
from robrepro.objectives.yopo import first_layer

P = Progress(0, 0, 1, 1)


def test_trades_kl_matches_a_hand_computation():
    a = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])  # adversarial logits
    c = torch.tensor([[1.0, 1.0, 0.0], [3.0, 0.0, 0.0]])  # clean logits

    def softmax(z):
        e = [math.exp(v) for v in z]
        return [v / sum(e) for v in e]

    want = 0.0
    for za, zc in zip(a.tolist(), c.tolist()):
        p, q = softmax(zc), softmax(za)
        want += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    assert trades_kl(a, c).item() == pytest.approx(want / 2, rel=1e-6)


def test_trades_loss_is_natural_ce_plus_beta_kl_at_the_inner_maximiser():
    torch.manual_seed(0)
    m = nn.Sequential(models.Normalize([0.5], [0.5]), nn.Flatten(), nn.Linear(16, 3)).eval()
    x, y = torch.rand(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1])
    obj = build_objective({"name": "trades", "eps": 0.1, "steps": 3, "alpha": 0.05, "beta": 2.5})
    torch.manual_seed(1)
    loss, metrics = obj.loss(m, x, y, P)
    torch.manual_seed(1)
    xa = trades_example(m, x, 0.1, steps=3, alpha=0.05)
    assert (xa - x).abs().max() <= 0.1 + 1e-6 and xa.min() >= 0 and xa.max() <= 1
    with torch.no_grad():
        zc, za = m(x), m(xa)
    # Hand computation of CE + beta * KL(p_clean || p_adv), batch mean.
    pc, pa = zc.softmax(1), za.softmax(1)
    ce = -pc[torch.arange(5), y].log().mean()
    kl = (pc * (pc.log() - pa.log())).sum(1).mean()
    assert loss.item() == pytest.approx((ce + 2.5 * kl).item(), rel=1e-5)
    assert metrics["kl"] == pytest.approx(kl.item(), rel=1e-5) and kl > 0
    # The inner maximisation really increases the KL over the random start.
    torch.manual_seed(1)
    start = trades_example(m, x, 0.1, steps=0, alpha=0.05)
    assert trades_kl(za, zc) > trades_kl(m(start), zc)


def _preact():
    torch.manual_seed(0)
    return models.build("preact_resnet18", in_channels=3, image_size=8, num_classes=10, mean=[0.5] * 3, std=[0.25] * 3, width=4)


def test_preact_resnet18_is_registered_with_18_weight_layers():
    m = _preact()
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d) and mod.kernel_size == (3, 3)]
    linears = [mod for mod in m.modules() if isinstance(mod, nn.Linear)]
    assert len(convs) + len(linears) == 18
    assert m(torch.rand(2, 3, 8, 8)).shape == (2, 10)
    pre, first = first_layer(m)
    assert first is m[1].stem and isinstance(pre[0], models.Normalize)


class _Spy:
    """Counts forward calls of modules and records the inputs of the first layer."""

    def __init__(self, first, later):
        self.first_inputs, self.later_calls = [], 0
        first.register_forward_hook(lambda _m, inp, _o: self.first_inputs.append(inp[0].detach().clone()))
        later.register_forward_hook(lambda *_: setattr(self, "later_calls", self.later_calls + 1))


def test_yopo_inner_steps_change_only_the_first_layers_input():
    m = _preact()
    m.train()
    pre, first = first_layer(m)
    spy = _Spy(first, m[1].head)
    x, y = torch.rand(6, 3, 8, 8), torch.randint(0, 10, (6,))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    eps, outer, inner = 8 / 255, 2, 3
    obj = build_objective({"name": "yopo", "eps": eps, "sigma": 2 / 255, "outer": outer, "inner": inner})
    assert obj.owns_step

    class NoStep(torch.optim.SGD):
        """Records the gradients the objective hands to the optimiser, then steps with lr 0."""

        def step(self, closure=None):
            self.grads = [p.grad.clone() if p.grad is not None else None for p in m.parameters()]

    opt = NoStep(m.parameters(), lr=0.0)
    metrics = obj.train_step(m, opt, x, y, P)
    assert set(metrics) >= {"loss", "adv_acc"}
    # The rest of the network runs once per outer round: the inner steps never reach it.
    assert spy.later_calls == outer
    # First layer: one call per outer round, one per inner step, one for its weight gradient.
    assert len(spy.first_inputs) == outer * (1 + inner + 1)
    etas = [pre_in * m[0].std + m[0].mean - x for pre_in in spy.first_inputs]
    for e in etas:
        assert e.abs().max() <= eps + 1e-5  # the perturbation stays in the eps-ball
    # The inner steps move the perturbation (the rounds start from where the inner steps ended).
    round_starts = etas[:: 1 + inner + 1]
    assert not torch.allclose(round_starts[0], round_starts[1])
    # Parameters untouched by the inner steps (only the optimiser may change them); all got gradients.
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items() if "running" not in k and "num_batches" not in k)
    assert all(g is not None for g in opt.grads)


def test_yopo_first_layer_gradient_is_the_hamiltonian_gradient():
    """With inner = 0 the Hamiltonian gradient of the first layer equals plain backprop at x + eta."""
    m = _preact().eval()  # eval: BN in inference mode so repeated passes agree
    x, y = torch.rand(4, 3, 8, 8), torch.randint(0, 10, (4,))
    obj = build_objective({"name": "yopo", "eps": 0.0, "sigma": 0.0, "outer": 1, "inner": 0})

    class Keep(torch.optim.SGD):
        def step(self, closure=None):
            self.grads = [p.grad.clone() for p in m.parameters()]

    opt = Keep(m.parameters(), lr=0.0)
    obj.train_step(m, opt, x, y, P)
    m.zero_grad()
    nn.functional.cross_entropy(m(x), y).backward()
    for got, p in zip(opt.grads, m.parameters()):
        assert torch.allclose(got, p.grad, atol=1e-6)


def test_yopo_refuses_a_model_whose_first_conv_does_not_see_the_input():
    m = nn.Sequential(models.Normalize([0.5], [0.5]), nn.Flatten(), nn.Unflatten(1, (1, 4, 4)), nn.Tanh(), nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    obj = build_objective({"name": "yopo", "outer": 1, "inner": 1})
    with pytest.raises(ValueError, match="first Conv2d"):
        obj.train_step(m, torch.optim.SGD(m.parameters(), lr=0.1), torch.rand(3, 1, 4, 4), torch.tensor([0, 1, 0]), P)
