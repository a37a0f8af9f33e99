"""Requantization, the datapath's last step (golden/README.md#datapath): multipliers, rounding, clipping, thresholds.

``clip((((acc + bias) * mantissa) + 2^(shift-1)) >> shift, 0, 2^b_out - 1)`` per output channel
(and per sample for ASQ) — round half up, the cheap hardware rounding — or, for LCQ activations,
a threshold bank ``code = #{k : acc + bias >= thresholds[k]}``.  The widths and limits
(``MULTIPLIER_BITS``, ``MAX_REQUANT_SHIFT``, ``MAX_SUM_BITS``) are :mod:`golden.spec`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import AccumulatorOverflowError, CodeRangeError, LevelTableError
from .spec import MAX_BITS, MAX_REQUANT_SHIFT, MAX_SUM_BITS, MIN_BITS, MULTIPLIER_BITS, check_bits


def quantize_multiplier(value: float | np.ndarray, bits: int = MULTIPLIER_BITS) -> tuple[np.ndarray, np.ndarray]:
    """``(mantissa, shift)`` arrays with ``mantissa * 2^-shift`` nearest to each ``value > 0``.

    The mantissa is normalized to ``[2^(bits-1), 2^bits)`` (full precision) unless the shift
    would exceed ``MAX_REQUANT_SHIFT``; a value too large for a non-negative shift raises.
    """
    values = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise CodeRangeError("requantization multipliers must be finite and positive")
    _, exponent = np.frexp(values)  # values = f * 2^exponent, f in [0.5, 1)
    shift = np.clip(bits - exponent, 0, MAX_REQUANT_SHIFT).astype(np.int64)
    mantissa = np.round(np.ldexp(values, shift)).astype(np.int64)
    overflow = mantissa >= (1 << bits)
    # rounding up to 2^bits: renormalize one step (exact, the mantissa is then 2^(bits-1))
    mantissa = np.where(overflow & (shift > 0), mantissa >> 1, mantissa)
    shift = np.where(overflow & (shift > 0), shift - 1, shift)
    if np.any(mantissa >= (1 << bits)):
        raise CodeRangeError(f"multiplier too large for a {bits}-bit mantissa and a non-negative shift")
    if np.any(mantissa == 0):
        raise CodeRangeError(f"multiplier below 2^-{MAX_REQUANT_SHIFT + 1} rounds to zero")
    return mantissa, shift


def requantize(
    acc: np.ndarray,
    bias: np.ndarray | int,
    mantissa: np.ndarray | int,
    shift: np.ndarray | int,
    out_bits: int,
) -> np.ndarray:
    """Next-layer activation codes: ``clip(rescale(acc + bias, mantissa, shift), 0, 2^out_bits - 1)``.

    ``bias``, ``mantissa`` and ``shift`` broadcast against ``acc`` (per channel on the last axis,
    or per sample and channel for ASQ).
    """
    check_bits("output bits", out_bits)
    total = np.asarray(acc, dtype=np.int64) + np.asarray(bias, dtype=np.int64)
    return np.clip(rescale(total, mantissa, shift, "accumulator + bias"), 0, (1 << out_bits) - 1)


def rescale(values: np.ndarray, mantissa: np.ndarray | int, shift: np.ndarray | int, what: str = "value") -> np.ndarray:
    """``round_half_up(values * mantissa / 2^shift)`` with no clipping: the requantizer's multiply and round.

    The rounding adds ``2^(shift-1)`` and shifts right arithmetically — what the hardware
    requantizer does; :func:`requantize` clips the result to the output codes, and a residual
    shortcut is aligned to another branch's accumulator scale with it unclipped.  ``what`` names
    the values in the overflow error.
    """
    values = np.asarray(values, dtype=np.int64)
    mantissa = np.asarray(mantissa, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if np.any(mantissa < 0) or np.any(mantissa >= (1 << MULTIPLIER_BITS)) or np.any(shift < 0) or np.any(shift > MAX_REQUANT_SHIFT):
        raise CodeRangeError(f"mantissa must be an unsigned {MULTIPLIER_BITS}-bit int and shift in 0..{MAX_REQUANT_SHIFT}")
    if values.size and int(np.abs(values).max()) >= (1 << MAX_SUM_BITS):
        raise AccumulatorOverflowError(f"{what} too wide to rescale exactly in 64 bits (|{what}| < 2^{MAX_SUM_BITS})")
    rounding = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
    return (values * mantissa + rounding) >> shift


def threshold_quantize(acc: np.ndarray, bias: np.ndarray | int, thresholds: np.ndarray) -> np.ndarray:
    """LCQ activation codes from a threshold bank: ``#{k : acc + bias >= thresholds[..., k]}``.

    ``thresholds`` has shape ``(..., 2^b - 1)`` (per channel on its leading axes, broadcast
    against ``acc``'s trailing channel axis) and must be non-decreasing along the last axis.
    """
    thresholds = np.asarray(thresholds)
    if thresholds.dtype.kind not in "iu":
        raise LevelTableError("thresholds must be integers")
    levels = thresholds.shape[-1] + 1
    if levels & (levels - 1) or not MIN_BITS <= levels.bit_length() - 1 <= MAX_BITS:
        raise LevelTableError(f"a threshold bank has 2^b - 1 entries (b in {MIN_BITS}..{MAX_BITS}), got {levels - 1}")
    if np.any(np.diff(thresholds, axis=-1) < 0):
        raise LevelTableError("thresholds must be non-decreasing")
    total = np.asarray(acc, dtype=np.int64) + np.asarray(bias, dtype=np.int64)
    return (total[..., None] >= thresholds.astype(np.int64)).sum(axis=-1)


@dataclass(frozen=True)
class RequantSpec:
    """Widths of the output stage that follows an ``accumulator_width``-bit accumulator.

    ``shortcut_bits``: signed width of the residual operand (0: no residual add); the operand is
    aligned with an unsigned ``multiplier_bits`` mantissa (:mod:`golden.output_stage`).
    """

    accumulator_width: int
    bias_bits: int
    multiplier_bits: int = MULTIPLIER_BITS
    shortcut_bits: int = 0

    @property
    def aligned_shortcut_bits(self) -> int:
        """Width of ``rescale(shortcut, mantissa, shift)``: the product's, at the smallest shift (0)."""
        return self.shortcut_bits + self.multiplier_bits if self.shortcut_bits else 0

    @property
    def sum_bits(self) -> int:
        """Width of ``sign * acc + bias`` (the negation fits: ``2^(w-1) + bias_max < 2^max(w, b)``), plus the aligned shortcut."""
        total = max(self.accumulator_width, self.bias_bits) + 1
        return max(total, self.aligned_shortcut_bits) + 1 if self.shortcut_bits else total

    @property
    def product_bits(self) -> int:
        """Width of ``(acc + bias) * mantissa`` (mantissa unsigned)."""
        return self.sum_bits + self.multiplier_bits
