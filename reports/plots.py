"""Sweep figures (matplotlib, Agg backend): Pareto front, area vs energy, utilization, PE comparison."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from hw.kinds import PE_KINDS  # noqa: E402

from .estimator import ENERGY_PARTS, FLOWS  # noqa: E402
from .sweep import SweepResult  # noqa: E402

KIND_COLORS = dict(zip(PE_KINDS, plt.get_cmap("tab10").colors, strict=False))
FLOW_MARKERS = dict(zip(FLOWS, "osD^", strict=True))


def _kinds(result: SweepResult) -> np.ndarray:
    return np.array([point.pe_kind for point in result.points])


def pareto_figure(result: SweepResult, title: str):
    """Energy vs latency, every point coloured by PE kind, the Pareto front as a line."""
    fig, ax = plt.subplots(figsize=(7, 5))
    kinds, flows = _kinds(result), np.array([p.dataflow for p in result.points])
    latency_ms, energy_uj = result.latency_s * 1e3, result.total_energy_pj * 1e-6
    for kind in PE_KINDS:
        for flow in FLOWS:
            mask = (kinds == kind) & (flows == flow)
            if mask.any():
                ax.scatter(latency_ms[mask], energy_uj[mask], s=10, alpha=0.5, color=KIND_COLORS[kind], marker=FLOW_MARKERS[flow])
    front = result.pareto()
    order = np.argsort(latency_ms[front])
    ax.plot(latency_ms[front][order], energy_uj[front][order], "k-", lw=1.5)
    ax.set(xscale="log", yscale="log", xlabel="latency per inference (ms)", ylabel="energy per inference (uJ)", title=title)
    handles = [Line2D([], [], ls="", marker="s", color=KIND_COLORS[k], label=k) for k in PE_KINDS if (kinds == k).any()]
    handles += [Line2D([], [], ls="", marker=FLOW_MARKERS[f], color="grey", label=f) for f in FLOWS if (flows == f).any()]
    handles.append(Line2D([], [], color="k", label="Pareto front"))
    ax.legend(handles=handles, fontsize=7, ncol=2, loc="upper right")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def area_energy_figure(result: SweepResult, title: str):
    """Area (transistors of PEs + SRAM) vs energy per inference, by PE kind."""
    fig, ax = plt.subplots(figsize=(7, 5))
    kinds = _kinds(result)
    for kind in PE_KINDS:
        mask = kinds == kind
        if mask.any():
            ax.scatter(result.area_transistors[mask] * 1e-6, result.total_energy_pj[mask] * 1e-6, s=10, alpha=0.6,
                       color=KIND_COLORS[kind], label=kind)
    ax.set(xscale="log", yscale="log", xlabel="area (million transistors: PE array + 6T SRAM)",
           ylabel="energy per inference (uJ)", title=title)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def utilization_figure(result: SweepResult, indices: list[int], title: str):
    """Per-layer utilization of selected design points."""
    fig, ax = plt.subplots(figsize=(max(7, 0.25 * len(result.layer_names)), 4.5))
    x = np.arange(len(result.layer_names))
    for index in indices:
        point = result.points[index]
        ax.plot(x, result.layer_utilization[index], marker=FLOW_MARKERS[point.dataflow], ms=4,
                label=f"{point.rows}x{point.cols} {point.dataflow}")
    ax.set_xticks(x, result.layer_names, rotation=90, fontsize=6)
    ax.set(ylim=(0, 1.05), ylabel="PE utilization", title=title)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def pe_comparison_figure(result: SweepResult, indices: list[int], title: str):
    """Energy breakdown per inference of one design point per PE kind (same array, dataflow, bits)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = [f"{result.points[i].pe_kind}\nF={result.points[i].frac_bits}" for i in indices]
    bottom = np.zeros(len(indices))
    for part in ENERGY_PARTS:
        values = result.energy_pj[part][indices] * 1e-6
        ax.bar(labels, values, bottom=bottom, label=part)
        bottom += values
    for position, index in enumerate(indices):
        ax.annotate(f"{result.mac_pj[index]:.3f} pJ/MAC", (position, bottom[position]), ha="center", va="bottom", fontsize=7)
    ax.set(ylabel="energy per inference (uJ)", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
