"""reports.dataflow against SCALE-Sim v2 (2.0.2): the issue's reference table and live SCALE-Sim runs."""

import pytest

from reports.dataflow import scalesim_utilization, systolic_cycles
from reports.scalesim_config import ScaleConfig
from reports.scalesim_ref import run_scalesim
from reports.topology import read_topology

# SCALE-Sim's "Total Cycles" (issue 14; square arrays, M = output pixels, N = filters, K = R*S*C)
REFERENCE = [
    ((1024, 16, 144), 4, (153599, 148895, 239615)),
    ((1024, 16, 144), 32, (6591, 5589, 17599)),
    ((64, 64, 64), 4, (17919, 18943, 18943)),
    ((7, 300, 33), 32, (949, 2019, 787)),
]


@pytest.mark.parametrize("mnk, side, expected", REFERENCE)
@pytest.mark.parametrize("position, dataflow", list(enumerate(("os", "ws", "is"))))
def test_issue_reference_table(mnk, side, expected, position, dataflow):
    m, n, k = mnk
    assert systolic_cycles(dataflow, side, side, m, k, n) == expected[position]


def test_groups_run_one_after_another_each_ending_at_its_last_index():
    assert systolic_cycles("os", 4, 4, 1024, 144, 16, groups=3) == 3 * 153599


# Small layers: stride 2, a stride 3 whose last window is partial (ceil in SCALE-Sim's output size),
# 1x1, partial folds on every array below.
CONV = """Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
s2, 9, 9, 3, 3, 3, 5, 2,
s3, 10, 11, 3, 3, 2, 7, 3,
pw, 5, 5, 1, 1, 9, 11, 1,
"""
GEMM = """Layer, M, N, K,
g1, 7, 30, 13,
g2, 20, 9, 5,
"""


def compare_with_scalesim(tmp_path, topology_text, rows, cols, dataflow):
    topology = tmp_path / "topology.csv"
    topology.write_text(topology_text)
    config = tmp_path / "scale.cfg"
    config.write_text(ScaleConfig(run_name="ref", rows=rows, cols=cols, dataflow=dataflow).text())
    report = run_scalesim(config, topology, tmp_path / "out")["COMPUTE_REPORT"]
    layers = read_topology(topology)
    assert len(report) == len(layers)
    for layer, row in zip(layers, report, strict=True):
        dims = (dataflow, rows, cols, layer.m, layer.k, layer.n, layer.groups)
        assert systolic_cycles(*dims) == row["Total Cycles"], layer.name
        assert row["Stall Cycles"] == 0
        ours = scalesim_utilization(*dims)
        assert ours["overall_util_pct"] == pytest.approx(row["Overall Util %"], rel=1e-12)
        assert ours["mapping_efficiency_pct"] == pytest.approx(row["Mapping Efficiency %"], rel=1e-12)
        assert ours["compute_util_pct"] == pytest.approx(row["Compute Util %"], rel=1e-12)


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
@pytest.mark.parametrize("rows, cols", [(4, 6), (5, 3)])
def test_conv_layers_match_scalesim(tmp_path, rows, cols, dataflow):
    compare_with_scalesim(tmp_path, CONV, rows, cols, dataflow)


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_gemm_layers_match_scalesim(tmp_path, dataflow):
    compare_with_scalesim(tmp_path, GEMM, 8, 4, dataflow)


def test_partial_window_counts_as_scalesim_does(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(CONV)
    s3 = read_topology(path)[1]
    assert (s3.hout, s3.wout) == (4, 4)  # ceil((10 - 3 + 3) / 3), ceil((11 - 3 + 3) / 3); floor division would give 3
