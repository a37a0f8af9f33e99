"""Cycle models: hand-computed cases, closed forms, a brute-force array simulation, hw.cycles.

SCALE-Sim's own numbers are checked in test_scalesim_reference.py.
"""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from systolic_sim import simulate

from golden.errors import ConfigError, UnknownSchemeError
from hw.config import ArrayConfig
from hw.cycles import gemm_cycles
from reports.dataflow import (
    DATAFLOWS,
    dram_bits,
    folds,
    scalesim_utilization,
    sram_accesses,
    systolic_cycles,
    utilization,
)


def test_hand_computed_output_stationary():
    # M=10 pixels on 4 rows -> 3 row folds, N=5 filters on 4 cols -> 2 col folds; each fold 4 + 4 + 7 - 2 = 13,
    # and SCALE-Sim reports the 0-based index of the last cycle
    assert systolic_cycles("os", 4, 4, m=10, k=7, n=5) == 6 * 13 - 1
    assert utilization(10 * 7 * 5, 4, 4, 77) == pytest.approx(350 / 1232)


def test_hand_computed_weight_and_input_stationary():
    # ws: K=7 over 4 rows (2 folds), N=5 over 4 cols (2 folds), T=M=10: 4 * (8 + 4 + 10 - 2) - 1 = 79
    assert systolic_cycles("ws", 4, 4, m=10, k=7, n=5) == 79
    # is: K=7 over rows (2), M=10 over cols (3), T=N=5: 6 * (8 + 4 + 5 - 2) - 1 = 89
    assert systolic_cycles("is", 4, 4, m=10, k=7, n=5) == 89
    # groups run one after another, each ending at its own last index
    assert systolic_cycles("is", 4, 4, 10, 7, 5, groups=3) == 267


def test_single_fold_closed_forms():
    for rows, cols, t in ((8, 8, 64), (16, 4, 3)):
        assert systolic_cycles("os", rows, cols, m=rows, k=t, n=cols) == rows + cols + t - 3
        assert systolic_cycles("ws", rows, cols, m=t, k=rows, n=cols) == 2 * rows + cols + t - 3


def test_scalesim_utilization_hand_computed():
    # ws on 4x6, M=16, K=27, N=5: Sr=27 -> 7 row folds, Sc=5 -> 1 col fold, T=16; 7 * 28 - 1 = 195 cycles
    util = scalesim_utilization("ws", 4, 6, m=16, k=27, n=5)
    assert util["mapping_efficiency_pct"] == pytest.approx(100 * 27 * 5 / (7 * 24))
    assert util["overall_util_pct"] == pytest.approx(100 * 16 * 27 * 5 / (195 * 24))
    # Compute Util's ws fold is 2R + 2C + T - 3 = 33 cycles, not the 28 Total Cycles counts
    assert util["compute_util_pct"] == pytest.approx(util["mapping_efficiency_pct"] * 16 / 33)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(DATAFLOWS), st.integers(1, 5), st.integers(1, 5), st.integers(1, 9), st.integers(1, 9), st.integers(1, 9))
def test_brute_force_simulation_agrees(dataflow, rows, cols, m, k, n):
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    a, b = rng.integers(-8, 8, (m, k)), rng.integers(-8, 8, (k, n))
    cycles, result = simulate(dataflow, rows, cols, a, b)
    np.testing.assert_array_equal(result, a @ b)
    # The register-level array drains an os fold's R accumulator rows after its last MAC; SCALE-Sim lets
    # them leave within the wavefront's skew (R + C + T - 2 per fold, not 2R + C + T - 2).  ws/is folds
    # agree cycle for cycle.  SCALE-Sim's total is a 0-based index: one less than the cycle count.
    row_folds, col_folds = folds(dataflow, rows, cols, m, k, n)
    drain = rows * row_folds * col_folds if dataflow == "os" else 0
    assert cycles == systolic_cycles(dataflow, rows, cols, m, k, n) + 1 + drain


def test_vectorized_matches_scalar():
    rows = np.array([[2], [4], [8]])
    m, k, n = np.array([[3, 17, 64]]), np.array([[5, 9, 2]]), np.array([[7, 1, 33]])
    for dataflow in DATAFLOWS:
        grid = systolic_cycles(dataflow, rows, rows + 1, m, k, n)
        assert grid.shape == (3, 3)
        for i, j in itertools.product(range(3), range(3)):
            assert grid[i, j] == systolic_cycles(dataflow, int(rows[i, 0]), int(rows[i, 0]) + 1, int(m[0, j]), int(k[0, j]), int(n[0, j]))


def test_access_counts():
    # os: activations re-read per column fold, weights per row fold, outputs once
    counts = sram_accesses("os", 4, 4, m=10, k=7, n=5)
    assert (counts["ifmap_reads"], counts["filter_reads"], counts["ofmap_final"], counts["psum_writes"]) == (140, 105, 50, 0)
    # ws: weights once; K split over 2 row folds -> one round of partial sums
    counts = sram_accesses("ws", 4, 4, m=10, k=7, n=5)
    assert (counts["ifmap_reads"], counts["filter_reads"], counts["psum_writes"], counts["psum_reads"]) == (140, 35, 50, 50)
    # is: activations once; weights per column fold (3)
    counts = sram_accesses("is", 4, 4, m=10, k=7, n=5)
    assert (counts["ifmap_reads"], counts["filter_reads"], counts["psum_writes"]) == (70, 105, 50)


def test_access_counts_match_simulated_operand_use():
    """Each fold of the simulation reads exactly its operand slices: sum them independently."""
    rows, cols, m, k, n = 3, 2, 7, 5, 4
    row_folds, col_folds = folds("os", rows, cols, m, k, n)
    assert (row_folds, col_folds) == (3, 2)
    ifmap = sum(min(rows, m - r0) * k for r0 in range(0, m, rows) for _ in range(0, n, cols))
    weights = sum(min(cols, n - c0) * k for _ in range(0, m, rows) for c0 in range(0, n, cols))
    counts = sram_accesses("os", rows, cols, m, k, n)
    assert (counts["ifmap_reads"], counts["filter_reads"]) == (ifmap, weights)


def test_dram_passes():
    common = dict(input_elements=100, params=35, output_elements=50, act_bits=8, weight_bits=4, acc_bits=20,
                  filter_capacity=10**9, ofmap_capacity=10**9)
    fits = dram_bits("os", 4, 4, 10, 7, 5, 1, ifmap_capacity=10**9, **common)
    assert fits == 100 * 8 + 35 * 4 + 50 * 8
    spills = dram_bits("os", 4, 4, 10, 7, 5, 1, ifmap_capacity=100, **common)
    assert spills == 2 * 100 * 8 + 35 * 4 + 50 * 8  # two column folds sweep the activations twice
    tight = {**common, "ofmap_capacity": 10}
    assert dram_bits("ws", 4, 4, 10, 7, 5, 1, ifmap_capacity=10**9, **tight) == fits + 2 * 50 * 20


def test_own_array_streams_where_the_analytical_os_model_fills_and_drains():
    """hw.cycles: the streaming array pays fill and drain (R + C) once per run, SCALE-Sim's os once per fold.

    With a reduction at least as long as the array is deep and wide, a block takes K cycles on the own
    array and K + R + C - 2 in SCALE-Sim's os fold, so the difference is exactly that fill and drain.
    """
    for rows, cols, m, k, n in ((4, 4, 10, 7, 5), (8, 2, 64, 100, 3), (1, 1, 2, 2, 2)):
        config = ArrayConfig("int", rows, cols, 8, 8, max_reduction=k, max_m=m, max_n=n)
        blocks = -(-m // rows) * -(-n // cols)
        own = gemm_cycles(config, m, k, n)
        assert own == blocks * max(k, rows + 1, cols) + rows + cols + 4
        if k >= max(rows + 1, cols):
            scalesim_os = systolic_cycles("os", rows, cols, m, k, n) + 1
            assert scalesim_os - (own - rows - cols - 4) == blocks * (rows + cols - 2)


@pytest.mark.parametrize("rows, cols", [(0, 4), (4, 0), (-1, 2), (2.5, 2)])
def test_zero_sized_array(rows, cols):
    with pytest.raises(ConfigError, match="array (rows|cols) must be positive integers"):
        systolic_cycles("os", rows, cols, 4, 4, 4)
    with pytest.raises(ConfigError):
        simulate("os", rows, cols, np.ones((2, 2), dtype=int), np.ones((2, 2), dtype=int))


def test_unknown_dataflow():
    with pytest.raises(UnknownSchemeError, match="dataflow 'rs'"):
        systolic_cycles("rs", 4, 4, 4, 4, 4)
