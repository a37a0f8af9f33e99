"""LSQ: uniform quantization with a learned step size (Esser et al., ICLR 2020; golden/README.md#lsq).

    v_bar = round(clip(v / s, -Qn, Qp))        integer code (round half to even)
    v_hat = v_bar * s

Gradients are LSQ's, decided on the *unrounded* ``v / s``:

* ``d v_hat / d v = 1`` if ``-Qn < v/s < Qp``, else 0;
* ``d v_hat / d s = v_bar - v/s`` inside, ``-Qn`` if ``v/s <= -Qn``, ``Qp`` if ``v/s >= Qp``;
* the step's gradient is multiplied by ``g = 1 / sqrt(N * Qp)`` with ``N`` the number of
  elements sharing the step in the call (the whole tensor, or one dim-0 slice per channel).

**Differences from PyTorch's native fake-quant** (``torch.fake_quantize_per_tensor_affine``,
``torch._fake_quantize_learnable_per_tensor_affine`` and the per-channel variants), which
otherwise compute the same forward and gradients:

1. PyTorch computes ``x * (1 / s)`` with a float32 reciprocal; here ``x / s`` is a true
   division.  The two differ by an ulp now and then, which flips the rounding exactly when one
   of them lands on a half-integer: the outputs then differ by one step.
2. PyTorch's learnable variant decides "inside" on the *rounded* value
   (``qmin <= round(x/s) <= qmax``), so an input with ``Qp <= v/s < Qp + 1/2`` still gets the
   identity input gradient and the round-off step gradient ``round(v/s) - v/s``; LSQ (and this
   module) treat it as clipped: input gradient 0, step gradient ``Qp``.  Likewise below ``-Qn``.

``tests/golden/test_quantizers_lsq.py`` checks the agreement everywhere else and exhibits both
differences on concrete inputs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError
from ..spec import MAX_BITS, MIN_BITS, TrainingScheme
from ._common import (
    REDUCED_DTYPES,
    as_rows,
    check_bits,
    check_calibration_input,
    check_input,
    check_positive,
    grad_scale,
    in_dtype,
    per_row_count,
    row_blocks,
)


def lsq_range(bits: int, signed: bool, symmetric: bool = False) -> tuple[int, int]:
    """``(Qn, Qp)``: codes run over ``[-Qn, Qp]``."""
    if not signed:
        return 0, (1 << bits) - 1
    qp = (1 << (bits - 1)) - 1
    return (qp if symmetric else qp + 1), qp


class LSQFakeQuant(torch.autograd.Function):
    """LSQ forward and gradients on ``x`` (contiguous, any shape) seen as ``rows`` slices along dim 0.

    ``step`` is ``(rows, 1)`` (one per slice) or ``(1, 1)`` (shared).  It may carry its own graph
    (a gradient-scaled parameter, or ``s * beta`` for ASQ): this function returns
    ``d loss / d step`` unscaled and autograd does the rest.  The input gradient has ``x``'s
    shape, so autograd can accumulate other gradients of ``x`` (ASQ's adapter path) in place.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, rows: int, step: torch.Tensor, qn: int, qp: int) -> torch.Tensor:
        out = torch.empty_like(x)
        x2d, out2d = x.view(rows, -1), out.view(rows, -1)
        step_d = step.detach()
        per_row = step_d.shape[0] > 1
        for rs, cs in row_blocks(*x2d.shape):
            st = step_d[rs] if per_row else step_d
            block = out2d[rs, cs]
            torch.div(x2d[rs, cs], st, out=block)
            block.clamp_(-qn, qp).round_().mul_(st)
        ctx.save_for_backward(x, step)
        ctx.rows, ctx.qn, ctx.qp = rows, qn, qp
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, step = ctx.saved_tensors
        step_d = step.detach()
        rows, qn, qp = ctx.rows, ctx.qn, ctx.qp
        grad_x = torch.empty_like(x)
        x2d, grad2d, grad_x2d = x.view(rows, -1), grad.contiguous().view(rows, -1), grad_x.view(rows, -1)
        per_row = step_d.shape[0] > 1
        grad_step = torch.zeros(rows, dtype=torch.float64)
        for rs, cs in row_blocks(*x2d.shape):
            st = step_d[rs] if per_row else step_d
            v = x2d[rs, cs] / st
            inside = (v > -qn) & (v < qp)
            code = v.clamp(-qn, qp).round_()
            residual = torch.where(inside, code - v, code)
            g = grad2d[rs, cs]
            torch.mul(g, inside, out=grad_x2d[rs, cs])
            grad_step[rs] += (g * residual).sum(dim=1, dtype=torch.float64)
        if not per_row:
            grad_step = grad_step.sum().view(1)
        return grad_x, None, grad_step.to(step.dtype).view_as(step), None, None


class LSQQuantizer(nn.Module):
    """LSQ fake-quantizer with a learnable step ``s`` (per tensor, or per dim-0 channel).

    ``bits`` in 2..8.  ``signed=False`` (activations after ReLU): codes ``0..2^b - 1``.
    ``signed=True`` (weights): codes ``-2^(b-1)..2^(b-1) - 1``, or ``+-(2^(b-1) - 1)`` with
    ``symmetric=True``.  ``per_channel=True`` gives one step per ``x.shape[0]`` slice (the output
    channel of a weight); pass ``channels`` to size ``s`` up front, otherwise :meth:`init_from`
    sizes it.  ``s`` starts at 1 and is only data-initialized by an explicit :meth:`init_from`.

    Integer export: :meth:`quantize_codes` gives ``v_bar`` (int64) and ``forward(x) ==
    quantize_codes(x) * step`` exactly, ``step`` being :attr:`s` broadcast over dim 0.
    """

    def __init__(
        self, bits: int, signed: bool = False, symmetric: bool = False, per_channel: bool = False, channels: int | None = None
    ) -> None:
        super().__init__()
        self.bits = check_bits(bits, MIN_BITS, MAX_BITS, "LSQQuantizer")
        if symmetric and not signed:
            raise ConfigError("symmetric=True needs signed=True (unsigned codes start at 0)")
        if channels is not None and not per_channel:
            raise ConfigError("channels is only meaningful with per_channel=True")
        self.signed, self.symmetric, self.per_channel = signed, symmetric, per_channel
        self.qn, self.qp = lsq_range(bits, signed, symmetric)
        self.s = nn.Parameter(torch.ones(channels if channels is not None else 1))

    def config(self) -> dict:
        """What a checkpoint must match besides tensor shapes (plain strings: ``torch.load(weights_only=True)`` reads them)."""
        return {"type": TrainingScheme.LSQ.value, "bits": self.bits, "signed": self.signed, "symmetric": self.symmetric, "per_channel": self.per_channel}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items() if k != "type")

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> None:
        """LSQ's initialization ``s = 2 mean|x| / sqrt(Qp)`` (per channel: mean over each dim-0 slice)."""
        check_calibration_input(x)
        rows = as_rows(self._working(x).detach(), self.per_channel)
        s = rows.abs().mean(dim=1) * (2.0 / math.sqrt(self.qp))
        s = torch.where(s > 0, s, torch.ones_like(s))  # an all-zero tensor keeps the unit step
        self.s.data = s.to(self.s.dtype) if self.per_channel else s.view(1).to(self.s.dtype)

    def _rows_and_step(self, x: torch.Tensor) -> tuple[int, torch.Tensor]:
        """Number of rows ``x`` splits into (slices sharing a step) and the gradient-scaled step ``(rows|1, 1)``."""
        check_input(x)
        check_positive("LSQ step s", self.s)
        if self.per_channel and (x.dim() == 0 or self.s.numel() != x.shape[0]):
            raise ConfigError(
                f"per-channel step has {self.s.numel()} entries but the input has shape {tuple(x.shape)}: "
                "call init_from(x) or set s to one entry per dim-0 slice"
            )
        factor = 1.0 / math.sqrt(per_row_count(x, self.per_channel) * self.qp) if x.numel() else 1.0
        return (x.shape[0] if self.per_channel else 1), grad_scale(self.s, factor).view(-1, 1)

    def _working(self, x: torch.Tensor) -> torch.Tensor:
        """``x``, or a float16/bfloat16 ``x`` in the step's dtype (so it lands on the level its float32 value does)."""
        check_input(x)
        return in_dtype(x, self.s.dtype) if x.dtype in REDUCED_DTYPES else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        working = self._working(x)
        if x.numel() == 0:
            return x.clone()
        rows, step = self._rows_and_step(working)
        return LSQFakeQuant.apply(working.contiguous(), rows, step, self.qn, self.qp).to(x.dtype)

    @torch.no_grad()
    def quantize_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Integer codes ``v_bar = round(clip(x / s, -Qn, Qp))`` (int64, shape of ``x``)."""
        x = self._working(x)
        _, step = self._rows_and_step(x)
        return (as_rows(x, self.per_channel) / step).clamp_(-self.qn, self.qp).round_().to(torch.int64).view_as(x)

    @torch.no_grad()
    def dequantize_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Real values ``codes * s`` (float, shape of ``codes``), equal to ``forward`` bit for bit."""
        rows = as_rows(codes, self.per_channel).to(self.s.dtype)
        return (rows * self.s.detach().view(-1, 1)).view_as(codes)
