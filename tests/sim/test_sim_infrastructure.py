"""The simulation plumbing on a registered adder: build cache, both simulators, waves, failure path."""

import pytest
from amaranth import Module
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.errors import ConfigError
from sim.simulators import HdlDesign, SimulationError, build, run_testbench, selected_simulators


class RegisteredAdder(wiring.Component):
    a: In(8)
    b: In(8)
    s: Out(9)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.s.eq(self.a + self.b)
        return m


@pytest.fixture(scope="module")
def adder() -> HdlDesign:
    return HdlDesign("registered_adder", verilog.convert(RegisteredAdder(), name="registered_adder"))


def test_adder_matches_on_random_and_edge_vectors(adder, simulator, sim_seed, waves):
    result = run_testbench(adder, simulator, "tb_registered_adder", "adds_random_and_edge_operands",
                           {"seed": sim_seed, "vectors": 200, "check_x": simulator == "icarus"}, waves=waves)
    assert result.passed and result.report["vectors"] == 205
    # one vector per clock: the GPI clock and the cycle count agree
    assert result.report["cycles"] == pytest.approx(205)
    assert (result.wave_path is not None) == waves


def test_build_is_cached_per_design_and_simulator(adder, simulator):
    first = build(adder, simulator)
    again = build(adder, simulator)
    assert again.build_dir == first.build_dir and again.build_seconds == 0.0
    assert first.verilog_path.read_text() == adder.verilog
    other = HdlDesign(adder.toplevel, adder.verilog + "\n// changed\n")
    assert build(other, simulator).build_dir != first.build_dir


def test_failing_check_leaves_a_waveform_and_names_it(adder, simulator, sim_seed):
    job = {"seed": sim_seed, "vectors": 3, "inject_error": 1}
    with pytest.raises(SimulationError) as failure:
        run_testbench(adder, simulator, "tb_registered_adder", "adds_random_and_edge_operands", job, waves=False)
    message = str(failure.value)
    assert f"seed={sim_seed}" in message and "expected 1, got 0" in message
    wave_line = next(line for line in message.splitlines() if "waveform:" in line)
    wave_path = wave_line.split("waveform:", 1)[1].strip()
    assert wave_path.endswith(".fst" if simulator == "icarus" else ".vcd")
    with open(wave_path, "rb") as wave:
        assert len(wave.read()) > 100


def test_unknown_simulator_is_rejected():
    with pytest.raises(ConfigError, match="not supported"):
        selected_simulators("modelsim")
    assert selected_simulators("both") == ("icarus", "verilator")
