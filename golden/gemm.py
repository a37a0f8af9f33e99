"""Bit-exact integer GEMM and convolution of the lutmac datapath (numpy, vectorized).

This is the reference the RTL is checked against.  Every product comes from :mod:`golden.spec`
(``pe_product`` / ``product_table``); this module only arranges products into GEMMs and
convolutions and never re-derives a product rule.

Fast path.  A GEMM is exact in float64 whenever every partial sum is an integer below 2^53, and
:func:`golden.spec.check_accumulator` guarantees every partial sum of the layer's products fits
the accumulator width, which is asserted to be at most 53 bits.  So:

* ``int`` / ``lcq`` / ``apot`` weights: decode both operands to integers and do one float64 matmul
  (an apot product ``sum_i a << s_i`` is exactly ``a`` times the weight's integer level).
* ``pot`` / ``post`` weights: a product depends on the activation only through the row of the
  product table for the weight's exponent field (the sign is applied after the magnitude path).
  Weights are grouped by exponent; each group is one matmul of ``row[act_codes]`` with a ±1
  mask.  Rows that are exactly linear in the activation (no truncation: ``(a << F) >> e`` with
  ``e <= F``) are merged into a single matmul with integer weights ``row[1] * sign``.

Every group's result is a sum of a subset of the layer's products, so its partial sums are
bounded like the accumulator's and stay exact; groups are added in int64.  Where the accumulator is
at most :data:`FLOAT32_EXACT_BITS` wide (every partial sum's magnitude at most 2^24, every integer of
which float32 holds exactly) the matmuls run in float32 BLAS, about twice as fast: 3- and 4-bit layers.

On top: :func:`im2col` / :func:`int_conv2d` / :func:`int_linear`.  The layers and networks built
from them are in :mod:`golden.integer`.
"""

from __future__ import annotations

import numpy as np

from . import spec
from .errors import AccumulatorOverflowError, ConfigError, LevelTableError
from .spec import WeightScheme

# ----------------------------------------------------------------------------------------------- GEMM


def _check_matrix(name: str, array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ConfigError(f"{name} must be a 2-D matrix, got shape {array.shape}")
    return array


GEMM_BLOCK_ELEMENTS = 1 << 21  # activation elements per row block: temporaries stay ~16 MB whatever M is
#: the widest signed accumulator whose every value (magnitude <= 2^24) float32 represents exactly
FLOAT32_EXACT_BITS = 25


def _exact_matmul(left: np.ndarray, right: np.ndarray, dtype: type) -> np.ndarray:
    """Integer matmul through float BLAS of ``dtype``; callers guarantee every partial sum is exact in it."""
    product = np.asarray(left, dtype=dtype) @ np.asarray(right, dtype=dtype)
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
    dtype = np.float32 if gemm_accumulator_bits(cfg, reduction) <= FLOAT32_EXACT_BITS else np.float64
    values = spec.act_values(cfg, act_codes, act_table)
    codes = cfg.weight.check_codes(weight_codes)
    if cfg.scheme == WeightScheme.LCQ:
        if weight_table is None:
            raise LevelTableError("lcq weights need a weight level table")
        groups = [(None, cfg.weight.check_table(weight_table)[codes])]
    elif weight_table is not None:
        raise ConfigError(f"{cfg.scheme} weights take no weight level table")
    elif cfg.scheme == WeightScheme.INT:
        groups = [(None, codes)]
    elif cfg.scheme == WeightScheme.APOT:  # shift-add of exact left shifts: the integer level times a
        groups = [(None, cfg.weight.apot.value(codes))]
    else:
        groups = _power_groups(cfg, codes)
    groups = [(row, np.asarray(weights, dtype=dtype)) for row, weights in groups]
    acc = np.empty((values.shape[0], codes.shape[1]), dtype=np.int64)
    for rows in _row_blocks(values.shape[0], reduction):
        block = values[rows]
        acc[rows] = sum(_exact_matmul(block if row is None else row[block], weights, dtype) for row, weights in groups)
    return acc


def _power_groups(cfg: spec.DatapathConfig, codes: np.ndarray) -> list[tuple[np.ndarray | None, np.ndarray]]:
    """pot/post weights as ``(product-table row or None for linear, integer weight matrix)`` groups.

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
            groups.append((row, mask))
    if linear_weights.any() or not groups:
        groups.append((None, linear_weights))
    return groups


def ideal_weight_levels(cfg: spec.DatapathConfig, weight_codes: np.ndarray, weight_table: np.ndarray | None = None) -> np.ndarray:
    """The real level each weight code stands for, in product LSBs: ``2^F base^-e`` exactly for pot/post.

    The hardware's product differs from ``level * a`` only by the LUT rounding and shift
    truncation that :func:`golden.bounds.product_error_bound` bounds.
    """
    codes = cfg.weight.check_codes(weight_codes)
    if cfg.scheme == WeightScheme.INT:
        return codes.astype(np.float64)
    if cfg.scheme == WeightScheme.LCQ:
        if weight_table is None:
            raise LevelTableError("lcq weights need a weight level table")
        return cfg.weight.check_table(weight_table)[codes].astype(np.float64)
    if cfg.scheme == WeightScheme.APOT:
        return cfg.weight.apot.value(codes).astype(np.float64)
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


def as_pair(value: int | tuple[int, int], name: str, minimum: int) -> tuple[int, int]:
    """A conv geometry parameter (an int or a pair of ints, each at least ``minimum``) as an ``(int, int)``."""
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
    stride, padding, dilation = as_pair(stride, "stride", 1), as_pair(padding, "padding", 0), as_pair(dilation, "dilation", 1)
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
    kh, kw = as_pair(kernel, "kernel", 1)
    (sh, sw), (ph, pw), (dh, dw) = as_pair(stride, "stride", 1), as_pair(padding, "padding", 0), as_pair(dilation, "dilation", 1)
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

