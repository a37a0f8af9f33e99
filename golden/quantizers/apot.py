"""APoT: additive powers-of-two quantization (Li, Dong, Wang, ICLR 2020; golden/README.md#apot) — the peer baseline.

**Levels.**  Each level is a sum of one term from each of two or three small sets of powers of
two, normalized so the largest level is 1 (``build_power_value`` of the authors' code).  For
``B`` magnitude bits:

====  ======================================================================  ======
 B    terms                                                                   levels
====  ======================================================================  ======
 2    {0, 2^-1, 2^-2, 2^-3}  (a single term: plain powers of two)                4
 3    {0, 2^-1, 2^-2, 2^-4} + {0, 2^-3}                                          8
 4    {0, 2^-1, 2^-3, 2^-5} + {0, 2^-2, 2^-4, 2^-6}                             16
 5    {0, 2^-1, 2^-3, 2^-6} + {0, 2^-2, 2^-4, 2^-7} + {0, 2^-5}                 32
 6    {0, 2^-1, 2^-4, 2^-7} + {0, 2^-2, 2^-5, 2^-8} + {0, 2^-3, 2^-6, 2^-9}     64
====  ======================================================================  ======

(The paper writes the 4-bit set as ``{0, 2^0, 2^-2, 2^-4} + {0, 2^-1, 2^-3, 2^-5}``, the same set
doubled; after normalization they coincide.)  Activations (unsigned) use ``B = bits``; weights
(signed) use ``B = bits - 1`` magnitude bits and a sign, ``2^bits - 1`` levels; 2-bit weights
are uniform ternary ``{-1, 0, 1}``, as the authors' code does.  Supported: weights 2..7 bits,
activations 2..6 bits.

**Quantization.**  ``x / alpha`` clipped to ``[-1, 1]`` (``[0, 1]`` for activations), then the
nearest level by bucketize on level midpoints; ties go to the larger magnitude (see
:mod:`golden.quantizers._table`).

**Weight normalization** (weights, ``normalize=True``, the authors' choice): the quantizer sees
``w - mean(w)`` in units of ``std(w)`` (unbiased std; both statistics treated as constants, as
the authors' ``weight.data`` does) and its output is multiplied back by ``std(w)``, so the layer
keeps its scale without a following BatchNorm (the authors leave the output in std units and
let BN absorb the factor).  The mean is not added back: the output stays on the symmetric grid
``alpha * std(w) * levels``.  Computed without a normalized copy of the weights: the decision
thresholds are ``mean + alpha * std * m_k`` in the weights' own units.

**Gradients** (the authors'): ``alpha`` gets ``level - x/alpha`` inside and ``sign(x)`` (1 for
activations) outside, no gradient scaling; weights get the unclipped identity gradient
(``grad for weights will not be clipped``); activations get 0 outside ``(0, alpha)``.
``alpha`` starts at the authors' constants, 3.0 (weights, std units) and 8.0 (activations);
:meth:`init_from` (not in the authors' code) sets it to the 0.99 quantile of ``|x|``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..apot_format import APOT_TERMS
from ..errors import ConfigError, UnsupportedBitsError
from ..spec import TrainingScheme
from ._common import as_rows, check_calibration_input, check_input, check_positive, in_dtype
from ._table import TableQuantize, bucket_index, scaled_thresholds
from .power import INIT_QUANTILE, midpoints, quantile_abs_rows, symmetric_levels

WEIGHT_INIT_ALPHA = 3.0
ACT_INIT_ALPHA = 8.0


def apot_magnitudes(magnitude_bits: int) -> torch.Tensor:
    """The ``2^B`` normalized APoT magnitudes (float64, ascending, first 0, last 1)."""
    if magnitude_bits not in APOT_TERMS or magnitude_bits < 2:
        raise UnsupportedBitsError(f"APoT levels exist for 2..6 magnitude bits, got {magnitude_bits}")
    sums = torch.zeros(1, dtype=torch.float64)
    for exponents in APOT_TERMS[magnitude_bits]:
        terms = torch.tensor([0.0] + [2.0**-e for e in exponents], dtype=torch.float64)
        sums = (sums[:, None] + terms[None, :]).flatten()
    values = torch.unique(sums)  # sorted
    if values.numel() != 1 << magnitude_bits:
        raise AssertionError(f"APoT set for B={magnitude_bits} has {values.numel()} distinct levels")
    return values / values[-1]


class APoTQuantizer(nn.Module):
    """APoT fake-quantizer with a learnable clip ``alpha``; ``signed=True`` for weights.

    Integer export: :meth:`quantize_codes` gives the signed level index ``i`` (``-P..P`` for
    weights, ``0..2^bits - 1`` for activations); the value is ``output_scale(x) * levels()[i0 + i]``
    with ``i0`` the index of level 0.  (The hardware's apot code words: :mod:`golden.apot_format`.)
    """

    def __init__(self, bits: int, signed: bool = True, normalize: bool | None = None) -> None:
        super().__init__()
        if not isinstance(bits, int) or isinstance(bits, bool):
            raise UnsupportedBitsError(f"APoT bits must be an int, got {bits!r}")
        normalize = signed if normalize is None else normalize
        if normalize and not signed:
            raise ConfigError("APoT weight normalization applies to signed (weight) quantizers only")
        self.bits, self.signed, self.normalize = bits, signed, normalize
        if signed:
            if not 2 <= bits <= 7:
                raise UnsupportedBitsError(f"APoT weights support 2..7 bits, got {bits}")
            magnitudes = torch.tensor([0.0, 1.0], dtype=torch.float64) if bits == 2 else apot_magnitudes(bits - 1)
            self._levels = symmetric_levels(magnitudes[1:])
        else:
            if not 2 <= bits <= 6:
                raise UnsupportedBitsError(f"APoT activations support 2..6 bits, got {bits}")
            self._levels = apot_magnitudes(bits)
        self._thresholds = midpoints(self._levels)
        self.zero_index = int(torch.nonzero(self._levels == 0)[0, 0])
        self.alpha = nn.Parameter(torch.tensor([WEIGHT_INIT_ALPHA if signed else ACT_INIT_ALPHA]))

    def config(self) -> dict:
        return {"type": TrainingScheme.APOT.value, "bits": self.bits, "signed": self.signed, "normalize": self.normalize}

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}, normalize={self.normalize}"

    def levels(self) -> torch.Tensor:
        """Normalized level set (``alpha = 1``), sorted, float64."""
        return self._levels.clone()

    def _statistics(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``(shift, unit)``: the weights' mean and std as constants with normalization, else ``(None, 1)``.

        The std is floored at the dtype's smallest normal so constant weights stay finite.
        """
        data = x.detach()
        if not self.normalize:
            return None, data.new_ones(())
        std = data.std() if data.numel() > 1 else data.new_ones(())
        return data.mean(), std.clamp_min(torch.finfo(data.dtype).tiny)

    def output_scale(self, x: torch.Tensor) -> torch.Tensor:
        """``alpha * std(x)`` (normalized weights) or ``alpha``: the factor on :meth:`levels`."""
        return (self.alpha * self._statistics(in_dtype(x, self.alpha.dtype))[1]).detach()

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> None:
        """``alpha`` = 0.99 quantile of ``|x|`` in the quantizer's own units (std units if normalized)."""
        check_calibration_input(x)
        x = in_dtype(x, self.alpha.dtype)
        shift, unit = self._statistics(x)
        centred = x.detach() - shift if shift is not None else x.detach()
        alpha = quantile_abs_rows(as_rows(centred, False), INIT_QUANTILE) / unit
        self.alpha.data = torch.where(alpha > 0, alpha, torch.ones_like(alpha)).to(self.alpha.dtype).view(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x)
        check_positive("APoT alpha", self.alpha)
        if x.numel() == 0:
            return x.clone()
        working = in_dtype(x, self.alpha.dtype)
        shift, unit = self._statistics(working)
        scale = (self.alpha * unit).view(1, 1)
        out = TableQuantize.apply(working.contiguous(), 1, scale, shift, self._thresholds, self._levels, self.signed,
                                  not self.signed)
        return out.to(x.dtype)

    @torch.no_grad()
    def quantize_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Signed level index relative to level 0 (int64, shape of ``x``)."""
        x = in_dtype(x, self.alpha.dtype)
        check_positive("APoT alpha", self.alpha)
        shift, unit = self._statistics(x)
        thresholds = scaled_thresholds((self.alpha * unit).view(1, 1), self._thresholds, self.signed, shift)
        return (bucket_index(as_rows(x, False), thresholds) - self.zero_index).view_as(x)
