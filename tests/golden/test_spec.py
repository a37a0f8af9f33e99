"""Tests of the datapath contract itself (golden.spec), each formula against a slower, independent derivation.

Exhaustive where the space is small (every code pair, every bit width 2..8), hypothesis elsewhere.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden import apot_format, bounds, requantization, spec
from golden.errors import (
    AccumulatorOverflowError,
    CodeRangeError,
    ConfigError,
    LevelTableError,
    UnknownSchemeError,
    UnsupportedBitsError,
)

BITS = range(spec.MIN_BITS, spec.MAX_BITS + 1)


def frac_samples(fmt: spec.WeightFormat, act_bits: int) -> list[int]:
    """Both ends of the legal F range and the legal ones of 1, 3, 8 (every legal F is tested at <= 4 bits below)."""
    legal = spec.legal_frac_bits(fmt, act_bits)
    return sorted({legal[0], legal[-1], *(f for f in (1, 3, 8) if f in legal)})


def extreme_tables(cfg: spec.DatapathConfig) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The widest legal level tables: they reach both ends of the legal entry ranges."""
    weight_table = act_table = None
    if cfg.scheme == "lcq":
        lo, hi = cfg.weight.level_range
        weight_table = np.round(np.linspace(lo, hi, cfg.weight.num_codes)).astype(np.int64)
    if cfg.act_format == "table":
        act_table = np.round(np.linspace(0, cfg.act_value_max, cfg.num_act_codes)).astype(np.int64)
    return weight_table, act_table


def all_configs(scheme: str):
    """Every config of a scheme over weight/act bits 2..8 and the interesting F / level / table widths."""
    for wbits in BITS:
        for abits in BITS:
            if scheme in spec.SHIFT_SCHEMES:
                for levels in spec.POWER_LEVELS:
                    for frac in frac_samples(spec.WeightFormat(scheme, wbits, levels), abits):
                        yield spec.DatapathConfig.make(scheme, wbits, abits, frac_bits=frac, levels=levels)
            elif scheme == "lcq":
                for level_bits in (spec.MIN_LEVEL_BITS, 8, spec.MAX_LEVEL_BITS):
                    for act_level_bits in (1, 8, spec.MAX_LEVEL_BITS):
                        yield spec.DatapathConfig.make("lcq", wbits, abits, level_bits=level_bits, act_level_bits=act_level_bits)
            elif scheme == "apot":
                if wbits <= apot_format.MAX_WEIGHT_BITS:
                    yield spec.DatapathConfig.make("apot", wbits, abits, act_format="uniform")
                    for act_level_bits in (1, 6, spec.MAX_LEVEL_BITS):
                        yield spec.DatapathConfig.make("apot", wbits, abits, act_level_bits=act_level_bits)
            else:
                yield spec.DatapathConfig.make("int", wbits, abits)
                yield spec.DatapathConfig.make("int", wbits, abits, act_format="table", act_level_bits=abits + 2)


# --------------------------------------------------------------------------- small helpers


@settings(deadline=None)
@given(st.integers(-(1 << 70), 1 << 70), st.integers(0, 1 << 70))
def test_signed_bits_for_matches_bit_length_formula(lo, span):
    lo, hi = min(lo, 0), max(lo + span, 0)
    expected = 1 + max((-lo - 1).bit_length() if lo < 0 else 0, hi.bit_length())
    bits = spec.signed_bits_for(lo, hi)
    assert bits == expected
    smallest, largest = spec.signed_range(bits)
    assert smallest <= lo and hi <= largest


def test_signed_range():
    assert spec.signed_range(1) == (-1, 0)
    assert spec.signed_range(8) == (-128, 127)
    assert spec.signed_range(53) == (-(2**52), 2**52 - 1)


# --------------------------------------------------------------------------- post LUT


@pytest.mark.parametrize("frac_bits", range(spec.MAX_FRAC_BITS + 1))
def test_post_lut_is_the_nearest_integer_exactly(frac_bits):
    values = np.arange(4096, dtype=np.int64)
    lut = spec.post_lut(values, frac_bits)
    # LUT = round(x) with x = v 2^F / sqrt 2  <=>  2 LUT - 1 <= 2x < 2 LUT + 1; square (both sides >= 0)
    twice_x_squared = values * values << (2 * frac_bits + 1)
    assert np.all(np.maximum(2 * lut - 1, 0) ** 2 <= twice_x_squared)
    assert np.all(twice_x_squared < (2 * lut + 1) ** 2)
    # 2x is irrational for v > 0: no ties, both inequalities strict
    assert np.all((2 * lut[1:] - 1) ** 2 < twice_x_squared[1:])
    assert lut[0] == 0


def test_post_lut_agrees_with_high_precision_decimal():
    with localcontext() as ctx:
        ctx.prec = 60
        for frac_bits in (0, 5, 8, 16):
            for value in (1, 2, 3, 7, 100, 181, 255, 4095, 123457):
                exact = Decimal(value) * Decimal(2) ** frac_bits / Decimal(2).sqrt()
                nearest = int((exact + Decimal("0.5")).to_integral_value(rounding="ROUND_FLOOR"))
                assert spec.post_lut(np.array([value]), frac_bits)[0] == nearest


def test_post_lut_shape_cfg_cache_and_negative_input():
    values = np.arange(12).reshape(3, 4)
    assert spec.post_lut(values, 8).shape == (3, 4)
    cfg = spec.DatapathConfig.make("post", 4, 5, frac_bits=6)
    assert cfg.lut_frac_bits == 6 - 2  # F - (m - 1) // 2 with m = 6
    np.testing.assert_array_equal(cfg.post_lut, spec.post_lut(np.arange(32), 4))
    with pytest.raises(CodeRangeError):
        spec.post_lut(np.array([3, -1]), 8)


# --------------------------------------------------------------------------- product range / table


@pytest.mark.parametrize("scheme", spec.WEIGHT_SCHEMES)
def test_product_range_matches_exhaustive_enumeration(scheme):
    for cfg in all_configs(scheme):
        weight_table, act_table = extreme_tables(cfg)
        table = spec.product_table(cfg, weight_table, act_table)
        assert table.shape == (cfg.weight.num_codes, cfg.num_act_codes)
        assert (int(table.min()), int(table.max())) == cfg.product_range(), cfg
        bits = cfg.product_bits()
        assert spec.signed_bits_for(int(table.min()), int(table.max())) == bits
        lo, hi = spec.signed_range(bits - 1)
        assert table.min() < lo or table.max() > hi, "product_bits is not the smallest width"


def small_configs():
    """Every scheme at weight/activation bits 2..4, both level conventions and every legal F (int/lcq: their formats)."""
    for wbits in range(2, 5):
        for abits in range(2, 5):
            for levels in spec.POWER_LEVELS:
                for scheme in spec.SHIFT_SCHEMES:
                    fmt = spec.WeightFormat(scheme, wbits, levels)
                    for frac in spec.legal_frac_bits(fmt, abits):
                        yield spec.DatapathConfig(fmt, abits, frac)
            yield spec.DatapathConfig.make("int", wbits, abits)
            yield spec.DatapathConfig.make("int", wbits, abits, act_format="table", act_level_bits=abits + 1)
            for level_bits in (2, 3, 5):
                yield spec.DatapathConfig.make("lcq", wbits, abits, level_bits=level_bits, act_level_bits=abits + 1)


def every_product(cfg: spec.DatapathConfig) -> np.ndarray:
    """Every product any legal input makes: all code pairs; lcq/table: every legal table value pair."""
    if cfg.scheme == "lcq" or cfg.act_format == "table":
        lo, hi = cfg.weight.level_range if cfg.scheme == "lcq" else spec.signed_range(cfg.weight.bits)
        return (np.arange(lo, hi + 1)[:, None] * np.arange(cfg.act_value_max + 1)[None, :]).ravel()
    return spec.product_table(cfg).ravel()


def pattern_or(values, bits: int) -> int:
    mask = (1 << bits) - 1
    return int(np.bitwise_or.reduce(np.asarray(values, dtype=np.int64) & mask))


def test_every_product_bit_can_be_nonzero_and_the_width_is_minimal():
    """Exhaustive at <= 4 bits: the OR of all products' patterns is all ones, the extremes are products."""
    count = 0
    for cfg in small_configs():
        products = every_product(cfg)
        bits = cfg.product_bits()
        assert (int(products.min()), int(products.max())) == cfg.product_range(), cfg
        assert pattern_or(products, bits) == (1 << bits) - 1, cfg
        narrow_lo, narrow_hi = spec.signed_range(bits - 1)
        assert products.min() < narrow_lo or products.max() > narrow_hi, cfg
        if cfg.scheme in spec.SHIFT_SCHEMES:  # symmetric: every magnitude bit is set by a positive product
            assert pattern_or(products[products > 0], bits) == (1 << (bits - 1)) - 1, cfg
        count += 1
    assert count > 250


@pytest.mark.parametrize("reduction", (1, 2, 3, 9, 64, 1000))
def test_every_accumulator_bit_can_be_nonzero_and_the_width_is_tight(reduction):
    """Sums of K products: one product plus K - 1 zero products, and K copies of each extreme."""
    for cfg in small_configs():
        products = every_product(cfg)
        assert 0 in products  # activation 0
        width = spec.accumulator_bits(cfg, reduction)
        lo, hi = cfg.product_range()
        sums = np.concatenate([products, [reduction * lo, reduction * hi]])
        assert pattern_or(sums, width) == (1 << width) - 1, cfg
        narrow_lo, narrow_hi = spec.signed_range(width - 1)
        assert reduction * lo < narrow_lo or reduction * hi > narrow_hi, cfg


def test_illegal_frac_bits_are_exactly_those_with_an_always_zero_product_bit():
    """Just outside the range, and the ROM-coverage rule, against the exhaustive OR of an unchecked config."""
    rejected = 0
    for wbits in range(2, 7):
        for abits in (2, 3, 4, 8):
            for scheme, levels in ((s, lv) for s in spec.SHIFT_SCHEMES for lv in spec.POWER_LEVELS):
                fmt = spec.WeightFormat(scheme, wbits, levels)
                lo, hi = fmt.frac_bits_range
                legal = spec.legal_frac_bits(fmt, abits)
                for frac in range(spec.MAX_FRAC_BITS + 2):
                    cfg = object.__new__(spec.DatapathConfig)  # bypass the check to see what the products would be
                    for name, value in (("weight", fmt), ("act_bits", abits), ("frac_bits", frac),
                                        ("act_format", "uniform"), ("act_level_bits", spec.DEFAULT_LEVEL_BITS)):
                        object.__setattr__(cfg, name, value)
                    products = spec.product_table(cfg).ravel()
                    bits = spec.signed_bits_for(int(products.min()), int(products.max()))
                    wasted = pattern_or(products[products > 0], bits) != (1 << (bits - 1)) - 1
                    if lo <= frac <= hi:  # only the POST ROM rule: below the range F too small is exact
                        assert wasted == (frac not in legal), (cfg, frac)
                    elif frac > hi and frac <= spec.MAX_FRAC_BITS:
                        assert wasted, (cfg, frac)
                    if frac not in legal:
                        rejected += 1
                        with pytest.raises(UnsupportedBitsError, match="not legal"):
                            spec.DatapathConfig(fmt, abits, frac)
    assert rejected > 100


@pytest.mark.parametrize("levels", spec.POWER_LEVELS)
def test_post_left_shift_form(levels):
    """F >= H: even e is (a << G) << s exactly, odd e the ROM at L = F - J bits << s, s = (m - e) >> 1."""
    for wbits in range(3, 7):
        fmt = spec.WeightFormat("post", wbits, levels)
        m = fmt.max_exponent
        for frac in spec.legal_frac_bits(fmt, 4):
            cfg = spec.DatapathConfig(fmt, 4, frac)
            assert cfg.left_shifts and cfg.guard_bits == frac - m // 2 >= 0
            assert cfg.lut_frac_bits == frac - (m - 1) // 2 == cfg.guard_bits + (m % 2 == 0)
            assert int(cfg.post_lut.max()).bit_length() == 4 + cfg.lut_frac_bits
            table = spec.product_table(cfg)
            for e in range(m + 1):
                row = table[fmt.pack_power(0, e)]
                shift = (m - e) >> 1
                assert shift == (m // 2 - e // 2 if e % 2 == 0 else (m - 1) // 2 - e // 2)
                expected = (np.arange(16) << (frac - e // 2)) if e % 2 == 0 else cfg.post_lut << shift
                np.testing.assert_array_equal(row, expected)
    assert not spec.DatapathConfig.make("post", 8, 4, frac_bits=16).left_shifts


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_legal_lcq_tables_stay_inside_product_range(data):
    wbits = data.draw(st.integers(2, 8))
    abits = data.draw(st.integers(2, 8))
    level_bits = data.draw(st.integers(spec.MIN_LEVEL_BITS, spec.MAX_LEVEL_BITS))
    act_level_bits = data.draw(st.integers(1, spec.MAX_LEVEL_BITS))
    cfg = spec.DatapathConfig.make("lcq", wbits, abits, level_bits=level_bits, act_level_bits=act_level_bits)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    lo, hi = cfg.weight.level_range
    weight_table = np.sort(rng.integers(lo, hi + 1, cfg.weight.num_codes))
    act_table = np.sort(rng.integers(0, cfg.act_value_max + 1, cfg.num_act_codes))
    act_table[0] = 0
    table = spec.product_table(cfg, weight_table, act_table)
    p_lo, p_hi = cfg.product_range()
    assert p_lo <= table.min() and table.max() <= p_hi
    np.testing.assert_array_equal(table, weight_table[:, None] * act_table[None, :])


@pytest.mark.parametrize("bits", BITS)
def test_product_table_indexes_int_codes_as_twos_complement(bits):
    cfg = spec.DatapathConfig.make("int", bits, 3)
    table = spec.product_table(cfg)
    lo, hi = spec.signed_range(bits)
    codes = np.arange(lo, hi + 1)
    np.testing.assert_array_equal(table[codes & (cfg.weight.num_codes - 1)], codes[:, None] * np.arange(8)[None, :])


@pytest.mark.parametrize("scheme", spec.SHIFT_SCHEMES)
@pytest.mark.parametrize("levels", spec.POWER_LEVELS)
def test_power_codes_sign_and_zero(scheme, levels):
    for bits in BITS:
        cfg = spec.DatapathConfig.make(scheme, bits, 6, levels=levels)
        fmt = cfg.weight
        table = spec.product_table(cfg)
        exponents = np.arange(1 << fmt.exponent_bits)
        positive, negative = fmt.pack_power(0, exponents), fmt.pack_power(1, exponents)
        np.testing.assert_array_equal(table[negative], -table[positive])  # sign after the magnitude path
        is_zero = exponents > fmt.max_exponent
        assert not np.any(table[positive[is_zero]]) and not np.any(table[negative[is_zero]])
        assert np.all(table[positive[0], 1:] > 0) and np.all(np.diff(table[positive[0]]) > 0)
        # levels: 2^b - 1 (bbit, b-bit code) or 2^b + 1 (paper, b+1-bit code)
        distinct = 2 * (fmt.max_exponent + 1) + 1
        assert distinct == ((1 << bits) - 1 if levels == "bbit" else (1 << bits) + 1)
        assert fmt.code_bits == (bits if levels == "bbit" else bits + 1)
        neg, exp, zero = fmt.unpack_power(fmt.pack_power(np.array([0, 1, 1]), np.array([1, 0, fmt.zero_exponent])))
        np.testing.assert_array_equal(neg, [False, True, True])
        np.testing.assert_array_equal(exp, [1, 0, fmt.zero_exponent])
        np.testing.assert_array_equal(zero, [1 > fmt.max_exponent, False, True])
        codes = fmt.power_code_from_level(np.array([1, 0, 1]), np.array([-1, 0, fmt.max_exponent]))
        assert codes[0] == fmt.zero_exponent  # canonical zero: sign 0, all-ones exponent
        assert codes[1] == 0 and codes[2] == (1 << fmt.exponent_bits) | fmt.max_exponent
        with pytest.raises(CodeRangeError):
            fmt.power_code_from_level(0, fmt.max_exponent + 1)


@pytest.mark.parametrize("scheme", spec.SHIFT_SCHEMES)
def test_power_value(scheme):
    fmt = spec.WeightFormat(scheme, 5)
    base = 2.0 if scheme == "pot" else math.sqrt(2.0)
    assert [fmt.power_value(n) for n in range(4)] == pytest.approx([base**-n for n in range(4)], rel=1e-15)


# --------------------------------------------------------------------------- accumulator width


def extreme_codes(cfg, weight_table, act_table):
    """(weight code index, act code) of the smallest and largest products."""
    table = spec.product_table(cfg, weight_table, act_table)
    return np.unravel_index(table.argmin(), table.shape), np.unravel_index(table.argmax(), table.shape), table


REDUCTIONS = (1, 2, 3, 9, 64, 576, 4608, 65536)
ACC_CONFIGS = [
    spec.DatapathConfig.make("int", 2, 2),
    spec.DatapathConfig.make("int", 8, 8),
    spec.DatapathConfig.make("int", 4, 3, act_format="table", act_level_bits=7),
    spec.DatapathConfig.make("pot", 4, 4),
    spec.DatapathConfig.make("pot", 3, 8, frac_bits=3, levels="paper"),
    spec.DatapathConfig.make("pot", 8, 8, frac_bits=0),
    spec.DatapathConfig.make("post", 4, 4, frac_bits=3),
    spec.DatapathConfig.make("post", 4, 8, frac_bits=16, levels="paper"),
    spec.DatapathConfig.make("post", 8, 8),
    spec.DatapathConfig.make("lcq", 4, 4),
    spec.DatapathConfig.make("lcq", 8, 8, level_bits=12, act_level_bits=12),
]


@pytest.mark.parametrize("cfg", ACC_CONFIGS, ids=lambda c: f"{c.scheme}{c.weight.bits}a{c.act_bits}F{c.frac_bits}")
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_accumulator_bits_is_tight(cfg, reduction):
    weight_table, act_table = extreme_tables(cfg)
    low, high, table = extreme_codes(cfg, weight_table, act_table)
    width = spec.accumulator_bits(cfg, reduction)
    acc_lo, acc_hi = spec.signed_range(width)
    # K copies of each extreme product, summed as the hardware would (Python ints: no wrap)
    sums = [sum(int(table[code]) for _ in range(reduction)) if reduction <= 4608 else reduction * int(table[code]) for code in (low, high)]
    assert acc_lo <= sums[0] and sums[1] <= acc_hi
    narrow_lo, narrow_hi = spec.signed_range(width - 1)
    assert sums[0] < narrow_lo or sums[1] > narrow_hi, "one bit less must overflow"
    if width <= spec.MAX_EXACT_BITS:
        spec.check_accumulator(cfg, width, reduction)
        spec.check_accumulator(cfg, width + 3, reduction)
    with pytest.raises(AccumulatorOverflowError, match="overflow"):
        spec.check_accumulator(cfg, width - 1, reduction)
    longest = spec.max_reduction_length(cfg, width)
    assert longest >= reduction
    assert spec.accumulator_bits(cfg, longest) <= width < spec.accumulator_bits(cfg, longest + 1)


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(ACC_CONFIGS), st.integers(1, 300), st.integers(0, 2**32 - 1))
def test_no_partial_sum_overflows_in_any_order(cfg, reduction, seed):
    weight_table, act_table = extreme_tables(cfg)
    table = spec.product_table(cfg, weight_table, act_table).ravel()
    rng = np.random.default_rng(seed)
    # bias the draw toward the extremes: the adversarial orders
    extremes = np.array([table.min(), table.max()])
    products = np.where(rng.random(reduction) < 0.7, rng.choice(extremes, reduction), rng.choice(table, reduction))
    lo, hi = spec.signed_range(spec.accumulator_bits(cfg, reduction))
    for order in (products, np.sort(products), np.sort(products)[::-1]):
        partial = np.cumsum(order)
        assert lo <= partial.min() and partial.max() <= hi


def test_accumulator_errors():
    cfg = spec.DatapathConfig.make("int", 8, 8)
    for bad in (0, -3, 2.0, "9"):
        with pytest.raises(ConfigError):
            spec.accumulator_bits(cfg, bad)
    width = spec.accumulator_bits(cfg, 1 << 40)
    assert width > spec.MAX_EXACT_BITS
    with pytest.raises(AccumulatorOverflowError, match="not modelled exactly"):
        spec.check_accumulator(cfg, width, 1 << 40)


# --------------------------------------------------------------------------- product error bound


def real_products_exact_error(cfg: spec.DatapathConfig) -> tuple[np.ndarray, np.ndarray]:
    """(|error| of every non-zero-code product vs a * level * 2^F, exponent of each row), in float64.

    pot and even post exponents have dyadic real products a 2^(F-k) with a < 2^8: the float64
    difference is exact.  Odd post exponents are irrational; float64 is within 1e-8 of the
    truth and :func:`test_odd_post_products_within_bound_exactly` checks them exactly.
    """
    fmt = cfg.weight
    exponents = np.arange(fmt.max_exponent + 1)
    codes = fmt.pack_power(0, exponents)
    table = spec.product_table(cfg)[codes].astype(np.float64)
    acts = np.arange(cfg.num_act_codes, dtype=np.float64)
    levels = np.array([fmt.power_value(int(n)) for n in exponents])
    if cfg.scheme == "pot":
        real = np.ldexp(acts[None, :], cfg.frac_bits - exponents[:, None])
    else:
        even = np.ldexp(acts[None, :], cfg.frac_bits - exponents[:, None] // 2)
        real = np.where(exponents[:, None] % 2 == 0, even, acts[None, :] * 2.0**cfg.frac_bits * levels[:, None])
    return np.abs(table - real), exponents


@pytest.mark.parametrize("scheme", spec.SHIFT_SCHEMES)
def test_product_error_bound_holds_exhaustively(scheme):
    for cfg in all_configs(scheme):
        errors, exponents = real_products_exact_error(cfg)
        bound = bounds.product_error_bound(cfg)
        slack = 1e-8 if scheme == "post" and cfg.weight.max_exponent >= 1 else 0.0
        assert errors.max() <= bound + slack, cfg


def exactly_attainable(cfg) -> bool:
    """Dyadic truncation error 1 - 2^-d needs an activation whose low d bits are all ones."""
    fmt = cfg.weight
    if cfg.scheme == "pot":
        dropped = fmt.max_exponent - cfg.frac_bits
    else:
        if fmt.max_exponent >= 1:  # odd exponents dominate post; only a supremum, tested separately
            return False
        dropped = 0
    return dropped <= cfg.act_bits


@pytest.mark.parametrize("scheme", spec.SHIFT_SCHEMES)
def test_product_error_bound_is_attained_for_truncation(scheme):
    tight = 0
    for cfg in all_configs(scheme):
        if exactly_attainable(cfg):
            errors, _ = real_products_exact_error(cfg)
            assert errors.max() == bounds.product_error_bound(cfg), cfg
            tight += 1
    assert tight > (20 if scheme == "pot" else 5)


def test_int_and_lcq_products_are_exact():
    assert bounds.product_error_bound(spec.DatapathConfig.make("int", 4, 4)) == 0.0
    assert bounds.product_error_bound(spec.DatapathConfig.make("lcq", 4, 4)) == 0.0


@pytest.mark.parametrize("frac_bits", (0, 1, 2, 5, 8, 12, spec.MAX_FRAC_BITS))
def test_odd_post_products_within_bound_exactly(frac_bits):
    """|P - y / 2^s| < 1 - 2^-(s+1) with y = a 2^F / sqrt 2, in integers: 2^(s+1)(P-1)+1 < 2y < 2^(s+1)(P+1)-1."""
    lut = spec.post_lut(np.arange(256), frac_bits)
    for shift in range(0, 31):
        for a in range(256):
            product = int(lut[a]) >> shift
            twice_y_squared = a * a << (2 * frac_bits + 1)
            lower = (product - 1 << shift + 1) + 1
            upper = (product + 1 << shift + 1) - 1
            assert lower <= 0 or lower * lower < twice_y_squared
            assert twice_y_squared < upper * upper
    # beyond s = 30 every product is 0 and the real value is below 2^24 / 2^31 < 1/2


def test_post_error_bounds_per_exponent_are_nearly_attained_with_8bit_activations():
    """Left-shift form: odd e's ROM error (< 1/2) times 2^s; truncating form: the ROM error plus an h-bit truncation."""
    for cfg in (spec.DatapathConfig.make("post", 4, 8, frac_bits=f) for f in (3, 4, 8)):
        errors, exponents = real_products_exact_error(cfg)
        limits = bounds.product_error_bounds(cfg)
        for n in exponents:
            if n % 2 == 0:
                assert errors[n].max() == limits[n] == 0.0
            else:
                shift = (cfg.weight.max_exponent - n) >> 1
                assert limits[n] == 2.0 ** (shift - 1)
                assert limits[n] * (1 - 2.0**-6) < errors[n].max() < limits[n]
    cfg = spec.DatapathConfig.make("post", 8, 8, frac_bits=4)
    assert not cfg.left_shifts
    errors, exponents = real_products_exact_error(cfg)
    limits = bounds.product_error_bounds(cfg)
    for n in exponents[exponents % 2 == 1][:3]:
        assert limits[n] - 2.0 ** -(n // 2 + 2) < errors[n].max() < limits[n]


# --------------------------------------------------------------------------- multiplier


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=2.0**-45, max_value=65535.0, allow_nan=False, allow_infinity=False))
def test_quantize_multiplier_is_nearest_and_normalized(value):
    mantissa, shift = requantization.quantize_multiplier(value)
    mantissa, shift = int(mantissa), int(shift)
    assert 0 <= shift <= spec.MAX_REQUANT_SHIFT
    assert 1 << (spec.MULTIPLIER_BITS - 1) <= mantissa < 1 << spec.MULTIPLIER_BITS or shift == 0
    scaled = Fraction(value) * 2**shift
    assert abs(mantissa - scaled) <= Fraction(1, 2)  # nearest at this shift
    assert abs(Fraction(mantissa, 2**shift) - Fraction(value)) <= Fraction(value) * Fraction(1, 2**spec.MULTIPLIER_BITS)


@settings(deadline=None)
@given(st.integers(1 << 7, (1 << 8) - 1), st.integers(0, 40))
def test_quantize_multiplier_round_trips_representable_values(mantissa, shift):
    m, s = requantization.quantize_multiplier(mantissa * 2.0**-shift, bits=8)
    assert (int(m), int(s)) == (mantissa, shift)


def test_quantize_multiplier_edges():
    bits = spec.MULTIPLIER_BITS
    # rounds up to 2^bits: renormalized one step, still nearest
    m, s = requantization.quantize_multiplier(((1 << bits) - 0.25) * 2.0**-20)
    assert (int(m), int(s)) == (1 << (bits - 1), 19)
    # largest value with a non-negative shift, and just past it
    assert tuple(map(int, requantization.quantize_multiplier(65535.4))) == (65535, 0)
    for too_large in (65535.6, 1e6):
        with pytest.raises(CodeRangeError, match="too large"):
            requantization.quantize_multiplier(too_large)
    # tiny: the shift saturates and the mantissa denormalizes, then rounds to zero
    assert tuple(map(int, requantization.quantize_multiplier(2.0**-60))) == (4, spec.MAX_REQUANT_SHIFT)
    with pytest.raises(CodeRangeError, match="rounds to zero"):
        requantization.quantize_multiplier(2.0**-70)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(CodeRangeError, match="finite and positive"):
            requantization.quantize_multiplier(bad)
    values = np.array([[0.5, 0.001], [3.0, 1e-7]])
    m, s = requantization.quantize_multiplier(values)
    assert m.shape == s.shape == (2, 2)
    np.testing.assert_allclose(m * 2.0**-s, values, rtol=2.0**-bits)
    assert m[0, 0] * 2.0 ** -s[0, 0] == 0.5


# --------------------------------------------------------------------------- requantization


def requantize_reference(total: int, mantissa: int, shift: int, out_bits: int) -> int:
    """clip(floor(total * mantissa / 2^shift + 1/2), 0, 2^b - 1) in exact rationals."""
    value = Fraction(total * mantissa, 1 << shift) + Fraction(1, 2)
    return min(max(math.floor(value), 0), (1 << out_bits) - 1)


@settings(max_examples=400, deadline=None)
@given(
    st.integers(-(1 << 40), 1 << 40),
    st.integers(-(1 << 20), 1 << 20),
    st.integers(0, (1 << spec.MULTIPLIER_BITS) - 1),
    st.integers(0, spec.MAX_REQUANT_SHIFT),
    st.integers(spec.MIN_BITS, spec.MAX_BITS),
)
def test_requantize_matches_rational_reference(acc, bias, mantissa, shift, out_bits):
    got = requantization.requantize(np.array([acc]), bias, mantissa, shift, out_bits)
    assert int(got[0]) == requantize_reference(acc + bias, mantissa, shift, out_bits)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 30))
def test_requantize_vectorized_matches_reference(seed, shift):
    rng = np.random.default_rng(seed)
    mantissa = int(rng.integers(1 << 15, 1 << 16))
    total = rng.integers(0, 1 << 12, 64)
    got = requantization.requantize(total, 0, mantissa, shift, 8)
    expected = [requantize_reference(int(t), mantissa, shift, 8) for t in total]
    np.testing.assert_array_equal(got, expected)


def test_requantize_ties_round_half_up():
    # (acc * 1) >> 1 with rounding: 5/2 = 2.5 -> 3 (half to even would give 2), 7/2 -> 4, -5/2 -> -2 -> clipped 0
    np.testing.assert_array_equal(requantization.requantize(np.array([5, 7, 3, 1]), 0, 1, 1, 4), [3, 4, 2, 1])
    np.testing.assert_array_equal(requantization.requantize(np.array([-5, -1]), 0, 1, 1, 4), [0, 0])
    np.testing.assert_array_equal(requantization.requantize(np.array([100, 15, 16]), 0, 1, 0, 4), [15, 15, 15])


def test_requantize_broadcasts_per_channel_and_per_sample():
    rng = np.random.default_rng(0)
    acc = rng.integers(-5000, 5000, (3, 4))
    bias = rng.integers(-100, 100, 4)
    mantissa = rng.integers(1 << 15, 1 << 16, (3, 4))  # per sample and channel (ASQ)
    shift = rng.integers(14, 24, 4)  # per channel
    got = requantization.requantize(acc, bias, mantissa, shift, 6)
    for i in range(3):
        for j in range(4):
            assert got[i, j] == requantize_reference(int(acc[i, j] + bias[j]), int(mantissa[i, j]), int(shift[j]), 6)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-(1 << 45) + 1, (1 << 45) - 1),
    st.integers(0, (1 << spec.MULTIPLIER_BITS) - 1),
    st.integers(0, spec.MAX_REQUANT_SHIFT),
)
def test_rescale_rounds_half_up_without_clipping(value, mantissa, shift):
    expected = math.floor(Fraction(value * mantissa, 1 << shift) + Fraction(1, 2))
    assert int(requantization.rescale(np.array([value]), mantissa, shift)[0]) == expected


def test_rescale_errors():
    with pytest.raises(CodeRangeError):
        requantization.rescale(np.array([1]), -1, 0)
    with pytest.raises(CodeRangeError):
        requantization.rescale(np.array([1]), 1, spec.MAX_REQUANT_SHIFT + 1)
    with pytest.raises(AccumulatorOverflowError, match="shortcut too wide"):
        requantization.rescale(np.array([1 << 46]), 1, 0, "shortcut")


def test_requantize_errors():
    acc = np.array([1, 2])
    with pytest.raises(UnsupportedBitsError):
        requantization.requantize(acc, 0, 1, 0, 9)
    with pytest.raises(UnsupportedBitsError):
        requantization.requantize(acc, 0, 1, 0, 1)
    for mantissa, shift in ((-1, 0), (1 << spec.MULTIPLIER_BITS, 0), (1, -1), (1, spec.MAX_REQUANT_SHIFT + 1)):
        with pytest.raises(CodeRangeError):
            requantization.requantize(acc, 0, mantissa, shift, 4)
    with pytest.raises(AccumulatorOverflowError):
        requantization.requantize(np.array([1 << spec.MAX_SUM_BITS]), 0, 1, 0, 4)
    with pytest.raises(AccumulatorOverflowError, match="accumulator \\+ bias too wide"):
        requantization.requantize(np.array([1 << 45]), 1 << 45, 1, 0, 4)


# --------------------------------------------------------------------------- threshold bank


@settings(max_examples=150, deadline=None)
@given(st.integers(spec.MIN_BITS, spec.MAX_BITS), st.integers(0, 2**32 - 1))
def test_threshold_quantize_counts_thresholds_at_or_below(bits, seed):
    rng = np.random.default_rng(seed)
    channels = 3
    thresholds = np.sort(rng.integers(-200, 200, (channels, (1 << bits) - 1)), axis=-1)
    acc = rng.integers(-250, 250, (5, channels))
    acc[0] = thresholds[:, 0]  # exactly on a threshold: counted
    bias = rng.integers(-10, 10, channels)
    got = requantization.threshold_quantize(acc, bias, thresholds)
    for i in range(5):
        for c in range(channels):
            assert got[i, c] == sum(1 for t in thresholds[c] if acc[i, c] + bias[c] >= t)
    assert got.min() >= 0 and got.max() <= (1 << bits) - 1


def test_threshold_quantize_shared_bank_and_ties():
    thresholds = np.array([0, 10, 10])
    np.testing.assert_array_equal(requantization.threshold_quantize(np.array([-1, 0, 9, 10, 99]), 0, thresholds), [0, 1, 1, 3, 3])
    np.testing.assert_array_equal(requantization.threshold_quantize(np.array([-1, 0]), 1, thresholds), [1, 1])


def test_threshold_quantize_errors():
    acc = np.array([1])
    with pytest.raises(LevelTableError, match="integers"):
        requantization.threshold_quantize(acc, 0, np.array([0.5, 1.0, 2.0]))
    for length in (1, 2, 4, 511):
        with pytest.raises(LevelTableError, match="2\\^b - 1"):
            requantization.threshold_quantize(acc, 0, np.arange(length))
    with pytest.raises(LevelTableError, match="non-decreasing"):
        requantization.threshold_quantize(acc, 0, np.array([0, 5, 4]))


# --------------------------------------------------------------------------- error paths of the formats


def test_scheme_names_are_their_plain_strings():
    """Members and strings are interchangeable: comparisons, lookups, messages, JSON and configs built from either."""
    for enum, names in ((spec.WeightScheme, ("int", "pot", "post", "lcq", "apot")),
                        (spec.TrainingScheme, ("lsq", "asq", "pot", "post", "asq_post", "apot", "lcq"))):
        assert tuple(enum) == names and [str(member) for member in enum] == list(names)
        for member, name in zip(enum, names, strict=True):
            assert member == name and hash(member) == hash(name) and {name: 1}[member] == 1
            assert f"{member}" == name and repr(member) == repr(name) and json.dumps(member) == json.dumps(name)
    assert spec.WEIGHT_SCHEMES == ("int", "pot", "post", "lcq", "apot") and spec.SHIFT_SCHEMES == ("pot", "post")
    from_string, from_member = spec.DatapathConfig.make("post", 4, 4), spec.DatapathConfig.make(spec.WeightScheme.POST, 4, 4)
    assert from_string == from_member and repr(from_string) == repr(from_member)
    assert from_string.scheme is spec.WeightScheme.POST and "scheme='post'" in repr(from_string)
    with pytest.raises(UnknownSchemeError, match=r"expected one of \('int', 'pot', 'post', 'lcq', 'apot'\)"):
        spec.WeightFormat("log", 4)


@pytest.mark.parametrize("bad", (1, 9, 0, 2.0, True, "4", None))
def test_bad_bits(bad):
    with pytest.raises(UnsupportedBitsError):
        spec.WeightFormat("int", bad)
    with pytest.raises(UnsupportedBitsError):
        spec.DatapathConfig.make("int", 4, bad)


def test_bad_format_parameters():
    with pytest.raises(UnknownSchemeError, match="'apot2'"):
        spec.WeightFormat("apot2", 4)
    with pytest.raises(UnknownSchemeError):
        spec.WeightFormat("pot", 4, levels="b+1")
    with pytest.raises(ConfigError, match="pot/post only"):
        spec.WeightFormat("int", 4, levels="paper")
    for level_bits in (1, 13):
        with pytest.raises(UnsupportedBitsError):
            spec.WeightFormat("lcq", 4, level_bits=level_bits)
    with pytest.raises(UnknownSchemeError):
        spec.DatapathConfig.make("int", 4, 4, act_format="log")
    with pytest.raises(ConfigError, match="frac_bits must be 0"):
        spec.DatapathConfig.make("int", 4, 4, frac_bits=2)
    with pytest.raises(ConfigError, match="frac_bits must be 0"):
        spec.DatapathConfig.make("lcq", 4, 4, frac_bits=1)
    with pytest.raises(UnsupportedBitsError, match="not legal"):
        spec.DatapathConfig.make("pot", 8, 4, frac_bits=spec.MAX_FRAC_BITS + 1)
    with pytest.raises(UnsupportedBitsError, match=r"expected 0\.\.6 \(F <= max_exponent\)"):
        spec.DatapathConfig.make("pot", 4, 4, frac_bits=7)
    with pytest.raises(UnsupportedBitsError, match=r"expected 3\.\.16 \(F >= max_exponent // 2\)"):
        spec.DatapathConfig.make("post", 4, 4, frac_bits=2)
    with pytest.raises(UnsupportedBitsError, match="product bit 0 is zero for every input"):
        spec.DatapathConfig.make("post", 3, 2, frac_bits=9)
    with pytest.raises(ConfigError, match="act_format must be 'uniform'"):
        spec.DatapathConfig.make("post", 4, 4, act_format="table")
    with pytest.raises(UnsupportedBitsError):
        spec.DatapathConfig.make("lcq", 4, 4, act_level_bits=0)


def test_make_defaults():
    for scheme, bits, levels in ((s, b, lv) for s in spec.SHIFT_SCHEMES for b in BITS for lv in spec.POWER_LEVELS):
        fmt = spec.WeightFormat(scheme, bits, levels)
        frac = spec.DatapathConfig.make(scheme, bits, 4, levels=levels).frac_bits
        assert frac == spec.MEASURED_FRAC_BITS.get((scheme, bits, levels), frac)
        assert frac in spec.legal_frac_bits(fmt, 8) and frac in spec.legal_frac_bits(fmt, 2)
    assert spec.DatapathConfig.make("int", 4, 4).frac_bits == 0
    assert spec.DatapathConfig.make("lcq", 4, 4).act_format == "table"
    assert spec.DatapathConfig.make("int", 4, 4).act_format == "uniform"


def test_weight_table_validation():
    cfg = spec.DatapathConfig.make("lcq", 2, 2, level_bits=4)
    good = np.array([-7, -1, 2, 7])
    np.testing.assert_array_equal(cfg.weight.check_table(good), good)
    for bad, match in (
        (np.array([-7, -1, 7]), "4 entries"),
        (np.array([[-7, -1, 2, 7]]), "4 entries"),
        (np.array([-7.0, -1.0, 2.0, 7.0]), "integers"),
        (np.array([-8, -1, 2, 7]), "lie in"),
        (np.array([-7, 2, -1, 7]), "not monotonic"),
    ):
        with pytest.raises(LevelTableError, match=match):
            cfg.weight.check_table(bad)
    with pytest.raises(LevelTableError, match="weight level table"):
        spec.pe_product(cfg, np.array([0]), np.array([0]), None, np.array([0, 1, 2, 3]))


def test_act_table_validation():
    cfg = spec.DatapathConfig.make("lcq", 2, 2, act_level_bits=4)
    good = np.array([0, 3, 3, 15])
    np.testing.assert_array_equal(spec.act_values(cfg, np.array([3, 1]), good), [15, 3])
    for bad, match in (
        (np.array([0, 3, 15]), "4 entries"),
        (np.array([0, 3, 16, 15]), "lie in"),
        (np.array([0, 5, 3, 15]), "not monotonic"),
        (np.array([1, 3, 5, 15]), "code 0 to 0"),
    ):
        with pytest.raises(LevelTableError, match=match):
            cfg.check_act_table(bad)
    with pytest.raises(LevelTableError, match="needs an activation level table"):
        spec.act_values(cfg, np.array([1]))
    with pytest.raises(ConfigError, match="uniform"):
        spec.act_values(spec.DatapathConfig.make("int", 4, 4), np.array([1]), good)


@pytest.mark.parametrize("scheme", spec.WEIGHT_SCHEMES)
def test_codes_out_of_range(scheme):
    cfg = spec.DatapathConfig.make(scheme, 4, 3)
    weight_table, act_table = extreme_tables(cfg)
    lo, hi = (-8, 7) if scheme == "int" else (0, cfg.weight.num_codes - 1)
    spec.pe_product(cfg, np.array([lo, hi]), np.array([0, 7]), weight_table, act_table)
    for bad in (lo - 1, hi + 1):
        with pytest.raises(CodeRangeError, match="weight codes"):
            spec.pe_product(cfg, np.array([bad]), np.array([0]), weight_table, act_table)
    for bad in (-1, 8):
        with pytest.raises(CodeRangeError, match="activation codes"):
            spec.pe_product(cfg, np.array([0]), np.array([bad]), weight_table, act_table)
    with pytest.raises(CodeRangeError, match="integers"):
        spec.pe_product(cfg, np.array([0.0]), np.array([0]), weight_table, act_table)
    with pytest.raises(CodeRangeError, match="integers"):
        spec.pe_product(cfg, np.array([0]), np.array([1.0]), weight_table, act_table)


def test_requant_spec_widths_hold_the_extremes():
    for acc_width, bias_bits in ((8, 8), (20, 12), (12, 20), (40, 16)):
        widths = requantization.RequantSpec(acc_width, bias_bits)
        acc_lo, acc_hi = spec.signed_range(acc_width)
        bias_lo, bias_hi = spec.signed_range(bias_bits)
        sum_lo, sum_hi = spec.signed_range(widths.sum_bits)
        assert sum_lo <= acc_lo + bias_lo and acc_hi + bias_hi <= sum_hi
        prod_lo, prod_hi = spec.signed_range(widths.product_bits)
        mantissa_max = (1 << widths.multiplier_bits) - 1
        assert prod_lo <= (acc_lo + bias_lo) * mantissa_max and (acc_hi + bias_hi) * mantissa_max <= prod_hi


def test_pack_power_rejects_fields_that_do_not_fit():
    fmt = spec.WeightFormat("post", 4)
    assert fmt.pack_power(1, fmt.zero_exponent) == (1 << fmt.exponent_bits) | fmt.zero_exponent
    with pytest.raises(CodeRangeError):
        fmt.pack_power(0, fmt.zero_exponent + 1)  # would spill into the sign bit
    with pytest.raises(CodeRangeError):
        fmt.pack_power(2, 0)
    with pytest.raises(CodeRangeError):
        fmt.pack_power(0, -1)


def test_reduction_length_rejects_bool():
    with pytest.raises(ConfigError):
        spec.accumulator_bits(spec.DatapathConfig.make("int", 4, 4), True)
