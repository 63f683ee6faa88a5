"""Square Attack (Andriushchenko et al. 2020), l-inf, score-based, through torchattacks' implementation.

A gradient-free random search: each query changes a random square window of the perturbation to
+-eps per channel and keeps the change if the margin loss decreases. It uses only the model's scores,
so it is unaffected by masked or noisy gradients: the standard black-box check of a white-box
robustness claim. Budget: ``n_queries`` per restart (AutoAttack's default 5 000), ``p_init`` the
initial fraction of pixels changed (0.8, the paper's l-inf value).
Guarantees: points in the eps-ball around x and in the input box.
"""

from __future__ import annotations

from . import register_attack
from ._torchattacks import run_seeded


@register_attack("square", threat="linf", access="black-box")
def square(model, x, y, eps, generator=None, *, n_queries: int = 5000, n_restarts: int = 1, p_init: float = 0.8, loss: str = "margin"):
    import torchattacks

    def make(seed):
        return torchattacks.Square(
            model, norm="Linf", eps=eps, n_queries=n_queries, n_restarts=n_restarts, p_init=p_init, loss=loss, resc_schedule=True, seed=seed
        )

    return run_seeded(make, x, y, eps, generator)
