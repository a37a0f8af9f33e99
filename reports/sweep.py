"""Design-space exploration: array size x PE kind x weight/act bits x F x dataflow over a network.

The PE configurations come from the synthesis results (only synthesized PEs have a measured
energy); the sweep crosses them with array sizes and dataflows and evaluates every point over
every layer at once (numpy, chunked for the progress bar).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from golden.errors import ConfigError, UnknownSchemeError
from hw.config import MAX_ARRAY_DIM
from hw.kinds import pe_kind

from .dataflow import check_array_shape
from .energy import DEFAULTS, EnergyTable, Synthesis
from .estimator import ENERGY_PARTS, FLOWS, OWN_ARRAY, Evaluation, HardwareConfig, evaluate
from .networks import Layer

DEFAULT_ARRAYS = ((8, 8), (16, 16), (32, 32), (64, 64), (128, 128), (16, 64), (64, 16), (32, 128), (128, 32))
PROGRESS_THRESHOLD = 2000  # points; below this the sweep is too quick to need a progress bar


@dataclass(frozen=True)
class SweepSpec:
    """Which values each axis takes; ``None`` for the PE axes means every synthesized one."""

    arrays: tuple[tuple[int, int], ...] = DEFAULT_ARRAYS
    dataflows: tuple[str, ...] = FLOWS
    pe_kinds: tuple[str, ...] | None = None
    bits: tuple[tuple[int, int], ...] | None = None  # (weight_bits, act_bits)
    frac_bits: tuple[int, ...] | None = None
    buffer_kb: float = 64.0
    clock_mhz: float | None = None  # None: each point's synthesized array core's fmax (estimator.HardwareConfig)

    def __post_init__(self) -> None:
        if not self.arrays or not self.dataflows:
            raise ConfigError("a sweep needs at least one array size and one dataflow")
        for rows, cols in self.arrays:
            check_array_shape(rows, cols)
        unknown = sorted(set(self.dataflows) - set(FLOWS))
        if unknown:
            raise UnknownSchemeError(f"dataflow(s) {unknown} do not exist; expected some of {FLOWS}")


def design_points(spec: SweepSpec, synthesis: Synthesis) -> list[HardwareConfig]:
    """Every (array, dataflow, synthesized PE configuration) the spec allows, in a fixed order.

    The project's own array (``lutmac``) only exists up to ``hw.config.MAX_ARRAY_DIM`` a side;
    larger arrays are swept with the analytical dataflows only.
    """
    configurations = [
        key for key in synthesis.configurations()
        if (spec.pe_kinds is None or key[0] in spec.pe_kinds)
        and (spec.bits is None or key[1:3] in spec.bits)
        and (spec.frac_bits is None or not pe_kind(key[0]).has_frac_bits or key[3] in spec.frac_bits)
    ]
    if not configurations:
        raise ConfigError(f"no synthesized PE configuration matches the sweep (synthesized: {synthesis.configurations()})")
    return [
        HardwareConfig(rows, cols, flow, kind, wb, ab, frac, spec.buffer_kb, spec.buffer_kb, spec.buffer_kb, spec.clock_mhz)
        for (rows, cols), flow, (kind, wb, ab, frac) in itertools.product(spec.arrays, spec.dataflows, configurations)
        if flow != OWN_ARRAY or max(rows, cols) <= MAX_ARRAY_DIM
    ]


@dataclass
class SweepResult:
    points: list[HardwareConfig]
    cycles: np.ndarray  # (P,)
    latency_s: np.ndarray
    energy_pj: dict[str, np.ndarray]  # part -> (P,)
    utilization: np.ndarray  # (P,) MAC-weighted
    layer_utilization: np.ndarray  # (P, L)
    area_transistors: np.ndarray
    mac_pj: np.ndarray
    layer_names: tuple[str, ...]

    @property
    def total_energy_pj(self) -> np.ndarray:
        return sum(self.energy_pj[part] for part in ENERGY_PARTS)

    def pareto(self) -> np.ndarray:
        """Points no other point beats on both latency and energy (both minimized)."""
        return pareto_front(self.latency_s, self.total_energy_pj)

    def rows(self) -> list[dict]:
        front = self.pareto()
        out = []
        for i, point in enumerate(self.points):
            out.append({
                **point.as_dict(), "cycles": int(self.cycles[i]), "latency_ms": float(self.latency_s[i] * 1e3),
                "energy_uj": float(self.total_energy_pj[i] * 1e-6),
                **{f"{part}_uj": float(self.energy_pj[part][i] * 1e-6) for part in ENERGY_PARTS},
                "utilization": float(self.utilization[i]), "mac_pj": float(self.mac_pj[i]),
                "area_mtransistors": float(self.area_transistors[i] * 1e-6), "pareto": bool(front[i]),
            })
        return out


def pareto_front(latency: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated points (ties: the first in sort order is kept)."""
    latency, energy = np.asarray(latency, dtype=np.float64), np.asarray(energy, dtype=np.float64)
    order = np.lexsort((energy, latency))
    sorted_energy = energy[order]
    best_before = np.minimum.accumulate(np.concatenate([[np.inf], sorted_energy[:-1]]))
    mask = np.zeros(latency.shape, dtype=bool)
    mask[order] = sorted_energy < best_before
    return mask


def _merge(parts: list[Evaluation]) -> SweepResult:
    return SweepResult(
        points=[config for part in parts for config in part.configs],
        cycles=np.concatenate([p.total_cycles for p in parts]),
        latency_s=np.concatenate([p.latency_s for p in parts]),
        energy_pj={part: np.concatenate([p.energy_totals_pj[part] for p in parts]) for part in ENERGY_PARTS},
        utilization=np.concatenate([p.mean_utilization for p in parts]),
        layer_utilization=np.concatenate([p.utilization for p in parts]),
        area_transistors=np.concatenate([p.area_transistors for p in parts]),
        mac_pj=np.concatenate([p.mac_pj for p in parts]),
        layer_names=parts[0].layers.names,
    )


def run_sweep(layers: list[Layer], points: list[HardwareConfig], synthesis: Synthesis, table: EnergyTable = DEFAULTS,
              chunk: int = 512, progress: bool | None = None) -> SweepResult:
    """Evaluate every point over ``layers``; a tqdm bar shows on long sweeps (or when ``progress``)."""
    if not points:
        raise ConfigError("no design points to sweep")
    show = len(points) >= PROGRESS_THRESHOLD if progress is None else progress
    starts = range(0, len(points), chunk)
    parts = [evaluate(layers, points[start : start + chunk], synthesis, table)
             for start in tqdm(starts, desc="sweep", unit="chunk", disable=not show)]
    return _merge(parts)
