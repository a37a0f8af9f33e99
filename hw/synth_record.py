"""The ``synth.json`` schema, defined once: :mod:`hw.synth` writes it, the estimator and the demo read it.

``{"yosys_version": str, "hw_fingerprint": str, "tool_versions": {tool: str}, "units": [SynthRecord, ...]}``; the fingerprint is
:data:`hw.SOURCE_FINGERPRINT` of the sources the units were made from (absent in hand-made files).
Reading validates every field's type, so a file from another version fails with the field named.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from golden.errors import ConfigError

from . import SOURCE_FINGERPRINT
from .kinds import pe_kind
from .sram import SramMacro

#: Yosys ``stat -tech cmos`` counts one ``$_DFF_P_`` flip-flop as 16 transistors.
DFF_TRANSISTORS = 16


class UnitType(StrEnum):
    """What a synthesized unit is: a PE's product unit, a MAC array core, one output lane, the global pool unit
    or the whole accelerator (:class:`hw.top.Accelerator`: buffers, controller, array, output stage)."""

    PE = "pe"
    ARRAY = "array"
    REQUANT = "requant"
    POOL = "pool"  # hw.output_stage.GlobalPool of a whole row of columns (cols = the array's)
    ACCELERATOR = "accelerator"


@dataclass(frozen=True)
class SynthRecord:
    """One synthesized unit's figures (``rows``/``cols`` are 1 for PEs and lanes).

    The fields with defaults may be absent from a hand-made file (the estimator's minimal schema:
    an array unit with no flip-flops counted); ``hw.synth`` writes every field.
    """

    name: str
    pe_kind: str
    weight_bits: int
    act_bits: int
    frac_bits: int
    rows: int
    cols: int
    cells: int
    transistors: int
    ice40_lut4: int
    logic_depth: int
    unit: UnitType = UnitType.ARRAY
    dffs: int = 0
    accumulator_width: int | None = None
    product_bits: int | None = None
    ice40_carry: int = 0
    ice40_dff: int = 0
    ice40_bram: int = 0
    seconds: float = 0.0
    # standard-cell flow (hw.stdcell) and place-and-route (hw.fpga); None where a flow did not run.
    # area_um2: all of it (cells, and for an accelerator its SRAM macros); register_area_um2: its flip-flops
    area_um2: float | None = None
    register_area_um2: float | None = None
    critical_path_ns: float | None = None
    fmax_mhz: float | None = None
    ice40_lc: int | None = None
    ice40_fmax_mhz: float | None = None
    ecp5_lut4: int | None = None
    ecp5_dsp: int | None = None
    ecp5_ff: int | None = None
    ecp5_fmax_mhz: float | None = None
    ecp5_bram: int | None = None
    # an accelerator's buffers as SRAM macros (hw.sram: ``name:WORDSxWIDTH:RrWw`` each, their bits and area)
    sram_macros: tuple[str, ...] = ()
    sram_bits: int | None = None
    sram_area_um2: float | None = None

    @classmethod
    def from_json(cls, raw, where: str) -> SynthRecord:
        """A record from its JSON object; a missing, extra or mistyped field is a :class:`ConfigError` naming it."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: a unit must be an object")
        fields = {field.name: field for field in dataclasses.fields(cls)}
        required = {name for name, field in fields.items() if field.default is dataclasses.MISSING}
        missing, extra = sorted(required - set(raw)), sorted(set(raw) - set(fields))
        if missing or extra:
            raise ConfigError(f"{where}: " + "; ".join(
                part for part in (f"missing field(s) {missing}" if missing else "",
                                  f"unknown field(s) {extra}" if extra else "") if part) + " (re-run `make synth`)")
        hints = typing.get_type_hints(cls)
        raw = dict(raw)
        macros = raw.get("sram_macros", ())
        if not isinstance(macros, list | tuple) or not all(isinstance(macro, str) for macro in macros):
            raise ConfigError(f"{where}: field 'sram_macros' must be a list of strings, got {macros!r}")
        raw["sram_macros"] = tuple(macros)
        for macro in macros:
            SramMacro.parse(macro)
        for name, value in raw.items():
            if name == "sram_macros":
                continue
            accepted = {float: (int, float), float | None: (int, float, type(None)), UnitType: str}.get(hints[name], hints[name])
            if not isinstance(value, accepted) or isinstance(value, bool):
                raise ConfigError(f"{where}: field {name!r} must be {getattr(hints[name], '__name__', hints[name])}, "
                                  f"got {value!r}")
        record = cls(**raw)
        if record.unit not in tuple(UnitType):
            raise ConfigError(f"{where}: unit type {record.unit!r} is not one of {[str(u) for u in UnitType]}")
        pe_kind(record.pe_kind)
        for name in ("rows", "cols", "transistors", "cells"):
            if getattr(record, name) < 1:
                raise ConfigError(f"{where}: {name} must be positive, got {getattr(record, name)}")
        if not 0 <= DFF_TRANSISTORS * record.dffs < record.transistors:
            raise ConfigError(f"{where}: dffs={record.dffs} must leave some logic transistors")
        return dataclasses.replace(record, unit=UnitType(record.unit))

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"unit": str(self.unit)}

    @property
    def pes(self) -> int:
        return self.rows * self.cols

    @property
    def key(self) -> tuple[str, int, int, int]:
        """The PE configuration: ``(pe_kind, weight_bits, act_bits, frac_bits)``."""
        return self.pe_kind, self.weight_bits, self.act_bits, self.frac_bits

    @property
    def transistors_per_pe(self) -> float:
        """All transistors of the unit shared out over its PEs (a shared per-row LUT is amortized)."""
        return self.transistors / self.pes

    @property
    def logic_area_per_pe(self) -> float | None:
        """Standard-cell area per PE without the flip-flops (um^2), where the standard-cell flow ran."""
        if self.area_um2 is None or self.register_area_um2 is None:
            return None
        return (self.area_um2 - (self.sram_area_um2 or 0.0) - self.register_area_um2) / self.pes

    @property
    def logic_transistors_per_pe(self) -> float:
        """Transistors per PE without the flip-flops (those are priced as register accesses)."""
        return (self.transistors - DFF_TRANSISTORS * self.dffs) / self.pes


@dataclass(frozen=True)
class SynthReport:
    """A whole ``synth.json``."""

    yosys_version: str
    units: tuple[SynthRecord, ...]
    hw_fingerprint: str | None = None
    #: version line of every other tool of the flows (OpenSTA, nextpnr-ice40, nextpnr-ecp5); empty in old files
    tool_versions: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def from_these_sources(self) -> bool | None:
        """Whether the units were made from the hw sources imported now (None: unstamped, a hand-made file)."""
        return None if self.hw_fingerprint is None else self.hw_fingerprint == SOURCE_FINGERPRINT

    def to_json(self) -> dict:
        stamp = {} if self.hw_fingerprint is None else {"hw_fingerprint": self.hw_fingerprint}
        return ({"yosys_version": self.yosys_version} | stamp | {"tool_versions": dict(self.tool_versions)}
                | {"units": [unit.to_json() for unit in self.units]})

    def text(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    @classmethod
    def from_json(cls, raw, where: str) -> SynthReport:
        if not isinstance(raw, dict) or not isinstance(raw.get("units"), list) or not isinstance(raw.get("yosys_version"), str):
            raise ConfigError(f"synthesis results {where} must be an object with 'yosys_version' (str) and 'units' (list)")
        if not raw["units"]:
            raise ConfigError(f"synthesis results {where} list no units; re-run `make synth`")
        stamp = raw.get("hw_fingerprint")
        if stamp is not None and not isinstance(stamp, str):
            raise ConfigError(f"synthesis results {where}: hw_fingerprint must be a string, got {stamp!r}")
        versions = raw.get("tool_versions", {})
        if not isinstance(versions, dict) or not all(isinstance(v, str) for v in versions.values()):
            raise ConfigError(f"synthesis results {where}: tool_versions must map tool names to strings, got {versions!r}")
        units = tuple(SynthRecord.from_json(unit, f"{where} unit {i}") for i, unit in enumerate(raw["units"]))
        return cls(raw["yosys_version"], units, stamp, versions)

    @classmethod
    def read(cls, path: Path) -> SynthReport:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"synthesis results {path} not found: run `make synth` first (it writes build/synth/synth.json)")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ConfigError(f"synthesis results {path} are not valid JSON: {error}; re-run `make synth`") from None
        return cls.from_json(raw, str(path))
