"""APoT: additive level sets, weight normalization, nearest level, the authors' gradients."""

from __future__ import annotations

import math

import pytest
import torch

from golden import APoTQuantizer
from golden.errors import CodeRangeError, ConfigError, NonFiniteInputError, UnsupportedBitsError
from golden.quantizers import apot_magnitudes

# Additive term sets (exponents of 2, each set also holds 0), written out from the paper's rule.
TERMS = {
    2: [[1, 2, 3]],
    3: [[1, 2, 4], [3]],
    4: [[1, 3, 5], [2, 4, 6]],
    5: [[1, 3, 6], [2, 4, 7], [5]],
    6: [[1, 4, 7], [2, 5, 8], [3, 6, 9]],
}


@pytest.mark.parametrize("magnitude_bits", [2, 3, 4, 5, 6])
def test_magnitudes_are_normalized_additive_sums(magnitude_bits):
    mags = apot_magnitudes(magnitude_bits)
    assert mags.numel() == 2**magnitude_bits
    assert mags[0] == 0 and mags[-1] == 1 and bool((mags[1:] > mags[:-1]).all())
    # un-normalize to integers in units of the smallest term, then decompose bit by bit:
    # each level uses at most one term of each set, and only terms from the sets
    sets = TERMS[magnitude_bits]
    unit = max(max(s) for s in sets)
    top = sum(2.0 ** -min(s) for s in sets)  # the largest level before normalization
    integers = torch.round(mags * top * 2**unit).to(torch.int64)
    assert torch.allclose(integers.double() / (top * 2**unit), mags, rtol=0, atol=1e-15)
    for value in integers.tolist():
        for terms in sets:
            used = [e for e in terms if value & (1 << (unit - e))]
            assert len(used) <= 1
            for e in used:
                value -= 1 << (unit - e)
        assert value == 0


def test_known_small_sets():
    assert apot_magnitudes(2).tolist() == [0.0, 0.25, 0.5, 1.0]
    assert torch.allclose(apot_magnitudes(3), torch.tensor([0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0], dtype=torch.float64))
    four = apot_magnitudes(4) * 0.75  # the paper's {0, 2^0, 2^-2, 2^-4} + {0, 2^-1, 2^-3, 2^-5}, halved
    paper = sorted({(a + b) / 2 for a in (0, 1, 2**-2, 2**-4) for b in (0, 2**-1, 2**-3, 2**-5)})
    assert four.tolist() == paper


@pytest.mark.parametrize("bits", range(2, 8))
def test_weight_levels_symmetric_b_bit(bits):
    lv = APoTQuantizer(bits, signed=True).levels()
    assert lv.numel() == 2**bits - 1
    assert torch.equal(lv, -lv.flip(0)) and lv[-1] == 1
    if bits == 2:
        assert lv.tolist() == [-1.0, 0.0, 1.0]  # uniform ternary, as the authors fall back to
    else:
        assert torch.equal(lv[lv >= 0], apot_magnitudes(bits - 1))


@pytest.mark.parametrize("bits", range(2, 7))
def test_activation_quantizer_nearest_level_and_range(bits):
    q = APoTQuantizer(bits, signed=False)
    q.alpha.data = torch.tensor([2.0])
    x = torch.linspace(-1, 3, 40001)
    y = q(x).detach()
    levels = (2.0 * q.levels()).float()
    assert bool(torch.isin(y, levels).all())
    assert bool((y[x <= 0] == 0).all()) and bool((y[x >= 2] == 2).all())
    inside = (x > 0) & (x < 2)
    mids = (levels[1:] + levels[:-1]) / 2
    clear = inside & ((x[:, None] - mids[None, :]).abs().min(dim=1).values > 1e-5)
    nearest = levels[(x[clear][:, None] - levels[None, :]).abs().argmin(dim=1)]
    assert torch.equal(y[clear], nearest)
    codes = q.quantize_codes(x)
    assert codes.min() == 0 and codes.max() == 2**bits - 1
    assert torch.equal(q.output_scale(x) * q.levels().float()[codes], y)


def test_weight_normalization_in_std_units_and_shift_invariant():
    torch.manual_seed(0)
    w = torch.randn(64, 32, 3, 3) * 0.05 + 0.01
    q = APoTQuantizer(4)
    assert q.alpha.item() == 3.0  # the authors' initial clip, in std units
    y = q(w).detach()
    std = w.std()
    assert torch.equal(q.output_scale(w), q.alpha.detach() * std)
    codes = q.quantize_codes(w)
    assert codes.min() == -7 and codes.max() == 7
    assert torch.equal(q.output_scale(w) * q.levels().float()[codes + 7], y)
    # the quantizer sees w - mean: shifting every weight changes (almost) no code
    same = (q.quantize_codes(w + 0.25) == codes).float().mean()
    assert same > 0.999
    q.init_from(w)
    centred = (w - w.mean()).abs().flatten()
    assert q.alpha.item() == pytest.approx(centred.kthvalue(math.ceil(0.99 * centred.numel())).values.item() / std.item(), rel=1e-5)


# ---------------------------------------------------------------- gradients (the authors')


@pytest.mark.parametrize("signed", [True, False])
def test_gradients_match_finite_differences_of_surrogate(signed):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(40, generator=gen, dtype=torch.float64) * (1.0 if signed else 2.0)
    q = APoTQuantizer(4, signed=signed).double()
    q.alpha.data = torch.tensor([1.6 if signed else 1.5], dtype=torch.float64)
    r = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    xg = x.clone().requires_grad_()
    (q(xg) * r).sum().backward()

    mean = x.mean() if signed else torch.zeros((), dtype=torch.float64)
    unit = x.std() if signed else torch.ones((), dtype=torch.float64)  # constants, as the authors' weight.data
    a0 = q.alpha.detach()
    c = x - mean
    level = q(x).detach() / (a0 * unit)
    inside = c.abs() < a0 * unit if signed else (c > 0) & (c < a0 * unit)
    clipped = torch.sign(c) if signed else (c > 0).double()
    offset = torch.where(inside, level - c / (a0 * unit), 0.0)

    def f(x_, a_):
        scale = a_ * unit
        c_ = x_ - mean
        body = torch.where(inside, c_ / scale + offset, clipped)
        unclipped = (x_ - x) * (~inside) if signed else 0.0  # weights: identity gradient outside too
        return scale * body + unclipped

    inputs = (x.clone().requires_grad_(), a0.clone().requires_grad_())
    assert torch.autograd.gradcheck(f, inputs, eps=1e-7, atol=1e-6)
    gx, ga = torch.autograd.grad((f(*inputs) * r).sum(), inputs)
    assert torch.allclose(xg.grad, gx, atol=1e-12)
    assert torch.allclose(q.alpha.grad, ga, rtol=1e-10)
    assert inside.any() and (~inside).any()
    if signed:
        assert torch.equal(xg.grad, r)  # "grad for weights will not be clipped"


def test_bad_input_raises():
    for bits in (1, 8):
        with pytest.raises(UnsupportedBitsError):
            APoTQuantizer(bits, signed=True)
    for bits in (1, 7):
        with pytest.raises(UnsupportedBitsError):
            APoTQuantizer(bits, signed=False)
    with pytest.raises(UnsupportedBitsError):
        apot_magnitudes(7)
    with pytest.raises(ConfigError):
        APoTQuantizer(4, signed=False, normalize=True)
    q = APoTQuantizer(4)
    with pytest.raises(NonFiniteInputError):
        q(torch.tensor([0.1, float("-inf")]))
    q.alpha.data = torch.tensor([-1.0])
    with pytest.raises(CodeRangeError):
        q(torch.randn(10))
