"""Shared helpers of the hw tests: random level tables, PE evaluation in Amaranth's simulator, golden GEMM."""

from __future__ import annotations

import numpy as np
from amaranth import Value
from amaranth.sim import Simulator

from golden import spec
from golden.gemm import int_gemm
from hw.config import ArrayConfig
from hw.host import GemmJob, pack_words
from hw.layout import OutputMode
from hw.pe import ProcessingElement, product_table_layout


def random_weight_table(datapath: spec.DatapathConfig, rng: np.random.Generator, extreme: bool = False) -> np.ndarray:
    """A legal lcq weight level table (non-decreasing, in range); ``extreme`` pins both ends to the range limits."""
    lo, hi = datapath.weight.level_range
    table = np.sort(rng.integers(lo, hi + 1, datapath.weight.num_codes))
    if extreme:
        table[0], table[-1] = lo, hi
    return table


def random_act_table(datapath: spec.DatapathConfig, rng: np.random.Generator, extreme: bool = False) -> np.ndarray:
    """A legal activation level table (entry 0 is 0, non-decreasing, in range)."""
    table = np.sort(rng.integers(0, datapath.act_value_max + 1, datapath.num_act_codes))
    table[0] = 0
    if extreme:
        table[-1] = datapath.act_value_max
    return table


def all_weight_codes(datapath: spec.DatapathConfig) -> np.ndarray:
    """Every legal weight code (int: two's complement values)."""
    if datapath.scheme == "int":
        lo, hi = spec.signed_range(datapath.weight.bits)
        return np.arange(lo, hi + 1)
    return np.arange(datapath.weight.num_codes)


def pe_inputs(pe: ProcessingElement, weight_codes, act_codes, weight_table=None, act_table=None):
    """What the array edges would present to the PE: (weight input, act input) integer arrays."""
    datapath = pe.datapath
    weight_codes, act_codes = np.asarray(weight_codes), np.asarray(act_codes)
    if pe.kind == "lcq":
        return weight_table[weight_codes], act_table[act_codes]
    if pe.kind == "post_shared":
        return weight_codes, act_codes | (datapath.post_lut[act_codes] << datapath.act_bits)
    return weight_codes, act_codes


def simulate_pe(pe: ProcessingElement, weight_codes, act_codes, weight_table=None, act_table=None) -> np.ndarray:
    """``pe.product`` for each (weight code, act code) pair, from Amaranth's simulator."""
    weights, acts = pe_inputs(pe, weight_codes, act_codes, weight_table, act_table)
    products = []

    async def bench(ctx):
        if pe.kind == "lcq_product":
            table = spec.product_table(pe.datapath, weight_table, act_table).ravel()
            ctx.set(pe.table.as_value(), pack_words(product_table_layout(pe.datapath), table[None])[0])
        for weight, act in zip(weights.tolist(), acts.tolist(), strict=True):
            ctx.set(Value.cast(pe.weight), weight)
            ctx.set(Value.cast(pe.act), act)
            products.append(ctx.get(pe.product))

    sim = Simulator(pe)
    sim.add_testbench(bench)
    sim.run()
    return np.array(products, dtype=np.int64)


def golden_outputs(cfg: ArrayConfig, job: GemmJob) -> np.ndarray:
    """The job's expected output from golden.integer.int_gemm and golden.spec's requantizers."""
    acc = int_gemm(cfg.datapath, job.act_codes, job.weight_codes, job.weight_table, job.act_table)
    n = acc.shape[1]
    bias = np.broadcast_to(np.asarray(job.bias, dtype=np.int64), (n,))
    if job.mode == OutputMode.RAW:
        total = acc + bias
        return np.maximum(total, 0) if job.relu else total
    if job.mode == OutputMode.THRESHOLD:
        return spec.threshold_quantize(acc, bias, job.thresholds)
    if job.row_mantissa is not None:
        mantissa, shift = np.asarray(job.row_mantissa)[:, None], np.asarray(job.row_shift)[:, None]
    else:
        mantissa, shift = job.mantissa, job.shift
    return spec.requantize(acc, bias, mantissa, shift, cfg.out_bits)
