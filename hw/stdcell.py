"""Standard-cell flow on OSU 0.18 um: Yosys maps onto the Liberty cells, OpenSTA times the netlist.

Why a real cell library: ``stat -tech cmos`` counts transistors but knows no delay, so neither
the ASQ paper's "POST multiplies about b-fold faster" nor the estimator's clock can be checked
from it.  The library is Debian ``qflow-tech-osu018`` (Oklahoma State University cells, typical
corner, 1.8 V, 25 C; areas in um^2, delays in ns, no wire-load model, so nets count only pin
capacitance).

Mapping (:func:`yosys_commands`, appended to :mod:`hw.synth`'s script after the generic
``synth -flatten``): ``dfflibmap -liberty`` (every flip-flop a ``DFFPOSX1``; synchronous resets
and enables become gates), ``abc -liberty -constr -D 10000`` (area-oriented mapping at a loose
10 ns target, then abc's ``buffer``/``upsize``/``dnsize`` on high-fanout nets, with the port
drive and load below), ``stat -liberty`` for the area (buffers included).  Constants: the library has no tie cells, so a constant output is left
as ``assign port = 1'b0/1`` in the netlist: tied to the rail, no area, and OpenSTA reads it as a
constant net without timing arcs (abc folds constants off every cell input).

Timing (:func:`sta_script`), OpenSTA with the library's tables: every input port is driven by an
``INVX1`` output and every output port loads one ``INVX1`` input (the library's smallest cell),
the clock is ideal (no clock tree).

* registered units (arrays, lanes, pool): ``create_clock`` on ``clk``; the critical path is the
  worst register-to-register path (clock-to-Q + logic + setup), ports excluded;
* combinational PEs: a virtual clock with input and output delays of 0, so the critical path
  is the worst input-to-output delay.

Both report ``period - worst slack`` at a loose :data:`PERIOD_NS`; ``fmax = 1000 / that``.

The whole accelerator (:func:`macro_commands`): its buffers are not mapped onto cells.  After the
coarse half of ``synth`` each buffer's ``$mem_v2`` is dumped (its geometry: :mod:`hw.sram`
prices it), stripped of its parameters and renamed to a black-box cell of its own
(``lutmac_sram_<name>``), which every later pass leaves alone and OpenSTA links as a black box;
the area adds the modelled area of one single-port macro per bank (:meth:`hw.sram.SramMacro.banks`)
to the cells'.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from golden.errors import ToolMissingError

from . import sram
from .layout import BANKS

LIBERTY = Path("/usr/share/qflow/tech/osu018/osu018_stdcells.lib")
LIBRARY_NAME = "osu018_stdcells"
STA = "sta"
PORT_CELL = "INVX1"  # drives every input port, loads every output port
PORT_LOAD_FF = 9.32  # INVX1's input pin capacitance (0.00932 pF), abc's output load
ABC_DELAY_TARGET_PS = 10000  # loose: abc maps for area, then buffers and sizes within it
PERIOD_NS = 100.0  # loose: the critical path is read off the slack
STA_TIMEOUT_SECONDS = 300
FLIP_FLOP = "DFFPOSX1"  # the library's flip-flop (dfflibmap's only choice), the SRAM bit cells' yardstick
MACRO_PREFIX = "lutmac_sram_"
MACRO_DUMP = "sram_macros.txt"
#: every parameter of a ``$mem_v2`` cell (OpenSTA reads no parameters on an instance)
MEMORY_PARAMETERS = ("ABITS", "INIT", "MEMID", "OFFSET", "RD_ARST_VALUE", "RD_CE_OVER_SRST", "RD_CLK_ENABLE",
                     "RD_CLK_POLARITY", "RD_COLLISION_X_MASK", "RD_INIT_VALUE", "RD_PORTS", "RD_SRST_VALUE",
                     "RD_TRANSPARENCY_MASK", "RD_WIDE_CONTINUATION", "SIZE", "WIDTH", "WR_CLK_ENABLE",
                     "WR_CLK_POLARITY", "WR_PORTS", "WR_PRIORITY_MASK", "WR_WIDE_CONTINUATION")


def liberty(path: Path | None = None) -> Path:
    """The Liberty file (default :data:`LIBERTY`), or a one-line error saying which package provides it."""
    path = LIBERTY if path is None else path
    if not Path(path).is_file():
        raise ToolMissingError(f"Liberty file {path} not found: install Debian package qflow-tech-osu018 (make apt)")
    return Path(path)


def sta_binary() -> str:
    found = shutil.which(STA)
    if found is None:
        raise ToolMissingError(f"OpenSTA ({STA!r}) not found on PATH: install Debian package opensta (make apt)")
    return found


def sta_version() -> str:
    result = subprocess.run([sta_binary(), "-version"], capture_output=True, text=True, check=True)
    return f"OpenSTA {result.stdout.strip()}"


def macro_commands(work: Path, buffers: tuple[str, ...]) -> list[str]:
    """Yosys commands, between ``synth -run :fine`` and ``synth -run fine:check``, that turn the
    memories named ``buffers`` (absent ones are skipped) into black-box macros; geometry to ``work/sram_macros.txt``."""
    dump = work / MACRO_DUMP
    lines = [f"tee -q -o {dump} log SRAM macros"]
    for name in buffers:
        cell = f"t:$mem_v2 n:{name} %i"
        macro = f"t:{MACRO_PREFIX}{name} n:{name} %i"  # a $mem_v2 checks its parameters: rename it first
        lines += [f"chtype -set {MACRO_PREFIX}{name} {cell}", f"setparam -unset INIT {macro}",
                  f"tee -q -a {dump} dump {macro}", f"setparam {' '.join(f'-unset {p}' for p in MEMORY_PARAMETERS)} {macro}"]
    return lines


def macros(work: Path) -> list[sram.SramMacro]:
    """The memories :func:`macro_commands` recorded (one per buffer, both banks)."""
    return sram.from_yosys_dump((work / MACRO_DUMP).read_text())


def yosys_commands(work: Path, lib: Path) -> list[str]:
    """Yosys commands mapping the design in memory (after ``synth -flatten``) onto the library.

    ``-constr`` makes abc buffer high-fanout nets and size cells (without it one INVX1 drove a
    whole array's accumulator control: a 33 ns net); its ports match :func:`sta_script`'s.
    """
    constraints = work / "abc.constr"
    constraints.write_text(f"set_driving_cell {PORT_CELL}\nset_load {PORT_LOAD_FF}\n")
    return [
        f"dfflibmap -liberty {lib}",
        f"abc -liberty {lib} -constr {constraints} -D {ABC_DELAY_TARGET_PS}",
        "opt_clean -purge",
        "setundef -zero",
        f"tee -q -o {work / 'stdcell_stat.txt'} stat -liberty {lib}",
        f"write_verilog -noattr -noexpr -nohex -nodec {work / 'stdcell_net.v'}",
    ]


def sta_script(netlist: Path, top: str, lib: Path, registered: bool) -> str:
    """The OpenSTA script for one netlist (constraints: module docstring)."""
    if registered:
        clock = f"create_clock -name clk -period {PERIOD_NS} [get_ports clk]"
        check = "report_checks -path_delay max -from [all_registers -clock_pins] -to [all_registers -data_pins] -digits 4"
        delays = []
    else:
        clock = f"create_clock -name vclk -period {PERIOD_NS}"
        check = "report_checks -path_delay max -digits 4"
        delays = ["set_input_delay 0 -clock vclk [all_inputs]", "set_output_delay 0 -clock vclk [all_outputs]"]
    return "\n".join([
        f"read_liberty {lib}",
        f"read_verilog {netlist}",
        f"link_design {top}",
        clock,
        *delays,
        f"set_driving_cell -lib_cell {PORT_CELL} -pin Y [all_inputs]",
        f"set_load [get_property [get_lib_pins {LIBRARY_NAME}/{PORT_CELL}/A] capacitance] [all_outputs]",
        check,
        "exit",
    ]) + "\n"


def measure(work: Path, top: str, registered: bool, lib: Path, with_macros: bool = False) -> dict:
    """``area_um2``, ``register_area_um2``, ``critical_path_ns`` and ``fmax_mhz`` of the netlist
    :func:`yosys_commands` wrote; ``with_macros``: plus the SRAM macros of :func:`macro_commands`
    (``sram_macros``, ``sram_bits``, ``sram_area_um2``; ``area_um2`` then includes them)."""
    stat = (work / "stdcell_stat.txt").read_text()
    area = re.search(r"Chip area for module .*?:\s+([\d.]+)", stat)
    if not area:
        raise RuntimeError(f"{top}: no 'Chip area' in {work / 'stdcell_stat.txt'} (cells missing from the Liberty file?)")
    flip_flop_um2 = sram.liberty_cell_area(lib, FLIP_FLOP)
    flip_flops = re.search(rf"^\s+{FLIP_FLOP}\s+(\d+)\s*$", stat, re.MULTILINE)
    figures = {"register_area_um2": round(flip_flop_um2 * int(flip_flops.group(1)) if flip_flops else 0.0, 1)}
    cell_area = float(area.group(1))
    if with_macros:
        found = [bank for memory in macros(work) for bank in memory.banks(BANKS)]
        macro_area = sum(macro.area_um2(flip_flop_um2) for macro in found)
        figures |= {"sram_macros": tuple(macro.text() for macro in found), "sram_bits": sum(m.bits for m in found),
                    "sram_area_um2": round(macro_area, 1)}
        cell_area += macro_area
    script = work / "sta.tcl"
    script.write_text(sta_script(work / "stdcell_net.v", top, lib, registered))
    result = subprocess.run([sta_binary(), "-no_splash", "-exit", str(script)], capture_output=True, text=True,
                            timeout=STA_TIMEOUT_SECONDS)
    (work / "sta.log").write_text(result.stdout + result.stderr)
    slack = re.search(r"^\s*(-?[\d.]+)\s+slack \((?:MET|VIOLATED)\)", result.stdout, re.MULTILINE)
    if result.returncode or not slack or "Error" in result.stdout:
        raise RuntimeError(f"{top}: OpenSTA reported no {'register-to-register' if registered else 'input-to-output'} "
                           f"path; see {work / 'sta.log'}")
    path_ns = PERIOD_NS - float(slack.group(1))
    return figures | {"area_um2": round(cell_area, 1), "critical_path_ns": round(path_ns, 4),
                      "fmax_mhz": round(1000.0 / path_ns, 2)}
