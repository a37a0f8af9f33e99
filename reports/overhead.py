"""ASQ adapter overhead (the paper's Table 1), OPS/storage (Eq. 10-16) and POST LUT overhead.

**The paper's convention**, found by searching the plausible ones (:mod:`reports.asq_search`)
and the only family that reproduces every printed digit of Table 1 for ResNet-18:

* *Placement*: every convolution except the full-precision stem gets an ASQ activation
  quantizer with its own adapter — downsample (1x1 shortcut) convs included, the FC excluded.
  This is also the authors' released ``Q_ResNet18_Asq``.
* *Adapter*: GAP -> Linear(C, C/4) -> ReLU -> Linear(C/4, 1) -> ReLU (a single Linear(C, 1)
  when C < 8), weights and biases.
* *Param%*: the parameters the ASQ model adds to the float model — per adapted conv its
  adapter, its per-output-channel weight step sizes and its activation step size — stored at
  8 bits (the precision the paper keeps its first/last layers at), over the float network's
  parameter count (torchvision's, BatchNorm included) at ``B`` bits (Eq. 14):
  ``100 * extra * 8 / (params * B)``.
* *Compute%*: adapter operations per Eq. 13 (a linear layer's multiplications *and*
  additions, ``2 * Nin * Nout``) at 8 bits, over the ``B``-bit convolutions' operations per
  Eq. 12 (multiplications, ``Cin*Cout*Kh*Kw*Hout*Wout``), both bit-weighted against a 32-bit
  reference (Eq. 15-16: ``OPS_B = OPS * B / 32``).

**As built** adds what the paper leaves out, priced in the same units: the GAP additions
(``C*(H*W - 1)`` accumulator-width adds per adapter), the per-sample requantization multiplier
(``Cout`` products of a 16-bit mantissa with 1/beta plus one reciprocal per adapted layer) and
the feature-map buffer the adapter's barrier needs (the largest adapted input map, held at
accumulator width until its GAP is known).

**On chip** (:func:`asq_on_chip`): what the accelerator's output stage (``hw.output_stage``)
spends on ASQ — the cycles of the barrier (each adapted map's pooled first pass ends
``hw.cycles.POOL_CYCLES`` later, and a held pass re-reads it through the lanes:
``gemm_cycles(H*W, 1, C)`` per sample) and the area of the global pool unit, both from the RTL's
own formula and synthesis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golden.spec import (
    MULTIPLIER_BITS,
    DatapathConfig,
    WeightFormat,
    WeightScheme,
    accumulator_bits,
    legal_frac_bits,
)
from hw.config import ArrayConfig
from hw.cycles import POOL_CYCLES, gemm_cycles
from hw.kinds import kinds_of_scheme, network_kind
from hw.synth_record import SynthRecord, UnitType

from .networks import Layer

ADAPTER_REDUCTION = 4
PAPER_EXTRA_BITS = 8  # ASQ's additions are counted at 8 bits
REFERENCE_BITS = 32  # Eq. 15-16: the full-precision reference
TABLE1_BITS = (8, 4, 3, 2)
EDGE_LAYER_BITS = 8  # first and last layers stay at 8 bits (paper §4.1.3)


def adapter_linears(channels: int, reduction: int = ADAPTER_REDUCTION) -> tuple[tuple[int, int], ...]:
    """(in, out) of the adapter's linear layers for a ``channels``-channel input."""
    if channels >= 2 * reduction:
        return (channels, channels // reduction), (channels // reduction, 1)
    return ((channels, 1),)


def adapter_params(channels: int, reduction: int = ADAPTER_REDUCTION, biases: bool = True) -> int:
    return sum(nin * nout + (nout if biases else 0) for nin, nout in adapter_linears(channels, reduction))


def adapter_macs(channels: int, reduction: int = ADAPTER_REDUCTION) -> int:
    return sum(nin * nout for nin, nout in adapter_linears(channels, reduction))


def adapted_layers(layers: list[Layer]) -> list[Layer]:
    """Layers whose input activation gets an ASQ quantizer: every conv but the first layer."""
    return [layer for layer in layers[1:] if layer.type != "linear"]


def edge_bits(layers: list[Layer], bits: int) -> np.ndarray:
    """Per-layer bit width: ``bits``, with the first and last layer at 8 bits."""
    widths = np.full(len(layers), bits, dtype=np.int64)
    widths[[0, -1]] = EDGE_LAYER_BITS
    return widths


def _pct(numerator: float, denominator: float) -> float:
    return 100.0 * numerator / denominator if denominator else 0.0  # no adapted layer: no model ops, no overhead


@dataclass(frozen=True)
class AsqOverhead:
    """Table 1 for one network: raw counts and the percentages at each bit width."""

    network: str
    model_params: int
    adapters: int
    extra_params: int  # adapters + weight steps + activation steps
    adapter_ops: int  # Eq. 13, 2 ops per adapter MAC
    model_ops: int  # Eq. 12, MACs of the adapted (B-bit) convs
    gap_adds: int
    requant_ops: int
    buffer_elements: int
    reduction_max: int

    def buffer_bits(self, bits: int) -> int:
        """Barrier buffer: the largest adapted input map at the accumulator width for ``bits``-bit codes."""
        return self.buffer_elements * accumulator_bits(DatapathConfig.make(WeightScheme.INT, bits, bits), self.reduction_max)

    def row(self, bits: int) -> dict:
        model_bits = self.model_params * bits
        paper_storage = self.extra_params * PAPER_EXTRA_BITS
        paper_ops = self.adapter_ops * PAPER_EXTRA_BITS / REFERENCE_BITS
        model_ops = self.model_ops * bits / REFERENCE_BITS
        acc_bits = accumulator_bits(DatapathConfig.make(WeightScheme.INT, bits, bits), self.reduction_max)
        built_ops = paper_ops + (self.gap_adds * acc_bits + self.requant_ops * MULTIPLIER_BITS) / REFERENCE_BITS
        return {
            "network": self.network,
            "bits": bits,
            "param_pct": _pct(paper_storage, model_bits),
            "compute_pct": _pct(paper_ops, model_ops),
            "param_pct_as_built": _pct(paper_storage + self.buffer_bits(bits), model_bits),
            "compute_pct_as_built": _pct(built_ops, model_ops),
            "extra_params": self.extra_params,
            "model_params": self.model_params,
            "adapter_ops": self.adapter_ops,
            "model_macs_quantized": self.model_ops,
            "gap_adds": self.gap_adds,
            "requant_ops": self.requant_ops,
            "buffer_bits": self.buffer_bits(bits),
        }


def asq_overhead(network: str, layers: list[Layer], model_params: int) -> AsqOverhead:
    """Counts behind Table 1 under the paper's convention (module docstring)."""
    adapted = adapted_layers(layers)
    return AsqOverhead(
        network=network,
        model_params=model_params,
        adapters=len(adapted),
        extra_params=sum(adapter_params(layer.cin) + layer.cout + 1 for layer in adapted),
        adapter_ops=sum(2 * adapter_macs(layer.cin) for layer in adapted),
        model_ops=sum(layer.macs for layer in adapted),
        gap_adds=sum(layer.cin * (layer.hin * layer.win - 1) for layer in adapted),
        requant_ops=sum(layer.cout + 1 for layer in adapted),
        buffer_elements=max((layer.input_elements for layer in adapted), default=0),  # a 1-2 layer net has none
        reduction_max=max(layer.k for layer in layers),
    )


def table1_rows(overhead: AsqOverhead, bit_widths: tuple[int, ...] = TABLE1_BITS) -> list[dict]:
    return [overhead.row(bits) for bits in bit_widths]


def ops_storage_rows(layers: list[Layer], bit_widths: tuple[int, ...] = TABLE1_BITS) -> list[dict]:
    """Per layer and total: params, MACs, storage bits (Eq. 14) and bit-weighted OPS (Eq. 15-16)."""
    params = np.array([layer.params for layer in layers], dtype=np.int64)
    macs = np.array([layer.macs for layer in layers], dtype=np.int64)
    widths = {bits: edge_bits(layers, bits) for bits in bit_widths}
    rows = []
    for i, layer in enumerate(layers):
        row = {"layer": layer.name, "type": layer.type, "params": int(params[i]), "macs": int(macs[i])}
        row |= {f"storage_bits_w{b}": int(params[i] * widths[b][i]) for b in bit_widths}
        row |= {f"ops_w{b}": float(macs[i] * widths[b][i] / REFERENCE_BITS) for b in bit_widths}
        rows.append(row)
    total = {"layer": "TOTAL", "type": "", "params": int(params.sum()), "macs": int(macs.sum())}
    total |= {f"storage_bits_w{b}": int((params * widths[b]).sum()) for b in bit_widths}
    total |= {f"ops_w{b}": float((macs * widths[b]).sum() / REFERENCE_BITS) for b in bit_widths}
    return rows + [total]


def post_lut_entry_bits(datapath: DatapathConfig) -> int:
    """Width of one POST LUT entry: the largest ``golden.spec`` ROM entry, ``round(a * 2^L / sqrt 2)``."""
    return int(datapath.post_lut.max()).bit_length()


def post_datapath(bits: int, frac_bits: int | None = None) -> DatapathConfig:
    """The ``bits``-bit POST datapath at ``frac_bits`` (None: the format's default), clipped into the legal range."""
    if frac_bits is not None:
        legal = legal_frac_bits(WeightFormat(WeightScheme.POST, bits), bits)
        frac_bits = min(legal, key=lambda f: (abs(f - frac_bits), -f))
    return DatapathConfig.make(WeightScheme.POST, bits, bits, frac_bits=frac_bits)


def post_lut_rows(layers: list[Layer], rows: int, cols: int, frac_bits: int | None = None,
                  bit_widths: tuple[int, ...] = (2, 3, 4, 8)) -> list[dict]:
    """LUT bits of the two POST hardware variants (and the authors' single table) vs model bits.

    Per bit width ``b`` (weights and activations): the ROM of :func:`post_datapath`, ``2^b``
    entries of ``b + L`` bits, ``L = golden.spec.DatapathConfig.lut_frac_bits``.
    """
    params = np.array([layer.params for layer in layers], dtype=np.int64)
    out = []
    for bits in bit_widths:
        entries = 1 << bits
        datapath = post_datapath(bits, frac_bits)
        entry_bits = post_lut_entry_bits(datapath)
        lut_bits = entries * entry_bits
        model_bits = int((params * edge_bits(layers, bits)).sum())
        copies = {"single_table": 1} | {kind.name: kind.rom_copies(rows, cols) for kind in kinds_of_scheme(WeightScheme.POST)}
        row = {"act_bits": bits, "frac_bits": datapath.frac_bits, "rom_frac_bits": datapath.lut_frac_bits,
               "entries": entries, "entry_bits": entry_bits,
               "lut_bits": lut_bits, "model_bits": model_bits,
               "entries_pct_of_params": _pct(entries, int(params.sum()))}
        for variant, count in copies.items():
            row[f"{variant}_bits"] = lut_bits * count
            row[f"{variant}_pct"] = _pct(lut_bits * count, model_bits)
        out.append(row)
    return out


def _run_cycles(rows: int, cols: int, m: int, k: int, n: int) -> int:
    """``hw.cycles.gemm_cycles`` of one run on an ``rows x cols`` array (the formula does not depend on the PE kind)."""
    cfg = ArrayConfig(network_kind(WeightScheme.INT).name, rows, cols, 8, 8, max_reduction=k, max_m=m, max_n=n)
    return gemm_cycles(cfg, m, k, n)


def asq_barrier_cycles(rows: int, cols: int, positions: int, channels: int) -> int:
    """Cycles the barrier adds to one sample of a layer with an ASQ output of ``channels x positions``."""
    return POOL_CYCLES + _run_cycles(rows, cols, positions, 1, channels)


def asq_on_chip(network: str, layers: list[Layer], rows: int, cols: int, units: tuple[SynthRecord, ...] = ()) -> dict:
    """ASQ's on-chip cost for one sample of ``network`` on an ``rows x cols`` array (module docstring, "On chip").

    ``units``: synthesis records; the global pool unit is compared with the array core of the
    same PE configuration and column count (``pool_*`` / ``array_*`` transistors, if both exist).
    """
    network_cycles = sum(layer.groups * _run_cycles(rows, cols, layer.m, layer.k, layer.n) for layer in layers)
    barrier = sum(asq_barrier_cycles(rows, cols, layer.hin * layer.win, layer.cin) for layer in adapted_layers(layers))
    row = {"network": network, "array": f"{rows}x{cols}", "network_cycles": network_cycles, "barrier_cycles": barrier,
           "barrier_cycles_pct": _pct(barrier, network_cycles)}
    pool = next((unit for unit in units if unit.unit == UnitType.POOL), None)
    if pool is not None:
        core = next((unit for unit in units if unit.unit == UnitType.ARRAY and unit.key == pool.key
                     and unit.cols == pool.cols), None)
        if core is not None:
            row |= {"pool_unit": pool.name, "pool_transistors": pool.transistors, "array_core": core.name,
                    "array_transistors": core.transistors, "pool_area_pct_of_array": _pct(pool.transistors, core.transistors)}
    return row
