"""Verilog generation (CLI, interface description, Icarus accepts it) and a Yosys synthesis smoke test."""

import json
import os
import shutil
import subprocess

import pytest

from hw import synth
from hw.config import ArrayConfig, preset
from hw.generate import TOP_NAME, main
from hw.host import layout_leaves
from hw.layout import host_bus_widths, tile_layout

needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog not installed")
needs_yosys = pytest.mark.skipif(not os.path.exists(synth.YOSYS), reason=f"{synth.YOSYS} not installed")


@needs_iverilog
def test_generate_writes_top_pes_and_interface(tmp_path, capsys):
    assert main(["--config", "lcqprod2-4x4", "--out", str(tmp_path)]) == 0
    target = tmp_path / "lcqprod2-4x4"
    names = {path.name for path in target.iterdir()}
    assert {f"{TOP_NAME}.v", "interface.json"} <= names
    assert {f"pe_{kind}.v" for kind in ("int", "pot", "post_lut", "post_shared", "lcq", "lcq_product")} <= names
    assert not any(name.startswith(".") for name in names)  # no temporary files left behind
    interface = json.loads((target / "interface.json").read_text())
    cfg = preset("lcqprod2-4x4")
    addr_bits, data_bits = host_bus_widths(cfg)
    assert interface["ports"]["wr_addr"]["width"] == addr_bits and interface["ports"]["wr_data"]["width"] == data_bits
    assert interface["ports"]["done"]["direction"] == "output"
    assert [f["name"] for f in interface["tile_fields"]] == [leaf.name for leaf in layout_leaves(tile_layout(cfg))]
    assert "PRODUCT_TABLE" in interface["regions"] and "WEIGHT_TABLE" not in interface["regions"]
    top = (target / f"{TOP_NAME}.v").read_text()
    assert f"module {TOP_NAME}(" in top
    result = subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / "top.vvp"), str(target / f"{TOP_NAME}.v")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_generate_skips_unsupported_pes_and_rejects_unknown_presets(tmp_path, capsys):
    assert main(["--config", "int8-4x4", "--out", str(tmp_path)]) == 0
    assert not (tmp_path / "int8-4x4" / "pe_lcq_product.v").exists()
    assert "no pe_lcq_product.v" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--config", "nope", "--out", str(tmp_path)])


@needs_yosys
def test_synthesis_smoke_post_variants(tmp_path):
    """Real Yosys on two small PEs: the report has every field, and the shared POST PE is the smaller one at 4 bits."""
    units = [synth.SynthUnit(f"pe_{kind}", "pe", ArrayConfig(kind, 1, 1, 4, 4)) for kind in ("post_lut", "post_shared")]
    report = synth.run(units, tmp_path, jobs=2)
    assert report["yosys_version"].startswith("Yosys 0.23")
    saved = json.loads((tmp_path / "synth.json").read_text())
    assert saved == report
    by_kind = {unit["pe_kind"]: unit for unit in report["units"]}
    for unit in by_kind.values():
        for field in ("cells", "transistors", "ice40_lut4", "logic_depth"):
            assert unit[field] > 0, field
        assert (unit["rows"], unit["cols"], unit["weight_bits"], unit["act_bits"], unit["frac_bits"]) == (1, 1, 4, 4, 8)
        assert unit["dffs"] == 0  # a PE alone is combinational
    assert by_kind["post_shared"]["transistors"] < by_kind["post_lut"]["transistors"]
    markdown = (tmp_path / "synth.md").read_text()
    assert "| pe | 4 | 1x1 |" in markdown  # the POST comparison row


def test_synth_matrix_covers_every_kind_at_3_and_4_bits():
    units = synth.default_units()
    pes = {(u.cfg.pe_kind, u.cfg.weight_bits) for u in units if u.unit == "pe"}
    arrays = {(u.cfg.pe_kind, u.cfg.weight_bits) for u in units if u.unit == "array" and u.cfg.rows >= 4}
    for kind in ("int", "pot", "post_lut", "post_shared", "lcq"):
        assert {(kind, 3), (kind, 4)} <= pes and {(kind, 3), (kind, 4)} <= arrays
    assert ("lcq_product", 3) in pes and ("lcq_product", 2) in arrays
    assert ("int", 8) in arrays  # the energy anchor: `make reports` prices every PE relative to it
    full_pes = {(u.cfg.pe_kind, u.cfg.weight_bits) for u in synth.default_units(full=True) if u.unit == "pe"}
    assert ("lcq_product", 4) in full_pes
    assert len({u.name for u in units}) == len(units)
