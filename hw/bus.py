"""The accelerator's host bus and the host protocol on it, each defined once.

:class:`HostBus` is the port set of :class:`hw.top.Accelerator` (Verilog ``lutmac_top``).  Its
members are flat, so every member is one Verilog port of that name and width; simulators take
the ports from this signature, not from the Verilog.

:func:`gemm_steps` is the protocol of one run as :class:`BusStep` s: the bus writes (one per
edge), ``start`` with the tile descriptor, a wait for ``done`` and the output reads with the
pipelined address of the synchronous read port.  Every driver executes these steps as given,
edge for edge: Amaranth's simulator (:mod:`hw.pysim_driver`) and the host-sequencer programs
that sim/ builds for cocotb and the C++ harness (:mod:`sim.accelerator`).  The word formats
are :mod:`hw.host`'s; the cycle count is :func:`hw.cycles.gemm_cycles`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.errors import ConfigError

from .config import ArrayConfig
from .cycles import gemm_cycles
from .host import GemmJob, HostWrite, job_writes, output_word_count, pool_sums_base, tile_descriptor
from .layout import REGION_BITS, host_bus_widths, out_word_layout, read_address_bits, tile_layout

#: the wait for ``done`` gives up after this many times the expected cycles (plus the slack):
#: a slow run is then measured and reported against gemm_cycles instead of cut off at it
DONE_BUDGET_FACTOR, DONE_BUDGET_SLACK = 4, 64


class HostBus(wiring.Signature):
    """The accelerator's side of the host bus (``hw/README.md``, "Host interface")."""

    def __init__(self, cfg: ArrayConfig):
        addr_bits, data_bits = host_bus_widths(cfg)
        super().__init__({
            "wr_en": In(1),  # one write per edge; ignored while busy
            "wr_region": In(REGION_BITS),  # hw.layout.Region
            "wr_addr": In(addr_bits),
            "wr_data": In(data_bits),
            "start": In(1),  # sampled while idle or done: starts the run `tile` describes
            "tile": In(tile_layout(cfg)),
            "busy": Out(1),  # from the edge after start until the run ends
            "done": Out(1),  # from the end of a run until the next start
            "rd_addr": In(read_address_bits(cfg)),  # the top bit selects the pool's sums (hw.layout)
            "rd_data": Out(out_word_layout(cfg)),  # the word at the rd_addr of the previous edge
        })


@dataclass(frozen=True)
class BusStep:
    """Bus inputs for one or more rows of clock edges: the unit of the host protocol.

    ``inputs`` maps input names to one value for every row or an array with one value per row
    (an input not named is 0); each row lasts ``edges`` edges.  ``capture`` (one flag, or one per
    row) samples every output just before the row's last edge: what a host reads while
    presenting those inputs.  With ``wait_limit`` the step is one row that holds its inputs
    until ``done`` reads 1 just before an edge, that edge included; the edges it took are the
    run's measured cycles (:func:`hw.cycles.gemm_cycles` counts the same way, the start edge
    being the step before) and more than ``wait_limit`` of them is a timeout.
    """

    inputs: Mapping[str, int | np.ndarray] = field(default_factory=dict)
    edges: int = 1
    capture: bool | np.ndarray = False
    wait_limit: int | None = None

    def __post_init__(self) -> None:
        lengths = {len(value) for value in self.inputs.values() if np.ndim(value)}
        lengths |= {len(self.capture)} if np.ndim(self.capture) else set()
        if len(lengths) > 1:
            raise ConfigError(f"a bus step's per-row inputs disagree on the number of rows: {sorted(lengths)}")
        if self.edges < 1:
            raise ConfigError(f"a bus step lasts at least one edge per row, not {self.edges}")
        if self.wait_limit is not None and (lengths or self.edges != 1):
            raise ConfigError("a wait step is one row of one edge until done")

    @property
    def rows(self) -> int:
        lengths = [len(value) for value in (*self.inputs.values(), self.capture) if np.ndim(value)]
        return lengths[0] if lengths else 1

    @property
    def captures(self) -> int:
        """How many rows capture the outputs."""
        return int(np.count_nonzero(self.capture)) if np.ndim(self.capture) else int(self.capture) * self.rows

    def value(self, name: str, row: int) -> int:
        """Input ``name`` during ``row`` (0 when the step does not name it)."""
        value = self.inputs.get(name, 0)
        return int(value[row]) if np.ndim(value) else int(value)

    def captured(self, row: int) -> bool:
        return bool(self.capture[row]) if np.ndim(self.capture) else bool(self.capture)


def write_step(writes: Sequence[HostWrite]) -> BusStep:
    """One bus write per edge (``wr_data`` as Python ints: it can be wider than 64 bits)."""
    return BusStep({
        "wr_en": 1,
        "wr_region": np.array([int(w.region) for w in writes], dtype=np.int64),
        "wr_addr": np.array([w.addr for w in writes], dtype=np.int64),
        "wr_data": np.array([w.data for w in writes], dtype=object),
    })  # fmt: skip


def start_step(cfg: ArrayConfig, job: GemmJob) -> BusStep:
    """``start`` for one edge with ``job``'s run descriptor on ``tile``."""
    return BusStep({"start": 1, "tile": tile_descriptor(cfg, job)})


def wait_step(cfg: ArrayConfig, m: int, k: int, n: int) -> BusStep:
    """Wait for ``done``; ``gemm_cycles`` edges are expected (see :data:`DONE_BUDGET_FACTOR`)."""
    return BusStep(wait_limit=DONE_BUDGET_FACTOR * gemm_cycles(cfg, m, k, n) + DONE_BUDGET_SLACK)


def read_step(cfg: ArrayConfig, m: int, n: int, pool_sums: bool = False) -> BusStep:
    """Output words ``0 .. count-1``: address ``b + 1`` is presented while the data of ``b`` is taken.

    The read port is synchronous (one cycle), so row ``b + 1`` captures word ``b``; the extra
    last row presents address 0 again.  ``pool_sums``: the pool unit's channel sums instead.
    """
    count = output_word_count(cfg, m, n, pool_sums)
    base = pool_sums_base(cfg) if pool_sums else 0
    return BusStep({"rd_addr": base + np.arange(count + 1) % count}, capture=np.arange(count + 1) > 0)


def gemm_steps(cfg: ArrayConfig, job: GemmJob, writes: Sequence[HostWrite] | None = None) -> list[BusStep]:
    """One run of ``job``: write -> start -> wait -> read.

    ``writes`` defaults to every write of :func:`hw.host.job_writes`; a driver that knows the
    buffers already hold some of them (weights of the same N slice) passes the rest.  The last
    ``output_word_count`` captures are the output words, for :func:`hw.host.decode_outputs`.
    """
    writes = job_writes(cfg, job) if writes is None else writes
    m, k, n = job.shape
    steps = [write_step(writes)] if writes else []
    return steps + [start_step(cfg, job), wait_step(cfg, m, k, n), read_step(cfg, *job.output_shape, job.reads_pool_sums)]
