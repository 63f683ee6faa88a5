"""Running a torchattacks attack inside this suite: seeded from our generator, without side effects.

torchattacks' attacks reseed the *global* torch RNG from their ``seed`` argument. Here the seed is
drawn from the evaluation's generator (so results are reproducible per evaluation seed) and the
attack runs inside ``torch.random.fork_rng``, so the caller's global RNG state is left as it was.
The result is projected onto the eps-ball and the current input box: torchattacks clips to [0, 1]
by itself, the projection makes the guarantee ours whatever the dataset's box.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import project


def seed_from(generator: torch.Generator | None) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def run_seeded(make: Callable[[int], Callable], x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
    """``make(seed)`` builds the torchattacks attack; run it on (x, y) and project the result."""
    seed = seed_from(generator)
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        x_adv = make(seed)(x, y)
    return project(x_adv.detach(), x, eps)
