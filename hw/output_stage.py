"""The output stage: one :class:`OutputLane` per array column, with its residual :class:`ShortcutAligner`.

A lane turns a finished accumulator into the value written to the output buffer, in the order
:mod:`golden.output_stage` defines:

1. ``t = sign * acc + bias`` (``negate``: the channel's sign) and, on a config with
   ``residual_bits``, ``+ rescale(shortcut, shortcut_multiplier)`` (the residual add; the
   operand comes from the RESIDUAL region, the multiplier from the channel's parameters);
2. ``REQUANT``: ``clip(rescale(t, mantissa, shift), 0, 2^out_bits - 1)`` (the clip at 0 is the
   ReLU); ``THRESHOLD``: ``#{k : t >= thresholds[k]}``; ``RAW``: ``t``, ``max(t, 0)`` with ``relu``.

Latency 2 (:attr:`OutputLane.latency`): ``valid``/``acc`` in cycle ``t`` -> ``result_valid``/``result``
in cycle ``t + 2``.  ``negate``, ``bias``, ``multiplier`` and the shortcut inputs are taken in cycle
``t``, ``thresholds`` and ``relu`` in ``t + 1`` and ``mode`` in ``t + 2`` (the controller holds all
but the operands for a whole block).  The shortcut's alignment product is registered with
``sign * acc + bias``, so the residual add costs no pipeline stage.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import ArrayConfig
from .layout import MODE_BITS, OutputMode, multiplier_layout
from .requant import ThresholdBank, round_shift, saturated_shift


def shortcut_signature(cfg: ArrayConfig) -> wiring.Signature:
    """A residual operand, its alignment multiplier and whether to add it (from the lane's side: inputs)."""
    return wiring.Signature({"value": Out(signed(cfg.residual_bits)), "multiplier": Out(multiplier_layout(cfg)),
                             "enable": Out(1)})


class ShortcutAligner(wiring.Component):
    """``rescale(value, multiplier)`` (0 when not enabled), latency 1: the product is registered, the rounding follows."""

    latency = 1

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        super().__init__({"operand": In(shortcut_signature(cfg)),
                          "aligned": Out(signed(cfg.requant.aligned_shortcut_bits))})

    def elaborate(self, platform):
        m = Module()
        width = self.cfg.requant.aligned_shortcut_bits
        product = Signal(signed(width))
        shift = Signal(range(width + 1))
        m.d.sync += [
            product.eq(Mux(self.operand.enable, self.operand.value * self.operand.multiplier.mantissa, 0)),
            shift.eq(saturated_shift(m, self.operand.multiplier.shift, width, "shortcut_shift")),
        ]
        m.d.comb += self.aligned.eq(round_shift(m, product, shift, "shortcut_rounded"))
        return m


class OutputLane(wiring.Component):
    """One output channel's output stage (see the module docstring for the arithmetic and timing)."""

    latency = 2

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        members = {
            "valid": In(1),
            "acc": In(signed(cfg.accumulator_width)),
            "negate": In(1),
            "bias": In(signed(cfg.bias_bits)),
            "multiplier": In(multiplier_layout(cfg)),
            "mode": In(MODE_BITS),
            "relu": In(1),
            "result_valid": Out(1),
            "result": Out(signed(cfg.out_word_bits)),
        }
        if cfg.threshold_bank:
            members["thresholds"] = In(data.ArrayLayout(signed(cfg.threshold_bits), cfg.threshold_count))
        if cfg.residual_bits:
            members["shortcut"] = In(shortcut_signature(cfg))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        product_bits = cfg.requant.product_bits
        code_max = (1 << cfg.out_bits) - 1

        # stage 1: sign * acc + bias (and the shortcut's alignment product)
        signed_total = Signal(signed(max(cfg.accumulator_width, cfg.bias_bits) + 1))
        multiplier = Signal.like(self.multiplier)
        valid1 = Signal()
        m.d.sync += [signed_total.eq(Mux(self.negate, -self.acc, self.acc) + self.bias),
                     multiplier.eq(self.multiplier), valid1.eq(self.valid)]
        total = Signal(signed(cfg.requant.sum_bits))
        if cfg.residual_bits:
            m.submodules.shortcut = aligner = ShortcutAligner(cfg)
            wiring.connect(m, wiring.flipped(self.shortcut), aligner.operand)
            m.d.comb += total.eq(signed_total + aligner.aligned)
        else:
            m.d.comb += total.eq(signed_total)

        # stage 2: total * mantissa, threshold code, raw value
        product = Signal(signed(product_bits))
        shift = Signal(range(product_bits + 1))
        raw = Signal(signed(cfg.requant.sum_bits))
        threshold_code = Signal(unsigned(cfg.out_bits))
        valid2 = Signal()
        m.d.sync += [
            product.eq(total * multiplier.mantissa),
            shift.eq(saturated_shift(m, multiplier.shift, product_bits, "requant_shift")),
            raw.eq(Mux(self.relu & (total < 0), 0, total)),
            valid2.eq(valid1),
        ]
        if cfg.threshold_bank:
            m.submodules.thresholds = bank = ThresholdBank(cfg.requant.sum_bits, cfg.threshold_bits, cfg.threshold_count)
            m.d.comb += [bank.value.eq(total), bank.thresholds.eq(self.thresholds)]
            m.d.sync += threshold_code.eq(bank.code)

        # output: round half up, clip
        rounded = round_shift(m, product, shift, "rounded")
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
