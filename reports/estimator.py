"""Cycle and energy estimator: per layer and per inference, vectorized over design points.

For each layer's GEMM view the dataflow model gives cycles and operand-buffer accesses: the
analytical output/weight/input-stationary models of :mod:`reports.dataflow`, or — dataflow
``"lutmac"`` — the project's own output-stationary array, whose cycles are the exact count
``hw.cycles.gemm_cycles`` (each layer, each group, one accelerator run; accesses as ``os``).
Energy is

* **MAC**: ``MACs * E_mac(PE kind, bits, F)`` scaled from synthesis (:mod:`reports.energy`);
* **PE registers**: every MAC reads its activation and weight-code registers and reads and
  writes its accumulator: ``MACs * (b_a + b_w + 2 A)`` register bits;
* **SRAM**: activation reads at ``b_a`` bits, weight reads at the weight code width, finished
  outputs written as ``b_a``-bit codes (requantized at the array edge), partial sums written and
  read back at the accumulator width ``A`` (``golden.spec.accumulator_bits`` of the layer's
  reduction length), each at the per-bit energy of its buffer's capacity;
* **DRAM**: every tensor once when the part the loop order keeps on chip fits its buffer, else
  once per pass the dataflow makes over it; partial sums that do not fit spill to DRAM and
  back (:func:`reports.dataflow.dram_bits`).

Bandwidth: with a DRAM limit (``dram_bytes_per_cycle``) a layer whose traffic takes longer than
its compute stalls for the difference (:func:`reports.dataflow.bandwidth_stalls`); its cycles
include those stalls.

Idle PEs cost nothing (no leakage or clock-tree model): utilization shows in latency only.
All layers of a network run at the design point's weight/activation widths.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from golden.errors import ConfigError, UnknownSchemeError
from golden.spec import DatapathConfig, WeightScheme, accumulator_bits
from hw.config import ArrayConfig
from hw.cycles import gemm_cycles
from hw.kinds import network_kind, pe_kind

from . import dataflow
from .dataflow import DATAFLOWS, bandwidth_stalls, check_array_shape, sram_accesses, systolic_cycles
from .energy import DEFAULTS, EnergyTable, Synthesis
from .networks import Layer

OWN_ARRAY = "lutmac"
FLOWS = DATAFLOWS + (OWN_ARRAY,)
SRAM_TRANSISTORS_PER_BIT = 6
#: the clock of a design point whose array core has no measured fmax (synthesized before hw.stdcell)
FALLBACK_CLOCK_MHZ = 200.0
ENERGY_PARTS = ("mac", "register", "sram", "dram")


@dataclass(frozen=True)
class HardwareConfig:
    """One design point: array, dataflow, PE datapath, buffers and clock."""

    rows: int = 16
    cols: int = 16
    dataflow: str = "os"
    pe_kind: str = network_kind(WeightScheme.INT).name
    weight_bits: int = 8
    act_bits: int = 8
    frac_bits: int | None = None  # None: the weight format's default (golden.spec.WeightFormat.default_frac_bits)
    ifmap_kb: float = 64.0
    filter_kb: float = 64.0
    ofmap_kb: float = 64.0
    #: None: the synthesized array core's standard-cell fmax (Synthesis.clock_mhz), else FALLBACK_CLOCK_MHZ
    clock_mhz: float | None = None
    #: DRAM bandwidth limit in bytes per cycle (SCALE-Sim's words of one byte); None: unlimited
    dram_bytes_per_cycle: float | None = None
    datapath: DatapathConfig = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_array_shape(self.rows, self.cols)
        if self.dataflow not in FLOWS:
            raise UnknownSchemeError(f"dataflow {self.dataflow!r} does not exist; expected one of {FLOWS}")
        for name in ("ifmap_kb", "filter_kb", "ofmap_kb", "clock_mhz", "dram_bytes_per_cycle"):
            value = getattr(self, name)
            if name in ("clock_mhz", "dram_bytes_per_cycle") and value is None:
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        datapath = pe_kind(self.pe_kind).datapath(self.weight_bits, self.act_bits, self.frac_bits)
        object.__setattr__(self, "datapath", datapath)
        object.__setattr__(self, "frac_bits", datapath.frac_bits)
        if self.dataflow == OWN_ARRAY:  # the RTL's limits (array size) apply
            self.array_config(1, 1, 1)

    def array_config(self, m: int, k: int, n: int) -> ArrayConfig:
        """The hw ArrayConfig of this point sized for one ``M x K x N`` run."""
        return ArrayConfig(self.pe_kind, self.rows, self.cols, self.weight_bits, self.act_bits, self.frac_bits,
                           max_reduction=k, max_m=m, max_n=n)

    @property
    def weight_code_bits(self) -> int:
        return self.datapath.weight.code_bits

    @property
    def synth_key(self) -> tuple[str, int, int, int]:
        return self.pe_kind, self.weight_bits, self.act_bits, self.frac_bits

    def as_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if key != "datapath"}


@dataclass(frozen=True)
class LayerArrays:
    """Per-layer integers as (1, L) arrays, ready to broadcast against (P, 1) design points."""

    names: tuple[str, ...]
    m: np.ndarray
    k: np.ndarray
    n: np.ndarray
    groups: np.ndarray
    macs: np.ndarray
    params: np.ndarray
    input_elements: np.ndarray
    output_elements: np.ndarray

    @classmethod
    def of(cls, layers: list[Layer]) -> LayerArrays:
        if not layers:
            raise ConfigError("a workload needs at least one layer")

        def col(attr: str) -> np.ndarray:
            return np.array([getattr(layer, attr) for layer in layers], dtype=np.int64)[None, :]

        return cls(tuple(layer.name for layer in layers), col("m"), col("k"), col("n"), col("groups"), col("macs"),
                   col("params"), col("input_elements"), col("output_elements"))


@dataclass
class Evaluation:
    """Per (point, layer) results; ``*_pj`` arrays are energies, ``cycles`` integers."""

    configs: list[HardwareConfig]
    layers: LayerArrays
    cycles: np.ndarray
    utilization: np.ndarray
    energy_pj: dict[str, np.ndarray]
    mac_pj: np.ndarray
    area_transistors: np.ndarray
    accesses: dict[str, np.ndarray]
    clock_mhz: np.ndarray  # per point: its config's, or its synthesized array core's fmax
    stall_cycles: np.ndarray  # (P, L): of ``cycles``, those waiting for DRAM (HardwareConfig.dram_bytes_per_cycle)
    dram_bits: np.ndarray  # (P, L)

    @cached_property
    def total_cycles(self) -> np.ndarray:
        return self.cycles.sum(axis=1)

    @cached_property
    def energy_totals_pj(self) -> dict[str, np.ndarray]:
        return {part: self.energy_pj[part].sum(axis=1) for part in ENERGY_PARTS}

    @cached_property
    def total_energy_pj(self) -> np.ndarray:
        return sum(self.energy_totals_pj.values())

    @cached_property
    def latency_s(self) -> np.ndarray:
        return self.total_cycles / (self.clock_mhz * 1e6)

    @cached_property
    def mean_utilization(self) -> np.ndarray:
        """MAC-weighted: total useful MACs over total PE-cycles."""
        pes = np.array([c.rows * c.cols for c in self.configs], dtype=np.float64)
        return self.layers.macs.sum() / (pes * self.total_cycles)

    def summary(self, index: int) -> dict:
        config = self.configs[index]
        row = config.as_dict()
        row |= {
            "clock_mhz": float(self.clock_mhz[index]),
            "cycles": int(self.total_cycles[index]),
            "latency_ms": float(self.latency_s[index] * 1e3),
            "utilization": float(self.mean_utilization[index]),
            "energy_uj": float(self.total_energy_pj[index] * 1e-6),
            **{f"{part}_uj": float(self.energy_totals_pj[part][index] * 1e-6) for part in ENERGY_PARTS},
            "mac_pj": float(self.mac_pj[index]),
            "area_mtransistors": float(self.area_transistors[index] * 1e-6),
        }
        return row

    def layer_rows(self, index: int) -> list[dict]:
        rows = []
        for j, name in enumerate(self.layers.names):
            energy = {part: float(self.energy_pj[part][index, j]) for part in ENERGY_PARTS}
            rows.append({
                "layer": name, "M": int(self.layers.m[0, j]), "K": int(self.layers.k[0, j]), "N": int(self.layers.n[0, j]),
                "groups": int(self.layers.groups[0, j]), "macs": int(self.layers.macs[0, j]),
                "cycles": int(self.cycles[index, j]), "stall_cycles": int(self.stall_cycles[index, j]),
                "utilization": float(self.utilization[index, j]),
                **{f"{part}_nj": value * 1e-3 for part, value in energy.items()},
                "energy_nj": sum(energy.values()) * 1e-3,
                **{key: int(value[index, j]) for key, value in self.accesses.items()},
            })
        return rows


def accumulator_table(datapaths: list[DatapathConfig], k: np.ndarray) -> np.ndarray:
    """``A`` (golden.spec) per (datapath, layer): one row per datapath, for reduction lengths ``k`` (1, L)."""
    return np.array([[accumulator_bits(datapath, int(kk)) for kk in k[0]] for datapath in datapaths], dtype=np.int64)


def own_array_table(shapes: list[tuple[int, int]], layers: LayerArrays) -> np.ndarray:
    """``hw.cycles.gemm_cycles`` per (array shape, layer), groups one by one.

    The count depends on the array's rows and columns only (``hw.cycles``: block period and fill),
    so any PE kind's ArrayConfig of that shape gives it.
    """
    dims = list(zip(layers.m[0].tolist(), layers.k[0].tolist(), layers.n[0].tolist(), layers.groups[0].tolist(), strict=True))
    kind = network_kind(WeightScheme.INT).name
    return np.array([[groups * gemm_cycles(ArrayConfig(kind, rows, cols, 8, 8, max_reduction=k, max_m=m, max_n=n), m, k, n)
                      for m, k, n, groups in dims] for rows, cols in shapes], dtype=np.int64).reshape(len(shapes), len(dims))


@dataclass
class PointColumns:
    """Design points of one dataflow as columns: ``(P, 1)`` arrays, ``acc_bits`` and ``own_cycles`` ``(P, L)``."""

    rows: np.ndarray
    cols: np.ndarray
    act_bits: np.ndarray
    weight_bits: np.ndarray  # weight code bits
    acc_bits: np.ndarray
    mac_pj: np.ndarray
    ifmap_kb: np.ndarray
    filter_kb: np.ndarray
    ofmap_kb: np.ndarray
    dram_bytes_per_cycle: np.ndarray  # inf: no limit
    own_cycles: np.ndarray | None = None  # dataflow lutmac only


def layer_costs(flow: str, shape: LayerArrays, points: PointColumns, table: EnergyTable = DEFAULTS) -> dict:
    """Per (point, layer), all points on dataflow ``flow``: ``cycles`` (compute plus ``stall_cycles`` waiting for
    DRAM), ``dram_bits``, operand-buffer ``accesses`` and ``energy`` (pJ, by part)."""
    rows, cols = points.rows, points.cols
    dims = (shape.m, shape.k, shape.n)
    access_flow = "os" if flow == OWN_ARRAY else flow  # the own array moves data as the os model does
    compute = points.own_cycles if flow == OWN_ARRAY else systolic_cycles(flow, rows, cols, *dims, shape.groups)
    accesses = sram_accesses(access_flow, rows, cols, *dims, shape.groups)
    act_bits, weight_bits, acc_bits = points.act_bits, points.weight_bits, points.acc_bits
    psum_traffic = (accesses["psum_writes"] + accesses["psum_reads"]) * acc_bits
    pj_ofmap = table.sram_pj_per_bit(points.ofmap_kb)
    dram_bits = dataflow.dram_bits(
        access_flow, rows, cols, *dims, shape.groups, input_elements=shape.input_elements, params=shape.params,
        output_elements=shape.output_elements, act_bits=act_bits, weight_bits=weight_bits, acc_bits=acc_bits,
        ifmap_capacity=points.ifmap_kb * 8192, filter_capacity=points.filter_kb * 8192, ofmap_capacity=points.ofmap_kb * 8192)
    stalls = bandwidth_stalls(dram_bits, compute, points.dram_bytes_per_cycle)
    energy = {
        "mac": shape.macs * points.mac_pj,
        "register": shape.macs * (act_bits + weight_bits + 2 * acc_bits) * table.register_pj_per_bit,
        "sram": (accesses["ifmap_reads"] * (act_bits * table.sram_pj_per_bit(points.ifmap_kb))
                 + accesses["filter_reads"] * (weight_bits * table.sram_pj_per_bit(points.filter_kb))
                 + (accesses["ofmap_final"] * act_bits + psum_traffic) * pj_ofmap),
        "dram": dram_bits * table.dram_pj_per_bit,
    }
    return {"cycles": compute + stalls, "stall_cycles": stalls, "dram_bits": dram_bits, "accesses": accesses,
            "energy": energy}


def area_transistors(pe_transistors, rows, cols, ifmap_kb, filter_kb, ofmap_kb) -> np.ndarray:
    """PE array plus 6T SRAM of the three buffers."""
    return pe_transistors * rows * cols + SRAM_TRANSISTORS_PER_BIT * (ifmap_kb + filter_kb + ofmap_kb) * 8192


def _column(configs: list[HardwareConfig], attr: str, dtype=np.float64) -> np.ndarray:
    return np.array([getattr(config, attr) for config in configs], dtype=dtype)[:, None]


def evaluate(layers: list[Layer], configs: list[HardwareConfig], synthesis: Synthesis, table: EnergyTable = DEFAULTS) -> Evaluation:
    """Cycles, utilization, access counts and energy of every layer at every design point."""
    if not configs:
        raise ConfigError("no design points to evaluate")
    shape = LayerArrays.of(layers)
    datapaths = sorted({c.datapath for c in configs}, key=repr)
    acc_table = accumulator_table(datapaths, shape.k)
    mac_pj = np.array([synthesis.mac_pj(*c.synth_key, table, c.rows, c.cols) for c in configs])
    columns = PointColumns(
        _column(configs, "rows", np.int64), _column(configs, "cols", np.int64), _column(configs, "act_bits"),
        _column(configs, "weight_code_bits"), acc_table[[datapaths.index(c.datapath) for c in configs]].astype(np.float64),
        mac_pj[:, None], _column(configs, "ifmap_kb"), _column(configs, "filter_kb"), _column(configs, "ofmap_kb"),
        np.array([c.dram_bytes_per_cycle or np.inf for c in configs], dtype=np.float64)[:, None])
    points, layer_count = len(configs), len(layers)
    cycles = np.zeros((points, layer_count), dtype=np.int64)
    stalls = np.zeros((points, layer_count), dtype=np.int64)
    dram_bits = np.zeros((points, layer_count))
    energy = {part: np.zeros((points, layer_count)) for part in ENERGY_PARTS}
    accesses: dict[str, np.ndarray] = {}
    flows = np.array([c.dataflow for c in configs])
    for flow in FLOWS:
        index = np.flatnonzero(flows == flow)
        if not index.size:
            continue
        subset = PointColumns(**{name: None if value is None else value[index] for name, value in vars(columns).items()})
        if flow == OWN_ARRAY:
            shapes = [(configs[i].rows, configs[i].cols) for i in index]
            unique = sorted(set(shapes))
            subset.own_cycles = own_array_table(unique, shape)[[unique.index(s) for s in shapes]]
        costs = layer_costs(flow, shape, subset, table)
        cycles[index], stalls[index], dram_bits[index] = costs["cycles"], costs["stall_cycles"], costs["dram_bits"]
        for key, value in costs["accesses"].items():
            accesses.setdefault(key, np.zeros((points, layer_count), dtype=np.int64))[index] = value
        for part in ENERGY_PARTS:
            energy[part][index] = costs["energy"][part]
    pe_transistors = np.array([synthesis.unit(*c.synth_key, c.rows, c.cols).transistors_per_pe for c in configs])
    area = area_transistors(pe_transistors, columns.rows[:, 0], columns.cols[:, 0], columns.ifmap_kb[:, 0],
                            columns.filter_kb[:, 0], columns.ofmap_kb[:, 0])
    clock = np.array([c.clock_mhz or synthesis.clock_mhz(*c.synth_key, c.rows, c.cols) or FALLBACK_CLOCK_MHZ
                      for c in configs])
    utilization = shape.macs / (columns.rows * columns.cols * cycles)
    return Evaluation(configs, shape, cycles, utilization, energy, mac_pj, area, accesses, clock, stalls, dram_bits)


#: a per-sample ``1 / beta`` by two Newton-Raphson steps from a small seed table: 2 multiplies
#: and 1 add per step
RECIPROCAL_FP32_MULTS, RECIPROCAL_FP32_ADDS = 4, 2


def asq_stage_energy(adapter_shapes: list[tuple[int, int]], channels: int, positions: int, acc_bits: int,
                     ofmap_kb: float, table: EnergyTable = DEFAULTS) -> dict[str, float]:
    """Energy (pJ) one sample's ASQ output stage adds to a layer, beyond the on-chip requantizer's.

    ``beta`` depends on the whole output feature map (golden/README.md#asq), so the layer cannot
    requantize as it drains: its ``channels * positions`` values ``relu(t)`` (``acc_bits`` each)
    are held in the output buffer (written and read back once by the barrier's held pass:
    ``buffer``), the on-chip pool unit sums them per channel (``positions`` adds per channel,
    priced as 32-bit adds; ``hw.output_stage.GlobalPool``), the host scales the sums (one fp32
    multiply per channel), runs the adapter MLP in fp32 (``adapter_shapes``: ``(out, in)`` per linear layer; ``in * out`` multiply-adds and
    ``out`` bias adds) and turns ``beta`` into the sample's requantization multiplier
    (:data:`RECIPROCAL_FP32_MULTS` / ``_ADDS``): ``compute``.
    """
    macs = sum(out * inp for out, inp in adapter_shapes)
    bias_adds = sum(out for out, _ in adapter_shapes)
    compute = (channels * positions * table.int32_add_pj + channels * table.fp32_mult_pj
               + macs * (table.fp32_mult_pj + table.fp32_add_pj) + bias_adds * table.fp32_add_pj
               + RECIPROCAL_FP32_MULTS * table.fp32_mult_pj + RECIPROCAL_FP32_ADDS * table.fp32_add_pj)
    buffer = 2 * channels * positions * acc_bits * float(table.sram_pj_per_bit(ofmap_kb))
    return {"compute": float(compute), "buffer": buffer}


def estimate(layers: list[Layer], config: HardwareConfig, synthesis: Synthesis, table: EnergyTable = DEFAULTS) -> tuple[list[dict], dict]:
    """Per-layer rows and the per-inference summary of one design point."""
    result = evaluate(layers, [config], synthesis, table)
    return result.layer_rows(0), result.summary(0)
