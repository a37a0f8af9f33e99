"""The demo's report: ``summary.md``, its tables as Markdown/CSV/JSON, the plots and ``summary.json``.

Everything here reads a finished :class:`reports.app.demo.DemoResult`; :func:`write_demo_report`
writes into the demo's staged report (:func:`reports.output.staged_report`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..output import ReportWriter, json_text, markdown_table
from .pricing import DEMO_ENERGY_PARTS, priced_kinds

if TYPE_CHECKING:
    from .demo import DemoResult


def accuracy_rows(demo: DemoResult) -> list[dict]:
    rows = [{"model": "float", "scheme": "float", "bits": 32, "fake_quant_accuracy": demo.float_accuracy,
             "integer_accuracy": None, "changed_predictions": None, "layers_within_bound": None}]
    for m in demo.models:
        rows.append({"model": m.name, "scheme": m.scheme, "bits": m.bits, "fake_quant_accuracy": m.fake_quant_accuracy,
                     "integer_accuracy": m.integer_accuracy, "changed_predictions": m.changed_predictions,
                     "layers_within_bound": f"{sum(r['within_bound'] for r in m.layers)}/{len(m.layers)}"})
    return rows


def bound_rows(demo: DemoResult) -> list[dict]:
    return [{"model": m.name, **row} for m in demo.models for row in m.layers]


def rtl_rows(demo: DemoResult) -> list[dict]:
    rows = []
    for m in demo.models:
        if m.rtl is None:
            continue
        estimated = {row["layer"]: row["cycles"] for row in m.energy if row["pe_kind"] == priced_kinds(m.scheme)[0]}
        for row in m.rtl.layers:
            rows.append({"model": m.name, **row, "estimator_cycles": estimated.get(row["layer"])})
    return rows


def rtl_summary_rows(demo: DemoResult) -> list[dict]:
    rows = []
    for m in demo.models:
        if m.rtl is None:
            rows.append({"model": m.name, "backend": "-", "images": 0, "bit_exact_layers": "-", "predictions_agree": "-",
                         "cycles_per_image": None, "build_s": None, "sim_s": None, "note": m.rtl_skipped or "not run"})
            continue
        agree = sum(a == b for a, b in zip(m.rtl.predictions, m.integer_rtl_predictions, strict=True))
        exact = sum(row["bit_exact"] for row in m.rtl.layers)
        rows.append({"model": m.name, "backend": m.rtl.backend, "images": m.rtl.images,
                     "bit_exact_layers": f"{exact}/{len(m.rtl.layers)}", "predictions_agree": f"{agree}/{m.rtl.images}",
                     "cycles_per_image": m.rtl.cycles_per_image, "build_s": m.rtl.build_seconds, "sim_s": m.rtl.sim_seconds,
                     "note": "bit-exact" if m.rtl.bit_exact else "; ".join(m.rtl.failures[:3])})
    return rows


def energy_summary_rows(demo: DemoResult) -> list[dict]:
    rows = []
    for m in demo.models:
        for kind in priced_kinds(m.scheme):
            layers = [row for row in m.energy if row["pe_kind"] == kind]
            rows.append({"model": m.name, "scheme": m.scheme, "bits": m.bits, "pe_kind": kind,
                         "macs": sum(r["macs"] for r in layers), "estimated_cycles": sum(r["cycles"] for r in layers),
                         "rtl_cycles": m.rtl.cycles_per_image if m.rtl and kind == priced_kinds(m.scheme)[0] else None,
                         **{f"{part}_nj": sum(r[f"{part}_nj"] for r in layers) for part in DEMO_ENERGY_PARTS},
                         "compute_nj": sum(r["mac_nj"] + r["register_nj"] for r in layers),
                         "energy_nj": sum(r["energy_nj"] for r in layers)})
    return rows


def accuracy_figure(demo: DemoResult):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    schemes = list(dict.fromkeys(m.scheme for m in demo.models))
    for index, scheme in enumerate(schemes):
        models = sorted((m for m in demo.models if m.scheme == scheme), key=lambda m: m.bits)
        # schemes often tie on a small test set: a small offset and a marker each keep every one visible
        offset = 0.03 * (index - (len(schemes) - 1) / 2)
        ax.plot([m.bits + offset for m in models], [100 * m.integer_accuracy for m in models],
                marker="osv^DPX*"[index % 8], label=scheme)
    ax.axhline(100 * demo.float_accuracy, color="black", linestyle="--", linewidth=1, label="float")
    test_images = demo.models[0].test_images if demo.models else 0
    step = f"; one test image = {100 / test_images:.2f} %" if test_images else ""
    ax.set_xlabel(f"weight / activation bits (middle layers; first and last layer 8-bit{step})")
    ax.set_ylabel("test accuracy of the integer model (%)")
    ax.set_xticks(sorted({m.bits for m in demo.models}))
    ax.set_title(f"{demo.options.source.title}: accuracy vs bits")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def energy_figure(demo: DemoResult):
    """Energy per inference by part (top) and the PE part alone, MAC + registers, where the kinds differ (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = energy_summary_rows(demo)
    fig, (total, compute) = plt.subplots(2, 1, sharex=True, figsize=(max(7, 0.45 * len(rows) + 2), 7))
    for ax, parts in ((total, DEMO_ENERGY_PARTS), (compute, ("mac", "register"))):
        bottom = np.zeros(len(rows))
        for part in parts:
            values = np.array([r[f"{part}_nj"] for r in rows])
            ax.bar(range(len(rows)), values, bottom=bottom, label=part)
            bottom += values
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    total.set_ylabel("energy per inference (nJ)")
    total.set_title(f"estimated energy per inference, {demo.options.rows}x{demo.options.cols} array, batch 1")
    compute.set_ylabel("PE energy: MAC + registers (nJ)")
    compute.set_xticks(range(len(rows)), [f"{r['model']}\n{r['pe_kind']}" for r in rows], rotation=90, fontsize=7)
    fig.tight_layout()
    return fig


def summary_markdown(demo: DemoResult) -> str:
    o = demo.options
    pct = {"fake_quant_accuracy": ".4f", "integer_accuracy": ".4f"}
    rtl_models = [m for m in demo.models if m.rtl is not None]
    exact = sum(m.rtl.bit_exact for m in rtl_models)
    lines = [
        f"# lutmac demo: {o.source.title}, from QAT to the RTL",
        "",
        f"Seed {o.seed}; float baseline {o.float_epochs} epochs, QAT {o.qat_epochs} epochs per model from the float "
        f"weights; first and last layer 8-bit LSQ.  Test set: {demo.models[0].test_images if demo.models else 0} images.  "
        f"Array {o.rows}x{o.cols}, backend {o.backend}, {o.rtl_images} RTL image(s) per model.",
        "",
        "## Accuracy",
        "",
        "fake-quant = the trained PyTorch model; integer = golden's integer network (what the hardware computes) on the "
        "whole test set; changed = test images whose predicted class differs between the two.  "
        "2-bit pot is ternary weights {-a, 0, +a} (2-bit post, asq_post and apot would have the same levels).",
        "",
        markdown_table(accuracy_rows(demo), pct),
        "## Integer vs fake-quant, layer by layer",
        "",
        "Each layer runs on the integer model's own input; its codes may differ from the fake-quant layer's only where a "
        "rounding boundary lies within the computed bound (golden.bounds), by at most the boundaries nearby.  "
        "The logits layer's error is checked against its value bound.",
        "",
        markdown_table([{"model": m.name, "layers_within_bound": f"{sum(r['within_bound'] for r in m.layers)}/{len(m.layers)}",
                 "codes_differ": sum(r["codes_differ"] for r in m.layers),
                 "near_boundary": sum(r["near_boundary"] for r in m.layers),
                 "max_code_diff": max(r["max_code_diff"] for r in m.layers)} for m in demo.models]),
        "Details: `integer_layers.csv`.",
        "",
        "## RTL agreement",
        "",
        f"{exact}/{len(rtl_models)} models bit-exact at every layer on the RTL.  Each image runs alone; "
        "cycles are measured start..done of the accelerator runs (two passes for the signed 8-bit input layer) and checked "
        "against hw.cycles.gemm_cycles.  apot runs its shift-add PE array (activation codes decoded to values once per row).",
        "",
        markdown_table(rtl_summary_rows(demo), {"cycles_per_image": ".0f", "build_s": ".1f", "sim_s": ".2f"}),
        "Per layer: `rtl_layers.csv`.",
        "",
        "## Cycles and energy per inference",
        "",
        "Estimator (reports.estimator, own output-stationary array, batch 1) with each layer at its own precision; MAC "
        "energies scaled from Yosys synthesis of 4x4 array cores relative to the 8-bit int array (Horowitz 45 nm anchor); "
        "compute = MAC + PE registers, where the PE kinds differ; every weight is read from DRAM once per inference, "
        "which dominates at batch 1.  asq = what an ASQ output stage adds (reports.estimator.asq_stage_energy): the "
        "layer's relu(t) is held in the output buffer while the pool unit sums it per channel and the host runs the "
        "fp32 adapter on the sums; a second pass requantizes the held values (its cycles are in the layer's).",
        "",
        markdown_table(energy_summary_rows(demo), {**{f"{p}_nj": ".3f" for p in (*DEMO_ENERGY_PARTS, "compute", "energy")},
                                           "rtl_cycles": ".0f"}),
        "Per layer: `energy_layers.csv`.  Plots: `accuracy_vs_bits.png`, `energy_per_inference.png`.",
        "",
        "## Wall time",
        "",
        "train and integer run on the main thread; synthesis (Yosys) on its own thread and rtl (Verilator builds + "
        "simulation, summed over the models, two at a time) on two more, at the same time, so the parts add up to "
        "more than the total.",
        "",
        markdown_table([{"stage": key, "seconds": value} for key, value in demo.seconds.items()], {"seconds": ".1f"}),
    ]
    failures = demo.failures
    if failures:
        lines += ["## Failed checks", ""] + [f"* {failure}" for failure in failures] + [""]
    return "\n".join(lines)


def write_demo_report(writer: ReportWriter, demo: DemoResult) -> None:
    writer.table("accuracy", accuracy_rows(demo), "Accuracy: float vs fake-quant vs integer")
    writer.table("integer_layers", bound_rows(demo), "Integer vs fake-quant per layer (golden.bounds)")
    writer.table("rtl", rtl_summary_rows(demo), "RTL agreement per model")
    writer.table("rtl_layers", rtl_rows(demo), "RTL per layer: bit-exactness and measured cycles per image")
    writer.table("energy", energy_summary_rows(demo), "Cycles and energy per inference (estimator)")
    writer.table("energy_layers", [row for m in demo.models for row in m.energy], "Energy per layer (estimator)")
    writer.figure("accuracy_vs_bits.png", accuracy_figure(demo))
    writer.figure("energy_per_inference.png", energy_figure(demo))
    payload = {
        "dataset": demo.options.source.name,
        "options": {key: (str(value) if isinstance(value, Path) else value) for key, value in dataclasses.asdict(demo.options).items()},
        "float_accuracy": demo.float_accuracy, "seconds": demo.seconds, "failures": demo.failures,
        "models": [{"name": m.name, "scheme": m.scheme, "bits": m.bits, "fake_quant_accuracy": m.fake_quant_accuracy,
                    "integer_accuracy": m.integer_accuracy, "changed_predictions": m.changed_predictions,
                    "layers": m.layers, "export_notes": m.export_notes, "network": m.network_file,
                    "checkpoint": m.checkpoint_file,
                    "rtl": None if m.rtl is None else {**dataclasses.asdict(m.rtl), "bit_exact": m.rtl.bit_exact,
                                                       "integer_predictions": m.integer_rtl_predictions},
                    "energy": m.energy} for m in demo.models],
    }
    writer.text("summary.json", json_text(payload))
    writer.text("summary.md", summary_markdown(demo))


def describe(demo: DemoResult) -> str:
    """The few lines the CLI prints at the end."""
    rtl = [m for m in demo.models if m.rtl is not None]
    lines = [f"float accuracy {demo.float_accuracy:.4f}; {len(demo.models)} quantized models"]
    for m in demo.models:
        status = "-" if m.rtl is None else ("RTL bit-exact" if m.rtl.bit_exact else "RTL MISMATCH")
        lines.append(f"  {m.name:12s} fake-quant {m.fake_quant_accuracy:.4f} integer {m.integer_accuracy:.4f} "
                     f"changed {m.changed_predictions:3d} bound {'ok' if m.within_bound else 'VIOLATED'}  {status}")
    lines.append(f"RTL: {sum(m.rtl.bit_exact for m in rtl)}/{len(rtl)} models bit-exact; "
                 f"wall time {demo.seconds['total']:.0f} s; report in {demo.options.out}/summary.md")
    return "\n".join(lines)
