"""Exact cycle counts of one accelerator run (start edge .. done), confirmed against simulation.

Counting convention: the clock edge that samples ``start = 1`` is edge 1; ``gemm_cycles`` is the
number of the first edge after which ``done`` reads 1.  Derivation (:mod:`hw.top`):

* ``FEED`` lasts ``K + R + C - 1`` cycles: reads are issued for ``t < K``, arrive one cycle
  later, and the skew puts ``A[i, k]``/``W[k, j]`` into PE ``(i, j)`` at ``t = k + 1 + i + j``;
  the last product (``k = K-1``, PE ``(R-1, C-1)``) is added at ``t = K + R + C - 2``.
* ``DRAIN`` lasts ``R`` cycles, one accumulator row per cycle into the ``C`` requantizer lanes.
* After the last block the two requantizer stages flush (2 cycles), then ``DONE``: together with
  the start edge, 3 cycles per run.

Blocks do not overlap, so a run of ``ceil(M/R) * ceil(N/C)`` blocks takes
``blocks * (K + 2R + C - 1) + 3`` cycles.  Host transfers (bus writes, output reads) are extra
and counted by :func:`host_write_count` / :func:`hw.host.output_word_count`.
"""

from __future__ import annotations

import math

from golden.errors import ConfigError

from .config import ArrayConfig

RUN_OVERHEAD_CYCLES = 3


def _check_dims(cfg: ArrayConfig, m: int, k: int, n: int) -> None:
    for name, value, limit in (("M", m, cfg.max_m), ("K", k, cfg.max_reduction), ("N", n, cfg.max_n)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
            raise ConfigError(f"{name}={value!r} outside 1..{limit} for this array config")


def block_cycles(cfg: ArrayConfig, k: int) -> int:
    """Cycles of one ``R x C`` output block over reduction length ``k`` (feed + drain)."""
    _check_dims(cfg, 1, k, 1)
    return k + 2 * cfg.rows + cfg.cols - 1


def gemm_cycles(cfg: ArrayConfig, m: int, k: int, n: int) -> int:
    """Exact cycles from the start edge to ``done`` for an ``M x K`` by ``K x N`` run."""
    _check_dims(cfg, m, k, n)
    blocks = math.ceil(m / cfg.rows) * math.ceil(n / cfg.cols)
    return blocks * block_cycles(cfg, k) + RUN_OVERHEAD_CYCLES


def host_write_count(cfg: ArrayConfig, m: int, k: int, n: int, row_multipliers: bool = False) -> int:
    """Bus writes :func:`hw.host.job_writes` issues for a run (one per clock), tables included."""
    _check_dims(cfg, m, k, n)
    k_words = math.ceil(k / cfg.host_lanes)
    writes = (math.ceil(m / cfg.rows) + math.ceil(n / cfg.cols)) * k_words + n + (m if row_multipliers else 0)
    return writes + sum(entries for entries, _ in cfg.kind.edges.table_regions(cfg.datapath).values())


def mac_utilization(cfg: ArrayConfig, m: int, k: int, n: int) -> float:
    """Useful MACs over PE-cycles of the run (the fraction of the array doing real work)."""
    return m * k * n / (cfg.rows * cfg.cols * gemm_cycles(cfg, m, k, n))
