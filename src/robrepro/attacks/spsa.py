"""SPSA attack (Uesato et al. 2018), l-inf, score-based.

Gradient-free: the gradient of the margin loss ``z_y - max_{j != y} z_j`` is estimated from
``n_samples`` pairs of symmetric finite differences along random Rademacher directions,

    g ~ mean_k [(L(x + delta v_k) - L(x - delta v_k)) / (2 delta)] v_k,

and the perturbation is updated with Adam (learning rate ``lr``) and projected onto the eps-ball and
the input box. Defaults are the paper's (delta 0.01, lr 0.01, 128 samples per step). Adam moves each
pixel by about ``lr`` per step, so an absolute lr tuned at eps 8/255 cannot cross a larger ball in
a short budget: ``lr_rel`` sets ``lr = lr_rel * eps`` instead (the paper's 0.01 at 8/255 is 0.32). A point stops
as soon as the model misclassifies it (the first adversarial iterate is kept).
Queries per point and step: ``2 * n_samples`` plus one. Randomness only from ``generator``.
"""

from __future__ import annotations

import torch

from . import project, register_attack


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - max_{j != y} z_j per row: negative when the point is misclassified."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return true - other


@register_attack("spsa", threat="linf", access="black-box")
@torch.no_grad()
def spsa(
    model,
    x,
    y,
    eps,
    generator=None,
    *,
    steps: int = 100,
    n_samples: int = 128,
    delta: float = 0.01,
    lr: float = 0.01,
    lr_rel: float | None = None,
    max_batch: int = 1024,
):
    if lr_rel is not None:
        lr = lr_rel * float(eps)
    xa = x.clone()
    m = torch.zeros_like(x)
    v = torch.zeros_like(x)
    b1, b2, tiny = 0.9, 0.999, 1e-8
    active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    for t in range(1, steps + 1):
        active &= model(xa).argmax(1) == y
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        xs, ys, shape = xa[idx], y[idx], x.shape[1:]
        grad = torch.zeros_like(xs)
        # Directions in chunks so that one forward pass holds at most ``max_batch`` points.
        chunk = max(1, max_batch // (2 * idx.numel()))
        for j in range(0, n_samples, chunk):
            k = min(chunk, n_samples - j)
            d = torch.randint(0, 2, (idx.numel(), k, *shape), generator=generator).to(x.device, x.dtype) * 2 - 1
            pts = torch.cat([xs[:, None] + delta * d, xs[:, None] - delta * d]).reshape(-1, *shape)
            loss = margin(model(pts), ys.repeat_interleave(k).repeat(2)).reshape(2, idx.numel(), k)
            coef = (loss[0] - loss[1]) / (2 * delta)
            grad += (coef.reshape(*coef.shape, *[1] * len(shape)) * d).sum(1)
        grad /= n_samples
        # Adam on the perturbation, descending the margin.
        m[idx] = b1 * m[idx] + (1 - b1) * grad
        v[idx] = b2 * v[idx] + (1 - b2) * grad * grad
        step = lr * (m[idx] / (1 - b1**t)) / ((v[idx] / (1 - b2**t)).sqrt() + tiny)
        xa[idx] = project(xa[idx] - step, x[idx], eps)
    return xa
