"""Processing elements: one combinational product unit per PE kind, each equal to ``spec.pe_product``.

Every PE has ``weight`` and ``act`` inputs — in the form that travels through the array, after
the row/column edge units of :mod:`hw.edge` — and a signed ``product`` output of
``spec.DatapathConfig.product_bits()`` bits.

=============  =============================  ===============================  ====================================
kind           weight input                   act input                        datapath
=============  =============================  ===============================  ====================================
int            two's complement code          code                             multiplier
pot            sign | exponent code           code                             barrel shifter of ``a << F``
post_lut       sign | exponent code           code                             own sqrt-2 ROM + mux + shifter
post_shared    sign | exponent code           ``{value, scaled}`` (row edge)   mux + shifter, the ROM sits at the row edge
lcq            level (column-edge decoded)    level (row-edge decoded)         multiplier on level values
lcq_product    code                           code                             mux over a shared product table
apot           sign | term-field code         value (row-edge decoded)         shift-add of ``a``, one term per field
=============  =============================  ===============================  ====================================

Shift kinds follow ``golden.spec``'s product definition: pot ``(a << F) >> e`` with ``F <= m``
(no product bit is always zero); post with ``F >= H`` is ``Mux(e[0], rom[a], a << G) << s``,
``s = (m - e) >> 1``: one left shifter after a mux on ``e``'s low bit, which is all the shared
variant keeps in the PE (7/8-bit post truncates instead, ``Mux(e[0], rom[a], a << F) >> (e >> 1)``).
The sign is applied after the magnitude path.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from golden import spec


def post_rom_shape(datapath: spec.DatapathConfig) -> Shape:
    """One sqrt-2 ROM entry: as wide as the largest ``spec.DatapathConfig.post_lut`` entry."""
    return unsigned(int(datapath.post_lut.max()).bit_length())


def post_rom(datapath: spec.DatapathConfig) -> memory.Memory:
    """The constant sqrt-2 ROM ``a -> post_lut[a]`` (read it with a ``comb`` port)."""
    return memory.Memory(shape=post_rom_shape(datapath), depth=datapath.num_act_codes,
                         init=[int(v) for v in datapath.post_lut])


def post_act_layout(datapath: spec.DatapathConfig) -> data.StructLayout:
    """What travels along a row of post_shared PEs: the code and its pre-scaled sqrt-2 value."""
    return data.StructLayout({"value": unsigned(datapath.act_bits), "scaled": post_rom_shape(datapath)})


def product_table_layout(datapath: spec.DatapathConfig) -> data.ArrayLayout:
    """A full product table, entry ``w_index << act_bits | act_code`` (``spec.product_table`` flattened)."""
    entries = 1 << (datapath.weight.code_bits + datapath.act_bits)
    return data.ArrayLayout(signed(datapath.product_bits()), entries)


class ProcessingElement(wiring.Component):
    """Base of the PE kinds: holds the validated datapath (``hw.kinds.PeKind.datapath``) and the travelling shapes."""

    def __init__(self, datapath: spec.DatapathConfig, weight_shape, act_shape, extra: dict | None = None):
        self.datapath = datapath
        self.weight_shape = weight_shape
        self.act_shape = act_shape
        members = {"weight": In(weight_shape), "act": In(act_shape), "product": Out(signed(datapath.product_bits()))}
        super().__init__(members | (extra or {}))


class IntPE(ProcessingElement):
    """Signed ``b_w``-bit weight times unsigned ``b_a``-bit activation."""

    def __init__(self, datapath: spec.DatapathConfig):
        super().__init__(datapath, signed(datapath.weight.bits), unsigned(datapath.act_bits))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.product.eq(self.weight * self.act)
        return m


class _ShiftPE(ProcessingElement):
    """pot/post: decode the sign|exponent code, take the kind's shifted magnitude, apply sign and zero."""

    def __init__(self, datapath: spec.DatapathConfig):
        super().__init__(datapath, unsigned(datapath.weight.code_bits), self._act_shape(datapath))

    def _act_shape(self, datapath: spec.DatapathConfig):
        return unsigned(datapath.act_bits)

    @staticmethod
    def _shifted_left(value, bits: int):
        """``value << bits`` as a plain concatenation: no logic at all."""
        return Cat(Const(0, bits), value) if bits else value

    def _magnitude(self, m: Module, exponent):
        """``|a * base^-e|`` for a non-zero weight of exponent ``e``."""
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        weight = self.datapath.weight
        exponent = self.weight[: weight.exponent_bits]
        negative = self.weight[weight.exponent_bits]
        is_zero = exponent > weight.max_exponent
        magnitude = self._magnitude(m, exponent)
        m.d.comb += self.product.eq(Mux(is_zero, 0, Mux(negative, -magnitude, magnitude)))
        return m


class PotPE(_ShiftPE):
    """``+-((a << F) >> e)``: a barrel shifter, no multiplier (``F <= m``: bit 0 is ``a``'s at ``e = F``)."""

    def _magnitude(self, m: Module, exponent):
        return self._shifted_left(self.act, self.datapath.frac_bits) >> exponent


class _PostPE(_ShiftPE):
    """POST: the mux between the sqrt-2 ROM entry and ``a``, then one shifter (module docstring)."""

    def _rom_entry(self, m: Module):
        raise NotImplementedError

    def _code(self):
        return self.act

    def _magnitude(self, m: Module, exponent):
        datapath, rom = self.datapath, self._rom_entry(m)
        if not datapath.left_shifts:
            return Mux(exponent[0], rom, self._shifted_left(self._code(), datapath.frac_bits)) >> exponent[1:]
        max_exponent = datapath.weight.max_exponent
        shift = Signal(range(max_exponent // 2 + 1))
        m.d.comb += shift.eq((max_exponent - exponent)[1:])  # wraps for zero codes, which are masked
        return Mux(exponent[0], rom, self._shifted_left(self._code(), datapath.guard_bits)) << shift


class PostLutPE(_PostPE):
    """POST with its own sqrt-2 ROM (``spec.DatapathConfig.post_lut``) inside the PE."""

    def _rom_entry(self, m: Module):
        m.submodules.lut = lut = post_rom(self.datapath)
        read = lut.read_port(domain="comb")
        m.d.comb += read.addr.eq(self.act)
        return read.data


class PostSharedPE(_PostPE):
    """POST whose activation arrives pre-scaled from the row edge (:class:`hw.edge.PostPrescaler`): mux + shifter."""

    def _act_shape(self, datapath: spec.DatapathConfig):
        return post_act_layout(datapath)

    def _rom_entry(self, m: Module):
        return self.act.scaled

    def _code(self):
        return self.act.value


class LcqPE(ProcessingElement):
    """Integer multiplier on LCQ level values; the codes were decoded once at the array edges.

    In the output-stationary array the weight code of column ``j`` is decoded by one level-table
    read at the top of the column and the activation code of row ``i`` at its left end, so
    ``R + C`` table reads per cycle serve ``R * C`` PEs instead of two table copies in every PE.
    """

    def __init__(self, datapath: spec.DatapathConfig):
        super().__init__(datapath, signed(datapath.weight.level_bits), unsigned(datapath.act_level_bits))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.product.eq(self.weight * self.act)
        return m


class LcqProductPE(ProcessingElement):
    """Product-table PE: ``table[w_code << b_a | a_code]``, the table shared by the array (``table`` input)."""

    def __init__(self, datapath: spec.DatapathConfig):
        super().__init__(datapath, unsigned(datapath.weight.bits), unsigned(datapath.act_bits),
                         {"table": In(product_table_layout(datapath))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.product.eq(self.table[Cat(self.act, self.weight)])
        return m


class ApotPE(ProcessingElement):
    """APoT shift-add: ``+-sum_i (a << s_i)``, one shifted copy of ``a`` per term field, no multiplier.

    Each field of the ``sign | fields`` code (:mod:`golden.apot_format`) selects one of its set's
    few constant shifts or zero, so a term is a mux over pre-wired shifts of ``a``; the terms'
    sum is one small adder per extra term and the sign is applied last.  The activation is the
    value, decoded once per row at the array edge (:class:`hw.edge.DecodedRows`): APoT
    activation values are sums of powers of two too, and feeding codes would make every PE add
    ``T_w * T_a`` one-hot partial products (and keep a decoder per PE) instead of ``T_w`` shifted
    values.  Combinational, like every PE.
    """

    def __init__(self, datapath: spec.DatapathConfig):
        act_bits = datapath.act_level_bits if datapath.act_format == "table" else datapath.act_bits
        super().__init__(datapath, unsigned(datapath.weight.code_bits), unsigned(act_bits))

    def elaborate(self, platform):
        m = Module()
        terms = self.datapath.weight.apot
        a_max = self.datapath.act_value_max
        parts = []
        for index, (offset, width, shifts) in enumerate(zip(terms.field_offsets, terms.field_widths, terms.field_shifts,
                                                            strict=True)):
            part = Signal(range((a_max << max(shifts)) + 1), name=f"term{index}")
            with m.Switch(self.weight[offset : offset + width]):
                for field, shift in enumerate(shifts, 1):
                    with m.Case(field):
                        m.d.comb += part.eq(self.act << shift)
            parts.append(part)  # field 0: the zero term, part keeps its reset value 0
        magnitude = Signal(range(terms.max_magnitude * a_max + 1))
        m.d.comb += magnitude.eq(sum(parts))
        negative = self.weight[terms.magnitude_bits]
        m.d.comb += self.product.eq(Mux(negative, -magnitude, magnitude))
        return m
