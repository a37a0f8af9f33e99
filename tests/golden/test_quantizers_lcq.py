"""LCQ: compander against a direct implementation of the formulas, codes, level tables, LWN, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from golden import LCQQuantizer
from golden.errors import CodeRangeError, ConfigError, NonFiniteInputError, UnsupportedBitsError
from golden.spec import WeightFormat


class Compander:
    """golden/README.md#lcq written out directly (float64, small vectors), independent of golden.quantizers.lcq."""

    def __init__(self, theta: torch.Tensor):
        self.k = theta.numel()
        t = torch.softmax(theta.double(), 0)
        self.gamma = t * self.k
        self.beta = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(t, 0)[:-1]])
        self.d = torch.arange(self.k, dtype=torch.float64) / self.k

    def interval_of_u(self, u):
        return torch.clamp(torch.floor(u * self.k), 0, self.k - 1).long()

    def interval_of_y(self, y):
        return torch.clamp((self.beta[None, :] <= y[:, None]).sum(1) - 1, 0, self.k - 1)

    def g(self, u):
        k = self.interval_of_u(u)
        return self.gamma[k] * (u - self.d[k]) + self.beta[k]

    def ginv(self, y):
        j = self.interval_of_y(y)
        return (y - self.beta[j]) / self.gamma[j] + self.d[j]


def make(bits, signed, theta=None, alpha=1.0, dtype=torch.float64, **kw):
    q = LCQQuantizer(bits, signed, **kw).to(dtype)
    q.alpha.data = torch.tensor([alpha], dtype=dtype)
    if theta is not None:
        q.theta.data = theta.to(dtype)
    return q


def random_theta(seed, k=16, spread=0.8):
    return torch.randn(k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * spread


@pytest.mark.parametrize("bits,signed", [(2, False), (3, True), (4, True), (4, False), (8, False)])
def test_identity_compander_is_uniform(bits, signed):
    q = make(bits, signed)
    big_q = q.q
    assert big_q == (2 ** (bits - 1) - 1 if signed else 2**bits - 1)
    grid = torch.arange(big_q + 1, dtype=torch.float64) / big_q
    assert torch.allclose(q.expanded_levels(), grid, atol=1e-12)
    assert torch.allclose(q.thresholds(), (torch.arange(1, big_q + 1, dtype=torch.float64) - 0.5) / big_q, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("bits,signed", [(3, True), (4, True), (4, False)])
def test_tables_follow_the_compander_formulas(seed, bits, signed):
    theta = random_theta(seed)
    q = make(bits, signed, theta)
    ref = Compander(theta)
    big_q = q.q
    grid = torch.arange(big_q + 1, dtype=torch.float64) / big_q
    levels = q.expanded_levels()
    assert torch.allclose(levels[:-1], ref.ginv(grid[:-1]), atol=1e-12) and levels[0] == 0 and levels[-1] == 1
    assert torch.allclose(q.thresholds(), ref.ginv((torch.arange(1, big_q + 1, dtype=torch.float64) - 0.5) / big_q), atol=1e-12)
    assert bool((levels[1:] > levels[:-1]).all()) and bool((q.thresholds()[1:] > q.thresholds()[:-1]).all())
    full = q.levels()
    assert full.numel() == (2 * big_q + 1 if signed else big_q + 1)
    if signed:
        assert torch.equal(full, -full.flip(0))
    # g and g^-1 are inverse
    u = torch.rand(1000, dtype=torch.float64)
    assert torch.allclose(ref.ginv(ref.g(u)), u, atol=1e-12)


@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("bits,signed", [(3, True), (4, False)])
def test_forward_is_clip_compress_round_expand(seed, bits, signed):
    theta = random_theta(seed)
    alpha = 1.7
    q = make(bits, signed, theta, alpha=alpha)
    ref = Compander(theta)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(20000, generator=gen, dtype=torch.float64) * 1.5
    u = x.abs() / alpha if signed else x.clamp_min(0) / alpha
    inside = u < 1
    y = ref.g(u.clamp(max=1)) * q.q
    j = torch.round(y)
    magnitude = torch.where(inside, ref.ginv(j / q.q), torch.ones_like(u))
    magnitude = torch.where(j == q.q, 1.0, magnitude)
    expected = (torch.sign(x) if signed else (x > 0).double()) * alpha * magnitude
    away_from_ties = (y - torch.floor(y) - 0.5).abs() > 1e-9
    ours = q(x).detach()
    assert torch.allclose(ours[away_from_ties], expected[away_from_ties], rtol=1e-12, atol=1e-12)
    codes = q.quantize_codes(x)
    assert torch.equal(codes[away_from_ties].abs(), j[away_from_ties].long())
    # exactly on a decision threshold: the larger magnitude (the hardware's acc >= t)
    on = alpha * q.thresholds()
    assert torch.equal(q.quantize_codes(on), torch.arange(1, q.q + 1))
    if signed:
        assert torch.equal(q.quantize_codes(-on), -torch.arange(1, q.q + 1))


@settings(max_examples=30, deadline=None)
@given(bits=st.integers(2, 6), signed=st.booleans(), seed=st.integers(0, 1000), alpha=st.floats(0.05, 20.0))
def test_idempotent_codes_in_range_and_exact_reconstruction(bits, signed, seed, alpha):
    q = make(bits, signed, None if (signed and bits == 2) else random_theta(seed), alpha=alpha, dtype=torch.float32)
    x = torch.randn(3000, generator=torch.Generator().manual_seed(seed)) * alpha
    y = q(x).detach()
    assert torch.equal(q(y).detach(), y)
    codes = q.quantize_codes(x)
    lo = -q.q if signed else 0
    assert codes.min() >= lo and codes.max() <= q.q
    assert torch.equal(q.output_scale(x) * q.levels().float()[codes - lo], y)


@pytest.mark.parametrize("level_bits", [4, 8])
@pytest.mark.parametrize("signed", [True, False])
def test_level_requantization_gives_integer_tables(level_bits, signed):
    q = make(4, signed, random_theta(9), level_bits=level_bits)
    m = 2 ** (level_bits - 1) - 1 if signed else 2**level_bits - 1
    ints = q.integer_levels()
    assert ints.dtype == torch.int64 and ints[0] == 0 and ints[-1] == m
    assert bool((ints[1:] >= ints[:-1]).all())
    assert torch.equal(q.expanded_levels(), ints.double() / m)
    unrounded = make(4, signed, random_theta(9)).expanded_levels()
    assert bool(((q.expanded_levels() - unrounded).abs() <= 0.5 / m + 1e-12).all())
    if signed:
        lo, hi = WeightFormat("lcq", 4, level_bits=level_bits).level_range
        assert lo <= -int(ints.max()) and int(ints.max()) <= hi
    x = torch.randn(500, dtype=torch.float64)
    lo = -q.q if signed else 0
    assert torch.equal(q(x).detach(), q.output_scale(x) * q.levels()[q.quantize_codes(x) - lo])


def test_two_bit_weights_are_uniform_without_theta():
    q = make(2, True, alpha=1.0)
    assert q.theta is None and not any(n == "theta" for n, _ in q.named_parameters())
    assert q.levels().tolist() == [-1.0, 0.0, 1.0]
    assert q.thresholds().tolist() == [0.5]
    x = torch.tensor([-0.7, -0.5, -0.3, 0.0, 0.3, 0.5, 0.7, 2.0], dtype=torch.float64)
    assert q(x).detach().tolist() == [-1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]


def test_lwn_normalizes_inside_the_quantizer():
    torch.manual_seed(0)
    w = torch.randn(32, 16, 3, 3, dtype=torch.float64) * 0.03 + 0.002
    q = make(4, True, random_theta(5), alpha=2.5, lwn=True)
    sigma = w.std(correction=0)
    assert torch.allclose(q.output_scale(w), 2.5 * sigma.view(1), rtol=1e-12)
    codes = q.quantize_codes(w)
    # the codes are those of the normalized weights under a plain quantizer with the same alpha
    plain = make(4, True, random_theta(5), alpha=2.5)
    normalized = (w - w.mean()) / sigma
    assert (plain.quantize_codes(normalized) == codes).double().mean() > 0.999
    # affine invariance of the codes, scale equivariance of the output
    assert (q.quantize_codes(3.0 * w + 0.5) == codes).double().mean() > 0.999
    assert torch.allclose(q(w).detach(), q.output_scale(w) * q.levels()[codes + q.q], rtol=0, atol=0)
    q.init_from(w)
    assert q.alpha.item() == pytest.approx(normalized.abs().mean().item() * 2 * math.sqrt(7), rel=1e-9)


# ---------------------------------------------------------------- gradients


CASES = [
    dict(bits=4, signed=False),
    dict(bits=3, signed=True),
    dict(bits=4, signed=True, lwn=True),
    dict(bits=4, signed=False, level_bits=6),
    dict(bits=2, signed=True, lwn=True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_gradients_match_finite_differences_of_the_lcq_surrogate(case):
    """Both theta paths, alpha's LSQ-style gradient with LSQ's scale, STE for x, LWN through mean and std."""
    bits, signed, lwn, level_bits = case["bits"], case["signed"], case.get("lwn", False), case.get("level_bits")
    compand = not (signed and bits == 2)
    gen = torch.Generator().manual_seed(11)
    n = 48
    x = torch.randn(n, generator=gen, dtype=torch.float64) * (0.05 if lwn else 1.0) + (0.01 if lwn else 0.0)
    q = make(bits, signed, random_theta(12) if compand else None, alpha=1.3, lwn=lwn, level_bits=level_bits)
    r = torch.randn(n, generator=gen, dtype=torch.float64)
    xg = x.clone().requires_grad_()
    q.zero_grad()
    (q(xg) * r).sum().backward()
    ours = [xg.grad, q.alpha.grad] + ([q.theta.grad] if compand else [])

    big_q, g_scale = q.q, 1 / math.sqrt(n * q.q)
    a0 = q.alpha.detach().clone()
    codes = q.quantize_codes(x)
    j0 = codes.abs().double()
    theta0 = q.theta.detach().clone() if compand else None

    def stats(x_):
        if lwn:
            return x_.mean(), x_.std(correction=0)
        return torch.zeros((), dtype=x_.dtype), torch.ones((), dtype=x_.dtype)

    mean0, sigma0 = stats(x)
    c0 = x - mean0
    scale0 = a0 * sigma0
    u0 = c0.abs() / scale0 if signed else c0 / scale0
    inside = (u0 < 1) if signed else (u0 > 0) & (u0 < 1)
    sign = torch.sign(c0) if signed else torch.ones_like(c0)
    if compand:
        ref0 = Compander(theta0)
        k0 = ref0.interval_of_u(u0.clamp(0, 1))
        q0 = ref0.interval_of_y(j0 / big_q)
        g_offset = j0 / big_q - (ref0.gamma[k0] * (u0 - ref0.d[k0]) + ref0.beta[k0])

    def expanded(theta):
        """g^-1(round(g(u))) as a function of theta: both paths, the round frozen at the evaluation point."""
        ref = Compander(theta)
        y = ref.gamma[k0] * (u0 - ref.d[k0]) + ref.beta[k0] + g_offset  # g at the input's interval
        return (y - ref.beta[q0]) / ref.gamma[q0] + ref.d[q0]  # g^-1 at the output's interval (1 for j = Q)

    m = (2 ** (level_bits - 1) - 1 if signed else 2**level_bits - 1) if level_bits else None
    if compand and m:
        level_round_off = torch.round(expanded(theta0) * m) - expanded(theta0) * m  # frozen too

    def level(theta):
        if not compand:
            return j0 / big_q
        value = expanded(theta)
        return (value * m + level_round_off) / m if m else value

    level0 = level(theta0).detach()
    offset = torch.where(inside, level0 - u0, 0.0)  # round-off of the normalized input, constant

    def f(x_, a_, *theta):
        a = g_scale * a_ + (1 - g_scale) * a0
        mean, sigma = stats(x_)
        scale = a * sigma
        u = (x_ - mean) * sign / scale
        companded = level(theta[0]) - level0 if theta else 0.0
        body = torch.where(inside, u + companded + offset, torch.where(u > 0, 1.0, 0.0) if not signed else torch.ones_like(u))
        return sign * scale * body

    inputs = [x.clone().requires_grad_(), a0.clone().requires_grad_()] + ([theta0.clone().requires_grad_()] if compand else [])
    assert torch.allclose(f(*inputs), q(x).detach(), rtol=1e-12, atol=1e-14)  # the surrogate is the quantizer here
    assert torch.autograd.gradcheck(f, tuple(inputs), eps=1e-7, atol=1e-6)
    reference = torch.autograd.grad((f(*inputs) * r).sum(), inputs)
    for mine, ref in zip(ours, reference, strict=True):
        assert torch.allclose(mine, ref, rtol=1e-8, atol=1e-10)
    assert inside.any() and (~inside).any()
    if compand:
        assert q.theta.grad.abs().sum() > 0


def test_theta_gradient_is_the_sum_of_both_paths():
    """theta's gradient = the g^-1 path (levels at fixed y) + the g path (through the STE round); neither alone."""
    theta = random_theta(21)
    alpha = 1.0
    q = make(3, False, theta, alpha=alpha)
    x = torch.rand(400, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 1.2
    (q(x) * x).sum().backward()
    full = q.theta.grad
    j = q.quantize_codes(x).double()
    weight = x * (x < alpha)  # only unclipped inputs depend on theta
    leaf = theta.clone().requires_grad_()
    ref = Compander(leaf)
    levels_path = torch.autograd.grad((ref.ginv(j / q.q) * weight).sum() * alpha, leaf)[0]
    ref = Compander(leaf)
    inverse_slope = 1 / ref.gamma[ref.interval_of_y(j / q.q)].detach()
    compressor_path = torch.autograd.grad((inverse_slope * ref.g(x.clamp(max=1) / alpha) * weight).sum() * alpha, leaf)[0]
    assert torch.allclose(full, levels_path + compressor_path, rtol=1e-9, atol=1e-12)
    for part in (levels_path, compressor_path):
        assert part.abs().max() > 1e-3 and not torch.allclose(full, part, atol=1e-4)


def test_frozen_theta_keeps_the_other_gradients():
    x = torch.randn(300, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    grads = []
    for frozen in (False, True):
        q = make(4, True, random_theta(30), alpha=1.2, lwn=True)
        q.theta.requires_grad_(not frozen)
        xg = x.clone().requires_grad_()
        (q(xg) * x).sum().backward()
        grads.append((xg.grad, q.alpha.grad, q.theta.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])
    assert grads[0][2] is not None and grads[1][2] is None


def test_bad_input_raises():
    for bits in (1, 9):
        with pytest.raises(UnsupportedBitsError):
            LCQQuantizer(bits, signed=True)
    with pytest.raises(UnsupportedBitsError):
        LCQQuantizer(4, signed=True, level_bits=1)
    with pytest.raises(UnsupportedBitsError):
        LCQQuantizer(4, signed=True, level_bits=13)
    with pytest.raises(ConfigError):
        LCQQuantizer(4, signed=True, intervals=0)
    with pytest.raises(ConfigError):
        LCQQuantizer(4, signed=False, lwn=True)
    with pytest.raises(ConfigError):
        LCQQuantizer(4, signed=False).integer_levels()
    q = LCQQuantizer(4, signed=False)
    with pytest.raises(NonFiniteInputError):
        q(torch.tensor([float("nan")]))
    q.alpha.data = torch.tensor([0.0])
    with pytest.raises(CodeRangeError):
        q(torch.rand(4))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_theta_is_rejected_not_put_on_the_top_level(bad):
    q = LCQQuantizer(4, signed=False, level_bits=8)
    with torch.no_grad():
        q.theta[1] = bad
    x = torch.linspace(0, 1, 16)
    for call in (lambda: q(x), lambda: q.quantize_codes(x), q.integer_levels, q.thresholds, q.levels):
        with pytest.raises(NonFiniteInputError, match="LCQ theta must be finite"):
            call()


def test_a_theta_whose_softmax_underflows_is_rejected():
    q = LCQQuantizer(4, signed=True, level_bits=8)
    with torch.no_grad():
        q.theta[0] = 1e4  # the other intervals get width exp(-1e4) = 0
    with pytest.raises(CodeRangeError, match="interval of zero width"):
        q.integer_levels()
