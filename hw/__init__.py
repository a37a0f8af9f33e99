"""hw: Amaranth processing elements, MAC array and requantizer implementing golden.spec."""

import hashlib
from pathlib import Path


def source_fingerprint() -> str:
    """Hash of everything generated hardware depends on: hw/'s sources, golden's datapath and requantization specs, Amaranth's version."""
    import amaranth

    from golden import requantization, spec

    digest = hashlib.sha256(amaranth.__version__.encode())
    for path in sorted(Path(__file__).parent.glob("*.py")) + [Path(spec.__file__), Path(requantization.__file__)]:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


# Taken once, when hw is imported: a long-running process keeps the hw it imported, so hashing
# the files again after an edit would file its old results (Verilog, synthesis) under the new
# sources' key and serve them to every later run.
SOURCE_FINGERPRINT = source_fingerprint()
