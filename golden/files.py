"""Writing files so that a reader never sees half of one: the one ``write_atomic`` of the project.

It lives in golden, the bottom layer, so that hw (generated Verilog, ``interface.json``,
``synth.json``), sim (cached Verilog) and reports (tables, the demo's synthesis cache) can all
use it.  Not in hw: ``hw.SOURCE_FINGERPRINT`` hashes every ``hw/*.py``, so a file helper there
would be part of the hardware's identity and an edit to it would invalidate every cached build.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` (str as UTF-8) to ``path`` via a temporary file in its folder and ``os.replace``.

    The folder is created if needed; on any failure the previous file (if any) is left as it was
    and the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data.encode() if isinstance(data, str) else data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
