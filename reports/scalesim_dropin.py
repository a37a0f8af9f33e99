"""``lutmac estimate``: SCALE-Sim's inputs, SCALE-Sim's ``COMPUTE_REPORT.csv``, plus lutmac's energy and area.

The ``.cfg`` (:mod:`reports.scalesim_config`) gives the array, the three SRAM sizes and the
dataflow; the topology (:mod:`reports.topology`, conv or GEMM form) the layers, expanded as
SCALE-Sim expands depthwise layers (:func:`reports.topology.scalesim_layers`), so the report has
SCALE-Sim's rows.  Its first six columns are SCALE-Sim's (:mod:`reports.dataflow`: Total Cycles
and the three utilization columns as SCALE-Sim 2.0.2 computes them).  In the CALC bandwidth mode
they equal SCALE-Sim's, Stall Cycles 0.  In the USER mode the cfg's Bandwidth (bytes, SCALE-Sim's
one-byte words, per cycle) limits DRAM and Stall Cycles is lutmac's bandwidth roofline
(:func:`reports.dataflow.bandwidth_stalls`, at the quantized tensors' widths), added to Total
Cycles and counted in Overall Util as SCALE-Sim counts its stalls; SCALE-Sim's own USER-mode
stalls come from a trace model and differ (that function's docstring).  The columns after them
are lutmac's, for the quantized PE chosen on the command line (``--scheme``/``--bits``): DRAM
bytes and the bandwidth they demand over the layer's compute cycles, per-layer energy by part
and in total (:mod:`reports.estimator`: MACs priced from synthesis, registers, SRAM at the cfg's
buffer sizes, DRAM) and the area of the array and its buffers.  The file is written as SCALE-Sim writes
its reports (``", "``-separated, a trailing comma), whole or not at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from golden.files import write_atomic
from hw.kinds import network_kind

from .dataflow import scalesim_utilization
from .energy import DEFAULTS, EnergyTable, Synthesis
from .estimator import ENERGY_PARTS, HardwareConfig, LayerArrays, evaluate
from .networks import Layer
from .scalesim_config import ScaleConfig
from .topology import scalesim_layers

SCALESIM_COLUMNS = ("LayerID", "Total Cycles", "Stall Cycles", "Overall Util %", "Mapping Efficiency %", "Compute Util %")
ENERGY_COLUMNS = {"mac": "MAC Energy nJ", "register": "Register Energy nJ", "sram": "SRAM Energy nJ", "dram": "DRAM Energy nJ"}
LUTMAC_COLUMNS = ("Layer", "MACs", "DRAM Bytes", "DRAM Demand B/cycle", *ENERGY_COLUMNS.values(), "Energy nJ",
                  "Area Mtransistors")


def hardware_config(config: ScaleConfig, scheme: str = "int", weight_bits: int = 8, act_bits: int | None = None,
                    pe_kind: str | None = None, frac_bits: int | None = None, clock_mhz: float | None = None) -> HardwareConfig:
    """The lutmac design point of a SCALE-Sim config and a quantization (the scheme's network PE unless ``pe_kind``);
    the cfg's Bandwidth limits DRAM in its USER mode."""
    return HardwareConfig(config.rows, config.cols, config.dataflow, pe_kind or network_kind(scheme).name, weight_bits,
                          weight_bits if act_bits is None else act_bits, frac_bits, float(config.ifmap_kb),
                          float(config.filter_kb), float(config.ofmap_kb), clock_mhz,
                          float(config.bandwidth) if config.bandwidth_mode == "USER" else None)


def compute_report(layers: list[Layer], hardware: HardwareConfig, synthesis: Synthesis,
                   table: EnergyTable = DEFAULTS) -> list[dict]:
    """One row per layer SCALE-Sim simulates: its columns, then lutmac's."""
    layers = scalesim_layers(layers)
    evaluation = evaluate(layers, [hardware], synthesis, table)
    shape = LayerArrays.of(layers)
    util = scalesim_utilization(hardware.dataflow, hardware.rows, hardware.cols, shape.m, shape.k, shape.n, shape.groups)
    energy_nj = {part: evaluation.energy_pj[part][0] * 1e-3 for part in ENERGY_PARTS}
    total_nj = sum(energy_nj.values())
    area = float(evaluation.area_transistors[0]) * 1e-6
    cycles, stalls, dram_bytes = evaluation.cycles[0], evaluation.stall_cycles[0], evaluation.dram_bits[0] / 8
    overall = 100 * shape.macs[0] / (cycles * float(hardware.rows * hardware.cols))  # SCALE-Sim's, stalls included
    rows = []
    for j, layer in enumerate(layers):
        values = (j, int(cycles[j]), int(stalls[j]), float(overall[j]),
                  float(util["mapping_efficiency_pct"][0, j]), float(util["compute_util_pct"][0, j]),
                  layer.name, layer.macs, float(dram_bytes[j]), float(dram_bytes[j] / (cycles[j] - stalls[j])),
                  *(float(energy_nj[part][j]) for part in ENERGY_COLUMNS), float(total_nj[j]), area)
        rows.append(dict(zip(SCALESIM_COLUMNS + LUTMAC_COLUMNS, values, strict=True)))
    return rows


def report_text(rows: list[dict]) -> str:
    """SCALE-Sim's report format: ``", "`` between cells, a comma closing every line; floats in full."""
    columns = list(rows[0])
    lines = [", ".join(columns) + ","]
    lines += [", ".join(str(row[column]) for column in columns) + "," for row in rows]
    return "\n".join(lines) + "\n"


def write_compute_report(folder: str | Path, rows: list[dict]) -> Path:
    path = Path(folder) / "COMPUTE_REPORT.csv"
    write_atomic(path, report_text(rows))
    return path


def totals(rows: list[dict]) -> dict[str, float]:
    """Whole-network figures of a report: cycles, energy, overall utilization (all MACs over all PE-cycles)."""
    cycles = np.array([row["Total Cycles"] for row in rows], dtype=np.float64)
    util = np.array([row["Overall Util %"] for row in rows])
    return {"layers": len(rows), "cycles": int(cycles.sum()), "stall_cycles": int(sum(row["Stall Cycles"] for row in rows)),
            "energy_uj": sum(row["Energy nJ"] for row in rows) * 1e-3,
            "overall_util_pct": float((util * cycles).sum() / cycles.sum())}
