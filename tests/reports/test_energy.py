"""Energy table (defaults, overrides, bad configs) and synthesis-scaled MAC energy."""

import json

import numpy as np
import pytest
from synth_fixture import synth_payload

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


def test_mac_energy_scales_with_transistors_per_pe(synth_path):
    synthesis = load_synthesis(synth_path)
    assert synthesis.mac_pj("int", 8, 8, 0) == pytest.approx(0.23)
    assert synthesis.mac_pj("pot", 4, 4, 8) == pytest.approx(0.23 * 600 / 3000)
    # two array sizes synthesized: the larger one (LUT shared over more PEs) is used
    assert synthesis.unit("post_shared", 4, 4, 8).pes == 16
    assert synthesis.mac_pj("post_shared", 4, 4, 8) == pytest.approx(0.23 * 650 / 3000)
    doubled = EnergyTable(int8_mult_pj=0.4, int8_add_pj=0.06)
    assert synthesis.mac_pj("lcq", 4, 4, 0, doubled) == pytest.approx(2 * synthesis.mac_pj("lcq", 4, 4, 0))


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
        (lambda p: p["units"][0].update(pe_kind="apot"), UnknownSchemeError, "PE kind 'apot'"),
        (lambda p: p["units"][0].update(rows=0), ConfigError, "rows must be positive"),
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
    with pytest.raises(ConfigError, match=r"no synthesized unit for .*\('pot', 2, 2, 8\)"):
        synthesis.mac_pj("pot", 2, 2, 8)
    with pytest.raises(UnknownSchemeError):
        synthesis.unit("fp32", 8, 8, 0)
    path = tmp_path / "no_anchor.json"
    path.write_text(json.dumps(synth_payload([("pot", 4, 4, 8, 2, 2, 2400)])))
    with pytest.raises(ConfigError, match="no 8x8 'int' PE"):
        load_synthesis(path).mac_pj("pot", 4, 4, 8)
