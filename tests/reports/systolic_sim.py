"""A tiny register-transfer simulation of a systolic array, to check the closed forms against.

Every cycle each PE latches the operands its left and upper neighbours held the cycle before,
exactly as the hardware would; the simulation counts cycles until the last result leaves the
array and returns the product it computed, so a wrong skew shows up as a wrong matrix.
Folds are simulated one after another on the full ``R x C`` array (padding unused PEs with
bubbles, as SCALE-Sim does).  Meant for small shapes in tests, not for networks.
"""

from __future__ import annotations

import numpy as np

from reports.dataflow import check_array_shape, check_dataflow


def _os_fold(a: np.ndarray, b: np.ndarray, rows: int, cols: int) -> tuple[int, np.ndarray]:
    """Output stationary: ``a`` (rows x T) streams right, ``b`` (T x cols) streams down."""
    depth = a.shape[1]
    a_reg = np.zeros((rows, cols), dtype=np.int64)
    b_reg = np.zeros((rows, cols), dtype=np.int64)
    a_valid = np.zeros((rows, cols), dtype=bool)
    b_valid = np.zeros((rows, cols), dtype=bool)
    acc = np.zeros((rows, cols), dtype=np.int64)
    done = np.zeros((rows, cols), dtype=np.int64)
    cycle = 0
    while done.min() < depth:
        step = cycle - np.arange(rows)  # row i receives a[i, cycle - i]
        a_in_valid = (step >= 0) & (step < depth)
        a_in = np.where(a_in_valid, a[np.arange(rows), np.clip(step, 0, depth - 1)], 0)
        step = cycle - np.arange(cols)
        b_in_valid = (step >= 0) & (step < depth)
        b_in = np.where(b_in_valid, b[np.clip(step, 0, depth - 1), np.arange(cols)], 0)
        a_reg = np.concatenate([a_in[:, None], a_reg[:, :-1]], axis=1)
        a_valid = np.concatenate([a_in_valid[:, None], a_valid[:, :-1]], axis=1)
        b_reg = np.concatenate([b_in[None, :], b_reg[:-1, :]], axis=0)
        b_valid = np.concatenate([b_in_valid[None, :], b_valid[:-1, :]], axis=0)
        fire = a_valid & b_valid
        acc += np.where(fire, a_reg * b_reg, 0)
        done += fire
        cycle += 1
    # drain: the accumulators shift down one row per cycle out of the bottom edge
    out = np.zeros_like(acc)
    for drained in range(rows):
        out[rows - 1 - drained] = acc[-1]
        acc = np.concatenate([np.zeros((1, cols), dtype=np.int64), acc[:-1]], axis=0)
        cycle += 1
    return cycle, out


def _ws_fold(x: np.ndarray, w: np.ndarray, rows: int, cols: int) -> tuple[int, np.ndarray]:
    """Weight stationary: ``w`` (rows x cols) is loaded from the top, ``x`` (T x rows) streams
    right with partial sums flowing down; output row ``t`` leaves column ``j`` at the bottom."""
    depth = x.shape[0]
    weights = np.zeros((rows, cols), dtype=np.int64)
    cycle = 0
    for loaded in range(rows):  # one weight row enters per cycle, shifting down
        weights = np.concatenate([w[rows - 1 - loaded][None, :], weights[:-1]], axis=0)
        cycle += 1
    x_reg = np.zeros((rows, cols), dtype=np.int64)
    x_tag = np.full((rows, cols), -1)
    psum = np.zeros((rows, cols), dtype=np.int64)
    psum_tag = np.full((rows, cols), -1)
    out = np.zeros((depth, cols), dtype=np.int64)
    received = 0
    stream = 0
    while received < depth * cols:
        step = stream - np.arange(rows)  # row k receives x[stream - k, k]
        valid = (step >= 0) & (step < depth)
        x_in = np.where(valid, x[np.clip(step, 0, depth - 1), np.arange(rows)], 0)
        x_reg = np.concatenate([x_in[:, None], x_reg[:, :-1]], axis=1)
        x_tag = np.concatenate([np.where(valid, step, -1)[:, None], x_tag[:, :-1]], axis=1)
        above = np.concatenate([np.zeros((1, cols), dtype=np.int64), psum[:-1]], axis=0)
        above_tag = np.concatenate([x_tag[:1], psum_tag[:-1]], axis=0)
        if np.any((x_tag >= 0) & (above_tag != x_tag)):
            raise AssertionError("a partial sum met an input of another output row: skew is wrong")
        psum = np.where(x_tag >= 0, above + x_reg * weights, 0)
        psum_tag = x_tag
        leaving = psum_tag[-1] >= 0
        out[psum_tag[-1][leaving], np.flatnonzero(leaving)] = psum[-1][leaving]
        received += int(leaving.sum())
        stream += 1
        cycle += 1
    return cycle, out


def simulate(dataflow: str, rows: int, cols: int, a: np.ndarray, b: np.ndarray) -> tuple[int, np.ndarray]:
    """Cycles and result of ``a @ b`` (``a``: M x K, ``b``: K x N) on an ``rows x cols`` array."""
    check_dataflow(dataflow)
    check_array_shape(rows, cols)
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if dataflow == "is":  # input stationary is weight stationary on the transposed product
        cycles, out_t = simulate("ws", rows, cols, b.T, a.T)
        return cycles, out_t.T
    m, k = a.shape
    n = b.shape[1]
    result = np.zeros((m, n), dtype=np.int64)
    total = 0
    if dataflow == "os":
        for r0 in range(0, m, rows):
            for c0 in range(0, n, cols):
                tile_a = np.zeros((rows, k), dtype=np.int64)
                tile_b = np.zeros((k, cols), dtype=np.int64)
                tile_a[: min(rows, m - r0)] = a[r0 : r0 + rows]
                tile_b[:, : min(cols, n - c0)] = b[:, c0 : c0 + cols]
                cycles, out = _os_fold(tile_a, tile_b, rows, cols)
                result[r0 : r0 + rows, c0 : c0 + cols] = out[: min(rows, m - r0), : min(cols, n - c0)]
                total += cycles
        return total, result
    for c0 in range(0, n, cols):  # ws: weights (K x N) stationary, K over rows, N over columns
        for r0 in range(0, k, rows):
            tile_w = np.zeros((rows, cols), dtype=np.int64)
            tile_x = np.zeros((m, rows), dtype=np.int64)
            tile_w[: min(rows, k - r0), : min(cols, n - c0)] = b[r0 : r0 + rows, c0 : c0 + cols]
            tile_x[:, : min(rows, k - r0)] = a[:, r0 : r0 + rows]
            cycles, out = _ws_fold(tile_x, tile_w, rows, cols)
            result[:, c0 : c0 + cols] += out[:, : min(cols, n - c0)]
            total += cycles
    return total, result
