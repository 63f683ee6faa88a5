"""DI2-FGSM (Xie et al. 2019, "Improving transferability of adversarial examples with input diversity").

Iterative FGSM in which each gradient is taken at a randomly transformed input T(x_adv; p): with
probability ``diversity_prob`` the batch is resized to a random side r and zero-padded at a random
offset back to a fixed side, otherwise it is left unchanged. The update is

    g = momentum * g_prev + grad / mean|grad|        (momentum = 0: DI2-FGSM, 1: M-DI2-FGSM)
    x <- project_{B_eps(x0) and input box}(x + alpha * sign(g))

The paper works at 299 px and enlarges (r in [299, 330), padded to 330). On 28/32 px images the
input must keep its size for the classifier, so by default the image is shrunk instead
(``resize_rate`` < 1: r in [floor(resize_rate * s), s), padded back to s), torchattacks' convention.
One transform per step for the whole batch, as in the official code. ``mode`` is the resize
interpolation: ``nearest`` as in the paper, ``bilinear`` as torchattacks.

Guarantees: every returned point lies in the eps-ball around x and in the input box. With
``early_stop`` (the default, as for evaluation) a point keeps the first iterate that fools the model
on the untransformed input, so extra steps can only make the attack stronger.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import project, register_attack


def diverse_input(x: torch.Tensor, generator: torch.Generator | None, *, resize_rate: float, diversity_prob: float, mode: str) -> torch.Tensor:
    """T(x; p): a random resize-and-pad of the whole batch with probability ``diversity_prob``."""
    if float(torch.rand(1, generator=generator)) >= diversity_prob:
        return x
    side = x.shape[-1]
    small, big = sorted((side, int(side * resize_rate)))
    if big == small:
        return x
    r = int(torch.randint(small, big, (1,), generator=generator))
    out_side = big
    kw = {} if mode == "nearest" else {"align_corners": False}
    scaled = F.interpolate(x, size=(r, r), mode=mode, **kw)
    rem = out_side - r
    # Offsets in [0, rem), as the official code draws them (rem >= 1 since r < out_side).
    top = int(torch.randint(0, rem, (1,), generator=generator))
    left = int(torch.randint(0, rem, (1,), generator=generator))
    padded = F.pad(scaled, (left, rem - left, top, rem - top), value=0.0)
    if out_side != side:
        # Enlarging (resize_rate > 1) changes the side; models here take a fixed size, so scale back.
        padded = F.interpolate(padded, size=(side, side), mode=mode, **kw)
    return padded


@register_attack("di2fgsm", threat="linf", access="white-box")
def di2fgsm(
    model,
    x,
    y,
    eps,
    generator=None,
    *,
    steps: int = 10,
    alpha: float | None = None,
    alpha_rel: float = 0.1,
    diversity_prob: float = 0.5,
    resize_rate: float = 0.9,
    momentum: float = 0.0,
    mode: str = "nearest",
    early_stop: bool = True,
):
    """DI2-FGSM with step ``alpha`` (absolute) or ``alpha_rel * eps``; see the module docstring."""
    a = alpha if alpha is not None else alpha_rel * eps
    xa, g_prev = x.clone(), torch.zeros_like(x)
    done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for _ in range(steps):
        xt = xa.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(diverse_input(xt, generator, resize_rate=resize_rate, diversity_prob=diversity_prob, mode=mode))
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), xt)
        grad = grad / grad.abs().mean(dim=tuple(range(1, grad.dim())), keepdim=True).clamp_min(1e-12)
        g = momentum * g_prev + grad
        g_prev = g
        step = project(xa + a * g.sign(), x, eps).detach()
        if early_stop:
            with torch.no_grad():
                done |= model(xa).argmax(1) != y
            # Points already fooled keep their adversarial iterate.
            step[done] = xa[done]
        xa = step
    return xa.detach()
