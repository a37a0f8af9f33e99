"""Every PE kind of hw.pe against golden.spec.pe_product, every code pair (and every LCQ level value)."""

import numpy as np
import pytest

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
