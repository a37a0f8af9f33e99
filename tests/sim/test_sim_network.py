"""Whole networks through the RTL: every layer of a CIFAR ResNet-20 bit-exact against golden, chained.

Default: a smoke run of all 20 layers on an 8x8 input with 2x2 arrays (small, quick to build).  ``-m regress``: the
real 32x32 input on 8x8 arrays, on the plain Verilator harness (within 30 s wall) and cocotb.
"""

import numpy as np
import pytest

from golden.errors import ConfigError
from sim.network import LayerRun, NetworkRun, check_network, plan_arrays, run_network_rtl, runs_on_requantizer
from sim.resnet20 import random_resnet20
from sim.simulators import SimulationError


@pytest.fixture(scope="module")
def small_resnet():
    x = np.random.default_rng(7).normal(0, 1, (1, 3, 8, 8))
    return random_resnet20(x, seed=7), x


def _summary(run: NetworkRun) -> str:
    return (f"{run.backend}: {len(run.layers)} layers, {run.program_cycles} cycles, {run.macs} MACs, "
            f"{run.wall_seconds:.1f} s wall ({run.sim_seconds:.2f} s simulating)")


def test_plan_shares_one_array_per_datapath(small_resnet):
    network, _ = small_resnet
    configs, keys = plan_arrays(network, 4, 4)
    assert sorted(cfg.pe_kind for cfg in configs.values()) == ["int", "post_shared"]
    assert keys["conv1"] == keys["fc"] and keys["layer1.0.conv1"] == keys["layer1.0.conv2"]
    on_chip = [layer.name for layer in network.layers if runs_on_requantizer(layer)]
    assert on_chip == [f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)] + ["fc"]
    post = configs[keys["layer3.2.conv2"]]
    assert post.max_reduction == 576 and post.out_bits == 4


def test_resnet20_smoke_is_bit_exact_through_the_rtl(small_resnet, simulator):
    if simulator == "icarus":
        pytest.skip("a whole network is ~10^5 cycles: too slow on Icarus for the default suite")
    network, x = small_resnet
    run = run_network_rtl(network, x, "cocotb-verilator", rows=2, cols=2, optimize=False)
    print(_summary(run))
    check_network(run)
    assert [layer.name for layer in run.layers] == [layer.name for layer in network.layers]
    assert all(layer.cycles == layer.expected_cycles and layer.runs >= 1 for layer in run.layers)
    assert {layer.stage for layer in run.layers} == {"codes", "accumulators"}
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
def test_resnet20_on_the_harness_within_30_seconds():
    x = np.random.default_rng(0).normal(0, 1, (1, 3, 32, 32))
    network = random_resnet20(x)
    run = run_network_rtl(network, x, "verilator")
    print(_summary(run))
    check_network(run)
    assert run.macs > 40_000_000  # every layer's GEMM ran on the RTL
    assert run.wall_seconds <= 30


@pytest.mark.regress
def test_resnet20_under_cocotb_verilator():
    x = np.random.default_rng(1).normal(0, 1, (1, 3, 32, 32))
    network = random_resnet20(x, seed=1)
    run = run_network_rtl(network, x, "cocotb-verilator")
    print(_summary(run))
    check_network(run)
