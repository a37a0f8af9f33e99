"""Output requantization: one :class:`RequantLane` per array column, and the LCQ :class:`ThresholdBank`.

A lane turns a finished accumulator into the value written to the output buffer, exactly as
``golden.spec`` defines it:

* ``REQUANT``: ``clip(((acc + bias) * mantissa + 2^(shift-1)) >> shift, 0, 2^out_bits - 1)``
  (``golden.requantization.requantize``: round half up, arithmetic shift).  The shift is saturated at the
  product width ``P``: for any ``shift >= P`` the result is 0, as in the spec.  Rounding uses
  ``((x >> (s-1)) + 1) >> 1``, equal to ``(x + 2^(s-1)) >> s`` for ``s >= 1`` without a
  rounding constant as wide as the shift range.
* ``THRESHOLD``: ``#{k : acc + bias >= thresholds[k]}`` (``golden.requantization.threshold_quantize``).
* ``RAW``: ``acc + bias``, with ``max(., 0)`` when ``relu`` is set.

Two pipeline stages: ``valid``/``acc`` in cycle ``t`` -> ``result_valid``/``result`` in cycle
``t + 2``.  ``bias`` and ``multiplier`` are taken in cycle ``t``, ``thresholds`` and ``relu`` in
cycle ``t + 1`` and ``mode`` in ``t + 2`` (the controller holds all of them for a whole block).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import ArrayConfig
from .layout import MODE_BITS, OutputMode, multiplier_layout


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


class RequantLane(wiring.Component):
    """One output channel's requantizer (see the module docstring for the arithmetic and timing)."""

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        members = {
            "valid": In(1),
            "acc": In(signed(cfg.accumulator_width)),
            "bias": In(signed(cfg.bias_bits)),
            "multiplier": In(multiplier_layout(cfg)),
            "mode": In(MODE_BITS),
            "relu": In(1),
            "result_valid": Out(1),
            "result": Out(signed(cfg.out_word_bits)),
        }
        if cfg.threshold_bank:
            members["thresholds"] = In(data.ArrayLayout(signed(cfg.threshold_bits), cfg.threshold_count))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        product_bits = cfg.requant.product_bits
        code_max = (1 << cfg.out_bits) - 1

        # stage 1: acc + bias
        total = Signal(signed(cfg.requant.sum_bits))
        multiplier = Signal.like(self.multiplier)
        valid1 = Signal()
        m.d.sync += [total.eq(self.acc + self.bias), multiplier.eq(self.multiplier), valid1.eq(self.valid)]

        # stage 2: (acc + bias) * mantissa, threshold code, raw value
        product = Signal(signed(product_bits))
        shift = Signal(range(product_bits + 1))
        raw = Signal(signed(cfg.requant.sum_bits))
        threshold_code = Signal(unsigned(cfg.out_bits))
        valid2 = Signal()
        m.d.sync += [
            product.eq(total * multiplier.mantissa),
            shift.eq(Mux(multiplier.shift > product_bits, product_bits, multiplier.shift)),
            raw.eq(Mux(self.relu & (total < 0), 0, total)),
            valid2.eq(valid1),
        ]
        if cfg.threshold_bank:
            m.submodules.thresholds = bank = ThresholdBank(cfg.requant.sum_bits, cfg.threshold_bits, cfg.threshold_count)
            m.d.comb += [bank.value.eq(total), bank.thresholds.eq(self.thresholds)]
            m.d.sync += threshold_code.eq(bank.code)

        # output: round half up, clip
        shift_minus_one = Signal.like(shift)
        m.d.comb += shift_minus_one.eq(shift - 1)
        half_rounded = Signal(signed(product_bits + 1))
        m.d.comb += half_rounded.eq((product >> shift_minus_one) + 1)
        rounded = Signal(signed(product_bits + 1))
        m.d.comb += rounded.eq(Mux(shift == 0, product, half_rounded >> 1))
        clipped = Mux(rounded < 0, 0, Mux(rounded > code_max, code_max, rounded))
        with m.Switch(self.mode):
            with m.Case(OutputMode.REQUANT):
                m.d.comb += self.result.eq(clipped)
            with m.Case(OutputMode.THRESHOLD):
                m.d.comb += self.result.eq(threshold_code)
            with m.Default():
                m.d.comb += self.result.eq(raw)
        m.d.comb += self.result_valid.eq(valid2)
        return m
