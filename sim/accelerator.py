"""Driving :class:`hw.top.Accelerator` through the host sequencer: any GEMM, tiled into accelerator runs.

The ports come from the accelerator's signature (:class:`hw.bus.HostBus`), each run's bus
steps from :func:`hw.bus.gemm_steps` (the protocol Amaranth's simulator runs too, edge for
edge) and the word formats from :mod:`hw.host`; this module only turns the steps into
host-program entries:

* a GEMM of any ``M`` and ``N`` (``K <= max_reduction``, so the requantizer sees whole sums) is
  split into runs of at most ``max_m x max_n``; weights, channel parameters and level tables are
  written once per ``N`` slice (the buffers keep them between runs), activations every run;
* a step becomes one batch of entries; its wait for ``done`` becomes a WAIT entry, whose edge
  count is the run's measured cycle count (:func:`hw.cycles.gemm_cycles`'s convention);
* runs are packed into as few programs as the program and capture memories allow, so a whole
  layer is one simulator round trip.

Every function here is simulator-agnostic: ``session`` is a :class:`sim.cocotb_io.HostSession`
or a :class:`sim.harness.HarnessSession`, running the same programs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from amaranth.back import verilog

import hw
from golden.errors import ConfigError
from golden.files import write_atomic
from hw.bus import BusStep, HostBus, gemm_steps
from hw.config import ArrayConfig
from hw.cycles import gemm_cycles
from hw.host import GemmJob, HostWrite, decode_outputs, job_writes, output_word_count
from hw.layout import Region
from hw.top import Accelerator

from .build_cache import HdlDesign
from .program import RESET_NAME, HostLayout, HostProgram, signature_ports
from .sequencer import HostResult, host_design
from .toolchain import build_root

PROGRAM_DEPTH = 1 << 15
CAPTURE_DEPTH = 1 << 12
RESET_CYCLES = 2
#: written once per N slice: they do not depend on the activation rows
SLICE_REGIONS = {Region.WEIGHT, Region.CHANNEL, Region.WEIGHT_TABLE, Region.ACT_TABLE, Region.PRODUCT_TABLE}


@lru_cache(maxsize=16)
def accelerator_verilog(cfg: ArrayConfig) -> tuple[str, str]:
    """``(module name, Verilog)`` of the accelerator for ``cfg``, cached on disk (conversion takes seconds)."""
    name = f"lutmac_{cfg.name_hint}"
    key = hashlib.sha256(f"{hw.SOURCE_FINGERPRINT} {cfg!r}".encode()).hexdigest()[:16]
    cached = build_root() / "verilog" / f"{name}-{key}.v"
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
    outputs: np.ndarray  # (m, n) as read from the output buffer
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
    """Builds host programs for accelerator runs and decodes their results (one per live session)."""

    def __init__(self, cfg: ArrayConfig, layout: HostLayout, check_reset_outputs: bool = True) -> None:
        self.cfg = cfg
        self.layout = layout
        self.check_reset_outputs = check_reset_outputs
        self.reset_done = False
        self._gemm_ids = itertools.count()
        self._loaded_slice: tuple[int, int] | None = None  # (GEMM id, n0) whose weights the buffers hold

    def _writes(self, run: Run, gemm_id: int) -> list[HostWrite]:
        writes = job_writes(self.cfg, run.job)
        if self._loaded_slice == (gemm_id, run.n0):
            writes = [w for w in writes if w.region not in SLICE_REGIONS]
        self._loaded_slice = (gemm_id, run.n0)
        return writes

    def programs(self, runs: list[Run]) -> list[tuple[HostProgram, list[Run]]]:
        """The runs of one GEMM packed into programs that fit the program and capture memories."""
        gemm_id = next(self._gemm_ids)
        packed: list[tuple[HostProgram, list[Run]]] = []
        program, members, entries, captures = None, [], 0, 0
        for run in runs:
            steps = gemm_steps(self.cfg, run.job, self._writes(run, gemm_id))
            needed = sum(step.rows for step in steps)
            words = sum(step.captures for step in steps)
            if needed + RESET_CYCLES + 3 > PROGRAM_DEPTH or words + 2 > CAPTURE_DEPTH:
                raise ConfigError(f"one run needs {needed} program entries and {words} captures; the memories "
                                  f"hold {PROGRAM_DEPTH} and {CAPTURE_DEPTH}")
            if program is not None and (entries + needed + 1 > PROGRAM_DEPTH or captures + words > CAPTURE_DEPTH):
                program.end()
                packed.append((program, members))
                program = None
            if program is None:
                program, members, entries, captures = HostProgram(self.layout), [], 0, 0
                if not self.reset_done:
                    program.drive({RESET_NAME: 1}, cycles=RESET_CYCLES)
                    entries = RESET_CYCLES
                    if self.check_reset_outputs:
                        program.drive(capture=True)  # every output right after reset: an X/Z bit is an error
                        entries, captures = entries + 1, 1
                    self.reset_done = True
            append_steps(program, steps)
            members.append(run)
            entries += needed
            captures += words
        if program is not None:
            program.end()
            packed.append((program, members))
        return packed

    def decode(self, result: HostResult, runs: list[Run]) -> list[RunOutcome]:
        words = result.captures.ints("rd_data")
        words = words[len(words) - sum(output_word_count(self.cfg, *r.job.output_shape, r.job.reads_pool_sums)
                                       for r in runs):]
        outcomes, offset = [], 0
        for run, cycles in zip(runs, result.waits, strict=True):
            m, k, n = run.shape
            count = output_word_count(self.cfg, *run.job.output_shape, run.job.reads_pool_sums)
            outputs = decode_outputs(self.cfg, words[offset : offset + count], *run.job.output_shape, run.job.reads_pool_sums)
            offset += count
            outcomes.append(RunOutcome(run, outputs, int(cycles), gemm_cycles(self.cfg, m, k, n, run.job.pool)))
        return outcomes


def append_steps(program: HostProgram, steps: list[BusStep]) -> None:
    """The host protocol's steps as program entries: one batch each, a wait step as a WAIT on ``done``."""
    for step in steps:
        if step.wait_limit is None:
            program.drive(dict(step.inputs), step.edges, step.capture)
        else:
            program.wait(step.wait_limit, dict(step.inputs), step.capture)


async def run_gemm(session, driver: AcceleratorDriver, job: GemmJob) -> GemmOutcome:
    """``job`` (any M, N) on the accelerator behind ``session``; outputs assembled to ``(M, N)``."""
    outputs = np.zeros(job.output_shape, dtype=np.int64)
    outcomes: list[RunOutcome] = []
    program_cycles, seconds = 0, 0.0
    for program, runs in driver.programs(split_gemm(driver.cfg, job)):
        result = await session.run(program)
        program_cycles += result.cycles
        seconds += result.seconds
        for outcome in driver.decode(result, runs):
            rm, rn = outcome.outputs.shape
            outputs[outcome.run.m0 : outcome.run.m0 + rm, outcome.run.n0 : outcome.run.n0 + rn] = outcome.outputs
            outcomes.append(outcome)
    return GemmOutcome(outputs, outcomes, program_cycles, seconds)
