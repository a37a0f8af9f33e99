"""The computed float-vs-integer bounds (golden.bounds) hold on random layers, and are not vacuous."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from goldentest import make_cfg as golden_cfg
from goldentest import random_layer

from golden import spec
from golden.bounds import codes_within_bound, layer_bound, real_forward, shortcut_error
from golden.integer import IntegerLayer
from golden.stages import Codes, OutputStage, Residual

SCHEMES = spec.WEIGHT_SCHEMES
MODES = ("uniform", "threshold", "asq", "accumulator")


def make_cfg(scheme: str, bits: int, frac_bits: int | None) -> spec.DatapathConfig:
    return golden_cfg(scheme, bits, bits, frac_bits)  # shift schemes: the legal F nearest frac_bits


def check_layer(layer: IntegerLayer, x: Codes, stats: dict, shortcut=None, shortcut_real=None, extra=0.0) -> None:
    out = layer.forward(x, shortcut)
    real = real_forward(layer, x, shortcut_real)
    bound = layer_bound(layer, x, out, real, extra)
    if layer.output.mode == "accumulator":
        error = np.abs(out.real() - real.value)
        assert np.all(error <= bound.value), f"{layer.name}: {np.max(error / bound.value)}"
        stats["value_ratio"] = max(stats.get("value_ratio", 0.0), float(np.max(error / bound.value)))
        return
    assert codes_within_bound(out.codes, real.codes, bound), layer.name
    differ = out.codes != real.codes
    assert np.all(bound.boundaries_near[differ] > 0)
    stats["codes"] = stats.get("codes", 0) + out.codes.size
    stats["differ"] = stats.get("differ", 0) + int(differ.sum())
    stats["near"] = stats.get("near", 0) + int((bound.boundaries_near > 0).sum())


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("kind", ("conv", "linear"))
@pytest.mark.parametrize("mode", MODES)
def test_bound_holds_on_random_layers(scheme, kind, mode):
    """Soundness over random widths 2..8, F near {0, 2, 8} (the legal ones), geometry, pooling, BN signs."""
    rng = np.random.default_rng(zlib.crc32(repr((scheme, kind, mode)).encode()))
    stats: dict = {}
    for trial in range(8):
        bits = int(rng.integers(2, 9))
        frac = (0, 2, 8, 8)[trial % 4] if scheme in spec.SHIFT_SCHEMES else None
        cfg = make_cfg(scheme, bits, frac)
        cin, cout = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        geometry = {}
        if kind == "conv":
            geometry = {"stride": int(rng.integers(1, 3)), "padding": int(rng.integers(0, 2))}
            if mode != "accumulator" and trial % 3 == 1:
                geometry["max_pool"] = (2, 2, 0)
            if mode != "accumulator" and trial % 3 == 2:
                geometry["global_pool"] = True
        layer = random_layer(
            rng, cfg, kind, cin if kind == "conv" else cin * 9, cout, 3, out_mode=mode,
            out_bits=int(rng.integers(2, 9)), input_step=float(rng.uniform(0.01, 0.2)), name=f"t{trial}", **geometry,
        )
        shape = (4, cin, 9, 9) if kind == "conv" else (4, cin * 9)
        x = Codes(rng.integers(0, cfg.num_act_codes, shape), np.full(4, layer.input_step), layer.act_table)
        check_layer(layer, x, stats)
    if mode != "accumulator":
        assert stats["differ"] <= stats["near"]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("mode", ("uniform", "threshold", "asq"))
def test_bound_is_tight_enough_to_be_useful(scheme, mode):
    """4-bit weights and activations, F = 8, a 3x3x16 window: few codes sit within the bound of a boundary."""
    rng = np.random.default_rng(zlib.crc32(repr((scheme, mode, "tight")).encode()))
    cfg = make_cfg(scheme, 4, 8)
    stats: dict = {}
    for trial in range(3):
        layer = random_layer(rng, cfg, "conv", 16, 16, 3, out_mode=mode, padding=1, name=f"t{trial}")
        x = Codes(rng.integers(0, 16, (4, 16, 8, 8)), np.full(4, layer.input_step), layer.act_table)
        check_layer(layer, x, stats)
    assert stats["differ"] <= stats["near"] < 0.05 * stats["codes"], stats


@pytest.mark.parametrize("scheme", SCHEMES)
def test_value_bound_is_tight_for_exact_products(scheme):
    """int/lcq products are exact: the bias rounding (half an LSB) is the whole bound and is nearly reached."""
    rng = np.random.default_rng(8)
    cfg = make_cfg(scheme, 4, 8)
    layer = random_layer(rng, cfg, "conv", 8, 16, 3, out_mode="accumulator", padding=1)
    x = Codes(rng.integers(0, 16, (2, 8, 6, 6)), np.full(2, layer.input_step), layer.act_table)
    stats: dict = {}
    check_layer(layer, x, stats)
    assert stats["value_ratio"] > (0.9 if scheme in ("int", "lcq") else 0.0)


@pytest.mark.parametrize("scheme", ("pot", "post"))
def test_product_error_term_is_needed(scheme):
    """With F = 0 the truncation error dominates: without the spec's product bound the claim would fail."""
    rng = np.random.default_rng(3)
    cfg = make_cfg(scheme, 6, 0)
    layer = random_layer(rng, cfg, "conv", 8, 8, 3, out_mode="accumulator", padding=1)
    x = Codes(rng.integers(0, cfg.num_act_codes, (2, 8, 6, 6)), np.full(2, layer.input_step))
    out, real = layer.forward(x), real_forward(layer, x)
    bound = layer_bound(layer, x, out, real)
    error = np.abs(out.real() - real.value)
    unit = np.abs(layer.weight_scale)[None, :, None, None] * layer.input_step
    assert np.all(error <= bound.value)
    assert np.any(error > 0.5 * unit * (1 + 1e-9)), "products must contribute beyond the bias rounding"


def test_int_and_lcq_value_error_is_only_the_bias_rounding():
    rng = np.random.default_rng(4)
    for scheme in ("int", "lcq"):
        layer = random_layer(rng, make_cfg(scheme, 5, None), "conv", 4, 6, 3, out_mode="accumulator")
        x = Codes(rng.integers(0, 32, (3, 4, 7, 7)), np.full(3, layer.input_step), layer.act_table)
        out, real = layer.forward(x), real_forward(layer, x)
        unit = np.abs(layer.weight_scale)[None, :, None, None] * layer.input_step
        error = np.abs(out.real() - real.value)
        assert np.all(error <= 0.5 * unit * (1 + 1e-9) + 1e-12)


@pytest.mark.parametrize("mode", ("codes", "accumulator"))
def test_bound_holds_with_residual_shortcuts(mode):
    rng = np.random.default_rng(5)
    stats: dict = {}
    for trial in range(5):
        cfg = make_cfg("post", 4, 4)
        if mode == "codes":
            source = random_layer(rng, cfg, "conv", 3, 6, 3, padding=1, name="source")
            x = Codes(rng.integers(0, 16, (3, 3, 8, 8)), np.full(3, source.input_step))
            src_out = source.forward(x)
            src_real, src_error = src_out.real(), None
            block_input = src_out
        else:
            source = random_layer(rng, cfg, "conv", 3, 6, 1, out_mode="accumulator", stride=1, name="source")
            x = Codes(rng.integers(0, 16, (3, 3, 8, 8)), np.full(3, source.input_step))
            src_out = source.forward(x)
            src_result = real_forward(source, x)
            src_real = src_result.value
            src_error = layer_bound(source, x, src_out, src_result).value
            block_input = x
        layer = random_layer(
            rng, cfg, "conv", block_input.codes.shape[1], 8, 3, padding=1, input_step=float(block_input.step[0]),
            residual=Residual("source", mode, stride=1, channel_pad=(1, 1)), name=f"main{trial}",
            out_mode="uniform" if trial % 2 else "accumulator",
        )
        unit = np.abs(layer.weight_scale)[None, :] * block_input.step[:, None]
        extra = shortcut_error(layer, src_out, unit, src_error)
        check_layer(layer, block_input, stats, src_out, src_real, extra)
    assert stats["value_ratio"] > 0.05


def test_network_level_agreement_is_measured():
    """Chained layers: codes mostly agree layer by layer when each layer sees the integer model's input."""
    rng = np.random.default_rng(6)
    cfg = make_cfg("post", 4, 8)
    first = random_layer(rng, cfg, "conv", 2, 6, 3, padding=1, name="a")
    second = random_layer(rng, cfg, "conv", 6, 6, 3, padding=1, input_step=first.output.step, name="b")
    x = Codes(rng.integers(0, 16, (8, 2, 10, 10)), np.full(8, first.input_step))
    stats: dict = {}
    check_layer(first, x, stats)
    check_layer(second, first.forward(x), stats)
    assert stats["differ"] / stats["codes"] < 0.05


def test_bound_rejects_a_wrong_layer():
    """A layer with one corrupted weight code breaks the claim: the check is not vacuous."""
    rng = np.random.default_rng(7)
    layer = random_layer(rng, make_cfg("int", 4, None), "conv", 4, 4, 3, out_mode="uniform", out_bits=8, padding=1)
    x = Codes(rng.integers(0, 16, (4, 4, 8, 8)), np.full(4, layer.input_step))
    codes = layer.weight_codes.copy()
    codes[0, 0, 1, 1] = 7 if codes[0, 0, 1, 1] != 7 else -8
    fields = {name: getattr(layer, name) for name in IntegerLayer.__dataclass_fields__}
    broken = IntegerLayer(**{**fields, "weight_codes": codes, "output": OutputStage("uniform", 8, layer.output.step)})
    out = broken.forward(x)
    real = real_forward(layer, x)
    assert not codes_within_bound(out.codes, real.codes, layer_bound(layer, x, out, real))


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("mode", ("uniform", "threshold", "asq", "accumulator"))
def test_bound_holds_with_per_sample_input_steps(scheme, mode):
    """ASQ inputs: every sample has its own step, so bias, multipliers and thresholds are per sample."""
    rng = np.random.default_rng(zlib.crc32(repr((scheme, mode, "adaptive")).encode()))
    stats: dict = {}
    for trial in range(3):
        cfg = make_cfg(scheme, 4, 8)
        layer = random_layer(
            rng, cfg, "conv", 6, 8, 3, out_mode=mode, padding=1, input_adaptive=True, name=f"a{trial}",
            **({"global_pool": True} if trial == 2 and mode != "accumulator" else {}),
        )
        steps = layer.input_step * rng.uniform(0.25, 2.0, 5)
        x = Codes(rng.integers(0, cfg.num_act_codes, (5, 6, 7, 7)), steps, layer.act_table)
        params = layer.requant_params(steps)
        assert len({tuple(row) for row in params.bias}) > 1, "per-sample bias"
        check_layer(layer, x, stats)
    if mode != "accumulator":
        assert stats["differ"] <= stats["near"] < 0.1 * stats["codes"]
