"""Generic cocotb testbench: run the job's host programs on a ``lutmac_host`` top and report the raw results.

Used where the checking happens outside the simulator (the host-sequencer tests, the benchmark).
"""

import cocotb

from .cocotb_io import HostSession, load_job, write_report


@cocotb.test()
async def run_programs(dut):
    job = load_job()
    session = HostSession(dut, job["layout"])
    results = []
    for program in job["programs"]:
        result = await session.run(program)
        results.append({"words": result.captures.words, "waits": result.waits, "cycles": result.cycles,
                        "seconds": result.seconds})
    write_report({"results": results})
