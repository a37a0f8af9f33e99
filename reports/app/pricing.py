"""Energy per inference of an exported model, priced by the estimator on the demo's array.

Each layer is priced at its own precision on the PE kinds of its scheme (:func:`priced_kinds`
for the middle layers, 8-bit ints for the first and last), MAC energies scaled from Yosys
synthesis of the array cores (:mod:`reports.app.synth_cache`).
"""

from __future__ import annotations

from torch import nn

from golden.integer import IntegerLayer, IntegerNetwork
from golden.layers import SCHEME_WEIGHTS
from golden.models import DigitsNet
from golden.spec import WeightScheme, accumulator_bits
from hw.cycles import POOL_CYCLES
from hw.kinds import kinds_of_scheme, network_kind

from ..energy import Synthesis
from ..estimator import OWN_ARRAY, HardwareConfig, asq_stage_energy, estimate
from ..networks import trace
from ..overhead import asq_barrier_cycles
from .training import model_name

DEMO_ENERGY_PARTS = ("mac", "register", "sram", "dram", "asq")


def priced_kinds(scheme: str) -> tuple[str, ...]:
    """The PE kinds a scheme's middle layers are priced on, the one the RTL runs first (POST: both LUT placements)."""
    return tuple(kind.name for kind in kinds_of_scheme(SCHEME_WEIGHTS[scheme]) if kind.priced_by_default)


def layer_hardware(layer: IntegerLayer, rows: int, cols: int, middle_kind: str | None = None) -> HardwareConfig:
    """The estimator's design point for one exported layer (``middle_kind`` overrides a non-int PE kind)."""
    cfg = layer.cfg
    kind = network_kind(cfg.scheme).name
    if middle_kind is not None and cfg.scheme != WeightScheme.INT:
        kind = middle_kind
    return HardwareConfig(rows, cols, OWN_ARRAY, kind, cfg.weight.bits, cfg.act_bits, cfg.frac_bits)


def synth_keys(network: IntegerNetwork, scheme: str, rows: int, cols: int) -> set[tuple[str, int, int, int]]:
    keys = {(network_kind(WeightScheme.INT).name, 8, 8, 0)}  # the energy anchor
    for kind in priced_kinds(scheme):
        keys |= {layer_hardware(layer, rows, cols, kind).synth_key for layer in network.layers}
    return keys


def energy_rows(network: IntegerNetwork, scheme: str, bits: int, rows: int, cols: int, synthesis: Synthesis,
                model: nn.Module | None = None, input_shape: tuple[int, ...] = (1, 1, 8, 8)) -> list[dict]:
    """Per (PE kind variant, layer): the estimator's cycles and energy of one inference (batch 1).

    ``model`` (default DigitsNet) and ``input_shape`` give the layer shapes the network was exported from.
    """
    shapes = {layer.name: layer for layer in trace(model if model is not None else DigitsNet(), input_shape)}
    out = []
    for kind in priced_kinds(scheme):
        for layer in network.layers:
            config = layer_hardware(layer, rows, cols, kind)
            shape = shapes[layer.name]
            (row,), _ = estimate([shape], config, synthesis)
            passes = 2 if layer.signed_input else 1  # a signed input runs as two unsigned passes
            adapter = layer.output.adapter
            # the output stage's own cycles: ASQ's barrier (hw.output_stage), a global pool's requantizer
            extra = (asq_barrier_cycles(rows, cols, shape.hout * shape.wout, shape.cout) if adapter is not None
                     else POOL_CYCLES if layer.output.global_pool else 0)
            asq_nj = 0.0 if adapter is None else 1e-3 * sum(asq_stage_energy(
                [w.shape for w in adapter.weights], shape.cout, shape.hout * shape.wout,
                accumulator_bits(config.datapath, shape.k), config.ofmap_kb).values())
            out.append({"model": model_name(scheme, bits), "scheme": scheme, "bits": bits, "pe_kind": kind,
                        "layer": layer.name, "layer_pe": config.pe_kind, "weight_bits": config.weight_bits,
                        "act_bits": config.act_bits, "frac_bits": config.frac_bits, "macs": row["macs"] * passes,
                        "cycles": row["cycles"] * passes + extra, "mac_nj": row["mac_nj"] * passes,
                        "register_nj": row["register_nj"] * passes, "sram_nj": row["sram_nj"] * passes,
                        "dram_nj": row["dram_nj"] * passes, "asq_nj": asq_nj,
                        "energy_nj": row["energy_nj"] * passes + asq_nj})
    return out
