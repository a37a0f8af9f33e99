"""Writing report files: deterministically, as Markdown + CSV + JSON, all or nothing.

A report run stages every file in a temporary sibling folder and only then, by two renames, puts
that folder in the place of the output folder (or, for a folder that holds other files too, moves
each file in with ``os.replace``), so a run that fails part-way leaves the previous results
untouched and a successful one leaves none of them behind.  A single file is written with :func:`golden.files.write_atomic`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from golden.errors import ConfigError
from golden.files import SIGNALS, make_temporary_folder, release_temporary_folder


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


#: The file a folder replaced whole carries: a later run replaces only an empty folder or one holding it.
OUTPUT_MARKER = ".lutmac-output"


def check_output_folder(out: str | Path, replace_folder: bool = True) -> None:
    """Raise ConfigError unless ``out`` can take a staged report: a folder (or nothing yet) in a parent that takes
    the staging folder, itself writable when it exists, and, to be replaced whole (``replace_folder``), neither the
    working directory nor one holding it, and empty or written by lutmac (:data:`OUTPUT_MARKER`), so a run never
    deletes files it did not write.  Cheap: run it before the work."""
    out = Path(out)
    real = Path(os.path.realpath(out))
    here = Path(os.path.realpath(os.getcwd()))
    if replace_folder and (real == here or real in here.parents):
        raise ConfigError(f"output folder {str(out)!r} is the working directory or holds it: name a folder of its own")
    if out.is_symlink() and not out.exists():
        raise ConfigError(f"output folder {out} is a dangling symlink or a symlink loop")
    try:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"output folder {out} exists and is not a folder")
        real.parent.mkdir(parents=True, exist_ok=True)
        for folder in (real.parent, real) if real.is_dir() else (real.parent,):
            with tempfile.TemporaryFile(dir=folder):
                pass
        foreign = replace_folder and real.is_dir() and not (real / OUTPUT_MARKER).is_file() and any(real.iterdir())
    except OSError as error:
        raise ConfigError(f"output folder {out} is not writable: {error.strerror or error}") from None
    if foreign:
        raise ConfigError(f"output folder {out} holds files lutmac did not write (no {OUTPUT_MARKER}); the run replaces "
                          "the whole folder: name a new or empty folder, or remove this one")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Put the folder ``staging`` in the place of ``out_dir`` by renames; signals wait until both are done."""
    blocked = threading.current_thread() is threading.main_thread()
    if blocked:
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        if not out_dir.exists():
            os.rename(staging, out_dir)
            return
        old = make_temporary_folder(out_dir.parent, f".{out_dir.name}.old-")
        os.replace(out_dir, old)  # onto the empty folder just made
        try:
            os.rename(staging, out_dir)
        except BaseException:
            os.rename(old, out_dir)
            raise
        release_temporary_folder(old)
    except OSError as error:
        raise ConfigError(f"output folder {out_dir} could not be replaced: {error.strerror or error}") from None
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)


@contextmanager
def staged_report(out_dir: str | Path, replace_folder: bool = True) -> Iterator[ReportWriter]:
    """Stage a report in a sibling folder; on success it replaces ``out_dir`` whole by renames (``replace_folder``)
    or moves its files in one by one, on error ``out_dir`` stays as it was.

    The staging folder ``.NAME.staging-<pid>-*`` is removed on any exit, on SIGTERM/SIGINT while
    :func:`golden.files.removed_on_signal` is active, or by the next run when its process is gone.  A folder
    replaced whole carries :data:`OUTPUT_MARKER`.
    """
    check_output_folder(out_dir, replace_folder)
    out_dir = Path(os.path.realpath(out_dir)) if Path(out_dir).is_symlink() else Path(out_dir)
    staging = make_temporary_folder(out_dir.parent, f".{out_dir.name}.staging-")
    try:
        staging.chmod(0o777 & ~_umask())  # the folder it becomes has the permissions of one made by mkdir
        writer = ReportWriter(staging)
        yield writer
        if replace_folder:
            (staging / OUTPUT_MARKER).write_text("written by lutmac: the next run into this folder replaces it whole\n")
            _swap_in(staging, out_dir)
        else:
            for name in writer.files:
                target = out_dir / name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / name, target)
    finally:
        release_temporary_folder(staging)
