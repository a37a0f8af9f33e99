"""Design-space sweep: the grid, the Pareto front, chunking and progress."""

import numpy as np
import pytest

from golden.errors import ConfigError, UnknownSchemeError
from reports.energy import load_synthesis
from reports.estimator import evaluate
from reports.networks import network_layers
from reports.sweep import SweepSpec, design_points, pareto_front, run_sweep


def test_pareto_front_brute_force():
    rng = np.random.default_rng(1)
    latency, energy = rng.integers(1, 20, 200).astype(float), rng.integers(1, 20, 200).astype(float)
    front = pareto_front(latency, energy)
    dominated = [
        any(latency[j] <= latency[i] and energy[j] <= energy[i] and (latency[j], energy[j]) != (latency[i], energy[i])
            for j in range(200))
        for i in range(200)
    ]
    unique_front = {(latency[i], energy[i]) for i in range(200) if not dominated[i]}
    assert {(latency[i], energy[i]) for i in np.flatnonzero(front)} == unique_front
    assert front.sum() == len(unique_front)  # duplicates of a front point are kept once


def test_design_points_cover_the_grid(synth_path):
    synthesis = load_synthesis(synth_path)
    spec = SweepSpec(arrays=((4, 4), (128, 8)), dataflows=("os", "lutmac"))
    points = design_points(spec, synthesis)
    configs = synthesis.configurations()
    # lutmac only up to 64 a side: (4,4) gets both flows, (128,8) only os
    assert len(points) == len(configs) * 3
    assert not any(p.dataflow == "lutmac" and p.rows == 128 for p in points)
    filtered = design_points(SweepSpec(arrays=((4, 4),), dataflows=("ws",), pe_kinds=("int",), bits=((4, 4),)), synthesis)
    assert [(p.pe_kind, p.weight_bits, p.act_bits) for p in filtered] == [("int", 4, 4)]


def test_sweep_matches_direct_evaluation(synth_path):
    synthesis = load_synthesis(synth_path)
    layers = network_layers("resnet20")
    points = design_points(SweepSpec(arrays=((4, 4), (8, 16), (32, 32))), synthesis)
    result = run_sweep(layers, points, synthesis, chunk=7, progress=False)
    direct = evaluate(layers, points, synthesis)
    np.testing.assert_array_equal(result.cycles, direct.total_cycles)
    np.testing.assert_allclose(result.total_energy_pj, direct.total_energy_pj)
    rows = result.rows()
    assert len(rows) == len(points) and sum(row["pareto"] for row in rows) == result.pareto().sum() >= 1
    best_latency = min(range(len(points)), key=lambda i: (result.latency_s[i], result.total_energy_pj[i]))
    assert rows[best_latency]["pareto"]


def test_progress_bar_on_long_sweeps(synth_path, capsys):
    synthesis = load_synthesis(synth_path)
    points = design_points(SweepSpec(arrays=((4, 4),), dataflows=("os",)), synthesis)
    run_sweep(network_layers("resnet20"), points, synthesis, chunk=2, progress=True)
    assert "sweep" in capsys.readouterr().err


def test_bad_sweeps(synth_path):
    synthesis = load_synthesis(synth_path)
    with pytest.raises(ConfigError, match="array rows must be positive"):
        SweepSpec(arrays=((0, 4),))
    with pytest.raises(UnknownSchemeError, match="'rs'"):
        SweepSpec(dataflows=("os", "rs"))
    with pytest.raises(ConfigError, match="no synthesized PE configuration matches"):
        design_points(SweepSpec(pe_kinds=("pot",), bits=((8, 8),)), synthesis)
    with pytest.raises(ConfigError, match="no design points"):
        run_sweep(network_layers("resnet20"), [], synthesis)
