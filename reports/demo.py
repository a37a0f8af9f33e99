"""The main job (``lutmac demo``): train, quantize, export, run the integer model and the RTL, report.

1. **Data** — scikit-learn's digits, fixed seeded split (:mod:`reports.digits`).
2. **Training** on the CPU: the float DigitsNet, then QAT per (scheme, bits) starting from the
   float weights (``golden.layers.quantize_model`` + ``calibrate``), first and last layer at 8 bits.
   Every model is saved with ``golden.layers.save_checkpoint`` into the output folder, reloaded
   with ``weights_only=True`` into a fresh model, and the reloaded model is the one exported.
3. **Export** to golden's integer network (``golden.export.export_model``).
4. **Integer inference** on the whole test set: accuracy next to the fake-quant accuracy, the
   predictions that changed, and per layer the float-vs-integer bound (``golden.bounds``): every
   layer runs on the integer model's own input, and its codes may differ from the fake-quant
   layer's only where a rounding boundary lies within the computed bound.
5. **RTL**: the first ``rtl_images`` test images, one image per pass, through every layer on
   the accelerator RTL (Verilator harness by default), bit-exact against golden at every
   layer; measured cycles per layer and image next to ``hw.cycles.gemm_cycles``.  Energy per
   inference from :mod:`reports.estimator` (PE kind per scheme, :data:`PE_KINDS_OF_SCHEME`),
   priced from Yosys synthesis of the array cores the models need (synthesized on demand).
6. **Report**: ``summary.md``, tables as Markdown/CSV/JSON, plots, checkpoints and exported
   networks, staged and moved into the output folder only when the run succeeded.

Bits per scheme (default): 4 and 3 for every scheme, and 2 bits for pot, where they mean ternary
weights ``{-alpha, 0, +alpha}``.  Every scheme supports 2 bits (``--bits 4 3 2`` runs them all), but
at 2 bits post and asq_post have POT's ternary levels (a sign and one exponent bit, one exponent
value reserved for zero), APoT has a single additive term (power-of-two levels again) and LCQ's
weights are uniform ternary (only its activations are companded); lsq/asq at 2 bits are left out
to keep the default run within 15 minutes on 2 cores (each model costs up to two Verilator builds
and its Yosys array cores).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

import hw
from golden.bounds import (
    FLOAT32_UNIT_ROUNDOFF,
    bias_magnitude,
    codes_within_bound,
    fake_quant_segment,
    float_path_error,
    layer_bound,
)
from golden.errors import ConfigError
from golden.export import export_model
from golden.integer import IntegerLayer, IntegerNetwork
from golden.layers import (
    SCHEMES,
    calibrate,
    check_scheme,
    clamp_scales_,
    load_checkpoint,
    quantize_model,
    save_checkpoint,
)
from golden.spec import accumulator_bits
from golden.stages import Accumulators, Codes
from sim.network import BACKENDS, PE_KIND_FOR_SCHEME, NetworkRun, array_datapath, run_network_rtl

from . import digits
from .energy import DEFAULT_SYNTH_PATH, Synthesis, hw_stamp_matches, load_synthesis
from .estimator import OWN_ARRAY, HardwareConfig, asq_stage_energy, estimate
from .networks import trace
from .output import json_text, markdown_table, staged_report

DEFAULT_BITS = {scheme: (4, 3) for scheme in SCHEMES} | {"pot": (4, 3, 2)}
QUICK_SCHEMES = ("post",)
QUICK_BITS = (4,)
FLOAT_EPOCHS, QAT_EPOCHS = 30, 15
QUICK_FLOAT_EPOCHS, QUICK_QAT_EPOCHS = 10, 4
FLOAT_LR, QAT_LR = 3e-3, 1e-3
CALIBRATION_IMAGES = 256
DEFAULT_RTL_IMAGES = 4
#: The PE kind that runs each scheme's middle layers (the first/last layers are 8-bit ``int``);
#: POST models are also priced on the per-PE-LUT variant for comparison.
PE_KINDS_OF_SCHEME = {"lsq": ("int",), "asq": ("int",), "apot": ("int",), "pot": ("pot",),
                      "post": ("post_shared", "post_lut"), "asq_post": ("post_shared", "post_lut"), "lcq": ("lcq",)}
DEMO_ENERGY_PARTS = ("mac", "register", "sram", "dram", "asq")
SYNTH_ARRAY = 4  # array cores are synthesized at 4x4; energies are per PE relative to the int 8-bit anchor
SYNTH_CACHE_NAME = "demo"


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
    def qat_epochs(self) -> int:
        return self.epochs if self.epochs is not None else (QUICK_QAT_EPOCHS if self.quick else QAT_EPOCHS)

    @property
    def float_epochs(self) -> int:
        if self.epochs is not None:
            return 2 * self.epochs
        return QUICK_FLOAT_EPOCHS if self.quick else FLOAT_EPOCHS

    def check(self) -> None:
        """Every option problem as a LutmacError, before any work starts."""
        self.runs()
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend {self.backend!r} is not supported; expected one of {BACKENDS}")
        for name in ("rtl_images", "epochs"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < (0 if name == "rtl_images" else 1)):
                raise ConfigError(f"{name} must be a {'non-negative' if name == 'rtl_images' else 'positive'} int, got {value!r}")
        HardwareConfig(self.rows, self.cols, OWN_ARRAY)  # the RTL's array limits
        SynthesisCache(self.synth).missing(set())  # a broken synthesis file fails now, not after training
        check_output_folder(self.out)


def check_output_folder(out: Path) -> None:
    """Raise ConfigError unless ``out`` is (or can be made) a writable folder whose parent takes staging files."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output folder {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for folder in (out, out.parent):
            with tempfile.TemporaryFile(dir=folder):
                pass
    except OSError as error:
        raise ConfigError(f"output folder {out} is not writable: {error.strerror or error}") from None


def model_name(scheme: str, bits: int) -> str:
    return f"{scheme}_w{bits}"


def model_seed(seed: int, scheme: str, bits: int) -> int:
    """A per-model seed that does not depend on which other models run (crc32, not hash())."""
    return (seed * 1_000_003 + zlib.crc32(model_name(scheme, bits).encode())) % (1 << 31)


# ----------------------------------------------------------------------------------------------- training


def train_float(data: digits.DigitsData, seed: int, epochs: int, progress=None) -> digits.DigitsNet:
    torch.manual_seed(seed)
    model = digits.DigitsNet()
    digits.train(model, data, epochs, FLOAT_LR, seed=seed, progress=progress)
    return model


def train_quantized(float_model: nn.Module, data: digits.DigitsData, scheme: str, bits: int, seed: int, epochs: int,
                    progress=None) -> nn.Module:
    """QAT from the float weights: quantize, calibrate on training images, train with clamped scales."""
    torch.manual_seed(seed)
    model = quantize_model(float_model, scheme, bits)
    calibrate(model, data.x_train[:CALIBRATION_IMAGES])
    digits.train(model, data, epochs, QAT_LR, seed=seed, progress=progress, after_step=clamp_scales_)
    return model


def reload(model: nn.Module, path: Path, fresh: nn.Module) -> nn.Module:
    """Save ``model``, load it back into ``fresh`` (weights_only=True) and return the reloaded model."""
    save_checkpoint(model, path)
    return load_checkpoint(fresh, path).eval()


# ----------------------------------------------------------------------------------------------- integer vs fake-quant


def layer_agreement(model: nn.Module, network: IntegerNetwork, outputs: dict) -> list[dict]:
    """Per layer: integer vs fake-quant on the integer model's own input, and the bound's verdict."""
    layers = {layer.name: (index, layer) for index, layer in enumerate(network.layers)}
    rows = []
    for name, module, post, consumer in digits.segments(model):
        index, layer = layers[name]
        x = outputs[network.input_name(index)]
        real = fake_quant_segment(module, post, consumer, x)
        extra = float_path_error(layer, x, bias_magnitude(module, post))
        out = outputs[name]
        bound = layer_bound(layer, x, out, real, extra, relative_slack=4 * FLOAT32_UNIT_ROUNDOFF)
        row = {"layer": name, "output": layer.output.mode, "values": int(np.size(real.value))}
        if isinstance(out, Accumulators):
            error = np.abs(out.real() - real.value)
            row |= {"codes_differ": 0, "near_boundary": 0, "max_code_diff": 0,
                    "max_error_over_bound": float(np.max(error / bound.value)), "within_bound": bool(np.all(error <= bound.value))}
        else:
            diff = np.abs(out.codes - real.codes)
            row |= {"codes_differ": int(np.count_nonzero(diff)), "near_boundary": int(np.count_nonzero(bound.boundaries_near)),
                    "max_code_diff": int(diff.max()), "max_error_over_bound": None,
                    "within_bound": codes_within_bound(out.codes, real.codes, bound)}
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------- RTL


def shared_reduction(network: IntegerNetwork) -> int:
    """The reduction length every accelerator of a model is sized for: the network's longest.

    ``sim.network.plan_arrays`` would size each accelerator for its own layers; one bound for all
    makes the designs of different models identical (lsq/asq, post/asq_post, every model's 8-bit
    edge layers), so they share Verilator builds.
    """
    return max(layer.reduction_length for layer in network.layers)


@dataclass
class RtlResult:
    backend: str
    images: int
    layers: list[dict]  # per layer: stage, bit_exact, mismatches, cycles per image, expected, macs, array
    agrees: bool  # every layer's RTL output equals golden's run of the network, image by image
    predictions: list[int]
    build_seconds: float
    sim_seconds: float
    wall_seconds: float
    failures: list[str] = field(default_factory=list)

    @property
    def bit_exact(self) -> bool:
        return self.agrees and all(row["bit_exact"] for row in self.layers)

    @property
    def cycles_per_image(self) -> float:
        return float(sum(row["cycles_per_image"] for row in self.layers))


def _layer_rows(run: NetworkRun, images: int) -> list[dict]:
    """Per layer: the run's totals over ``images`` images as per-image figures."""
    return [{
        "layer": layer.name, "stage": layer.stage, "array": layer.array, "bit_exact": layer.bit_exact,
        "mismatches": layer.mismatches, "cycles_per_image": layer.cycles / images,
        "expected_cycles_per_image": layer.expected_cycles / images,
        "program_cycles_per_image": layer.program_cycles / images,
        "accelerator_runs": layer.runs // images, "macs_per_image": layer.macs // images,
    } for layer in run.layers]  # fmt: skip


def run_rtl(network: IntegerNetwork, x: Codes, rows: int, cols: int, backend: str = "verilator") -> RtlResult:
    """``x`` (codes of the network input) through the RTL one image at a time; see the module docstring."""
    run = run_network_rtl(network, x, backend, rows, cols, per_image=True, max_reduction=shared_reduction(network))
    images = x.codes.shape[0]
    predictions = [int(p) for p in run.outputs[network.layers[-1].name].real().argmax(axis=1)]
    return RtlResult(backend, images, _layer_rows(run, images), run.matches_golden_run, predictions,
                     run.build_seconds, run.sim_seconds, run.wall_seconds, run.failures)


# ----------------------------------------------------------------------------------------------- energy


def layer_hardware(layer: IntegerLayer, rows: int, cols: int, middle_kind: str | None = None) -> HardwareConfig:
    """The estimator's design point for one exported layer (``middle_kind`` overrides a non-int PE kind)."""
    cfg = array_datapath(layer.cfg)
    kind = PE_KIND_FOR_SCHEME[cfg.scheme]
    if middle_kind is not None and kind != "int":
        kind = middle_kind
    return HardwareConfig(rows, cols, OWN_ARRAY, kind, cfg.weight.bits, cfg.act_bits, cfg.frac_bits)


def synth_keys(network: IntegerNetwork, scheme: str, rows: int, cols: int) -> set[tuple[str, int, int, int]]:
    keys = {("int", 8, 8, 0)}  # the energy anchor
    for kind in PE_KINDS_OF_SCHEME[scheme]:
        keys |= {layer_hardware(layer, rows, cols, kind).synth_key for layer in network.layers}
    return keys


class SynthesisCache:
    """Array cores synthesized on demand (4x4, Yosys via ``hw.synth``) next to ``make synth``'s results.

    Units come from ``base`` (``build/synth/synth.json`` when ``make synth`` ran) and from the
    cache file ``base.parent / demo / synth.json``, which gains every unit synthesized here.
    """

    def __init__(self, base: Path):
        self.base = Path(base)
        self.path = self.base.parent / SYNTH_CACHE_NAME / "synth.json"
        self.lock = threading.Lock()
        self.seconds = 0.0
        self.warned = False

    @staticmethod
    def _stamped_here(path: Path) -> bool | None:
        """Whether ``path`` is stamped with the hw sources imported now (None: missing, unreadable or unstamped)."""
        try:
            return hw_stamp_matches(json.loads(path.read_text()))
        except (OSError, ValueError):
            return None

    def _cached(self) -> Synthesis | None:
        """The units synthesized here, unless missing, unreadable or made from other hw sources."""
        return load_synthesis(self.path) if self._stamped_here(self.path) else None

    def _loaded(self) -> list[Synthesis]:
        """``make synth``'s results (a broken file raises; a stale one is passed over) and the units cached here."""
        loaded = []
        if self.base.is_file():
            if self._stamped_here(self.base) is False:
                if not self.warned:
                    print(f"lutmac demo: {self.base} was synthesized from other hw sources: the array cores this run "
                          "needs are synthesized now (`make synth` refreshes it)", file=sys.stderr)
                    self.warned = True
            else:
                loaded.append(load_synthesis(self.base))
        cached = self._cached()
        return loaded + ([cached] if cached is not None else [])

    def synthesis(self) -> Synthesis:
        loaded = self._loaded()
        if not loaded:
            raise ConfigError(f"no synthesis results in {self.base} or {self.path}")
        return Synthesis(loaded[0].yosys_version, tuple(unit for s in loaded for unit in s.units))

    def missing(self, keys: set) -> list[tuple[str, int, int, int]]:
        have = {unit.key for synthesis in self._loaded() for unit in synthesis.arrays}
        return sorted(set(keys) - have)

    def ensure(self, keys: set) -> None:
        """Synthesize the array cores of ``keys`` that neither file has (one at a time, cached as they finish)."""
        from hw.config import ArrayConfig
        from hw.synth import ARRAY_REDUCTION, SynthUnit, synthesize, yosys_version

        with self.lock:
            for kind, w, a, f in self.missing(keys):
                cfg = ArrayConfig(kind, SYNTH_ARRAY, SYNTH_ARRAY, w, a, frac_bits=f, max_reduction=ARRAY_REDUCTION)
                name = f"array_{kind}_w{w}a{a}f{f}_{SYNTH_ARRAY}x{SYNTH_ARRAY}"
                start = time.perf_counter()
                with tempfile.TemporaryDirectory(prefix="lutmac-demo-synth-") as work:
                    record = synthesize(SynthUnit(name, "array", cfg), Path(work))
                self.seconds += time.perf_counter() - start
                cached = json.loads(self.path.read_text()) if self._cached() is not None else {"units": []}
                cached |= {"yosys_version": yosys_version(), "hw_fingerprint": hw.SOURCE_FINGERPRINT}
                cached["units"] = [unit for unit in cached["units"] if unit["name"] != name] + [record]
                self.path.parent.mkdir(parents=True, exist_ok=True)
                from .output import write_atomic

                write_atomic(self.path, json_text(cached))


def energy_rows(network: IntegerNetwork, scheme: str, bits: int, rows: int, cols: int, synthesis: Synthesis) -> list[dict]:
    """Per (PE kind variant, layer): the estimator's cycles and energy of one inference (batch 1)."""
    shapes = {layer.name: layer for layer in trace(digits.DigitsNet(), (1, 1, 8, 8))}
    out = []
    for kind in PE_KINDS_OF_SCHEME[scheme]:
        for layer in network.layers:
            config = layer_hardware(layer, rows, cols, kind)
            shape = shapes[layer.name]
            (row,), _ = estimate([shape], config, synthesis)
            passes = 2 if layer.signed_input else 1  # a signed input runs as two unsigned passes
            adapter = layer.output.adapter
            asq_nj = 0.0 if adapter is None else 1e-3 * sum(asq_stage_energy(
                [w.shape for w in adapter.weights], shape.cout, shape.hout * shape.wout,
                accumulator_bits(config.datapath, shape.k), config.ofmap_kb).values())
            out.append({"model": model_name(scheme, bits), "scheme": scheme, "bits": bits, "pe_kind": kind,
                        "layer": layer.name, "layer_pe": config.pe_kind, "weight_bits": config.weight_bits,
                        "act_bits": config.act_bits, "frac_bits": config.frac_bits, "macs": row["macs"] * passes,
                        "cycles": row["cycles"] * passes, "mac_nj": row["mac_nj"] * passes,
                        "register_nj": row["register_nj"] * passes, "sram_nj": row["sram_nj"] * passes,
                        "dram_nj": row["dram_nj"] * passes, "asq_nj": asq_nj,
                        "energy_nj": row["energy_nj"] * passes + asq_nj})
    return out


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


def evaluate_integer(model: nn.Module, network: IntegerNetwork, data: digits.DigitsData) -> tuple[float, float, int, list[dict]]:
    """(fake-quant accuracy, integer accuracy, changed predictions, per-layer agreement) on the whole test set."""
    fake = digits.predict(model, data.x_test)
    outputs = network.run(data.x_test.double().numpy())
    integer = torch.from_numpy(outputs[network.layers[-1].name].real().argmax(axis=1))
    return (digits.accuracy(fake, data.y_test), digits.accuracy(integer, data.y_test),
            int((fake != integer).sum()), layer_agreement(model, network, outputs))


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
    # one thread builds and runs the RTL, one runs Yosys, while this one trains the next model
    rtl_worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="lutmac-rtl")
    synth_worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="lutmac-synth")
    seconds = {"train": 0.0, "integer": 0.0}
    try:
        with staged_report(options.out) as writer:
            data = digits.load_digits_split(options.seed)
            progress.status("float baseline")
            t0 = time.perf_counter()
            float_model = train_float(data, options.seed, options.float_epochs, progress)
            checkpoints = writer.staging / "checkpoints"
            checkpoints.mkdir()
            float_model = reload(float_model, checkpoints / "float.pt", digits.DigitsNet())
            writer.files.append("checkpoints/float.pt")
            float_accuracy = digits.accuracy(digits.predict(float_model, data.x_test), data.y_test)
            seconds["train"] += time.perf_counter() - t0
            (writer.staging / "networks").mkdir()
            results: list[ModelResult] = []
            pending: list[concurrent.futures.Future] = []
            for scheme, bits in runs:
                name = model_name(scheme, bits)
                progress.status(f"training {name}")
                t0 = time.perf_counter()
                seed = model_seed(options.seed, scheme, bits)
                model = train_quantized(float_model, data, scheme, bits, seed, options.qat_epochs, progress)
                model = reload(model, checkpoints / f"{name}.pt", quantize_model(float_model, scheme, bits))
                seconds["train"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                network, report = export_model(model)
                network.save(writer.staging / "networks" / f"{name}.json")
                writer.files += [f"checkpoints/{name}.pt", f"networks/{name}.json"]
                fake_acc, int_acc, changed, layers = evaluate_integer(model, network, data)
                result = ModelResult(scheme, bits, fake_acc, int_acc, changed, len(data.y_test), layers,
                                     list(report.approximations), f"networks/{name}.json", f"checkpoints/{name}.pt")
                results.append(result)
                seconds["integer"] += time.perf_counter() - t0
                progress.update()
                pending.append(synth_worker.submit(synth.ensure, synth_keys(network, scheme, options.rows, options.cols)))
                if options.rtl_images:
                    pending.append(rtl_worker.submit(_rtl_job, result, network, data, options, progress))
            for future in pending:
                future.result()
            progress.status("energy and report")
            synthesis = synth.synthesis()
            for result in results:
                network = IntegerNetwork.load(writer.staging / result.network_file)
                result.energy = energy_rows(network, result.scheme, result.bits, options.rows, options.cols, synthesis)
            seconds["synthesis"] = synth.seconds
            seconds["rtl"] = sum(r.rtl.build_seconds + r.rtl.wall_seconds for r in results if r.rtl)
            seconds["total"] = time.perf_counter() - started
            demo = DemoResult(options, float_accuracy, results, seconds, [])
            write_report(writer, demo)
            demo.files = list(writer.files)
    finally:
        for worker in (rtl_worker, synth_worker):
            worker.shutdown(wait=True, cancel_futures=True)
        progress.close()
        torch.set_num_threads(threads)
    return demo


def _rtl_job(result: ModelResult, network: IntegerNetwork, data: digits.DigitsData, options: DemoOptions,
             progress: _Progress) -> None:
    """On the RTL thread: the model's first test images through the RTL, and golden's predictions for them."""
    progress.status(f"RTL {result.name}")
    x = network.quantize_input(data.x_test[: options.rtl_images].double().numpy())
    result.rtl = run_rtl(network, x, options.rows, options.cols, options.backend)
    golden = network.run(x)[network.layers[-1].name].real().argmax(axis=1)
    result.integer_rtl_predictions = [int(p) for p in golden]
    progress.update()


# ----------------------------------------------------------------------------------------------- report


def accuracy_rows(demo: DemoResult) -> list[dict]:
    rows = [{"model": "float", "scheme": "float", "bits": 32, "fake_quant_accuracy": demo.float_accuracy,
             "integer_accuracy": None, "changed_predictions": None, "layers_within_bound": None}]
    for m in demo.models:
        rows.append({"model": m.name, "scheme": m.scheme, "bits": m.bits, "fake_quant_accuracy": m.fake_quant_accuracy,
                     "integer_accuracy": m.integer_accuracy, "changed_predictions": m.changed_predictions,
                     "layers_within_bound": f"{sum(r['within_bound'] for r in m.layers)}/{len(m.layers)}"})
    return rows


def bound_rows(demo: DemoResult) -> list[dict]:
    return [{"model": m.name, **row} for m in demo.models for row in m.layers]


def rtl_rows(demo: DemoResult) -> list[dict]:
    rows = []
    for m in demo.models:
        if m.rtl is None:
            continue
        estimated = {row["layer"]: row["cycles"] for row in m.energy if row["pe_kind"] == PE_KINDS_OF_SCHEME[m.scheme][0]}
        for row in m.rtl.layers:
            rows.append({"model": m.name, **row, "estimator_cycles": estimated.get(row["layer"])})
    return rows


def rtl_summary_rows(demo: DemoResult) -> list[dict]:
    rows = []
    for m in demo.models:
        if m.rtl is None:
            rows.append({"model": m.name, "backend": "-", "images": 0, "bit_exact_layers": "-", "predictions_agree": "-",
                         "cycles_per_image": None, "build_s": None, "sim_s": None, "note": m.rtl_skipped or "not run"})
            continue
        agree = sum(a == b for a, b in zip(m.rtl.predictions, m.integer_rtl_predictions, strict=True))
        exact = sum(row["bit_exact"] for row in m.rtl.layers)
        rows.append({"model": m.name, "backend": m.rtl.backend, "images": m.rtl.images,
                     "bit_exact_layers": f"{exact}/{len(m.rtl.layers)}", "predictions_agree": f"{agree}/{m.rtl.images}",
                     "cycles_per_image": m.rtl.cycles_per_image, "build_s": m.rtl.build_seconds, "sim_s": m.rtl.sim_seconds,
                     "note": "bit-exact" if m.rtl.bit_exact else "; ".join(m.rtl.failures[:3])})
    return rows


def energy_summary_rows(demo: DemoResult) -> list[dict]:
    rows = []
    for m in demo.models:
        for kind in PE_KINDS_OF_SCHEME[m.scheme]:
            layers = [row for row in m.energy if row["pe_kind"] == kind]
            rows.append({"model": m.name, "scheme": m.scheme, "bits": m.bits, "pe_kind": kind,
                         "macs": sum(r["macs"] for r in layers), "estimated_cycles": sum(r["cycles"] for r in layers),
                         "rtl_cycles": m.rtl.cycles_per_image if m.rtl and kind == PE_KINDS_OF_SCHEME[m.scheme][0] else None,
                         **{f"{part}_nj": sum(r[f"{part}_nj"] for r in layers) for part in DEMO_ENERGY_PARTS},
                         "compute_nj": sum(r["mac_nj"] + r["register_nj"] for r in layers),
                         "energy_nj": sum(r["energy_nj"] for r in layers)})
    return rows


def accuracy_figure(demo: DemoResult):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    schemes = list(dict.fromkeys(m.scheme for m in demo.models))
    for index, scheme in enumerate(schemes):
        models = sorted((m for m in demo.models if m.scheme == scheme), key=lambda m: m.bits)
        # schemes often tie on a small test set: a small offset and a marker each keep every one visible
        offset = 0.03 * (index - (len(schemes) - 1) / 2)
        ax.plot([m.bits + offset for m in models], [100 * m.integer_accuracy for m in models],
                marker="osv^DPX*"[index % 8], label=scheme)
    ax.axhline(100 * demo.float_accuracy, color="black", linestyle="--", linewidth=1, label="float")
    test_images = demo.models[0].test_images if demo.models else 0
    step = f"; one test image = {100 / test_images:.2f} %" if test_images else ""
    ax.set_xlabel(f"weight / activation bits (middle layers; first and last layer 8-bit{step})")
    ax.set_ylabel("test accuracy of the integer model (%)")
    ax.set_xticks(sorted({m.bits for m in demo.models}))
    ax.set_title("DigitsNet on scikit-learn digits: accuracy vs bits")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def energy_figure(demo: DemoResult):
    """Energy per inference by part (top) and the PE part alone, MAC + registers, where the kinds differ (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = energy_summary_rows(demo)
    fig, (total, compute) = plt.subplots(2, 1, sharex=True, figsize=(max(7, 0.45 * len(rows) + 2), 7))
    for ax, parts in ((total, DEMO_ENERGY_PARTS), (compute, ("mac", "register"))):
        bottom = np.zeros(len(rows))
        for part in parts:
            values = np.array([r[f"{part}_nj"] for r in rows])
            ax.bar(range(len(rows)), values, bottom=bottom, label=part)
            bottom += values
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    total.set_ylabel("energy per inference (nJ)")
    total.set_title(f"estimated energy per inference, {demo.options.rows}x{demo.options.cols} array, batch 1")
    compute.set_ylabel("PE energy: MAC + registers (nJ)")
    compute.set_xticks(range(len(rows)), [f"{r['model']}\n{r['pe_kind']}" for r in rows], rotation=90, fontsize=7)
    fig.tight_layout()
    return fig


def summary_markdown(demo: DemoResult) -> str:
    o = demo.options
    pct = {"fake_quant_accuracy": ".4f", "integer_accuracy": ".4f"}
    rtl_models = [m for m in demo.models if m.rtl is not None]
    exact = sum(m.rtl.bit_exact for m in rtl_models)
    lines = [
        "# lutmac demo: DigitsNet on scikit-learn digits, from QAT to the RTL",
        "",
        f"Seed {o.seed}; float baseline {o.float_epochs} epochs, QAT {o.qat_epochs} epochs per model from the float "
        f"weights; first and last layer 8-bit LSQ.  Test set: {demo.models[0].test_images if demo.models else 0} images.  "
        f"Array {o.rows}x{o.cols}, backend {o.backend}, {o.rtl_images} RTL image(s) per model.",
        "",
        "## Accuracy",
        "",
        "fake-quant = the trained PyTorch model; integer = golden's integer network (what the hardware computes) on the "
        "whole test set; changed = test images whose predicted class differs between the two.  "
        "2-bit pot is ternary weights {-a, 0, +a} (2-bit post, asq_post and apot would have the same levels).",
        "",
        markdown_table(accuracy_rows(demo), pct),
        "## Integer vs fake-quant, layer by layer",
        "",
        "Each layer runs on the integer model's own input; its codes may differ from the fake-quant layer's only where a "
        "rounding boundary lies within the computed bound (golden.bounds), by at most the boundaries nearby.  "
        "The logits layer's error is checked against its value bound.",
        "",
        markdown_table([{"model": m.name, "layers_within_bound": f"{sum(r['within_bound'] for r in m.layers)}/{len(m.layers)}",
                 "codes_differ": sum(r["codes_differ"] for r in m.layers),
                 "near_boundary": sum(r["near_boundary"] for r in m.layers),
                 "max_code_diff": max(r["max_code_diff"] for r in m.layers)} for m in demo.models]),
        "Details: `integer_layers.csv`.",
        "",
        "## RTL agreement",
        "",
        f"{exact}/{len(rtl_models)} models bit-exact at every layer on the RTL.  Each image runs alone; "
        "cycles are measured start..done of the accelerator runs (two passes for the signed 8-bit input layer) and checked "
        "against hw.cycles.gemm_cycles.  apot runs its int array on activation-table values (looked up at the array edge).",
        "",
        markdown_table(rtl_summary_rows(demo), {"cycles_per_image": ".0f", "build_s": ".1f", "sim_s": ".2f"}),
        "Per layer: `rtl_layers.csv`.",
        "",
        "## Cycles and energy per inference",
        "",
        "Estimator (reports.estimator, own output-stationary array, batch 1) with each layer at its own precision; MAC "
        "energies scaled from Yosys synthesis of 4x4 array cores relative to the 8-bit int array (Horowitz 45 nm anchor); "
        "compute = MAC + PE registers, where the PE kinds differ; every weight is read from DRAM once per inference, "
        "which dominates at batch 1.  asq = what an ASQ output stage adds (reports.estimator.asq_stage_energy): the "
        "layer's accumulators wait in the output buffer until the host has pooled them and run the fp32 adapter.",
        "",
        markdown_table(energy_summary_rows(demo), {**{f"{p}_nj": ".3f" for p in (*DEMO_ENERGY_PARTS, "compute", "energy")},
                                           "rtl_cycles": ".0f"}),
        "Per layer: `energy_layers.csv`.  Plots: `accuracy_vs_bits.png`, `energy_per_inference.png`.",
        "",
        "## Wall time",
        "",
        "train and integer run on the main thread; synthesis (Yosys) and rtl (Verilator builds + simulation) each on "
        "their own thread at the same time, so the parts add up to more than the total.",
        "",
        markdown_table([{"stage": key, "seconds": value} for key, value in demo.seconds.items()], {"seconds": ".1f"}),
    ]
    failures = demo.failures
    if failures:
        lines += ["## Failed checks", ""] + [f"* {failure}" for failure in failures] + [""]
    return "\n".join(lines)


def write_report(writer, demo: DemoResult) -> None:
    writer.table("accuracy", accuracy_rows(demo), "Accuracy: float vs fake-quant vs integer")
    writer.table("integer_layers", bound_rows(demo), "Integer vs fake-quant per layer (golden.bounds)")
    writer.table("rtl", rtl_summary_rows(demo), "RTL agreement per model")
    writer.table("rtl_layers", rtl_rows(demo), "RTL per layer: bit-exactness and measured cycles per image")
    writer.table("energy", energy_summary_rows(demo), "Cycles and energy per inference (estimator)")
    writer.table("energy_layers", [row for m in demo.models for row in m.energy], "Energy per layer (estimator)")
    writer.figure("accuracy_vs_bits.png", accuracy_figure(demo))
    writer.figure("energy_per_inference.png", energy_figure(demo))
    payload = {
        "options": {key: (str(value) if isinstance(value, Path) else value) for key, value in dataclasses.asdict(demo.options).items()},
        "float_accuracy": demo.float_accuracy, "seconds": demo.seconds, "failures": demo.failures,
        "models": [{"name": m.name, "scheme": m.scheme, "bits": m.bits, "fake_quant_accuracy": m.fake_quant_accuracy,
                    "integer_accuracy": m.integer_accuracy, "changed_predictions": m.changed_predictions,
                    "layers": m.layers, "export_notes": m.export_notes, "network": m.network_file,
                    "checkpoint": m.checkpoint_file,
                    "rtl": None if m.rtl is None else {**dataclasses.asdict(m.rtl), "bit_exact": m.rtl.bit_exact,
                                                       "integer_predictions": m.integer_rtl_predictions},
                    "energy": m.energy} for m in demo.models],
    }
    writer.text("summary.json", json_text(payload))
    writer.text("summary.md", summary_markdown(demo))


def describe(demo: DemoResult) -> str:
    """The few lines the CLI prints at the end."""
    rtl = [m for m in demo.models if m.rtl is not None]
    lines = [f"float accuracy {demo.float_accuracy:.4f}; {len(demo.models)} quantized models"]
    for m in demo.models:
        status = "-" if m.rtl is None else ("RTL bit-exact" if m.rtl.bit_exact else "RTL MISMATCH")
        lines.append(f"  {m.name:12s} fake-quant {m.fake_quant_accuracy:.4f} integer {m.integer_accuracy:.4f} "
                     f"changed {m.changed_predictions:3d} bound {'ok' if m.within_bound else 'VIOLATED'}  {status}")
    lines.append(f"RTL: {sum(m.rtl.bit_exact for m in rtl)}/{len(rtl)} models bit-exact; "
                 f"wall time {demo.seconds['total']:.0f} s; report in {demo.options.out}/summary.md")
    return "\n".join(lines)



# ----------------------------------------------------------------------------------------------- lutmac sim


def load_or_train_network(network: Path | None, checkpoint: Path | None, scheme: str, bits: int, demo_out: Path,
                          seed: int) -> tuple[IntegerNetwork, str]:
    """The network ``lutmac sim`` runs and where it came from: a file, a checkpoint, the demo's, or trained now."""
    if network is not None:
        if not Path(network).is_file():
            raise ConfigError(f"network file {network} not found")
        return IntegerNetwork.load(network), str(network)
    check_scheme(scheme, bits)
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise ConfigError(f"checkpoint {checkpoint} not found")
        model = load_checkpoint(quantize_model(digits.DigitsNet(), scheme, bits), checkpoint).eval()
        return export_model(model)[0], f"{checkpoint} ({scheme}, {bits} bits)"
    exported = Path(demo_out) / "networks" / f"{model_name(scheme, bits)}.json"
    if exported.is_file():
        return IntegerNetwork.load(exported), str(exported)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = digits.load_digits_split(seed)
        float_model = train_float(data, seed, QUICK_FLOAT_EPOCHS)
        model = train_quantized(float_model, data, scheme, bits, model_seed(seed, scheme, bits), QUICK_QAT_EPOCHS)
    finally:
        torch.set_num_threads(threads)
    return export_model(model)[0], f"{model_name(scheme, bits)} trained now ({QUICK_QAT_EPOCHS} QAT epochs; no {exported})"


def simulate(network: Path | None = None, checkpoint: Path | None = None, scheme: str = "post", bits: int = 4,
             demo_out: Path = Path("out"), images: int = DEFAULT_RTL_IMAGES, rows: int = 8, cols: int = 8,
             backend: str = "verilator", seed: int = 0) -> tuple[str, bool]:
    """``lutmac sim``: test images through the RTL; (printable per-layer report, bit-exact)."""
    if images < 1:
        raise ConfigError("sim needs at least one image")
    HardwareConfig(rows, cols, OWN_ARRAY)
    net, origin = load_or_train_network(network, checkpoint, scheme, bits, demo_out, seed)
    data = digits.load_digits_split(seed)
    x = net.quantize_input(data.x_test[:images].double().numpy())
    result = run_rtl(net, x, rows, cols, backend)
    golden = net.run(x)[net.layers[-1].name].real().argmax(axis=1)
    rows_ = [{key: row[key] for key in ("layer", "stage", "array", "bit_exact", "mismatches", "cycles_per_image",
                                          "expected_cycles_per_image", "macs_per_image")} for row in result.layers]
    agree = int(np.sum(np.array(result.predictions) == golden))
    correct = int(np.sum(np.array(result.predictions) == data.y_test[:images].numpy()))
    text = "\n".join([
        f"network: {origin}",
        f"backend {backend}, array {rows}x{cols}, {images} image(s) one at a time; "
        f"build {result.build_seconds:.1f} s, simulation {result.sim_seconds:.2f} s",
        "",
        markdown_table(rows_, {"cycles_per_image": ".0f", "expected_cycles_per_image": ".0f"}).rstrip(),
        "",
        f"{'bit-exact at every layer' if result.bit_exact else 'NOT bit-exact: ' + '; '.join(result.failures)}; "
        f"RTL predictions agree with golden on {agree}/{images}, correct on {correct}/{images}; "
        f"{result.cycles_per_image:.0f} cycles per image",
    ])
    return text, result.bit_exact
