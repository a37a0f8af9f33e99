"""Whole networks through the RTL: every layer bit-exact against golden, chained.

Default: a smoke run of all 20 layers of a CIFAR ResNet-20 on an 8x8 input with 2x2 arrays (small, quick to
build), and a small exported APoT network (the apot shift-add kind, table activations decoded per row) on
every backend, as a batch and one image at a time.  ``-m regress``: the real 32x32 ResNet-20 input on 8x8
arrays, on the plain Verilator harness (within 30 s wall) and cocotb.
"""

import dataclasses
import tempfile

import numpy as np
import pytest
import torch
from torch import nn

from golden import spec
from golden.errors import ConfigError
from golden.export import export_model
from golden.layers import calibrate, quantize_model
from golden.models import DigitsNet
from sim.failures import SimulationError
from sim.network import (
    LayerRun,
    NetworkRun,
    _integers,
    check_network,
    held_rows,
    plan_arrays,
    shared_floor,
    run_network_rtl,
    runs_on_requantizer,
)
from sim.resnet20 import random_resnet20

APOT_ARRAY = 4  # rows = cols of the arrays the APoT network runs on


@pytest.fixture(scope="module")
def small_resnet():
    x = np.random.default_rng(7).normal(0, 1, (1, 3, 8, 8))
    return random_resnet20(x, seed=7), x


def _summary(run: NetworkRun) -> str:
    return (f"{run.backend}: {len(run.layers)} layers, {run.program_cycles} cycles, {run.macs} MACs, "
            f"{run.wall_seconds:.1f} s wall ({run.sim_seconds:.2f} s simulating)")


class ApotNet(nn.Module):
    """Four convs and a classifier (8x8 input): the APoT middle layers run on the requantizer, after a max pool
    and before a global pool, so table activations reach both stages."""

    def __init__(self, width: int = 4):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )  # fmt: skip
        self.classifier = nn.Linear(width, 10)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


@pytest.fixture(scope="module")
def apot_network():
    """golden's export of a calibrated 4-bit APoT ApotNet, and three input images."""
    torch.manual_seed(0)
    model = quantize_model(ApotNet().eval(), "apot", 4)
    calibrate(model, torch.randn(16, 1, 8, 8))
    network, _ = export_model(model.eval())
    return network, np.random.default_rng(0).normal(0, 1, (3, 1, 8, 8))


def _table_layers(network) -> list[str]:
    return [layer.name for layer in network.layers if layer.cfg.act_format == "table"]


def test_apot_layers_run_on_the_apot_kind(apot_network):
    network, _ = apot_network
    assert _table_layers(network) == ["features.3", "features.6", "features.10"]
    assert all(network.layers[i].cfg.scheme == "apot" for i in (1, 2, 3))
    configs, keys = plan_arrays(network, APOT_ARRAY, APOT_ARRAY)
    apot = configs[keys["features.3"]]
    assert (apot.pe_kind, apot.act_bits, apot.threshold_bank) == ("apot", 4, True)
    assert apot.datapath == network.layers[1].cfg and apot.act_level_bits == 6  # the 4-bit APoT grid 48
    assert keys["features.6"] == keys["features.3"]  # the max pool is finished by golden on the same array
    # the global pool into the classifier's 8-bit codes runs there too: 8-bit REQUANT runs, 4-bit thresholds
    assert keys["features.10"] == keys["features.3"] and len(configs) == 2
    assert (apot.out_bits, apot.min_out_bits, apot.threshold_out_bits, apot.global_pool) == (8, 8, 4, True)
    assert apot.threshold_count == 15 and not apot.run_time_out_bits


def test_a_layer_no_kind_runs_is_refused(apot_network):
    network, _ = apot_network
    layer = network.layers[1]
    cfg = spec.DatapathConfig.make("int", 7, 4, act_format="table", act_level_bits=6)  # the same integers on int codes
    int_on_tables = dataclasses.replace(layer, cfg=cfg, weight_codes=layer.cfg.weight.apot.value(layer.weight_codes),
                                        accumulator_width=spec.accumulator_bits(cfg, layer.reduction_length))
    broken = dataclasses.replace(network, layers=(network.layers[0], int_on_tables, *network.layers[2:]))
    with pytest.raises(ConfigError, match="the int PE kind runs int weights with uniform activations, not table"):
        plan_arrays(broken, APOT_ARRAY, APOT_ARRAY)


def test_apot_network_is_bit_exact_on_the_harness(apot_network, tmp_path, monkeypatch):
    """Also: the harness's working folder is temporary and removed afterwards."""
    network, x = apot_network
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    run = run_network_rtl(network, x, "verilator", APOT_ARRAY, APOT_ARRAY)
    print(_summary(run))
    check_network(run)
    assert {layer.stage for layer in run.layers if layer.name in _table_layers(network)} == {"codes", "accumulators"}
    assert list(tmp_path.iterdir()) == []


def test_per_image_runs_every_image_alone(apot_network):
    network, x = apot_network
    run = run_network_rtl(network, x, "verilator", APOT_ARRAY, APOT_ARRAY, per_image=True)
    check_network(run)
    one = run_network_rtl(network, x[:1], "verilator", APOT_ARRAY, APOT_ARRAY)
    check_network(one)
    for layer, single in zip(run.layers, one.layers, strict=True):
        assert [layer.runs, layer.cycles, layer.expected_cycles, layer.macs] == \
            [len(x) * single.runs, len(x) * single.cycles, len(x) * single.expected_cycles, len(x) * single.macs]
    golden = network.run(x)
    for layer in network.layers:
        assert np.array_equal(run.outputs[layer.name].real(), golden[layer.name].real()), layer.name


def test_double_buffering_keeps_every_bit_and_cycle_and_saves_host_cycles(apot_network):
    """The same per-image network with and without overlapped host transfers (next layer's weights, tiled runs)."""
    network, x = apot_network
    runs = {overlap: run_network_rtl(network, x[:2], "verilator", APOT_ARRAY, APOT_ARRAY, per_image=True,
                                     overlap=overlap) for overlap in (False, True)}
    for run in runs.values():
        check_network(run)
    for layer in network.layers:
        assert np.array_equal(_integers(runs[True].outputs[layer.name]), _integers(runs[False].outputs[layer.name]))
    assert [layer.cycles for layer in runs[True].layers] == [layer.cycles for layer in runs[False].layers]
    print(f"program cycles: {runs[False].program_cycles} sequential, {runs[True].program_cycles} overlapped")
    assert runs[True].program_cycles < runs[False].program_cycles


def test_apot_network_under_cocotb(apot_network, simulator):
    network, x = apot_network
    run = run_network_rtl(network, x[:2], f"cocotb-{simulator}", APOT_ARRAY, APOT_ARRAY, optimize=False, per_image=True)
    print(_summary(run))
    check_network(run)
    assert run.outputs["classifier"].values.shape[0] == 2


def test_max_reduction_sizes_every_array(small_resnet):
    network, _ = small_resnet
    configs, _ = plan_arrays(network, 4, 4, max_reduction=2000)
    assert {cfg.max_reduction for cfg in configs.values()} == {2000}
    own, _ = plan_arrays(network, 4, 4)
    for key, cfg in configs.items():
        assert cfg.accumulator_width == spec.accumulator_bits(cfg.datapath, 2000) > own[key].accumulator_width
    with pytest.raises(ConfigError, match="longest reduction"):
        plan_arrays(network, 4, 4, max_reduction=575)


def test_whole_sample_runs_size_their_arrays():
    """ASQ's barrier holds a sample's whole output: at 32x32 the first stage's arrays hold 1024 rows, the rest 256."""
    x = np.random.default_rng(3).normal(0, 1, (1, 3, 32, 32))
    network = random_resnet20(x, "asq", 4, seed=3)
    rows = held_rows(network, network.quantize_input(x))
    assert rows["conv1"] == rows["layer1.2.conv2"] == 1024 and rows["layer3.2.conv2"] == 64 and "fc" not in rows
    configs, keys = plan_arrays(network, 8, 8, whole_sample_rows=rows)
    assert configs[keys["layer1.0.conv1"]].max_m == 1024 and configs[keys["conv1"]].max_m == 1024
    assert plan_arrays(network, 8, 8)[0][keys["layer1.0.conv1"]].max_m == 256


def test_plan_shares_one_array_per_datapath(small_resnet):
    network, _ = small_resnet
    configs, keys = plan_arrays(network, 4, 4)
    assert sorted(cfg.pe_kind for cfg in configs.values()) == ["int", "post_shared"]
    assert keys["conv1"] == keys["fc"] and keys["layer1.0.conv1"] == keys["layer1.0.conv2"] == keys["layer3.2.conv2"]
    assert all(runs_on_requantizer(layer) for layer in network.layers)
    post = configs[keys["layer3.1.conv2"]]
    assert post.max_reduction == 576 and post.residual_bits == 5  # the shortcut's unsigned 4-bit codes
    # the 4-bit body and the global average pool before the fc, into its 8-bit codes: each run sets its width
    assert (post.min_out_bits, post.out_bits, post.global_pool, post.run_time_out_bits) == (4, 8, True, True)
    stem = configs[keys["conv1"]]  # the signed input's second pass adds the first's sign * acc + bias
    assert stem.residual_bits == max(stem.accumulator_width, stem.bias_bits) + 1
    assert (stem.out_bits, stem.run_time_out_bits) == (4, False)  # the stem's 4-bit codes; the fc's are RAW


def test_a_floor_makes_the_plans_of_two_networks_one_design(small_resnet):
    """Each network's plan covers the floor (hw.config.ArrayConfig.covering): one design for both networks."""
    network, x = small_resnet
    asq = random_resnet20(x, "asq_post", 4, seed=7)  # the same datapaths, ASQ outputs (the pool unit, wider bias)
    plans = [plan_arrays(net, 4, 4)[0] for net in (network, asq)]
    assert plans[0].keys() == plans[1].keys() and plans[0] != plans[1]
    floor = shared_floor(plans)
    shared = [plan_arrays(net, 4, 4, floor=floor)[0] for net in (network, asq)]
    assert shared[0] == shared[1] == floor
    for datapath, cfg in floor.items():
        assert cfg.bias_bits == max(plan[datapath].bias_bits for plan in plans)
        assert cfg.global_pool == any(plan[datapath].global_pool for plan in plans)
    post = next(cfg for cfg in floor.values() if cfg.pe_kind == "post_shared")
    with pytest.raises(ConfigError, match="none covers both"):
        post.covering(next(cfg for cfg in floor.values() if cfg.pe_kind == "int"))


def test_resnet20_smoke_is_bit_exact_through_the_rtl(small_resnet, simulator):
    """Signed stem (two passes), negated channels, shortcuts and the pooled last conv all on chip."""
    network, x = small_resnet
    run = run_network_rtl(network, x, f"cocotb-{simulator}", rows=2, cols=2, optimize=False)
    print(_summary(run))
    check_network(run)
    assert [layer.name for layer in run.layers] == [layer.name for layer in network.layers]
    assert all(layer.cycles == layer.expected_cycles and layer.runs >= 1 for layer in run.layers)
    assert {layer.stage for layer in run.layers} == {"codes"}  # every layer's output comes from the RTL
    assert run.matches_golden_run


def test_check_network_names_the_failing_layer():
    good = LayerRun("a", "codes", True, 0, 10, 10, 12, 1, 100, "x")
    bad = LayerRun("b", "accumulators", False, 3, 10, 10, 12, 1, 100, "x")
    run = NetworkRun("verilator", [good, bad], {}, True, 1.0, 0.0, failures=["b: 3 mismatching accumulators"])
    with pytest.raises(SimulationError, match="b: 3 mismatching accumulators"):
        check_network(run)
    with pytest.raises(ConfigError, match="backend"):
        run_network_rtl(None, None, "modelsim")


@pytest.mark.regress
def test_resnet20_is_bit_exact_on_the_harness():
    """The whole CIFAR ResNet-20 at 32x32; its wall time against the 30 s target is `python -m sim.bench`'s."""
    x = np.random.default_rng(0).normal(0, 1, (1, 3, 32, 32))
    network = random_resnet20(x)
    run = run_network_rtl(network, x, "verilator")
    print(_summary(run))
    check_network(run)
    assert run.macs > 40_000_000  # every layer's GEMM ran on the RTL


@pytest.mark.regress
def test_resnet20_under_cocotb_verilator():
    x = np.random.default_rng(1).normal(0, 1, (1, 3, 32, 32))
    network = random_resnet20(x, seed=1)
    run = run_network_rtl(network, x, "cocotb-verilator")
    print(_summary(run))
    check_network(run)


@pytest.fixture(scope="module")
def asq_network():
    """A calibrated 4-bit ASQ DigitsNet (width 4) and two images."""
    torch.manual_seed(0)
    model = quantize_model(DigitsNet(width=4).eval(), "asq", 4)
    calibrate(model, torch.randn(16, 1, 8, 8))
    network, _ = export_model(model.eval())
    return network, np.random.default_rng(0).normal(0, 1, (2, 1, 8, 8))


@pytest.mark.parametrize("backend", ["verilator", "cocotb-icarus"])
def test_asq_network_finishes_every_layer_on_chip(asq_network, backend):
    """ASQ outputs through the barrier (pooled RAW pass, host adapter on the RTL's integer sums, held pass),
    after a signed 8-bit stem; every layer's codes and every sample's step equal golden's."""
    network, x = asq_network
    assert [layer.output.mode for layer in network.layers] == ["asq", "asq", "uniform", "accumulator"]
    assert network.layers[0].signed_input
    run = run_network_rtl(network, x, backend, APOT_ARRAY, APOT_ARRAY)
    check_network(run)
    assert {layer.stage for layer in run.layers} == {"codes"}
    runs = {layer.name: layer.runs for layer in run.layers}
    assert runs == {"features.0": 2 * 3, "features.3": 2 * 2, "features.6": 2, "classifier": 1}  # per sample
    golden = network.run(x)
    for name in ("features.0", "features.3"):
        assert len(set(run.outputs[name].step)) == 2 and np.array_equal(run.outputs[name].step, golden[name].step)
