"""Verilog generation (CLI, interface description, Icarus accepts it) and a Yosys synthesis smoke test."""

import json
import os
import shutil
import subprocess

import pytest

from golden import spec
from golden.spec import WeightScheme
from hw import synth
from hw.config import ArrayConfig, load_presets, preset
from hw.generate import TOP_NAME, main
from hw.host import layout_leaves
from hw.kinds import KINDS, PE_KINDS, kinds_of_scheme, network_kind
from hw.layout import host_bus_widths, tile_layout
from hw.synth_record import SynthReport, UnitType

needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog not installed")
needs_yosys = pytest.mark.skipif(not os.path.exists(synth.YOSYS), reason=f"{synth.YOSYS} not installed")


@needs_iverilog
def test_generate_writes_top_pes_and_interface(tmp_path, capsys):
    assert main(["--config", "lcqprod2-4x4", "--out", str(tmp_path)]) == 0
    target = tmp_path / "lcqprod2-4x4"
    names = {path.name for path in target.iterdir()}
    assert {f"{TOP_NAME}.v", "interface.json"} <= names
    assert {f"pe_{kind}.v" for kind in PE_KINDS} <= names
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
    post_kinds = [kind.name for kind in kinds_of_scheme(WeightScheme.POST)]
    units = [synth.SynthTarget(f"pe_{kind}", UnitType.PE, ArrayConfig(kind, 1, 1, 4, 4)) for kind in post_kinds]
    report = synth.run(units, tmp_path, jobs=2)
    assert report.yosys_version.startswith("Yosys 0.23")
    assert SynthReport.read(tmp_path / "synth.json") == report  # the schema round-trips
    by_kind = {unit.pe_kind: unit for unit in report.units}
    for unit in by_kind.values():
        for field in ("cells", "transistors", "ice40_lut4", "logic_depth"):
            assert getattr(unit, field) > 0, field
        default_f = spec.WeightFormat("post", 4).default_frac_bits
        assert (unit.rows, unit.cols, unit.weight_bits, unit.act_bits, unit.frac_bits) == (1, 1, 4, 4, default_f)
        assert unit.dffs == 0  # a PE alone is combinational
    shared, own_rom = post_kinds
    assert by_kind[shared].transistors < by_kind[own_rom].transistors
    markdown = (tmp_path / "synth.md").read_text()
    assert f"| pe | 4 | {default_f} | 1x1 |" in markdown  # the POST comparison row


def test_synth_matrix_covers_every_kind_at_3_and_4_bits():
    """Every priced kind's PE at 3 and 4 bits; the array cores of DEFAULT_ARRAYS, each through both FPGA flows;
    one whole accelerator; --full adds every kind's whole plan."""
    units, full = synth.default_units(), synth.default_units(full=True)
    pes = {(u.cfg.pe_kind, u.cfg.weight_bits) for u in units if u.unit == UnitType.PE}
    arrays = {(u.cfg.pe_kind, u.cfg.weight_bits) for u in units if u.unit == UnitType.ARRAY}
    full_arrays = {(u.cfg.pe_kind, u.cfg.weight_bits, u.cfg.rows) for u in full if u.unit == UnitType.ARRAY}
    for kind in KINDS.values():
        assert {(kind.name, b) for b in kind.synthesis.pe_bits if kind.name != "apot" or b < 8} <= pes
        assert {(kind.name, bits, size) for bits, size in kind.synthesis.arrays + kind.synthesis.full_arrays} <= full_arrays
    assert arrays == synth.DEFAULT_ARRAYS
    assert (network_kind(WeightScheme.INT).name, 8) in arrays  # the energy anchor of `make reports`
    assert all(u.flows == synth.ALL_FLOWS for u in units if u.unit == UnitType.ARRAY)
    accelerators = [u for u in units if u.unit == UnitType.ACCELERATOR]
    assert [u.cfg for u in accelerators] == [preset(name) for name in synth.DEFAULT_ACCELERATORS]
    assert len([u for u in full if u.unit == UnitType.ACCELERATOR]) == len(load_presets()[1])
    assert len({u.name for u in units}) == len(units) and len({u.name for u in full}) == len(full)


def test_estimator_scope_is_what_the_reports_read_on_standard_cells_only():
    """`make`'s synthesis: DEFAULT_ARRAYS' 4x4 cores at the default F (the int w8a8 energy anchor among them), every
    output lane and the pool unit of the default run, the same designs by name, through the standard-cell flow
    alone; no PE, no whole accelerator."""
    units, default = synth.estimator_units(), {u.name: u for u in synth.default_units()}
    assert {(u.cfg.pe_kind, u.cfg.weight_bits) for u in units if u.unit == UnitType.ARRAY} == synth.DEFAULT_ARRAYS
    assert {u.unit for u in units} == {UnitType.ARRAY, UnitType.REQUANT, UnitType.POOL}
    assert {u.name for u in units if u.unit != UnitType.ARRAY} == {
        name for name, u in default.items() if u.unit in (UnitType.REQUANT, UnitType.POOL)}
    for unit in units:
        assert unit.flows == synth.STDCELL, unit.name
        assert unit.name in default and unit.cfg == default[unit.name].cfg, unit.name


def test_hw_synth_scopes_exclude_each_other(capsys):
    for args in (["--estimator", "--full"], ["--estimator", "--config", "default"]):
        with pytest.raises(SystemExit) as stop:
            synth.main(args)
        assert stop.value.code == 2
    assert "--estimator" in capsys.readouterr().err


def test_shift_arrays_are_synthesized_at_the_default_f_and_at_f_8_where_legal_with_full():
    """4x4 arrays at 3 and 4 bits with --full: the default F, and F = 8 (pot: clipped to its exact maximum F = m)."""
    units = synth.default_units(full=True)
    for kind in (k for k in KINDS.values() if k.has_frac_bits):
        for bits in (3, 4):
            fracs = {u.cfg.frac_bits for u in units if u.unit == UnitType.ARRAY and u.cfg.pe_kind == kind.name
                     and u.cfg.weight_bits == bits and u.cfg.rows == 4}
            fmt = spec.WeightFormat(kind.scheme, bits)
            top = spec.legal_frac_bits(fmt, bits)[-1]
            assert fracs == {fmt.default_frac_bits, min(8, top)}, (kind.name, bits, fracs)
    names = {u.name: u.cfg.frac_bits for u in units}
    assert names["array_pot_w4a4_4x4_F6"] == 6 and names["array_post_shared_w4a4_4x4_F8"] == 8
