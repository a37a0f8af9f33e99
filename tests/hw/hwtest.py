"""Shared helpers of the hw tests: PE evaluation in Amaranth's simulator, small array configs, random jobs."""

from __future__ import annotations

import numpy as np
from amaranth import Value
from amaranth.sim import Simulator

from golden import requantization, spec
from hw.config import ArrayConfig
from hw.host import GemmJob
from hw.kinds import PeKind
from hw.layout import OutputMode
from hw.pe import ProcessingElement


def simulate_pe(kind: PeKind, pe: ProcessingElement, weight_codes, act_codes, weight_table=None,
                act_table=None) -> np.ndarray:
    """``pe.product`` for each (weight code, act code) pair, fed what ``kind``'s array edges deliver, from Amaranth's simulator."""
    inputs = kind.edges.pe_inputs(pe.datapath, weight_codes, act_codes, weight_table, act_table)
    products = []

    async def bench(ctx):
        if "table" in inputs:
            ctx.set(pe.table.as_value(), inputs["table"])
        for weight, act in zip(inputs["weight"].tolist(), inputs["act"].tolist(), strict=True):
            ctx.set(Value.cast(pe.weight), weight)
            ctx.set(Value.cast(pe.act), act)
            products.append(ctx.get(pe.product))

    sim = Simulator(pe)
    sim.add_testbench(bench)
    sim.run()
    return np.array(products, dtype=np.int64)


# small arrays with odd shapes so padding, skew and lane selection are all exercised
SMALL = {
    "int": dict(rows=2, cols=3, weight_bits=4, act_bits=4, host_lanes=2),
    "pot": dict(rows=3, cols=2, weight_bits=3, act_bits=4, frac_bits=2, host_lanes=4),
    "post_lut": dict(rows=2, cols=2, weight_bits=4, act_bits=3, frac_bits=6, host_lanes=1),
    "post_shared": dict(rows=3, cols=3, weight_bits=4, act_bits=4, host_lanes=2),
    "lcq": dict(rows=2, cols=3, weight_bits=3, act_bits=3, level_bits=6, act_level_bits=5, host_lanes=2),
    "lcq_product": dict(rows=3, cols=2, weight_bits=2, act_bits=3, level_bits=5, act_level_bits=6, host_lanes=4),
    "apot": dict(rows=3, cols=2, weight_bits=5, act_bits=3, act_level_bits=6, host_lanes=2),
}


def job_tables(datapath: spec.DatapathConfig, tables: tuple) -> dict:
    """The level tables a job of this datapath carries (lcq: both, apot: the activation table)."""
    return {name: table for name, table in zip(("weight_table", "act_table"), tables, strict=True) if table is not None}


def small_config(kind: str, **changes) -> ArrayConfig:
    fields = dict(pe_kind=kind, max_reduction=24, max_m=7, max_n=7) | SMALL[kind] | changes
    return ArrayConfig(**fields)


def random_job(cfg: ArrayConfig, rng, m: int, k: int, n: int, mode=OutputMode.REQUANT, **extra) -> GemmJob:
    datapath = cfg.datapath
    act = rng.integers(0, datapath.num_act_codes, (m, k))
    weight = rng.choice(datapath.weight.legal_codes(), (k, n))
    tables = job_tables(datapath, datapath.random_tables(rng))
    acc_scale = float(max(abs(v) for v in datapath.product_range())) * np.sqrt(k)
    mantissa, shift = requantization.quantize_multiplier(rng.uniform(0.5, 4.0, n) * (1 << cfg.out_bits) / acc_scale)
    bias = rng.integers(-int(acc_scale), int(acc_scale) + 1, n)
    fields = dict(mode=mode, bias=bias, mantissa=mantissa, shift=shift) | tables | extra
    return GemmJob(act, weight, **fields)
