"""Benchmark (not a test): time a columnar design-space sweep over ResNet-18.

Target: 10^6 points in <= 10 s on one core.  ``python -m reports.bench_sweep [--points N] [--synth PATH]``.
The space crosses 12 array heights x 12 widths, every dataflow, three batch sizes, five sizes of
each of the three buffers and every synthesized PE; the first ``N`` points of it are evaluated.
The timed region covers planning (per-axis tables, the own array's cycles per shape) and
evaluating every point over every layer (cycles, accesses, energy, area, latency); the network
trace is done once before timing.
"""

from __future__ import annotations

import argparse
import time

from .energy import DEFAULT_SYNTH_PATH, load_synthesis
from .networks import network_layers
from .sweep import DEFAULT_CHUNK, SweepSpec, run_sweep

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
    parser.add_argument("--plot", default=None, help="also write the Pareto figure of the sweep (PNG) here, after timing")
    args = parser.parse_args(argv)
    synthesis = load_synthesis(args.synth)
    layers = network_layers(args.network)
    start = time.perf_counter()
    result = run_sweep(layers, benchmark_spec(), synthesis, chunk=args.chunk, limit=args.points, progress=False)
    elapsed = time.perf_counter() - start
    if len(result) < args.points:
        raise SystemExit(f"the benchmark space has only {len(result)} points with this synthesis file; cannot time {args.points}")
    verdict = "OK" if elapsed <= TARGET_SECONDS * len(result) / 1e6 else "TOO SLOW"
    print(f"{len(result)} design points x {len(layers)} layers of {args.network}: {elapsed:.3f} s "
          f"({len(result) / elapsed:,.0f} points/s; target 10^6 points <= {TARGET_SECONDS:.0f} s: {verdict})")
    if args.plot:
        from .plots import pareto_figure, save_figure

        save_figure(pareto_figure(result, f"{args.network}: energy vs latency"), args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
