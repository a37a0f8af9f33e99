"""Benchmark (not a test): ``lutmac estimate`` against SCALE-Sim 2.0.2 on the same .cfg and topology, in one run.

``python -m reports.bench_scalesim [--network resnet20] [--array 4x4] [--dataflow os] [--synth PATH]``
writes the network's SCALE-Sim topology (:func:`reports.topology.topology_csv`) and a CALC-mode
cfg into a temporary folder, times the drop-in (read both files, evaluate, write
COMPUTE_REPORT.csv) and SCALE-Sim (its whole run, reports written, traces not saved), and
prints both times and whether every layer's Total Cycles and utilization columns agree.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from .energy import DEFAULT_SYNTH_PATH, load_synthesis
from .networks import network_layers
from .scalesim_config import ScaleConfig, read_config
from .scalesim_dropin import SCALESIM_COLUMNS, compute_report, hardware_config, write_compute_report
from .scalesim_ref import run_scalesim
from .topology import read_topology, topology_csv


def _array(text: str) -> tuple[int, int]:
    rows, _, cols = text.partition("x")
    return int(rows), int(cols)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--network", default="resnet20")
    parser.add_argument("--array", type=_array, default=(4, 4), help="RxC (default 4x4)")
    parser.add_argument("--dataflow", default="os", choices=("os", "ws", "is"))
    parser.add_argument("--synth", default=DEFAULT_SYNTH_PATH, help="synthesis JSON (default build/synth/synth.json)")
    args = parser.parse_args(argv)
    synthesis = load_synthesis(args.synth)
    with tempfile.TemporaryDirectory(prefix="bench_scalesim_") as folder:
        folder = Path(folder)
        topology, cfg = folder / f"{args.network}.csv", folder / "scale.cfg"
        topology.write_text(topology_csv(network_layers(args.network)))
        cfg.write_text(ScaleConfig(run_name="bench", rows=args.array[0], cols=args.array[1], dataflow=args.dataflow).text())

        start = time.perf_counter()
        config = read_config(cfg)
        ours = compute_report(read_topology(topology), hardware_config(config), synthesis)
        write_compute_report(folder / "lutmac", ours)
        lutmac_s = time.perf_counter() - start

        start = time.perf_counter()
        theirs = run_scalesim(cfg, topology, folder / "scalesim")["COMPUTE_REPORT"]
        scalesim_s = time.perf_counter() - start

    agree = len(ours) == len(theirs) and all(
        abs(mine[column] - other[column]) <= 1e-9 * max(1.0, abs(other[column]))
        for mine, other in zip(ours, theirs, strict=False) for column in SCALESIM_COLUMNS)
    label = f"{args.network} ({len(ours)} layers) on {args.array[0]}x{args.array[1]} {args.dataflow}"
    print(f"{label}: lutmac estimate {lutmac_s:.3f} s, SCALE-Sim 2.0.2 {scalesim_s:.1f} s "
          f"({scalesim_s / lutmac_s:.0f}x); COMPUTE_REPORT columns agree on every layer: {'yes' if agree else 'NO'}")


if __name__ == "__main__":
    main()
