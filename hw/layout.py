"""Bit layouts of everything the host writes or reads: one definition for the RTL and the host packers.

All layouts are Amaranth ``lib.data`` layouts; :mod:`hw.top` declares its memories and ports
with them and :mod:`hw.host` packs/unpacks Python integers from the same field offsets.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

from amaranth import Shape, signed, unsigned
from amaranth.lib import data
from amaranth.utils import ceil_log2

from golden import spec

if TYPE_CHECKING:  # hw.config builds on the PE-kind registry, which uses Region
    from .config import ArrayConfig


class Region(IntEnum):
    """``wr_region`` values: which buffer or table a host write goes to."""

    ACT = 0  # activation buffer
    WEIGHT = 1  # weight buffer
    CHANNEL = 2  # per-output-channel requantizer parameters
    ROW_MULTIPLIER = 3  # per-output-row (per-sample, ASQ) multiplier override
    WEIGHT_TABLE = 4  # lcq: weight level table
    ACT_TABLE = 5  # lcq: activation level table
    PRODUCT_TABLE = 6  # lcq_product: product table
    RESIDUAL = 7  # residual operands, one output-block row per write (configs with residual_bits)


class OutputMode(IntEnum):
    """``tile.mode``: what the requantizer writes to the output buffer."""

    REQUANT = 0  # clip(round_half_up((acc + bias) * mantissa >> shift), 0, 2^out_bits - 1), the run's out_bits
    THRESHOLD = 1  # #{k : acc + bias >= thresholds[k]} (needs threshold_bank)
    RAW = 2  # acc + bias, optionally max(., 0) when tile.relu


REGION_BITS = 3
MODE_BITS = 2
#: the operand, parameter and output buffers each have two banks: the host loads one while a run uses the other
BANKS = 2
BANKED_REGIONS = (Region.ACT, Region.WEIGHT, Region.CHANNEL, Region.ROW_MULTIPLIER, Region.RESIDUAL)


def act_word_layout(cfg: ArrayConfig) -> data.ArrayLayout:
    """One activation-buffer word: ``[lane][row]`` codes for ``host_lanes`` consecutive ``k``."""
    return data.ArrayLayout(data.ArrayLayout(unsigned(cfg.act_bits), cfg.rows), cfg.host_lanes)


def weight_word_layout(cfg: ArrayConfig) -> data.ArrayLayout:
    """One weight-buffer word: ``[lane][column]`` code words for ``host_lanes`` consecutive ``k``."""
    return data.ArrayLayout(data.ArrayLayout(unsigned(cfg.weight_code_bits), cfg.cols), cfg.host_lanes)


def multiplier_layout(cfg: ArrayConfig) -> data.StructLayout:
    return data.StructLayout({"mantissa": unsigned(spec.MULTIPLIER_BITS), "shift": unsigned(cfg.shift_bits)})


def channel_layout(cfg: ArrayConfig) -> data.StructLayout:
    """Per-output-channel output-stage parameters (one host write per channel).

    ``negate``: the channel's sign (``t = -acc + bias``); ``shortcut``: the multiplier that aligns
    the residual operand (configs with ``residual_bits``).
    """
    fields = {"bias": signed(cfg.bias_bits), "multiplier": multiplier_layout(cfg), "negate": unsigned(1)}
    if cfg.residual_bits:
        fields["shortcut"] = multiplier_layout(cfg)
    if cfg.threshold_bank:
        fields["thresholds"] = data.ArrayLayout(signed(cfg.threshold_bits), cfg.threshold_count)
    return data.StructLayout(fields)


def residual_row_layout(cfg: ArrayConfig) -> data.ArrayLayout:
    """One residual write: row ``i`` of an output block, the ``C`` operands of its columns."""
    return data.ArrayLayout(signed(cfg.residual_bits), cfg.cols)


def out_word_layout(cfg: ArrayConfig) -> data.ArrayLayout:
    """One output-buffer word: a whole ``R x C`` output block, ``[row][column]``."""
    return data.ArrayLayout(data.ArrayLayout(signed(cfg.out_word_bits), cfg.cols), cfg.rows)


def tile_layout(cfg: ArrayConfig) -> data.StructLayout:
    """The run descriptor on the ``tile`` port, sampled when ``start`` is high."""
    fields = {
        "k": unsigned(ceil_log2(cfg.max_reduction + 1)),
        "m_blocks": unsigned(ceil_log2(cfg.m_blocks_max + 1)),
        "n_blocks": unsigned(ceil_log2(cfg.n_blocks_max + 1)),
        "mode": unsigned(MODE_BITS),
        "relu": unsigned(1),
        "row_multiplier": unsigned(1),
        "bank": unsigned(ceil_log2(BANKS)),  # the buffer bank the run reads its operands from and writes its outputs to
    }
    if cfg.run_time_out_bits:
        fields["out_bits"] = unsigned(ceil_log2(cfg.out_bits + 1))  # a REQUANT run's code width, min_out_bits..out_bits
    if cfg.residual_bits:
        fields["residual"] = unsigned(1)  # add each output's RESIDUAL operand
    if cfg.global_pool:
        fields["pool"] = unsigned(1)  # sum relu(t) per channel over the run's rows (REQUANT: the pooled codes)
        fields["last_rows"] = unsigned(ceil_log2(cfg.rows + 1))  # rows of the last m-block that are outputs
        fields["held"] = unsigned(1)  # add the output buffer's held values (the ASQ barrier's second pass)
    return data.StructLayout(fields)


def pool_word_layout(cfg: ArrayConfig) -> data.ArrayLayout:
    """One host-readable word of the pool unit's channel sums: the ``C`` channels of an ``n`` block."""
    return data.ArrayLayout(unsigned(cfg.pool_sum_bits), cfg.cols)


def read_address_bits(cfg: ArrayConfig) -> int:
    """``rd_addr`` width: output words, and with a pool unit one more bit that selects its channel sums."""
    return max(ceil_log2(cfg.out_depth), 1) + (1 if cfg.global_pool else 0)


def slot_bits(count: int) -> int:
    """Address bits that select a slot inside a word of ``count`` slots (CHANNEL, ROW_MULTIPLIER, RESIDUAL)."""
    return ceil_log2(count)


def region_geometry(cfg: ArrayConfig) -> dict[Region, tuple[int, int]]:
    """``{region: (address bits, data bits)}`` of every region this config has."""
    geometry = {
        Region.ACT: (ceil_log2(cfg.act_depth), act_word_layout(cfg).size),
        Region.WEIGHT: (ceil_log2(cfg.weight_depth), weight_word_layout(cfg).size),
        Region.CHANNEL: (ceil_log2(cfg.n_blocks_max) + slot_bits(cfg.cols), channel_layout(cfg).size),
        Region.ROW_MULTIPLIER: (ceil_log2(cfg.m_blocks_max) + slot_bits(cfg.rows), multiplier_layout(cfg).size),
    }
    if cfg.residual_bits:
        geometry[Region.RESIDUAL] = (ceil_log2(cfg.out_depth) + slot_bits(cfg.rows), residual_row_layout(cfg).size)
    for region, (depth, shape) in cfg.kind.edges.table_regions(cfg.datapath).items():
        geometry[region] = (ceil_log2(depth), Shape.cast(shape).width)
    return geometry


def host_bus_widths(cfg: ArrayConfig) -> tuple[int, int]:
    """``(wr_addr bits, wr_data bits)``: the widest region decides."""
    geometry = region_geometry(cfg).values()
    return max(max(a for a, _ in geometry), 1), max(d for _, d in geometry)
