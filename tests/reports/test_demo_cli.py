"""`lutmac demo` and `lutmac sim` end to end: quick mode through the RTL, bad input, atomic output."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path

import pytest

from golden.errors import ConfigError
from golden.layers import quantize_model, save_checkpoint
from golden.models import DigitsNet
from reports.app import demo
from reports.app.cli import main
from reports.app.datasets import DATASETS
from reports.app.pricing import priced_kinds
from reports.app.rtl import DEFAULT_RTL_IMAGES
from reports.output import OUTPUT_MARKER

REPO = Path(__file__).resolve().parents[2]
# the synthesis results of `make synth` if present; array cores the demo needs are cached beside them
SYNTH = REPO / "build" / "synth" / "synth.json"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["demo", "--quick", "--out", str(out), "--synth", str(SYNTH)])
    return out, status, printed.getvalue()


def test_quick_demo_end_to_end(quick_run):
    out, status, printed = quick_run
    assert status == 0
    files = set(snapshot(out))
    assert {"summary.md", "summary.json", "accuracy.csv", "accuracy.json", "integer_layers.csv", "rtl.csv",
            "rtl_layers.csv", "energy.csv", "energy_layers.csv", "accuracy_vs_bits.png", "energy_per_inference.png",
            "checkpoints/float.pt", "checkpoints/post_w4.pt", "networks/post_w4.json"} <= files
    assert not any(name.startswith(".") for name in files - {OUTPUT_MARKER}), "no staging leftovers"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failures"] == []
    assert summary["float_accuracy"] > 0.9
    models = {m["name"]: m for m in summary["models"]}
    assert set(models) == {"post_w4"}
    for model in models.values():
        assert model["integer_accuracy"] > 0.85 and model["fake_quant_accuracy"] > 0.85
        assert all(layer["within_bound"] for layer in model["layers"])
        rtl = model["rtl"]
        assert rtl["bit_exact"] and rtl["images"] == DEFAULT_RTL_IMAGES
        assert rtl["predictions"] == rtl["integer_predictions"]
        for layer in rtl["layers"]:
            assert layer["mismatches"] == 0 and layer["cycles_per_image"] == layer["expected_cycles_per_image"] > 0
        kinds = {row["pe_kind"] for row in model["energy"]}
        assert kinds == set(priced_kinds(model["scheme"]))
    # the estimator's own-array cycles for one image are the RTL's measured cycles
    energy = {(r["model"], r["pe_kind"]): r for r in json.loads((out / "energy.json").read_text())["rows"]}
    assert energy[("post_w4", "post_shared")]["rtl_cycles"] == energy[("post_w4", "post_shared")]["estimated_cycles"]
    markdown = (out / "summary.md").read_text()
    assert "1/1 models bit-exact at every layer on the RTL" in markdown
    assert "| post_w4 | post | 4 | post_lut |" in markdown
    assert (out / "accuracy_vs_bits.png").read_bytes().startswith(b"\x89PNG")
    assert "RTL: 1/1 models bit-exact" in printed


def test_sim_runs_an_exported_network(quick_run, tmp_path, capsys, monkeypatch):
    out = quick_run[0]
    assert main(["sim", "--network", str(out / "networks" / "post_w4.json"), "--rtl-images", "2"]) == 0
    printed = capsys.readouterr().out
    assert "bit-exact at every layer; RTL predictions agree with golden on 2/2" in printed
    assert "| features.3 | codes |" in printed
    # the default model is the demo's post_w4 from --from; without --from and no out/ here it is trained now
    assert main(["sim", "--from", str(out), "--rtl-images", "1"]) == 0
    assert f"network: {out / 'networks' / 'post_w4.json'}" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    assert main(["sim", "--rtl-images", "1"]) == 0
    assert "post_w4 trained now" in capsys.readouterr().out


def test_failed_run_leaves_earlier_results(quick_run, monkeypatch, capsys):
    out = quick_run[0]
    before = snapshot(out)

    def broken(*args, **kwargs):
        raise ConfigError("injected failure")

    monkeypatch.setattr(demo, "evaluate_integer", broken)
    assert main(["demo", "--quick", "--epochs", "1", "--out", str(out), "--synth", str(SYNTH)]) == 2
    assert "injected failure" in capsys.readouterr().err
    assert snapshot(out) == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".out.staging")]


def expect_error(capsys, argv: list[str], message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"lutmac {argv[0]}: error: ") and message in err, err


def test_bad_input_is_one_line_and_keeps_results(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.md").write_text("earlier results")
    expect_error(capsys, ["demo", "--out", str(out), "--schemes", "lsq", "nope"], "'nope' does not exist")
    expect_error(capsys, ["demo", "--out", str(out), "--schemes", "apot", "--bits", "7"], "supports 2..6 bits")
    blocker = tmp_path / "file"
    blocker.write_text("")
    expect_error(capsys, ["demo", "--out", str(blocker / "out")], "is not writable")
    assert (out / "summary.md").read_text() == "earlier results"
    assert sorted(p.name for p in out.iterdir()) == ["summary.md"]


def test_sim_from_a_folder_without_the_export_is_an_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("reports.app.simulate.train_float", lambda *args: pytest.fail("trained a model"))
    expect_error(capsys, ["sim", "--from", str(tmp_path), "--rtl-images", "1"],
                 f"no exported network {tmp_path / 'networks' / 'post_w4.json'}: run `lutmac demo --out {tmp_path}`")


def test_more_rtl_images_than_the_test_set_holds_is_an_error(tmp_path, capsys, monkeypatch):
    for name, source in DATASETS.items():
        monkeypatch.setitem(DATASETS, name, dataclasses.replace(source, load=lambda *args: pytest.fail("started the work")))
    monkeypatch.chdir(tmp_path)  # no out/ here: `lutmac sim` would train a digits model
    expect_error(capsys, ["sim", "--rtl-images", "100000"], "rtl-images 100000 is more than the 450 test images the digits split holds")
    expect_error(capsys, ["demo", "--quick", "--rtl-images", "451", "--out", str(tmp_path / "out")],
                 "rtl-images 451 is more than the 450 test images the digits split holds")
    expect_error(capsys, ["demo", "--rtl-images", "10001", "--out", str(tmp_path / "out")],
                 "rtl-images 10001 is more than the 10000 test images the fashion split holds")
    assert not (tmp_path / "out").exists()


def test_a_negative_seed_is_a_usage_error(capsys):
    for argv in (["demo", "--seed", "-1"], ["sim", "--seed", "-1"], ["resnet20", "--seed", "-1"],
                 ["frac-search", "--seed", "-1"]):
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "argument --seed: '-1' is not a non-negative integer" in err, err


def test_a_truncated_checkpoint_is_one_line(tmp_path, capsys):
    path = tmp_path / "post_w4.pt"
    save_checkpoint(quantize_model(DigitsNet(), "post", 4), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    expect_error(capsys, ["sim", "--checkpoint", str(path), "--rtl-images", "1"], "is not a lutmac-quantized-model checkpoint")


def test_checkpoint_of_another_model_is_rejected(tmp_path, capsys):
    path = tmp_path / "lsq_w4.pt"
    save_checkpoint(quantize_model(DigitsNet(), "lsq", 4), path)
    expect_error(capsys, ["sim", "--checkpoint", str(path), "--scheme", "post", "--bits", "4"], "quantizer configuration differs")
    save_checkpoint(DigitsNet(width=8), tmp_path / "narrow.pt")
    expect_error(capsys, ["sim", "--checkpoint", str(tmp_path / "narrow.pt"), "--scheme", "lsq", "--bits", "4"],
                 "quantizer configuration differs")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    expect_error(capsys, ["sim", "--checkpoint", str(tmp_path / "junk.pt"), "--scheme", "lsq"], "is not a lutmac-quantized-model checkpoint")
    expect_error(capsys, ["sim", "--network", str(tmp_path / "missing.json")], "not found")


@pytest.mark.regress
def test_full_demo_all_schemes(tmp_path):
    assert main(["demo", "--out", str(tmp_path / "out"), "--synth", str(SYNTH)]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(summary["models"]) == len(demo.DemoOptions(tmp_path).runs())
    assert all(m["rtl"]["bit_exact"] for m in summary["models"])


@pytest.mark.regress
def test_sim_on_cocotb_verilator_matches(quick_run, capsys):
    out = quick_run[0]
    assert main(["sim", "--network", str(out / "networks" / "post_w4.json"), "--rtl-images", "1",
                 "--backend", "cocotb-verilator"]) == 0
    assert "bit-exact at every layer" in capsys.readouterr().out


def test_rtl_scale_chunks_equal_one_run(quick_run, tmp_path, capsys):
    """`lutmac rtl-scale` over the quick demo's model: 5 images in chunks of 2 on a Dask cluster, merged, equal one run."""
    from golden.integer import IntegerNetwork
    from reports.app.rtl import run_rtl
    from reports.app.rtl_scale import RtlScaleOptions, run_rtl_scale
    from reports.digits import load_digits_split
    from reports.sweep_dask import dask_client

    out = quick_run[0]
    options = RtlScaleOptions(tmp_path / "scale", demo_out=out, images=5, chunk=2)
    with dask_client("local", 1, processes=False) as client:
        result = run_rtl_scale(options, client, progress=False)
    [model] = result.models
    network = IntegerNetwork.load(out / "networks" / "post_w4.json")
    data = load_digits_split(0)
    whole = run_rtl(network, network.quantize_input(data.x_test[:5].double().numpy()), 8, 8)
    assert result.data_set == "digits" and model["images"] == 5 and model["bit_exact"] and whole.bit_exact
    for merged, single in zip(model["layers"], whole.layers, strict=True):
        assert {k: merged[k] for k in ("layer", "mismatches", "cycles_per_image", "expected_cycles_per_image")} == \
            {k: single[k] for k in ("layer", "mismatches", "cycles_per_image", "expected_cycles_per_image")}
    assert model["agree"] == 5 and model["correct"] == sum(p == y for p, y in zip(whole.predictions, data.y_test[:5].tolist(), strict=True))
    table = json.loads((tmp_path / "scale" / "rtl_scale.json").read_text())
    [row] = table["rows"]
    assert row["images"] == 5 and row["bit_exact_layers"] == f"{len(whole.layers)}/{len(whole.layers)}"
    assert row["energy_nj_estimated"] > 0 and row["cycles_per_image"] == whole.cycles_per_image


def test_rtl_scale_bad_options_are_one_line_before_any_work(quick_run, tmp_path, capsys):
    out = quick_run[0]
    expect_error(capsys, ["rtl-scale", "--from", str(tmp_path), "--out", str(tmp_path / "o")], "holds no networks/*.json")
    expect_error(capsys, ["rtl-scale", "--from", str(out), "--models", "lsq_w9", "--out", str(tmp_path / "o")],
                 "has no lsq_w9; it has post_w4")
    expect_error(capsys, ["rtl-scale", "--from", str(out), "--rtl-images", "451", "--out", str(tmp_path / "o")],
                 "rtl-images 451 is more than the 450 test images the digits split holds")
    assert not (tmp_path / "o").exists()
