"""SCALE-Sim topology CSVs: both formats parse, traced networks round-trip, bad files fail clearly."""

import tracemalloc

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


@pytest.mark.parametrize(("content", "match"), [
    (CONV_CSV.encode("utf-16"), "not a UTF-8 text CSV file"),
    (bytes(range(256)) * 4, "not a UTF-8 text CSV file"),
    (b"Layer, M, N, K,\nqkv\x00,1,2,3,\n", "not a UTF-8 text CSV file"),
])
def test_binary_and_utf16_files_are_one_line_errors(tmp_path, content, match):
    path = tmp_path / "net.csv"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=match):
        read_topology(path)


def test_a_utf8_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + CONV_CSV.encode())
    assert [layer.name for layer in read_topology(path)] == ["Conv1", "Conv2_DP", "FC"]


def test_a_long_topology_is_read_in_little_memory(tmp_path):
    """Row by row, into slotted layers: about 430 bytes a layer (main held the text and dict-backed layers: 960)."""
    rows = 20000
    path = tmp_path / "long.csv"
    path.write_text(CONV_CSV.splitlines()[0] + "\n" + "".join(f"conv{i},58,58,3,3,64,{64 + i % 7},1,\n" for i in range(rows)))
    tracemalloc.start()
    try:
        layers = read_topology(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(layers) == rows and layers[-1].cout == 64 + (rows - 1) % 7
    assert peak / rows < 600, f"{peak / rows:.0f} bytes per layer"


@pytest.mark.parametrize(("text", "match"), [
    ("Layer, M, N, K,\nhuge,3037000500,3037000500,3037000500,\n", r"'huge': \d+ MACs is too large"),
    ("Layer, M, N, K,\nhuge,99999999999999999999,1,1,\n", r"'huge': \d+ MACs is too large"),
    ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
     "wide,100000000,100000000,1,1,1000,1,100000000,\n", r"'wide': \d+ input elements is too large"),
    ("Layer, M, N, K,\n" + "".join(f"l{i},1000000,1000,1000,\n" for i in range(10000)), "MACs total is too large"),
])
def test_dimensions_beyond_exact_int64_counts_are_rejected(tmp_path, text, match):
    path = tmp_path / "net.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        read_topology(path)


def test_a_one_layer_topology_reports(tmp_path, synth_path):
    from reports.report import ReportOptions, generate  # noqa: PLC0415
    from reports.sweep import SweepSpec  # noqa: PLC0415

    path = tmp_path / "one.csv"
    path.write_text("Layer, M, N, K,\nfc,1,10,64,\n")
    files = generate(ReportOptions(out=tmp_path / "out", synth=synth_path, networks=(), topologies=(path,), rows=8,
                                   cols=8, sweep=SweepSpec(arrays=((4, 4),), dataflows=("os", "lutmac"))))
    assert "table1_asq_overhead.json" in files and "sweep_one.csv" in files
    table1 = (tmp_path / "out" / "table1_asq_overhead.csv").read_text().splitlines()
    assert table1[1].startswith("one,8,0,0,0,0")  # no adapted layer: no overhead


def test_report_shows_progress(tmp_path, synth_path, monkeypatch):
    from reports import report  # noqa: PLC0415
    from reports.sweep import SweepSpec  # noqa: PLC0415

    class Recorder:
        bars = []

        def __init__(self, total, **kwargs):
            self.total, self.n, self.shown = total, 0, []
            Recorder.bars.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def set_postfix_str(self, text, refresh=True):
            self.shown.append(text)

        def update(self, steps=1):
            self.n += steps

    monkeypatch.setattr(report, "tqdm", Recorder)
    path = tmp_path / "one.csv"
    path.write_text("Layer, M, N, K,\nfc,1,10,64,\n")
    report.generate(report.ReportOptions(out=tmp_path / "out", synth=synth_path, networks=(), topologies=(path,),
                                         rows=8, cols=8, sweep=SweepSpec(arrays=((4, 4),), dataflows=("os",))))
    (bar,) = Recorder.bars
    assert bar.n == bar.total == 9
    assert bar.shown[0] == "reading one.csv" and "sweep one" in bar.shown and bar.shown[-1] == "index"
