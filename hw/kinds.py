"""The PE-kind registry: every PE kind declared once, and every other module looks kinds up here.

A kind is a hardware implementation of one weight scheme of :mod:`golden.spec`: its PE class
(:mod:`hw.pe`), its array edges (:class:`hw.edge.ArrayEdges`: the row/column/array units, the
host table regions that load them and what the PEs receive), its code pools for stimulus and
its synthesis plan (:mod:`hw.synth`).  Adding a kind means its golden spec entry, its PE class,
one :class:`PeKind` in :data:`KINDS` and its tests.

=============  ======  =========================================  ==========================================
kind           scheme  row / column edges                         PE datapath
=============  ======  =========================================  ==========================================
int            int     codes pass through                         multiplier
pot            pot     codes pass through                         barrel shifter of ``a << F``, ``F <= m``
post_lut       post    codes pass through                         own sqrt-2 ROM, mux, shifter
post_shared    post    sqrt-2 prescaler per row                   mux + shifter
lcq            lcq     level table per row and per column         multiplier on levels
lcq_product    lcq     codes pass through, one shared table       mux over the product table
apot           apot    activation level table per row             shift-add, one shifted ``a`` per term
=============  ======  =========================================  ==========================================

apot activations are table values (APoT activation levels are sums of powers of two as well):
decoded once per row, so ``R`` table reads per cycle serve ``R * C`` PEs and each PE adds one
shifted value per weight term (:class:`hw.pe.ApotPE` says why codes would cost more).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from golden import apot_format, spec
from golden.errors import UnknownSchemeError
from golden.spec import WeightScheme

from .edge import ArrayEdges, DecodedLevels, DecodedRows, PrescaledRows, SharedProductTable
from .pe import ApotPE, IntPE, LcqPE, LcqProductPE, PostLutPE, PostSharedPE, PotPE, ProcessingElement

#: Bits every kind's PE is synthesized at by default (hw.synth), where the kind supports them.
PE_SYNTH_BITS = (2, 3, 4, 8)
#: Array cores are synthesized at 3 and 4 bits on 4 x 4 by default.
ARRAY_SYNTH = ((3, 4), (4, 4))
#: Shift kinds are synthesized at their default F and at this one (the flat F of earlier designs) where legal.
SHIFT_SYNTH_F = 8


@dataclass(frozen=True)
class SynthPlan:
    """Which units of a kind ``python -m hw.synth`` builds: PE bits and ``(bits, R = C)`` array cores.

    ``full_*`` are added by ``--full`` (minutes each); ``effort`` is a relative Yosys run time
    that starts slow units first.  ``frac_bits``: the product fraction widths of a shift kind's
    units besides its format's default ``F`` (each clipped into the format's legal range, so
    ``8`` means 4-bit pot's exact maximum ``F = m = 6``; duplicates of the default are dropped).
    """

    pe_bits: tuple[int, ...] = PE_SYNTH_BITS
    arrays: tuple[tuple[int, int], ...] = ARRAY_SYNTH
    full_pe_bits: tuple[int, ...] = ()
    full_arrays: tuple[tuple[int, int], ...] = ()
    effort: float = 1.0
    frac_bits: tuple[int, ...] = ()


@dataclass(frozen=True)
class PeKind:
    """One PE kind: the scheme it serves, its PE class, its array edges and its synthesis plan."""

    name: str
    scheme: WeightScheme
    pe_class: type[ProcessingElement]
    edges: ArrayEdges = field(default_factory=ArrayEdges)
    synthesis: SynthPlan = field(default_factory=SynthPlan)
    #: the kind a network layer of this scheme runs on (sim.network); one per scheme
    runs_networks: bool = False
    #: priced by the demo and the default reports (False: its array synthesizes only with --full)
    priced_by_default: bool = True
    #: where the kind's sqrt-2 ROM sits: "pe" (one per PE), "row" (one per array row) or None
    rom_per: str | None = None
    #: activation table value width at ``b`` activation bits when a config gives none (None: the spec default)
    act_level_bits: Callable[[int], int] | None = None

    def datapath(self, weight_bits: int, act_bits: int, frac_bits: int | None = None, levels: str = "bbit",
                 level_bits: int = spec.DEFAULT_LEVEL_BITS,
                 act_level_bits: int | None = None) -> spec.DatapathConfig:
        """The golden datapath this kind implements at these widths, validated by spec and by the kind."""
        if act_level_bits is None:
            act_level_bits = self.act_level_bits(act_bits) if self.act_level_bits else spec.DEFAULT_LEVEL_BITS
        datapath = spec.DatapathConfig.make(self.scheme, weight_bits, act_bits, frac_bits, levels, level_bits,
                                            act_level_bits=act_level_bits)
        self.edges.check(datapath)
        return datapath

    def pe(self, datapath: spec.DatapathConfig) -> ProcessingElement:
        """A new PE for ``datapath`` (one of :meth:`datapath`'s results)."""
        return self.pe_class(datapath)

    @property
    def has_frac_bits(self) -> bool:
        """Whether products carry ``F`` fraction bits (a design parameter the sweep varies)."""
        return self.scheme in spec.SHIFT_SCHEMES

    def rom_copies(self, rows: int, cols: int) -> int:
        """Copies of the sqrt-2 ROM in an ``rows x cols`` array."""
        return {None: 0, "pe": rows * cols, "row": rows}[self.rom_per]

    @staticmethod
    def weight_code_pool(datapath: spec.DatapathConfig) -> np.ndarray:
        """Every legal weight code, for stimulus (int: two's complement values)."""
        return datapath.weight.legal_codes()

    @staticmethod
    def act_code_pool(datapath: spec.DatapathConfig) -> np.ndarray:
        """Every activation code, for stimulus."""
        return np.arange(datapath.num_act_codes)

    def pe_test_cases(self, datapath: spec.DatapathConfig, rng: np.random.Generator) -> list[tuple]:
        """``(weight codes, act codes, weight table, act table)``: every code pair under each of the kind's test tables."""
        weights, acts = self.weight_code_pool(datapath), self.act_code_pool(datapath)
        pairs = np.repeat(weights, acts.size), np.tile(acts, weights.size)
        return [(*pairs, w, a) for w, a in self.edges.pe_test_tables(datapath, rng)]


_KINDS = (
    PeKind("int", WeightScheme.INT, IntPE, runs_networks=True,
           synthesis=SynthPlan(arrays=ARRAY_SYNTH + ((8, 4),), full_arrays=((4, 8),))),
    PeKind("pot", WeightScheme.POT, PotPE, runs_networks=True,
           synthesis=SynthPlan(full_arrays=((8, 4),), frac_bits=(SHIFT_SYNTH_F,))),
    PeKind("post_lut", WeightScheme.POST, PostLutPE, rom_per="pe",
           synthesis=SynthPlan(arrays=ARRAY_SYNTH + ((8, 4),), full_arrays=((4, 8),), effort=4.0, frac_bits=(SHIFT_SYNTH_F,))),
    PeKind("post_shared", WeightScheme.POST, PostSharedPE, PrescaledRows(), runs_networks=True, rom_per="row",
           synthesis=SynthPlan(arrays=ARRAY_SYNTH + ((8, 4),), full_arrays=((4, 8),), frac_bits=(SHIFT_SYNTH_F,))),
    PeKind("lcq", WeightScheme.LCQ, LcqPE, DecodedLevels(), runs_networks=True,
           synthesis=SynthPlan(arrays=((2, 4),) + ARRAY_SYNTH, effort=4.0)),
    # the 2^(2b)-entry table and R*C muxes over it synthesize for minutes above 3 bits
    PeKind("lcq_product", WeightScheme.LCQ, LcqProductPE, SharedProductTable(), priced_by_default=False,
           synthesis=SynthPlan(pe_bits=(2, 3), arrays=((2, 4),), full_pe_bits=(4,), full_arrays=ARRAY_SYNTH,
                               effort=16.0)),
    # APoT stops at 7-bit weights (synthesized at 2, 3 and 4 bits); its table holds the APoT activation levels
    PeKind("apot", WeightScheme.APOT, ApotPE, DecodedRows(), runs_networks=True,
           act_level_bits=apot_format.act_level_bits),
)
KINDS: dict[str, PeKind] = {kind.name: kind for kind in _KINDS}
PE_KINDS = tuple(KINDS)


def pe_kind(name: str) -> PeKind:
    """The registered kind called ``name``; anything else is an :class:`UnknownSchemeError`."""
    if name not in KINDS:
        raise UnknownSchemeError(f"PE kind {name!r} does not exist; expected one of {PE_KINDS}")
    return KINDS[name]


def kinds_of_scheme(scheme: str) -> tuple[PeKind, ...]:
    """The kinds that implement weight scheme ``scheme``, the one networks run on first."""
    kinds = [kind for kind in _KINDS if kind.scheme == scheme]
    if not kinds:
        raise UnknownSchemeError(f"no PE kind implements {scheme!r} weights; kinds serve {sorted(set(spec.WEIGHT_SCHEMES))}")
    return tuple(sorted(kinds, key=lambda kind: not kind.runs_networks))


def network_kind(scheme: str) -> PeKind:
    """The kind a network layer with ``scheme`` weights runs on."""
    return kinds_of_scheme(scheme)[0]
