"""Array-edge units: what a PE kind moves out of the PE so that one copy serves a whole row/column/array.

Units (Amaranth components):

* :class:`PostPrescaler` — the sqrt-2 ROM of a post_shared row: ``a -> {a, post_lut[a]}``.
* :class:`LevelTable` — a level table (LCQ weights, LCQ or APoT activations) written at
  configuration time, with one combinational lookup port per array column (weights) or row
  (activations).
* :class:`ProductTable` — the lcq_product table, written at configuration time and read by
  every PE's own mux.

Per kind, an :class:`ArrayEdges` (``hw.kinds`` picks one) declares which units the array builds,
which host table regions load them, and the numpy model of what reaches the PEs.
"""

from __future__ import annotations

import numpy as np
from amaranth import Module, Shape, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden import spec
from golden.errors import ConfigError, UnsupportedBitsError

from .layout import Region
from .pe import post_act_layout, post_rom, product_table_layout


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
        m.submodules.lut = lut = post_rom(self.datapath)
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


# --------------------------------------------------------------------------- what each kind's edges do


def _table_write_port(region: Region) -> str:
    """Array port name of a table region's configuration write: ``Region.WEIGHT_TABLE`` -> ``weight_table_write``."""
    return f"{region.name.lower()}_write"


class ArrayEdges:
    """The array edges of a PE kind, declared once: the RTL, the host tables, and what the PEs receive.

    Codes enter the array one per row (activations) and per column (weights) after the skew
    registers; a kind's edges turn them into the PE inputs.  The base passes codes through.
    """

    #: every PE reads one array-wide table (a wide ``table`` input)
    shares_table = False

    def check(self, datapath: spec.DatapathConfig) -> None:
        """Raise for a datapath this kind cannot build (beyond what golden.spec checks)."""

    def table_regions(self, datapath: spec.DatapathConfig) -> dict[Region, tuple[int, object]]:
        """Host-written tables: ``{region: (entries, entry shape)}``, in host write order."""
        return {}

    def write_ports(self, datapath: spec.DatapathConfig) -> dict[str, tuple[Region, wiring.Signature]]:
        """The array's configuration-time table write ports: ``{port name: (region, signature)}``."""
        return {_table_write_port(region): (region, table_write_signature(depth, shape))
                for region, (depth, shape) in self.table_regions(datapath).items()}

    def table_words(self, datapath: spec.DatapathConfig, weight_table, act_table) -> dict[Region, np.ndarray]:
        """The words the host writes into each table region, in address order (two's complement masked)."""
        return {}

    def elaborate(self, m: Module, array, rows: list, cols: list, row_inputs: list, col_inputs: list):
        """Drive ``row_inputs``/``col_inputs`` (what PE column 0 / row 0 receive) from the skewed codes.

        ``array`` is the :class:`hw.array.MacArray` (its table write ports); returns the shared
        table every PE reads, or None.
        """
        m.d.comb += [col_inputs[j].eq(cols[j]) for j in range(len(cols))]
        self._rows(m, array, rows, row_inputs)
        return None

    def _rows(self, m: Module, array, rows: list, row_inputs: list) -> None:
        m.d.comb += [row_inputs[i].eq(rows[i]) for i in range(len(rows))]

    def pe_inputs(self, datapath: spec.DatapathConfig, weight_codes, act_codes, weight_table=None,
                  act_table=None) -> dict[str, np.ndarray | int]:
        """What a PE receives for each (weight code, activation code) pair: ``{"weight", "act"[, "table"]}``.

        The numpy model of :meth:`elaborate`; PE tests (Amaranth and the RTL bank) feed it.
        Weights are code words (two's complement bit patterns for int).
        """
        weight = np.asarray(weight_codes, dtype=np.int64) & (datapath.weight.num_codes - 1)
        return {"weight": weight, "act": np.asarray(act_codes, dtype=np.int64)}

    def pe_test_tables(self, datapath: spec.DatapathConfig, rng: np.random.Generator) -> list[tuple]:
        """``(weight table, act table)`` pairs under which an exhaustive PE test runs every code pair."""
        return [(None, None)]


class PrescaledRows(ArrayEdges):
    """post_shared: one :class:`PostPrescaler` per row sends ``{a, post_lut[a]}`` along the row."""

    def _rows(self, m: Module, array, rows: list, row_inputs: list) -> None:
        for i, code in enumerate(rows):
            m.submodules[f"prescaler{i}"] = prescaler = PostPrescaler(array.cfg.datapath)
            m.d.comb += [prescaler.code.eq(code), row_inputs[i].eq(prescaler.act)]

    def pe_inputs(self, datapath, weight_codes, act_codes, weight_table=None, act_table=None):
        inputs = super().pe_inputs(datapath, weight_codes, act_codes)
        inputs["act"] = inputs["act"] | datapath.post_lut[inputs["act"]] << datapath.act_bits  # value in the low bits
        return inputs


class DecodedRows(ArrayEdges):
    """apot: one :class:`LevelTable` read per row turns activation codes into values; weight codes pass through."""

    def check(self, datapath):
        if datapath.act_format != "table":
            raise ConfigError(f"{datapath.scheme} PEs with row-decoded activations need act_format='table'")

    def table_regions(self, datapath):
        return {Region.ACT_TABLE: (datapath.num_act_codes, unsigned(datapath.act_level_bits))}

    def table_words(self, datapath, weight_table, act_table):
        return {Region.ACT_TABLE: np.asarray(act_table, dtype=np.int64)}

    def _rows(self, m, array, rows, row_inputs):
        m.submodules.act_levels = act_levels = LevelTable(array.cfg.datapath.num_act_codes, row_inputs[0].shape(), len(rows))
        wiring.connect(m, wiring.flipped(array.act_table_write), act_levels.write)
        m.d.comb += [act_levels.codes[i].eq(rows[i]) for i in range(len(rows))]
        m.d.comb += [row_inputs[i].eq(act_levels.values[i]) for i in range(len(rows))]

    def pe_inputs(self, datapath, weight_codes, act_codes, weight_table=None, act_table=None):
        inputs = super().pe_inputs(datapath, weight_codes, act_codes)
        inputs["act"] = spec.act_values(datapath, act_codes, act_table)
        return inputs

    def pe_test_tables(self, datapath, rng):
        """Extreme and random tables, then tables whose consecutive entries walk every legal value."""
        return [datapath.extreme_tables(), datapath.random_tables(rng)] + [(None, table) for table in _act_sweep(datapath)]


def _act_sweep(datapath: spec.DatapathConfig) -> list[np.ndarray]:
    """Legal activation tables (entry 0 = 0) whose other entries together hold every value ``1 .. act_value_max``."""
    values, per = np.arange(1, datapath.act_value_max + 1), datapath.num_act_codes - 1
    return [np.concatenate([[0], np.sort(np.resize(values[i : i + per], per))]) for i in range(0, values.size, per)]


class DecodedLevels(DecodedRows):
    """lcq: one :class:`LevelTable` read per column (weights) and per row (activations); levels travel."""

    def table_regions(self, datapath):
        return {Region.WEIGHT_TABLE: (datapath.weight.num_codes, signed(datapath.weight.level_bits))} | super().table_regions(datapath)

    def table_words(self, datapath, weight_table, act_table):
        weight_table = np.asarray(weight_table, dtype=np.int64)
        return ({Region.WEIGHT_TABLE: weight_table & ((1 << datapath.weight.level_bits) - 1)}
                | super().table_words(datapath, weight_table, act_table))

    def elaborate(self, m, array, rows, cols, row_inputs, col_inputs):
        datapath = array.cfg.datapath
        self._rows(m, array, rows, row_inputs)
        m.submodules.weight_levels = weight_levels = LevelTable(datapath.weight.num_codes, col_inputs[0].shape(), len(cols))
        wiring.connect(m, wiring.flipped(array.weight_table_write), weight_levels.write)
        m.d.comb += [weight_levels.codes[j].eq(cols[j]) for j in range(len(cols))]
        m.d.comb += [col_inputs[j].eq(weight_levels.values[j]) for j in range(len(cols))]
        return None

    def pe_inputs(self, datapath, weight_codes, act_codes, weight_table=None, act_table=None):
        return {"weight": datapath.weight.check_table(weight_table)[np.asarray(weight_codes)],
                "act": spec.act_values(datapath, act_codes, act_table)}

    def pe_test_tables(self, datapath, rng):
        """Extreme and random tables, then tables whose consecutive entries walk every legal level value."""
        lo, hi = datapath.weight.level_range
        weight_levels = np.arange(lo, hi + 1)
        w_per = datapath.weight.num_codes
        w_tables = [np.resize(weight_levels[i : i + w_per], w_per) for i in range(0, weight_levels.size, w_per)]
        a_tables = _act_sweep(datapath)
        count = max(len(w_tables), len(a_tables))
        sweep = [(np.sort(w_tables[i % len(w_tables)]), a_tables[i % len(a_tables)]) for i in range(count)]
        return [datapath.extreme_tables(), datapath.random_tables(rng)] + sweep


#: A product table holds 2^(weight code bits + activation bits) entries; beyond this it is never the cheap option.
MAX_PRODUCT_TABLE_BITS = 8


class SharedProductTable(ArrayEdges):
    """lcq_product: codes pass through; one :class:`ProductTable` per array, every PE muxes from it."""

    shares_table = True

    def check(self, datapath):
        bits = datapath.weight.code_bits + datapath.act_bits
        if bits > MAX_PRODUCT_TABLE_BITS:
            raise UnsupportedBitsError(
                f"a shared product table needs 2^{bits} entries for {datapath.weight.bits}-bit weights and "
                f"{datapath.act_bits}-bit activations; at most 2^{MAX_PRODUCT_TABLE_BITS} is supported "
                "(decode the levels at the edges instead)"
            )

    def table_regions(self, datapath):
        layout = product_table_layout(datapath)
        return {Region.PRODUCT_TABLE: (layout.length, layout.elem_shape)}

    def table_words(self, datapath, weight_table, act_table):
        products = spec.product_table(datapath, weight_table, act_table).ravel()
        return {Region.PRODUCT_TABLE: products & ((1 << datapath.product_bits()) - 1)}

    def elaborate(self, m, array, rows, cols, row_inputs, col_inputs):
        super().elaborate(m, array, rows, cols, row_inputs, col_inputs)
        m.submodules.product_table = product_table = ProductTable(array.cfg.datapath)
        wiring.connect(m, wiring.flipped(array.product_table_write), product_table.write)
        return product_table.table

    def pe_inputs(self, datapath, weight_codes, act_codes, weight_table=None, act_table=None):
        inputs = super().pe_inputs(datapath, weight_codes, act_codes)
        words = self.table_words(datapath, weight_table, act_table)[Region.PRODUCT_TABLE]
        bits = datapath.product_bits()
        inputs["table"] = sum(int(word) << (index * bits) for index, word in enumerate(words))
        return inputs

    def pe_test_tables(self, datapath, rng):
        return [datapath.extreme_tables(), datapath.random_tables(rng)]
