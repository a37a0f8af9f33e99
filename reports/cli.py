"""The ``lutmac`` command line (``python -m reports.cli`` or the ``lutmac`` console script).

Subcommands register themselves in :data:`SUBCOMMANDS` (name -> function adding the parser);
each parser sets ``func`` to the function that runs it.  Errors of :mod:`golden.errors` end
the run with a one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from golden.errors import LutmacError


def _array(text: str) -> tuple[int, int]:
    rows, sep, cols = text.lower().partition("x")
    if not sep or not rows.isdigit() or not cols.isdigit():
        raise argparse.ArgumentTypeError(f"array size {text!r} must look like 16x16")
    return int(rows), int(cols)


def add_report(subparsers) -> None:
    parser = subparsers.add_parser("report", help="regenerate every table, sweep and figure into one folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder (replaced file by file, atomically)")
    parser.add_argument("--synth", type=Path, default=None, help="synthesis JSON from `make synth` (default build/synth/synth.json)")
    parser.add_argument("--energy-config", type=Path, default=None, help="TOML/JSON overriding the Horowitz 45 nm energy table")
    parser.add_argument("--networks", nargs="+", default=None, help="networks to report (default: all built in)")
    parser.add_argument("--topology", type=Path, action="append", default=[], help="extra SCALE-Sim topology CSV (repeatable)")
    parser.add_argument("--array", type=_array, default=(16, 16), help="array for the estimates and LUT tables (RxC)")
    parser.add_argument("--dataflow", default="lutmac", help="dataflow of the estimates: lutmac, os, ws or is")
    parser.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from .networks import NETWORKS
    from .report import ReportOptions, generate

    options = ReportOptions(out=args.out, energy_config=args.energy_config, topologies=tuple(args.topology),
                            rows=args.array[0], cols=args.array[1], dataflow=args.dataflow,
                            networks=tuple(args.networks) if args.networks else tuple(NETWORKS),
                            **({"synth": args.synth} if args.synth else {}))
    files = generate(options)
    print(f"wrote {len(files)} files to {args.out}")
    return 0


SUBCOMMANDS: dict[str, Callable] = {"report": add_report}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lutmac", description="lutmac: low-bit non-uniform quantization accelerator model")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS.values():
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LutmacError as error:
        print(f"lutmac {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
