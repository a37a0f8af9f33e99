"""``lutmac resnet20``: the CIFAR ResNet-20 through the RTL per scheme, every layer compared bit for bit.

No CIFAR-10 ships offline, so the network has seeded random weights with BatchNorm statistics
measured on a seeded normal ``[images, 3, size, size]`` input (:mod:`sim.resnet20`): what this
measures is the datapath — which layers the accelerator finishes (stage ``codes``), whether
every output bit and every run's cycle count agree with golden and ``hw.cycles`` — not accuracy.
The per-layer table is the demo's ``rtl_layers`` with a ``model`` column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from golden.errors import ConfigError
from golden.layers import check_scheme
from sim.resnet20 import random_resnet20

from ..estimator import OWN_ARRAY, HardwareConfig
from ..output import markdown_table, staged_report
from .rtl import run_rtl
from .training import model_name

DEFAULT_SCHEMES = ("lsq", "asq", "pot", "post", "asq_post", "apot", "lcq")
CIFAR_SIZE = 32


def resnet20_rtl(schemes: tuple[str, ...] = DEFAULT_SCHEMES, bits: int = 4, images: int = 1, size: int = CIFAR_SIZE,
                 rows: int = 8, cols: int = 8, backend: str = "verilator", seed: int = 0,
                 out: Path | None = None) -> tuple[str, bool]:
    """(printable report, every model bit-exact at every layer); ``out``: also write rtl_layers.md/.csv/.json there."""
    if images < 1:
        raise ConfigError("resnet20 needs at least one image")
    if size < 8 or size % 4:
        raise ConfigError(f"resnet20 input size {size} must be a multiple of 4 and at least 8 (two stride-2 stages)")
    HardwareConfig(rows, cols, OWN_ARRAY)
    for scheme in schemes:
        check_scheme(scheme, bits)
    x = np.random.default_rng(seed).normal(size=(images, 3, size, size))
    table, summary, exact = [], [], True
    for scheme in schemes:
        network = random_resnet20(x, scheme, bits, seed)
        result = run_rtl(network, network.quantize_input(x), rows, cols, backend)
        name = model_name(scheme, bits)
        table += [{"model": name, **row} for row in result.layers]
        on_chip = sum(row["stage"] == "codes" for row in result.layers)
        summary.append({"model": name, "layers_at_codes": f"{on_chip}/{len(result.layers)}",
                        "bit_exact_layers": f"{sum(row['bit_exact'] for row in result.layers)}/{len(result.layers)}",
                        "cycles_per_image": result.cycles_per_image, "build_s": result.build_seconds,
                        "sim_s": result.sim_seconds,
                        "note": "bit-exact" if result.bit_exact else "; ".join(result.failures[:3])})
        exact &= result.bit_exact
    setting = (f"ResNet-20 (random weights, seed {seed}), {images} image(s) of {size}x{size} one at a time, "
               f"{bits}-bit body, 8-bit first conv and fc; backend {backend}, array {rows}x{cols}")
    formats = {"cycles_per_image": ".0f", "expected_cycles_per_image": ".0f", "program_cycles_per_image": ".0f",
               "build_s": ".1f", "sim_s": ".1f"}
    if out is not None:
        with staged_report(out, replace_folder=False) as writer:
            writer.table("rtl_layers", table, "ResNet-20 on the RTL per layer: stage, bit-exactness, cycles per image",
                         setting, formats)
            writer.table("rtl_summary", summary, "ResNet-20 on the RTL per model", setting, formats)
    text = "\n".join([setting, "", markdown_table(summary, formats).rstrip()])
    return text, exact
