"""The output lane and threshold bank alone, one vector per cycle through the pipeline, against golden."""

import numpy as np
import pytest
from amaranth import Module, Signal, Value, signed
from amaranth.lib import data
from amaranth.sim import Simulator

from golden import output_stage, requantization, spec
from hw.config import ArrayConfig
from hw.host import pack_words
from hw.layout import OutputMode, multiplier_layout
from hw.output_stage import OutputLane
from hw.requant import clip_code

LATENCY = OutputLane.latency


def run_lane(cfg: ArrayConfig, acc, bias, mantissa, shift, mode: OutputMode, relu=False, thresholds=None,
             negate=None, shortcut=None) -> np.ndarray:
    """``shortcut``: ``(values, mantissas, shifts)`` per vector, on a config with ``residual_bits``."""
    lane = OutputLane(cfg)
    results = []
    multipliers = pack_words(multiplier_layout(cfg), np.stack([mantissa, shift], 1))
    negate = np.zeros(len(acc), dtype=np.int64) if negate is None else negate
    if shortcut is not None:
        shortcut_values, shortcut_mantissa, shortcut_shift = shortcut
        shortcut_multipliers = pack_words(multiplier_layout(cfg), np.stack([shortcut_mantissa, shortcut_shift], 1))

    async def bench(ctx):
        ctx.set(lane.mode, mode)
        ctx.set(lane.relu, relu)
        if thresholds is not None:
            ctx.set(Value.cast(lane.thresholds), thresholds)
        ctx.set(lane.valid, 1)
        for step in range(len(acc) + LATENCY):
            if step < len(acc):
                ctx.set(lane.acc, int(acc[step]))
                ctx.set(lane.bias, int(bias[step]))
                ctx.set(Value.cast(lane.multiplier), multipliers[step])
                ctx.set(lane.negate, int(negate[step]))
                if shortcut is not None:
                    ctx.set(lane.shortcut.enable, 1)
                    ctx.set(lane.shortcut.value, int(shortcut_values[step]))
                    ctx.set(Value.cast(lane.shortcut.multiplier), shortcut_multipliers[step])
            else:
                ctx.set(lane.valid, 0)
            if step >= LATENCY:
                assert ctx.get(lane.result_valid)
                results.append(ctx.get(lane.result))
            await ctx.tick()
        assert not ctx.get(lane.result_valid)

    sim = Simulator(lane)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return np.array(results, dtype=np.int64)


@pytest.fixture
def cfg():
    return ArrayConfig("int", 2, 2, 8, 8, max_reduction=64, out_bits=4)


def random_operands(cfg, rng, count):
    acc = rng.integers(*spec.signed_range(cfg.accumulator_width), count, endpoint=True)
    bias = rng.integers(*spec.signed_range(cfg.bias_bits), count, endpoint=True)
    mantissa = rng.integers(0, 1 << spec.MULTIPLIER_BITS, count)
    shift = rng.integers(0, spec.MAX_REQUANT_SHIFT + 1, count)
    # realistic shifts (near the product width) most of the time, and exact ties
    shift[: count // 2] = rng.integers(cfg.accumulator_width, cfg.accumulator_width + 16, count // 2)
    return acc, bias, mantissa, shift


def test_requant_matches_spec_on_random_operands(cfg):
    rng = np.random.default_rng(0)
    acc, bias, mantissa, shift = random_operands(cfg, rng, 600)
    got = run_lane(cfg, acc, bias, mantissa, shift, OutputMode.REQUANT)
    np.testing.assert_array_equal(got, requantization.requantize(acc, bias, mantissa, shift, cfg.out_bits))
    assert 0 < np.count_nonzero(got) < got.size and np.any(got == 15)  # the sample exercises both clips


def test_requant_ties_round_half_up(cfg):
    totals = np.arange(-40, 41)
    got = run_lane(cfg, totals, np.zeros_like(totals), np.ones_like(totals), np.full_like(totals, 2), OutputMode.REQUANT)
    expected = requantization.requantize(totals, 0, 1, 2, cfg.out_bits)
    np.testing.assert_array_equal(got, expected)
    assert expected[totals == 2][0] == 1 and expected[totals == 6][0] == 2  # 0.5 -> 1, 1.5 -> 2


def test_raw_mode_with_and_without_relu(cfg):
    rng = np.random.default_rng(1)
    acc, bias, mantissa, shift = random_operands(cfg, rng, 100)
    for relu in (False, True):
        got = run_lane(cfg, acc, bias, mantissa, shift, OutputMode.RAW, relu=relu)
        np.testing.assert_array_equal(got, np.maximum(acc + bias, 0) if relu else acc + bias)


def test_relu_bound_is_exactly_zero(cfg):
    """RAW + ReLU at the bound: -1 becomes 0, 0 and 1 pass (a bound off by one lets -1 through)."""
    totals = np.arange(-3, 4)
    zeros = np.zeros_like(totals)
    got = run_lane(cfg, totals, zeros, np.ones_like(totals), zeros, OutputMode.RAW, relu=True)
    assert got.tolist() == [0, 0, 0, 0, 1, 2, 3]
    got = run_lane(cfg, zeros, totals, np.ones_like(totals), zeros, OutputMode.RAW, relu=True)  # the bias side
    assert got.tolist() == [0, 0, 0, 0, 1, 2, 3]


def test_threshold_mode_in_the_lane():
    cfg = ArrayConfig("lcq", 2, 2, 3, 3, max_reduction=16, out_bits=3)
    rng = np.random.default_rng(2)
    thresholds = np.sort(rng.integers(-5000, 5000, cfg.threshold_count))
    acc = np.concatenate([rng.integers(-6000, 6000, 200), thresholds, thresholds - 1])
    bias = np.zeros_like(acc)
    packed = pack_words(data.ArrayLayout(signed(cfg.threshold_bits), cfg.threshold_count), thresholds[None])[0]
    got = run_lane(cfg, acc, bias, np.ones_like(acc), np.zeros_like(acc), OutputMode.THRESHOLD, thresholds=packed)
    np.testing.assert_array_equal(got, requantization.threshold_quantize(acc, 0, thresholds))


def test_negated_channels_and_aligned_shortcuts_match_golden():
    """sign * acc + bias + rescale(shortcut) (golden.output_stage), then requantized or raw, at the extremes too."""
    cfg = ArrayConfig("int", 2, 2, 8, 8, max_reduction=64, out_bits=4, residual_bits=9)
    rng = np.random.default_rng(3)
    count = 400
    acc, bias, mantissa, shift = random_operands(cfg, rng, count)
    negate = rng.integers(0, 2, count)
    lo, hi = spec.signed_range(cfg.residual_bits)
    values = rng.integers(lo, hi, count, endpoint=True)
    shortcut_mantissa = rng.integers(0, 1 << spec.MULTIPLIER_BITS, count)
    shortcut_shift = rng.integers(0, 30, count)
    acc_lo, acc_hi = spec.signed_range(cfg.accumulator_width)
    # edge cases: every extreme of acc, bias and shortcut at shift 0 and the largest mantissa; shifts past the product
    extremes = [(a, n, v) for a in (acc_lo, acc_hi) for n in (0, 1) for v in (lo, hi)]
    for index, (a, n, v) in enumerate(extremes):
        acc[index], negate[index], values[index] = a, n, v
        shortcut_mantissa[index], shortcut_shift[index] = (1 << spec.MULTIPLIER_BITS) - 1, 0
    shortcut_shift[len(extremes):len(extremes) + 4] = [cfg.requant.aligned_shortcut_bits + d for d in (-1, 0, 1, 30)]
    shortcut = (values, shortcut_mantissa, shortcut_shift)
    total = output_stage.output_total(acc, 1 - 2 * negate, bias, values, shortcut_mantissa, shortcut_shift)
    assert np.any(total > spec.signed_range(cfg.accumulator_width + 1)[1])  # the shortcut widened the sum
    got = run_lane(cfg, acc, bias, mantissa, shift, OutputMode.RAW, negate=negate, shortcut=shortcut)
    np.testing.assert_array_equal(got, total)
    got = run_lane(cfg, acc, bias, mantissa, shift, OutputMode.REQUANT, negate=negate, shortcut=shortcut)
    np.testing.assert_array_equal(got, requantization.requantize(total, 0, mantissa, shift, cfg.out_bits))


def test_negate_without_a_residual_unit():
    cfg = ArrayConfig("int", 2, 2, 8, 8, max_reduction=64, out_bits=4)
    rng = np.random.default_rng(4)
    acc, bias, mantissa, shift = random_operands(cfg, rng, 200)
    acc[:2] = spec.signed_range(cfg.accumulator_width)
    negate = rng.integers(0, 2, 200)
    negate[:2] = 1
    got = run_lane(cfg, acc, bias, mantissa, shift, OutputMode.RAW, relu=True, negate=negate)
    np.testing.assert_array_equal(got, np.maximum(np.where(negate == 1, -acc, acc) + bias, 0))


@pytest.mark.parametrize("bits", [2, 5, 8])
def test_run_time_clip_equals_min_with_every_width(bits):
    """clip_code with a run-time mask 2^w - 1 is min(value, 2^w - 1) for every width w <= bits and every value
    up to 2^(bits + 2) - 1 (past the top bit too); without a mask it is min(value, 2^bits - 1)."""
    value, mask = Signal(bits + 2), Signal(bits)
    clipped, fixed = Signal(bits), Signal(bits)
    m = Module()
    m.d.comb += [clipped.eq(clip_code(value, bits, mask)), fixed.eq(clip_code(value, bits))]
    seen = []

    async def bench(ctx):
        for width in range(1, bits + 1):
            ctx.set(mask, (1 << width) - 1)
            for v in range(1 << (bits + 2)):
                ctx.set(value, v)
                seen.append((width, v, ctx.get(clipped), ctx.get(fixed)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    got = np.array(seen)
    np.testing.assert_array_equal(got[:, 2], np.minimum(got[:, 1], (1 << got[:, 0]) - 1))
    np.testing.assert_array_equal(got[:, 3], np.minimum(got[:, 1], (1 << bits) - 1))
