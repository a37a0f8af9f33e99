"""Sweep figures: a density instead of one marker per point, the Pareto front on top, legends clear of the axes."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import PolyCollection

from reports import plots
from reports.energy import load_synthesis
from reports.networks import network_layers
from reports.sweep import SweepSpec, run_sweep


def test_pareto_figure_is_a_density_with_the_front_and_an_outside_legend(synth_path, tmp_path):
    result = run_sweep(network_layers("resnet20"), SweepSpec(ifmap_kb=(8.0, 64.0), batch=(1, 4)), load_synthesis(synth_path))
    figure = plots.pareto_figure(result, "resnet20")
    ax = figure.axes[0]
    hexagons = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(hexagons) == 1 and hexagons[0].get_array().sum() == len(result)  # every point counted in some cell
    front = np.flatnonzero(result.pareto())
    (line,) = ax.get_lines()
    np.testing.assert_allclose(sorted(line.get_xdata()), sorted(result.latency_s[front] * 1e3))
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    legend, axes_box = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert not legend.overlaps(axes_box)
    assert len(figure.axes) == 2  # the colour bar, beside the axes
    assert not figure.axes[1].get_window_extent(renderer).overlaps(axes_box)
    plots.save_figure(figure, tmp_path / "pareto.png")
    assert (tmp_path / "pareto.png").read_bytes().startswith(b"\x89PNG")
    plt.close("all")
