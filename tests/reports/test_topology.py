"""SCALE-Sim topology CSVs: both formats parse, traced networks round-trip, bad files fail clearly."""

import pytest

from golden.errors import ConfigError
from reports.networks import network_layers
from reports.topology import read_topology, topology_csv

CONV_CSV = """Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
Conv1,230,230,7,7,3,64,2,
Conv2_DP,58,58,3,3,64,64,1,

FC,1,1,1,1,512,1000,1,
"""


def test_conv_topology(tmp_path):
    path = tmp_path / "net.csv"
    path.write_text(CONV_CSV)
    conv1, dp, fc = read_topology(path)
    # SCALE-Sim's ceil((230 - 7 + 2) / 2) = 113: the last, partial window counts (floor division would give 112)
    assert (conv1.hout, conv1.wout, conv1.m, conv1.k, conv1.n) == (113, 113, 113 * 113, 147, 64)
    assert (dp.type, dp.groups, dp.hout, dp.k, dp.n, dp.macs) == ("depthwise", 64, 56, 9, 1, 64 * 9 * 56 * 56)
    assert (fc.m, fc.k, fc.n) == (1, 512, 1000)


def test_gemm_topology(tmp_path):
    path = tmp_path / "gemm.csv"
    path.write_text("Layer, M, N, K,\nqkv,197,2304,768,\nproj,197,768,768,\n")
    qkv, proj = read_topology(path)
    assert (qkv.m, qkv.n, qkv.k, qkv.macs) == (197, 2304, 768, 197 * 2304 * 768)
    assert (proj.m, proj.n, proj.k) == (197, 768, 768)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_traced_networks_round_trip(tmp_path, name):
    layers = network_layers(name)
    path = tmp_path / f"{name}.csv"
    path.write_text(topology_csv(layers))
    parsed = read_topology(path)
    assert [(p.m, p.k, p.n, p.groups, p.type) for p in parsed] == [(q.m, q.k, q.n, q.groups, q.type if q.type != "linear" else "conv") for q in layers]


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty topology"),
        ("name,a,b,c,\nx,1,2,3,\n", "unrecognised SCALE-Sim header"),
        ("Layer, M, N, K,\n", "no layers"),
        ("Layer, M, N, K,\nx,1,2,\n", "3 numbers"),
        ("Layer, M, N, K,\nx,1,two,3,\n", "'two' is not an integer"),
        ("Layer, M, N, K,\nx,1,0,3,\n", "must be a positive integer"),
        ("Layer, M, N, K,\n,1,2,3,\n", "missing layer name"),
        (CONV_CSV.splitlines()[0] + "\nc,8,8,9,3,1,1,1,\n", "larger than the IFMAP"),
        (CONV_CSV.splitlines()[0] + "\nc,8,8,3,3,1,1,\n", "7 or 8 numbers"),
        (CONV_CSV.splitlines()[0] + "\nc,8,8,3,3,1,1,1,2,\n", "non-square stride"),
        (CONV_CSV.splitlines()[0] + "\nc_DP,8,8,3,3,4,6,1,\n", "multiple of Channels"),
    ],
)
def test_malformed_topologies(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        read_topology(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_topology(tmp_path / "nope.csv")
