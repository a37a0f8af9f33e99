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

Idle PEs cost nothing (no leakage or clock-tree model): utilization shows in latency only.
All layers of a network run at the design point's weight/activation widths.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cache, cached_property

import numpy as np

from golden.errors import ConfigError, UnknownSchemeError
from golden.spec import DatapathConfig, WeightScheme, accumulator_bits
from hw.config import ArrayConfig
from hw.cycles import gemm_cycles
from hw.kinds import network_kind, pe_kind

from . import dataflow
from .dataflow import DATAFLOWS, check_array_shape, sram_accesses, systolic_cycles
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
    datapath: DatapathConfig = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_array_shape(self.rows, self.cols)
        if self.dataflow not in FLOWS:
            raise UnknownSchemeError(f"dataflow {self.dataflow!r} does not exist; expected one of {FLOWS}")
        for name in ("ifmap_kb", "filter_kb", "ofmap_kb", "clock_mhz"):
            value = getattr(self, name)
            if name == "clock_mhz" and value is None:
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
                "cycles": int(self.cycles[index, j]), "utilization": float(self.utilization[index, j]),
                **{f"{part}_nj": value * 1e-3 for part, value in energy.items()},
                "energy_nj": sum(energy.values()) * 1e-3,
                **{key: int(value[index, j]) for key, value in self.accesses.items()},
            })
        return rows


def _accumulator_widths(configs: list[HardwareConfig], k: np.ndarray) -> np.ndarray:
    """``A`` per (point, layer) from golden.spec, computed once per distinct datapath."""
    cache: dict[DatapathConfig, np.ndarray] = {}
    widths = np.empty((len(configs), k.shape[1]), dtype=np.int64)
    for i, config in enumerate(configs):
        if config.datapath not in cache:
            cache[config.datapath] = np.array([accumulator_bits(config.datapath, int(kk)) for kk in k[0]], dtype=np.int64)
        widths[i] = cache[config.datapath]
    return widths


@cache
def _own_array_cycles(config: HardwareConfig, m: int, k: int, n: int) -> int:
    return gemm_cycles(config.array_config(m, k, n), m, k, n)


def own_array_cycles(configs: list[HardwareConfig], shape: LayerArrays) -> np.ndarray:
    """``hw.cycles.gemm_cycles`` per (point, layer) for the ``lutmac`` points (0 elsewhere); groups run one by one."""
    cycles = np.zeros((len(configs), shape.m.shape[1]), dtype=np.int64)
    layer_dims = list(zip(shape.m[0].tolist(), shape.k[0].tolist(), shape.n[0].tolist(), shape.groups[0].tolist(), strict=True))
    for i, config in enumerate(configs):
        if config.dataflow == OWN_ARRAY:
            cycles[i] = [groups * _own_array_cycles(config, m, k, n) for m, k, n, groups in layer_dims]
    return cycles


def _column(configs: list[HardwareConfig], attr: str, dtype=np.float64) -> np.ndarray:
    return np.array([getattr(config, attr) for config in configs], dtype=dtype)[:, None]


def _select(flow_index: np.ndarray, per_flow: list[np.ndarray]) -> np.ndarray:
    shape = np.broadcast_shapes(flow_index.shape, *(np.shape(values) for values in per_flow))
    return np.choose(np.broadcast_to(flow_index, shape), [np.broadcast_to(values, shape) for values in per_flow])


def evaluate(layers: list[Layer], configs: list[HardwareConfig], synthesis: Synthesis, table: EnergyTable = DEFAULTS) -> Evaluation:
    """Cycles, utilization, access counts and energy of every layer at every design point."""
    if not configs:
        raise ConfigError("no design points to evaluate")
    shape = LayerArrays.of(layers)
    rows, cols = _column(configs, "rows", np.int64), _column(configs, "cols", np.int64)
    flow = np.array([FLOWS.index(c.dataflow) for c in configs])[:, None]
    dims = (shape.m, shape.k, shape.n)
    analytical = [systolic_cycles(df, rows, cols, *dims, shape.groups) for df in DATAFLOWS]
    cycles = _select(flow, [*analytical, own_array_cycles(configs, shape)])
    # the own array is output stationary: it moves data as the os model does
    access_flows = (*DATAFLOWS, "os")
    per_flow = [sram_accesses(df, rows, cols, *dims, shape.groups) for df in access_flows]
    accesses = {key: _select(flow, [counts[key] for counts in per_flow]) for key in per_flow[0]}

    act_bits, weight_bits = _column(configs, "act_bits"), _column(configs, "weight_code_bits")
    acc_bits = _accumulator_widths(configs, shape.k).astype(np.float64)
    mac_pj = np.array([synthesis.mac_pj(*c.synth_key, table, c.rows, c.cols) for c in configs])
    pj_ifmap = table.sram_pj_per_bit(_column(configs, "ifmap_kb"))
    pj_filter = table.sram_pj_per_bit(_column(configs, "filter_kb"))
    pj_ofmap = table.sram_pj_per_bit(_column(configs, "ofmap_kb"))
    psum_traffic = (accesses["psum_writes"] + accesses["psum_reads"]) * acc_bits
    capacity = {f"{name}_capacity": _column(configs, f"{name}_kb") * 8192 for name in ("ifmap", "filter", "ofmap")}
    sizes = {"input_elements": shape.input_elements, "params": shape.params, "output_elements": shape.output_elements}
    widths = {"act_bits": act_bits, "weight_bits": weight_bits, "acc_bits": acc_bits}
    dram_bits = _select(flow, [dataflow.dram_bits(df, rows, cols, *dims, shape.groups, **sizes, **widths, **capacity)
                               for df in access_flows])
    energy = {
        "mac": shape.macs * mac_pj[:, None],
        "register": shape.macs * (act_bits + weight_bits + 2 * acc_bits) * table.register_pj_per_bit,
        "sram": (accesses["ifmap_reads"] * act_bits * pj_ifmap + accesses["filter_reads"] * weight_bits * pj_filter
                 + accesses["ofmap_final"] * act_bits * pj_ofmap + psum_traffic * pj_ofmap),
        "dram": dram_bits * table.dram_pj_per_bit,
    }
    pe_transistors = np.array([synthesis.unit(*c.synth_key, c.rows, c.cols).transistors_per_pe for c in configs])
    sram_bits = (_column(configs, "ifmap_kb") + _column(configs, "filter_kb") + _column(configs, "ofmap_kb"))[:, 0] * 8192
    area = pe_transistors * (rows * cols)[:, 0] + SRAM_TRANSISTORS_PER_BIT * sram_bits
    clock = np.array([c.clock_mhz or synthesis.clock_mhz(*c.synth_key, c.rows, c.cols) or FALLBACK_CLOCK_MHZ
                      for c in configs])
    return Evaluation(configs, shape, cycles, shape.macs / (rows * cols * cycles), energy, mac_pj, area, accesses, clock)


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
