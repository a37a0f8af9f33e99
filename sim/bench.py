"""Simulation throughput, side by side: ``python -m sim.bench``.

One accelerator configuration and one GEMM workload on four simulators:

* Amaranth's Python simulator (``hw.pysim_driver``, the hw engineer's own driver);
* cocotb + Icarus and cocotb + Verilator (the host sequencer: no Python per cycle);
* the plain Verilator C++ harness (same Verilog, no Python, no VPI).

The four run the same GEMMs (Amaranth: :func:`hw.bus.gemm_steps` per run; the others the
double-buffered programs of :class:`sim.accelerator.AcceleratorDriver`).  Cycle rates count simulated
clock cycles (bus writes, runs and output reads) over the time the simulator spent on them; MAC rates count the GEMM's useful multiply-accumulates.  Builds go to a
fresh directory unless ``--reuse-builds``, so the build column is a real build.  A second table
runs a whole CIFAR ResNet-20 (random weights, golden's integer model) through the RTL and checks
every layer bit for bit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from dataclasses import dataclass

import numpy as np

from golden.errors import LutmacError
from golden.files import removed_on_signal, temporary_folder
from hw.config import ArrayConfig, preset
from hw.cycles import gemm_cycles
from hw.host import GemmJob
from hw.layout import OutputMode

from .toolchain import BUILD_ROOT_ENV

RATIO_TARGET = 0.25
RESNET20_TARGET_SECONDS = 30.0


@dataclass
class BenchRow:
    simulator: str
    build_seconds: float
    sim_seconds: float
    cycles: int
    macs: int
    bit_exact: bool

    @property
    def cycles_per_second(self) -> float:
        return self.cycles / self.sim_seconds

    @property
    def macs_per_second(self) -> float:
        return self.macs / self.sim_seconds


def bench_job(cfg: ArrayConfig, m: int, k: int, n: int, seed: int = 0) -> GemmJob:
    rng = np.random.default_rng(seed)
    act = rng.integers(0, cfg.datapath.num_act_codes, (m, k))
    weight = rng.choice(cfg.kind.weight_code_pool(cfg.datapath), (k, n))
    return GemmJob(act, weight, OutputMode.RAW, bias=0)


def _amaranth(cfg: ArrayConfig, job: GemmJob, expected: np.ndarray, repeats: int) -> BenchRow:
    from amaranth.sim import Simulator  # noqa: F401  (import cost outside the timed region)

    from hw.pysim_driver import simulate_jobs

    m, k, n = job.shape
    start = time.perf_counter()
    simulate_jobs(cfg, [])  # elaboration and the simulator's own compilation: its "build"
    build_seconds = time.perf_counter() - start
    start = time.perf_counter()
    results = simulate_jobs(cfg, [job] * repeats)
    seconds = time.perf_counter() - start - build_seconds
    cycles = sum(result.edges for result in results)
    exact = all(np.array_equal(result.outputs, expected) for result in results)
    return BenchRow("Amaranth Python sim", build_seconds, seconds, cycles, repeats * m * k * n, exact)


def _cocotb(cfg: ArrayConfig, job: GemmJob, expected: np.ndarray, simulator: str, repeats: int) -> BenchRow:
    from .accelerator import accelerator_design
    from .build_cache import build
    from .jobs import AcceleratorJob
    from .runner import run_testbench
    from .stimulus import Workload

    design, layout = accelerator_design(cfg)
    start = time.perf_counter()
    built = build(design, simulator, optimize=True)
    build_seconds = built.build_seconds or time.perf_counter() - start
    workloads = [Workload(f"bench {i}", job) for i in range(repeats)]
    bench = AcceleratorJob(seed=0, cfg=cfg, layout=layout, workloads=workloads, check_reset_outputs=False)
    report = run_testbench(design, simulator, bench, optimize=True, label="bench").report
    m, k, n = job.shape
    return BenchRow(f"cocotb + {simulator.capitalize()}", build_seconds, report.sim_seconds, report.program_cycles,
                    repeats * m * k * n, not report.failures)


def _harness(cfg: ArrayConfig, job: GemmJob, expected: np.ndarray, repeats: int) -> BenchRow:
    import asyncio

    from .accelerator import AcceleratorDriver, accelerator_design, run_gemm
    from .harness import HarnessSession, build_harness

    design, layout = accelerator_design(cfg, internal_clock=False)
    start = time.perf_counter()
    harness = build_harness(design)
    build_seconds = harness.build_seconds or time.perf_counter() - start
    m, k, n = job.shape
    with temporary_folder(prefix="lutmac-bench-harness-") as workdir, HarnessSession(harness, layout, workdir) as session:
        driver = AcceleratorDriver(cfg, layout, check_reset_outputs=False)  # as the cocotb rows
        outcomes = [asyncio.run(run_gemm(session, driver, job)) for _ in range(repeats)]
    exact = all(np.array_equal(outcome.outputs, expected) for outcome in outcomes)
    return BenchRow("Verilator C++ harness", build_seconds, sum(o.sim_seconds for o in outcomes),
                    sum(o.program_cycles for o in outcomes), repeats * m * k * n, exact)


def gemm_table(cfg: ArrayConfig, m: int, k: int, n: int, repeats: int, slow_repeats: int) -> list[BenchRow]:
    from hw.host import golden_outputs

    job = bench_job(cfg, m, k, n)
    expected = golden_outputs(cfg, job)
    return [
        _amaranth(cfg, job, expected, slow_repeats),
        _cocotb(cfg, job, expected, "icarus", slow_repeats),
        _cocotb(cfg, job, expected, "verilator", repeats),
        _harness(cfg, job, expected, repeats),
    ]


def format_gemm_table(cfg: ArrayConfig, shape: tuple[int, int, int], rows: list[BenchRow]) -> str:
    m, k, n = shape
    lines = [
        f"GEMM {m}x{k}x{n} on {cfg.name_hint} (host_lanes={cfg.host_lanes}); one run = "
        f"{gemm_cycles(cfg, m, k, n)} compute cycles + host transfers",
        f"{'simulator':<24}{'build s':>9}{'sim s':>10}{'cycles':>11}{'cycles/s':>13}{'MACs/s':>13}  bit-exact",
    ]
    for row in rows:
        lines.append(f"{row.simulator:<24}{row.build_seconds:>9.1f}{row.sim_seconds:>10.3f}{row.cycles:>11}"
                     f"{row.cycles_per_second:>13.3g}{row.macs_per_second:>13.3g}  {row.bit_exact}")
    harness, cocotb_verilator = rows[3], rows[2]
    ratio = cocotb_verilator.cycles_per_second / harness.cycles_per_second
    lines.append(f"cocotb + Verilator runs at {ratio:.0%} of the plain harness's cycle rate "
                 f"(target >= {RATIO_TARGET:.0%}: {'met' if ratio >= RATIO_TARGET else 'NOT met'})")
    return "\n".join(lines)


def resnet20_table(backends: tuple[str, ...], size: int = 32, rows: int = 8, cols: int = 8) -> str:
    """The network on each backend (double-buffered), and once on the first without overlap for comparison."""
    from .network import run_network_rtl
    from .resnet20 import random_resnet20

    x = np.random.default_rng(0).normal(0, 1, (1, 3, size, size))
    network = random_resnet20(x)
    lines = [f"CIFAR ResNet-20 ({size}x{size} input, random weights, post w4a4 body / int w8a8 edges) on "
             f"{rows}x{cols} arrays, every layer checked bit for bit",
             f"{'backend':<20}{'overlap':>8}{'wall s':>8}{'sim s':>8}{'run cycles':>12}{'program cycles':>16}"
             f"{'MACs':>12}  bit-exact  target"]
    for backend, overlap in [(backend, True) for backend in backends] + [(backends[0], False)]:
        run = run_network_rtl(network, x, backend, rows, cols, overlap=overlap)
        verdict = "met" if run.wall_seconds <= RESNET20_TARGET_SECONDS else "NOT met"
        lines.append(f"{backend:<20}{'yes' if overlap else 'no':>8}{run.wall_seconds:>8.1f}{run.sim_seconds:>8.2f}"
                     f"{run.cycles:>12}{run.program_cycles:>16}{run.macs:>12}  {str(run.bit_exact):<9}  "
                     f"<= {RESNET20_TARGET_SECONDS:.0f} s wall: {verdict}")
    lines.append("(run cycles: start..done of every accelerator run; program cycles: every simulated edge, host "
                 "transfers included; overlap: double-buffered host transfers; wall: everything after the builds, "
                 "golden model and per-layer comparison included)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sim.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="post4-8x8", help="hw preset name (default: post4-8x8, the array the network runs use)")
    parser.add_argument("--shape", type=_shape, default=(16, 64, 16), help="M,K,N of the GEMM (default 16,64,16)")
    parser.add_argument("--repeats", type=_positive, default=200, help="GEMM repetitions on Verilator (default 200)")
    parser.add_argument("--slow-repeats", type=_positive, default=10,
                        help="GEMM repetitions on Amaranth's simulator and Icarus (default 10)")
    parser.add_argument("--reuse-builds", action="store_true", help="use the shared build cache (build times ~0)")
    parser.add_argument("--no-resnet20", action="store_true", help="skip the ResNet-20 table")
    args = parser.parse_args(argv)
    try:
        cfg = preset(args.config)
    except LutmacError as error:
        parser.error(str(error))
    with contextlib.ExitStack() as stack:
        stack.enter_context(removed_on_signal())
        if not args.reuse_builds:  # fresh builds in a folder of their own, removed afterwards
            build = stack.enter_context(temporary_folder(prefix="lutmac-bench-"))
            stack.enter_context(_environment(BUILD_ROOT_ENV, str(build)))
        print(format_gemm_table(cfg, args.shape, gemm_table(cfg, *args.shape, args.repeats, args.slow_repeats)),
              flush=True)
        if not args.no_resnet20:
            print()
            print(resnet20_table(("verilator", "cocotb-verilator")))


def _positive(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def _shape(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(part.strip().isdigit() and int(part) >= 1 for part in parts):
        raise argparse.ArgumentTypeError(f"shape {text!r} must be three positive integers M,K,N such as 16,64,16")
    return tuple(int(part) for part in parts)


@contextlib.contextmanager
def _environment(name: str, value: str):
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


if __name__ == "__main__":
    main()
