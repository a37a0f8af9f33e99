"""Writing files so that a reader never sees half of one (the one ``write_atomic`` of the project), and the
temporary folders lutmac stages work in, removed when done, on SIGTERM/SIGINT, or by the next run when stale.

It lives in golden, the bottom layer, so that hw (generated Verilog, ``interface.json``,
``synth.json``), sim (cached Verilog) and reports (tables, the demo's synthesis cache) can all
use it.  Not in hw: ``hw.SOURCE_FINGERPRINT`` hashes every ``hw/*.py``, so a file helper there
would be part of the hardware's identity and an edit to it would invalidate every cached build.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: torch's optimizers import ``torch._dynamo``, whose import creates the compile cache folder (by default
#: ``/tmp/torchinductor_<user>``) though lutmac compiles nothing: lutmac keeps it in the source tree's build folder
TORCH_CACHE = Path(__file__).resolve().parent.parent / "build" / "torch"


def keep_torch_cache_out_of_tmp() -> None:
    """Point torch's compile cache at :data:`TORCH_CACHE` unless the user chose one (``TORCHINDUCTOR_CACHE_DIR``);
    child processes (Dask workers) inherit the setting."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(TORCH_CACHE))


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


# ----------------------------------------------------------------------------------------------- temporary folders
#
# A temporary folder of lutmac is named ``PREFIX<pid>-<random>``: a later run removes those whose process is gone
# (:func:`remove_stale`), and while :func:`removed_on_signal` is active, SIGTERM or SIGINT stops the process'
# children and removes every live one before the process exits.

_LIVE: set[Path] = set()
_LIVE_LOCK = threading.Lock()
SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(parent: str | Path, prefix: str) -> list[Path]:
    """Remove the folders ``PREFIX<pid>-*`` in ``parent`` whose process no longer runs; returns those removed."""
    parent = Path(parent)
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        pid, dash, _ = entry.name[len(prefix):].partition("-")
        if (entry.name.startswith(prefix) and dash and pid.isdigit() and int(pid) != os.getpid()
                and not _alive(int(pid)) and entry.is_dir() and not entry.is_symlink()):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def make_temporary_folder(parent: str | Path | None, prefix: str) -> Path:
    """A new folder ``PREFIX<pid>-<random>`` in ``parent`` (default: the system's temporary folder), after removing
    the stale ones of the same prefix; it is removed on a signal until :func:`release_temporary_folder`."""
    parent = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    remove_stale(parent, prefix)
    path = Path(tempfile.mkdtemp(dir=parent, prefix=f"{prefix}{os.getpid()}-"))
    with _LIVE_LOCK:
        _LIVE.add(path)
    return path


def release_temporary_folder(path: Path, remove: bool = True) -> None:
    """Forget ``path`` (it was renamed into place, or is removed now when ``remove``)."""
    with _LIVE_LOCK:
        _LIVE.discard(path)
    if remove:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def temporary_folder(parent: str | Path | None = None, prefix: str = "lutmac-") -> Iterator[Path]:
    """:func:`make_temporary_folder` for the ``with`` block, removed after it whatever happens."""
    path = make_temporary_folder(parent, prefix)
    try:
        yield path
    finally:
        release_temporary_folder(path)


CHILD_GRACE_SECONDS = 3.0  # a stopped run's child processes get this long after SIGTERM before SIGKILL


def _stop_children() -> int:
    """SIGTERM every descendant process (Yosys, Verilator, simulators, Dask workers), SIGKILL those still running
    after :data:`CHILD_GRACE_SECONDS`; so none writes into a folder after it is removed or runs on as an orphan."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass
    _, running = psutil.wait_procs(children, timeout=CHILD_GRACE_SECONDS)
    for child in running:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(running, timeout=CHILD_GRACE_SECONDS)
    return len(children)


def _remove_and_exit(signum, frame) -> None:
    stopped = _stop_children()
    with _LIVE_LOCK:
        live = sorted(_LIVE)
    for path in live:
        shutil.rmtree(path, ignore_errors=True)
    sys.stderr.write(f"lutmac: stopped by {signal.Signals(signum).name}; stopped {stopped} child process(es), "
                     f"removed {len(live)} temporary folder(s)\n")
    sys.stderr.flush()
    os._exit(128 + signum)  # at once: worker threads (RTL, Yosys) are not waited for


@contextmanager
def removed_on_signal() -> Iterator[None]:
    """While active (on the main thread), SIGTERM and SIGINT stop the process' children, remove every live temporary
    folder, then exit 128+signal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _remove_and_exit) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
