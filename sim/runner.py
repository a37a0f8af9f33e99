"""Run a cocotb testbench on a built design: its typed job in, its typed report out, a failing run rerun with waves.

A testbench receives its :class:`~sim.jobs.SimJob` through ``$LUTMAC_SIM_JOB`` and writes its
:class:`~sim.jobs.SimReport` through ``$LUTMAC_SIM_REPORT`` (:mod:`sim.jobs`).  A failing run
is rerun with waveforms (FST from Icarus, VCD from Verilator), so the file a person opens in
GTKWave or Surfer is always there, and its path is part of the raised
:class:`~sim.failures.SimulationError`, with the seed.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from .build_cache import HdlDesign, SimBuild, build
from .failures import SimulationError, describe_failure
from .jobs import JOB_ENV, REPORT_ENV, SimJob, SimReport, check_job, read_report, write_job
from .toolchain import TIMESCALE, cocotb_runner, runner_env, waves_requested


@dataclass
class SimRun:
    """What one testbench run left behind."""

    simulator: str
    passed: bool
    report: SimReport | None  # None when the testbench wrote none (it crashed first)
    run_dir: Path
    log_path: Path
    wave_path: Path | None
    wall_seconds: float
    failures: list[str] = field(default_factory=list)


_run_counter = itertools.count()


def _new_run_dir(sim_build: SimBuild, label: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[:80]
    run_dir = sim_build.build_dir.parent / "runs" / f"{safe}-{sim_build.simulator}-{os.getpid()}-{next(_run_counter)}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    return run_dir


def _execute(sim_build: SimBuild, job: SimJob, label: str) -> SimRun:
    from cocotb_tools.runner import get_results

    run_dir = _new_run_dir(sim_build, label)
    job_path, report_path, log_path = run_dir / "job.pkl", run_dir / "report.pkl", run_dir / "sim.log"
    results_xml = run_dir / "results.xml"
    write_job(job_path, job)
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
    runner = cocotb_runner(sim_build.simulator)
    runner.build_dir = sim_build.build_dir
    start = time.perf_counter()
    crashed = None
    try:
        with runner_env(sim_build.waves):
            runner.test(
                test_module=job.testbench,
                hdl_toplevel=sim_build.design.toplevel,
                hdl_toplevel_lang="verilog",
                testcase=job.testcase,
                seed=job.seed,
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
            failures.append(f"no cocotb test named {job.testcase!r} ran in {job.testbench}")
        elif num_failed:
            failures.append(f"{num_failed} of {num_tests} cocotb tests failed")
    except (RuntimeError, OSError) as error:
        failures.append(f"no results from the simulator ({error})")
    if crashed:
        failures.append(crashed)
    report = read_report(report_path, job)
    if report is not None:
        failures += report.failures
    if wave_path is not None and not wave_path.is_file():
        wave_path = None
    return SimRun(sim_build.simulator, not failures, report, run_dir, log_path, wave_path, seconds, failures)


def run_testbench(
    design: HdlDesign,
    simulator: str,
    job: SimJob,
    waves: bool | None = None,
    label: str | None = None,
    check: bool = True,
    optimize: bool = False,
) -> SimRun:
    """Run ``job``'s cocotb test on ``design``; on failure rerun it with waves and raise :class:`SimulationError`.

    The job is checked before anything is built.  With ``check=False`` the failing
    :class:`SimRun` is returned instead of raised.
    """
    check_job(job)
    waves = waves_requested(waves)
    label = label or job.testcase
    result = _execute(build(design, simulator, waves, optimize), job, label)
    if result.passed:
        return result
    if not waves:
        rerun = _execute(build(design, simulator, True), job, label + "-waves")
        rerun.failures = result.failures + [f"(rerun with waves: {'passed' if rerun.passed else 'failed again'})"]
        rerun.passed = False
        result = rerun
    if check:
        raise SimulationError(describe_failure(f"{job.testbench}.{job.testcase}", result.simulator, job.seed,
                                               result.failures, result.wave_path, result.log_path))
    return result
