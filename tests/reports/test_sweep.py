"""Columnar design-space sweep: the grid, agreement with the per-point estimator, batch, chunking, the Pareto front."""

from dataclasses import replace

import numpy as np
import pytest

from golden.errors import ConfigError, UnknownSchemeError
from reports.energy import DEFAULTS, load_synthesis
from reports.estimator import evaluate
from reports.networks import network_layers
from reports.sweep import SweepSpec, pareto_front, pe_configurations, plan_sweep, run_sweep


def brute_force_front(latency, energy):
    """Non-dominated points, O(n^2); of identical points only the first counts."""
    dominated_or_repeat = np.zeros(len(latency), dtype=bool)
    for i in range(len(latency)):
        no_worse = (latency <= latency[i]) & (energy <= energy[i])
        better = no_worse & ((latency < latency[i]) | (energy < energy[i]))
        same_before = (latency == latency[i]) & (energy == energy[i]) & (np.arange(len(latency)) < i)
        dominated_or_repeat[i] = better.any() or same_before.any()
    return ~dominated_or_repeat


@pytest.mark.parametrize("seed, count, levels", [(1, 200, 20), (2, 3000, None), (3, 3000, 40)])
def test_pareto_front_matches_brute_force(seed, count, levels):
    rng = np.random.default_rng(seed)
    if levels:  # many ties
        latency, energy = rng.integers(1, levels, count).astype(float), rng.integers(1, levels, count).astype(float)
    else:
        latency, energy = rng.lognormal(size=count), rng.lognormal(size=count)
    front = pareto_front(latency, energy)
    expected = brute_force_front(latency, energy)
    assert {(latency[i], energy[i]) for i in np.flatnonzero(front)} == {(latency[i], energy[i]) for i in np.flatnonzero(expected)}
    assert front.sum() == expected.sum()


def test_space_covers_the_grid(synth_path):
    synthesis = load_synthesis(synth_path)
    spec = SweepSpec(arrays=((4, 4), (128, 8)), dataflows=("os", "lutmac"), ifmap_kb=(8.0, 64.0), batch=(1, 2))
    result = run_sweep(network_layers("resnet20"), spec, synthesis)
    configs = len(synthesis.configurations())
    # lutmac only up to 64 a side: (4,4) gets both flows, (128,8) only os; x 2 ifmap sizes x 2 batches
    assert len(result) == configs * 3 * 2 * 2
    flows, rows = result.values("dataflow"), result.values("rows")
    assert not ((flows == "lutmac") & (rows == 128)).any()
    assert sorted(set(zip(result.values("ifmap_kb").tolist(), result.values("batch").tolist(), strict=True))) == [
        (8.0, 1), (8.0, 2), (64.0, 1), (64.0, 2)]
    filtered = SweepSpec(arrays=((4, 4),), dataflows=("ws",), pe_kinds=("int",), bits=((4, 4),))
    assert pe_configurations(filtered, synthesis) == (("int", 4, 4, 0),)


def test_sweep_matches_the_per_point_estimator(synth_path):
    synthesis = load_synthesis(synth_path)
    layers = network_layers("resnet20")
    spec = SweepSpec(arrays=((4, 4), (8, 16), (128, 8)), ifmap_kb=(2.0, 64.0), ofmap_kb=(1.0, 64.0), clock_mhz=(None, 150.0),
                     dram_bytes_per_cycle=(None, 0.5))
    result = run_sweep(layers, spec, synthesis, chunk=7)
    direct = evaluate(layers, [result.config(i) for i in range(len(result))], synthesis)
    np.testing.assert_array_equal(result.cycles, direct.total_cycles)
    np.testing.assert_array_equal(result.columns["stall_cycles"], direct.stall_cycles.sum(axis=1))
    assert (result.columns["stall_cycles"][result.values("dram_bytes_per_cycle") == 0.5] > 0).any()
    np.testing.assert_allclose(result.total_energy_pj, direct.total_energy_pj, rtol=1e-12)
    for part in ("mac", "register", "sram", "dram"):
        np.testing.assert_allclose(result.energy_pj[part], direct.energy_totals_pj[part], rtol=1e-12)
    np.testing.assert_allclose(result.latency_s, direct.latency_s, rtol=1e-12)
    np.testing.assert_allclose(result.area_transistors, direct.area_transistors, rtol=1e-12)
    np.testing.assert_allclose(result.utilization, direct.mean_utilization, rtol=1e-12)
    assert set(result.values("clock_mhz")) >= {150.0}
    rows = result.rows()
    assert len(rows) == len(result) and sum(row["pareto"] for row in rows) == result.pareto().sum() >= 1


def test_batch_runs_as_one_gemm_with_batch_times_the_rows(synth_path):
    """Batch B: each layer's GEMM has B*M rows; energy per inference is the batch's / B; weights cross DRAM once."""
    synthesis = load_synthesis(synth_path)
    layers = network_layers("resnet20")
    spec = SweepSpec(arrays=((8, 8),), dataflows=("os", "ws", "lutmac"), pe_kinds=("int",), bits=((8, 8),), batch=(1, 16))
    result = run_sweep(layers, spec, synthesis)
    # M, inputs and outputs x16 (a linear layer as the 1x1 conv it is on a batch of rows)
    batched = [replace(layer, type="conv" if layer.type == "linear" else layer.type, hin=layer.hin * 16, hout=layer.hout * 16)
               for layer in layers]
    for i in np.flatnonzero(result.values("batch") == 16):
        direct = evaluate(batched, [result.config(i)], synthesis)
        assert result.cycles[i] == direct.total_cycles[0]
        assert result.total_energy_pj[i] == pytest.approx(direct.total_energy_pj[0] / 16, rel=1e-12)
    # with buffers that hold every tensor, each crosses DRAM once per batch: per inference, activations
    # cost the same at any batch and the weights 1/B of theirs
    roomy = replace(spec, ifmap_kb=(16384.0,), filter_kb=(16384.0,), ofmap_kb=(16384.0,))
    result = run_sweep(layers, roomy, synthesis)
    single, sixteen = (np.flatnonzero(result.values("batch") == b) for b in (1, 16))
    weight_pj = sum(layer.params for layer in layers) * 8 * DEFAULTS.dram_pj_per_bit
    saved = result.energy_pj["dram"][single] - result.energy_pj["dram"][sixteen]
    np.testing.assert_allclose(saved, weight_pj * (1 - 1 / 16), rtol=1e-12)


def test_chunking_and_limit_do_not_change_results(synth_path):
    synthesis = load_synthesis(synth_path)
    layers = network_layers("resnet20")
    spec = SweepSpec(arrays=((4, 4), (16, 8)), filter_kb=(4.0, 64.0), batch=(1, 4))
    whole, pieces = run_sweep(layers, spec, synthesis), run_sweep(layers, spec, synthesis, chunk=5)
    for name in whole.columns:
        np.testing.assert_array_equal(whole.columns[name], pieces.columns[name])
    first = run_sweep(layers, spec, synthesis, chunk=3, limit=11)
    assert len(first) == 11
    np.testing.assert_array_equal(first.total_energy_pj, whole.total_energy_pj[:11])
    assert plan_sweep(layers, spec, synthesis).size == len(whole)


def test_progress_bar_on_long_sweeps(synth_path, capsys):
    synthesis = load_synthesis(synth_path)
    run_sweep(network_layers("resnet20"), SweepSpec(arrays=((4, 4),), dataflows=("os",)), synthesis, chunk=2, progress=True)
    assert "sweep" in capsys.readouterr().err


def test_bad_sweeps(synth_path):
    synthesis = load_synthesis(synth_path)
    with pytest.raises(ConfigError, match="array rows must be positive"):
        SweepSpec(arrays=((0, 4),))
    with pytest.raises(UnknownSchemeError, match="'rs'"):
        SweepSpec(dataflows=("os", "rs"))
    with pytest.raises(ConfigError, match="ifmap_kb values must be positive"):
        SweepSpec(ifmap_kb=(0.0,))
    with pytest.raises(ConfigError, match="batch sizes must be positive integers"):
        SweepSpec(batch=(0,))
    with pytest.raises(ConfigError, match="no synthesized PE configuration matches"):
        run_sweep(network_layers("resnet20"), SweepSpec(pe_kinds=("pot",), bits=((8, 8),)), synthesis)
    with pytest.raises(ConfigError, match="no design points"):
        run_sweep(network_layers("resnet20"), SweepSpec(arrays=((128, 128),), dataflows=("lutmac",)), synthesis)
    with pytest.raises(ConfigError, match="chunk must be a positive"):
        run_sweep(network_layers("resnet20"), SweepSpec(), synthesis, chunk=0)


def test_benchmark_prints_points_and_seconds(synth_path, capsys):
    from reports import bench_sweep

    bench_sweep.main(["--synth", str(synth_path), "--points", "3000", "--chunk", "1000"])
    out = capsys.readouterr().out
    assert out.startswith("3000 design points x 21 layers of resnet18: ") and " s (" in out
    with pytest.raises(SystemExit, match="only"):
        bench_sweep.main(["--synth", str(synth_path), "--points", "100000000"])
