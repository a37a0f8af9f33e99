"""Nearest-level quantization against a sorted level table: bucketize on the decision thresholds.

Every non-uniform quantizer here (POT, POST, APoT, LCQ) maps an input ``x`` to
``table[#{k : thresholds[k] <= x}]`` — ``torch.bucketize(x, thresholds, right=True)`` followed
by a gather from the (small) level table.  Nothing of size ``N x levels`` is ever built: the
search is ``O(N log L)`` with ``torch.bucketize`` and ``O(N)`` with the lookup table below.

**The fast path (float32, large inputs).**  ``torch.bucketize`` is a branchy binary search that
runs at ~20 ns per element on one core, slower than the whole of PyTorch's native fake-quant.
For float32 the top 16 bits of the IEEE encoding (sign, exponent, 7 mantissa bits) split the
real line into 65536 *cells*, each an interval of floats.  If no cell holds more than one
threshold, then for any ``x`` in cell ``c``::

    #{k : t_k <= x} = #{k : t_k < min(cell c)} + [x >= t_inner(c)]

where ``t_inner(c)`` is the one threshold inside the cell (``+inf`` if none).  Two 65536-entry
tables, built per call from the thresholds in O(65536), turn the search into two gathers and one
comparison per element.  The result is *identical* to ``torch.bucketize(..., right=True)`` (the
final comparison is the same float comparison); when a cell holds two thresholds (learned LCQ
levels can crowd), or a threshold is zero, the code falls back to ``torch.bucketize``.

**Ties.**  A value exactly on a threshold goes to the upper level (``x >= t``).  Signed level
sets want ties to go to the larger *magnitude* on both sides, so :func:`scaled_thresholds`
nudges every negative threshold one ulp toward zero: ``x >= nextafter(-t, +inf)`` is exactly
``x > -t``.  Hence ``Q(-x) == -Q(x)`` for every float ``x``.
"""

from __future__ import annotations

import sys

import torch

from ._common import row_blocks

LUT_MIN_ELEMENTS = 1 << 18  # below this, building the tables costs more than bucketize saves
_NUM_CELLS = 1 << 16
_LITTLE_ENDIAN = sys.byteorder == "little"


def _cells_in_value_order() -> torch.Tensor:
    """Cell ids (top 16 bits of a float32) sorted by the values they hold, most negative first."""
    negative = torch.arange(_NUM_CELLS - 1, _NUM_CELLS // 2 - 1, -1)  # sign set: larger id, more negative
    positive = torch.arange(0, _NUM_CELLS // 2)
    return torch.cat([negative, positive])


_CELL_ORDER = _cells_in_value_order()


def _cell_ids(x: torch.Tensor) -> torch.Tensor:
    """The top 16 bits of each float32 in a contiguous 1-D tensor, as int32 in 0..65535."""
    if _LITTLE_ENDIAN:
        return x.view(torch.uint16)[1::2].to(torch.int32)
    return (x.view(torch.int32) >> 16) & 0xFFFF


class BucketLUT:
    """Per-cell ``base`` count and inner threshold for a float32 threshold vector (see module doc)."""

    __slots__ = ("base", "inner")

    def __init__(self, base: torch.Tensor, inner: torch.Tensor) -> None:
        self.base = base
        self.inner = inner

    @classmethod
    def build(cls, thresholds: torch.Tensor) -> BucketLUT | None:
        """Tables for ``thresholds`` (1-D float32, non-decreasing, finite), or None if not exact."""
        if thresholds.dtype != torch.float32 or thresholds.dim() != 1 or bool((thresholds == 0).any()):
            return None
        cells = _cell_ids(thresholds.contiguous())
        counts = torch.bincount(cells, minlength=_NUM_CELLS)
        if int(counts.max()) > 1:
            return None
        counts_in_order = counts[_CELL_ORDER]
        base = torch.empty(_NUM_CELLS, dtype=torch.int32)
        base[_CELL_ORDER] = (torch.cumsum(counts_in_order, 0) - counts_in_order).to(torch.int32)
        inner = torch.full((_NUM_CELLS,), float("inf"), dtype=torch.float32)
        inner[cells.long()] = thresholds
        return cls(base, inner)

    def bucketize(self, x: torch.Tensor) -> torch.Tensor:
        """``torch.bucketize(x, thresholds, right=True, out_int32=True)`` for contiguous 1-D float32 ``x``."""
        cell = _cell_ids(x)
        index = self.base.index_select(0, cell)
        inner = self.inner.index_select(0, cell)
        del cell
        index += x >= inner
        return index


def scaled_thresholds(
    scale: torch.Tensor, thresholds: torch.Tensor, signed: bool, shift: torch.Tensor | None = None
) -> torch.Tensor:
    """``shift + scale * thresholds`` (``(R, T)``) in the input's units, negative side nudged one ulp up.

    The nudge (for the thresholds that are negative before scaling) turns ``x >= t`` into
    ``x > t`` there: ties go to the larger magnitude on both sides.
    """
    normalized = thresholds.to(scale.dtype)
    scaled = scale.detach() * normalized
    if shift is not None:
        scaled = scaled + shift.detach()
    if signed:
        scaled = torch.where(normalized < 0, torch.nextafter(scaled, torch.full_like(scaled, float("inf"))), scaled)
    return scaled.contiguous()


def _shared_lut(x2d: torch.Tensor, thresholds: torch.Tensor) -> BucketLUT | None:
    if thresholds.shape[0] == 1 and x2d.numel() >= LUT_MIN_ELEMENTS:
        return BucketLUT.build(thresholds[0])
    return None


def _block_index(block: torch.Tensor, thresholds: torch.Tensor, lut: BucketLUT | None) -> torch.Tensor:
    """Bucket indices (int32, shape of ``block``) of one contiguous block; ``thresholds`` its rows'."""
    if thresholds.shape[0] > 1:
        return torch.searchsorted(thresholds, block, right=True, out_int32=True)
    flat = block.reshape(-1)
    index = lut.bucketize(flat) if lut is not None else torch.bucketize(flat, thresholds[0], right=True, out_int32=True)
    return index.view(block.shape)


def bucket_index(x2d: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """``#{k : thresholds[row, k] <= x}`` for a contiguous ``(R, M)`` input, as int64."""
    index = torch.empty(x2d.shape, dtype=torch.int64)
    lut = _shared_lut(x2d, thresholds)
    shared = thresholds.shape[0] == 1
    for rs, cs in row_blocks(*x2d.shape):
        index[rs, cs] = _block_index(x2d[rs, cs], thresholds if shared else thresholds[rs], lut)
    return index


def table_forward(
    x2d: torch.Tensor, thresholds: torch.Tensor, table: torch.Tensor, out: torch.Tensor, codes: torch.Tensor | None = None
) -> None:
    """Write ``table[row, bucket(x)]`` for a contiguous ``(R, M)`` input into ``out``, block by block.

    ``thresholds`` is ``(R, T)`` or ``(1, T)`` (shared), ``table`` ``(R, T + 1)`` or ``(1, T + 1)``.
    When ``codes`` (a ``(R, M)`` integer tensor) is given, the bucket indices are written into it.
    """
    lut = _shared_lut(x2d, thresholds)
    shared = thresholds.shape[0] == 1
    for rs, cs in row_blocks(*x2d.shape):
        index = _block_index(x2d[rs, cs], thresholds if shared else thresholds[rs], lut)
        if shared:
            torch.index_select(table[0], 0, index.view(-1), out=out[rs, cs].view(-1))
        else:
            torch.gather(table[rs], 1, index, out=out[rs, cs])
        if codes is not None:
            codes[rs, cs].copy_(index)


def clip_block(
    x: torch.Tensor, out: torch.Tensor, grad: torch.Tensor, scale: torch.Tensor, signed: bool, shift: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centred input, STE mask and per-row scale-gradient sum for one block of a clipped quantizer.

    With ``c = x - shift`` (``shift`` 0 unless the quantizer centres its input), ``inside`` is
    ``|c| < scale`` (signed) or ``0 < c < scale`` (unsigned), decided on the input itself, not on
    a rounded value.  The output is ``scale * level`` everywhere, so ``d out / d scale`` is
    ``level - c / scale`` inside and ``level`` (the clip level ``+-1``, or 0) outside: one
    expression, ``(out - c * inside) / scale``; the caller divides by ``scale``.
    """
    centred = x - shift if shift is not None else x
    inside = centred.abs() < scale if signed else (centred > 0) & (centred < scale)
    residual = torch.where(inside, out - centred, out)
    row_sums = (grad * residual).sum(dim=1, dtype=torch.float64)
    return centred, inside, row_sums


class TableQuantize(torch.autograd.Function):
    """Fake-quantize ``x`` (contiguous, any shape, ``rows`` slices along dim 0) onto ``scale * levels``.

    Fixed levels, STE for the input.  ``scale`` is ``(rows, 1)`` (per row) or ``(1, 1)``;
    ``shift`` None or a 0-dim tensor the input is centred on (``c = x - shift``).
    ``thresholds``/``levels`` are normalized (scale 1).  Gradients: input ``grad * inside`` (or
    ``grad`` unclipped when ``clip_input_grad`` is False, as APoT does for weights); shift minus
    the input's; scale ``sum(grad * (out - c * inside)) / scale``.  Input and output keep ``x``'s
    shape, so autograd can accumulate other gradients of ``x`` into this one in place.
    """

    @staticmethod
    def forward(ctx, x, rows: int, scale, shift, thresholds, levels, signed: bool, clip_input_grad: bool):
        thr = scaled_thresholds(scale, thresholds, signed, shift)
        table = (scale.detach() * levels.to(scale.dtype)).contiguous()
        out = torch.empty_like(x)
        table_forward(x.view(rows, -1), thr, table, out.view(rows, -1))
        ctx.save_for_backward(x, out, scale)
        ctx.rows = rows
        ctx.shift = None if shift is None else shift.detach()
        ctx.signed = signed
        ctx.clip_input_grad = clip_input_grad
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out, scale = ctx.saved_tensors
        rows, s = ctx.rows, scale.detach()
        grad = grad.contiguous()
        grad_x = torch.empty_like(x) if ctx.clip_input_grad else grad
        x2d, out2d, grad2d, grad_x2d = (t.view(rows, -1) for t in (x, out, grad, grad_x))
        grad_scale = torch.zeros(rows, dtype=torch.float64)
        grad_x_sum = torch.zeros((), dtype=torch.float64)  # the shift's gradient is minus this
        per_row = s.shape[0] > 1
        for rs, cs in row_blocks(*x2d.shape):
            _, inside, sums = clip_block(x2d[rs, cs], out2d[rs, cs], grad2d[rs, cs], s[rs] if per_row else s, ctx.signed, ctx.shift)
            if ctx.clip_input_grad:
                torch.mul(grad2d[rs, cs], inside, out=grad_x2d[rs, cs])
            grad_x_sum += grad_x2d[rs, cs].sum(dtype=torch.float64)
            grad_scale[rs] += sums
        if not per_row:
            grad_scale = grad_scale.sum().view(1)
        grad_scale = (grad_scale / s.view(-1).double()).to(scale.dtype).view_as(scale)
        grad_shift = -grad_x_sum.to(scale.dtype) if ctx.needs_input_grad[3] else None
        return grad_x, None, grad_scale, grad_shift, None, None, None, None
