"""POT and POST: weights on powers of 2 or of sqrt 2 with a learned clip ``alpha`` (golden/README.md#pot-post).

    levels = alpha * ({0} U {+-base^-e : e = 0 .. max_exponent})     base 2 (POT) or sqrt 2 (POST)

The level set and the code layout come from :class:`golden.spec.WeightFormat`: ``levels="bbit"``
(default) is the true ``b``-bit code, ``2^b - 1`` levels, ``max_exponent = 2^(b-1) - 2``;
``levels="paper"`` the authors' ``2^b + 1`` levels (``max_exponent = 2^(b-1) - 1``, a
``b + 1``-bit code).

**Quantization.**  Nearest level with decision thresholds at the midpoints of consecutive
levels, scaled by ``alpha`` in the input's dtype (``fl(alpha * m_k)``); ``|w| >= alpha``
lands on ``+-alpha``.  Sign and magnitude are treated symmetrically: **a tie (``|w|`` exactly
on a threshold) goes to the larger magnitude** on both sides, so ``Q(-w) == -Q(w)`` for every
float (see :mod:`golden.quantizers._table`; the authors' code sent ``-0.75 -> -0.5`` but
``+0.75 -> 1``).  The search is a bucketize on the thresholds, never an ``N x levels`` tensor.

**Gradients.**  STE for ``w`` inside the clip range (``|w| < alpha``, decided on ``w``), 0
outside; ``alpha`` gets the LSQ-style ``level - w/alpha`` inside and ``sign(w)`` outside,
multiplied by ``g = 1 / sqrt(N)`` (``N`` = weights sharing the ``alpha``) — LSQ's factor with
``Qp`` replaced by the clip level 1 of the normalized grid, as the authors' POST code does.

**Initialization** (:meth:`init_from` only): ``alpha`` = the ``ceil(0.99 M)``-th smallest ``|w|``
of the tensor or of each dim-0 slice (the authors' 0.99 quantile).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError, UnknownSchemeError
from ..spec import WeightFormat, WeightScheme
from ._common import as_rows, check_calibration_input, check_input, check_positive, grad_scale, in_dtype, per_row_count
from ._table import TableQuantize, bucket_index, scaled_thresholds

BASES = {"2": WeightScheme.POT, "sqrt2": WeightScheme.POST}
INIT_QUANTILE = 0.99


def symmetric_levels(magnitudes: torch.Tensor) -> torch.Tensor:
    """``[-m_max .. -m_min, 0, m_min .. m_max]`` from ascending positive magnitudes."""
    return torch.cat([-magnitudes.flip(0), magnitudes.new_zeros(1), magnitudes])


def midpoints(levels: torch.Tensor) -> torch.Tensor:
    """Decision thresholds halfway between consecutive sorted levels."""
    return (levels[1:] + levels[:-1]) / 2


def quantile_abs_rows(rows: torch.Tensor, q: float) -> torch.Tensor:
    """The ``ceil(q * M)``-th smallest ``|x|`` of each row of a ``(R, M)`` matrix."""
    k = min(rows.shape[1], max(1, math.ceil(q * rows.shape[1])))
    return rows.abs().kthvalue(k, dim=1).values


class PowerQuantizer(nn.Module):
    """POT (``base="2"``) / POST (``base="sqrt2"``) weight fake-quantizer with a learnable ``alpha``.

    ``per_channel=True``: one ``alpha`` per dim-0 slice (any weight rank); pass ``channels`` to
    size it up front, otherwise :meth:`init_from` does.

    Integer export: :meth:`quantize_codes` gives ``golden.spec`` code words (sign bit above the
    exponent field, canonical all-ones zero code) for :attr:`weight_format`; the value of a code
    is ``alpha * (-1)^sign * base^-exponent`` and :meth:`dequantize_codes` reproduces
    ``forward`` bit for bit.
    """

    def __init__(
        self, bits: int, base: str = "sqrt2", levels: str = "bbit", per_channel: bool = False, channels: int | None = None
    ) -> None:
        super().__init__()
        if base not in BASES:
            raise UnknownSchemeError(f"power base {base!r} does not exist; expected one of {tuple(BASES)}")
        if channels is not None and not per_channel:
            raise ConfigError("channels is only meaningful with per_channel=True")
        self.weight_format = WeightFormat(BASES[base], bits, levels)
        self.bits, self.base, self.level_convention, self.per_channel = bits, base, levels, per_channel
        fmt = self.weight_format
        self.positive_levels = fmt.max_exponent + 1
        magnitudes = torch.tensor([fmt.power_value(e) for e in range(fmt.max_exponent, -1, -1)], dtype=torch.float64)
        self._levels = symmetric_levels(magnitudes)
        self._thresholds = midpoints(self._levels)
        self.alpha = nn.Parameter(torch.ones(channels if channels is not None else 1))

    def config(self) -> dict:
        return {"type": "power", "bits": self.bits, "base": self.base, "levels": self.level_convention, "per_channel": self.per_channel}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items() if k != "type")

    def levels(self) -> torch.Tensor:
        """Normalized level set (``alpha = 1``), sorted, float64: ``2 * positive_levels + 1`` entries."""
        return self._levels.clone()

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> None:
        """``alpha`` = 0.99 quantile of ``|w|`` (per tensor or per dim-0 slice); 1 where that is 0."""
        check_calibration_input(x)
        alpha = quantile_abs_rows(as_rows(in_dtype(x, self.alpha.dtype).detach(), self.per_channel), INIT_QUANTILE)
        alpha = torch.where(alpha > 0, alpha, torch.ones_like(alpha)).to(self.alpha.dtype)
        self.alpha.data = alpha if self.per_channel else alpha.view(1)

    def _check(self, x: torch.Tensor) -> None:
        check_input(x)
        check_positive("power quantizer alpha", self.alpha)
        if self.per_channel and (x.dim() == 0 or self.alpha.numel() != x.shape[0]):
            raise ConfigError(
                f"per-channel alpha has {self.alpha.numel()} entries but the input has shape {tuple(x.shape)}: "
                "call init_from(x) or set alpha to one entry per dim-0 slice"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        if x.numel() == 0:
            return x.clone()
        working = in_dtype(x, self.alpha.dtype)
        rows = x.shape[0] if self.per_channel else 1
        scale = grad_scale(self.alpha, 1.0 / math.sqrt(per_row_count(x, self.per_channel))).view(-1, 1)
        out = TableQuantize.apply(working.contiguous(), rows, scale, None, self._thresholds, self._levels, True, True)
        return out.to(x.dtype)

    @torch.no_grad()
    def level_index(self, x: torch.Tensor) -> torch.Tensor:
        """Signed level index ``i`` in ``-P..P`` (int64): the value is ``sign(i) * alpha * levels()[P + |i|]``."""
        self._check(x)
        rows = as_rows(in_dtype(x, self.alpha.dtype), self.per_channel)
        thresholds = scaled_thresholds(self.alpha.detach().view(-1, 1), self._thresholds, signed=True)
        return (bucket_index(rows, thresholds) - self.positive_levels).view_as(x)

    @torch.no_grad()
    def quantize_codes(self, x: torch.Tensor) -> torch.Tensor:
        """``golden.spec`` code words (int64, shape of ``x``) for :attr:`weight_format`."""
        index = self.level_index(x)
        rank = index.abs()
        exponent = torch.where(rank == 0, -1, self.positive_levels - rank)
        codes = self.weight_format.power_code_from_level((index < 0).numpy(), exponent.numpy())
        return torch.from_numpy(codes)

    @torch.no_grad()
    def dequantize_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Real weights of ``golden.spec`` code words, equal to ``forward`` bit for bit."""
        negative, exponent, zero = self.weight_format.unpack_power(self.weight_format.check_codes(codes.numpy()))
        rank = torch.from_numpy(self.positive_levels - exponent)
        index = torch.where(torch.from_numpy(zero), 0, torch.where(torch.from_numpy(negative), -rank, rank))
        rows = as_rows(index + self.positive_levels, self.per_channel)
        table = (self.alpha.detach().view(-1, 1) * self._levels.to(self.alpha.dtype)).contiguous()
        return torch.gather(table.expand(rows.shape[0], -1), 1, rows).view(codes.shape)
