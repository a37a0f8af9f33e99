"""Array configuration: one validated dataclass and the named presets in ``presets.toml``.

Every width the hardware uses is derived here from :mod:`golden.spec` (product width, accumulator
width, requantizer widths); nothing is restated.  Bad parameters raise the specific
:mod:`golden.errors` class at construction, before any hardware is elaborated.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from golden import output_stage, requantization, spec
from golden.errors import ConfigError, LutmacError, UnsupportedBitsError

from . import kinds

MAX_ARRAY_DIM = 64
MAX_HOST_LANES = 64
PRESETS_PATH = Path(__file__).with_name("presets.toml")


def _check_int(name: str, value, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{name}={value!r} is not supported (expected an int in {lo}..{hi})")


@dataclass(frozen=True)
class ArrayConfig:
    """One accelerator instance: PE kind and widths, array shape, buffer capacity, requantizer.

    ``None`` fields take the derived default: ``frac_bits`` from the scheme, ``out_bits = act_bits``,
    ``min_out_bits = threshold_out_bits = out_bits``,
    ``accumulator_width = spec.accumulator_bits(datapath, max_reduction)``,
    ``bias_bits = accumulator_width``, ``threshold_bank`` on for table activations (lcq, apot) and
    ``act_level_bits`` from the kind (``hw.kinds.PeKind.act_level_bits``; 8 unless it says).
    ``residual_bits``: signed width of the residual operand the output stage adds
    (:mod:`golden.output_stage`; 0: no residual unit).  ``global_pool``: a global-average-pool
    unit that sums each channel over a run's rows and requantizes the sum once.
    ``out_bits``: the widest code a ``REQUANT`` run writes; with ``min_out_bits < out_bits`` each
    run sets its own width in ``min_out_bits..out_bits`` (the clip is a run-time bound), so
    layers with different output widths share one accelerator.  ``threshold_out_bits``: the
    widest code of a ``THRESHOLD`` run (the bank holds ``2^threshold_out_bits - 1`` thresholds
    per channel; a narrower run's unused ones are never reached).
    One run (``Accelerator`` start..done) computes ``M x K`` by ``K x N`` with ``M <= max_m``,
    ``K <= max_reduction`` and ``N <= max_n``.
    """

    pe_kind: str
    rows: int
    cols: int
    weight_bits: int
    act_bits: int
    frac_bits: int | None = None
    levels: str = "bbit"
    level_bits: int = spec.DEFAULT_LEVEL_BITS
    act_level_bits: int | None = None
    out_bits: int | None = None
    min_out_bits: int | None = None
    threshold_out_bits: int | None = None
    max_reduction: int = 256
    max_m: int = 64
    max_n: int = 64
    accumulator_width: int | None = None
    bias_bits: int | None = None
    host_lanes: int = 4
    threshold_bank: bool | None = None
    residual_bits: int = 0
    global_pool: bool = False

    def __post_init__(self) -> None:
        datapath = self.datapath
        _check_int("rows", self.rows, 1, MAX_ARRAY_DIM)
        _check_int("cols", self.cols, 1, MAX_ARRAY_DIM)
        for name in ("max_reduction", "max_m", "max_n"):
            _check_int(name, getattr(self, name), 1, 1 << 20)
        _check_int("host_lanes", self.host_lanes, 1, MAX_HOST_LANES)
        if self.host_lanes & (self.host_lanes - 1):
            raise ConfigError(f"host_lanes={self.host_lanes} must be a power of two")
        defaults = {
            "frac_bits": datapath.frac_bits,
            "out_bits": self.act_bits,
            "accumulator_width": spec.accumulator_bits(datapath, self.max_reduction),
            "threshold_bank": datapath.act_format == "table",
            "act_level_bits": datapath.act_level_bits,
        }
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        for name in ("min_out_bits", "threshold_out_bits"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, self.out_bits)
        if self.bias_bits is None:
            object.__setattr__(self, "bias_bits", self.accumulator_width)
        if not isinstance(self.global_pool, bool):
            raise ConfigError(f"global_pool must be a bool, got {self.global_pool!r}")
        if not isinstance(self.threshold_bank, bool):
            raise ConfigError(f"threshold_bank must be a bool, got {self.threshold_bank!r}")
        for name in ("out_bits", "min_out_bits", "threshold_out_bits"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not spec.MIN_BITS <= value <= spec.MAX_BITS:
                raise UnsupportedBitsError(f"{name}={value!r} is not supported (expected {spec.MIN_BITS}..{spec.MAX_BITS})")
        if self.min_out_bits > self.out_bits:
            raise ConfigError(f"min_out_bits={self.min_out_bits} is wider than out_bits={self.out_bits}")
        spec.check_accumulator(datapath, self.accumulator_width, self.max_reduction)
        _check_int("bias_bits", self.bias_bits, 1, spec.MAX_SUM_BITS)
        _check_int("residual_bits", self.residual_bits, 0, spec.MAX_SUM_BITS)
        if self.global_pool and self.pool_sum_bits > self.rows * self.out_word_bits:
            raise ConfigError(f"a {self.pool_sum_bits}-bit pooled sum per column does not fit the {self.rows}-row read word")
        if self.requant.sum_bits > spec.MAX_SUM_BITS:
            raise ConfigError(
                f"accumulator ({self.accumulator_width} bits) + bias ({self.bias_bits} bits) + shortcut "
                f"({self.residual_bits} bits) needs "
                f"{self.requant.sum_bits} bits; the requantizer is exact up to {spec.MAX_SUM_BITS}"
            )

    @classmethod
    def from_dict(cls, fields: dict) -> ArrayConfig:
        """Config from a preset table; unknown keys are an error, not silently dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ConfigError(f"unknown array config keys {unknown}; expected some of {sorted(known)}")
        missing = sorted(f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.name not in fields)
        if missing:
            raise ConfigError(f"array config lacks required keys {missing}")
        hints = typing.get_type_hints(cls)
        for key, value in fields.items():
            allowed = tuple(t for t in (typing.get_args(hints[key]) or (hints[key],)) if t is not type(None))
            if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
                raise ConfigError(f"array config key {key}={value!r} must be {' or '.join(t.__name__ for t in allowed)}")
        return cls(**fields)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> ArrayConfig:
        return dataclasses.replace(self, **changes)

    def covering(self, other: ArrayConfig) -> ArrayConfig:
        """The smallest config that runs every job either runs: same datapath and array, each limit the wider."""
        fixed = ("pe_kind", "rows", "cols", "weight_bits", "act_bits", "frac_bits", "levels", "level_bits",
                 "act_level_bits", "host_lanes")
        differ = [name for name in fixed if getattr(self, name) != getattr(other, name)]
        if differ:
            raise ConfigError(f"configs differing in {differ} run different datapaths or arrays; none covers both")
        widest = {name: max(getattr(self, name), getattr(other, name))
                  for name in ("out_bits", "max_reduction", "max_m", "max_n", "accumulator_width", "bias_bits",
                               "residual_bits")}
        banked = [cfg.threshold_out_bits for cfg in (self, other) if cfg.threshold_bank]
        return self.replace(**widest, min_out_bits=min(self.min_out_bits, other.min_out_bits),
                            threshold_bank=bool(banked), threshold_out_bits=max(banked, default=widest["out_bits"]),
                            global_pool=self.global_pool or other.global_pool)

    # ---- datapath (golden.spec) -------------------------------------------------------------------
    @cached_property
    def datapath(self) -> spec.DatapathConfig:
        return kinds.pe_kind(self.pe_kind).datapath(
            self.weight_bits, self.act_bits, self.frac_bits, self.levels, self.level_bits, self.act_level_bits
        )

    @property
    def kind(self) -> kinds.PeKind:
        """The PE kind's registry entry (:mod:`hw.kinds`)."""
        return kinds.KINDS[self.pe_kind]

    @property
    def scheme(self) -> str:
        return self.kind.scheme

    @property
    def weight_code_bits(self) -> int:
        """Width of a weight code word as stored in the weight buffer."""
        return self.datapath.weight.code_bits

    @property
    def product_bits(self) -> int:
        return self.datapath.product_bits()

    @cached_property
    def requant(self) -> requantization.RequantSpec:
        return requantization.RequantSpec(self.accumulator_width, self.bias_bits, shortcut_bits=self.residual_bits)

    @property
    def shift_bits(self) -> int:
        return spec.MAX_REQUANT_SHIFT.bit_length()

    @property
    def pool_sum_bits(self) -> int:
        """Width of a channel's pooled sum: ``relu(t)`` over up to ``max_m`` rows."""
        return output_stage.pool_sum_bits(self.requant.sum_bits, self.max_m)

    @property
    def threshold_count(self) -> int:
        """Entries per channel in the threshold bank (0 when the config has none)."""
        return (1 << self.threshold_out_bits) - 1 if self.threshold_bank else 0

    @property
    def run_time_out_bits(self) -> bool:
        """Each run sets its output width (``tile.out_bits``); else every REQUANT run writes ``out_bits``."""
        return self.min_out_bits < self.out_bits

    @property
    def code_bits(self) -> int:
        """Width of the widest code any run writes (REQUANT or THRESHOLD)."""
        return max(self.out_bits, self.threshold_out_bits if self.threshold_bank else 0)

    @property
    def threshold_bits(self) -> int:
        """One bit wider than ``acc + bias`` so "never reached" (``sum_max + 1``) is representable."""
        return self.requant.sum_bits + 1

    @property
    def out_word_bits(self) -> int:
        """Signed width of one output value: raw ``acc + bias`` or a zero-extended code."""
        return max(self.requant.sum_bits, self.code_bits + 1)

    # ---- buffer geometry: one run's words (one bank; hw.top holds hw.layout.BANKS of each) -----
    @property
    def k_words_max(self) -> int:
        return math.ceil(self.max_reduction / self.host_lanes)

    @property
    def m_blocks_max(self) -> int:
        return math.ceil(self.max_m / self.rows)

    @property
    def n_blocks_max(self) -> int:
        return math.ceil(self.max_n / self.cols)

    @property
    def act_depth(self) -> int:
        return self.m_blocks_max * self.k_words_max

    @property
    def weight_depth(self) -> int:
        return self.n_blocks_max * self.k_words_max

    @property
    def out_depth(self) -> int:
        return self.m_blocks_max * self.n_blocks_max

    @property
    def name_hint(self) -> str:
        """A short descriptive name, e.g. ``post_shared_w4a4_4x4``."""
        return f"{self.pe_kind}_w{self.weight_bits}a{self.act_bits}_{self.rows}x{self.cols}"


def load_presets(path: Path = PRESETS_PATH) -> tuple[str, dict[str, ArrayConfig]]:
    """``(default name, {name: ArrayConfig})`` from a presets TOML file; any fault is a ConfigError naming the file."""
    try:
        with open(path, "rb") as handle:
            table = tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read: {error.strerror or error}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    unknown = sorted(set(table) - {"default", "configs"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {unknown}; expected 'default' and [configs.NAME] tables")
    default, configs = table.get("default"), table.get("configs")
    if not isinstance(configs, dict) or not configs:
        raise ConfigError(f"{path}: no [configs.NAME] tables")
    presets = {}
    for name, fields in configs.items():
        if not isinstance(fields, dict):
            raise ConfigError(f"{path}: configs.{name} must be a table, got {fields!r}")
        try:
            presets[name] = ArrayConfig.from_dict(fields)
        except LutmacError as error:
            raise ConfigError(f"{path}: preset {name!r}: {error}") from None
    if default not in presets:
        raise ConfigError(f"{path}: default={default!r} names no preset; presets are {sorted(presets)}")
    return default, presets


def preset(name: str = "default", path: Path = PRESETS_PATH) -> ArrayConfig:
    """A named preset (``"default"`` resolves to the file's default)."""
    default, presets = load_presets(path)
    key = default if name == "default" else name
    if key not in presets:
        raise ConfigError(f"no array preset {name!r}; presets are {sorted(presets)} (or 'default')")
    return presets[key]
