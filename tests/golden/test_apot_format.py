"""The apot weight format: code words from the quantizer's level set, the shift-add product, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from golden import apot_format, bounds, spec
from golden.errors import CodeRangeError, ConfigError, UnsupportedBitsError
from golden.export import ExportReport
from golden.quantizer_export import input_side, weight_side
from golden.quantizers import APoTQuantizer

WEIGHT_BITS = range(apot_format.MIN_WEIGHT_BITS, apot_format.MAX_WEIGHT_BITS + 1)
ACT_BITS = range(apot_format.MIN_ACT_BITS, apot_format.MAX_ACT_BITS + 1)


@pytest.mark.parametrize("bits", WEIGHT_BITS)
def test_fields_fill_a_true_b_bit_code_and_each_level_has_one_code(bits):
    fmt = spec.WeightFormat("apot", bits)
    terms = fmt.apot
    assert sum(terms.field_widths) == bits - 1 and fmt.code_bits == bits and fmt.num_codes == 1 << bits
    assert [(1 << w) - 1 for w in terms.field_widths] == [len(s) for s in terms.sets]
    # magnitude codes are a bijection onto the 2^B integer levels, which fill 0..m
    assert sorted(terms.magnitude_table.tolist()) == terms.levels.tolist() and len(set(terms.levels.tolist())) == 1 << (bits - 1)
    assert terms.levels[0] == 0 and terms.levels[-1] == terms.max_magnitude
    values = np.concatenate([-terms.levels[:0:-1], terms.levels])
    codes = terms.pack(values)
    np.testing.assert_array_equal(terms.value(codes), values)
    assert int(codes[values.size // 2]) == 0  # zero is +0
    legal = fmt.legal_codes()
    np.testing.assert_array_equal(terms.pack(terms.value(legal)), np.where(legal == 1 << (bits - 1), 0, legal))
    assert terms.value(np.array([1 << (bits - 1)]))[0] == 0  # -0 is legal and means 0
    np.testing.assert_array_equal(fmt.legal_codes(), np.arange(1 << bits))


@pytest.mark.parametrize("bits", WEIGHT_BITS)
def test_integer_levels_are_the_quantizer_levels_exactly(bits):
    """``value / m`` is the fake-quant normalized level bit for bit; the weights' terms are the quantizer's."""
    terms = apot_format.weight_terms(bits)
    levels = APoTQuantizer(bits, signed=True).levels().numpy()
    assert np.array_equal(np.concatenate([-terms.levels[:0:-1], terms.levels]) / terms.max_magnitude, levels)
    # each field is one power of two: a code's magnitude is the sum of its selected terms
    for code in range(1 << (bits - 1)):
        fields = [int(f) for f in terms.fields(np.array(code))]
        expected = sum(1 << shifts[f - 1] for f, shifts in zip(fields, terms.field_shifts, strict=True) if f)
        assert terms.magnitude_table[code] == expected


@pytest.mark.parametrize("bits", ACT_BITS)
def test_activation_levels_are_the_quantizer_levels_exactly(bits):
    table = apot_format.act_levels(bits)
    assert np.array_equal(table / table[-1], APoTQuantizer(bits, signed=False).levels().numpy())
    # the grid m is the smallest integer putting every level on integers (the smallest level step is 1)
    assert np.gcd.reduce(table) == 1


@pytest.mark.parametrize("bits", WEIGHT_BITS)
@pytest.mark.parametrize("act_format,act_level_bits", [("uniform", 8), ("table", 1), ("table", 6), ("table", 12)])
def test_pe_product_is_the_exact_shift_add(bits, act_format, act_level_bits):
    cfg = spec.DatapathConfig.make("apot", bits, 4, act_format=act_format, act_level_bits=act_level_bits)
    values = np.arange(cfg.act_value_max + 1)
    codes = cfg.weight.legal_codes()
    expected = cfg.weight.apot.value(codes)[:, None] * values[None, :]
    act_table = None
    if act_format == "table":  # walk every table value through tables of 2^b_a entries
        for start in range(1, values.size, cfg.num_act_codes - 1):
            act_table = np.concatenate([[0], np.resize(values[start:start + cfg.num_act_codes - 1], cfg.num_act_codes - 1)])
            act_table = np.sort(act_table)
            got = spec.product_table(cfg, act_table=act_table)
            np.testing.assert_array_equal(got, cfg.weight.apot.value(codes)[:, None] * act_table[None, :])
    else:
        np.testing.assert_array_equal(spec.product_table(cfg)[:, values], expected)
    m, a_max = cfg.weight.apot.max_magnitude, cfg.act_value_max
    assert cfg.product_range() == (-m * a_max, m * a_max)
    assert bounds.product_error_bound(cfg) == 0.0


def test_apot_format_errors():
    with pytest.raises(UnsupportedBitsError, match="apot weight bits=8"):
        spec.WeightFormat("apot", 8)
    with pytest.raises(ConfigError, match="frac_bits must be 0"):
        spec.DatapathConfig.make("apot", 4, 4, frac_bits=2)
    with pytest.raises(CodeRangeError, match="5 is not an integer APoT magnitude"):
        apot_format.weight_terms(4).pack(np.array([3, -5]))
    with pytest.raises(CodeRangeError, match=r"weight codes must lie in \[0, 15\]"):
        spec.WeightFormat("apot", 4).check_codes(np.array([16]))
    with pytest.raises(UnsupportedBitsError, match="APoT activations support 2..6 bits"):
        apot_format.act_levels(7)
    assert spec.DatapathConfig.make("apot", 4, 4).act_format == "table"


@pytest.mark.parametrize("bits", WEIGHT_BITS)
def test_exported_weight_codes_times_scale_are_the_fake_quant_weights(bits):
    """The apot codes the export writes, as integers times ``weight_scale``, are the fake-quant output."""
    torch.manual_seed(bits)
    weight = torch.randn(6, 5, 3, 3, dtype=torch.float64) * 0.2 + 0.01
    quantizer = APoTQuantizer(bits, signed=True).double()
    quantizer.init_from(weight)
    side = weight_side(quantizer, weight, "w", ExportReport(), spec.DEFAULT_LEVEL_BITS)
    assert side.scheme == "apot" and side.bits == bits
    fmt = spec.WeightFormat("apot", bits)
    values = fmt.apot.value(fmt.check_codes(side.codes))
    fake = quantizer(weight).detach().numpy()
    # the normalized level is exact; the scale multiplies in a different order than the quantizer
    np.testing.assert_array_equal(values / fmt.apot.max_magnitude, fake / float(quantizer.output_scale(weight)))
    np.testing.assert_allclose(values * side.scale[:, None, None, None], fake, rtol=1e-14, atol=0)


@pytest.mark.parametrize("bits", ACT_BITS)
def test_exported_activation_table_is_the_apot_level_grid(bits):
    quantizer = APoTQuantizer(bits, signed=False)
    side = input_side(quantizer, "x", ExportReport(), spec.DEFAULT_LEVEL_BITS)
    np.testing.assert_array_equal(side.act_table, apot_format.act_levels(bits))
    assert side.act_format == "table" and side.act_level_bits == int(side.act_table[-1]).bit_length()
    np.testing.assert_allclose(side.act_table * side.stage.step,
                               float(quantizer.alpha.detach()) * quantizer.levels().numpy(), rtol=1e-15)
