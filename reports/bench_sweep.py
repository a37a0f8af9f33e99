"""Benchmark (not a test): time a columnar design-space sweep over ResNet-18, in one process and on Dask.

Target: 10^6 points in <= 10 s on one core.  ``python -m reports.bench_sweep [--points N] [--synth PATH]
[--dask local --workers 1 2 | --dask tcp://HOST:8786] [--plot FILE]``.
The space crosses 12 array heights x 12 widths, every dataflow, three batch sizes, five sizes of
each of the three buffers and every synthesized PE; the first ``N`` points of it are evaluated.
The timed region covers planning (per-axis tables, the own array's cycles per shape) and
evaluating every point over every layer (cycles, accesses, energy, area, latency); the network
trace is done once before timing.  With ``--dask`` the same sweep then runs on a LocalCluster of each
``--workers`` count (started before its timing) or on the given scheduler's workers, and each
run's points/s is printed with whether its result is identical to the single-process one.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from .energy import DEFAULT_SYNTH_PATH, load_synthesis
from .networks import network_layers
from .sweep import DEFAULT_CHUNK, SweepResult, SweepSpec, plan_sweep, run_sweep

TARGET_SECONDS = 10.0
SIDES = (4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
BUFFERS_KB = (16.0, 32.0, 64.0, 128.0, 256.0)
BATCHES = (1, 4, 16)


def benchmark_spec() -> SweepSpec:
    return SweepSpec.grid(SIDES, SIDES, ifmap_kb=BUFFERS_KB, filter_kb=BUFFERS_KB, ofmap_kb=BUFFERS_KB, batch=BATCHES)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--synth", default=DEFAULT_SYNTH_PATH, help="synthesis JSON (default build/synth/synth.json)")
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--network", default="resnet18")
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="points per chunk")
    parser.add_argument("--dask", default=None, help="also run on Dask: 'local' (a LocalCluster) or tcp://HOST:8786")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="LocalCluster sizes to time (default 1 2)")
    parser.add_argument("--plot", default=None, help="also write the Pareto figure of the sweep (PNG) here, after timing")
    args = parser.parse_args(argv)
    synthesis = load_synthesis(args.synth)
    layers = network_layers(args.network)
    available = plan_sweep(layers, benchmark_spec(), synthesis).size
    if available < args.points:
        raise SystemExit(f"the benchmark space has only {available} points with this synthesis file; cannot time {args.points}")
    start = time.perf_counter()
    result = run_sweep(layers, benchmark_spec(), synthesis, chunk=args.chunk, limit=args.points, progress=False)
    elapsed = time.perf_counter() - start
    verdict = "OK" if elapsed <= TARGET_SECONDS * len(result) / 1e6 else "TOO SLOW"
    print(f"{len(result)} design points x {len(layers)} layers of {args.network}: {elapsed:.3f} s "
          f"({len(result) / elapsed:,.0f} points/s; target 10^6 points <= {TARGET_SECONDS:.0f} s: {verdict})")
    if args.dask:
        for workers in args.workers if args.dask == "local" else [None]:
            _time_dask(args, layers, synthesis, result, workers)
    if args.plot:
        from .plots import pareto_figure, save_figure

        save_figure(pareto_figure(result, f"{args.network}: energy vs latency"), args.plot)
        print(f"wrote {args.plot}")


def _time_dask(args, layers, synthesis, single: SweepResult, workers: int | None) -> None:
    from .sweep_dask import dask_client, run_sweep_dask

    with dask_client(args.dask, workers or 1) as client:
        count = len(client.scheduler_info()["workers"])
        start = time.perf_counter()
        result = run_sweep_dask(layers, benchmark_spec(), synthesis, client, chunk=args.chunk, limit=args.points)
        elapsed = time.perf_counter() - start
    same = all(np.array_equal(result.columns[name], single.columns[name]) for name in single.columns)
    print(f"dask {args.dask} with {count} worker{'s' if count > 1 else ''}: {len(result)} points in {elapsed:.3f} s "
          f"({len(result) / elapsed:,.0f} points/s); identical to the single-process run: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
