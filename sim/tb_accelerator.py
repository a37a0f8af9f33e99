"""cocotb testbench of the accelerator top (hw.top.Accelerator inside the host sequencer).

The :class:`~sim.jobs.AcceleratorJob` (made by :func:`sim.regression.check_array`) carries the
ArrayConfig and the workloads; each workload is tiled into runs, executed with no Python per
cycle, and compared bit for bit with golden by the :class:`~sim.scoreboard.Scoreboard`, measured
cycles included.
"""

import time

import cocotb

from .accelerator import AcceleratorDriver, GemmOutcome, run_gemm
from .cocotb_io import HostSession
from .jobs import AcceleratorJob, AcceleratorReport, load_job, save_report
from .scoreboard import Scoreboard


class AcceleratorTB:
    """The accelerator behind a host-sequencer top: GEMMs in, outcomes out."""

    def __init__(self, dut, job: AcceleratorJob) -> None:
        self.session = HostSession(dut, job.layout)
        self.driver = AcceleratorDriver(job.cfg, job.layout, job.check_reset_outputs, job.overlap)

    async def gemm(self, gemm_job) -> GemmOutcome:
        return await run_gemm(self.session, self.driver, gemm_job)


@cocotb.test()
async def gemm_workloads(dut):
    job = load_job(AcceleratorJob)
    tb = AcceleratorTB(dut, job)
    scoreboard = Scoreboard(job.cfg)
    sim_seconds, program_cycles, wall = 0.0, 0, time.perf_counter()
    for workload in job.workloads:
        outcome = await tb.gemm(workload.job)
        sim_seconds += outcome.sim_seconds
        program_cycles += outcome.program_cycles
        scoreboard.check(workload, outcome)
    save_report(AcceleratorReport(
        failures=scoreboard.failures, outputs_checked=scoreboard.outputs_checked, macs=scoreboard.macs,
        runs=scoreboard.runs, coverage=scoreboard.coverage.summary(), sim_seconds=sim_seconds,
        program_cycles=program_cycles, wall_seconds=time.perf_counter() - wall,
    ))  # fmt: skip
    assert not scoreboard.failures, scoreboard.failures[0]
