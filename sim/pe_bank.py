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
from hw.kinds import pe_kind

from .build_cache import HdlDesign
from .program import Captures, HostLayout, HostProgram, signature_ports
from .sequencer import host_design


class PeBank(wiring.Component):
    """One PE per kind, each with its own ports (a test fixture, not part of the accelerator)."""

    def __init__(self, kinds: tuple[str, ...], weight_bits: int, act_bits: int, frac_bits: int | None = None):
        self.pes = {kind: pe_kind(kind).pe(pe_kind(kind).datapath(weight_bits, act_bits, frac_bits)) for kind in kinds}
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


def bank_design(kinds: tuple[str, ...], weight_bits: int, act_bits: int, depth: int,
                frac_bits: int | None = None) -> tuple[HdlDesign, HostLayout]:
    """The bank's host design; ``frac_bits`` (pot/post kinds): every PE at that F instead of its format's default."""
    fraction = "" if frac_bits is None else f"F{frac_bits}_"
    name = f"pe_bank_w{weight_bits}a{act_bits}_{fraction}" + "_".join(kinds)
    bank = PeBank(kinds, weight_bits, act_bits, frac_bits)
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


def pe_cases(kind: str, weight_bits: int, act_bits: int, rng: np.random.Generator,
             frac_bits: int | None = None) -> list[PeCase]:
    """Every code pair under each of the kind's test tables (``hw.kinds.PeKind.pe_test_cases``)."""
    entry = pe_kind(kind)
    datapath = entry.datapath(weight_bits, act_bits, frac_bits)
    return [PeCase(kind, datapath, *case) for case in entry.pe_test_cases(datapath, rng)]


def pe_inputs(case: PeCase) -> dict[str, np.ndarray]:
    """The bank's input values for ``case``: what the kind's array edges deliver to the PE."""
    inputs = pe_kind(case.kind).edges.pe_inputs(case.datapath, case.weight_codes, case.act_codes,
                                                case.weight_table, case.act_table)
    if "table" in inputs:  # one integer wider than int64
        inputs["table"] = np.array(inputs["table"], dtype=object)
    return {f"{case.kind}_{name}": value for name, value in inputs.items()}


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
