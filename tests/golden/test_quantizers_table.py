"""The shared machinery: the float-bits bucketize table, symmetric ties, block iteration, input checks."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from golden.errors import ConfigError, NonFiniteInputError
from golden.quantizers._common import check_input, row_blocks
from golden.quantizers._table import BucketLUT, bucket_index, scaled_thresholds, table_forward

INF = torch.tensor(math.inf)


def probes_around(thresholds: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random values of every magnitude, the thresholds themselves and their float neighbours."""
    spread = torch.randn(200_000, generator=gen) * torch.exp2(torch.randint(-40, 20, (200_000,), generator=gen).float())
    special = torch.tensor([0.0, -0.0, 1e-45, -1e-45, 3.4e38, -3.4e38, 1.0, -1.0])
    return torch.cat([spread, special, thresholds, torch.nextafter(thresholds, INF), torch.nextafter(thresholds, -INF)])


THRESHOLD_SETS = {
    "post 4-bit": torch.tensor([-0.8536, -0.6036, -0.4268, -0.3018, -0.2134, -0.1509, -0.0442, 0.0442, 0.1509, 0.2134, 0.3018, 0.4268, 0.6036, 0.8536]),
    "pot 8-bit tiny": torch.tensor([2.0**-k * 0.75 for k in range(126, 0, -1)]),
    "unsigned uniform": (torch.arange(1, 16) - 0.5) / 15,
    "wide": torch.tensor([-1e30, -5.0, -1e-30, 1e-30, 7.0, 1e30]),
    "single": torch.tensor([0.3]),
}


@pytest.mark.parametrize("name", THRESHOLD_SETS)
def test_lut_equals_torch_bucketize(name):
    thresholds = THRESHOLD_SETS[name].float()
    lut = BucketLUT.build(thresholds)
    assert lut is not None
    x = probes_around(thresholds, torch.Generator().manual_seed(0))
    assert torch.equal(lut.bucketize(x), torch.bucketize(x, thresholds, right=True, out_int32=True))


def test_lut_refuses_what_it_cannot_do_exactly_and_table_forward_falls_back():
    crowded = torch.tensor([1.0, 1.001, 2.0])  # two thresholds in one 2^-7-wide cell
    with_zero = torch.tensor([-1.0, 0.0, 1.0])
    assert BucketLUT.build(crowded) is None and BucketLUT.build(with_zero) is None
    assert BucketLUT.build(crowded.double()) is None  # float32 only
    for thresholds in (crowded, with_zero):
        x = probes_around(thresholds, torch.Generator().manual_seed(1))[: 1 << 19].contiguous()
        table = torch.arange(thresholds.numel() + 1, dtype=torch.float32)
        out = torch.empty_like(x)
        table_forward(x.view(1, -1), thresholds.view(1, -1), table.view(1, -1), out.view(1, -1))
        assert torch.equal(out, table[torch.bucketize(x, thresholds, right=True)])


def test_large_inputs_take_the_lut_path_and_agree():
    thresholds = THRESHOLD_SETS["post 4-bit"].float().view(1, -1)
    x = torch.randn(1 << 20)
    index = bucket_index(x.view(1, -1), thresholds)
    assert torch.equal(index, torch.bucketize(x, thresholds[0], right=True).view(1, -1))


def test_per_row_thresholds():
    gen = torch.Generator().manual_seed(2)
    thresholds = torch.sort(torch.randn(6, 9, generator=gen), dim=1).values
    x = torch.randn(6, 1000, generator=gen)
    index = bucket_index(x, thresholds)
    for r in range(6):
        assert torch.equal(index[r], torch.bucketize(x[r], thresholds[r], right=True))


def test_signed_thresholds_make_ties_symmetric():
    normalized = torch.tensor([-0.75, -0.25, 0.25, 0.75], dtype=torch.float64)
    scale = torch.tensor([[0.3]])
    thr = scaled_thresholds(scale, normalized, signed=True)
    positive = scale * normalized[2:].float()
    assert torch.equal(thr[0, 2:], positive[0])
    assert torch.equal(thr[0, :2], torch.nextafter(-positive[0].flip(0), INF))
    ties = torch.cat([positive[0], -positive[0]])
    index = bucket_index(ties.view(1, -1), thr)[0] - 2  # signed level index
    assert index.tolist() == [1, 2, -1, -2]  # on a threshold: the larger magnitude, both signs
    shifted = scaled_thresholds(scale, normalized, signed=True, shift=torch.tensor(5.0))
    assert torch.equal(shifted[0, 2:], (scale * normalized[2:].float() + 5.0)[0])


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 40), cols=st.integers(1, 3000), chunk=st.integers(1, 700))
def test_row_blocks_cover_every_element_once(rows, cols, chunk):
    seen = torch.zeros(rows, cols, dtype=torch.int32)
    for rs, cs in row_blocks(rows, cols, chunk):
        seen[rs, cs] += 1
        block = seen[rs, cs]
        assert block.is_contiguous()
    assert bool((seen == 1).all())


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 500), position=st.integers(0, 499), bad=st.sampled_from([math.nan, math.inf, -math.inf]))
def test_non_finite_detected_anywhere(n, position, bad):
    x = torch.randn(n)
    check_input(x)
    x[position % n] = bad
    with pytest.raises(NonFiniteInputError):
        check_input(x)


def test_check_input_type_errors():
    check_input(torch.empty(0))
    with pytest.raises(ConfigError):
        check_input(torch.ones(3, dtype=torch.int64))
    with pytest.raises(ConfigError):
        check_input([1.0, 2.0])
