"""Writing report files: deterministically, as Markdown + CSV + JSON, all or nothing.

A report run stages every file in a temporary sibling directory and only then moves each file
into place with ``os.replace`` (atomic on one filesystem), so a run that fails part-way leaves
the previous results untouched.  A single file is written with :func:`golden.files.write_atomic`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def _cell(value) -> str:
    if value is None:  # not applicable (e.g. the float model's integer accuracy)
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def csv_text(rows: Sequence[dict]) -> str:
    """CSV with the first row's keys as the header (every row must have the same keys)."""
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: "" if value is None else _cell(value) for key, value in row.items()} for row in rows)
    return buffer.getvalue()


def markdown_table(rows: Sequence[dict], formats: dict[str, str] | None = None) -> str:
    """A GitHub Markdown table; ``formats`` maps a column to a format spec (e.g. ``".2f"``)."""
    if not rows:
        return "(no rows)\n"
    formats = formats or {}
    columns = list(rows[0])

    def show(column: str, value) -> str:
        if column in formats and isinstance(value, (int, float)):
            return format(value, formats[column])
        return _cell(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(show(c, row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def json_text(payload) -> str:
    return json.dumps(payload, indent=2, sort_keys=False) + "\n"


class ReportWriter:
    """Collects files in a staging directory; :meth:`commit` moves them into the output folder."""

    def __init__(self, staging: Path):
        self.staging = staging
        self.files: list[str] = []

    def text(self, name: str, text: str) -> Path:
        path = self.staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.files.append(name)
        return path

    def table(self, stem: str, rows: Sequence[dict], title: str, notes: str = "", formats: dict[str, str] | None = None,
              payload: dict | None = None) -> None:
        """``stem``.md / .csv / .json for one table (``payload`` adds metadata to the JSON)."""
        preamble = f"{notes.strip()}\n\n" if notes else ""
        self.text(f"{stem}.md", f"# {title}\n\n{preamble}{markdown_table(rows, formats)}")
        self.text(f"{stem}.csv", csv_text(rows))
        self.text(f"{stem}.json", json_text({"title": title, **(payload or {}), "rows": list(rows)}))

    def figure(self, name: str, figure) -> None:
        path = self.staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=120, metadata={"Software": None})
        self.files.append(name)


@contextmanager
def staged_report(out_dir: str | Path) -> Iterator[ReportWriter]:
    """Stage a report; on success move every file into ``out_dir`` atomically, on error keep ``out_dir`` as it was."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.staging-"))
    try:
        writer = ReportWriter(staging)
        yield writer
        for name in writer.files:
            target = out_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
