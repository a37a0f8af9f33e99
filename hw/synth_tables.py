"""The standard-cell and FPGA tables of ``synth.md``, the PE timing table (CSV, plot) and the PoTAcc comparison.

Why a PE timing table: the ASQ paper says POST multiplies "approximately b-fold faster" than
uniform quantization; the critical path of each kind's PE against int's at the same bits (from
OpenSTA, :mod:`hw.stdcell`) tests that.  Why the PoTAcc table: PoTAcc (ICECS 2024) reports
shift-based PoT/APoT designs using 23-31 % fewer LUTs and 21-33 % fewer DSPs than its multiplier
design on FPGA; lutmac's ECP5 array cores give the same ratios for its own kinds.
"""

from __future__ import annotations

import io

from golden.spec import WeightScheme

from . import fpga, sram
from .kinds import KINDS, network_kind
from .synth_record import SynthRecord, UnitType

#: PoTAcc (ICECS 2024), shift-based PoT/APoT designs vs. the multiplier design: % fewer LUTs and DSPs
POTACC_FEWER_LUT_PCT = (23, 31)
POTACC_FEWER_DSP_PCT = (21, 33)
#: the kinds PoTAcc's shift designs correspond to
SHIFT_KINDS = ("pot", "apot", "post_shared")
TIMING_CSV_COLUMNS = ("pe_kind", "bits", "frac_bits", "critical_path_ns", "int_critical_path_ns", "speedup_vs_int")


def _cell(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def flow_table(units: list[SynthRecord]) -> list[str]:
    """Markdown lines: every unit's standard-cell area and timing and its FPGA utilization and Fmax."""
    lines = ["| unit | transistors | area um^2 | critical path ns | fmax MHz | iCE40 LC | iCE40 Fmax MHz | "
             "ECP5 LUT4 | ECP5 DSP | ECP5 FF | ECP5 Fmax MHz |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for u in units:
        lc = "-" if u.ice40_lc is None else f"{u.ice40_lc}" + (" (does not fit)" if u.ice40_fmax_mhz is None else "")
        lines.append(f"| {u.name} | {u.transistors} | {_cell(u.area_um2, 0)} | {_cell(u.critical_path_ns, 3)} | "
                     f"{_cell(u.fmax_mhz, 1)} | {lc} | {_cell(u.ice40_fmax_mhz, 1)} | {_cell(u.ecp5_lut4)} | "
                     f"{_cell(u.ecp5_dsp)} | {_cell(u.ecp5_ff)} | {_cell(u.ecp5_fmax_mhz, 1)} |")
    return lines


def accelerator_table(units: list[SynthRecord]) -> list[str]:
    """Markdown lines: every whole accelerator's logic and SRAM area, clock and FPGA figures."""
    lines = ["| unit | kind | R x C | logic mm^2 | SRAM mm^2 | total mm^2 | SRAM kbit | fmax MHz | iCE40 LUT4 | "
             "iCE40 BRAM | ECP5 LUT4 | ECP5 DSP | ECP5 BRAM | ECP5 Fmax MHz |", "|" + "---|" * 14]
    for u in units:
        if u.unit != UnitType.ACCELERATOR or u.area_um2 is None:
            continue
        sram_um2 = u.sram_area_um2 or 0.0
        lines.append(f"| {u.name} | {u.pe_kind} | {u.rows}x{u.cols} | {(u.area_um2 - sram_um2) * 1e-6:.3f} | "
                     f"{sram_um2 * 1e-6:.3f} | {u.area_um2 * 1e-6:.3f} | {(u.sram_bits or 0) / 1024:.1f} | "
                     f"{_cell(u.fmax_mhz, 1)} | {u.ice40_lut4} | {u.ice40_bram} | {_cell(u.ecp5_lut4)} | {_cell(u.ecp5_dsp)} | "
                     f"{_cell(u.ecp5_bram)} | {_cell(u.ecp5_fmax_mhz, 1)} |")
    return lines


def macro_table(units: list[SynthRecord]) -> list[str]:
    """Markdown lines: every accelerator's SRAM macros with their geometry and energy per bit."""
    lines = ["| unit | macro | words x bits | ports | KB | pJ per bit accessed |", "|---|---|---|---|---|---|"]
    for u in units:
        for macro in map(sram.SramMacro.parse, u.sram_macros):
            lines.append(f"| {u.name} | {macro.name} | {macro.words} x {macro.width} | {macro.ports} | "
                         f"{macro.kilobytes:.2f} | {macro.pj_per_bit:.3f} |")
    return lines


def _default_frac(record: SynthRecord) -> bool:
    return record.frac_bits == KINDS[record.pe_kind].datapath(record.weight_bits, record.act_bits).frac_bits


def pe_timing(units: list[SynthRecord]) -> list[dict]:
    """One row per PE (at its format's default F) with a critical path: its path, int's at the same bits, the ratio."""
    pes = [u for u in units if u.unit == UnitType.PE and u.critical_path_ns is not None and _default_frac(u)]
    int_kind = network_kind(WeightScheme.INT).name
    reference = {u.weight_bits: u.critical_path_ns for u in pes if u.pe_kind == int_kind}
    rows = []
    for u in sorted(pes, key=lambda u: (list(KINDS).index(u.pe_kind), u.weight_bits)):
        base = reference.get(u.weight_bits)
        rows.append({"pe_kind": u.pe_kind, "bits": u.weight_bits, "frac_bits": u.frac_bits,
                     "critical_path_ns": u.critical_path_ns, "int_critical_path_ns": base,
                     "speedup_vs_int": None if base is None else round(base / u.critical_path_ns, 3)})
    return rows


def pe_timing_table(rows: list[dict]) -> list[str]:
    """Markdown lines: kind x bits, critical path in ns and int's path over it (x faster)."""
    bits = sorted({row["bits"] for row in rows})
    by_key = {(row["pe_kind"], row["bits"]): row for row in rows}
    lines = ["| kind | " + " | ".join(f"{b} bits: ns (x faster than int)" for b in bits) + " |",
             "|---|" + "---|" * len(bits)]
    for kind in dict.fromkeys(row["pe_kind"] for row in rows):
        cells = []
        for b in bits:
            row = by_key.get((kind, b))
            cells.append("-" if row is None else f"{row['critical_path_ns']:.3f}"
                         + ("" if row["speedup_vs_int"] is None else f" ({row['speedup_vs_int']:.2f}x)"))
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines


def pe_timing_csv(rows: list[dict]) -> str:
    lines = [",".join(TIMING_CSV_COLUMNS)]
    lines += [",".join("" if row[c] is None else str(row[c]) for c in TIMING_CSV_COLUMNS) for row in rows]
    return "\n".join(lines) + "\n"


def pe_timing_png(rows: list[dict]) -> bytes:
    """The PE critical paths against bits, one line per kind, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind in dict.fromkeys(row["pe_kind"] for row in rows):
        mine = [row for row in rows if row["pe_kind"] == kind]
        ax.plot([r["bits"] for r in mine], [r["critical_path_ns"] for r in mine], marker="o", label=kind)
    ax.set(xlabel="weight = activation bits", ylabel="critical path (ns, OSU 0.18 um, OpenSTA)",
           title="PE input-to-output critical path")
    ax.set_xticks(sorted({row["bits"] for row in rows}))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return buffer.getvalue()


def _fewer(value: int, base: int) -> str:
    return f"{100.0 * (base - value) / base:.1f}%" if base else "n/a (int uses none)"


def potacc_comparison(units: list[SynthRecord]) -> list[str]:
    """Markdown lines: ECP5 LUT4 and DSP of every array core at default F against int's, beside PoTAcc's range."""
    arrays = [u for u in units if u.unit == UnitType.ARRAY and u.ecp5_lut4 is not None and _default_frac(u)]
    int_kind = network_kind(WeightScheme.INT).name
    reference = {(u.weight_bits, u.rows): u for u in arrays if u.pe_kind == int_kind}
    lines = ["| kind | bits | R x C | ECP5 LUT4 | int LUT4 | fewer LUTs | DSP | int DSP | fewer DSPs | "
             "PoTAcc fewer LUTs | PoTAcc fewer DSPs |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    potacc = (f"{POTACC_FEWER_LUT_PCT[0]}-{POTACC_FEWER_LUT_PCT[1]}%", f"{POTACC_FEWER_DSP_PCT[0]}-{POTACC_FEWER_DSP_PCT[1]}%")
    for u in sorted(arrays, key=lambda u: (u.weight_bits, u.rows, list(KINDS).index(u.pe_kind))):
        base = reference.get((u.weight_bits, u.rows))
        if base is None or u.pe_kind == int_kind:
            continue
        shift = potacc if u.pe_kind in SHIFT_KINDS else ("-", "-")
        lines.append(f"| {u.pe_kind} | {u.weight_bits} | {u.rows}x{u.cols} | {u.ecp5_lut4} | {base.ecp5_lut4} | "
                     f"{_fewer(u.ecp5_lut4, base.ecp5_lut4)} | {u.ecp5_dsp} | {base.ecp5_dsp} | "
                     f"{_fewer(u.ecp5_dsp, base.ecp5_dsp)} | {shift[0]} | {shift[1]} |")
    return lines


def flow_sections(tool_versions: dict[str, str], units: list[SynthRecord]) -> list[str]:
    """The standard-cell/FPGA, PE timing and PoTAcc sections of ``synth.md`` (constraints stated in the text)."""
    lines = ["", "## Standard cells (OSU 0.18 um) and FPGA place-and-route", "",
              f"Tools: {', '.join(f'{k} `{v}`' for k, v in tool_versions.items()) or 'none recorded'}. "
              "Standard cells (hw.stdcell): `dfflibmap -liberty` + `abc -liberty -constr -D 10000` (area mapping, "
              "then buffering and sizing of high-fanout nets) on the generic `synth -flatten` result, `stat -liberty` area (no tie cells in the library: constant outputs are tied to the rails, "
              "no area, no timing arc); OpenSTA with inputs driven by an INVX1 and outputs loading one INVX1 input, "
              "no wire load, ideal clock. Critical path: register to register at `clk` for arrays, lanes and the "
              "pool unit; input to output (a virtual clock, input/output delays 0) for the combinational PEs; "
              f"fmax = 1000 / path. FPGA (hw.fpga): nextpnr-ice40 `{' '.join(fpga.ICE40_DEVICE)}` "
              f"(LC = packed logic cells) and nextpnr-ecp5 `{' '.join(fpga.ECP5_DEVICE)}` (LUT4 = "
              f"TRELLIS_COMB, DSP = MULT18X18D), timing-driven at {fpga.TARGET_MHZ} MHz, seed 1; Fmax = "
              "nextpnr's post-route figure; a PE is placed between registers on all its ports for its FPGA Fmax. "
              "`-`: the flow did not run on that unit (array cores and accelerators run both FPGA flows, PEs and "
              "lanes iCE40 only; the pool unit needs more pins than the HX8K has).", ""] + flow_table(units)
    accelerators = accelerator_table(units)
    if len(accelerators) > 2:
        lines += ["", "## The whole accelerator, buffers included", "",
                  "hw.top.Accelerator: buffers, controller, MAC array, output lanes. Standard cells: the buffers are "
                  "SRAM macros priced by hw.sram (OpenRAM's bit cells scaled by this library's flip-flop, OpenRAM's "
                  "published SCMOS density for the periphery; Horowitz's 45 nm access energies scaled by C V^2 to "
                  "0.18 um, 1.8 V); the clock is the logic's, register to register, with the macro ports untimed "
                  "(the model has no access time). FPGAs: the buffers map to block RAM (iCE40 SB_RAM40_4K, ECP5 "
                  "DP16KD; the iCE40 figures are synth_ice40's counts, not placed: the buffers need more block RAM "
                  "than the HX8K's 32); on the ECP5 the accelerator sits behind a three-pin serial wrapper (hw.fpga."
                  "SerialPorts: its host bus is wider than the package's pins), whose chains are in its figures.",
                  ""] + accelerators
        lines += ["", "SRAM macros (0.18 um, 1.8 V):", ""] + macro_table(units)
    timing = pe_timing(units)
    if timing:
        lines += ["", "## PE critical path against int (the ASQ paper's \"b-fold faster\" claim)", "",
                  "OpenSTA input-to-output path of each PE at its format's default F; (Nx) = int's path / this "
                  "one's at the same bits. Also `pe_timing.csv` and `pe_timing.png`.", ""]
        lines += pe_timing_table(timing)
    potacc = potacc_comparison(units)
    if len(potacc) > 2:
        lines += ["", "## ECP5 array cores against int, beside PoTAcc", "",
                  "PoTAcc (ICECS 2024) reports its shift-based PoT/APoT designs using {}-{}% fewer LUTs and {}-{}% "
                  "fewer DSPs than its multiplier design; lutmac's shift kinds are {}. ".format(
                      *POTACC_FEWER_LUT_PCT, *POTACC_FEWER_DSP_PCT, ", ".join(SHIFT_KINDS)) +
                  "Array cores at the default F; LUT4 and DSP after ECP5 place-and-route.", ""] + potacc
    return lines
