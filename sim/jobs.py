"""Typed jobs and reports between the runner (pytest, the benchmark, the network runner) and the cocotb testbenches.

A testbench runs in the simulator's own Python process: the runner pickles its job there
(``$LUTMAC_SIM_JOB``) and reads back its report (``$LUTMAC_SIM_REPORT``).  Each testbench has
one :class:`SimJob` subclass, which names the cocotb test that runs it and the
:class:`SimReport` subclass it returns.  Both are checked field by field against their
annotations where they are made and where they are read, so a missing or mistyped field is a
:class:`~golden.errors.ConfigError` naming the job and the field, raised in the runner before
the simulator starts, not a ``KeyError`` inside it.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import pickle
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from golden.errors import ConfigError
from hw.config import ArrayConfig

from .pe_bank import PeCase
from .program import HostLayout, HostProgram
from .scoreboard import RunCheck
from .sequencer import HostResult
from .stimulus import Workload

JOB_ENV = "LUTMAC_SIM_JOB"
REPORT_ENV = "LUTMAC_SIM_REPORT"


def _mismatch(value: Any, hint: Any) -> str | None:
    """Why ``value`` does not match the annotation ``hint`` (``None`` when it does)."""
    if hint is Any:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return None if any(_mismatch(value, arg) is None for arg in args) else f"expected {_name(hint)}, got {_kind(value)}"
    if origin in (list, tuple, dict):
        if not isinstance(value, origin):
            return f"expected {_name(hint)}, got {_kind(value)}"
        if origin is dict:
            items = [(f"[{key!r}]", item, args[1]) for key, item in value.items()] if args else []
            items += [(f"key {key!r}", key, args[0]) for key in value] if args else []
        elif origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                return f"expected {len(args)} items, got {len(value)}"
            items = [(f"[{i}]", item, arg) for i, (item, arg) in enumerate(zip(value, args, strict=True))]
        else:
            items = [(f"[{i}]", item, args[0]) for i, item in enumerate(value)] if args else []
        for where, item, item_hint in items:
            problem = _mismatch(item, item_hint)
            if problem is not None:
                return f"{where}: {problem}"
        return None
    if hint is type(None):
        return None if value is None else f"expected None, got {_kind(value)}"
    if hint is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)
    elif hint is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)
    else:
        ok = isinstance(value, hint)
    return None if ok else f"expected {_name(hint)}, got {_kind(value)}"


def _name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _kind(value: Any) -> str:
    return type(value).__name__


def check_fields(record: Any) -> None:
    """Raise :class:`ConfigError` naming the first field of the dataclass ``record`` that is missing or mistyped."""
    hints = typing.get_type_hints(type(record))
    name = type(record).__name__
    for item in dataclasses.fields(record):
        if not hasattr(record, item.name):
            raise ConfigError(f"{name} has no field {item.name!r}")
        problem = _mismatch(getattr(record, item.name), hints[item.name])
        if problem is not None:
            raise ConfigError(f"{name}.{item.name}: {problem}")


@dataclass(frozen=True, kw_only=True)
class SimReport:
    """Base of every testbench's report: what went wrong (empty when the run passed)."""

    failures: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, kw_only=True)
class SimJob:
    """Base of every testbench's job: its seed, the cocotb test that runs it and the report it returns."""

    testbench: ClassVar[str]  # the module the simulator imports
    testcase: ClassVar[str]  # the cocotb test in it
    report_type: ClassVar[type[SimReport]]

    seed: int

    def __post_init__(self) -> None:
        check_fields(self)


def check_job(job: SimJob) -> None:
    """Raise :class:`ConfigError` unless ``job`` is a complete, well-typed :class:`SimJob` (runner side)."""
    if not isinstance(job, SimJob):
        raise ConfigError(f"a testbench job must be a SimJob, got {type(job).__name__}")
    check_fields(job)


def write_job(path: Path, job: SimJob) -> None:
    """Pickle ``job`` for the testbench, checked first."""
    check_job(job)
    path.write_bytes(pickle.dumps(job))


def load_job(job_type: type[SimJob]) -> SimJob:
    """The job the runner pickled for this testbench, checked against ``job_type`` (testbench side)."""
    job = pickle.loads(Path(os.environ[JOB_ENV]).read_bytes())
    if not isinstance(job, job_type):
        raise ConfigError(f"the testbench takes a {job_type.__name__}; the runner sent {type(job).__name__}")
    check_fields(job)
    return job


def save_report(report: SimReport) -> None:
    """Pickle the testbench's report for the runner, checked first (testbench side)."""
    check_fields(report)
    Path(os.environ[REPORT_ENV]).write_bytes(pickle.dumps(report))


def read_report(path: Path, job: SimJob) -> SimReport | None:
    """The report a testbench left at ``path`` (``None`` if it wrote none), checked against the job's report type."""
    if not path.is_file():
        return None
    report = pickle.loads(path.read_bytes())
    if not isinstance(report, job.report_type):
        raise ConfigError(f"{type(job).__name__} returns a {job.report_type.__name__}; the testbench wrote "
                          f"{type(report).__name__}")
    check_fields(report)
    return report


# ---- the testbenches of sim/ (the network segment's job is sim.network.NetworkJob)


@dataclass(frozen=True, kw_only=True)
class AcceleratorReport(SimReport):
    outputs_checked: int
    macs: int
    runs: list[RunCheck]
    coverage: dict[str, tuple[int, int]]  # name -> (distinct seen, possible)
    sim_seconds: float
    program_cycles: int
    wall_seconds: float


@dataclass(frozen=True, kw_only=True)
class AcceleratorJob(SimJob):
    """GEMM workloads on the accelerator behind a host sequencer, checked against golden (:mod:`sim.tb_accelerator`)."""

    testbench: ClassVar[str] = "sim.tb_accelerator"
    testcase: ClassVar[str] = "gemm_workloads"
    report_type: ClassVar[type[SimReport]] = AcceleratorReport

    cfg: ArrayConfig
    layout: HostLayout
    workloads: list[Workload]
    check_reset_outputs: bool = True  # capture every output right after reset: an X/Z bit (Icarus) fails
    overlap: bool = True  # a GEMM's runs overlap host transfers with compute (sim.accelerator.AcceleratorDriver)


@dataclass(frozen=True, kw_only=True)
class PeReport(SimReport):
    products_checked: dict[str, int]  # PE kind -> code pairs checked


@dataclass(frozen=True, kw_only=True)
class PeJob(SimJob):
    """Code-pair cases on a PE bank, checked against golden (:mod:`sim.tb_pe`)."""

    testbench: ClassVar[str] = "sim.tb_pe"
    testcase: ClassVar[str] = "pe_products"
    report_type: ClassVar[type[SimReport]] = PeReport

    layout: HostLayout
    cases: list[PeCase]


@dataclass(frozen=True, kw_only=True)
class ProgramsReport(SimReport):
    results: list[HostResult]


@dataclass(frozen=True, kw_only=True)
class ProgramsJob(SimJob):
    """Host programs run as they are, their raw results returned (:mod:`sim.tb_host`)."""

    testbench: ClassVar[str] = "sim.tb_host"
    testcase: ClassVar[str] = "run_programs"
    report_type: ClassVar[type[SimReport]] = ProgramsReport

    layout: HostLayout
    programs: list[HostProgram]
