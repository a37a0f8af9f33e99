"""SRAM macro model: the area and access energy of the accelerator's buffers in OSU 0.18 um.

Why a model: the cell library has no memory compiler, and a buffer built of flip-flops (what
Yosys makes of a memory) costs many times the area of an SRAM macro, which would bury every PE
comparison under buffer area.  So in the standard-cell flow (:mod:`hw.stdcell`) the buffers stay
black boxes and each is priced here from published figures:

* **Bit cell** in the library's own units: OpenRAM's documentation (Guthaus et al., "OpenRAM:
  An Open-Source Memory Compiler", ICCAD 2016; docs/source/results.md, "Relative Planar
  Bitcells") draws a 6T cell (1rw) at 6.8 x 9.2 um, a 10T cell with an isolated read port (1rw +
  1r) at 10.9 x 13.9 um and the OSU library's D flip-flop at 21.9 x 21.2 um, all in the same SCMOS
  process.  Their ratios to that flip-flop, times this library's ``DFFPOSX1`` area, give the
  cells here (both libraries are OSU's, drawn alike).  Every buffer of :mod:`hw.top` is one
  memory with a read and a write port and the bank as the address LSB; as the host and the run
  never touch the same bank (hw.top refuses such writes), a designer builds it as one
  single-port (1rw, 6T) macro per bank (:meth:`SramMacro.banks`).  A bank that needs a second
  port (1rw + 1r) takes the 10T cell.
* **Array efficiency**: OpenRAM's published SCMOS density, 0.0050 Mb/mm^2 (its results table,
  "Comparison with Fabricated SRAMs", on par with the fabricated 0.5 um SRAMs listed there), is
  200 um^2 per bit against its 62.56 um^2 6T cell: 31.3 % of a macro is bit cells, the rest
  decoders, sense amplifiers and drivers.  One efficiency for every size: small macros are
  somewhat worse in reality.
* **Access energy**: Horowitz (ISSCC 2014), 45 nm at 0.9 V: 10 / 20 / 100 pJ per 64-bit access
  at 8 KB / 32 KB / 1 MB, the least-squares power law through those points for other sizes;
  scaled to 0.18 um at 1.8 V by C V^2 (capacitance with feature size, 4x; voltage squared,
  4x): 16x.  Reads and writes cost the same (Horowitz gives one figure).

Not modelled: the macro's access time (no published 0.18 um figure), so the accelerator's clock
from OpenSTA covers the logic between registers and treats the macro ports as untimed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden.errors import ConfigError

OPENRAM_6T_UM2 = 6.8 * 9.2
OPENRAM_10T_UM2 = 10.9 * 13.9
OPENRAM_DFF_UM2 = 21.9 * 21.2
OPENRAM_SCMOS_UM2_PER_BIT = 1e6 / 5000.0  # 0.0050 Mb/mm^2
ARRAY_EFFICIENCY = OPENRAM_6T_UM2 / OPENRAM_SCMOS_UM2_PER_BIT
#: Horowitz ISSCC 2014, 45 nm: (capacity in KB, pJ per 64-bit access)
HOROWITZ_45NM_SRAM = ((8.0, 10.0), (32.0, 20.0), (1024.0, 100.0))
#: C V^2 from 45 nm, 0.9 V to 0.18 um, 1.8 V
SCALE_45NM_TO_180NM = (180 / 45) * (1.8 / 0.9) ** 2


def power_law(points) -> tuple[float, float]:
    """``(slope, intercept)`` of the least-squares line through ``log(KB), log(pJ per 64 bits)``."""
    kib, pj = np.log(np.asarray(points, dtype=np.float64)).T
    slope, intercept = np.polyfit(kib, pj, 1)
    return float(slope), float(intercept)


def pj_per_bit(capacity_kb, points=HOROWITZ_45NM_SRAM) -> np.ndarray:
    """Energy per bit accessed in an SRAM of ``capacity_kb`` KB, at the node of ``points``."""
    slope, intercept = power_law(points)
    return np.exp(intercept + slope * np.log(np.asarray(capacity_kb, dtype=np.float64))) / 64.0


@dataclass(frozen=True)
class SramMacro:
    """One buffer (or one bank of it) as a macro: ``words`` x ``width`` bits with ``ports``."""

    name: str
    words: int
    width: int
    ports: str  # one of PORTS

    PORTS = ("1rw", "1r1w")  # one shared port (6T cell); a write and a separate read port (10T cell)

    def __post_init__(self) -> None:
        if min(self.words, self.width) < 1:
            raise ConfigError(f"SRAM macro {self.name}: {self.words} x {self.width} bits is not a memory")
        if self.ports not in self.PORTS:
            raise ConfigError(f"SRAM macro {self.name}: ports {self.ports!r} have no published cell in the model "
                              f"(one of {self.PORTS})")

    def banks(self, count: int) -> list[SramMacro]:
        """The ``count`` single-port macros of a banked buffer whose two ports never meet in one bank."""
        if self.ports != "1r1w" or self.words % count:
            raise ConfigError(f"SRAM macro {self.name} ({self.words} words, {self.ports}) does not split into "
                              f"{count} single-port banks")
        return [SramMacro(f"{self.name}.bank{bank}", self.words // count, self.width, "1rw") for bank in range(count)]

    @property
    def bits(self) -> int:
        return self.words * self.width

    @property
    def kilobytes(self) -> float:
        return self.bits / 8192

    def cell_um2(self, dff_um2: float) -> float:
        """The bit cell: 6T with one shared port, 10T with a separate read port."""
        cell = OPENRAM_10T_UM2 if self.ports == "1r1w" else OPENRAM_6T_UM2
        return dff_um2 * cell / OPENRAM_DFF_UM2

    def area_um2(self, dff_um2: float) -> float:
        return self.bits * self.cell_um2(dff_um2) / ARRAY_EFFICIENCY

    @property
    def pj_per_bit(self) -> float:
        """Read or write energy per bit at 0.18 um, 1.8 V."""
        return float(pj_per_bit(self.kilobytes)) * SCALE_45NM_TO_180NM

    def text(self) -> str:
        """``name:WORDSxWIDTH:PORTS``, the form ``synth.json`` keeps (:meth:`parse` reads it back)."""
        return f"{self.name}:{self.words}x{self.width}:{self.ports}"

    @classmethod
    def parse(cls, text: str) -> SramMacro:
        match = re.fullmatch(r"([\w.]+):(\d+)x(\d+):(\w+)", text)
        if not match:
            raise ConfigError(f"SRAM macro {text!r} is not name:WORDSxWIDTH:PORTS")
        name, words, width, ports = match.groups()
        return cls(name, int(words), int(width), ports)


def from_yosys_dump(dump: str) -> list[SramMacro]:
    """The memories of a Yosys ``dump`` of memory cells (``$mem_v2``'s parameters; INIT removed first)."""
    macros = []
    for cell in re.split(r"^\s*cell \S+ ", dump, flags=re.MULTILINE)[1:]:
        name = cell.split(None, 1)[0].lstrip("\\")
        params = dict(re.findall(r"parameter \\(\w+) (\S+)", cell))
        try:
            ports = f"{int(params['RD_PORTS'])}r{int(params['WR_PORTS'])}w"
            macros.append(SramMacro(name, int(params["SIZE"]), int(params["WIDTH"]), ports))
        except KeyError as missing:
            raise RuntimeError(f"Yosys dump of memory {name} has no parameter {missing}") from None
    return macros


def liberty_cell_area(liberty: Path, cell: str) -> float:
    """A cell's ``area`` in a Liberty file (the flip-flop the bit cells are scaled from)."""
    match = re.search(rf"cell\s*\(\s*{cell}\s*\)\s*\{{\s*area\s*:\s*([\d.]+)", Path(liberty).read_text())
    if not match:
        raise RuntimeError(f"cell {cell} with an area not found in {liberty}")
    return float(match.group(1))
