"""``lutmac report``: regenerate every table and figure into one folder.

Nothing is written unless the whole run succeeds (:func:`reports.output.staged_report`), and
the output depends only on the inputs (networks, synthesis JSON, energy config, options).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

from hw.config import preset

from . import asq_search, energy, overhead, plots
from .energy import DEFAULT_SYNTH_PATH, EnergyTable, Synthesis, load_energy_table, load_synthesis
from .estimator import FLOWS, HardwareConfig, evaluate
from .networks import NETWORKS, build, count_parameters, network_layers
from .output import ReportWriter, check_output_folder, staged_report
from .sweep import SweepResult, SweepSpec, run_sweep
from .topology import read_topology, topology_csv


@dataclass(frozen=True)
class ReportOptions:
    out: Path
    synth: Path = DEFAULT_SYNTH_PATH
    energy_config: Path | None = None
    networks: tuple[str, ...] = tuple(NETWORKS)
    topologies: tuple[Path, ...] = ()
    rows: int = 16
    cols: int = 16
    dataflow: str = "lutmac"
    sweep: SweepSpec = field(default_factory=SweepSpec)


@dataclass(frozen=True)
class ReportedNetwork:
    """One network the report covers: a built-in one (:data:`reports.networks.NETWORKS`) or a topology file."""

    name: str
    layers: list
    params: int  # every parameter (torch count) or, for a topology file, conv/linear weights


def _reported_networks(options: ReportOptions, progress: tqdm) -> list[ReportedNetwork]:
    networks = []
    for name in options.networks:
        progress.set_postfix_str(f"tracing {name}", refresh=True)
        networks.append(ReportedNetwork(name, network_layers(name), count_parameters(build(name))))
        progress.update()
    for path in options.topologies:
        progress.set_postfix_str(f"reading {Path(path).name}", refresh=True)
        layers = read_topology(path)
        networks.append(ReportedNetwork(Path(path).stem, layers, sum(layer.params for layer in layers)))
        progress.update()
    return networks


def _reference_points(options: ReportOptions, synthesis: Synthesis) -> list[HardwareConfig]:
    """One point per synthesized PE configuration, on the report's array and dataflow."""
    return [HardwareConfig(options.rows, options.cols, options.dataflow, kind, wb, ab, frac)
            for kind, wb, ab, frac in synthesis.configurations()]


def _table1(writer: ReportWriter, networks: list[ReportedNetwork]) -> list[dict]:
    rows = []
    for net in networks:
        rows += overhead.table1_rows(overhead.asq_overhead(net.name, net.layers, net.params))
    shown = [{"network": r["network"], "precision": r["bits"], "Param(%)": r["param_pct"], "Compute(%)": r["compute_pct"],
              "Param as built (%)": r["param_pct_as_built"], "Compute as built (%)": r["compute_pct_as_built"]} for r in rows]
    writer.table("table1_asq_overhead", shown, "ASQ adapter overhead (paper Table 1) and as built",
                 notes=overhead.__doc__, formats={c: ".2f" for c in shown[0] if "%" in c}, payload={"detail": rows})
    return rows


def _asq_on_chip(writer: ReportWriter, networks: list[ReportedNetwork], options: ReportOptions, synthesis: Synthesis) -> None:
    rows = [overhead.asq_on_chip(net.name, net.layers, options.rows, options.cols, synthesis.units) for net in networks]
    writer.table("asq_on_chip", rows, f"ASQ's output stage on chip: barrier cycles per sample and the pool unit's area, "
                 f"{options.rows}x{options.cols} array", notes="The paper calls ASQ's overhead negligible (Table 1 "
                 "counts the adapter only); these are the cycles the barrier adds to a sample's run on the own array "
                 "(hw.cycles) and the synthesized global pool unit next to the array core of its size.",
                 formats={c: ".2f" for c in rows[0] if c.endswith("_pct") or c.endswith("_pct_of_array")})


def _convention_search(writer: ReportWriter) -> None:
    result = asq_search.search("resnet18")
    notes = (f"{result.param_conventions} Param% conventions and {result.compute_conventions} Compute% conventions "
             "were evaluated on the traced ResNet-18; listed are those whose values round to every printed digit "
             f"(Param% {asq_search.PUBLISHED_PARAM_PCT}, Compute% {asq_search.PUBLISHED_COMPUTE_PCT}). "
             f"Joint hits (same placement and precision of ASQ's additions): {len(result.joint_hits)}.")
    writer.table("asq_convention_search_param", result.param_hits, "Table 1 convention search: Param% hits", notes=notes)
    writer.table("asq_convention_search_compute", result.compute_hits, "Table 1 convention search: Compute% hits", notes=notes)


def _ops_and_luts(writer: ReportWriter, networks: list[ReportedNetwork], options: ReportOptions) -> None:
    lut_rows = []
    for net in networks:
        writer.table(f"ops_storage_{net.name}", overhead.ops_storage_rows(net.layers),
                     f"{net.name}: params, MACs, storage bits (Eq. 14) and bit-weighted OPS (Eq. 15-16)",
                     notes="First and last layer at 8 bits; `ops_wB` = MACs x b / 32.")
        lut_rows += [{"network": net.name, **row} for row in overhead.post_lut_rows(net.layers, options.rows, options.cols)]
    writer.table("post_lut_overhead", lut_rows, f"POST LUT overhead, {options.rows}x{options.cols} array, default F per bits",
                 notes="LUT = 2^b_a entries x the widest golden.spec ROM entry (`rom_frac_bits` L of the product's F). "
                       "`single_table`: one table for the "
                       "model (the authors' count); `post_shared`: one per array row; `post_lut`: one per PE. "
                       "Percentages are of the model's weight bits (first/last layers at 8 bits).",
                 formats={c: ".6f" for c in lut_rows[0] if c.endswith("_pct")})


def _estimates(writer: ReportWriter, networks: list[ReportedNetwork], options: ReportOptions, synthesis: Synthesis,
               table: EnergyTable) -> None:
    points = _reference_points(options, synthesis)
    reference = preset("default")
    summary = []
    for net in networks:
        result = evaluate(net.layers, points, synthesis, table)
        summary += [{"network": net.name, **result.summary(i)} for i in range(len(points))]
        index = next((i for i, p in enumerate(points) if p.synth_key == (reference.pe_kind, reference.weight_bits,
                      reference.act_bits, reference.frac_bits)), 0)
        point = points[index]
        writer.table(f"estimate_{net.name}", result.layer_rows(index),
                     f"{net.name} per layer: {point.pe_kind} w{point.weight_bits}a{point.act_bits} F={point.frac_bits}, "
                     f"{point.rows}x{point.cols} {point.dataflow}",
                     payload={"summary": result.summary(index)})
    writer.table("estimate_summary", summary, f"Per inference, every synthesized PE on {options.rows}x{options.cols} "
                 f"{options.dataflow}", formats={"latency_ms": ".3f", "energy_uj": ".1f", "utilization": ".3f"})


BATCHES = (1, 2, 4, 8, 16, 32, 64)


def _batch_energy(writer: ReportWriter, net: ReportedNetwork, options: ReportOptions, synthesis: Synthesis,
                  table: EnergyTable) -> None:
    """Energy per inference against batch size at the report's array and dataflow, the reference PE."""
    reference = preset("default")
    key = (reference.pe_kind, reference.weight_bits, reference.act_bits, reference.frac_bits)
    pes = synthesis.configurations()
    kind, wb, ab, frac = key if key in pes else pes[0]
    spec = SweepSpec(arrays=((options.rows, options.cols),), dataflows=(options.dataflow,), pe_kinds=(kind,),
                     bits=((wb, ab),), frac_bits=(frac,), batch=BATCHES)
    result = run_sweep(net.layers, spec, synthesis, table)
    rows = [{"batch": int(row["batch"]), "cycles_per_batch": row["cycles"], "latency_ms_per_batch": row["latency_ms"],
             "energy_uj": row["energy_uj"], "dram_uj": row["dram_uj"], "dram_mb": row["dram_mb_per_inference"]}
            for row in result.rows()]
    writer.table(f"energy_vs_batch_{net.name}", rows,
                 f"{net.name}: energy per inference vs batch ({kind} w{wb}a{ab} F={frac}, {options.rows}x{options.cols} "
                 f"{options.dataflow}; a batch runs each layer as one GEMM, weights cross DRAM once per batch)",
                 formats={"latency_ms_per_batch": ".3f", "energy_uj": ".1f", "dram_uj": ".1f", "dram_mb": ".3f"})


def _sweep(writer: ReportWriter, net: ReportedNetwork, options: ReportOptions, synthesis: Synthesis, table: EnergyTable) -> dict:
    result = run_sweep(net.layers, options.sweep, synthesis, table)
    writer.table(f"sweep_{net.name}", result.rows(), f"{net.name}: design-space sweep ({len(result)} points)")
    for name, figure in _figures(result, net, synthesis, table).items():
        writer.figure(f"{name}_{net.name}.png", figure)
        plt.close(figure)
    return {"network": net.name, "points": len(result), "pareto_points": int(result.pareto().sum())}


def _figures(result: SweepResult, net: ReportedNetwork, synthesis: Synthesis, table: EnergyTable) -> dict:
    network = net.name
    figures = {
        "pareto": plots.pareto_figure(result, f"{network}: energy vs latency"),
        "area_energy": plots.area_energy_figure(result, f"{network}: area vs energy"),
    }
    # utilization: the first PE configuration at each dataflow on a mid-size array (first value of the other axes)
    rows_of, cols_of, pe = result.values("rows"), result.values("cols"), result.columns["pe"]
    sizes = sorted(set(zip(rows_of.tolist(), cols_of.tolist(), strict=True)),
                   key=lambda rc: (abs(rc[0] * rc[1] - 1024), abs(rc[0] - rc[1]), rc))
    rows, cols = sizes[0]
    first = np.logical_and.reduce([result.columns[axis] == 0 for axis in ("batch", "ifmap_kb", "filter_kb", "ofmap_kb", "clock_mhz")])
    same_array = first & (rows_of == rows) & (cols_of == cols)
    picks = np.flatnonzero(same_array & (pe == pe[0]))
    chosen = evaluate(net.layers, [result.config(i) for i in picks], synthesis, table)
    figures["utilization"] = plots.utilization_figure(chosen, f"{network}: per-layer utilization, {rows}x{cols}")
    # PE comparison: one point per PE kind at the most widely synthesized bit widths, same array and dataflow
    flows = result.values("dataflow")
    flow = "lutmac" if (flows == "lutmac").any() else flows[0]
    candidates = np.flatnonzero(same_array & (flows == flow))
    kinds, bits = result.values("pe_kind"), list(zip(result.values("weight_bits").tolist(), result.values("act_bits").tolist(),
                                                    strict=True))
    best = max({bits[i] for i in candidates}, key=lambda b: (len({kinds[i] for i in candidates if bits[i] == b}), b))
    by_kind: dict[str, int] = {}
    for i in candidates:
        if bits[i] == best:
            by_kind.setdefault(str(kinds[i]), int(i))
    figures["pe_comparison"] = plots.pe_comparison_figure(
        result, list(by_kind.values()), f"{network}: PE kinds at w{best[0]}a{best[1]}, {rows}x{cols} {flow}")
    return figures


def _index(options: ReportOptions, synthesis: Synthesis, table: EnergyTable, table1: list[dict], sweeps: list[dict]) -> str:
    resnet18 = [r for r in table1 if r["network"] == "resnet18"]
    lines = ["# lutmac report", "",
             f"Synthesis: `{options.synth}` (yosys {synthesis.yosys_version}, {len(synthesis.units)} units). "
             f"Energy table: {'`' + str(options.energy_config) + '`' if options.energy_config else 'Horowitz 45 nm defaults'}.",
             f"Estimates: {options.rows}x{options.cols} array, dataflow `{options.dataflow}` (of {', '.join(FLOWS)}).", ""]
    if resnet18:
        lines += ["## ASQ Table 1, ResNet-18, as computed", "", "| bits | Param(%) | Compute(%) |", "|---|---|---|"]
        lines += [f"| {r['bits']} | {r['param_pct']:.2f} | {r['compute_pct']:.2f} |" for r in resnet18]
        lines += ["", "Convention: see `table1_asq_overhead.md` and the search in `asq_convention_search_*.md`.", ""]
    lines += ["## Energy model", "", energy.__doc__ or "", "",
              f"Per-bit energies used: register {table.register_pj_per_bit:.5f} pJ, DRAM {table.dram_pj_per_bit:.2f} pJ, "
              f"SRAM 64 KB {float(table.sram_pj_per_bit(64.0)):.4f} pJ; MAC anchor {table.mac_anchor_pj:.3f} pJ.", "",
              "## Sweeps", ""]
    lines += [f"- {s['network']}: {s['points']} points, {s['pareto_points']} on the Pareto front" for s in sweeps]
    return "\n".join(lines) + "\n"


def generate(options: ReportOptions) -> list[str]:
    """Write the report; returns the files written (relative to ``options.out``).

    A progress bar on stderr (when it is a terminal) counts the networks read, the tables and each sweep.
    """
    check_output_folder(options.out)  # before the work, not after it
    synthesis = load_synthesis(options.synth)
    table = load_energy_table(options.energy_config)
    count = len(options.networks) + len(options.topologies)
    with tqdm(total=3 * count + 6, desc="lutmac report", unit="step", disable=None, dynamic_ncols=True) as progress:

        def step(text: str, work, *args):
            progress.set_postfix_str(text, refresh=True)
            result = work(*args)
            progress.update()
            return result

        networks = _reported_networks(options, progress)
        with staged_report(options.out) as writer:
            table1 = step("ASQ overhead", _table1, writer, networks)
            step("ASQ on chip", _asq_on_chip, writer, networks, options, synthesis)
            step("convention search", _convention_search, writer)
            step("ops and LUTs", _ops_and_luts, writer, networks, options)
            step("estimates", _estimates, writer, networks, options, synthesis, table)
            sweeps = [step(f"sweep {net.name}", _sweep, writer, net, options, synthesis, table) for net in networks]
            for net in networks:
                step(f"batch energy {net.name}", _batch_energy, writer, net, options, synthesis, table)
            for net in networks:
                if all(layer.groups == 1 or layer.type == "depthwise" for layer in net.layers):
                    writer.text(f"topology_{net.name}.csv", topology_csv(net.layers))
            step("index", writer.text, "README.md", _index(options, synthesis, table, table1, sweeps))
    return sorted(writer.files)
