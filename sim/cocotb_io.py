"""The host sequencer from inside cocotb: run host programs on a ``lutmac_host`` top (:mod:`sim.sequencer`).

The sequencer's clock is generated in the HDL, so between ``load`` and ``finished`` cocotb only
sleeps on one value-change callback: no Python runs per cycle.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from cocotb.triggers import RisingEdge, SimTimeoutError, Timer

from .program import HostLayout, HostProgram
from .sequencer import (
    CLOCK_PERIOD_NS,
    ERROR,
    FINISHED,
    LOAD,
    PROGRAM_FILE,
    RELOAD_GAP_CYCLES,
    RUN_CYCLES,
    HostResult,
    clear_results,
    read_results,
)


class HostSession:
    """Runs host programs on a ``lutmac_host`` top through its control ports (:data:`sim.sequencer.CONTROL_PORTS`)."""

    def __init__(self, dut: Any, layout: HostLayout, workdir: Path | None = None) -> None:
        self.layout = layout
        self.workdir = Path(workdir or os.getcwd())
        self._load, self._finished = getattr(dut, LOAD.name), getattr(dut, FINISHED.name)
        self._error, self._run_cycles = getattr(dut, ERROR.name), getattr(dut, RUN_CYCLES.name)
        self._load.value = 0

    async def run(self, program: HostProgram) -> HostResult:
        clear_results(self.workdir)
        program.write(self.workdir / PROGRAM_FILE)
        wall = time.perf_counter()
        self._load.value = 1
        await RisingEdge(self._finished)
        seconds = time.perf_counter() - wall
        await Timer(1, "ns")  # past the edge: every register of it has settled
        cycles = self._run_cycles.value.to_unsigned()
        self._load.value = 0
        if int(self._error.value):
            raise SimTimeoutError(f"a WAIT entry of the host program timed out ({cycles} cycles into the program)")
        await Timer(RELOAD_GAP_CYCLES * CLOCK_PERIOD_NS, "ns")  # `load` is seen low before the next run
        captures, waits = read_results(self.workdir, program)
        return HostResult(captures, waits, cycles, seconds)
