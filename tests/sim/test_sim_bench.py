"""The throughput benchmark runs every simulator on one workload and meets the cocotb/harness ratio target."""

import pytest

from hw.config import preset
from sim.bench import RATIO_TARGET, format_gemm_table, gemm_table


@pytest.mark.regress
def test_every_simulator_is_bit_exact_and_cocotb_keeps_up_with_the_harness():
    cfg = preset("post4-8x8")
    rows = gemm_table(cfg, 16, 64, 16, repeats=50)
    print(format_gemm_table(cfg, (16, 64, 16), rows))
    assert [row.simulator for row in rows] == ["Amaranth Python sim", "cocotb + Icarus", "cocotb + Verilator",
                                               "Verilator C++ harness"]
    assert all(row.bit_exact and row.cycles > 0 and row.sim_seconds > 0 for row in rows)
    harness, cocotb_verilator = rows[3], rows[2]
    assert cocotb_verilator.cycles == harness.cycles  # the same program, edge for edge
    assert cocotb_verilator.cycles_per_second >= RATIO_TARGET * harness.cycles_per_second
    assert harness.cycles_per_second > 100 * rows[0].cycles_per_second  # compiled beats Python by far
