"""The integer network the hardware runs: layers (:class:`IntegerLayer`) and networks (:class:`IntegerNetwork`).

A layer accumulates with :mod:`golden.gemm`, adds its bias and shortcut, pools and requantizes
with :mod:`golden.spec`'s requantizer, per channel (:func:`requantize_channels`,
:func:`threshold_channels`); the values it reads and produces and its output stage are in
:mod:`golden.stages`, the file format in :mod:`golden.serialize`.  The real-valued meaning of
the integers is described before :data:`LAYER_KINDS` below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import requantization, spec
from .errors import (
    AccumulatorOverflowError,
    CheckpointMismatchError,
    CodeRangeError,
    ConfigError,
    LevelTableError,
    UnknownSchemeError,
)
from .gemm import as_pair, conv_output_size, gemm_accumulator_bits, int_conv2d, int_linear
from .output_stage import IDENTITY_MULTIPLIER, adapter_input, global_pool_sum, output_total
from .spec import WeightScheme
from .stages import Accumulators, Codes, OutputStage, Residual, float_array, quantize_real

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
    """:func:`golden.requantization.requantize` on ``[N, C, ...]`` with per-channel or per-sample (ASQ) parameters."""
    acc = np.asarray(acc)
    if acc.ndim < 2:
        raise ConfigError(f"accumulators must be [N, C, ...], got shape {acc.shape}")
    return requantization.requantize(
        acc,
        _per_channel(bias, acc, "bias"),
        _per_channel(mantissa, acc, "mantissa"),
        _per_channel(shift, acc, "shift"),
        out_bits,
    )


def threshold_channels(acc: np.ndarray, bias: np.ndarray | int, thresholds: np.ndarray) -> np.ndarray:
    """:func:`golden.requantization.threshold_quantize` on ``[N, C, ...]``.

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
    return np.moveaxis(requantization.threshold_quantize(channels_last, bias, thresholds), -1, 1)


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
#   ``unit_src / unit`` and round half up (:func:`golden.requantization.rescale`), added to ``t``, and the sum is
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
NETWORK_INPUT = "input"


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
    difference needs one bit more than ``accumulator_width``; the output stage combines the
    passes (:func:`golden.output_stage.two_pass_totals`).
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
        scale = float_array(self.weight_scale, f"layer {self.name!r} weight_scale", (out_channels,))
        if np.any(scale == 0):
            raise ConfigError(f"layer {self.name!r}: weight_scale must be non-zero")
        object.__setattr__(self, "weight_scale", scale)
        object.__setattr__(self, "bias", float_array(self.bias, f"layer {self.name!r} bias", (out_channels,)))
        if not (isinstance(self.input_step, (int, float)) and np.isfinite(self.input_step) and self.input_step > 0):
            raise ConfigError(f"layer {self.name!r}: input_step must be a finite positive number, got {self.input_step!r}")
        if self.cfg.scheme == WeightScheme.LCQ:
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
            object.__setattr__(self, "stride", as_pair(self.stride, "stride", 1))
            object.__setattr__(self, "padding", as_pair(self.padding, "padding", 0))
            object.__setattr__(self, "dilation", as_pair(self.dilation, "dilation", 1))
            if not isinstance(self.groups, int) or self.groups < 1 or out_channels % self.groups:
                raise ConfigError(f"layer {self.name!r}: groups={self.groups!r} must divide {out_channels} output channels")
        elif (self.stride, self.padding, self.dilation, self.groups) != ((1, 1), (0, 0), (1, 1), 1):
            raise ConfigError(f"layer {self.name!r}: a linear layer has no conv geometry")
        if self.kind == "linear" and (self.output.max_pool is not None or self.output.global_pool):
            raise ConfigError(f"layer {self.name!r}: pooling needs a conv output")
        need = gemm_accumulator_bits(self.cfg, self.reduction_length)
        if not isinstance(self.accumulator_width, (int, np.integer)) or isinstance(self.accumulator_width, bool):
            raise ConfigError(f"layer {self.name!r}: accumulator_width must be an int, got "
                              f"{type(self.accumulator_width).__name__} {self.accumulator_width!r}")
        if self.accumulator_width < need:
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
        magnitude path), apot toggles its sign bit too (sign-magnitude, the sign applied after
        the shift-add; zero stays ``+0``), int negates the code, lcq maps code ``i`` to the mirror
        entry of a symmetric level table.  Raises CodeRangeError when a negation is not representable (an
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
        elif self.cfg.scheme == WeightScheme.APOT:
            codes = fmt.apot.negate(codes, flip)
        elif self.cfg.scheme == WeightScheme.INT:
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
            mantissa, shift = requantization.quantize_multiplier(unit / (spatial * out_step[:, None]))
            return RequantParams(sign, unit, bias, mantissa, shift)
        if out.mode == "threshold":
            thresholds = np.ceil(spatial * out.thresholds[None, None, :] / unit[:, :, None])
            limit = float(1 << spec.MAX_SUM_BITS)
            return RequantParams(sign, unit, bias, thresholds=np.clip(thresholds, -limit, limit).astype(np.int64))
        return RequantParams(sign, unit, bias)

    def forward(self, x: Codes, shortcut: Codes | Accumulators | None = None) -> Codes | Accumulators:
        """The layer on a batch: accumulate, then :meth:`finish`."""
        return self.finish(x, self.accumulate(x), shortcut)

    def finish(self, x: Codes, acc: np.ndarray, shortcut: Codes | Accumulators | None = None) -> Codes | Accumulators:
        """The output stage on the layer's accumulators: sign, bias and shortcut (:mod:`golden.output_stage`), pool, requantize."""
        if (shortcut is None) != (self.residual is None):
            raise ConfigError(f"layer {self.name!r}: a shortcut must be given exactly when the layer has a residual")
        params = self.requant_params(x.step)
        operand = (None, *IDENTITY_MULTIPLIER) if shortcut is None else self.shortcut_operand(shortcut, params.unit, acc.shape)
        t = output_total(acc, _channels(params.sign, acc), _channels(params.bias, acc), *operand)
        out = self.output
        if out.mode == "accumulator":
            return Accumulators(t, params.unit)
        spatial = 1
        if out.max_pool is not None:
            t = max_pool(np.maximum(t, 0), *out.max_pool)
        elif out.global_pool:
            spatial = t.shape[2] * t.shape[3]
            t = global_pool_sum(t)
        if out.mode == "threshold":
            params = self.requant_params(x.step, spatial)
            return Codes(threshold_channels(t, 0, params.thresholds), np.full(len(x.step), out.step), out.levels)
        beta = None
        if out.mode == "asq":  # golden.output_stage: the sums of relu(t), then the held relu(t) requantized
            t = np.maximum(t, 0)
            sums, positions = (t, 1) if t.ndim == 2 else (global_pool_sum(t), t.shape[2] * t.shape[3])
            beta = out.adapter(adapter_input(sums, positions, spatial, params.unit))
        params = self.requant_params(x.step, spatial, beta)
        codes = requantize_channels(t, 0, params.mantissa, params.shift, out.bits)
        return Codes(codes, out.step * (np.ones(len(x.step)) if beta is None else beta))

    def shortcut_operand(self, shortcut: Codes | Accumulators, unit: np.ndarray, shape: tuple) -> tuple[np.ndarray, ...]:
        """``(values, mantissa, shift)``: the shortcut subsampled and channel-padded to ``shape``, and its alignment multipliers.

        ``values`` are the integers the output stage adds after ``rescale`` (codes' values, or
        a downsample conv's ``t``); the multipliers are ``[N, C, 1...]``, ``unit`` is this layer's.
        """
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
        mantissa, shift = requantization.quantize_multiplier(shortcut_ratio(source_unit, unit, residual.channel_pad))
        return values, _channels(mantissa, values), _channels(shift, values)


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

    # The file format lives in golden.serialize, which imports this module.

    def to_dict(self, store_array=None) -> dict:
        """A JSON-able description; arrays go through ``store_array(array) -> ref`` (default: inline lists)."""
        from .serialize import network_to_dict

        return network_to_dict(self, store_array)

    @classmethod
    def from_dict(cls, data: dict, load_array=None) -> IntegerNetwork:
        from .serialize import network_from_dict

        return network_from_dict(data, load_array)

    def save(self, path) -> None:
        """Write ``.json`` (arrays inline) or ``.npz`` (arrays as npz members, the description as JSON)."""
        from .serialize import save_network

        save_network(self, path)

    @classmethod
    def load(cls, path) -> IntegerNetwork:
        from .serialize import load_network

        return load_network(path)


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

