"""Tests of the bit-exact integer GEMM and convolution (golden.gemm) against slow references and PyTorch."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from goldentest import make_cfg
from hypothesis import given, settings
from hypothesis import strategies as st

from golden import apot_format, bounds, spec
from golden import gemm as gemm_module
from golden.errors import (
    AccumulatorOverflowError,
    CodeRangeError,
    ConfigError,
    LevelTableError,
)
from golden.gemm import (
    gemm_accumulator_bits,
    ideal_weight_levels,
    im2col,
    int_conv2d,
    int_gemm,
    int_gemm_reference,
    int_linear,
)

BITS = range(spec.MIN_BITS, spec.MAX_BITS + 1)


def weight_bits(scheme: str) -> range:
    """The weight widths a scheme supports (apot stops at 7 bits)."""
    return range(spec.MIN_BITS, apot_format.MAX_WEIGHT_BITS + 1) if scheme == "apot" else BITS


def random_operands(rng, cfg, m, k, n, extreme=0.0):
    """Random codes (a fraction drawn from the extreme codes) and legal random tables."""
    if cfg.scheme == "int":
        lo, hi = spec.signed_range(cfg.weight.bits)
        weights = rng.integers(lo, hi + 1, (k, n))
        weights = np.where(rng.random((k, n)) < extreme, rng.choice([lo, hi], (k, n)), weights)
    else:
        weights = rng.integers(0, cfg.weight.num_codes, (k, n))
    acts = rng.integers(0, cfg.num_act_codes, (m, k))
    acts = np.where(rng.random((m, k)) < extreme, cfg.num_act_codes - 1, acts)
    weight_table = act_table = None
    if cfg.scheme == "lcq":
        lo, hi = cfg.weight.level_range
        weight_table = np.sort(rng.integers(lo, hi + 1, cfg.weight.num_codes))
        weight_table[0], weight_table[-1] = lo, hi
    if cfg.act_format == "table":
        act_table = np.sort(rng.integers(0, cfg.act_value_max + 1, cfg.num_act_codes))
        act_table[0], act_table[-1] = 0, cfg.act_value_max
    return acts, weights, weight_table, act_table


# --------------------------------------------------------------------------- GEMM


@pytest.mark.parametrize("scheme", spec.WEIGHT_SCHEMES)
def test_int_gemm_reproduces_every_product(scheme):
    """K = 1 GEMM over all activation codes x all weight codes is the product table, for every width."""
    rng = np.random.default_rng(0)
    for wbits in weight_bits(scheme):
        for abits in BITS:
            fracs = (0, 2, 8, 16) if scheme in spec.SHIFT_SCHEMES else (None,)
            for frac in fracs:
                for levels in (spec.POWER_LEVELS if scheme in spec.SHIFT_SCHEMES else ("bbit",)):
                    cfg = make_cfg(scheme, wbits, abits, frac, levels)
                    _, _, weight_table, act_table = random_operands(rng, cfg, 1, 1, 1)
                    index = np.arange(cfg.weight.num_codes)
                    codes = index - ((index >> (wbits - 1)) & 1) * cfg.weight.num_codes if scheme == "int" else index
                    acc = int_gemm(cfg, np.arange(cfg.num_act_codes)[:, None], codes[None, :], weight_table, act_table)
                    np.testing.assert_array_equal(acc, spec.product_table(cfg, weight_table, act_table).T)


@settings(max_examples=120, deadline=None)
@given(
    st.sampled_from(spec.WEIGHT_SCHEMES),
    st.integers(2, 8),
    st.integers(2, 8),
    st.sampled_from((0, 1, 4, 8, 16)),
    st.sampled_from(spec.POWER_LEVELS),
    st.integers(1, 5),
    st.integers(1, 40),
    st.integers(1, 5),
    st.floats(0, 1),
    st.integers(0, 2**32 - 1),
)
def test_int_gemm_matches_sequential_reference(scheme, wbits, abits, frac, levels, m, k, n, extreme, seed):
    rng = np.random.default_rng(seed)
    wbits = min(wbits, weight_bits(scheme)[-1])
    cfg = make_cfg(scheme, wbits, abits, frac, levels if scheme in spec.SHIFT_SCHEMES else "bbit")
    acts, weights, weight_table, act_table = random_operands(rng, cfg, m, k, n, extreme)
    fast = int_gemm(cfg, acts, weights, weight_table, act_table)
    assert fast.dtype == np.int64
    np.testing.assert_array_equal(fast, int_gemm_reference(cfg, acts, weights, weight_table, act_table))


@pytest.mark.parametrize(
    "cfg",
    [
        spec.DatapathConfig.make("post", 8, 8, frac_bits=16),
        spec.DatapathConfig.make("post", 6, 8, frac_bits=16, levels="paper"),
        spec.DatapathConfig.make("pot", 8, 8, frac_bits=16, levels="paper"),
        spec.DatapathConfig.make("int", 8, 8),
        spec.DatapathConfig.make("lcq", 8, 8, level_bits=12, act_level_bits=12),
        spec.DatapathConfig.make("apot", 7, 8, act_level_bits=12),
    ],
    ids=lambda c: c.scheme,
)
def test_int_gemm_exact_at_the_accumulator_extremes(cfg):
    """Sums far beyond float32's 24 bits, every column hitting the extreme product, stay exact."""
    rng = np.random.default_rng(1)
    k = 4608
    acts, weights, weight_table, act_table = random_operands(rng, cfg, 3, k, 4, extreme=0.9)
    table = spec.product_table(cfg, weight_table, act_table)
    lo_code, hi_code = np.unravel_index(table.argmin(), table.shape), np.unravel_index(table.argmax(), table.shape)
    index_to_code = (lambda i: i - ((i >> (cfg.weight.bits - 1)) & 1) * cfg.weight.num_codes) if cfg.scheme == "int" else (lambda i: i)
    acts[0, :], weights[:, 0] = hi_code[1], index_to_code(hi_code[0])
    acts[1, :], weights[:, 1] = lo_code[1], index_to_code(lo_code[0])
    acc = int_gemm(cfg, acts, weights, weight_table, act_table)
    expected = spec.pe_product(cfg, weights[None, :, :], acts[:, :, None], weight_table, act_table).sum(axis=1)
    np.testing.assert_array_equal(acc, expected)
    assert acc[0, 0] == k * table.max() and acc[1, 1] == k * table.min()
    assert abs(int(acc[0, 0])) > 1 << 24 or cfg.scheme == "int"
    lo, hi = spec.signed_range(gemm_accumulator_bits(cfg, k))
    assert lo <= acc.min() and acc.max() <= hi


@pytest.mark.parametrize("scheme", ["int", "post"])
def test_int_gemm_uses_float32_exactly_up_to_25_bit_accumulators(scheme, monkeypatch):
    """At the widest reduction a 25-bit accumulator holds, float32 BLAS runs and the extreme sum (|x| near 2^24) is
    exact; one product more needs 26 bits, where an odd sum beyond 2^24 (float32 would round it) comes out exact in
    float64."""
    cfg = spec.DatapathConfig.make(scheme, 8, 8, **({"frac_bits": 8} if scheme == "post" else {}))
    used = []
    real = gemm_module._exact_matmul
    monkeypatch.setattr(gemm_module, "_exact_matmul", lambda left, right, dtype: used.append(dtype) or real(left, right, dtype))
    table = spec.product_table(cfg)
    code = (lambda i: i - ((i >> (cfg.weight.bits - 1)) & 1) * cfg.weight.num_codes) if scheme == "int" else (lambda i: i)
    extreme = np.unravel_index(table.argmin() if -table.min() >= table.max() else table.argmax(), table.shape)
    widest = spec.max_reduction_length(cfg, gemm_module.FLOAT32_EXACT_BITS)
    for k, dtype in ((widest, np.float32), (widest + 1, np.float64)):
        big = int(table[extreme]) * (k - 1)  # k - 1 extreme products, the last the largest of their sign making it odd
        _, (last_w, last_a) = max((abs(int(v)), index) for index, v in np.ndenumerate(table)
                                  if np.sign(v) == np.sign(table[extreme]) and (big + int(v)) % 2)
        acts = np.full((1, k), extreme[1], dtype=np.int64)
        weights = np.full((k, 1), code(extreme[0]), dtype=np.int64)
        acts[0, -1], weights[-1, 0] = last_a, code(last_w)
        expected = spec.pe_product(cfg, weights[None, :, :], acts[:, :, None]).sum(axis=1)
        used.clear()
        assert gemm_accumulator_bits(cfg, k) == (25 if dtype is np.float32 else 26)
        np.testing.assert_array_equal(int_gemm(cfg, acts, weights), expected)
        assert set(used) == {dtype}
        total = int(expected[0, 0])
        assert total % 2 == 1 and (abs(total) > 1 << 24) == (dtype is np.float64)
        if dtype is np.float64:
            assert int(np.float32(total)) != total  # the sum float32 would get wrong


def test_int_gemm_errors():
    cfg = spec.DatapathConfig.make("pot", 4, 4)
    a, w = np.zeros((2, 3), dtype=np.int64), np.zeros((3, 2), dtype=np.int64)
    with pytest.raises(ConfigError, match="reduction lengths differ"):
        int_gemm(cfg, a, np.zeros((4, 2), dtype=np.int64))
    with pytest.raises(ConfigError, match="2-D"):
        int_gemm(cfg, a[0], w)
    with pytest.raises(ConfigError, match="at least 1"):
        int_gemm(cfg, np.zeros((2, 0), dtype=np.int64), np.zeros((0, 2), dtype=np.int64))
    with pytest.raises(ConfigError, match="no weight level table"):
        int_gemm(cfg, a, w, weight_table=np.arange(16))
    with pytest.raises(CodeRangeError):
        int_gemm(cfg, a, w + 16)
    with pytest.raises(CodeRangeError):
        int_gemm(cfg, a - 1, w)
    lcq = spec.DatapathConfig.make("lcq", 2, 2)
    with pytest.raises(LevelTableError, match="weight level table"):
        int_gemm(lcq, a, w, act_table=np.array([0, 1, 2, 3]))
    with pytest.raises(LevelTableError, match="activation level table"):
        int_gemm(lcq, a, w, weight_table=np.array([-1, 0, 0, 1]))
    with pytest.raises(AccumulatorOverflowError, match="not modelled exactly"):
        gemm_accumulator_bits(spec.DatapathConfig.make("int", 8, 8), 1 << 40)


@pytest.mark.parametrize("scheme", spec.WEIGHT_SCHEMES)
def test_ideal_weight_levels(scheme):
    cfg = make_cfg(scheme, 4, 4, 3)
    rng = np.random.default_rng(2)
    _, weights, weight_table, _ = random_operands(rng, cfg, 1, 30, 3)
    levels = ideal_weight_levels(cfg, weights, weight_table)
    if scheme in spec.SHIFT_SCHEMES:
        negative, exponent, zero = cfg.weight.unpack_power(weights)
        base = 2.0 if scheme == "pot" else math.sqrt(2.0)
        expected = np.where(zero, 0.0, (-1.0) ** negative * 8.0 * base ** -exponent.astype(float))
        np.testing.assert_allclose(levels, expected, rtol=1e-15)
        # the hardware product is within the spec's bound of level * a
        products = spec.pe_product(cfg, weights[:, :, None], np.arange(16)[None, None, :])
        assert np.abs(products - levels[:, :, None] * np.arange(16)).max() <= bounds.product_error_bound(cfg) + 1e-12
    elif scheme == "apot":  # exact: every product is the integer level times a
        np.testing.assert_array_equal(levels, cfg.weight.apot.value(weights))
        np.testing.assert_array_equal(spec.pe_product(cfg, weights[:, :, None], np.arange(16)[None, None, :], act_table=np.arange(16)),
                                      levels[:, :, None] * np.arange(16))
    else:
        expected = weights if scheme == "int" else weight_table[weights]
        np.testing.assert_array_equal(levels, expected)


# --------------------------------------------------------------------------- conv / linear


def conv_reference(cfg, x, w, stride, padding, dilation, groups, weight_table=None, act_table=None):
    """Direct convolution: for each output, gather the window by index arithmetic and sum pe_product."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    out_h = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    out_w = (wd + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    out = np.zeros((n, o, out_h, out_w), dtype=np.int64)
    per_group_out = o // groups
    for b in range(n):
        for oc in range(o):
            g = oc // per_group_out
            for y in range(out_h):
                for xo in range(out_w):
                    total = 0
                    for ci in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                yy, xx = y * stride - padding + i * dilation, xo * stride - padding + j * dilation
                                code = x[b, g * cg + ci, yy, xx] if 0 <= yy < h and 0 <= xx < wd else 0
                                total += int(spec.pe_product(cfg, w[oc, ci, i, j], code, weight_table, act_table))
                    out[b, oc, y, xo] = total
    return out


CONV_GEOMETRIES = [
    # (in_ch, out_ch, kernel, stride, padding, dilation, groups, size)
    (3, 4, 3, 1, 1, 1, 1, 5),
    (2, 3, 3, 2, 0, 1, 1, 7),
    (4, 4, 3, 1, 2, 2, 2, 6),
    (4, 4, 3, 2, 1, 1, 4, 5),  # depthwise
    (2, 2, 1, 1, 0, 1, 1, 3),
    (1, 2, 2, 3, 1, 1, 1, 6),
]


@pytest.mark.parametrize("geometry", CONV_GEOMETRIES, ids=str)
@pytest.mark.parametrize("scheme", spec.WEIGHT_SCHEMES)
def test_int_conv2d_matches_direct_convolution(scheme, geometry):
    cin, cout, k, stride, padding, dilation, groups, size = geometry
    rng = np.random.default_rng(zlib.crc32(repr((scheme, geometry)).encode()))
    cfg = make_cfg(scheme, 4, 3, 2)
    _, _, weight_table, act_table = random_operands(rng, cfg, 1, 1, 1)
    x = rng.integers(0, cfg.num_act_codes, (2, cin, size, size))
    w = random_operands(rng, cfg, 1, cout * (cin // groups) * k * k, 1)[1].reshape(cout, cin // groups, k, k)
    got = int_conv2d(cfg, x, w, stride, padding, dilation, groups, weight_table, act_table)
    np.testing.assert_array_equal(got, conv_reference(cfg, x, w, stride, padding, dilation, groups, weight_table, act_table))


@pytest.mark.parametrize("geometry", CONV_GEOMETRIES, ids=str)
def test_int_conv2d_matches_torch_on_int_weights(geometry):
    cin, cout, k, stride, padding, dilation, groups, size = geometry
    rng = np.random.default_rng(7)
    cfg = spec.DatapathConfig.make("int", 8, 8)
    x = rng.integers(0, 256, (3, cin * 4, size + 9, size + 5))
    w = rng.integers(-128, 128, (cout * 4, cin * 4 // groups, k, k))
    got = int_conv2d(cfg, x, w, stride, padding, dilation, groups)
    expected = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), None, stride, padding, dilation, groups)
    np.testing.assert_array_equal(got, expected.numpy().astype(np.int64))


def test_im2col_layout_matches_oihw_reshape():
    """Column c*kh*kw + i*kw + j of row (n, y, x) is input (n, c, y*s - p + i*d, x*s - p + j*d)."""
    rng = np.random.default_rng(3)
    x = rng.integers(1, 100, (2, 3, 6, 5))
    cols = im2col(x, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2))
    out_h, out_w = (6 + 2 - 2 - 1) // 2 + 1, (5 - 2 - 1) // 1 + 1
    assert cols.shape == (2 * out_h * out_w, 3 * 3 * 2)
    for row, (b, y, xo) in enumerate(np.ndindex(2, out_h, out_w)):
        for col, (c, i, j) in enumerate(np.ndindex(3, 3, 2)):
            yy, xx = y * 2 - 1 + i, xo + 2 * j
            assert cols[row, col] == (x[b, c, yy, xx] if 0 <= yy < 6 and 0 <= xx < 5 else 0)


def test_int_linear_uses_pytorch_layout():
    rng = np.random.default_rng(4)
    cfg = spec.DatapathConfig.make("post", 5, 6)
    x = rng.integers(0, 64, (4, 20))
    w = rng.integers(0, 32, (7, 20))  # [out, in]
    np.testing.assert_array_equal(int_linear(cfg, x, w), int_gemm_reference(cfg, x, w.T))


def test_conv_errors():
    cfg = spec.DatapathConfig.make("int", 4, 4)
    x = np.zeros((1, 4, 5, 5), dtype=np.int64)
    w = np.zeros((2, 4, 3, 3), dtype=np.int64)
    with pytest.raises(ConfigError, match="NCHW"):
        int_conv2d(cfg, x[0], w)
    with pytest.raises(ConfigError, match="groups"):
        int_conv2d(cfg, x, w, groups=3)
    with pytest.raises(ConfigError, match="input channels"):
        int_conv2d(cfg, x, w, groups=2)
    with pytest.raises(ConfigError, match="does not fit"):
        int_conv2d(cfg, x, np.zeros((2, 4, 7, 7), dtype=np.int64))
    for bad in ({"stride": 0}, {"padding": -1}, {"dilation": (1, 2, 3)}, {"stride": 1.5}):
        with pytest.raises(ConfigError):
            int_conv2d(cfg, x, w, **bad)

