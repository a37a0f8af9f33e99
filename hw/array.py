"""The R x C output-stationary systolic MAC array (any PE kind), streaming block after block.

Dataflow (output-stationary): PE ``(i, j)`` owns output ``(i, j)`` of an ``R x C`` output block
and accumulates it over the whole reduction ``k = 0 .. K-1``.  Each cycle the array takes one
activation column ``A[0..R-1, k]`` and one weight row ``W[k, 0..C-1]``; row ``i`` is delayed by
``i`` cycles and column ``j`` by ``j`` (triangular skew registers), activations then travel right
and weights down one PE per cycle, so ``A[i, k]`` and ``W[k, j]`` meet in PE ``(i, j)`` exactly
``i + j`` cycles after they entered.  Chosen over weight-stationary because the full sum
stays in the PE: the requantizer sees finished accumulators (no partial-sum buffer, no
read-modify-write), and the reduction length is limited only by the accumulator width, which
:mod:`golden.spec` bounds.

**Streaming.**  Blocks follow each other with no bubble: ``first`` marks the cycle that carries
``k = 0`` of a block and travels with the activations (one flag bit per PE).  When it reaches a
PE, the PE moves its finished sum into its *shadow* register and starts the new block with this
cycle's product, so the next block's operands enter right behind the previous block's.  A flag
entering at cycle ``S`` has finished row ``i`` everywhere by cycle ``S + C + i``; ``acc_row``
shows shadow row ``drain_row``, so the controller drains row ``i`` at ``S + C + i`` while the
array computes.  A shadow holds for one block period ``P``, so blocks last at least
``max(R + 1, C)`` cycles (:func:`hw.cycles.block_period`); a run ends with one more flag and
zero operands, which finishes its last block.

Zero padding replaces valid bits: the controller feeds activation code 0 (and weight code 0)
outside ``0 <= k < K``, and every PE kind's product with activation 0 is 0 (LCQ activation tables
map code 0 to 0, ``post_lut[0] = 0``).

Edges: post_shared rows carry ``{a, post_lut[a]}`` from one :class:`~hw.edge.PostPrescaler` per
row; lcq decodes weight codes once per column and activation codes once per row
(:class:`~hw.edge.LevelTable`), so levels travel; lcq_product PEs index one shared
:class:`~hw.edge.ProductTable`.  Decoding sits after the skew registers so those hold narrow codes.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import ArrayConfig
from .pe import ProcessingElement


class MacCell(wiring.Component):
    """One PE with its pass-through registers, ``acc_width``-bit accumulator and shadow register.

    ``first_in`` (the cycle's operands are ``k = 0`` of a new block): ``shadow <= acc`` and
    ``acc <= product``; otherwise ``acc <= acc + product``.  The flag passes on with the activation.
    """

    def __init__(self, pe: ProcessingElement, acc_width: int):
        self.pe = pe
        members = {
            "act_in": In(pe.act_shape),
            "weight_in": In(pe.weight_shape),
            "first_in": In(1),
            "act_out": Out(pe.act_shape),
            "weight_out": Out(pe.weight_shape),
            "first_out": Out(1),
            "shadow": Out(signed(acc_width)),
        }
        if "table" in pe.signature.members:
            members["table"] = In(pe.signature.members["table"].shape)
        self.acc_width = acc_width
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.pe = pe = self.pe
        m.d.comb += [pe.act.eq(self.act_in), pe.weight.eq(self.weight_in)]
        if "table" in self.signature.members:
            m.d.comb += pe.table.eq(self.table)
        m.d.sync += [self.act_out.eq(self.act_in), self.weight_out.eq(self.weight_in), self.first_out.eq(self.first_in)]
        acc = Signal(signed(self.acc_width))
        with m.If(self.first_in):
            m.d.sync += [self.shadow.eq(acc), acc.eq(pe.product)]
        with m.Else():
            m.d.sync += acc.eq(acc + pe.product)
        return m


class MacArray(wiring.Component):
    """Skew registers, edge decoders and the ``rows x cols`` grid of :class:`MacCell`.

    Inputs per cycle: ``act_codes`` (one activation code per row, for the same ``k``),
    ``weight_codes`` (one weight code word per column) and ``first`` (they are ``k = 0`` of a
    block).  ``acc_row`` shows the finished sums (shadow registers) of array row ``drain_row``:
    one ``R:1`` select per column, so no ``R*C``-accumulator bus leaves
    the array (an event-driven simulator rebuilds such a bus whenever any one accumulator
    changes; see hw/README.md).  Kinds with tables add their write ports (``ArrayEdges.write_ports``).
    """

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        datapath = cfg.datapath
        members = {
            "act_codes": In(data.ArrayLayout(unsigned(cfg.act_bits), cfg.rows)),
            "weight_codes": In(data.ArrayLayout(unsigned(cfg.weight_code_bits), cfg.cols)),
            "first": In(1),
            "drain_row": In(range(cfg.rows)),
            "acc_row": Out(data.ArrayLayout(signed(cfg.accumulator_width), cfg.cols)),
        }
        members |= {name: In(signature) for name, (_, signature) in cfg.kind.edges.write_ports(datapath).items()}
        super().__init__(members)

    @staticmethod
    def _skewed(m: Module, name: str, value, delay: int):
        """``value`` delayed by ``delay`` registers."""
        for stage in range(delay):
            delayed = Signal.like(value, name=f"{name}_skew{stage}")
            m.d.sync += delayed.eq(value)
            value = delayed
        return value

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        rows = [self._skewed(m, f"act{i}", self.act_codes[i], i) for i in range(cfg.rows)]
        firsts = [self.first]  # one delay chain tapped per row: row i sees the flag i cycles late
        for i in range(1, cfg.rows):
            firsts.append(self._skewed(m, f"first{i}", firsts[-1], 1))
        cols = [self._skewed(m, f"weight{j}", self.weight_codes[j], j) for j in range(cfg.cols)]
        cells = [[cfg.kind.pe(cfg.datapath) for _ in range(cfg.cols)] for _ in range(cfg.rows)]
        act_shape, weight_shape = cells[0][0].act_shape, cells[0][0].weight_shape

        row_inputs = [Signal(act_shape, name=f"row{i}_act") for i in range(cfg.rows)]
        col_inputs = [Signal(weight_shape, name=f"col{j}_weight") for j in range(cfg.cols)]
        table = cfg.kind.edges.elaborate(m, self, rows, cols, row_inputs, col_inputs)

        for i in range(cfg.rows):
            for j in range(cfg.cols):
                m.submodules[f"cell_{i}_{j}"] = cell = MacCell(cells[i][j], cfg.accumulator_width)
                left = row_inputs[i] if j == 0 else m.submodules[f"cell_{i}_{j - 1}"].act_out
                above = col_inputs[j] if i == 0 else m.submodules[f"cell_{i - 1}_{j}"].weight_out
                first = firsts[i] if j == 0 else m.submodules[f"cell_{i}_{j - 1}"].first_out
                m.d.comb += [cell.act_in.eq(left), cell.weight_in.eq(above), cell.first_in.eq(first)]
                if table is not None:
                    m.d.comb += cell.table.eq(table)
        for j in range(cfg.cols):
            shadows = [m.submodules[f"cell_{i}_{j}"].shadow for i in range(cfg.rows)]
            m.d.comb += self.acc_row[j].eq(_select(shadows, self.drain_row))
        return m


def _select(words: list, index):
    """``words[index]`` as a tree of 2:1 muxes on ``index``'s bits (``index < len(words)``).

    Not an Array (a case statement: Yosys writes an ``always @*`` block, which Icarus does not
    evaluate at time 0) and not ``word_select`` (a shift by ``index * width``: for an even,
    non-power-of-two width Yosys 0.23 splits the constant multiply, misses its shift-by-multiple
    pattern and builds a general barrel shifter -- hundreds of iCE40 LUTs for a 4-row array).
    """
    level = list(words)
    for bit in range(len(index)):
        level = [Mux(index[bit], level[k + 1], level[k]) if k + 1 < len(level) else level[k]
                 for k in range(0, len(level), 2)]
    return level[0]
