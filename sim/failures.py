"""Failure reporting: the error a failed run raises, naming what a person needs to reproduce and inspect it."""

from __future__ import annotations

from pathlib import Path


class SimulationError(AssertionError):
    """A testbench run that failed: mismatching outputs, a timeout or a simulator crash."""


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def describe_failure(testcase: str, simulator: str, seed: int, failures: list[str], wave_path: Path | None,
                     log_path: Path) -> str:
    """The failure, the seed, the waveform and the log's tail, one item per line."""
    lines = [f"{testcase} failed on {simulator} (seed={seed}):"]
    lines += [f"  {failure}" for failure in failures]
    lines.append(f"  waveform: {wave_path or '(none written)'}")
    lines.append(f"  log: {log_path}")
    lines.append("  log tail:")
    lines += ["    " + line for line in log_tail(log_path, 25).splitlines()]
    return "\n".join(lines)
