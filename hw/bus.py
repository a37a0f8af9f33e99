"""The accelerator's host bus and the host protocol on it, each defined once.

:class:`HostBus` is the port set of :class:`hw.top.Accelerator` (Verilog ``lutmac_top``).  Its
members are flat, so every member is one Verilog port of that name and width; simulators take
the ports from this signature, not from the Verilog.

:func:`gemm_steps` is the protocol of one run as :class:`BusStep` s: the bus writes (one per
edge), ``start`` with the tile descriptor, a wait for ``done`` and the output reads with the
pipelined address of the synchronous read port.  :func:`program_steps` runs several back to
back on the two buffer banks, the host's transfers for the neighbouring runs overlapping each
run's compute (a :class:`BusProgram`, which also decodes what the steps captured).  Every driver executes these steps as given,
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
from amaranth.utils import ceil_log2

from golden.errors import ConfigError

from .config import ArrayConfig
from .cycles import gemm_cycles
from .host import GemmJob, HostWrite, job_writes, output_word_count, pool_sums_base, tile_descriptor
from .layout import BANKED_REGIONS, BANKS, REGION_BITS, host_bus_widths, out_word_layout, read_address_bits, tile_layout

#: the wait for ``done`` gives up after this many times the expected cycles (plus the slack):
#: a slow run is then measured and reported against gemm_cycles instead of cut off at it
DONE_BUDGET_FACTOR, DONE_BUDGET_SLACK = 4, 64


class HostBus(wiring.Signature):
    """The accelerator's side of the host bus (``hw/README.md``, "Host interface")."""

    def __init__(self, cfg: ArrayConfig):
        addr_bits, data_bits = host_bus_widths(cfg)
        bank_bits = ceil_log2(BANKS)
        super().__init__({
            "wr_en": In(1),  # one write per edge; refused while busy if it targets what the run uses
            "wr_region": In(REGION_BITS),  # hw.layout.Region
            "wr_bank": In(bank_bits),  # the bank of a banked region (hw.layout.BANKED_REGIONS)
            "wr_addr": In(addr_bits),
            "wr_data": In(data_bits),
            "start": In(1),  # sampled while idle or done: starts the run `tile` describes
            "tile": In(tile_layout(cfg)),
            "busy": Out(1),  # from the edge after start until the run ends
            "done": Out(1),  # from the end of a run until the next start
            "wr_refused": Out(1),  # a write since the last start was dropped: it targeted the running run's bank or a table
            "rd_bank": In(bank_bits),  # the output bank rd_addr reads (the pool's sums have one bank)
            "rd_addr": In(read_address_bits(cfg)),  # with a pool unit the top bit selects its sums (hw.layout)
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


def _check_bank(bank: int) -> int:
    if not isinstance(bank, int) or isinstance(bank, bool) or not 0 <= bank < BANKS:
        raise ConfigError(f"bank={bank!r} is not a buffer bank (0..{BANKS - 1})")
    return bank


def write_step(writes: Sequence[HostWrite], bank: int = 0) -> BusStep:
    """One bus write per edge into ``bank`` (``wr_data`` as Python ints: it can be wider than 64 bits)."""
    return BusStep({
        "wr_en": 1,
        "wr_region": np.array([int(w.region) for w in writes], dtype=np.int64),
        "wr_bank": _check_bank(bank),
        "wr_addr": np.array([w.addr for w in writes], dtype=np.int64),
        "wr_data": np.array([w.data for w in writes], dtype=object),
    })  # fmt: skip


def start_step(cfg: ArrayConfig, job: GemmJob, bank: int = 0) -> BusStep:
    """``start`` for one edge with ``job``'s run descriptor (reading ``bank``) on ``tile``."""
    return BusStep({"start": 1, "tile": tile_descriptor(cfg, job, _check_bank(bank))})


def wait_step(cfg: ArrayConfig, m: int, k: int, n: int, capture: bool = False, pool: bool = False) -> BusStep:
    """Wait for ``done``; ``gemm_cycles`` edges are expected (see :data:`DONE_BUDGET_FACTOR`)."""
    limit = DONE_BUDGET_FACTOR * gemm_cycles(cfg, m, k, n, pool) + DONE_BUDGET_SLACK
    return BusStep(capture=capture, wait_limit=limit)


def read_step(cfg: ArrayConfig, m: int, n: int, bank: int = 0, first: int = 0, stop: int | None = None,
              pool_sums: bool = False) -> BusStep:
    """Output words ``first .. stop-1`` (default all) of ``bank``: address ``b + 1`` is presented while ``b`` is taken.

    The read port is synchronous (one cycle), so row ``b + 1`` captures word ``b``; the extra
    last row presents ``first`` again.  ``pool_sums``: the pool unit's channel sums of a ``1 x N``
    result instead (``rd_addr``'s top bit set; they have one bank, ``bank`` is ignored).
    """
    count = output_word_count(cfg, m, n, pool_sums)
    stop = count if stop is None else stop
    if not 0 <= first < stop <= count:
        raise ConfigError(f"output words {first}..{stop - 1} are not inside 0..{count - 1}")
    base = pool_sums_base(cfg) if pool_sums else 0
    addresses = base + np.append(np.arange(first, stop), first)
    return BusStep({"rd_addr": addresses, "rd_bank": _check_bank(bank)}, capture=np.arange(len(addresses)) > 0)


def gemm_steps(cfg: ArrayConfig, job: GemmJob, writes: Sequence[HostWrite] | None = None) -> list[BusStep]:
    """One run of ``job`` from bank 0: write -> start -> wait -> read.

    ``writes`` defaults to every write of :func:`hw.host.job_writes`; a driver that knows the
    buffers already hold some of them (weights of the same N slice) passes the rest.  The last
    ``output_word_count`` captures are the output words, for :func:`hw.host.decode_outputs`.
    """
    writes = job_writes(cfg, job) if writes is None else writes
    m, k, n = job.shape
    steps = [write_step(writes)] if writes else []
    return steps + [start_step(cfg, job), wait_step(cfg, m, k, n, pool=job.pool),
                     read_step(cfg, *job.output_shape, pool_sums=job.reads_pool_sums)]


@dataclass(frozen=True)
class ProgramRun:
    """What one run of a :class:`BusProgram` returned."""

    words: list[int]  # its output words, for hw.host.decode_outputs
    cycles: int  # start edge .. done, measured as gemm_cycles counts
    refused: bool  # wr_refused at its done: a write loading the next run was dropped


@dataclass(frozen=True)
class BusProgram:
    """Overlapped runs as bus steps (:func:`program_steps`) and how to read what they captured.

    ``windows[i]``: edges of host traffic between run ``i``'s start and its wait, so its measured
    cycles are ``windows[i]`` plus the wait's edges.  ``tags`` names each captured row:
    ``("word", i)`` an output word of run ``i``, ``("done", i)`` the outputs at run ``i``'s done.
    """

    steps: list[BusStep]
    banks: tuple[int, ...]
    windows: tuple[int, ...]
    tags: tuple[tuple[str, int], ...]
    expected_edges: int  # every edge of the steps when each run takes gemm_cycles (checked in simulation)

    def decode(self, rd_data: Sequence[int], wr_refused: Sequence[int], waits: Sequence[int]) -> list[ProgramRun]:
        """Per run, from the program's captures (the last ``len(tags)`` of ``rd_data``/``wr_refused``) and waits."""
        if len(waits) != len(self.windows) or len(rd_data) < len(self.tags) or len(wr_refused) != len(rd_data):
            raise ConfigError(f"the program has {len(self.windows)} waits and {len(self.tags)} captures; got "
                              f"{len(waits)} waits and {len(rd_data)} captures")
        rd_data, wr_refused = rd_data[len(rd_data) - len(self.tags):], wr_refused[len(wr_refused) - len(self.tags):]
        words: list[list[int]] = [[] for _ in self.windows]
        refused = [False] * len(self.windows)
        for (kind, run), word, flag in zip(self.tags, rd_data, wr_refused, strict=True):
            if kind == "word":
                words[run].append(int(word))
            else:
                refused[run] = bool(flag)
        return [ProgramRun(w, window + int(wait), flag)
                for w, window, wait, flag in zip(words, self.windows, waits, refused, strict=True)]


def program_steps(cfg: ArrayConfig, jobs: Sequence[GemmJob], writes: Sequence[Sequence[HostWrite]] | None = None,
                  first_bank: int = 0, prefetch: Sequence[HostWrite] = ()) -> BusProgram:
    """Runs of ``jobs`` back to back, host transfers overlapped with compute (double-buffered).

    Run ``i`` uses bank ``first_bank + i`` (mod :data:`~hw.layout.BANKS`).  While it computes, the
    host reads run ``i - 1``'s outputs and writes run ``i + 1``'s banked words (up to
    ``gemm_cycles - 2`` edges, so the wait for ``done`` always starts while the run is busy and
    measures it exactly); what does not fit follows the wait, as do the table writes, which
    have one bank.  Then run ``i + 1`` starts.  ``writes[i]`` defaults to
    :func:`hw.host.job_writes`; a driver passes fewer when the bank already holds some.
    ``prefetch``: banked writes for whatever runs after the program (the next layer's weights),
    into the bank after the last run's, issued while the last run computes.

    Pooled and held runs (the global pool, the ASQ barrier) are true dependencies: the pool unit
    keeps one bank of channel sums, which the next pooled run would overwrite, and the host needs
    them before it can parameterize the held run, which re-reads its bank's held values.  Such a
    run is a program of its own (a barrier): its outputs or sums are read after its ``done``, and
    only ``prefetch`` (into the other bank) overlaps it.  The windows use
    ``gemm_cycles(..., pool)``.
    """
    writes = [job_writes(cfg, job) for job in jobs] if writes is None else [list(w) for w in writes]
    if not jobs or len(writes) != len(jobs):
        raise ConfigError(f"a program needs at least one job and one write list per job, got {len(jobs)} and {len(writes)}")
    if len(jobs) > 1 and any(job.pool or job.held for job in jobs):
        raise ConfigError("a pooled or held run is a barrier: it runs as a program of its own")
    banks = tuple((_check_bank(first_bank) + i) % BANKS for i in range(len(jobs)))
    if any(w.region not in BANKED_REGIONS for w in prefetch):
        raise ConfigError(f"only banked regions ({', '.join(r.name for r in BANKED_REGIONS)}) can be prefetched")
    steps: list[BusStep] = []
    tags: list[tuple[str, int]] = []
    windows: list[int] = []
    edges = 0

    def add(step: BusStep, tag: tuple[str, int] | None = None) -> None:
        nonlocal edges
        steps.append(step)
        tags.extend([tag] * step.captures)
        edges += 0 if step.wait_limit is not None else step.rows * step.edges

    def add_writes(part: Sequence[HostWrite], bank: int) -> None:
        if part:
            add(write_step(part, bank))

    def word_count(run: int) -> int:
        return output_word_count(cfg, *jobs[run].output_shape, jobs[run].reads_pool_sums)

    def add_reads(run: int, first: int, stop: int) -> None:
        if first < stop:
            job = jobs[run]
            add(read_step(cfg, *job.output_shape, banks[run], first, stop, job.reads_pool_sums), ("word", run))

    def split(run: int) -> tuple[list[HostWrite], list[HostWrite]]:
        """(banked writes, table writes) of ``run``."""
        banked = [w for w in writes[run] if w.region in BANKED_REGIONS]
        return banked, [w for w in writes[run] if w.region not in BANKED_REGIONS]

    add_writes(writes[0], banks[0])
    add(start_step(cfg, jobs[0], banks[0]))
    for run, job in enumerate(jobs):
        m, k, n = job.shape
        expected = gemm_cycles(cfg, m, k, n, job.pool)
        window = max(expected - 2, 0)
        unread = word_count(run - 1) if run else 0
        last = run + 1 == len(jobs)
        banked, tables = (list(prefetch), []) if last else split(run + 1)
        next_bank = (banks[run] + 1) % BANKS
        reads = min(unread, window - 1) if window > 1 else 0
        add_reads(run - 1, 0, reads)
        used = reads + 1 if reads else 0
        early = banked[: window - used]
        add_writes(early, next_bank)
        windows.append(used + len(early))
        add(wait_step(cfg, m, k, n, capture=True, pool=job.pool), ("done", run))
        edges += expected - windows[-1]
        add_reads(run - 1, reads, unread)
        if not last:
            add_writes(banked[len(early):] + tables, next_bank)
            add(start_step(cfg, jobs[run + 1], next_bank))
    add_reads(len(jobs) - 1, 0, word_count(len(jobs) - 1))
    add_writes(banked[len(early):], next_bank)  # what of the prefetch did not fit the last run
    return BusProgram(steps, banks, tuple(windows), tuple(tags), edges)
