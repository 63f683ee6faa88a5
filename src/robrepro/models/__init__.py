"""The model registry: name -> constructor, shared by all four papers.

Constructors take the dataset's geometry (``in_channels``, ``image_size``, ``num_classes``) plus
their own keyword arguments from the config, and return a module that maps images in [0, 1] to
logits. ``build`` prepends the dataset's :class:`Normalize` layer, so every model normalises
internally. Families register themselves on import with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .layers import Normalize

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    """Decorator: make ``fn(in_channels, image_size, num_classes, **kwargs)`` buildable as ``name``."""

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def available() -> list[str]:
    _load_families()
    return sorted(_REGISTRY)


def build(name: str, *, in_channels: int, image_size: int, num_classes: int, mean, std, **kwargs) -> nn.Module:
    """Build model ``name`` for a dataset; the result is ``Sequential(Normalize, body)`` flattened."""
    _load_families()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    body = _REGISTRY[name](in_channels=in_channels, image_size=image_size, num_classes=num_classes, **kwargs)
    layers = [Normalize(mean, std)]
    # Sequential bodies are spliced in so the bound engine sees one flat Sequential.
    layers += list(body) if isinstance(body, nn.Sequential) else [body]
    return nn.Sequential(*layers)


def _load_families() -> None:
    # Every module of this package registers its names on import (robrepro.registry).
    from ..registry import import_submodules

    import_submodules(__name__)


def registry() -> dict[str, Callable[..., nn.Module]]:
    """Name -> constructor of every registered model (a copy)."""
    _load_families()
    return dict(_REGISTRY)
