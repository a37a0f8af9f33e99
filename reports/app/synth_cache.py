"""Array cores synthesized on demand for the demo's energy figures, cached in the source tree's build folder.

The demo prices each model on the PE kinds that run it; the 4x4 array cores it needs and
``build/synth/synth.json`` lacks are synthesized here (Yosys via :mod:`hw.synth`, onto the OSU 0.18 um cells and
timed by OpenSTA like ``make synth``'s cores) on the demo's synthesis thread, and kept only while they are stamped
with the hw sources imported now (a cached core without standard-cell figures, from before, is synthesized again).

The cache is ``CACHE_PATH``, ``build/synth/demo/synth.json`` of the source tree lutmac runs from (where
``make synth`` writes and the simulation builds of :func:`sim.toolchain.build_root` go; ``make clean``
removes it), whatever the working directory: a run from another folder neither leaves a ``build/``
there nor synthesizes the same cores again.  Yosys works in ``.work-<pid>-*`` beside it, removed after
each core, on SIGTERM/SIGINT, or by the next run if its process died.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import hw
from golden.errors import ConfigError, LutmacError
from golden.files import temporary_folder, write_atomic
from hw.synth_record import SynthReport, UnitType
from sim.toolchain import REPO_ROOT

from ..energy import Synthesis

SYNTH_ARRAY = 4  # array cores are synthesized at 4x4; energies are per PE relative to the int 8-bit anchor
CACHE_PATH = REPO_ROOT / "build" / "synth" / "demo" / "synth.json"
_WARNED_STALE: set[Path] = set()  # a stale base file is reported once per process, not per cache object


class SynthesisCache:
    """Array cores synthesized on demand (4x4, Yosys via ``hw.synth``) next to ``make synth``'s results.

    Units come from ``base`` (``build/synth/synth.json`` when ``make synth`` ran) and from the
    cache file ``path`` (default :data:`CACHE_PATH`), which gains every unit synthesized here.
    """

    def __init__(self, base: Path, path: Path = CACHE_PATH):
        self.base = Path(base)
        self.path = Path(path)
        self.lock = threading.Lock()
        self.seconds = 0.0

    def _cached(self) -> Synthesis | None:
        """The units synthesized here with standard-cell figures, unless missing, unreadable or made from other hw sources."""
        try:
            report = SynthReport.read(self.path)
        except (OSError, LutmacError):
            return None
        if not report.from_these_sources:
            return None
        return Synthesis(report.yosys_version, tuple(unit for unit in report.units if unit.area_um2 is not None))

    def _loaded(self) -> list[Synthesis]:
        """``make synth``'s results (a broken file raises; a stale one is passed over) and the units cached here."""
        loaded = []
        if self.base.is_file():
            report = SynthReport.read(self.base)
            if report.from_these_sources is False:
                if self.base not in _WARNED_STALE:
                    print(f"lutmac demo: {self.base} was synthesized from other hw sources: the array cores this run "
                          "needs are synthesized now (`make synth` refreshes it)", file=sys.stderr)
                    _WARNED_STALE.add(self.base)
            else:
                loaded.append(Synthesis(report.yosys_version, report.units))
        cached = self._cached()
        return loaded + ([cached] if cached is not None else [])

    def synthesis(self) -> Synthesis:
        loaded = self._loaded()
        if not loaded:
            raise ConfigError(f"no synthesis results in {self.base} or {self.path}")
        return Synthesis(loaded[0].yosys_version, tuple(unit for s in loaded for unit in s.units))

    def missing(self, keys: set) -> list[tuple[str, int, int, int]]:
        have = {unit.key for synthesis in self._loaded() for unit in synthesis.arrays}
        return sorted(set(keys) - have)

    def ensure(self, keys: set) -> None:
        """Synthesize the array cores of ``keys`` that neither file has (one at a time, cached as they finish)."""
        from hw.config import ArrayConfig
        from hw.synth import ARRAY_REDUCTION, STDCELL, SynthTarget, synthesize, yosys_version

        with self.lock:
            for kind, w, a, f in self.missing(keys):
                cfg = ArrayConfig(kind, SYNTH_ARRAY, SYNTH_ARRAY, w, a, frac_bits=f, max_reduction=ARRAY_REDUCTION)
                name = f"array_{kind}_w{w}a{a}f{f}_{SYNTH_ARRAY}x{SYNTH_ARRAY}"
                start = time.perf_counter()
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with temporary_folder(self.path.parent, ".work-") as work:
                    # standard cells as `make synth`'s cores: priced by logic area and clocked by STA like them, not by
                    # transistor counts at a default clock
                    record = synthesize(SynthTarget(name, UnitType.ARRAY, cfg, STDCELL), Path(work))
                self.seconds += time.perf_counter() - start
                cached = self._cached()
                kept = [unit for unit in (cached.units if cached is not None else ()) if unit.name != name]
                write_atomic(self.path, SynthReport(yosys_version(), (*kept, record), hw.SOURCE_FINGERPRINT).text())
