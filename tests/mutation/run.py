"""``make mutate``: the tests against every fault of :mod:`faults`, one at a time, each in a scratch copy.

The repository's tracked files are copied once into a temporary folder (``lutmac-mutate-<pid>-*``,
removed at the end, on SIGTERM/SIGINT, or by the next run if this one died); each fault is applied
there, the tests run, and the file is restored.  A fault is *killed* when the tests fail (or hang
past ``--timeout``), *survived* when they pass.  Faults marked equivalent are run too and expected
to survive; one that is killed is reported, as its argument is then wrong.

Default tests: the default suite (``-m "not regress"``) without ``tests/golden``.  golden imports
nothing of hw (the layering contract in pyproject.toml, checked by ``make layering``), so no golden
test can observe a fault in hw/: leaving them out loses no kill and saves their minutes per mutant.
``-x``: a mutant is killed at its first failing test.  The exit status is 0 only when every
non-equivalent fault is killed and no equivalent one is.  Not part of ``make test``: a full campaign
costs up to one suite run per fault (survivors run it all).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(HERE)]

from faults import FAULTS, Fault  # noqa: E402

from golden.files import removed_on_signal, temporary_folder  # noqa: E402

DEFAULT_TESTS = ("tests/hw", "tests/sim", "tests/reports", "tests/test_architecture.py")


@dataclass
class Outcome:
    fault: Fault
    status: str  # killed, survived
    seconds: float
    detail: str  # pytest's last line, or why it was stopped

    @property
    def as_expected(self) -> bool:
        return (self.status == "survived") == bool(self.fault.equivalent)


def check_table(faults: tuple[Fault, ...]) -> None:
    """Stop before any mutant if a fault's text is not found exactly once, or two faults share an id."""
    ids = [fault.id for fault in faults]
    if len(set(ids)) != len(ids):
        raise SystemExit(f"mutate: duplicate fault ids {sorted({i for i in ids if ids.count(i) > 1})}")
    for fault in faults:
        count = (REPO / fault.path).read_text().count(fault.old)
        if count != 1:
            raise SystemExit(f"mutate: fault {fault.id} is stale: its text occurs {count} times in {fault.path}")


def copy_tree(target: Path) -> None:
    """The tracked files of the repository (its committed layout, without build/, out/, .venv/) into ``target``."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def run_tests(scratch: Path, pytest_args: list[str], timeout: float) -> tuple[int | None, str]:
    """pytest in ``scratch`` (its own session, so a hang is stopped with every process it started)."""
    env = os.environ | {"PYTHONPATH": str(scratch), "LUTMAC_SIM_BUILD": str(scratch / "build" / "sim")}
    child = subprocess.Popen([sys.executable, "-m", "pytest", *pytest_args], cwd=scratch, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return None, f"stopped after {timeout:.0f} s"
    except BaseException:
        os.killpg(child.pid, signal.SIGKILL)
        raise
    lines = [line for line in output.splitlines() if line.strip()]
    return child.returncode, lines[-1] if lines else ""


def mutate(scratch: Path, fault: Fault, pytest_args: list[str], timeout: float) -> Outcome:
    path = scratch / fault.path
    original = path.read_text()
    path.write_text(original.replace(fault.old, fault.new, 1))
    start = time.perf_counter()
    try:
        status, detail = run_tests(scratch, pytest_args, timeout)
    finally:
        path.write_text(original)
    return Outcome(fault, "survived" if status == 0 else "killed", time.perf_counter() - start, detail)


def report(outcomes: list[Outcome]) -> str:
    lines = ["| fault | file | result | s | what |", "|---|---|---|---|---|"]
    for o in outcomes:
        result = o.status + ("" if o.as_expected else " (NOT as expected)") + (" (equivalent)" if o.fault.equivalent else "")
        lines.append(f"| {o.fault.id} | {o.fault.path} | {result} | {o.seconds:.0f} | {o.fault.what} |")
    changing = [o for o in outcomes if not o.fault.equivalent]
    killed = sum(o.status == "killed" for o in changing)
    equivalent = len(outcomes) - len(changing)
    lines += ["", f"{len(outcomes)} faults: {killed} killed, {len(changing) - killed} survived, {equivalent} equivalent "
              f"({sum(o.status == 'survived' for o in outcomes if o.fault.equivalent)} survived as argued); "
              f"non-equivalent killed: {killed}/{len(changing)}" + (f" = {killed / len(changing):.0%}" if changing else "")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make mutate", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="ID", help="run these faults only (default: all)")
    parser.add_argument("--tests", nargs="+", default=list(DEFAULT_TESTS), help="test paths (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=0, help="pytest-xdist workers (default 0: none)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds before a mutant's run counts as hung")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run of the unmutated copy")
    parser.add_argument("--list", action="store_true", help="list the faults and stop")
    args = parser.parse_args(argv)
    check_table(FAULTS)
    faults = FAULTS
    if args.only:
        unknown = sorted(set(args.only) - {fault.id for fault in FAULTS})
        if unknown:
            parser.error(f"unknown fault ids {unknown}; --list shows them")
        faults = tuple(fault for fault in FAULTS if fault.id in args.only)
    if args.list:
        print("\n".join(f"{f.id:28} {f.path:20} {f.what}" + (" [equivalent]" if f.equivalent else "") for f in faults))
        return 0
    pytest_args = [*args.tests, "-m", "not regress", "-x", "-q", "-p", "no:cacheprovider",
                   *(["-n", str(args.jobs)] if args.jobs else [])]
    with removed_on_signal(), temporary_folder(prefix="lutmac-mutate-") as scratch:
        copy_tree(scratch)
        if not args.no_baseline:
            status, detail = run_tests(scratch, pytest_args, args.timeout)
            if status != 0:
                print(f"mutate: the unmutated copy fails its tests ({detail}): fix that first", file=sys.stderr)
                return 2
            print(f"baseline: {detail}", flush=True)
        outcomes = []
        for number, fault in enumerate(faults, 1):
            outcomes.append(mutate(scratch, fault, pytest_args, args.timeout))
            o = outcomes[-1]
            print(f"[{number}/{len(faults)}] {fault.id}: {o.status} in {o.seconds:.0f} s ({o.detail})", flush=True)
    print(report(outcomes))
    return 0 if all(o.as_expected for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
