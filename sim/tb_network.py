"""cocotb testbench: a run of consecutive network layers that share one accelerator configuration.

:func:`sim.network.run_network_rtl` splits a network into such segments and passes each one the
RTL outputs of the segments before it, so the chain stays RTL-produced across simulator runs.
"""

import time

import cocotb

from .accelerator import AcceleratorDriver
from .cocotb_io import HostSession, load_job, write_report
from .network import run_layers


@cocotb.test()
async def network_segment(dut):
    job = load_job()
    network, outputs = job["network"], job["outputs"]
    session = HostSession(dut, job["layout"])
    driver = AcceleratorDriver(job["cfg"], job["layout"])
    key = job["keys"][network.layers[job["indices"][0]].name]
    start = time.perf_counter()
    layers = await run_layers({key: (session, driver)}, job["keys"], network, job["indices"], outputs)
    produced = {network.layers[i].name: outputs[network.layers[i].name] for i in job["indices"]}
    write_report({"layers": layers, "outputs": produced, "sim_seconds": time.perf_counter() - start,
                  "failures": [f"{run.name}: {run.mismatches} mismatches" for run in layers if not run.bit_exact]})
