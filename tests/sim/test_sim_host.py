"""The host sequencer (sim/sequencer.py) on a small DUT: the same program on cocotb+Icarus, cocotb+Verilator
and the plain Verilator harness gives the captures and cycle counts the sequencer's contract defines."""

import re

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.errors import CodeRangeError, ConfigError
from hw.bus import HostBus
from hw.config import preset
from sim.accelerator import accelerator_verilog
from sim.harness import HarnessSession, build_harness
from sim.jobs import ProgramsJob
from sim.program import Captures, HostLayout, HostProgram, Port, read_hex, signature_ports, write_hex
from sim.runner import run_testbench
from sim.sequencer import CONTROL_PORTS, HOST_TOP, control_header, host_design


class Countdown(wiring.Component):
    """s <= a + b every cycle (lanes of b summed); done rises `count` cycles after start."""

    a: In(8)
    b: In(32)  # four 8-bit lanes
    start: In(1)
    count: In(8)
    s: Out(11)
    wide: Out(70)
    done: Out(1)

    def elaborate(self, platform):
        m = Module()
        left = Signal(8)
        lanes = sum(self.b[8 * i : 8 * i + 8] for i in range(4))
        m.d.sync += self.s.eq(self.a + lanes)
        m.d.comb += self.wide.eq(self.a << 62 | self.b)
        m.d.sync += self.done.eq(0)
        with m.If(self.start):
            m.d.sync += left.eq(self.count)
        with m.Elif(left == 1):
            m.d.sync += [left.eq(0), self.done.eq(1)]
        with m.Elif(left != 0):
            m.d.sync += left.eq(left - 1)
        return m


@pytest.fixture(scope="module")
def countdown() -> tuple[str, list[Port]]:
    """The Countdown's Verilog and its ports, from its signature."""
    dut = Countdown()
    return verilog.convert(dut, name="countdown"), signature_ports(dut.signature, clocked=True)


def countdown_design(countdown, **options):
    return host_design(countdown[0], "countdown", countdown[1], **options)


def make_program(layout: HostLayout, seed: int):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, 300)
    b = rng.integers(0, 256, (300, 4))
    counts = rng.integers(1, 40, 5)
    program = HostProgram(layout)
    program.drive({"rst": 1}, cycles=2)
    # registered sum: entry i's result is visible while entry i+1 is presented
    program.drive({"a": np.append(a, 0), "b": np.vstack([b, np.zeros((1, 4), int)])}, capture=np.arange(301) > 0)
    program.drive({"a": a[:3], "b": b[:3]}, capture=True)  # combinational output captured with its own inputs
    for count in counts:
        program.drive({"start": 1, "count": int(count)})
        program.wait(1000)
    program.drive(cycles=7)
    program.end()
    return program, a, b, counts


def check_results(words, waits, cycles, layout, a, b, counts):
    captures = Captures(layout, words)
    assert np.array_equal(captures.field("s")[:300], a + b.sum(axis=1))
    wide = captures.field("wide", lanes=2)[300:]  # two 35-bit lanes
    expected_wide = [(int(x) << 62) | int(np.dot(y, 256 ** np.arange(4))) for x, y in zip(a[:3], b[:3], strict=True)]
    assert [int(lo) | int(hi) << 35 for lo, hi in wide] == expected_wide
    # start's edge loads the counter, done is registered after `count` more edges and seen at the next one
    assert list(waits) == list(counts + 1)
    assert cycles == 2 + 301 + 3 + int((1 + counts + 1).sum()) + 7 + 1


def test_program_runs_bit_exactly_under_cocotb(countdown, simulator, sim_seed, waves):
    design, layout = countdown_design(countdown, capture_depth=512)
    program, a, b, counts = make_program(layout, sim_seed)
    job = ProgramsJob(seed=sim_seed, layout=layout, programs=[program, program])
    result = run_testbench(design, simulator, job, waves=waves)
    for run in result.report.results:  # the second run reuses the live design
        check_results(run.captures.words, run.waits, run.cycles, layout, a, b, counts)


def test_program_runs_bit_exactly_in_the_plain_harness(countdown, sim_seed, tmp_path):
    design, layout = countdown_design(countdown, capture_depth=512, internal_clock=False)
    program, a, b, counts = make_program(layout, sim_seed)
    with HarnessSession(build_harness(design), layout, tmp_path) as session:
        for _ in range(2):
            result = session.run_sync(program)
            check_results(result.captures.words, result.waits, result.cycles, layout, a, b, counts)


def verilog_ports(text: str, module: str) -> set[Port]:
    """The port declarations of ``module`` in generated Verilog (a test-side cross-check of the signature)."""
    body = re.search(rf"^module {module}\b.*?^endmodule", text, re.S | re.M).group(0)
    declarations = re.findall(r"^\s*(input|output)\s+(?:reg\s+)?(?:\[(\d+):0\]\s*)?\\?(\w+)", body, re.M)
    return {Port(name, int(msb) + 1 if msb else 1, direction) for direction, msb, name in declarations}


def test_ports_come_from_the_signature_and_match_the_verilog(countdown):
    countdown_verilog, ports = countdown
    assert {p.name: (p.width, p.direction) for p in ports} == {
        "a": (8, "input"), "b": (32, "input"), "start": (1, "input"), "count": (8, "input"), "clk": (1, "input"),
        "rst": (1, "input"), "s": (11, "output"), "wide": (70, "output"), "done": (1, "output")}  # fmt: skip
    assert set(ports) == verilog_ports(countdown_verilog, "countdown")
    with pytest.raises(ConfigError, match="no output 'finished' to wait on"):
        HostLayout.from_ports("countdown", ports, "finished")


def test_the_accelerator_ports_are_its_host_bus():
    cfg = preset("default")
    name, text = accelerator_verilog(cfg)
    assert set(signature_ports(HostBus(cfg), clocked=True)) == verilog_ports(text, name)


def test_nested_and_array_members_get_amaranth_port_names():
    signature = wiring.Signature({"bus": In(wiring.Signature({"x": Out(3), "y": In(2)})), "lanes": Out(4).array(2)})
    assert signature_ports(signature, clocked=False) == [
        Port("bus__x", 3, "input"), Port("bus__y", 2, "output"), Port("lanes__0", 4, "output"),
        Port("lanes__1", 4, "output")]  # fmt: skip


def test_the_control_ports_are_declared_once(countdown):
    """The sequencer top and the C++ harness's header both take them from sim.sequencer.CONTROL_PORTS."""
    design, _ = countdown_design(countdown, internal_clock=False)
    assert verilog_ports(design.verilog, HOST_TOP) == {*CONTROL_PORTS, Port("clk", 1, "input")}
    header = control_header()
    for port in CONTROL_PORTS:
        assert f"#define HOST_{port.name.upper()} {port.name}\n" in header


def test_hex_files_round_trip_and_reject_unknown_bits(tmp_path):
    words = np.array([[0xDEADBEEF, 0x3], [0, 0x1]], dtype=np.uint32)
    write_hex(tmp_path / "w.hex", words, 34)
    assert (tmp_path / "w.hex").read_text() == "3deadbeef\n100000000\n"
    assert np.array_equal(read_hex(tmp_path / "w.hex", 34), words)
    (tmp_path / "x.hex").write_text("1x\n")
    with pytest.raises(CodeRangeError, match="X/Z"):
        read_hex(tmp_path / "x.hex", 8)


def test_program_rejects_bad_entries(countdown):
    _, layout = countdown_design(countdown)
    program = HostProgram(layout)
    with pytest.raises(ConfigError, match="no inputs"):
        program.drive({"bogus": 1})
    with pytest.raises(CodeRangeError, match="do not fit"):
        program.drive({"a": 256})
    with pytest.raises(CodeRangeError, match="counts"):
        program.drive(cycles=0)
    with pytest.raises(ConfigError, match="disagree"):
        program.drive({"a": np.arange(3), "count": np.arange(4)})
    with pytest.raises(ConfigError, match="end"):
        program.entry_words()
