"""Testbench-side plumbing shared by every cocotb testbench in sim/.

Runs inside the simulator's Python: reads the job :mod:`sim.simulators` pickled, writes the
report back, drives the clock in C (cocotb's GPI clock, so no Python runs per cycle) and
measures cycles from simulation time.
"""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path
from typing import Any

from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, SimTimeoutError, Timer

from .host import PROGRAM_FILE, HostLayout, HostProgram, HostResult, clear_results, read_results
from .simulators import CLOCK_PERIOD_NS, JOB_ENV, REPORT_ENV


def load_job() -> dict[str, Any]:
    return pickle.loads(Path(os.environ[JOB_ENV]).read_bytes())


def write_report(report: dict[str, Any]) -> None:
    Path(os.environ[REPORT_ENV]).write_bytes(pickle.dumps(report))


def unresolved_signals(handles: dict[str, Any]) -> list[str]:
    """Names of signals whose value holds an X or Z bit (Icarus shows them; Verilator is 2-state)."""
    return [name for name, handle in handles.items() if not handle.value.is_resolvable]


class ClockedTB:
    """Base of the per-DUT testbench classes: clock, reset and cycle counting on ``clk``/``rst``."""

    def __init__(self, dut: Any) -> None:
        self.dut = dut
        self.log = dut._log
        self.clock = Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns", impl="gpi")

    async def start(self, reset_cycles: int = 2) -> None:
        """Start the clock and hold reset for ``reset_cycles`` rising edges; returns just after a falling edge."""
        self.dut.rst.value = 1
        self.clock.start(start_high=False)
        await ClockCycles(self.dut.clk, reset_cycles)
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0

    @staticmethod
    def now_cycles() -> float:
        """Simulation time in clock periods."""
        return get_sim_time("ns") / CLOCK_PERIOD_NS

    async def tick(self, cycles: int = 1) -> None:
        """Advance ``cycles`` rising edges and return on the falling edge after (inputs are safe to change)."""
        await ClockCycles(self.dut.clk, cycles)
        await FallingEdge(self.dut.clk)


class HostSession:
    """Runs host programs on a ``lutmac_host`` top (see :mod:`sim.host`) from inside cocotb.

    The sequencer's clock is generated in the HDL, so between ``load`` and ``finished`` cocotb
    only sleeps on one value-change callback.
    """

    def __init__(self, dut: Any, layout: HostLayout, workdir: Path | None = None) -> None:
        self.dut = dut
        self.layout = layout
        self.workdir = Path(workdir or os.getcwd())
        self.dut.load.value = 0

    async def run(self, program: HostProgram) -> HostResult:
        clear_results(self.workdir)
        program.write(self.workdir / PROGRAM_FILE)
        wall = time.perf_counter()
        self.dut.load.value = 1
        await RisingEdge(self.dut.finished)
        seconds = time.perf_counter() - wall
        await Timer(1, "ns")  # past the edge: every register of it has settled
        cycles = self.dut.run_cycles.value.to_unsigned()
        self.dut.load.value = 0
        if int(self.dut.error.value):
            raise SimTimeoutError(f"a WAIT entry of the host program timed out ({cycles} cycles into the program)")
        await Timer(2 * CLOCK_PERIOD_NS, "ns")  # `load` is seen low before the next run
        captures, waits = read_results(self.workdir, program)
        return HostResult(captures, waits, cycles, seconds)
