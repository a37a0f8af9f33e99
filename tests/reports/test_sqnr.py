"""Weight SQNR per scheme (reports.sqnr): the formula, nested level sets, and POST's resolution against POT's."""

import math

import pytest
import torch

from golden.errors import UnsupportedBitsError
from golden.models import DigitsNet
from reports import sqnr
from reports.output import ReportWriter


@pytest.fixture(scope="module")
def gaussian():
    return torch.randn(64, 64, 3, 3, generator=torch.Generator().manual_seed(0))


def test_sqnr_of_half_the_signal_is_6_dB():
    w = torch.randn(100, generator=torch.Generator().manual_seed(1))
    assert sqnr.sqnr_db(w, w / 2) == pytest.approx(20 * math.log10(2))
    assert sqnr.sqnr_db(w, w) == math.inf


@pytest.mark.parametrize("scheme", ["pot", "post"])
def test_power_levels_are_nested_so_sqnr_never_drops_with_bits(gaussian, scheme):
    # alpha starts at the 0.99 quantile whatever the bits, and b+1 bits' levels contain b bits'
    values = [sqnr.layer_sqnr(gaussian, scheme, b)["init_db"] for b in sqnr.SQNR_BITS]
    assert all(later >= earlier for earlier, later in zip(values, values[1:], strict=False))


def test_uniform_sqnr_grows_by_several_dB_per_bit(gaussian):
    values = [sqnr.layer_sqnr(gaussian, "lsq", b)["best_clip_db"] for b in sqnr.SQNR_BITS]
    assert all(later - earlier > 3 for earlier, later in zip(values, values[1:], strict=False))


def test_post_resolves_gaussian_weights_better_than_pot_from_4_bits(gaussian):
    # measured: 2 bits identical (both ternary), POT ahead at 3 bits (POST's 3 magnitudes span only
    # 1/2..1 of the clip), POST ahead from 4 bits, and POT flat from 4 bits (its rigid resolution)
    at = {(s, b): sqnr.layer_sqnr(gaussian, s, b)["init_db"] for s in ("pot", "post") for b in sqnr.SQNR_BITS}
    assert at[("post", 2)] == at[("pot", 2)]
    assert at[("pot", 3)] > at[("post", 3)]
    assert all(at[("post", b)] > at[("pot", b)] + 3 for b in (4, 5, 6))
    assert at[("pot", 6)] - at[("pot", 4)] < 0.5


def test_best_clip_is_never_worse_than_init(gaussian):
    for scheme in sqnr.SQNR_SCHEMES:
        found = sqnr.layer_sqnr(gaussian, scheme, 4)
        assert found["best_clip_db"] >= found["init_db"] - 1e-9


def test_model_table_pivot_and_files(tmp_path):
    torch.manual_seed(0)
    rows = sqnr.model_sqnr(DigitsNet(width=4), bits=(3, 4))
    assert len(rows) == 4 * 2 * len(sqnr.SQNR_SCHEMES)
    assert [r["layer"] for r in rows[:: 2 * len(sqnr.SQNR_SCHEMES)]] == ["features.0", "features.3", "features.6", "classifier"]
    table = sqnr.pivot(rows)
    assert len(table) == 8 and set(sqnr.SQNR_SCHEMES) <= set(table[0])
    writer = ReportWriter(tmp_path)
    sqnr.write_sqnr(writer, rows, "DigitsNet")
    assert {"sqnr.csv", "sqnr_init.md", "sqnr_best_clip.csv", "sqnr.png"} <= set(writer.files)
    assert (tmp_path / "sqnr.png").stat().st_size > 10_000
    assert "| mean | 4 |" in (tmp_path / "sqnr_init.md").read_text()


def test_unsupported_bits_raise():
    with pytest.raises(UnsupportedBitsError):
        sqnr.layer_sqnr(torch.ones(4, 4), "apot", 7)
