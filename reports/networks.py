"""Workloads as lists of layers, traced from real ``torch.nn.Module`` definitions.

The networks (ResNet-18/34 and MobileNet-V2 in torchvision's layout, CIFAR ResNet-20) are
defined in :mod:`golden.models`, with the other models golden quantizes; here they get names,
input shapes and published parameter counts.  Layer shapes are never typed in: :func:`trace`
runs a dummy input through the module (on the ``meta`` device, so nothing is computed) and
records every conv/linear it passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache

import torch
from torch import nn

from golden.errors import ConfigError, UnknownSchemeError
from golden.models import MobileNetV2, resnet18, resnet20, resnet34

LAYER_TYPES = ("conv", "linear", "depthwise")
#: Counts (MACs, params, elements) of a layer and of a network are exact below this; the estimator's int64
#: and float64 arithmetic multiplies them by bit widths and sums them, which must not wrap or round.
MAX_COUNT = 1 << 53


@dataclass(frozen=True, slots=True)  # slots: a 10^6-layer topology file is a few hundred MB less
class Layer:
    """One conv/linear layer and its GEMM view (batch 1).

    The GEMM view is per group: ``groups`` independent ``(M x K) @ (K x N)`` products with
    ``M = Hout*Wout`` output pixels, ``K = (Cin/groups)*kh*kw`` (the conv window) and
    ``N = Cout/groups`` filters.  A linear layer is a 1x1 conv on a 1x1 map.
    """

    name: str
    type: str
    cin: int
    cout: int
    kh: int = 1
    kw: int = 1
    stride: int = 1
    pad: int = 0
    groups: int = 1
    hin: int = 1
    win: int = 1
    hout: int = 1
    wout: int = 1
    bias: bool = False

    def __post_init__(self) -> None:
        if self.type not in LAYER_TYPES:
            raise UnknownSchemeError(f"layer {self.name!r}: unknown layer type {self.type!r}; expected one of {LAYER_TYPES}")
        for field in ("cin", "cout", "kh", "kw", "stride", "groups", "hin", "win", "hout", "wout"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"layer {self.name!r}: {field} must be a positive int, got {value!r}")
        if not isinstance(self.pad, int) or self.pad < 0:
            raise ConfigError(f"layer {self.name!r}: pad must be a non-negative int, got {self.pad!r}")
        if self.cin % self.groups or self.cout % self.groups:
            raise ConfigError(f"layer {self.name!r}: groups={self.groups} must divide cin={self.cin} and cout={self.cout}")
        if self.type == "depthwise" and not (self.groups == self.cin and self.groups > 1):
            raise ConfigError(f"layer {self.name!r}: a depthwise layer has groups == cin > 1, got groups={self.groups}, cin={self.cin}")
        if self.type == "linear" and (self.kh, self.kw, self.hin, self.win, self.hout, self.wout, self.groups) != (1,) * 7:
            raise ConfigError(f"layer {self.name!r}: a linear layer has 1x1 kernel, maps and groups")
        # params <= macs, so these three bound every count
        for what, count in (("MACs", self.macs), ("input elements", self.input_elements),
                            ("output elements", self.output_elements)):
            if count >= MAX_COUNT:
                raise ConfigError(f"layer {self.name!r}: {count} {what} is too large (counts must stay below 2**53 to be exact)")

    @property
    def m(self) -> int:
        return self.hout * self.wout

    @property
    def k(self) -> int:
        return (self.cin // self.groups) * self.kh * self.kw

    @property
    def n(self) -> int:
        return self.cout // self.groups

    @property
    def params(self) -> int:
        """Weights (Eq. 10/11: ``Cin*Cout*Kh*Kw`` per group, ``Nin*Nout``); biases not included."""
        return self.groups * self.k * self.n

    @property
    def macs(self) -> int:
        """Multiply-accumulates (Eq. 12/13: params times output pixels)."""
        return self.groups * self.m * self.k * self.n

    @property
    def input_elements(self) -> int:
        return self.cin * self.hin * self.win

    @property
    def output_elements(self) -> int:
        return self.cout * self.hout * self.wout

    def as_dict(self) -> dict:
        return {**asdict(self), "M": self.m, "K": self.k, "N": self.n, "params": self.params, "macs": self.macs}


def _square(value: int | tuple[int, ...], what: str, name: str) -> int:
    values = (value, value) if isinstance(value, int) else tuple(value)
    if len(set(values)) != 1:
        raise ConfigError(f"layer {name!r}: non-square {what} {values} is not supported")
    return int(values[0])


def _layer_from_module(name: str, module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Layer:
    if isinstance(module, nn.Linear):
        return Layer(name, "linear", module.in_features, module.out_features, bias=module.bias is not None)
    if type(module) is not nn.Conv2d:
        raise UnknownSchemeError(f"module {name!r} of type {type(module).__name__} is not a supported layer type (Conv2d, Linear)")
    if _square(module.dilation, "dilation", name) != 1 or not isinstance(module.padding, tuple):
        raise ConfigError(f"layer {name!r}: dilation and string padding are not supported")
    kind = "depthwise" if module.groups == module.in_channels and module.groups > 1 else "conv"
    return Layer(
        name, kind, module.in_channels, module.out_channels,
        kh=module.kernel_size[0], kw=module.kernel_size[1],
        stride=_square(module.stride, "stride", name), pad=_square(module.padding, "padding", name),
        groups=module.groups, hin=x.shape[-2], win=x.shape[-1], hout=y.shape[-2], wout=y.shape[-1],
        bias=module.bias is not None,
    )


WEIGHTED_LEAVES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


def trace(model: nn.Module, input_shape: tuple[int, ...]) -> list[Layer]:
    """Layers in execution order, from forward hooks on a dummy ``meta`` input.

    Every conv/linear-like leaf is hooked, so a network with a layer kind the estimator does
    not model (Conv1d, Conv3d, transposed convs) fails loudly instead of being skipped.
    """
    layers: list[Layer] = []
    hooks = []

    def hook_for(name: str):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            layers.append(_layer_from_module(name, module, inputs[0], output))

        return record

    for name, module in model.named_modules():
        if isinstance(module, WEIGHTED_LEAVES):
            hooks.append(module.register_forward_hook(hook_for(name)))
    try:
        model.to("meta").eval()
        with torch.no_grad():
            model(torch.empty(input_shape, device="meta"))
    finally:
        for handle in hooks:
            handle.remove()
    if not layers:
        raise ConfigError(f"{type(model).__name__} has no Conv2d/Linear layer to trace")
    return layers


@dataclass(frozen=True)
class NetworkSpec:
    builder: Callable[[], nn.Module]
    input_shape: tuple[int, int, int, int]
    published_params: int  # torchvision's / the paper's count, checked by the tests


NETWORKS: dict[str, NetworkSpec] = {
    "resnet18": NetworkSpec(resnet18, (1, 3, 224, 224), 11_689_512),
    "resnet34": NetworkSpec(resnet34, (1, 3, 224, 224), 21_797_672),
    "mobilenet_v2": NetworkSpec(MobileNetV2, (1, 3, 224, 224), 3_504_872),
    "resnet20": NetworkSpec(resnet20, (1, 3, 32, 32), 269_722),
}


def network_spec(name: str) -> NetworkSpec:
    if name not in NETWORKS:
        raise UnknownSchemeError(f"network {name!r} does not exist; expected one of {tuple(NETWORKS)}")
    return NETWORKS[name]


def build(name: str) -> nn.Module:
    """A fresh module of a named network, on the meta device (shapes only, no weights)."""
    with torch.device("meta"):
        return network_spec(name).builder()


def count_parameters(model: nn.Module) -> int:
    """Every parameter, as torchvision counts them (weights, biases, BatchNorm affine)."""
    return sum(p.numel() for p in model.parameters())


@cache
def _traced(name: str) -> tuple[Layer, ...]:
    return tuple(trace(build(name), network_spec(name).input_shape))


def network_layers(name: str) -> list[Layer]:
    """The named network's layers, traced once per process."""
    return list(_traced(name))
