"""The plain Verilator C++ harness: the host sequencer top compiled with ``harness_main.cpp``, no Python per cycle and no VPI.

It is the speed reference of ``python -m sim.bench`` and the fast backend of
:func:`sim.network.run_network_rtl`.  Programs and results travel through the same files as under
cocotb (:mod:`sim.host`); the process stays alive between programs, so the DUT keeps its state.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .host import PROGRAM_FILE, HostLayout, HostProgram, HostResult, clear_results, read_results
from .simulators import (
    VERILATOR_BUILD_ARGS,
    VERILATOR_CFLAGS,
    VERILATOR_MAKE_VARIABLES,
    HdlDesign,
    SimulationError,
    build_root,
    ensure_verilator_env,
)

HARNESS_SOURCE = Path(__file__).with_name("harness_main.cpp")
HARNESS_BINARY = "lutmac_harness"


@dataclass(frozen=True)
class HarnessBuild:
    design: HdlDesign
    binary: Path
    build_seconds: float  # 0.0 when cached


def build_harness(design: HdlDesign) -> HarnessBuild:
    """Compile ``design`` (a ``lutmac_host`` top with an external clock) with the C++ harness, once."""
    if design.toplevel != "lutmac_host":
        raise SimulationError(f"the harness drives a lutmac_host top, not {design.toplevel!r}")
    root = ensure_verilator_env()
    source = HARNESS_SOURCE.read_text()
    key = hashlib.sha256((design.key + source + repr(VERILATOR_BUILD_ARGS + VERILATOR_CFLAGS[True])).encode()).hexdigest()[:12]
    build_dir = build_root() / f"harness-{key}"
    build_dir.mkdir(parents=True, exist_ok=True)
    binary = build_dir / HARNESS_BINARY
    with open(build_dir / "lutmac-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file():
            return HarnessBuild(design, binary, 0.0)
        (build_dir / "design.v").write_text(design.verilog)
        (build_dir / "harness_main.cpp").write_text(source)
        command = [
            str(root / "bin" / "verilator"), "--cc", "--exe", "--build", "-j", "2",
            *VERILATOR_BUILD_ARGS, *VERILATOR_CFLAGS[True],
            "--top-module", "lutmac_host", "-Mdir", str(build_dir / "obj"), "-o", str(binary),
            "harness_main.cpp", "design.v",
        ]  # fmt: skip
        start = time.perf_counter()
        log = build_dir / "build.log"
        with open(log, "w") as handle:
            env = os.environ | {"MAKEFLAGS": VERILATOR_MAKE_VARIABLES}
            status = subprocess.run(command, cwd=build_dir, stdout=handle, stderr=subprocess.STDOUT, env=env).returncode
        if status or not binary.is_file():
            raise SimulationError(f"the Verilator harness build failed (status {status}); see {log}")
        return HarnessBuild(design, binary, time.perf_counter() - start)


class HarnessSession:
    """Runs host programs in a live harness process (``with HarnessSession(...) as session``)."""

    def __init__(self, harness: HarnessBuild, layout: HostLayout, workdir: Path) -> None:
        self.layout = layout
        self.sim_seconds = 0.0  # spent inside the harness on programs so far
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [str(harness.binary)], cwd=self.workdir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def __enter__(self) -> HarnessSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.flush()
            self.process.wait(timeout=30)

    def run_sync(self, program: HostProgram) -> HostResult:
        clear_results(self.workdir)
        program.write(self.workdir / PROGRAM_FILE)
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline().split()
        if len(reply) != 4 or reply[0] != "done":
            raise SimulationError(f"the harness answered {reply!r} (exit status {self.process.poll()})")
        cycles, error, nanoseconds = int(reply[1]), int(reply[2]), int(reply[3])
        if error:
            raise SimulationError(f"a WAIT entry of the host program timed out ({cycles} cycles into the program)")
        captures, waits = read_results(self.workdir, program)
        self.sim_seconds += nanoseconds * 1e-9
        return HostResult(captures, waits, cycles, nanoseconds * 1e-9)

    async def run(self, program: HostProgram) -> HostResult:
        return self.run_sync(program)
