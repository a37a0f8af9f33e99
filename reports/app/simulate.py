"""``lutmac sim``: an exported network (by default the demo's) through the RTL, layer by layer.

The network comes from a file, a demo checkpoint, the demo's output folder, or is trained now
with the quick epochs; the first test images run one at a time, bit-exact against golden.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from golden.errors import ConfigError
from golden.export import export_model
from golden.integer import IntegerNetwork
from golden.layers import check_scheme, load_checkpoint, quantize_model

from ..estimator import OWN_ARRAY, HardwareConfig
from ..output import markdown_table
from .datasets import dataset
from .rtl import DEFAULT_RTL_IMAGES, run_rtl
from .training import QUICK_FLOAT_EPOCHS, QUICK_QAT_EPOCHS, model_name, model_seed, train_float, train_quantized

DEFAULT_DEMO_OUT = Path("out")


def demo_dataset(folder: Path) -> str:
    """The data set the demo run in ``folder`` trained on, from its summary."""
    try:
        name = json.loads((Path(folder) / "summary.json").read_text())["dataset"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"{folder} holds no readable demo summary.json naming its data set ({error}); "
                          "give --dataset") from None
    return dataset(name).name


def _demo_export(demo_out: Path | None, scheme: str, bits: int) -> Path:
    return Path(demo_out if demo_out is not None else DEFAULT_DEMO_OUT) / "networks" / f"{model_name(scheme, bits)}.json"


def default_dataset(network: Path | None, checkpoint: Path | None, scheme: str, bits: int, demo_out: Path | None) -> str:
    """The data set ``lutmac sim`` runs when none is given: the demo's for its export, else digits."""
    exported = _demo_export(demo_out, scheme, bits)
    if network is None and checkpoint is None and exported.is_file():
        return demo_dataset(exported.parents[1])
    return "digits"


def load_or_train_network(network: Path | None, checkpoint: Path | None, scheme: str, bits: int, demo_out: Path | None,
                          seed: int, data_set: str = "digits") -> tuple[IntegerNetwork, str]:
    """The network ``lutmac sim`` runs and where it came from: a file, a checkpoint, the demo's, or trained now.

    ``demo_out`` named must hold the export; None looks in :data:`DEFAULT_DEMO_OUT` and trains when it is not there.
    """
    if network is not None:
        if not Path(network).is_file():
            raise ConfigError(f"network file {network} not found")
        return IntegerNetwork.load(network), str(network)
    check_scheme(scheme, bits)
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise ConfigError(f"checkpoint {checkpoint} not found")
        model = load_checkpoint(quantize_model(dataset(data_set).network(), scheme, bits), checkpoint).eval()
        return export_model(model)[0], f"{checkpoint} ({scheme}, {bits} bits)"
    exported = _demo_export(demo_out, scheme, bits)
    if exported.is_file():
        return IntegerNetwork.load(exported), str(exported)
    if demo_out is not None:
        raise ConfigError(f"no exported network {exported}: run `lutmac demo --out {demo_out}` with {scheme} at {bits} "
                          "bits first, or leave out --from to train the model now")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = dataset(data_set).load(seed)
        float_model = train_float(data, seed, QUICK_FLOAT_EPOCHS, network=dataset(data_set).network)
        model = train_quantized(float_model, data, scheme, bits, model_seed(seed, scheme, bits), QUICK_QAT_EPOCHS)
    finally:
        torch.set_num_threads(threads)
    return export_model(model)[0], f"{model_name(scheme, bits)} trained now ({QUICK_QAT_EPOCHS} QAT epochs; no {exported})"


def simulate(network: Path | None = None, checkpoint: Path | None = None, scheme: str = "post", bits: int = 4,
             demo_out: Path | None = None, images: int = DEFAULT_RTL_IMAGES, rows: int = 8, cols: int = 8,
             backend: str = "verilator", seed: int = 0, data_set: str | None = None,
             synth: Path | None = None) -> tuple[str, bool]:
    """``lutmac sim``: test images through the RTL; (printable per-layer report, bit-exact).

    With ``synth`` (a ``make synth`` JSON; missing array cores are synthesized next to it, as the demo
    does) the report adds the estimator's energy per inference of every PE kind the scheme is priced on.
    """
    if images < 1:
        raise ConfigError("sim needs at least one image")
    data_set = data_set or default_dataset(network, checkpoint, scheme, bits, demo_out)
    source = dataset(data_set)
    source.check_image_count(images)
    HardwareConfig(rows, cols, OWN_ARRAY)
    net, origin = load_or_train_network(network, checkpoint, scheme, bits, demo_out, seed, data_set)
    data = source.load(seed)
    x = net.quantize_input(data.x_test[:images].double().numpy())
    try:
        golden = net.run(x)[net.layers[-1].name].real().argmax(axis=1)
    except ConfigError as error:
        raise ConfigError(f"{origin} does not take the {data_set} images ({error}); give its --dataset") from None
    result = run_rtl(net, x, rows, cols, backend)
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
        f"{result.cycles_per_image:.0f} cycles per image; wall {result.wall_seconds:.1f} s "
        f"({result.wall_seconds / images:.3f} s per image)",
    ])
    if synth is not None:
        text += "\n" + _energy_text(net, scheme, bits, rows, cols, Path(synth), source)
    return text, result.bit_exact


def _energy_text(net: IntegerNetwork, scheme: str, bits: int, rows: int, cols: int, synth: Path, source) -> str:
    """Energy per inference (batch 1) per priced PE kind, from the estimator, as one line each."""
    from .pricing import energy_rows, synth_keys
    from .synth_cache import SynthesisCache

    cache = SynthesisCache(synth)
    cache.ensure(synth_keys(net, scheme, rows, cols))
    found = energy_rows(net, scheme, bits, rows, cols, cache.synthesis(), source.network(), source.input_shape)
    lines = []
    for kind in dict.fromkeys(r["pe_kind"] for r in found):
        part = [r for r in found if r["pe_kind"] == kind]
        total = sum(r["energy_nj"] for r in part)
        lines.append(f"energy per inference on {kind} (estimator, batch 1): {total:.1f} nJ (MACs {sum(r['mac_nj'] for r in part):.2f}, "
                     f"SRAM {sum(r['sram_nj'] for r in part):.1f}, DRAM {sum(r['dram_nj'] for r in part):.1f} nJ), "
                     f"{sum(r['cycles'] for r in part):.0f} estimated cycles")
    return "\n".join(lines)
