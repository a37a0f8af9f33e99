"""Tests of the integer layers and networks (golden.integer, golden.stages): composition, signs, pooling, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from goldentest import make_cfg, random_layer, residual_network

from golden import requantization, spec
from golden.errors import (
    AccumulatorOverflowError,
    CheckpointMismatchError,
    CodeRangeError,
    ConfigError,
    LevelTableError,
    NonFiniteInputError,
    UnknownSchemeError,
)
from golden.gemm import (
    int_conv2d,
)
from golden.integer import IntegerLayer, IntegerNetwork, max_pool, requantize_channels, threshold_channels
from golden.stages import AsqAdapter, Codes, OutputStage, Residual

# --------------------------------------------------------------------------- requantization helpers


def test_requantize_channels_per_channel_and_per_sample():
    rng = np.random.default_rng(5)
    acc = rng.integers(-3000, 3000, (2, 3, 4, 4))
    bias = rng.integers(-50, 50, 3)
    mantissa = rng.integers(1 << 15, 1 << 16, (2, 3))
    shift = rng.integers(18, 22, 3)
    got = requantize_channels(acc, bias, mantissa, shift, 5)
    for n, c in np.ndindex(2, 3):
        np.testing.assert_array_equal(got[n, c], requantization.requantize(acc[n, c], bias[c], mantissa[n, c], shift[c], 5))
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
        mantissa, shift = requantization.quantize_multiplier(unit[None, :] / (layer.output.step * beta[:, None]))
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
        mantissa, shift = requantization.quantize_multiplier(unit / layer.output.step)
        t = layer.sign[:, None, None] * acc[n] + bias[:, None, None]
        for c in range(layer.out_channels):
            expected = requantization.requantize(t[c], 0, mantissa[c], shift[c], layer.output.bits)
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
    mantissa, shift = requantization.quantize_multiplier(raw.unit / (16 * layer.output.step))
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


@pytest.mark.parametrize("width", [20.0, 20.5, "20", True, np.float64(20)])
def test_a_non_int_accumulator_width_names_the_type(width):
    layer = small_layer(np.random.default_rng(3), "int", "uniform")
    with pytest.raises(ConfigError, match=f"accumulator_width must be an int, got {type(width).__name__} ") as raised:
        IntegerLayer(**{**_fields(layer), "accumulator_width": width})
    assert not isinstance(raised.value, AccumulatorOverflowError)  # the type is wrong, not the width
    with pytest.raises(ConfigError, match=f"accumulator width must be an int, got {type(width).__name__} "):
        spec.check_accumulator(layer.cfg, width, layer.reduction_length)


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

