"""DRAM traffic and bandwidth stalls: hand-computed, quantization-aware, and side by side with SCALE-Sim's reports.

What agrees with SCALE-Sim 2.0.2 and what does not:

* CALC mode (SCALE-Sim sizes the bandwidth): with buffers that hold a layer, its DRAM reads
  (DETAILED_ACCESS_REPORT.csv) are each input tensor once — exactly :func:`reports.dataflow.dram_traffic`;
  so are its output writes in os, while in ws and is SCALE-Sim writes each row fold's partial
  outputs through to DRAM (row folds x outputs) where lutmac keeps partial sums that fit on chip.
* USER mode (a bandwidth limit): with roomy buffers SCALE-Sim prefetches before cycle 0 and
  reports no stalls, as the roofline does when the traffic fits the compute time.  With buffers
  too small for a fold's operands SCALE-Sim fetches the im2col operand matrix (``M * K``
  activation words per column fold, no reuse of overlapping windows) and stalls far longer than
  the roofline (the example below: 4097 and 2267 stall cycles against lutmac's 0 and 1).
"""

import numpy as np
import pytest

from reports.dataflow import bandwidth_stalls, dram_traffic, folds
from reports.energy import load_synthesis
from reports.estimator import HardwareConfig, evaluate
from reports.networks import Layer
from reports.scalesim_config import ScaleConfig
from reports.scalesim_dropin import compute_report, hardware_config
from reports.scalesim_ref import run_scalesim
from reports.topology import read_topology

TOPOLOGY = """Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
a, 10, 10, 3, 3, 8, 16, 1,
b, 18, 18, 3, 3, 4, 8, 2,
"""


def run(tmp_path, **config):
    topology = tmp_path / "t.csv"
    topology.write_text(TOPOLOGY)
    cfg = tmp_path / "s.cfg"
    cfg.write_text(ScaleConfig(**({"run_name": "bw", "rows": 4, "cols": 4} | config)).text())
    return read_topology(topology), run_scalesim(cfg, topology, tmp_path / "out")


def traffic(layer, dataflow, kb):
    return dram_traffic(dataflow, 4, 4, layer.m, layer.k, layer.n, layer.groups, input_elements=layer.input_elements,
                        params=layer.params, output_elements=layer.output_elements, act_bits=8, weight_bits=8, acc_bits=32,
                        ifmap_capacity=kb * 8192, filter_capacity=kb * 8192, ofmap_capacity=kb * 8192)


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_dram_words_match_scalesim_when_buffers_hold_the_layer(tmp_path, dataflow):
    layers, reports = run(tmp_path, dataflow=dataflow, ifmap_kb=64, filter_kb=64, ofmap_kb=64)
    for layer, row in zip(layers, reports["DETAILED_ACCESS_REPORT"], strict=True):
        ours = traffic(layer, dataflow, 64)
        assert (row["DRAM IFMAP Reads"], row["DRAM Filter Reads"]) == (ours["ifmap"], ours["filter"]) == (
            layer.input_elements, layer.params)
        assert ours["ofmap"] == layer.output_elements and ours["psum"] == 0
        # ws/is split K over row folds: SCALE-Sim writes every fold's partial outputs through to DRAM, lutmac keeps
        # them in the output buffer while they fit (ofmap_capacity) and writes finished outputs once
        row_folds, _ = folds(dataflow, 4, 4, layer.m, layer.k, layer.n)
        assert row["DRAM OFMAP Writes"] == ours["ofmap"] * (1 if dataflow == "os" else row_folds)


def test_user_bandwidth_with_roomy_buffers_stalls_neither(tmp_path, synth_path):
    layers, reports = run(tmp_path, dataflow="os", bandwidth_mode="USER", bandwidth=10)
    assert [row["Stall Cycles"] for row in reports["COMPUTE_REPORT"]] == [0, 0]
    ours = compute_report(layers, hardware_config(ScaleConfig(rows=4, cols=4, dataflow="os", bandwidth_mode="USER",
                                                              bandwidth=10)), load_synthesis(synth_path))
    assert [row["Stall Cycles"] for row in ours] == [0, 0]
    assert [row["Total Cycles"] for row in ours] == [row["Total Cycles"] for row in reports["COMPUTE_REPORT"]]


def test_user_bandwidth_with_small_buffers_differs_as_documented(tmp_path, synth_path):
    config = {"dataflow": "os", "bandwidth_mode": "USER", "bandwidth": 2, "ifmap_kb": 1, "filter_kb": 1, "ofmap_kb": 1}
    layers, reports = run(tmp_path, **config)
    theirs = [row["Stall Cycles"] for row in reports["COMPUTE_REPORT"]]
    assert theirs == [4097, 2267]
    # SCALE-Sim reads the im2col activations: M * K words for each of the ceil(N / C) column folds
    first = layers[0]
    _, col_folds = folds("os", 4, 4, first.m, first.k, first.n)
    assert reports["DETAILED_ACCESS_REPORT"][0]["DRAM IFMAP Reads"] == first.m * first.k * col_folds
    ours = compute_report(layers, hardware_config(ScaleConfig(rows=4, cols=4, **config)), load_synthesis(synth_path))
    assert [row["Stall Cycles"] for row in ours] == [0, 1]
    # b's 1296 input bytes overflow the 1 KB buffer: read once per column fold (2), 3528 bytes in 1763 compute cycles
    assert ours[1]["DRAM Bytes"] == 2 * 1296 + 288 + 648
    assert ours[1]["Total Cycles"] == 1763 + 1 and ours[1]["DRAM Demand B/cycle"] == pytest.approx(3528 / 1763)


def test_stalls_hand_computed():
    # 8000 bits = 1000 bytes over 500 compute cycles: 2 bytes/cycle needed
    assert bandwidth_stalls(8000, 500, 1.0) == 500
    assert bandwidth_stalls(8000, 500, 2.0) == 0
    assert bandwidth_stalls(8008, 500, 2.0) == 1  # 1001 bytes: ceil(500.5) = 501 cycles
    assert bandwidth_stalls(8000, 500, np.inf) == 0


def test_narrow_codes_need_less_bandwidth(synth_path):
    synthesis = load_synthesis(synth_path)
    layer = [Layer("fc", "linear", 512, 1000)]  # weights dominate: 512 000 of them
    base = dict(rows=4, cols=4, dataflow="ws", pe_kind="int", dram_bytes_per_cycle=0.25)
    wide, narrow = evaluate(layer, [HardwareConfig(weight_bits=8, act_bits=8, **base),
                                    HardwareConfig(weight_bits=4, act_bits=4, **base)], synthesis).stall_cycles[:, 0]
    compute = 128 * 250 * (8 + 4 + 1 - 2) - 1  # ws: ceil(512/4) x ceil(1000/4) folds of 2R + C + T - 2 (T = M = 1)
    words = 512 * 1000 + 512 + 1000  # weights, inputs, outputs: once each
    assert wide == words / 0.25 - compute
    assert narrow == words / 2 / 0.25 - compute  # 4-bit codes: half the bytes
    assert 0 < narrow < wide
