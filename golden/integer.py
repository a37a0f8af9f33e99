"""Bit-exact integer model of the lutmac datapath: GEMM, convolution, requantization (numpy, vectorized).

This is the reference the RTL is checked against.  Every product comes from :mod:`golden.spec`
(``pe_product`` / ``product_table``); this module only arranges products into GEMMs and
convolutions and never re-derives a product rule.

Fast path.  A GEMM is exact in float64 whenever every partial sum is an integer below 2^53, and
:func:`golden.spec.check_accumulator` guarantees every partial sum of the layer's products fits
the accumulator width, which is asserted to be at most 53 bits.  So:

* ``int`` / ``lcq`` weights: decode both operands to integers and do one float64 matmul.
* ``pot`` / ``post`` weights: a product depends on the activation only through the row of the
  product table for the weight's exponent field (the sign is applied after the magnitude path).
  Weights are grouped by exponent; each group is one matmul of ``row[act_codes]`` with a ±1
  mask.  Rows that are exactly linear in the activation (no truncation: ``(a << F) >> e`` with
  ``e <= F``) are merged into a single matmul with integer weights ``row[1] * sign``.

Every group's result is a sum of a subset of the layer's products, so its partial sums are
bounded like the accumulator's and stay exact; groups are added in int64.

On top: :func:`im2col` / :func:`int_conv2d` / :func:`int_linear`, the requantizer wrappers, and
the network model (:class:`IntegerLayer`, :class:`IntegerNetwork`) whose real-valued meaning is
described before :data:`LAYER_KINDS` below.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import spec
from .errors import (
    AccumulatorOverflowError,
    CheckpointMismatchError,
    CodeRangeError,
    ConfigError,
    LevelTableError,
    NonFiniteInputError,
    UnknownSchemeError,
)

# ----------------------------------------------------------------------------------------------- GEMM


def _check_matrix(name: str, array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ConfigError(f"{name} must be a 2-D matrix, got shape {array.shape}")
    return array


GEMM_BLOCK_ELEMENTS = 1 << 21  # activation elements per row block: temporaries stay ~16 MB whatever M is


def _exact_matmul(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Integer matmul through float64 BLAS; callers guarantee every partial sum is below 2^53."""
    product = np.asarray(left, dtype=np.float64) @ np.asarray(right, dtype=np.float64)
    return np.rint(product).astype(np.int64)


def _row_blocks(rows: int, reduction: int):
    step = max(1, GEMM_BLOCK_ELEMENTS // max(reduction, 1))
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))


def gemm_accumulator_bits(cfg: spec.DatapathConfig, reduction_length: int) -> int:
    """The layer's accumulator width, checked to be modelled exactly (at most 53 bits)."""
    width = spec.accumulator_bits(cfg, reduction_length)
    spec.check_accumulator(cfg, width, reduction_length)
    return width


def int_gemm(
    cfg: spec.DatapathConfig,
    act_codes: np.ndarray,
    weight_codes: np.ndarray,
    weight_table: np.ndarray | None = None,
    act_table: np.ndarray | None = None,
) -> np.ndarray:
    """Accumulators ``acc[m, n] = sum_k pe_product(weight_codes[k, n], act_codes[m, k])`` as int64 ``[M, N]``."""
    act_codes = _check_matrix("activation codes", act_codes)
    weight_codes = _check_matrix("weight codes", weight_codes)
    if act_codes.shape[1] != weight_codes.shape[0]:
        raise ConfigError(f"reduction lengths differ: activations {act_codes.shape}, weights {weight_codes.shape}")
    reduction = act_codes.shape[1]
    if reduction == 0:
        raise ConfigError("a GEMM needs a reduction length of at least 1")
    gemm_accumulator_bits(cfg, reduction)
    values = spec.act_values(cfg, act_codes, act_table)
    codes = cfg.weight.check_codes(weight_codes)
    if cfg.scheme == "lcq":
        if weight_table is None:
            raise LevelTableError("lcq weights need a weight level table")
        groups = [(None, cfg.weight.check_table(weight_table)[codes].astype(np.float64))]
    elif weight_table is not None:
        raise ConfigError(f"{cfg.scheme} weights take no weight level table")
    elif cfg.scheme == "int":
        groups = [(None, codes.astype(np.float64))]
    else:
        groups = _power_groups(cfg, codes)
    acc = np.empty((values.shape[0], codes.shape[1]), dtype=np.int64)
    for rows in _row_blocks(values.shape[0], reduction):
        block = values[rows]
        acc[rows] = sum(_exact_matmul(block if row is None else row[block], mask) for row, mask in groups)
    return acc


def _power_groups(cfg: spec.DatapathConfig, codes: np.ndarray) -> list[tuple[np.ndarray | None, np.ndarray]]:
    """pot/post weights as ``(product-table row or None for linear, float64 weight matrix)`` groups.

    One group per exponent field whose products are not linear in the activation (its row maps
    activation codes to product magnitudes, the matrix is the ±1 sign mask); all linear
    exponents merge into one group of integer weights ``row[1] * sign`` (see module docstring).
    """
    negative, exponent, zero = cfg.weight.unpack_power(codes)
    sign = np.where(zero, 0, np.where(negative, -1, 1))
    table = spec.product_table(cfg)  # row index = code word; sign 0 rows hold the magnitudes
    ramp = np.arange(cfg.num_act_codes)
    linear_weights = np.zeros(codes.shape, dtype=np.int64)
    groups: list[tuple[np.ndarray | None, np.ndarray]] = []
    for field in np.unique(exponent[~zero]):
        row = table[cfg.weight.pack_power(0, field)]
        mask = np.where(exponent == field, sign, 0)
        if np.array_equal(row, row[1] * ramp):
            linear_weights += mask * row[1]
        else:
            groups.append((row, mask.astype(np.float64)))
    if linear_weights.any() or not groups:
        groups.append((None, linear_weights.astype(np.float64)))
    return groups


def ideal_weight_levels(cfg: spec.DatapathConfig, weight_codes: np.ndarray, weight_table: np.ndarray | None = None) -> np.ndarray:
    """The real level each weight code stands for, in product LSBs: ``2^F base^-e`` exactly for pot/post.

    The hardware's product differs from ``level * a`` only by the LUT rounding and shift
    truncation that :func:`golden.spec.product_error_bound` bounds.
    """
    codes = cfg.weight.check_codes(weight_codes)
    if cfg.scheme == "int":
        return codes.astype(np.float64)
    if cfg.scheme == "lcq":
        if weight_table is None:
            raise LevelTableError("lcq weights need a weight level table")
        return cfg.weight.check_table(weight_table)[codes].astype(np.float64)
    negative, exponent, zero = cfg.weight.unpack_power(codes)
    magnitudes = np.array([cfg.weight.power_value(e) for e in range(cfg.weight.max_exponent + 1)]) * 2.0**cfg.frac_bits
    magnitude = np.where(zero, 0.0, magnitudes[np.where(zero, 0, exponent)])
    return np.where(negative, -magnitude, magnitude)


def int_gemm_reference(
    cfg: spec.DatapathConfig,
    act_codes: np.ndarray,
    weight_codes: np.ndarray,
    weight_table: np.ndarray | None = None,
    act_table: np.ndarray | None = None,
) -> np.ndarray:
    """Slow, obviously correct GEMM: a sequential Python-int accumulator per output, overflow-checked.

    For cross-checking :func:`int_gemm` on small sizes only.
    """
    act_codes = _check_matrix("activation codes", act_codes)
    weight_codes = _check_matrix("weight codes", weight_codes)
    reduction = act_codes.shape[1]
    lo, hi = spec.signed_range(spec.accumulator_bits(cfg, reduction))
    out = np.zeros((act_codes.shape[0], weight_codes.shape[1]), dtype=np.int64)
    for m in range(act_codes.shape[0]):
        for n in range(weight_codes.shape[1]):
            acc = 0
            for product in spec.pe_product(cfg, weight_codes[:, n], act_codes[m, :], weight_table, act_table):
                acc += int(product)
                if not lo <= acc <= hi:
                    raise AccumulatorOverflowError(f"partial sum {acc} left [{lo}, {hi}]")
            out[m, n] = acc
    return out


# ----------------------------------------------------------------------------------------------- conv / linear


def _pair(value: int | tuple[int, int], name: str, minimum: int) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        pair = (value, value)
    elif isinstance(value, (tuple, list)):
        pair = tuple(value)
    else:
        raise ConfigError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= minimum for v in pair):
        raise ConfigError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def conv_output_size(
    size: tuple[int, int], kernel: tuple[int, int], stride=1, padding=0, dilation=1
) -> tuple[int, int]:
    """Output height/width of a convolution (PyTorch's formula)."""
    stride, padding, dilation = _pair(stride, "stride", 1), _pair(padding, "padding", 0), _pair(dilation, "dilation", 1)
    out = tuple(
        (size[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(2)
    )
    if min(out) < 1:
        raise ConfigError(f"a {kernel} kernel does not fit a {size} input with padding {padding}, dilation {dilation}")
    return out


def im2col(x_codes: np.ndarray, kernel: int | tuple[int, int], stride=1, padding=0, dilation=1) -> np.ndarray:
    """Patches of an NCHW code tensor as rows ``[N * Hout * Wout, C * kh * kw]``.

    Rows are ordered (n, y, x); columns (c, i, j) with c slowest, matching an OIHW weight
    reshaped to ``[O, C*kh*kw]``.  Padding inserts activation code 0, whose value is 0 in every
    activation format (the spec requires ``act_table[0] == 0``).
    """
    x_codes = np.asarray(x_codes)
    if x_codes.ndim != 4:
        raise ConfigError(f"convolution input must be NCHW, got shape {x_codes.shape}")
    kh, kw = _pair(kernel, "kernel", 1)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride, "stride", 1), _pair(padding, "padding", 0), _pair(dilation, "dilation", 1)
    n, c, h, w = x_codes.shape
    out_h, out_w = conv_output_size((h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw))
    padded = np.pad(x_codes, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    windows = np.lib.stride_tricks.sliding_window_view(padded, (span_h, span_w), axis=(2, 3))
    windows = windows[:, :, : (out_h - 1) * sh + 1 : sh, : (out_w - 1) * sw + 1 : sw, ::dh, ::dw]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * out_h * out_w, c * kh * kw)


def conv_weight_matrix(weight_codes: np.ndarray) -> np.ndarray:
    """OIHW weight codes as the ``[K = I*kh*kw, O]`` GEMM operand (K order matches :func:`im2col`)."""
    weight_codes = np.asarray(weight_codes)
    if weight_codes.ndim != 4:
        raise ConfigError(f"conv weights must be OIHW, got shape {weight_codes.shape}")
    return weight_codes.reshape(weight_codes.shape[0], -1).T


def int_conv2d(
    cfg: spec.DatapathConfig,
    x_codes: np.ndarray,
    weight_codes: np.ndarray,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    weight_table: np.ndarray | None = None,
    act_table: np.ndarray | None = None,
) -> np.ndarray:
    """Accumulators ``[N, O, Hout, Wout]`` of a convolution of NCHW activation codes with OIHW weight codes."""
    x_codes, weight_codes = np.asarray(x_codes), np.asarray(weight_codes)
    if weight_codes.ndim != 4 or x_codes.ndim != 4:
        raise ConfigError(f"conv expects NCHW activations and OIHW weights, got {x_codes.shape} and {weight_codes.shape}")
    if not isinstance(groups, (int, np.integer)) or groups < 1 or x_codes.shape[1] % groups or weight_codes.shape[0] % groups:
        raise ConfigError(f"groups={groups!r} must divide the {x_codes.shape[1]} input and {weight_codes.shape[0]} output channels")
    per_group_in = x_codes.shape[1] // groups
    if weight_codes.shape[1] != per_group_in:
        raise ConfigError(f"weights expect {weight_codes.shape[1]} input channels per group, activations give {per_group_in}")
    n, (h, w) = x_codes.shape[0], x_codes.shape[2:]
    out_h, out_w = conv_output_size((h, w), weight_codes.shape[2:], stride, padding, dilation)
    per_group_out = weight_codes.shape[0] // groups
    outputs = []
    for g in range(groups):
        cols = im2col(x_codes[:, g * per_group_in : (g + 1) * per_group_in], weight_codes.shape[2:], stride, padding, dilation)
        kernel = conv_weight_matrix(weight_codes[g * per_group_out : (g + 1) * per_group_out])
        outputs.append(int_gemm(cfg, cols, kernel, weight_table, act_table))
    acc = np.concatenate(outputs, axis=1)
    return acc.reshape(n, out_h, out_w, -1).transpose(0, 3, 1, 2)


def int_linear(
    cfg: spec.DatapathConfig,
    x_codes: np.ndarray,
    weight_codes: np.ndarray,
    weight_table: np.ndarray | None = None,
    act_table: np.ndarray | None = None,
) -> np.ndarray:
    """Accumulators ``[N, out]`` of ``[N, in]`` activation codes and ``[out, in]`` weight codes (PyTorch layout)."""
    weight_codes = _check_matrix("linear weight codes", weight_codes)
    return int_gemm(cfg, x_codes, weight_codes.T, weight_table, act_table)


# ----------------------------------------------------------------------------------------------- requantization


def _per_channel(param: np.ndarray | int, acc: np.ndarray, name: str) -> np.ndarray:
    """Broadcast a scalar, per-channel ``[C]`` or per-sample ``[N, C]`` parameter against ``[N, C, ...]``."""
    param = np.asarray(param)
    if param.ndim == 0:
        return param
    channels = acc.shape[1]
    if param.shape == (channels,):
        param = param[None, :]
    elif param.shape != (acc.shape[0], channels):
        raise ConfigError(f"{name} must be a scalar, [C={channels}] or [N={acc.shape[0]}, C={channels}], got shape {param.shape}")
    return param.reshape(param.shape + (1,) * (acc.ndim - 2))


def requantize_channels(
    acc: np.ndarray, bias: np.ndarray | int, mantissa: np.ndarray | int, shift: np.ndarray | int, out_bits: int
) -> np.ndarray:
    """:func:`golden.spec.requantize` on ``[N, C, ...]`` with per-channel or per-sample (ASQ) parameters."""
    acc = np.asarray(acc)
    if acc.ndim < 2:
        raise ConfigError(f"accumulators must be [N, C, ...], got shape {acc.shape}")
    return spec.requantize(
        acc,
        _per_channel(bias, acc, "bias"),
        _per_channel(mantissa, acc, "mantissa"),
        _per_channel(shift, acc, "shift"),
        out_bits,
    )


def threshold_channels(acc: np.ndarray, bias: np.ndarray | int, thresholds: np.ndarray) -> np.ndarray:
    """:func:`golden.spec.threshold_quantize` on ``[N, C, ...]``.

    The bank is shared ``[Q]``, per channel ``[C, Q]`` or per sample and channel ``[N, C, Q]``;
    ``bias`` is a scalar, ``[C]`` or ``[N, C]``.
    """
    acc = np.asarray(acc)
    thresholds = np.asarray(thresholds)
    if acc.ndim < 2:
        raise ConfigError(f"accumulators must be [N, C, ...], got shape {acc.shape}")
    leading = {1: (), 2: (acc.shape[1],), 3: acc.shape[:2]}.get(thresholds.ndim)
    if leading is None or thresholds.shape[:-1] != leading:
        raise ConfigError(f"thresholds must be [Q], [C, Q] or [N, C, Q] for accumulators {acc.shape}, got {thresholds.shape}")
    spatial = (1,) * (acc.ndim - 2)
    if thresholds.ndim == 3:
        thresholds = thresholds.reshape(thresholds.shape[:1] + spatial + thresholds.shape[1:])
    bias = np.asarray(bias)
    if bias.ndim == 2:
        bias = bias.reshape(bias.shape[:1] + spatial + bias.shape[1:])
    elif bias.ndim > 2:
        raise ConfigError(f"bias must be a scalar, [C] or [N, C], got shape {bias.shape}")
    channels_last = np.moveaxis(acc, 1, -1)
    return np.moveaxis(spec.threshold_quantize(channels_last, bias, thresholds), -1, 1)


def rescale(values: np.ndarray, mantissa: np.ndarray | int, shift: np.ndarray | int) -> np.ndarray:
    """``round_half_up(values * mantissa / 2^shift)`` with no clipping: the requantizer without its clamp.

    Aligns a residual branch to another branch's accumulator scale (may belong in golden.spec).
    """
    values = np.asarray(values, dtype=np.int64)
    mantissa = np.asarray(mantissa, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if np.any(mantissa < 0) or np.any(mantissa >= 1 << spec.MULTIPLIER_BITS) or np.any(shift < 0) or np.any(shift > spec.MAX_REQUANT_SHIFT):
        raise CodeRangeError(f"mantissa must be an unsigned {spec.MULTIPLIER_BITS}-bit int and shift in 0..{spec.MAX_REQUANT_SHIFT}")
    if values.size and int(np.abs(values).max()) >= 1 << spec.MAX_SUM_BITS:
        raise AccumulatorOverflowError("value too wide to rescale exactly in 64 bits")
    rounding = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
    return (values * mantissa + rounding) >> shift


# ----------------------------------------------------------------------------------------------- network model
#
# Real-valued meaning of the integers (the host keeps the floats, the hardware only integers):
#
# * ``Codes``: activation codes; the real value is ``value(code) * step[n]`` where value is the
#   code itself (uniform) or ``table[code]`` (LCQ), and ``step`` is per sample (ASQ: s * beta_n).
# * A layer's accumulator ``acc`` (from :func:`int_conv2d` / :func:`int_linear`) stands for
#   ``acc * weight_scale[c] * step[n]``; ``weight_scale`` holds the weight step, ``2^-F`` of
#   pot/post products and the folded BatchNorm factor, and may be negative (a BN gamma < 0).
#   The requantizer works on ``t = sign[c] * acc + bias_int[n, c]`` in units of
#   ``unit[n, c] = |weight_scale[c]| * step[n]``: the sign is one negation in the requantizer
#   (the spec's multiplier is unsigned) and ``bias_int = rint(bias / unit)``.
# * Residual add: the shortcut (another layer's output codes, or its ``t`` for a downsample
#   conv) is rescaled into this layer's units with a fixed-point multiplier
#   ``unit_src / unit`` and round half up (:func:`rescale`), added to ``t``, and the sum is
#   requantized once.  Aligning in the wide accumulator domain costs at most half an
#   accumulator LSB, far below the output step, and keeps ReLU after the add exact.
# * Pooling runs on ``relu(t)`` before requantization: max pooling commutes with every
#   (monotone) quantizer, so this equals pooling the codes; global average pooling sums in
#   integers and moves ``1/(H*W)`` into the multiplier (thresholds scale by ``H*W``).
# * Output stages: ``uniform`` (LSQ: clip(round_half_up(t * unit / step_out))), ``asq`` (the
#   same with ``step_out = s * beta_n``, beta from the adapter run on the host on the global
#   average of ``relu(t) * unit``), ``threshold`` (LCQ: ``ceil(T_j / unit)`` compared with
#   ``t``), ``accumulator`` (no requantization: ``t`` and its unit, e.g. logits).
#
# Host-side float conversions (bias rounding, multipliers, thresholds) are rounded once per
# sample and per channel; for a non-adaptive layer they are constants the hardware loads
# (:meth:`IntegerLayer.requant_params` with the static input step).

LAYER_KINDS = ("conv", "linear")
OUTPUT_MODES = ("uniform", "asq", "threshold", "accumulator")
RESIDUAL_MODES = ("codes", "accumulator")
NETWORK_INPUT = "input"


@dataclass(frozen=True)
class Codes:
    """Activation codes and the real step of one code-value unit per sample."""

    codes: np.ndarray
    step: np.ndarray
    table: np.ndarray | None = None

    def __post_init__(self) -> None:
        codes = _int_array(self.codes, "activation codes")
        if codes.ndim < 2:
            raise ConfigError(f"activation codes must be [N, ...], got shape {codes.shape}")
        step = _float_array(np.broadcast_to(self.step, (codes.shape[0],)) if np.ndim(self.step) == 0 else self.step, "step")
        if step.shape != (codes.shape[0],) or np.any(step <= 0):
            raise ConfigError(f"step must be positive, one per sample ({codes.shape[0]}), got shape {step.shape}")
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "step", step)
        if self.table is not None:
            object.__setattr__(self, "table", _int_array(self.table, "activation level table"))

    def values(self) -> np.ndarray:
        """Integer value of each code (the code itself, or its LCQ table entry)."""
        return self.codes if self.table is None else self.table[self.codes]

    def real(self) -> np.ndarray:
        return self.values() * self.step.reshape((-1,) + (1,) * (self.codes.ndim - 1))


@dataclass(frozen=True)
class Accumulators:
    """Accumulator-domain integers ``t`` and the real unit ``[N, C]`` of one LSB."""

    values: np.ndarray
    unit: np.ndarray

    def real(self) -> np.ndarray:
        return self.values * self.unit.reshape(self.unit.shape + (1,) * (self.values.ndim - 2))


def _float_array(value, name: str, shape: tuple | None = None) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise ConfigError(f"{name} must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if shape is not None and array.shape != shape:
        raise ConfigError(f"{name} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise NonFiniteInputError(f"{name} holds NaN or infinity")
    return array


def _int_array(value, name: str, shape: tuple | None = None) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        raise ConfigError(f"{name} must hold integers, got dtype {array.dtype}")
    if shape is not None and array.shape != shape:
        raise ConfigError(f"{name} must have shape {shape}, got {array.shape}")
    return array.astype(np.int64)


@dataclass(frozen=True)
class AsqAdapter:
    """The ASQ adapter MLP, run in float on the host: ``beta = max(relu(... relu(W z + b) ...), floor)``.

    ``weights[i]`` is ``[out, in]``; ReLU follows every linear layer (quantizers.md §2).
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    beta_floor: float = 1e-8

    def __post_init__(self) -> None:
        if not self.weights or len(self.weights) != len(self.biases):
            raise ConfigError("an ASQ adapter needs one bias per linear layer and at least one layer")
        weights = tuple(_float_array(w, f"adapter weight {i}") for i, w in enumerate(self.weights))
        biases = tuple(_float_array(b, f"adapter bias {i}") for i, b in enumerate(self.biases))
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            if w.ndim != 2 or b.shape != (w.shape[0],) or (i and w.shape[1] != weights[i - 1].shape[0]):
                raise ConfigError(f"adapter layer {i}: weight {w.shape} and bias {b.shape} do not chain")
        if weights[-1].shape[0] != 1:
            raise ConfigError(f"the adapter must end in one output (beta), got {weights[-1].shape[0]}")
        if not (np.isfinite(self.beta_floor) and self.beta_floor > 0):
            raise ConfigError(f"beta_floor must be finite and positive, got {self.beta_floor!r}")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "biases", biases)

    @property
    def channels(self) -> int:
        return self.weights[0].shape[1]

    def __call__(self, pooled: np.ndarray) -> np.ndarray:
        """beta ``[N]`` from globally pooled features ``[N, C]``."""
        hidden = np.asarray(pooled, dtype=np.float64)
        for w, b in zip(self.weights, self.biases, strict=True):
            hidden = np.maximum(hidden @ w.T + b, 0.0)
        return np.maximum(hidden[:, 0], self.beta_floor)


@dataclass(frozen=True)
class OutputStage:
    """What follows the accumulator: requantization to the next layer's codes, or none.

    ``step``: real step of the produced code values (uniform: LSQ step; asq: the base step s;
    threshold: the unit of ``levels``).  ``thresholds``: the LCQ decision thresholds
    ``alpha * g^-1((j + 1/2) / Q)`` in real units; ``levels``: the LCQ level table of the
    produced codes (it is the next layer's ``act_table``).  ``signed``: two's complement codes
    ``-2^(b-1)..2^(b-1)-1`` — only for the network input (a signed first-layer quantizer).
    """

    mode: str
    bits: int = 8
    step: float = 1.0
    thresholds: np.ndarray | None = None
    levels: np.ndarray | None = None
    adapter: AsqAdapter | None = None
    global_pool: bool = False
    max_pool: tuple[int, int, int] | None = None  # (kernel, stride, padding)
    signed: bool = False

    def __post_init__(self) -> None:
        if self.mode not in OUTPUT_MODES:
            raise UnknownSchemeError(f"output mode {self.mode!r} does not exist; expected one of {OUTPUT_MODES}")
        if self.mode != "accumulator":
            spec._check_bits("output bits", self.bits)
        if not (isinstance(self.step, (int, float)) and np.isfinite(self.step) and self.step > 0):
            raise ConfigError(f"output step must be a finite positive number, got {self.step!r}")
        if (self.mode == "asq") != (self.adapter is not None):
            raise ConfigError("an ASQ adapter goes with mode 'asq' and only with it")
        if self.mode == "threshold":
            if self.thresholds is None or self.levels is None:
                raise LevelTableError("mode 'threshold' needs real thresholds and a level table")
            thresholds = _float_array(self.thresholds, "thresholds", ((1 << self.bits) - 1,))
            if np.any(np.diff(thresholds) < 0):
                raise LevelTableError("thresholds must be non-decreasing")
            levels = _int_array(self.levels, "output level table", (1 << self.bits,))
            if levels[0] != 0 or np.any(np.diff(levels) < 0):
                raise LevelTableError("an activation level table starts at 0 and is non-decreasing")
            object.__setattr__(self, "thresholds", thresholds)
            object.__setattr__(self, "levels", levels)
        elif self.thresholds is not None or self.levels is not None:
            raise ConfigError(f"thresholds and level tables go with mode 'threshold', not {self.mode!r}")
        if self.max_pool is not None:
            kernel, stride, padding = _pool_geometry(self.max_pool)
            object.__setattr__(self, "max_pool", (kernel, stride, padding))
        if self.global_pool and self.max_pool is not None:
            raise ConfigError("global and max pooling on the same output are not supported")
        if self.signed and self.mode != "uniform":
            raise ConfigError("signed codes exist for a uniform input quantizer only")


def _pool_geometry(geometry) -> tuple[int, int, int]:
    try:
        kernel, stride, padding = (int(v) for v in geometry)
    except (TypeError, ValueError):
        raise ConfigError(f"max_pool must be (kernel, stride, padding), got {geometry!r}") from None
    if kernel < 1 or stride < 1 or not 0 <= padding <= kernel // 2:
        raise ConfigError(f"max_pool geometry {geometry!r} is not valid (kernel, stride >= 1, padding <= kernel/2)")
    return kernel, stride, padding


@dataclass(frozen=True)
class Residual:
    """A shortcut added to this layer's ``t`` before requantization.

    ``source`` names a layer (or ``"input"``); ``mode="codes"`` adds that layer's output codes
    (identity shortcut), ``"accumulator"`` its ``t`` (a downsample conv whose output mode is
    ``accumulator``).  ``stride`` subsamples and ``channel_pad`` zero-pads channels (the
    option-A shortcut of CIFAR ResNets).
    """

    source: str
    mode: str = "codes"
    stride: int = 1
    channel_pad: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if self.mode not in RESIDUAL_MODES:
            raise UnknownSchemeError(f"residual mode {self.mode!r} does not exist; expected one of {RESIDUAL_MODES}")
        if not isinstance(self.source, str) or not self.source:
            raise ConfigError(f"residual source must be a layer name, got {self.source!r}")
        if not isinstance(self.stride, int) or self.stride < 1:
            raise ConfigError(f"residual stride must be a positive int, got {self.stride!r}")
        pad = tuple(self.channel_pad)
        if len(pad) != 2 or not all(isinstance(p, int) and p >= 0 for p in pad):
            raise ConfigError(f"channel_pad must be two non-negative ints, got {self.channel_pad!r}")
        object.__setattr__(self, "channel_pad", pad)


@dataclass(frozen=True)
class RequantParams:
    """Integer requantizer parameters for a batch (``[N, C]``; rows identical for a static layer)."""

    sign: np.ndarray
    unit: np.ndarray
    bias: np.ndarray
    mantissa: np.ndarray | None = None
    shift: np.ndarray | None = None
    thresholds: np.ndarray | None = None  # [N, C, Q]


@dataclass(frozen=True)
class IntegerLayer:
    """One conv/linear layer as the hardware runs it, plus the host-side floats it derives integers from.

    ``weight_codes``: OIHW (conv) or ``[out, in]`` (linear) codes in ``cfg.weight``'s format.
    ``weight_scale[c]``: real value of one accumulator LSB per unit input step (see above).
    ``bias[c]``: real bias after BatchNorm folding.  ``input_step``: the static step of the
    input codes (ASQ: the base step; each sample scales it by its beta).  ``input``: name of
    the producing layer ("" = the previous one, "input" = the network input).
    ``signed_input``: the input codes are two's complement (a signed first-layer quantizer); the
    layer runs as two passes on the unsigned datapath, ``acc(max(x, 0)) - acc(max(-x, 0))``
    (``|x| <= 2^(b-1)`` fits the unsigned ``b``-bit code; zero padding stays exact), and the
    difference needs one bit more than ``accumulator_width``.
    """

    name: str
    kind: str
    cfg: spec.DatapathConfig
    weight_codes: np.ndarray
    weight_scale: np.ndarray
    bias: np.ndarray
    input_step: float
    output: OutputStage
    accumulator_width: int
    weight_table: np.ndarray | None = None
    act_table: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    input: str = ""
    input_adaptive: bool = False
    residual: Residual | None = None
    signed_input: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or self.name == NETWORK_INPUT:
            raise ConfigError(f"layer name must be a non-empty string other than {NETWORK_INPUT!r}, got {self.name!r}")
        if self.kind not in LAYER_KINDS:
            raise UnknownSchemeError(f"layer {self.name!r}: kind {self.kind!r} does not exist; expected one of {LAYER_KINDS}")
        if not isinstance(self.cfg, spec.DatapathConfig):
            raise ConfigError(f"layer {self.name!r}: cfg must be a DatapathConfig")
        codes = self.cfg.weight.check_codes(self.weight_codes)
        if codes.ndim != (4 if self.kind == "conv" else 2):
            raise ConfigError(f"layer {self.name!r}: {self.kind} weight codes have the wrong rank: {codes.shape}")
        object.__setattr__(self, "weight_codes", codes)
        out_channels = codes.shape[0]
        scale = _float_array(self.weight_scale, f"layer {self.name!r} weight_scale", (out_channels,))
        if np.any(scale == 0):
            raise ConfigError(f"layer {self.name!r}: weight_scale must be non-zero")
        object.__setattr__(self, "weight_scale", scale)
        object.__setattr__(self, "bias", _float_array(self.bias, f"layer {self.name!r} bias", (out_channels,)))
        if not (isinstance(self.input_step, (int, float)) and np.isfinite(self.input_step) and self.input_step > 0):
            raise ConfigError(f"layer {self.name!r}: input_step must be a finite positive number, got {self.input_step!r}")
        if self.cfg.scheme == "lcq":
            if self.weight_table is None:
                raise LevelTableError(f"layer {self.name!r}: lcq weights need a weight level table")
            object.__setattr__(self, "weight_table", self.cfg.weight.check_table(self.weight_table))
        elif self.weight_table is not None:
            raise ConfigError(f"layer {self.name!r}: {self.cfg.scheme} weights take no weight level table")
        if self.signed_input and self.cfg.act_format != "uniform":
            raise ConfigError(f"layer {self.name!r}: signed input codes need a uniform activation format")
        if self.cfg.act_format == "table":
            if self.act_table is None:
                raise LevelTableError(f"layer {self.name!r}: act_format='table' needs an activation level table")
            object.__setattr__(self, "act_table", self.cfg.check_act_table(self.act_table))
        elif self.act_table is not None:
            raise ConfigError(f"layer {self.name!r}: an activation table was given for a uniform activation format")
        if not isinstance(self.output, OutputStage):
            raise ConfigError(f"layer {self.name!r}: output must be an OutputStage")
        if self.residual is not None and not isinstance(self.residual, Residual):
            raise ConfigError(f"layer {self.name!r}: residual must be a Residual")
        if self.output.adapter is not None and self.output.adapter.channels != out_channels:
            raise ConfigError(f"layer {self.name!r}: the ASQ adapter takes {self.output.adapter.channels} channels, the layer has {out_channels}")
        if self.kind == "conv":
            object.__setattr__(self, "stride", _pair(self.stride, "stride", 1))
            object.__setattr__(self, "padding", _pair(self.padding, "padding", 0))
            object.__setattr__(self, "dilation", _pair(self.dilation, "dilation", 1))
            if not isinstance(self.groups, int) or self.groups < 1 or out_channels % self.groups:
                raise ConfigError(f"layer {self.name!r}: groups={self.groups!r} must divide {out_channels} output channels")
        elif (self.stride, self.padding, self.dilation, self.groups) != ((1, 1), (0, 0), (1, 1), 1):
            raise ConfigError(f"layer {self.name!r}: a linear layer has no conv geometry")
        if self.kind == "linear" and (self.output.max_pool is not None or self.output.global_pool):
            raise ConfigError(f"layer {self.name!r}: pooling needs a conv output")
        need = gemm_accumulator_bits(self.cfg, self.reduction_length)
        if not isinstance(self.accumulator_width, (int, np.integer)) or self.accumulator_width < need:
            raise AccumulatorOverflowError(
                f"layer {self.name!r}: a {self.accumulator_width}-bit accumulator can overflow; {need} bits are needed"
            )

    @property
    def out_channels(self) -> int:
        return self.weight_codes.shape[0]

    @property
    def reduction_length(self) -> int:
        """K of the layer's GEMM (per group for a conv)."""
        return int(np.prod(self.weight_codes.shape[1:]))

    @property
    def sign(self) -> np.ndarray:
        return np.where(self.weight_scale < 0, -1, 1).astype(np.int64)

    def with_signs_in_weights(self) -> IntegerLayer:
        """The same layer with every channel's sign moved into its weight codes (all scales positive).

        A requantizer without a negation then runs it: the accumulators of the flipped channels
        come out negated exactly.  pot/post toggle the sign bit (the sign is applied after the
        magnitude path), int negates the code, lcq maps code ``i`` to the mirror entry of a
        symmetric level table.  Raises CodeRangeError when a negation is not representable (an
        int channel holding ``-2^(b-1)``, an asymmetric lcq table).
        """
        negative = self.weight_scale < 0
        if not negative.any():
            return self
        codes = self.weight_codes.copy()
        flip = negative.reshape((-1,) + (1,) * (codes.ndim - 1)) & np.ones(codes.shape, dtype=bool)
        fmt = self.cfg.weight
        if self.cfg.scheme in spec.SHIFT_SCHEMES:
            zero = fmt.unpack_power(codes)[2]
            codes = np.where(flip & ~zero, codes ^ (1 << fmt.exponent_bits), codes)
        elif self.cfg.scheme == "int":
            if np.any(codes[negative] == spec.signed_range(fmt.bits)[0]):
                raise CodeRangeError(f"layer {self.name!r}: a channel to negate holds the code -2^{fmt.bits - 1}")
            codes = np.where(flip, -codes, codes)
        else:
            table, top = self.weight_table, fmt.num_codes - 2
            mirror = np.concatenate([top - np.arange(top + 1), [0]])
            if not np.array_equal(table[mirror], -table):
                raise CodeRangeError(f"layer {self.name!r}: the lcq level table is not symmetric; its channels cannot be negated")
            codes = np.where(flip, mirror[codes], codes)
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return IntegerLayer(**{**fields, "weight_codes": codes, "weight_scale": np.abs(self.weight_scale)})

    def accumulate(self, x: Codes) -> np.ndarray:
        """Raw accumulators of the layer's GEMM/convolution on input codes (two passes for signed input)."""
        self._check_input(x)
        if self.signed_input:
            lo, hi = spec.signed_range(self.cfg.act_bits)
            if x.codes.size and (x.codes.min() < lo or x.codes.max() > hi):
                raise CodeRangeError(f"layer {self.name!r}: signed input codes must lie in [{lo}, {hi}]")
            return self._accumulate_unsigned(np.maximum(x.codes, 0)) - self._accumulate_unsigned(np.maximum(-x.codes, 0))
        return self._accumulate_unsigned(x.codes)

    def _accumulate_unsigned(self, codes: np.ndarray) -> np.ndarray:
        if self.kind == "conv":
            return int_conv2d(
                self.cfg, codes, self.weight_codes, self.stride, self.padding, self.dilation, self.groups,
                self.weight_table, self.act_table,
            )
        return int_linear(self.cfg, codes.reshape(codes.shape[0], -1), self.weight_codes, self.weight_table, self.act_table)

    def _check_input(self, x: Codes) -> None:
        expected = None if self.cfg.act_format == "uniform" else self.act_table
        if (x.table is None) != (expected is None) or (expected is not None and not np.array_equal(x.table, expected)):
            raise CheckpointMismatchError(f"layer {self.name!r}: input codes carry a different activation level table")
        if x.step.shape != (x.codes.shape[0],):
            raise ConfigError(f"layer {self.name!r}: input step must be [N], got {x.step.shape}")
        if not self.input_adaptive and not np.all(x.step == self.input_step):
            raise CheckpointMismatchError(f"layer {self.name!r}: input step {x.step} is not the static step {self.input_step}")

    def requant_params(self, step: np.ndarray, spatial: int = 1, beta: np.ndarray | None = None) -> RequantParams:
        """Integer requantizer parameters for input steps ``[N]`` (host side; constants for a static layer).

        ``spatial`` is the number of positions a global pool sums; ``beta`` the ASQ output factor.
        """
        step = np.asarray(step, dtype=np.float64)
        unit = np.abs(self.weight_scale)[None, :] * step[:, None]
        bias = np.rint(self.bias[None, :] / unit).astype(np.int64)
        sign = np.broadcast_to(self.sign, unit.shape)
        out = self.output
        if out.mode in ("uniform", "asq"):
            out_step = out.step * (np.ones_like(step) if beta is None else beta)
            mantissa, shift = spec.quantize_multiplier(unit / (spatial * out_step[:, None]))
            return RequantParams(sign, unit, bias, mantissa, shift)
        if out.mode == "threshold":
            thresholds = np.ceil(spatial * out.thresholds[None, None, :] / unit[:, :, None])
            limit = float(1 << spec.MAX_SUM_BITS)
            return RequantParams(sign, unit, bias, thresholds=np.clip(thresholds, -limit, limit).astype(np.int64))
        return RequantParams(sign, unit, bias)

    def forward(self, x: Codes, shortcut: Codes | Accumulators | None = None) -> Codes | Accumulators:
        """The layer on a batch: accumulate, add bias and shortcut, pool, requantize."""
        if (shortcut is None) != (self.residual is None):
            raise ConfigError(f"layer {self.name!r}: a shortcut must be given exactly when the layer has a residual")
        acc = self.accumulate(x)
        params = self.requant_params(x.step)
        t = _channels(params.sign, acc) * acc + _channels(params.bias, acc)
        if shortcut is not None:
            t = t + self._aligned_shortcut(shortcut, params.unit, t.shape)
        out = self.output
        if out.mode == "accumulator":
            return Accumulators(t, params.unit)
        spatial = 1
        if out.max_pool is not None:
            t = max_pool(np.maximum(t, 0), *out.max_pool)
        elif out.global_pool:
            spatial = t.shape[2] * t.shape[3]
            t = np.maximum(t, 0).sum(axis=(2, 3))
        if out.mode == "threshold":
            params = self.requant_params(x.step, spatial)
            return Codes(threshold_channels(t, 0, params.thresholds), np.full(len(x.step), out.step), out.levels)
        beta = None
        if out.mode == "asq":
            pooled = np.maximum(t, 0) if t.ndim == 2 else np.maximum(t, 0).mean(axis=tuple(range(2, t.ndim)))
            beta = out.adapter(pooled / spatial * params.unit)
        params = self.requant_params(x.step, spatial, beta)
        codes = requantize_channels(t, 0, params.mantissa, params.shift, out.bits)
        return Codes(codes, out.step * (np.ones(len(x.step)) if beta is None else beta))

    def _aligned_shortcut(self, shortcut: Codes | Accumulators, unit: np.ndarray, shape: tuple) -> np.ndarray:
        residual = self.residual
        if isinstance(shortcut, Codes) != (residual.mode == "codes"):
            raise ConfigError(f"layer {self.name!r}: residual mode {residual.mode!r} does not match the shortcut given")
        if isinstance(shortcut, Codes):
            values = shortcut.values()
            source_unit = np.broadcast_to(shortcut.step[:, None], (values.shape[0], values.shape[1]))
        else:
            values, source_unit = shortcut.values, shortcut.unit
        if values.ndim == 4:
            values = values[:, :, :: residual.stride, :: residual.stride]
        before, after = residual.channel_pad
        values = np.pad(values, ((0, 0), (before, after)) + ((0, 0),) * (values.ndim - 2))
        if values.shape != shape:
            raise ConfigError(f"layer {self.name!r}: shortcut shape {values.shape} does not match the output {shape}")
        mantissa, shift = spec.quantize_multiplier(shortcut_ratio(source_unit, unit, residual.channel_pad))
        return rescale(values, _channels(mantissa, values), _channels(shift, values))


def shortcut_ratio(source_unit: np.ndarray, unit: np.ndarray, channel_pad: tuple[int, int]) -> np.ndarray:
    """``[N, C]`` real ratios the aligned shortcut is rescaled by: source unit over this layer's unit.

    Zero-padded (option-A) channels carry exact zeros; their ratio is 1, since any other value
    could leave the multiplier's mantissa range for nothing.
    """
    before, after = channel_pad
    ratio = np.ones(unit.shape)
    ratio[:, before : unit.shape[1] - after] = source_unit / unit[:, before : unit.shape[1] - after]
    return ratio


def _channels(param: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``[N, C]`` parameters broadcast against ``[N, C, ...]``."""
    return param.reshape(param.shape + (1,) * (like.ndim - 2))


def max_pool(values: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    """Max pooling of non-negative integers ``[N, C, H, W]``; padding with 0 never wins (values >= 0)."""
    values = np.asarray(values)
    if values.ndim != 4:
        raise ConfigError(f"max pooling needs [N, C, H, W], got shape {values.shape}")
    if values.size and values.min() < 0:
        raise CodeRangeError("max_pool pads with 0 and takes non-negative values")
    out_h, out_w = conv_output_size(values.shape[2:], (kernel, kernel), stride, padding)
    padded = np.pad(values, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kernel, kernel), axis=(2, 3))
    return windows[:, :, : (out_h - 1) * stride + 1 : stride, : (out_w - 1) * stride + 1 : stride].max(axis=(4, 5))


def quantize_real(stage: OutputStage, x: np.ndarray) -> Codes:
    """Host-side quantization of a real tensor ``[N, ...]`` by an output stage (the network input quantizer).

    Rounds half to even like ``torch.round`` in the fake-quant model; ``asq`` computes beta from
    the global average of ``x`` (per sample) with the adapter, as the ASQ quantizer does.
    """
    x = _float_array(x, "network input")
    if x.ndim < 2:
        raise ConfigError(f"network input must be [N, ...], got shape {x.shape}")
    batch = x.shape[0]
    if stage.mode == "threshold":
        return Codes((x[..., None] >= stage.thresholds).sum(axis=-1), np.full(batch, stage.step), stage.levels)
    if stage.mode == "accumulator":
        raise ConfigError("an input quantizer cannot have mode 'accumulator'")
    step = np.full(batch, stage.step)
    if stage.mode == "asq":
        step = step * stage.adapter(x.mean(axis=tuple(range(2, x.ndim))) if x.ndim > 2 else x)
    scaled = x / step.reshape((-1,) + (1,) * (x.ndim - 1))
    lo, hi = spec.signed_range(stage.bits) if stage.signed else (0, (1 << stage.bits) - 1)
    codes = np.rint(np.clip(scaled, lo, hi)).astype(np.int64)
    return Codes(codes, step)


@dataclass(frozen=True)
class IntegerNetwork:
    """Layers in execution order plus the quantizer of the network input (run on the host)."""

    layers: tuple[IntegerLayer, ...]
    input_stage: OutputStage

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        if not layers or not all(isinstance(layer, IntegerLayer) for layer in layers):
            raise ConfigError("a network needs at least one IntegerLayer")
        if not isinstance(self.input_stage, OutputStage) or self.input_stage.mode == "accumulator":
            raise ConfigError("the network input stage must be an OutputStage producing codes")
        object.__setattr__(self, "layers", layers)
        signed_outputs = [layer.name for layer in layers if layer.output.signed]
        if signed_outputs:
            raise ConfigError(f"only the network input may carry signed codes, not {signed_outputs}")
        producers: dict[str, OutputStage] = {NETWORK_INPUT: self.input_stage}
        for index, layer in enumerate(layers):
            if layer.name in producers:
                raise ConfigError(f"duplicate layer name {layer.name!r}")
            source = self.input_name(index)
            if source not in producers:
                raise ConfigError(f"layer {layer.name!r} reads {source!r}, which is not an earlier layer")
            _check_link(producers[source], layer, source)
            if layer.residual is not None:
                residual_source = producers.get(layer.residual.source)
                if residual_source is None:
                    raise ConfigError(f"layer {layer.name!r}: residual source {layer.residual.source!r} is not an earlier layer")
                if (residual_source.mode == "accumulator") != (layer.residual.mode == "accumulator"):
                    raise ConfigError(
                        f"layer {layer.name!r}: residual mode {layer.residual.mode!r} does not match "
                        f"{layer.residual.source!r}'s output mode {residual_source.mode!r}"
                    )
            producers[layer.name] = layer.output

    def input_name(self, index: int) -> str:
        """Name of the tensor layer ``index`` reads."""
        layer = self.layers[index]
        if layer.input:
            return layer.input
        return NETWORK_INPUT if index == 0 else self.layers[index - 1].name

    def quantize_input(self, x: np.ndarray) -> Codes:
        return quantize_real(self.input_stage, x)

    def run(self, x: Codes | np.ndarray) -> dict[str, Codes | Accumulators]:
        """Every layer's output (in order) for input codes, or for a real input quantized on the host."""
        if not isinstance(x, Codes):
            x = self.quantize_input(x)
        outputs: dict[str, Codes | Accumulators] = {NETWORK_INPUT: x}
        for index, layer in enumerate(self.layers):
            shortcut = None if layer.residual is None else outputs[layer.residual.source]
            outputs[layer.name] = layer.forward(outputs[self.input_name(index)], shortcut)
        return outputs

    def logits(self, x: Codes | np.ndarray) -> np.ndarray:
        """Real-valued output of the last layer (its accumulators times their unit, or its dequantized codes)."""
        return self.run(x)[self.layers[-1].name].real()

    # ------------------------------------------------------------------------------------------ serialization

    def to_dict(self, store_array=None) -> dict:
        """A JSON-able description; arrays go through ``store_array(array) -> ref`` (default: inline lists)."""
        store = store_array or _inline_array
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "input_stage": _stage_to_dict(self.input_stage, store),
            "layers": [_layer_to_dict(layer, store) for layer in self.layers],
        }

    @classmethod
    def from_dict(cls, data: dict, load_array=None) -> IntegerNetwork:
        load = load_array or _inline_load
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise ConfigError(f"not a {FORMAT_NAME} description")
        if data.get("version") != FORMAT_VERSION:
            raise CheckpointMismatchError(f"integer network format version {data.get('version')!r}, expected {FORMAT_VERSION}")
        _check_keys(data, {"format", "version", "input_stage", "layers"}, "network")
        if not isinstance(data["layers"], list):
            raise ConfigError("'layers' must be a list")
        return cls(tuple(_layer_from_dict(item, load) for item in data["layers"]), _stage_from_dict(data["input_stage"], load))

    def save(self, path) -> None:
        """Write ``.json`` (arrays inline) or ``.npz`` (arrays as npz members, the description as JSON)."""
        path = Path(path)
        if path.suffix == ".json":
            path.write_text(json.dumps(self.to_dict(), indent=1))
        elif path.suffix == ".npz":
            arrays: dict[str, np.ndarray] = {}

            def store(array: np.ndarray) -> dict:
                key = f"a{len(arrays)}"
                arrays[key] = np.asarray(array)
                return {"npz": key}

            meta = json.dumps(self.to_dict(store))
            np.savez_compressed(path, __meta__=np.array(meta), **arrays)
        else:
            raise ConfigError(f"unknown network file type {path.suffix!r}; use .json or .npz")

    @classmethod
    def load(cls, path) -> IntegerNetwork:
        path = Path(path)
        try:
            if path.suffix == ".json":
                return cls.from_dict(json.loads(path.read_text()))
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as archive:
                    members = {key: archive[key] for key in archive.files}
                if "__meta__" not in members:
                    raise ConfigError(f"{path} has no network description")

                def load(ref):
                    if not isinstance(ref, dict) or set(ref) != {"npz"}:
                        raise ConfigError(f"bad array reference {ref!r}")
                    if ref["npz"] not in members:
                        raise CheckpointMismatchError(f"{path} lacks array {ref['npz']!r}")
                    return members[ref["npz"]]

                return cls.from_dict(json.loads(str(members["__meta__"])), load)
        except (json.JSONDecodeError, UnicodeDecodeError, zipfile.BadZipFile, OSError, EOFError) as error:
            raise ConfigError(f"{path} is not a readable integer network: {error}") from error
        raise ConfigError(f"unknown network file type {path.suffix!r}; use .json or .npz")


FORMAT_NAME = "lutmac-integer-network"
FORMAT_VERSION = 1


def _check_link(producer: OutputStage, layer: IntegerLayer, source: str) -> None:
    """The producer's codes must be what the consumer's PEs decode."""
    where = f"layer {layer.name!r} reading {source!r}"
    if producer.mode == "accumulator":
        raise ConfigError(f"{where}: an accumulator output cannot feed a layer's input")
    if producer.bits != layer.cfg.act_bits:
        raise CheckpointMismatchError(f"{where}: {producer.bits}-bit codes into {layer.cfg.act_bits}-bit activations")
    if (producer.mode == "threshold") != (layer.cfg.act_format == "table"):
        raise CheckpointMismatchError(f"{where}: output mode {producer.mode!r} does not match act_format {layer.cfg.act_format!r}")
    if producer.mode == "threshold" and not np.array_equal(producer.levels, layer.act_table):
        raise CheckpointMismatchError(f"{where}: the producer's level table is not the consumer's act_table")
    if (producer.mode == "asq") != layer.input_adaptive:
        raise CheckpointMismatchError(f"{where}: per-sample (ASQ) steps must be matched by input_adaptive")
    if producer.step != layer.input_step:
        raise CheckpointMismatchError(f"{where}: producer step {producer.step} differs from input_step {layer.input_step}")
    if producer.signed != layer.signed_input:
        raise CheckpointMismatchError(f"{where}: signed codes must be matched by signed_input")


def _inline_array(array: np.ndarray) -> dict:
    array = np.asarray(array)
    kind = "int64" if array.dtype.kind in "iu" else "float64"
    return {"dtype": kind, "shape": list(array.shape), "data": array.astype(kind).ravel().tolist()}


def _inline_load(ref) -> np.ndarray:
    if not isinstance(ref, dict) or set(ref) != {"dtype", "shape", "data"} or ref["dtype"] not in ("int64", "float64"):
        raise ConfigError(f"bad inline array {str(ref)[:80]!r}")
    try:
        return np.asarray(ref["data"], dtype=ref["dtype"]).reshape(ref["shape"])
    except (TypeError, ValueError) as error:
        raise ConfigError(f"bad inline array: {error}") from error


def _check_keys(data, allowed: set, what: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a mapping, got {type(data).__name__}")
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"{what}: unknown keys {sorted(unknown)}")
    missing = allowed - set(data)
    if missing:
        raise ConfigError(f"{what}: missing keys {sorted(missing)}")


def _cfg_to_dict(cfg: spec.DatapathConfig) -> dict:
    return {
        "scheme": cfg.scheme, "weight_bits": cfg.weight.bits, "levels": cfg.weight.levels,
        "level_bits": cfg.weight.level_bits, "act_bits": cfg.act_bits, "frac_bits": cfg.frac_bits,
        "act_format": cfg.act_format, "act_level_bits": cfg.act_level_bits,
    }


def _cfg_from_dict(data: dict) -> spec.DatapathConfig:
    keys = {"scheme", "weight_bits", "levels", "level_bits", "act_bits", "frac_bits", "act_format", "act_level_bits"}
    _check_keys(data, keys, "datapath config")
    return spec.DatapathConfig(
        spec.WeightFormat(data["scheme"], data["weight_bits"], data["levels"], data["level_bits"]),
        data["act_bits"], data["frac_bits"], data["act_format"], data["act_level_bits"],
    )


def _optional(value, convert):
    return None if value is None else convert(value)


def _stage_to_dict(stage: OutputStage, store) -> dict:
    adapter = None
    if stage.adapter is not None:
        adapter = {
            "weights": [store(w) for w in stage.adapter.weights],
            "biases": [store(b) for b in stage.adapter.biases],
            "beta_floor": stage.adapter.beta_floor,
        }
    return {
        "mode": stage.mode, "bits": stage.bits, "step": stage.step,
        "thresholds": _optional(stage.thresholds, store), "levels": _optional(stage.levels, store),
        "adapter": adapter, "global_pool": stage.global_pool,
        "max_pool": None if stage.max_pool is None else list(stage.max_pool), "signed": stage.signed,
    }


def _stage_from_dict(data: dict, load) -> OutputStage:
    _check_keys(data, {"mode", "bits", "step", "thresholds", "levels", "adapter", "global_pool", "max_pool", "signed"}, "output stage")
    adapter = data["adapter"]
    if adapter is not None:
        _check_keys(adapter, {"weights", "biases", "beta_floor"}, "ASQ adapter")
        if not isinstance(adapter["weights"], list) or not isinstance(adapter["biases"], list):
            raise ConfigError("ASQ adapter weights and biases must be lists")
        adapter = AsqAdapter(tuple(map(load, adapter["weights"])), tuple(map(load, adapter["biases"])), adapter["beta_floor"])
    return OutputStage(
        data["mode"], data["bits"], data["step"], _optional(data["thresholds"], load), _optional(data["levels"], load),
        adapter, data["global_pool"], data["max_pool"], data["signed"],
    )


def _layer_to_dict(layer: IntegerLayer, store) -> dict:
    residual = None
    if layer.residual is not None:
        residual = {"source": layer.residual.source, "mode": layer.residual.mode, "stride": layer.residual.stride,
                    "channel_pad": list(layer.residual.channel_pad)}
    return {
        "name": layer.name, "kind": layer.kind, "cfg": _cfg_to_dict(layer.cfg),
        "weight_codes": store(layer.weight_codes), "weight_scale": store(layer.weight_scale), "bias": store(layer.bias),
        "input_step": layer.input_step, "output": _stage_to_dict(layer.output, store),
        "accumulator_width": int(layer.accumulator_width),
        "weight_table": _optional(layer.weight_table, store), "act_table": _optional(layer.act_table, store),
        "stride": list(layer.stride), "padding": list(layer.padding), "dilation": list(layer.dilation),
        "groups": layer.groups, "input": layer.input, "input_adaptive": layer.input_adaptive, "residual": residual,
        "signed_input": layer.signed_input,
    }


LAYER_KEYS = {
    "name", "kind", "cfg", "weight_codes", "weight_scale", "bias", "input_step", "output", "accumulator_width",
    "weight_table", "act_table", "stride", "padding", "dilation", "groups", "input", "input_adaptive", "residual",
    "signed_input",
}


def _layer_from_dict(data: dict, load) -> IntegerLayer:
    _check_keys(data, LAYER_KEYS, f"layer {data.get('name', '?') if isinstance(data, dict) else '?'!r}")
    residual = data["residual"]
    if residual is not None:
        _check_keys(residual, {"source", "mode", "stride", "channel_pad"}, "residual")
        residual = Residual(residual["source"], residual["mode"], residual["stride"], tuple(residual["channel_pad"]))
    return IntegerLayer(
        name=data["name"], kind=data["kind"], cfg=_cfg_from_dict(data["cfg"]),
        weight_codes=load(data["weight_codes"]), weight_scale=load(data["weight_scale"]), bias=load(data["bias"]),
        input_step=data["input_step"], output=_stage_from_dict(data["output"], load),
        accumulator_width=data["accumulator_width"],
        weight_table=_optional(data["weight_table"], load), act_table=_optional(data["act_table"], load),
        stride=tuple(data["stride"]), padding=tuple(data["padding"]), dilation=tuple(data["dilation"]),
        groups=data["groups"], input=data["input"], input_adaptive=data["input_adaptive"], residual=residual,
        signed_input=data["signed_input"],
    )


def random_layer(
    rng: np.random.Generator,
    cfg: spec.DatapathConfig,
    kind: str = "conv",
    in_channels: int = 3,
    out_channels: int = 4,
    kernel: int = 3,
    out_mode: str = "uniform",
    out_bits: int = 4,
    input_step: float = 0.05,
    input_adaptive: bool = False,
    act_table: np.ndarray | None = None,
    name: str = "layer",
    **geometry,
) -> IntegerLayer:
    """A random but well-scaled layer (outputs spread over the code range): tests and RTL stimulus.

    ``geometry`` passes ``stride``, ``padding``, ``dilation``, ``groups``, ``input``, ``residual``
    through to :class:`IntegerLayer` and ``max_pool`` / ``global_pool`` to its output stage.
    Some channels get a negative scale (a BatchNorm gamma < 0).
    """
    groups = geometry.get("groups", 1)
    shape = (out_channels, in_channels // groups, kernel, kernel) if kind == "conv" else (out_channels, in_channels)
    if cfg.scheme == "int":
        lo, hi = spec.signed_range(cfg.weight.bits)
        codes = rng.integers(lo, hi + 1, shape)
    else:
        codes = rng.integers(0, cfg.weight.num_codes, shape)
    weight_table = None
    if cfg.scheme == "lcq":
        lo, hi = cfg.weight.level_range
        weight_table = np.sort(rng.integers(lo, hi + 1, cfg.weight.num_codes))
    if cfg.act_format == "table" and act_table is None:
        act_table = np.sort(rng.integers(0, cfg.act_value_max + 1, cfg.num_act_codes))
        act_table[0] = 0
    reduction = int(np.prod(shape[1:]))
    level_rms = float(np.sqrt(np.mean(ideal_weight_levels(cfg, codes, weight_table) ** 2))) or 1.0
    act_values_all = np.arange(cfg.num_act_codes) if act_table is None else act_table
    act_rms = float(np.sqrt(np.mean(act_values_all.astype(np.float64) ** 2))) or 1.0
    q_max = (1 << out_bits) - 1
    out_step = float(rng.uniform(0.05, 0.2))
    spread = np.sqrt(reduction) * act_rms * level_rms * input_step
    weight_scale = (q_max / 3) * out_step / spread * rng.uniform(0.7, 1.3, out_channels)
    weight_scale *= np.where(rng.random(out_channels) < 0.25, -1.0, 1.0)
    bias = rng.uniform(-0.2, 0.4, out_channels) * q_max * out_step
    stage_args = {k: geometry.pop(k) for k in ("max_pool", "global_pool") if k in geometry}
    if out_mode == "threshold":
        thresholds = np.sort(rng.uniform(0.0, q_max * out_step, q_max))
        levels = np.sort(rng.integers(0, 256, q_max + 1))
        levels[0] = 0
        output = OutputStage("threshold", out_bits, out_step, thresholds, levels, **stage_args)
    elif out_mode == "asq":
        hidden = max(out_channels // 4, 1)
        adapter = AsqAdapter(
            (rng.normal(0, 0.3, (hidden, out_channels)), rng.normal(0, 0.01, (1, hidden))),
            (rng.normal(0, 0.1, hidden), np.array([1.0])),
        )
        output = OutputStage("asq", out_bits, out_step, adapter=adapter, **stage_args)
    else:
        output = OutputStage(out_mode, out_bits, out_step, **stage_args)
    return IntegerLayer(
        name, kind, cfg, codes, weight_scale, bias, input_step, output, gemm_accumulator_bits(cfg, reduction),
        weight_table=weight_table, act_table=act_table, input_adaptive=input_adaptive, **geometry,
    )
