"""Drive an :class:`~hw.top.Accelerator` in Amaranth's Python simulator through the host protocol.

Executes :mod:`hw.bus`'s steps edge for edge, exactly as the host-sequencer programs of sim/ do
on the generated Verilog: a step's row presents its inputs (the others 0), a capture samples
every output just before the row's last edge, and a wait step runs until ``done`` reads 1 just
before an edge, that edge included.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amaranth import Value
from amaranth.lib import wiring
from amaranth.sim import Simulator

from golden.errors import ConfigError

from .bus import BusProgram, BusStep, gemm_steps, program_steps
from .config import ArrayConfig
from .host import GemmJob, decode_outputs, output_word_count
from .top import Accelerator


@dataclass
class StepsResult:
    """What a sequence of steps returned, in step order."""

    captures: list[dict[str, int]] = field(default_factory=list)  # every output, one dict per captured row
    waits: list[int] = field(default_factory=list)  # edges each wait step took
    busy_while_waiting: list[bool] = field(default_factory=list)  # busy read 1 on every edge of each wait before done
    edges: int = 0  # every edge driven

    def field(self, name: str) -> list[int]:
        """Output ``name`` of every capture (unsigned)."""
        return [capture[name] for capture in self.captures]


async def drive_steps(ctx, dut: Accelerator, steps: list[BusStep]) -> StepsResult:
    """Run ``steps`` on ``dut`` from an Amaranth testbench; inputs are set only where they change."""
    members = dut.signature.members
    inputs = {name: Value.cast(getattr(dut, name)) for name, member in members.items() if member.flow == wiring.In}
    outputs = {name: Value.cast(getattr(dut, name)) for name, member in members.items() if member.flow == wiring.Out}
    unknown = sorted({name for step in steps for name in step.inputs} - set(inputs))
    if unknown:
        raise ConfigError(f"the accelerator has no inputs {unknown}; inputs are {sorted(inputs)}")
    present = {name: None for name in inputs}
    result = StepsResult()

    def sample() -> None:
        result.captures.append({name: ctx.get(port) for name, port in outputs.items()})

    for step in steps:
        for row in range(step.rows):
            for name, port in inputs.items():
                value = step.value(name, row)
                if present[name] != value:
                    ctx.set(port, value)
                    present[name] = value
            if step.wait_limit is None:
                for edge in range(step.edges):
                    if edge == step.edges - 1 and step.captured(row):
                        sample()
                    await ctx.tick()
                result.edges += step.edges
                continue
            waited, busy = 0, True
            while True:
                done = ctx.get(dut.done)
                if done and step.captured(row):
                    sample()
                busy = busy and (done or bool(ctx.get(dut.busy)))
                await ctx.tick()
                waited += 1
                if done:
                    break
                if waited >= step.wait_limit:
                    raise RuntimeError(f"the accelerator was not done after {waited} cycles")
            result.waits.append(waited)
            result.busy_while_waiting.append(busy)
            result.edges += waited
    return result


def simulate_steps(cfg: ArrayConfig, steps: list[BusStep]) -> StepsResult:
    """``steps`` on a fresh simulated accelerator."""
    dut = Accelerator(cfg)
    results = []

    async def bench(ctx):
        results.append(await drive_steps(ctx, dut, steps))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results[0]


@dataclass
class RunResult:
    outputs: np.ndarray  # job.output_shape (the pool sums of a pooled RAW run)
    cycles: int  # start edge .. done, as hw.cycles.gemm_cycles counts them
    busy_during_run: bool  # busy read 1 on every edge from the start edge until done
    edges: int  # every edge of the run: writes, start, wait, reads


def simulate_jobs(cfg: ArrayConfig, jobs: list[GemmJob]) -> list[RunResult]:
    """Run ``jobs`` back to back on one simulated accelerator (buffers persist between runs)."""
    dut = Accelerator(cfg)
    results: list[RunResult] = []

    async def bench(ctx):
        for job in jobs:
            m, n = job.output_shape
            run = await drive_steps(ctx, dut, gemm_steps(cfg, job))
            words = run.field("rd_data")[-output_word_count(cfg, m, n, job.reads_pool_sums):]
            outputs = decode_outputs(cfg, words, m, n, job.reads_pool_sums)
            results.append(RunResult(outputs, run.waits[0], run.busy_while_waiting[0], run.edges))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


@dataclass
class ProgramResult:
    runs: list[RunResult]  # per job; edges = 0 (the runs overlap: see ``edges``)
    refused: list[bool]  # wr_refused at each run's done
    edges: int  # every edge of the program
    program: BusProgram


def simulate_program(cfg: ArrayConfig, jobs: list[GemmJob], writes=None, first_bank: int = 0) -> ProgramResult:
    """``jobs`` as one overlapped program (:func:`hw.bus.program_steps`) on a fresh simulated accelerator."""
    program = program_steps(cfg, jobs, writes, first_bank)
    result = simulate_steps(cfg, program.steps)
    runs = program.decode(result.field("rd_data"), result.field("wr_refused"), result.waits)
    outcomes = [RunResult(decode_outputs(cfg, run.words, *job.output_shape, job.reads_pool_sums), run.cycles, busy, 0)
                for job, run, busy in zip(jobs, runs, result.busy_while_waiting, strict=True)]
    return ProgramResult(outcomes, [run.refused for run in runs], result.edges, program)
