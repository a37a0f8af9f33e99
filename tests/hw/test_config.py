"""ArrayConfig validation, presets, host packing round trips and the cycle formula's arithmetic."""

import dataclasses
import math

import numpy as np
import pytest
from amaranth import signed, unsigned
from amaranth.lib import data

from golden import requantization, spec
from golden.errors import (
    AccumulatorOverflowError,
    CodeRangeError,
    ConfigError,
    LevelTableError,
    UnknownSchemeError,
    UnsupportedBitsError,
)
from hw.config import ArrayConfig, load_presets, preset
from hw.cycles import block_period, gemm_cycles, host_write_count, mac_utilization
from hw.host import GemmJob, job_writes, layout_leaves, pack_words, unpack_words
from hw.kinds import PE_KINDS
from hw.layout import host_bus_widths, region_geometry, tile_layout


def test_defaults_are_derived_from_the_spec():
    cfg = ArrayConfig("post_shared", 4, 4, 4, 4, max_reduction=300)
    assert cfg.frac_bits == spec.WeightFormat("post", 4).default_frac_bits
    assert cfg.out_bits == 4
    assert cfg.accumulator_width == spec.accumulator_bits(cfg.datapath, 300)
    assert cfg.bias_bits == cfg.accumulator_width
    assert cfg.threshold_bank is False and ArrayConfig("lcq", 2, 2, 3, 3).threshold_bank is True
    assert cfg.product_bits == cfg.datapath.product_bits()
    assert cfg.requant == requantization.RequantSpec(cfg.accumulator_width, cfg.bias_bits)


def test_accumulator_too_narrow_is_rejected():
    need = spec.accumulator_bits(spec.DatapathConfig.make("int", 4, 4), 1000)
    assert ArrayConfig("int", 2, 2, 4, 4, max_reduction=1000, accumulator_width=need).accumulator_width == need
    with pytest.raises(AccumulatorOverflowError, match=f"at least {need} bits"):
        ArrayConfig("int", 2, 2, 4, 4, max_reduction=1000, accumulator_width=need - 1)


@pytest.mark.parametrize(
    "changes,error,match",
    [
        (dict(pe_kind="fp4"), UnknownSchemeError, "PE kind"),
        (dict(weight_bits=9), UnsupportedBitsError, "weight bits"),
        (dict(act_bits=1), UnsupportedBitsError, "activation bits"),
        (dict(out_bits=12), UnsupportedBitsError, "out_bits"),
        (dict(min_out_bits=1), UnsupportedBitsError, "min_out_bits"),
        (dict(out_bits=4, min_out_bits=5), ConfigError, "min_out_bits=5 is wider than out_bits=4"),
        (dict(threshold_out_bits=9), UnsupportedBitsError, "threshold_out_bits"),
        (dict(pe_kind="pot", frac_bits=17), UnsupportedBitsError, "frac_bits"),
        (dict(frac_bits=2), ConfigError, "frac_bits must be 0"),
        (dict(rows=0), ConfigError, "rows"),
        (dict(cols=65), ConfigError, "cols"),
        (dict(host_lanes=3), ConfigError, "power of two"),
        (dict(max_reduction=0), ConfigError, "max_reduction"),
        (dict(pe_kind="lcq_product", weight_bits=4, act_bits=5), UnsupportedBitsError, "product table"),
        (dict(bias_bits=60), ConfigError, "bias_bits"),
        (dict(bias_bits=46), ConfigError, "exact up to"),
        (dict(threshold_bank="yes"), ConfigError, "threshold_bank"),
        (dict(levels="paper"), ConfigError, "pot/post only"),
    ],
)
def test_invalid_configurations_raise(changes, error, match):
    fields = dict(pe_kind="int", rows=2, cols=2, weight_bits=4, act_bits=4) | changes
    with pytest.raises(error, match=match):
        ArrayConfig(**fields)


def test_run_time_output_widths_and_covering():
    """A fixed width has no tile field; a range adds one just wide enough for out_bits.  covering() takes each
    limit's wider value, the narrower minimum width and either unit."""
    fixed = ArrayConfig("int", 2, 2, 4, 4)
    assert (fixed.min_out_bits, fixed.threshold_out_bits, fixed.run_time_out_bits) == (4, 4, False)
    assert "out_bits" not in tile_layout(fixed).members
    ranged = ArrayConfig("int", 2, 2, 4, 4, out_bits=8, min_out_bits=2)
    assert ranged.run_time_out_bits and tile_layout(ranged).members["out_bits"].width == 4  # 8 needs 4 bits
    assert tile_layout(ArrayConfig("int", 2, 2, 4, 4, out_bits=7, min_out_bits=2)).members["out_bits"].width == 3
    banked = ArrayConfig("int", 2, 2, 4, 4, out_bits=3, threshold_bank=True, threshold_out_bits=5, max_m=99,
                         residual_bits=7)
    assert banked.threshold_count == 31 and banked.code_bits == 5
    both = ranged.covering(banked)
    assert both == banked.covering(ranged)
    assert (both.min_out_bits, both.out_bits, both.threshold_bank, both.threshold_out_bits) == (2, 8, True, 5)
    assert (both.max_m, both.residual_bits, both.global_pool) == (99, 7, False)
    assert ranged.covering(ranged) == ranged
    with pytest.raises(ConfigError, match=r"differing in \['weight_bits', 'act_bits'\]"):
        fixed.covering(ArrayConfig("int", 2, 2, 8, 8))


def test_presets_load_and_default_resolves():
    default, presets = load_presets()
    assert default in presets
    assert preset("default") == presets[default]
    assert {cfg.pe_kind for cfg in presets.values()} == set(PE_KINDS)
    with pytest.raises(ConfigError, match="no array preset"):
        preset("no-such-config")


def test_preset_files_are_validated(tmp_path):
    bad_key = tmp_path / "bad.toml"
    bad_key.write_text('default = "a"\n[configs.a]\npe_kind = "int"\nrows = 2\ncols = 2\nweight_bits = 4\nact_bits = 4\ncolour = 1\n')
    with pytest.raises(ConfigError, match="colour"):
        load_presets(bad_key)
    missing = tmp_path / "missing.toml"
    missing.write_text('default = "a"\n[configs.a]\npe_kind = "int"\nrows = 2\n')
    with pytest.raises(ConfigError, match="lacks required keys"):
        load_presets(missing)
    bad_default = tmp_path / "default.toml"
    bad_default.write_text('default = "b"\n[configs.a]\npe_kind = "int"\nrows = 2\ncols = 2\nweight_bits = 4\nact_bits = 4\n')
    with pytest.raises(ConfigError, match="names no preset"):
        load_presets(bad_default)


GOOD_PRESET = 'default = "a"\n[configs.a]\npe_kind = "int"\nrows = 2\ncols = 2\nweight_bits = 4\nact_bits = 4\n'


@pytest.mark.parametrize(("text", "match"), [
    (GOOD_PRESET + "colour = 1\n", "preset 'a': unknown array config keys \\['colour'\\]"),
    (GOOD_PRESET.replace("rows = 2", 'rows = "2"'), "preset 'a': array config key rows='2' must be int"),
    (GOOD_PRESET.replace('pe_kind = "int"', "pe_kind = 4"), "preset 'a': array config key pe_kind=4 must be str"),
    (GOOD_PRESET + "threshold_bank = 1\n", "preset 'a': array config key threshold_bank=1 must be bool"),
    (GOOD_PRESET + "global_pool = 1\n", "preset 'a': array config key global_pool=1 must be bool"),
    (GOOD_PRESET + "accumulator_width = 20.5\n", "preset 'a': array config key accumulator_width=20.5 must be int"),
    (GOOD_PRESET + "max_m = true\n", "preset 'a': array config key max_m=True must be int"),
    (GOOD_PRESET + "rows = 3\n", "not valid TOML: Cannot overwrite a value"),
    (GOOD_PRESET.replace("rows = 2", "rows = "), "not valid TOML: Invalid value"),
    ("[configs\n", "not valid TOML"),
    (GOOD_PRESET + "[configs.b]\npe_kind = \"int\"\nrows = 2\ncols = 2\nweight_bits = 4\nact_bits = 4\nrows = 4\n", "not valid TOML"),
    ("defualt = 'a'\n" + GOOD_PRESET, "unknown top-level keys \\['defualt'\\]"),
    (GOOD_PRESET.replace("[configs.a]\n", "configs.a = 3\n[configs.b]\n"), "configs.a must be a table"),
])
def test_a_malformed_preset_file_is_a_config_error_naming_it(tmp_path, text, match):
    path = tmp_path / "presets.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as raised:
        load_presets(path)
    assert str(raised.value).startswith(f"{path}: ")
    with pytest.raises(ConfigError, match=match):
        preset("a", path)


def test_a_binary_or_unreadable_preset_file_is_a_config_error(tmp_path):
    path = tmp_path / "presets.toml"
    path.write_bytes(b"\xff\xfe" + GOOD_PRESET.encode("utf-16-le"))
    with pytest.raises(ConfigError, match=f"^{path}: not valid TOML"):
        load_presets(path)
    with pytest.raises(ConfigError, match=f"^{tmp_path}: cannot be read"):
        load_presets(tmp_path)
    path.write_text(GOOD_PRESET)
    assert load_presets(path)[0] == "a"


def test_config_round_trips_through_dict():
    cfg = preset("lcq4-4x4")
    assert ArrayConfig.from_dict(cfg.to_dict()) == cfg
    assert dataclasses.replace(cfg, rows=2).rows == 2


# ---- host packing ---------------------------------------------------------------------------------


def test_pack_unpack_round_trip_and_field_order():
    layout = data.StructLayout({"a": signed(5), "b": data.ArrayLayout(unsigned(3), 4), "c": unsigned(70)})
    leaves = layout_leaves(layout)
    assert [leaf.name for leaf in leaves] == ["a", "b[0]", "b[1]", "b[2]", "b[3]", "c"]
    rng = np.random.default_rng(0)
    values = np.column_stack([rng.integers(-16, 16, 50), rng.integers(0, 8, (50, 4)), rng.integers(0, 1 << 62, 50)])
    words = pack_words(layout, values)
    np.testing.assert_array_equal(unpack_words(layout, words), values)
    # bit positions as amaranth lays them out: a in bits 0..4, b[i] at 5 + 3i, c from bit 17
    a, b0, c = int(values[0, 0]), int(values[0, 1]), int(values[0, 5])
    assert words[0] & 0x1F == a & 0x1F and (words[0] >> 5) & 7 == b0 and words[0] >> 17 == c


def test_pack_rejects_values_outside_their_field():
    layout = data.StructLayout({"bias": signed(4)})
    with pytest.raises(CodeRangeError, match="bias"):
        pack_words(layout, np.array([[8]]))


def test_job_writes_cover_every_region_of_the_config():
    cfg = ArrayConfig("lcq", 2, 3, 3, 3, max_reduction=8, max_m=4, max_n=5)
    rng = np.random.default_rng(1)
    job = GemmJob(rng.integers(0, 8, (3, 5)), rng.integers(0, 8, (5, 4)),
                  weight_table=np.arange(8) - 4, act_table=np.arange(8) * 3,
                  row_mantissa=np.full(3, 5), row_shift=np.full(3, 2))
    writes = job_writes(cfg, job)
    assert {write.region for write in writes} == set(region_geometry(cfg))
    addr_bits, data_bits = host_bus_widths(cfg)
    assert all(0 <= w.addr < 1 << addr_bits and 0 <= w.data < 1 << data_bits for w in writes)
    assert len(writes) == host_write_count(cfg, 3, 5, 4, row_multipliers=True)


def test_multiplier_parameters_are_range_checked():
    cfg = ArrayConfig("int", 2, 2, 4, 4, max_reduction=8, max_m=4, max_n=4)
    codes = np.zeros((2, 2), int)
    with pytest.raises(CodeRangeError, match="mantissa"):
        job_writes(cfg, GemmJob(codes, codes, mantissa=1 << 16))
    with pytest.raises(CodeRangeError, match="shift"):
        job_writes(cfg, GemmJob(codes, codes, shift=63))
    with pytest.raises(CodeRangeError, match="activation codes"):
        job_writes(cfg, GemmJob(codes + 16, codes))
    with pytest.raises(CodeRangeError, match="weight codes"):
        job_writes(cfg, GemmJob(codes, codes + 8))
    with pytest.raises(ConfigError, match="act_table given for a int array"):
        job_writes(cfg, GemmJob(codes, codes, act_table=np.arange(16)))
    with pytest.raises(LevelTableError):
        job_writes(ArrayConfig("lcq_product", 2, 2, 2, 2, max_reduction=8, max_m=4, max_n=4),
                   GemmJob(codes, codes, weight_table=np.array([3, 2, 1, 0]), act_table=np.arange(4)))


# ---- cycle formula arithmetic (the simulation match is in test_accelerator) ----------------------


def test_cycle_formula_arithmetic():
    cfg = ArrayConfig("int", 4, 3, 4, 4, max_reduction=100, max_m=20, max_n=20)
    assert block_period(cfg, 10) == 10  # streaming: a block costs its reduction once K >= max(R + 1, C)
    assert block_period(cfg, 2) == 4 + 1  # short blocks are padded until their rows can drain
    assert gemm_cycles(cfg, 9, 10, 7) == math.ceil(9 / 4) * math.ceil(7 / 3) * 10 + 3 + 4 + 5
    assert gemm_cycles(cfg, 8, 10, 6) == gemm_cycles(cfg, 5, 10, 4)  # same block grid
    assert 0.9 < mac_utilization(cfg, 20, 100, 18) < 1  # 5 x 6 blocks of K = 100: only fill and drain are idle
    with pytest.raises(ConfigError, match="K=101"):
        gemm_cycles(cfg, 4, 101, 4)
    with pytest.raises(ConfigError, match="M=0"):
        gemm_cycles(cfg, 0, 4, 4)
