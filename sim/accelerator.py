"""Driving :class:`hw.top.Accelerator` through the host sequencer: any GEMM, tiled into accelerator runs.

The ports come from the accelerator's signature (:class:`hw.bus.HostBus`), the bus steps from
:func:`hw.bus.program_steps` (the runs of a GEMM overlapped: the host loads run ``i + 1``'s bank
and reads run ``i - 1``'s outputs while run ``i`` computes; the protocol Amaranth's simulator
runs too, edge for edge) and the word formats from :mod:`hw.host`; this module only turns the
steps into host-program entries:

* a GEMM of any ``M`` and ``N`` (``K <= max_reduction``, so the requantizer sees whole sums) is
  split into runs of at most ``max_m x max_n``; weights and channel parameters are written only
  to a bank that does not hold them yet, level tables only when they change, activations every run;
* a step becomes one batch of entries; its wait for ``done`` becomes a WAIT entry, whose edge
  count plus the host traffic before it in the run is the run's measured cycle count
  (:func:`hw.cycles.gemm_cycles`'s convention);
* runs are packed into as few programs as the program and capture memories allow, so a whole
  layer is one simulator round trip.

Every function here is simulator-agnostic: ``session`` is a :class:`sim.cocotb_io.HostSession`
or a :class:`sim.harness.HarnessSession`, running the same programs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from amaranth.back import verilog

import hw
from golden.errors import ConfigError
from golden.files import write_atomic
from hw.bus import BusProgram, BusStep, HostBus, program_steps
from hw.config import ArrayConfig
from hw.cycles import gemm_cycles, host_write_count
from hw.host import GemmJob, HostWrite, decode_outputs, job_writes, output_word_count
from hw.layout import BANKED_REGIONS, BANKS, Region
from hw.top import Accelerator

from .build_cache import HdlDesign
from .failures import SimulationError
from .program import RESET_NAME, HostLayout, HostProgram, signature_ports
from .sequencer import HostResult, host_design
from .toolchain import build_root

PROGRAM_DEPTH = 1 << 15
CAPTURE_DEPTH = 1 << 12
RESET_CYCLES = 2
#: banked words that do not depend on the activation rows: a bank that holds a run's keeps them for the next run of its N slice
SLICE_REGIONS = {Region.WEIGHT, Region.CHANNEL}


_CONVERTING = threading.Lock()  # one Amaranth elaboration at a time: threads (the demo's RTL jobs) share this process


@lru_cache(maxsize=16)
def accelerator_verilog(cfg: ArrayConfig) -> tuple[str, str]:
    """``(module name, Verilog)`` of the accelerator for ``cfg``, cached on disk (conversion takes seconds)."""
    name = f"lutmac_{cfg.name_hint}"
    key = hashlib.sha256(f"{hw.SOURCE_FINGERPRINT} {cfg!r}".encode()).hexdigest()[:16]
    cached = build_root() / "verilog" / f"{name}-{key}.v"
    with _CONVERTING:
        if cached.is_file():
            return name, cached.read_text()
        text = verilog.convert(Accelerator(cfg), name=name, emit_src=False)
        write_atomic(cached, text)  # parallel workers never read half a file
    return name, text


@lru_cache(maxsize=16)
def accelerator_design(cfg: ArrayConfig, internal_clock: bool = True) -> tuple[HdlDesign, HostLayout]:
    """The host-sequencer top around the accelerator (``internal_clock=False`` for the C++ harness)."""
    name, text = accelerator_verilog(cfg)
    ports = signature_ports(HostBus(cfg), clocked=True)
    return host_design(text, name, ports, "done", PROGRAM_DEPTH, CAPTURE_DEPTH, internal_clock)


@dataclass(frozen=True)
class Run:
    """One accelerator run of a tiled GEMM: rows ``m0 ..`` and columns ``n0 ..`` of the result."""

    m0: int
    n0: int
    job: GemmJob

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.job.shape


@dataclass
class RunOutcome:
    run: Run
    outputs: np.ndarray  # the run's output_shape, as read from the output buffer (or the pool sums)
    cycles: int  # measured: start edge .. done
    expected_cycles: int  # hw.cycles.gemm_cycles


@dataclass
class GemmOutcome:
    outputs: np.ndarray  # (M, N)
    runs: list[RunOutcome]
    program_cycles: int  # every simulated edge: writes, runs, reads
    sim_seconds: float

    @property
    def run_cycles(self) -> int:
        return sum(run.cycles for run in self.runs)


def _slice(value, start: int, stop: int, length: int):
    """A per-channel/per-row parameter restricted to ``start:stop`` (scalars pass through)."""
    if value is None or np.ndim(value) == 0:
        return value
    array = np.asarray(value)
    if array.shape[0] != length:
        raise ConfigError(f"a per-index parameter has {array.shape[0]} entries, expected {length}")
    return array[start:stop]


def split_gemm(cfg: ArrayConfig, job: GemmJob) -> list[Run]:
    """Runs of at most ``max_m x max_n`` covering ``job`` (N slices outer, so weights load once per slice)."""
    m, k, n = job.shape
    if k > cfg.max_reduction:
        raise ConfigError(
            f"K={k} exceeds max_reduction={cfg.max_reduction}: the requantizer needs whole sums "
            "(build the array with a larger max_reduction)"
        )
    if (job.pool or job.held) and (m > cfg.max_m or n > cfg.max_n):
        raise ConfigError(f"a pooled or held run covers all of M={m} x N={n} at once; the array holds "
                          f"{cfg.max_m} x {cfg.max_n}")
    runs = []
    for n0 in range(0, n, cfg.max_n):
        n1 = min(n, n0 + cfg.max_n)
        for m0 in range(0, m, cfg.max_m):
            m1 = min(m, m0 + cfg.max_m)
            runs.append(Run(m0, n0, dataclasses.replace(
                job,
                act_codes=np.asarray(job.act_codes)[m0:m1],
                weight_codes=np.asarray(job.weight_codes)[:, n0:n1],
                bias=_slice(job.bias, n0, n1, n),
                mantissa=_slice(job.mantissa, n0, n1, n),
                shift=_slice(job.shift, n0, n1, n),
                thresholds=_slice(job.thresholds, n0, n1, n),
                row_mantissa=_slice(job.row_mantissa, m0, m1, m),
                row_shift=_slice(job.row_shift, m0, m1, m),
                negate=_slice(job.negate, n0, n1, n),
                shortcut=None if job.shortcut is None else np.asarray(job.shortcut)[m0:m1, n0:n1],
                shortcut_mantissa=_slice(job.shortcut_mantissa, n0, n1, n),
                shortcut_shift=_slice(job.shortcut_shift, n0, n1, n),
            )))  # fmt: skip
    return runs


class AcceleratorDriver:
    """Builds host programs for accelerator runs and decodes their results (one per live session).

    With ``overlap`` (the default) the runs of a GEMM are one :func:`hw.bus.program_steps` program,
    alternating buffer banks, so host transfers overlap compute; without, every run is
    :func:`hw.bus.gemm_steps`'s write -> start -> wait -> read from bank 0 (the reference the
    overlap is measured against).  Writes a bank already holds are left out: weights and channel
    parameters per bank, level tables (one bank) for the whole array.

    Pooled and held runs are barriers (:func:`hw.bus.program_steps`): each is a bus program of
    its own, and a held run (the ASQ barrier's second pass) runs in the bank of the run before it,
    whose output buffer holds the values it requantizes.
    """

    def __init__(self, cfg: ArrayConfig, layout: HostLayout, check_reset_outputs: bool = True,
                 overlap: bool = True) -> None:
        self.cfg = cfg
        self.layout = layout
        self.check_reset_outputs = check_reset_outputs
        self.overlap = overlap
        self.reset_done = False
        self.next_bank = 0
        self._held: list[dict[Region, tuple[HostWrite, ...]]] = [{} for _ in range(BANKS)]  # per bank: slice writes
        self._tables: tuple[HostWrite, ...] | None = None

    def _writes(self, job: GemmJob, bank: int) -> list[HostWrite]:
        """``job``'s writes into ``bank`` minus what the buffers and tables already hold."""
        writes = job_writes(self.cfg, job)
        held = self._held[bank]
        skip = set()
        for region in SLICE_REGIONS:
            words = tuple(w for w in writes if w.region == region)
            if words and held.get(region) == words:
                skip.add(region)
            held[region] = words
        tables = tuple(w for w in writes if w.region not in BANKED_REGIONS)
        if self._tables == tables:
            skip |= {w.region for w in tables}
        self._tables = tables
        return [w for w in writes if w.region not in skip]

    def _prefetch_writes(self, job: GemmJob | None, bank: int) -> list[HostWrite]:
        """The weights of ``job``'s first run for ``bank``, unless a bank holds them already (its program starts there)."""
        if job is None:
            return []
        words = tuple(w for w in job_writes(self.cfg, split_gemm(self.cfg, job)[0].job) if w.region == Region.WEIGHT)
        if any(held.get(Region.WEIGHT) == words for held in self._held):
            return []
        self._held[bank][Region.WEIGHT] = words
        return list(words)

    def _bus_program(self, runs: list[Run], prefetch: GemmJob | None) -> BusProgram:
        first = 0
        if self.overlap and runs[0].job.held:  # the previous run's bank holds the values
            first = (self.next_bank - 1) % BANKS
        elif self.overlap:  # every bank is idle between programs: start in one that holds the weights if any does
            weights = tuple(w for w in job_writes(self.cfg, runs[0].job) if w.region == Region.WEIGHT)
            holding = [bank for bank in range(BANKS) if self._held[bank].get(Region.WEIGHT) == weights]
            first = holding[0] if holding else self.next_bank
        writes = [self._writes(run.job, (first + i) % BANKS) for i, run in enumerate(runs)]
        after = (first + len(runs)) % BANKS
        program = program_steps(self.cfg, [run.job for run in runs], writes, first, self._prefetch_writes(prefetch, after))
        self.next_bank = after
        return program

    def _groups(self, runs: list[Run]) -> list[list[Run]]:
        """Runs in groups whose program fits the memories (after a reset prologue); one run each without overlap."""
        if not self.overlap:
            return [[run] for run in runs]
        groups: list[list[Run]] = []
        entries = captures = 0
        budget = PROGRAM_DEPTH - RESET_CYCLES - 3 - self.cfg.weight_depth  # room for a prefetch of weights
        barrier = False
        for run in runs:
            m, k, n = run.shape
            words = output_word_count(self.cfg, *run.job.output_shape, run.job.reads_pool_sums)
            needed = host_write_count(self.cfg, m, k, n, run.job.row_mantissa is not None,
                                      run.job.shortcut is not None) + words + 8
            wanted = words + 1
            if needed > budget or wanted + 2 > CAPTURE_DEPTH:
                raise ConfigError(f"one run needs {needed} program entries and {wanted} captures; the memories "
                                  f"hold {PROGRAM_DEPTH} and {CAPTURE_DEPTH}")
            alone = run.job.pool or run.job.held  # a barrier: a program of its own
            if not groups or barrier or alone or entries + needed > budget or captures + wanted + 2 > CAPTURE_DEPTH:
                groups.append([])
                entries = captures = 0
            barrier = alone
            groups[-1].append(run)
            entries, captures = entries + needed, captures + wanted
        return groups

    def programs(self, runs: list[Run], prefetch: GemmJob | None = None) -> list[tuple[HostProgram, list[Run], list[BusProgram]]]:
        """The runs of one GEMM as host programs that fit the program and capture memories.

        ``prefetch``: the GEMM that follows (with overlap): its first run's weights go into the
        next bank while the last run computes (its activations may depend on these outputs).
        """
        packed: list[tuple[HostProgram, list[Run], list[BusProgram]]] = []
        program, entries, captures = None, 0, 0
        groups = self._groups(runs)
        for number, group in enumerate(groups):
            last = number == len(groups) - 1 and self.overlap
            bus_program = self._bus_program(group, prefetch if last else None)
            needed = sum(step.rows for step in bus_program.steps)
            words = len(bus_program.tags)
            if needed + RESET_CYCLES + 3 > PROGRAM_DEPTH or words + 2 > CAPTURE_DEPTH:
                raise ConfigError(f"a program of {len(group)} runs needs {needed} entries and {words} captures; the "
                                  f"memories hold {PROGRAM_DEPTH} and {CAPTURE_DEPTH}")
            if program is not None and (entries + needed + 1 > PROGRAM_DEPTH or captures + words > CAPTURE_DEPTH):
                program.end()
                program = None
            if program is None:
                program, entries, captures = HostProgram(self.layout), 0, 0
                packed.append((program, [], []))
                if not self.reset_done:
                    program.drive({RESET_NAME: 1}, cycles=RESET_CYCLES)
                    entries = RESET_CYCLES
                    if self.check_reset_outputs:
                        program.drive(capture=True)  # every output right after reset: an X/Z bit is an error
                        entries, captures = entries + 1, 1
                    self.reset_done = True
            append_steps(program, bus_program.steps)
            packed[-1][1].extend(group)
            packed[-1][2].append(bus_program)
            entries += needed
            captures += words
        if program is not None:
            program.end()
        return packed

    def decode(self, result: HostResult, runs: list[Run], bus_programs: list[BusProgram]) -> list[RunOutcome]:
        """The outcomes of ``runs``, which ran as ``bus_programs`` in one host program."""
        words, refused = result.captures.ints("rd_data"), result.captures.ints("wr_refused")
        waits = [int(wait) for wait in result.waits]
        tail = sum(len(bus_program.tags) for bus_program in bus_programs)
        words, refused = words[len(words) - tail:], refused[len(refused) - tail:]
        decoded = []
        for bus_program in bus_programs:
            count, windows = len(bus_program.tags), len(bus_program.windows)
            decoded += bus_program.decode(words[:count], refused[:count], waits[:windows])
            words, refused, waits = words[count:], refused[count:], waits[windows:]
        outcomes = []
        for run, done in zip(runs, decoded, strict=True):
            m, k, n = run.shape
            if done.refused:
                raise SimulationError(f"a write loading the run after rows {run.m0}.. cols {run.n0}.. was refused: "
                                      "the host protocol wrote into the bank in use")
            outputs = decode_outputs(self.cfg, done.words, *run.job.output_shape, run.job.reads_pool_sums)
            outcomes.append(RunOutcome(run, outputs, done.cycles, gemm_cycles(self.cfg, m, k, n, run.job.pool)))
        return outcomes


def append_steps(program: HostProgram, steps: list[BusStep]) -> None:
    """The host protocol's steps as program entries: one batch each, a wait step as a WAIT on ``done``."""
    for step in steps:
        if step.wait_limit is None:
            program.drive(dict(step.inputs), step.edges, step.capture)
        else:
            program.wait(step.wait_limit, dict(step.inputs), step.capture)


async def run_gemm(session, driver: AcceleratorDriver, job: GemmJob, prefetch: GemmJob | None = None) -> GemmOutcome:
    """``job`` (any M, N) on the accelerator behind ``session``; outputs assembled to ``job.output_shape``.

    ``prefetch``: the next GEMM on this accelerator, whose weights load while ``job``'s last run computes.
    """
    outputs = np.zeros(job.output_shape, dtype=np.int64)
    outcomes: list[RunOutcome] = []
    program_cycles, seconds = 0, 0.0
    for program, runs, bus_programs in driver.programs(split_gemm(driver.cfg, job), prefetch):
        result = await session.run(program)
        program_cycles += result.cycles
        seconds += result.seconds
        for outcome in driver.decode(result, runs, bus_programs):
            rm, rn = outcome.outputs.shape
            outputs[outcome.run.m0 : outcome.run.m0 + rm, outcome.run.n0 : outcome.run.n0 + rn] = outcome.outputs
            outcomes.append(outcome)
    return GemmOutcome(outputs, outcomes, program_cycles, seconds)
