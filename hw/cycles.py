"""Exact cycle counts of one accelerator run (start edge .. done), confirmed against simulation.

Counting convention: the clock edge that samples ``start = 1`` is edge 1; ``gemm_cycles`` is the
number of the first edge after which ``done`` reads 1.  Derivation (:mod:`hw.top`, :mod:`hw.array`):

* Blocks stream: block ``b``'s ``k = 0`` operands reach the array ``P`` cycles after block
  ``b - 1``'s, where the block period ``P = max(K, R + 1, C)`` (:func:`block_period`; ``K``
  when the reduction is at least as long as the array is deep and wide).  A block shorter
  than that is padded with zero operands: its shadow registers must hold for the ``C``
  cycles its last column takes and the ``R + 1`` its rows take to leave.
* One closing flag follows the last block; ``C`` cycles after it the last block's row 0
  drains, then rows ``1 .. R-1``, one per cycle, into the three-stage requantizer.
* Fixed costs: the start edge, the buffer read before the first operands, the closing
  flag, the three requantizer stages (:attr:`hw.output_stage.OutputLane.latency`) and ``DONE``.

So a run of ``ceil(M/R) * ceil(N/C)`` blocks takes ``blocks * P + C + R + 5`` cycles.  Host
transfers (bus writes, output reads) are extra and counted by :func:`host_write_count` /
:func:`hw.host.output_word_count`; with the double-buffered protocol they overlap the
neighbouring runs' compute, and :attr:`hw.bus.BusProgram.expected_edges` counts a whole
overlapped program exactly.
"""

from __future__ import annotations

import math

from golden.errors import ConfigError

from .config import ArrayConfig

RUN_OVERHEAD_CYCLES = 5
POOL_CYCLES = 2  # hw.output_stage.GlobalPool.latency


def _check_dims(cfg: ArrayConfig, m: int, k: int, n: int) -> None:
    for name, value, limit in (("M", m, cfg.max_m), ("K", k, cfg.max_reduction), ("N", n, cfg.max_n)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
            raise ConfigError(f"{name}={value!r} outside 1..{limit} for this array config")


def min_block_period(cfg: ArrayConfig) -> int:
    """The shortest block the streaming array allows: its rows drain (``R`` + one parameter cycle) and its columns finish (``C``)."""
    return max(cfg.rows + 1, cfg.cols)


def block_period(cfg: ArrayConfig, k: int) -> int:
    """Cycles between consecutive blocks of a run with reduction length ``k``."""
    _check_dims(cfg, 1, k, 1)
    return max(k, min_block_period(cfg))


def gemm_cycles(cfg: ArrayConfig, m: int, k: int, n: int, pool: bool = False) -> int:
    """Exact cycles from the start edge to ``done`` for an ``M x K`` by ``K x N`` run.

    A pooled run (``hw.host.GemmJob.pool``) ends ``POOL_CYCLES`` later: the global pool's
    requantizer follows the last row's lane.
    """
    _check_dims(cfg, m, k, n)
    blocks = math.ceil(m / cfg.rows) * math.ceil(n / cfg.cols)
    return blocks * block_period(cfg, k) + cfg.cols + cfg.rows + RUN_OVERHEAD_CYCLES + (POOL_CYCLES if pool else 0)


def host_write_count(cfg: ArrayConfig, m: int, k: int, n: int, row_multipliers: bool = False, shortcut: bool = False) -> int:
    """Bus writes :func:`hw.host.job_writes` issues for a run (one per clock), tables and residual rows included."""
    _check_dims(cfg, m, k, n)
    k_words = math.ceil(k / cfg.host_lanes)
    writes = (math.ceil(m / cfg.rows) + math.ceil(n / cfg.cols)) * k_words + n + (m if row_multipliers else 0)
    writes += m * math.ceil(n / cfg.cols) if shortcut else 0
    return writes + sum(entries for entries, _ in cfg.kind.edges.table_regions(cfg.datapath).values())


def mac_utilization(cfg: ArrayConfig, m: int, k: int, n: int) -> float:
    """Useful MACs over PE-cycles of the run (the fraction of the array doing real work)."""
    return m * k * n / (cfg.rows * cfg.cols * gemm_cycles(cfg, m, k, n))
