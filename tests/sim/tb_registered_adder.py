"""cocotb testbench of the registered adder in test_sim_infrastructure (infrastructure check only).

Its job and report are typed like sim/'s own (:mod:`sim.jobs`); the clocked-testbench helpers
here drive a plain DUT from Python, which sim/'s benches never do (they run host programs).
"""

from dataclasses import dataclass
from typing import Any, ClassVar

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, FallingEdge

from sim.jobs import SimJob, SimReport, load_job, save_report

CLOCK_PERIOD_NS = 10


@dataclass(frozen=True, kw_only=True)
class AdderReport(SimReport):
    vectors: int
    cycles: float


@dataclass(frozen=True, kw_only=True)
class AdderJob(SimJob):
    testbench: ClassVar[str] = "tb_registered_adder"
    testcase: ClassVar[str] = "adds_random_and_edge_operands"
    report_type: ClassVar[type[SimReport]] = AdderReport

    vectors: int
    check_x: bool = False  # fail on an X/Z bit of the sum after reset (Icarus is 4-state)
    inject_error: int = 0  # added to every expected sum: the check must then fail


def unresolved_signals(handles: dict[str, Any]) -> list[str]:
    """Names of signals whose value holds an X or Z bit (Icarus shows them; Verilator is 2-state)."""
    return [name for name, handle in handles.items() if not handle.value.is_resolvable]


class ClockedTB:
    """Clock, reset and cycle counting on ``clk``/``rst``."""

    def __init__(self, dut: Any) -> None:
        self.dut = dut
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


class AdderTB(ClockedTB):
    async def add(self, a: int, b: int) -> int:
        self.dut.a.value = a
        self.dut.b.value = b
        await self.tick()
        return self.dut.s.value.to_unsigned()


@cocotb.test()
async def adds_random_and_edge_operands(dut):
    job = load_job(AdderJob)
    rng = np.random.default_rng(job.seed)
    edges = [(0, 0), (255, 255), (255, 0), (0, 255), (0xAA, 0x55)]
    pairs = edges + [tuple(map(int, pair)) for pair in rng.integers(0, 256, size=(job.vectors, 2))]
    tb = AdderTB(dut)
    await tb.start()
    failures = unresolved_signals({"s": dut.s}) if job.check_x else []
    start = tb.now_cycles()
    for index, (a, b) in enumerate(pairs):
        expected = a + b + job.inject_error
        actual = await tb.add(a, b)
        if actual != expected:
            failures.append(f"vector {index}: {a} + {b}: expected {expected}, got {actual}")
    save_report(AdderReport(vectors=len(pairs), cycles=tb.now_cycles() - start, failures=failures[:5]))
    assert not failures, failures[0]
