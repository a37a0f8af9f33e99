"""The simulation plumbing on a registered adder: build cache, both simulators, waves, failure path, typed jobs."""

import pickle

import pytest
from amaranth import Module
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from tb_registered_adder import AdderJob, AdderReport

from golden.errors import ConfigError
from hw.config import preset
from sim.accelerator import accelerator_design
from sim.build_cache import HdlDesign, build
from sim.failures import SimulationError
from sim.jobs import JOB_ENV, AcceleratorJob, PeJob, load_job, read_report, write_job
from sim.runner import run_testbench
from sim.toolchain import selected_simulators


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
    result = run_testbench(adder, simulator, AdderJob(seed=sim_seed, vectors=200, check_x=simulator == "icarus"),
                           waves=waves)
    assert result.passed and result.report.vectors == 205 and not result.report.failures
    assert result.report.cycles == pytest.approx(205)  # one vector per clock: the GPI clock and the cycle count agree
    assert (result.wave_path is not None) == waves


def test_build_is_cached_per_design_and_simulator(adder, simulator):
    first = build(adder, simulator)
    again = build(adder, simulator)
    assert again.build_dir == first.build_dir and again.build_seconds == 0.0
    assert first.verilog_path.read_text() == adder.verilog
    other = HdlDesign(adder.toplevel, adder.verilog + "\n// changed\n")
    assert build(other, simulator).build_dir != first.build_dir


def test_failing_check_leaves_a_waveform_and_names_it(adder, simulator, sim_seed):
    job = AdderJob(seed=sim_seed, vectors=3, inject_error=1)
    with pytest.raises(SimulationError) as failure:
        run_testbench(adder, simulator, job, waves=False)
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


# ---- typed jobs: every error in the runner's process, before a simulator starts ---------------------------


def test_a_mistyped_or_missing_field_names_the_job_and_the_field(adder):
    cfg = preset("default")
    _, layout = accelerator_design(cfg)
    with pytest.raises(ConfigError, match=r"AcceleratorJob\.cfg: expected ArrayConfig, got str"):
        AcceleratorJob(seed=1, cfg="default", layout=layout, workloads=[])
    with pytest.raises(ConfigError, match=r"AcceleratorJob\.workloads: \[0\]: expected Workload, got int"):
        AcceleratorJob(seed=1, cfg=cfg, layout=layout, workloads=[3])
    with pytest.raises(ConfigError, match=r"AdderJob\.seed: expected int, got bool"):
        AdderJob(seed=True, vectors=3)
    with pytest.raises(TypeError, match="AdderJob.__init__.. missing 1 required keyword-only argument: 'vectors'"):
        AdderJob(seed=1)
    # a job changed after it was made (or pickled by another version) is caught before the simulator runs
    job = AdderJob(seed=1, vectors=3)
    object.__setattr__(job, "vectors", "3")
    with pytest.raises(ConfigError, match=r"AdderJob\.vectors: expected int, got str"):
        run_testbench(adder, "icarus", job)
    object.__delattr__(job, "vectors")
    with pytest.raises(ConfigError, match="AdderJob has no field 'vectors'"):
        run_testbench(adder, "icarus", job)
    with pytest.raises(ConfigError, match="must be a SimJob, got dict"):
        run_testbench(adder, "icarus", {"seed": 1, "vectors": 3})


def test_jobs_and_reports_are_checked_where_they_are_read(tmp_path, monkeypatch):
    path = tmp_path / "job.pkl"
    write_job(path, AdderJob(seed=4, vectors=2))
    monkeypatch.setenv(JOB_ENV, str(path))
    assert load_job(AdderJob) == AdderJob(seed=4, vectors=2)
    with pytest.raises(ConfigError, match="the testbench takes a PeJob; the runner sent AdderJob"):
        load_job(PeJob)
    report = tmp_path / "report.pkl"
    job = AdderJob(seed=4, vectors=2)
    assert read_report(report, job) is None  # the testbench wrote none
    report.write_bytes(pickle.dumps(AdderReport(vectors=2, cycles=2.0)))
    assert read_report(report, job) == AdderReport(vectors=2, cycles=2.0)
    wrong = AdderReport(vectors=2, cycles=2.0)
    object.__setattr__(wrong, "cycles", "2")
    report.write_bytes(pickle.dumps(wrong))
    with pytest.raises(ConfigError, match=r"AdderReport\.cycles: expected float, got str"):
        read_report(report, job)
    report.write_bytes(pickle.dumps({"vectors": 2}))
    with pytest.raises(ConfigError, match="AdderJob returns a AdderReport; the testbench wrote dict"):
        read_report(report, job)
