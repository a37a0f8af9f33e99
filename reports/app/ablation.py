"""The ASQ paper's ablation on Fashion-MNIST, with seeds and intervals: ``lutmac ablation`` / ``make ablation``.

The matrix is float plus every (scheme, bits) of :data:`DEFAULT_RUNS` (lsq, pot, post, apot, lcq,
asq, asq_post at 4 and 3 bits; lsq and pot also at 2 bits, where they have a 2-bit form of their
own — at 2 bits post/asq_post and apot have POT's ternary levels, see :mod:`reports.app.demo`),
first and last layer at 8 bits, for every seed.  Per seed one float FashionNet trains
(:func:`reports.app.training.train_float`); every QAT job of that seed starts from its weights
(:func:`reports.app.training.train_quantized`, the demo's) as the paper's runs start from a
float model.  Every job is independent given its float model, so the (scheme, bits, seed) jobs
run on Dask distributed (:func:`reports.sweep_dask.dask_client`: a LocalCluster by default, a
user's ``tcp://HOST:8786`` scheduler with ``--dask``); each worker loads the data set once.  Workers
must be processes of one thread each (the LocalCluster's are): torch.fx, which ``quantize_model`` and
the export trace with, patches ``nn.Module.__call__`` for the whole process while it traces, so two
jobs in threads of one process break each other's training.

Each QAT job exports its model (:func:`golden.export.export_model`) and evaluates on the whole
test set the fake-quant model and the integer network (:func:`reports.app.agreement.evaluate_integer`:
accuracy, changed predictions, every layer within the float-vs-integer bound).  The report gives
per (scheme, bits) the mean and the 95 % Student-t interval over seeds of both accuracies, and
per seed the paired difference to LSQ at the same bits and seed, with a paired t-test and an
exact two-sided sign test over seeds; next to the paper's ResNet-20 CIFAR-10 4-bit ablation.
"""

from __future__ import annotations

import functools
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from golden.errors import ConfigError
from golden.export import export_model
from golden.layers import check_scheme, load_checkpoint, quantize_model, save_checkpoint
from golden.spec import TrainingScheme

from .. import digits
from ..output import staged_report
from .agreement import evaluate_integer
from .datasets import FASHION_RECIPE, dataset
from .training import model_name, model_seed, train_float, train_quantized

S = TrainingScheme
ABLATION_SCHEMES = (S.LSQ, S.POT, S.POST, S.APOT, S.LCQ, S.ASQ, S.ASQ_POST)
TWO_BIT_SCHEMES = (S.LSQ, S.POT)
DEFAULT_RUNS = tuple((s, b) for b in (4, 3) for s in ABLATION_SCHEMES) + tuple((s, 2) for s in TWO_BIT_SCHEMES)
DEFAULT_SEEDS = (0, 1, 2)
#: The defaults are Fashion-MNIST's recipe (the main job's too): see reports.app.datasets.FASHION_RECIPE.
FLOAT_EPOCHS, QAT_EPOCHS = FASHION_RECIPE.float_epochs, FASHION_RECIPE.qat_epochs
QAT_IMAGES, BOUND_IMAGES = FASHION_RECIPE.qat_images, FASHION_RECIPE.bound_images
#: The ASQ paper's Table 5 (ResNet-20, CIFAR-10, 4 bits, top-1 %), by our scheme names.
PAPER_RESNET20_W4 = {"float": 92.6, S.LSQ: 92.4, S.POT: 92.5, S.POST: 92.7, S.ASQ: 92.8, S.ASQ_POST: 93.0}
SETTING_DIFFERENCES = (
    "Paper: ResNet-20 (0.27 M parameters, 41 M MACs) on CIFAR-10 (32x32 colour), QAT for many epochs from a "
    "pretrained float model with the authors' schedule. Here: {network}, float {float_epochs} epoch(s) and QAT "
    "{qat_epochs} epoch(s) of Adam with cosine decay on the CPU over the first {qat} of the {train} training images, "
    "{test} test images (the per-layer float-vs-integer bound checked on the first {bound}); "
    "quantizers as golden implements them (per-channel weights, first and last layer 8-bit LSQ)."
)
NETWORK_TEXT = {"fashion": "FashionNet (four 3x3 convs and a linear layer, 70 650 parameters, 2.52 M MACs) on Fashion-MNIST "
                           "(28x28 greyscale)",
                "digits": "DigitsNet (three 3x3 convs and a linear layer) on scikit-learn's digits (8x8 greyscale)"}


@dataclass(frozen=True)
class AblationOptions:
    out: Path
    runs: tuple[tuple[str, int], ...] = DEFAULT_RUNS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    float_epochs: int = FLOAT_EPOCHS
    qat_epochs: int = QAT_EPOCHS
    dataset: str = "fashion"
    train_images: int | None = None  # None: the whole training set
    test_images: int | None = None  # None: the whole test set
    qat_images: int | None = QAT_IMAGES  # QAT trains on the first this many training images (None: all)
    bound_images: int | None = BOUND_IMAGES  # test images of the per-layer float-vs-integer bound check
    dask: str = "local"
    workers: int = 2

    def check(self) -> None:
        from .demo import check_output_folder

        dataset(self.dataset)
        for scheme, bits in self.runs:
            check_scheme(scheme, bits)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"the ablation needs distinct seeds, got {self.seeds}")
        for name in ("float_epochs", "qat_epochs", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        for name in ("train_images", "test_images", "qat_images", "bound_images"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 2):
                raise ConfigError(f"{name} must be at least 2, got {value!r}")
        check_output_folder(self.out)


# ----------------------------------------------------------------------------------------------- the jobs


@functools.lru_cache(maxsize=2)
def _data(name: str, train_images: int | None, test_images: int | None) -> digits.ImageData:
    """The data set, loaded once per worker process (the seed does not change Fashion-MNIST's split)."""
    full = dataset(name).load(0)
    return digits.ImageData(full.x_train[:train_images], full.y_train[:train_images], full.x_test[:test_images],
                            full.y_test[:test_images])


def _checkpoint_bytes(model: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    save_checkpoint(model, buffer)
    return buffer.getvalue()


def _load_bytes(model: torch.nn.Module, payload: bytes) -> torch.nn.Module:
    return load_checkpoint(model, io.BytesIO(payload)).eval()


def float_job(options: AblationOptions, seed: int) -> dict:
    """One seed's float model: trained, evaluated on the test set, returned as checkpoint bytes."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = _data(options.dataset, options.train_images, options.test_images)
    model = train_float(data, seed, options.float_epochs, network=dataset(options.dataset).network)
    accuracy = digits.accuracy(digits.predict(model, data.x_test), data.y_test)
    return {"scheme": "float", "bits": 32, "seed": seed, "fake_quant": accuracy, "integer": None, "changed": None,
            "within_bound": None, "seconds": time.perf_counter() - t0, "checkpoint": _checkpoint_bytes(model)}


def qat_job(options: AblationOptions, scheme: str, bits: int, seed: int, float_result: dict) -> dict:
    """QAT of (scheme, bits) from the seed's float model; fake-quant and integer accuracy on the test set."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = _data(options.dataset, options.train_images, options.test_images)
    float_model = _load_bytes(dataset(options.dataset).network(), float_result["checkpoint"])
    qat_data = digits.ImageData(data.x_train[: options.qat_images], data.y_train[: options.qat_images], data.x_test,
                                data.y_test)
    model = train_quantized(float_model, qat_data, scheme, bits, model_seed(seed, scheme, bits), options.qat_epochs)
    model.eval()
    network, _ = export_model(model)
    fake, integer, changed, layers = evaluate_integer(model, network, data, bound_images=options.bound_images)
    return {"scheme": str(scheme), "bits": bits, "seed": seed, "fake_quant": fake, "integer": integer, "changed": changed,
            "within_bound": all(row["within_bound"] for row in layers), "seconds": time.perf_counter() - t0,
            "checkpoint": _checkpoint_bytes(model)}


# ----------------------------------------------------------------------------------------------- statistics


def t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """(mean, half width) of the Student-t interval; half width NaN for a single value."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, half


def paired_tests(differences: list[float]) -> tuple[float, float]:
    """(paired t-test p, exact two-sided sign test p) of per-seed differences against zero (ties dropped)."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    if len(d) < 2 or np.all(d == d[0]):
        t_p = 0.0 if len(d) >= 2 and d[0] != 0 else 1.0
    else:
        t_p = float(stats.ttest_1samp(d, 0.0).pvalue)
    nonzero = d[d != 0]
    sign_p = float(stats.binomtest(int((nonzero > 0).sum()), len(nonzero), 0.5).pvalue) if len(nonzero) else 1.0
    return t_p, sign_p


@dataclass
class AblationResult:
    options: AblationOptions
    jobs: list[dict]
    seconds: float
    workers: int
    summary: list[dict] = field(default_factory=list)
    paired: list[dict] = field(default_factory=list)


def summarize(jobs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Per (scheme, bits): mean and 95 % interval of both accuracies; per (scheme, bits) vs LSQ: paired tests."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for job in jobs:
        groups.setdefault((job["scheme"], job["bits"]), []).append(job)
    summary = []
    for (scheme, bits), found in groups.items():
        row = {"model": "float" if scheme == "float" else model_name(scheme, bits), "scheme": scheme, "bits": bits,
               "seeds": len(found)}
        for key in ("fake_quant", "integer"):
            values = [100 * j[key] for j in found if j[key] is not None]
            mean, half = t_interval(values) if values else (None, None)
            row |= {f"{key}_mean": mean, f"{key}_ci95": half}
        row["changed_mean"] = float(np.mean([j["changed"] for j in found])) if scheme != "float" else None
        row["all_within_bound"] = all(j["within_bound"] for j in found) if scheme != "float" else None
        row["paper_resnet20_w4"] = PAPER_RESNET20_W4.get(scheme) if scheme == "float" or bits == 4 else None
        summary.append(row)
    paired = []
    for (scheme, bits), found in groups.items():
        base = {j["seed"]: j for j in groups.get((S.LSQ.value, bits), [])}
        if scheme in ("float", S.LSQ.value) or not base:
            continue
        for key in ("fake_quant", "integer"):
            pairs = [(j["seed"], 100 * (j[key] - base[j["seed"]][key])) for j in found if j["seed"] in base]
            differences = [d for _, d in pairs]
            mean, half = t_interval(differences)
            t_p, sign_p = paired_tests(differences)
            paired.append({"model": model_name(scheme, bits), "vs": model_name(S.LSQ.value, bits), "accuracy": key,
                           "seeds": len(pairs), "per_seed_pp": " ".join(f"{d:+.2f}" for d in differences),
                           "mean_diff_pp": mean, "ci95_pp": half, "paired_t_p": t_p, "sign_test_p": sign_p,
                           "significant_5pct": t_p < 0.05})
    return summary, paired


# ----------------------------------------------------------------------------------------------- the run


def run_ablation(options: AblationOptions, client=None, progress: bool | None = None) -> AblationResult:
    """Every job of the matrix on ``client`` (or a cluster from ``options.dask``), then the report into ``options.out``."""
    from ..sweep_dask import dask_client

    options.check()
    if client is None:
        with dask_client(options.dask, options.workers) as own:
            return run_ablation(options, own, progress)
    from distributed import as_completed
    from tqdm.auto import tqdm

    started = time.perf_counter()
    workers = len(client.scheduler_info()["workers"])
    floats = {seed: client.submit(float_job, options, seed, pure=False, priority=10) for seed in options.seeds}
    futures = list(floats.values())
    futures += [client.submit(qat_job, options, scheme, bits, seed, floats[seed], pure=False)
                for seed in options.seeds for scheme, bits in options.runs]
    jobs = []
    with tqdm(total=len(futures), desc="lutmac ablation", unit="job", disable=None if progress is None else not progress,
              dynamic_ncols=True) as bar:
        for future in as_completed(futures):
            job = future.result()
            jobs.append(job)
            bar.set_postfix_str(f"{model_name(job['scheme'], job['bits']) if job['scheme'] != 'float' else 'float'} "
                                f"s{job['seed']}", refresh=False)
            bar.update()
    order = {(str(s), b): i for i, (s, b) in enumerate([("float", 32), *options.runs])}
    jobs.sort(key=lambda j: (order[(j["scheme"], j["bits"])], j["seed"]))
    result = AblationResult(options, jobs, time.perf_counter() - started, workers)
    result.summary, result.paired = summarize(jobs)
    write_ablation(result)
    return result


def _setting(options: AblationOptions) -> str:
    data = _data(options.dataset, options.train_images, options.test_images)
    train = len(data.y_train)
    return SETTING_DIFFERENCES.format(network=NETWORK_TEXT[options.dataset], float_epochs=options.float_epochs, qat_epochs=options.qat_epochs, train=train,
                                      qat=min(options.qat_images or train, train), test=len(data.y_test),
                                      bound=min(options.bound_images or len(data.y_test), len(data.y_test)))


def write_ablation(result: AblationResult) -> None:
    """ablation.md (the tables), ablation_runs / ablation_summary / ablation_paired (.md/.csv/.json), checkpoints/."""
    from ..output import markdown_table

    options = result.options
    runs = [{k: v for k, v in job.items() if k != "checkpoint"} for job in result.jobs]
    fmt = {"fake_quant_mean": ".2f", "fake_quant_ci95": ".2f", "integer_mean": ".2f", "integer_ci95": ".2f",
           "changed_mean": ".1f", "mean_diff_pp": "+.2f", "ci95_pp": ".2f", "paired_t_p": ".3f", "sign_test_p": ".3f",
           "seconds": ".1f", "fake_quant": ".4f", "integer": ".4f"}
    with staged_report(options.out) as writer:
        for job in result.jobs:
            name = "float" if job["scheme"] == "float" else model_name(job["scheme"], job["bits"])
            relative = f"checkpoints/{name}_s{job['seed']}.pt"
            (writer.staging / "checkpoints").mkdir(exist_ok=True)
            (writer.staging / relative).write_bytes(job["checkpoint"])
            writer.files.append(relative)
        payload = {"seconds": result.seconds, "workers": result.workers, "dask": options.dask,
                   "seeds": list(options.seeds), "float_epochs": options.float_epochs, "qat_epochs": options.qat_epochs}
        writer.table("ablation_runs", runs, "Ablation: every job", formats=fmt, payload=payload)
        writer.table("ablation_summary", result.summary, "Ablation: mean and 95 % t-interval over seeds (accuracy %)",
                     formats=fmt, payload=payload)
        writer.table("ablation_paired", result.paired, "Ablation: paired differences to LSQ (same bits, same seed)",
                     formats=fmt, payload=payload)
        n = len(options.seeds)
        text = [
            f"# Ablation on {dataset(options.dataset).title}: {len(result.jobs)} jobs, {n} seed(s)", "",
            f"{len(result.jobs)} jobs on {result.workers} Dask worker(s) ({options.dask}) in {result.seconds:.0f} s. "
            "Every QAT run starts from its seed's float model; first and last layer 8-bit. Accuracy in % on the "
            "test set; ± is the half width of the 95 % Student-t interval over seeds (t with "
            f"{n - 1} degrees of freedom).", "",
            markdown_table([{"model": r["model"], "fake-quant": _pm(r["fake_quant_mean"], r["fake_quant_ci95"]),
                             "integer": _pm(r["integer_mean"], r["integer_ci95"]),
                             "changed predictions (mean)": r["changed_mean"], "layers within bound": r["all_within_bound"],
                             "paper ResNet-20 w4": r["paper_resnet20_w4"]} for r in result.summary],
                           {"changed predictions (mean)": ".1f"}), "",
            "## Paired against LSQ (same bits, same seed)", "",
            f"Per seed the difference in percentage points; paired t-test (t with {n - 1} degrees of freedom) and the "
            f"exact two-sided sign test over the {n} seeds (with {n} seeds the smallest possible sign-test p is "
            f"{2 * 0.5 ** n:.3f}, so it cannot reach 0.05 below 6 seeds).", "",
            markdown_table([{"model": r["model"], "vs": r["vs"], "accuracy": r["accuracy"], "per seed (pp)": r["per_seed_pp"],
                             "mean ± 95 % (pp)": _pm(r["mean_diff_pp"], r["ci95_pp"], "+.2f"),
                             "paired t p": r["paired_t_p"], "sign test p": r["sign_test_p"],
                             "p < 0.05": r["significant_5pct"]} for r in result.paired],
                           {"paired t p": ".3f", "sign test p": ".3f"}), "",
            "## Setting against the paper's", "", _setting(options), "",
        ]
        writer.text("ablation.md", "\n".join(text))


def _pm(mean, half, spec: str = ".2f") -> str:
    if mean is None:
        return "—"
    return f"{mean:{spec}}" + ("" if half is None or math.isnan(half) else f" ± {half:.2f}")


def quantized_from_checkpoint(path: Path, scheme: str, bits: int, data_set: str = "fashion") -> torch.nn.Module:
    """An ablation checkpoint (checkpoints/SCHEME_wBITS_sSEED.pt) loaded into a fresh quantized network."""
    return load_checkpoint(quantize_model(dataset(data_set).network(), scheme, bits), path).eval()
