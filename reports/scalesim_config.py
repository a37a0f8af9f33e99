"""SCALE-Sim v2 ``.cfg`` files: read them as SCALE-Sim 2.0.2 does (``scalesim/scale_config.py``), write them back.

Sections and keys (configparser, keys case-insensitive)::

    [general]               run_name
    [architecture_presets]  ArrayHeight, ArrayWidth, IfmapSramSzkB, FilterSramSzkB, OfmapSramSzkB,
                            IfmapOffset, FilterOffset, OfmapOffset, Dataflow (os, ws, is),
                            Bandwidth (words per cycle, comma-separated; read when USER), MemoryBanks
    [run_presets]           InterfaceBandwidth: CALC (SCALE-Sim estimates the DRAM bandwidth)
                            or USER (the first Bandwidth value limits it and stalls are counted)
    [network_presets]       TopologyCsvLoc: "path" (optional; a command-line topology wins)

SCALE-Sim reads every size as an integer and ignores MemoryBanks; so does this reader (it still
checks MemoryBanks is a positive integer when given).  A missing or malformed value is a
one-line :class:`~golden.errors.ConfigError` where SCALE-Sim would stop with a traceback.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

from golden.errors import ConfigError

from .dataflow import DATAFLOWS

BANDWIDTH_MODES = ("CALC", "USER")


@dataclass(frozen=True)
class ScaleConfig:
    run_name: str = "scale_run"
    rows: int = 4
    cols: int = 4
    ifmap_kb: int = 256
    filter_kb: int = 256
    ofmap_kb: int = 128
    dataflow: str = "ws"
    bandwidth_mode: str = "CALC"
    bandwidth: int = 10  # words per cycle; a limit only in USER mode
    ifmap_offset: int = 0
    filter_offset: int = 10_000_000
    ofmap_offset: int = 20_000_000
    memory_banks: int = 1
    topology: str = ""

    def __post_init__(self) -> None:
        if self.dataflow not in DATAFLOWS:
            raise ConfigError(f"Dataflow {self.dataflow!r} is not one of {DATAFLOWS}")
        if self.bandwidth_mode not in BANDWIDTH_MODES:
            raise ConfigError(f"InterfaceBandwidth {self.bandwidth_mode!r} is not one of {BANDWIDTH_MODES}")
        for name in ("rows", "cols", "ifmap_kb", "filter_kb", "ofmap_kb", "bandwidth", "memory_banks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")

    def text(self) -> str:
        """The configuration as a SCALE-Sim ``.cfg`` file."""
        lines = [
            "[general]", f"run_name = {self.run_name}", "",
            "[architecture_presets]", f"ArrayHeight: {self.rows}", f"ArrayWidth: {self.cols}",
            f"IfmapSramSzkB: {self.ifmap_kb}", f"FilterSramSzkB: {self.filter_kb}", f"OfmapSramSzkB: {self.ofmap_kb}",
            f"IfmapOffset: {self.ifmap_offset}", f"FilterOffset: {self.filter_offset}", f"OfmapOffset: {self.ofmap_offset}",
            f"Bandwidth: {self.bandwidth}", f"Dataflow: {self.dataflow}", f"MemoryBanks: {self.memory_banks}", "",
            "[run_presets]", f"InterfaceBandwidth: {self.bandwidth_mode}", "",
        ]
        if self.topology:
            lines += ["[network_presets]", f'TopologyCsvLoc: "{self.topology}"', ""]
        return "\n".join(lines)


def _get(parser: configparser.ConfigParser, section: str, key: str, where: str) -> str:
    if not parser.has_option(section, key):
        raise ConfigError(f"{where}: [{section}] has no {key}")
    return parser.get(section, key).strip()


def _int(parser, section: str, key: str, where: str) -> int:
    text = _get(parser, section, key, where)
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{where}: [{section}] {key} = {text!r} is not an integer") from None


def read_config(path: str | Path) -> ScaleConfig:
    """A SCALE-Sim ``.cfg`` file (keys in the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"SCALE-Sim config {path} does not exist")
    parser = configparser.ConfigParser()
    try:
        parser.read_string(path.read_text(), source=str(path))
    except configparser.Error as error:
        raise ConfigError(f"{path}: not a SCALE-Sim config: {str(error).splitlines()[0]}") from None
    where, arch = str(path), "architecture_presets"
    mode = _get(parser, "run_presets", "InterfaceBandwidth", where)
    bandwidth = 10
    if mode == "USER" or parser.has_option(arch, "Bandwidth"):
        first = _get(parser, arch, "Bandwidth", where).split(",")[0].strip()
        try:
            bandwidth = int(first)
        except ValueError:
            raise ConfigError(f"{where}: [{arch}] Bandwidth {first!r} is not an integer") from None
    topology = parser.get("network_presets", "TopologyCsvLoc", fallback="").strip().strip('"')
    try:
        return ScaleConfig(
            run_name=_get(parser, "general", "run_name", where), rows=_int(parser, arch, "ArrayHeight", where),
            cols=_int(parser, arch, "ArrayWidth", where), ifmap_kb=_int(parser, arch, "IfmapSramSzkB", where),
            filter_kb=_int(parser, arch, "FilterSramSzkB", where), ofmap_kb=_int(parser, arch, "OfmapSramSzkB", where),
            dataflow=_get(parser, arch, "Dataflow", where), bandwidth_mode=mode, bandwidth=bandwidth,
            ifmap_offset=_int(parser, arch, "IfmapOffset", where), filter_offset=_int(parser, arch, "FilterOffset", where),
            ofmap_offset=_int(parser, arch, "OfmapOffset", where),
            memory_banks=_int(parser, arch, "MemoryBanks", where) if parser.has_option(arch, "MemoryBanks") else 1,
            topology=topology,
        )
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
