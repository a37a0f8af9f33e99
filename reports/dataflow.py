"""Analytical cycle and access models of output-, weight- and input-stationary systolic arrays.

The cycle counts are SCALE-Sim v2's (release 2.0.2, ``scalesim/compute/systolic_compute_*.py``
and ``memory/double_buffered_scratchpad_mem.py``), compute only, no memory stalls.  A layer's
GEMM view ``(M x K) @ (K x N)`` (``M`` output pixels, ``K`` conv window, ``N`` filters) is
mapped onto an ``R x C`` array as spatial rows ``Sr``, spatial columns ``Sc`` and temporal
depth ``T``:

====  ====  ====  ====
flow   Sr    Sc    T
====  ====  ====  ====
os     M     N     K
ws     K     N     M
is     K     M     N
====  ====  ====  ====

The work is cut into ``folds = ceil(Sr/R) * ceil(Sc/C)`` folds run one after another, partial
folds padded to the full array.  A fold's demand matrix has one line per cycle:

* os: ``T`` streaming steps and ``C - 1`` drain lines, skewed over ``R - 1`` more:
  ``R + C + T - 2`` (the ``R`` output rows leave within the skew, not after it);
* ws / is: ``R`` cycles loading the stationary operand, then ``T`` steps and ``C - 1`` drain
  lines, skewed over ``R - 1``: ``2R + C + T - 2``.

SCALE-Sim's "Total Cycles" is the cycle stamp of the last line, a 0-based index, so a layer
takes ``folds * per_fold - 1``; groups (depthwise channels, which SCALE-Sim runs as separate
layers) run one after another, each with its own ``-1``.

SCALE-Sim's three utilization columns (:func:`scalesim_utilization`), as its code computes them:

* Overall Util % = ``MACs * 100 / (Total Cycles * R * C)``;
* Mapping Efficiency % = the mean over folds of used PEs / ``R * C``, i.e.
  ``Sr * Sc * 100 / (folds * R * C)``;
* Compute Util % = the mean over folds of ``used PEs * T / (R * C * fold cycles)``, where
  the fold cycles are its demand matrix's lines plus its width minus one: ``R + C + T - 2``
  for os, but ``2R + 2C + T - 3`` for ws and is.

They are not self-consistent: Compute Util's ws/is fold is ``C - 1`` cycles longer than the
fold Total Cycles counts (the column skew is counted twice), and Overall Util divides by the
0-based last index, one cycle short, so a single full os fold has Overall Util above Compute
Util although Compute Util leaves stalls out.  Both are reproduced as defined.

The project's own array (dataflow ``lutmac``, :mod:`hw.cycles`) streams blocks and is not
modelled here.  Everything broadcasts over numpy arrays, so a sweep evaluates points x layers
at once.
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
    """Demand-matrix lines of one fold (module docstring)."""
    _, _, t = spatio_temporal(dataflow, m, k, n)
    rows, cols, t = (np.asarray(x, dtype=np.int64) for x in (rows, cols, t))
    return (rows if dataflow == "os" else 2 * rows) + cols + t - 2


def systolic_cycles(dataflow: str, rows, cols, m, k, n, groups=1) -> np.ndarray:
    """SCALE-Sim's Total Cycles of one layer (all folds; groups one after another, each ending at its 0-based last cycle)."""
    row_folds, col_folds = folds(dataflow, rows, cols, m, k, n)
    per_group = row_folds * col_folds * cycles_per_fold(dataflow, rows, cols, m, k, n) - 1
    return np.asarray(groups, dtype=np.int64) * per_group


def utilization(macs, rows, cols, cycles) -> np.ndarray:
    """Fraction of PE-cycles doing a useful MAC."""
    return np.asarray(macs, dtype=np.float64) / (np.asarray(rows) * np.asarray(cols) * np.asarray(cycles, dtype=np.float64))


def scalesim_utilization(dataflow: str, rows, cols, m, k, n, groups=1) -> dict[str, np.ndarray]:
    """SCALE-Sim's Overall Util %, Mapping Efficiency % and Compute Util % (definitions in the module docstring)."""
    sr, sc, t = (np.asarray(x, dtype=np.float64) for x in spatio_temporal(dataflow, m, k, n))
    row_folds, col_folds = folds(dataflow, rows, cols, m, k, n)
    pes = np.asarray(rows, dtype=np.float64) * np.asarray(cols, dtype=np.float64)
    macs = np.asarray(groups) * np.asarray(m, dtype=np.float64) * np.asarray(k) * np.asarray(n)
    mapping = sr * sc / (row_folds * col_folds * pes)
    fold = cycles_per_fold(dataflow, rows, cols, m, k, n) + (0 if dataflow == "os" else np.asarray(cols) - 1)
    return {
        "overall_util_pct": 100 * macs / (systolic_cycles(dataflow, rows, cols, m, k, n, groups) * pes),
        "mapping_efficiency_pct": 100 * mapping,
        "compute_util_pct": 100 * mapping * t / fold,
    }


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


def dram_traffic(dataflow: str, rows, cols, m, k, n, groups, *, input_elements, params, output_elements,
                 act_bits, weight_bits, acc_bits, ifmap_capacity, filter_capacity, ofmap_capacity) -> dict[str, np.ndarray]:
    """DRAM traffic in elements per tensor under SCALE-Sim's fold order (column folds outer, row folds inner).

    A tensor is read from (or written to) DRAM once when the part of it that must stay on chip
    fits its buffer (capacities in bits); otherwise it is re-read once per pass the loop order makes over it:

    * os: the activations are swept once per column fold (all of them must fit to be read once);
      a column fold's weights (``K x min(N, C)``) are reused by every row fold.
    * ws: weights are read once; activations as in os; partial sums of a column fold
      (``M x min(N, C)`` at accumulator width) must fit the output buffer or spill to DRAM.
    * is: activations are read once; all weights are swept once per column fold; partial sums
      of a column fold (``N x min(M, C)``) must fit the output buffer or spill.

    ``psum`` counts spilled partial sums once (each is written and read back).  When everything
    fits, ``ifmap``, ``filter`` and ``ofmap`` are the tensors' sizes: SCALE-Sim's DRAM reads in its
    CALC bandwidth mode (DETAILED_ACCESS_REPORT.csv), and its output writes in os; in ws and is
    SCALE-Sim writes every row fold's partial outputs to DRAM (tests/reports/test_bandwidth.py).
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
    return {"ifmap": ifmap_passes * input_elements, "filter": weight_passes * params, "ofmap": output_elements,
            "psum": spills}


def dram_bits(dataflow: str, rows, cols, m, k, n, groups, *, act_bits, weight_bits, acc_bits, **sizes) -> np.ndarray:
    """DRAM traffic in bits (:func:`dram_traffic` at each tensor's width; spilled partial sums both ways)."""
    traffic = dram_traffic(dataflow, rows, cols, m, k, n, groups, act_bits=act_bits, weight_bits=weight_bits,
                           acc_bits=acc_bits, **sizes)
    return ((traffic["ifmap"] + traffic["ofmap"]) * act_bits + traffic["filter"] * weight_bits
            + 2 * traffic["psum"] * acc_bits)


def bandwidth_stalls(dram_bits, compute_cycles, bytes_per_cycle) -> np.ndarray:
    """Cycles the array waits for DRAM at ``bytes_per_cycle`` (``inf``: no limit).

    Transfers overlap compute (double-buffered operands): a layer whose traffic needs
    ``ceil(bytes / limit)`` cycles, more than its compute, stalls for the difference.  This is a
    roofline, not SCALE-Sim's trace model: SCALE-Sim 2.0.2's USER bandwidth mode prefetches a
    layer's first operands before cycle 0 (outside Total Cycles) and fetches the im2col operand
    matrix (``M * K`` activation words, no reuse of overlapping windows), so it reports stalls only
    when a fold's operands do not fit its buffers (tests/reports/test_bandwidth.py gives an example).
    """
    transfer = np.ceil(np.asarray(dram_bits, dtype=np.float64) / (8 * np.asarray(bytes_per_cycle, dtype=np.float64)))
    return np.maximum(transfer - compute_cycles, 0).astype(np.int64)
