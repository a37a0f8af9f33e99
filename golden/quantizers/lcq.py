"""LCQ: learnable companding quantization (Yamamoto, CVPR 2021; golden/README.md#lcq).

Clip, compress, round, expand, with a learnable piecewise-linear compander ``g`` of ``K``
equal-width intervals on ``[0, 1]``::

    t = softmax(theta);  gamma_k = K t_k;  beta_k = t_0 + ... + t_(k-1);  d_k = k / K
    g(u)    = gamma_k (u - d_k) + beta_k            u in [d_k, d_(k+1))
    g^-1(y) = (y - beta_j) / gamma_j + d_j          y in [beta_j, beta_(j+1))
    out     = sign(x) * alpha * g^-1(round(g(|x| / alpha) * Q) / Q)     if |x| < alpha,
              sign(x) * alpha                                           otherwise

with ``Q = 2^b - 1`` (activations, unsigned) or ``2^(b-1) - 1`` (weights, signed).

**How it is computed.**  ``g`` is strictly increasing, so ``round(g(u) Q) = j`` exactly when
``u`` lies between the decision thresholds ``g^-1((j -+ 1/2) / Q)``: the code is a bucketize of
``x`` against ``alpha * g^-1((i - 1/2) / Q)``, ``i = 1..Q`` — the threshold bank the hardware
uses — and the output a gather from the ``Q + 1`` expanded levels ``L_j = g^-1(j / Q)``.  No
per-element compander evaluation and nothing of size ``N x K`` in the forward pass.  Tie rule:
an input exactly on a threshold goes to the larger magnitude (the hardware's ``acc >= t``),
where ``round`` (half to even) of a computed ``g(u) Q`` could go either way; off ties the two
agree up to the float rounding of ``g`` itself, and the threshold form is authoritative.

**Gradients.**  STE for ``x`` inside the clip range (``|x| < alpha``; activations ``0 < x <
alpha``), 0 outside.  ``alpha``: ``L_j - x/alpha`` inside, ``sign(x)`` (1) above, 0 below,
times LSQ's ``g = 1 / sqrt(N * Q)`` (the public code's ``sqrt(Q / N)`` is not LSQ's).
``theta`` gets both paths of the paper, via ``gamma`` and ``beta`` then softmax (autograd):

* through ``g^-1`` at the output's interval — ``d L_j / d theta`` with ``y = j/Q`` fixed, summed
  over the elements with code ``j`` (a ``bincount`` over codes);
* through ``g`` at the input's interval, with a straight-through round:
  ``(1 / gamma_q(j)) * d g(u) / d theta`` — ``d g / d gamma_k = u - d_k``, ``d g / d beta_k = 1``
  for ``u`` in interval ``k = floor(u K)`` (a ``bincount`` over intervals).

**2-bit weights** use plain uniform quantization (levels ``{-1, 0, 1}``, threshold 1/2, no
``theta``): three levels leave nothing to compand.

**Level re-quantization** (``level_bits=B``): the expanded levels are rounded (straight-through)
onto a uniform grid, ``L_j <- round(L_j M) / M`` with ``M = 2^(B-1) - 1`` (weights: a symmetric
``B``-bit level table, ``golden.spec`` ``lcq``) or ``2^B - 1`` (activations: unsigned table
entries).  :meth:`integer_levels` gives the integers ``round(L_j M)``.  Decisions (thresholds)
stay those of the compander; only the output values move.

**LWN (limited weight normalization)**, ``lwn=True`` (weights): the quantizer sees
``x = (w - mean(w)) / sigma`` with ``sigma = max(std(w), 1e-12)``, the population standard
deviation (``correction=0``) over the whole tensor, and its output is multiplied by ``sigma``:
``out = sigma * Q(x)``.  The mean is not added back (the output stays on the symmetric level
grid ``sigma * alpha * levels``).  Gradients flow through ``mean`` and ``sigma`` (autograd); the
normalization exists only inside the quantizer, the stored weight is untouched.  It is computed
without a normalized copy of ``w``: the clip is ``alpha * sigma``, the decision thresholds are
``mean + alpha * sigma * t_i`` in the weights' units, and the output ``(alpha * sigma) * L_j``.

**Initialization** (:meth:`init_from` only): ``theta = 0`` (``g`` the identity) from construction;
``alpha = Q * 2 mean|x| / sqrt(Q)`` — LSQ's initial step times ``Q`` (on the normalized ``x``
with LWN).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import CodeRangeError, ConfigError, NonFiniteInputError
from ..spec import MAX_BITS, MAX_LEVEL_BITS, MIN_BITS, MIN_LEVEL_BITS, TrainingScheme
from ._common import (
    as_rows,
    check_bits,
    check_calibration_input,
    check_input,
    check_positive,
    grad_scale,
    in_dtype,
    round_ste,
    row_blocks,
)
from ._table import bucket_index, clip_block, scaled_thresholds, table_forward

DEFAULT_INTERVALS = 16
LWN_MIN_STD = 1e-12


def lwn_statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """LWN's ``(mean, sigma, floored)``: population std, floored at ``LWN_MIN_STD`` (constants).

    Two passes over blocks with float64 accumulation (``torch.std_mean``'s single-threaded
    Welford pass is several times slower on large tensors).
    """
    flat = x.detach().reshape(1, -1)
    total = torch.zeros((), dtype=torch.float64)
    for rs, cs in row_blocks(*flat.shape):
        total += flat[rs, cs].sum(dtype=torch.float64)
    mean = (total / flat.numel()).to(x.dtype)
    squares = torch.zeros((), dtype=torch.float64)
    for rs, cs in row_blocks(*flat.shape):
        centred = flat[rs, cs].reshape(-1).double() - total / flat.numel()
        squares += torch.dot(centred, centred)
    std = torch.sqrt(squares / flat.numel()).to(x.dtype)
    floored = bool(std < LWN_MIN_STD)
    return mean, std.clamp_min(LWN_MIN_STD), floored


class LCQFakeQuant(torch.autograd.Function):
    """Forward and all gradients of LCQ (see the module docstring); ``x`` contiguous, any shape.

    Inputs: ``x``; ``alpha`` ``(1, 1)`` (gradient-scaled); ``lwn`` (normalize inside, see below);
    normalized ``thresholds`` ``(T,)`` (constants); the level vector ``levels`` ``(L,)`` (a
    function of theta); the compander's ``gamma`` and ``beta`` ``(K,)`` and ``inv_slope``
    ``(L,)`` — ``1 / gamma`` of the interval holding each level's ``y = j / Q`` — or three
    Nones when theta needs no gradient (no autograd, a frozen theta, the uncompanded 2-bit
    quantizer); the per-element codes the theta paths need are only kept otherwise.

    With ``lwn`` the clip is ``scale = alpha * sigma`` and the input is centred on the mean; the
    statistics' own gradients (``d mean / dx = 1/N``, ``d sigma / dx = (x - mean) / (N sigma)``)
    are added into the input gradient in place, so LWN costs no N-sized tensor of its own.
    """

    @staticmethod
    def forward(ctx, x, alpha, lwn: bool, thresholds, levels, gamma, beta, inv_slope, signed: bool):
        if lwn:
            shift, sigma, ctx.floored = lwn_statistics(x)
            scale = alpha.detach() * sigma
        else:
            shift, sigma, scale = None, None, alpha.detach()
        thr = scaled_thresholds(scale, thresholds, signed, shift)
        table = (scale * levels.detach()).contiguous()
        out = torch.empty_like(x)
        theta_paths = gamma is not None
        codes = torch.empty(x.shape, dtype=torch.uint8) if theta_paths else None
        table_forward(x.view(1, -1), thr, table, out.view(1, -1), codes.view(1, -1) if theta_paths else None)
        ctx.save_for_backward(x, out, alpha, codes, gamma.detach() if theta_paths else None, inv_slope)
        ctx.shift, ctx.sigma, ctx.scale, ctx.signed, ctx.theta_paths = shift, sigma, scale, signed, theta_paths
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out, alpha, codes, gamma, inv_slope = ctx.saved_tensors
        s = ctx.scale
        grad_x = torch.empty_like(x)
        x2d, out2d, grad2d, grad_x2d = (t.view(1, -1) for t in (x, out, grad.contiguous(), grad_x))
        codes2d = codes.view(1, -1) if ctx.theta_paths else None
        grad_scale = torch.zeros((), dtype=torch.float64)
        grad_x_sum = torch.zeros((), dtype=torch.float64)  # the mean's gradient is minus this
        codes_count = inv_slope.numel() if ctx.theta_paths else 0
        grad_levels = torch.zeros(codes_count, dtype=torch.float64)
        intervals = gamma.numel() if ctx.theta_paths else 0
        slope_sums = torch.zeros(intervals, dtype=torch.float64)  # sum of H over interval k
        moment_sums = torch.zeros(intervals, dtype=torch.float64)  # sum of H * u over interval k
        for rs, cs in row_blocks(*x2d.shape):
            g = grad2d[rs, cs]
            centred, inside, sums = clip_block(x2d[rs, cs], out2d[rs, cs], g, s, ctx.signed, ctx.shift)
            grad_scale += sums.sum()
            gx = grad_x2d[rs, cs]
            torch.mul(g, inside, out=gx)
            grad_x_sum += gx.sum(dtype=torch.float64)
            if not ctx.theta_paths:
                continue
            code = codes2d[rs, cs].reshape(-1)
            gx, centred = gx.reshape(-1), centred.reshape(-1)
            grad_levels += torch.bincount(code, weights=g.reshape(-1), minlength=codes_count)
            h = gx * inv_slope.index_select(0, code.to(torch.int32))
            if ctx.signed:
                h *= torch.sign(centred)
            u = (centred.abs() if ctx.signed else centred) / s.view(())  # a new tensor: centred may view x
            interval = (u * intervals).floor_().clamp_(0, intervals - 1).to(torch.int32)
            slope_sums += torch.bincount(interval, weights=h, minlength=intervals)
            moment_sums += torch.bincount(interval, weights=h.mul_(u), minlength=intervals)
        sv = s.view(()).double()
        grad_scale /= sv  # d loss / d scale
        if ctx.sigma is not None:
            _add_statistics_gradient(x2d, grad_x2d, ctx, -grad_x_sum, grad_scale * alpha.detach().view(()).double())
        grad_alpha = grad_scale * (ctx.sigma.double() if ctx.sigma is not None else 1.0)
        dt = alpha.dtype
        grad_theta_paths = (None, None, None)
        if ctx.theta_paths:
            knots = torch.arange(intervals, dtype=torch.float64) / intervals
            grad_theta_paths = (
                (grad_levels * sv).to(dt),
                ((moment_sums - knots * slope_sums) * sv).to(dt),
                (slope_sums * sv).to(dt),
            )
        return (grad_x, grad_alpha.to(dt).view_as(alpha), None, None, *grad_theta_paths, None, None)


def _add_statistics_gradient(x2d, grad_x2d, ctx, grad_mean: torch.Tensor, grad_sigma: torch.Tensor) -> None:
    """``grad_x += grad_mean / N + grad_sigma * (x - mean) / (N sigma)`` in place, block by block.

    ``sigma = max(std, LWN_MIN_STD)`` has no gradient where the floor is active.
    """
    n = x2d.numel()
    offset = float(grad_mean) / n
    slope = 0.0 if ctx.floored else float(grad_sigma) / (n * float(ctx.sigma))
    for rs, cs in row_blocks(*x2d.shape):
        block = grad_x2d[rs, cs]
        block.add_(x2d[rs, cs] - ctx.shift, alpha=slope).add_(offset)


class LCQQuantizer(nn.Module):
    """LCQ fake-quantizer: learnable clip ``alpha`` and compander ``theta`` (``intervals`` numbers).

    Integer export: :meth:`quantize_codes` gives ``sign * j`` (weights, ``-Q..Q``) or ``j``
    (activations, ``0..Q``); the value is ``output_scale(x) * sign * expanded_levels()[j]``.
    :meth:`thresholds` are the normalized decision thresholds (the activation threshold bank is
    ``output_scale * thresholds()``), :meth:`integer_levels` the level table when ``level_bits``
    is set.
    """

    def __init__(
        self, bits: int, signed: bool, intervals: int = DEFAULT_INTERVALS, level_bits: int | None = None, lwn: bool = False
    ) -> None:
        super().__init__()
        self.bits = check_bits(bits, MIN_BITS, MAX_BITS, "LCQQuantizer")
        if not isinstance(intervals, int) or isinstance(intervals, bool) or intervals < 1:
            raise ConfigError(f"intervals must be a positive int, got {intervals!r}")
        if level_bits is not None:
            check_bits(level_bits, MIN_LEVEL_BITS, MAX_LEVEL_BITS, "LCQ level_bits")
        if lwn and not signed:
            raise ConfigError("LWN normalizes weights: it needs signed=True")
        self.signed, self.intervals, self.level_bits, self.lwn = bool(signed), intervals, level_bits, lwn
        self.q = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
        self.compand = not (signed and bits == 2)
        if self.compand:
            self.theta = nn.Parameter(torch.zeros(intervals))
        else:
            self.register_parameter("theta", None)
        self.alpha = nn.Parameter(torch.ones(1))

    def config(self) -> dict:
        return {
            "type": TrainingScheme.LCQ.value,
            "bits": self.bits,
            "signed": self.signed,
            "intervals": self.intervals,
            "level_bits": self.level_bits,
            "lwn": self.lwn,
        }

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items() if k != "type")

    # ---------------------------------------------------------------- compander tables (small)
    def _compander(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gamma, beta)`` from ``theta`` (differentiable); a non-finite theta, or one so spread that an
        interval's width underflows to 0, raises instead of putting every input on one level."""
        theta = self.theta.detach()
        if not bool(torch.isfinite(theta).all()):
            raise NonFiniteInputError(f"LCQ theta must be finite, got {theta.flatten()[:8].tolist()}")
        t = torch.softmax(self.theta, dim=0)
        if not bool((t.detach() > 0).all()):
            raise CodeRangeError(f"LCQ theta {theta.flatten()[:8].tolist()} gives an interval of zero width "
                                 "(its softmax underflows)")
        return t * self.intervals, torch.cat([t.new_zeros(1), torch.cumsum(t, 0)[:-1]])

    def _interval_of(self, y: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """Interval ``j`` with ``beta_j <= y < beta_(j+1)`` (clamped to ``0..K-1``)."""
        return (torch.bucketize(y, beta.detach(), right=True) - 1).clamp_(0, self.intervals - 1)

    def _expand(self, y: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """``g^-1(y)`` for a small vector ``y`` (differentiable in gamma and beta)."""
        j = self._interval_of(y, beta)
        return (y - beta[j]) / gamma[j] + j.to(y.dtype) / self.intervals

    def _level_scale(self) -> int:
        """``M``: the integer grid of re-quantized levels."""
        return (1 << (self.level_bits - 1)) - 1 if self.signed else (1 << self.level_bits) - 1

    def _tables(self):
        """``(thresholds, magnitudes, inv_slope, gamma, beta)``; gamma/beta/inv_slope None without companding.

        ``magnitudes`` are the expanded levels ``L_0..L_Q`` (``L_0 = 0``, ``L_Q = 1`` exactly),
        re-quantized when ``level_bits`` is set.
        """
        dtype = self.alpha.dtype
        grid = torch.arange(self.q + 1, dtype=dtype) / self.q
        half_steps = (torch.arange(1, self.q + 1, dtype=dtype) - 0.5) / self.q
        if not self.compand:
            magnitudes, thresholds, inv_slope, gamma, beta = grid, half_steps, None, None, None
        else:
            gamma, beta = self._compander()
            magnitudes = torch.cat([self._expand(grid[:-1], gamma, beta), grid.new_ones(1)])
            with torch.no_grad():
                thresholds = self._expand(half_steps, gamma, beta)
                inv_slope = 1.0 / gamma[self._interval_of(grid, beta)]
        if self.level_bits is not None:
            m = self._level_scale()
            magnitudes = round_ste(magnitudes * m) / m
        return thresholds, magnitudes, inv_slope, gamma, beta

    def _signed(self, magnitudes: torch.Tensor) -> torch.Tensor:
        """Levels over the code range: ``-L_Q..-L_1, L_0..L_Q`` for weights."""
        return torch.cat([-magnitudes.flip(0)[:-1], magnitudes]) if self.signed else magnitudes

    def _mirrored(self, per_magnitude: torch.Tensor) -> torch.Tensor:
        """A per-magnitude quantity over the code range, the same for ``+-j``: ``v_Q..v_1, v_0..v_Q``."""
        return torch.cat([per_magnitude.flip(0)[:-1], per_magnitude]) if self.signed else per_magnitude

    def _signed_thresholds(self, thresholds: torch.Tensor) -> torch.Tensor:
        """Decision thresholds over the code range: ``-t_Q..-t_1, t_1..t_Q`` for weights."""
        return torch.cat([-thresholds.flip(0), thresholds]) if self.signed else thresholds

    @torch.no_grad()
    def thresholds(self) -> torch.Tensor:
        """Normalized decision thresholds ``g^-1((i - 1/2) / Q)``, ``i = 1..Q`` (ascending)."""
        return self._tables()[0].clone()

    @torch.no_grad()
    def expanded_levels(self) -> torch.Tensor:
        """Normalized level magnitudes ``L_0..L_Q`` (re-quantized if ``level_bits`` is set)."""
        return self._tables()[1].detach().clone()

    @torch.no_grad()
    def levels(self) -> torch.Tensor:
        """Normalized level set, sorted: ``-L_Q..L_Q`` (weights) or ``L_0..L_Q`` (activations)."""
        return self._signed(self._tables()[1].detach())

    @torch.no_grad()
    def integer_levels(self) -> torch.Tensor:
        """The level table's integers ``round(L_j M)`` (int64, ``j = 0..Q``); needs ``level_bits``."""
        if self.level_bits is None:
            raise ConfigError("integer_levels() needs level_bits: the expanded levels are not on an integer grid")
        return torch.round(self._tables()[1].detach() * self._level_scale()).to(torch.int64)

    # ---------------------------------------------------------------- data path
    def _scale_and_shift(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The clip in ``x``'s units (``alpha``, or ``alpha * sigma`` with LWN) and the centre (None, or the mean)."""
        alpha = self.alpha.detach().view(1, 1)
        if not self.lwn:
            return alpha, None
        mean, sigma, _ = lwn_statistics(x)
        return alpha * sigma, mean

    def output_scale(self, x: torch.Tensor) -> torch.Tensor:
        """``alpha`` (times ``sigma`` with LWN): the factor on :meth:`levels` for input ``x``."""
        return self._scale_and_shift(in_dtype(x, self.alpha.dtype))[0].view(1)

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> None:
        """``alpha = 2 mean|x| sqrt(Q)`` on the quantizer's input (normalized with LWN)."""
        check_calibration_input(x)
        x = in_dtype(x, self.alpha.dtype)
        normalized = x.detach()
        if self.lwn:
            mean, sigma, _ = lwn_statistics(x)
            normalized = (normalized - mean) / sigma
        alpha = normalized.abs().mean() * 2.0 * math.sqrt(self.q)
        self.alpha.data = (alpha if alpha > 0 else torch.ones_like(alpha)).view(1).to(self.alpha.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x)
        check_positive("LCQ alpha", self.alpha)
        if x.numel() == 0:
            return x.clone()
        if x.dtype != self.alpha.dtype:
            return self.forward(in_dtype(x, self.alpha.dtype)).to(x.dtype)
        alpha = grad_scale(self.alpha, 1.0 / math.sqrt(x.numel() * self.q)).view(1, 1)
        thresholds, magnitudes, inv_slope, gamma, beta = self._tables()
        thresholds, levels = self._signed_thresholds(thresholds), self._signed(magnitudes)
        if levels.requires_grad:
            inv_slope = self._mirrored(inv_slope)
        else:  # no_grad, or a frozen theta: skip the theta paths and their per-element codes
            inv_slope = gamma = beta = None
        return LCQFakeQuant.apply(x.contiguous(), alpha, self.lwn, thresholds, levels, gamma, beta, inv_slope, self.signed)

    @torch.no_grad()
    def quantize_codes(self, x: torch.Tensor) -> torch.Tensor:
        """``sign * j`` (weights) or ``j`` (activations), int64, shape of ``x``."""
        x = in_dtype(x, self.alpha.dtype)
        check_positive("LCQ alpha", self.alpha)
        scale, shift = self._scale_and_shift(x)
        thresholds = scaled_thresholds(scale, self._signed_thresholds(self._tables()[0]), self.signed, shift)
        index = bucket_index(as_rows(x, False), thresholds)
        return (index - self.q if self.signed else index).view_as(x)
