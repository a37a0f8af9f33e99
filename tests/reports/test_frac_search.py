"""`lutmac frac-search`: the F search over the demo's shift models, and the spec defaults it justifies."""

from __future__ import annotations

import contextlib
import io

import pytest

from golden import spec
from reports.app.cli import main
from reports.app.frac_search import SEARCH_RUNS, FracSearchRow, defaults_needed, frac_search, report, write


@pytest.mark.regress  # trains the seven quick models: 25 s of CPU, about 45 s on a loaded 2-core machine
def test_quick_search_minimum_is_within_the_spec_default(tmp_path):
    """The quick demo models (digits, quick epochs): the smallest F keeping every prediction is <= the default."""
    rows = frac_search(quick=True)
    assert [row.model for row in rows] == [f"{scheme}_w{bits}" for scheme, bits in SEARCH_RUNS]
    for row in rows:
        fmt = spec.WeightFormat(row.scheme, row.bits, row.levels)
        assert list(row.changed) == spec.legal_frac_bits(fmt, row.bits), row  # every legal F was exported
        assert row.spec_default == fmt.default_frac_bits
        if row.smallest is not None:
            assert row.changed[row.smallest] == 0 and row.smallest <= row.spec_default, row
    # most quick models match at some legal F (the others change a prediction even with exact products: see the report)
    assert sum(row.smallest is not None for row in rows) >= 5
    write(rows, tmp_path)
    assert "smallest stable F" in (tmp_path / "frac_search.md").read_text()


def test_search_exports_every_legal_f_of_one_model():
    """One briefly trained 3-bit pot model: every legal F (0..m = 2) is exported and counted."""
    (row,) = frac_search(runs=((spec.TrainingScheme.POT, 3),), epochs=1)
    assert (row.model, row.scheme, row.bits, row.levels) == ("pot_w3", "pot", 3, "bbit")
    assert list(row.changed) == [0, 1, 2] and all(0 <= n <= 450 for n in row.changed.values())
    assert row.smallest == min((f for f, n in row.changed.items() if n == 0), default=None)


def test_defaults_needed_is_the_joint_smallest_and_stable_f():
    rows = [FracSearchRow("a", "post", 4, "bbit", {3: 0, 4: 1, 5: 0, 6: 0}, 3, 5, 3),
            FracSearchRow("b", "post", 4, "bbit", {3: 2, 4: 0, 5: 0, 6: 0}, 4, 4, 3),
            FracSearchRow("c", "pot", 2, "bbit", {0: 1}, None, None, 0)]
    assert defaults_needed(rows) == {("post", 4, "bbit"): (5, 5), ("pot", 2, "bbit"): (None, None)}
    rows[1] = FracSearchRow("b", "post", 4, "bbit", {3: 0, 4: 0, 5: 0, 6: 0}, 3, 3, 3)
    assert defaults_needed(rows)[("post", 4, "bbit")] == (3, 5)
    text = report(rows)
    assert "| post w4 bbit | 3 | 5 | " in text and "| pot w2 bbit | none | none | 0 |" in text


def test_frac_search_cli_errors_are_one_line(tmp_path):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(["frac-search", "--from", str(tmp_path)])
    assert status == 2
    assert err.getvalue().count("\n") == 1 and "no checkpoint" in err.getvalue()
