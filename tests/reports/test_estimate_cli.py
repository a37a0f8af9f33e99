"""`lutmac estimate`: SCALE-Sim's .cfg and topology in, SCALE-Sim's COMPUTE_REPORT.csv (compared with a live
SCALE-Sim run) plus lutmac's energy and area out; bad inputs end in one line."""

import re

import pytest

from reports.app.cli import main
from reports.energy import load_synthesis
from reports.estimator import evaluate
from reports.scalesim_config import ScaleConfig, read_config
from reports.scalesim_dropin import SCALESIM_COLUMNS, hardware_config
from reports.scalesim_ref import read_report, run_scalesim
from reports.topology import read_topology, scalesim_layers

CONV = """Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
first, 12, 12, 3, 3, 3, 8, 2,
block_DP, 7, 7, 3, 3, 3, 3, 1,
pw, 5, 5, 1, 1, 3, 10, 1,
"""
GEMM = "Layer Name, M, N, K,\nq, 9, 17, 12,\n"


def write_inputs(tmp_path, topology_text, **config):
    topology = tmp_path / "topology.csv"
    topology.write_text(topology_text)
    cfg = tmp_path / "scale.cfg"
    cfg.write_text(ScaleConfig(**({"run_name": "run", "rows": 4, "cols": 5, "ifmap_kb": 8, "filter_kb": 4, "ofmap_kb": 2}
                                  | config)).text())
    return cfg, topology


@pytest.mark.parametrize("topology_text, dataflow", [(CONV, "os"), (CONV, "is"), (GEMM, "ws")])
def test_report_matches_scalesim(tmp_path, synth_path, capsys, topology_text, dataflow):
    cfg, topology = write_inputs(tmp_path, topology_text, dataflow=dataflow)
    assert main(["estimate", "-c", str(cfg), "-t", str(topology), "--out", str(tmp_path / "ours"), "--synth", str(synth_path),
                 "--scheme", "int", "--bits", "4"]) == 0
    assert "wrote" in capsys.readouterr().out
    ours = read_report(tmp_path / "ours" / "COMPUTE_REPORT.csv")
    reference = run_scalesim(cfg, topology, tmp_path / "scalesim")["COMPUTE_REPORT"]
    assert len(ours) == len(reference) == (5 if topology_text is CONV else 1)  # the DP layer: one row per channel
    for mine, theirs in zip(ours, reference, strict=True):
        assert list(mine)[: len(SCALESIM_COLUMNS)] == list(theirs)
        for column in SCALESIM_COLUMNS:
            assert mine[column] == pytest.approx(theirs[column], rel=1e-12), column
    # lutmac's columns are the estimator's figures for the layers SCALE-Sim simulated, at the cfg's buffers
    layers = scalesim_layers(read_topology(topology))
    hardware = hardware_config(read_config(cfg), "int", 4)
    assert (hardware.rows, hardware.cols, hardware.filter_kb, hardware.weight_bits) == (4, 5, 4.0, 4)
    direct = evaluate(layers, [hardware], load_synthesis(synth_path))
    assert [row["Layer"] for row in ours] == [layer.name for layer in layers]
    assert [row["MACs"] for row in ours] == [layer.macs for layer in layers]
    assert sum(row["Energy nJ"] for row in ours) == pytest.approx(direct.total_energy_pj[0] * 1e-3)
    assert sum(row["DRAM Energy nJ"] for row in ours) == pytest.approx(direct.energy_totals_pj["dram"][0] * 1e-3)
    assert all(row["Area Mtransistors"] == pytest.approx(direct.area_transistors[0] * 1e-6) for row in ours)


def test_quantization_changes_energy_not_cycles(tmp_path, synth_path):
    cfg, topology = write_inputs(tmp_path, CONV)
    for scheme, bits in (("int", 8), ("pot", 4)):
        assert main(["estimate", "-c", str(cfg), "-t", str(topology), "--out", str(tmp_path / scheme), "--synth", str(synth_path),
                     "--scheme", scheme, "--bits", str(bits)]) == 0
    int8, pot4 = (read_report(tmp_path / scheme / "COMPUTE_REPORT.csv") for scheme in ("int", "pot"))
    assert [row["Total Cycles"] for row in int8] == [row["Total Cycles"] for row in pot4]
    assert all(p["MAC Energy nJ"] < i["MAC Energy nJ"] and p["SRAM Energy nJ"] < i["SRAM Energy nJ"] for p, i in zip(pot4, int8, strict=True))
    assert pot4[0]["Area Mtransistors"] < int8[0]["Area Mtransistors"]


def test_topology_from_the_cfg_and_default_folder(tmp_path, synth_path, monkeypatch):
    _, topology = write_inputs(tmp_path, GEMM)
    cfg = tmp_path / "with_topology.cfg"
    cfg.write_text(ScaleConfig(run_name="named", topology=str(topology)).text())
    monkeypatch.chdir(tmp_path)
    assert main(["estimate", "-c", str(cfg), "--synth", str(synth_path)]) == 0
    assert len(read_report(tmp_path / "named" / "COMPUTE_REPORT.csv")) == 1


CFG = ScaleConfig(run_name="bad").text()


@pytest.mark.parametrize("cfg_text, topology_text, message", [
    (CFG.replace("Dataflow: ws", "Dataflow: rs"), GEMM, "Dataflow 'rs' is not one of"),
    (CFG.replace("ArrayHeight: 4", "ArrayHeight: four"), GEMM, "ArrayHeight = 'four' is not an integer"),
    (CFG.replace("ArrayWidth: 4", "ArrayWidth: 0"), GEMM, "cols must be a positive integer"),
    (CFG.replace("OfmapSramSzkB: 128\n", ""), GEMM, r"\[architecture_presets\] has no OfmapSramSzkB"),
    (CFG.replace("InterfaceBandwidth: CALC", "InterfaceBandwidth: FAST"), GEMM, "InterfaceBandwidth 'FAST'"),
    (CFG.replace("Bandwidth: 10", "Bandwidth: lots").replace("CALC", "USER"), GEMM, "Bandwidth 'lots' is not an integer"),
    ("ArrayHeight: 4\n", GEMM, "not a SCALE-Sim config"),
    (CFG, "Layer, M, N,\nq, 1, 2,\n", "unrecognised SCALE-Sim header"),
    (CFG, "Layer, M, N, K,\nq, 1, 0, 3,\n", "must be a positive integer"),
])
def test_bad_inputs_end_in_one_line(tmp_path, synth_path, capsys, cfg_text, topology_text, message):
    cfg, topology = tmp_path / "bad.cfg", tmp_path / "bad.csv"
    cfg.write_text(cfg_text)
    topology.write_text(topology_text)
    assert main(["estimate", "-c", str(cfg), "-t", str(topology), "--out", str(tmp_path / "o"), "--synth", str(synth_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lutmac estimate: error: ") and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert not (tmp_path / "o").exists()


def test_no_topology_anywhere(tmp_path, synth_path, capsys):
    cfg = tmp_path / "scale.cfg"
    cfg.write_text(CFG)
    assert main(["estimate", "-c", str(cfg), "--synth", str(synth_path)]) == 2
    assert "no topology" in capsys.readouterr().err


@pytest.mark.parametrize("make_out", [lambda tmp: tmp / "file", lambda tmp: tmp / "file" / "below"])
def test_an_output_path_that_cannot_be_a_folder_is_refused_before_any_work(tmp_path, synth_path, capsys, monkeypatch,
                                                                           make_out):
    (tmp_path / "file").write_text("not a folder")
    cfg, topology = tmp_path / "scale.cfg", tmp_path / "gemm.csv"
    cfg.write_text(CFG)
    topology.write_text(GEMM)
    monkeypatch.setattr("reports.scalesim_dropin.compute_report", lambda *a: pytest.fail("ran before checking --out"))
    assert main(["estimate", "-c", str(cfg), "-t", str(topology), "--out", str(make_out(tmp_path)),
                 "--synth", str(synth_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lutmac estimate: error: output folder") and len(err.strip().splitlines()) == 1
