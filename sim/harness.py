"""The plain Verilator C++ harness: the host sequencer top compiled with ``harness_main.cpp``, no Python per cycle and no VPI.

It is the speed reference of ``python -m sim.bench`` and the fast backend of
:func:`sim.network.run_network_rtl`.  Programs and results travel through the same files as under
cocotb (:mod:`sim.sequencer`); the process stays alive between programs, so the DUT keeps its
state.  The harness names the top's ports through a header generated from
:data:`sim.sequencer.CONTROL_PORTS` (:func:`sim.sequencer.control_header`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .build_cache import HdlDesign
from .failures import SimulationError
from .program import HostLayout, HostProgram
from .sequencer import (
    CONTROL_HEADER,
    HOST_TOP,
    PROGRAM_FILE,
    HostResult,
    clear_results,
    control_header,
    read_results,
)
from .toolchain import (
    VERILATOR_BUILD_ARGS,
    VERILATOR_CFLAGS,
    VERILATOR_MAKE_VARIABLES,
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


def build_harness(design: HdlDesign, optimize: bool = True) -> HarnessBuild:
    """Compile ``design`` (a host-sequencer top with an external clock) with the C++ harness, once per ``optimize``
    (the C++ at -O2; ``False``: -O0, about half the build time for runs of a few images)."""
    if design.toplevel != HOST_TOP:
        raise SimulationError(f"the harness drives a {HOST_TOP} top, not {design.toplevel!r}")
    root = ensure_verilator_env()
    source, header = HARNESS_SOURCE.read_text(), control_header()
    flags = repr(VERILATOR_BUILD_ARGS + VERILATOR_CFLAGS[optimize])
    key = hashlib.sha256((design.key + source + header + flags).encode()).hexdigest()[:12]
    build_dir = build_root() / f"harness-{key}"
    build_dir.mkdir(parents=True, exist_ok=True)
    binary = build_dir / HARNESS_BINARY
    with open(build_dir / "lutmac-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file():
            return HarnessBuild(design, binary, 0.0)
        (build_dir / "design.v").write_text(design.verilog)
        (build_dir / "harness_main.cpp").write_text(source)
        (build_dir / CONTROL_HEADER).write_text(header)
        command = [
            str(root / "bin" / "verilator"), "--cc", "--exe", "--build", "-j", "2",
            *VERILATOR_BUILD_ARGS, *VERILATOR_CFLAGS[optimize], "-CFLAGS", f"-I{build_dir}",
            "--top-module", HOST_TOP, "-Mdir", str(build_dir / "obj"), "-o", str(binary),
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
