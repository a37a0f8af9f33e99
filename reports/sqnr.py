"""Weight quantization error per scheme: per-layer SQNR of LSQ, POT, POST, APoT and LCQ at 2-6 bits.

The ASQ paper's argument for POST over POT (its Fig. 3) is resolution: base-2 levels are dense
near zero and far apart near the clip, so at equal bits POT wastes levels where bell-shaped
weights are sparse; base-√2 levels are spaced half as far on the log scale.  This module measures
it on trained float weights.  For every quantized layer of a model (first and last layers
included) and every (scheme, bits), the weight quantizer ``quantize_model`` would give a body
layer (:func:`golden.layers.scheme_quantizers`) is initialized from the weight with its own
``init_from`` (the calibration QAT starts from) and

    SQNR = 10 log10( sum w^2 / sum (w - Q(w))^2 )  dB

is computed on the weights as the layer uses them (APoT and LCQ+LWN leave the mean off, so their
error includes it).  ``best_clip`` repeats it with the quantizer's scale (``s`` or ``alpha``)
times each factor of :data:`CLIP_FACTORS` and keeps the best: the scheme's resolution with the
clip chosen for it, independent of how good its initialization rule is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from golden.layers import SCALE_PARAMETERS, _float_layers, check_scheme, scheme_quantizers
from golden.spec import TrainingScheme

SQNR_SCHEMES = (TrainingScheme.LSQ, TrainingScheme.POT, TrainingScheme.POST, TrainingScheme.APOT, TrainingScheme.LCQ)
SQNR_BITS = (2, 3, 4, 5, 6)
CLIP_FACTORS = tuple(float(f) for f in np.geomspace(0.25, 4.0, 17))  # 2^(k/4), k = -8..8


def sqnr_db(weight: torch.Tensor, quantized: torch.Tensor) -> float:
    """``10 log10(|w|^2 / |w - q|^2)`` in float64 (inf when q == w)."""
    w, q = weight.double(), quantized.double()
    noise = float(((w - q) ** 2).sum())
    return math.inf if noise == 0 else 10 * math.log10(float((w ** 2).sum()) / noise)


@torch.no_grad()
def _scaled_sqnr(quantizer: nn.Module, weight: torch.Tensor, factor: float) -> float:
    saved = {name: getattr(quantizer, name).detach().clone() for name in SCALE_PARAMETERS
             if isinstance(getattr(quantizer, name, None), nn.Parameter)}
    try:
        for name, value in saved.items():
            getattr(quantizer, name).copy_(value * factor)
        return sqnr_db(weight, quantizer(weight))
    finally:
        for name, value in saved.items():
            getattr(quantizer, name).copy_(value)


@torch.no_grad()
def layer_sqnr(weight: torch.Tensor, scheme: str, bits: int) -> dict:
    """SQNR (dB) of one weight tensor under ``scheme`` at ``bits``: at the quantizer's init and at its best clip."""
    check_scheme(scheme, bits)
    weight = weight.detach().float()
    quantizer, _ = scheme_quantizers(scheme, bits, 1, weight.shape[0])
    quantizer.init_from(weight)
    quantizer.eval()
    best = max(_scaled_sqnr(quantizer, weight, f) for f in CLIP_FACTORS)
    return {"init_db": sqnr_db(weight, quantizer(weight)), "best_clip_db": best}


def model_sqnr(model: nn.Module, schemes: Sequence[str] = SQNR_SCHEMES, bits: Sequence[int] = SQNR_BITS) -> list[dict]:
    """One row per (layer, scheme, bits) over every Conv2d / Linear of a float ``model``, in module order."""
    names = {id(m): n for n, m in model.named_modules()}
    rows = []
    for _, _, layer in _float_layers(model):
        for b in bits:
            for scheme in schemes:
                rows.append({"layer": names[id(layer)], "weights": layer.weight.numel(), "scheme": str(scheme), "bits": b,
                             **layer_sqnr(layer.weight, scheme, b)})
    return rows


def pivot(rows: Sequence[dict], column: str = "init_db") -> list[dict]:
    """The rows as a table of (layer, bits) by scheme, of one SQNR column."""
    schemes = list(dict.fromkeys(r["scheme"] for r in rows))
    table: dict[tuple, dict] = {}
    for r in rows:
        table.setdefault((r["layer"], r["bits"]), {"layer": r["layer"], "bits": r["bits"]})[r["scheme"]] = r[column]
    return [entry | {s: entry.get(s) for s in schemes} for entry in table.values()]


def mean_over_layers(rows: Sequence[dict], column: str = "init_db") -> dict[tuple[str, int], float]:
    """(scheme, bits) -> SQNR in dB averaged over the layers (each layer's dB weighs the same)."""
    found: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        found.setdefault((r["scheme"], r["bits"]), []).append(r[column])
    return {key: float(np.mean(values)) for key, values in found.items()}


def sqnr_figure(rows: Sequence[dict], title: str):
    """SQNR vs bits per scheme: one panel per layer plus the mean, solid at init, dotted at the best clip."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    layers = list(dict.fromkeys(r["layer"] for r in rows))
    schemes = list(dict.fromkeys(r["scheme"] for r in rows))
    panels = layers + ["mean over layers"]
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), sharey=True, squeeze=False)
    means = {column: mean_over_layers(rows, column) for column in ("init_db", "best_clip_db")}
    for ax, panel in zip(axes[0], panels, strict=True):
        for i, scheme in enumerate(schemes):
            colour = f"C{i}"
            for column, style in (("init_db", "-"), ("best_clip_db", ":")):
                if panel in layers:
                    points = sorted((r["bits"], r[column]) for r in rows if r["layer"] == panel and r["scheme"] == scheme)
                else:
                    points = sorted((b, v) for (s, b), v in means[column].items() if s == scheme)
                ax.plot(*zip(*points, strict=True), style, marker="o" if style == "-" else None, color=colour,
                        label=scheme if style == "-" else None)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("weight bits")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("SQNR (dB)")
    axes[0][-1].legend(fontsize=8, loc="upper left", title="solid: init, dotted: best clip", title_fontsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def write_sqnr(writer, rows: Sequence[dict], title: str, stem: str = "sqnr") -> None:
    """``stem``.md/.csv/.json (every row), ``stem``_init / ``stem``_best_clip pivots and ``stem``.png into a ReportWriter."""
    writer.table(stem, list(rows), title, notes=__doc__.split("\n\n")[2], formats={"init_db": ".2f", "best_clip_db": ".2f"})
    formats = {str(s): ".2f" for s in SQNR_SCHEMES}
    for column in ("init_db", "best_clip_db"):
        table = pivot(rows, column)
        means = mean_over_layers(rows, column)
        bits = sorted({r["bits"] for r in rows})
        schemes = list(dict.fromkeys(r["scheme"] for r in rows))
        table += [{"layer": "mean", "bits": b} | {s: means[(s, b)] for s in schemes} for b in bits]
        writer.table(f"{stem}_{column.removesuffix('_db')}", table, f"{title}: SQNR (dB) {column.removesuffix('_db')}",
                     formats=formats)
    from matplotlib import pyplot as plt

    figure = sqnr_figure(rows, title)
    writer.figure(f"{stem}.png", figure)
    plt.close(figure)
