"""Benchmark (not a test): time a 1000-point design-space sweep over ResNet-18.

Target: <= 10 s on the project machine.  ``python -m reports.bench_sweep [--synth PATH]``.
The timed region covers building the design points and evaluating every point over every
layer (cycles, accesses, energy); the network trace is done once before timing.
"""

from __future__ import annotations

import argparse
import itertools
import time

from .energy import DEFAULT_SYNTH_PATH, load_synthesis
from .estimator import FLOWS, HardwareConfig
from .networks import network_layers
from .sweep import run_sweep

TARGET_SECONDS = 10.0


def benchmark_points(synthesis, count: int) -> list[HardwareConfig]:
    """``count`` distinct design points cycling through arrays, buffer sizes, dataflows and synthesized PEs."""
    arrays = list(itertools.product((4, 8, 16, 32, 64), repeat=2))  # sizes the own array (lutmac) supports too
    buffers = (16.0, 32.0, 64.0, 128.0, 256.0)
    combos = itertools.product(buffers, arrays, FLOWS, synthesis.configurations())
    points = [HardwareConfig(r, c, flow, kind, wb, ab, frac, kb, kb, kb) for kb, (r, c), flow, (kind, wb, ab, frac) in combos]
    if len(points) < count:
        raise SystemExit(f"only {len(points)} distinct points from this synthesis file; cannot benchmark {count}")
    return points[:count]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--synth", default=DEFAULT_SYNTH_PATH, help="synthesis JSON (default build/synth/synth.json)")
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--network", default="resnet18")
    args = parser.parse_args(argv)
    synthesis = load_synthesis(args.synth)
    layers = network_layers(args.network)
    start = time.perf_counter()
    points = benchmark_points(synthesis, args.points)
    result = run_sweep(layers, points, synthesis)
    elapsed = time.perf_counter() - start
    verdict = "OK" if elapsed <= TARGET_SECONDS else "TOO SLOW"
    print(f"{len(result.points)} design points x {len(layers)} layers of {args.network}: {elapsed:.3f} s "
          f"({elapsed / len(result.points) * 1e3:.3f} ms/point; target <= {TARGET_SECONDS:.0f} s: {verdict})")


if __name__ == "__main__":
    main()
