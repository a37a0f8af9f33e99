"""Analytical cycle and access models of output-, weight- and input-stationary systolic arrays.

Definitions follow SCALE-Sim (Samajdar et al., ISPASS 2020).  A layer's GEMM view
``(M x K) @ (K x N)`` (``M`` output pixels, ``K`` conv window, ``N`` filters) is mapped onto an
``R x C`` array as spatial rows ``Sr``, spatial columns ``Sc`` and temporal depth ``T``:

====  ====  ====  ====
flow   Sr    Sc    T
====  ====  ====  ====
os     M     N     K
ws     K     N     M
is     K     M     N
====  ====  ====  ====

The work is cut into ``ceil(Sr/R) * ceil(Sc/C)`` folds run one after another; each fold takes
``2R + C + T - 2`` cycles (fill, ``T`` streaming steps, drain — SCALE-Sim's
``tau = (2R + C + T - 2) * ceil(Sr/R) * ceil(Sc/C)``; partial folds are padded to the full array,
as SCALE-Sim does).  Grouped/depthwise layers run their groups one after another.

Everything broadcasts over numpy arrays, so a sweep evaluates points x layers at once.
"""

from __future__ import annotations

import numpy as np

from golden.errors import ConfigError, UnknownSchemeError

DATAFLOWS = ("os", "ws", "is")


def check_dataflow(dataflow: str) -> str:
    if dataflow not in DATAFLOWS:
        raise UnknownSchemeError(f"dataflow {dataflow!r} does not exist; expected one of {DATAFLOWS}")
    return dataflow


def check_array_shape(rows, cols) -> None:
    """Reject zero-sized, negative or non-integer array dimensions."""
    for name, value in (("rows", rows), ("cols", cols)):
        array = np.asarray(value)
        if array.dtype.kind not in "iu" or array.size == 0 or np.any(array < 1):
            raise ConfigError(f"array {name} must be positive integers, got {value!r}")


def _ceil_div(a, b):
    return -(-np.asarray(a, dtype=np.int64) // np.asarray(b, dtype=np.int64))


def spatio_temporal(dataflow: str, m, k, n) -> tuple:
    """``(Sr, Sc, T)`` of the GEMM for a dataflow (table in the module docstring)."""
    return {"os": (m, n, k), "ws": (k, n, m), "is": (k, m, n)}[check_dataflow(dataflow)]


def folds(dataflow: str, rows, cols, m, k, n) -> tuple[np.ndarray, np.ndarray]:
    """``(row folds, column folds)``."""
    check_array_shape(rows, cols)
    sr, sc, _ = spatio_temporal(dataflow, m, k, n)
    return _ceil_div(sr, rows), _ceil_div(sc, cols)


def cycles_per_fold(dataflow: str, rows, cols, m, k, n) -> np.ndarray:
    _, _, t = spatio_temporal(dataflow, m, k, n)
    return 2 * np.asarray(rows, dtype=np.int64) + cols + np.asarray(t, dtype=np.int64) - 2


def systolic_cycles(dataflow: str, rows, cols, m, k, n, groups=1) -> np.ndarray:
    """Cycles of one layer (all groups, all folds)."""
    row_folds, col_folds = folds(dataflow, rows, cols, m, k, n)
    return np.asarray(groups, dtype=np.int64) * row_folds * col_folds * cycles_per_fold(dataflow, rows, cols, m, k, n)


def utilization(macs, rows, cols, cycles) -> np.ndarray:
    """Fraction of PE-cycles doing a useful MAC."""
    return np.asarray(macs, dtype=np.float64) / (np.asarray(rows) * np.asarray(cols) * np.asarray(cycles, dtype=np.float64))


def sram_accesses(dataflow: str, rows, cols, m, k, n, groups=1) -> dict[str, np.ndarray]:
    """Operand-buffer accesses in elements, counted as SCALE-Sim's demand matrices do.

    Each fold reads the slices of both operands it needs (the stationary one once per fold,
    the streamed one ``T`` times per used row/column).  ``ofmap_final`` are finished outputs
    (requantized to activation codes); when the reduction ``K`` is split over row folds (ws,
    is) every fold but the last writes partial sums (``psum_writes``) that the next fold reads
    back (``psum_reads``), at accumulator width.
    """
    row_folds, col_folds = folds(dataflow, rows, cols, m, k, n)
    m, k, n, g = (np.asarray(x, dtype=np.int64) for x in (m, k, n, groups))
    outputs = g * m * n
    if dataflow == "os":
        ifmap, weights, spills = g * m * k * col_folds, g * k * n * row_folds, 0
    elif dataflow == "ws":
        ifmap, weights, spills = g * m * k * col_folds, g * k * n, (row_folds - 1) * outputs
    else:
        ifmap, weights, spills = g * m * k, g * k * n * col_folds, (row_folds - 1) * outputs
    ifmap, weights, outputs, spills = np.broadcast_arrays(ifmap, weights, outputs, spills, row_folds, col_folds)[:4]
    return {"ifmap_reads": ifmap, "filter_reads": weights, "ofmap_final": outputs, "psum_writes": spills, "psum_reads": spills}


def dram_bits(dataflow: str, rows, cols, m, k, n, groups, *, input_elements, params, output_elements,
              act_bits, weight_bits, acc_bits, ifmap_capacity, filter_capacity, ofmap_capacity) -> np.ndarray:
    """DRAM traffic in bits under SCALE-Sim's fold order (column folds outer, row folds inner).

    A tensor is read from (or written to) DRAM once when the part of it that must stay on chip
    fits its buffer; otherwise it is re-read once per pass the loop order makes over it:

    * os: the activations are swept once per column fold (all of them must fit to be read once);
      a column fold's weights (``K x min(N, C)``) are reused by every row fold.
    * ws: weights are read once; activations as in os; partial sums of a column fold
      (``M x min(N, C)`` at accumulator width) must fit the output buffer or spill to DRAM.
    * is: activations are read once; all weights are swept once per column fold; partial sums
      of a column fold (``N x min(M, C)``) must fit the output buffer or spill.
    """
    row_folds, col_folds = folds(dataflow, rows, cols, m, k, n)
    g = np.asarray(groups, dtype=np.int64)
    inputs_fit = input_elements * act_bits <= ifmap_capacity
    if dataflow == "os":
        ifmap_passes = np.where(inputs_fit, 1, col_folds)
        weight_passes = np.where(k * np.minimum(n, cols) * weight_bits <= filter_capacity, 1, row_folds)
        spills = 0
    elif dataflow == "ws":
        ifmap_passes, weight_passes = np.where(inputs_fit, 1, col_folds), 1
        spills = np.where(m * np.minimum(n, cols) * acc_bits <= ofmap_capacity, 0, (row_folds - 1) * g * m * n)
    else:
        ifmap_passes = 1
        weight_passes = np.where(params * weight_bits <= filter_capacity, 1, col_folds)
        spills = np.where(n * np.minimum(m, cols) * acc_bits <= ofmap_capacity, 0, (row_folds - 1) * g * m * n)
    return (ifmap_passes * input_elements * act_bits + weight_passes * params * weight_bits
            + output_elements * act_bits + 2 * spills * acc_bits)
