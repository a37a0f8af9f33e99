"""What passes between integer layers and what a layer's accumulators become.

:class:`Codes` (activation codes with their real step per sample) and :class:`Accumulators`
(accumulator-domain integers with their real unit) are the values a network's layers exchange;
:class:`OutputStage` (with the ASQ :class:`AsqAdapter`) says how a layer requantizes, and
:class:`Residual` what shortcut it adds first.  :func:`quantize_real` is the host's input
quantizer.  The real-valued meaning of the integers is described in :mod:`golden.integer`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import spec
from .errors import ConfigError, LevelTableError, NonFiniteInputError, UnknownSchemeError

OUTPUT_MODES = ("uniform", "asq", "threshold", "accumulator")
RESIDUAL_MODES = ("codes", "accumulator")


@dataclass(frozen=True)
class Codes:
    """Activation codes and the real step of one code-value unit per sample."""

    codes: np.ndarray
    step: np.ndarray
    table: np.ndarray | None = None

    def __post_init__(self) -> None:
        codes = int_array(self.codes, "activation codes")
        if codes.ndim < 2:
            raise ConfigError(f"activation codes must be [N, ...], got shape {codes.shape}")
        step = float_array(np.broadcast_to(self.step, (codes.shape[0],)) if np.ndim(self.step) == 0 else self.step, "step")
        if step.shape != (codes.shape[0],) or np.any(step <= 0):
            raise ConfigError(f"step must be positive, one per sample ({codes.shape[0]}), got shape {step.shape}")
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "step", step)
        if self.table is not None:
            object.__setattr__(self, "table", int_array(self.table, "activation level table"))

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


def float_array(value, name: str, shape: tuple | None = None) -> np.ndarray:
    """``value`` as a finite float64 array (of ``shape`` if given), or a one-line error naming it."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise ConfigError(f"{name} must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if shape is not None and array.shape != shape:
        raise ConfigError(f"{name} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise NonFiniteInputError(f"{name} holds NaN or infinity")
    return array


def int_array(value, name: str, shape: tuple | None = None) -> np.ndarray:
    """``value`` as an int64 array (of ``shape`` if given) if it holds integers, or a one-line error naming it."""
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        raise ConfigError(f"{name} must hold integers, got dtype {array.dtype}")
    if shape is not None and array.shape != shape:
        raise ConfigError(f"{name} must have shape {shape}, got {array.shape}")
    return array.astype(np.int64)


@dataclass(frozen=True)
class AsqAdapter:
    """The ASQ adapter MLP, run in float on the host: ``beta = max(relu(... relu(W z + b) ...), floor)``.

    ``weights[i]`` is ``[out, in]``; ReLU follows every linear layer (golden/README.md#asq).
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    beta_floor: float = 1e-8

    def __post_init__(self) -> None:
        if not self.weights or len(self.weights) != len(self.biases):
            raise ConfigError("an ASQ adapter needs one bias per linear layer and at least one layer")
        weights = tuple(float_array(w, f"adapter weight {i}") for i, w in enumerate(self.weights))
        biases = tuple(float_array(b, f"adapter bias {i}") for i, b in enumerate(self.biases))
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
            spec.check_bits("output bits", self.bits)
        if not (isinstance(self.step, (int, float)) and np.isfinite(self.step) and self.step > 0):
            raise ConfigError(f"output step must be a finite positive number, got {self.step!r}")
        if (self.mode == "asq") != (self.adapter is not None):
            raise ConfigError("an ASQ adapter goes with mode 'asq' and only with it")
        if self.mode == "threshold":
            if self.thresholds is None or self.levels is None:
                raise LevelTableError("mode 'threshold' needs real thresholds and a level table")
            thresholds = float_array(self.thresholds, "thresholds", ((1 << self.bits) - 1,))
            if np.any(np.diff(thresholds) < 0):
                raise LevelTableError("thresholds must be non-decreasing")
            levels = int_array(self.levels, "output level table", (1 << self.bits,))
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


def quantize_real(stage: OutputStage, x: np.ndarray) -> Codes:
    """Host-side quantization of a real tensor ``[N, ...]`` by an output stage (the network input quantizer).

    Rounds half to even like ``torch.round`` in the fake-quant model; ``asq`` computes beta from
    the global average of ``x`` (per sample) with the adapter, as the ASQ quantizer does.
    """
    x = float_array(x, "network input")
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

