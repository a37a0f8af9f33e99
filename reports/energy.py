"""Per-access energy table and the PE MAC energy scaled from synthesis.

Defaults are Horowitz (ISSCC 2014), 45 nm:

* SRAM: 10 / 20 / 100 pJ per 64-bit access at 8 KB / 32 KB / 1 MB.  Other capacities use the
  least-squares power law through those three points (``E ~ capacity^0.47``); energy per bit is
  ``E / 64``.
* PE registers (operand and accumulator flip-flops): a register bit read or written is priced
  like one bit of Horowitz's 8-bit adder, 0.03 pJ / 8 = 0.00375 pJ — a flip-flop and a full
  adder switch comparable capacitance.  It makes one MAC's register traffic (~70 bits) cost
  about one MAC, Eyeriss' "RF access ~ MAC" ratio.
* DRAM: 1.3-2.6 nJ per 64 bits; the default is the midpoint, 1.95 nJ.
* Host-side arithmetic (the ASQ adapter, :func:`reports.estimator.asq_stage_energy`): fp32
  multiply 3.7 pJ, fp32 add 0.9 pJ, 32-bit integer add 0.1 pJ.
* MAC: an 8-bit integer multiply (0.2 pJ) plus an 8-bit add (0.03 pJ) anchors the synthesized
  8-bit (w8a8) ``int`` MAC array; every other configuration costs
  ``0.23 pJ * logic area per PE / logic area per PE of the int w8a8 array``, read from
  ``build/synth/synth.json`` (``make synth``), so INT/POT/POST/LCQ differ for measured reasons.
  The area is the OSU 0.18 um standard-cell area of the synthesized MAC array core
  (``"unit": "array"``: edge units such as the shared POST prescaler, PEs and accumulators;
  :mod:`hw.stdcell`) without its flip-flops (``area_um2 - register_area_um2``; the register term
  prices those from access counts), divided by its PE count.  A file from before the
  standard-cell flow scales by logic transistors instead (``transistors - 16 * dffs``, 16 being
  Yosys' CMOS cost of a ``$_DFF_P_``).  When several array sizes were synthesized, the one
  nearest in PE count to the design point is used, and the anchor is taken at that same size.
  Energy is taken as proportional to switched logic area: equal activity and supply for every
  PE kind — the stated approximation.  Liberty power with switching activity from the RTL
  waveform is not possible with the packaged OpenSTA (2.0.17): it reads neither VCD nor SAIF,
  only global or per-pin activity settings.

Clock: a design point without a set ``clock_mhz`` runs at the slower of its array core's and its
output lane's measured maximum clock (``fmax_mhz``: OSU 0.18 um standard cells, OpenSTA register
to register, :mod:`hw.stdcell`; no wires).  The lane's requantizer multiply (a pipeline stage of
its own, still a 17 x 18-bit product in one cycle) is slower than most array cores, and the
whole accelerator (``make synth``'s ``accelerator_*`` row) is timed by it.  The lane is the kind's own (LCQ's with its thresholds),
else int's plain one; the residual lane and the pool unit, slower still, would bound networks
that use them and are not applied.  200 MHz when the synthesis file predates the flow.

Every value can be overridden from a TOML or JSON file with the keys of :data:`DEFAULTS`; an
unknown key, a wrong type or a non-positive value raises :class:`~golden.errors.ConfigError`.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

import hw
from golden.errors import ConfigError
from golden.spec import WeightScheme
from hw import kinds, sram
from hw.synth_record import SynthRecord, SynthReport, UnitType


@dataclass(frozen=True)
class EnergyTable:
    """Energies in pJ (see module docstring for sources)."""

    int8_mult_pj: float = 0.2
    int8_add_pj: float = 0.03
    sram_8kb_pj_per_64b: float = 10.0
    sram_32kb_pj_per_64b: float = 20.0
    sram_1mb_pj_per_64b: float = 100.0
    dram_pj_per_64b: float = 1950.0
    register_pj_per_bit: float = 0.03 / 8
    fp32_mult_pj: float = 3.7
    fp32_add_pj: float = 0.9
    int32_add_pj: float = 0.1

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"energy setting {field.name} must be a positive number, got {value!r}")

    @property
    def mac_anchor_pj(self) -> float:
        """Energy of the reference 8x8 integer MAC."""
        return self.int8_mult_pj + self.int8_add_pj

    def sram_pj_per_bit(self, capacity_kb) -> np.ndarray:
        """Energy per bit accessed in an SRAM of ``capacity_kb`` KB (power law through Horowitz's points, :mod:`hw.sram`)."""
        return sram.pj_per_bit(capacity_kb, ((8.0, self.sram_8kb_pj_per_64b), (32.0, self.sram_32kb_pj_per_64b),
                                             (1024.0, self.sram_1mb_pj_per_64b)))

    @property
    def dram_pj_per_bit(self) -> float:
        return self.dram_pj_per_64b / 64.0


DEFAULTS = EnergyTable()


def load_energy_table(path: str | Path | None) -> EnergyTable:
    """The default table, overridden by a TOML/JSON file (flat ``key = value``)."""
    if path is None:
        return DEFAULTS
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"energy config {path} does not exist")
    try:
        settings = tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"energy config {path} is not valid {path.suffix[1:].upper() or 'JSON'}: {error}") from None
    if not isinstance(settings, dict):
        raise ConfigError(f"energy config {path} must hold a table of settings")
    known = {field.name for field in fields(EnergyTable)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"energy config {path}: unknown key(s) {unknown}; known keys are {sorted(known)}")
    return EnergyTable(**settings)


# --- synthesis figures -------------------------------------------------------------------------

DEFAULT_SYNTH_PATH = Path("build/synth/synth.json")


@dataclass(frozen=True)
class Synthesis:
    """Synthesized units from ``make synth`` and the PE energies scaled from them."""

    yosys_version: str
    units: tuple[SynthRecord, ...]

    @property
    def arrays(self) -> tuple[SynthRecord, ...]:
        """The MAC array cores: the units PE energies are scaled from."""
        return tuple(unit for unit in self.units if unit.unit == UnitType.ARRAY)

    def unit(self, pe_kind: str, weight_bits: int, act_bits: int, frac_bits: int,
             rows: int | None = None, cols: int | None = None) -> SynthRecord:
        """The array unit of one PE configuration; of several sizes, the nearest in PE count (ties: larger)."""
        kinds.pe_kind(pe_kind)
        key = (pe_kind, weight_bits, act_bits, frac_bits)
        matches = [unit for unit in self.arrays if unit.key == key]
        if not matches:
            raise ConfigError(f"no synthesized array unit for (pe_kind, weight_bits, act_bits, frac_bits)={key}; "
                              f"synthesized: {self.configurations()}")
        pes = (rows or 1) * (cols or 1) if rows or cols else max(unit.pes for unit in matches)
        return min(matches, key=lambda unit: (abs(math.log(unit.pes / pes)), -unit.pes, unit.name))

    def anchor(self, rows: int | None = None, cols: int | None = None) -> SynthRecord:
        """The 8-bit (w8a8) integer array that Horowitz's 8-bit multiply + add is pinned to."""
        kind = kinds.network_kind(WeightScheme.INT).name
        try:
            return self.unit(kind, 8, 8, 0, rows, cols)
        except ConfigError:
            raise ConfigError(f"synthesis results have no 8-bit {kind!r} array unit (weight_bits=8, act_bits=8, "
                              "frac_bits=0) to anchor energies to; re-run `make synth`") from None

    def mac_pj(self, pe_kind: str, weight_bits: int, act_bits: int, frac_bits: int, table: EnergyTable = DEFAULTS,
               rows: int | None = None, cols: int | None = None) -> float:
        """Energy of one MAC: ``anchor_pj * logic area/PE / the int w8a8 array's`` (module docstring; logic
        transistors where either unit has no standard-cell area)."""
        unit, anchor = self.unit(pe_kind, weight_bits, act_bits, frac_bits, rows, cols), self.anchor(rows, cols)
        if unit.logic_area_per_pe is not None and anchor.logic_area_per_pe is not None:
            return table.mac_anchor_pj * unit.logic_area_per_pe / anchor.logic_area_per_pe
        return table.mac_anchor_pj * unit.logic_transistors_per_pe / anchor.logic_transistors_per_pe

    def clock_mhz(self, pe_kind: str, weight_bits: int, act_bits: int, frac_bits: int,
                  rows: int | None = None, cols: int | None = None) -> float | None:
        """The design point's clock: the slower of its array core and its output lane (module docstring), if measured."""
        core = self.unit(pe_kind, weight_bits, act_bits, frac_bits, rows, cols).fmax_mhz
        lane = self.output_lane_mhz(pe_kind)
        return core if lane is None or core is None else min(core, lane)

    def output_lane_mhz(self, pe_kind: str) -> float | None:
        """The fastest synthesized output lane of ``pe_kind`` (int's where it has none): the plain lane every
        network needs; a residual or threshold-free variant is not told apart by its record, so the fastest."""
        lanes = {kind: [u.fmax_mhz for u in self.units if u.unit == UnitType.REQUANT and u.pe_kind == kind
                        and u.fmax_mhz is not None] for kind in (pe_kind, kinds.network_kind(WeightScheme.INT).name)}
        found = lanes[pe_kind] or lanes[kinds.network_kind(WeightScheme.INT).name]
        return max(found) if found else None

    def configurations(self) -> list[tuple[str, int, int, int]]:
        """PE configurations with a synthesized array unit (the ones a sweep can price)."""
        return sorted({unit.key for unit in self.arrays})


def load_synthesis(path: str | Path = DEFAULT_SYNTH_PATH) -> Synthesis:
    """Parse and validate the synthesis JSON written by ``make synth`` (schema: :mod:`hw.synth_record`)."""
    report = SynthReport.read(Path(path))
    if report.from_these_sources is False:
        raise ConfigError(f"synthesis results {path} were made from other hw sources (hw_fingerprint "
                          f"{report.hw_fingerprint}, now {hw.SOURCE_FINGERPRINT}); re-run `make synth`")
    return Synthesis(report.yosys_version, report.units)
