"""Stimulus for the accelerator and PE testbenches: seeded random GEMMs and the edge cases that break datapaths.

Kept apart from the scoreboard (:mod:`sim.scoreboard`): generators only decide *what* to feed;
every expected value comes from golden.  Requantizer parameters are chosen from golden's own
accumulators so the output codes spread over their range instead of all clipping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golden import requantization, spec
from golden.gemm import im2col, int_gemm
from golden.spec import WeightScheme
from hw.config import ArrayConfig
from hw.host import GemmJob
from hw.layout import OutputMode


@dataclass(frozen=True)
class Workload:
    """A named GEMM for the array testbench."""

    name: str
    job: GemmJob


# --------------------------------------------------------------------------- codes and tables


def extreme_weight_codes(datapath: spec.DatapathConfig) -> tuple[int, int]:
    """``(code of the most negative product, code of the most positive)`` with the largest activation."""
    if datapath.scheme == WeightScheme.INT:
        lo, hi = spec.signed_range(datapath.weight.bits)
        return lo, hi
    if datapath.scheme == WeightScheme.LCQ:  # with extreme tables: code 0 holds the lowest level, the last the highest
        return 0, datapath.weight.num_codes - 1
    if datapath.scheme == WeightScheme.APOT:
        top = datapath.weight.apot.max_magnitude
        negative, positive = datapath.weight.apot.pack(np.array([-top, top]))
        return int(negative), int(positive)
    negative, positive = datapath.weight.power_code_from_level(np.array([1, 0]), np.array([0, 0]))
    return int(negative), int(positive)


def _tables(cfg: ArrayConfig, rng: np.random.Generator, extreme: bool = False) -> dict:
    weight_table, act_table = cfg.datapath.extreme_tables() if extreme else cfg.datapath.random_tables(rng)
    tables = {"weight_table": weight_table, "act_table": act_table}
    return {name: table for name, table in tables.items() if table is not None}


# --------------------------------------------------------------------------- requantizer parameters


def spread_requant(cfg: ArrayConfig, acc: np.ndarray, rng: np.random.Generator, per_row: bool = False) -> dict:
    """REQUANT parameters mapping each channel's accumulator range onto the output codes (plus a little clipping).

    On a config with run-time output widths the run's width is drawn from ``min_out_bits..out_bits``.
    """
    lo, hi = acc.min(axis=0), acc.max(axis=0)
    bias_lo, bias_hi = spec.signed_range(cfg.bias_bits)
    bias = np.clip(-lo + rng.integers(-2, 3, lo.shape), bias_lo, bias_hi)
    span = np.maximum(hi - lo, 1).astype(np.float64)
    out_bits = int(rng.integers(cfg.min_out_bits, cfg.out_bits + 1)) if cfg.run_time_out_bits else cfg.out_bits
    scale = (1 << out_bits) / span * rng.uniform(0.8, 1.25, span.shape)
    mantissa, shift = requantization.quantize_multiplier(scale)
    params = {"mode": OutputMode.REQUANT, "bias": bias, "mantissa": mantissa, "shift": shift}
    if cfg.run_time_out_bits:
        params["out_bits"] = out_bits
    if per_row:  # ASQ: one multiplier per output row (sample), replacing the channel multipliers
        row_mantissa, row_shift = requantization.quantize_multiplier(float(np.median(scale)) * rng.uniform(0.5, 2.0, acc.shape[0]))
        params |= {"row_mantissa": row_mantissa, "row_shift": row_shift}
    return params


def spread_thresholds(cfg: ArrayConfig, acc: np.ndarray, rng: np.random.Generator) -> dict:
    """A sorted per-channel threshold bank inside each channel's accumulator range.

    On a config with run-time output widths the run's width is drawn (fewer thresholds than the bank holds).
    """
    lo, hi = acc.min(axis=0), acc.max(axis=0)
    out_bits = int(rng.integers(spec.MIN_BITS, cfg.threshold_out_bits + 1)) if cfg.run_time_out_bits else None
    count = cfg.threshold_count if out_bits is None else (1 << out_bits) - 1
    draws = rng.integers(lo[:, None] - 1, hi[:, None] + 2, (acc.shape[1], count))
    return {"mode": OutputMode.THRESHOLD, "bias": 0, "thresholds": np.sort(draws, axis=1), "out_bits": out_bits}


def _finish(cfg: ArrayConfig, name: str, act, weight, rng, mode: str, tables: dict, **extra) -> Workload:
    """A workload whose output stage is ``mode``: "raw", "relu", "requant", "asq" or "threshold"."""
    act, weight = np.asarray(act, dtype=np.int64), np.asarray(weight, dtype=np.int64)
    acc = int_gemm(cfg.datapath, act, weight, tables.get("weight_table"), tables.get("act_table"))
    if mode in ("raw", "relu"):
        bias_lo, bias_hi = spec.signed_range(min(cfg.bias_bits, 20))
        params = {"mode": OutputMode.RAW, "bias": rng.integers(bias_lo, bias_hi + 1, acc.shape[1]), "relu": mode == "relu"}
    elif mode == "threshold":
        params = spread_thresholds(cfg, acc, rng)
    else:
        params = spread_requant(cfg, acc, rng, per_row=mode == "asq")
    negate = rng.integers(0, 2, acc.shape[1])  # the output stage's channel signs (a BatchNorm gamma < 0)
    if mode != "threshold":  # thresholds are spread over acc's own range
        params["negate"] = negate
    return Workload(name, GemmJob(act, weight, **(params | tables | extra)))


def output_modes(cfg: ArrayConfig) -> tuple[str, ...]:
    return ("raw", "relu", "requant", "asq") + (("threshold",) if cfg.threshold_bank else ())


# --------------------------------------------------------------------------- workloads


def random_workload(cfg: ArrayConfig, rng: np.random.Generator, m: int, k: int, n: int, mode: str) -> Workload:
    tables = _tables(cfg, rng)
    act = rng.integers(0, cfg.datapath.num_act_codes, (m, k))
    weight = rng.choice(cfg.kind.weight_code_pool(cfg.datapath), (k, n))
    return _finish(cfg, f"random {m}x{k}x{n} {mode}", act, weight, rng, mode, tables)


def edge_workloads(cfg: ArrayConfig, rng: np.random.Generator) -> list[Workload]:
    """Zeros, maximum codes, alternating signs, worst-case accumulation at ``K = max_reduction``, every code."""
    datapath = cfg.datapath
    rows, cols = cfg.rows, cfg.cols
    a_max = datapath.num_act_codes - 1
    w_neg, w_pos = extreme_weight_codes(datapath)
    extreme = _tables(cfg, rng, extreme=True)
    k_max = cfg.max_reduction
    m, n = rows + 1, cols + 1  # one full block and a ragged edge in each direction
    pool = cfg.kind.weight_code_pool(datapath)
    workloads = [
        _finish(cfg, "zero activations", np.zeros((m, 7), int), rng.choice(pool, (7, n)), rng, "raw", extreme),
        _finish(cfg, "zero weights", rng.integers(0, a_max + 1, (m, 7)),
                np.full((7, n), _zero_code(datapath)), rng, "raw", extreme),
        _finish(cfg, "max codes", np.full((m, 9), a_max), np.tile([w_pos, w_neg], (9, n))[:, :n], rng, "raw", extreme),
        _finish(cfg, "alternating signs", np.full((m, 10), a_max),
                np.where((np.arange(10)[:, None] + np.arange(n)) % 2, w_neg, w_pos), rng, "raw", extreme),
        _finish(cfg, f"worst-case positive accumulation K={k_max}", np.full((rows, k_max), a_max),
                np.full((k_max, cols), w_pos), rng, "raw", extreme, bias=0),
        _finish(cfg, f"worst-case negative accumulation K={k_max}", np.full((rows, k_max), a_max),
                np.full((k_max, cols), w_neg), rng, "raw", extreme, bias=0),
    ]
    # every activation code (LUT entry / level-table entry) meets every weight code: k-block b
    # walks all activation codes while column j holds weight code b * columns + j
    acts = datapath.num_act_codes
    columns = min(cfg.max_n, pool.size)
    k_all = acts * -(-pool.size // columns)
    k = np.arange(k_all)
    act_all = np.tile(k % acts, (m, 1))
    weight_all = pool[((k // acts)[:, None] * columns + np.arange(columns)[None, :]) % pool.size]
    tables = _tables(cfg, rng)
    for start in range(0, k_all, k_max):  # slices of at most max_reduction
        stop = min(k_all, start + k_max)
        workloads.append(_finish(cfg, "every code pair" + (f" k={start}.." if k_all > k_max else ""),
                                 act_all[:, start:stop], weight_all[start:stop], rng, "raw", tables))
    return workloads


def _zero_code(datapath: spec.DatapathConfig) -> int:
    if datapath.scheme in spec.SHIFT_SCHEMES:
        return datapath.weight.zero_exponent
    return 0  # int: the value 0; lcq: the lowest level (not zero, but a legal code with a known product)


def conv_workload(cfg: ArrayConfig, rng: np.random.Generator, channels_in: int = 3, channels_out: int = 6,
                  size: int = 6, mode: str = "requant") -> Workload:
    """A 3x3 convolution with padding 1 lowered by golden's ``im2col`` (one image)."""
    x = rng.integers(0, cfg.datapath.num_act_codes, (1, channels_in, size, size))
    columns = im2col(x, 3, stride=1, padding=1)
    weight = rng.choice(cfg.kind.weight_code_pool(cfg.datapath), (columns.shape[1], channels_out))
    return _finish(cfg, f"conv3x3 {channels_in}->{channels_out} on {size}x{size}", columns, weight, rng, mode,
                   _tables(cfg, rng))


def default_workloads(cfg: ArrayConfig, rng: np.random.Generator, full: bool = False) -> list[Workload]:
    """Edge cases, a conv layer and random GEMMs through every output mode (more and larger when ``full``)."""
    rows, cols = cfg.rows, cfg.cols
    workloads = edge_workloads(cfg, rng) + [conv_workload(cfg, rng)]
    for mode in output_modes(cfg):
        m = int(rng.integers(1, 3 * rows))
        n = int(rng.integers(1, 3 * cols))
        workloads.append(random_workload(cfg, rng, m, int(rng.integers(1, 40)), n, mode))
    if full:
        workloads.append(random_workload(cfg, rng, cfg.max_m + 3, cfg.max_reduction, cfg.max_n + 5, "requant"))
        workloads.append(conv_workload(cfg, rng, 8, 16, 8, "threshold" if cfg.threshold_bank else "requant"))
    return workloads
