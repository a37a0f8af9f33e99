"""Double-buffered operand, parameter and output buffers in Amaranth's simulator: overlapped programs are
bit-exact, every run still takes hw.cycles.gemm_cycles, and a write into the bank in use is refused and flagged."""

import numpy as np
import pytest
from hwtest import random_job, small_config

from golden import requantization
from golden.errors import ConfigError
from hw.bus import BusStep, program_steps, read_step, start_step, wait_step, write_step
from hw.cycles import gemm_cycles
from hw.host import HostWrite, decode_outputs, golden_outputs, job_writes, output_word_count
from hw.kinds import PE_KINDS
from hw.layout import BANKED_REGIONS, OutputMode, Region
from hw.pysim_driver import simulate_program, simulate_steps


def sequential_edges(cfg, jobs) -> int:
    """Edges of the same jobs run one after the other (hw.bus.gemm_steps: write, start, wait, read)."""
    return sum(len(job_writes(cfg, job)) + 1 + gemm_cycles(cfg, *job.shape) + output_word_count(cfg, *job.shape[::2]) + 1
               for job in jobs)


def mixed_jobs(cfg, rng):
    """Back-to-back runs of different shapes and output modes (long, short, K=1, single block)."""
    m = 6
    row_mantissa, row_shift = requantization.quantize_multiplier(rng.uniform(0.01, 0.5, m))
    return [
        random_job(cfg, rng, 7, 24, 7),
        random_job(cfg, rng, 3, 5, 4, OutputMode.RAW),
        random_job(cfg, rng, 5, 1, 2, OutputMode.RAW, relu=True),
        random_job(cfg, rng, m, 17, 6, row_mantissa=row_mantissa, row_shift=row_shift),
        random_job(cfg, rng, 1, 9, 1),
    ]


@pytest.mark.parametrize("kind", PE_KINDS)
def test_overlapped_program_is_bit_exact_and_every_run_takes_gemm_cycles(kind):
    cfg = small_config(kind)
    jobs = mixed_jobs(cfg, np.random.default_rng(PE_KINDS.index(kind) + 20))
    result = simulate_program(cfg, jobs)
    for job, run, window in zip(jobs, result.runs, result.program.windows, strict=True):
        np.testing.assert_array_equal(run.outputs, golden_outputs(cfg, job))
        assert run.cycles == gemm_cycles(cfg, *job.shape)
        assert run.busy_during_run
        assert window <= run.cycles - 2  # the wait starts while busy: the measured cycles are exact
    assert result.refused == [False] * len(jobs)
    assert result.program.banks == (0, 1, 0, 1, 0)
    assert result.edges == result.program.expected_edges < sequential_edges(cfg, jobs)
    assert sum(result.program.windows) > 0  # some host traffic ran while the array computed


def test_overlap_hides_the_transfers_of_long_runs():
    """When each run outlasts the next one's writes and the last one's reads, only the first load and last read show."""
    cfg = small_config("int", max_m=7, max_n=7)
    rng = np.random.default_rng(3)
    jobs = [random_job(cfg, rng, 7, 24, 7) for _ in range(4)]
    program = program_steps(cfg, jobs)
    cycles = gemm_cycles(cfg, 7, 24, 7)
    words = output_word_count(cfg, 7, 7)
    first_load, reads = len(job_writes(cfg, jobs[0])), words + 1
    # every later run's writes and the previous run's reads fit in the window, so each run costs its
    # start edge and its cycles; the table-free int config has no writes after the waits
    assert program.windows == (len(job_writes(cfg, jobs[1])), reads + len(job_writes(cfg, jobs[2])),
                               reads + len(job_writes(cfg, jobs[3])), reads)
    assert program.expected_edges == first_load + 4 * (1 + cycles) + reads
    result = simulate_program(cfg, jobs)
    assert result.edges == program.expected_edges
    for job, run in zip(jobs, result.runs, strict=True):
        np.testing.assert_array_equal(run.outputs, golden_outputs(cfg, job))


def test_program_may_start_in_either_bank():
    cfg = small_config("post_shared")
    jobs = mixed_jobs(cfg, np.random.default_rng(8))[:3]
    result = simulate_program(cfg, jobs, first_bank=1)
    assert result.program.banks == (1, 0, 1)
    for job, run in zip(jobs, result.runs, strict=True):
        np.testing.assert_array_equal(run.outputs, golden_outputs(cfg, job))
        assert run.cycles == gemm_cycles(cfg, *job.shape)


def garbage(cfg) -> list[HostWrite]:
    """A write of all ones into every banked region's first words."""
    return [HostWrite(region, addr, (1 << 40) - 1) for region in BANKED_REGIONS for addr in range(2)]


def test_a_write_into_the_bank_in_use_is_refused_and_flagged_until_the_next_start():
    """Run A (bank 0) computes while the host loads run B into bank 1 (accepted) and garbage into bank 0 (refused)."""
    cfg = small_config("int")
    rng = np.random.default_rng(9)
    job_a = random_job(cfg, rng, 4, 10, 5, OutputMode.RAW)
    job_b = random_job(cfg, rng, 7, 6, 7)
    shape_a, shape_b = job_a.shape, job_b.shape
    flag = BusStep(capture=True)
    steps = [
        write_step(job_writes(cfg, job_a), bank=0), start_step(cfg, job_a, bank=0),
        write_step(job_writes(cfg, job_b), bank=1), flag,  # accepted: no flag yet
        write_step(garbage(cfg), bank=0), flag,  # refused: flagged from the next edge on
        wait_step(cfg, *shape_a, capture=True), read_step(cfg, shape_a[0], shape_a[2], bank=0),
        start_step(cfg, job_b, bank=1), wait_step(cfg, *shape_b, capture=True),  # start clears the flag
        read_step(cfg, shape_b[0], shape_b[2], bank=1), read_step(cfg, shape_a[0], shape_a[2], bank=0),
        start_step(cfg, job_a, bank=0), wait_step(cfg, *shape_a, capture=True),  # bank 0 still holds A
        read_step(cfg, shape_a[0], shape_a[2], bank=0),
    ]  # fmt: skip
    result = simulate_steps(cfg, steps)
    assert result.field("wr_refused")[:3] == [0, 1, 1]
    words = result.field("rd_data")
    count_a, count_b = output_word_count(cfg, *shape_a[::2]), output_word_count(cfg, *shape_b[::2])
    runs = [words[3 : 3 + count_a], words[4 + count_a : 4 + count_a + count_b],
            words[4 + count_a + count_b : 4 + 2 * count_a + count_b], words[-count_a:]]  # fmt: skip
    expected_a, expected_b = golden_outputs(cfg, job_a), golden_outputs(cfg, job_b)
    np.testing.assert_array_equal(decode_outputs(cfg, runs[0], shape_a[0], shape_a[2]), expected_a)
    np.testing.assert_array_equal(decode_outputs(cfg, runs[1], shape_b[0], shape_b[2]), expected_b)
    # bank 0's outputs outlive run B in bank 1, and rerunning A from bank 0 with no writes reproduces them
    np.testing.assert_array_equal(decode_outputs(cfg, runs[2], shape_a[0], shape_a[2]), expected_a)
    np.testing.assert_array_equal(decode_outputs(cfg, runs[3], shape_a[0], shape_a[2]), expected_a)
    refused_at_done = [capture["wr_refused"] for capture in result.captures if capture["done"] and not capture["busy"]]
    assert refused_at_done[0] == 1 and refused_at_done[count_a + 1] == 0
    windows = len(job_writes(cfg, job_b)) + 1 + len(garbage(cfg)) + 1
    assert result.waits == [gemm_cycles(cfg, *shape_a) - windows, gemm_cycles(cfg, *shape_b), gemm_cycles(cfg, *shape_a)]


def test_a_table_write_while_busy_is_refused_in_either_bank():
    """The level tables have one bank: the array reads them during every run."""
    cfg = small_config("lcq")
    rng = np.random.default_rng(12)
    job = random_job(cfg, rng, 5, 11, 4)
    bad_table = [HostWrite(Region.WEIGHT_TABLE, code, 0) for code in range(4)]
    steps = [write_step(job_writes(cfg, job)), start_step(cfg, job), write_step(bad_table, bank=1),
             wait_step(cfg, *job.shape, capture=True), read_step(cfg, job.shape[0], job.shape[2])]
    result = simulate_steps(cfg, steps)
    assert result.captures[0]["wr_refused"] == 1
    words = result.field("rd_data")[1:]
    np.testing.assert_array_equal(decode_outputs(cfg, words, job.shape[0], job.shape[2]), golden_outputs(cfg, job))


def test_banks_are_checked():
    cfg = small_config("int")
    job = random_job(cfg, np.random.default_rng(0), 2, 3, 2)
    for bad in (2, -1, True):
        with pytest.raises(ConfigError, match="not a buffer bank"):
            write_step(job_writes(cfg, job), bank=bad)
        with pytest.raises(ConfigError, match="not a buffer bank"):
            program_steps(cfg, [job], first_bank=bad)
    with pytest.raises(ConfigError, match="at least one job"):
        program_steps(cfg, [])
    with pytest.raises(ConfigError, match="not inside"):
        read_step(cfg, 2, 2, first=1, stop=1)


def test_prefetched_weights_land_in_the_next_bank():
    """A program's prefetch loads the next program's weights during its last run; that program then skips them."""
    cfg = small_config("post_lut")
    rng = np.random.default_rng(14)
    first, second = random_job(cfg, rng, 7, 20, 5), random_job(cfg, rng, 4, 20, 7)
    weights = [w for w in job_writes(cfg, second) if w.region == Region.WEIGHT]
    rest = [w for w in job_writes(cfg, second) if w.region != Region.WEIGHT]
    one = program_steps(cfg, [first], prefetch=weights)
    two = program_steps(cfg, [second], [rest], first_bank=1)
    assert one.windows == (len(weights),)  # all of them while the run computed
    result = simulate_steps(cfg, one.steps + two.steps)
    assert result.edges == one.expected_edges + two.expected_edges
    words, refused = result.field("rd_data"), result.field("wr_refused")
    runs = one.decode(words[: len(one.tags)], refused[: len(one.tags)], result.waits[:1])
    runs += two.decode(words[len(one.tags):], refused[len(one.tags):], result.waits[1:])
    for job, run in zip((first, second), runs, strict=True):
        np.testing.assert_array_equal(decode_outputs(cfg, run.words, job.shape[0], job.shape[2]), golden_outputs(cfg, job))
        assert run.cycles == gemm_cycles(cfg, *job.shape) and not run.refused
    with pytest.raises(ConfigError, match="only banked regions"):
        program_steps(cfg, [first], prefetch=[HostWrite(Region.WEIGHT_TABLE, 0, 0)])
