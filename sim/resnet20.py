"""A CIFAR ResNet-20 as a golden :class:`~golden.integer.IntegerNetwork` with random weights, for RTL runs.

``golden.export`` cannot trace the option-A shortcut of the CIFAR block yet (strided slicing and
channel padding), so the network is assembled here from golden's own classes: 19 convolutions and
one linear layer, first conv (signed input) and fc at 8-bit ``int``, the rest at ``scheme`` /
``bits``, residual adds through :class:`~golden.integer.Residual` with option-A padding, global
average pooling folded into the last block's output stage.  Output steps are calibrated layer by
layer on the given input (99th percentile of the layer's real output) so codes spread over their
range instead of saturating.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from golden import spec
from golden.integer import Codes, IntegerLayer, IntegerNetwork, OutputStage, Residual, quantize_real

EDGE_BITS = 8
INPUT_STEP = 4.0 / 127  # the input quantizer: a signed 8-bit code per unit-variance pixel


def _weights(datapath: spec.DatapathConfig, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """Random weight codes of a realistic spread (mostly small magnitudes)."""
    fmt = datapath.weight
    if datapath.scheme == "int":
        lo, hi = spec.signed_range(fmt.bits)
        return np.clip(np.rint(rng.normal(0, hi / 3, shape)), lo + 1, hi).astype(np.int64)
    if datapath.scheme in spec.SHIFT_SCHEMES:
        exponent = np.minimum(rng.geometric(0.45, shape) - 1, fmt.max_exponent + 1)
        exponent = np.where(exponent > fmt.max_exponent, -1, exponent)  # -1: zero
        return fmt.power_code_from_level(rng.integers(0, 2, shape), exponent)
    return rng.integers(0, fmt.num_codes, shape)


def _weight_scale(datapath: spec.DatapathConfig, fan_in: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """Real value of one product LSB per unit input step, sized for unit-gain layers (He init)."""
    if datapath.scheme == "int":
        typical = spec.signed_range(datapath.weight.bits)[1] / 3
    elif datapath.scheme in spec.SHIFT_SCHEMES:
        typical = 0.5 * 2.0**datapath.frac_bits
    else:
        typical = datapath.weight.level_range[1] / 2
    return np.sqrt(2.0 / fan_in) / typical * rng.uniform(0.7, 1.3, channels)


def _calibrated(layer: IntegerLayer, x: Codes, shortcut) -> IntegerLayer:
    """``layer`` with its output step at the 99th percentile of its positive real outputs on ``x``."""
    if layer.output.mode != "uniform":
        return layer
    probe = dataclasses.replace(layer, output=OutputStage("accumulator")).forward(x, shortcut).real()
    if layer.output.global_pool:
        probe = np.maximum(probe, 0).mean(axis=(2, 3))
    positive = probe[probe > 0]
    if positive.size == 0:
        return layer
    step = float(np.percentile(positive, 99)) / ((1 << layer.output.bits) - 1)
    return dataclasses.replace(layer, output=dataclasses.replace(layer.output, step=step))


def random_resnet20(x: np.ndarray, scheme: str = "post", bits: int = 4, seed: int = 0) -> IntegerNetwork:
    """ResNet-20 for CIFAR input ``x`` (``[N, 3, 32, 32]`` reals), calibrated on ``x``."""
    rng = np.random.default_rng(seed)
    edge = spec.DatapathConfig.make("int", EDGE_BITS, EDGE_BITS)
    body = spec.DatapathConfig.make(scheme, bits, bits)
    input_stage = OutputStage("uniform", bits=EDGE_BITS, step=INPUT_STEP, signed=True)
    outputs = {"input": quantize_real(input_stage, x)}
    layers: list[IntegerLayer] = []

    def add(name, datapath, cin, cout, stride, output, residual=None, signed_input=False, kind="conv", source=None):
        source = source or (layers[-1].name if layers else "input")
        x_in = outputs[source]
        kernel = (cout, cin, 3, 3) if kind == "conv" else (cout, cin)
        fan_in = int(np.prod(kernel[1:]))
        table = {"act_table": np.asarray(x_in.table)} if datapath.act_format == "table" else {}
        if datapath.scheme == "lcq":
            lo, hi = datapath.weight.level_range
            table["weight_table"] = np.linspace(lo, hi, datapath.weight.num_codes).round().astype(np.int64)
        geometry = {"stride": (stride, stride), "padding": (1, 1)} if kind == "conv" else {}
        layer = IntegerLayer(
            name=name, kind=kind, cfg=datapath, weight_codes=_weights(datapath, kernel, rng),
            weight_scale=_weight_scale(datapath, fan_in, cout, rng), bias=rng.normal(0, 0.05, cout),
            input_step=float(x_in.step[0]), output=output, accumulator_width=spec.accumulator_bits(datapath, fan_in),
            residual=residual, signed_input=signed_input, input=source if source != (layers[-1].name if layers else "input") else "",
            **geometry, **table,
        )  # fmt: skip
        shortcut = None if residual is None else outputs[residual.source]
        layer = _calibrated(layer, x_in, shortcut)
        outputs[name] = layer.forward(x_in, shortcut)
        layers.append(layer)

    add("conv1", edge, 3, 16, 1, OutputStage("uniform", bits=bits, step=0.1), signed_input=True)
    cin = 16
    for stage, (cout, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
        for block in range(3):
            block_stride = stride if block == 0 else 1
            block_input = layers[-1].name
            name = f"layer{stage}.{block}"
            add(f"{name}.conv1", body, cin, cout, block_stride, OutputStage("uniform", bits=bits, step=0.1))
            extra = cout - cin
            residual = Residual(block_input, "codes", block_stride, (extra // 2, extra - extra // 2))
            last = stage == 3 and block == 2
            output = OutputStage("uniform", bits=EDGE_BITS if last else bits, step=0.1, global_pool=last)
            add(f"{name}.conv2", body, cout, cout, 1, output, residual=residual)
            cin = cout
    add("fc", edge, 64, 10, 1, OutputStage("accumulator"), kind="linear")
    return IntegerNetwork(tuple(layers), input_stage)
