"""Odd inputs into every quantizer: other float dtypes land on the float32 levels; empty or non-tensor inputs are errors."""

from __future__ import annotations

import pytest
import torch

from golden import APoTQuantizer, ASQQuantizer, LCQQuantizer, LSQQuantizer, PowerQuantizer
from golden.errors import ConfigError

DTYPES = (torch.float64, torch.float16, torch.bfloat16)


def calibrated(make, data):
    q = make()
    q.init_from(data)
    return q


QUANTIZERS = {
    "lsq": lambda: LSQQuantizer(4, signed=True),
    "lsq per channel": lambda: LSQQuantizer(4, signed=True, per_channel=True, channels=4),
    "pot": lambda: PowerQuantizer(4, base="2", per_channel=True, channels=4),
    "post": lambda: PowerQuantizer(4),
    "apot weights": lambda: APoTQuantizer(4, signed=True),
    "apot activations": lambda: APoTQuantizer(4, signed=False),
    "lcq weights": lambda: LCQQuantizer(4, signed=True, lwn=True, level_bits=8),
    "lcq activations": lambda: LCQQuantizer(4, signed=False, level_bits=8),
}


@pytest.mark.parametrize("name", QUANTIZERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_another_float_dtype_lands_on_the_float32_level(name, dtype):
    generator = torch.Generator().manual_seed(0)
    data = torch.randn(4, 64, generator=generator)
    if "activations" in name:
        data = data.abs()
    q = calibrated(QUANTIZERS[name], data)
    x = data.to(dtype)  # the values the other dtype holds ...
    reference = x.float()  # ... quantized as float32
    out = q(x)
    assert out.dtype == dtype
    if dtype == torch.float64 and name.startswith("lsq"):  # float64 LSQ stays in float64: code * s without rounding
        assert torch.equal(out, q.quantize_codes(reference).double() * q.s.detach().double().view(-1, 1))
    else:
        assert torch.equal(out, q(reference).to(dtype))
    codes = q.level_index(x) if isinstance(q, PowerQuantizer) else q.quantize_codes(x)
    expected = q.level_index(reference) if isinstance(q, PowerQuantizer) else q.quantize_codes(reference)
    assert torch.equal(codes, expected)
    # init_from too: the scale fitted to the float32 values (float64 LSQ fits in float64, then rounds)
    fitted, expected = calibrated(QUANTIZERS[name], x).state_dict(), calibrated(QUANTIZERS[name], reference).state_dict()
    same = (lambda a, b: torch.allclose(a, b, rtol=1e-6)) if dtype == torch.float64 and name.startswith("lsq") else torch.equal
    assert fitted.keys() == expected.keys() and all(same(fitted[key], expected[key]) for key in fitted)


def test_bfloat16_into_lsq_rounds_the_quotient_in_float32():
    """0.1 steps: bfloat16's x / s rounds near half-steps to the neighbour level; the float32 quotient does not."""
    q = LSQQuantizer(4)
    q.s.data = torch.tensor([0.1])
    x = torch.linspace(0, 1.6, 1000).bfloat16()
    assert torch.equal(q(x), q(x.float()).bfloat16())
    assert torch.equal(q.quantize_codes(x), q.quantize_codes(x.float()))


@pytest.mark.parametrize("make", [QUANTIZERS["lsq per channel"], QUANTIZERS["pot"], QUANTIZERS["post"],
                                  QUANTIZERS["apot weights"], QUANTIZERS["lcq weights"], lambda: LSQQuantizer(4),
                                  lambda: ASQQuantizer(4, 3)], ids=["lsq per channel", "pot", "post", "apot", "lcq",
                                                                   "lsq", "asq"])
@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0), (0, 3, 2, 2)])
def test_init_from_an_empty_tensor_is_an_error(make, shape):
    q = make()
    before = {key: value.clone() for key, value in q.state_dict().items()}
    with pytest.raises(ConfigError, match=r"init_from needs a non-empty tensor, got shape \(" + str(shape[0])):
        q.init_from(torch.empty(shape))
    assert all(torch.equal(before[key], value) for key, value in q.state_dict().items())


@pytest.mark.parametrize("name", QUANTIZERS)
def test_a_python_list_is_an_error(name):
    q = QUANTIZERS[name]()
    for call in (q, q.init_from):
        with pytest.raises(ConfigError, match="must be a torch.Tensor, got list"):
            call([0.1, 0.2, 0.3, 0.4])
