"""How far the integer layer may drift from the real-valued (fake-quant) layer: computed bounds.

:func:`real_forward` runs an :class:`~golden.integer.IntegerLayer` on real numbers (float64,
PyTorch's conv): dequantized inputs, ideal weight levels (``2^F base^-e`` exactly, no LUT or
shift truncation), the real bias and shortcut, real steps and thresholds, round half to even
(``torch.round``).  :func:`layer_bound` bounds, per output element, the distance between the
integer model and that real layer.  With ``t`` the integer requantizer input and ``y`` the real
pre-quantization value (both after pooling; ``unit`` the real value of one LSB of ``t``):

* ``|t * unit - y| <= V`` with ``V = unit * (E * n_products + 1/2) + shortcut + extra + gamma``:
  ``E = product_error_bounds`` per product (its weight's exponent; 0 for int/lcq) with a
  non-zero activation, half an
  LSB for ``rint(bias / unit)``, the aligned shortcut's error (:func:`shortcut_error`), any
  caller-supplied float path (``extra``, e.g. float32 fake-quant), and the float64 reference's
  own rounding ``gamma_{K+2} * (sum |a w| + |b|)``.  Max pooling and ReLU are 1-Lipschitz and a
  global average averages, so ``V`` pools the same way.
* uniform / ASQ codes: the requantizer rounds ``u = t * m 2^-s``, the real layer ``v = y / step``;
  ``|u - v| <= |t| |m 2^-s - unit/step_int| + V / step_int + |y| |1/step_int - 1/step_real|``.
* LCQ codes: ``t >= ceil(T_j / unit)`` is ``t * unit >= T_j`` up to the rounding of the float
  quotient (one more ``unit``), the real layer counts ``y >= T_j``.

Codes can then differ only where a rounding boundary (``k + 1/2``, or an LCQ threshold) lies
within the bound of the real value, and by at most the number of such boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import requantization, spec
from .errors import ConfigError
from .gemm import conv_output_size, ideal_weight_levels, int_conv2d, int_linear
from .integer import IntegerLayer, shortcut_ratio
from .layers import QuantConv2d
from .quantizers import ASQQuantizer, LSQQuantizer
from .stages import Accumulators, Codes


def product_error_bounds(cfg: spec.DatapathConfig) -> np.ndarray:
    """Per exponent ``e = 0..m`` (pot/post): max |integer product - exact real product * 2^F|, in product LSBs.

    A right shift by ``d`` of an exact integer truncates, error in ``[0, 1 - 2^-d]`` (attained
    when the low ``d`` bits are ones).  Odd post exponents: the ROM is within 1/2 of
    ``a 2^L / sqrt 2`` (never a tie), so left-shifted by ``s`` the error is ``< 2^(s-1)`` -- the
    same relative error at every odd exponent; truncating form: ``< 2^-(h+1) + 1 - 2^-h``.
    """
    if cfg.scheme not in spec.SHIFT_SCHEMES:
        raise ConfigError(f"{cfg.scheme!r} products have no exponent")

    def truncation(bits_dropped: int) -> float:
        return 1.0 - 2.0 ** -bits_dropped if bits_dropped > 0 else 0.0

    m, frac = cfg.weight.max_exponent, cfg.frac_bits
    if cfg.scheme == spec.WeightScheme.POT:
        return np.array([truncation(e - frac) for e in range(m + 1)])
    if cfg.left_shifts:
        return np.array([2.0 ** (((m - e) >> 1) - 1) if e % 2 else 0.0 for e in range(m + 1)])
    return np.array([1.0 - 2.0 ** -(e // 2 + 1) if e % 2 else truncation(e // 2 - frac) for e in range(m + 1)])


def product_error_bound(cfg: spec.DatapathConfig) -> float:
    """Max |integer product - exact real product * 2^F| over every product, in product LSBs (int/lcq: exact, 0)."""
    if cfg.scheme not in spec.SHIFT_SCHEMES:
        return 0.0
    return float(product_error_bounds(cfg).max())


FLOAT64_UNIT_ROUNDOFF = 2.0**-53
FLOAT32_UNIT_ROUNDOFF = 2.0**-24


def gamma(n: int, unit_roundoff: float) -> float:
    """Higham's ``gamma_n = n u / (1 - n u)``: relative error bound of an n-term float sum of products."""
    return n * unit_roundoff / (1 - n * unit_roundoff)


def ideal_levels(layer: IntegerLayer) -> np.ndarray:
    """Real weight level of every weight code of the layer, in product LSBs."""
    return ideal_weight_levels(layer.cfg, layer.weight_codes, layer.weight_table)


def real_weights(layer: IntegerLayer) -> np.ndarray:
    """Dequantized weights: ideal level times the (signed, BN-folded) per-channel scale."""
    return ideal_levels(layer) * layer.weight_scale.reshape((-1,) + (1,) * (layer.weight_codes.ndim - 1))


def _channel_view(per_channel: np.ndarray, ndim: int) -> np.ndarray:
    """A ``[C]`` or ``[N, C]`` array broadcast against ``[N, C, spatial...]`` of rank ``ndim``."""
    per_channel = np.asarray(per_channel)
    if per_channel.ndim == 1:
        per_channel = per_channel[None, :]
    return per_channel.reshape(per_channel.shape + (1,) * (ndim - 2))


def _sample_view(per_sample: np.ndarray, ndim: int) -> np.ndarray:
    """A ``[N]`` array broadcast against ``[N, ...]`` of rank ``ndim``."""
    return np.asarray(per_sample).reshape((-1,) + (1,) * (ndim - 1))


def real_linear_map(layer: IntegerLayer, x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The layer's conv / linear on real tensors (PyTorch, float64): independent of the integer path."""
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    wt = torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float64))
    if layer.kind == "conv":
        return F.conv2d(xt, wt, None, layer.stride, layer.padding, layer.dilation, layer.groups).numpy()
    return F.linear(xt.reshape(xt.shape[0], -1), wt).numpy()


def _pool(layer: IntegerLayer, value: np.ndarray) -> np.ndarray:
    """The output stage's pooling on a non-negative real tensor (max, global mean, or none)."""
    out = layer.output
    if out.max_pool is not None:
        return F.max_pool2d(torch.from_numpy(np.ascontiguousarray(value)), *out.max_pool).numpy()
    if out.global_pool:
        return value.mean(axis=(2, 3))
    return value


def real_shortcut(layer: IntegerLayer, shortcut_real: np.ndarray) -> np.ndarray:
    """A source's real output, subsampled and channel-padded as the layer's residual says."""
    residual = layer.residual
    if shortcut_real.ndim == 4:
        shortcut_real = shortcut_real[:, :, :: residual.stride, :: residual.stride]
    pad = ((0, 0), residual.channel_pad) + ((0, 0),) * (shortcut_real.ndim - 2)
    return np.pad(shortcut_real, pad)


@dataclass(frozen=True)
class RealOutput:
    """The real layer: ``value`` before the output stage's rounding (after pooling), its codes and step."""

    value: np.ndarray
    codes: np.ndarray | None
    step: np.ndarray | None


def real_forward(layer: IntegerLayer, x: Codes, shortcut_real: np.ndarray | None = None) -> RealOutput:
    """The layer on real numbers; ``shortcut_real`` is the source's real output (before stride/padding)."""
    y = real_linear_map(layer, x.real(), real_weights(layer))
    y = y + _channel_view(layer.bias, y.ndim)
    if shortcut_real is not None:
        y = y + real_shortcut(layer, shortcut_real)
    out = layer.output
    if out.mode == "accumulator":
        return RealOutput(y, None, None)
    y = _pool(layer, np.maximum(y, 0.0)) if out.max_pool is not None or out.global_pool else y
    batch = y.shape[0]
    if out.mode == "threshold":
        return RealOutput(y, (y[..., None] >= out.thresholds).sum(axis=-1), np.full(batch, out.step))
    step = np.full(batch, out.step)
    if out.mode == "asq":
        relu = np.maximum(y, 0.0)
        step = step * out.adapter(relu if relu.ndim == 2 else relu.mean(axis=(2, 3)))
    scaled = y / _sample_view(step, y.ndim)
    return RealOutput(y, np.rint(np.clip(scaled, 0, (1 << out.bits) - 1)).astype(np.int64), step)


def shortcut_error(layer: IntegerLayer, shortcut: Codes | Accumulators, unit: np.ndarray, source_error=None) -> np.ndarray:
    """Bound (real units) on the aligned shortcut minus the source's real value, per output element.

    ``rescale`` rounds half an LSB of this layer's accumulator and carries the multiplier's
    error ``|v| |m 2^-s - ratio|``; ``source_error`` is the source's own bound (accumulator mode).
    """
    if isinstance(shortcut, Codes):
        values = shortcut.values()
        source_unit = np.broadcast_to(shortcut.step[:, None], values.shape[:2])
        error = np.zeros(values.shape)
    else:
        values, source_unit = shortcut.values, shortcut.unit
        error = np.zeros(values.shape) if source_error is None else source_error
    values = real_shortcut(layer, values.astype(np.float64))
    error = real_shortcut(layer, error)
    ratio = shortcut_ratio(source_unit, unit, layer.residual.channel_pad)
    mantissa, shift = requantization.quantize_multiplier(ratio)
    multiplier_error = np.abs(mantissa * np.exp2(-shift.astype(np.float64)) - ratio)
    rounding = 0.5 + np.abs(values) * _channel_view(multiplier_error, values.ndim)
    return rounding * _channel_view(unit, values.ndim) + error


@dataclass(frozen=True)
class LayerBound:
    """Per-element bounds: ``value`` on ``|t * unit - y|`` (real units, after pooling), ``code`` on ``|u - v|``.

    ``boundaries_near`` counts the rounding boundaries / thresholds within the bound of the real
    value: codes may differ only where it is non-zero, and by at most that much.
    """

    value: np.ndarray
    code: np.ndarray | None
    boundaries_near: np.ndarray | None


def layer_bound(
    layer: IntegerLayer,
    x: Codes,
    integer_out: Codes | Accumulators,
    real: RealOutput,
    extra_error: np.ndarray | float = 0.0,
    relative_slack: float = 8 * FLOAT64_UNIT_ROUNDOFF,
) -> LayerBound:
    """Bound on |integer - real| for every output element of ``layer`` on input codes ``x``.

    ``extra_error`` (real units, before pooling) adds the shortcut's error and any other float
    path (:func:`float_path_error`).  ``relative_slack`` covers how the real side divides by its
    step or scales its thresholds (a few float64 ulps; ``2^-22`` for a float32 fake-quant model).
    """
    unit = np.abs(layer.weight_scale)[None, :] * x.step[:, None]
    levels = ideal_levels(layer)
    ndim = real.value.ndim if layer.output.mode == "accumulator" else (4 if layer.kind == "conv" else 2)
    weights_abs = np.abs(real_weights(layer))
    magnitude = real_linear_map(layer, np.abs(x.real()), weights_abs) + np.abs(_channel_view(layer.bias, ndim))
    value_error = (_product_errors(layer, x, levels != 0) + 0.5) * _channel_view(unit, ndim)
    value_error = value_error + gamma(layer.reduction_length + 4, FLOAT64_UNIT_ROUNDOFF) * magnitude + extra_error
    out = layer.output
    if out.mode == "accumulator":
        return LayerBound(value_error, None, None)
    value_error = _pool(layer, value_error)
    spatial = int(np.prod(_output_spatial(layer, x))) if out.global_pool else 1
    ndim = value_error.ndim
    if out.mode == "threshold":
        slack = value_error + _channel_view(unit, ndim) / spatial
        slack = slack[..., None] + np.abs(out.thresholds) * relative_slack
        near = np.abs(real.value[..., None] - out.thresholds) <= slack
        return LayerBound(value_error, None, near.sum(axis=-1))
    if not isinstance(integer_out, Codes):
        raise ConfigError(f"layer {layer.name!r}: a requantizing layer's integer output must be codes")
    step_int = integer_out.step
    multiplier = unit / (spatial * step_int[:, None])
    mantissa, shift = requantization.quantize_multiplier(multiplier)
    multiplier_error = np.abs(mantissa * np.exp2(-shift.astype(np.float64)) - multiplier)
    t_abs = (np.abs(real.value) + value_error) * spatial / _channel_view(unit, ndim)
    code_error = (
        t_abs * _channel_view(multiplier_error, ndim)
        + value_error / _sample_view(step_int, ndim)
        + np.abs(real.value) * np.abs(1 / _sample_view(step_int, ndim) - 1 / _sample_view(real.step, ndim))
    )
    scaled = real.value / _sample_view(real.step, ndim)
    code_error = code_error * (1 + 8 * FLOAT64_UNIT_ROUNDOFF) + np.abs(scaled) * relative_slack
    boundaries = np.arange((1 << out.bits) - 1) + 0.5
    near = np.abs(scaled[..., None] - boundaries) <= code_error[..., None]
    return LayerBound(value_error, code_error, near.sum(axis=-1))


def float_path_error(
    layer: IntegerLayer, x: Codes, bias_magnitude: np.ndarray, extra_operations: int = 12,
    unit_roundoff: float = FLOAT32_UNIT_ROUNDOFF,
) -> np.ndarray:
    """Rounding of a float fake-quant layer: ``gamma_{K + extra} (sum |a w| + bias_magnitude[c])``.

    Covers the dequantized operands (one rounding each), the K-term sum in any order and
    ``extra_operations`` further roundings (bias, BatchNorm's subtract / divide / scale / shift);
    ``bias_magnitude`` is the sum of the magnitudes those terms add (e.g. ``|b g| + |mu g| + |beta|``).
    """
    weights_abs = np.abs(real_weights(layer))
    magnitude = real_linear_map(layer, np.abs(x.real()), weights_abs)
    magnitude = magnitude + _channel_view(np.asarray(bias_magnitude, dtype=np.float64), magnitude.ndim)
    return gamma(layer.reduction_length + extra_operations, unit_roundoff) * magnitude


def _product_errors(layer: IntegerLayer, x: Codes, nonzero: np.ndarray) -> np.ndarray | float:
    """Per output, the sum of :func:`product_error_bounds` over its products with a non-zero activation and weight.

    The bound depends only on the weight's exponent: the count of each exponent's products,
    exact on the integer path, times its bound (exponents with a bound of 0 are skipped).
    """
    if layer.cfg.scheme not in spec.SHIFT_SCHEMES:
        return 0.0
    bounds = product_error_bounds(layer.cfg)
    _, exponent, _ = layer.cfg.weight.unpack_power(layer.weight_codes)
    total = 0.0
    for value in np.unique(bounds[bounds > 0]):
        mask = nonzero & (bounds[np.minimum(exponent, layer.cfg.weight.max_exponent)] == value)
        if mask.any():
            total = total + value * _nonzero_product_count(layer, x, mask)
    return total


def _nonzero_product_count(layer: IntegerLayer, x: Codes, weight_mask: np.ndarray) -> np.ndarray:
    """Per output, products with a non-zero activation and weight (counted exactly on the integer path)."""
    counter = spec.DatapathConfig.make(spec.WeightScheme.INT, 2, 2)
    active = (x.values() != 0).astype(np.int64)
    mask = weight_mask.astype(np.int64)
    if layer.kind == "conv":
        return int_conv2d(counter, active, mask, layer.stride, layer.padding, layer.dilation, layer.groups).astype(np.float64)
    return int_linear(counter, active.reshape(active.shape[0], -1), mask).astype(np.float64)


def _output_spatial(layer: IntegerLayer, x: Codes) -> tuple[int, int]:
    return conv_output_size(x.codes.shape[2:], layer.weight_codes.shape[2:], layer.stride, layer.padding, layer.dilation)


def codes_within_bound(integer_codes: np.ndarray, real_codes: np.ndarray, bound: LayerBound) -> bool:
    """The bound's claim: codes differ only near boundaries and by at most the boundaries nearby."""
    return bool(np.all(np.abs(integer_codes - real_codes) <= bound.boundaries_near))


# ----------------------------------------------------------------------------------------------- the torch side


def bias_magnitude(module: nn.Module, post: list[nn.Module]) -> np.ndarray:
    """``|b g| + |mu g| + |beta|``: what the float32 bias / BatchNorm path adds, for :func:`float_path_error`."""
    bias = module.bias.detach().double().numpy() if module.bias is not None else np.zeros(module.weight.shape[0])
    for bn in post:
        if isinstance(bn, nn.BatchNorm2d):
            gain = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().numpy()
            mean, beta = bn.running_mean.double().numpy(), bn.bias.detach().double().numpy()
            return np.abs(bias * gain) + np.abs(mean * gain) + np.abs(beta)
    return np.abs(bias)


@torch.no_grad()
def fake_quant_segment(module: nn.Module, post: list[nn.Module], consumer: nn.Module | None, x: Codes) -> RealOutput:
    """The fake-quant layer, then ``post`` (BatchNorm, ReLU, pooling) and the next quantizer ``consumer``.

    It reads the integer model's (dequantized) input, bypassing the layer's own input quantizer, so the
    two models are compared on the same input, layer by layer.
    """
    x_hat = torch.from_numpy(x.real()).float()
    weight = module.quantized_weight()
    if isinstance(module, QuantConv2d):
        y = F.conv2d(x_hat, weight, module.bias, module.stride, module.padding, module.dilation, module.groups)
    else:
        y = F.linear(x_hat.flatten(1), weight, module.bias)
    for op in post:
        y = op(y)
    if consumer is None:
        return RealOutput(y.double().numpy(), None, None)
    codes = consumer.quantize_codes(y).numpy()
    if isinstance(consumer, ASQQuantizer):
        step = consumer.step(y).double().numpy()
    elif isinstance(consumer, LSQQuantizer):
        step = np.full(y.shape[0], float(consumer.s))
    else:  # threshold quantizers (LCQ, APoT): the bank decides, there is no step
        step = np.full(y.shape[0], np.nan)
    return RealOutput(y.double().numpy(), codes, step)
