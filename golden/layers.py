"""Quantized layers, whole-model conversion, calibration and safe checkpoints.

A quantized layer pairs a weight quantizer with an activation quantizer; the activation
quantizer quantizes the layer's *input* (so a conv's input codes are what the PE array sees).

:func:`quantize_model` converts every ``nn.Conv2d`` and ``nn.Linear`` of a float model.  The
first of them (in module order) and the last ``nn.Linear`` stay at ``first_last_bits`` (8) with
LSQ weights and activations, as both papers keep their first and last layers at 8 bits; the
first layer's input quantizer is signed (an image or embedding is not a ReLU output), every
other activation quantizer is unsigned (the model must feed them ReLU outputs, as the hardware's
unsigned activation codes assume).  Schemes for the other layers:

==========  ===========================================  =============================
scheme      weights                                      activations (layer input)
==========  ===========================================  =============================
lsq         LSQ, signed, per output channel              LSQ
asq         LSQ, signed, per output channel              ASQ (adapter on the input)
pot         POT (base 2, b-bit levels), per channel      LSQ
post        POST (base sqrt 2, b-bit levels), per ch.    LSQ
asq_post    POST, per output channel                     ASQ
apot        APoT with weight normalization               APoT
lcq         LCQ with LWN                                 LCQ
==========  ===========================================  =============================
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from pathlib import Path

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointMismatchError, ConfigError, UnknownSchemeError, UnsupportedBitsError
from .quantizers import APoTQuantizer, ASQQuantizer, LCQQuantizer, LSQQuantizer, PowerQuantizer
from .spec import DEFAULT_LEVEL_BITS, MAX_BITS, MIN_BITS, TrainingScheme, WeightScheme

SCHEMES = tuple(TrainingScheme)
#: The integer weight format each scheme exports to (golden.export): what the hardware multiplies.
SCHEME_WEIGHTS = {TrainingScheme.LSQ: WeightScheme.INT, TrainingScheme.ASQ: WeightScheme.INT,
                  TrainingScheme.POT: WeightScheme.POT, TrainingScheme.POST: WeightScheme.POST,
                  TrainingScheme.ASQ_POST: WeightScheme.POST, TrainingScheme.APOT: WeightScheme.APOT,
                  TrainingScheme.LCQ: WeightScheme.LCQ}
SCHEME_BITS = {scheme: (MIN_BITS, MAX_BITS) for scheme in SCHEMES} | {TrainingScheme.APOT: (2, 6)}
CHECKPOINT_FORMAT = "lutmac-quantized-model"
CHECKPOINT_VERSION = 1

QuantizerFactory = Callable[[int, int, int], tuple[nn.Module, nn.Module]]


class _QuantLayer:
    """What QuantConv2d and QuantLinear share: the two quantizers and their calibration."""

    weight_quantizer: nn.Module
    act_quantizer: nn.Module
    weight: nn.Parameter

    def quantized_weight(self) -> torch.Tensor:
        return self.weight_quantizer(self.weight)

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> None:
        """Data-initialize both quantizers: the activation one from ``x``, the weight one from the weight."""
        self.act_quantizer.init_from(x)
        self.weight_quantizer.init_from(self.weight)


class QuantConv2d(_QuantLayer, nn.Conv2d):
    """``nn.Conv2d`` whose input and weight pass through fake-quantizers (``padding_mode='zeros'``)."""

    def __init__(self, *args, weight_quantizer: nn.Module, act_quantizer: nn.Module, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.padding_mode != "zeros":
            raise ConfigError("QuantConv2d pads quantized codes with zeros: padding_mode must be 'zeros'")
        self.weight_quantizer = weight_quantizer
        self.act_quantizer = act_quantizer

    @classmethod
    def from_float(cls, conv: nn.Conv2d, weight_quantizer: nn.Module, act_quantizer: nn.Module) -> QuantConv2d:
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            weight_quantizer=weight_quantizer,
            act_quantizer=act_quantizer,
        )
        layer.weight.data.copy_(conv.weight.data)
        if conv.bias is not None:
            layer.bias.data.copy_(conv.bias.data)
        return layer.to(conv.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.act_quantizer(x), self.quantized_weight(), self.bias)


class QuantLinear(_QuantLayer, nn.Linear):
    """``nn.Linear`` whose input and weight pass through fake-quantizers."""

    def __init__(self, *args, weight_quantizer: nn.Module, act_quantizer: nn.Module, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.weight_quantizer = weight_quantizer
        self.act_quantizer = act_quantizer

    @classmethod
    def from_float(cls, linear: nn.Linear, weight_quantizer: nn.Module, act_quantizer: nn.Module) -> QuantLinear:
        layer = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            weight_quantizer=weight_quantizer,
            act_quantizer=act_quantizer,
        )
        layer.weight.data.copy_(linear.weight.data)
        if linear.bias is not None:
            layer.bias.data.copy_(linear.bias.data)
        return layer.to(linear.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.act_quantizer(x), self.quantized_weight(), self.bias)


def _edge_quantizers(bits: int, out_channels: int, signed_input: bool) -> tuple[nn.Module, nn.Module]:
    return (
        LSQQuantizer(bits, signed=True, per_channel=True, channels=out_channels),
        LSQQuantizer(bits, signed=signed_input),
    )


def _scheme_quantizers(scheme: str) -> QuantizerFactory:
    """``(bits, in_channels, out_channels) -> (weight quantizer, activation quantizer)`` for a scheme."""

    def lsq_weight(bits: int, out_channels: int) -> nn.Module:
        return LSQQuantizer(bits, signed=True, per_channel=True, channels=out_channels)

    def post_weight(bits: int, out_channels: int, base: str = "sqrt2") -> nn.Module:
        return PowerQuantizer(bits, base=base, per_channel=True, channels=out_channels)

    factories: dict[TrainingScheme, QuantizerFactory] = {
        TrainingScheme.LSQ: lambda b, cin, cout: (lsq_weight(b, cout), LSQQuantizer(b)),
        TrainingScheme.ASQ: lambda b, cin, cout: (lsq_weight(b, cout), ASQQuantizer(b, cin)),
        TrainingScheme.POT: lambda b, cin, cout: (post_weight(b, cout, base="2"), LSQQuantizer(b)),
        TrainingScheme.POST: lambda b, cin, cout: (post_weight(b, cout), LSQQuantizer(b)),
        TrainingScheme.ASQ_POST: lambda b, cin, cout: (post_weight(b, cout), ASQQuantizer(b, cin)),
        TrainingScheme.APOT: lambda b, cin, cout: (APoTQuantizer(b, signed=True), APoTQuantizer(b, signed=False)),
        # level_bits: train on the B-bit level tables the hardware stores, so export is exact
        TrainingScheme.LCQ: lambda b, cin, cout: (
            LCQQuantizer(b, signed=True, lwn=True, level_bits=DEFAULT_LEVEL_BITS),
            LCQQuantizer(b, signed=False, level_bits=DEFAULT_LEVEL_BITS),
        ),
    }
    return factories[scheme]


def scheme_quantizers(scheme: str, bits: int, in_channels: int, out_channels: int) -> tuple[nn.Module, nn.Module]:
    """The (weight, activation) quantizers :func:`quantize_model` gives a body layer of ``scheme`` at ``bits``."""
    check_scheme(scheme, bits)
    return _scheme_quantizers(scheme)(bits, in_channels, out_channels)


def check_scheme(scheme: str, bits: int) -> None:
    """Raise UnknownSchemeError / UnsupportedBitsError unless ``scheme`` supports ``bits``."""
    if scheme not in SCHEMES:
        raise UnknownSchemeError(f"quantization scheme {scheme!r} does not exist; expected one of {SCHEMES}")
    lo, hi = SCHEME_BITS[scheme]
    if not isinstance(bits, int) or isinstance(bits, bool) or not lo <= bits <= hi:
        raise UnsupportedBitsError(f"scheme {scheme!r} supports {lo}..{hi} bits, got {bits!r}")


def _float_layers(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """``(parent, attribute, layer)`` for every plain Conv2d / Linear, in module order."""
    found = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) in (nn.Conv2d, nn.Linear):
                found.append((parent, name, child))
    order = {id(m): i for i, m in enumerate(model.modules())}
    return sorted(found, key=lambda item: order[id(item[2])])


def quantize_model(model: nn.Module, scheme: str, bits: int, first_last_bits: int = 8) -> nn.Module:
    """A copy of ``model`` with every Conv2d / Linear replaced by its quantized version (see module doc)."""
    check_scheme(scheme, bits)
    check_scheme(TrainingScheme.LSQ, first_last_bits)
    model = copy.deepcopy(model)
    layers = _float_layers(model)
    if not layers:
        raise ConfigError("the model has no nn.Conv2d or nn.Linear layer to quantize")
    linears = [i for i, (_, _, layer) in enumerate(layers) if isinstance(layer, nn.Linear)]
    first, last = 0, (linears[-1] if linears else len(layers) - 1)
    make = _scheme_quantizers(scheme)
    for i, (parent, name, layer) in enumerate(layers):
        conv = isinstance(layer, nn.Conv2d)
        cin, cout = (layer.in_channels, layer.out_channels) if conv else (layer.in_features, layer.out_features)
        if i in (first, last):
            weight_q, act_q = _edge_quantizers(first_last_bits, cout, signed_input=i == first)
        else:
            weight_q, act_q = make(bits, cin, cout)  # = scheme_quantizers(scheme, bits, cin, cout)
        cls = QuantConv2d if conv else QuantLinear
        setattr(parent, name, cls.from_float(layer, weight_q, act_q.to(layer.weight.dtype)))
    share_input_quantizers(model)
    return model


class QuantTracer(fx.Tracer):
    """An fx tracer that keeps quantized layers whole (their quantizers are not traced through)."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, _QuantLayer) or super().is_leaf_module(module, qualified_name)


def share_input_quantizers(model: nn.Module) -> None:
    """Give quantized layers that read the same tensor one activation quantizer between them.

    A ResNet block's first conv and its downsample conv read the same input: the hardware
    quantizes that tensor once, so the model must too — otherwise the two step sizes drift apart
    in training and the export has no single code tensor to feed both.  The consumers are found
    by tracing with torch.fx; a model fx cannot trace keeps separate quantizers (it cannot be
    exported either, and :func:`golden.export.export_model` says so).
    """
    try:
        graph = QuantTracer().trace(model)
    except Exception:  # noqa: BLE001 - untraceable models simply keep their own quantizers
        return
    first_reader: dict[fx.Node, _QuantLayer] = {}
    for node in graph.nodes:
        if node.op != "call_module" or not node.args:
            continue
        layer = model.get_submodule(node.target)
        if not isinstance(layer, _QuantLayer):
            continue
        source = node.args[0]
        owner = first_reader.setdefault(source, layer)
        if owner is not layer and owner.act_quantizer.config() == layer.act_quantizer.config():
            layer.act_quantizer = owner.act_quantizer


def quant_layers(model: nn.Module) -> list[tuple[str, _QuantLayer]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _QuantLayer)]


@torch.no_grad()
def calibrate(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Data-initialize every quantized layer from one batch ``x`` (forward order, eval mode).

    Each layer's activation quantizer initializes from the input it receives — already quantized
    by the layers before it — and its weight quantizer from its weight; a layer called twice in
    one forward initializes once.  The model's train/eval mode is restored afterwards.
    """
    layers = quant_layers(model)
    if not layers:
        raise ConfigError("calibrate needs a model with quantized layers (see quantize_model)")
    done: set[int] = set()

    def hook(module: nn.Module, inputs: tuple) -> None:
        if id(module) not in done:
            module.init_from(inputs[0])
            done.add(id(module))

    handles = [layer.register_forward_pre_hook(hook) for _, layer in layers]
    was_training = model.training
    try:
        model.eval()
        model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return model


SCALE_PARAMETERS = ("s", "alpha")
DEFAULT_SCALE_FLOOR = 1e-8


@torch.no_grad()
def clamp_scales_(model: nn.Module, minimum: float = DEFAULT_SCALE_FLOOR) -> nn.Module:
    """Clamp every quantizer's step / clip parameter (``s``, ``alpha``) to at least ``minimum``, in place.

    Quantizers refuse a scale <= 0 (CodeRangeError) rather than silently fix it in ``forward``;
    a training loop whose optimizer can overshoot (Adam on a tiny 8-bit step) calls this after
    each ``optimizer.step()``.
    """
    for module in model.modules():
        if callable(getattr(module, "config", None)):
            for name in SCALE_PARAMETERS:
                param = getattr(module, name, None)
                if isinstance(param, nn.Parameter):
                    param.clamp_(min=minimum)
    return model


def _at_construction(quantizer: nn.Module) -> bool:
    """Whether every scale parameter of ``quantizer`` still holds the value a new quantizer of its configuration has."""
    fresh = type(quantizer)(**{key: value for key, value in quantizer.config().items() if key != "type"})
    for name in SCALE_PARAMETERS:
        param = getattr(quantizer, name, None)
        if isinstance(param, nn.Parameter):
            initial = getattr(fresh, name).detach().flatten()[0].to(param.dtype)
            if not bool((param.detach() == initial).all()):
                return False
    return True


def uncalibrated_quantizers(model: nn.Module) -> list[str]:
    """The quantizers (``layer.weight_quantizer`` / ``layer.act_quantizer``) whose scale no calibration, training
    or checkpoint ever set: still the construction value (1, or APoT's fixed start), not one fitted to any data."""
    return [f"{name}.{role}" for name, layer in quant_layers(model) for role in ("weight_quantizer", "act_quantizer")
            if _at_construction(getattr(layer, role))]


def quantizer_configs(model: nn.Module) -> dict[str, dict]:
    """Every quantizer's configuration, by module name (what tensor shapes alone cannot tell apart)."""
    return {name: m.config() for name, m in model.named_modules() if callable(getattr(m, "config", None))}


def save_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Save the state dict with the quantizer configurations, loadable with ``weights_only=True``."""
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "quantizers": quantizer_configs(model),
            "state_dict": model.state_dict(),
        },
        path,
    )


LOAD_FAILURES = {
    pickle.UnpicklingError: "torch.load(weights_only=True) refused it (not a file of tensors and plain containers)",
    EOFError: "the file is empty or truncated",
    RuntimeError: "the file is corrupt or not written by torch.save",
    ValueError: "the file is corrupt or not written by torch.save",
    OSError: "the file is truncated or cannot be read",  # torch's zip reader on a cut-off file: EINVAL
}


def _first(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _state_dict_mismatch(own: dict, state: dict) -> str | None:
    """One line naming the missing, unexpected and reshaped entries (None when the state dict fits)."""
    not_tensors = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        return f"non-tensor state dict entries ({_first(not_tensors)})"
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    reshaped = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) ({_first(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) ({_first(unexpected)})")
    if reshaped:
        first = reshaped[0]
        parts.append(f"{len(reshaped)} shape mismatch(es) (e.g. {first}: checkpoint {tuple(state[first].shape)}, "
                     f"model {tuple(own[first].shape)})")
    return "; ".join(parts) or None


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a :func:`save_checkpoint` file into ``model`` (``weights_only=True``: no code runs).

    Raises CheckpointMismatchError, with a one-line message naming the file and what is wrong,
    when the file is not such a checkpoint (torch's own error is kept as ``__cause__``), when a
    quantizer's configuration (scheme, bits, signedness, level convention, ...) differs, or when
    the state dict's keys or tensor shapes differ from the model's.  The model is untouched on error.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except tuple(LOAD_FAILURES) as exc:
        reason = next(text for kind, text in LOAD_FAILURES.items() if isinstance(exc, kind))
        raise CheckpointMismatchError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint: {reason}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        if not isinstance(payload, dict):
            held = f"a {type(payload).__name__}"
        elif "format" in payload:
            held = f"format {payload['format']!r}"
        else:
            held = "a dict without a format tag (a bare state dict?)"
        raise CheckpointMismatchError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint: it holds {held}")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointMismatchError(f"{path} has checkpoint version {payload.get('version')!r}, expected {CHECKPOINT_VERSION}")
    expected, found = quantizer_configs(model), payload.get("quantizers")
    found = found if isinstance(found, dict) else {}
    differing = sorted(k for k in set(expected) | set(found) if found.get(k) != expected.get(k))
    if differing:
        first = differing[0]
        raise CheckpointMismatchError(
            f"{path} is from another model: quantizer configuration differs at {len(differing)} module(s), "
            f"e.g. {first!r}: checkpoint {found.get(first)}, model {expected.get(first)}"
        )
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointMismatchError(f"{path} has no state dict")
    mismatch = _state_dict_mismatch(model.state_dict(), state)
    if mismatch:
        raise CheckpointMismatchError(f"{path} does not fit the model: {mismatch}")
    model.load_state_dict(state)
    return model
