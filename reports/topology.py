"""SCALE-Sim topology files, so users can bring their own workloads.

Two formats, told apart by the header (SCALE-Sim writes a trailing comma on every row):

* conv: ``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels,
  Num Filter, Strides`` (or ``Stride height, Stride width``).  The IFMAP is already padded
  (SCALE-Sim has no padding field), and the output size is SCALE-Sim's
  ``Hout = ceil((H - Fh + S) / S)`` (``topology_utils.topo_calc_hyperparams``: a last, partial
  window counts).  As in SCALE-Sim, a layer whose name contains ``DP`` is depthwise.
* GEMM: ``Layer, M, N, K`` — an ``(M x K) @ (K x N)`` product, i.e. a linear layer applied to
  ``M`` rows (represented as a 1x1 conv over an ``M x 1`` map).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from golden.errors import ConfigError

from .networks import MAX_COUNT, Layer

CONV_FIELDS = ("ifmap height", "ifmap width", "filter height", "filter width", "channels", "num filter")


def _header_kind(header: list[str], where: str) -> str:
    names = [h.strip().lower() for h in header]
    if names[1:4] == ["m", "n", "k"]:
        return "gemm"
    if tuple(names[1:7]) == CONV_FIELDS and len(names) > 7 and names[7].startswith("stride"):
        return "conv"
    raise ConfigError(
        f"{where}: unrecognised SCALE-Sim header {header!r}; expected 'Layer name, IFMAP Height, IFMAP Width, "
        "Filter Height, Filter Width, Channels, Num Filter, Strides' or 'Layer, M, N, K'"
    )


def _positive_ints(values: list[str], where: str) -> list[int]:
    out = []
    for value in values:
        try:
            number = int(value.strip())
        except ValueError:
            raise ConfigError(f"{where}: {value.strip()!r} is not an integer") from None
        if number < 1:
            raise ConfigError(f"{where}: {number} must be a positive integer")
        out.append(number)
    return out


def _conv_layer(name: str, numbers: list[int], where: str) -> Layer:
    if len(numbers) not in (7, 8):
        raise ConfigError(f"{where}: a conv row has 7 or 8 numbers (H, W, Fh, Fw, C, N, stride[, stride w]), got {len(numbers)}")
    height, width, fh, fw, channels, filters, stride = numbers[:7]
    if len(numbers) == 8 and numbers[7] != stride:
        raise ConfigError(f"{where}: non-square stride ({stride}, {numbers[7]}) is not supported")
    if fh > height or fw > width:
        raise ConfigError(f"{where}: filter {fh}x{fw} is larger than the IFMAP {height}x{width}")
    depthwise = "DP" in name
    if depthwise and filters % channels:
        raise ConfigError(f"{where}: depthwise layer {name!r} needs Num Filter a multiple of Channels")
    return Layer(
        name, "depthwise" if depthwise and channels > 1 else "conv", channels, filters, kh=fh, kw=fw, stride=stride,
        groups=channels if depthwise else 1, hin=height, win=width,
        hout=-(-(height - fh + stride) // stride), wout=-(-(width - fw + stride) // stride),
    )


def _gemm_layer(name: str, numbers: list[int], where: str) -> Layer:
    if len(numbers) != 3:
        raise ConfigError(f"{where}: a GEMM row has 3 numbers (M, N, K), got {len(numbers)}")
    m, n, k = numbers
    return Layer(name, "conv", k, n, hin=m, win=1, hout=m, wout=1)


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Numbered non-blank rows, SCALE-Sim's trailing empty field dropped, read one at a time (a 10^6-row file
    is never held as text); a file that is not UTF-8 text is a ConfigError, not a traceback."""
    if not path.is_file():
        raise ConfigError(f"topology file {path} does not exist")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            for number, row in enumerate(csv.reader(handle), 1):
                if row and not row[-1].strip():  # SCALE-Sim ends every row with a comma
                    row = row[:-1]
                if not any(cell.strip() for cell in row):  # blank line
                    continue
                if any("\x00" in cell for cell in row):
                    raise ConfigError(f"{path}:{number}: a NUL byte: not a UTF-8 text CSV file")
                yield number, row
    except (UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"{path}: not a UTF-8 text CSV file ({error})") from None


def _header(path: Path, rows: Iterator[tuple[int, list[str]]]) -> str:
    """The kind the first row declares."""
    first = next(rows, None)
    if first is None:
        raise ConfigError(f"{path}: empty topology file")
    number, header = first
    return _header_kind(header, f"{path}:{number}")


def topology_kind(path: str | Path) -> str:
    """``"conv"`` or ``"gemm"``: which of SCALE-Sim's two forms a topology file has (by its header)."""
    path = Path(path)
    return _header(path, _rows(path))


def read_topology(path: str | Path) -> list[Layer]:
    """Layers of a SCALE-Sim conv or GEMM topology CSV."""
    path = Path(path)
    rows = _rows(path)
    kind = _header(path, rows)
    layers, total_macs = [], 0
    for number, row in rows:
        where = f"{path}:{number}"
        name = row[0].strip()
        if not name:
            raise ConfigError(f"{where}: missing layer name")
        numbers = _positive_ints(row[1:], where)
        layer = _conv_layer(name, numbers, where) if kind == "conv" else _gemm_layer(name, numbers, where)
        total_macs += layer.macs
        layers.append(layer)
    if not layers:
        raise ConfigError(f"{path}: the topology has a header but no layers")
    if total_macs >= MAX_COUNT:
        raise ConfigError(f"{path}: the network's MACs total is too large (counts must stay below 2**53 to be exact)")
    return layers


def scalesim_layers(layers: list[Layer]) -> list[Layer]:
    """The layers as SCALE-Sim simulates (and reports) them: a ``DP`` layer of ``C`` channels becomes ``C``
    single-channel layers named ``<name>Channel_<i>``, each with all ``Num Filter`` filters
    (``topology_utils.load_arrays_conv``), so ``C`` times a true depthwise layer's MACs.
    """
    out = []
    for layer in layers:
        if layer.type != "depthwise":
            out.append(layer)
            continue
        out += [Layer(f"{layer.name}Channel_{channel}", "conv", 1, layer.cout, kh=layer.kh, kw=layer.kw, stride=layer.stride,
                      hin=layer.hin, win=layer.win, hout=layer.hout, wout=layer.wout) for channel in range(layer.cin)]
    return out


def topology_csv(layers: list[Layer]) -> str:
    """SCALE-Sim conv-topology text (padded IFMAP) for traced layers, so SCALE-Sim can cross-check."""
    lines = ["Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,"]
    for layer in layers:
        if layer.groups > 1 and layer.type != "depthwise":
            raise ConfigError(f"layer {layer.name!r}: SCALE-Sim topologies cannot express grouped convolutions")
        name = layer.name.replace("DP", "dp")
        if layer.type == "depthwise":
            name += "_DP"
        height = (layer.hout - 1) * layer.stride + layer.kh
        width = (layer.wout - 1) * layer.stride + layer.kw
        lines.append(f"{name},{height},{width},{layer.kh},{layer.kw},{layer.cin},{layer.cout},{layer.stride},")
    return "\n".join(lines) + "\n"
