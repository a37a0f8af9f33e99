"""Host programs: what the host sequencer (:mod:`sim.sequencer`) runs, encoded, and what it returns, decoded.

A *host program* is a list of entries, each holding one value for every DUT input (all of them,
packed) plus a control part:

``DRIVE count``  present the inputs for ``count`` rising edges;
``WAIT timeout`` present the inputs until the DUT's wait output (e.g. ``done``) is 1 just before
                 a rising edge; the edges spent are recorded in the *waits* file (a timeout ends
                 the program with ``error`` set);
``END``          stop, write the files and raise ``finished``.

An entry with the *capture* flag stores every DUT output, sampled just before its last rising
edge (what a host would read while presenting those inputs), in the *captures* file.

Where each port sits in an entry and in a capture word (:class:`HostLayout`) comes from the
DUT's Amaranth signature (:func:`signature_ports`), never from its Verilog text.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth import Shape
from amaranth.lib import wiring

from golden.errors import CodeRangeError, ConfigError

DRIVE, WAIT, END = 0, 1, 2
COUNT_BITS = 32
CONTROL_BITS = 2 + 1 + COUNT_BITS  # kind, capture, count
CLOCK_NAME, RESET_NAME = "clk", "rst"  # Amaranth's sync domain


@dataclass(frozen=True)
class Port:
    name: str
    width: int
    direction: str  # "input" or "output"


def signature_ports(signature: wiring.Signature, clocked: bool) -> list[Port]:
    """The Verilog ports Amaranth gives a component with ``signature``.

    One port per member (nested signatures and array elements joined by ``__``, as Amaranth
    names them), ``lib.data`` layouts flattened to their width; a ``clocked`` design (one that
    uses the ``sync`` domain) also has ``clk`` and ``rst``.
    """
    ports = [Port(CLOCK_NAME, 1, "input"), Port(RESET_NAME, 1, "input")] if clocked else []
    for path, member in signature.members.flatten():
        if member.is_signature:
            continue  # its own members follow
        width = Shape.cast(member.shape).width
        direction = "input" if member.flow == wiring.In else "output"
        for index in itertools.product(*(range(size) for size in member.dimensions)):
            ports.append(Port("__".join(map(str, (*path, *index))), width, direction))
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
