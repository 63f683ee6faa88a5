"""Bound engine: IBP, CROWN-IBP and CROWN for flat ``nn.Sequential`` ReLU networks.

The networks are those of the model registry: ``Sequential(Normalize, ...)`` built from
:class:`~robrepro.models.layers.Normalize`, ``nn.Linear``, ``nn.Conv2d``, ``nn.ReLU`` and
``nn.Flatten`` (nested Sequentials are spliced in, ``nn.Identity`` is skipped). Inputs are images in
[0, 1]; the perturbation set is the l-inf box ``[max(x - eps, 0), min(x + eps, 1)]`` in pixel space,
and ``Normalize`` is treated as an ordinary affine layer, so no eps/std bookkeeping is needed.

Three bounds on a linear specification ``C z`` of the logits ``z`` (catalog section 5.2):

* **IBP** -- one forward interval pass in center/radius form. With ``C`` given, ``C`` is folded into
  the last linear layer (``W~ = C W``, ``b~ = C b``) as in CROWN-IBP / auto_LiRPA, which is tighter
  than bounding the logits first.
* **CROWN-IBP** -- intermediate (pre-ReLU) bounds from IBP, then one CROWN backward pass from the
  specification to the input with the adaptive lower slope (``alpha = 1 if u > -l else 0``) and the
  upper slope ``u / (u - l)``.
* **CROWN** -- every intermediate bound also by a CROWN backward pass (costly: one pass per layer
  with one specification row per neuron); meant for evaluation on few points.

Everything is differentiable and batched. ``eps`` may differ per sample, so several radii are
bounded in ONE pass by stacking the boxes along the batch dimension (:func:`stack_radii`,
:func:`margin_bounds_radii`); nothing here loops over radii in Python.

Shapes: ``B`` batch, ``M`` specification rows (``K - 1`` margins for ``K`` classes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .models.layers import Normalize

__all__ = [
    "input_box",
    "margin_spec",
    "other_classes",
    "ibp",
    "crown_ibp",
    "crown",
    "linear_bounds",
    "concretize",
    "intermediate_bounds",
    "margin_bounds",
    "margin_bounds_radii",
    "stack_radii",
    "verified",
    "verified_radii",
    "network_layers",
    "METHODS",
]

METHODS = ("ibp", "crown_ibp", "crown")

_DENSE = (nn.Linear, nn.Conv2d)  # affine layers that mix coordinates
_SUPPORTED = (Normalize, nn.Linear, nn.Conv2d, nn.ReLU, nn.Flatten)


# ----------------------------------------------------------------------------------------------
# Inputs and specifications
# ----------------------------------------------------------------------------------------------


def input_box(x: torch.Tensor, eps, clip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The l-inf box around ``x``: ``(max(x - eps, 0), min(x + eps, 1))``.

    ``eps`` is a float or a tensor of shape ``(B,)`` (one radius per sample, which is how several
    radii share one bound pass). ``clip=False`` drops the [0, 1] clipping (the CROWN-IBP CIFAR
    configs without "bounded input").
    """
    eps = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if eps.dim() == 1:
        if eps.shape[0] != x.shape[0]:
            raise ValueError(f"per-sample eps has {eps.shape[0]} entries for a batch of {x.shape[0]}")
        eps = eps.view(-1, *([1] * (x.dim() - 1)))
    elif eps.dim() != 0:
        raise ValueError("eps must be a float or a tensor of shape (B,)")
    lo, hi = x - eps, x + eps
    if clip:
        lo, hi = lo.clamp(0.0, 1.0), hi.clamp(0.0, 1.0)
    return lo, hi


def other_classes(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Indices ``j != y`` in increasing order, shape ``(B, K-1)``: the column order of the margins."""
    ar = torch.arange(num_classes, device=y.device).expand(y.shape[0], num_classes)
    return ar[ar != y.unsqueeze(1)].view(y.shape[0], num_classes - 1)


def margin_spec(y: torch.Tensor, num_classes: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Specification ``C`` of shape ``(B, K-1, K)`` with rows ``e_y - e_j`` for ``j != y``.

    ``C z`` are the margins ``z_y - z_j``; the point is verified iff all their lower bounds are > 0.
    """
    eye = torch.eye(num_classes, dtype=dtype or torch.get_default_dtype(), device=y.device)
    return eye[y].unsqueeze(1) - eye[other_classes(y, num_classes)]


def stack_radii(x: torch.Tensor, y: torch.Tensor, radii) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Repeat a batch once per radius so that N radii are bounded in one batched pass.

    Returns ``(x_rep, y_rep, eps_rep)`` of batch size ``N * B``, radius-major: rows
    ``n*B .. (n+1)*B - 1`` carry radius ``radii[n]``. Reshape results with ``.view(N, B, ...)``.
    """
    radii = torch.as_tensor(radii, dtype=x.dtype, device=x.device).flatten()
    n = radii.shape[0]
    x_rep = x.repeat(n, *([1] * (x.dim() - 1)))
    return x_rep, y.repeat(n), radii.repeat_interleave(x.shape[0])


# ----------------------------------------------------------------------------------------------
# Network structure
# ----------------------------------------------------------------------------------------------


def network_layers(model: nn.Module) -> list[nn.Module]:
    """The model as a flat list of supported layers (nested Sequentials spliced, Identity dropped)."""
    mods = list(model.children()) if isinstance(model, nn.Sequential) else [model]
    out: list[nn.Module] = []
    for m in mods:
        if isinstance(m, nn.Sequential):
            out += network_layers(m)
        elif isinstance(m, nn.Identity):
            continue
        elif isinstance(m, _SUPPORTED):
            if isinstance(m, nn.Flatten) and (m.start_dim != 1 or m.end_dim != -1):
                raise NotImplementedError("only Flatten(start_dim=1, end_dim=-1) is supported")
            if isinstance(m, nn.Conv2d) and (m.padding_mode != "zeros" or isinstance(m.padding, str)):
                raise NotImplementedError("Conv2d needs numeric zero padding")
            out.append(m)
        else:
            raise NotImplementedError(f"bound engine does not support layer {type(m).__name__}")
    if not out:
        raise ValueError("empty network")
    return out


def _num_outputs(layers: list[nn.Module]) -> int:
    for layer in reversed(layers):
        if isinstance(layer, nn.Linear):
            return layer.out_features
    raise ValueError("cannot infer the number of classes: the network has no Linear layer")


def _ibp_exact_prefix(layers: list[nn.Module], end: int) -> bool:
    """True if IBP is exact for the output of ``layers[:end]``.

    That holds for a chain with no ReLU and at most one coordinate-mixing affine layer
    (Normalize and Flatten map boxes to boxes exactly; one affine map of a box is bounded exactly
    by ``|W| r``). Full CROWN uses it to skip the huge first-layer backward passes.
    """
    prefix = layers[:end]
    return not any(isinstance(m, nn.ReLU) for m in prefix) and sum(isinstance(m, _DENSE) for m in prefix) <= 1


# ----------------------------------------------------------------------------------------------
# IBP (center/radius form)
# ----------------------------------------------------------------------------------------------


@dataclass
class _Trace:
    """What a forward interval pass records for the backward passes."""

    shapes: list[torch.Size] = field(default_factory=list)  # input shape (no batch dim) of each layer
    pre: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # ReLU idx -> (l, u)


def _ibp_layer(layer: nn.Module, c: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Propagate a box (center ``c``, radius ``r``) through one layer."""
    if isinstance(layer, Normalize):
        # Per-channel affine; |1/std| keeps the radius non-negative even for a negative std.
        return (c - layer.mean) / layer.std, r / layer.std.abs()
    if isinstance(layer, nn.Linear):
        return F.linear(c, layer.weight, layer.bias), F.linear(r, layer.weight.abs())
    if isinstance(layer, nn.Conv2d):
        kw = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
        return F.conv2d(c, layer.weight, layer.bias, **kw), F.conv2d(r, layer.weight.abs(), None, **kw)
    if isinstance(layer, nn.Flatten):
        return c.flatten(1), r.flatten(1)
    if isinstance(layer, nn.ReLU):
        lo, hi = F.relu(c - r), F.relu(c + r)
        return (hi + lo) / 2, (hi - lo) / 2
    raise NotImplementedError(type(layer).__name__)


def _interval_pass(layers, lo, hi, C=None) -> tuple[torch.Tensor, torch.Tensor, _Trace]:
    """Forward IBP over the whole network; returns (lb, ub) of ``z`` (or ``C z``) and the trace."""
    trace = _Trace()
    c, r = (hi + lo) / 2, (hi - lo) / 2
    last = len(layers) - 1
    for i, layer in enumerate(layers):
        trace.shapes.append(c.shape[1:])
        if C is not None and i == last and isinstance(layer, nn.Linear):
            # Fold the specification into the last layer: C z = (C W) h + C b, bounded exactly
            # over the box of h, which is tighter than bounding z first and then C z.
            W = torch.matmul(C, layer.weight)  # (B, M, in)
            c = torch.einsum("bmn,bn->bm", W, c)
            if layer.bias is not None:
                c = c + torch.matmul(C, layer.bias)
            r = torch.einsum("bmn,bn->bm", W.abs(), r)
            return c - r, c + r, trace
        if isinstance(layer, nn.ReLU):
            l, u = c - r, c + r
            trace.pre[i] = (l, u)
            lo_a, hi_a = F.relu(l), F.relu(u)  # same as _ibp_layer, reusing l and u
            c, r = (hi_a + lo_a) / 2, (hi_a - lo_a) / 2
            continue
        c, r = _ibp_layer(layer, c, r)
    if C is not None:  # the network does not end in a Linear layer: plain interval arithmetic
        c, r = torch.einsum("bmk,bk->bm", C, c.flatten(1)), torch.einsum("bmk,bk->bm", C.abs(), r.flatten(1))
    return c - r, c + r, trace


def ibp(model: nn.Module, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor | None = None):
    """IBP bounds ``(lb, ub)`` of the output over the box ``[lo, hi]``, or of ``C z`` if ``C`` is given."""
    lb, ub, _ = _interval_pass(network_layers(model), lo, hi, C)
    return lb, ub


# ----------------------------------------------------------------------------------------------
# CROWN backward pass
# ----------------------------------------------------------------------------------------------


def _relu_relaxation(l: torch.Tensor, u: torch.Tensor):
    """Linear relaxation of ReLU on [l, u]: (lower slope, upper slope, upper intercept).

    Stable neurons are exact (identity if l >= 0, zero if u <= 0). Unstable ones (l < 0 < u) use
    the chord ``u/(u-l) (z - l)`` above and ``alpha z`` below with CROWN's adaptive
    ``alpha = 1 if u > -l else 0`` (the choice with the smaller area of the two).
    """
    active = l >= 0
    unstable = (l < 0) & (u > 0)
    # Safe denominator so that the masked-out branches cannot produce inf/NaN gradients.
    den = torch.where(unstable, u - l, torch.ones_like(u))
    upper = torch.where(unstable, u / den, active.to(u.dtype))
    intercept = torch.where(unstable, -upper * l, torch.zeros_like(u))
    lower = torch.where(unstable, (u > -l).to(u.dtype), active.to(u.dtype))
    return lower, upper, intercept


def _backward(layers, trace: _Trace, A: torch.Tensor, end: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-substitute the linear function ``A h_end`` of the input of ``layers[end]`` to the input.

    ``A`` has shape ``(B, M, *shape)``. Returns ``(A_in, d)`` with, for every input ``x`` in the box
    the relaxations were built for, ``A h_end(x) >= A_in x + d`` row-wise (a lower bound).
    """
    B, M = A.shape[:2]
    d = A.new_zeros(B, M)
    for i in range(end - 1, -1, -1):
        layer = layers[i]
        if isinstance(layer, nn.Linear):
            if layer.bias is not None:
                d = d + torch.matmul(A, layer.bias)
            A = torch.matmul(A, layer.weight)
        elif isinstance(layer, nn.Conv2d):
            if layer.bias is not None:
                d = d + torch.matmul(A.sum((3, 4)), layer.bias)
            A = _conv_backward(layer, A, trace.shapes[i])
        elif isinstance(layer, Normalize):
            # Per-channel shift; expand covers a single mean/std broadcast over all channels.
            shift = (-layer.mean / layer.std).flatten().expand(A.shape[2])
            d = d + torch.matmul(A.flatten(3).sum(3), shift)
            A = A / layer.std
        elif isinstance(layer, nn.Flatten):
            A = A.reshape(B, M, *trace.shapes[i])
        elif isinstance(layer, nn.ReLU):
            l, u = trace.pre[i]
            lower, upper, intercept = _relu_relaxation(l, u)
            # Positive coefficients take the lower relaxation, negative ones the upper (the bias of
            # the upper relaxation enters the constant term); this keeps A h a lower bound.
            d = d + torch.einsum("bmn,bn->bm", A.clamp(max=0).flatten(2), intercept.flatten(1))
            A = A * torch.where(A >= 0, lower.unsqueeze(1), upper.unsqueeze(1))
        else:  # pragma: no cover - network_layers rejects anything else
            raise NotImplementedError(type(layer).__name__)
    return A, d


def _conv_backward(layer: nn.Conv2d, A: torch.Tensor, in_shape: torch.Size) -> torch.Tensor:
    """``A`` times the conv's linear map: the transposed convolution of each specification row.

    ``output_padding`` restores the input size when the forward conv dropped trailing pixels
    (its output size is a floor division).
    """
    B, M = A.shape[:2]
    out_hw = A.shape[3:]
    out_pad = []
    for k in range(2):
        full = (out_hw[k] - 1) * layer.stride[k] - 2 * layer.padding[k] + layer.dilation[k] * (layer.kernel_size[k] - 1) + 1
        out_pad.append(in_shape[1 + k] - full)
    A = F.conv_transpose2d(
        A.reshape(B * M, *A.shape[2:]),
        layer.weight,
        None,
        stride=layer.stride,
        padding=layer.padding,
        output_padding=tuple(out_pad),
        groups=layer.groups,
        dilation=layer.dilation,
    )
    return A.view(B, M, *in_shape)


def concretize(A: torch.Tensor, d: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Minimum of ``A x + d`` over the box ``[lo, hi]``: ``A c - |A| r + d`` (shape ``(B, M)``).

    ``lo``/``hi`` may carry a different radius than the box the relaxation was built on, as long
    as their box lies inside it (then the bound stays sound).
    """
    c, r = ((hi + lo) / 2).flatten(1), ((hi - lo) / 2).flatten(1)
    A = A.flatten(2)
    return torch.einsum("bmn,bn->bm", A, c) - torch.einsum("bmn,bn->bm", A.abs(), r) + d


# ----------------------------------------------------------------------------------------------
# CROWN-IBP and CROWN
# ----------------------------------------------------------------------------------------------


def _check_spec(C: torch.Tensor, lo: torch.Tensor) -> torch.Tensor:
    if C.dim() == 2:
        C = C.unsqueeze(0).expand(lo.shape[0], *C.shape)
    if C.dim() != 3 or C.shape[0] != lo.shape[0]:
        raise ValueError(f"C must have shape (B, M, K) with B={lo.shape[0]}, got {tuple(C.shape)}")
    return C.to(lo.dtype)


def _crown_ibp_parts(layers, lo, hi, C, need_crown: bool = True):
    """One IBP pass (intermediate bounds + IBP margin bound) and optionally one CROWN backward pass.

    Returns ``(A, d, lb_ibp)``; ``A, d`` is the linear lower bound ``C z >= A x + d`` on the box, or
    ``None, None`` when ``need_crown`` is False.
    """
    lb_ibp, _, trace = _interval_pass(layers, lo, hi, C)
    if not need_crown:
        return None, None, lb_ibp
    A, d = _backward(layers, trace, C, len(layers))
    return A, d, lb_ibp


def crown_ibp(model: nn.Module, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """CROWN-IBP lower bound of ``C z`` over ``[lo, hi]``, shape ``(B, M)``."""
    C = _check_spec(C, lo)
    A, d, _ = _crown_ibp_parts(network_layers(model), lo, hi, C)
    return concretize(A, d, lo, hi)


def _crown_intermediate(layers, lo, hi, max_elements: int = 2**25) -> _Trace:
    """Trace whose ReLU input bounds all come from CROWN backward passes (IBP where IBP is exact).

    The neurons of a layer are bounded in chunks of specification rows so that one backward pass
    holds about ``max_elements`` coefficients. Under autograd every chunk's graph is kept, so call
    this under ``torch.no_grad()`` unless gradients are really wanted (evaluation does).
    """
    with torch.no_grad():  # shapes only
        _, _, shape_trace = _interval_pass(layers, lo[:1], hi[:1])
    ibp_trace = None
    trace = _Trace(shapes=shape_trace.shapes)
    B = lo.shape[0]
    for j, layer in enumerate(layers):
        if not isinstance(layer, nn.ReLU):
            continue
        if _ibp_exact_prefix(layers, j):
            if ibp_trace is None:
                _, _, ibp_trace = _interval_pass(layers, lo, hi)
            trace.pre[j] = ibp_trace.pre[j]
            continue
        shape = trace.shapes[j]
        n = math.prod(shape)
        widest = max(math.prod(s) for s in trace.shapes[: j + 1])
        rows = max(1, max_elements // (2 * B * widest))
        lows, ups = [], []
        for start in range(0, n, rows):
            m = min(n, start + rows) - start
            E = torch.zeros(m, n, dtype=lo.dtype, device=lo.device)
            E[torch.arange(m, device=lo.device), torch.arange(start, start + m, device=lo.device)] = 1.0
            # Lower bounds of z and of -z in one pass; -lb(-z) is the CROWN upper bound of z.
            spec = torch.cat([E, -E]).view(1, 2 * m, *shape).expand(B, -1, *shape)
            A, d = _backward(layers, trace, spec, j)
            lb = concretize(A, d, lo, hi)
            lows.append(lb[:, :m])
            ups.append(-lb[:, m:])
        trace.pre[j] = (torch.cat(lows, 1).view(B, *shape), torch.cat(ups, 1).view(B, *shape))
    return trace


def crown(model: nn.Module, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor, max_elements: int = 2**25) -> torch.Tensor:
    """Full CROWN lower bound of ``C z`` (all intermediate bounds by backward passes), ``(B, M)``.

    Cost grows with the number of neurons times the network size; use on few points and under
    ``torch.no_grad()`` (see :func:`_crown_intermediate`; ``max_elements`` caps one pass's memory).
    """
    C = _check_spec(C, lo)
    layers = network_layers(model)
    trace = _crown_intermediate(layers, lo, hi, max_elements)
    A, d = _backward(layers, trace, C, len(layers))
    return concretize(A, d, lo, hi)


def linear_bounds(model: nn.Module, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor, method: str = "crown_ibp"):
    """The linear lower bound ``C z(x) >= A x + d`` valid for all ``x`` in ``[lo, hi]``.

    Returns ``(A, d)`` with ``A`` of shape ``(B, M, *input_shape)``. Because it is valid on the
    whole box, concretising it on any sub-box (e.g. a smaller radius around the same point) with
    :func:`concretize` is still sound.
    """
    C = _check_spec(C, lo)
    layers = network_layers(model)
    if method == "crown_ibp":
        A, d, _ = _crown_ibp_parts(layers, lo, hi, C)
    elif method == "crown":
        A, d = _backward(layers, _crown_intermediate(layers, lo, hi), C, len(layers))
    else:
        raise ValueError(f"linear bounds exist for crown_ibp and crown, not {method!r}")
    return A, d


def intermediate_bounds(model: nn.Module, lo: torch.Tensor, hi: torch.Tensor, method: str = "ibp"):
    """Pre-activation bounds ``[(l, u), ...]`` of every ReLU, in network order.

    ``method="ibp"`` gives the ones CROWN-IBP relaxes with, ``"crown"`` the ones full CROWN uses.
    """
    layers = network_layers(model)
    if method in ("ibp", "crown_ibp"):
        trace = _interval_pass(layers, lo, hi)[2]
    elif method == "crown":
        trace = _crown_intermediate(layers, lo, hi)
    else:
        raise ValueError(f"unknown method {method!r}")
    return [trace.pre[i] for i in sorted(trace.pre)]


# ----------------------------------------------------------------------------------------------
# Margins of a classifier
# ----------------------------------------------------------------------------------------------


def margin_bounds_radii(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    radii,
    method: str = "crown_ibp",
    beta: float = 1.0,
    num_classes: int | None = None,
    relaxation: str = "per_radius",
    clip: bool = True,
) -> torch.Tensor:
    """Margin lower bounds for several radii in one batched pass, shape ``(N, B, K-1)``.

    ``method``: ``"ibp"``, ``"crown_ibp"`` or ``"crown"``. For ``"crown_ibp"`` the result is the
    CROWN-IBP training mix ``beta * m_crown_ibp + (1 - beta) * m_ibp`` (beta = 1: pure CROWN-IBP,
    beta = 0: pure IBP, and then no backward pass is run).

    ``relaxation``:
      * ``"per_radius"`` (exact definition): every radius gets its own intermediate bounds and
        its own backward pass; the N boxes are stacked along the batch, so it is one call.
      * ``"shared"`` (cheaper approximation, crown_ibp only): the IBP part is still per radius, but
        the CROWN linear bound is computed once on the largest radius and concretised on every
        smaller box. It is sound (the relaxation holds on the largest box, which contains the
        others) but looser than ``per_radius`` for the smaller radii.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    layers = network_layers(model)
    K = num_classes or _num_outputs(layers)
    radii = torch.as_tensor(radii, dtype=x.dtype, device=x.device).flatten()
    N, B = radii.shape[0], x.shape[0]
    xs, ys, eps = stack_radii(x, y, radii)
    lo, hi = input_box(xs, eps, clip=clip)
    C = margin_spec(ys, K, dtype=x.dtype)

    if method == "ibp":
        lb = _interval_pass(layers, lo, hi, C)[0]
    elif method == "crown":
        trace = _crown_intermediate(layers, lo, hi)
        lb = concretize(*_backward(layers, trace, C, len(layers)), lo, hi)
    elif relaxation == "per_radius":
        A, d, lb_ibp = _crown_ibp_parts(layers, lo, hi, C, need_crown=beta > 0)
        lb = _mix(concretize(A, d, lo, hi) if beta > 0 else None, lb_ibp, beta)
    elif relaxation == "shared":
        lb_ibp, _, trace = _interval_pass(layers, lo, hi, C)
        if beta > 0:
            big = int(torch.argmax(radii))
            sl = slice(big * B, (big + 1) * B)
            sub = _Trace(shapes=trace.shapes, pre={i: (l[sl], u[sl]) for i, (l, u) in trace.pre.items()})
            A, d = _backward(layers, sub, C[sl], len(layers))
            # Same linear bound for every radius: repeat it radius-major and concretise each box.
            lb_crown = concretize(A.repeat(N, *([1] * (A.dim() - 1))), d.repeat(N, 1), lo, hi)
        lb = _mix(lb_crown if beta > 0 else None, lb_ibp, beta)
    else:
        raise ValueError(f"relaxation must be 'per_radius' or 'shared', not {relaxation!r}")
    return lb.view(N, B, K - 1)


def _mix(lb_crown, lb_ibp, beta: float) -> torch.Tensor:
    """``beta * crown + (1 - beta) * ibp`` without touching the unused term at beta in {0, 1}."""
    if beta >= 1:
        return lb_crown
    if beta <= 0:
        return lb_ibp
    return beta * lb_crown + (1 - beta) * lb_ibp


def margin_bounds(model, x, y, eps, method: str = "crown_ibp", beta: float = 1.0, num_classes: int | None = None, clip: bool = True) -> torch.Tensor:
    """Lower bounds of the margins ``z_y - z_j`` (``j != y``, increasing j) over the eps-box, ``(B, K-1)``.

    ``eps`` is a float or a per-sample tensor ``(B,)``. See :func:`margin_bounds_radii` for ``beta``.
    """
    layers = network_layers(model)
    K = num_classes or _num_outputs(layers)
    lo, hi = input_box(x, eps, clip=clip)
    C = margin_spec(y, K, dtype=x.dtype)
    if method == "ibp":
        return _interval_pass(layers, lo, hi, C)[0]
    if method == "crown":
        return concretize(*_backward(layers, _crown_intermediate(layers, lo, hi), C, len(layers)), lo, hi)
    if method != "crown_ibp":
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    A, d, lb_ibp = _crown_ibp_parts(layers, lo, hi, C, need_crown=beta > 0)
    return _mix(concretize(A, d, lo, hi) if beta > 0 else None, lb_ibp, beta)


def verified(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps, method: str = "ibp") -> torch.Tensor:
    """Bool ``(B,)``: True iff every margin lower bound is > 0 over the eps-box.

    The clean prediction must also be correct. Soundness already implies it; the explicit check
    keeps a rounding difference between the bound and the forward pass from verifying a
    misclassified (or tied) point when eps is 0.
    """
    with torch.no_grad():
        lb = margin_bounds(model, x, y, eps, method=method)
        correct = model(x).argmax(1) == y
    return (lb > 0).all(1) & correct


def verified_radii(model: nn.Module, x: torch.Tensor, y: torch.Tensor, radii, method: str = "ibp") -> torch.Tensor:
    """Bool ``(N, B)``: :func:`verified` for every radius of a grid, bounded in one batched pass.

    Meant for verified-error-versus-eps curves; split long grids or big batches to bound memory
    (the pass holds N * B boxes).
    """
    with torch.no_grad():
        lb = margin_bounds_radii(model, x, y, radii, method=method)
        correct = model(x).argmax(1) == y
    return (lb > 0).all(2) & correct.unsqueeze(0)
