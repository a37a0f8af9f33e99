"""What each fake-quantizer means on the integer datapath: the codes the export gives a layer.

:func:`golden.export.export_model` asks this module about every quantized layer:

* **weights** (:func:`weight_side`) — codes in the ``golden.spec`` format of the weight
  quantizer, and the real value of one product LSB per unit input step (``weight_scale``):

  =========  =============================================  =================================
  quantizer  codes                                          weight_scale
  =========  =============================================  =================================
  LSQ        ``int``, the LSQ code                          ``s[c]``
  POT/POST   ``pot``/``post`` sign-exponent code words      ``alpha[c] * 2^-F``
  LCQ        ``lcq``: index ``j + Q`` into the level table  ``alpha * sigma / (2^(B-1) - 1)``
             ``[-L_Q .. -L_1, 0, L_1 .. L_Q, L_Q]``
             (``L_j = round(g^-1(j/Q) (2^(B-1) - 1))``)
  APoT       ``apot``: sign | one field per term            ``alpha * std / m``
  =========  =============================================  =================================

  APoT levels are sums of a few powers of two normalized by their maximum; the ``apot`` code
  selects the terms (:mod:`golden.apot_format`) and its integer value ``level * m`` is exact,
  with ``m`` the integer magnitude of the largest level (``m = 48`` for 5-bit, ``100`` for
  6-bit weights).

* **activations** (:func:`input_side`) — the layer's input quantizer becomes the producing
  layer's output stage (or the network's input stage): LSQ -> ``uniform`` (step ``s``); ASQ ->
  ``asq`` (adapter weights, ``beta_floor``, base step ``s``); LCQ -> ``threshold`` (bank
  ``alpha g^-1((j+1/2)/Q)``, level table ``round(L_j (2^B - 1))``, unit ``alpha / (2^B - 1)``);
  APoT -> ``threshold`` (bank ``alpha`` times the level midpoints, table ``level * m`` =
  :func:`golden.apot_format.act_levels`, unit ``alpha / m``).  A signed first-layer LSQ quantizer gives signed input codes, run as two
  unsigned passes.
* **POST/POT fraction bits** ``F`` (:func:`choose_frac_bits`, for ``frac_bits="auto"``): the
  smallest legal ``F`` (``spec.legal_frac_bits``: pot ``0..m``, post from ``m // 2``) whose
  worst-case product error over the layer's reduction, ``K * product_error_bound * unit``,
  stays below ``AUTO_F_TARGET`` of the output step.

LCQ without ``level_bits``: the fake-quant levels are real numbers; the export rounds them to
``lcq_level_bits`` (the integer model then differs from the fake-quant model by up to half a
level-table LSB per weight/activation) and records it in :attr:`ExportReport.approximations`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import apot_format, bounds, spec
from .errors import ConfigError, UnknownSchemeError
from .quantizers import APoTQuantizer, ASQQuantizer, LCQQuantizer, LSQQuantizer, PowerQuantizer
from .spec import WeightScheme
from .stages import AsqAdapter, OutputStage

AUTO_F_TARGET = 1 / 16


@dataclass
class ExportReport:
    """What the export chose and where the integer model departs from the fake-quant model."""

    frac_bits: dict[str, int] = field(default_factory=dict)
    accumulator_bits: dict[str, int] = field(default_factory=dict)
    approximations: list[str] = field(default_factory=list)


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor's values as a float64 numpy array (detached, on the CPU)."""
    return t.detach().cpu().double().numpy()


@dataclass(frozen=True)
class InputSide:
    """What a layer's input quantizer means for the layer (its activation format) and its producer."""

    stage: OutputStage
    act_bits: int
    act_format: str = "uniform"
    act_level_bits: int = spec.DEFAULT_LEVEL_BITS
    act_table: np.ndarray | None = None
    adaptive: bool = False
    signed: bool = False


def _lcq_integer_levels(quantizer: LCQQuantizer, level_bits: int, report: ExportReport, name: str) -> np.ndarray:
    if quantizer.level_bits is not None:
        return quantizer.integer_levels().numpy().astype(np.int64)
    report.approximations.append(
        f"{name}: LCQ levels re-quantized to {level_bits} bits at export (the quantizer has no level_bits)"
    )
    scale = (1 << (level_bits - 1)) - 1 if quantizer.signed else (1 << level_bits) - 1
    return np.rint(quantizer.expanded_levels().double().numpy() * scale).astype(np.int64)


def input_side(quantizer: nn.Module, name: str, report: ExportReport, lcq_level_bits: int) -> InputSide:
    """The output stage that makes a layer's input codes, and the layer's activation format."""
    if isinstance(quantizer, ASQQuantizer):
        linears = [m for m in quantizer.adapter if isinstance(m, nn.Linear)]
        adapter = AsqAdapter(tuple(as_numpy(m.weight) for m in linears), tuple(as_numpy(m.bias) for m in linears), quantizer.beta_floor)
        step = float(quantizer.s.detach())
        return InputSide(OutputStage("asq", quantizer.bits, step, adapter=adapter), quantizer.bits, adaptive=True)
    if isinstance(quantizer, LSQQuantizer):
        if quantizer.per_channel:
            raise ConfigError(f"{name}: per-channel activation steps are not supported by the requantizer")
        step = float(quantizer.s.detach())
        return InputSide(OutputStage("uniform", quantizer.bits, step, signed=quantizer.signed), quantizer.bits, signed=quantizer.signed)
    if isinstance(quantizer, LCQQuantizer):
        if quantizer.signed:
            raise ConfigError(f"{name}: a signed LCQ quantizer on activations is not supported")
        level_bits = quantizer.level_bits or lcq_level_bits
        levels = _lcq_integer_levels(quantizer, level_bits, report, name)
        alpha = float(quantizer.alpha.detach())
        thresholds = alpha * quantizer.thresholds().double().numpy()
        stage = OutputStage("threshold", quantizer.bits, alpha / ((1 << level_bits) - 1), thresholds, levels)
        return InputSide(stage, quantizer.bits, "table", level_bits, levels)
    if isinstance(quantizer, APoTQuantizer):
        if quantizer.signed:
            raise ConfigError(f"{name}: a signed APoT quantizer on activations is not supported")
        levels = quantizer.levels().numpy()
        table = apot_format.act_levels(quantizer.bits)
        grid = int(table[-1])
        alpha = float(quantizer.alpha.detach())
        thresholds = alpha * (levels[1:] + levels[:-1]) / 2
        level_bits = int(grid).bit_length()
        stage = OutputStage("threshold", quantizer.bits, alpha / grid, thresholds, table)
        return InputSide(stage, quantizer.bits, "table", level_bits, table)
    raise UnknownSchemeError(f"{name}: activation quantizer {type(quantizer).__name__} has no integer export")


@dataclass(frozen=True)
class WeightSide:
    scheme: WeightScheme
    bits: int
    codes: np.ndarray
    scale: np.ndarray  # real value of one level unit per output channel (before 2^-F)
    levels: str = "bbit"
    level_bits: int = spec.DEFAULT_LEVEL_BITS
    table: np.ndarray | None = None


def weight_side(quantizer: nn.Module, weight: torch.Tensor, name: str, report: ExportReport, lcq_level_bits: int) -> WeightSide:
    """Weight codes in the spec format and the per-channel scale of one level unit."""
    channels = weight.shape[0]
    if isinstance(quantizer, LSQQuantizer):
        if not quantizer.signed:
            raise ConfigError(f"{name}: weights need a signed LSQ quantizer")
        codes = quantizer.quantize_codes(weight).numpy()
        return WeightSide(WeightScheme.INT, quantizer.bits, codes, np.broadcast_to(as_numpy(quantizer.s), (channels,)).copy())
    if isinstance(quantizer, PowerQuantizer):
        codes = quantizer.quantize_codes(weight).numpy()
        fmt = quantizer.weight_format
        return WeightSide(fmt.scheme, fmt.bits, codes, np.broadcast_to(as_numpy(quantizer.alpha), (channels,)).copy(), fmt.levels)
    if isinstance(quantizer, LCQQuantizer):
        if not quantizer.signed:
            raise ConfigError(f"{name}: weights need a signed LCQ quantizer")
        level_bits = quantizer.level_bits or lcq_level_bits
        magnitudes = _lcq_integer_levels(quantizer, level_bits, report, name)
        table = np.concatenate([-magnitudes[::-1], magnitudes[1:], magnitudes[-1:]])
        codes = quantizer.quantize_codes(weight).numpy() + quantizer.q
        scale = float(quantizer.output_scale(weight)) / ((1 << (level_bits - 1)) - 1)
        return WeightSide(WeightScheme.LCQ, quantizer.bits, codes, np.full(channels, scale), level_bits=level_bits, table=table)
    if isinstance(quantizer, APoTQuantizer):
        terms = apot_format.weight_terms(quantizer.bits)
        index = quantizer.quantize_codes(weight).numpy()  # signed level index; levels are symmetric
        magnitudes = terms.levels[np.abs(index)]
        codes = terms.pack(np.where(index < 0, -magnitudes, magnitudes))
        scale = float(quantizer.output_scale(weight)) / terms.max_magnitude
        return WeightSide(WeightScheme.APOT, quantizer.bits, codes, np.full(channels, scale))
    raise UnknownSchemeError(f"{name}: weight quantizer {type(quantizer).__name__} has no integer export")


def choose_frac_bits(weights: WeightSide, act_bits: int, reduction: int, input_step: float, out_step: float | None) -> int:
    """Smallest legal F with ``K * product_error_bound(F) * max(scale) 2^-F * s_in <= AUTO_F_TARGET * s_out``.

    Searched over ``spec.legal_frac_bits`` of the weight format (pot ``0..m``, post from ``m // 2``);
    the format's default without an output step, the largest legal F if none meets the target.
    """
    fmt = spec.WeightFormat(weights.scheme, weights.bits, weights.levels)
    legal = spec.legal_frac_bits(fmt, act_bits)
    if out_step is None:
        return fmt.default_frac_bits
    for frac in legal:
        cfg = spec.DatapathConfig(fmt, act_bits, frac)
        worst = reduction * bounds.product_error_bound(cfg) * float(np.abs(weights.scale).max()) * 2.0**-frac * input_step
        if worst <= AUTO_F_TARGET * out_step:
            return frac
    return legal[-1]
