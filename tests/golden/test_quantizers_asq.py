"""ASQ: adapter shape and init, per-sample beta, the beta floor, gradients through the adapter."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from golden import ASQQuantizer
from golden.errors import ConfigError, NonFiniteInputError, UnsupportedBitsError
from golden.quantizers import DEFAULT_BETA_FLOOR, REFERENCE_BETA_FLOOR


def linears(q):
    return [m for m in q.adapter if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("channels,hidden", [(8, 2), (64, 16), (30, 7)])
def test_adapter_two_layers_for_wide_inputs(channels, hidden):
    torch.manual_seed(0)
    q = ASQQuantizer(4, channels)
    kinds = [type(m) for m in q.adapter]
    assert kinds == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU]
    first, last = linears(q)
    assert (first.in_features, first.out_features, last.out_features) == (channels, hidden, 1)
    assert torch.equal(last.bias.detach(), torch.ones(1))
    assert last.weight.abs().max() < 0.06  # N(0, 0.01)


@pytest.mark.parametrize("channels", [1, 3, 7])
def test_adapter_single_layer_for_narrow_inputs(channels):
    torch.manual_seed(0)
    q = ASQQuantizer(4, channels)
    assert [type(m) for m in q.adapter] == [nn.Linear, nn.ReLU]
    (only,) = linears(q)
    assert (only.in_features, only.out_features) == (channels, 1)
    assert torch.equal(only.bias.detach(), torch.ones(1))


def test_last_layer_init_statistics():
    torch.manual_seed(0)
    q = ASQQuantizer(4, 4096)
    w = linears(q)[-1].weight.detach()
    assert abs(w.std().item() - 0.01) < 0.002 and abs(w.mean().item()) < 0.002


def test_beta_is_per_sample_and_starts_near_one():
    torch.manual_seed(0)
    q = ASQQuantizer(4, 16)
    x = torch.rand(5, 16, 6, 6) * torch.arange(1, 6).view(5, 1, 1, 1)
    beta = q.beta(x)
    assert beta.shape == (5,)
    assert torch.allclose(beta, torch.ones(5), atol=0.1)
    pooled = x.mean(dim=(2, 3))
    assert torch.allclose(beta, q.adapter(pooled).view(-1).clamp_min(DEFAULT_BETA_FLOOR))
    assert beta.unique().numel() == 5


def test_forward_is_codes_times_per_sample_step_exactly():
    torch.manual_seed(1)
    q = ASQQuantizer(3, 12)
    x = torch.rand(4, 12, 5, 5) * 3
    q.s.data = torch.tensor([0.4])  # Qp * step ~ 2.8: some inputs clip
    y = q(x).detach()
    codes = q.quantize_codes(x)
    step = q.step(x).detach()
    assert codes.min() >= 0 and codes.max() <= 7 and codes.max() == 7
    assert torch.equal(y, codes.to(y.dtype) * step.view(-1, 1, 1, 1))
    for n in range(4):
        v = x[n] / step[n]
        assert torch.equal(codes[n], torch.round(v.clamp(0, 7)).to(torch.int64))


def test_init_from_is_lsq_init():
    x = torch.rand(3, 8, 4, 4)
    q = ASQQuantizer(4, 8)
    q.init_from(x)
    assert torch.allclose(q.s.detach(), x.abs().mean().view(1) * 2 / math.sqrt(15))


def set_dead_adapter(q):
    """Make the adapter's output negative for every sample (beta would be 0 before the floor)."""
    last = linears(q)[-1]
    last.weight.data.zero_()
    last.bias.data.fill_(-1.0)


def test_reference_floor_kills_the_sample_and_default_floor_keeps_it_alive():
    torch.manual_seed(2)
    x = torch.rand(2, 8, 4, 4) + 0.1
    ref = ASQQuantizer(4, 8, beta_floor=REFERENCE_BETA_FLOOR)
    ref.s.data = torch.tensor([0.3])  # about LSQ's init for this data
    set_dead_adapter(ref)
    xr = x.clone().requires_grad_()
    y = ref(xr)
    assert torch.allclose(ref.beta(x), torch.full((2,), 1e-8))
    assert bool((ref.quantize_codes(x) == 15).all())  # everything clips to Qp
    assert y.abs().max() < 1e-7
    (y * torch.randn_like(y)).sum().backward()
    assert bool((xr.grad == 0).all())  # no gradient reaches the input

    fixed = ASQQuantizer(4, 8)
    fixed.load_state_dict(ref.state_dict())
    xf = x.clone().requires_grad_()
    y = fixed(xf)
    assert torch.allclose(fixed.beta(x), torch.full((2,), DEFAULT_BETA_FLOOR))
    codes = fixed.quantize_codes(x)
    assert (codes < 15).any() and (codes > 0).any()  # a usable grid
    (y * torch.randn_like(y)).sum().backward()
    assert (xf.grad != 0).any() and fixed.s.grad.abs() > 0
    assert all(p.grad is None or bool((p.grad == 0).all()) for p in fixed.adapter.parameters())


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("channels,shape", [(8, (3, 8, 3, 3)), (4, (3, 4))])
def test_gradients_match_finite_differences_of_surrogate(channels, shape):
    torch.manual_seed(3)
    q = ASQQuantizer(3, channels).double()
    for p in q.adapter.parameters():
        p.data.normal_(0, 0.1)
    linears(q)[-1].bias.data.fill_(1.0)  # keep every sample above the floor (a smooth point)
    x = torch.rand(shape, dtype=torch.float64) * 2 + 0.05
    q.s.data = torch.tensor([0.25], dtype=torch.float64)
    assert bool((q.beta(x) > DEFAULT_BETA_FLOOR).all())
    r = torch.randn(shape, dtype=torch.float64)

    xg = x.clone().requires_grad_()
    q.zero_grad()
    (q(xg) * r).sum().backward()
    ours = [xg.grad, q.s.grad] + [p.grad for p in q.adapter.parameters()]

    names = [n for n, _ in q.adapter.named_parameters()]
    g = 1 / math.sqrt(x.numel() * q.qp)
    s0 = q.s.detach()
    with torch.no_grad():
        step0 = (s0 * q.beta(x)).view(-1, *([1] * (x.dim() - 1)))
        offset = q.quantize_codes(x).double() - torch.clamp(x / step0, 0, q.qp)

    def f(x_, s_, *params):
        pooled = x_.mean(dim=tuple(range(2, x_.dim()))) if x_.dim() > 2 else x_
        beta = functional_call(q.adapter, dict(zip(names, params, strict=True)), (pooled,)).view(-1).clamp_min(q.beta_floor)
        step = ((g * s_ + (1 - g) * s0) * beta).view(-1, *([1] * (x_.dim() - 1)))
        return step * (torch.clamp(x_ / step, 0, q.qp) + offset)

    inputs = [x.clone().requires_grad_(), s0.clone().requires_grad_()] + [p.detach().clone().requires_grad_() for p in q.adapter.parameters()]
    assert torch.autograd.gradcheck(f, tuple(inputs), eps=1e-7, atol=1e-6)
    reference = torch.autograd.grad((f(*inputs) * r).sum(), inputs)
    for mine, ref in zip(ours, reference, strict=True):
        assert torch.allclose(mine, ref, rtol=1e-9, atol=1e-11)
    assert q.s.grad.abs() > 0 and all(p.grad.abs().sum() > 0 for p in q.adapter.parameters())


# ---------------------------------------------------------------- bad input


def test_bad_input_raises():
    q = ASQQuantizer(4, 8)
    with pytest.raises(NonFiniteInputError):
        q(torch.full((2, 8, 3, 3), float("nan")))
    with pytest.raises(ConfigError):
        q(torch.rand(2, 5, 3, 3))  # wrong channel count
    with pytest.raises(ConfigError):
        q(torch.rand(8))
    with pytest.raises(UnsupportedBitsError):
        ASQQuantizer(9, 8)
    with pytest.raises(ConfigError):
        ASQQuantizer(4, 0)
    with pytest.raises(ConfigError):
        ASQQuantizer(4, 8, beta_floor=0.0)
