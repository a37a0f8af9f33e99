"""Options of the whole suite, declared here so ``pytest --sim icarus`` works from the top directory.

(pytest reads ``pytest_addoption`` only from conftest files it loads at start-up; tests/sim/conftest.py
is loaded later, when its directory is collected.)
"""

from golden.files import keep_torch_cache_out_of_tmp

keep_torch_cache_out_of_tmp()  # the suite's optimizers would leave /tmp/torchinductor_<user> behind


def pytest_addoption(parser):
    group = parser.getgroup("lutmac-sim", "RTL simulation (tests/sim)")
    group.addoption("--sim", default=None, help="icarus, verilator or both (default: $SIM or both)")
    group.addoption("--waves", action="store_true", default=None, help="dump an FST on every run (default: $WAVES)")
    group.addoption("--sim-seed", type=int, default=None, help="stimulus seed (default: $SIM_SEED or random)")
