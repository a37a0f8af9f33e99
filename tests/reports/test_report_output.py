"""Staged (all-or-nothing) report writing and the table formats."""

import json

import pytest

from reports.output import csv_text, markdown_table, staged_report


def test_staged_report_is_all_or_nothing(tmp_path):
    out = tmp_path / "out"
    with staged_report(out) as writer:
        writer.text("a.md", "first")
        writer.table("t", [{"x": 1, "y": 2.5}], "T")
    assert (out / "a.md").read_text() == "first"
    assert json.loads((out / "t.json").read_text())["rows"] == [{"x": 1, "y": 2.5}]
    with pytest.raises(RuntimeError):
        with staged_report(out) as writer:
            writer.text("a.md", "second")
            writer.text("b.md", "new")
            raise RuntimeError("failure in the middle of a run")
    assert (out / "a.md").read_text() == "first" and not (out / "b.md").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_tables():
    rows = [{"a": 1, "b": 0.123456789}, {"a": 2, "b": 3.0}]
    assert csv_text(rows) == "a,b\n1,0.123457\n2,3\n"
    assert markdown_table(rows, {"b": ".2f"}).splitlines() == ["| a | b |", "|---|---|", "| 1 | 0.12 |", "| 2 | 3.00 |"]


def test_missing_values_are_a_dash_in_markdown_and_empty_in_csv():
    rows = [{"model": "float", "integer_accuracy": None}, {"model": "post_w4", "integer_accuracy": 0.98}]
    assert markdown_table(rows).splitlines()[2] == "| float | — |"
    assert csv_text(rows) == "model,integer_accuracy\nfloat,\npost_w4,0.98\n"
