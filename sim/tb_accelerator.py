"""cocotb testbench of the accelerator top (hw.top.Accelerator inside the host sequencer).

The job (pickled by :func:`sim.regression.check_array`) carries the ArrayConfig and the
workloads; each workload is tiled into runs, executed with no Python per cycle, and compared
bit for bit with golden by the :class:`~sim.scoreboard.Scoreboard`, measured cycles included.
"""

import time

import cocotb

from .accelerator import AcceleratorDriver, GemmOutcome, run_gemm
from .cocotb_io import HostSession, load_job, write_report
from .scoreboard import Scoreboard


class AcceleratorTB:
    """The accelerator behind a host-sequencer top: GEMMs in, outcomes out."""

    def __init__(self, dut, cfg, layout, check_reset_outputs: bool = True) -> None:
        self.cfg = cfg
        self.session = HostSession(dut, layout)
        self.driver = AcceleratorDriver(cfg, layout, check_reset_outputs)

    async def gemm(self, job) -> GemmOutcome:
        return await run_gemm(self.session, self.driver, job)


@cocotb.test()
async def gemm_workloads(dut):
    job = load_job()
    tb = AcceleratorTB(dut, job["cfg"], job["layout"], job.get("check_reset_outputs", True))
    scoreboard = Scoreboard(job["cfg"])
    sim_seconds, program_cycles, wall = 0.0, 0, time.perf_counter()
    for workload in job["workloads"]:
        outcome = await tb.gemm(workload.job)
        sim_seconds += outcome.sim_seconds
        program_cycles += outcome.program_cycles
        scoreboard.check(workload, outcome)
    report = scoreboard.report() | {"sim_seconds": sim_seconds, "program_cycles": program_cycles,
                                    "wall_seconds": time.perf_counter() - wall}
    write_report(report)
    assert not scoreboard.failures, scoreboard.failures[0]
