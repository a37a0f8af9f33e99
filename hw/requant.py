"""The requantizer's arithmetic: the round-half-up shift and the LCQ :class:`ThresholdBank`.

``golden.requantization`` defines both: ``rescale`` (``(x * mantissa + 2^(shift-1)) >> shift``,
arithmetic shift) and ``threshold_quantize``.  The shift is saturated at the product width
``P``: every ``shift >= P`` gives 0, as in the spec.  Rounding uses ``((x >> (s-1)) + 1) >> 1``,
equal to ``(x + 2^(s-1)) >> s`` for ``s >= 1`` without a rounding constant as wide as the shift
range.  The output lane that uses them is :class:`hw.output_stage.OutputLane`; :func:`clip_code`
is the final clip into the codes.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out


def popcount(bits):
    """Number of set bits, as a balanced adder tree."""
    terms = [bits[i] for i in range(len(bits))]
    if not terms:
        return 0
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


class ThresholdBank(wiring.Component):
    """``code = #{k : value >= thresholds[k]}`` with ``count`` parallel comparators."""

    def __init__(self, value_bits: int, threshold_bits: int, count: int):
        self.count = count
        super().__init__({
            "value": In(signed(value_bits)),
            "thresholds": In(data.ArrayLayout(signed(threshold_bits), count)),
            "code": Out(unsigned(count.bit_length())),
        })

    def elaborate(self, platform):
        m = Module()
        # the comparators feed the adder tree directly: a ``reached`` vector assigned bit by bit
        # is one net with ``count`` drivers, which Icarus re-resolves whole for every bit change
        m.d.comb += self.code.eq(popcount([self.value >= self.thresholds[k] for k in range(self.count)]))
        return m


def saturated_shift(m: Module, shift, width: int, name: str) -> Signal:
    """``min(shift, width)``: every shift of a ``width``-bit product from ``width`` on rounds it to 0, as in the spec."""
    saturated = Signal(range(width + 1), name=name)
    m.d.comb += saturated.eq(Mux(shift > width, width, shift))
    return saturated


def round_shift(m: Module, product, shift, name: str) -> Signal:
    """``(product + 2^(shift-1)) >> shift`` (``golden.requantization.rescale``) for ``shift`` in ``0..len(product)``.

    Computed as ``((product >> (shift-1)) + 1) >> 1``: no rounding constant as wide as the shift range.
    """
    width = len(product)
    shift_minus_one = Signal.like(shift, name=f"{name}_shift_minus_one")
    m.d.comb += shift_minus_one.eq(shift - 1)
    half_rounded = Signal(signed(width + 1), name=f"{name}_half_rounded")
    m.d.comb += half_rounded.eq((product >> shift_minus_one) + 1)
    rounded = Signal(signed(width + 1), name=name)
    m.d.comb += rounded.eq(Mux(shift == 0, product, half_rounded >> 1))
    return rounded


def clip_code(value, bits: int, code_max=None):
    """``min(value, code_max)`` of a value ``>= 0`` as a ``bits``-bit code (``code_max``: ``2^bits - 1`` if None).

    A run-time ``code_max`` is a mask of low ones (``2^out_bits - 1``), so the value exceeds it exactly when a
    bit above the mask is set: an AND-OR, where a comparison with a signal would be a carry chain.
    """
    if code_max is None:
        top = (1 << bits) - 1
        return Mux(value > top, top, value)
    beyond = value[bits:].any() | (value[:bits] & ~code_max).any()
    return Mux(beyond, code_max, value[:bits])
