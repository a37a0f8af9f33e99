"""The throughput benchmark runs every simulator on one workload, bit-exact, on identical programs.

Its rates and the cocotb/harness ratio target are what ``python -m sim.bench`` prints; they are
measurements, not assertions.
"""

import pytest

from hw.config import preset
from sim.bench import format_gemm_table, gemm_table


@pytest.mark.regress
def test_every_simulator_is_bit_exact_on_the_same_program():
    cfg = preset("post4-8x8")
    rows = gemm_table(cfg, 16, 64, 16, repeats=50, slow_repeats=2)
    table = format_gemm_table(cfg, (16, 64, 16), rows)
    print(table)
    assert [row.simulator for row in rows] == ["Amaranth Python sim", "cocotb + Icarus", "cocotb + Verilator",
                                               "Verilator C++ harness"]
    assert all(row.bit_exact and row.cycles > 0 and row.sim_seconds > 0 for row in rows)
    harness, cocotb_verilator = rows[3], rows[2]
    assert cocotb_verilator.cycles == harness.cycles  # the same program, edge for edge
    assert rows[0].macs == rows[1].macs == 2 * 16 * 64 * 16
    assert "of the plain harness's cycle rate" in table
