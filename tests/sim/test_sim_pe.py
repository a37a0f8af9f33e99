"""Every PE kind of hw.pe against golden.spec.pe_product, every code pair (and every LCQ level value)."""

import numpy as np
import pytest

from golden import spec
from golden.errors import UnsupportedBitsError
from hw.kinds import KINDS, PE_KINDS, pe_kind
from sim.pe_bank import bank_design, check_case, expected_products, pe_cases
from sim.program import Captures
from sim.regression import check_pes

TABLE_KINDS = tuple(kind for kind in PE_KINDS if KINDS[kind].edges.shares_table)  # a wide table port: a bank of its own
BANKED_KINDS = tuple(kind for kind in PE_KINDS if kind not in TABLE_KINDS)


def _kinds_for(bits: int, kinds: tuple[str, ...]) -> tuple[str, ...]:
    usable = []
    for kind in kinds:
        try:
            pe_kind(kind).datapath(bits, bits)
        except UnsupportedBitsError:
            continue
        usable.append(kind)
    return tuple(usable)


def _check(kinds, bits, simulator, seed, waves):
    result = check_pes(kinds, bits, simulator, seed, waves=waves)
    checked = result.report.products_checked
    print(f"PEs w{bits}a{bits} on {simulator}: {checked}")
    assert not result.report.failures
    for kind in kinds:
        assert checked[kind] >= (1 << (pe_kind(kind).datapath(bits, bits).weight.code_bits + bits))


@pytest.mark.parametrize("kinds", [BANKED_KINDS, TABLE_KINDS], ids=["banked", "lcq_product"])
def test_pes_match_golden(kinds, simulator, sim_seed, waves):
    _check(kinds, 4, simulator, sim_seed, waves)


@pytest.mark.regress
@pytest.mark.parametrize("bits", [2, 3, 8])
@pytest.mark.parametrize("kinds", [BANKED_KINDS, TABLE_KINDS], ids=["banked", "lcq_product"])
def test_pe_matrix_matches_golden(kinds, bits, simulator, sim_seed, waves):
    usable = _kinds_for(bits, kinds)
    if not usable:
        pytest.skip(f"no kind of {kinds} supports {bits} bits")
    _check(usable, bits, simulator, sim_seed, waves)


def _legal(bits: int) -> dict[int, tuple[str, ...]]:
    """``{F: the shift kinds whose bits-bit datapath accepts F}`` over every F some kind accepts."""
    shift_kinds = [kind for kind in PE_KINDS if KINDS[kind].has_frac_bits]
    legal = {kind: spec.legal_frac_bits(pe_kind(kind).datapath(bits, bits).weight, bits) for kind in shift_kinds}
    return {frac: tuple(kind for kind in shift_kinds if frac in legal[kind]) for frac in sorted(set().union(*legal.values()))}


@pytest.mark.parametrize("frac_bits", sorted(_legal(4)))
def test_shift_pes_at_every_legal_fraction_width(frac_bits):
    """pot/post at 4 bits at every legal F, not only the default the other RTL runs use (Icarus, every code pair)."""
    kinds = _legal(4)[frac_bits]
    result = check_pes(kinds, 4, "icarus", seed=frac_bits, frac_bits=frac_bits)
    assert not result.report.failures
    assert all(result.report.products_checked[kind] >= 1 << (4 + 4) for kind in kinds)


@pytest.mark.regress
@pytest.mark.parametrize("bits", [2, 3])
def test_shift_pes_at_every_legal_fraction_width_both_simulators(bits, simulator):
    for frac_bits, kinds in _legal(bits).items():
        assert not check_pes(kinds, bits, simulator, seed=frac_bits, frac_bits=frac_bits).report.failures


def test_lcq_cases_use_every_level_value():
    cases = pe_cases("lcq", 3, 3, np.random.default_rng(0))
    lo, hi = cases[0].datapath.weight.level_range
    weight_levels = set(np.concatenate([c.weight_table[c.weight_codes] for c in cases]).tolist())
    act_levels = set(np.concatenate([c.act_table[c.act_codes] for c in cases]).tolist())
    assert weight_levels == set(range(lo, hi + 1))
    assert act_levels == set(range(cases[0].datapath.act_value_max + 1))


def test_a_wrong_product_is_reported_with_its_codes():
    case = pe_cases("pot", 3, 3, np.random.default_rng(0))[0]
    _, layout = bank_design(("pot",), 3, 3, len(case))
    products = expected_products(case).copy()
    products[5] += 1
    bits = layout.offsets(layout.outputs)["pot_product"][1]
    words = (products & ((1 << bits) - 1)).astype(np.uint32)[:, None]
    failures = check_case(case, Captures(layout, words))
    assert failures == [f"pot: weight code {case.weight_codes[5]}, act code {case.act_codes[5]}: "
                        f"expected {products[5] - 1}, got {products[5]}"]
