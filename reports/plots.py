"""Sweep figures (matplotlib, Agg backend): Pareto front, area vs energy, utilization, PE comparison.

The scatter figures draw a 2-D density (log-binned hexagons, log colour scale) rather than one
marker per point, so they stay readable at 10^6 points; the Pareto front is drawn over it, and
every legend and colour bar sits outside the axes, clear of the data.
"""

from __future__ import annotations

import io

import matplotlib

from golden.files import write_atomic

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from .estimator import ENERGY_PARTS, FLOWS, Evaluation  # noqa: E402
from .sweep import SweepResult  # noqa: E402

FLOW_MARKERS = dict(zip(FLOWS, "osD^", strict=True))
GRID_SIZE = 60  # hexagons across the x axis


def save_figure(figure, path) -> None:
    """Write a figure as PNG, whole or not at all, and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, metadata={"Software": None})
    plt.close(figure)
    write_atomic(path, buffer.getvalue())


def _density(ax, x: np.ndarray, y: np.ndarray, label: str):
    """Log-log hexbin of ``(x, y)`` with a colour bar to the right of the axes."""
    cells = ax.hexbin(x, y, xscale="log", yscale="log", bins="log", gridsize=GRID_SIZE, cmap="viridis", mincnt=1,
                      linewidths=0)
    ax.figure.colorbar(cells, ax=ax, pad=0.02, label=label)
    return cells


def _legend_outside(ax) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.14), ncol=3, frameon=False)


def pareto_figure(result: SweepResult, title: str):
    """Energy vs latency: the density of every design point, and the Pareto front as a line."""
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    latency_ms, energy_uj = result.latency_s * 1e3, result.total_energy_pj * 1e-6
    _density(ax, latency_ms, energy_uj, "design points per cell")
    front = np.flatnonzero(result.pareto())
    front = front[np.argsort(latency_ms[front])]
    ax.plot(latency_ms[front], energy_uj[front], "-", color="crimson", lw=1.5, marker=".", ms=4,
            label=f"Pareto front ({front.size} points)")
    ax.set(xlabel="latency per batch (ms)", ylabel="energy per inference (uJ)", title=f"{title} ({len(result):,} points)")
    ax.grid(True, which="both", alpha=0.3)
    _legend_outside(ax)
    fig.tight_layout()
    return fig


def area_energy_figure(result: SweepResult, title: str):
    """Area (transistors of PEs + SRAM) vs energy per inference: the density of every design point."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    _density(ax, result.area_transistors * 1e-6, result.total_energy_pj * 1e-6, "design points per cell")
    ax.set(xlabel="area (million transistors: PE array + 6T SRAM)", ylabel="energy per inference (uJ)",
           title=f"{title} ({len(result):,} points)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def utilization_figure(evaluation: Evaluation, title: str):
    """Per-layer utilization of a few design points (one evaluation of them)."""
    names = evaluation.layers.names
    fig, ax = plt.subplots(figsize=(max(7, 0.25 * len(names)), 5))
    x = np.arange(len(names))
    for index, config in enumerate(evaluation.configs):
        ax.plot(x, evaluation.utilization[index], marker=FLOW_MARKERS[config.dataflow], ms=4,
                label=f"{config.rows}x{config.cols} {config.dataflow}")
    ax.set_xticks(x, names, rotation=90, fontsize=6)
    ax.set(ylim=(0, 1.05), ylabel="PE utilization", title=title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def pe_comparison_figure(result: SweepResult, indices: list[int], title: str):
    """Energy breakdown per inference of one design point per PE kind (same array, dataflow, bits)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    configs = [result.config(i) for i in indices]
    labels = [f"{config.pe_kind}\nF={config.frac_bits}" for config in configs]
    bottom = np.zeros(len(indices))
    for part in ENERGY_PARTS:
        values = result.energy_pj[part][indices] * 1e-6
        ax.bar(labels, values, bottom=bottom, label=part)
        bottom += values
    for position, index in enumerate(indices):
        ax.annotate(f"{result.mac_pj[index]:.3f} pJ/MAC", (position, bottom[position]), ha="center", va="bottom", fontsize=7)
    ax.set(ylabel="energy per inference (uJ)", title=title, ylim=(0, 1.12 * bottom.max()))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig
