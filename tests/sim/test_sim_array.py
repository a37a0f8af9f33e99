"""The accelerator RTL against golden: every output bit-exact, every run's cycles equal to hw.cycles.

Default subset: four configurations (the hw default preset, an int, an lcq and an apot array) on each
selected simulator.  ``-m regress``: PE kinds x bits {2,3,4,8 where the scheme allows} x arrays
{4x4, 8x8}, with larger workloads.  Every run also captures all outputs right after reset: on
Icarus (4-state) an X or Z bit there, or in any output read back, fails the run.
"""

from pathlib import Path

import numpy as np
import pytest

from golden import requantization
from golden.errors import ConfigError, UnsupportedBitsError
from hw.config import ArrayConfig, preset
from hw.host import GemmJob
from hw.kinds import PE_KINDS
from hw.layout import OutputMode
from sim.accelerator import accelerator_design
from sim.failures import SimulationError
from sim.jobs import AcceleratorJob
from sim.regression import check_array
from sim.runner import run_testbench
from sim.stimulus import Workload, default_workloads, random_workload

DEFAULT_CONFIGS = {
    "preset-default": preset("default"),
    "int-w4a4-4x4": ArrayConfig("int", 4, 4, 4, 4, max_reduction=64, max_m=16, max_n=16),
    "lcq-w3a3-4x4": ArrayConfig("lcq", 4, 4, 3, 3, max_reduction=64, max_m=16, max_n=16),
    "apot-w4a4-4x4": ArrayConfig("apot", 4, 4, 4, 4, act_level_bits=6, max_reduction=64, max_m=16, max_n=16),
}


def _matrix():
    params = []
    for kind in PE_KINDS:
        for bits in (2, 3, 4, 8):
            for size in (4, 8):
                try:
                    cfg = ArrayConfig(kind, size, size, bits, bits, max_reduction=128, max_m=32, max_n=32,
                                      host_lanes=size)
                except (UnsupportedBitsError, ConfigError):
                    continue  # e.g. lcq_product beyond its product-table limit
                params.append(pytest.param(cfg, id=f"{kind}-w{bits}a{bits}-{size}x{size}"))
    return params


def _check(cfg, simulator, seed, waves, full):
    workloads = default_workloads(cfg, np.random.default_rng(seed), full=full)
    result = check_array(cfg, workloads, simulator, seed, waves=waves)
    report = result.report
    print(f"{cfg.name_hint} on {simulator}: {report.outputs_checked} outputs, {len(report.runs)} runs, "
          f"{report.program_cycles} cycles in {report.sim_seconds:.2f} s, coverage {report.coverage}")
    assert not report.failures
    assert report.outputs_checked == sum(np.prod(w.job.shape[::2]) for w in workloads)
    assert all(run.cycles == run.expected_cycles for run in report.runs)
    if any(w.name.startswith("every code pair") for w in workloads):
        covered, possible = report.coverage["code_pairs"]
        assert covered == possible  # that workload met every (weight, activation) code pair


@pytest.mark.parametrize("cfg", list(DEFAULT_CONFIGS.values()), ids=list(DEFAULT_CONFIGS))
def test_array_matches_golden(cfg, simulator, sim_seed, waves):
    _check(cfg, simulator, sim_seed, waves, full=False)


def test_output_stage_residual_and_pool_match_golden(simulator, sim_seed):
    """The residual add (negated channels, operands at both extremes), pooled REQUANT and pooled RAW (the
    channel sums under rd_addr's top bit) on the simulators, after a plain run; edge rows beyond M are excluded."""
    cfg = ArrayConfig("int", 4, 4, 8, 8, max_reduction=32, max_m=64, max_n=8, residual_bits=12, global_pool=True)
    rng = np.random.default_rng(sim_seed)
    lo, hi = -(1 << 11), (1 << 11) - 1

    def job(m, n, **extra):
        mantissa, shift = requantization.quantize_multiplier(rng.uniform(0.5, 2.0, n) * 16 / 2e5)
        return GemmJob(rng.integers(0, 256, (m, 9)), rng.integers(-128, 128, (9, n)), bias=rng.integers(-999, 999, n),
                       mantissa=mantissa, shift=shift, negate=rng.integers(0, 2, n), **extra)

    shortcut = rng.integers(lo, hi + 1, (61, 7))
    shortcut[0], shortcut[-1] = lo, hi
    workloads = [Workload("plain", job(8, 4, mode=OutputMode.RAW)),
                 Workload("residual raw", job(61, 7, mode=OutputMode.RAW, shortcut=shortcut, shortcut_mantissa=65535,
                                              shortcut_shift=0)),
                 Workload("residual requant", job(61, 7, shortcut=shortcut, shortcut_mantissa=40000, shortcut_shift=9)),
                 Workload("pooled sums", job(61, 7, mode=OutputMode.RAW, pool=True, shortcut=shortcut)),
                 Workload("pooled codes", job(61, 7, pool=True))]
    report = check_array(cfg, workloads, simulator, sim_seed).report
    assert not report.failures
    assert all(run.cycles == run.expected_cycles for run in report.runs)
    assert report.outputs_checked == 8 * 4 + 2 * 61 * 7 + 2 * 7


def test_run_time_output_widths_match_golden(simulator, sim_seed):
    """One lcq accelerator whose runs each set their output width (2..8 bits REQUANT, pooled too, 2..3 bits
    THRESHOLD): random workloads at drawn widths, then bias-only runs that clip at each width's largest code."""
    cfg = ArrayConfig("lcq", 4, 4, 3, 3, out_bits=8, min_out_bits=2, threshold_out_bits=3, global_pool=True,
                      max_reduction=64, max_m=16, max_n=16)
    rng = np.random.default_rng(sim_seed)
    workloads = default_workloads(cfg, rng) + [random_workload(cfg, rng, 9, 20, 7, "requant") for _ in range(4)]
    tables = {"weight_table": workloads[0].job.weight_table, "act_table": workloads[0].job.act_table}
    bias = np.linspace(-300, 1500, 6).astype(int)
    for bits, pool in ((2, False), (8, False), (5, True), (3, False)):
        job = GemmJob(np.zeros((5, 3), int), np.zeros((3, 6), int), bias=bias, mantissa=1, shift=0, out_bits=bits,
                      pool=pool, **tables)
        workloads.append(Workload(f"clip at {bits} bits", job))
    assert all(w.job.out_bits is not None for w in workloads if w.job.mode != OutputMode.RAW)  # each run its own
    report = check_array(cfg, workloads, simulator, sim_seed).report
    assert not report.failures
    assert all(run.cycles == run.expected_cycles for run in report.runs)
    assert report.coverage["output_codes"][0] > 8  # codes beyond the narrow widths' range were written and checked


@pytest.mark.regress
@pytest.mark.parametrize("cfg", _matrix())
def test_array_matrix_matches_golden(cfg, simulator, sim_seed, waves):
    _check(cfg, simulator, sim_seed, waves, full=True)


@pytest.mark.parametrize("simulator", ["icarus", pytest.param("verilator", marks=pytest.mark.regress)])
def test_a_mismatch_is_reported_with_coordinates_seed_and_waveform(simulator, sim_seed):
    """The scoreboard is live: RTL built with 4 output bits, checked as if it had 3, must fail loudly.

    (A failing run rebuilds with tracing, which costs a full Verilator build: regress only there.)
    """
    rtl_cfg = DEFAULT_CONFIGS["int-w4a4-4x4"]
    claimed_cfg = rtl_cfg.replace(out_bits=3, min_out_bits=3, threshold_out_bits=3)  # same ports, clips at 7, not 15
    design, layout = accelerator_design(rtl_cfg)
    rng = np.random.default_rng(sim_seed)
    job = GemmJob(rng.integers(1, 16, (6, 5)), rng.integers(1, 8, (5, 6)), OutputMode.REQUANT, 0, 1, 0)
    with pytest.raises(SimulationError) as failure:
        run_testbench(design, simulator, AcceleratorJob(seed=sim_seed, cfg=claimed_cfg, layout=layout,
                                                        workloads=[Workload("clipped", job)], check_reset_outputs=False))
    message = str(failure.value)
    assert "clipped: output [0, 0] (run at rows 0.. cols 0.., block (0, 0), PE (0, 0)): expected 7, got 15" in message
    assert "clipped: output [0, 5] (run at rows 0.. cols 0.., block (0, 1), PE (0, 1))" in message
    assert "mismatching outputs of 36" in message
    assert f"seed={sim_seed}" in message
    wave = message.split("waveform: ", 1)[1].split()[0]
    assert wave.endswith((".fst", ".vcd")) and Path(wave).stat().st_size > 1000
