"""ASQ: LSQ activations whose step is scaled per sample by a tiny adapter (golden/README.md#asq).

    z     = GAP(x)                                  (N, C); x of shape (N, C, ...) or (N, C)
    beta  = max(adapter(z), beta_floor)             one scalar per sample
    x_bar = round(clip(x / (s * beta), 0, Qp))
    x_hat = x_bar * s * beta

The adapter is ``Linear(C, C/4) -> ReLU -> Linear(C/4, 1) -> ReLU`` (a single
``Linear(C, 1) -> ReLU`` when ``C < 8``); its last linear layer starts with weight ~ N(0, 0.01)
and bias 1, so ``beta`` starts near 1.  Gradients: LSQ's for the product step ``s * beta``
(decided on the unrounded ``x / (s beta)``), split by the chain rule: ``s`` receives the sum
over the batch times LSQ's ``g = 1 / sqrt(numel(x) * Qp)``; each sample's ``beta`` receives its
own sum, unscaled (as the authors' code), and passes it back through the adapter.  The GAP
input also carries gradient back to ``x`` through the adapter, as in the authors' code.

**The floor on beta.**  The reference clamps ``beta`` at ``1e-8``: a sample whose
adapter output is <= 0 gets a step ~1e-8 s, every activation clips to ``Qp``, the output is
~0 and no gradient reaches anything.  Worse for hardware, the requantizer's multiplier carries
``1 / beta`` (~1e8), which no 16-bit-mantissa multiplier with a non-negative shift represents.
Default here: ``beta_floor = 2^-4``.  A floored sample is quantized with a step of at least
``s / 16`` — a usable grid whose multiplier stays within 16x of the nominal one, a power of two
the hardware applies as a shift — and ``x`` and ``s`` keep their gradients.  The adapter still
gets no gradient for that sample (the clamp is flat there), exactly as in the reference.
``beta_floor=REFERENCE_BETA_FLOOR`` (1e-8) restores the reference behaviour.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError
from ..spec import MAX_BITS, MIN_BITS, TrainingScheme
from ._common import as_rows, check_bits, check_calibration_input, check_input, check_positive, grad_scale
from .lsq import LSQFakeQuant, lsq_range

REFERENCE_BETA_FLOOR = 1e-8
DEFAULT_BETA_FLOOR = 2.0**-4
ADAPTER_REDUCTION = 4


class _GlobalAveragePool(torch.autograd.Function):
    """Mean over the dims after (N, C).  Its gradient is an expanded view, not an N-sized tensor,
    so autograd adds it into the quantizer's own input gradient in place."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        return x.mean(dim=tuple(range(2, x.dim())))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        shape = ctx.shape
        per_element = grad / math.prod(shape[2:])
        return per_element.view(*grad.shape, *([1] * (len(shape) - 2))).expand(shape)


def make_adapter(channels: int, reduction: int = ADAPTER_REDUCTION) -> nn.Sequential:
    """The ASQ adapter for ``channels`` input channels, initialized as the paper does."""
    if channels >= 2 * reduction:
        hidden = channels // reduction
        net = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.ReLU())
    else:
        net = nn.Sequential(nn.Linear(channels, 1), nn.ReLU())
    last = net[-2]
    nn.init.normal_(last.weight, mean=0.0, std=0.01)
    nn.init.constant_(last.bias, 1.0)
    return net


class ASQQuantizer(nn.Module):
    """Adaptive-step activation quantizer: unsigned ``bits``-bit codes, step ``s * beta(x)`` per sample.

    Integer export: :meth:`quantize_codes` gives ``x_bar`` (int64); :meth:`beta` the per-sample
    factor and :meth:`step` ``s * beta``, shape ``(N,)``; ``forward(x) == quantize_codes(x) *
    step(x)`` (broadcast over the sample) bit for bit.
    """

    def __init__(self, bits: int, channels: int, beta_floor: float = DEFAULT_BETA_FLOOR) -> None:
        super().__init__()
        self.bits = check_bits(bits, MIN_BITS, MAX_BITS, "ASQQuantizer")
        if not isinstance(channels, int) or channels < 1:
            raise ConfigError(f"ASQ needs a positive channel count, got {channels!r}")
        if not (isinstance(beta_floor, (int, float)) and math.isfinite(beta_floor) and beta_floor > 0):
            raise ConfigError(f"beta_floor must be a finite positive number, got {beta_floor!r}")
        self.channels = channels
        self.beta_floor = float(beta_floor)
        self.qn, self.qp = lsq_range(bits, signed=False)
        self.s = nn.Parameter(torch.ones(1))
        self.adapter = make_adapter(channels)

    def config(self) -> dict:
        return {"type": TrainingScheme.ASQ.value, "bits": self.bits, "channels": self.channels, "beta_floor": self.beta_floor}

    def extra_repr(self) -> str:
        return f"bits={self.bits}, channels={self.channels}, beta_floor={self.beta_floor}"

    def _check_shape(self, x: torch.Tensor) -> None:
        check_input(x)
        if x.dim() < 2 or x.shape[1] != self.channels:
            raise ConfigError(f"ASQ for {self.channels} channels needs input (N, {self.channels}, ...), got {tuple(x.shape)}")

    def _check(self, x: torch.Tensor) -> None:
        self._check_shape(x)
        check_positive("ASQ step s", self.s)

    def _beta(self, x: torch.Tensor) -> torch.Tensor:
        pooled = _GlobalAveragePool.apply(x) if x.dim() > 2 else x
        return self.adapter(pooled).view(-1).clamp_min(self.beta_floor)

    def beta(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample step factor ``max(adapter(GAP(x)), beta_floor)``, shape ``(N,)``."""
        self._check(x)
        return self._beta(x)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample step ``s * beta(x)``, shape ``(N,)`` (the value ``forward`` uses)."""
        return self.s * self.beta(x)

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> None:
        """LSQ's ``s = 2 mean|x| / sqrt(Qp)`` (beta starts near 1, so this is the initial step)."""
        check_calibration_input(x)
        self._check_shape(x)
        s = x.detach().abs().mean() * (2.0 / math.sqrt(self.qp))
        self.s.data = (s if s > 0 else torch.ones_like(s)).view(1).to(self.s.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        if x.numel() == 0:
            return x.clone()
        factor = 1.0 / math.sqrt(x.numel() * self.qp)
        step = (grad_scale(self.s, factor) * self._beta(x)).view(-1, 1)
        return LSQFakeQuant.apply(x.contiguous(), x.shape[0], step, self.qn, self.qp)

    @torch.no_grad()
    def quantize_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Integer codes ``round(clip(x / (s beta_n), 0, Qp))`` (int64, shape of ``x``)."""
        step = self.step(x).view(-1, 1)
        return (as_rows(x, True) / step).clamp_(0, self.qp).round_().to(torch.int64).view_as(x)
