"""POT / POST (PowerQuantizer): level sets against golden.spec, nearest level, ties, codes, gradients, memory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from golden import PowerQuantizer
from golden.bench import peak_extra_bytes
from golden.errors import CodeRangeError, ConfigError, NonFiniteInputError, UnknownSchemeError, UnsupportedBitsError
from golden.spec import WeightFormat

BASES = {"2": 2.0, "sqrt2": math.sqrt(2.0)}
ALL = [(bits, base, levels) for bits in range(2, 9) for base in BASES for levels in ("bbit", "paper")]
SMALL = [c for c in ALL if c[0] <= 4]


def make(bits, base="sqrt2", levels="bbit", alpha=1.0, dtype=torch.float32, per_channel=False):
    q = PowerQuantizer(bits, base=base, levels=levels, per_channel=per_channel).to(dtype)
    q.alpha.data = torch.as_tensor(alpha, dtype=dtype).reshape(-1).clone()
    return q


@pytest.mark.parametrize("bits,base,levels", ALL)
def test_level_set_matches_spec(bits, base, levels):
    q = make(bits, base, levels)
    lv = q.levels()
    fmt = WeightFormat("pot" if base == "2" else "post", bits, levels)
    count = 2**bits - 1 if levels == "bbit" else 2**bits + 1
    assert lv.numel() == count == 2 * (fmt.max_exponent + 1) + 1
    assert torch.equal(lv, -lv.flip(0))  # symmetric
    assert bool((lv[1:] > lv[:-1]).all())  # strictly increasing
    assert lv[count // 2] == 0 and lv[-1] == 1
    expected = sorted(BASES[base] ** -e for e in range(fmt.max_exponent + 1))
    assert np.allclose(lv[count // 2 + 1 :].numpy(), expected, rtol=1e-15, atol=0)
    assert [fmt.power_value(e) for e in range(fmt.max_exponent, -1, -1)] == lv[count // 2 + 1 :].tolist()
    assert q.weight_format == fmt


@pytest.mark.parametrize("bits,base,levels", SMALL)
def test_exhaustive_small_bits_nearest_level_and_ties(bits, base, levels):
    """Every level, every threshold and its float neighbours, and a dense sweep: nearest level, ties up in magnitude."""
    q = make(bits, base, levels, alpha=1.0)  # alpha = 1: thresholds are the float32 midpoints themselves
    lv = q.levels()
    mids32 = ((lv[1:] + lv[:-1]) / 2).float()
    up, down = torch.tensor(math.inf), torch.tensor(-math.inf)
    probes = torch.cat(
        [lv.float(), mids32, torch.nextafter(mids32, up), torch.nextafter(mids32, down), torch.linspace(-1.3, 1.3, 20001), torch.tensor([1.5, -7.0, 0.0, -0.0])]
    )
    y = q(probes).detach().double()
    lv32 = lv.float().double()  # the levels as the float32 forward produces them
    assert bool(torch.isin(y, lv32).all())  # only levels come out
    # dense sweep away from the (float32-rounded) midpoints: the nearest level in exact arithmetic
    real_mids = (lv[1:] + lv[:-1]) / 2
    clear = (probes.double()[:, None] - real_mids[None, :]).abs().min(dim=1).values > 1e-6
    distance = (probes.double()[clear][:, None] - lv[None, :]).abs()
    assert torch.equal(y[clear], lv32[distance.argmin(dim=1)])
    # exactly on a threshold: the larger magnitude; one ulp toward zero: the smaller
    on = q(mids32).detach().double()
    toward_zero = q(torch.nextafter(mids32, torch.zeros(1))).detach().double()
    assert torch.equal(on.abs(), torch.maximum(lv32[1:].abs(), lv32[:-1].abs()))
    assert torch.equal(toward_zero.abs(), torch.minimum(lv32[1:].abs(), lv32[:-1].abs()))


@pytest.mark.parametrize("bits,base,levels", SMALL)
def test_symmetric_including_ties(bits, base, levels):
    q = make(bits, base, levels, alpha=0.37)
    thresholds = q.alpha.detach() * ((q.levels()[1:] + q.levels()[:-1]) / 2).float()
    x = torch.cat([torch.randn(5000), thresholds, torch.nextafter(thresholds, torch.zeros(1)), torch.nextafter(thresholds, torch.ones(1))])
    assert torch.equal(q(-x).detach(), -q(x).detach())
    assert torch.equal(q.level_index(-x), -q.level_index(x))


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(2, 8), base=st.sampled_from(["2", "sqrt2"]), levels=st.sampled_from(["bbit", "paper"]), alpha=st.floats(1e-3, 1e3), seed=st.integers(0, 2**31 - 1))
def test_idempotent_and_codes_roundtrip(bits, base, levels, alpha, seed):
    q = make(bits, base, levels, alpha=alpha)
    x = torch.randn(600, generator=torch.Generator().manual_seed(seed)) * alpha
    y = q(x).detach()
    assert torch.equal(q(y).detach(), y)
    codes = q.quantize_codes(x)
    fmt = q.weight_format
    fmt.check_codes(codes.numpy())  # fits the code word
    assert torch.equal(q.dequantize_codes(codes), y)
    # decode with golden.spec alone: sign, exponent, canonical zero
    negative, exponent, zero = fmt.unpack_power(codes.numpy())
    magnitude = torch.tensor([fmt.power_value(int(e)) if not z else 0.0 for e, z in zip(exponent, zero, strict=True)]).float()
    decoded = q.alpha.detach() * magnitude * torch.from_numpy(np.where(negative, -1.0, 1.0)).float()
    assert torch.equal(decoded, y)
    zero_codes = codes[y == 0]
    assert bool((zero_codes == fmt.zero_exponent).all())  # sign 0, all-ones exponent


@pytest.mark.parametrize("shape", [(5,), (5, 7), (5, 3, 3, 3), (5, 2, 1, 3, 2)])
def test_per_channel_any_rank(shape):
    torch.manual_seed(0)
    w = torch.randn(shape) * torch.linspace(0.1, 2.0, shape[0]).view(-1, *([1] * (len(shape) - 1)))
    q = PowerQuantizer(4, base="sqrt2", per_channel=True)
    q.init_from(w)
    assert q.alpha.shape == (shape[0],)
    y = q(w).detach()
    for c in range(shape[0]):
        assert torch.equal(y[c], make(4, "sqrt2", alpha=q.alpha[c].item())(w[c]).detach())
    assert torch.equal(q.dequantize_codes(q.quantize_codes(w)), y)


def test_init_from_is_the_099_quantile():
    w = torch.arange(1, 1001, dtype=torch.float32) * torch.where(torch.arange(1000) % 2 == 0, 1.0, -1.0)
    q = PowerQuantizer(4)
    q.init_from(w)
    assert q.alpha.item() == 990.0  # ceil(0.99 * 1000) = 990th smallest |w|
    q.alpha.data = torch.tensor([2.0])
    q(w)
    assert q.alpha.item() == 2.0  # no hidden re-initialization


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("per_channel", [False, True])
def test_gradients_match_finite_differences_of_surrogate(per_channel):
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(3, 10, generator=gen, dtype=torch.float64) * 0.7
    q = make(4, "sqrt2", alpha=[0.8, 1.0, 1.2] if per_channel else [0.9], dtype=torch.float64, per_channel=per_channel)
    r = torch.randn(w.shape, generator=gen, dtype=torch.float64)
    wg = w.clone().requires_grad_()
    (q(wg) * r).sum().backward()

    a0 = q.alpha.detach().view(-1, 1)
    g = 1 / math.sqrt(w.numel() // (3 if per_channel else 1))
    level = (q(w).detach() / a0)
    inside = (w.abs() < a0)
    offset = torch.where(inside, level - w / a0, 0.0)  # frozen round-off of the normalized weight

    def f(w_, a_):
        a = g * a_.view(-1, 1) + (1 - g) * a0
        return a * torch.where(inside, w_ / a + offset, torch.sign(w))

    inputs = (w.clone().requires_grad_(), q.alpha.detach().clone().requires_grad_())
    assert torch.autograd.gradcheck(f, inputs, eps=1e-7, atol=1e-6)
    gw, ga = torch.autograd.grad((f(*inputs) * r).sum(), inputs)
    assert torch.allclose(wg.grad, gw, atol=1e-12) and (~inside).any() and inside.any()
    assert torch.allclose(q.alpha.grad, ga, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- cost


@pytest.mark.parametrize("bits,base", [(4, "sqrt2"), (8, "sqrt2"), (8, "2")])
def test_memory_is_linear_not_n_times_levels(bits, base):
    """255 levels would need a 255x temporary with the reference code; here the peak stays near the output."""
    torch.manual_seed(0)
    q = PowerQuantizer(bits, base=base)
    w = torch.randn(1 << 22)  # large enough that fixed per-call tables and block temporaries are small
    q.init_from(w)
    grad = torch.randn_like(w)

    def forward():
        with torch.no_grad():
            return q(w)

    def train():
        leaf = w.detach().requires_grad_()
        q(leaf).backward(grad)

    size = w.numel() * w.element_size()
    assert peak_extra_bytes(forward) <= 1.5 * size
    assert peak_extra_bytes(train) <= 3.0 * size


# ---------------------------------------------------------------- bad input


def test_bad_input_raises():
    with pytest.raises(UnknownSchemeError):
        PowerQuantizer(4, base="3")
    with pytest.raises(UnknownSchemeError):
        PowerQuantizer(4, levels="wide")
    for bits in (1, 9, 3.0):
        with pytest.raises(UnsupportedBitsError):
            PowerQuantizer(bits)
    q = make(4)
    with pytest.raises(NonFiniteInputError):
        q(torch.tensor([1.0, float("nan")]))
    with pytest.raises(NonFiniteInputError):
        q.quantize_codes(torch.tensor([float("inf")]))
    with pytest.raises(CodeRangeError):
        make(4, alpha=0.0)(torch.ones(2))
    with pytest.raises(ConfigError):
        PowerQuantizer(4, per_channel=True)(torch.randn(3, 4))
    with pytest.raises(ConfigError):
        PowerQuantizer(4, channels=3)
    with pytest.raises(CodeRangeError):
        q.dequantize_codes(torch.tensor([1 << 10]))
