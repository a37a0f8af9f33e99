"""PE-level checks: every PE kind of :mod:`hw.pe` against ``golden.spec.pe_product``, exhaustively.

A *bank* is a combinational test module holding one PE of each requested kind side by side
(ports ``<kind>_weight``, ``<kind>_act``, ``<kind>_product``, plus ``lcq_product_table``), so
one simulator build covers several kinds.  A :class:`PeCase` is a batch of (weight code,
activation code) pairs with the level tables that give them meaning; :func:`pe_inputs` turns it
into what the PE sees (the array edges decode LCQ codes to levels and pre-scale post_shared
activations, so the case does the same with golden's tables) and :func:`expected_products` asks
golden for the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth import Module
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden import spec
from hw.config import pe_datapath
from hw.pe import make_pe

from .build_cache import HdlDesign
from .program import Captures, HostLayout, HostProgram, signature_ports
from .sequencer import host_design
from .stimulus import extreme_tables, random_tables


class PeBank(wiring.Component):
    """One PE per kind, each with its own ports (a test fixture, not part of the accelerator)."""

    def __init__(self, kinds: tuple[str, ...], weight_bits: int, act_bits: int):
        self.pes = {kind: make_pe(kind, weight_bits, act_bits) for kind in kinds}
        members = {}
        for kind, pe in self.pes.items():
            for name, member in pe.signature.members.items():
                members[f"{kind}_{name}"] = In(member.shape) if member.flow == wiring.In else Out(member.shape)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for kind, pe in self.pes.items():
            m.submodules[kind] = pe
            for name, member in pe.signature.members.items():
                outer, inner = getattr(self, f"{kind}_{name}"), getattr(pe, name)
                if member.flow == wiring.In:
                    m.d.comb += inner.eq(outer)
                else:
                    m.d.comb += outer.eq(inner)
        return m


def bank_design(kinds: tuple[str, ...], weight_bits: int, act_bits: int, depth: int) -> tuple[HdlDesign, HostLayout]:
    name = f"pe_bank_w{weight_bits}a{act_bits}_" + "_".join(kinds)
    bank = PeBank(kinds, weight_bits, act_bits)
    text = verilog.convert(bank, name=name, emit_src=False)
    ports = signature_ports(bank.signature, clocked=False)  # the PEs are combinational
    return host_design(text, name, ports, wait_output=None, program_depth=depth + 4, capture_depth=depth)


@dataclass(frozen=True)
class PeCase:
    """(weight code, activation code) pairs for one PE kind, with lcq tables when the kind needs them."""

    kind: str
    datapath: spec.DatapathConfig
    weight_codes: np.ndarray
    act_codes: np.ndarray
    weight_table: np.ndarray | None = None
    act_table: np.ndarray | None = None

    def __len__(self) -> int:
        return self.weight_codes.size


def _all_pairs(datapath: spec.DatapathConfig) -> tuple[np.ndarray, np.ndarray]:
    weights = np.arange(datapath.weight.num_codes)
    if datapath.scheme == "int":
        weights = weights - ((weights >> (datapath.weight.bits - 1)) & 1) * datapath.weight.num_codes
    acts = np.arange(datapath.num_act_codes)
    return np.repeat(weights, acts.size), np.tile(acts, weights.size)


def pe_cases(kind: str, weight_bits: int, act_bits: int, rng: np.random.Generator) -> list[PeCase]:
    """Every code pair; for the LCQ kinds under several tables so that every legal level value is used."""
    datapath = pe_datapath(kind, weight_bits, act_bits)
    weights, acts = _all_pairs(datapath)
    if datapath.scheme != "lcq":
        return [PeCase(kind, datapath, weights, acts)]
    tables = [extreme_tables(datapath), random_tables(datapath, rng)]
    if kind == "lcq":  # the PE multiplies levels: sweep consecutive runs of every level value
        lo, hi = datapath.weight.level_range
        weight_levels = np.arange(lo, hi + 1)
        act_levels = np.arange(1, datapath.act_value_max + 1)
        w_per, a_per = datapath.weight.num_codes, datapath.num_act_codes - 1
        w_tables = [np.resize(weight_levels[i : i + w_per], w_per) for i in range(0, weight_levels.size, w_per)]
        a_tables = [np.concatenate([[0], np.resize(act_levels[i : i + a_per], a_per)])
                    for i in range(0, act_levels.size, a_per)]
        count = max(len(w_tables), len(a_tables))
        tables += [(np.sort(w_tables[i % len(w_tables)]), np.sort(a_tables[i % len(a_tables)])) for i in range(count)]
    return [PeCase(kind, datapath, weights, acts, w, a) for w, a in tables]


def pe_inputs(case: PeCase) -> dict[str, np.ndarray]:
    """The bank's input values for ``case`` (what the array edges would deliver to the PE)."""
    datapath, kind = case.datapath, case.kind
    if kind == "lcq":
        return {f"{kind}_weight": datapath.weight.check_table(case.weight_table)[case.weight_codes],
                f"{kind}_act": spec.act_values(datapath, case.act_codes, case.act_table)}
    weight = case.weight_codes & (datapath.weight.num_codes - 1)  # the code word (two's complement for int)
    inputs = {f"{kind}_weight": weight}
    if kind == "post_shared":  # {value, scaled} with value in the low bits (hw.pe.post_act_layout)
        inputs[f"{kind}_act"] = case.act_codes | datapath.post_lut[case.act_codes] << datapath.act_bits
    else:
        inputs[f"{kind}_act"] = case.act_codes
    if kind == "lcq_product":
        table = spec.product_table(datapath, case.weight_table, case.act_table).ravel()
        inputs[f"{kind}_table"] = np.array(_pack_table(table, datapath.product_bits()), dtype=object)
    return inputs


def _pack_table(values: np.ndarray, bits: int) -> int:
    """The product table as one integer, entry ``i`` at bits ``i * bits`` (two's complement)."""
    mask = (1 << bits) - 1
    return sum((int(v) & mask) << (i * bits) for i, v in enumerate(values))


def expected_products(case: PeCase) -> np.ndarray:
    return spec.pe_product(case.datapath, case.weight_codes, case.act_codes, case.weight_table, case.act_table)


def case_program(layout: HostLayout, case: PeCase) -> HostProgram:
    """One entry per pair, each captured (a combinational PE answers within the entry)."""
    program = HostProgram(layout)
    program.drive(pe_inputs(case), capture=True)
    program.end()
    return program


def check_case(case: PeCase, captures: Captures) -> list[str]:
    """Mismatches of one case, described with the codes, levels and values involved."""
    actual = captures.field(f"{case.kind}_product", signed=True)
    expected = expected_products(case)
    bad = np.flatnonzero(actual != expected)
    tables = "" if case.weight_table is None else f" (weight table {case.weight_table.tolist()}, act table {case.act_table.tolist()})"
    return [
        f"{case.kind}: weight code {case.weight_codes[i]}, act code {case.act_codes[i]}: expected {expected[i]}, "
        f"got {actual[i]}{tables}"
        for i in bad[:8]
    ] + ([f"{case.kind}: ... {bad.size} of {len(case)} products wrong"] if bad.size > 8 else [])
