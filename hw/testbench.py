"""Drive an :class:`~hw.top.Accelerator` in Amaranth's Python simulator with the host protocol.

The same protocol a cocotb test follows on the generated Verilog (``hw/README.md``): bus writes,
one ``start`` pulse, wait for ``done``, read the output words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.sim import Simulator

from .config import ArrayConfig
from .host import GemmJob, HostWrite, decode_outputs, job_writes, output_word_count, tile_descriptor
from .top import Accelerator


async def write_bus(ctx, dut: Accelerator, writes: list[HostWrite]) -> None:
    """One write per clock cycle."""
    ctx.set(dut.wr_en, 1)
    for region, addr, word in writes:
        ctx.set(dut.wr_region, region)
        ctx.set(dut.wr_addr, addr)
        ctx.set(dut.wr_data, word)
        await ctx.tick()
    ctx.set(dut.wr_en, 0)


async def start_and_wait(ctx, dut: Accelerator, descriptor: int, limit: int = 10_000_000) -> tuple[int, bool]:
    """Pulse ``start`` with ``descriptor`` on ``tile``.

    Returns the clock edges from the one that samples ``start`` to the one after which ``done``
    reads 1 (both included; what :func:`hw.cycles.gemm_cycles` counts) and whether ``busy`` was
    high after the start edge.
    """
    ctx.set(dut.tile.as_value(), descriptor)
    ctx.set(dut.start, 1)
    await ctx.tick()
    ctx.set(dut.start, 0)
    busy = bool(ctx.get(dut.busy))
    cycles = 1
    while not ctx.get(dut.done):
        await ctx.tick()
        cycles += 1
        if cycles > limit:
            raise RuntimeError(f"accelerator not done after {limit} cycles")
    return cycles, busy


async def read_outputs(ctx, dut: Accelerator, count: int) -> list[int]:
    """Output words ``0 .. count-1`` (synchronous read port: data one edge after the address)."""
    words = []
    for addr in range(count):
        ctx.set(dut.rd_addr, addr)
        await ctx.tick()
        words.append(ctx.get(dut.rd_data.as_value()))
    return words


@dataclass
class RunResult:
    outputs: np.ndarray  # (M, N)
    cycles: int  # start edge .. done, as hw.cycles.gemm_cycles counts them
    busy_during_run: bool


def simulate_jobs(cfg: ArrayConfig, jobs: list[GemmJob]) -> list[RunResult]:
    """Run ``jobs`` back to back on one simulated accelerator (buffers persist between runs)."""
    dut = Accelerator(cfg)
    results: list[RunResult] = []

    async def bench(ctx):
        for job in jobs:
            m, _, n = job.shape
            await write_bus(ctx, dut, job_writes(cfg, job))
            cycles, busy = await start_and_wait(ctx, dut, tile_descriptor(cfg, job))
            words = await read_outputs(ctx, dut, output_word_count(cfg, m, n))
            results.append(RunResult(decode_outputs(cfg, words, m, n), cycles, busy))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results
