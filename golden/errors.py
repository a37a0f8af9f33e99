"""Errors lutmac raises for bad input.

Every check in the project raises one of these (all are ``ValueError`` subclasses, so callers
that only know ``ValueError`` still catch them) with a message that names the offending value.
"""


class LutmacError(ValueError):
    """Base class of every input error lutmac raises."""


class UnsupportedBitsError(LutmacError):
    """A bit width outside what a scheme or a hardware unit supports."""


class UnknownSchemeError(LutmacError):
    """A quantization scheme, PE kind or level convention name that does not exist."""


class LevelTableError(LutmacError):
    """A level table or threshold bank of the wrong length, order or range."""


class AccumulatorOverflowError(LutmacError):
    """An accumulator too narrow for the reduction length it is asked to sum."""


class CodeRangeError(LutmacError):
    """An integer code or parameter outside the range its format allows."""


class NonFiniteInputError(LutmacError):
    """A NaN or infinity where a finite tensor is required."""


class CheckpointMismatchError(LutmacError):
    """A checkpoint or exported layer that does not match the model it is loaded into."""


class ConfigError(LutmacError):
    """A malformed configuration: unknown key, wrong type, impossible combination."""


class ToolMissingError(LutmacError):
    """An external tool or its data (OpenSTA, nextpnr, a Liberty library) that is not installed."""


class DatasetError(LutmacError):
    """A data set file that is truncated, corrupt or not in the format it should have."""
