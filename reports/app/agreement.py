"""The integer model against the fake-quant model it was exported from, on the whole test set.

Per layer, every layer runs on the integer model's own input, and its codes may differ from the
fake-quant layer's only where a rounding boundary lies within the bound ``golden.bounds`` computes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from golden.bounds import (
    FLOAT32_UNIT_ROUNDOFF,
    bias_magnitude,
    codes_within_bound,
    fake_quant_segment,
    float_path_error,
    layer_bound,
)
from golden.integer import IntegerNetwork
from golden.stages import Accumulators

from .. import digits


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


#: Test images per integer run: golden's int64/float64 im2col of a 28x28 batch needs about 1 MB per image.
BATCH_IMAGES = 500


def _merge_rows(parts: list[list[dict]]) -> list[dict]:
    """Per-layer agreement rows of consecutive batches as one row per layer (counts summed, maxima, all)."""
    merged = []
    for rows in zip(*parts, strict=True):
        row = dict(rows[0])
        for key in ("values", "codes_differ", "near_boundary"):
            row[key] = sum(r[key] for r in rows)
        row["max_code_diff"] = max(r["max_code_diff"] for r in rows)
        ratios = [r["max_error_over_bound"] for r in rows if r["max_error_over_bound"] is not None]
        row["max_error_over_bound"] = max(ratios) if ratios else None
        row["within_bound"] = all(r["within_bound"] for r in rows)
        merged.append(row)
    return merged


def evaluate_integer(model: nn.Module, network: IntegerNetwork, data: digits.ImageData, batch: int = BATCH_IMAGES,
                     bound_images: int | None = None) -> tuple[float, float, int, list[dict]]:
    """(fake-quant accuracy, integer accuracy, changed predictions, per-layer agreement) on the whole test set.

    The test set runs ``batch`` images at a time (each image's result does not depend on the others).
    The per-layer bound check covers the first ``bound_images`` test images (None: all of them; the
    check costs several times the integer run itself).
    """
    fake = digits.predict(model, data.x_test)
    checked = len(data.y_test) if bound_images is None else min(bound_images, len(data.y_test))
    edges = sorted({0, len(data.y_test), *range(0, checked, batch), checked, *range(checked, len(data.y_test), batch)})
    predictions, parts = [], []
    for start, stop in zip(edges, edges[1:], strict=False):
        outputs = network.run(data.x_test[start:stop].double().numpy())
        predictions.append(outputs[network.layers[-1].name].real().argmax(axis=1))
        if stop <= checked:
            parts.append(layer_agreement(model, network, outputs))
    integer = torch.from_numpy(np.concatenate(predictions))
    return (digits.accuracy(fake, data.y_test), digits.accuracy(integer, data.y_test),
            int((fake != integer).sum()), _merge_rows(parts) if parts else [])
