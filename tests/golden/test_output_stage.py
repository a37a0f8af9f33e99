"""golden.output_stage: the output lanes' integer steps and the widths that hold them."""

import numpy as np

from golden import output_stage, requantization, spec


def test_identity_multiplier_is_exact_over_the_whole_sum_range():
    lo, hi = spec.signed_range(spec.MAX_SUM_BITS - 1)
    values = np.concatenate([np.arange(-5000, 5000), [lo, lo + 1, hi - 1, hi],
                             np.random.default_rng(0).integers(lo, hi, 10_000)])
    assert np.array_equal(requantization.rescale(values, *output_stage.IDENTITY_MULTIPLIER), values)


def test_signed_total_negates_before_the_bias():
    acc = np.array([[5, -7], [-(1 << 20), (1 << 20) - 1]])
    assert np.array_equal(output_stage.signed_total(acc, np.array([1, -1]), np.array([3, 4])),
                          [[8, 11], [-(1 << 20) + 3, -(1 << 20) + 5]])


def test_two_passes_combine_to_the_signed_input_total():
    rng = np.random.default_rng(1)
    width = 21
    lo, hi = spec.signed_range(width)
    positive = np.concatenate([rng.integers(lo, hi, (500, 8)), np.full((1, 8), lo), np.full((1, 8), hi)])
    negative = np.concatenate([rng.integers(lo, hi, (500, 8)), np.full((1, 8), hi), np.full((1, 8), lo)])
    sign = np.array([1, -1] * 4)
    bias = rng.integers(-1000, 1000, 8)
    first, total = output_stage.two_pass_totals(positive, negative, sign, bias)
    assert np.array_equal(first, sign * positive + bias)
    assert np.array_equal(total, sign * (positive - negative) + bias)
    # the first pass is the second's shortcut operand: it must fit the sum width of its own config
    widths = requantization.RequantSpec(width, 12)
    assert first.min() >= spec.signed_range(widths.sum_bits)[0] and first.max() <= spec.signed_range(widths.sum_bits)[1]


def test_output_total_with_a_shortcut_fits_the_widths():
    for acc_width, bias_bits, shortcut_bits in ((8, 8, 5), (20, 12, 9), (12, 20, 22), (30, 16, 40)):
        widths = requantization.RequantSpec(acc_width, bias_bits, shortcut_bits=shortcut_bits)
        mantissa_max = (1 << spec.MULTIPLIER_BITS) - 1
        acc_lo, acc_hi = spec.signed_range(acc_width)
        bias_lo, bias_hi = spec.signed_range(bias_bits)
        sc_lo, sc_hi = spec.signed_range(shortcut_bits)
        aligned_lo, aligned_hi = spec.signed_range(widths.aligned_shortcut_bits)
        assert aligned_lo <= sc_lo * mantissa_max and sc_hi * mantissa_max <= aligned_hi  # shift 0 is the widest
        extremes = [output_stage.output_total(np.array([a]), s, b, np.array([v]), mantissa_max, 0)[0]
                    for a in (acc_lo, acc_hi) for s in (1, -1) for b in (bias_lo, bias_hi) for v in (sc_lo, sc_hi)]
        sum_lo, sum_hi = spec.signed_range(widths.sum_bits)
        assert sum_lo <= min(extremes) and max(extremes) <= sum_hi
    assert requantization.RequantSpec(10, 10).aligned_shortcut_bits == 0


def test_global_pool_sum_and_its_width():
    rng = np.random.default_rng(5)
    total = rng.integers(-1000, 1000, (2, 3, 4, 5))
    pooled = output_stage.global_pool_sum(total)
    assert pooled.shape == (2, 3) and np.array_equal(pooled[1, 2], np.maximum(total[1, 2], 0).sum())
    for sum_bits, positions in ((8, 1), (8, 64), (25, 64), (30, 1000)):
        top = spec.signed_range(sum_bits)[1]
        width = output_stage.pool_sum_bits(sum_bits, positions)
        assert positions * top < 1 << width and positions * top >= 1 << (width - 1)  # holds the largest sum, no spare bit
