"""Energy table (defaults, overrides, bad configs) and synthesis-scaled MAC energy."""

import json
import re

import numpy as np
import pytest
from synth_fixture import POST_F, POT_F, logic_per_pe, synth_payload

from golden.errors import ConfigError, UnknownSchemeError
from reports.energy import DEFAULTS, EnergyTable, load_energy_table, load_synthesis


def test_horowitz_defaults():
    assert DEFAULTS.mac_anchor_pj == pytest.approx(0.23)
    assert DEFAULTS.dram_pj_per_bit == pytest.approx(1950 / 64)
    assert DEFAULTS.register_pj_per_bit == pytest.approx(0.03 / 8)
    # the SRAM power law passes close to Horowitz's three points and grows with capacity
    per_64b = DEFAULTS.sram_pj_per_bit([8, 32, 1024]) * 64
    np.testing.assert_allclose(per_64b, [10, 20, 100], rtol=0.03)
    assert np.all(np.diff(DEFAULTS.sram_pj_per_bit([1, 8, 64, 512])) > 0)


@pytest.mark.parametrize("suffix, text", [(".toml", "dram_pj_per_64b = 1300\nint8_mult_pj = 0.25\n"),
                                          (".json", '{"dram_pj_per_64b": 1300, "int8_mult_pj": 0.25}')])
def test_override_from_file(tmp_path, suffix, text):
    path = tmp_path / f"energy{suffix}"
    path.write_text(text)
    table = load_energy_table(path)
    assert table.dram_pj_per_64b == 1300 and table.mac_anchor_pj == pytest.approx(0.28)
    assert table.sram_32kb_pj_per_64b == DEFAULTS.sram_32kb_pj_per_64b


@pytest.mark.parametrize(
    "text, match",
    [
        ("dram_pj = 1300\n", r"unknown key\(s\) \['dram_pj'\]"),
        ("dram_pj_per_64b = -1\n", "must be a positive number"),
        ("dram_pj_per_64b = 'a lot'\n", "must be a positive number"),
        ("dram_pj_per_64b = \n", "not valid TOML"),
        ("dram_pj_per_64b = true\n", "must be a positive number"),
    ],
)
def test_bad_energy_configs(tmp_path, text, match):
    path = tmp_path / "energy.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_energy_table(path)


def test_energy_config_missing_or_not_a_table(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_energy_table(tmp_path / "nope.toml")
    path = tmp_path / "energy.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="table of settings"):
        load_energy_table(path)


def test_mac_energy_scales_with_logic_transistors_per_pe(synth_path):
    synthesis = load_synthesis(synth_path)
    anchor_small, anchor_large = logic_per_pe(3000, 40), logic_per_pe(2800, 40)
    assert synthesis.mac_pj("int", 8, 8, 0, rows=2, cols=2) == pytest.approx(0.23)
    assert synthesis.mac_pj("pot", 4, 4, POT_F, rows=2, cols=2) == pytest.approx(0.23 * logic_per_pe(600, 30) / anchor_small)
    # two sizes synthesized: the nearest in PE count is used, and the anchor at the same size
    assert synthesis.unit("post_shared", 4, 4, POST_F, 2, 2).pes == 4
    assert synthesis.unit("post_shared", 4, 4, POST_F, 32, 32).pes == 16
    assert synthesis.mac_pj("post_shared", 4, 4, POST_F, rows=32, cols=32) == pytest.approx(0.23 * logic_per_pe(650, 31) / anchor_large)
    doubled = EnergyTable(int8_mult_pj=0.4, int8_add_pj=0.06)
    assert synthesis.mac_pj("lcq", 4, 4, 0, doubled) == pytest.approx(2 * synthesis.mac_pj("lcq", 4, 4, 0))


def test_mac_energy_scales_with_logic_area_where_the_standard_cell_flow_ran(tmp_path):
    """Standard-cell area without the flip-flops' replaces the transistor count when anchor and unit both have it."""
    payload = synth_payload([("array", "int", 8, 8, 0, 2, 2, 3000, 40), ("array", "pot", 4, 4, POT_F, 2, 2, 600, 30)])
    anchor, pot = payload["units"]
    anchor |= {"area_um2": 40000.0, "register_area_um2": 8000.0}
    pot |= {"area_um2": 9000.0, "register_area_um2": 5000.0}
    path = tmp_path / "synth.json"
    path.write_text(json.dumps(payload))
    synthesis = load_synthesis(path)
    assert synthesis.unit("pot", 4, 4, POT_F).logic_area_per_pe == (9000 - 5000) / 4
    assert synthesis.mac_pj("pot", 4, 4, POT_F) == pytest.approx(0.23 * 4000 / 32000)
    del pot["register_area_um2"]  # one of the two lacks the flow: both fall back to transistors
    path.write_text(json.dumps(payload))
    assert load_synthesis(path).mac_pj("pot", 4, 4, POT_F) == pytest.approx(0.23 * logic_per_pe(600, 30) / logic_per_pe(3000, 40))


def test_clock_is_the_slower_of_the_array_core_and_the_output_lane(tmp_path):
    payload = synth_payload([("array", "int", 8, 8, 0, 2, 2, 3000, 40), ("array", "pot", 4, 4, POT_F, 2, 2, 600, 30),
                             ("array", "lcq", 4, 4, 0, 2, 2, 1500, 30), ("requant", "int", 4, 4, 0, 1, 1, 5000, 60),
                             ("requant", "int", 4, 4, 0, 1, 1, 5000, 60), ("requant", "lcq", 4, 4, 0, 1, 1, 5000, 60)])
    for unit, fmax in zip(payload["units"], (190.0, 300.0, 170.0, 180.0, 100.0, 160.0)):
        unit["fmax_mhz"] = fmax
    payload["units"][4]["name"] += "_residual"
    path = tmp_path / "synth.json"
    path.write_text(json.dumps(payload))
    synthesis = load_synthesis(path)
    assert synthesis.clock_mhz("pot", 4, 4, POT_F) == 180.0  # int's fastest (plain) lane bounds the fast core
    assert synthesis.clock_mhz("int", 8, 8, 0) == 180.0
    assert synthesis.clock_mhz("lcq", 4, 4, 0) == 160.0  # its own threshold lane
    del payload["units"][3:]
    path.write_text(json.dumps(payload))
    assert load_synthesis(path).clock_mhz("pot", 4, 4, POT_F) == 300.0  # no lane synthesized: the core's


def test_only_array_units_are_priced(synth_path):
    synthesis = load_synthesis(synth_path)
    assert ("int", 2, 2, 0) not in synthesis.configurations()  # a bare "pe" unit
    assert synthesis.unit("int", 4, 4, 0).unit == "array"  # the requant lane with the same key is ignored
    with pytest.raises(ConfigError, match="no synthesized array unit"):
        synthesis.mac_pj("int", 2, 2, 0)


def test_minimal_schema_without_unit_types(tmp_path):
    """The schema of the brief (no "unit"/"dffs"): every unit is an array and all transistors count."""
    payload = synth_payload([("array", "int", 8, 8, 0, 2, 2, 3000, 0), ("array", "pot", 4, 4, 6, 2, 2, 600, 0)])
    for unit in payload["units"]:
        del unit["unit"], unit["dffs"]
    path = tmp_path / "synth.json"
    path.write_text(json.dumps(payload))
    assert load_synthesis(path).mac_pj("pot", 4, 4, 6) == pytest.approx(0.23 * 600 / 3000)


def test_yosys_dff_cost(tmp_path):
    """DFF_TRANSISTORS is what Yosys' `stat -tech cmos` charges for a $_DFF_P_ (checked when yosys is installed)."""
    import shutil
    import subprocess

    from hw.synth_record import DFF_TRANSISTORS

    yosys = shutil.which("yosys", path="/usr/bin") or shutil.which("yosys")
    if yosys is None:
        pytest.skip("yosys not installed")
    source = tmp_path / "t.v"
    source.write_text("module t(input c, input [3:0] d, output reg [3:0] q); always @(posedge c) q <= d; endmodule\n")
    script = f"read_verilog {source}; synth -flatten -top t; dfflegalize -cell $_DFF_P_ 01; abc -g cmos; opt_clean; stat -tech cmos"
    out = subprocess.run([yosys, "-p", script], capture_output=True, text=True, check=True).stdout
    assert int(re.search(r"Estimated number of transistors:\s+(\d+)", out).group(1)) == 4 * DFF_TRANSISTORS


def test_missing_synthesis_tells_to_run_make_synth(tmp_path):
    with pytest.raises(ConfigError, match="run `make synth`"):
        load_synthesis(tmp_path / "build" / "synth" / "synth.json")


@pytest.mark.parametrize(
    "mutate, error, match",
    [
        (lambda p: p.pop("units"), ConfigError, "'yosys_version' \\(str\\) and 'units'"),
        (lambda p: p.update(units=[]), ConfigError, "list no units"),
        (lambda p: p["units"][0].pop("transistors"), ConfigError, r"missing field\(s\) \['transistors'\]"),
        (lambda p: p["units"][0].update(transistors="many"), ConfigError, "'transistors' must be int"),
        (lambda p: p["units"][0].update(pe_kind="fp8"), UnknownSchemeError, "PE kind 'fp8'"),
        (lambda p: p["units"][0].update(rows=0), ConfigError, "rows must be positive"),
        (lambda p: p["units"][0].update(unit="adder"), ConfigError, "unit type 'adder'"),
        (lambda p: p["units"][0].update(dffs=10**6), ConfigError, "dffs=1000000"),
        (lambda p: p.update(hw_fingerprint="0" * 16), ConfigError, "made from other hw sources.*re-run `make synth`"),
    ],
)
def test_malformed_synthesis(tmp_path, mutate, error, match):
    payload = synth_payload()
    mutate(payload)
    path = tmp_path / "synth.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(error, match=match):
        load_synthesis(path)


def test_synthesis_not_json(tmp_path):
    path = tmp_path / "synth.json"
    path.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_synthesis(path)


def test_unsynthesized_configuration_and_missing_anchor(tmp_path, synth_path):
    synthesis = load_synthesis(synth_path)
    with pytest.raises(ConfigError, match=r"no synthesized array unit for .*\('pot', 2, 2, 8\)"):
        synthesis.mac_pj("pot", 2, 2, 8)
    with pytest.raises(UnknownSchemeError):
        synthesis.unit("fp32", 8, 8, 0)
    path = tmp_path / "no_anchor.json"
    path.write_text(json.dumps(synth_payload([("array", "pot", 4, 4, 6, 2, 2, 600, 0)])))
    with pytest.raises(ConfigError, match="no 8-bit 'int' array unit"):
        load_synthesis(path).mac_pj("pot", 4, 4, 6)
