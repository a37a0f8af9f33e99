"""Running the reference: SCALE-Sim v2 itself (PyPI ``scalesim==2.0.2``, installed by ``make setup``).

Used by the tests that compare :mod:`reports.dataflow` and ``lutmac estimate`` with SCALE-Sim, and by
:mod:`reports.bench_scalesim`.  SCALE-Sim writes its reports into ``OUT/<run_name>/``; the caller
owns ``OUT`` (a temporary folder).
"""

from __future__ import annotations

import csv
from pathlib import Path

from golden.errors import ConfigError, ToolMissingError

from .scalesim_config import read_config
from .topology import topology_kind

REPORTS = ("COMPUTE_REPORT", "BANDWIDTH_REPORT", "DETAILED_ACCESS_REPORT")


def _value(cell: str) -> float | str:
    try:
        return float(cell)
    except ValueError:
        return cell


def read_report(path: str | Path) -> list[dict[str, float | str]]:
    """Rows of a SCALE-Sim report CSV (``name, name, ...,`` header, a trailing comma on every line); numbers as floats."""
    with Path(path).open(newline="") as handle:
        lines = [[cell.strip() for cell in row if cell.strip()] for row in csv.reader(handle) if row]
    header, *rows = lines
    return [dict(zip(header, map(_value, row), strict=True)) for row in rows]


def run_scalesim(config: str | Path, topology: str | Path, out: str | Path) -> dict[str, list[dict[str, float]]]:
    """Run SCALE-Sim on a ``.cfg`` and a topology CSV (conv or GEMM form, told apart by its header); its reports."""
    try:
        from scalesim.scale_sim import scalesim
    except ImportError:
        raise ToolMissingError("SCALE-Sim is not installed; run `make setup` (pip install --no-deps scalesim==2.0.2)") from None
    for path in (config, topology):
        if not Path(path).is_file():  # SCALE-Sim itself calls exit() on a missing file
            raise ConfigError(f"{path} does not exist")
    run_name = read_config(config).run_name
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sim = scalesim(save_disk_space=True, verbose=False, config=str(config), topology=str(topology),
                   input_type_gemm=topology_kind(topology) == "gemm")
    sim.run_scale(top_path=str(out))
    return {name: read_report(out / run_name / f"{name}.csv") for name in REPORTS}
