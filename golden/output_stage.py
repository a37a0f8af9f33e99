"""The output stage's integer steps, in the order the accelerator's output lanes perform them.

Per output value (GEMM row ``m``, channel ``c``) of one run, with per-channel integers:

1. ``t = sign[c] * acc + bias[c]`` (:func:`signed_total`): the channel's sign (a BatchNorm
   gamma < 0) is one negation of the accumulator, exact in ``RequantSpec.sum_bits``;
2. ``t += rescale(shortcut[m, c], shortcut_mantissa[c], shortcut_shift[c])`` (:func:`output_total`):
   the residual add.  The shortcut operand is another layer's output — codes, LCQ level values
   or its ``t`` — already subsampled and channel-padded by the host, which moves it like any
   operand; the rescale (round half up) aligns it to this layer's unit;
3. the requantizer on ``t`` (:mod:`golden.requantization`): ``clip(rescale(t, m, s), 0, 2^b - 1)``
   — the clip at 0 is the ReLU — or the threshold bank, or ``t`` itself (RAW).

A global average pool replaces step 3 by :func:`global_pool_sum` — ``sum_positions relu(t)`` per
sample and channel, :func:`pool_sum_bits` wide — and requantizes that sum once with ``1/(H*W)``
folded into the multiplier.

ASQ's output (per-sample step ``s * beta``) needs the layer's whole output before any code: the
first run holds ``relu(t)`` on chip and sums it per channel (:func:`global_pool_sum`); the host
turns the integer sums into the adapter's input (:func:`adapter_input`) and ``beta`` into the
sample's multipliers; a second pass requantizes the held values.  Requantizing ``relu(t)``
equals requantizing ``t``: the clip at 0 maps every negative ``t`` to code 0 either way.

A signed input runs as two unsigned passes (``golden.integer.IntegerLayer.accumulate``) and
step 2 combines them (:func:`two_pass_totals`): the first pass writes
``t1 = sign * acc(max(x, 0)) + bias`` (RAW), the second adds ``-sign * acc(max(-x, 0))`` to
``t1`` taken as its shortcut at multiplier 1 (:data:`IDENTITY_MULTIPLIER`, exact).  Negating
in the output stage instead of the weights avoids the int weight code ``-2^(b-1)``, whose
negation has no code.
"""

from __future__ import annotations

import numpy as np

from .requantization import rescale
from .spec import MULTIPLIER_BITS, signed_range

#: ``(mantissa, shift)`` with ``rescale(v, *IDENTITY_MULTIPLIER) == v`` for every integer ``v``
IDENTITY_MULTIPLIER = (1 << (MULTIPLIER_BITS - 1), MULTIPLIER_BITS - 1)


def signed_total(acc: np.ndarray, sign: np.ndarray | int, bias: np.ndarray | int) -> np.ndarray:
    """Step 1: ``sign * acc + bias`` (``sign`` is +1 or -1, broadcast against ``acc``)."""
    return np.where(np.asarray(sign) < 0, -np.asarray(acc, dtype=np.int64), acc) + np.asarray(bias, dtype=np.int64)


def output_total(
    acc: np.ndarray,
    sign: np.ndarray | int,
    bias: np.ndarray | int,
    shortcut: np.ndarray | None = None,
    shortcut_mantissa: np.ndarray | int = IDENTITY_MULTIPLIER[0],
    shortcut_shift: np.ndarray | int = IDENTITY_MULTIPLIER[1],
) -> np.ndarray:
    """Steps 1 and 2: the value the requantizer sees."""
    total = signed_total(acc, sign, bias)
    if shortcut is None:
        return total
    return total + rescale(shortcut, shortcut_mantissa, shortcut_shift, "shortcut")


def two_pass_totals(
    acc_positive: np.ndarray, acc_negative: np.ndarray, sign: np.ndarray | int, bias: np.ndarray | int
) -> tuple[np.ndarray, np.ndarray]:
    """``(t1, t)`` of a signed input's two passes; ``t == sign * (acc_positive - acc_negative) + bias``."""
    first = signed_total(acc_positive, sign, bias)
    return first, output_total(acc_negative, -np.asarray(sign), 0, first)


def global_pool_sum(total: np.ndarray) -> np.ndarray:
    """``sum over H, W of relu(t)`` for ``t`` of shape ``[N, C, H, W]``."""
    return np.maximum(total, 0).sum(axis=(2, 3))


def pool_sum_bits(sum_bits: int, positions: int) -> int:
    """Unsigned width of :func:`global_pool_sum` over up to ``positions`` values of a ``sum_bits``-bit ``t``."""
    return (positions * signed_range(sum_bits)[1]).bit_length()


def adapter_input(sums: np.ndarray, positions: int, spatial: int, unit: np.ndarray) -> np.ndarray:
    """The ASQ adapter's real input ``[N, C]`` from the integer sums of ``relu(t)`` over ``positions`` values each.

    ``spatial``: positions a global pool already summed into each value; ``unit``: ``[N, C]``.
    """
    return np.asarray(sums, dtype=np.float64) / positions / spatial * unit
