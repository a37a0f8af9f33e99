"""Runner-side entry points of the RTL regression: build, run a testbench, return its checked report."""

from __future__ import annotations

import numpy as np

from hw.config import ArrayConfig

from .accelerator import accelerator_design
from .jobs import AcceleratorJob, PeJob
from .pe_bank import bank_design, pe_cases
from .runner import SimRun, run_testbench
from .stimulus import Workload


def check_array(cfg: ArrayConfig, workloads: list[Workload], simulator: str, seed: int,
                waves: bool | None = None, check_reset_outputs: bool = True, overlap: bool = True) -> SimRun:
    """Run ``workloads`` on the accelerator RTL; raises :class:`sim.failures.SimulationError` on any mismatch.

    ``check_reset_outputs``: capture every output right after reset, where an X/Z bit (Icarus) fails.
    ``overlap``: a GEMM's runs overlap host transfers with compute (else write, start, wait, read each).
    """
    design, layout = accelerator_design(cfg)
    job = AcceleratorJob(seed=seed, cfg=cfg, layout=layout, workloads=list(workloads),
                         check_reset_outputs=check_reset_outputs, overlap=overlap)
    return run_testbench(design, simulator, job, waves=waves, label=f"array-{cfg.name_hint}")


def check_pes(kinds: tuple[str, ...], bits: int, simulator: str, seed: int, waves: bool | None = None,
              frac_bits: int | None = None) -> SimRun:
    """Every PE kind in ``kinds`` at ``bits``-bit weights and activations (and ``frac_bits``), exhaustively, on one bank build."""
    rng = np.random.default_rng(seed)
    cases = [case for kind in kinds for case in pe_cases(kind, bits, bits, rng, frac_bits)]
    design, layout = bank_design(tuple(kinds), bits, bits, max(len(case) for case in cases), frac_bits)
    fraction = "" if frac_bits is None else f"-F{frac_bits}"
    return run_testbench(design, simulator, PeJob(seed=seed, layout=layout, cases=cases), waves=waves,
                         label=f"pe-w{bits}{fraction}-{'-'.join(kinds)}")
