"""Array-edge units: what a PE kind moves out of the PE so that one copy serves a whole row/column/array.

* :class:`PostPrescaler` — the sqrt-2 ROM of a post_shared row: ``a -> {a, post_lut[a]}``.
* :class:`LevelTable` — an LCQ level table (weights or activations) written at configuration
  time, with one combinational lookup port per array column (weights) or row (activations).
* :class:`ProductTable` — the lcq_product table, written at configuration time and read by
  every PE's own mux.
"""

from __future__ import annotations

from amaranth import Module, Shape, Signal, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden import spec

from .pe import post_act_layout, product_table_layout


def table_write_signature(depth: int, shape) -> wiring.Signature:
    """Configuration-time write into a table: ``en``, ``addr``, ``data`` (driven by the host bus)."""
    return wiring.Signature({"en": Out(1), "addr": Out(ceil_log2(depth)), "data": Out(shape)})


class PostPrescaler(wiring.Component):
    """``code -> {value: code, scaled: post_lut[code]}`` for one post_shared row (a constant ROM)."""

    def __init__(self, datapath: spec.DatapathConfig):
        self.datapath = datapath
        super().__init__({"code": In(unsigned(datapath.act_bits)), "act": Out(post_act_layout(datapath))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.lut = lut = memory.Memory(
            shape=unsigned(self.datapath.act_bits + self.datapath.frac_bits),
            depth=self.datapath.num_act_codes,
            init=[int(v) for v in self.datapath.post_lut],
        )
        read = lut.read_port(domain="comb")
        m.d.comb += [read.addr.eq(self.code), self.act.value.eq(self.code), self.act.scaled.eq(read.data)]
        return m


class LevelTable(wiring.Component):
    """A ``depth``-entry table of ``shape`` values: one write port, ``lookups`` combinational read ports.

    ``codes[i] -> values[i] = table[codes[i]]``.  Contents reset to zero; the host writes the
    per-layer table (``spec.WeightFormat.check_table`` / ``DatapathConfig.check_act_table``).
    """

    def __init__(self, depth: int, shape, lookups: int):
        self.depth, self.shape, self.lookups = depth, shape, lookups
        super().__init__({
            "write": In(table_write_signature(depth, shape)),
            "codes": In(data.ArrayLayout(unsigned(ceil_log2(depth)), lookups)),
            "values": Out(data.ArrayLayout(shape, lookups)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.table = table = memory.Memory(shape=self.shape, depth=self.depth, init=[])
        write = table.write_port()
        m.d.comb += [write.en.eq(self.write.en), write.addr.eq(self.write.addr), write.data.eq(self.write.data)]
        for index in range(self.lookups):
            read = table.read_port(domain="comb")
            m.d.comb += [read.addr.eq(self.codes[index]), self.values[index].eq(read.data)]
        return m


class ProductTable(wiring.Component):
    """The lcq_product table as registers: written entry by entry, all entries visible on ``table``.

    Every PE selects its product from ``table`` with its own mux (:class:`hw.pe.LcqProductPE`), so
    the storage exists once per array while the read logic is per PE.
    """

    def __init__(self, datapath: spec.DatapathConfig):
        self.layout = product_table_layout(datapath)
        super().__init__({
            "write": In(table_write_signature(self.layout.length, self.layout.elem_shape)),
            "table": Out(self.layout),
        })

    def elaborate(self, platform):
        m = Module()
        entries = Signal(self.layout)
        width = Shape.cast(self.layout.elem_shape).width
        with m.If(self.write.en):
            m.d.sync += entries.as_value().word_select(self.write.addr, width).eq(self.write.data)
        m.d.comb += self.table.eq(entries)
        return m
