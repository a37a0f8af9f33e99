"""`lutmac resnet20`: ResNet-20 through the RTL with every layer finished on chip, and its bad input."""

from __future__ import annotations

import contextlib
import csv
import io

import pytest

from reports.app.cli import main


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


def test_asq_resnet20_finishes_every_layer_on_chip(tmp_path):
    """ASQ at every body layer: each conv's barrier (pooled pass, host adapter, held pass) on 2x2 arrays, 8x8 input."""
    out = tmp_path / "r20"
    status, printed, _ = _run(["resnet20", "--schemes", "asq", "--size", "8", "--array", "2x2", "--out", str(out)])
    assert status == 0, printed
    with open(out / "rtl_layers.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 20 and {row["model"] for row in rows} == {"asq_w4"}
    assert all(row["stage"] == "codes" and row["bit_exact"] == "True" for row in rows)
    assert all(row["cycles_per_image"] == row["expected_cycles_per_image"] for row in rows)
    # an ASQ output (every layer up to layer3.2.conv1) adds the barrier's held pass; the last conv's global pool
    # feeds the 8-bit fc's uniform input, and conv1's signed input adds a pass of its own
    runs = {row["layer"]: int(row["accelerator_runs"]) for row in rows}
    assert runs.pop("conv1") == 3 and runs.pop("layer3.2.conv2") == runs.pop("fc") == 1
    assert set(runs.values()) == {2}
    assert "| asq_w4 | 20/20 | 20/20 |" in printed


@pytest.mark.parametrize(("argv", "message"), [
    (["--size", "6"], "multiple of 4"),
    (["--schemes", "nope"], "does not exist"),
    (["--schemes", "pot", "--bits", "9"], "supports"),
    (["--array", "0x8"], "array"),
])  # fmt: skip
def test_bad_input_is_one_line(argv, message):
    status, _, err = _run(["resnet20", *argv])
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1
