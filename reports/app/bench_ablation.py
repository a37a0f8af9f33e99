"""Time the ablation's Dask jobs on 1, 2, ... LocalCluster workers: ``python -m reports.app.bench_ablation --workers 1 2``.

The matrix is small enough to time in a minute (digits by default: the seven schemes at 4 bits over two
seeds, 16 jobs); every worker count must give the same accuracies job for job (each job is seeded and
single-threaded), which the benchmark checks.  Times exclude the cluster's start (run_ablation's own clock).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from golden.errors import ConfigError, LutmacError

from .ablation import ABLATION_SCHEMES, AblationOptions, run_ablation


def bench(workers: list[int], dataset: str = "digits", seeds: tuple[int, ...] = (0, 1), float_epochs: int = 4,
          qat_images: int | None = None) -> list[dict]:
    rows, reference = [], None
    for count in workers:
        with tempfile.TemporaryDirectory(prefix="lutmac-bench-ablation-") as folder:
            options = AblationOptions(out=Path(folder) / "out", runs=tuple((s, 4) for s in ABLATION_SCHEMES),
                                      seeds=seeds, float_epochs=float_epochs, dataset=dataset, workers=count,
                                      qat_images=qat_images)
            result = run_ablation(options, progress=False)
        found = [(j["scheme"], j["bits"], j["seed"], j["fake_quant"], j["integer"]) for j in result.jobs]
        if reference is not None and found != reference:
            raise ConfigError(f"{count} workers gave other accuracies than {workers[0]}")
        reference = found
        rows.append({"workers": count, "jobs": len(result.jobs), "seconds": result.seconds,
                     "jobs_per_minute": 60 * len(result.jobs) / result.seconds})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.app.bench_ablation", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="LocalCluster worker counts (default 1 2)")
    parser.add_argument("--dataset", default="digits", help="data set (default digits)")
    args = parser.parse_args(argv)
    try:
        rows = bench(args.workers, args.dataset)
    except LutmacError as error:
        print(f"bench_ablation: error: {error}", file=sys.stderr)
        return 2
    print(f"os.cpu_count() = {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} at the end")
    for row in rows:
        print(f"{row['workers']} worker(s): {row['jobs']} jobs in {row['seconds']:.1f} s ({row['jobs_per_minute']:.1f} jobs/min, "
              f"{rows[0]['seconds'] / row['seconds']:.2f}x of {rows[0]['workers']})")
    print("identical accuracies for every worker count")
    return 0


if __name__ == "__main__":
    sys.exit(main())
