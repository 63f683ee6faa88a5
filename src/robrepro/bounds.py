"""Bound engine: IBP, CROWN-IBP and CROWN for flat ``nn.Sequential`` networks, one operator per layer type.

The networks are those of the model registry: ``Sequential(Normalize, ...)`` built from
:class:`~robrepro.models.layers.Normalize`, ``nn.Linear``, ``nn.Conv2d``, ``nn.Flatten``, the
monotone activations ``nn.ReLU`` / ``nn.Tanh`` / ``nn.Sigmoid`` and, as the last layer only,
``nn.Softmax(dim=1)`` (nested Sequentials are spliced in, ``nn.Identity`` is skipped). Each layer
type is ONE operator class (:class:`BoundOp`, registered with :func:`register_op`) that knows

* its interval propagation (centre/radius form; a monotone activation gets it for free from its
  forward function: ``[phi(l), phi(u)]``),
* its linear relaxation (activations: sound lines ``a_l z + b_l <= phi(z) <= a_u z + b_u`` on
  ``[l, u]``), and
* its backward step (back-substitution of a linear function of its output to its input),

so a new layer type is added in one place. The perturbation set is the l-inf box around ``x``
intersected with the dataset's input domain (:func:`input_box`: images ``[0, 1]``; standardised
tabular features are unbounded, ``domain=(None, None)``). ``Normalize`` is an ordinary affine layer,
so no eps/std bookkeeping is needed.

Three bounds on a linear specification ``C z`` of the outputs ``z`` (catalog section 5.2):

* **IBP** -- one forward interval pass in centre/radius form. With ``C`` given, ``C`` is folded into
  the last linear layer (``W~ = C W``, ``b~ = C b``) as in CROWN-IBP / auto_LiRPA, which is tighter
  than bounding the outputs first.
* **CROWN-IBP** -- intermediate (pre-activation) bounds from IBP, then one CROWN backward pass from
  the specification to the input (ReLU: adaptive lower slope ``alpha = 1 if u > -l else 0`` and
  upper slope ``u / (u - l)``; tanh/sigmoid: chord and parallel tangent, see :class:`SShaped`).
* **CROWN** -- every intermediate bound also by a CROWN backward pass (costly: one pass per layer
  with one specification row per neuron); meant for evaluation on few points.

:func:`output_box` gives the box of the outputs (logits, or probabilities through the exact
softmax box :func:`softmax_box`), which the TRDNN sensitivity measures.

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
    "BoundOp",
    "register_op",
    "supported_layers",
    "network_ops",
    "input_box",
    "margin_spec",
    "other_classes",
    "ibp",
    "crown_ibp",
    "crown",
    "linear_bounds",
    "concretize",
    "intermediate_bounds",
    "output_box",
    "softmax_box",
    "margin_bounds",
    "margin_bounds_radii",
    "stack_radii",
    "verified",
    "verified_radii",
    "network_layers",
    "METHODS",
]

METHODS = ("ibp", "crown_ibp", "crown")
UNIT_BOX = (0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# Operators: one class per layer type
# ----------------------------------------------------------------------------------------------

_OPS: dict[type[nn.Module], type[BoundOp]] = {}


def register_op(*module_types: type[nn.Module]):
    """Class decorator: the operator bounds layers of ``module_types`` (exact type match first, then subclasses)."""

    def deco(cls):
        for t in module_types:
            if t in _OPS:
                raise ValueError(f"layer type {t.__name__} has two bound operators")
            _OPS[t] = cls
        return cls

    return deco


def supported_layers() -> tuple[type[nn.Module], ...]:
    """The layer types the engine bounds (``nn.Sequential`` and ``nn.Identity`` are structural)."""
    return tuple(_OPS)


def _op_class(module: nn.Module) -> type[BoundOp]:
    cls = _OPS.get(type(module))
    if cls is None:
        cls = next((c for t, c in _OPS.items() if isinstance(module, t)), None)
    if cls is None:
        raise NotImplementedError(f"bound engine does not support layer {type(module).__name__}")
    return cls


class Box:
    """A box during the forward interval pass: centre ``k * c`` and radius ``k * r``.

    An activation hands over ``(u + l, u - l)`` with ``k = 1/2``, and the next affine layer folds the
    halving into its (small) weights instead of spending two passes over the (large) activations.
    ``inplace`` allows overwriting ``c`` and ``r`` (the box owns them; never the caller's input, never
    recorded bounds); it is off under autograd, where ``out=`` is not differentiable. Together with
    the folding of Normalize this brings IBP close to its floor of two forward passes (centre and
    radius): elementwise passes over activations cost as much as the convolutions on a CPU.
    """

    __slots__ = ("c", "r", "k", "inplace")

    def __init__(self, c, r, k=1.0, inplace=False):
        self.c, self.r, self.k, self.inplace = c, r, k, inplace

    def centre_radius(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k != 1.0:
            return self.c * self.k, self.r * self.k
        return self.c, self.r

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        c, r = self.centre_radius()
        return c - r, c + r

    @property
    def shape(self) -> torch.Size:
        return self.c.shape[1:]


class BoundOp:
    """One layer of the network seen by the bound engine.

    Subclasses implement :meth:`ibp` (a box in centre/radius form through the layer) and
    :meth:`backward` (``A h_out + d`` rewritten as ``A' h_in + d'``, a lower bound valid on the box
    the pre-activation bounds ``pre`` were computed for). ``nonlinear`` ops need those bounds (the
    forward interval pass records them); ``mixes`` marks affine maps that mix coordinates (IBP of
    one such map of a box is exact, which full CROWN uses to skip backward passes).

    :meth:`ibp_box` is the interval step the forward pass uses; by default it is :meth:`ibp` on the
    centre/radius form, and operators override it to save passes (:class:`Box`).
    """

    nonlinear = False
    mixes = False

    def __init__(self, module: nn.Module):
        self.module = module
        self.check(module)

    @classmethod
    def check(cls, module: nn.Module) -> None:
        """Reject configurations of the layer the operator cannot bound (raise NotImplementedError)."""

    def ibp(self, c: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def ibp_box(self, box: Box) -> Box:
        c, r = self.ibp(*box.centre_radius())
        return Box(c, r, inplace=box.inplace)

    def backward(self, A: torch.Tensor, d: torch.Tensor, in_shape: torch.Size, pre, inplace: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``inplace``: ``A`` may be overwritten (no autograd, and the pass owns it)."""
        raise NotImplementedError(f"{type(self.module).__name__} has no linear relaxation")


@register_op(Normalize)
class NormalizeOp(BoundOp):
    """Per-channel ``(x - mean) / std``: exact on boxes (and folded into a following affine layer by the interval pass)."""

    def stats(self, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std shaped to broadcast over a batch of ``ndim`` dims (tabular: one channel per feature)."""
        m = self.module
        if ndim == 2:
            return m.mean.view(1, -1), m.std.view(1, -1)
        return m.mean, m.std

    def ibp(self, c, r):
        mean, std = self.stats(c.dim())
        # |1/std| keeps the radius non-negative even for a negative std.
        return (c - mean) / std, r / std.abs()

    def backward(self, A, d, in_shape, pre, inplace=False):
        mean, std = self.stats(len(in_shape) + 1)
        # Per-channel shift; expand covers a single mean/std broadcast over all channels.
        shift = (-mean / std).flatten().expand(A.shape[2])
        d = d + torch.matmul(A.flatten(3).sum(3) if A.dim() > 3 else A, shift)
        std = std.unsqueeze(1)  # over the specification rows
        return (A.div_(std) if inplace else A / std), d

    def per_feature(self, in_shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std expanded to the input's shape (no batch dimension)."""
        mean, std = self.stats(len(in_shape) + 1)
        return mean.expand(1, *in_shape)[0], std.expand(1, *in_shape)[0]


@register_op(nn.Flatten)
class FlattenOp(BoundOp):
    @classmethod
    def check(cls, module):
        if module.start_dim != 1 or module.end_dim != -1:
            raise NotImplementedError("only Flatten(start_dim=1, end_dim=-1) is supported")

    def ibp(self, c, r):
        return c.flatten(1), r.flatten(1)

    def ibp_box(self, box):
        return Box(box.c.flatten(1), box.r.flatten(1), box.k, box.inplace)

    def backward(self, A, d, in_shape, pre, inplace=False):
        return A.reshape(*A.shape[:2], *in_shape), d


class AffineOp(BoundOp):
    """``W h + b`` for a Linear or Conv2d layer; ``weight``/``bias`` may be replaced (Normalize folded in)."""

    mixes = True

    def __init__(self, module):
        super().__init__(module)
        self.weight, self.bias = module.weight, module.bias

    def apply(self, x, W, b):
        raise NotImplementedError

    def ibp(self, c, r):
        return self.apply(c, self.weight, self.bias), self.apply(r, self.weight.abs(), None)

    def ibp_box(self, box):
        W, b, k = self.weight, self.bias, box.k
        if k != 1.0:
            return Box(self.apply(box.c, W * k, b), self.apply(box.r, W.abs().mul_(k), None), 1.0, box.inplace)
        return Box(self.apply(box.c, W, b), self.apply(box.r, W.abs(), None), 1.0, box.inplace)


@register_op(nn.Linear)
class LinearOp(AffineOp):
    def apply(self, x, W, b):
        return F.linear(x, W, b)

    def ibp_spec(self, c, r, C):
        """Bounds of ``C (W h + b)`` over the box of ``h``: the specification folded into the layer,
        bounded exactly over that box (tighter than bounding ``z`` first and then ``C z``)."""
        W = torch.matmul(C, self.weight)  # (B, M, in)
        c2 = torch.bmm(W, c.unsqueeze(2)).squeeze(2)
        if self.bias is not None:
            c2 = c2 + torch.matmul(C, self.bias)
        r2 = torch.bmm(W.abs(), r.unsqueeze(2)).squeeze(2)
        return c2 - r2, c2 + r2

    def backward(self, A, d, in_shape, pre, inplace=False):
        if self.bias is not None:
            d = d + torch.matmul(A, self.bias)
        return torch.matmul(A, self.weight), d

    def fold_normalize(self, norm: NormalizeOp, in_shape: torch.Size) -> LinearOp:
        """This layer applied to ``Normalize(x)`` (after a Flatten) as one affine map of ``x``."""
        mean, std = (t.flatten() for t in norm.per_feature(in_shape))
        op = LinearOp(self.module)
        op.weight = self.weight / std
        op.bias = (0 if self.bias is None else self.bias) - torch.mv(op.weight, mean)
        return op


@register_op(nn.Conv2d)
class Conv2dOp(AffineOp):
    @classmethod
    def check(cls, module):
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise NotImplementedError("Conv2d needs numeric zero padding")

    def apply(self, x, W, b):
        m = self.module
        # Channels-last weights make oneDNN keep the activations channels-last, which is faster on
        # a CPU for the wider convolutions (DM-large IBP 1.5x forward instead of 2.3x; no change on
        # the small ones); the elementwise steps between layers keep that layout.
        W = W.contiguous(memory_format=torch.channels_last)
        return F.conv2d(x, W, b, stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups)

    def backward(self, A, d, in_shape, pre, inplace=False):
        if self.bias is not None:
            d = d + torch.matmul(A.sum((3, 4)), self.bias)
        # A channels-last weight makes oneDNN run the transposed convolution (and return A) in
        # channels-last layout, about twice as fast on a CPU; later steps keep that layout.
        return _conv_backward(self.module, A, in_shape, self.weight.contiguous(memory_format=torch.channels_last)), d

    def fold_normalize(self, norm: NormalizeOp, in_shape: torch.Size) -> Conv2dOp | None:
        """This conv applied to ``Normalize(x)`` as one conv of ``x``; None where zero padding forbids it
        (the padding is zero in normalised space, not in pixel space)."""
        m = self.module
        if any(p != 0 for p in m.padding) or m.groups != 1:
            return None
        mean, std = norm.module.mean.reshape(1, -1, 1, 1), norm.module.std.reshape(1, -1, 1, 1)
        op = Conv2dOp(m)
        op.weight = self.weight / std
        op.bias = (0 if self.bias is None else self.bias) - (op.weight * mean).sum((1, 2, 3))
        return op


def _conv_backward(layer: nn.Conv2d, A: torch.Tensor, in_shape: torch.Size, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``A`` times the conv's linear map: the transposed convolution of each specification row.

    ``output_padding`` restores the input size when the forward conv dropped trailing pixels
    (its output size is a floor division).
    """
    B, M = A.shape[:2]
    W = layer.weight if weight is None else weight
    cout, cin_k = W.shape[0], W[0].numel()
    if layer.groups == 1 and cin_k <= cout and max(layer.stride) > 1:
        return _conv_backward_fold(layer, A, in_shape, W)
    out_hw = A.shape[3:]
    out_pad = []
    for k in range(2):
        full = (out_hw[k] - 1) * layer.stride[k] - 2 * layer.padding[k] + layer.dilation[k] * (layer.kernel_size[k] - 1) + 1
        out_pad.append(in_shape[1 + k] - full)
    A = F.conv_transpose2d(
        A.reshape(B * M, *A.shape[2:]),
        W,
        None,
        stride=layer.stride,
        padding=layer.padding,
        output_padding=tuple(out_pad),
        groups=layer.groups,
        dilation=layer.dilation,
    )
    return A.view(B, M, *in_shape)


def _conv_backward_fold(layer: nn.Conv2d, A: torch.Tensor, in_shape: torch.Size, W: torch.Tensor) -> torch.Tensor:
    """:func:`_conv_backward` as one matrix product and a col2im (``F.fold``).

    Used for a strided conv whose columns ``W^T A`` are no larger than ``A`` (few input channels, as
    an image's first layer), where oneDNN's transposed convolution is slow. Measured with 2 304
    specification rows on 2 threads: DM-small's first layer (1 -> 16, 4x4, stride 2) 37 ms this way
    against 69 ms; but 216 against 129 ms for DM-medium's (1 -> 32, 3x3, stride 1) and 266 against 87
    ms for a CIFAR one (3 -> 16, 4x4, stride 2), hence the conditions in :func:`_conv_backward`.
    """
    B, M, cout = A.shape[0], A.shape[1], A.shape[2]
    A = A.reshape(B * M, *A.shape[2:])
    Wm = W.reshape(cout, -1)  # (Cout, Cin*kh*kw) in the logical order fold expects
    if A.is_contiguous(memory_format=torch.channels_last):
        # The transposed convolutions before return channels-last: read it as (rows, pixels, channels).
        cols = torch.matmul(A.permute(0, 2, 3, 1).reshape(B * M, -1, cout), Wm).transpose(1, 2)
    else:
        cols = torch.matmul(Wm.t(), A.reshape(B * M, cout, -1))
    out = F.fold(cols, tuple(in_shape[1:]), layer.kernel_size, dilation=layer.dilation, padding=layer.padding, stride=layer.stride)
    return out.view(B, M, *in_shape)


class MonotoneActivation(BoundOp):
    """An elementwise non-decreasing activation ``phi``.

    Interval propagation is free: ``phi([l, u]) = [phi(l), phi(u)]``. Subclasses give
    :meth:`relax`; :meth:`backward` is then generic: positive coefficients of ``A`` take the lower
    line and negative ones the upper line, so ``A phi(z)`` stays bounded from below.
    """

    nonlinear = True
    fn_ = None  # optional in-place version of fn (e.g. torch.relu_), used by the fast interval pass

    @staticmethod
    def fn(z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def ibp(self, c, r):
        lo, hi = self.ibp_lu(c - r, c + r)
        return (hi + lo) / 2, (hi - lo) / 2

    def ibp_lu(self, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fn(l), self.fn(u)

    def ibp_box(self, box, record: list | None = None):
        """The box through ``phi``; ``record`` receives the pre-activation ``(l, u)`` (left untouched)."""
        c, r = box.centre_radius()
        if record is not None:
            l, u = c - r, c + r
            record.append((l, u))
            lo, hi = self.ibp_lu(l, u)
            return Box(hi + lo, hi - lo, 0.5, box.inplace)
        if box.inplace and self.fn_ and box.k == 1.0:
            # The box owns c and r: six passes and one new tensor.
            l = torch.sub(c, r)
            u = c.add_(r)
            self.fn_(l)
            self.fn_(u)
            t = torch.sub(u, l, out=r)
            return Box(u.add_(l), t, 0.5, True)
        lo, hi = self.ibp_lu(c - r, c + r)
        return Box(hi + lo, hi - lo, 0.5, box.inplace)

    def relax(self, l, u) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(a_l, b_l, a_u, b_u)`` with ``a_l z + b_l <= phi(z) <= a_u z + b_u`` for all z in ``[l, u]`` (``b_l = None``: 0)."""
        raise NotImplementedError

    def backward(self, A, d, in_shape, pre, inplace=False):
        a_l, b_l, a_u, b_u = self.relax(*pre)
        # A+ a_l + A- a_u  =  A a_l + A- (a_u - a_l), and A+ b_l + A- b_u  =  A b_l + A- (b_u - b_l):
        # one new tensor (A-) and passes over A that can run in place; b_l = None means 0.
        A_neg = A.clamp(max=0)
        if b_l is None:
            d = d + _dot_neurons(A_neg, b_u)
        else:
            d = d + _dot_neurons(A, b_l) + _dot_neurons(A_neg, b_u - b_l)
        a_l, gap = a_l.unsqueeze(1), (a_u - a_l).unsqueeze(1)
        if inplace:
            return A.mul_(a_l).addcmul_(A_neg, gap), d
        return torch.addcmul(A * a_l, A_neg, gap), d


def _dot_neurons(A: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``sum_n A[b, m, n] v[b, n]`` for ``A`` of shape ``(B, M, *shape)`` and ``v`` of ``(B, *shape)``, as ``(B, M)``.

    ``A`` may be in channels-last layout (the transposed convolutions return it): the neurons are
    then read in memory order, so nothing large is copied.
    """
    B, M = A.shape[:2]
    if A.dim() == 5 and not A.is_contiguous() and A.permute(0, 1, 3, 4, 2).is_contiguous():
        A, v = A.permute(0, 1, 3, 4, 2), v.permute(0, 2, 3, 1)
    return torch.bmm(A.reshape(B, M, -1), v.reshape(B, -1, 1)).squeeze(2)


@register_op(nn.ReLU)
class ReLUOp(MonotoneActivation):
    """ReLU: stable neurons exact; unstable ones (l < 0 < u) use the chord ``u/(u-l) (z - l)`` above
    and ``alpha z`` below with CROWN's adaptive ``alpha = 1 if u > -l else 0`` (the smaller area)."""

    fn = staticmethod(F.relu)
    fn_ = staticmethod(torch.relu_)

    @staticmethod
    def slopes(l, u):
        """(lower slope, upper slope, upper intercept); the lower intercept is 0.

        The upper line is the chord of ReLU through ``(l, relu(l))`` and ``(u, relu(u))`` in every
        case: slope 1 / intercept 0 when active, 0 / 0 when inactive, ``u/(u-l)`` / ``-u l/(u-l)``
        when unstable (a point interval gets slope 0 through ``relu(u)``, also exact). The lower
        slope ``u + l > 0`` is 1 when active, 0 when inactive and CROWN's adaptive choice when
        unstable. Branch-free: a few passes over the neurons instead of a dozen masks.
        """
        ru = F.relu(u)
        upper = (ru - F.relu(l)) / (u - l).clamp(min=torch.finfo(u.dtype).tiny)
        intercept = ru - upper * u
        lower = (u + l > 0).to(u.dtype)
        return lower, upper, intercept

    def relax(self, l, u):
        lower, upper, intercept = self.slopes(l, u)
        return lower, None, upper, intercept


class SShaped(MonotoneActivation):
    """An increasing activation, convex on ``z <= 0`` and concave on ``z >= 0``, with an even
    derivative ``phi'`` that decreases in ``|z|`` (tanh, sigmoid).

    Relaxation on ``[l, u]``: both lines take the slope ``s`` of the chord (``phi'(l)`` when
    ``l = u``); their intercepts are the exact extremes of ``g(z) = phi(z) - s z`` over ``[l, u]``,
    which lie at ``l``, ``u`` or the critical points ``+-z0`` with ``phi'(+-z0) = s`` (``+z0``, on
    the concave side, is the only interior maximum, ``-z0`` the only interior minimum). So the upper
    line is the chord where the interval is convex and the tangent parallel to the chord where it
    reaches the concave side (and symmetrically below): sound for every interval by construction.
    ``z0`` is treated as a constant under autograd (envelope theorem: ``g'(z0) = 0``), and a few ulps
    of slack cover rounding.
    """

    slope_max: float = 1.0

    @staticmethod
    def dfn(z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def inverse_dfn(s: torch.Tensor) -> torch.Tensor:
        """The non-negative ``z0`` with ``phi'(z0) = s`` for ``0 < s <= slope_max``."""
        raise NotImplementedError

    def relax(self, l, u):
        fl, fu = self.fn(l), self.fn(u)
        width = u - l
        point = width <= 1e-6 * (1 + l.abs())
        s = torch.where(point, self.dfn(l), (fu - fl) / torch.where(point, torch.ones_like(width), width))
        with torch.no_grad():
            tiny = torch.finfo(l.dtype).tiny
            z0 = self.inverse_dfn(s.clamp(min=tiny, max=self.slope_max))
            zp = torch.minimum(torch.maximum(z0, l), u)
            zm = torch.minimum(torch.maximum(-z0, l), u)
        gl, gu = fl - s * l, fu - s * u
        b_u = torch.maximum(torch.maximum(gl, gu), self.fn(zp) - s * zp)
        b_l = torch.minimum(torch.minimum(gl, gu), self.fn(zm) - s * zm)
        slack = 8 * torch.finfo(l.dtype).eps * (1 + b_u.abs().detach() + (s * l).abs().detach() + (s * u).abs().detach())
        return s, b_l - slack, s, b_u + slack


@register_op(nn.Tanh)
class TanhOp(SShaped):
    fn = staticmethod(torch.tanh)
    fn_ = staticmethod(torch.tanh_)
    slope_max = 1.0

    @staticmethod
    def dfn(z):
        return 1 - torch.tanh(z) ** 2

    @staticmethod
    def inverse_dfn(s):
        t = torch.sqrt((1 - s).clamp(min=0))
        return torch.atanh(t.clamp(max=1 - torch.finfo(s.dtype).eps))


@register_op(nn.Sigmoid)
class SigmoidOp(SShaped):
    fn = staticmethod(torch.sigmoid)
    fn_ = staticmethod(torch.sigmoid_)
    slope_max = 0.25

    @staticmethod
    def dfn(z):
        p = torch.sigmoid(z)
        return p * (1 - p)

    @staticmethod
    def inverse_dfn(s):
        p = (1 + torch.sqrt((1 - 4 * s).clamp(min=0))) / 2
        return torch.logit(p.clamp(max=1 - torch.finfo(s.dtype).eps))


@register_op(nn.Softmax)
class SoftmaxOp(BoundOp):
    """Softmax over the class dimension as the LAST layer: IBP through the exact box :func:`softmax_box`.

    There is no linear relaxation here (bound the logits with CROWN and map their box through
    :func:`softmax_box` instead, as :func:`output_box` does)."""

    @classmethod
    def check(cls, module):
        if module.dim not in (1, -1):
            raise NotImplementedError("only Softmax over dim 1 of (B, K) outputs is supported")

    def ibp(self, c, r):
        lo, hi = softmax_box(c - r, c + r)
        return (hi + lo) / 2, (hi - lo) / 2


def softmax_box(l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact box of ``softmax(z)`` over the box ``l <= z <= u`` (``(B, K)``), catalog section 3.2.

    ``p_k`` increases in ``z_k`` and decreases in every other ``z_j``, so its extremes over the box
    are ``e^{l_k} / (e^{l_k} + sum_{j!=k} e^{u_j})`` and ``e^{u_k} / (e^{u_k} + sum_{j!=k} e^{l_j})``,
    both attained at a corner. Computed with log-sum-exp, so it neither overflows nor underflows.
    """
    K = l.shape[1]
    eye = torch.eye(K, dtype=torch.bool, device=l.device)
    # Row k of the matrix holds the exponents of the denominator of p_k's bound.
    den_lo = torch.where(eye, l.unsqueeze(2), u.unsqueeze(1))
    den_hi = torch.where(eye, u.unsqueeze(2), l.unsqueeze(1))
    lo = torch.exp(l - torch.logsumexp(den_lo, 2))
    hi = torch.exp(u - torch.logsumexp(den_hi, 2))
    return lo, hi


# ----------------------------------------------------------------------------------------------
# Inputs and specifications
# ----------------------------------------------------------------------------------------------


def input_box(x: torch.Tensor, eps, clip: bool = True, domain=UNIT_BOX) -> tuple[torch.Tensor, torch.Tensor]:
    """The l-inf box around ``x`` intersected with the input domain: ``(max(x - eps, lo), min(x + eps, hi))``.

    ``eps`` is a float or a tensor of shape ``(B,)`` (one radius per sample, which is how several
    radii share one bound pass). ``domain = (lower, upper)`` is the dataset's input box (images
    ``(0, 1)``; ``None`` for an unbounded side, e.g. standardised tabular features). ``clip=False``
    drops the domain (the CROWN-IBP CIFAR configs without "bounded input").
    """
    eps = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if eps.dim() == 1:
        if eps.shape[0] != x.shape[0]:
            raise ValueError(f"per-sample eps has {eps.shape[0]} entries for a batch of {x.shape[0]}")
        eps = eps.view(-1, *([1] * (x.dim() - 1)))
    elif eps.dim() != 0:
        raise ValueError("eps must be a float or a tensor of shape (B,)")
    lo, hi = x - eps, x + eps
    if clip and domain is not None:
        dlo, dhi = domain
        if dlo is not None or dhi is not None:
            lo, hi = lo.clamp(dlo, dhi), hi.clamp(dlo, dhi)
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
        else:
            _op_class(m).check(m)
            out.append(m)
    if not out:
        raise ValueError("empty network")
    for m in out[:-1]:
        if isinstance(m, nn.Softmax):
            raise NotImplementedError("Softmax is supported as the last layer only")
    return out


def network_ops(model: nn.Module) -> list[BoundOp]:
    """The model as a list of bound operators, one per layer of :func:`network_layers`."""
    return [_op_class(m)(m) for m in network_layers(model)]


def _num_outputs(layers) -> int:
    for layer in reversed(layers):
        layer = getattr(layer, "module", layer)
        if isinstance(layer, nn.Linear):
            return layer.out_features
    raise ValueError("cannot infer the number of classes: the network has no Linear layer")


def _ibp_exact_prefix(ops: list[BoundOp], end: int) -> bool:
    """True if IBP is exact for the output of ``ops[:end]``.

    That holds for a chain with no nonlinearity and at most one coordinate-mixing affine layer
    (Normalize and Flatten map boxes to boxes exactly; one affine map of a box is bounded exactly
    by ``|W| r``). Full CROWN uses it to skip the huge first-layer backward passes.
    """
    prefix = ops[:end]
    return not any(op.nonlinear for op in prefix) and sum(op.mixes for op in prefix) <= 1


# ----------------------------------------------------------------------------------------------
# IBP (centre/radius form)
# ----------------------------------------------------------------------------------------------


@dataclass
class _Trace:
    """What a forward interval pass records for the backward passes."""

    shapes: list[torch.Size] = field(default_factory=list)  # input shape (no batch dim) of each layer
    pre: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # nonlinear op idx -> (l, u)


def _interval_pass(ops: list[BoundOp], lo, hi, C=None, record: bool = True) -> tuple[torch.Tensor, torch.Tensor, _Trace]:
    """Forward IBP over the whole network; returns (lb, ub) of ``z`` (or ``C z``) and the trace.

    ``record=False`` keeps no pre-activation bounds (pure IBP needs none). A leading Normalize is
    folded into the first affine layer where that is exact (see :class:`Box`);
    without autograd the pass works in place on the tensors it owns.
    """
    trace = _Trace()
    inplace = not torch.is_grad_enabled()
    plan: list[BoundOp | None] = list(ops)
    last = len(ops) - 1
    if isinstance(ops[0], NormalizeOp):
        j = 1
        while j < len(ops) and isinstance(ops[j], FlattenOp):
            j += 1
        # A Linear needs the Flatten in between for image-shaped inputs (tabular ones are flat already).
        if j < len(ops) and (isinstance(ops[j], Conv2dOp) or (isinstance(ops[j], LinearOp) and (j > 1 or lo.dim() == 2))):
            folded = ops[j].fold_normalize(ops[0], lo.shape[1:])
            if folded is not None:
                plan[0], plan[j] = None, folded
    box = Box(hi + lo, hi - lo, 0.5, inplace)
    for i, op in enumerate(plan):
        trace.shapes.append(box.shape)
        if op is None:
            continue
        if C is not None and i == last and isinstance(op, LinearOp):
            lb, ub = op.ibp_spec(*box.centre_radius(), C)
            return lb, ub, trace
        if op.nonlinear and record:
            rec: list = []
            box = op.ibp_box(box, record=rec)
            trace.pre[i] = rec[0]
            continue
        box = op.ibp_box(box)
    if C is not None:  # the network does not end in a Linear layer: plain interval arithmetic
        c, r = box.centre_radius()
        c, r = torch.einsum("bmk,bk->bm", C, c.flatten(1)), torch.einsum("bmk,bk->bm", C.abs(), r.flatten(1))
        return c - r, c + r, trace
    lb, ub = box.bounds()
    return lb, ub, trace


def ibp(model: nn.Module, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor | None = None):
    """IBP bounds ``(lb, ub)`` of the output over the box ``[lo, hi]``, or of ``C z`` if ``C`` is given."""
    lb, ub, _ = _interval_pass(network_ops(model), lo, hi, C, record=False)
    return lb, ub


# ----------------------------------------------------------------------------------------------
# CROWN backward pass
# ----------------------------------------------------------------------------------------------


def _backward(ops: list[BoundOp], trace: _Trace, A: torch.Tensor, end: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-substitute the linear function ``A h_end`` of the input of ``ops[end]`` to the input.

    ``A`` has shape ``(B, M, *shape)``. Returns ``(A_in, d)`` with, for every input ``x`` in the box
    the relaxations were built for, ``A h_end(x) >= A_in x + d`` row-wise (a lower bound).
    """
    B, M = A.shape[:2]
    d = A.new_zeros(B, M)
    # Without autograd the steps may overwrite A, but never the caller's tensor.
    inplace, caller = not torch.is_grad_enabled(), A.untyped_storage().data_ptr()
    for i in range(end - 1, -1, -1):
        owned = A.untyped_storage().data_ptr() != caller
        A, d = ops[i].backward(A, d, trace.shapes[i], trace.pre.get(i), inplace=inplace and owned)
    return A, d


def concretize(A: torch.Tensor, d: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Minimum of ``A x + d`` over the box ``[lo, hi]``: ``A c - |A| r + d`` (shape ``(B, M)``).

    ``lo``/``hi`` may carry a different radius than the box the relaxation was built on, as long
    as their box lies inside it (then the bound stays sound).
    """
    c, r = (hi + lo) / 2, (hi - lo) / 2
    return _dot_neurons(A, c) - _dot_neurons(A.abs(), r) + d


# ----------------------------------------------------------------------------------------------
# CROWN-IBP and CROWN
# ----------------------------------------------------------------------------------------------


def _check_spec(C: torch.Tensor, lo: torch.Tensor) -> torch.Tensor:
    if C.dim() == 2:
        C = C.unsqueeze(0).expand(lo.shape[0], *C.shape)
    if C.dim() != 3 or C.shape[0] != lo.shape[0]:
        raise ValueError(f"C must have shape (B, M, K) with B={lo.shape[0]}, got {tuple(C.shape)}")
    return C.to(lo.dtype)


def _crown_ibp_parts(ops, lo, hi, C, need_crown: bool = True):
    """One IBP pass (intermediate bounds + IBP margin bound) and optionally one CROWN backward pass.

    Returns ``(A, d, lb_ibp)``; ``A, d`` is the linear lower bound ``C z >= A x + d`` on the box, or
    ``None, None`` when ``need_crown`` is False.
    """
    lb_ibp, _, trace = _interval_pass(ops, lo, hi, C)
    if not need_crown:
        return None, None, lb_ibp
    A, d = _backward(ops, trace, C, len(ops))
    return A, d, lb_ibp


def crown_ibp(model: nn.Module, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """CROWN-IBP lower bound of ``C z`` over ``[lo, hi]``, shape ``(B, M)``."""
    C = _check_spec(C, lo)
    A, d, _ = _crown_ibp_parts(network_ops(model), lo, hi, C)
    return concretize(A, d, lo, hi)


def _crown_intermediate(ops, lo, hi, max_elements: int = 2**25) -> _Trace:
    """Trace whose activation input bounds all come from CROWN backward passes (IBP where IBP is exact).

    The neurons of a layer are bounded in chunks of specification rows so that one backward pass
    holds about ``max_elements`` coefficients. Under autograd every chunk's graph is kept, so call
    this under ``torch.no_grad()`` unless gradients are really wanted (evaluation does).
    """
    with torch.no_grad():  # shapes only
        _, _, shape_trace = _interval_pass(ops, lo[:1], hi[:1])
    ibp_trace = None
    trace = _Trace(shapes=shape_trace.shapes)
    B = lo.shape[0]
    for j, op in enumerate(ops):
        if not op.nonlinear:
            continue
        if _ibp_exact_prefix(ops, j):
            if ibp_trace is None:
                _, _, ibp_trace = _interval_pass(ops, lo, hi)
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
            A, d = _backward(ops, trace, spec, j)
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
    ops = network_ops(model)
    trace = _crown_intermediate(ops, lo, hi, max_elements)
    A, d = _backward(ops, trace, C, len(ops))
    return concretize(A, d, lo, hi)


def linear_bounds(model: nn.Module, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor, method: str = "crown_ibp"):
    """The linear lower bound ``C z(x) >= A x + d`` valid for all ``x`` in ``[lo, hi]``.

    Returns ``(A, d)`` with ``A`` of shape ``(B, M, *input_shape)``. Because it is valid on the
    whole box, concretising it on any sub-box (e.g. a smaller radius around the same point) with
    :func:`concretize` is still sound.
    """
    C = _check_spec(C, lo)
    ops = network_ops(model)
    if method == "crown_ibp":
        A, d, _ = _crown_ibp_parts(ops, lo, hi, C)
    elif method == "crown":
        A, d = _backward(ops, _crown_intermediate(ops, lo, hi), C, len(ops))
    else:
        raise ValueError(f"linear bounds exist for crown_ibp and crown, not {method!r}")
    return A, d


def intermediate_bounds(model: nn.Module, lo: torch.Tensor, hi: torch.Tensor, method: str = "ibp"):
    """Pre-activation bounds ``[(l, u), ...]`` of every activation, in network order.

    ``method="ibp"`` gives the ones CROWN-IBP relaxes with, ``"crown"`` the ones full CROWN uses.
    """
    ops = network_ops(model)
    if method in ("ibp", "crown_ibp"):
        trace = _interval_pass(ops, lo, hi)[2]
    elif method == "crown":
        trace = _crown_intermediate(ops, lo, hi)
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
    domain=UNIT_BOX,
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

    ``domain`` is the input domain the boxes are clipped to (:func:`input_box`).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    ops = network_ops(model)
    K = num_classes or _num_outputs(ops)
    radii = torch.as_tensor(radii, dtype=x.dtype, device=x.device).flatten()
    N, B = radii.shape[0], x.shape[0]
    xs, ys, eps = stack_radii(x, y, radii)
    lo, hi = input_box(xs, eps, clip=clip, domain=domain)
    C = margin_spec(ys, K, dtype=x.dtype)

    if method == "ibp":
        lb = _interval_pass(ops, lo, hi, C)[0]
    elif method == "crown":
        trace = _crown_intermediate(ops, lo, hi)
        lb = concretize(*_backward(ops, trace, C, len(ops)), lo, hi)
    elif relaxation == "per_radius":
        A, d, lb_ibp = _crown_ibp_parts(ops, lo, hi, C, need_crown=beta > 0)
        lb = _mix(concretize(A, d, lo, hi) if beta > 0 else None, lb_ibp, beta)
    elif relaxation == "shared":
        lb_ibp, _, trace = _interval_pass(ops, lo, hi, C)
        if beta > 0:
            big = int(torch.argmax(radii))
            sl = slice(big * B, (big + 1) * B)
            sub = _Trace(shapes=trace.shapes, pre={i: (l[sl], u[sl]) for i, (l, u) in trace.pre.items()})
            A, d = _backward(ops, sub, C[sl], len(ops))
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


def margin_bounds(
    model, x, y, eps, method: str = "crown_ibp", beta: float = 1.0, num_classes: int | None = None, clip: bool = True, domain=UNIT_BOX
) -> torch.Tensor:
    """Lower bounds of the margins ``z_y - z_j`` (``j != y``, increasing j) over the eps-box, ``(B, K-1)``.

    ``eps`` is a float or a per-sample tensor ``(B,)``. See :func:`margin_bounds_radii` for ``beta``.
    """
    ops = network_ops(model)
    K = num_classes or _num_outputs(ops)
    lo, hi = input_box(x, eps, clip=clip, domain=domain)
    C = margin_spec(y, K, dtype=x.dtype)
    if method == "ibp":
        return _interval_pass(ops, lo, hi, C)[0]
    if method == "crown":
        return concretize(*_backward(ops, _crown_intermediate(ops, lo, hi), C, len(ops)), lo, hi)
    if method != "crown_ibp":
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    A, d, lb_ibp = _crown_ibp_parts(ops, lo, hi, C, need_crown=beta > 0)
    return _mix(concretize(A, d, lo, hi) if beta > 0 else None, lb_ibp, beta)


def verified(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps, method: str = "ibp", domain=UNIT_BOX) -> torch.Tensor:
    """Bool ``(B,)``: True iff every margin lower bound is > 0 over the eps-box.

    The clean prediction must also be correct. Soundness already implies it; the explicit check
    keeps a rounding difference between the bound and the forward pass from verifying a
    misclassified (or tied) point when eps is 0.
    """
    with torch.no_grad():
        lb = margin_bounds(model, x, y, eps, method=method, domain=domain)
        correct = model(x).argmax(1) == y
    return (lb > 0).all(1) & correct


def verified_radii(model: nn.Module, x: torch.Tensor, y: torch.Tensor, radii, method: str = "ibp", domain=UNIT_BOX) -> torch.Tensor:
    """Bool ``(N, B)``: :func:`verified` for every radius of a grid, bounded in one batched pass.

    Meant for verified-error-versus-eps curves; split long grids or big batches to bound memory
    (the pass holds N * B boxes).
    """
    with torch.no_grad():
        lb = margin_bounds_radii(model, x, y, radii, method=method, domain=domain)
        correct = model(x).argmax(1) == y
    return (lb > 0).all(2) & correct.unsqueeze(0)


# ----------------------------------------------------------------------------------------------
# Output boxes (sensitivity)
# ----------------------------------------------------------------------------------------------


def output_box(model: nn.Module, x: torch.Tensor, eps, *, space: str = "logits", method: str = "ibp", domain=UNIT_BOX):
    """Box ``(l, u)`` of shape ``(B, K)`` containing the network's outputs over the eps-box of every sample.

    ``space="logits"`` bounds the last layer's outputs; ``"probs"`` maps the logit box through the
    exact :func:`softmax_box` (a network that already ends in ``nn.Softmax`` is bounded as it is).
    ``method="ibp"`` is one interval pass; ``"crown_ibp"`` / ``"crown"`` bound ``z`` and ``-z`` with
    the identity specification (tighter, and the box is intersected with the IBP box, which is sound
    since both contain the outputs). Differentiable.
    """
    if space not in ("logits", "probs"):
        raise ValueError(f"space must be 'logits' or 'probs', not {space!r}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    ops = network_ops(model)
    ends_in_softmax = isinstance(ops[-1], SoftmaxOp)
    if ends_in_softmax and space == "logits":
        raise ValueError("the network ends in Softmax: its outputs are probabilities, use space='probs'")
    body = ops[:-1] if ends_in_softmax else ops
    lo, hi = input_box(x, eps, domain=domain)
    l, u, trace = _interval_pass(body, lo, hi, record=method != "ibp")
    l, u = l.flatten(1), u.flatten(1)
    if method != "ibp":
        K = l.shape[1]
        eye = torch.eye(K, dtype=l.dtype, device=l.device)
        C = torch.cat([eye, -eye]).unsqueeze(0).expand(l.shape[0], 2 * K, K)
        if method == "crown":
            trace = _crown_intermediate(body, lo, hi)
        A, d = _backward(body, trace, C, len(body))
        lb = concretize(A, d, lo, hi)
        l, u = torch.maximum(l, lb[:, :K]), torch.minimum(u, -lb[:, K:])
    if space == "probs":
        l, u = softmax_box(l, u)
    return l, u
