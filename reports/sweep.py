"""Design-space exploration as numpy columns: no Python object per design point.

A :class:`SweepSpec` lists each axis's values: array shapes, dataflows, the PE axis (the
synthesized PE configurations — only those have a measured energy — filtered by PE kind, bits
and fraction bits), the three buffer sizes, the clock and the batch size.  The space is the
product of the axes, ordered dataflow, batch, array, ifmap, filter and ofmap buffer, PE, clock,
DRAM bandwidth limit (the last fastest); the project's own array (``lutmac``) only takes shapes up to
``hw.config.MAX_ARRAY_DIM`` a side.  A point is its flat index: a chunk of points is evaluated by
unravelling a range of indices into axis indices and gathering from small per-axis tables
(accumulator widths per PE and layer, MAC energy, PE transistors and fmax per PE and array
shape, the own array's cycles per shape, layer and batch) into ``(points, layers)`` columns that
:func:`reports.estimator.layer_costs` prices, the same function that prices single points.

Batch: a batch of ``B`` inferences runs each layer as one GEMM with ``B`` times the rows
(``M -> B*M``), so weights cross DRAM (and, where the loop order re-reads them, the filter
buffer) once per batch.  Cycles and latency are per batch, energy per inference (the batch's
divided by ``B``).  A DRAM bandwidth limit adds the cycles a layer waits for its traffic
(:func:`reports.dataflow.bandwidth_stalls`).

Chunks are independent (:func:`evaluate_chunk` of a picklable :class:`SweepPlan`), so the same
sweep runs in one process (:func:`run_sweep`) or on Dask (:mod:`reports.sweep_dask`) with
identical results.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from golden.errors import ConfigError, UnknownSchemeError
from hw.config import MAX_ARRAY_DIM
from hw.kinds import pe_kind

from .dataflow import check_array_shape
from .energy import DEFAULTS, EnergyTable, Synthesis
from .estimator import (
    ENERGY_PARTS,
    FALLBACK_CLOCK_MHZ,
    FLOWS,
    OWN_ARRAY,
    HardwareConfig,
    LayerArrays,
    PointColumns,
    accumulator_table,
    area_transistors,
    layer_costs,
    own_array_table,
)
from .networks import Layer

DEFAULT_ARRAYS = ((8, 8), (16, 16), (32, 32), (64, 64), (128, 128), (16, 64), (64, 16), (32, 128), (128, 32))
DEFAULT_CHUNK = 1 << 15  # points per chunk: (chunk x layers) float64 columns stay a few MB
PROGRESS_THRESHOLD = 200_000  # points; below this the sweep is too quick to need a progress bar


def _positive_numbers(name: str, values: tuple, allow_none: bool = False) -> None:
    if not values:
        raise ConfigError(f"a sweep needs at least one {name}")
    for value in values:
        if value is None and allow_none:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise ConfigError(f"{name} values must be positive numbers, got {value!r}")


@dataclass(frozen=True)
class SweepSpec:
    """Which values each axis takes; ``None`` for the PE filters means every synthesized one."""

    arrays: tuple[tuple[int, int], ...] = DEFAULT_ARRAYS
    dataflows: tuple[str, ...] = FLOWS
    pe_kinds: tuple[str, ...] | None = None
    bits: tuple[tuple[int, int], ...] | None = None  # (weight_bits, act_bits)
    frac_bits: tuple[int, ...] | None = None
    ifmap_kb: tuple[float, ...] = (64.0,)
    filter_kb: tuple[float, ...] = (64.0,)
    ofmap_kb: tuple[float, ...] = (64.0,)
    clock_mhz: tuple[float | None, ...] = (None,)  # None: each point's synthesized array core's fmax
    batch: tuple[int, ...] = (1,)
    dram_bytes_per_cycle: tuple[float | None, ...] = (None,)  # None: no DRAM bandwidth limit

    def __post_init__(self) -> None:
        if not self.arrays or not self.dataflows:
            raise ConfigError("a sweep needs at least one array size and one dataflow")
        for rows, cols in self.arrays:
            check_array_shape(rows, cols)
        unknown = sorted(set(self.dataflows) - set(FLOWS))
        if unknown:
            raise UnknownSchemeError(f"dataflow(s) {unknown} do not exist; expected some of {FLOWS}")
        for name in ("ifmap_kb", "filter_kb", "ofmap_kb"):
            _positive_numbers(name, getattr(self, name))
        _positive_numbers("clock_mhz", self.clock_mhz, allow_none=True)
        _positive_numbers("dram_bytes_per_cycle", self.dram_bytes_per_cycle, allow_none=True)
        if not self.batch or any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in self.batch):
            raise ConfigError(f"batch sizes must be positive integers, got {self.batch!r}")

    @classmethod
    def grid(cls, rows: tuple[int, ...], cols: tuple[int, ...], **axes) -> SweepSpec:
        """Array rows and columns as two axes (every pair)."""
        return cls(arrays=tuple(itertools.product(rows, cols)), **axes)


def pe_configurations(spec: SweepSpec, synthesis: Synthesis) -> tuple[tuple[str, int, int, int], ...]:
    """The PE axis: synthesized (kind, weight bits, act bits, F) the spec's filters allow."""
    configurations = tuple(
        key for key in synthesis.configurations()
        if (spec.pe_kinds is None or key[0] in spec.pe_kinds)
        and (spec.bits is None or key[1:3] in spec.bits)
        and (spec.frac_bits is None or not pe_kind(key[0]).has_frac_bits or key[3] in spec.frac_bits)
    )
    if not configurations:
        raise ConfigError(f"no synthesized PE configuration matches the sweep (synthesized: {synthesis.configurations()})")
    return configurations


@dataclass(frozen=True)
class Group:
    """The points of one (dataflow, batch): a product of the remaining axes, ``arrays`` restricted for lutmac."""

    flow: str
    batch_index: int
    arrays: np.ndarray  # indices into spec.arrays
    shape: tuple[int, ...]  # (arrays, ifmap, filter, ofmap, pe, clock, bandwidth)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass(frozen=True)
class SweepPlan:
    """Everything a chunk needs, precomputed once (small tables; picklable for Dask)."""

    spec: SweepSpec
    pes: tuple[tuple[str, int, int, int], ...]
    layer_names: tuple[str, ...]
    shapes: tuple[LayerArrays, ...]  # per batch size: the layers with M scaled by the batch
    groups: tuple[Group, ...]
    table: EnergyTable
    rows: np.ndarray  # per array shape
    cols: np.ndarray
    act_bits: np.ndarray  # per PE
    weight_bits: np.ndarray  # weight code bits, per PE
    acc_bits: np.ndarray  # (PE, layer)
    mac_pj: np.ndarray  # (PE, array)
    pe_transistors: np.ndarray  # (PE, array)
    fmax_mhz: np.ndarray  # (PE, array): synthesized fmax, else FALLBACK_CLOCK_MHZ
    own_cycles: tuple[np.ndarray, ...]  # per batch: (array, layer), filled for the arrays lutmac takes

    @property
    def size(self) -> int:
        return sum(group.size for group in self.groups)


def _batched(layers: list[Layer], batch: int) -> LayerArrays:
    shape = LayerArrays.of(layers)
    return replace(shape, m=shape.m * batch, macs=shape.macs * batch, input_elements=shape.input_elements * batch,
                   output_elements=shape.output_elements * batch)


def plan_sweep(layers: list[Layer], spec: SweepSpec, synthesis: Synthesis, table: EnergyTable = DEFAULTS) -> SweepPlan:
    """Per-axis tables and the (dataflow, batch) groups of the space."""
    pes = pe_configurations(spec, synthesis)
    rows = np.array([r for r, _ in spec.arrays], dtype=np.int64)
    cols = np.array([c for _, c in spec.arrays], dtype=np.int64)
    datapaths = [pe_kind(kind).datapath(wb, ab, frac) for kind, wb, ab, frac in pes]
    shapes = tuple(_batched(layers, batch) for batch in spec.batch)
    units = [[synthesis.unit(*key, r, c) for r, c in spec.arrays] for key in pes]
    own = np.flatnonzero(np.maximum(rows, cols) <= MAX_ARRAY_DIM)
    rest = (len(spec.ifmap_kb), len(spec.filter_kb), len(spec.ofmap_kb), len(pes), len(spec.clock_mhz),
            len(spec.dram_bytes_per_cycle))
    groups = []
    for flow, batch_index in itertools.product(spec.dataflows, range(len(spec.batch))):
        arrays = own if flow == OWN_ARRAY else np.arange(len(spec.arrays))
        if arrays.size:
            groups.append(Group(flow, batch_index, arrays, (arrays.size, *rest)))
    if not groups:
        raise ConfigError(f"no design points: the own array ({OWN_ARRAY}) takes arrays up to {MAX_ARRAY_DIM} a side")
    own_cycles = []
    for shape in shapes:
        full = np.zeros((len(spec.arrays), len(layers)), dtype=np.int64)
        if OWN_ARRAY in spec.dataflows and own.size:
            full[own] = own_array_table([spec.arrays[a] for a in own], shape)
        own_cycles.append(full)
    return SweepPlan(
        spec=spec, pes=pes, layer_names=shapes[0].names, shapes=shapes, groups=tuple(groups), table=table, rows=rows, cols=cols,
        act_bits=np.array([ab for _, _, ab, _ in pes], dtype=np.float64),
        weight_bits=np.array([d.weight.code_bits for d in datapaths], dtype=np.float64),
        acc_bits=accumulator_table(datapaths, shapes[0].k).astype(np.float64),
        mac_pj=np.array([[synthesis.mac_pj(*key, table, r, c) for r, c in spec.arrays] for key in pes]),
        pe_transistors=np.array([[unit.transistors_per_pe for unit in per_pe] for per_pe in units], dtype=np.float64),
        fmax_mhz=np.array([[unit.fmax_mhz or FALLBACK_CLOCK_MHZ for unit in per_pe] for per_pe in units], dtype=np.float64),
        own_cycles=tuple(own_cycles),
    )


def evaluate_chunk(plan: SweepPlan, group_index: int, start: int, stop: int) -> dict[str, np.ndarray]:
    """Per-point columns of the group's local points ``start .. stop - 1``."""
    group = plan.groups[group_index]
    spec = plan.spec
    array_i, ifmap_i, filter_i, ofmap_i, pe, clock_i, bandwidth_i = np.unravel_index(np.arange(start, stop), group.shape)
    array = group.arrays[array_i]
    rows, cols = plan.rows[array][:, None], plan.cols[array][:, None]
    ifmap_kb = np.asarray(spec.ifmap_kb, dtype=np.float64)[ifmap_i][:, None]
    filter_kb = np.asarray(spec.filter_kb, dtype=np.float64)[filter_i][:, None]
    ofmap_kb = np.asarray(spec.ofmap_kb, dtype=np.float64)[ofmap_i][:, None]
    mac_pj = plan.mac_pj[pe, array]
    limits = np.array([np.inf if b is None else b for b in spec.dram_bytes_per_cycle], dtype=np.float64)[bandwidth_i]
    points = PointColumns(rows, cols, plan.act_bits[pe][:, None], plan.weight_bits[pe][:, None], plan.acc_bits[pe],
                          mac_pj[:, None], ifmap_kb, filter_kb, ofmap_kb, limits[:, None],
                          plan.own_cycles[group.batch_index][array] if group.flow == OWN_ARRAY else None)
    shape = plan.shapes[group.batch_index]
    costs = layer_costs(group.flow, shape, points, plan.table)
    energy = costs["energy"]
    total_cycles = costs["cycles"].sum(axis=1)
    batch = spec.batch[group.batch_index]
    clocks = np.array([np.nan if c is None else c for c in spec.clock_mhz], dtype=np.float64)[clock_i]
    clocks = np.where(np.isnan(clocks), plan.fmax_mhz[pe, array], clocks)
    count = stop - start
    return {
        "dataflow": np.full(count, FLOWS.index(group.flow), dtype=np.int8),
        "batch": np.full(count, group.batch_index, dtype=np.int16),
        "array": array.astype(np.int32), "ifmap_kb": ifmap_i.astype(np.int16), "filter_kb": filter_i.astype(np.int16),
        "ofmap_kb": ofmap_i.astype(np.int16), "pe": pe.astype(np.int16), "clock_mhz": clock_i.astype(np.int16),
        "dram_bytes_per_cycle": bandwidth_i.astype(np.int16),
        "cycles": total_cycles, "stall_cycles": costs["stall_cycles"].sum(axis=1),
        "dram_bytes": costs["dram_bits"].sum(axis=1) / 8 / batch, "clock": clocks, "latency_s": total_cycles / (clocks * 1e6),
        **{f"energy_{part}": energy[part].sum(axis=1) / batch for part in ENERGY_PARTS},
        "utilization": shape.macs.sum() / ((rows * cols)[:, 0] * total_cycles),
        "mac_pj": mac_pj,
        "area": area_transistors(plan.pe_transistors[pe, array], rows[:, 0], cols[:, 0], ifmap_kb[:, 0], filter_kb[:, 0],
                                 ofmap_kb[:, 0]),
    }


def chunks(plan: SweepPlan, chunk: int = DEFAULT_CHUNK, limit: int | None = None) -> list[tuple[int, int, int]]:
    """``(group, start, stop)`` tasks covering the first ``limit`` points (all by default), in order."""
    if chunk < 1:
        raise ConfigError(f"chunk must be a positive integer, got {chunk!r}")
    remaining = plan.size if limit is None else min(limit, plan.size)
    tasks = []
    for index, group in enumerate(plan.groups):
        for start in range(0, min(group.size, remaining), chunk):
            tasks.append((index, start, min(start + chunk, group.size, remaining)))
        remaining -= min(group.size, remaining)
    return tasks


@dataclass
class SweepResult:
    """Per-point columns: the index on each axis (``dataflow``, ``batch``, ``array``, ``ifmap_kb``, ``filter_kb``,
    ``ofmap_kb``, ``pe``, ``clock_mhz``, ``dram_bytes_per_cycle``) and the figures; cycles and latency per batch,
    energy and DRAM bytes per inference."""

    plan: SweepPlan
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns["cycles"])

    @property
    def layer_names(self) -> tuple[str, ...]:
        return self.plan.layer_names

    @property
    def cycles(self) -> np.ndarray:
        return self.columns["cycles"]

    @property
    def latency_s(self) -> np.ndarray:
        return self.columns["latency_s"]

    @property
    def energy_pj(self) -> dict[str, np.ndarray]:
        return {part: self.columns[f"energy_{part}"] for part in ENERGY_PARTS}

    @property
    def total_energy_pj(self) -> np.ndarray:
        return sum(self.energy_pj[part] for part in ENERGY_PARTS)

    @property
    def utilization(self) -> np.ndarray:
        return self.columns["utilization"]

    @property
    def mac_pj(self) -> np.ndarray:
        return self.columns["mac_pj"]

    @property
    def area_transistors(self) -> np.ndarray:
        return self.columns["area"]

    def values(self, axis: str) -> np.ndarray:
        """Each point's value on an axis (``dataflow``, ``pe_kind``, ``rows``, ``cols``, ``weight_bits``, ``act_bits``,
        ``frac_bits``, ``ifmap_kb``, ``filter_kb``, ``ofmap_kb``, ``clock_mhz`` (the clock used), ``batch``,
        ``dram_bytes_per_cycle``)."""
        spec, pes = self.plan.spec, self.plan.pes
        if axis == "dataflow":
            return np.asarray(FLOWS)[self.columns["dataflow"]]
        if axis in ("pe_kind", "weight_bits", "act_bits", "frac_bits"):
            position = ("pe_kind", "weight_bits", "act_bits", "frac_bits").index(axis)
            return np.asarray([key[position] for key in pes])[self.columns["pe"]]
        if axis in ("rows", "cols"):
            return (self.plan.rows if axis == "rows" else self.plan.cols)[self.columns["array"]]
        if axis in ("ifmap_kb", "filter_kb", "ofmap_kb", "batch", "dram_bytes_per_cycle"):
            return np.asarray(getattr(spec, axis))[self.columns[axis]]
        if axis == "clock_mhz":
            return self.columns["clock"]
        raise ConfigError(f"unknown sweep axis {axis!r}")

    def config(self, index: int) -> HardwareConfig:
        """The design point ``index`` as a HardwareConfig (for the few points a report looks at)."""
        kind, wb, ab, frac = self.plan.pes[int(self.columns["pe"][index])]
        rows, cols = self.plan.spec.arrays[int(self.columns["array"][index])]
        spec = self.plan.spec
        return HardwareConfig(rows, cols, FLOWS[int(self.columns["dataflow"][index])], kind, wb, ab, frac,
                              spec.ifmap_kb[int(self.columns["ifmap_kb"][index])],
                              spec.filter_kb[int(self.columns["filter_kb"][index])],
                              spec.ofmap_kb[int(self.columns["ofmap_kb"][index])],
                              spec.clock_mhz[int(self.columns["clock_mhz"][index])],
                              spec.dram_bytes_per_cycle[int(self.columns["dram_bytes_per_cycle"][index])])

    def pareto(self) -> np.ndarray:
        """Points no other point beats on both latency and energy (both minimized)."""
        return pareto_front(self.latency_s, self.total_energy_pj)

    def rows(self) -> list[dict]:
        """One dict per point (for report tables of small sweeps)."""
        front = self.pareto()
        out = []
        for i in range(len(self)):
            config = self.config(i)
            out.append({
                **config.as_dict(), "clock_mhz": float(self.columns["clock"][i]), "batch": int(self.values("batch")[i]),
                "cycles": int(self.cycles[i]), "stall_cycles": int(self.columns["stall_cycles"][i]),
                "dram_mb_per_inference": float(self.columns["dram_bytes"][i] * 1e-6),
                "latency_ms": float(self.latency_s[i] * 1e3),
                "energy_uj": float(self.total_energy_pj[i] * 1e-6),
                **{f"{part}_uj": float(self.energy_pj[part][i] * 1e-6) for part in ENERGY_PARTS},
                "utilization": float(self.utilization[i]), "mac_pj": float(self.mac_pj[i]),
                "area_mtransistors": float(self.area_transistors[i] * 1e-6), "pareto": bool(front[i]),
            })
        return out


def pareto_front(latency: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated points, O(n log n): sort by latency (then energy), keep each point
    whose energy is below every earlier one's (ties: the first in sort order is kept)."""
    latency, energy = np.asarray(latency, dtype=np.float64), np.asarray(energy, dtype=np.float64)
    order = np.lexsort((energy, latency))
    sorted_energy = energy[order]
    best_before = np.minimum.accumulate(np.concatenate([[np.inf], sorted_energy[:-1]]))
    mask = np.zeros(latency.shape, dtype=bool)
    mask[order] = sorted_energy < best_before
    return mask


def merge(plan: SweepPlan, parts: list[dict[str, np.ndarray]]) -> SweepResult:
    """The result of chunks evaluated in :func:`chunks` order."""
    return SweepResult(plan, {name: np.concatenate([part[name] for part in parts]) for name in parts[0]})


def run_sweep(layers: list[Layer], spec: SweepSpec, synthesis: Synthesis, table: EnergyTable = DEFAULTS,
              chunk: int = DEFAULT_CHUNK, limit: int | None = None, progress: bool | None = None) -> SweepResult:
    """Evaluate the space (its first ``limit`` points) over ``layers`` in this process; a tqdm bar on long sweeps."""
    plan = plan_sweep(layers, spec, synthesis, table)
    tasks = chunks(plan, chunk, limit)
    count = sum(stop - start for _, start, stop in tasks)
    show = count >= PROGRESS_THRESHOLD if progress is None else progress
    parts = [evaluate_chunk(plan, *task) for task in tqdm(tasks, desc="sweep", unit="chunk", disable=not show)]
    return merge(plan, parts)

