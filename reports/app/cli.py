"""The ``lutmac`` command line (``python -m reports.app.cli`` or the ``lutmac`` console script).

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
from golden.files import removed_on_signal
from golden.spec import WeightScheme


def _array(text: str) -> tuple[int, int]:
    rows, sep, cols = text.lower().partition("x")
    if not sep or not rows.isdigit() or not cols.isdigit():
        raise argparse.ArgumentTypeError(f"array size {text!r} must look like 16x16")
    return int(rows), int(cols)


def add_report(subparsers) -> None:
    parser = subparsers.add_parser("report", help="regenerate every table, sweep and figure into one folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder (replaced whole, atomically, when the run succeeds)")
    parser.add_argument("--synth", type=Path, default=None, help="synthesis JSON from `make synth` (default build/synth/synth.json)")
    parser.add_argument("--energy-config", type=Path, default=None, help="TOML/JSON overriding the Horowitz 45 nm energy table")
    parser.add_argument("--networks", nargs="+", default=None, help="networks to report (default: all built in)")
    parser.add_argument("--topology", type=Path, action="append", default=[], help="extra SCALE-Sim topology CSV (repeatable)")
    parser.add_argument("--array", type=_array, default=(16, 16), help="array for the estimates and LUT tables (RxC)")
    parser.add_argument("--dataflow", default="lutmac", help="dataflow of the estimates: lutmac, os, ws or is")
    parser.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from ..networks import NETWORKS
    from ..report import ReportOptions, generate

    options = ReportOptions(out=args.out, energy_config=args.energy_config, topologies=tuple(args.topology),
                            rows=args.array[0], cols=args.array[1], dataflow=args.dataflow,
                            networks=tuple(args.networks) if args.networks else tuple(NETWORKS),
                            **({"synth": args.synth} if args.synth else {}))
    files = generate(options)
    print(f"wrote {len(files)} files to {args.out}")
    return 0


def add_estimate(subparsers) -> None:
    parser = subparsers.add_parser("estimate", help="SCALE-Sim drop-in: its .cfg and topology CSV in, its COMPUTE_REPORT.csv "
                                   "plus lutmac's quantization-aware energy and area per layer out")
    parser.add_argument("-c", "--config", type=Path, required=True, help="SCALE-Sim .cfg (array, SRAM sizes, dataflow)")
    parser.add_argument("-t", "--topology", type=Path, default=None,
                        help="SCALE-Sim topology CSV, conv or GEMM (M, N, K) form (default: the cfg's TopologyCsvLoc)")
    parser.add_argument("--out", type=Path, default=None, help="folder for COMPUTE_REPORT.csv (default ./RUN_NAME, as SCALE-Sim)")
    parser.add_argument("--scheme", default=str(WeightScheme.INT),
                        help=f"weight scheme: {', '.join(WeightScheme)} (default {WeightScheme.INT})")
    parser.add_argument("--bits", type=_positive, default=8, help="weight bits (default 8)")
    parser.add_argument("--act-bits", type=_positive, default=None, help="activation bits (default: --bits)")
    parser.add_argument("--pe-kind", default=None, help="PE kind (default: the scheme's network PE, hw.kinds)")
    parser.add_argument("--frac-bits", type=int, default=None, help="product fraction bits F (default: the format's)")
    parser.add_argument("--synth", type=Path, default=None, help="synthesis JSON from `make synth` (default build/synth/synth.json)")
    parser.add_argument("--energy-config", type=Path, default=None, help="TOML/JSON overriding the Horowitz 45 nm energy table")
    parser.set_defaults(func=run_estimate)


def run_estimate(args: argparse.Namespace) -> int:
    from golden.errors import ConfigError

    from ..energy import DEFAULT_SYNTH_PATH, load_energy_table, load_synthesis
    from ..output import check_output_folder
    from ..scalesim_config import read_config
    from ..scalesim_dropin import compute_report, hardware_config, totals, write_compute_report
    from ..topology import read_topology

    config = read_config(args.config)
    topology = args.topology or (Path(config.topology) if config.topology else None)
    if topology is None:
        raise ConfigError(f"no topology: give -t TOPOLOGY.csv or set TopologyCsvLoc in {args.config}")
    out = args.out or Path(config.run_name)
    check_output_folder(out, replace_folder=False)  # one file into it, as SCALE-Sim writes its run folder
    hardware = hardware_config(config, args.scheme, args.bits, args.act_bits, args.pe_kind, args.frac_bits)
    rows = compute_report(read_topology(topology), hardware, load_synthesis(args.synth or DEFAULT_SYNTH_PATH),
                          load_energy_table(args.energy_config))
    path = write_compute_report(out, rows)
    summary = totals(rows)
    print(f"{summary['layers']} layers on {config.rows}x{config.cols} {config.dataflow} ({hardware.pe_kind} "
          f"w{hardware.weight_bits}a{hardware.act_bits}): {summary['cycles']} cycles ({summary['stall_cycles']} DRAM stalls), "
          f"{summary['overall_util_pct']:.2f} % overall utilization, {summary['energy_uj']:.4g} uJ; wrote {path}")
    return 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative integer")
    return int(text)


def _rtl_options(parser) -> None:
    from sim.network import BACKENDS

    from .rtl import DEFAULT_RTL_IMAGES

    parser.add_argument("--array", type=_array, default=(8, 8), help="accelerator array RxC (default 8x8)")
    parser.add_argument("--backend", choices=BACKENDS, default="verilator", help="RTL simulator (default: the Verilator harness)")
    parser.add_argument("--seed", type=_count, default=0, help="seed of the data split and the training (default 0)")
    parser.add_argument("--rtl-images", type=_count, default=DEFAULT_RTL_IMAGES,
                        help=f"test images run through the RTL, one at a time (default {DEFAULT_RTL_IMAGES})")


def add_demo(subparsers) -> None:
    from .datasets import DATASETS

    parser = subparsers.add_parser("demo", help="train FashionNet on Fashion-MNIST (--quick: DigitsNet on digits), quantize, "
                                                 "export, run integer model and RTL, report")
    parser.add_argument("--out", type=Path, default=Path("out"), help="output folder (default out/; replaced atomically)")
    parser.add_argument("--quick", action="store_true", help="post at 4 bits on scikit-learn's digits, few epochs (2-3 minutes)")
    parser.add_argument("--dataset", choices=tuple(DATASETS), default=None,
                        help="training and test images (default fashion; --quick: digits)")
    parser.add_argument("--schemes", nargs="+", default=None, help="quantization schemes (default: all)")
    parser.add_argument("--bits", nargs="+", type=int, default=None, help="bit widths for every scheme (default: per scheme)")
    parser.add_argument("--epochs", type=_positive, default=None, help="QAT epochs per model (the float baseline trains twice as long)")
    parser.add_argument("--synth", type=Path, default=None, help="synthesis JSON of `make synth` (default build/synth/synth.json)")
    _rtl_options(parser)
    parser.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from .demo import DemoOptions
    from .demo import run_demo as demo
    from .demo_report import describe

    options = DemoOptions(out=args.out, schemes=tuple(args.schemes) if args.schemes else None,
                          bits=tuple(args.bits) if args.bits else None, rows=args.array[0], cols=args.array[1],
                          seed=args.seed, epochs=args.epochs, rtl_images=args.rtl_images, backend=args.backend,
                          quick=args.quick, dataset=args.dataset, **({"synth": args.synth} if args.synth else {}))
    result = demo(options)
    print(describe(result))
    if result.failures:
        print("lutmac demo: checks failed:\n  " + "\n  ".join(result.failures), file=sys.stderr)
        return 1
    return 0


def add_sim(subparsers) -> None:
    from .datasets import DATASETS

    parser = subparsers.add_parser("sim", help="run an exported network (default: the demo's) on the RTL, layer by layer")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--network", type=Path, help="exported integer network (.json/.npz, e.g. out/networks/post_w4.json)")
    source.add_argument("--checkpoint", type=Path, help="a demo checkpoint (out/checkpoints/SCHEME_wBITS.pt) of --scheme/--bits")
    parser.add_argument("--scheme", default="post", help="scheme of --checkpoint or of the demo model (default post)")
    parser.add_argument("--bits", type=int, default=4, help="bits of --checkpoint or of the demo model (default 4)")
    parser.add_argument("--from", dest="demo_out", type=Path, default=None,
                        help="demo output folder holding networks/SCHEME_wBITS.json (an error if it does not); "
                             "default out/ when it holds one, else the model is trained now (quick epochs)")
    parser.add_argument("--dataset", choices=tuple(DATASETS), default=None,
                        help="test images, and the network of --checkpoint (default: the demo's for its networks, "
                             "else digits; fashion for an ablation checkpoint)")
    parser.add_argument("--synth", type=Path, default=None,
                        help="synthesis JSON (e.g. build/synth/synth.json): also print the energy per inference")
    _rtl_options(parser)
    parser.set_defaults(func=run_sim)


def run_sim(args: argparse.Namespace) -> int:
    from .simulate import simulate

    report, bit_exact = simulate(network=args.network, checkpoint=args.checkpoint, scheme=args.scheme, bits=args.bits,
                                 demo_out=args.demo_out, images=args.rtl_images, rows=args.array[0], cols=args.array[1],
                                 backend=args.backend, seed=args.seed, data_set=args.dataset, synth=args.synth)
    print(report)
    return 0 if bit_exact else 1


def add_resnet20(subparsers) -> None:
    from sim.network import BACKENDS

    from .resnet20 import CIFAR_SIZE, DEFAULT_SCHEMES

    parser = subparsers.add_parser("resnet20", help="CIFAR ResNet-20 (random weights) per scheme on the RTL, every layer checked")
    parser.add_argument("--schemes", nargs="+", default=list(DEFAULT_SCHEMES), help="schemes (default: all seven)")
    parser.add_argument("--bits", type=int, default=4, help="bits of every layer but the 8-bit first conv and fc (default 4)")
    parser.add_argument("--images", type=_positive, default=1, help="random input images, one at a time (default 1)")
    parser.add_argument("--size", type=_positive, default=CIFAR_SIZE, help=f"input height and width (default {CIFAR_SIZE})")
    parser.add_argument("--array", type=_array, default=(8, 8), help="accelerator array RxC (default 8x8)")
    parser.add_argument("--backend", choices=BACKENDS, default="verilator", help="RTL simulator (default: the Verilator harness)")
    parser.add_argument("--seed", type=_count, default=0, help="seed of the weights and the input (default 0)")
    parser.add_argument("--out", type=Path, default=None, help="write rtl_layers and rtl_summary (.md/.csv/.json) here")
    parser.set_defaults(func=run_resnet20)


def run_resnet20(args: argparse.Namespace) -> int:
    from .resnet20 import resnet20_rtl

    text, bit_exact = resnet20_rtl(tuple(args.schemes), args.bits, args.images, args.size, args.array[0], args.array[1],
                                   args.backend, args.seed, args.out)
    print(text)
    return 0 if bit_exact else 1


def add_frac_search(subparsers) -> None:
    parser = subparsers.add_parser("frac-search", help="smallest product fraction bits F keeping each demo model's predictions")
    parser.add_argument("--quick", action="store_true", help="train with the demo's quick epochs")
    parser.add_argument("--from", dest="demo_out", type=Path, default=None,
                        help="demo output folder whose checkpoints/ to search (default: train the models now)")
    parser.add_argument("--epochs", type=_positive, default=None, help="QAT epochs per model (the float baseline trains twice as long)")
    parser.add_argument("--seed", type=_count, default=0, help="seed of the data split and the training (default 0)")
    parser.add_argument("--out", type=Path, default=None, help="also write frac_search.md/.json into this folder")
    parser.set_defaults(func=run_frac_search)


def run_frac_search(args: argparse.Namespace) -> int:
    from .frac_search import frac_search, report, write

    rows = frac_search(quick=args.quick, demo_out=args.demo_out, seed=args.seed, epochs=args.epochs)
    print(report(rows), end="")
    if args.out is not None:
        write(rows, args.out)
    return 0


def add_sqnr(subparsers) -> None:
    from .datasets import DATASETS

    parser = subparsers.add_parser("sqnr", help="per-layer weight SQNR of lsq, pot, post, apot, lcq at 2-6 bits on trained float weights")
    parser.add_argument("--out", type=Path, required=True, help="folder for sqnr*.md/.csv/.json and sqnr.png (replaced atomically)")
    parser.add_argument("--dataset", choices=tuple(DATASETS), default="fashion", help="data set and its network (default fashion)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="a float checkpoint of the network (e.g. an ablation's float_s0.pt); "
                        "default: train the float network now")
    parser.add_argument("--epochs", type=_positive, default=3, help="float epochs when training now (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the float training (default 0)")
    parser.set_defaults(func=run_sqnr)


def run_sqnr(args: argparse.Namespace) -> int:
    import torch

    from golden.layers import load_checkpoint

    from ..output import staged_report
    from ..sqnr import SQNR_BITS, SQNR_SCHEMES, mean_over_layers, model_sqnr, write_sqnr
    from .datasets import dataset
    from .demo import check_output_folder
    from .training import train_float

    data_set = dataset(args.dataset)
    check_output_folder(args.out)
    if args.checkpoint is not None:
        if not args.checkpoint.is_file():
            from golden.errors import ConfigError

            raise ConfigError(f"checkpoint {args.checkpoint} not found")
        model, origin = load_checkpoint(data_set.network(), args.checkpoint).eval(), str(args.checkpoint)
    else:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            model = train_float(data_set.load(args.seed), args.seed, args.epochs, network=data_set.network)
        finally:
            torch.set_num_threads(threads)
        origin = f"float {data_set.network.__name__} trained now ({args.epochs} epochs, seed {args.seed})"
    rows = model_sqnr(model)
    with staged_report(args.out) as writer:
        write_sqnr(writer, rows, f"Weight SQNR of {data_set.title} ({origin})")
    means = mean_over_layers(rows)
    print("mean SQNR over layers (dB, quantizer init):")
    print("bits " + " ".join(f"{s:>6}" for s in SQNR_SCHEMES))
    for b in SQNR_BITS:
        print(f"{b:>4} " + " ".join(f"{means[(s, b)]:6.2f}" for s in SQNR_SCHEMES))
    print(f"wrote {len(writer.files)} files to {args.out}")
    return 0


def add_ablation(subparsers) -> None:
    from .ablation import BOUND_IMAGES, DEFAULT_SEEDS, FLOAT_EPOCHS, QAT_EPOCHS, QAT_IMAGES
    from .datasets import DATASETS

    parser = subparsers.add_parser("ablation", help="the paper's ablation (float, lsq, pot, post, apot, lcq, asq, asq_post) "
                                   "over seeds on Dask, with 95 %% intervals and paired tests against lsq")
    parser.add_argument("--out", type=Path, required=True, help="output folder (replaced atomically)")
    parser.add_argument("--schemes", nargs="+", default=None, help="schemes (default: the seven of the ablation)")
    parser.add_argument("--bits", nargs="+", type=int, default=None, help="bits for every scheme (default: 4 3, and 2 for lsq, pot)")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS), help="seeds (default 0 1 2)")
    parser.add_argument("--dataset", choices=tuple(DATASETS), default="fashion", help="data set (default fashion)")
    parser.add_argument("--float-epochs", type=_positive, default=FLOAT_EPOCHS, help=f"float epochs per seed (default {FLOAT_EPOCHS})")
    parser.add_argument("--qat-epochs", type=_positive, default=QAT_EPOCHS, help=f"QAT epochs per job (default {QAT_EPOCHS})")
    parser.add_argument("--qat-images", type=_positive, default=QAT_IMAGES, help=f"training images of QAT (default {QAT_IMAGES})")
    parser.add_argument("--train-images", type=_positive, default=None, help="use only the first training images (default all)")
    parser.add_argument("--test-images", type=_positive, default=None, help="use only the first test images (default all)")
    parser.add_argument("--bound-images", type=_positive, default=None, help=f"test images of the bound check (default {BOUND_IMAGES})")
    parser.add_argument("--dask", default="local", help="'local' (a LocalCluster, default) or a scheduler address tcp://HOST:8786")
    parser.add_argument("--workers", type=_positive, default=2, help="LocalCluster workers (default 2)")
    parser.set_defaults(func=run_ablation)


def run_ablation(args: argparse.Namespace) -> int:
    from golden.layers import check_scheme

    from .ablation import ABLATION_SCHEMES, DEFAULT_RUNS, AblationOptions
    from .ablation import run_ablation as ablation

    if args.schemes or args.bits:
        schemes = tuple(args.schemes or ABLATION_SCHEMES)
        bits = tuple(args.bits or (4, 3))
        runs = tuple((s, b) for b in bits for s in schemes)
        for scheme, b in runs:
            check_scheme(scheme, b)
    else:
        runs = DEFAULT_RUNS
    extra = {"bound_images": args.bound_images} if args.bound_images else {}
    options = AblationOptions(out=args.out, runs=runs, seeds=tuple(args.seeds), float_epochs=args.float_epochs,
                              qat_epochs=args.qat_epochs, dataset=args.dataset, train_images=args.train_images,
                              test_images=args.test_images, qat_images=args.qat_images, dask=args.dask,
                              workers=args.workers, **extra)
    result = ablation(options)
    print((args.out / "ablation.md").read_text())
    failing = [r["model"] for r in result.summary if r["all_within_bound"] is False]
    if failing:
        print(f"lutmac ablation: layers outside the float-vs-integer bound in {', '.join(failing)}", file=sys.stderr)
        return 1
    return 0


def add_rtl_scale(subparsers) -> None:
    from .rtl_scale import DEFAULT_CHUNK, DEFAULT_IMAGES

    parser = subparsers.add_parser("rtl-scale", help="every model of a demo run through the RTL on many test images, "
                                   "bit-exact at every layer, in chunks on Dask")
    parser.add_argument("--out", type=Path, required=True, help="output folder (replaced atomically)")
    parser.add_argument("--from", dest="demo_out", type=Path, default=Path("out"), help="demo output folder (default out/)")
    parser.add_argument("--models", nargs="+", default=None, help="model names of its networks/ (default: all)")
    parser.add_argument("--rtl-images", type=_positive, default=DEFAULT_IMAGES,
                        help=f"first test images per model (default {DEFAULT_IMAGES})")
    parser.add_argument("--chunk", type=_positive, default=DEFAULT_CHUNK, help=f"images per Dask task (default {DEFAULT_CHUNK})")
    parser.add_argument("--array", type=_array, default=(8, 8), help="accelerator array RxC (default 8x8)")
    parser.add_argument("--dask", default="local", help="'local' (a LocalCluster, default) or a scheduler address tcp://HOST:8786")
    parser.add_argument("--workers", type=_positive, default=2, help="LocalCluster workers (default 2)")
    parser.set_defaults(func=run_rtl_scale)


def run_rtl_scale(args: argparse.Namespace) -> int:
    from .rtl_scale import RtlScaleOptions
    from .rtl_scale import run_rtl_scale as rtl_scale

    options = RtlScaleOptions(out=args.out, demo_out=args.demo_out, models=tuple(args.models) if args.models else None,
                              images=args.rtl_images, chunk=args.chunk, rows=args.array[0], cols=args.array[1],
                              dask=args.dask, workers=args.workers)
    result = rtl_scale(options)
    print((args.out / "rtl_scale.md").read_text())
    if result.failures:
        print("lutmac rtl-scale: checks failed:\n  " + "\n  ".join(result.failures[:20]), file=sys.stderr)
        return 1
    return 0


SUBCOMMANDS: dict[str, Callable] = {"sqnr": add_sqnr, "ablation": add_ablation, "report": add_report, "estimate": add_estimate,
                                   "demo": add_demo, "sim": add_sim, "rtl-scale": add_rtl_scale, "resnet20": add_resnet20,
                                   "frac-search": add_frac_search}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lutmac", description="lutmac: low-bit non-uniform quantization accelerator model")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS.values():
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with removed_on_signal():  # SIGTERM/SIGINT remove the run's staging and temporary folders, then exit
            return args.func(args)
    except LutmacError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"lutmac {args.command}: error: {first_line}", file=sys.stderr)  # one line (torch's messages have many)
        return 2


if __name__ == "__main__":
    sys.exit(main())
