"""Tests of the bit-exact integer model (golden.integer) against slow references and PyTorch."""

from __future__ import annotations

import math
import zlib
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from golden import spec
from golden.errors import (
    AccumulatorOverflowError,
    CheckpointMismatchError,
    CodeRangeError,
    ConfigError,
    LevelTableError,
    NonFiniteInputError,
    UnknownSchemeError,
)
from golden.integer import (
    AsqAdapter,
    Codes,
    IntegerLayer,
    IntegerNetwork,
    OutputStage,
    Residual,
    gemm_accumulator_bits,
    ideal_weight_levels,
    im2col,
    int_conv2d,
    int_gemm,
    int_gemm_reference,
    int_linear,
    max_pool,
    random_layer,
    requantize_channels,
    rescale,
    threshold_channels,
)

BITS = range(spec.MIN_BITS, spec.MAX_BITS + 1)


def make_cfg(scheme: str, wbits: int, abits: int, frac_bits: int | None = None, levels: str = "bbit") -> spec.DatapathConfig:
    if scheme in spec.SHIFT_SCHEMES:
        return spec.DatapathConfig.make(scheme, wbits, abits, frac_bits=frac_bits, levels=levels)
    return spec.DatapathConfig.make(scheme, wbits, abits)


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
    for wbits in BITS:
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
    cfg = make_cfg(scheme, wbits, abits, frac, levels if scheme in spec.SHIFT_SCHEMES else "bbit")
    acts, weights, weight_table, act_table = random_operands(rng, cfg, m, k, n, extreme)
    fast = int_gemm(cfg, acts, weights, weight_table, act_table)
    assert fast.dtype == np.int64
    np.testing.assert_array_equal(fast, int_gemm_reference(cfg, acts, weights, weight_table, act_table))


@pytest.mark.parametrize(
    "cfg",
    [
        spec.DatapathConfig.make("post", 8, 8, frac_bits=16),
        spec.DatapathConfig.make("pot", 8, 8, frac_bits=16, levels="paper"),
        spec.DatapathConfig.make("int", 8, 8),
        spec.DatapathConfig.make("lcq", 8, 8, level_bits=12, act_level_bits=12),
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
        assert np.abs(products - levels[:, :, None] * np.arange(16)).max() <= spec.product_error_bound(cfg) + 1e-12
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


# --------------------------------------------------------------------------- requantization helpers


def test_requantize_channels_per_channel_and_per_sample():
    rng = np.random.default_rng(5)
    acc = rng.integers(-3000, 3000, (2, 3, 4, 4))
    bias = rng.integers(-50, 50, 3)
    mantissa = rng.integers(1 << 15, 1 << 16, (2, 3))
    shift = rng.integers(18, 22, 3)
    got = requantize_channels(acc, bias, mantissa, shift, 5)
    for n, c in np.ndindex(2, 3):
        np.testing.assert_array_equal(got[n, c], spec.requantize(acc[n, c], bias[c], mantissa[n, c], shift[c], 5))
    with pytest.raises(ConfigError, match="mantissa"):
        requantize_channels(acc, bias, np.ones((3, 3), dtype=np.int64), shift, 5)
    with pytest.raises(ConfigError, match=r"\[N, C"):
        requantize_channels(acc[0, 0, 0], 0, 1, 0, 5)


def test_threshold_channels_banks():
    rng = np.random.default_rng(6)
    acc = rng.integers(-100, 100, (2, 3, 2, 2))
    shared = np.sort(rng.integers(-80, 80, 3))
    per_channel = np.sort(rng.integers(-80, 80, (3, 3)), axis=1)
    per_sample = np.sort(rng.integers(-80, 80, (2, 3, 3)), axis=2)
    bias = rng.integers(-5, 5, (2, 3))
    for bank in (shared, per_channel, per_sample):
        got = threshold_channels(acc, bias, bank)
        for n, c in np.ndindex(2, 3):
            row = bank if bank.ndim == 1 else bank[c] if bank.ndim == 2 else bank[n, c]
            expected = (acc[n, c][..., None] + bias[n, c] >= row).sum(axis=-1)
            np.testing.assert_array_equal(got[n, c], expected)
    with pytest.raises(ConfigError, match="thresholds"):
        threshold_channels(acc, 0, per_channel[:2])
    with pytest.raises(ConfigError, match="bias"):
        threshold_channels(acc, np.zeros((2, 3, 1), dtype=np.int64), shared)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-(1 << 45) + 1, (1 << 45) - 1),
    st.integers(0, (1 << spec.MULTIPLIER_BITS) - 1),
    st.integers(0, spec.MAX_REQUANT_SHIFT),
)
def test_rescale_rounds_half_up_without_clipping(value, mantissa, shift):
    expected = math.floor(Fraction(value * mantissa, 1 << shift) + Fraction(1, 2))
    assert int(rescale(np.array([value]), mantissa, shift)[0]) == expected


def test_rescale_errors():
    with pytest.raises(CodeRangeError):
        rescale(np.array([1]), -1, 0)
    with pytest.raises(CodeRangeError):
        rescale(np.array([1]), 1, spec.MAX_REQUANT_SHIFT + 1)
    with pytest.raises(AccumulatorOverflowError):
        rescale(np.array([1 << 46]), 1, 0)


def test_max_pool_matches_torch():
    rng = np.random.default_rng(8)
    values = rng.integers(0, 1000, (2, 3, 9, 8))
    for kernel, stride, padding in ((3, 2, 1), (2, 2, 0), (3, 1, 1)):
        expected = F.max_pool2d(torch.from_numpy(values).double(), kernel, stride, padding).numpy()
        np.testing.assert_array_equal(max_pool(values, kernel, stride, padding), expected)
    with pytest.raises(CodeRangeError):
        max_pool(values - 2000, 3, 2, 1)


# --------------------------------------------------------------------------- layers


def small_layer(rng, scheme="int", mode="uniform", kind="conv", **kwargs):
    cfg = make_cfg(scheme, 4, 4)
    return random_layer(rng, cfg, kind, kwargs.pop("in_channels", 3), kwargs.pop("out_channels", 4), out_mode=mode, **kwargs)


def input_codes(rng, layer, shape):
    return Codes(rng.integers(0, layer.cfg.num_act_codes, shape), np.full(shape[0], layer.input_step), layer.act_table)


@pytest.mark.parametrize("scheme", spec.WEIGHT_SCHEMES)
@pytest.mark.parametrize("mode", ("uniform", "threshold", "asq", "accumulator"))
def test_layer_forward_is_the_documented_composition(scheme, mode):
    """accumulate -> sign, rint(bias/unit) -> requantize / threshold bank / ASQ per-sample multiplier."""
    rng = np.random.default_rng(9)
    layer = small_layer(rng, scheme, mode, padding=1)
    x = input_codes(rng, layer, (3, 3, 5, 5))
    out = layer.forward(x)
    acc = int_conv2d(layer.cfg, x.codes, layer.weight_codes, 1, 1, 1, 1, layer.weight_table, layer.act_table)
    unit = np.abs(layer.weight_scale) * layer.input_step
    sign = np.sign(layer.weight_scale).astype(np.int64)
    t = sign[None, :, None, None] * acc + np.rint(layer.bias / unit).astype(np.int64)[None, :, None, None]
    if mode == "accumulator":
        np.testing.assert_array_equal(out.values, t)
        np.testing.assert_allclose(out.unit, np.broadcast_to(unit, (3, 4)))
        return
    if mode == "threshold":
        bank = np.ceil(layer.output.thresholds[None, :] / unit[:, None]).astype(np.int64)
        expected = threshold_channels(t, 0, bank)
        np.testing.assert_array_equal(out.table, layer.output.levels)
    else:
        beta = np.ones(3)
        if mode == "asq":
            beta = layer.output.adapter(np.maximum(t, 0).mean(axis=(2, 3)) * unit)
            np.testing.assert_allclose(out.step, layer.output.step * beta)
        mantissa, shift = spec.quantize_multiplier(unit[None, :] / (layer.output.step * beta[:, None]))
        expected = requantize_channels(t, 0, mantissa, shift, layer.output.bits)
    np.testing.assert_array_equal(out.codes, expected)
    assert out.codes.min() >= 0 and out.codes.max() < 1 << layer.output.bits


def test_per_sample_input_steps_give_per_sample_requantizers():
    """ASQ input: unit, bias and multiplier follow each sample's step; a static step gives one row."""
    rng = np.random.default_rng(22)
    layer = small_layer(rng, "post", "uniform", padding=1, input_adaptive=True)
    steps = layer.input_step * np.array([0.5, 1.0, 1.7])
    x = Codes(rng.integers(0, 16, (3, 3, 5, 5)), steps)
    out = layer.forward(x)
    acc = layer.accumulate(x)
    for n in range(3):
        unit = np.abs(layer.weight_scale) * steps[n]
        bias = np.rint(layer.bias / unit).astype(np.int64)
        mantissa, shift = spec.quantize_multiplier(unit / layer.output.step)
        t = layer.sign[:, None, None] * acc[n] + bias[:, None, None]
        for c in range(layer.out_channels):
            expected = spec.requantize(t[c], 0, mantissa[c], shift[c], layer.output.bits)
            np.testing.assert_array_equal(out.codes[n, c], expected)
    static = layer.requant_params(np.full(4, layer.input_step))
    assert all(np.array_equal(static.mantissa[0], row) for row in static.mantissa)
    assert not np.array_equal(layer.requant_params(steps).mantissa[0], layer.requant_params(steps).mantissa[2])


def test_negative_scale_channels_negate_the_accumulator():
    rng = np.random.default_rng(10)
    layer = small_layer(rng, "pot", "accumulator")
    flipped = IntegerLayer(**{**_fields(layer), "weight_scale": -layer.weight_scale, "bias": -layer.bias})
    x = input_codes(rng, layer, (2, 3, 4, 4))
    np.testing.assert_array_equal(flipped.forward(x).values, -layer.forward(x).values)


@pytest.mark.parametrize("scheme", spec.WEIGHT_SCHEMES)
def test_signs_move_into_weight_codes_exactly(scheme):
    rng = np.random.default_rng(20)
    layer = small_layer(rng, scheme, "uniform", padding=1)
    layer = IntegerLayer(**{**_fields(layer), "weight_scale": layer.weight_scale * np.array([1, -1, -1, 1])})
    if scheme == "lcq":  # a symmetric table, as the export builds: [-L_Q..-L_1, 0, L_1..L_Q, L_Q]
        magnitudes = np.sort(rng.integers(1, 127, 7))
        table = np.concatenate([-magnitudes[::-1], [0], magnitudes, magnitudes[-1:]])
        layer = IntegerLayer(**{**_fields(layer), "weight_table": table})
    if scheme == "int":  # -2^(b-1) cannot be negated: keep it out of the negative channels
        codes = np.where(layer.weight_codes == -8, -7, layer.weight_codes)
        layer = IntegerLayer(**{**_fields(layer), "weight_codes": codes})
    assert np.any(layer.weight_scale < 0)
    folded = layer.with_signs_in_weights()
    assert np.all(folded.weight_scale > 0)
    x = input_codes(rng, layer, (2, 3, 6, 6))
    sign = layer.sign[None, :, None, None]
    np.testing.assert_array_equal(folded.accumulate(x), sign * layer.accumulate(x))
    np.testing.assert_array_equal(folded.forward(x).codes, layer.forward(x).codes)
    assert folded.with_signs_in_weights() is folded


def test_sign_folding_refuses_inexact_negation():
    rng = np.random.default_rng(21)
    layer = small_layer(rng, "int", "uniform")
    codes = layer.weight_codes.copy()
    codes[0, 0, 0, 0] = -8
    negated = IntegerLayer(**{**_fields(layer), "weight_codes": codes, "weight_scale": -np.abs(layer.weight_scale)})
    with pytest.raises(CodeRangeError, match="holds the code"):
        negated.with_signs_in_weights()
    lcq = small_layer(rng, "lcq", "uniform")
    asymmetric = IntegerLayer(**{**_fields(lcq), "weight_table": np.arange(-3, 13), "weight_scale": -np.abs(lcq.weight_scale)})
    with pytest.raises(CodeRangeError, match="not symmetric"):
        asymmetric.with_signs_in_weights()


def _fields(layer):
    return {name: getattr(layer, name) for name in IntegerLayer.__dataclass_fields__}


def test_pooling_on_accumulators_equals_pooling_codes():
    """Max pooling relu(t) before requantizing gives the same codes as pooling the codes (monotone)."""
    rng = np.random.default_rng(11)
    for mode in ("uniform", "threshold"):
        pooled = small_layer(rng, "post", mode, padding=1, max_pool=(3, 2, 1))
        plain = IntegerLayer(**{**_fields(pooled), "output": OutputStage(
            mode, pooled.output.bits, pooled.output.step, pooled.output.thresholds, pooled.output.levels)})
        x = input_codes(rng, pooled, (2, 3, 8, 8))
        np.testing.assert_array_equal(pooled.forward(x).codes, max_pool(plain.forward(x).codes, 3, 2, 1))


def test_global_pool_sums_and_scales():
    rng = np.random.default_rng(12)
    layer = small_layer(rng, "int", "uniform", global_pool=True)
    x = input_codes(rng, layer, (2, 3, 6, 6))
    out = layer.forward(x)
    assert out.codes.shape == (2, 4)
    raw = IntegerLayer(**{**_fields(layer), "output": OutputStage("accumulator")}).forward(x)
    summed = np.maximum(raw.values, 0).sum(axis=(2, 3))
    mantissa, shift = spec.quantize_multiplier(raw.unit / (16 * layer.output.step))
    np.testing.assert_array_equal(out.codes, requantize_channels(summed, 0, mantissa, shift, layer.output.bits))


def test_linear_layer_flattens_conv_output():
    rng = np.random.default_rng(13)
    layer = small_layer(rng, "lcq", "accumulator", kind="linear", in_channels=2 * 3 * 3)
    x = input_codes(rng, layer, (2, 2, 3, 3))
    flat = Codes(x.codes.reshape(2, -1), x.step, x.table)
    np.testing.assert_array_equal(layer.forward(x).values, layer.forward(flat).values)


def test_layer_validation_errors():
    rng = np.random.default_rng(14)
    layer = small_layer(rng, "lcq", "uniform")
    fields = _fields(layer)
    cases = [
        ({"name": ""}, ConfigError),
        ({"name": "input"}, ConfigError),
        ({"kind": "deconv"}, UnknownSchemeError),
        ({"weight_codes": layer.weight_codes[0]}, ConfigError),
        ({"weight_codes": layer.weight_codes + 100}, CodeRangeError),
        ({"weight_scale": np.ones(3)}, ConfigError),
        ({"weight_scale": np.zeros(4)}, ConfigError),
        ({"weight_scale": np.full(4, np.nan)}, NonFiniteInputError),
        ({"bias": np.ones((4, 1))}, ConfigError),
        ({"bias": np.array(["a"] * 4)}, ConfigError),
        ({"input_step": 0.0}, ConfigError),
        ({"weight_table": None}, LevelTableError),
        ({"weight_table": layer.weight_table[::-1]}, LevelTableError),
        ({"act_table": None}, LevelTableError),
        ({"act_table": layer.act_table + 1}, LevelTableError),
        ({"accumulator_width": layer.accumulator_width - 1}, AccumulatorOverflowError),
        ({"stride": 0}, ConfigError),
        ({"groups": 3}, ConfigError),
        ({"output": "uniform"}, ConfigError),
        ({"residual": "input"}, ConfigError),
    ]
    for change, error in cases:
        with pytest.raises(error):
            IntegerLayer(**{**fields, **change})
    int_layer = small_layer(rng, "int", "uniform")
    with pytest.raises(ConfigError, match="no weight level table"):
        IntegerLayer(**{**_fields(int_layer), "weight_table": np.arange(16)})
    with pytest.raises(ConfigError, match="uniform activation"):
        IntegerLayer(**{**_fields(int_layer), "act_table": np.arange(16)})
    linear = small_layer(rng, "int", "uniform", kind="linear")
    with pytest.raises(ConfigError, match="no conv geometry"):
        IntegerLayer(**{**_fields(linear), "stride": (2, 2)})


def test_output_stage_validation_errors():
    levels, thresholds = np.arange(16), np.linspace(0, 1, 15)
    adapter = AsqAdapter((np.ones((1, 4)),), (np.zeros(1),))
    cases = [
        (dict(mode="round"), UnknownSchemeError),
        (dict(mode="uniform", bits=9), Exception),
        (dict(mode="uniform", step=0.0), ConfigError),
        (dict(mode="uniform", step=float("inf")), ConfigError),
        (dict(mode="asq"), ConfigError),
        (dict(mode="uniform", adapter=adapter), ConfigError),
        (dict(mode="threshold"), LevelTableError),
        (dict(mode="threshold", thresholds=thresholds[:-1], levels=levels), ConfigError),
        (dict(mode="threshold", thresholds=thresholds[::-1], levels=levels), LevelTableError),
        (dict(mode="threshold", thresholds=thresholds, levels=levels + 1), LevelTableError),
        (dict(mode="uniform", thresholds=thresholds), ConfigError),
        (dict(mode="uniform", max_pool=(3, 0, 1)), ConfigError),
        (dict(mode="uniform", max_pool="big"), ConfigError),
        (dict(mode="uniform", max_pool=(3, 2, 1), global_pool=True), ConfigError),
    ]
    for kwargs, error in cases:
        with pytest.raises(error):
            OutputStage(**{"bits": 4, **kwargs})
    for weights, biases in (((np.ones((2, 4)),), (np.zeros(2),)), ((np.ones((1, 4)),), ()), ((np.ones((1, 4)), np.ones((1, 3))), (np.zeros(1), np.zeros(1)))):
        with pytest.raises(ConfigError):
            AsqAdapter(weights, biases)
    with pytest.raises(ConfigError, match="beta_floor"):
        AsqAdapter((np.ones((1, 4)),), (np.zeros(1),), beta_floor=0.0)


def test_asq_adapter_floor_and_relu():
    adapter = AsqAdapter((np.array([[1.0, -1.0]]),), (np.array([0.5]),), beta_floor=0.25)
    np.testing.assert_allclose(adapter(np.array([[1.0, 0.0], [0.0, 3.0], [0.1, 0.3]])), [1.5, 0.25, 0.3])


def test_layer_input_checks():
    rng = np.random.default_rng(15)
    layer = small_layer(rng, "lcq", "uniform")
    x = input_codes(rng, layer, (2, 3, 4, 4))
    with pytest.raises(CheckpointMismatchError, match="level table"):
        layer.forward(Codes(x.codes, x.step, None))
    with pytest.raises(CheckpointMismatchError, match="static step"):
        layer.forward(Codes(x.codes, x.step * 2, x.table))
    with pytest.raises(ConfigError, match="shortcut"):
        layer.forward(x, x)
    with pytest.raises(CodeRangeError):
        layer.forward(Codes(x.codes + 16, x.step, x.table))
    with pytest.raises(ConfigError):
        Codes(np.zeros(3, dtype=np.int64), np.ones(3))
    with pytest.raises(ConfigError):
        Codes(np.zeros((3, 2), dtype=np.int64), -np.ones(3))


# --------------------------------------------------------------------------- networks


def residual_network(rng, scheme="int", act_mode="uniform"):
    """stem (max pool) -> block with identity shortcut -> block with downsample shortcut -> global pool -> fc."""
    cfg = make_cfg(scheme, 4, 4)
    if act_mode == "threshold":
        cfg = spec.DatapathConfig.make("lcq", 4, 4) if scheme == "lcq" else spec.DatapathConfig.make("int", 4, 4, act_format="table")
    adaptive = act_mode == "asq"

    def layer(name, cin, cout, previous, mode=None, **kwargs):
        stage = previous.output if previous is not None else None
        return random_layer(
            rng, cfg, kwargs.pop("kind", "conv"), cin, cout, kwargs.pop("kernel", 3), out_mode=mode or act_mode,
            input_step=stage.step if stage else 0.1, input_adaptive=adaptive,
            act_table=stage.levels if stage is not None and stage.mode == "threshold" else input_table, name=name, **kwargs,
        )

    input_table = None
    if act_mode == "threshold":
        input_table = np.sort(rng.integers(0, 256, 16))
        input_table[0] = 0
        stage_in = OutputStage("threshold", 4, 0.1, np.sort(rng.uniform(0, 1.5, 15)), input_table)
    elif adaptive:
        stage_in = OutputStage("asq", 4, 0.1, adapter=AsqAdapter((rng.normal(0, 0.01, (1, 3)),), (np.array([1.0]),)))
    else:
        stage_in = OutputStage("uniform", 4, 0.1)
    stem = layer("stem", 3, 6, None, padding=1, max_pool=(3, 2, 1))
    a1 = layer("block1.conv1", 6, 6, stem, padding=1)
    a2 = layer("block1.conv2", 6, 6, a1, padding=1, residual=Residual("stem", "codes"))
    down = layer("block2.down", 6, 8, a2, "accumulator", kernel=1, stride=2)
    b1 = layer("block2.conv1", 6, 8, a2, stride=2, padding=1, input="block1.conv2")
    b2 = layer("block2.conv2", 8, 8, b1, padding=1, residual=Residual("block2.down", "accumulator"), global_pool=True)
    fc = layer("fc", 8, 5, b2, "accumulator", kind="linear")
    return IntegerNetwork((stem, a1, a2, down, b1, b2, fc), stage_in)


@pytest.mark.parametrize("act_mode", ("uniform", "threshold", "asq"))
def test_residual_network_runs_and_aligns_shortcuts(act_mode):
    rng = np.random.default_rng(16)
    net = residual_network(rng, "post" if act_mode != "threshold" else "lcq", act_mode)
    x = rng.uniform(0, 1.5, (3, 3, 12, 12))
    outputs = net.run(x)
    assert list(outputs) == ["input"] + [layer.name for layer in net.layers]
    assert outputs["stem"].codes.shape == (3, 6, 6, 6)
    assert outputs["block2.conv2"].codes.shape == (3, 8)
    assert net.logits(x).shape == (3, 5)
    # the identity shortcut lands in block1.conv2's accumulator units, half-LSB rounding + multiplier error
    layer = net.layers[2]
    main = IntegerLayer(**{**_fields(layer), "output": OutputStage("accumulator"), "residual": None})
    with_shortcut = IntegerLayer(**{**_fields(layer), "output": OutputStage("accumulator")})
    added = with_shortcut.forward(outputs["block1.conv1"], outputs["stem"]).values - main.forward(outputs["block1.conv1"]).values
    unit = main.forward(outputs["block1.conv1"]).unit[:, :, None, None]
    shortcut_real = outputs["stem"].real()
    assert np.abs(added * unit - shortcut_real).max() <= (0.5 + 1e-3) * unit.max() + 2.0**-15 * np.abs(shortcut_real).max()
    assert np.any(added != 0)


def test_network_validation():
    rng = np.random.default_rng(17)
    net = residual_network(rng)
    layers = list(net.layers)
    with pytest.raises(ConfigError, match="duplicate"):
        IntegerNetwork(tuple(layers + [layers[-1]]), net.input_stage)
    with pytest.raises(ConfigError, match="not an earlier layer"):
        IntegerNetwork((IntegerLayer(**{**_fields(layers[0]), "input": "nowhere"}),), net.input_stage)
    with pytest.raises(ConfigError, match="accumulator output cannot feed"):
        IntegerNetwork(tuple(layers[:4]) + (IntegerLayer(**{**_fields(layers[4]), "input": "block2.down"}),), net.input_stage)
    with pytest.raises(ConfigError, match="residual mode"):
        IntegerNetwork(tuple(layers[:2]) + (IntegerLayer(**{**_fields(layers[2]), "residual": Residual("stem", "accumulator")}),), net.input_stage)
    with pytest.raises(CheckpointMismatchError, match="differs from input_step"):
        IntegerNetwork((layers[0],), OutputStage("uniform", 4, 0.2))
    with pytest.raises(CheckpointMismatchError, match="4-bit"):
        IntegerNetwork((layers[0],), OutputStage("uniform", 5, 0.1))
    with pytest.raises(CheckpointMismatchError, match="ASQ"):
        IntegerNetwork((layers[0],), OutputStage("asq", 4, 0.1, adapter=AsqAdapter((np.ones((1, 3)),), (np.ones(1),))))
    with pytest.raises(ConfigError):
        IntegerNetwork((), net.input_stage)


@pytest.mark.parametrize("suffix", (".json", ".npz"))
@pytest.mark.parametrize("act_mode", ("uniform", "threshold", "asq"))
def test_network_round_trips_through_files(tmp_path, suffix, act_mode):
    rng = np.random.default_rng(18)
    net = residual_network(rng, "lcq" if act_mode == "threshold" else "pot", act_mode)
    path = tmp_path / f"net{suffix}"
    net.save(path)
    loaded = IntegerNetwork.load(path)
    x = rng.uniform(0, 1.5, (2, 3, 10, 10))
    for (name, ours), theirs in zip(net.run(x).items(), loaded.run(x).values(), strict=True):
        if isinstance(ours, Codes):
            np.testing.assert_array_equal(ours.codes, theirs.codes, err_msg=name)
            np.testing.assert_array_equal(ours.step, theirs.step)
        else:
            np.testing.assert_array_equal(ours.values, theirs.values, err_msg=name)
    for mine, other in zip(net.layers, loaded.layers, strict=True):
        np.testing.assert_array_equal(mine.weight_codes, other.weight_codes)
        assert mine.cfg == other.cfg and mine.weight_scale.tolist() == other.weight_scale.tolist()


def test_malformed_network_files(tmp_path):
    rng = np.random.default_rng(19)
    net = residual_network(rng)
    data = net.to_dict()
    bad_cases = [
        ({**data, "format": "other"}, ConfigError),
        ({**data, "version": 99}, CheckpointMismatchError),
        ({**data, "extra": 1}, ConfigError),
        ({**data, "layers": "x"}, ConfigError),
        ({**data, "layers": [{**data["layers"][0], "colour": "red"}]}, ConfigError),
        ({**data, "layers": [{k: v for k, v in data["layers"][0].items() if k != "bias"}]}, ConfigError),
        ({**data, "layers": [{**data["layers"][0], "weight_codes": {"dtype": "int64", "shape": [2], "data": [1, 2, 3]}}]}, ConfigError),
        ({**data, "layers": [{**data["layers"][0], "weight_codes": [1, 2]}]}, ConfigError),
        ({**data, "layers": [{**data["layers"][0], "cfg": {**data["layers"][0]["cfg"], "scheme": "apot"}}]}, UnknownSchemeError),
    ]
    for document, error in bad_cases:
        with pytest.raises(error):
            IntegerNetwork.from_dict(document)
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable"):
        IntegerNetwork.load(path)
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(ConfigError):
        IntegerNetwork.load(path)
    np.savez(tmp_path / "no_meta.npz", a0=np.zeros(3))
    with pytest.raises(ConfigError, match="no network description"):
        IntegerNetwork.load(tmp_path / "no_meta.npz")
    net.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as archive:
        members = {k: archive[k] for k in archive.files if k != "a0"}
    np.savez(tmp_path / "missing.npz", **members)
    with pytest.raises(CheckpointMismatchError, match="lacks array"):
        IntegerNetwork.load(tmp_path / "missing.npz")
    with pytest.raises(ConfigError, match="file type"):
        net.save(tmp_path / "net.pkl")
    with pytest.raises(ConfigError, match="file type"):
        IntegerNetwork.load(tmp_path / "net.pkl")
