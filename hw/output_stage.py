"""The output stage: one :class:`OutputLane` per array column, with its residual :class:`ShortcutAligner`.

A lane turns a finished accumulator into the value written to the output buffer, in the order
:mod:`golden.output_stage` defines:

1. ``t = sign * acc + bias`` (``negate``: the channel's sign) and, on a config with
   ``residual_bits``, ``+ rescale(shortcut, shortcut_multiplier)`` (the residual add; the
   operand comes from the RESIDUAL region, the multiplier from the channel's parameters);
2. ``REQUANT``: ``clip(rescale(t, mantissa, shift), 0, code_max)`` (the clip at 0 is the ReLU;
   ``code_max = 2^out_bits - 1``, an input on a config with run-time output widths);
   ``THRESHOLD``: ``#{k : t >= thresholds[k]}``; ``RAW``: ``t``, ``max(t, 0)`` with ``relu``.

Latency 3 (:attr:`OutputLane.latency`): ``valid``/``acc`` in cycle ``t`` -> ``result_valid``/``result``
in cycle ``t + 3``.  ``negate``, ``bias``, ``multiplier`` and the shortcut inputs are taken in cycle
``t``, ``thresholds`` and ``relu`` in ``t + 1`` and ``mode`` and ``code_max`` in ``t + 3`` (the controller holds all
but the operands for a whole block; the next block's parameters arrive at ``t + 2`` at the
earliest).  The shortcut's alignment product is registered with ``sign * acc + bias``; the
requantizer's multiply has a stage of its own (stage 3): behind the add in one stage it was the
accelerator's critical path.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from .config import ArrayConfig
from .layout import MODE_BITS, OutputMode, multiplier_layout
from .requant import ThresholdBank, clip_code, round_shift, saturated_shift


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

    latency = 3

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
        if cfg.run_time_out_bits:
            members["code_max"] = In(unsigned(cfg.out_bits))
        if cfg.threshold_bank:
            members["thresholds"] = In(data.ArrayLayout(signed(cfg.threshold_bits), cfg.threshold_count))
        if cfg.residual_bits:
            members["shortcut"] = In(shortcut_signature(cfg))
        if cfg.global_pool:  # the ASQ barrier's second pass adds the value the output buffer holds
            members["held"] = In(signed(cfg.requant.sum_bits))
            members["add_held"] = In(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        product_bits = cfg.requant.product_bits
        code_max = self.code_max if cfg.run_time_out_bits else None

        # stage 1: sign * acc + bias (and the shortcut's alignment product)
        signed_total = Signal(signed(max(cfg.accumulator_width, cfg.bias_bits) + 1))
        multiplier = Signal.like(self.multiplier)
        valid1 = Signal()
        m.d.sync += [signed_total.eq(Mux(self.negate, -self.acc, self.acc) + self.bias),
                     multiplier.eq(self.multiplier), valid1.eq(self.valid)]
        total = Signal(signed(cfg.requant.sum_bits))
        addend = 0
        if cfg.residual_bits:
            m.submodules.shortcut = aligner = ShortcutAligner(cfg)
            wiring.connect(m, wiring.flipped(self.shortcut), aligner.operand)
            addend = aligner.aligned
        if cfg.global_pool:  # a held run adds no shortcut (hw.host.check_job)
            held, add_held = Signal.like(self.held), Signal()
            m.d.sync += [held.eq(self.held), add_held.eq(self.add_held)]
            addend = Mux(add_held, held, addend)
        m.d.comb += total.eq(signed_total + addend)

        # stage 2: total (the residual add ends here), threshold code, raw value
        total2 = Signal.like(total)
        multiplier2 = Signal.like(multiplier)
        raw = Signal(signed(cfg.requant.sum_bits))
        threshold_code = Signal(unsigned(cfg.threshold_out_bits))
        valid2 = Signal()
        m.d.sync += [total2.eq(total), multiplier2.eq(multiplier), raw.eq(Mux(self.relu & (total < 0), 0, total)),
                     valid2.eq(valid1)]
        if cfg.threshold_bank:
            m.submodules.thresholds = bank = ThresholdBank(cfg.requant.sum_bits, cfg.threshold_bits, cfg.threshold_count)
            m.d.comb += [bank.value.eq(total), bank.thresholds.eq(self.thresholds)]
            m.d.sync += threshold_code.eq(bank.code)

        # stage 3: total * mantissa (a multiply of its own: with the add before it, it set the clock)
        product = Signal(signed(product_bits))
        shift = Signal(range(product_bits + 1))
        raw3, threshold_code3 = Signal.like(raw), Signal.like(threshold_code)
        valid3 = Signal()
        m.d.sync += [
            product.eq(total2 * multiplier2.mantissa),
            shift.eq(saturated_shift(m, multiplier2.shift, product_bits, "requant_shift")),
            raw3.eq(raw), threshold_code3.eq(threshold_code), valid3.eq(valid2),
        ]

        # output: round half up, clip
        rounded = round_shift(m, product, shift, "rounded")
        clipped = Mux(rounded < 0, 0, clip_code(rounded, cfg.out_bits, code_max))
        with m.Switch(self.mode):
            with m.Case(OutputMode.REQUANT):
                m.d.comb += self.result.eq(clipped)
            with m.Case(OutputMode.THRESHOLD):
                m.d.comb += self.result.eq(threshold_code3)
            with m.Default():
                m.d.comb += self.result.eq(raw3)
        m.d.comb += self.result_valid.eq(valid3)
        return m


class GlobalPool(wiring.Component):
    """A global average pool over a run's rows: per channel ``sum relu(t)``, then one requantization.

    ``golden.output_stage.global_pool_sum``, then ``clip(rescale(sum, mantissa, shift))`` with
    ``1/(H*W)`` in the channel's multiplier.  The lanes (RAW with ReLU) feed it their results
    row by row; a block's rows are summed in one register per column, and at the block's last row
    that sum is added to the channel block's running total (one word per ``n`` block, so the
    ``m`` blocks of the run may interleave with the ``n`` blocks).  At the last ``m`` block the
    total is requantized: ``write`` and ``codes`` (output row 0 of block ``write_block``) follow
    the last row's lane result by :attr:`latency` cycles.  ``capture`` takes the block's
    multipliers when its row 0 enters the lanes (the controller's parameter read is then free
    for the next block); ``code_max`` (configs with run-time output widths) is the run's.  Without
    ``requantize`` (a RAW run: the ASQ barrier's first pass) the
    totals are only kept, for the host to read (``rd_addr`` / ``rd_data``, one cycle).
    """

    latency = 2

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        multipliers = data.ArrayLayout(multiplier_layout(cfg), cfg.cols)
        code_max = {"code_max": In(unsigned(cfg.out_bits))} if cfg.run_time_out_bits else {}
        super().__init__(code_max | {
            "capture": In(1),
            "multipliers": In(multipliers),
            "valid": In(1),
            "values": In(data.ArrayLayout(signed(cfg.out_word_bits), cfg.cols)),
            "counted": In(1),  # this row is an output row (not padding beyond M)
            "first_row": In(1),
            "last_row": In(1),
            "first_block": In(1),  # the run's first m block: totals start at 0
            "last_block": In(1),  # its last m block: requantize
            "n_block": In(range(cfg.n_blocks_max)),
            "requantize": In(1),
            "rd_addr": In(range(cfg.n_blocks_max)),
            "rd_data": Out(data.ArrayLayout(unsigned(cfg.pool_sum_bits), cfg.cols)),
            "write": Out(1),
            "write_block": Out(range(cfg.n_blocks_max)),
            "codes": Out(data.ArrayLayout(unsigned(cfg.out_bits), cfg.cols)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        width, value_bits = cfg.pool_sum_bits, cfg.requant.sum_bits - 1  # relu(t) >= 0 has sum_bits - 1 magnitude bits
        product_bits = width + multiplier_layout(cfg)["mantissa"].shape.width + 1  # signed, for round_shift
        code_max = self.code_max if cfg.run_time_out_bits else None
        m.submodules.totals = totals = memory.Memory(shape=data.ArrayLayout(unsigned(width), cfg.cols),
                                                     depth=cfg.n_blocks_max, init=[])
        total_read, total_write = totals.read_port(domain="comb"), totals.write_port()
        host_read = totals.read_port()
        m.d.comb += [host_read.addr.eq(self.rd_addr), self.rd_data.eq(host_read.data)]
        # the block's multipliers, held until its total is requantized: that happens OutputLane.latency cycles
        # after its last row entered the lanes, and the next block's row 0 (its capture) may enter R + 1 cycles
        # after this block's row 0, so the copy into `held` waits latency - 2 cycles behind the capture
        held = Signal.like(self.multipliers)
        capture, multipliers = self.capture, self.multipliers
        for stage in range(OutputLane.latency - 2):
            staged, capture_later = Signal.like(multipliers, name=f"staged_multipliers{stage}"), Signal(name=f"capture{stage}")
            with m.If(capture):
                m.d.sync += staged.eq(multipliers)
            m.d.sync += capture_later.eq(capture)
            capture, multipliers = capture_later, staged
        with m.If(capture):
            m.d.sync += held.eq(multipliers)
        block_end = self.valid & self.last_row
        emit = block_end & self.last_block & self.requantize
        m.d.comb += [total_read.addr.eq(self.n_block), total_write.addr.eq(self.n_block), total_write.en.eq(block_end)]
        # emit: the totals and multipliers are registered, the multiply follows a cycle later (in one stage
        # behind the sums' adders it was the slowest path of the accelerator)
        multiplying, write_block = Signal(), Signal.like(self.write_block)
        m.d.sync += [multiplying.eq(emit), write_block.eq(self.n_block),
                     self.write.eq(multiplying), self.write_block.eq(write_block)]
        for column in range(cfg.cols):
            block_sum = Signal(unsigned(width), name=f"block_sum{column}")
            running = Signal(unsigned(width), name=f"running{column}")
            total = Signal(unsigned(width), name=f"total{column}")
            value = Mux(self.counted, self.values[column][:value_bits], 0)
            m.d.comb += [running.eq(Mux(self.first_row, 0, block_sum) + value),
                         total.eq(Mux(self.first_block, 0, total_read.data[column]) + running),
                         total_write.data[column].eq(total)]
            with m.If(self.valid):
                m.d.sync += block_sum.eq(running)
            final = Signal(unsigned(width), name=f"pool_total{column}")
            final_multiplier = Signal.like(held[column], name=f"pool_multiplier{column}")
            product = Signal(signed(product_bits), name=f"pool_product{column}")
            shift = Signal(range(product_bits + 1), name=f"pool_shift{column}")
            with m.If(emit):
                m.d.sync += [final.eq(total), final_multiplier.eq(held[column])]
            with m.If(multiplying):
                m.d.sync += [product.eq(final * final_multiplier.mantissa),
                             shift.eq(saturated_shift(m, final_multiplier.shift, product_bits, f"pool_shift_sat{column}"))]
            rounded = round_shift(m, product, shift, f"pool_rounded{column}")
            m.d.comb += self.codes[column].eq(clip_code(rounded, cfg.out_bits, code_max))
        return m
