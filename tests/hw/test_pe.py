"""Every PE kind, bit for bit against golden.spec.pe_product: exhaustive for b <= 4, random at 8 bits."""

import numpy as np
import pytest
from amaranth import Value, signed
from amaranth.sim import Simulator
from hwtest import simulate_pe

from golden import spec
from golden.errors import ConfigError, UnknownSchemeError, UnsupportedBitsError
from hw.edge import LevelTable, PostPrescaler, ProductTable
from hw.host import unpack_words
from hw.kinds import KINDS, PE_KINDS, kinds_of_scheme, network_kind, pe_kind
from hw.pe import product_table_layout

SMALL_BITS = [(2, 2), (2, 4), (3, 3), (3, 4), (4, 2), (4, 3), (4, 4)]


SHIFT_KINDS = [kind for kind in PE_KINDS if KINDS[kind].has_frac_bits]


def make_pe(kind: str, *args, **kwargs):
    entry = pe_kind(kind)
    return entry, entry.pe(entry.datapath(*args, **kwargs))


def check_all_pairs(kind, pe, rng):
    """Every code pair under each of the kind's test tables (extreme, random, level sweeps); the products seen."""
    seen = []
    for w, a, weight_table, act_table in kind.pe_test_cases(pe.datapath, rng):
        got = simulate_pe(kind, pe, w, a, weight_table, act_table)
        expected = spec.pe_product(pe.datapath, w, a, weight_table, act_table)
        np.testing.assert_array_equal(got, expected)
        seen.append(expected)
    return np.concatenate(seen)


@pytest.mark.parametrize("kind", PE_KINDS)
@pytest.mark.parametrize("weight_bits,act_bits", SMALL_BITS)
def test_pe_exhaustive_small_bits(kind, weight_bits, act_bits):
    rng = np.random.default_rng(weight_bits * 10 + act_bits)
    entry, pe = make_pe(kind, weight_bits, act_bits)
    expected = check_all_pairs(entry, pe, rng)
    # the product port is exactly as wide as spec says, and the extremes are reached (lcq: by the extreme tables)
    assert pe.product.shape().width == pe.datapath.product_bits()
    assert (expected.min(), expected.max()) == pe.datapath.product_range()


@pytest.mark.parametrize("weight_bits", range(2, 8))
@pytest.mark.parametrize("act_level_bits", [1, 6, 12])
def test_apot_pe_every_weight_width_and_value_width(weight_bits, act_level_bits):
    """2..7-bit apot codes (ternary up to three term fields) on activation values of 1, 6 and 12 bits."""
    entry, pe = make_pe("apot", weight_bits, 3, act_level_bits=act_level_bits)
    expected = check_all_pairs(entry, pe, np.random.default_rng(weight_bits))
    assert pe.product.shape().width == pe.datapath.product_bits()
    assert (expected.min(), expected.max()) == pe.datapath.product_range()
    assert pe.act.shape().width == act_level_bits and pe.weight.shape().width == weight_bits


def edge_frac_bits(scheme: str, weight_bits: int, levels: str, act_bits: int) -> list[int]:
    """The ends of the legal F range (pot: F = 0 and F = m; post: G = 0 and the largest G), the next ones and 8."""
    legal = spec.legal_frac_bits(spec.WeightFormat(scheme, weight_bits, levels), act_bits)
    return sorted({*legal[:2], *legal[-2:], *(f for f in (8,) if f in legal)})


@pytest.mark.parametrize("kind", SHIFT_KINDS)
@pytest.mark.parametrize("weight_bits", [2, 3, 4])
@pytest.mark.parametrize("levels", ["bbit", "paper"])
def test_shift_pe_fraction_bits_and_level_conventions(kind, weight_bits, levels):
    """Every code pair at the edges of the legal F range; the port is spec's width and the extremes are reached."""
    scheme = pe_kind(kind).scheme
    for frac_bits in edge_frac_bits(scheme, weight_bits, levels, 3):
        entry, pe = make_pe(kind, weight_bits, 3, frac_bits=frac_bits, levels=levels)
        expected = check_all_pairs(entry, pe, np.random.default_rng(frac_bits))
        assert pe.product.shape().width == pe.datapath.product_bits()
        assert (expected.min(), expected.max()) == pe.datapath.product_range()


@pytest.mark.parametrize("kind", SHIFT_KINDS)
def test_shift_pe_truncating_form_at_7_bits(kind):
    """7-bit post (H > MAX_FRAC_BITS) right-shifts; pot at F = 0 truncates every exponent above 0."""
    rng = np.random.default_rng(7)
    for frac_bits in (0, 9, spec.MAX_FRAC_BITS):
        entry, pe = make_pe(kind, 7, 3, frac_bits=frac_bits)
        w = np.concatenate([rng.choice(entry.weight_code_pool(pe.datapath), 600), [0, 1, 63, 64]])
        a = np.concatenate([rng.integers(0, 8, 600), [7, 7, 1, 7]])
        np.testing.assert_array_equal(simulate_pe(entry, pe, w, a), spec.pe_product(pe.datapath, w, a))


@pytest.mark.parametrize("kind", PE_KINDS)
def test_pe_random_8_bits(kind):
    rng = np.random.default_rng(8)
    bits = 8 if kind_supports(kind, 8) else 4  # a shared product table stops at 2^8 entries
    entry, pe = make_pe(kind, bits, bits)
    weight_codes = entry.weight_code_pool(pe.datapath)
    w = rng.choice(weight_codes, 1500)
    a = rng.integers(0, pe.datapath.num_act_codes, 1500)
    # include the corners
    w = np.concatenate([w, weight_codes[[0, 0, -1, -1]]])
    a = np.concatenate([a, [0, pe.datapath.num_act_codes - 1] * 2])
    weight_table, act_table = pe.datapath.extreme_tables()
    got = simulate_pe(entry, pe, w, a, weight_table, act_table)
    np.testing.assert_array_equal(got, spec.pe_product(pe.datapath, w, a, weight_table, act_table))


def kind_supports(kind: str, bits: int) -> bool:
    try:
        pe_kind(kind).datapath(bits, bits)
    except UnsupportedBitsError:
        return False
    return True


@pytest.mark.regress
@pytest.mark.parametrize("kind", [kind for kind in PE_KINDS if kind_supports(kind, 8)])
def test_pe_exhaustive_8_bits(kind):
    check_all_pairs(*make_pe(kind, 8, 8), np.random.default_rng(88))


def test_post_prescaler_is_the_spec_lut():
    datapath = spec.DatapathConfig.make("post", 4, 6, frac_bits=5)
    unit = PostPrescaler(datapath)
    seen = []

    async def bench(ctx):
        for code in range(datapath.num_act_codes):
            ctx.set(unit.code, code)
            seen.append((ctx.get(unit.act.value), ctx.get(unit.act.scaled)))

    sim = Simulator(unit)
    sim.add_testbench(bench)
    sim.run()
    values, scaled = np.array(seen).T
    np.testing.assert_array_equal(values, np.arange(datapath.num_act_codes))
    np.testing.assert_array_equal(scaled, datapath.post_lut)
    # the ROM holds L = F - (m - 1) // 2 = 3 fraction bits, not F = 5
    assert Value.cast(unit.act.scaled).shape().width == datapath.act_bits + datapath.lut_frac_bits == 9


def test_level_table_write_then_lookup():
    rng = np.random.default_rng(3)
    table = np.sort(rng.integers(-127, 128, 16))
    unit = LevelTable(16, signed(8), lookups=3)
    got = []

    async def bench(ctx):
        ctx.set(unit.write.en, 1)
        for addr, value in enumerate(table.tolist()):
            ctx.set(unit.write.addr, addr)
            ctx.set(unit.write.data, value)
            await ctx.tick()
        ctx.set(unit.write.en, 0)
        for codes in rng.integers(0, 16, (20, 3)).tolist():
            for port, code in enumerate(codes):
                ctx.set(unit.codes[port], code)
            got.append((codes, [ctx.get(unit.values[port]) for port in range(3)]))

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for codes, values in got:
        assert values == table[codes].tolist()


def test_product_table_registers_hold_what_was_written():
    datapath = spec.DatapathConfig.make("lcq", 2, 3)
    rng = np.random.default_rng(5)
    weight_table, act_table = datapath.random_tables(rng)
    products = spec.product_table(datapath, weight_table, act_table).ravel()
    unit = ProductTable(datapath)
    layout = product_table_layout(datapath)
    seen = []

    async def bench(ctx):
        ctx.set(unit.write.en, 1)
        for addr in rng.permutation(products.size).tolist():
            ctx.set(unit.write.addr, addr)
            ctx.set(unit.write.data, int(products[addr]))
            await ctx.tick()
        seen.append(ctx.get(Value.cast(unit.table)))

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    np.testing.assert_array_equal(unpack_words(layout, seen)[0], products)


def test_registry_names_and_scheme_lookups():
    assert all(KINDS[name].name == name for name in PE_KINDS)
    assert all(kind.pe_class.__name__.endswith("PE") for kind in KINDS.values())
    for scheme in spec.WEIGHT_SCHEMES:  # exactly one kind per scheme runs networks, and it comes first
        kinds = kinds_of_scheme(scheme)
        assert [kind.runs_networks for kind in kinds].count(True) == 1 and network_kind(scheme) is kinds[0]
    with pytest.raises(UnknownSchemeError, match="PE kind 'fp8' does not exist"):
        pe_kind("fp8")


@pytest.mark.parametrize(
    "args,error",
    [
        (("int", 9, 4), UnsupportedBitsError),
        (("int", 4, 1), UnsupportedBitsError),
        (("pot", 4, 4, 17), UnsupportedBitsError),
        (("int", 4, 4, 3), ConfigError),
        (("lcq", 4, 4, None, "paper"), ConfigError),
        (("lcq_product", 4, 5), UnsupportedBitsError),
        (("post", 4, 4), UnknownSchemeError),
        (("fp8", 4, 4), UnknownSchemeError),
    ],
)
def test_unsupported_pe_parameters_raise(args, error):
    with pytest.raises(error):
        make_pe(*args)


def test_product_table_limit_is_named():
    with pytest.raises(UnsupportedBitsError, match="shared product table needs 2\\^12 entries"):
        pe_kind("lcq_product").datapath(4, 8)
