"""A host sequencer in Verilog, so no Python runs per clock cycle in any simulator.

A *host program* is a list of entries, each holding one value for every DUT input (all of them,
packed) plus a control part:

``DRIVE count``  present the inputs for ``count`` rising edges;
``WAIT timeout`` present the inputs until the DUT's wait output (e.g. ``done``) is 1 just before
                 a rising edge; the edges spent are recorded in the *waits* file (a timeout ends
                 the program with ``error`` set);
``END``          stop, write the files and raise ``finished``.

An entry with the *capture* flag stores every DUT output, sampled just before its last rising
edge (what a host would read while presenting those inputs), in the *captures* file.

:func:`host_top_verilog` wraps a DUT in a top level that holds the program memory: a pulse on
``load`` reads ``lutmac_program.hex`` from the working directory and runs it;
``lutmac_captures.hex`` and ``lutmac_waits.hex`` are written before ``finished`` rises.  The same
Verilog runs under cocotb (Icarus, Verilator; the clock is generated inside so the simulator, not
Python, toggles it) and under the plain Verilator C++ harness (:mod:`sim.harness`), which is
what makes their cycle rates comparable.  The Amaranth simulator runs the same programs through
:func:`iter_cycles`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden.errors import CodeRangeError, ConfigError

from .simulators import CLOCK_PERIOD_NS, HdlDesign

DRIVE, WAIT, END = 0, 1, 2
COUNT_BITS = 32
CONTROL_BITS = 2 + 1 + COUNT_BITS  # kind, capture, count
PROGRAM_FILE = "lutmac_program.hex"
CAPTURES_FILE = "lutmac_captures.hex"
WAITS_FILE = "lutmac_waits.hex"
CLOCK_NAME, RESET_NAME = "clk", "rst"


@dataclass(frozen=True)
class Port:
    name: str
    width: int
    direction: str  # "input" or "output"


def parse_ports(verilog: str, module: str) -> list[Port]:
    """The ports of ``module`` in Yosys/Amaranth-generated Verilog (``input [W-1:0] name;`` style)."""
    match = re.search(rf"^module\s+{re.escape(module)}\s*\((.*?)\);(.*?)^endmodule", verilog, re.S | re.M)
    if match is None:
        raise ConfigError(f"module {module!r} not found in the Verilog")
    ports = []
    for direction, msb, lsb, name in re.findall(
        r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):(\d+)\]\s*)?\\?([\w$.]+)\s*;", match.group(2), re.M
    ):
        if lsb not in ("", "0"):
            raise ConfigError(f"port {name} of {module} does not start at bit 0")
        ports.append(Port(name, int(msb) + 1 if msb else 1, direction))
    if not ports:
        raise ConfigError(f"module {module!r} declares no ports")
    return ports


@dataclass(frozen=True)
class HostLayout:
    """Where each DUT port sits in a program entry (inputs) and in a capture word (outputs)."""

    dut: str
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    wait_output: str | None  # None: the program has no WAIT entries
    clocked: bool  # False for a combinational DUT (no clk port)

    @classmethod
    def from_ports(cls, dut: str, ports: list[Port], wait_output: str | None = "done") -> HostLayout:
        inputs = tuple(p for p in ports if p.direction == "input" and p.name != CLOCK_NAME)
        outputs = tuple(p for p in ports if p.direction == "output")
        if wait_output is not None and wait_output not in {p.name for p in outputs}:
            raise ConfigError(f"{dut} has no output {wait_output!r} to wait on")
        if not inputs or not outputs:
            raise ConfigError(f"{dut} needs at least one input besides {CLOCK_NAME!r} and one output")
        return cls(dut, inputs, outputs, wait_output, any(p.name == CLOCK_NAME for p in ports))

    @property
    def input_bits(self) -> int:
        return sum(p.width for p in self.inputs)

    @property
    def output_bits(self) -> int:
        return sum(p.width for p in self.outputs)

    @property
    def entry_bits(self) -> int:
        return CONTROL_BITS + self.input_bits

    def offsets(self, ports: tuple[Port, ...]) -> dict[str, tuple[int, int]]:
        """``name -> (lsb, width)``, the first port at the lowest bits."""
        result, lsb = {}, 0
        for port in ports:
            result[port.name] = (lsb, port.width)
            lsb += port.width
        return result


class HostProgram:
    """A host program under construction.  Entries are added in vectorized batches.

    ``drive(inputs, cycles, capture)`` adds one entry per row of the (broadcast) arrays in
    ``inputs`` (a dict by port name); an input not named is 0.  A port value is an int (any width) or, for a port made of ``lanes``
    equal fields, an ``(n, lanes)`` array whose column ``j`` lands at bits ``j * width/lanes``.
    """

    def __init__(self, layout: HostLayout) -> None:
        self.layout = layout
        self._offsets = layout.offsets(layout.inputs)
        self._chunks: list[np.ndarray] = []
        self.num_entries = 0
        self.num_captures = 0
        self.num_waits = 0
        self.ended = False

    def _check_names(self, values: dict) -> None:
        unknown = sorted(set(values) - set(self._offsets))
        if unknown:
            raise ConfigError(f"{self.layout.dut} has no inputs {unknown}; inputs are {sorted(self._offsets)}")

    def _add(self, kind: int, count, capture, values: dict) -> None:
        if self.ended:
            raise ConfigError("the program already ended")
        self._check_names(values)
        arrays = {name: np.asarray(value) for name, value in values.items()}
        lengths = {np.shape(count)[0] if np.ndim(count) else 1, np.shape(capture)[0] if np.ndim(capture) else 1}
        lengths |= {a.shape[0] for a in arrays.values() if a.ndim}
        lengths.discard(1)
        if len(lengths) > 1:
            raise ConfigError(f"batch arrays disagree on the number of entries: {sorted(lengths)}")
        n = lengths.pop() if lengths else 1
        counts = np.broadcast_to(np.asarray(count, dtype=np.int64), (n,))
        if np.any(counts < 1) or np.any(counts >= 1 << COUNT_BITS):
            raise CodeRangeError(f"entry counts must lie in [1, 2^{COUNT_BITS})")
        captures = np.broadcast_to(np.asarray(capture, dtype=bool), (n,))
        bits = np.zeros((n, -(-self.layout.entry_bits // 32) * 32), dtype=np.uint8)
        for name, value in arrays.items():
            lsb, width = self._offsets[name]
            bits[:, lsb : lsb + width] = _port_bits(name, value, width, n)
        control = self.layout.input_bits
        bits[:, control : control + COUNT_BITS] = _int_bits(counts, COUNT_BITS)
        bits[:, control + COUNT_BITS] = captures
        bits[:, control + COUNT_BITS + 1 : control + COUNT_BITS + 3] = _int_bits(np.full(n, kind), 2)
        self._chunks.append(_bits_to_words(bits))
        self.num_entries += n
        self.num_captures += int(captures.sum())
        if kind == WAIT:
            self.num_waits += n

    def drive(self, inputs: dict | None = None, cycles=1, capture=False) -> None:
        """Present ``inputs`` for ``cycles`` edges (one entry per row of the broadcast arrays)."""
        self._add(DRIVE, cycles, capture, inputs or {})

    def wait(self, timeout: int, inputs: dict | None = None, capture: bool = False) -> None:
        """Present ``inputs`` until the wait output is 1, at most ``timeout`` edges."""
        if self.layout.wait_output is None:
            raise ConfigError(f"{self.layout.dut}'s host layout names no output to wait on")
        self._add(WAIT, timeout, capture, inputs or {})

    def end(self) -> None:
        self._add(END, 1, False, {})
        self.ended = True

    def entry_words(self) -> np.ndarray:
        """Every entry as little-endian 32-bit words, shape ``(entries, words)``."""
        if not self.ended:
            raise ConfigError("end() the program before encoding it")
        return np.concatenate(self._chunks)

    def write(self, path: Path) -> None:
        write_hex(path, self.entry_words(), self.layout.entry_bits)


def _int_bits(values: np.ndarray, width: int) -> np.ndarray:
    """``(n, width)`` bit matrix, LSB first, of non-negative ints (``width <= 64``)."""
    shifts = np.arange(width, dtype=np.uint64)
    return ((values.astype(np.uint64)[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)


def _port_bits(name: str, value: np.ndarray, width: int, n: int) -> np.ndarray:
    """Bits of one port for ``n`` entries.

    ``value``: an int, an ``(n,)`` int array, an ``(n, lanes)`` array of equal-width fields, or an
    object array of Python ints (for ports wider than 63 bits).
    """
    value = np.asarray(value)
    if value.dtype == object or (value.ndim == 0 and abs(int(value)) >= 1 << 62):
        numbers = [int(v) for v in np.broadcast_to(value, (n,))]
        if any(not 0 <= v < 1 << width for v in numbers):
            raise CodeRangeError(f"{name}: a value does not fit {width} unsigned bits")
        nbytes = -(-width // 8)
        raw = np.frombuffer(b"".join(v.to_bytes(nbytes, "little") for v in numbers), dtype=np.uint8)
        return np.unpackbits(raw.reshape(n, nbytes), axis=1, bitorder="little")[:, :width]
    if value.ndim <= 1:
        fields = np.broadcast_to(value.reshape(-1, 1) if value.ndim else value.reshape(1, 1), (n, 1))
    else:
        fields = value
    lanes = fields.shape[1]
    if width % lanes:
        raise ConfigError(f"{name}: {lanes} lanes do not divide its {width} bits")
    lane_bits = width // lanes
    if lane_bits > 63:
        raise ConfigError(f"{name}: lanes of {lane_bits} bits are too wide; pass Python ints in an object array")
    fields = fields.astype(np.int64)
    if np.any(fields < -(1 << (lane_bits - 1))) or np.any(fields >= 1 << lane_bits):
        raise CodeRangeError(f"{name}: values do not fit {lane_bits}-bit lanes")
    unsigned = fields & ((1 << lane_bits) - 1)  # two's complement of negative lanes
    return _int_bits(unsigned.reshape(-1), lane_bits).reshape(fields.shape[0], width)


def _bits_to_words(bits: np.ndarray) -> np.ndarray:
    weights = (np.uint64(1) << np.arange(32, dtype=np.uint64)).astype(np.uint64)
    grouped = bits.reshape(bits.shape[0], -1, 32).astype(np.uint64)
    return (grouped * weights).sum(axis=2).astype(np.uint32)


def write_hex(path: Path, words: np.ndarray, bits: int) -> None:
    """A ``$readmemh`` file: one line per row, most significant digit first, ``ceil(bits/4)`` digits."""
    digits = -(-bits // 4)
    text = np.ascontiguousarray(words[:, ::-1]).astype(">u4").tobytes().hex()
    rows = np.frombuffer(text.encode(), dtype="S1").reshape(words.shape[0], words.shape[1] * 8)
    rows = rows[:, rows.shape[1] - digits :]
    newline = np.full((rows.shape[0], 1), b"\n", dtype="S1")
    Path(path).write_bytes(np.hstack([rows, newline]).tobytes())


def read_hex(path: Path, bits: int) -> np.ndarray:
    """Rows of a ``$writememh`` file as 32-bit words (LSB word first); X/Z digits raise."""
    lines = [line.strip() for line in Path(path).read_text().splitlines()]
    lines = [line.split("//")[0].strip() for line in lines]
    lines = [line for line in lines if line and not line.startswith("@")]
    words = -(-bits // 32)
    if not lines:
        return np.zeros((0, words), dtype=np.uint32)
    unknown = [i for i, line in enumerate(lines) if re.search(r"[xXzZ]", line)]
    if unknown:
        raise CodeRangeError(f"{path}: rows {unknown[:5]} hold X/Z bits (an output was never driven)")
    width = words * 8
    padded = "".join(line.rjust(width, "0") for line in lines)
    data = np.frombuffer(bytes.fromhex(padded), dtype=">u4").reshape(len(lines), words)
    return data[:, ::-1].astype(np.uint32)


@dataclass
class HostResult:
    """What one program run returned."""

    captures: Captures
    waits: np.ndarray  # edges each WAIT entry took, in program order
    cycles: int  # rising edges that executed the program's entries, END included
    seconds: float  # wall time the simulator spent on it


def read_results(workdir: Path, program: HostProgram) -> tuple[Captures, np.ndarray]:
    """The captures and waits a finished run wrote to ``workdir``, checked against the program."""
    layout = program.layout
    workdir = Path(workdir)
    words = read_hex(workdir / CAPTURES_FILE, layout.output_bits) if program.num_captures else np.zeros((0, 1), np.uint32)
    waits = read_hex(workdir / WAITS_FILE, COUNT_BITS)[:, 0].astype(np.int64) if program.num_waits else np.zeros(0, np.int64)
    if words.shape[0] != program.num_captures or waits.shape[0] != program.num_waits:
        raise CodeRangeError(
            f"the run returned {words.shape[0]} captures and {waits.shape[0]} waits; the program has "
            f"{program.num_captures} and {program.num_waits}"
        )
    return Captures(layout, words), waits


def clear_results(workdir: Path) -> None:
    for name in (CAPTURES_FILE, WAITS_FILE):
        (Path(workdir) / name).unlink(missing_ok=True)


class Captures:
    """Decoded capture rows: ``captures[name]`` is the port's value per row (lanes on request)."""

    def __init__(self, layout: HostLayout, words: np.ndarray) -> None:
        self.layout = layout
        self.words = words
        self._offsets = layout.offsets(layout.outputs)

    def __len__(self) -> int:
        return self.words.shape[0]

    def ints(self, name: str) -> list[int]:
        """Output ``name`` per row as unsigned Python ints (any width)."""
        lsb, width = self._offsets[name]
        raw = np.ascontiguousarray(self.words).astype("<u4").tobytes()
        row_bytes = self.words.shape[1] * 4
        mask = (1 << width) - 1
        return [
            (int.from_bytes(raw[i * row_bytes : (i + 1) * row_bytes], "little") >> lsb) & mask for i in range(len(self))
        ]

    def field(self, name: str, lanes: int = 1, signed: bool = False) -> np.ndarray:
        """``(rows,)`` or ``(rows, lanes)`` int64 values of output ``name``."""
        lsb, width = self._offsets[name]
        if width % lanes:
            raise ConfigError(f"{name}: {lanes} lanes do not divide its {width} bits")
        lane_bits = width // lanes
        if lane_bits > 63:
            raise ConfigError(f"{name}: lanes of {lane_bits} bits are too wide for int64")
        out = np.zeros((len(self), lanes), dtype=np.int64)
        for lane in range(lanes):
            start = lsb + lane * lane_bits
            for bit in range(lane_bits):
                word, offset = divmod(start + bit, 32)
                out[:, lane] |= ((self.words[:, word] >> np.uint32(offset)) & 1).astype(np.int64) << bit
        if signed:
            out = np.where(out >= 1 << (lane_bits - 1), out - (1 << lane_bits), out)
        return out[:, 0] if lanes == 1 else out


def host_top_verilog(
    dut_verilog: str, layout: HostLayout, program_depth: int, capture_depth: int, internal_clock: bool
) -> str:
    """The DUT's Verilog plus a ``lutmac_host`` top holding the sequencer (see the module docstring)."""
    if program_depth < 2 or capture_depth < 1:
        raise ConfigError("program_depth must be >= 2 and capture_depth >= 1")
    in_bits, out_bits, entry_bits = layout.input_bits, layout.output_bits, layout.entry_bits
    kind_lsb = in_bits + COUNT_BITS + 1
    clock_port = "" if internal_clock else "  input clk /*verilator public_flat_rw*/,\n"
    clock_gen = (
        f"  reg clk = 1'b0;\n  always #{CLOCK_PERIOD_NS // 2} clk = ~clk;\n" if internal_clock else ""
    )
    in_offsets, out_offsets = layout.offsets(layout.inputs), layout.offsets(layout.outputs)
    connections = [f"    .{CLOCK_NAME}(clk)"] if layout.clocked else []
    connections += [f"    .{name}(dut_in[{lsb + width - 1}:{lsb}])" for name, (lsb, width) in in_offsets.items()]
    # each output gets a wire of its own, concatenated once: port connections to slices of one
    # net would give it several drivers, which Icarus re-resolves whole on every change
    connections += [f"    .{name}(out_{name})" for name in out_offsets]
    output_wires = "".join(f"  wire [{width - 1}:0] out_{name};\n" for name, (_, width) in out_offsets.items())
    output_concat = ", ".join(f"out_{name}" for name in reversed(list(out_offsets)))
    wait_bit = f"dut_out[{out_offsets[layout.wait_output][0]}]" if layout.wait_output else "1'b0"
    pc_bits = max(1, (program_depth - 1).bit_length())
    cap_bits = max(1, capture_depth.bit_length())
    port_list = ",\n".join(connections)
    return f"""{dut_verilog}

// Host sequencer generated by sim/host.py: runs {PROGRAM_FILE} on a pulse of `load`.
module lutmac_host (
{clock_port}  input load /*verilator public_flat_rw*/,
  output reg running /*verilator public_flat_rw*/ = 1'b0,
  output reg finished /*verilator public_flat_rw*/ = 1'b0,
  output reg error /*verilator public_flat_rw*/ = 1'b0,
  output reg [63:0] run_cycles /*verilator public_flat_rw*/ = 64'd0
);
  /*verilator public_module*/
{clock_gen}  reg [{entry_bits - 1}:0] program_mem [0:{program_depth - 1}];
  reg [{out_bits - 1}:0] captures [0:{capture_depth - 1}];
  reg [{COUNT_BITS - 1}:0] waits [0:{capture_depth - 1}];
  reg [{pc_bits - 1}:0] pc = 0;
  reg [{COUNT_BITS - 1}:0] elapsed = 0;
  reg [{cap_bits - 1}:0] num_captures = 0;
  reg [{cap_bits - 1}:0] num_waits = 0;
  reg load_q = 1'b0;
  wire [{entry_bits - 1}:0] entry = program_mem[pc];
  wire [1:0] kind = entry[{kind_lsb + 1}:{kind_lsb}];
  wire capture = entry[{in_bits + COUNT_BITS}];
  wire [{COUNT_BITS - 1}:0] count = entry[{in_bits + COUNT_BITS - 1}:{in_bits}];
  wire [{in_bits - 1}:0] dut_in = running ? entry[{in_bits - 1}:0] : {in_bits}'d0;
{output_wires}  wire [{out_bits - 1}:0] dut_out = {{{output_concat}}};
  // A WAIT entry ends when the DUT raises its wait output (or times out after `count` cycles);
  // any other entry ends after `count` cycles.
  wire last_cycle = elapsed + 1 == count;
  wire step_done = kind == 2'd{WAIT} ? {wait_bit} : last_cycle;
  wire timed_out = kind == 2'd{WAIT} && !({wait_bit}) && last_cycle;

  {layout.dut} dut (
{port_list}
  );

  always @(posedge clk) begin
    load_q <= load;
    if (running) run_cycles <= run_cycles + 64'd1;
    if (load && !load_q && !running) begin
      $readmemh("{PROGRAM_FILE}", program_mem);
      pc <= 0;
      run_cycles <= 64'd0;
      elapsed <= 0;
      num_captures <= 0;
      num_waits <= 0;
      finished <= 1'b0;
      error <= 1'b0;
      running <= 1'b1;
    end else if (running) begin
      if (kind == 2'd{END}) begin
        if (num_captures != 0) $writememh("{CAPTURES_FILE}", captures, 0, num_captures - 1);
        if (num_waits != 0) $writememh("{WAITS_FILE}", waits, 0, num_waits - 1);
        running <= 1'b0;
        finished <= 1'b1;
      end else if (timed_out) begin
        error <= 1'b1;
        running <= 1'b0;
        finished <= 1'b1;
      end else if (step_done) begin
        if (kind == 2'd{WAIT}) begin
          waits[num_waits] <= elapsed + 1;
          num_waits <= num_waits + 1;
        end
        if (capture) begin
          captures[num_captures] <= dut_out;
          num_captures <= num_captures + 1;
        end
        pc <= pc + 1;
        elapsed <= 0;
      end else begin
        elapsed <= elapsed + 1;
      end
    end
  end
endmodule
"""


def host_design(
    dut_verilog: str,
    dut: str,
    wait_output: str | None = "done",
    program_depth: int = 1 << 16,
    capture_depth: int = 1 << 16,
    internal_clock: bool = True,
) -> tuple[HdlDesign, HostLayout]:
    """The ``lutmac_host`` design around ``dut`` and its layout.

    ``internal_clock=True`` for cocotb (the HDL toggles the clock), ``False`` for the C++ harness.
    """
    layout = HostLayout.from_ports(dut, parse_ports(dut_verilog, dut), wait_output)
    verilog = host_top_verilog(dut_verilog, layout, program_depth, capture_depth, internal_clock)
    return HdlDesign("lutmac_host", verilog, timing=internal_clock, public_ports_only=True), layout
