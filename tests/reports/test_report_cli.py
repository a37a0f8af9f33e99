"""`lutmac report`: everything regenerated into one folder, deterministically and atomically."""

import json

import pytest

from reports import report
from reports.app.cli import main
from reports.report import ReportOptions, generate
from reports.sweep import SweepSpec

SMALL = SweepSpec(arrays=((4, 4), (16, 16)), dataflows=("os", "ws", "lutmac"))


def options(out, synth_path, **changes):
    fields = {"out": out, "synth": synth_path, "networks": ("resnet18",), "rows": 8, "cols": 8, "sweep": SMALL}
    return ReportOptions(**(fields | changes))


def test_report_contents_and_determinism(tmp_path, synth_path):
    first, second = tmp_path / "a", tmp_path / "b"
    files = generate(options(first, synth_path))
    generate(options(second, synth_path))
    expected = {"README.md", "table1_asq_overhead.md", "table1_asq_overhead.csv", "table1_asq_overhead.json",
                "ops_storage_resnet18.csv", "post_lut_overhead.md", "estimate_resnet18.json", "estimate_summary.csv",
                "sweep_resnet18.csv", "pareto_resnet18.png", "area_energy_resnet18.png", "utilization_resnet18.png",
                "pe_comparison_resnet18.png", "topology_resnet18.csv", "asq_convention_search_param.md",
                "energy_vs_batch_resnet18.csv"}
    assert expected <= set(files)
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    readme = (first / "README.md").read_text()
    for bits, param, compute in (("8", "2.67", "0.04"), ("4", "5.34", "0.07"), ("3", "7.11", "0.10"), ("2", "10.67", "0.14")):
        assert f"| {bits} | {param} | {compute} |" in readme
    assert (first / "pareto_resnet18.png").read_bytes().startswith(b"\x89PNG")
    # batch 1 of the energy-vs-batch table is the per-layer estimate's design point
    batch_rows = json.loads((first / "energy_vs_batch_resnet18.json").read_text())["rows"]
    estimate = json.loads((first / "estimate_resnet18.json").read_text())["summary"]
    assert [row["batch"] for row in batch_rows] == [1, 2, 4, 8, 16, 32, 64]
    assert batch_rows[0]["cycles_per_batch"] == estimate["cycles"]
    assert batch_rows[0]["energy_uj"] == pytest.approx(estimate["energy_uj"], rel=1e-12)


def test_failed_run_leaves_earlier_results(tmp_path, synth_path, monkeypatch):
    out = tmp_path / "out"
    generate(options(out, synth_path))
    before = {path.name: path.read_bytes() for path in out.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("sweep crashed")

    monkeypatch.setattr(report, "_sweep", broken)
    with pytest.raises(RuntimeError, match="sweep crashed"):
        generate(options(out, synth_path, rows=4, cols=4))
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "synth.json"]


def test_a_smaller_run_leaves_none_of_the_earlier_files(tmp_path, synth_path):
    """The folder is replaced whole: a run on another network leaves no table of the earlier one beside its own."""
    out = tmp_path / "out"
    first = generate(options(out, synth_path))
    assert "estimate_resnet18.csv" in first
    second = generate(options(out, synth_path, networks=("resnet20",)))
    assert "estimate_resnet20.csv" in second
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "synth.json"]


def test_a_malformed_preset_file_is_one_line_in_the_report(tmp_path, synth_path, monkeypatch, capsys):
    from hw import config  # noqa: PLC0415

    presets = tmp_path / "presets.toml"
    presets.write_text('default = "a"\n[configs.a\n')
    monkeypatch.setattr(report, "preset", lambda name: config.preset(name, presets))
    status = main(["report", "--out", str(tmp_path / "out"), "--synth", str(synth_path), "--networks", "resnet18"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"lutmac report: error: {presets}: not valid TOML"), err
    assert not (tmp_path / "out").exists()


def test_cli_missing_synthesis(tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["report", "--out", str(out), "--synth", str(tmp_path / "missing.json"), "--networks", "resnet20"])
    assert status == 2
    assert "run `make synth`" in capsys.readouterr().err
    assert not out.exists()


def test_cli_bad_energy_config(tmp_path, synth_path, capsys):
    bad = tmp_path / "energy.toml"
    bad.write_text("sram_pj = 3\n")
    status = main(["report", "--out", str(tmp_path / "out"), "--synth", str(synth_path), "--energy-config", str(bad)])
    assert status == 2 and "unknown key(s) ['sram_pj']" in capsys.readouterr().err


def test_cli_bad_arguments(tmp_path, synth_path, capsys):
    with pytest.raises(SystemExit):
        main(["report", "--out", str(tmp_path), "--array", "16by16"])
    assert "must look like 16x16" in capsys.readouterr().err
    assert main(["report", "--out", str(tmp_path / "o"), "--synth", str(synth_path), "--networks", "vgg"]) == 2
    assert "network 'vgg'" in capsys.readouterr().err
    assert main(["report", "--out", str(tmp_path / "o"), "--synth", str(synth_path), "--dataflow", "rs", "--networks", "resnet20"]) == 2


def test_cli_with_topology(tmp_path, synth_path):
    topology = tmp_path / "tiny.csv"
    topology.write_text("Layer, M, N, K,\nqkv,49,96,32,\nproj,49,32,32,\n")
    out = tmp_path / "out"
    assert main(["report", "--out", str(out), "--synth", str(synth_path), "--networks", "resnet20",
                 "--topology", str(topology), "--array", "4x8", "--dataflow", "os"]) == 0
    assert (out / "estimate_tiny.csv").exists() and (out / "sweep_resnet20.json").exists()
    assert "tiny" in (out / "table1_asq_overhead.csv").read_text()
