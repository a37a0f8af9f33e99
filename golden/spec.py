"""The integer datapath contract (golden/README.md#datapath): the one spec golden, hw, sim and reports share.

Everything the hardware computes is defined here once, as plain Python/numpy on integers:

* **Code formats.**  Activation codes are unsigned ``act_bits``-bit integers.  Their value is the
  code itself (``act_format="uniform"``: LSQ, ASQ) or ``act_table[code]`` (``"table"``: LCQ
  activations, a non-decreasing table of unsigned integers with ``act_table[0] == 0`` so that
  zero padding stays zero).  Weight codes depend on the scheme:

  ``int``   two's complement, ``weight_bits`` wide, value = the code.
  ``pot``   sign-exponent: ``code = sign << E | e`` with an ``E``-bit exponent field; the
  ``post``  magnitude is ``base^-e`` (base 2 for POT, sqrt 2 for POST).  Exponent fields above
            ``max_exponent`` mean zero (all-ones is the canonical zero code); ``sign`` is
            applied after the magnitude path, so truncation is symmetric about zero.
            ``levels="bbit"``: ``E = b - 1``, ``max_exponent = 2^(b-1) - 2``, ``2^b - 1`` levels
            in a true ``b``-bit code.  ``levels="paper"``: the authors' ``2^b + 1`` levels,
            ``max_exponent = 2^(b-1) - 1``, which needs ``E = b`` (a ``b + 1``-bit code).
  ``lcq``   an unsigned ``weight_bits``-bit index into a per-layer level table of ``2^b`` signed
            integers in ``[-(2^(B-1) - 1), 2^(B-1) - 1]`` (``B = level_bits``), non-decreasing in
            the index; the value is ``weight_table[code]``.
  ``apot``  ``sign | term fields``: each field selects one power of two (or zero) of an APoT
            term set, the value is ``+-sum_i 1 << (S - e_i)`` (:mod:`golden.apot_format`).

* **Product.**  ``int`` and ``lcq``: ``w_value * a_value`` (``frac_bits`` must be 0).  ``pot`` and
  ``post`` products are fixed point with ``F = frac_bits`` fraction bits; with ``m = max_exponent``
  the legal ``F`` (:attr:`WeightFormat.frac_bits_range`) are exactly those where every product bit
  can be non-zero (proof below).  The sign is applied after the magnitude path, so truncation is
  symmetric about zero.

  ``pot``: ``+-((a << F) >> e)`` with ``0 <= F <= m``.  ``F = m`` is the exact ``a << (m - e)``;
  ``F < m`` truncates the exponents above ``F``.  ``F > m`` would leave ``F - m`` low bits that
  are zero for every input, so it is rejected.

  ``post``: ``H = m // 2`` (half the largest even exponent), ``J = (m - 1) // 2`` (half the largest
  odd exponent minus one), guard bits ``G = F - H >= 0`` and ``s = (m - e) >> 1``::

      e = 2h even:    (a << G) << s                         exact: a 2^(F-h)
      e = 2h + 1 odd: post_lut[a] << s,  post_lut[a] = round(a 2^L / sqrt 2),  L = F - J

  One shifter after a mux on ``e``'s low bit.  Odd ``m``: ``J = H``, the ROM is ``act_bits + G``
  bits wide; even ``m``: ``J = H - 1`` and one bit more, so the smallest odd magnitude lands on bit
  0 like the smallest even one (a ROM at ``G`` bits would zero bit 0 of every product if ``G > 0``).
  ``post_lut`` is exact integer rounding (:func:`post_lut`; no ties).  Legal: ``F >= H``, and no
  run of zeros in ``1 / sqrt 2`` may leave one of the low ``G`` bits unset by every ROM entry (the
  few activation codes of 2-3 bits against many guard bits).  7/8-bit codes (``H >
  MAX_FRAC_BITS``) truncate instead: any ``F``, ``(a << F) >> h`` and ``post_lut[a] >> h`` at
  ``L = F``.  ``m = 0`` (2-bit ``bbit``): ``F = 0`` only.

  *Every product bit can be non-zero.*  The largest magnitude is ``a_max << F`` (``e = 0``), so
  :meth:`DatapathConfig.product_bits` is the minimal width of ``[-(a_max << F), a_max << F]``;
  negative products set the sign bit.  Magnitude bits ``0 .. F + act_bits - 1``: pot --
  ``a << (F - e)`` for ``e = 0..F`` (``F <= m``) covers them all; post -- the even path
  ``a << (G + s)``, ``s = 0..H``, covers bits ``G ..``, and the legality check is exactly that
  ``post_lut[a] << s``, ``s = 0..J``, covers bits ``0 .. G - 1``; the truncating form's even path
  covers all.  Sums (:func:`accumulator_bits`): one product plus zero products (activation 0) is
  a sum, and ``K`` copies of an extreme product reach each end of the range.
  ``tests/golden/test_spec.py`` checks both exhaustively for every scheme at 2..4 bits, both level
  conventions and every legal ``F``.

  ``apot``: ``+-sum_i (a << (S - e_i))``, exact (``frac_bits`` 0; activations default to tables).

* **Accumulator.**  Two's complement of ``A`` bits, the smallest width that holds
  ``[K * p_min, K * p_max]`` for reduction length ``K`` (see :func:`accumulator_bits` for the
  proof that no partial sum, in any order, can overflow).

* **Requantization** to the next layer's codes: :mod:`golden.requantization`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

import numpy as np

from . import apot_format
from .errors import (
    AccumulatorOverflowError,
    CodeRangeError,
    ConfigError,
    LevelTableError,
    UnknownSchemeError,
    UnsupportedBitsError,
)


class SchemeName(StrEnum):
    """A scheme name: a member compares, hashes, formats and serializes as its plain string.

    Its ``repr`` is the plain string's too, so error messages and keys built from ``repr`` read the
    same whether a caller passed the member or the string.
    """

    def __repr__(self) -> str:
        return repr(self.value)


class WeightScheme(SchemeName):
    """How a weight code stands for a value (see the module docstring): the weight formats of the PEs."""

    INT = "int"
    POT = "pot"
    POST = "post"
    LCQ = "lcq"
    APOT = "apot"


class TrainingScheme(SchemeName):
    """The quantization methods golden trains (:func:`golden.layers.quantize_model`).

    Defined here, next to :class:`WeightScheme`, because the quantizers tag their checkpoint
    configurations with these names and :mod:`golden.layers` imports the quantizers.
    """

    LSQ = "lsq"
    ASQ = "asq"
    POT = "pot"
    POST = "post"
    ASQ_POST = "asq_post"
    APOT = "apot"
    LCQ = "lcq"


WEIGHT_SCHEMES = tuple(WeightScheme)
SHIFT_SCHEMES = (WeightScheme.POT, WeightScheme.POST)
ACT_FORMATS = ("uniform", "table")
POWER_LEVELS = ("bbit", "paper")

MIN_BITS, MAX_BITS = 2, 8
MAX_FRAC_BITS = 16
MIN_LEVEL_BITS, MAX_LEVEL_BITS = 2, 12
FALLBACK_FRAC_BITS = 8  # F of pot/post formats not in MEASURED_FRAC_BITS, clipped to the legal range
#: Per (scheme, weight bits, levels): the smallest F keeping every demo model's predictions (`lutmac frac-search`).
MEASURED_FRAC_BITS: dict[tuple[str, int, str], int] = {
    ("pot", 4, "bbit"): 2, ("pot", 3, "bbit"): 1, ("pot", 2, "bbit"): 0, ("post", 4, "bbit"): 3, ("post", 3, "bbit"): 4}
DEFAULT_LEVEL_BITS = 8
MULTIPLIER_BITS = 16
MAX_REQUANT_SHIFT = 62
#: The requantizer computes ``(acc + bias) * mantissa`` in 64 bits, so ``|acc + bias| < 2^MAX_SUM_BITS``.
MAX_SUM_BITS = 62 - MULTIPLIER_BITS
# Integer results are computed in int64 (and GEMMs in float64, exact below 2**53).
MAX_EXACT_BITS = 53


def check_bits(name: str, bits: int, lo: int = MIN_BITS, hi: int = MAX_BITS) -> None:
    """Raise UnsupportedBitsError unless ``bits`` is an int in ``lo..hi``."""
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not lo <= bits <= hi:
        raise UnsupportedBitsError(f"{name}={bits!r} is not supported (expected an int in {lo}..{hi})")


def signed_range(bits: int) -> tuple[int, int]:
    """Range of a ``bits``-wide two's complement integer."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def signed_bits_for(lo: int, hi: int) -> int:
    """Smallest two's complement width holding every integer in ``[lo, hi]`` (at least 1)."""
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def post_lut(act_values: np.ndarray, frac_bits: int) -> np.ndarray:
    """``round(v * 2^F / sqrt 2)`` for each non-negative integer ``v``, exactly.

    ``v * 2^F / sqrt 2 = sqrt(N)/2`` with ``N = v^2 * 2^(2F+1)``, and for real ``x >= 0``
    ``floor(x + 1/2) = (floor(2x) + 1) // 2``, so the entry is ``(isqrt(N) + 1) // 2``
    with no floating point at all.
    """
    values = np.asarray(act_values, dtype=np.int64)
    if np.any(values < 0):
        raise CodeRangeError("post_lut takes non-negative activation values")
    return np.array(
        [(math.isqrt(int(v) * int(v) << (2 * frac_bits + 1)) + 1) // 2 for v in values.ravel()],
        dtype=np.int64,
    ).reshape(values.shape)


@dataclass(frozen=True)
class WeightFormat:
    """How a weight code is laid out and what value it stands for (see module docstring)."""

    scheme: WeightScheme
    bits: int
    levels: str = "bbit"
    level_bits: int = DEFAULT_LEVEL_BITS

    def __post_init__(self) -> None:
        if self.scheme not in WEIGHT_SCHEMES:
            raise UnknownSchemeError(f"weight scheme {self.scheme!r} does not exist; expected one of {WEIGHT_SCHEMES}")
        object.__setattr__(self, "scheme", WeightScheme(self.scheme))
        check_bits(f"{self.scheme} weight bits", self.bits)
        if self.levels not in POWER_LEVELS:
            raise UnknownSchemeError(f"level convention {self.levels!r} does not exist; expected one of {POWER_LEVELS}")
        if self.levels == "paper" and self.scheme not in SHIFT_SCHEMES:
            raise ConfigError(f"levels='paper' applies to pot/post only, not {self.scheme!r}")
        if self.scheme == WeightScheme.LCQ:
            check_bits("lcq level_bits", self.level_bits, MIN_LEVEL_BITS, MAX_LEVEL_BITS)
        if self.scheme == WeightScheme.APOT:
            check_bits("apot weight bits", self.bits, apot_format.MIN_WEIGHT_BITS, apot_format.MAX_WEIGHT_BITS)

    @property
    def apot(self) -> apot_format.ApotTerms:
        """The term fields of an apot code word (:mod:`golden.apot_format`)."""
        return apot_format.weight_terms(self.bits)

    @property
    def exponent_bits(self) -> int:
        """Width ``E`` of the exponent field (pot/post)."""
        return self.bits if self.levels == "paper" else self.bits - 1

    @property
    def max_exponent(self) -> int:
        """Largest exponent ``m`` with a non-zero level (pot/post)."""
        return (1 << (self.bits - 1)) - (1 if self.levels == "paper" else 2)

    @property
    def frac_bits_range(self) -> tuple[int, int]:
        """Legal product fraction bits ``(lo, hi)``: pot ``0..m``, post ``H..`` (module docstring); int/lcq ``(0, 0)``."""
        m = self.max_exponent
        if self.scheme not in SHIFT_SCHEMES or m == 0:
            return 0, 0
        if self.scheme == WeightScheme.POT:
            return 0, min(m, MAX_FRAC_BITS)
        return (m // 2 if m // 2 <= MAX_FRAC_BITS else 0), MAX_FRAC_BITS

    def check_frac_bits(self, frac_bits: int) -> None:
        """Raise UnsupportedBitsError unless ``frac_bits`` lies in :attr:`frac_bits_range`."""
        lo, hi = self.frac_bits_range
        if isinstance(frac_bits, bool) or not isinstance(frac_bits, (int, np.integer)) or not lo <= frac_bits <= hi:
            reason = {WeightScheme.POT: "F <= max_exponent", WeightScheme.POST: "F >= max_exponent // 2"}.get(self.scheme, "")
            raise UnsupportedBitsError(f"frac_bits={frac_bits!r} is not legal for {self.bits}-bit {self.levels} {self.scheme} "
                              f"weights: expected {lo}..{hi} ({reason or 'no fraction bits'})")

    @property
    def default_frac_bits(self) -> int:
        """The format's default ``F``: :data:`MEASURED_FRAC_BITS`, else :data:`FALLBACK_FRAC_BITS` clipped to the legal range."""
        lo, hi = self.frac_bits_range
        return MEASURED_FRAC_BITS.get((self.scheme, self.bits, self.levels), min(max(FALLBACK_FRAC_BITS, lo), hi))

    @property
    def zero_exponent(self) -> int:
        """The canonical zero exponent field: all ones."""
        return (1 << self.exponent_bits) - 1

    @property
    def code_bits(self) -> int:
        """Width of the code word the hardware stores and moves."""
        return 1 + self.exponent_bits if self.scheme in SHIFT_SCHEMES else self.bits

    @property
    def num_codes(self) -> int:
        return 1 << self.code_bits

    @property
    def level_range(self) -> tuple[int, int]:
        """Range of lcq level-table entries: symmetric ``B``-bit."""
        hi = (1 << (self.level_bits - 1)) - 1
        return -hi, hi

    def pack_power(self, sign: np.ndarray, exponent: np.ndarray) -> np.ndarray:
        """Code words from sign (0/1) and exponent fields (pot/post)."""
        sign = np.asarray(sign, dtype=np.int64)
        exponent = np.asarray(exponent, dtype=np.int64)
        if np.any((sign < 0) | (sign > 1)) or np.any((exponent < 0) | (exponent > self.zero_exponent)):
            raise CodeRangeError(f"sign must be 0/1 and exponent fields must fit {self.exponent_bits} bits")
        return (sign << self.exponent_bits) | exponent

    def unpack_power(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(negative, exponent, is_zero) of pot/post code words."""
        codes = np.asarray(codes, dtype=np.int64)
        exponent = codes & ((1 << self.exponent_bits) - 1)
        negative = (codes >> self.exponent_bits) & 1
        return negative.astype(bool), exponent, exponent > self.max_exponent

    def power_code_from_level(self, sign: np.ndarray, exponent: np.ndarray) -> np.ndarray:
        """Code words for signed exponents; ``exponent < 0`` marks zero (canonical zero code)."""
        exponent = np.asarray(exponent, dtype=np.int64)
        if np.any(exponent > self.max_exponent):
            raise CodeRangeError(f"exponent above max_exponent={self.max_exponent}")
        zero = exponent < 0
        return self.pack_power(np.where(zero, 0, sign), np.where(zero, self.zero_exponent, exponent))

    def power_value(self, exponent: int) -> float:
        """Real magnitude ``base^-exponent`` the exponent stands for."""
        base = 2.0 if self.scheme == WeightScheme.POT else math.sqrt(2.0)
        return base ** (-exponent)

    def check_codes(self, codes: np.ndarray) -> np.ndarray:
        """Codes as int64, raising if any does not fit the format's code word."""
        codes = np.asarray(codes)
        if codes.dtype.kind not in "iu":
            raise CodeRangeError(f"weight codes must be integers, got dtype {codes.dtype}")
        codes = codes.astype(np.int64)
        lo, hi = signed_range(self.bits) if self.scheme == WeightScheme.INT else (0, self.num_codes - 1)
        if codes.size and (codes.min() < lo or codes.max() > hi):
            raise CodeRangeError(f"{self.scheme} weight codes must lie in [{lo}, {hi}], got [{codes.min()}, {codes.max()}]")
        return codes

    def check_table(self, table: np.ndarray) -> np.ndarray:
        """An lcq weight level table, validated: 2^b ints, in range, non-decreasing."""
        return _check_level_table(np.asarray(table), self.num_codes, *self.level_range, "weight")

    def legal_codes(self) -> np.ndarray:
        """Every legal weight code in code-word order (int: the two's complement values ``0 .. -1``)."""
        index = np.arange(self.num_codes)
        if self.scheme == WeightScheme.INT:
            return index - ((index >> (self.bits - 1)) & 1) * self.num_codes
        return index


def _check_level_table(table: np.ndarray, length: int, lo: int, hi: int, what: str) -> np.ndarray:
    if table.ndim != 1 or table.shape[0] != length:
        raise LevelTableError(f"{what} level table must have {length} entries, got shape {table.shape}")
    if table.dtype.kind not in "iu":
        raise LevelTableError(f"{what} level table must hold integers, got dtype {table.dtype}")
    table = table.astype(np.int64)
    if table.min() < lo or table.max() > hi:
        raise LevelTableError(f"{what} level table entries must lie in [{lo}, {hi}], got [{table.min()}, {table.max()}]")
    if np.any(np.diff(table) < 0):
        bad = int(np.argmax(np.diff(table) < 0))
        raise LevelTableError(f"{what} level table is not monotonic: entry {bad + 1} ({table[bad + 1]}) < entry {bad} ({table[bad]})")
    return table


@dataclass(frozen=True)
class DatapathConfig:
    """One PE datapath: weight format, activation format and product precision.

    ``frac_bits`` (``F``) is the fixed-point fraction of pot/post products and must be 0 for
    int/lcq.  ``act_level_bits`` bounds the activation table's entries (``act_format="table"``).
    """

    weight: WeightFormat
    act_bits: int
    frac_bits: int = 0
    act_format: str = "uniform"
    act_level_bits: int = DEFAULT_LEVEL_BITS

    def __post_init__(self) -> None:
        check_bits("activation bits", self.act_bits)
        if self.act_format not in ACT_FORMATS:
            raise UnknownSchemeError(f"activation format {self.act_format!r} does not exist; expected one of {ACT_FORMATS}")
        if self.weight.scheme in SHIFT_SCHEMES:
            self.weight.check_frac_bits(self.frac_bits)
            if self.act_format != "uniform":
                raise ConfigError(f"{self.weight.scheme} PEs shift the activation code itself: act_format must be 'uniform'")
            if self.scheme == WeightScheme.POST and self.left_shifts and self.guard_bits:
                self._check_rom_covers_guard_bits()
        elif self.frac_bits != 0:
            raise ConfigError(f"frac_bits must be 0 for {self.weight.scheme!r} weights, got {self.frac_bits}")
        if self.act_format == "table":
            check_bits("act_level_bits", self.act_level_bits, 1, MAX_LEVEL_BITS)

    def _check_rom_covers_guard_bits(self) -> None:
        """Raise unless ``post_lut[a] << s`` (``s = 0..J``), the only products below bit ``G``, set each of those bits."""
        shifted = self.post_lut[:, None] << np.arange((self.weight.max_exponent - 1) // 2 + 1)[None, :]
        missing = ~int(np.bitwise_or.reduce(shifted.ravel())) & ((1 << self.guard_bits) - 1)
        if missing:
            raise UnsupportedBitsError(f"frac_bits={self.frac_bits} is not legal for {self.weight.bits}-bit {self.weight.levels} post "
                              f"weights with {self.act_bits}-bit activations: product bit {(missing & -missing).bit_length() - 1} "
                              "is zero for every input (the sqrt-2 ROM never sets it)")

    @classmethod
    def make(
        cls,
        scheme: str,
        weight_bits: int,
        act_bits: int,
        frac_bits: int | None = None,
        levels: str = "bbit",
        level_bits: int = DEFAULT_LEVEL_BITS,
        act_format: str | None = None,
        act_level_bits: int = DEFAULT_LEVEL_BITS,
    ) -> DatapathConfig:
        """Config with the scheme's defaults: ``WeightFormat.default_frac_bits``, table activations for lcq and apot weights."""
        weight = WeightFormat(scheme, weight_bits, levels, level_bits)
        if frac_bits is None:
            frac_bits = weight.default_frac_bits
        if act_format is None:
            act_format = "table" if scheme in (WeightScheme.LCQ, WeightScheme.APOT) else "uniform"
        return cls(weight, act_bits, frac_bits, act_format, act_level_bits)

    @property
    def scheme(self) -> WeightScheme:
        return self.weight.scheme

    @property
    def num_act_codes(self) -> int:
        return 1 << self.act_bits

    @property
    def act_value_max(self) -> int:
        """Largest activation value the format can present to a PE."""
        return (1 << self.act_level_bits) - 1 if self.act_format == "table" else self.num_act_codes - 1

    def check_act_codes(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes)
        if codes.dtype.kind not in "iu":
            raise CodeRangeError(f"activation codes must be integers, got dtype {codes.dtype}")
        codes = codes.astype(np.int64, copy=False)  # int64 codes as they are: the integer runs pass whole test sets
        if codes.size and (codes.min() < 0 or codes.max() >= self.num_act_codes):
            raise CodeRangeError(f"activation codes must lie in [0, {self.num_act_codes - 1}], got [{codes.min()}, {codes.max()}]")
        return codes

    def check_act_table(self, table: np.ndarray) -> np.ndarray:
        """An activation level table, validated: 2^b_a unsigned ints, non-decreasing, entry 0 == 0."""
        table = _check_level_table(np.asarray(table), self.num_act_codes, 0, self.act_value_max, "activation")
        if table[0] != 0:
            raise LevelTableError("activation level table must map code 0 to 0 (zero padding relies on it)")
        return table

    def random_tables(self, rng: np.random.Generator) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Random legal level tables of this datapath: ``(weight table or None, activation table or None)``.

        Each is sorted draws over the whole legal range (the activation table's entry 0 forced to 0),
        so it passes :meth:`WeightFormat.check_table` / :meth:`check_act_table`.
        """
        weight_table = act_table = None
        if self.scheme == WeightScheme.LCQ:
            lo, hi = self.weight.level_range
            weight_table = np.sort(rng.integers(lo, hi + 1, self.weight.num_codes))
        if self.act_format == "table":
            act_table = np.sort(rng.integers(0, self.act_value_max + 1, self.num_act_codes))
            act_table[0] = 0
        return weight_table, act_table

    def extreme_tables(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Legal level tables spread evenly over the widest legal range: they reach :meth:`product_range`."""
        weight_table = act_table = None
        if self.scheme == WeightScheme.LCQ:
            lo, hi = self.weight.level_range
            weight_table = np.linspace(lo, hi, self.weight.num_codes).round().astype(np.int64)
        if self.act_format == "table":
            act_table = np.linspace(0, self.act_value_max, self.num_act_codes).round().astype(np.int64)
        return weight_table, act_table

    @property
    def left_shifts(self) -> bool:
        """post: the exact-even form (``F >= H``, every shift a left shift by ``s = (m - e) >> 1``)."""
        return self.frac_bits >= self.weight.max_exponent // 2

    @property
    def guard_bits(self) -> int:
        """post, left-shift form: ``G = F - H``, the even path's ``a << G``."""
        return self.frac_bits - self.weight.max_exponent // 2

    @property
    def lut_frac_bits(self) -> int:
        """post: fraction bits ``L`` of the sqrt-2 ROM, ``F - J`` (left-shift form, ``m >= 1``), else ``F``."""
        m = self.weight.max_exponent
        return self.frac_bits - (m - 1) // 2 if self.left_shifts and m >= 1 else self.frac_bits

    @cached_property
    def post_lut(self) -> np.ndarray:
        """The sqrt-2 ROM for every activation code (post only): ``round(a 2^L / sqrt 2)``."""
        return post_lut(np.arange(self.num_act_codes), self.lut_frac_bits)

    def product_range(self) -> tuple[int, int]:
        """Exact (min, max) of one PE product over every valid code pair and any legal table.

        For lcq the extremes are those of the widest legal tables; for pot/post they are at
        exponent 0 and the largest activation (``+-(a_max << F)``); for int at the most negative
        and most positive weights; for apot at every field on its largest term (``+-m * a_max``).
        Tests check this against exhaustive enumeration.
        """
        a_max = self.act_value_max
        if self.scheme == WeightScheme.INT:
            w_lo, w_hi = signed_range(self.weight.bits)
        elif self.scheme == WeightScheme.LCQ:
            w_lo, w_hi = self.weight.level_range
        elif self.scheme == WeightScheme.APOT:
            w_lo, w_hi = -self.weight.apot.max_magnitude, self.weight.apot.max_magnitude
        else:
            return -(a_max << self.frac_bits), a_max << self.frac_bits
        return w_lo * a_max, w_hi * a_max

    def product_bits(self) -> int:
        """Two's complement width of one PE product."""
        return signed_bits_for(*self.product_range())


def legal_frac_bits(weight: WeightFormat, act_bits: int) -> list[int]:
    """Every ``F`` a ``weight x act_bits`` datapath accepts (pot/post; ``[0]`` otherwise), ascending."""
    lo, hi = weight.frac_bits_range
    return [frac for frac in range(lo, hi + 1) if _accepts(weight, act_bits, frac)]


def _accepts(weight: WeightFormat, act_bits: int, frac_bits: int) -> bool:
    try:
        DatapathConfig(weight, act_bits, frac_bits)
    except UnsupportedBitsError:
        return False
    return True


def accumulator_bits(cfg: DatapathConfig, reduction_length: int) -> int:
    """Smallest accumulator width ``A`` that cannot overflow summing ``reduction_length`` products.

    Proof: every product ``p`` satisfies ``p_min <= p <= p_max`` with ``p_min <= 0 <= p_max``.
    A partial sum of ``j <= K`` products therefore lies in ``[j p_min, j p_max]``, which is
    inside ``[K p_min, K p_max]``.  ``A`` is the smallest two's complement width holding that
    interval, so no partial sum — in any summation order — leaves the representable range.
    The bound is tight: ``K`` copies of the extreme product reach it.
    """
    if isinstance(reduction_length, bool) or not isinstance(reduction_length, (int, np.integer)) or reduction_length < 1:
        raise ConfigError(f"reduction length must be a positive int, got {reduction_length!r}")
    lo, hi = cfg.product_range()
    return signed_bits_for(reduction_length * lo, reduction_length * hi)


def check_accumulator(cfg: DatapathConfig, accumulator_width: int, reduction_length: int) -> None:
    """Raise if an ``accumulator_width``-bit accumulator can overflow for this reduction length."""
    need = accumulator_bits(cfg, reduction_length)
    if not isinstance(accumulator_width, (int, np.integer)) or isinstance(accumulator_width, bool):
        raise ConfigError(f"accumulator width must be an int, got {type(accumulator_width).__name__} {accumulator_width!r}")
    if accumulator_width < need:
        raise AccumulatorOverflowError(
            f"a {accumulator_width}-bit accumulator can overflow summing {reduction_length} "
            f"{cfg.scheme} products in {cfg.product_range()}: at least {need} bits are needed"
        )
    if accumulator_width > MAX_EXACT_BITS:
        raise AccumulatorOverflowError(f"accumulators wider than {MAX_EXACT_BITS} bits are not modelled exactly")


def max_reduction_length(cfg: DatapathConfig, accumulator_width: int) -> int:
    """Largest ``K`` an ``accumulator_width``-bit accumulator sums without overflow."""
    lo, hi = cfg.product_range()
    acc_lo, acc_hi = signed_range(accumulator_width)
    return min(acc_lo // lo if lo else acc_hi, acc_hi // hi if hi else acc_hi)


def act_values(cfg: DatapathConfig, act_codes: np.ndarray, act_table: np.ndarray | None = None) -> np.ndarray:
    """The integer value each activation code stands for."""
    codes = cfg.check_act_codes(act_codes)
    if cfg.act_format == "uniform":
        if act_table is not None:
            raise ConfigError("an activation table was given for a uniform activation format")
        return codes
    if act_table is None:
        raise LevelTableError("act_format='table' needs an activation level table")
    return cfg.check_act_table(act_table)[codes]


def pe_product(
    cfg: DatapathConfig,
    weight_codes: np.ndarray,
    act_codes: np.ndarray,
    weight_table: np.ndarray | None = None,
    act_table: np.ndarray | None = None,
) -> np.ndarray:
    """The product one PE computes for each (weight code, activation code) pair (broadcast)."""
    w = cfg.weight.check_codes(weight_codes)
    a = act_values(cfg, act_codes, act_table)
    if cfg.scheme == WeightScheme.INT:
        return w * a
    if cfg.scheme == WeightScheme.LCQ:
        if weight_table is None:
            raise LevelTableError("lcq weights need a weight level table")
        return cfg.weight.check_table(weight_table)[w] * a
    if cfg.scheme == WeightScheme.APOT:
        negative, magnitude = cfg.weight.apot.unpack(w)
        shifted = cfg.weight.apot.scaled(magnitude, a)
        return np.where(negative, -shifted, shifted)
    negative, exponent, zero = cfg.weight.unpack_power(w)
    exponent = np.where(zero, 0, exponent)
    if cfg.scheme == WeightScheme.POT:
        magnitude = (a << cfg.frac_bits) >> exponent
    else:
        odd = (exponent & 1).astype(bool)
        if cfg.left_shifts:
            shift = (cfg.weight.max_exponent - exponent) >> 1
            magnitude = np.where(odd, cfg.post_lut[a], a << cfg.guard_bits) << shift
        else:
            magnitude = np.where(odd, cfg.post_lut[a], a << cfg.frac_bits) >> (exponent >> 1)
    magnitude = np.where(zero, 0, magnitude)
    return np.where(negative, -magnitude, magnitude)


def product_table(
    cfg: DatapathConfig, weight_table: np.ndarray | None = None, act_table: np.ndarray | None = None
) -> np.ndarray:
    """All PE products, indexed ``[weight_code_index, act_code]``.

    Weight codes are indexed as unsigned code words (int codes in two's complement order:
    index ``c & (2^b - 1)``), which is how a hardware table would be addressed.
    """
    codes = cfg.weight.legal_codes()
    return pe_product(cfg, codes[:, None], np.arange(cfg.num_act_codes)[None, :], weight_table, act_table)
