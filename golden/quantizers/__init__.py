"""Trainable PyTorch fake-quant quantizers: LSQ, ASQ, POT/POST, APoT, LCQ.

Every quantizer is an ``nn.Module`` whose ``forward(x)`` returns the fake-quantized tensor,
initializes from data only through an explicit ``init_from(x)``, raises
:class:`golden.errors.NonFiniteInputError` on NaN/inf input, and exposes ``quantize_codes(x)``
(the integer codes ``golden.spec`` and the integer model consume) plus the scale that turns codes
back into ``forward``'s values.
"""

from .apot import APoTQuantizer, apot_magnitudes
from .asq import DEFAULT_BETA_FLOOR, REFERENCE_BETA_FLOOR, ASQQuantizer, make_adapter
from .lcq import LCQQuantizer
from .lsq import LSQQuantizer, lsq_range
from .power import PowerQuantizer

__all__ = [
    "APoTQuantizer",
    "ASQQuantizer",
    "DEFAULT_BETA_FLOOR",
    "LCQQuantizer",
    "PowerQuantizer",
    "REFERENCE_BETA_FLOOR",
    "LSQQuantizer",
    "apot_magnitudes",
    "lsq_range",
    "make_adapter",
]
