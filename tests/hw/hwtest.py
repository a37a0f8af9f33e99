"""Shared helper of the hw tests: PE evaluation in Amaranth's simulator."""

from __future__ import annotations

import numpy as np
from amaranth import Value
from amaranth.sim import Simulator

from hw.kinds import PeKind
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
