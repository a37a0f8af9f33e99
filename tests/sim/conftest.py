"""The RTL testbenches' options (declared in tests/conftest.py): simulator(s), waveforms, seed.

``--sim icarus|verilator|both`` (or ``$SIM``) picks the simulators every ``simulator``-using
test is parametrized over; ``--waves`` (or ``$WAVES=1``) dumps an FST on every run (failing
runs always leave one); ``--sim-seed`` (or ``$SIM_SEED``) fixes the stimulus seed, otherwise a
fresh one is drawn and printed so a failure can be reproduced.
"""

import os
import secrets
import sys
from pathlib import Path

import pytest

from sim.toolchain import ensure_verilator_env, selected_simulators, waves_requested

# The cocotb testbenches of this directory are imported by name inside the simulator process,
# which inherits sys.path through PYTHONPATH.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

ensure_verilator_env()


def pytest_generate_tests(metafunc):
    if "simulator" in metafunc.fixturenames and not any(
        "simulator" in marker.args[0] for marker in metafunc.definition.iter_markers("parametrize")
    ):
        metafunc.parametrize("simulator", selected_simulators(metafunc.config.getoption("--sim")))


def pytest_collection_modifyitems(config, items):
    """Tests that pin their own simulator list still honour ``--sim``."""
    selected = selected_simulators(config.getoption("--sim"))
    for item in items:
        simulator = getattr(getattr(item, "callspec", None), "params", {}).get("simulator")
        if simulator is not None and simulator not in selected:
            item.add_marker(pytest.mark.skip(reason=f"--sim excludes {simulator}"))


@pytest.fixture(scope="session")
def waves(pytestconfig) -> bool:
    return waves_requested(pytestconfig.getoption("--waves"))


@pytest.fixture
def sim_seed(pytestconfig, request) -> int:
    """The stimulus seed of one test, printed (pytest shows it for failing tests)."""
    seed = pytestconfig.getoption("--sim-seed")
    if seed is None and os.environ.get("SIM_SEED"):
        seed = int(os.environ["SIM_SEED"])
    if seed is None:
        seed = secrets.randbelow(2**31)
    print(f"{request.node.nodeid}: stimulus seed {seed} (reproduce with --sim-seed {seed})")
    return seed
