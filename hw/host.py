"""Host side of the accelerator: validate a GEMM job and pack it into bus writes; unpack the results.

Pure Python/numpy (no simulator): the Amaranth-simulator driver (:mod:`hw.pysim_driver`) and the cocotb
drivers in ``sim/`` both use it, so the word formats exist once (:mod:`hw.layout`).

A job is ``M x K`` activation codes times ``K x N`` weight codes plus the requantizer parameters.
:func:`job_writes` returns the ``(region, addr, data)`` bus writes, :func:`tile_descriptor` the
integer for the ``tile`` port, :func:`output_word_count` how many output words to read (addresses
``0 .. count-1``) and :func:`decode_outputs` the ``M x N`` result.  See ``hw/README.md``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from amaranth import Shape
from amaranth.lib import data

from golden import requantization, spec
from golden.errors import CodeRangeError, ConfigError, LevelTableError
from golden.gemm import int_gemm
from golden.output_stage import IDENTITY_MULTIPLIER, global_pool_sum, output_total
from golden.spec import WeightScheme

from .config import ArrayConfig
from .layout import (
    OutputMode,
    Region,
    act_word_layout,
    channel_layout,
    multiplier_layout,
    out_word_layout,
    pool_word_layout,
    read_address_bits,
    residual_row_layout,
    slot_bits,
    tile_layout,
    weight_word_layout,
)


class Leaf(NamedTuple):
    name: str
    offset: int
    width: int
    signed: bool


@functools.lru_cache(maxsize=256)
def layout_leaves(layout) -> tuple[Leaf, ...]:
    """The scalar fields of a layout in declaration order (struct fields, then array elements).

    Cached per whole layout (layouts compare by value): every word of every transfer is packed through it.
    """
    return tuple(_leaves(layout, 0, ""))


def _leaves(layout, offset: int, name: str) -> list[Leaf]:
    if isinstance(layout, data.StructLayout):
        return [leaf for field_name, field in layout
                for leaf in _leaves(field.shape, offset + field.offset, f"{name}.{field_name}" if name else field_name)]
    if isinstance(layout, data.ArrayLayout):
        width = Shape.cast(layout.elem_shape).width
        return [leaf for i in range(layout.length)
                for leaf in _leaves(layout.elem_shape, offset + i * width, f"{name}[{i}]")]
    shape = Shape.cast(layout)
    return [Leaf(name or "value", offset, shape.width, shape.signed)]


def pack_words(layout, values: np.ndarray) -> list[int]:
    """One integer per row of ``values`` (``(n, leaves)``), each leaf range-checked."""
    leaves = layout_leaves(layout)
    values = np.asarray(values, dtype=np.int64).reshape(-1, len(leaves))
    size = Shape.cast(layout).width
    bits = np.zeros((values.shape[0], (size + 7) // 8 * 8), dtype=np.uint8)
    for index, leaf in enumerate(leaves):
        column = values[:, index]
        lo, hi = (-(1 << (leaf.width - 1)), (1 << (leaf.width - 1)) - 1) if leaf.signed else (0, (1 << leaf.width) - 1)
        if column.size and (column.min() < lo or column.max() > hi):
            raise CodeRangeError(f"{leaf.name}: values [{column.min()}, {column.max()}] outside the {leaf.width}-bit field range [{lo}, {hi}]")
        bits[:, leaf.offset : leaf.offset + leaf.width] = (column[:, None] >> np.arange(leaf.width)) & 1
    packed = np.packbits(bits, axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def unpack_words(layout, words) -> np.ndarray:
    """``(n, leaves)`` int64 field values of packed integers (inverse of :func:`pack_words`)."""
    leaves = layout_leaves(layout)
    nbytes = (Shape.cast(layout).width + 7) // 8
    raw = np.frombuffer(b"".join(int(w).to_bytes(nbytes, "little") for w in words), dtype=np.uint8)
    bits = np.unpackbits(raw.reshape(len(words), nbytes), axis=1, bitorder="little").astype(np.int64)
    out = np.empty((len(words), len(leaves)), dtype=np.int64)
    for index, leaf in enumerate(leaves):
        value = bits[:, leaf.offset : leaf.offset + leaf.width] @ (np.int64(1) << np.arange(leaf.width, dtype=np.int64))
        if leaf.signed:
            value = np.where(value >> (leaf.width - 1), value - (np.int64(1) << leaf.width), value)
        out[:, index] = value
    return out


class HostWrite(NamedTuple):
    region: Region
    addr: int
    data: int


@dataclass(frozen=True)
class GemmJob:
    """One run: ``out = f(act_codes @ weight_codes)`` with the requantizer parameters of ``mode``.

    ``mantissa``/``shift`` are per output channel (scalars broadcast); ``row_mantissa`` /
    ``row_shift`` (per output row, ASQ's per-sample ``1/beta``) replace them when given.
    ``out_bits``: the width of the codes a ``REQUANT`` or ``THRESHOLD`` run writes (None: the
    config's ``out_bits`` or ``threshold_out_bits``; :func:`code_bits`); ``thresholds`` is
    ``(N, 2^out_bits - 1)`` for ``THRESHOLD``.  lcq jobs carry both level
    tables (lcq_product: they define the product table).  ``negate`` (per channel, 0/1) is the
    channel's sign; ``shortcut`` (``M x N``, configs with ``residual_bits``) the residual operand
    added after ``rescale`` by ``shortcut_mantissa`` / ``shortcut_shift`` (per channel;
    :mod:`golden.output_stage`).  ``pool``: each channel's sum of ``relu(t)`` over the run's
    rows; in ``REQUANT`` the run's output is that sum requantized (a global average pool, one
    row), in ``RAW`` the output buffer holds ``relu(t)`` and the host reads the sums
    (:attr:`reads_pool_sums`).  ``held``: the run adds the values the output buffer holds —
    the previous run's output, same ``M x N`` — to ``sign * acc + bias`` (ASQ's second pass, on
    zero operands; :func:`golden_outputs` takes them as ``held``).
    """

    act_codes: np.ndarray
    weight_codes: np.ndarray
    mode: OutputMode = OutputMode.REQUANT
    bias: np.ndarray | int = 0
    mantissa: np.ndarray | int = 1
    shift: np.ndarray | int = 0
    row_mantissa: np.ndarray | None = None
    row_shift: np.ndarray | None = None
    thresholds: np.ndarray | None = None
    relu: bool = False
    weight_table: np.ndarray | None = None
    act_table: np.ndarray | None = None
    negate: np.ndarray | int = 0
    shortcut: np.ndarray | None = None
    shortcut_mantissa: np.ndarray | int = IDENTITY_MULTIPLIER[0]
    shortcut_shift: np.ndarray | int = IDENTITY_MULTIPLIER[1]
    pool: bool = False
    held: bool = False
    out_bits: int | None = None

    @property
    def reads_pool_sums(self) -> bool:
        """The host reads the pool unit's channel sums (a pooled RAW run) instead of output words."""
        return self.pool and self.mode == OutputMode.RAW

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(M, K, N)``."""
        m, k = np.shape(self.act_codes)
        return m, k, np.shape(self.weight_codes)[1]

    @property
    def output_shape(self) -> tuple[int, int]:
        """``(rows, N)`` the run writes: ``(1, N)`` pooled, else ``(M, N)``."""
        m, _, n = self.shape
        return (1 if self.pool else m), n


def check_job(cfg: ArrayConfig, job: GemmJob) -> None:
    """Raise a specific error for anything the hardware cannot run exactly."""
    act, weight = np.asarray(job.act_codes), np.asarray(job.weight_codes)
    if act.ndim != 2 or weight.ndim != 2 or act.shape[1] != weight.shape[0]:
        raise ConfigError(f"need act (M, K) and weights (K, N) with equal K, got {act.shape} and {weight.shape}")
    m, k, n = job.shape
    for name, value, limit in (("M", m, cfg.max_m), ("K", k, cfg.max_reduction), ("N", n, cfg.max_n)):
        if not 1 <= value <= limit:
            raise ConfigError(f"{name}={value} outside 1..{limit} for this array config")
    cfg.datapath.check_act_codes(act)
    cfg.datapath.weight.check_codes(weight)
    if not isinstance(job.mode, OutputMode):
        raise ConfigError(f"mode must be an OutputMode, got {job.mode!r}")
    if job.mode == OutputMode.THRESHOLD and not cfg.threshold_bank:
        raise ConfigError("THRESHOLD mode needs an array config with threshold_bank=True")
    if job.out_bits is not None:
        if job.mode == OutputMode.RAW:
            raise ConfigError(f"out_bits={job.out_bits!r} given for a RAW run, which writes no codes")
        lo, hi = ((spec.MIN_BITS, cfg.threshold_out_bits) if job.mode == OutputMode.THRESHOLD
                  else (cfg.min_out_bits, cfg.out_bits))
        if not isinstance(job.out_bits, int) or isinstance(job.out_bits, bool) or not lo <= job.out_bits <= hi:
            raise ConfigError(f"out_bits={job.out_bits!r} is not an output width of this config's {job.mode.name} runs "
                              f"(expected {lo}..{hi})")
    for name, table, needed, check in (
        ("weight_table", job.weight_table, cfg.scheme == WeightScheme.LCQ, cfg.datapath.weight.check_table),
        ("act_table", job.act_table, cfg.datapath.act_format == "table", cfg.datapath.check_act_table),
    ):
        if needed and table is None:
            raise LevelTableError(f"{cfg.pe_kind} jobs need {name}")
        if not needed and table is not None:
            raise ConfigError(f"{name} given for a {cfg.pe_kind} array, which has no such table")
        if needed:
            check(table)
    if (job.row_mantissa is None) != (job.row_shift is None):
        raise ConfigError("row_mantissa and row_shift go together")
    if not np.all(np.isin(np.asarray(job.negate), (0, 1))):
        raise ConfigError("negate holds one 0/1 flag per output channel")
    if (job.pool or job.held) and not cfg.global_pool:
        raise ConfigError("pooled and held runs need an array config with global_pool")
    if job.pool and (job.mode not in (OutputMode.REQUANT, OutputMode.RAW) or job.row_mantissa is not None or job.held):
        raise ConfigError("a pooled run is REQUANT or RAW with channel multipliers, and adds no held values")
    if job.held and job.shortcut is not None:
        raise ConfigError("a held run adds its held values, not a shortcut")
    if job.shortcut is not None:
        if not cfg.residual_bits:
            raise ConfigError("a shortcut needs an array config with residual_bits")
        if np.shape(job.shortcut) != (m, n):
            raise ConfigError(f"the shortcut must be M x N = {(m, n)}, got {np.shape(job.shortcut)}")


def code_bits(cfg: ArrayConfig, job: GemmJob) -> int:
    """The width of the codes ``job`` writes (REQUANT and THRESHOLD runs)."""
    if job.out_bits is not None:
        return job.out_bits
    return cfg.threshold_out_bits if job.mode == OutputMode.THRESHOLD else cfg.out_bits


def _channel_params(cfg: ArrayConfig, job: GemmJob, n: int) -> np.ndarray:
    """``(N, leaves)`` values of :func:`hw.layout.channel_layout`."""
    bias = np.broadcast_to(np.asarray(job.bias, dtype=np.int64), (n,))
    mantissa = np.broadcast_to(np.asarray(job.mantissa, dtype=np.int64), (n,))
    shift = np.broadcast_to(np.asarray(job.shift, dtype=np.int64), (n,))
    _check_multipliers(mantissa, shift)
    columns = [bias[:, None], mantissa[:, None], shift[:, None], np.broadcast_to(np.asarray(job.negate), (n,))[:, None]]
    if cfg.residual_bits:
        shortcut = [np.broadcast_to(np.asarray(value, dtype=np.int64), (n,)) for value in (job.shortcut_mantissa, job.shortcut_shift)]
        _check_multipliers(*shortcut)
        columns += [value[:, None] for value in shortcut]
    if cfg.threshold_bank:
        columns.append(_threshold_bank(cfg, job, n))
    return np.concatenate(columns, axis=1)


def _check_multipliers(mantissa: np.ndarray, shift: np.ndarray) -> None:
    if np.any(mantissa < 0) or np.any(mantissa >= 1 << spec.MULTIPLIER_BITS):
        raise CodeRangeError(f"mantissas must be unsigned {spec.MULTIPLIER_BITS}-bit ints")
    if np.any(shift < 0) or np.any(shift > spec.MAX_REQUANT_SHIFT):
        raise CodeRangeError(f"shifts must lie in 0..{spec.MAX_REQUANT_SHIFT}")


def _threshold_bank(cfg: ArrayConfig, job: GemmJob, n: int) -> np.ndarray:
    """Thresholds clipped to ``[sum_min, sum_max + 1]``: same codes for every reachable ``acc + bias``.

    A run with fewer thresholds than the bank holds (a narrower ``out_bits``) fills the rest with
    ``sum_max + 1``, which no ``acc + bias`` reaches.
    """
    lo, hi = spec.signed_range(cfg.requant.sum_bits)
    bank = np.full((n, cfg.threshold_count), hi + 1, dtype=np.int64)
    if job.thresholds is None:
        return bank
    thresholds = np.asarray(job.thresholds)
    count = (1 << code_bits(cfg, job)) - 1
    if thresholds.shape != (n, count):
        raise LevelTableError(f"thresholds must have shape (N, 2^out_bits - 1) = {(n, count)}, got {thresholds.shape}")
    requantization.threshold_quantize(np.zeros(n, dtype=np.int64), 0, thresholds)  # validates order and integer type
    bank[:, :count] = np.clip(thresholds.astype(np.int64), lo, hi + 1)
    return bank


def job_writes(cfg: ArrayConfig, job: GemmJob) -> list[HostWrite]:
    """Every bus write that loads ``job``: buffers, channel parameters, row multipliers, tables."""
    check_job(cfg, job)
    m, k, n = job.shape
    rows, cols, lanes = cfg.rows, cfg.cols, cfg.host_lanes
    m_blocks, n_blocks, k_words = -(-m // rows), -(-n // cols), -(-k // lanes)

    act = np.zeros((m_blocks * rows, k_words * lanes), dtype=np.int64)
    act[:m, :k] = job.act_codes
    act_words = act.reshape(m_blocks, rows, k_words, lanes).transpose(0, 2, 3, 1).reshape(m_blocks * k_words, -1)
    weight = np.zeros((k_words * lanes, n_blocks * cols), dtype=np.int64)
    weight[:k, :n] = np.asarray(job.weight_codes, dtype=np.int64) & ((1 << cfg.weight_code_bits) - 1)
    weight_words = weight.reshape(k_words, lanes, n_blocks, cols).transpose(2, 0, 1, 3).reshape(n_blocks * k_words, -1)

    writes = _region_writes(Region.ACT, np.arange(len(act_words)), pack_words(act_word_layout(cfg), act_words))
    writes += _region_writes(Region.WEIGHT, np.arange(len(weight_words)), pack_words(weight_word_layout(cfg), weight_words))
    channel = np.arange(n)
    channel_addr = (channel // cols) << slot_bits(cols) | channel % cols
    writes += _region_writes(Region.CHANNEL, channel_addr, pack_words(channel_layout(cfg), _channel_params(cfg, job, n)))
    if job.row_mantissa is not None:
        mantissa = np.broadcast_to(np.asarray(job.row_mantissa, dtype=np.int64), (m,))
        shift = np.broadcast_to(np.asarray(job.row_shift, dtype=np.int64), (m,))
        _check_multipliers(mantissa, shift)
        row = np.arange(m)
        row_addr = (row // rows) << slot_bits(rows) | row % rows
        writes += _region_writes(Region.ROW_MULTIPLIER, row_addr, pack_words(multiplier_layout(cfg), np.stack([mantissa, shift], 1)))
    if job.shortcut is not None:
        writes += _residual_writes(cfg, np.asarray(job.shortcut, dtype=np.int64))
    for region, words in cfg.kind.edges.table_words(cfg.datapath, job.weight_table, job.act_table).items():
        writes += _region_writes(region, np.arange(words.size), words)
    return writes


def _residual_writes(cfg: ArrayConfig, shortcut: np.ndarray) -> list[HostWrite]:
    """One write per output row ``m`` and column block: the operands of row ``m % R`` of block ``(m // R, nb)``."""
    m, n = shortcut.shape
    n_blocks = -(-n // cfg.cols)
    padded = np.zeros((m, n_blocks * cfg.cols), dtype=np.int64)
    padded[:, :n] = shortcut
    rows = np.repeat(np.arange(m), n_blocks)
    blocks = np.tile(np.arange(n_blocks), m)
    addresses = ((rows // cfg.rows) * n_blocks + blocks) << slot_bits(cfg.rows) | rows % cfg.rows
    words = padded.reshape(m, n_blocks, cfg.cols).reshape(m * n_blocks, cfg.cols)
    return _region_writes(Region.RESIDUAL, addresses, pack_words(residual_row_layout(cfg), words))


def _region_writes(region: Region, addresses, words) -> list[HostWrite]:
    return [HostWrite(region, int(a), int(w)) for a, w in zip(addresses, words, strict=True)]


def tile_descriptor(cfg: ArrayConfig, job: GemmJob, bank: int = 0) -> int:
    """The integer to drive on the ``tile`` port for ``job`` run from buffer bank ``bank``."""
    check_job(cfg, job)
    m, k, n = job.shape
    fields = [k, -(-m // cfg.rows), -(-n // cfg.cols), int(job.mode), int(job.relu), int(job.row_mantissa is not None),
              bank]  # hw.layout.tile_layout's order: the bank, then the output-stage fields this config has
    if cfg.run_time_out_bits:
        fields.append(code_bits(cfg, job) if job.mode == OutputMode.REQUANT else cfg.out_bits)
    if cfg.residual_bits:
        fields.append(int(job.shortcut is not None))
    if cfg.global_pool:
        fields += [int(job.pool), m - (-(-m // cfg.rows) - 1) * cfg.rows, int(job.held)]
    return pack_words(tile_layout(cfg), np.array([fields]))[0]


def output_word_count(cfg: ArrayConfig, m: int, n: int, pool_sums: bool = False) -> int:
    """Output words of an ``M x N`` result: one per ``R x C`` block, addresses ``0 ..`` in block order.

    ``pool_sums``: the pool unit's words of a ``1 x N`` result, one per ``n`` block, from :func:`pool_sums_base`.
    """
    return -(-n // cfg.cols) * (1 if pool_sums else -(-m // cfg.rows))


def pool_sums_base(cfg: ArrayConfig) -> int:
    """Read address of the pool unit's first word: the top ``rd_addr`` bit (:func:`hw.layout.read_address_bits`)."""
    return 1 << (read_address_bits(cfg) - 1)


def decode_outputs(cfg: ArrayConfig, words, m: int, n: int, pool_sums: bool = False) -> np.ndarray:
    """``(M, N)`` int64 results from the output words read at addresses ``0 .. output_word_count - 1``."""
    if pool_sums:
        if len(words) != output_word_count(cfg, 1, n, True) or m != 1:
            raise ConfigError(f"expected {output_word_count(cfg, 1, n, True)} pool words for 1x{n}, got {len(words)}")
        return unpack_words(pool_word_layout(cfg), words).reshape(1, -1)[:, :n]
    m_blocks, n_blocks = -(-m // cfg.rows), -(-n // cfg.cols)
    if len(words) != m_blocks * n_blocks:
        raise ConfigError(f"expected {m_blocks * n_blocks} output words for {m}x{n}, got {len(words)}")
    values = unpack_words(out_word_layout(cfg), words).reshape(m_blocks, n_blocks, cfg.rows, cfg.cols)
    return values.transpose(0, 2, 1, 3).reshape(m_blocks * cfg.rows, n_blocks * cfg.cols)[:m, :n]


def golden_outputs(cfg: ArrayConfig, job: GemmJob, held: np.ndarray | None = None) -> np.ndarray:
    """What the accelerator must write for ``job``: golden's accumulators (``golden.gemm.int_gemm``) and output stage.

    ``held``: for a held run, the ``M x N`` values the output buffer holds.
    """
    if job.held != (held is not None):
        raise ConfigError("the held values must be given exactly for a held run")
    acc = int_gemm(cfg.datapath, job.act_codes, job.weight_codes, job.weight_table, job.act_table)
    sign = np.where(np.asarray(job.negate) == 1, -1, 1)
    total = output_total(acc, sign, job.bias, job.shortcut, job.shortcut_mantissa, job.shortcut_shift)
    if job.held:
        total = total + held
    if job.pool:  # golden.output_stage.global_pool_sum over the run's rows, one sample
        total = global_pool_sum(total.T[None, :, :, None])
    if job.mode == OutputMode.REQUANT:
        if job.row_mantissa is not None:
            mantissa, shift = np.asarray(job.row_mantissa)[:, None], np.asarray(job.row_shift)[:, None]
        else:
            mantissa, shift = job.mantissa, job.shift
        return requantization.requantize(total, 0, mantissa, shift, code_bits(cfg, job))
    if job.mode == OutputMode.THRESHOLD:
        return requantization.threshold_quantize(total, 0, job.thresholds)
    return np.maximum(total, 0) if job.relu else total  # RAW
