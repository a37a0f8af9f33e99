"""The main job (``lutmac demo``): train, quantize, export, run the integer model and the RTL, report.

1. **Data** — Fashion-MNIST's official split (:mod:`reports.fashion`, FashionNet) for the main job;
   scikit-learn's digits, fixed seeded split (:mod:`reports.digits`, DigitsNet) for ``--quick`` and CI
   (:mod:`.datasets` holds each one's network and training recipe).
2. **Training** on the CPU: the float network, then QAT per (scheme, bits) starting from the
   float weights (``golden.layers.quantize_model`` + ``calibrate``), first and last layer at 8 bits.
   Every model is saved with ``golden.layers.save_checkpoint`` into the output folder, reloaded
   with ``weights_only=True`` into a fresh model, and the reloaded model is the one exported.
3. **Export** to golden's integer network (``golden.export.export_model``).
4. **Integer inference** on the whole test set: accuracy next to the fake-quant accuracy, the
   predictions that changed, and per layer (on the recipe's first test images) the float-vs-integer
   bound (``golden.bounds``): every
   layer runs on the integer model's own input, and its codes may differ from the fake-quant
   layer's only where a rounding boundary lies within the computed bound.
5. **RTL**: the first ``rtl_images`` test images, one image per pass, through every layer on
   the accelerator RTL (Verilator harness by default), bit-exact against golden at every
   layer; measured cycles per layer and image next to ``hw.cycles.gemm_cycles``.  Every model's
   accelerators are sized for all the models (:func:`.rtl.shared_designs`, planned from the
   models' calibrated starting points right after the float baseline), so each datapath is
   converted and built once.  Energy per
   inference from :mod:`reports.estimator` (PE kind per scheme,
   :func:`reports.app.pricing.priced_kinds`), priced from Yosys synthesis of the array
   cores the models need (synthesized on demand).
6. **Report**: ``summary.md``, tables as Markdown/CSV/JSON, plots, checkpoints and exported
   networks, staged and moved into the output folder only when the run succeeded.

This module holds the options, the results and the flow (training on the main thread, the RTL
and Yosys each on a thread of their own); the steps live beside it: :mod:`.training`,
:mod:`.agreement` (step 4), :mod:`.rtl`, :mod:`.pricing` and :mod:`.synth_cache` (step 5),
:mod:`.demo_report` (step 6).

Bits per scheme (default): 4 and 3 for every scheme, and 2 bits for pot, where they mean ternary
weights ``{-alpha, 0, +alpha}``.  Every scheme supports 2 bits (``--bits 4 3 2`` runs them all), but
at 2 bits post and asq_post have POT's ternary levels (a sign and one exponent bit, one exponent
value reserved for zero), APoT has a single additive term (power-of-two levels again) and LCQ's
weights are uniform ternary (only its activations are companded); lsq/asq at 2 bits are left out
to keep the default run short (each model's body datapath costs a Verilator build and its Yosys array cores).
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from golden.errors import ConfigError
from golden.export import export_model
from golden.integer import IntegerNetwork
from golden.layers import SCHEMES, check_scheme, quantize_model
from golden.spec import TrainingScheme
from sim.network import BACKENDS

from .. import digits
from ..energy import DEFAULT_SYNTH_PATH
from ..estimator import OWN_ARRAY, HardwareConfig
from ..output import check_output_folder, staged_report
from .agreement import evaluate_integer
from .datasets import Dataset, Recipe, dataset
from .demo_report import write_demo_report
from .pricing import energy_rows, synth_keys
from .rtl import DEFAULT_RTL_IMAGES, RtlResult, run_rtl, shared_designs
from .synth_cache import SynthesisCache
from .training import model_name, model_seed, qat_start, reload, train_float, train_quantized

DEFAULT_BITS = {scheme: (4, 3) for scheme in SCHEMES} | {TrainingScheme.POT: (4, 3, 2)}
QUICK_SCHEMES = (TrainingScheme.POST,)
QUICK_BITS = (4,)
RTL_THREADS = 2  # the demo's RTL jobs at once
#: the RTL and synthesis threads, and the conversions, Verilator builds and Yosys runs they start, yield the cores
#: to the main thread's training and integer runs: those are the demo's critical path (the RTL work is shorter)
BACKGROUND_NICENESS = 10


@dataclass(frozen=True)
class DemoOptions:
    out: Path
    schemes: tuple[str, ...] | None = None  # None: every scheme (quick: QUICK_SCHEMES)
    bits: tuple[int, ...] | None = None  # None: DEFAULT_BITS per scheme (quick: QUICK_BITS)
    rows: int = 8
    cols: int = 8
    seed: int = 0
    epochs: int | None = None  # QAT epochs per model; the float baseline trains twice as long
    rtl_images: int = DEFAULT_RTL_IMAGES
    backend: str = "verilator"
    quick: bool = False
    dataset: str | None = None  # None: fashion (quick: digits)
    synth: Path = DEFAULT_SYNTH_PATH
    progress: bool | None = None  # None: a progress bar when stderr is a terminal

    def runs(self) -> list[tuple[str, int]]:
        """The (scheme, bits) models to train, validated (unknown scheme / unsupported bits raise)."""
        schemes = self.schemes or (QUICK_SCHEMES if self.quick else SCHEMES)
        runs = []
        for scheme in schemes:
            bits = self.bits or (QUICK_BITS if self.quick else DEFAULT_BITS.get(scheme, QUICK_BITS))
            for b in bits:
                check_scheme(scheme, b)
                if (scheme, b) not in runs:
                    runs.append((scheme, b))
        return runs

    @property
    def source(self) -> Dataset:
        return dataset(self.dataset or ("digits" if self.quick else "fashion"))

    @property
    def recipe(self) -> Recipe:
        return self.source.quick_recipe if self.quick else self.source.recipe

    @property
    def qat_epochs(self) -> int:
        return self.epochs if self.epochs is not None else self.recipe.qat_epochs

    @property
    def float_epochs(self) -> int:
        return 2 * self.epochs if self.epochs is not None else self.recipe.float_epochs

    def check(self) -> None:
        """Every option problem as a LutmacError, before any work starts."""
        self.runs()
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend {self.backend!r} is not supported; expected one of {BACKENDS}")
        for name in ("rtl_images", "epochs"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < (0 if name == "rtl_images" else 1)):
                raise ConfigError(f"{name} must be a {'non-negative' if name == 'rtl_images' else 'positive'} int, got {value!r}")
        self.source.check_image_count(self.rtl_images)
        HardwareConfig(self.rows, self.cols, OWN_ARRAY)  # the RTL's array limits
        check_output_folder(self.out)
        SynthesisCache(self.synth).missing(set())  # a broken synthesis file fails now, not after training


# ----------------------------------------------------------------------------------------------- one model


@dataclass
class ModelResult:
    scheme: str
    bits: int
    fake_quant_accuracy: float
    integer_accuracy: float
    changed_predictions: int
    test_images: int
    layers: list[dict]
    export_notes: list[str]
    network_file: str
    checkpoint_file: str
    rtl: RtlResult | None = None
    rtl_skipped: str = ""
    integer_rtl_predictions: list[int] = field(default_factory=list)
    energy: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return model_name(self.scheme, self.bits)

    @property
    def within_bound(self) -> bool:
        return all(row["within_bound"] for row in self.layers)


# ----------------------------------------------------------------------------------------------- the demo


@dataclass
class DemoResult:
    options: DemoOptions
    float_accuracy: float
    models: list[ModelResult]
    seconds: dict[str, float]
    files: list[str]

    @property
    def failures(self) -> list[str]:
        found = [f"{m.name}: layer {row['layer']} outside the float-vs-integer bound"
                 for m in self.models for row in m.layers if not row["within_bound"]]
        found += [f"{m.name}: RTL {failure}" for m in self.models if m.rtl is not None for failure in m.rtl.failures]
        return found


class _Progress:
    """A tqdm bar shared by the training thread and the RTL worker (or nothing)."""

    def __init__(self, total: int, enabled: bool | None):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="lutmac demo", unit="step", disable=enabled is False if enabled is not None else None,
                        dynamic_ncols=True)
        self.lock = threading.Lock()

    def update(self, steps: int = 1) -> None:
        with self.lock:
            self.bar.update(steps)

    def status(self, text: str) -> None:
        with self.lock:
            self.bar.set_postfix_str(text, refresh=True)

    def close(self) -> None:
        self.bar.close()


def run_demo(options: DemoOptions) -> DemoResult:
    """The whole flow of the module docstring; the output folder changes only if the run completes."""
    options.check()
    runs = options.runs()
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic, and the other core builds the RTL meanwhile
    total = options.float_epochs + len(runs) * (options.qat_epochs + 1 + (1 if options.rtl_images else 0))
    progress = _Progress(total, options.progress)
    synth = SynthesisCache(options.synth)
    # RTL_THREADS build and run the RTL (mostly Verilator builds: two keep both cores busy once training is done),
    # one runs Yosys, while this one trains the next model
    rtl_worker = concurrent.futures.ThreadPoolExecutor(max_workers=RTL_THREADS, thread_name_prefix="lutmac-rtl",
                                                       initializer=background_priority)
    synth_worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="lutmac-synth",
                                                         initializer=background_priority)
    seconds = {"train": 0.0, "integer": 0.0}
    try:
        with staged_report(options.out) as writer:
            source = options.source
            data = source.load(options.seed)
            qat_images = options.recipe.qat_images
            qat_data = digits.ImageData(data.x_train[:qat_images], data.y_train[:qat_images], data.x_test, data.y_test)
            progress.status("float baseline")
            t0 = time.perf_counter()
            float_model = train_float(data, options.seed, options.float_epochs, progress, network=source.network)
            checkpoints = writer.staging / "checkpoints"
            checkpoints.mkdir()
            float_model = reload(float_model, checkpoints / "float.pt", source.network())
            writer.files.append("checkpoints/float.pt")
            float_accuracy = digits.accuracy(digits.predict(float_model, data.x_test), data.y_test)
            seconds["train"] += time.perf_counter() - t0
            floor = shared_designs([export_model(qat_start(float_model, qat_data, scheme, bits).eval())[0]
                                    for scheme, bits in runs], options.rows, options.cols) if options.rtl_images else None
            (writer.staging / "networks").mkdir()
            results: list[ModelResult] = []
            pending: list[concurrent.futures.Future] = []
            for scheme, bits in runs:
                name = model_name(scheme, bits)
                progress.status(f"training {name}")
                t0 = time.perf_counter()
                seed = model_seed(options.seed, scheme, bits)
                model = train_quantized(float_model, qat_data, scheme, bits, seed, options.qat_epochs, progress)
                model = reload(model, checkpoints / f"{name}.pt", quantize_model(float_model, scheme, bits))
                seconds["train"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                network, report = export_model(model)
                network.save(writer.staging / "networks" / f"{name}.json")
                writer.files += [f"checkpoints/{name}.pt", f"networks/{name}.json"]
                fake_acc, int_acc, changed, layers = evaluate_integer(model, network, data,
                                                                      bound_images=options.recipe.bound_images)
                result = ModelResult(scheme, bits, fake_acc, int_acc, changed, len(data.y_test), layers,
                                     list(report.approximations), f"networks/{name}.json", f"checkpoints/{name}.pt")
                results.append(result)
                seconds["integer"] += time.perf_counter() - t0
                progress.update()
                pending.append(synth_worker.submit(synth.ensure, synth_keys(network, scheme, options.rows, options.cols)))
                if options.rtl_images:
                    pending.append(rtl_worker.submit(_rtl_job, result, network, data, options, floor, progress))
            for future in pending:
                future.result()
            progress.status("energy and report")
            synthesis = synth.synthesis()
            for result in results:
                network = IntegerNetwork.load(writer.staging / result.network_file)
                result.energy = energy_rows(network, result.scheme, result.bits, options.rows, options.cols, synthesis,
                                            source.network(), source.input_shape)
            seconds["synthesis"] = synth.seconds
            seconds["rtl"] = sum(r.rtl.build_seconds + r.rtl.wall_seconds for r in results if r.rtl)
            seconds["total"] = time.perf_counter() - started
            demo = DemoResult(options, float_accuracy, results, seconds, [])
            write_demo_report(writer, demo)
            demo.files = list(writer.files)
    finally:
        for worker in (rtl_worker, synth_worker):
            worker.shutdown(wait=True, cancel_futures=True)
        progress.close()
        torch.set_num_threads(threads)
    return demo


def background_priority() -> None:
    """A worker thread's initializer: lower this thread's scheduling priority by :data:`BACKGROUND_NICENESS`.

    Linux keeps a niceness per thread, and the processes a thread starts inherit it. Where the thread
    cannot be addressed (no per-thread priorities), it runs at normal priority: only the wall time differs.
    """
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + BACKGROUND_NICENESS)
    except OSError:
        pass


def _rtl_job(result: ModelResult, network: IntegerNetwork, data: digits.ImageData, options: DemoOptions,
             floor: dict, progress: _Progress) -> None:
    """On the RTL thread: the model's first test images through the RTL on the shared designs (``floor``),
    and golden's predictions for them."""
    progress.status(f"RTL {result.name}")
    x = network.quantize_input(data.x_test[: options.rtl_images].double().numpy())
    result.rtl = run_rtl(network, x, options.rows, options.cols, options.backend, floor=floor)
    golden = network.run(x)[network.layers[-1].name].real().argmax(axis=1)
    result.integer_rtl_predictions = [int(p) for p in golden]
    progress.update()

