"""The accelerator top: buffers, GEMM controller, MAC array, requantizer, output buffer.

One run computes ``OUT = requant(A @ W)`` for ``A`` (``M x K`` activation codes) and ``W``
(``K x N`` weight codes) held in on-chip buffers, block by block: ``m_blocks = ceil(M / R)`` times
``n_blocks = ceil(N / C)`` output blocks of ``R x C``, each over the full ``K`` (see
:mod:`hw.array` for the dataflow).  The host interface is :class:`hw.bus.HostBus`
(documented in ``hw/README.md``), driven by :func:`hw.bus.gemm_steps` / :func:`hw.bus.program_steps`; :mod:`hw.host` packs
every word, :mod:`hw.cycles` gives the exact cycle count.

Controller: two sides that run at once (``mb`` outer, ``nb`` inner on both).

* **Feed**, one block right behind the other, ``P = max(K, R + 1, C)`` cycles each
  (:func:`hw.cycles.block_period`): at step ``t`` of a block read activation word
  ``act_base + t // L`` and weight word ``w_base + t // L`` (``L = host_lanes``; one-cycle
  synchronous reads), and present lane ``t % L`` to the array one cycle later (zeros for
  ``t >= K``), with ``first`` on the ``k = 0`` cycle.  After the last block, ``CLOSE`` sends one
  more ``first`` (with zero operands) that finishes it.
* **Drain**, ``C`` cycles after every ``first`` but the run's opening one: rows ``0 .. R-1`` of the
  shadow registers go to the ``C`` requantizer lanes, one per cycle, with the drained block's
  channel parameters (block ``nb``) and row multipliers (block ``mb``), read the cycle before;
  the results are written to its output word three cycles later.
* When the last block's last row has drained: three ``FLUSH`` cycles for the requantizer, then ``DONE``
  (a pooled run adds ``POOL`` for the pool unit's requantizer).

Buffers: every buffer the next run needs while this one runs (activations, weights, channel
parameters, row multipliers, residual operands, outputs) has two banks, one memory each with the bank as the
address LSB.  A run reads and writes bank ``tile.bank``; while it is busy the host may write
the other bank and read the other output bank.  A write into the run's bank (or into a table
of the array, which has one bank) is dropped and sets ``wr_refused`` until the next start.

Output stage (:mod:`hw.output_stage`): the drained row goes through the ``C`` output lanes with
the block's channel parameters, its residual operands (the ``RESIDUAL`` buffer, one word per
output block, read with the channel parameters) and, in a held run, the values the output
buffer holds for the block (a second read port).  Both are banked like the output buffer: a run
reads ``tile.bank``'s residual word and held values, ``Cat(tile.bank, block)``.  With run-time
output widths, ``tile.out_bits`` is decoded at the run's start into a register holding the run's
largest code, which the lanes and the pool unit share.  With ``global_pool`` the lanes' results
also feed the :class:`~hw.output_stage.GlobalPool` unit, whose sums (one bank: the last pooled
run's) the host reads under ``rd_addr``'s top bit.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, wiring
from amaranth.utils import ceil_log2

from .array import MacArray
from .bus import HostBus
from .config import ArrayConfig
from .cycles import min_block_period
from .layout import (
    BANKED_REGIONS,
    BANKS,
    OutputMode,
    Region,
    act_word_layout,
    channel_layout,
    multiplier_layout,
    out_word_layout,
    residual_row_layout,
    slot_bits,
    tile_layout,
    weight_word_layout,
)
from .output_stage import GlobalPool, OutputLane

#: the memories that hold data between runs (submodule names below): SRAM macros in the standard-cell flow
#: (hw.stdcell, hw.sram), block RAM on the FPGAs; the array's small tables stay logic
BUFFERS = ("act_buffer", "weight_buffer", "channel_params", "row_multipliers", "residuals", "out_buffer")


class Accelerator(wiring.Component):
    """Host-programmable GEMM accelerator for one :class:`~hw.config.ArrayConfig`."""

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        super().__init__(HostBus(cfg))

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        lane_bits = ceil_log2(cfg.host_lanes)
        rows, cols = cfg.rows, cfg.cols
        # A write is refused while busy when it targets the bank the run uses or an (unbanked) table.
        tile = Signal(tile_layout(cfg))
        banked = Signal()
        m.d.comb += banked.eq(Cat([self.wr_region == region for region in BANKED_REGIONS]).any())
        in_use = Signal()
        m.d.comb += in_use.eq(self.busy & (~banked | (self.wr_bank == tile.bank)))
        writing = Signal()
        m.d.comb += writing.eq(self.wr_en & ~in_use)
        with m.If(self.wr_en & in_use):
            m.d.sync += self.wr_refused.eq(1)

        def region_write(region: Region):
            return writing & (self.wr_region == region)

        def slotted_write(port, region: Region, slots: int, word_bits: int) -> None:
            """A write of one slot of a multi-slot word: address = word << slot_bits | slot, in bank wr_bank."""
            slot = self.wr_addr[: slot_bits(slots)]
            m.d.comb += [
                port.addr.eq(Cat(self.wr_bank, self.wr_addr[slot_bits(slots):])),
                port.en.eq(Mux(region_write(region), Const(1, slots) << slot, 0)),
                port.data.eq(Cat([self.wr_data[:word_bits]] * slots)),
            ]

        # ---- buffers: BANKS banks each, the bank the address LSB (no unused entries) -------------
        m.submodules.act_buffer = act_buffer = memory.Memory(
            shape=act_word_layout(cfg), depth=BANKS * cfg.act_depth, init=[])
        m.submodules.weight_buffer = weight_buffer = memory.Memory(
            shape=weight_word_layout(cfg), depth=BANKS * cfg.weight_depth, init=[])
        for buffer, region in ((act_buffer, Region.ACT), (weight_buffer, Region.WEIGHT)):
            write = buffer.write_port()
            m.d.comb += [write.en.eq(region_write(region)), write.addr.eq(Cat(self.wr_bank, self.wr_addr)),
                         write.data.eq(self.wr_data)]
        act_read, weight_read = act_buffer.read_port(), weight_buffer.read_port()

        channels = channel_layout(cfg)
        m.submodules.channel_params = channel_params = memory.Memory(
            shape=data.ArrayLayout(channels, cols), depth=BANKS * cfg.n_blocks_max, init=[])
        slotted_write(channel_params.write_port(granularity=1), Region.CHANNEL, cols, channels.size)
        channel_read = channel_params.read_port()

        multipliers = multiplier_layout(cfg)
        m.submodules.row_multipliers = row_multipliers = memory.Memory(
            shape=data.ArrayLayout(multipliers, rows), depth=BANKS * cfg.m_blocks_max, init=[])
        slotted_write(row_multipliers.write_port(granularity=1), Region.ROW_MULTIPLIER, rows, multipliers.size)
        row_read = row_multipliers.read_port()

        if cfg.residual_bits:  # residual operands, one word per output block like the output buffer (banked)
            m.submodules.residuals = residuals = memory.Memory(
                shape=data.ArrayLayout(residual_row_layout(cfg), rows), depth=BANKS * cfg.out_depth, init=[])
            slotted_write(residuals.write_port(granularity=1), Region.RESIDUAL, rows, residual_row_layout(cfg).size)
            residual_read = residuals.read_port()

        m.submodules.out_buffer = out_buffer = memory.Memory(
            shape=out_word_layout(cfg), depth=BANKS * cfg.out_depth, init=[])
        out_write = out_buffer.write_port(granularity=1)
        out_read = out_buffer.read_port()
        word_bits = max(ceil_log2(cfg.out_depth), 1)  # rd_addr's output-word bits (with a pool unit one more on top)
        m.d.comb += out_read.addr.eq(Cat(self.rd_bank, self.rd_addr[:word_bits]))
        if cfg.global_pool:  # the drain reads the held values (the ASQ barrier's second pass)
            held_read = out_buffer.read_port()

        # ---- array and its configuration-time tables ------------------------------------------
        m.submodules.array = array = MacArray(cfg)
        for name, (region, _) in cfg.kind.edges.write_ports(cfg.datapath).items():
            port = getattr(array, name)
            m.d.comb += [port.en.eq(region_write(region)), port.addr.eq(self.wr_addr), port.data.eq(self.wr_data)]

        lanes = []
        for column in range(cols):
            m.submodules[f"requant{column}"] = lane = OutputLane(cfg)
            lanes.append(lane)

        # ---- feed: buffer words -> skew -> array, one block right behind the other -------------
        k_words = Signal(range(cfg.k_words_max + 1))
        m.d.comb += k_words.eq((tile.k + cfg.host_lanes - 1) >> lane_bits)
        min_period = min_block_period(cfg)
        period = Signal(range(max(cfg.max_reduction, min_period) + 1))
        m.d.comb += period.eq(Mux(tile.k > min_period, tile.k, min_period))
        feed_step = Signal(range(max(cfg.max_reduction, min_period)))
        m_block = Signal(range(cfg.m_blocks_max + 1))
        n_block = Signal(range(cfg.n_blocks_max + 1))
        act_base = Signal(range(cfg.act_depth + 1))
        weight_base = Signal(range(cfg.weight_depth + 1))
        feeding_k = Signal()  # the buffer words read last cycle hold k < K
        lane = Signal(lane_bits)
        first_next = Signal()  # this cycle's reads are k = 0 of a block (or the run's closing flag)
        first = Signal()  # ... as the array sees them, one cycle later

        m.d.comb += [
            act_read.addr.eq(Cat(tile.bank, act_base + (feed_step >> lane_bits))),
            weight_read.addr.eq(Cat(tile.bank, weight_base + (feed_step >> lane_bits))),
            array.act_codes.eq(Mux(feeding_k, act_read.data[lane], 0)),
            array.weight_codes.eq(Mux(feeding_k, weight_read.data[lane], 0)),
            array.first.eq(first),
        ]
        m.d.sync += [feeding_k.eq(0), lane.eq(feed_step[:lane_bits]), first.eq(first_next)]

        # ---- drain: C cycles after each flag but the run's first, rows 0..R-1 of the finished block
        opening = Signal()  # the run's first flag finishes no block
        finished = Signal()
        m.d.comb += finished.eq(first & ~opening)
        with m.If(first):
            m.d.sync += opening.eq(0)
        delay = [finished]
        for stage in range(cols):
            delayed = Signal(name=f"drain_delay{stage}")
            m.d.sync += delayed.eq(delay[-1])
            delay.append(delayed)
        drain_start, params_read = delay[cols], delay[cols - 1]
        drain_busy = Signal()
        drain_index = Signal(range(rows))
        drain_row = Signal(range(rows))
        draining = Signal()
        m.d.comb += [drain_row.eq(Mux(drain_start, 0, drain_index)), draining.eq(drain_start | drain_busy)]
        with m.If(drain_start):
            m.d.sync += [drain_index.eq(1 % rows), drain_busy.eq(rows > 1)]
        with m.Elif(drain_busy):
            m.d.sync += [drain_index.eq(drain_index + 1), drain_busy.eq(drain_index != rows - 1)]
        # the block being drained: its output word, channel parameters (block nb) and row multipliers (mb)
        drain_block = Signal(range(cfg.out_depth + 1))
        drain_m = Signal(range(cfg.m_blocks_max + 1))
        drain_n = Signal(range(cfg.n_blocks_max + 1))
        last_drain = Signal()
        m.d.comb += [
            channel_read.addr.eq(Cat(tile.bank, drain_n)), row_read.addr.eq(Cat(tile.bank, drain_m)),
            channel_read.en.eq(params_read), row_read.en.eq(params_read),
            last_drain.eq(draining & (drain_row == rows - 1)),
        ]
        if cfg.residual_bits:
            m.d.comb += [residual_read.addr.eq(Cat(tile.bank, drain_block)), residual_read.en.eq(params_read)]
        if cfg.global_pool:
            m.d.comb += [held_read.addr.eq(Cat(tile.bank, drain_block)), held_read.en.eq(params_read)]
        run_drained = Signal()
        m.d.comb += run_drained.eq(last_drain & (drain_m == tile.m_blocks - 1) & (drain_n == tile.n_blocks - 1))
        with m.If(last_drain):
            m.d.sync += drain_block.eq(drain_block + 1)
            with m.If(drain_n == tile.n_blocks - 1):
                m.d.sync += [drain_n.eq(0), drain_m.eq(drain_m + 1)]
            with m.Else():
                m.d.sync += drain_n.eq(drain_n + 1)

        if cfg.run_time_out_bits:  # the run's largest code, 2^out_bits - 1 (bit i set when i < out_bits), a register
            code_max = Signal(cfg.out_bits)

        def begin_run():
            if cfg.run_time_out_bits:
                m.d.sync += code_max.eq(Cat([self.tile.out_bits > i for i in range(cfg.out_bits)]))
            m.d.sync += [tile.eq(self.tile), feed_step.eq(0), m_block.eq(0), n_block.eq(0), act_base.eq(0),
                         weight_base.eq(0), opening.eq(1), drain_block.eq(0), drain_m.eq(0), drain_n.eq(0),
                         self.wr_refused.eq(0)]
            m.next = "FEED"

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    begin_run()
            with m.State("FEED"):
                m.d.comb += first_next.eq(feed_step == 0)
                m.d.sync += [feeding_k.eq(feed_step < tile.k), feed_step.eq(feed_step + 1)]
                with m.If(feed_step == period - 1):
                    m.d.sync += feed_step.eq(0)
                    last_n = n_block == tile.n_blocks - 1
                    with m.If((m_block == tile.m_blocks - 1) & last_n):
                        m.next = "CLOSE"
                    with m.Elif(last_n):
                        m.d.sync += [n_block.eq(0), weight_base.eq(0), m_block.eq(m_block + 1),
                                     act_base.eq(act_base + k_words)]
                    with m.Else():
                        m.d.sync += [n_block.eq(n_block + 1), weight_base.eq(weight_base + k_words)]
            with m.State("CLOSE"):  # the flag that finishes the last block
                m.d.comb += first_next.eq(1)
                m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(run_drained):
                    m.next = "FLUSH0"
            with m.State("FLUSH0"):
                m.next = "FLUSH1"
            with m.State("FLUSH1"):
                m.next = "FLUSH2"
            with m.State("FLUSH2"):
                if cfg.global_pool:  # a pooled run's requantizer follows the lanes (GlobalPool.latency cycles)
                    m.next = "DONE"
                    with m.If(tile.pool):
                        m.next = "POOL0"
                else:
                    m.next = "DONE"
            for stage in range(GlobalPool.latency):
                with m.State(f"POOL{stage}"):
                    m.next = f"POOL{stage + 1}" if stage + 1 < GlobalPool.latency else "DONE"
            with m.State("DONE"):
                with m.If(self.start):
                    begin_run()
        # Driven outside the FSM so Yosys emits continuous assigns: Icarus does not run an FSM's
        # always @* block until the state first changes, so `done` would read X after reset.
        m.d.comb += [self.done.eq(fsm.ongoing("DONE")),
                     self.busy.eq(~fsm.ongoing("IDLE") & ~fsm.ongoing("DONE"))]

        # ---- requantizer lanes -> output buffer ---------------------------------------------------
        m.d.comb += array.drain_row.eq(drain_row)
        pooling = tile.pool if cfg.global_pool else Const(0)
        for column, lane_unit in enumerate(lanes):
            params = channel_read.data[column]
            m.d.comb += [
                lane_unit.valid.eq(draining),
                lane_unit.acc.eq(array.acc_row[column]),
                lane_unit.negate.eq(params.negate),
                lane_unit.bias.eq(params.bias),
                lane_unit.multiplier.eq(Mux(tile.row_multiplier, row_read.data[drain_row], params.multiplier)),
                lane_unit.mode.eq(Mux(pooling, OutputMode.RAW, tile.mode)),  # a pool sums relu(t)
                lane_unit.relu.eq(tile.relu | pooling),
            ]
            if cfg.threshold_bank:
                m.d.comb += lane_unit.thresholds.eq(params.thresholds)
            if cfg.run_time_out_bits:
                m.d.comb += lane_unit.code_max.eq(code_max)
            if cfg.global_pool:
                m.d.comb += [lane_unit.held.eq(held_read.data[drain_row][column]), lane_unit.add_held.eq(tile.held)]
            if cfg.residual_bits:
                m.d.comb += [lane_unit.shortcut.value.eq(residual_read.data[drain_row][column]),
                             lane_unit.shortcut.multiplier.eq(params.shortcut),
                             lane_unit.shortcut.enable.eq(tile.residual)]
        # the row, block and m/n block each lane result belongs to, delayed by the lanes' latency
        written = {"row": [drain_row], "block": [drain_block], "m": [drain_m], "n": [drain_n]}
        for stage in range(OutputLane.latency):
            for name, chain in written.items():
                chain.append(Signal.like(chain[0], name=f"written_{name}{stage}"))
                m.d.sync += chain[-1].eq(chain[-2])
        written_row, written_block = written["row"][-1], written["block"][-1]
        lane_row = [lane_unit.result for lane_unit in lanes]
        lane_write = (written_block, Mux(lanes[0].result_valid, Const(1, rows) << written_row, 0))
        if not cfg.global_pool:
            m.d.comb += self.rd_data.eq(out_read.data)
            write_row, (write_addr, write_en) = lane_row, lane_write
        else:
            m.submodules.pool = pool = GlobalPool(cfg)
            written_m = written["m"][-1]
            read_sums = Signal()  # rd_addr's top bit, as the synchronous reads saw it
            m.d.sync += read_sums.eq(self.rd_addr[-1])
            m.d.comb += [pool.rd_addr.eq(self.rd_addr), self.rd_data.eq(Mux(read_sums, pool.rd_data, out_read.data)),
                         pool.requantize.eq(tile.mode == OutputMode.REQUANT)]
            if cfg.run_time_out_bits:
                m.d.comb += pool.code_max.eq(code_max)
            m.d.comb += [
                pool.capture.eq(draining & (drain_row == 0)),
                pool.valid.eq(lanes[0].result_valid & pooling),
                pool.counted.eq((written_m != tile.m_blocks - 1) | (written_row < tile.last_rows)),
                pool.first_row.eq(written_row == 0), pool.last_row.eq(written_row == rows - 1),
                pool.first_block.eq(written_m == 0), pool.last_block.eq(written_m == tile.m_blocks - 1),
                pool.n_block.eq(written["n"][-1]),
            ]
            for column, lane_unit in enumerate(lanes):
                m.d.comb += [pool.multipliers[column].eq(channel_read.data[column].multiplier),
                             pool.values[column].eq(lane_unit.result)]
            # a pooled REQUANT run writes the pooled row (row 0 of block n) instead of the lanes' rows.  Muxes, not
            # an m.If: with the m.If Icarus lost the first block after reset (Verilator and Amaranth's simulator did not)
            pooled = Signal()
            m.d.comb += pooled.eq(pooling & (tile.mode == OutputMode.REQUANT))
            write_row = [Mux(pooled, pool.codes[column], lane_row[column]) for column in range(cols)]
            write_addr = Mux(pooled, pool.write_block, lane_write[0])
            write_en = Mux(pooled, pool.write, lane_write[1])
        out_row = Signal(data.ArrayLayout(signed(cfg.out_word_bits), cols))
        m.d.comb += [out_row[column].eq(value) for column, value in enumerate(write_row)]
        m.d.comb += [
            out_write.addr.eq(Cat(tile.bank, write_addr)),  # the last write lands before DONE: tile.bank still holds
            out_write.en.eq(write_en), out_write.data.eq(Cat([out_row] * rows)),
        ]
        return m
