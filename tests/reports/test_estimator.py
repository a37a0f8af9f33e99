"""Estimator: hand-computed cycles and energy of a one-layer workload, per-layer/network consistency, errors."""

import json

import pytest
from synth_fixture import synth_payload

from golden.errors import ConfigError, UnknownSchemeError, UnsupportedBitsError
from golden.spec import DatapathConfig, accumulator_bits
from reports.energy import DEFAULTS, load_synthesis
from reports.estimator import HardwareConfig, estimate, evaluate
from reports.networks import Layer, network_layers


@pytest.fixture
def synthesis(synth_path):
    return load_synthesis(synth_path)


def one_layer():
    # 3x3 conv, 8 -> 6 channels, 6x6 output: M = 36, K = 72, N = 6
    return [Layer("c", "conv", 8, 6, kh=3, kw=3, pad=1, hin=6, win=6, hout=6, wout=6)]


def test_hand_computed_single_layer(synthesis):
    config = HardwareConfig(rows=4, cols=4, dataflow="os", pe_kind="int", weight_bits=8, act_bits=8, ifmap_kb=64, filter_kb=64, ofmap_kb=64)
    (row,), summary = estimate(one_layer(), config, synthesis)
    folds = 9 * 2  # ceil(36/4) * ceil(6/4)
    assert row["cycles"] == folds * (4 + 4 + 72 - 2) - 1  # SCALE-Sim's os fold; its total is the last cycle's 0-based index
    macs = 36 * 72 * 6
    assert row["macs"] == macs and row["utilization"] == pytest.approx(macs / (16 * row["cycles"]))
    acc = accumulator_bits(DatapathConfig.make("int", 8, 8), 72)
    assert acc == 23
    assert row["mac_nj"] == pytest.approx(macs * 0.23e-3)
    assert row["register_nj"] == pytest.approx(macs * (8 + 8 + 2 * acc) * 0.03 / 8 * 1e-3)
    sram_bit = float(DEFAULTS.sram_pj_per_bit(64))
    ifmap_reads, filter_reads = 36 * 72 * 2, 72 * 6 * 9
    assert (row["ifmap_reads"], row["filter_reads"], row["ofmap_final"]) == (ifmap_reads, filter_reads, 216)
    assert row["sram_nj"] == pytest.approx((ifmap_reads * 8 + filter_reads * 8 + 216 * 8) * sram_bit * 1e-3)
    # everything fits 64 KB: each tensor crosses DRAM once
    assert row["dram_nj"] == pytest.approx((8 * 36 * 8 + 432 * 8 + 6 * 36 * 8) * 1950 / 64 * 1e-3)
    assert summary["energy_uj"] == pytest.approx(row["energy_nj"] * 1e-3)
    assert summary["latency_ms"] == pytest.approx(row["cycles"] / 200e6 * 1e3)


def test_pe_kind_changes_only_what_it_should(synthesis):
    layers = network_layers("resnet20")
    base = dict(rows=8, cols=8, dataflow="ws", weight_bits=4, act_bits=4)
    points = [HardwareConfig(pe_kind="int", **base), HardwareConfig(pe_kind="pot", **base)]
    result = evaluate(layers, points, synthesis)
    assert (result.cycles[0] == result.cycles[1]).all()
    # MAC energy follows the logic (non flip-flop) transistors per PE of the synthesized arrays
    assert result.energy_totals_pj["mac"][1] / result.energy_totals_pj["mac"][0] == pytest.approx((600 - 16 * 30) / (1200 - 16 * 25))
    # pot at its default F = 2: 7-bit products (narrower accumulators) against int 4x4's 8-bit products
    int_, pot = (point.datapath.product_bits() for point in points)
    assert pot < int_ and result.energy_totals_pj["register"][1] < result.energy_totals_pj["register"][0]


def test_lutmac_uses_hw_cycle_formula(synthesis):
    from hw.config import ArrayConfig
    from hw.cycles import gemm_cycles

    layers = network_layers("resnet20")
    config = HardwareConfig(rows=8, cols=4, dataflow="lutmac", pe_kind="post_shared", weight_bits=4, act_bits=4)
    rows, summary = estimate(layers, config, synthesis)
    expected = [gemm_cycles(ArrayConfig("post_shared", 8, 4, 4, 4, max_reduction=layer.k, max_m=layer.m, max_n=layer.n),
                            layer.m, layer.k, layer.n) for layer in layers]
    assert [row["cycles"] for row in rows] == expected
    assert summary["cycles"] == sum(expected)


def test_network_totals_are_sums_of_layers(synthesis):
    layers = network_layers("mobilenet_v2")
    rows, summary = estimate(layers, HardwareConfig(rows=16, cols=16, dataflow="is", pe_kind="lcq", weight_bits=4, act_bits=4), synthesis)
    assert summary["cycles"] == sum(row["cycles"] for row in rows)
    assert summary["energy_uj"] == pytest.approx(sum(row["energy_nj"] for row in rows) * 1e-3)
    depthwise = [row for row, layer in zip(rows, layers, strict=True) if layer.type == "depthwise"]
    assert all(row["utilization"] < 0.1 for row in depthwise)  # N = 1 per group: one column busy


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"rows": 0}, ConfigError, "array rows must be positive"),
        ({"cols": 0}, ConfigError, "array cols must be positive"),
        ({"dataflow": "rs"}, UnknownSchemeError, "dataflow 'rs'"),
        ({"pe_kind": "fp8"}, UnknownSchemeError, "PE kind 'fp8'"),
        ({"weight_bits": 9}, UnsupportedBitsError, "weight bits=9"),
        ({"ifmap_kb": 0}, ConfigError, "ifmap_kb must be a positive number"),
        ({"dataflow": "lutmac", "rows": 128}, ConfigError, "rows=128"),
        ({"pe_kind": "int", "frac_bits": 4}, ConfigError, "frac_bits must be 0"),
    ],
)
def test_bad_hardware_configs(kwargs, error, match):
    with pytest.raises(error, match=match):
        HardwareConfig(**kwargs)


def test_unsynthesized_point_and_empty_inputs(synthesis):
    with pytest.raises(ConfigError, match="no synthesized array unit"):
        estimate(one_layer(), HardwareConfig(pe_kind="int", weight_bits=2, act_bits=2), synthesis)
    with pytest.raises(ConfigError, match="at least one layer"):
        evaluate([], [HardwareConfig()], synthesis)
    with pytest.raises(ConfigError, match="no design points"):
        evaluate(one_layer(), [], synthesis)


def test_asq_stage_energy_by_hand():
    from reports.energy import EnergyTable
    from reports.estimator import RECIPROCAL_FP32_ADDS, RECIPROCAL_FP32_MULTS, asq_stage_energy

    table = EnergyTable(fp32_mult_pj=3.0, fp32_add_pj=2.0, int32_add_pj=0.5)
    # adapter 16 -> 4 -> 1 on a 16-channel 5x5 output with 20-bit accumulators
    parts = asq_stage_energy([(4, 16), (1, 4)], 16, 25, 20, 32, table)
    macs, bias_adds = 4 * 16 + 1 * 4, 4 + 1
    assert parts["compute"] == pytest.approx(16 * 25 * 0.5 + 16 * 3.0 + macs * (3.0 + 2.0) + bias_adds * 2.0
                                             + RECIPROCAL_FP32_MULTS * 3.0 + RECIPROCAL_FP32_ADDS * 2.0)
    # the accumulators written and read back once, at the 32 KB buffer's energy per bit (~20 pJ / 64 b)
    assert parts["buffer"] == pytest.approx(2 * 16 * 25 * 20 * float(table.sram_pj_per_bit(32)))
    assert 0.9 * 20 / 64 < float(table.sram_pj_per_bit(32)) < 1.1 * 20 / 64
    wider = asq_stage_energy([(4, 16), (1, 4)], 16, 50, 20, 32, table)
    assert wider["buffer"] == pytest.approx(2 * parts["buffer"])


def test_clock_is_the_array_cores_measured_fmax_unless_set(tmp_path):
    """A unit with ``fmax_mhz`` sets its points' clock; a set clock_mhz wins; without one, 200 MHz."""
    payload = synth_payload()
    for unit in payload["units"]:
        if unit["name"] == "array_int_w8a8_4x4":
            unit["fmax_mhz"] = 125.0
    path = tmp_path / "synth.json"
    path.write_text(json.dumps(payload))
    synthesis = load_synthesis(path)
    measured = HardwareConfig(rows=4, cols=4, dataflow="os")
    (row,), summary = estimate(one_layer(), measured, synthesis)
    assert summary["clock_mhz"] == 125.0 and summary["latency_ms"] == pytest.approx(row["cycles"] / 125e6 * 1e3)
    _, fixed = estimate(one_layer(), HardwareConfig(rows=4, cols=4, dataflow="os", clock_mhz=300.0), synthesis)
    assert fixed["clock_mhz"] == 300.0
    _, unmeasured = estimate(one_layer(), HardwareConfig(rows=4, cols=4, dataflow="os", weight_bits=4, act_bits=4), synthesis)
    assert unmeasured["clock_mhz"] == 200.0
