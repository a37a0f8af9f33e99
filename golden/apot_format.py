"""APoT code words (golden/README.md#datapath): one field per additive term, so a PE shift-adds.

An APoT level is a sum of one term from each of a few small sets of powers of two (every set
also holds 0; :data:`APOT_TERMS`).  With ``S`` the largest exponent of the level set, every term
``2^-e`` is the exact integer ``1 << (S - e)`` in units of ``2^-S``, so the integer magnitude of
a level is ``sum_i 1 << (S - e_i)`` and its product with an activation value ``a`` is
``sum_i a << (S - e_i)``: one shifted copy of ``a`` per term, no multiplier, no truncation.

**The code word** of a signed ``b``-bit APoT weight (``B = b - 1`` magnitude bits), LSB first:
one field per term set ``i``, ``ceil(log2(n_i + 1))`` bits for its ``n_i`` exponents, field
value 0 for the zero term and ``k`` for the set's ``k``-th exponent (ascending), then the sign
bit on top.  The set sizes are ``2^w - 1``, so the fields fill exactly ``B`` bits and the code
is a true ``b``-bit word.  The sign is applied after the magnitude path (sign and magnitude),
so ``-0`` is a legal code with value 0; the export writes ``+0``.  Every combination of terms
gives a different sum (:func:`golden.quantizers.apot_magnitudes` checks it), so each level has
exactly one code.  2-bit weights are ternary: one set ``{2^0}``, ``S = 0``.

The normalization by the largest level ``m = sum_i 1 << (S - min(set_i))`` and ``2^-S`` go into
the layer's ``weight_scale``: the integer value of a code times ``alpha * std / m`` is the
fake-quant level exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .errors import CodeRangeError, UnsupportedBitsError

#: The additive terms for ``B`` magnitude bits, as exponents of 2 (each set also holds 0), the
#: authors' ``build_power_value`` sets; ``B = 1`` is the ternary weights' single term ``2^0``.
APOT_TERMS = {
    1: ((0,),),
    2: ((1, 2, 3),),
    3: ((1, 2, 4), (3,)),
    4: ((1, 3, 5), (2, 4, 6)),
    5: ((1, 3, 6), (2, 4, 7), (5,)),
    6: ((1, 4, 7), (2, 5, 8), (3, 6, 9)),
}
MIN_WEIGHT_BITS, MAX_WEIGHT_BITS = 1 + min(APOT_TERMS), 1 + max(APOT_TERMS)
MIN_ACT_BITS, MAX_ACT_BITS = 2, max(APOT_TERMS)


@dataclass(frozen=True)
class ApotTerms:
    """The term fields of ``magnitude_bits`` APoT magnitude bits: widths, shifts and integer magnitudes."""

    magnitude_bits: int

    def __post_init__(self) -> None:
        if self.magnitude_bits not in APOT_TERMS:
            raise UnsupportedBitsError(f"APoT levels exist for {min(APOT_TERMS)}..{max(APOT_TERMS)} magnitude bits, "
                                       f"got {self.magnitude_bits!r}")

    @property
    def sets(self) -> tuple[tuple[int, ...], ...]:
        return APOT_TERMS[self.magnitude_bits]

    @property
    def top_exponent(self) -> int:
        """``S``: the largest exponent, so each term ``2^-e`` is ``1 << (S - e)`` units of ``2^-S``."""
        return max(max(exponents) for exponents in self.sets)

    @property
    def field_widths(self) -> tuple[int, ...]:
        return tuple(len(exponents).bit_length() for exponents in self.sets)

    @property
    def field_offsets(self) -> tuple[int, ...]:
        return tuple(int(sum(self.field_widths[:i])) for i in range(len(self.sets)))

    @property
    def field_shifts(self) -> tuple[tuple[int, ...], ...]:
        """Per field, the left shift of ``a`` selected by field value ``k = 1..n_i`` (index ``k - 1``)."""
        return tuple(tuple(self.top_exponent - e for e in exponents) for exponents in self.sets)

    @property
    def max_magnitude(self) -> int:
        """``m``: the integer magnitude of the largest level (the normalization constant)."""
        return sum(1 << max(shifts) for shifts in self.field_shifts)

    def fields(self, magnitude_codes: np.ndarray) -> list[np.ndarray]:
        """The field values of magnitude codes (the code without its sign bit)."""
        codes = np.asarray(magnitude_codes, dtype=np.int64)
        return [(codes >> offset) & ((1 << width) - 1) for offset, width in zip(self.field_offsets, self.field_widths, strict=True)]

    def magnitude(self, magnitude_codes: np.ndarray) -> np.ndarray:
        """``sum_i 1 << shift_i(field_i)`` (0 for a zero field): the integer magnitude of each code."""
        return self.scaled(magnitude_codes, np.ones((), dtype=np.int64))

    def scaled(self, magnitude_codes: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``sum_i values << shift_i(field_i)``: the shift-add a PE computes (broadcast)."""
        values = np.asarray(values, dtype=np.int64)
        total = np.zeros(np.broadcast_shapes(np.shape(magnitude_codes), values.shape), dtype=np.int64)
        for field, shifts in zip(self.fields(magnitude_codes), self.field_shifts, strict=True):
            shift = np.array((0,) + shifts, dtype=np.int64)[field]
            total += np.where(field == 0, 0, values << shift)
        return total

    @cached_property
    def magnitude_table(self) -> np.ndarray:
        """Integer magnitude of every magnitude code ``0 .. 2^B - 1``."""
        return self.magnitude(np.arange(1 << self.magnitude_bits))

    @cached_property
    def levels(self) -> np.ndarray:
        """The ``2^B`` integer magnitudes, ascending (``levels / m`` are the normalized APoT levels)."""
        return np.sort(self.magnitude_table)

    def magnitude_codes(self, magnitudes: np.ndarray) -> np.ndarray:
        """The magnitude code of each integer magnitude; anything not an APoT level is a CodeRangeError."""
        magnitudes = np.asarray(magnitudes, dtype=np.int64)
        order = np.argsort(self.magnitude_table)
        position = np.clip(np.searchsorted(self.magnitude_table[order], magnitudes), 0, order.size - 1)
        codes = order[position]
        if magnitudes.size and np.any(self.magnitude_table[codes] != magnitudes):
            bad = magnitudes[self.magnitude_table[codes] != magnitudes].ravel()[0]
            raise CodeRangeError(f"{bad} is not an integer APoT magnitude of {self.magnitude_bits} bits "
                                 f"(levels {self.levels.tolist()})")
        return codes

    def pack(self, values: np.ndarray) -> np.ndarray:
        """Signed code words ``sign << B | magnitude code`` of signed integer levels (``+0`` for zero)."""
        values = np.asarray(values, dtype=np.int64)
        return (values < 0).astype(np.int64) << self.magnitude_bits | self.magnitude_codes(np.abs(values))

    def unpack(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(negative, magnitude code)`` of signed code words."""
        codes = np.asarray(codes, dtype=np.int64)
        return ((codes >> self.magnitude_bits) & 1).astype(bool), codes & ((1 << self.magnitude_bits) - 1)

    def value(self, codes: np.ndarray) -> np.ndarray:
        """The signed integer level of each code word."""
        negative, magnitude = self.unpack(codes)
        return np.where(negative, -1, 1) * self.magnitude_table[magnitude]

    def negate(self, codes: np.ndarray, flip: np.ndarray) -> np.ndarray:
        """Code words negated where ``flip``: the sign bit toggles (zero stays the canonical ``+0``)."""
        codes = np.asarray(codes, dtype=np.int64)
        zero = self.unpack(codes)[1] == 0
        return np.where(flip & ~zero, codes ^ (1 << self.magnitude_bits), codes)


def weight_terms(weight_bits: int) -> ApotTerms:
    """The terms of a signed ``weight_bits``-bit APoT weight: ``weight_bits - 1`` magnitude bits."""
    if not MIN_WEIGHT_BITS <= weight_bits <= MAX_WEIGHT_BITS:
        raise UnsupportedBitsError(f"APoT weights support {MIN_WEIGHT_BITS}..{MAX_WEIGHT_BITS} bits, got {weight_bits!r}")
    return ApotTerms(weight_bits - 1)


def act_levels(act_bits: int) -> np.ndarray:
    """The integer values of unsigned ``act_bits``-bit APoT activation codes (the activation table)."""
    if not MIN_ACT_BITS <= act_bits <= MAX_ACT_BITS:
        raise UnsupportedBitsError(f"APoT activations support {MIN_ACT_BITS}..{MAX_ACT_BITS} bits, got {act_bits!r}")
    return ApotTerms(act_bits).levels


def act_level_bits(act_bits: int) -> int:
    """Width of the largest APoT activation value: what a row's activation table holds."""
    return int(act_levels(act_bits)[-1]).bit_length()
