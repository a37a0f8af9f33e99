"""Scoreboard: RTL results against golden's integer model, bit for bit, plus measured cycles and coverage.

Expected values come only from golden, through ``hw.host.golden_outputs`` (``golden.gemm.int_gemm`` for the accumulators,
``golden.requantization.requantize`` / ``threshold_quantize`` for the output stage).  A mismatch names the
workload, the accelerator run (its first output row/column), the ``R x C`` block, the output
coordinates, expected and actual values; the testbench adds the seed and waveform path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.config import ArrayConfig
from hw.host import GemmJob, golden_outputs
from hw.layout import OutputMode

from .accelerator import GemmOutcome
from .stimulus import Workload

MAX_REPORTED = 8


@dataclass(frozen=True)
class RunCheck:
    """One accelerator run the scoreboard saw: where it sits in its workload and its cycles."""

    workload: str
    m0: int
    n0: int
    shape: tuple[int, int, int]
    cycles: int  # measured
    expected_cycles: int  # hw.cycles.gemm_cycles


class Coverage:
    """Distinct codes a run exercised: activation codes, weight codes, (weight, activation) pairs, output codes."""

    def __init__(self, cfg: ArrayConfig) -> None:
        self.cfg = cfg
        datapath = cfg.datapath
        self.pairs = np.zeros((datapath.weight.num_codes, datapath.num_act_codes), dtype=bool)
        self.outputs = np.zeros(1 << cfg.code_bits, dtype=bool)

    def add(self, job: GemmJob, outputs: np.ndarray) -> None:
        act = np.asarray(job.act_codes)
        weight = np.asarray(job.weight_codes) & (self.pairs.shape[0] - 1)  # code word index (two's complement)
        # a pair meets when both sit at the same k
        for k in range(act.shape[1]):
            self.pairs[np.ix_(np.unique(weight[k]), np.unique(act[:, k]))] = True
        if job.mode != OutputMode.RAW:
            codes = np.unique(outputs)
            self.outputs[codes[(codes >= 0) & (codes < self.outputs.size)]] = True  # others fail the comparison

    def summary(self) -> dict:
        """``name -> (distinct seen, possible)``."""
        return {
            "act_codes": (int(self.pairs.any(axis=0).sum()), self.pairs.shape[1]),
            "weight_codes": (int(self.pairs.any(axis=1).sum()), self.pairs.shape[0]),
            "code_pairs": (int(self.pairs.sum()), self.pairs.size),
            "output_codes": (int(self.outputs.sum()), self.outputs.size),
        }


class Scoreboard:
    """Collects every workload's comparison; ``failures`` is empty when everything matched."""

    def __init__(self, cfg: ArrayConfig) -> None:
        self.cfg = cfg
        self.failures: list[str] = []
        self.coverage = Coverage(cfg)
        self.outputs_checked = 0
        self.macs = 0
        self.runs: list[RunCheck] = []

    def check(self, workload: Workload, outcome: GemmOutcome) -> bool:
        cfg, job = self.cfg, workload.job
        expected = golden_outputs(cfg, job)
        self.coverage.add(job, outcome.outputs)
        m, k, n = job.shape
        self.outputs_checked += expected.size
        self.macs += m * k * n
        ok = True
        for run in outcome.runs:
            rm, rk, rn = run.run.shape
            self.runs.append(RunCheck(workload.name, run.run.m0, run.run.n0, (rm, rk, rn), run.cycles, run.expected_cycles))
            if run.cycles != run.expected_cycles:
                ok = False
                self.failures.append(f"{workload.name}: run at rows {run.run.m0}.. cols {run.run.n0}.. ({rm}x{rk}x{rn}) "
                                     f"took {run.cycles} cycles, hw.cycles.gemm_cycles says {run.expected_cycles}")
        bad = np.argwhere(outcome.outputs != expected)
        if bad.size:
            ok = False
            for i, j in bad[:MAX_REPORTED]:
                run = next(r.run for r in outcome.runs
                           if r.run.m0 <= i < r.run.m0 + r.run.shape[0] and r.run.n0 <= j < r.run.n0 + r.run.shape[2])
                li, lj = i - run.m0, j - run.n0
                self.failures.append(
                    f"{workload.name}: output [{i}, {j}] (run at rows {run.m0}.. cols {run.n0}.., block "
                    f"({li // cfg.rows}, {lj // cfg.cols}), PE ({li % cfg.rows}, {lj % cfg.cols})): "
                    f"expected {expected[i, j]}, got {outcome.outputs[i, j]}"
                )
            if len(bad) > MAX_REPORTED:
                self.failures.append(f"{workload.name}: ... {len(bad)} mismatching outputs of {expected.size}")
        return ok
