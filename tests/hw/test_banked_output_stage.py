"""The output stage on the double-buffered accelerator: residual operands are banked like the other operands,
pooled and held runs (the ASQ barrier) are programs of their own, a held run re-reads its own bank."""

import numpy as np
import pytest
from hwtest import random_job, small_config

from golden import requantization, spec
from golden.errors import ConfigError
from hw.bus import program_steps
from hw.cycles import gemm_cycles
from hw.host import GemmJob, decode_outputs, golden_outputs, job_writes
from hw.layout import BANKED_REGIONS, OutputMode, Region
from hw.pysim_driver import simulate_program, simulate_steps


def residual_job(cfg, rng, m, k, n, mode=OutputMode.REQUANT):
    lo, hi = spec.signed_range(cfg.residual_bits)
    mantissa, shift = requantization.quantize_multiplier(rng.uniform(0.5, 400.0, n))
    return random_job(cfg, rng, m, k, n, mode, negate=rng.integers(0, 2, n),
                      shortcut=rng.integers(lo, hi, (m, n), endpoint=True), shortcut_mantissa=mantissa,
                      shortcut_shift=shift)


@pytest.mark.parametrize("kind", ["int", "post_shared"])
def test_residual_runs_overlap_in_both_banks(kind):
    """Each run adds its own bank's RESIDUAL operands while the host loads the other bank's."""
    assert Region.RESIDUAL in BANKED_REGIONS
    cfg = small_config(kind, residual_bits=6)
    rng = np.random.default_rng(31)
    jobs = [residual_job(cfg, rng, 7, 24, 7), residual_job(cfg, rng, 5, 3, 4, OutputMode.RAW),
            random_job(cfg, rng, 6, 9, 5), residual_job(cfg, rng, 7, 20, 6)]
    result = simulate_program(cfg, jobs, first_bank=1)
    assert result.program.banks == (1, 0, 1, 0)
    assert result.refused == [False] * len(jobs)
    for job, run in zip(jobs, result.runs, strict=True):
        np.testing.assert_array_equal(run.outputs, golden_outputs(cfg, job))
        assert run.cycles == gemm_cycles(cfg, *job.shape)
    assert result.edges == result.program.expected_edges


def test_pooled_and_held_runs_are_barriers():
    cfg = small_config("int", global_pool=True)
    rng = np.random.default_rng(32)
    pooled = random_job(cfg, rng, 7, 24, 7, OutputMode.RAW, pool=True)
    with pytest.raises(ConfigError, match="barrier"):
        program_steps(cfg, [pooled, random_job(cfg, rng, 3, 4, 5)])
    with pytest.raises(ConfigError, match="barrier"):
        program_steps(cfg, [random_job(cfg, rng, 3, 4, 5), pooled])


@pytest.mark.parametrize("bank", [0, 1])
def test_asq_barrier_in_either_bank(bank):
    """Pooled RAW pass in ``bank`` (a plain run in the other bank first), the host reads the sums, then a held
    pass in ``bank`` requantizes what that bank's output buffer holds; the prefetch of the held pass's
    program goes to the other bank and does not disturb it."""
    cfg = small_config("int", global_pool=True, residual_bits=6)
    rng = np.random.default_rng(33 + bank)
    m, k, n = 7, 24, 7
    before = random_job(cfg, rng, 6, 9, 5)
    first = random_job(cfg, rng, m, k, n, OutputMode.RAW, negate=rng.integers(0, 2, n), pool=True)
    raw = GemmJob(**{**first.__dict__, "pool": False, "relu": True})
    mantissa, shift = requantization.quantize_multiplier(rng.uniform(0.5, 2.0, n) * first.mantissa / 2.0 ** first.shift)
    zero_weight = cfg.datapath.weight.legal_codes()[0]
    second = GemmJob(np.zeros((m, 1), int), np.full((1, n), zero_weight), OutputMode.REQUANT, mantissa=mantissa,
                     shift=shift, held=True)
    programs = [program_steps(cfg, [before], first_bank=1 - bank), program_steps(cfg, [first], first_bank=bank),
                program_steps(cfg, [second], first_bank=bank,
                              prefetch=[w for w in job_writes(cfg, before) if w.region == Region.WEIGHT])]
    result = simulate_steps(cfg, [step for program in programs for step in program.steps])
    words, refused = result.field("rd_data"), result.field("wr_refused")
    waits = list(result.waits)
    runs = []
    for program in reversed(programs):  # each program's captures are the last of what is left
        count, windows = len(program.tags), len(program.windows)
        runs = program.decode(words, refused, waits[len(waits) - windows:]) + runs
        words, refused, waits = words[: len(words) - count], refused[: len(refused) - count], waits[: len(waits) - windows]
    np.testing.assert_array_equal(decode_outputs(cfg, runs[0].words, 6, 5), golden_outputs(cfg, before))
    sums = decode_outputs(cfg, runs[1].words, 1, n, pool_sums=True)
    held = golden_outputs(cfg, raw)
    np.testing.assert_array_equal(sums, golden_outputs(cfg, first))
    np.testing.assert_array_equal(sums[0], held.sum(axis=0))
    np.testing.assert_array_equal(decode_outputs(cfg, runs[2].words, m, n), golden_outputs(cfg, second, held))
    assert [run.cycles for run in runs] == [gemm_cycles(cfg, 6, 9, 5), gemm_cycles(cfg, m, k, n, pool=True),
                                            gemm_cycles(cfg, m, 1, n)]
    assert not any(run.refused for run in runs)
