"""cocotb testbench of the registered adder in test_sim_infrastructure (infrastructure check only)."""

import cocotb
import numpy as np

from sim.cocotb_io import ClockedTB, load_job, unresolved_signals, write_report


class AdderTB(ClockedTB):
    async def add(self, a: int, b: int) -> int:
        self.dut.a.value = a
        self.dut.b.value = b
        await self.tick()
        return self.dut.s.value.to_unsigned()


@cocotb.test()
async def adds_random_and_edge_operands(dut):
    job = load_job()
    rng = np.random.default_rng(job["seed"])
    edges = [(0, 0), (255, 255), (255, 0), (0, 255), (0xAA, 0x55)]
    pairs = edges + [tuple(map(int, pair)) for pair in rng.integers(0, 256, size=(job["vectors"], 2))]
    tb = AdderTB(dut)
    await tb.start()
    failures = unresolved_signals({"s": dut.s}) if job.get("check_x") else []
    start = tb.now_cycles()
    for index, (a, b) in enumerate(pairs):
        expected = a + b + job.get("inject_error", 0)
        actual = await tb.add(a, b)
        if actual != expected:
            failures.append(f"vector {index}: {a} + {b}: expected {expected}, got {actual}")
    write_report({"vectors": len(pairs), "cycles": tb.now_cycles() - start, "failures": failures[:5]})
    assert not failures, failures[0]
