"""Test images through the accelerator RTL, one image per pass, bit-exact against golden at every layer.

What the demo's RTL thread and ``lutmac sim`` run: :func:`sim.network.run_network_rtl` with one
reduction bound for the whole model (:func:`shared_reduction`), reduced to per-image figures.
The demo sizes every model's accelerators for all its models (:func:`shared_designs`), so each
datapath is built once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from golden.integer import IntegerNetwork
from golden.stages import Codes
from golden.spec import DatapathConfig
from hw.config import ArrayConfig
from sim.network import NetworkRun, plan_arrays, run_network_rtl, shared_floor

DEFAULT_RTL_IMAGES = 4
#: up to this many images a run builds its Verilator models at -O0: about half the build time, while simulation
#: is ~6x slower (the demo's rtl.md, 4 images: 1.0-2.5 s at -O0, 0.2-0.3 s at -O2), so -O2 pays from ~20 images
QUICK_BUILD_MAX_IMAGES = 16


def shared_reduction(network: IntegerNetwork) -> int:
    """The reduction length every accelerator of a model is sized for: the network's longest.

    ``sim.network.plan_arrays`` would size each accelerator for its own layers; one bound for all
    makes the designs of different models identical (lsq/asq, post/asq_post, every model's 8-bit
    edge layers), so they share Verilator builds.
    """
    return max(layer.reduction_length for layer in network.layers)


def shared_designs(networks: list[IntegerNetwork], rows: int, cols: int) -> dict[DatapathConfig, ArrayConfig]:
    """One accelerator per datapath that runs the layers of that datapath in every one of ``networks``.

    The floor (:func:`sim.network.plan_arrays`) for :func:`run_rtl`: models whose networks have
    the same structure as ``networks`` (the demo's QAT models, planned from their calibrated
    starting points before training) then share one design, and one build, per datapath; a
    trained model whose values need more (a wider bias) gets a design of its own, never a
    narrower one.
    """
    return shared_floor(plan_arrays(network, rows, cols, max_reduction=shared_reduction(network))[0]
                        for network in networks)


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


def run_rtl(network: IntegerNetwork, x: Codes, rows: int, cols: int, backend: str = "verilator",
            optimize: bool | None = None, floor: dict[DatapathConfig, ArrayConfig] | None = None) -> RtlResult:
    """``x`` (codes of the network input) through the RTL one image at a time; see the module docstring.
    ``optimize``: C++ at -O2 (None: when more than :data:`QUICK_BUILD_MAX_IMAGES` images run);
    ``floor``: :func:`shared_designs`."""
    images = x.codes.shape[0]
    optimize = images > QUICK_BUILD_MAX_IMAGES if optimize is None else optimize
    run = run_network_rtl(network, x, backend, rows, cols, per_image=True, max_reduction=shared_reduction(network),
                          optimize=optimize, floor=floor)
    predictions = [int(p) for p in run.outputs[network.layers[-1].name].real().argmax(axis=1)]
    return RtlResult(backend, images, _layer_rows(run, images), run.matches_golden_run, predictions,
                     run.build_seconds, run.sim_seconds, run.wall_seconds, run.failures)
