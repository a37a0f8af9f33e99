"""``lutmac rtl-scale``: every model of a demo run through the RTL on many test images, in chunks on Dask.

The demo runs a few images per model; this runs the first ``images`` test images of each model of a
demo output folder (its ``networks/`` and the data set its ``summary.json`` names), one image at a time
through every layer on the Verilator harness (:func:`.rtl.run_rtl`), bit-exact against golden at every
layer.  Each (model, chunk of images) is one task on Dask distributed
(:func:`reports.sweep_dask.dask_client`: a LocalCluster by default, a user's ``tcp://HOST:8786``);
a model's chunks are merged image-weighted.  The Verilator builds are shared through the build cache
(one build per design under a file lock), so the first chunk of each design pays for it.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden.errors import ConfigError
from golden.integer import IntegerNetwork

from ..estimator import OWN_ARRAY, HardwareConfig
from ..output import check_output_folder, markdown_table, staged_report
from .datasets import dataset
from .pricing import priced_kinds
from .rtl import run_rtl
from .simulate import demo_dataset

DEFAULT_IMAGES, DEFAULT_CHUNK = 1000, 250


@dataclass(frozen=True)
class RtlScaleOptions:
    out: Path
    demo_out: Path = Path("out")
    models: tuple[str, ...] | None = None  # None: every network of the demo folder
    images: int = DEFAULT_IMAGES
    chunk: int = DEFAULT_CHUNK  # images per task
    rows: int = 8
    cols: int = 8
    dask: str = "local"
    workers: int = 2

    def networks(self) -> dict[str, Path]:
        """model name -> exported network of the demo folder, every requested one present."""
        found = {path.stem: path for path in sorted((Path(self.demo_out) / "networks").glob("*.json"))}
        if not found:
            raise ConfigError(f"{self.demo_out} holds no networks/*.json: run `lutmac demo --out {self.demo_out}` first")
        if self.models is None:
            return found
        missing = sorted(set(self.models) - set(found))
        if missing:
            raise ConfigError(f"{self.demo_out}/networks has no {', '.join(missing)}; it has {', '.join(found)}")
        return {name: found[name] for name in self.models}

    def check(self) -> None:
        """Every option problem as a LutmacError, before any work starts."""
        for name in ("images", "chunk", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        self.networks()
        dataset(demo_dataset(self.demo_out)).check_image_count(self.images)
        HardwareConfig(self.rows, self.cols, OWN_ARRAY)
        check_output_folder(self.out)


@functools.lru_cache(maxsize=1)
def _test_images(data_set: str):
    """The data set's test split, loaded once per worker process."""
    data = dataset(data_set).load(0)
    return data.x_test, data.y_test.numpy()


def chunk_job(model: str, network_text: str, data_set: str, start: int, stop: int, rows: int, cols: int) -> dict:
    """On a worker: test images ``start..stop`` of ``model`` through the RTL, with golden's and the true labels."""
    network = IntegerNetwork.from_dict(json.loads(network_text))
    x_test, y_test = _test_images(data_set)
    x = network.quantize_input(x_test[start:stop].double().numpy())
    result = run_rtl(network, x, rows, cols, optimize=True)  # every chunk of a long run shares the -O2 builds
    golden = network.run(x)[network.layers[-1].name].real().argmax(axis=1)
    predictions = np.array(result.predictions)
    return {"model": model, "start": start, "stop": stop, "layers": result.layers, "bit_exact": result.bit_exact,
            "failures": result.failures, "agree": int(np.sum(predictions == golden)),
            "correct": int(np.sum(predictions == y_test[start:stop])), "build_seconds": result.build_seconds,
            "sim_seconds": result.sim_seconds, "wall_seconds": result.wall_seconds}


def merge_chunks(parts: list[dict]) -> dict:
    """One model's chunks as one run: counts summed, per-image figures weighted by the chunk's images."""
    parts = sorted(parts, key=lambda part: part["start"])
    images = sum(part["stop"] - part["start"] for part in parts)
    layers = []
    for index, first in enumerate(parts[0]["layers"]):
        rows = [part["layers"][index] for part in parts]
        weights = [part["stop"] - part["start"] for part in parts]
        layers.append({
            "layer": first["layer"], "stage": first["stage"], "array": first["array"],
            "bit_exact": all(row["bit_exact"] for row in rows), "mismatches": sum(row["mismatches"] for row in rows),
            **{key: sum(row[key] * w for row, w in zip(rows, weights, strict=True)) / images
               for key in ("cycles_per_image", "expected_cycles_per_image", "macs_per_image")},
        })
    return {"model": parts[0]["model"], "images": images, "layers": layers,
            "bit_exact": all(part["bit_exact"] for part in parts),
            "failures": [failure for part in parts for failure in part["failures"]],
            **{key: sum(part[key] for part in parts) for key in ("agree", "correct", "build_seconds", "sim_seconds",
                                                                 "wall_seconds")}}


@dataclass
class RtlScaleResult:
    options: RtlScaleOptions
    data_set: str
    models: list[dict]
    seconds: float
    workers: int

    @property
    def failures(self) -> list[str]:
        return [f"{m['model']}: {failure}" for m in self.models for failure in m["failures"]] + [
            f"{m['model']}: not bit-exact" for m in self.models if not m["bit_exact"] and not m["failures"]]


def run_rtl_scale(options: RtlScaleOptions, client=None, progress: bool | None = None) -> RtlScaleResult:
    """Every (model, chunk) on ``client`` (or a cluster from ``options.dask``), then the report into ``options.out``."""
    from ..sweep_dask import dask_client

    options.check()
    if client is None:
        with dask_client(options.dask, options.workers) as own:
            return run_rtl_scale(options, own, progress)
    from distributed import as_completed
    from tqdm.auto import tqdm

    started = time.perf_counter()
    data_set = demo_dataset(options.demo_out)
    workers = len(client.scheduler_info()["workers"])
    futures = []
    for model, path in options.networks().items():
        text = path.read_text()
        for start in range(0, options.images, options.chunk):
            stop = min(start + options.chunk, options.images)
            futures.append(client.submit(chunk_job, model, text, data_set, start, stop, options.rows, options.cols,
                                         pure=False))
    parts: dict[str, list[dict]] = {}
    with tqdm(total=options.images * len(options.networks()), desc="lutmac rtl-scale", unit="image",
              disable=None if progress is None else not progress, dynamic_ncols=True) as bar:
        for future in as_completed(futures):
            part = future.result()
            parts.setdefault(part["model"], []).append(part)
            bar.set_postfix_str(f"{part['model']} {part['start']}..{part['stop']}", refresh=False)
            bar.update(part["stop"] - part["start"])
    models = [merge_chunks(parts[model]) for model in options.networks()]
    result = RtlScaleResult(options, data_set, models, time.perf_counter() - started, workers)
    write_rtl_scale(result)
    return result


def _estimated_energy(demo_out: Path) -> dict[str, float]:
    """model -> the demo's estimated energy per inference (nJ, batch 1) on the scheme's first priced PE kind."""
    summary = json.loads((Path(demo_out) / "summary.json").read_text())
    return {m["name"]: sum(row["energy_nj"] for row in m["energy"] if row["pe_kind"] == priced_kinds(m["scheme"])[0])
            for m in summary["models"] if m.get("energy")}


def summary_rows(result: RtlScaleResult) -> list[dict]:
    energy = _estimated_energy(result.options.demo_out)
    return [{"model": m["model"], "images": m["images"],
             "bit_exact_layers": f"{sum(row['bit_exact'] for row in m['layers'])}/{len(m['layers'])}",
             "mismatches": sum(row["mismatches"] for row in m["layers"]),
             "agree_with_golden": f"{m['agree']}/{m['images']}", "correct": f"{m['correct']}/{m['images']}",
             "cycles_per_image": sum(row["cycles_per_image"] for row in m["layers"]),
             "expected_cycles_per_image": sum(row["expected_cycles_per_image"] for row in m["layers"]),
             "energy_nj_estimated": energy.get(m["model"]), "sim_s": m["sim_seconds"], "wall_s": m["wall_seconds"],
             "build_s": m["build_seconds"]} for m in result.models]


def write_rtl_scale(result: RtlScaleResult) -> None:
    """rtl_scale.md, rtl_scale (per model) and rtl_scale_layers (per model and layer) as .md/.csv/.json."""
    options = result.options
    rows = summary_rows(result)
    fmt = {"cycles_per_image": ".0f", "expected_cycles_per_image": ".0f", "energy_nj_estimated": ".0f",
           "sim_s": ".1f", "wall_s": ".1f", "build_s": ".1f"}
    layer_rows = [{"model": m["model"], **row} for m in result.models for row in m["layers"]]
    payload = {"seconds": result.seconds, "workers": result.workers, "dask": options.dask, "data_set": result.data_set,
               "images": options.images, "chunk": options.chunk, "array": f"{options.rows}x{options.cols}"}
    with staged_report(options.out) as writer:
        writer.table("rtl_scale", rows, "RTL at scale: every model", formats=fmt, payload=payload)
        writer.table("rtl_scale_layers", layer_rows, "RTL at scale: every layer", formats=fmt, payload=payload)
        exact = sum(m["bit_exact"] for m in result.models)
        writer.text("rtl_scale.md", "\n".join([
            f"# RTL at scale: {len(result.models)} models of {options.demo_out}, {options.images} test images each", "",
            f"{dataset(result.data_set).title}; every image alone through every layer on the Verilator harness "
            f"({options.rows}x{options.cols} array), compared bit for bit with golden at every layer; "
            f"{sum(r['images'] for r in rows)} images in chunks of {options.chunk} on {result.workers} "
            f"Dask worker(s) ({options.dask}) in {result.seconds:.0f} s.  {exact}/{len(result.models)} models "
            "bit-exact at every layer of every image.  Energy: the demo's estimate per inference (batch 1) on the "
            "scheme's first priced PE kind.", "",
            markdown_table(rows, fmt).rstrip(), ""]))
