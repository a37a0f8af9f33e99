"""Table 1 reproduction (exact printed digits), OPS/storage (Eq. 10-16) and POST LUT overhead."""

import numpy as np
import pytest

from golden.spec import post_lut
from reports.asq_search import PUBLISHED_COMPUTE_PCT, PUBLISHED_PARAM_PCT, search
from reports.networks import build, count_parameters, network_layers
from reports.overhead import (
    adapted_layers,
    adapter_linears,
    adapter_macs,
    adapter_params,
    asq_overhead,
    ops_storage_rows,
    post_datapath,
    post_lut_entry_bits,
    post_lut_rows,
    table1_rows,
)


def overhead(name):
    return asq_overhead(name, network_layers(name), count_parameters(build(name)))


def test_table1_resnet18_printed_digits():
    rows = {row["bits"]: row for row in table1_rows(overhead("resnet18"))}
    assert {b: f"{rows[b]['param_pct']:.2f}" for b in rows} == PUBLISHED_PARAM_PCT
    assert {b: f"{rows[b]['compute_pct']:.2f}" for b in rows} == PUBLISHED_COMPUTE_PCT


def test_adapter_matches_torch_module():
    """Adapter counts equal those of the real module: GAP -> Linear(C, C/4) -> ReLU -> Linear(C/4, 1) -> ReLU."""
    from torch import nn

    for channels in (3, 7, 8, 64, 96, 960):
        linears = [nn.Linear(nin, nout) for nin, nout in adapter_linears(channels)]
        assert adapter_params(channels) == sum(p.numel() for lin in linears for p in lin.parameters())
        assert adapter_macs(channels) == sum(lin.in_features * lin.out_features for lin in linears)
    assert adapter_linears(7) == ((7, 1),) and adapter_linears(8) == ((8, 2), (2, 1))


def test_resnet18_adapter_placement():
    adapted = adapted_layers(network_layers("resnet18"))
    names = [layer.name for layer in adapted]
    assert len(adapted) == 19 and "conv1" not in names and "fc" not in names
    assert sum("downsample" in name for name in names) == 3
    counts = overhead("resnet18")
    # hand count: adapters with C in {64: 6, 128: 5, 256: 5, 512: 3} plus steps (sum Cout + 19)
    by_channels = {64: 6, 128: 5, 256: 5, 512: 3}
    adapters = sum(n * (c * (c // 4) + c // 4 + c // 4 + 1) for c, n in by_channels.items())
    assert counts.extra_params == adapters + (4 * 64 + 5 * 128 + 5 * 256 + 5 * 512) + 19


def test_the_convention_used_is_one_the_search_finds():
    result = search("resnet18")
    joint = result.joint_hits
    assert result.param_conventions > 500 and result.compute_conventions > 100
    assert {(hit["placement"], hit["extra_bits"], hit["denominator"]) for hit in joint} == {("convs_but_stem", 8, "all_params@B")}
    assert overhead("resnet18").extra_params in {hit["extra_params"] for hit in joint}
    assert any(hit["ops_per_adapter_mac"] == 2 and hit["extra_bits"] == 8 for hit in result.compute_hits)


def test_percentages_scale_as_one_over_bits():
    rows = {row["bits"]: row for row in table1_rows(overhead("resnet34"))}
    for b in (4, 3, 2):
        assert rows[b]["param_pct"] == pytest.approx(rows[8]["param_pct"] * 8 / b)
        assert rows[b]["compute_pct"] == pytest.approx(rows[8]["compute_pct"] * 8 / b)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "mobilenet_v2", "resnet20"])
def test_as_built_counts_more(name):
    counts = overhead(name)
    layers = adapted_layers(network_layers(name))
    assert counts.gap_adds == sum(layer.cin * (layer.hin * layer.win - 1) for layer in layers)
    assert counts.buffer_elements == max(layer.cin * layer.hin * layer.win for layer in layers)
    for row in table1_rows(counts):
        assert row["param_pct_as_built"] > row["param_pct"] and row["compute_pct_as_built"] > row["compute_pct"]


def test_resnet18_buffer_width_from_spec():
    counts = overhead("resnet18")
    # int 8x8 products lie in [-128*255, 127*255]; K_max = 4608 gives sums down to -150,405,120,
    # and 2^27 < 150,405,120 <= 2^28, so a 29-bit two's complement accumulator
    assert counts.reduction_max == 4608
    assert counts.buffer_bits(8) == 64 * 56 * 56 * 29


def test_ops_storage_edges_at_8_bits():
    layers = network_layers("resnet18")
    rows = ops_storage_rows(layers)
    total = rows[-1]
    assert total["params"] == 11_678_912 and total["macs"] == sum(layer.macs for layer in layers)
    stem, fc = rows[0], rows[-2]
    assert stem["storage_bits_w2"] == stem["params"] * 8 and fc["storage_bits_w2"] == fc["params"] * 8
    inner = rows[1]
    assert inner["storage_bits_w2"] == inner["params"] * 2 and inner["ops_w4"] == inner["macs"] * 4 / 32
    assert total["storage_bits_w3"] == sum(row["storage_bits_w3"] for row in rows[:-1])


def test_post_lut_entry_bits_from_spec():
    for bits, frac in ((3, 8), (4, 8), (2, 0), (8, 4), (4, 3)):
        datapath = post_datapath(bits, frac)
        assert post_lut_entry_bits(datapath) == int(post_lut(np.arange(1 << bits), datapath.lut_frac_bits).max()).bit_length()
    assert post_lut_entry_bits(post_datapath(3, 2)) == 5  # m = 2: L = F = 2, round(7 * 4 / sqrt 2) = 20
    assert post_lut_entry_bits(post_datapath(4, 3)) == 5  # m = 6: L = F - 2 = 1, round(15 * 2 / sqrt 2) = 21
    assert post_datapath(2, 8).frac_bits == 0  # 2-bit b-bit levels have no odd exponent: F = 0 only


def test_post_lut_variants():
    rows = {row["act_bits"]: row for row in post_lut_rows(network_layers("resnet18"), 8, 4, frac_bits=8)}
    row = rows[3]
    assert row["lut_bits"] == 8 * 11 and row["rom_frac_bits"] == 8  # m = 2: the ROM holds all F = 8 bits
    assert rows[4]["entry_bits"] == 4 + 6 and rows[4]["rom_frac_bits"] == 6  # m = 6: L = F - 2
    assert row["post_shared_bits"] == 8 * row["lut_bits"] and row["post_lut_bits"] == 32 * row["lut_bits"]
    assert row["single_table_pct"] < 0.002  # the authors' claim holds for one table
    assert row["post_lut_pct"] == pytest.approx(32 * row["single_table_pct"])


def test_asq_on_chip_barrier_cycles_and_pool_area():
    """Per adapted layer: one pooled-pass cycle and a held pass over its input map (hw.cycles), per sample."""
    import dataclasses

    from hw.config import ArrayConfig
    from hw.cycles import POOL_CYCLES, gemm_cycles
    from hw.synth_record import SynthRecord, UnitType
    from reports.networks import Layer
    from reports.overhead import asq_on_chip

    layers = [Layer("a", "conv", 3, 8, 3, 3, 1, 1, hin=6, win=6, hout=6, wout=6),
              Layer("b", "conv", 8, 16, 3, 3, 2, 1, hin=6, win=6, hout=3, wout=3),
              Layer("fc", "linear", 144, 10)]
    row = asq_on_chip("tiny", layers, 4, 4)
    held = gemm_cycles(ArrayConfig("int", 4, 4, 8, 8, max_reduction=1, max_m=36, max_n=8), 36, 1, 8)
    assert row["barrier_cycles"] == POOL_CYCLES + held == POOL_CYCLES + 9 * 2 * 5 + 4 + 4 + 5  # only "b" is adapted
    assert 0 < row["barrier_cycles_pct"] < 100 and "pool_transistors" not in row
    core = SynthRecord("array_int_w4a4_4x4", "int", 4, 4, 0, 4, 4, 1, 1000, 1, 1, unit=UnitType.ARRAY)
    pool = dataclasses.replace(core, name="pool_int_w4a4_4col", rows=1, transistors=250, unit=UnitType.POOL)
    priced = asq_on_chip("tiny", layers, 4, 4, (core, pool))
    assert priced["pool_area_pct_of_array"] == 25.0 and priced["array_core"] == core.name
