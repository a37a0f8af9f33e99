"""Double-buffered runs on the RTL: the same bus steps on Amaranth's simulator, cocotb + Icarus, cocotb + Verilator
and the plain Verilator harness capture identical outputs on every row, bit-exact against golden, with every run's
cycles equal to hw.cycles.gemm_cycles; a write into the bank in use is refused and flagged on every simulator."""

import numpy as np
import pytest
from amaranth.lib import wiring

from hw.bus import BusStep, HostBus, program_steps, read_step, start_step, wait_step, write_step
from hw.config import ArrayConfig
from hw.cycles import gemm_cycles
from hw.host import HostWrite, decode_outputs, golden_outputs, job_writes
from hw.layout import BANKED_REGIONS, Region
from hw.pysim_driver import simulate_steps
from sim.accelerator import RESET_CYCLES, accelerator_design, append_steps
from sim.harness import HarnessSession, build_harness
from sim.jobs import ProgramsJob
from sim.program import RESET_NAME, HostProgram
from sim.regression import check_array
from sim.runner import run_testbench
from sim.stimulus import Workload, conv_workload, random_workload

CFG = ArrayConfig("int", 4, 4, 4, 4, max_reduction=64, max_m=16, max_n=16)  # shares test_sim_array's build
OUTPUTS = [name for name, member in HostBus(CFG).members.items() if member.flow == wiring.Out]


def scenario(seed: int):
    """(steps, the overlapped BusProgram at their end, its jobs, refusal steps' edge count)."""
    rng = np.random.default_rng(seed)
    job_a, job_b = (random_workload(CFG, rng, 9, 30, 6, "raw").job, random_workload(CFG, rng, 16, 5, 16, "requant").job)
    garbage = [HostWrite(region, addr, (1 << 40) - 1) for region in BANKED_REGIONS for addr in range(2)]
    refusal = [
        write_step(job_writes(CFG, job_a), bank=0), start_step(CFG, job_a, bank=0),
        write_step(job_writes(CFG, job_b), bank=1), write_step(garbage, bank=0),  # accepted, then refused
        wait_step(CFG, *job_a.shape, capture=True), read_step(CFG, job_a.shape[0], job_a.shape[2], bank=0),
        start_step(CFG, job_b, bank=1), wait_step(CFG, *job_b.shape, capture=True),  # start clears the flag
        read_step(CFG, job_b.shape[0], job_b.shape[2], bank=1),
        write_step([HostWrite(Region.ACT, 0, 0)], bank=1), BusStep(capture=True),  # idle: accepted, no flag
    ]  # fmt: skip
    modes = ["raw", "relu", "requant", "asq", "requant"]
    shapes = [(16, 64, 16), (3, 1, 2), (7, 40, 13), (16, 9, 5), (1, 2, 1)]
    jobs = [random_workload(CFG, rng, *shape, mode).job for shape, mode in zip(shapes, modes, strict=True)]
    program = program_steps(CFG, jobs, first_bank=1)
    return refusal + program.steps, program, jobs, (job_a, job_b)


def check_captures(captures: dict[str, list[int]], waits: list[int], program, jobs, refusal_jobs) -> None:
    """What every simulator must have captured, decoded against golden."""
    job_a, job_b = refusal_jobs
    count_a = -(-job_a.shape[0] // CFG.rows) * -(-job_a.shape[2] // CFG.cols)
    assert captures["wr_refused"][0] == 1 and captures["done"][0] == 1  # at A's done: the garbage was refused
    assert captures["wr_refused"][1 + count_a] == 0  # at B's done: cleared by its start
    words = captures["rd_data"]
    np.testing.assert_array_equal(decode_outputs(CFG, words[1 : 1 + count_a], job_a.shape[0], job_a.shape[2]),
                                  golden_outputs(CFG, job_a))
    count_b = -(-job_b.shape[0] // CFG.rows) * -(-job_b.shape[2] // CFG.cols)
    np.testing.assert_array_equal(decode_outputs(CFG, words[2 + count_a : 2 + count_a + count_b], job_b.shape[0],
                                                 job_b.shape[2]), golden_outputs(CFG, job_b))
    assert captures["wr_refused"][2 + count_a + count_b] == 0
    assert waits[1] == gemm_cycles(CFG, *job_b.shape)
    runs = program.decode(words, captures["wr_refused"], waits[2:])
    for job, run in zip(jobs, runs, strict=True):
        np.testing.assert_array_equal(decode_outputs(CFG, run.words, job.shape[0], job.shape[2]), golden_outputs(CFG, job))
        assert run.cycles == gemm_cycles(CFG, *job.shape) and not run.refused


def host_program(layout, steps) -> HostProgram:
    program = HostProgram(layout)
    program.drive({RESET_NAME: 1}, cycles=RESET_CYCLES)
    append_steps(program, steps)
    program.end()
    return program


@pytest.fixture(scope="module")
def amaranth_reference():
    """The steps on Amaranth's simulator: the captures every RTL simulator must reproduce row for row."""
    steps, program, jobs, refusal_jobs = scenario(5)
    result = simulate_steps(CFG, steps)
    captures = {name: result.field(name) for name in OUTPUTS}
    check_captures(captures, result.waits, program, jobs, refusal_jobs)
    refusal = steps[: len(steps) - len(program.steps)]
    drive_edges = sum(step.rows * step.edges for step in refusal if step.wait_limit is None)
    assert result.edges == drive_edges + sum(result.waits[:2]) + program.expected_edges  # the overlapped part exactly
    return steps, captures, result


def check_against_reference(reference, captures, waits, cycles) -> None:
    steps, expected, result = reference
    _, program, jobs, refusal_jobs = scenario(5)
    for name in OUTPUTS:
        assert captures.ints(name) == expected[name], name
    assert list(waits) == result.waits
    assert cycles == RESET_CYCLES + result.edges + 1  # + the END entry's edge
    check_captures({name: captures.ints(name) for name in OUTPUTS}, list(waits), program, jobs, refusal_jobs)


def test_overlapped_steps_on_cocotb_match_amaranth_edge_for_edge(amaranth_reference, simulator, sim_seed, waves):
    design, layout = accelerator_design(CFG)
    program = host_program(layout, amaranth_reference[0])
    report = run_testbench(design, simulator, ProgramsJob(seed=sim_seed, layout=layout, programs=[program]),
                           waves=waves, label="overlap").report
    (result,) = report.results
    check_against_reference(amaranth_reference, result.captures, result.waits, result.cycles)


def test_overlapped_steps_in_the_plain_harness_match_amaranth(amaranth_reference, tmp_path):
    design, layout = accelerator_design(CFG, internal_clock=False)
    with HarnessSession(build_harness(design), layout, tmp_path) as session:
        result = session.run_sync(host_program(layout, amaranth_reference[0]))
    check_against_reference(amaranth_reference, result.captures, result.waits, result.cycles)


def test_tiled_gemms_overlap_and_save_host_cycles(simulator, sim_seed, waves):
    """A GEMM tiled into 3 x 2 runs and a 6x6 conv (3 runs): bit-exact both ways, fewer program cycles overlapped."""
    rng = np.random.default_rng(sim_seed)
    workloads = [random_workload(CFG, rng, 40, 33, 20, "requant"), conv_workload(CFG, rng)]
    workloads.append(Workload("again", workloads[0].job))  # the same weights: banks that hold them skip them
    reports = {overlap: check_array(CFG, workloads, simulator, sim_seed, waves=waves, overlap=overlap).report
               for overlap in (False, True)}
    for report in reports.values():
        assert not report.failures and len(report.runs) == 15
        assert all(run.cycles == run.expected_cycles for run in report.runs)
    assert sum(run.cycles for run in reports[True].runs) == sum(run.cycles for run in reports[False].runs)
    print(f"{simulator}: program cycles {reports[False].program_cycles} sequential, {reports[True].program_cycles} "
          "overlapped")
    assert reports[True].program_cycles < reports[False].program_cycles
