"""From a trained fake-quant model (golden.layers) to the integer network the hardware runs.

:func:`export_model` traces the model with ``torch.fx`` (quantized layers, BatchNorm, ReLU,
pooling, flatten and dropout are leaves) and walks the graph in execution order.  Each
``QuantConv2d`` / ``QuantLinear`` becomes an :class:`~golden.integer.IntegerLayer`.  Its weight
codes and the output stage that makes its input codes come from :mod:`golden.quantizer_export`,
and so do the POST/POT fraction bits ``F`` with ``frac_bits="auto"`` (otherwise ``F`` is fixed:
one int for every shift layer, ``{weight bits: F}``, or by default ``WeightFormat.default_frac_bits``).  This module folds in what follows the layer:

* **BatchNorm** (eval statistics) folds into ``weight_scale`` (``* gamma / sqrt(var + eps)``)
  and the real bias.  A negative gain is moved into the weight codes when that is exact
  (pot/post sign bit, int negation, mirrored symmetric lcq table); otherwise it stays a
  negative ``weight_scale`` (the requantizer negates the channel) and the report says so.
* **requantization** ``M = s_in * weight_scale[c] / s_out`` is formed on the host from these
  floats (per sample for ASQ, via beta) by :meth:`IntegerLayer.requant_params`.
* **residual adds** (``a + b``) attach the shortcut to the layer whose output is ``a``: a
  quantized value (the codes the next layer's quantizer made) or a BN-folded downsample conv
  exported with an ``accumulator`` output.  The fake-quant model adds the *unquantized* shortcut;
  the integer model adds its codes — an approximation the bound does not cover (measured).
  The parameter-free option-A shortcut of CIFAR ResNets, ``F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0,
  before, after))``, becomes the :class:`~golden.integer.Residual`'s ``stride`` and
  ``channel_pad``; any other slicing or padding raises ConfigError.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from . import spec
from .errors import CodeRangeError, ConfigError
from .gemm import gemm_accumulator_bits
from .integer import IntegerLayer, IntegerNetwork
from .layers import QuantConv2d, QuantLinear, QuantTracer, uncalibrated_quantizers
from .quantizer_export import ExportReport, InputSide, as_numpy, choose_frac_bits, input_side, weight_side
from .stages import OutputStage, Residual

#: ``export_model``'s ``frac_bits``: None (each format's default), "auto", one F, or ``{weight bits: F}``.
FracBits = int | str | Mapping[int, int] | None
PASS_THROUGH_MODULES = (nn.Dropout, nn.Identity, nn.Flatten)
RELU_FUNCTIONS = (F.relu, torch.relu)
FLATTEN_FUNCTIONS = (torch.flatten,)
ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)


# ----------------------------------------------------------------------------------------------- graph walk


@dataclass
class _Pending:
    """A quantized layer's output on its way to the next quantizer: BN, ReLU, add, pool still to fold in."""

    name: str
    module: nn.Module
    input: str
    input_side: InputSide
    gain: np.ndarray
    offset: np.ndarray
    residual: Residual | None = None
    relu: bool = False
    max_pool: tuple[int, int, int] | None = None
    global_pool: bool = False
    layer: IntegerLayer | None = None
    consumer_quantizer: nn.Module | None = None


@dataclass(frozen=True)
class _Input:
    """The network input (real), before any quantizer."""


@dataclass(frozen=True)
class _Shape:
    """A shape query (``x.size(0)``): only meaningful as an argument of a flattening view."""


@dataclass(frozen=True)
class _Shortcut:
    """A tensor subsampled (``x[:, :, ::stride, ::stride]``) and channel-padded on its way to a residual add."""

    source: object
    stride: int = 1
    channel_pad: tuple[int, int] = (0, 0)


SLICE_HELP = "only x[:, :, ::s, ::s] (both spatial dims of an NCHW tensor, one stride, from 0) feeds a residual add"
PAD_HELP = "only zero channel padding of an NCHW tensor, F.pad(x, (0, 0, 0, 0, before, after)), feeds a residual add"


class _Tracer(QuantTracer):
    LEAVES = (
        nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d,
        nn.Flatten, nn.Dropout, nn.Identity,
    )

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, self.LEAVES) or super().is_leaf_module(module, qualified_name)


class _Exporter:
    def __init__(self, model: nn.Module, frac_bits: FracBits, lcq_level_bits: int, fold_signs: bool) -> None:
        fixed = frac_bits.values() if isinstance(frac_bits, Mapping) else [frac_bits]
        if frac_bits != "auto" and not all(f is None or (isinstance(f, int) and 0 <= f <= spec.MAX_FRAC_BITS) for f in fixed):
            raise ConfigError(f"frac_bits must be None, 'auto', an int in 0..{spec.MAX_FRAC_BITS} or {{weight bits: int}}, "
                              f"got {frac_bits!r}")
        spec.check_bits("lcq_level_bits", lcq_level_bits, spec.MIN_LEVEL_BITS, spec.MAX_LEVEL_BITS)
        self.model, self.frac_bits, self.lcq_level_bits, self.fold_signs = model, frac_bits, lcq_level_bits, fold_signs
        self.modules = dict(model.named_modules())
        self.layers: list[IntegerLayer] = []
        self.input_stage: OutputStage | None = None
        self.input_quantizer: nn.Module | None = None
        self.report = ExportReport()

    # -------------------------------------------------------------------- finalization
    def _codes_of(self, value, consumer: str, quantizer: nn.Module) -> tuple[str, InputSide]:
        """Name of the code tensor ``quantizer`` makes from ``value`` (finalizing its producer)."""
        side = input_side(quantizer, consumer, self.report, self.lcq_level_bits)
        if isinstance(value, _Input):
            if self.input_quantizer is None:
                self.input_quantizer, self.input_stage = quantizer, side.stage
            else:
                _check_same_quantizer(self.input_quantizer, quantizer, "the network input", consumer)
            return "input", side
        _reject_shortcut_view(value, consumer, "a quantized layer's input")
        if not isinstance(value, _Pending):
            raise ConfigError(f"{consumer}: its input is not a quantized layer's output or the network input")
        if value.layer is None:
            if not value.relu and (side.adaptive or value.global_pool):
                raise ConfigError(f"{value.name}: an ASQ quantizer or a global pool needs a ReLU before it")
            self._finalize(value, side.stage)
            value.consumer_quantizer = quantizer
        else:
            if value.consumer_quantizer is None:
                raise ConfigError(f"{consumer}: {value.name}'s output is used unquantized elsewhere")
            _check_same_quantizer(value.consumer_quantizer, quantizer, value.name, consumer)
        return value.name, side

    def _finalize(self, pending: _Pending, stage: OutputStage) -> None:
        module, name = pending.module, pending.name
        if pending.max_pool is not None or pending.global_pool:
            stage = OutputStage(
                stage.mode, stage.bits, stage.step, stage.thresholds, stage.levels, stage.adapter,
                pending.global_pool, pending.max_pool,
            )
        weights = weight_side(module.weight_quantizer, module.weight, name, self.report, self.lcq_level_bits)
        side = pending.input_side
        reduction = int(np.prod(weights.codes.shape[1:]))
        frac = 0
        if weights.scheme in spec.SHIFT_SCHEMES:
            out_step = stage.step if stage.mode in ("uniform", "asq") else None
            fmt = spec.WeightFormat(weights.scheme, weights.bits, weights.levels)
            if self.frac_bits == "auto":
                frac = choose_frac_bits(weights, side.act_bits, reduction, side.stage.step, out_step)
            elif isinstance(self.frac_bits, Mapping):
                frac = self.frac_bits.get(weights.bits, fmt.default_frac_bits)
            else:
                frac = fmt.default_frac_bits if self.frac_bits is None else self.frac_bits
            self.report.frac_bits[name] = frac
        cfg = spec.DatapathConfig(
            spec.WeightFormat(weights.scheme, weights.bits, weights.levels, weights.level_bits),
            side.act_bits, frac, side.act_format, side.act_level_bits,
        )
        bias = as_numpy(module.bias) if module.bias is not None else np.zeros(weights.codes.shape[0])
        weight_scale = weights.scale * 2.0**-frac * pending.gain
        geometry = {}
        if isinstance(module, QuantConv2d):
            if module.padding_mode != "zeros" or isinstance(module.padding, str):
                raise ConfigError(f"{name}: only numeric zero padding is supported")
            geometry = {"stride": tuple(module.stride), "padding": tuple(module.padding),
                        "dilation": tuple(module.dilation), "groups": module.groups}
        width = gemm_accumulator_bits(cfg, reduction)
        self.report.accumulator_bits[name] = width
        layer = IntegerLayer(
            name=name, kind="conv" if isinstance(module, QuantConv2d) else "linear", cfg=cfg,
            weight_codes=weights.codes, weight_scale=weight_scale, bias=bias * pending.gain + pending.offset,
            input_step=side.stage.step, output=stage, accumulator_width=width, weight_table=weights.table,
            act_table=side.act_table, input=pending.input, input_adaptive=side.adaptive, residual=pending.residual,
            signed_input=side.signed, **geometry,
        )
        if self.fold_signs and np.any(layer.weight_scale < 0):
            try:
                layer = layer.with_signs_in_weights()
            except CodeRangeError as error:
                self.report.approximations.append(f"{name}: negative BN gain stays in the requantizer ({error})")
        pending.layer = layer
        self.layers.append(layer)

    # -------------------------------------------------------------------- graph
    def run(self) -> IntegerNetwork:
        graph = _Tracer().trace(self.model)
        values: dict[fx.Node, object] = {}
        result = None
        order = {node: position for position, node in enumerate(graph.nodes)}
        for node in graph.nodes:
            self._check_in_place(node, order)
            if node.op == "placeholder":
                if any(isinstance(v, _Input) for v in values.values()):
                    raise ConfigError("models with more than one input are not supported")
                values[node] = _Input()
            elif node.op == "call_module":
                values[node] = self._module(node, self.modules[node.target], [values[a] for a in node.args if isinstance(a, fx.Node)])
            elif node.op in ("call_function", "call_method"):
                values[node] = self._function(node, values)
            elif node.op == "output":
                result = values[node.args[0]] if isinstance(node.args[0], fx.Node) else None
            else:
                raise ConfigError(f"unsupported graph node {node.op} {node.target}")
        if not isinstance(result, _Pending):
            raise ConfigError("the model's output must be a quantized layer's output (possibly BN / add)")
        if result.layer is None:
            if result.relu or result.max_pool or result.global_pool:
                raise ConfigError(f"{result.name}: a ReLU or pool on the network output is not supported")
            self._finalize(result, OutputStage("accumulator"))
        if self.input_stage is None:
            raise ConfigError("the model has no quantized layer reading its input")
        return IntegerNetwork(tuple(self.layers), self.input_stage)

    def _check_in_place(self, node: fx.Node, order: dict[fx.Node, int]) -> None:
        """Reject an in-place operation whose input is read again later: the graph (and so the export)
        would see that later read as the old value, while PyTorch reads the modified one.  (``x += y``
        on a traced tensor is recorded as an out-of-place add by ``torch.fx`` and cannot be seen here.)"""
        if not node.args or not isinstance(node.args[0], fx.Node):
            return
        if node.op == "call_module":
            in_place = getattr(self.modules[node.target], "inplace", False) is True
        elif node.op == "call_method":
            in_place = node.target.endswith("_") and not node.target.endswith("__") or node.target.startswith("__i")
        else:
            name = getattr(node.target, "__name__", "")
            in_place = (node.kwargs.get("inplace") is True or node.target is operator.iadd or name.endswith("_")
                        or (node.target in RELU_FUNCTIONS and len(node.args) > 1 and node.args[1] is True))
        source = node.args[0]
        later = [user for user in source.users if user is not node and order[user] > order[node]]
        if in_place and later:
            raise ConfigError(f"{node}: in-place {node.target} changes {source}, which {later[0]} reads afterwards; "
                              "the export cannot tell the two values apart (use the out-of-place operation)")

    def _module(self, node: fx.Node, module: nn.Module, args: list):
        name = str(node.target)
        if isinstance(module, (QuantConv2d, QuantLinear)):
            source, side = self._codes_of(args[0], name, module.act_quantizer)
            channels = module.weight.shape[0]
            return _Pending(name, module, source, side, np.ones(channels), np.zeros(channels))
        (value,) = args
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return self._batch_norm(value, module, name)
        if isinstance(module, nn.ReLU):
            return self._relu(value, name)
        if isinstance(module, nn.MaxPool2d):
            return self._max_pool(value, module.kernel_size, module.stride, module.padding, module.dilation, module.ceil_mode, name)
        if isinstance(module, nn.AdaptiveAvgPool2d):
            return self._global_pool(value, module.output_size, name)
        if isinstance(module, PASS_THROUGH_MODULES):
            return value
        raise ConfigError(f"module {name!r} of type {type(module).__name__} has no integer export")

    def _function(self, node: fx.Node, values: dict):
        args = [values.get(a, a) if isinstance(a, fx.Node) else a for a in node.args]
        target = node.target
        if target in RELU_FUNCTIONS or target == "relu":
            return self._relu(args[0], str(node))
        if target in FLATTEN_FUNCTIONS or target == "flatten":
            start = args[1] if len(args) > 1 else node.kwargs.get("start_dim", 0)
            if start != 1:
                raise ConfigError(f"{node}: only flatten(x, 1) is supported")
            return args[0]
        if target in ("size", "dim") or target is getattr:
            return _Shape()
        if target is operator.getitem:
            return _Shape() if isinstance(args[0], _Shape) else self._slice(args[0], args[1], str(node))
        if target is F.pad:
            kwargs = dict(zip(("pad", "mode", "value"), args[1:], strict=False)) | node.kwargs
            return self._pad(args[0], kwargs["pad"], kwargs.get("mode", "constant"), kwargs.get("value"), str(node))
        if target in ("view", "reshape") and len(args) == 3 and args[2] == -1 and isinstance(args[1], (int, _Shape)):
            return args[0]  # x.view(x.size(0), -1): a flatten
        if target in ADD_FUNCTIONS or target in ("add", "add_", "__add__", "__iadd__"):
            return self._add(args[0], args[1], str(node))
        if target is F.adaptive_avg_pool2d:
            return self._global_pool(args[0], args[1], str(node))
        if target is F.max_pool2d:
            kwargs = dict(zip(("kernel_size", "stride", "padding", "dilation", "ceil_mode"), args[1:], strict=False)) | node.kwargs
            return self._max_pool(args[0], kwargs["kernel_size"], kwargs.get("stride"), kwargs.get("padding", 0),
                                  kwargs.get("dilation", 1), kwargs.get("ceil_mode", False), str(node))
        if target is F.dropout:
            return args[0]
        raise ConfigError(f"operation {target} (node {node}) has no integer export")

    # -------------------------------------------------------------------- operations
    @staticmethod
    def _open(value, what: str, name: str) -> _Pending:
        _reject_shortcut_view(value, name, what)
        if not isinstance(value, _Pending):
            raise ConfigError(f"{name}: {what} applies to a quantized layer's output here")
        if value.layer is not None:
            raise ConfigError(f"{name}: {what} after {value.name}'s output was already quantized for another layer")
        return value

    def _batch_norm(self, value, bn: nn.Module, name: str) -> _Pending:
        pending = self._open(value, "BatchNorm", name)
        if pending.relu or pending.max_pool or pending.global_pool or pending.residual is not None:
            raise ConfigError(f"{name}: BatchNorm after ReLU / pooling / a residual add cannot fold into {pending.name}")
        if not bn.track_running_stats or bn.running_mean is None:
            raise ConfigError(f"{name}: BatchNorm without running statistics cannot fold")
        gamma = as_numpy(bn.weight) if bn.affine else np.ones(bn.num_features)
        beta = as_numpy(bn.bias) if bn.affine else np.zeros(bn.num_features)
        gain = gamma / np.sqrt(as_numpy(bn.running_var) + bn.eps)
        pending.gain = pending.gain * gain
        pending.offset = pending.offset * gain + beta - as_numpy(bn.running_mean) * gain
        return pending

    def _relu(self, value, name: str) -> _Pending:
        pending = self._open(value, "ReLU", name)
        pending.relu = True
        return pending

    def _max_pool(self, value, kernel, stride, padding, dilation, ceil_mode, name: str) -> _Pending:
        pending = self._open(value, "max pooling", name)
        kernel, stride = _square(kernel, name), _square(stride if stride is not None else kernel, name)
        padding, dilation = _square(padding, name), _square(dilation, name)
        if dilation != 1 or ceil_mode or pending.max_pool or pending.global_pool:
            raise ConfigError(f"{name}: only one max pool, dilation 1, ceil_mode False is supported")
        pending.max_pool = (kernel, stride, padding)
        return pending

    def _global_pool(self, value, output_size, name: str) -> _Pending:
        pending = self._open(value, "global average pooling", name)
        if output_size not in (1, (1, 1), [1, 1]):
            raise ConfigError(f"{name}: only global (1x1) average pooling is supported")
        if pending.max_pool or pending.global_pool:
            raise ConfigError(f"{name}: one pooling per layer output")
        pending.global_pool = True
        return pending

    def _slice(self, value, index, name: str) -> _Shortcut:
        """``x[:, :, ::s, ::s]``: the subsampling of an option-A shortcut."""
        if not (isinstance(index, tuple) and len(index) == 4 and all(isinstance(i, slice) for i in index)):
            raise ConfigError(f"{name}: indexing with {index!r} cannot be represented; {SLICE_HELP}")
        batch, channel, rows, cols = index
        steps = {1 if s.step is None else s.step for s in (rows, cols)}
        whole = batch == slice(None) and channel == slice(None)
        from_zero = all(s.start in (None, 0) and s.stop is None for s in (rows, cols))
        if not (whole and from_zero and len(steps) == 1 and all(isinstance(s, int) and s >= 1 for s in steps)):
            raise ConfigError(f"{name}: slicing {index!r} cannot be represented; {SLICE_HELP}")
        view = self._view(value, name)
        return _Shortcut(view.source, view.stride * steps.pop(), view.channel_pad)

    def _pad(self, value, pad, mode, fill, name: str) -> _Shortcut:
        """``F.pad(x, (0, 0, 0, 0, before, after))``: the zero channels of an option-A shortcut."""
        pad = tuple(pad) if isinstance(pad, (tuple, list)) else pad
        exact = isinstance(pad, tuple) and len(pad) in (6, 8) and all(isinstance(p, int) and p >= 0 for p in pad)
        if mode != "constant" or fill not in (None, 0) or not exact or any(pad[:4]) or any(pad[6:]):
            raise ConfigError(f"{name}: F.pad({pad!r}, mode={mode!r}, value={fill!r}) cannot be represented; {PAD_HELP}")
        view = self._view(value, name)
        before, after = view.channel_pad
        return _Shortcut(view.source, view.stride, (before + pad[4], after + pad[5]))

    @staticmethod
    def _view(value, name: str) -> _Shortcut:
        if isinstance(value, _Shortcut):
            return value
        if not isinstance(value, _Pending):
            raise ConfigError(f"{name}: slicing / padding applies to a quantized layer's output here")
        return _Shortcut(value)

    def _add(self, left, right, name: str) -> _Pending:
        candidates = [v for v in (left, right) if isinstance(v, _Pending) and v.layer is None and v.residual is None]
        if not candidates:
            raise ConfigError(f"{name}: a residual add needs a quantized layer's open output on one side")
        main = candidates[0]
        shortcut = right if main is left else left
        if main.relu or main.max_pool or main.global_pool:
            raise ConfigError(f"{name}: the add must come before ReLU / pooling of {main.name}")
        view = shortcut if isinstance(shortcut, _Shortcut) else _Shortcut(shortcut)
        source = view.source
        if isinstance(source, _Pending) and source.layer is None:
            if source.relu or source.max_pool or source.global_pool or source.residual is not None:
                raise ConfigError(f"{name}: the shortcut {source.name} must be a plain (BN-folded) layer output")
            self._finalize(source, OutputStage("accumulator"))
            mode = "accumulator"
        elif isinstance(source, _Pending) and source.consumer_quantizer is not None:
            mode = "codes"
            self.report.approximations.append(
                f"{name}: the shortcut adds {source.name}'s quantized codes; the fake-quant model adds the float value"
            )
        else:
            raise ConfigError(f"{name}: the shortcut must be a quantized tensor or a downsample layer")
        main.residual = Residual(source.name, mode, view.stride, view.channel_pad)
        return main


def _reject_shortcut_view(value, name: str, use: str) -> None:
    if isinstance(value, _Shortcut):
        raise ConfigError(f"{name}: a strided slice / channel padding can only feed a residual add, not {use}")


def _square(value, name: str) -> int:
    values = (value, value) if isinstance(value, int) else tuple(value)
    if len(values) != 2 or values[0] != values[1]:
        raise ConfigError(f"{name}: non-square pooling geometry {value!r} is not supported")
    return int(values[0])


def _check_same_quantizer(first: nn.Module, second: nn.Module, what: str, consumer: str) -> None:
    """Two consumers of one tensor must quantize it identically: the integer model makes one code tensor."""
    if first is second:
        return
    same = type(first) is type(second) and first.config() == second.config()
    if same:
        mine, theirs = first.state_dict(), second.state_dict()
        same = mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    if not same:
        raise ConfigError(
            f"{consumer}: {what} is quantized by a different activation quantizer than its other consumer; "
            "the integer model makes one code tensor per layer output (share or tie the quantizers)"
        )


def export_model(
    model: nn.Module,
    frac_bits: FracBits = None,
    lcq_level_bits: int = spec.DEFAULT_LEVEL_BITS,
    fold_signs: bool = True,
) -> tuple[IntegerNetwork, ExportReport]:
    """The integer network of a fake-quant model (see the module docstring) and what the export chose.

    ``fold_signs``: move negative BN gains into the weight codes where that is exact
    (:meth:`IntegerLayer.with_signs_in_weights`), so most layers need no negating requantizer.
    The model is read in eval semantics (BatchNorm running statistics); it is not modified.
    """
    if not any(isinstance(m, (QuantConv2d, QuantLinear)) for m in model.modules()):
        raise ConfigError("export_model needs a model with quantized layers (see golden.layers.quantize_model)")
    exporter = _Exporter(model, frac_bits, lcq_level_bits, fold_signs)
    with torch.no_grad():
        network = exporter.run()  # a model it cannot export at all says so first
    never_set = uncalibrated_quantizers(model)
    if never_set:
        raise ConfigError(f"the model was never calibrated: {len(never_set)} quantizer(s) still have their initial scale "
                          f"(e.g. {never_set[0]}); call golden.layers.calibrate(model, x) on a batch first")
    return network, exporter.report
