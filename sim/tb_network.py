"""cocotb testbench: a run of consecutive network layers that share one accelerator configuration.

:func:`sim.network.run_network_rtl` splits a network into such segments and passes each one
(a :class:`~sim.network.NetworkJob`) the RTL outputs of the segments before it, for every pass
(the batch, or one image each), so the chain stays RTL-produced across simulator runs.
"""

import time

import cocotb

from .accelerator import AcceleratorDriver
from .cocotb_io import HostSession
from .jobs import load_job, save_report
from .network import NetworkJob, NetworkReport, run_layers


@cocotb.test()
async def network_segment(dut):
    job = load_job(NetworkJob)
    network, passes, indices = job.network, job.passes, job.indices
    session = HostSession(dut, job.layout)
    driver = AcceleratorDriver(job.cfg, job.layout, overlap=job.overlap)
    key = job.keys[network.layers[indices[0]].name]
    start = time.perf_counter()
    layers = await run_layers({key: (session, driver)}, job.keys, network, indices, passes)
    names = [network.layers[i].name for i in indices]
    save_report(NetworkReport(
        layers=layers, outputs=[{name: outputs[name] for name in names} for outputs in passes],
        sim_seconds=time.perf_counter() - start,
        failures=[f"{run.name} (pass {number}): {run.mismatches} mismatches, cycles {run.cycles} vs "
                  f"{run.expected_cycles} expected"
                  for number, runs in enumerate(layers) for run in runs if not run.bit_exact],
    ))  # fmt: skip
