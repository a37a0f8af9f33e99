"""The throughput benchmark runs every simulator on one workload, bit-exact, on identical programs.

Its rates and the cocotb/harness ratio target are what ``python -m sim.bench`` prints; they are
measurements, not assertions.
"""

import os
from pathlib import Path

import pytest

from hw.config import preset
from sim import bench
from sim.bench import format_gemm_table, gemm_table
from sim.toolchain import BUILD_ROOT_ENV


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


@pytest.mark.parametrize(("argv", "message"), [
    (["--shape", "16,64"], "must be three positive integers"), (["--shape", "a,b,c"], "must be three positive integers"),
    (["--shape", "0,4,4"], "must be three positive integers"), (["--repeats", "0"], "is not a positive integer"),
    (["--repeats", "x"], "is not a positive integer"), (["--slow-repeats", "-3"], "is not a positive integer"),
    (["--config", "nope"], "no array preset 'nope'")])
def test_bad_arguments_are_a_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        bench.main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and message in err.splitlines()[-1], err


def test_fresh_builds_go_to_a_folder_that_is_removed(monkeypatch):
    seen = []

    def failing_table(cfg, m, k, n, repeats, slow_repeats):
        seen.append(Path(os.environ[BUILD_ROOT_ENV]))
        assert seen[0].is_dir() and seen[0].name.startswith(f"lutmac-bench-{os.getpid()}-")
        raise RuntimeError("a simulator failed")

    monkeypatch.delenv(BUILD_ROOT_ENV, raising=False)
    monkeypatch.setattr(bench, "gemm_table", failing_table)
    with pytest.raises(RuntimeError, match="a simulator failed"):
        bench.main(["--shape", "2,4,2", "--no-resnet20"])
    assert seen and not seen[0].exists()
    assert BUILD_ROOT_ENV not in os.environ
