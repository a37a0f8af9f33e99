"""Verilog generation: ``python -m hw.generate [--config NAME ...] [--out DIR]``.

For each named preset writes ``DIR/NAME/``:

* ``lutmac_top.v`` — the accelerator (:class:`hw.top.Accelerator`), top module ``lutmac_top``;
* ``pe_<kind>.v`` — every PE kind at the preset's widths (module ``pe_<kind>``; lcq_product
  only where its product table is supported);
* ``interface.json`` — the host interface: ports and widths, region numbers with address/data
  widths, the bit fields of ``tile``, the output word and the cycle formula constants.

Files are written atomically (:func:`golden.files.write_atomic`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from amaranth import Shape
from amaranth.back import verilog
from amaranth.lib import wiring

from golden.errors import LutmacError
from golden.files import write_atomic

from .config import ArrayConfig, load_presets
from .cycles import RUN_OVERHEAD_CYCLES
from .host import layout_leaves
from .kinds import KINDS, PeKind
from .layout import (
    BANKED_REGIONS,
    BANKS,
    OutputMode,
    channel_layout,
    multiplier_layout,
    out_word_layout,
    region_geometry,
    tile_layout,
)
from .top import Accelerator

TOP_NAME = "lutmac_top"


def _fields(layout) -> list[dict]:
    return [{"name": leaf.name, "offset": leaf.offset, "width": leaf.width, "signed": leaf.signed}
            for leaf in layout_leaves(layout)]


def interface_description(cfg: ArrayConfig, top: Accelerator) -> dict:
    """Everything a host driver needs to know about one generated top, as plain JSON data."""
    ports = {}
    for name, member in top.signature.members.items():
        shape = Shape.cast(member.shape)
        ports[name] = {"direction": "input" if member.flow == wiring.In else "output", "width": shape.width}
    return {
        "top": TOP_NAME,
        "clock": "clk",
        "reset": "rst (synchronous, active high)",
        "config": cfg.to_dict(),
        "accumulator_width": cfg.accumulator_width,
        "product_bits": cfg.product_bits,
        "ports": ports,
        "regions": {region.name: {"value": int(region), "addr_bits": addr, "data_bits": bits}
                    for region, (addr, bits) in region_geometry(cfg).items()},
        "banks": {"count": BANKS, "regions": [region.name for region in BANKED_REGIONS],
                  "rule": "a write while busy into tile.bank (or any table) is dropped and sets wr_refused"},
        "output_modes": {mode.name: int(mode) for mode in OutputMode},
        "tile_fields": _fields(tile_layout(cfg)),
        "channel_fields": _fields(channel_layout(cfg)),
        "row_multiplier_fields": _fields(multiplier_layout(cfg)),
        "out_word": {"bits": out_word_layout(cfg).size, "value_bits": cfg.out_word_bits,
                     "order": "value [row][column] at offset (row * cols + column) * value_bits"},
        "cycles": {"formula": "ceil(M/rows) * ceil(N/cols) * max(K, rows + 1, cols) + cols + rows + overhead",
                   "overhead": RUN_OVERHEAD_CYCLES},
    }


def sibling_pe(cfg: ArrayConfig, kind: PeKind):
    """The PE of ``kind`` at ``cfg``'s widths; fraction bits and level convention carry over between shift kinds."""
    if kind.has_frac_bits:
        same_family = cfg.kind.has_frac_bits
        datapath = kind.datapath(cfg.weight_bits, cfg.act_bits, cfg.frac_bits if same_family else None,
                                 cfg.levels if same_family else "bbit")
    else:
        datapath = kind.datapath(cfg.weight_bits, cfg.act_bits, level_bits=cfg.level_bits,
                                 act_level_bits=cfg.act_level_bits)
    return kind.pe(datapath)


def generate(name: str, cfg: ArrayConfig, out_dir: Path) -> list[Path]:
    """Write one preset's Verilog and interface description; returns the files written."""
    target = out_dir / name
    top = Accelerator(cfg)
    written = []
    path = target / "interface.json"
    write_atomic(path, json.dumps(interface_description(cfg, top), indent=2) + "\n")
    written.append(path)
    path = target / f"{TOP_NAME}.v"
    write_atomic(path, verilog.convert(top, name=TOP_NAME))
    written.append(path)
    for kind in KINDS.values():
        try:
            pe = sibling_pe(cfg, kind)
        except LutmacError as error:
            print(f"{name}: no pe_{kind.name}.v ({error})", file=sys.stderr)
            continue
        path = target / f"pe_{kind.name}.v"
        write_atomic(path, verilog.convert(pe, name=f"pe_{kind.name}"))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    default, presets = load_presets()
    parser = argparse.ArgumentParser(prog="python -m hw.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", metavar="NAME",
                        help=f"preset to generate (repeatable; 'all' for every preset; default: {default!r}). "
                             f"Presets: {', '.join(sorted(presets))}")
    parser.add_argument("--out", type=Path, default=Path("build/verilog"), help="output directory (default: build/verilog)")
    args = parser.parse_args(argv)
    names = args.config or ["default"]
    if "all" in names:
        names = sorted(presets)
    for name in names:
        key = default if name == "default" else name
        if key not in presets:
            parser.error(f"unknown preset {name!r}; presets are {', '.join(sorted(presets))} (or 'default', 'all')")
        for path in generate(name, presets[key], args.out):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
