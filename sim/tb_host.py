"""Generic cocotb testbench: run the job's host programs on a ``lutmac_host`` top and report the raw results.

Used where the checking happens outside the simulator (the host-sequencer tests).
"""

import cocotb

from .cocotb_io import HostSession
from .jobs import ProgramsJob, ProgramsReport, load_job, save_report


@cocotb.test()
async def run_programs(dut):
    job = load_job(ProgramsJob)
    session = HostSession(dut, job.layout)
    save_report(ProgramsReport(results=[await session.run(program) for program in job.programs]))
