"""Helpers every quantizer shares: input checks, gradient scaling, chunked iteration."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..errors import CodeRangeError, ConfigError, NonFiniteInputError, UnsupportedBitsError

# Elementwise work runs on blocks of this many elements: temporaries stay cache-sized and the
# peak extra memory stays near the output itself, whatever the input size.
CHUNK_ELEMENTS = 1 << 18


def check_input(x: torch.Tensor, what: str = "input") -> None:
    """Raise unless ``x`` is a finite floating-point tensor.

    One ``aminmax`` pass: NaN propagates into both results and an infinity shows in one of them,
    so this needs no boolean temporary the size of ``x`` (``isfinite(x).all()`` does).
    """
    if not isinstance(x, torch.Tensor):
        raise ConfigError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ConfigError(f"{what} must be a floating-point tensor, got dtype {x.dtype}")
    if x.numel() == 0:
        return
    lo, hi = torch.aminmax(x.detach())
    if not (torch.isfinite(lo) and torch.isfinite(hi)):
        raise NonFiniteInputError(f"{what} contains NaN or infinity (min {lo.item()}, max {hi.item()})")


def check_calibration_input(x: torch.Tensor) -> None:
    """:func:`check_input`, and an ``init_from`` needs data: an empty tensor has no statistics to fit a scale to."""
    check_input(x, "init_from input")
    if x.numel() == 0:
        raise ConfigError(f"init_from needs a non-empty tensor, got shape {tuple(x.shape)}")


REDUCED_DTYPES = (torch.float16, torch.bfloat16)


def in_dtype(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` (checked by :func:`check_input`) in ``dtype``, the quantizer's parameter dtype: an input of another
    float dtype then lands on the level its float32 value does (a bfloat16 division would round first)."""
    check_input(x)
    return x if x.dtype == dtype else x.to(dtype)


def check_positive(name: str, value: torch.Tensor) -> None:
    """Raise unless every entry of a scale parameter is finite and > 0 (a hand-set or diverged scale)."""
    v = value.detach()
    if not bool(torch.isfinite(v).all()) or bool((v <= 0).any()):
        raise CodeRangeError(f"{name} must be finite and positive, got {v.flatten()[:8].tolist()}")


def check_bits(bits: int, lo: int, hi: int, what: str) -> int:
    """``bits`` itself if it is an int in ``lo..hi``, else UnsupportedBitsError."""
    if not isinstance(bits, int) or isinstance(bits, bool) or not lo <= bits <= hi:
        raise UnsupportedBitsError(f"{what} supports bits in {lo}..{hi}, got {bits!r}")
    return bits


class _GradScale(torch.autograd.Function):
    """Identity forward (a copy), gradient times ``factor``."""

    @staticmethod
    def forward(ctx, param: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return param.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.factor, None


def grad_scale(param: torch.Tensor, factor: float) -> torch.Tensor:
    """``param`` itself in the forward pass (bit for bit); gradient multiplied by ``factor``.

    The usual ``(p - p*g).detach() + p*g`` trick can be off by an ulp, which would break the
    exact ``forward == codes * scale`` identity the integer export relies on.
    """
    return _GradScale.apply(param, factor)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round`` (half to even) forward, identity gradient (straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def row_blocks(rows: int, cols: int, chunk: int = CHUNK_ELEMENTS) -> Iterator[tuple[slice, slice]]:
    """Blocks ``(row_slice, col_slice)`` of about ``chunk`` elements covering a ``rows x cols`` matrix.

    Whole rows are grouped while a row is shorter than ``chunk``; longer rows are cut into column
    blocks one row at a time, so every block is contiguous in a row-major tensor.
    """
    if cols >= chunk:
        for r in range(rows):
            for c0 in range(0, cols, chunk):
                yield slice(r, r + 1), slice(c0, min(c0 + chunk, cols))
    else:
        per_block = max(1, chunk // max(cols, 1))
        for r0 in range(0, rows, per_block):
            yield slice(r0, min(r0 + per_block, rows)), slice(0, cols)


def as_rows(x: torch.Tensor, per_row: bool) -> torch.Tensor:
    """``x`` as a contiguous ``(R, M)`` matrix: one row per dim-0 entry, or a single row."""
    x = x.contiguous()
    if per_row:
        return x.view(x.shape[0], -1)
    return x.view(1, -1)


def per_row_count(x: torch.Tensor, per_row: bool) -> int:
    """Elements that share one scale: ``numel / x.shape[0]`` per row, else ``numel``."""
    return x.numel() // x.shape[0] if per_row else x.numel()
