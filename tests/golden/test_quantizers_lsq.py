"""LSQ (LSQQuantizer): codes, exhaustive small-bit checks, gradients, and PyTorch's native fake-quant."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from golden import LSQQuantizer
from golden.errors import CodeRangeError, ConfigError, NonFiniteInputError, UnsupportedBitsError
from golden.quantizers import lsq_range

CONFIGS = [(bits, signed, symmetric) for bits in range(2, 9) for signed, symmetric in ((False, False), (True, False), (True, True))]


def make(bits, signed=False, symmetric=False, per_channel=False, step=0.1, dtype=torch.float32):
    q = LSQQuantizer(bits, signed=signed, symmetric=symmetric, per_channel=per_channel).to(dtype)
    q.s.data = torch.as_tensor(step, dtype=dtype).reshape(-1).clone()
    return q


@pytest.mark.parametrize("bits,signed,symmetric", CONFIGS)
def test_code_range_matches_lsq_definition(bits, signed, symmetric):
    qn, qp = lsq_range(bits, signed, symmetric)
    if not signed:
        assert (qn, qp) == (0, 2**bits - 1)
    else:
        assert qp == 2 ** (bits - 1) - 1 and qn == (qp if symmetric else qp + 1)
    q = make(bits, signed, symmetric, step=0.25)
    x = torch.linspace(-3 * qn - 5, 3 * qp + 5, 4001) * 0.25
    codes = q.quantize_codes(x)
    assert codes.min() == -qn and codes.max() == qp  # every extreme code is reached, nothing beyond


@pytest.mark.parametrize("bits,signed,symmetric", [c for c in CONFIGS if c[0] <= 4])
def test_exhaustive_small_bits(bits, signed, symmetric):
    """Every code, every decision boundary and its float neighbours: nearest code, ties to even."""
    step = 0.3
    q = make(bits, signed, symmetric, step=step, dtype=torch.float64)
    qn, qp = q.qn, q.qp
    half = torch.arange(-qn - 1, qp + 1, dtype=torch.float64) + 0.5
    boundaries = half * step
    probes = torch.cat(
        [
            torch.arange(-qn - 2, qp + 3, dtype=torch.float64) * step,
            boundaries,
            torch.nextafter(boundaries, torch.tensor(math.inf, dtype=torch.float64)),
            torch.nextafter(boundaries, torch.tensor(-math.inf, dtype=torch.float64)),
        ]
    )
    v = probes / step
    expected = torch.round(v).clamp(-qn, qp)  # torch.round: half to even
    codes = q.quantize_codes(probes)
    assert torch.equal(codes, expected.to(torch.int64))
    assert torch.equal(q(probes).detach(), expected * step)
    # ties really went to even
    ties = (v - torch.floor(v) == 0.5) & (v > -qn) & (v < qp)
    assert ties.any() and bool((codes[ties] % 2 == 0).all())


@settings(max_examples=40, deadline=None)
@given(
    bits=st.integers(2, 8),
    signed=st.booleans(),
    step=st.floats(1e-3, 10.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_idempotent_and_codes_dequantize_exactly(bits, signed, step, seed):
    q = make(bits, signed, step=step)
    x = torch.randn(512, generator=torch.Generator().manual_seed(seed)) * step * 2 ** (bits - 1)
    y = q(x).detach()
    assert torch.equal(q(y).detach(), y)
    codes = q.quantize_codes(x)
    assert codes.min() >= -q.qn and codes.max() <= q.qp
    assert torch.equal(q.dequantize_codes(codes), y)


def test_per_channel_uses_one_step_per_dim0_slice():
    w = torch.randn(6, 3, 3, 3)
    q = LSQQuantizer(4, signed=True, per_channel=True)
    q.init_from(w)
    assert q.s.shape == (6,)
    expected = w.abs().mean(dim=(1, 2, 3)) * 2 / math.sqrt(7)
    assert torch.allclose(q.s.detach(), expected)
    y = q(w).detach()
    for c in range(6):
        qc = make(4, signed=True, step=q.s[c].item())
        assert torch.equal(y[c], qc(w[c]).detach())


def test_init_from_per_tensor():
    x = torch.rand(1000) * 3
    q = LSQQuantizer(3)
    q.init_from(x)
    assert torch.allclose(q.s.detach(), x.abs().mean().view(1) * 2 / math.sqrt(7))


def test_no_hidden_initialization():
    q = LSQQuantizer(4)
    q.s.data = torch.tensor([0.5])
    x = torch.rand(100) * 10
    q(x)
    assert q.s.item() == 0.5  # forward never re-initializes
    assert torch.equal(q(x).detach(), torch.clamp(torch.round(x / 0.5), 0, 15) * 0.5)


# ---------------------------------------------------------------- gradients


def surrogate(x, s, s0, qn, qp, offset, g):
    """LSQ's gradient made a real derivative: round replaced by a frozen round-off, s by g*s + (1-g)*s0."""
    s_eff = g * s + (1 - g) * s0
    return s_eff * (torch.clamp(x / s_eff, -qn, qp) + offset)


@pytest.mark.parametrize("signed,per_channel", [(False, False), (True, False), (True, True)])
def test_gradients_match_finite_differences_of_lsq_surrogate(signed, per_channel):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 9, generator=gen, dtype=torch.float64) * 0.6
    q = LSQQuantizer(3, signed=signed, per_channel=per_channel).double()
    q.s.data = torch.tensor([0.17, 0.2, 0.23, 0.3] if per_channel else [0.2], dtype=torch.float64)
    r = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    xg = x.clone().requires_grad_()
    (q(xg) * r).sum().backward()

    n = x.numel() // (x.shape[0] if per_channel else 1)
    g = 1 / math.sqrt(n * q.qp)
    s0 = q.s.detach().view(-1, 1)
    offset = q.quantize_codes(x).double() - torch.clamp(x / s0, -q.qn, q.qp)  # round-off at x, a constant

    def f(x_, s_):
        return surrogate(x_, s_.view(-1, 1), s0, q.qn, q.qp, offset, g)

    xs, ss = x.clone().requires_grad_(), q.s.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (xs, ss), eps=1e-7, atol=1e-6)
    gx, gs = torch.autograd.grad((f(xs, ss) * r).sum(), (xs, ss))
    assert torch.allclose(xg.grad, gx, atol=1e-12)
    assert torch.allclose(q.s.grad, gs, rtol=1e-10, atol=1e-12)
    assert (gx == 0).any() and (gx == 1 * r).any()  # both clipped and unclipped elements exercised


def test_boundary_is_decided_on_unrounded_value():
    q = make(3, signed=False, step=1.0, dtype=torch.float64)
    x = torch.tensor([6.9, 7.0, 7.3, 0.0, -0.2, 0.2], dtype=torch.float64, requires_grad=True)
    q(x).sum().backward()
    # 7.0 and 7.3 sit at/above Qp=7: clipped (no input gradient), step gradient Qp; 0.0 and -0.2 at/below 0
    assert x.grad.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    g = 1 / math.sqrt(6 * 7)
    expected = ((7 - 6.9) + 7 + 7 + 0 + 0 + (0 - 0.2)) * g
    assert q.s.grad.item() == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- PyTorch native fake-quant


def torch_forward(x, q):
    if q.per_channel:
        zp = torch.zeros(q.s.numel(), dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(x, q.s.detach(), zp, 0, -q.qn, q.qp)
    return torch.fake_quantize_per_tensor_affine(x, float(q.s.detach()), 0, -q.qn, q.qp)


def torch_learnable(x, s, q, g):
    if q.per_channel:
        zp = torch.zeros(s.numel())
        return torch._fake_quantize_learnable_per_channel_affine(x, s, zp, 0, -q.qn, q.qp, g)
    return torch._fake_quantize_learnable_per_tensor_affine(x, s, torch.zeros(1), -q.qn, q.qp, g)


def ambiguous(x, q):
    """Elements where the two conventions may legitimately differ (see golden.quantizers.lsq)."""
    s = q.s.detach().view(-1, *([1] * (x.dim() - 1))) if q.per_channel else q.s.detach()
    v, vm = x / s, x * (1.0 / s)
    rounding_flip = torch.round(v) != torch.round(vm)
    rounded_inside = (torch.round(vm) >= -q.qn) & (torch.round(vm) <= q.qp)
    clipped = (v <= -q.qn) | (v >= q.qp)
    return rounding_flip, rounded_inside & clipped


@pytest.mark.parametrize("signed,per_channel", [(False, False), (True, False), (True, True)])
def test_agrees_with_torch_native_except_documented_differences(signed, per_channel):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(8, 4000, generator=gen) * 0.5
    q = LSQQuantizer(4, signed=signed, per_channel=per_channel)
    q.init_from(x)
    q.s.data *= 0.5  # a tighter clip so the data reaches the clip band
    flip, band = ambiguous(x, q)
    assert band.any()  # the data does exercise the clip band

    ours = q(x).detach()
    assert torch.equal(ours[~flip], torch_forward(x, q)[~flip])

    r = torch.randn(x.shape, generator=gen)
    xo = x.clone().requires_grad_()
    (q(xo) * r).sum().backward()
    g = 1 / math.sqrt((x.numel() // (x.shape[0] if per_channel else 1)) * q.qp)
    xt, st_ = x.clone().requires_grad_(), q.s.detach().clone().requires_grad_()
    (torch_learnable(xt, st_, q, g) * r).sum().backward()
    agree = ~(flip | band)
    assert torch.equal(xo.grad[agree], xt.grad[agree])
    # step gradient: add back what the clip band contributes under each convention
    s = q.s.detach().view(-1, 1) if per_channel else q.s.detach()
    v = x / s
    code = torch.round(v).clamp(-q.qn, q.qp)
    torch_band = torch.where(band, r * (torch.round(x * (1.0 / s)) - v), 0.0)
    ours_band = torch.where(band, r * code, 0.0)
    dims = 1 if per_channel else (0, 1)
    corrected = st_.grad + g * (ours_band - torch_band).sum(dim=dims).view_as(st_.grad)
    assert torch.allclose(q.s.grad, corrected, rtol=1e-4, atol=1e-6)


def test_exhibit_float32_reciprocal_midpoint_difference():
    """Difference 1: PyTorch multiplies by fl(1/s); at an exact half-integer the rounding flips."""
    q = make(4, signed=True, step=0.0731)
    s = q.s.detach()
    k = torch.arange(-8, 7, dtype=torch.float32) + 0.5
    candidates = k * s
    candidates = torch.cat([candidates, torch.nextafter(candidates, torch.tensor(1.0)), torch.nextafter(candidates, torch.tensor(-1.0))])
    ours, theirs = q(candidates).detach(), torch_forward(candidates, q)
    differ = ours != theirs
    assert differ.any()
    x = candidates[differ]
    true_div, recip = x / s, x * (1.0 / s)
    assert torch.equal(torch.round(true_div) * s, ours[differ])
    assert torch.equal(torch.round(recip) * s, theirs[differ])
    # exactly one of the two lands on a half-integer; the outputs are one step apart
    on_half = lambda t: t - torch.floor(t) == 0.5  # noqa: E731
    assert bool((on_half(true_div) ^ on_half(recip)).all())
    assert torch.allclose((ours[differ] - theirs[differ]).abs(), s.expand(int(differ.sum())))


def test_exhibit_inside_decided_on_rounded_value_by_torch():
    """Difference 2: v/s in [Qp, Qp + 1/2) is clipped for LSQ, 'inside' for PyTorch's learnable op."""
    q = make(3, signed=False, step=1.0)
    x = torch.tensor([7.3], requires_grad=True)
    q(x).sum().backward()
    xt, st_ = torch.tensor([7.3], requires_grad=True), torch.tensor([1.0], requires_grad=True)
    torch_learnable(xt, st_, q, 1.0).sum().backward()
    assert x.grad.item() == 0.0 and xt.grad.item() == 1.0
    assert q.s.grad.item() == pytest.approx(7 / math.sqrt(7))  # Qp * g with g = 1/sqrt(1*7)
    assert st_.grad.item() == pytest.approx(7 - 7.3, abs=1e-6)  # round(v) - v


# ---------------------------------------------------------------- bad input


def test_bad_input_raises():
    q = make(4)
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(NonFiniteInputError):
            q(torch.tensor([0.0, bad]))
        with pytest.raises(NonFiniteInputError):
            q.init_from(torch.tensor([1.0, bad]))
    for bits in (0, 1, 9, 4.0, True):
        with pytest.raises(UnsupportedBitsError):
            LSQQuantizer(bits)
    with pytest.raises(ConfigError):
        LSQQuantizer(4, symmetric=True)
    with pytest.raises(ConfigError):
        q(torch.arange(4))  # integer tensor
    with pytest.raises(CodeRangeError):
        make(4, step=0.0)(torch.ones(3))
    with pytest.raises(CodeRangeError):
        make(4, step=-0.1)(torch.ones(3))
    pc = LSQQuantizer(4, signed=True, per_channel=True)
    with pytest.raises(ConfigError):
        pc(torch.randn(5, 3))  # per-channel step never sized for 5 channels


def test_empty_input():
    q = make(4)
    assert q(torch.empty(0, 3)).shape == (0, 3)
