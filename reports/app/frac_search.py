"""``lutmac frac-search``: the smallest product fraction width ``F`` each demo model needs.

For every demo model with shift weights (pot, post, asq_post at the demo's bits), trained as the
demo trains it (:mod:`.training`; ``--quick``: the quick epochs) or loaded from a demo output's
checkpoints (``--from``), the shift layers are exported at every legal ``F`` of their weight
format (``golden.export.export_model(frac_bits={bits: F})``, the other layers at their default)
and the integer network's predictions on the whole test set are compared with the fake-quant
model's.  The table gives, per model, the changed predictions at each ``F``, the smallest ``F``
with none, and the smallest ``F`` from which every larger legal ``F`` has none; per weight
format, the smallest ``F`` at which every model of the format changes none (the value
``golden.spec.MEASURED_FRAC_BITS`` records), next to the spec's current default.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from golden import spec
from golden.errors import ConfigError, UnsupportedBitsError
from golden.export import export_model
from golden.layers import SCHEME_WEIGHTS, check_scheme, load_checkpoint, quantize_model
from golden.models import DigitsNet
from golden.spec import SHIFT_SCHEMES

from .. import digits
from ..output import markdown_table
from .demo import DEFAULT_BITS
from .training import (
    FLOAT_EPOCHS,
    QAT_EPOCHS,
    QUICK_FLOAT_EPOCHS,
    QUICK_QAT_EPOCHS,
    model_name,
    model_seed,
    train_float,
    train_quantized,
)

#: The demo's models with shift weights and their bits, read off the demo's own defaults.
SEARCH_RUNS = tuple((scheme, bits) for scheme, scheme_bits in DEFAULT_BITS.items()
                    if SCHEME_WEIGHTS[scheme] in SHIFT_SCHEMES for bits in scheme_bits)


@dataclass(frozen=True)
class FracSearchRow:
    """One model's search over one shift weight format."""

    model: str
    scheme: str
    bits: int
    levels: str
    changed: dict[int, int]  # legal F -> predictions that differ from fake-quant
    smallest: int | None  # smallest F with no changed prediction
    smallest_stable: int | None  # smallest F such that it and every larger legal F change none
    spec_default: int

    def table_row(self) -> dict:
        changed = " ".join(f"{f}:{n}" for f, n in self.changed.items())
        return {"model": self.model, "weights": f"{self.scheme} w{self.bits} {self.levels}", "F: changed": changed,
                "smallest F": _text(self.smallest), "smallest stable F": _text(self.smallest_stable),
                "spec default": self.spec_default}


def _text(value: int | None) -> str:
    return "none" if value is None else str(value)


def shift_formats(model: nn.Module) -> list[spec.WeightFormat]:
    """The shift weight formats of a model's layers (one export at the defaults tells)."""
    network, _ = export_model(model)
    formats = {layer.cfg.weight for layer in network.layers if layer.cfg.scheme in spec.SHIFT_SCHEMES}
    return sorted(formats, key=lambda fmt: (fmt.scheme, fmt.bits, fmt.levels))


def search_model(name: str, model: nn.Module, data: digits.DigitsData) -> list[FracSearchRow]:
    """Export ``model`` at every legal F of each shift format and count the changed test-set predictions."""
    fake = digits.predict(model, data.x_test)
    x = data.x_test.double().numpy()
    rows = []
    for fmt in shift_formats(model):
        lo, hi = fmt.frac_bits_range
        changed = {}
        for frac in range(lo, hi + 1):
            try:  # legal for the format, but the sqrt-2 ROM check also depends on each layer's activation bits
                network, _ = export_model(model, frac_bits={fmt.bits: frac})
            except UnsupportedBitsError:
                continue
            integer = torch.from_numpy(network.run(x)[network.layers[-1].name].real().argmax(axis=1))
            changed[frac] = int((integer != fake).sum())
        exact = [f for f, n in changed.items() if n == 0]
        stable = [f for f in changed if all(changed[g] == 0 for g in changed if g >= f)]
        rows.append(FracSearchRow(name, fmt.scheme, fmt.bits, fmt.levels, changed, min(exact, default=None),
                                  min(stable, default=None), fmt.default_frac_bits))
    return rows


def frac_search(quick: bool = False, demo_out: Path | None = None, seed: int = 0,
                runs: tuple[tuple[str, int], ...] = SEARCH_RUNS, epochs: int | None = None) -> list[FracSearchRow]:
    """Every run's rows: models trained now (``quick``: the quick epochs) or loaded from ``demo_out/checkpoints``."""
    for scheme, bits in runs:
        check_scheme(scheme, bits)
    data = digits.load_digits_split(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the demo's deterministic training
    try:
        float_model = None
        rows = []
        for scheme, bits in runs:
            name = model_name(scheme, bits)
            if demo_out is not None:
                path = Path(demo_out) / "checkpoints" / f"{name}.pt"
                if not path.is_file():
                    raise ConfigError(f"no checkpoint {path}: run `lutmac demo --out {demo_out}` first")
                model = load_checkpoint(quantize_model(DigitsNet(), scheme, bits), path).eval()
            else:
                if float_model is None:
                    float_epochs = 2 * epochs if epochs else (QUICK_FLOAT_EPOCHS if quick else FLOAT_EPOCHS)
                    float_model = train_float(data, seed, float_epochs)
                qat_epochs = epochs or (QUICK_QAT_EPOCHS if quick else QAT_EPOCHS)
                model = train_quantized(float_model, data, scheme, bits, model_seed(seed, scheme, bits), qat_epochs).eval()
            rows += search_model(name, model, data)
    finally:
        torch.set_num_threads(threads)
    return rows


def defaults_needed(rows: list[FracSearchRow]) -> dict[tuple[str, int, str], tuple[int | None, int | None]]:
    """Per weight format: (smallest F at which every model of the format changes no prediction, the same but stable).

    "Stable": every larger legal F changes none either.  None: no legal F does it.
    """
    by_format: dict[tuple[str, int, str], list[FracSearchRow]] = {}
    for row in rows:
        by_format.setdefault((row.scheme, row.bits, row.levels), []).append(row)
    needed = {}
    for key, group in by_format.items():
        fracs = sorted(set.intersection(*(set(row.changed) for row in group)))
        good = [f for f in fracs if all(row.changed[f] == 0 for row in group)]
        stable = [f for f in good if all(g in good for g in fracs if g >= f)]
        needed[key] = (min(good, default=None), min(stable, default=None))
    return needed


def report(rows: list[FracSearchRow]) -> str:
    """The table, and per format the F the spec's default should be."""
    lines = [markdown_table([row.table_row() for row in rows]).rstrip(), "",
             "| weights | smallest F, every model | smallest stable F, every model | spec default |", "|---|---|---|---|"]
    for (scheme, bits, levels), (frac, stable) in defaults_needed(rows).items():
        default = spec.WeightFormat(scheme, bits, levels).default_frac_bits
        lines.append(f"| {scheme} w{bits} {levels} | {_text(frac)} | {_text(stable)} | {default} |")
    return "\n".join(lines) + "\n"


def write(rows: list[FracSearchRow], out: Path) -> None:
    """``frac_search.md`` and ``frac_search.json`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "frac_search.md").write_text(report(rows))
    (out / "frac_search.json").write_text(json.dumps([asdict(row) for row in rows], indent=1) + "\n")
