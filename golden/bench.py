"""Benchmark of the fake-quantizers against PyTorch's native fake-quant: ``python -m golden.bench``.

One table, one run, one 4M-element float32 tensor ``(16, 64, 64, 64)``: forward time (no
autograd), forward+backward time, and the peak *extra* memory of each, for LSQ, ASQ, POT, POST,
APoT and LCQ next to ``torch.fake_quantize_per_tensor_affine`` and
``torch._fake_quantize_learnable_per_tensor_affine``.

**How memory is measured.**  ``tracemalloc`` does not see torch's allocations, and RSS deltas
depend on what the C allocator keeps cached.  Instead the call runs once under
``torch.profiler`` with ``profile_memory=True``: every allocation and free made by torch's CPU
allocator is recorded in order with the running total of bytes allocated since profiling
started.  The peak of that running total is the call's peak extra memory — everything it
allocated and held at once (output, temporaries, tensors saved for backward, gradients),
beyond the tensors that existed before (the input, the incoming gradient, the parameters).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from .quantizers import APoTQuantizer, ASQQuantizer, LCQQuantizer, LSQQuantizer, PowerQuantizer

SHAPE = (16, 64, 64, 64)
BITS = 4
POWER_FORWARD_TARGET = 2.0  # POT/POST forward vs native fake_quantize_per_tensor_affine
LCQ_TRAIN_TARGET = 5.0  # LCQ forward+backward vs native learnable fake-quant
MEMORY_TARGET = 3.0  # peak extra memory, in input sizes


def peak_extra_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes torch's CPU allocator held for ``fn()`` beyond what existed before (see module doc)."""
    with tempfile.TemporaryDirectory() as tmp:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        trace = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    totals = [e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0]
    return max([0, *totals])


def median_ms(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median wall time of each callable, in ms, timed round-robin.

    Interleaving the cases spreads any background load evenly over them, so the ratios stay
    meaningful on a shared machine even when the absolute times drift.
    """
    times: list[list[float]] = [[] for _ in fns]
    for fn in fns:
        fn()  # warm-up: lazy initialization, allocator
    for _ in range(repeats):
        for fn, samples in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
    return [statistics.median(samples) * 1e3 for samples in times]


@dataclass
class Row:
    name: str
    forward_ms: float
    train_ms: float
    forward_peak: float  # in input sizes
    train_peak: float


def _cases(x: torch.Tensor) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Each quantizer (calibrated on ``x``) as a callable; the natives with LSQ's step for the same data."""
    torch.manual_seed(0)
    lsq = LSQQuantizer(BITS, signed=True)
    asq = ASQQuantizer(BITS, SHAPE[1])
    pot = PowerQuantizer(BITS, base="2")
    post = PowerQuantizer(BITS, base="sqrt2")
    apot = APoTQuantizer(BITS, signed=True)
    lcq = LCQQuantizer(BITS, signed=False)
    lcq_w = LCQQuantizer(BITS, signed=True, lwn=True)
    relu = x.clamp_min(0)
    for q, data in ((lsq, x), (asq, relu), (pot, x), (post, x), (apot, x), (lcq, relu), (lcq_w, x)):
        q.init_from(data)
    with torch.no_grad():
        lcq.theta.normal_(0, 0.5)  # a learned-looking compander, not the identity
        lcq_w.theta.normal_(0, 0.5)
    step_value = float(lsq.s.detach())
    zero = torch.zeros(1)
    factor = 1.0 / math.sqrt(x.numel() * lsq.qp)

    def native_learnable(t: torch.Tensor) -> torch.Tensor:
        step = torch.tensor([step_value], requires_grad=t.requires_grad)
        return torch._fake_quantize_learnable_per_tensor_affine(t, step, zero, -lsq.qn, lsq.qp, factor)

    return {
        "torch fake_quantize_per_tensor_affine": lambda t: torch.fake_quantize_per_tensor_affine(t, step_value, 0, -lsq.qn, lsq.qp),
        "torch _fake_quantize_learnable_per_tensor": native_learnable,
        "LSQ (signed, per tensor)": lsq,
        "ASQ (unsigned, 64-ch adapter)": asq,
        "POT (b-bit levels)": pot,
        "POST (b-bit levels)": post,
        "APoT (weights, normalized)": apot,
        "LCQ (activations)": lcq,
        "LCQ (weights, LWN)": lcq_w,
    }


def measure(repeats: int) -> list[Row]:
    torch.manual_seed(0)
    x = torch.randn(SHAPE)
    grad = torch.randn(SHAPE)
    input_bytes = x.numel() * x.element_size()
    names, forwards, trains = [], [], []
    for name, quantize in _cases(x).items():
        data = x.clamp_min(0) if "unsigned" in name or "activations" in name else x

        def forward(quantize=quantize, data=data):
            with torch.no_grad():
                return quantize(data)

        def train(quantize=quantize, data=data):
            leaf = data.detach().requires_grad_()
            quantize(leaf).backward(grad)
            return leaf.grad

        names.append(name)
        forwards.append(forward)
        trains.append(train)
    forward_ms = median_ms(forwards, repeats)
    train_ms = median_ms(trains, repeats)
    return [
        Row(name, f_ms, t_ms, peak_extra_bytes(f) / input_bytes, peak_extra_bytes(t) / input_bytes)
        for name, f_ms, t_ms, f, t in zip(names, forward_ms, train_ms, forwards, trains, strict=True)
    ]


def render(rows: list[Row]) -> str:
    native_fwd = rows[0].forward_ms
    native_train = rows[1].train_ms
    header = (
        f"{'quantizer':42s} {'fwd ms':>8s} {'fwd+bwd ms':>11s} {'fwd/native':>11s} {'f+b/native':>11s} "
        f"{'peak fwd':>9s} {'peak f+b':>9s}"
    )
    lines = [
        f"fake-quant of a {'x'.join(map(str, SHAPE))} float32 tensor ({math.prod(SHAPE) / 2**20:.0f}M elements), "
        f"{BITS} bits, {torch.get_num_threads()} threads, median time",
        "fwd/native: forward vs torch.fake_quantize_per_tensor_affine; "
        "f+b/native: forward+backward vs torch._fake_quantize_learnable_per_tensor_affine",
        "peak: peak extra memory in input sizes (torch CPU allocator, torch.profiler profile_memory; "
        "f+b includes the output and the input gradient)",
        "",
        header,
        "-" * len(header),
    ]
    for r in rows:
        lines.append(
            f"{r.name:42s} {r.forward_ms:8.1f} {r.train_ms:11.1f} {r.forward_ms / native_fwd:10.2f}x "
            f"{r.train_ms / native_train:10.2f}x {r.forward_peak:8.2f}x {r.train_peak:8.2f}x"
        )
    by_name = {r.name: r for r in rows}
    power = [by_name[n] for n in ("POT (b-bit levels)", "POST (b-bit levels)")]
    lcq = [by_name[n] for n in ("LCQ (activations)", "LCQ (weights, LWN)")]
    ours = rows[2:]
    checks = [
        (f"POT/POST forward <= {POWER_FORWARD_TARGET:g}x native", max(r.forward_ms for r in power) / native_fwd, POWER_FORWARD_TARGET),
        (f"LCQ forward+backward <= {LCQ_TRAIN_TARGET:g}x native learnable", max(r.train_ms for r in lcq) / native_train, LCQ_TRAIN_TARGET),
        (f"peak extra memory <= {MEMORY_TARGET:g}x input (forward)", max(r.forward_peak for r in ours), MEMORY_TARGET),
        (f"peak extra memory <= {MEMORY_TARGET:g}x input (forward+backward)", max(r.train_peak for r in ours), MEMORY_TARGET),
    ]
    lines.append("")
    for label, value, target in checks:
        lines.append(f"target {label:60s} worst {value:6.2f}  {'met' if value <= target else 'MISSED'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed repetitions per case (median reported)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: PyTorch's native per-tensor fake-quant kernel is single-threaded, "
        "and OpenMP timings on a loaded machine are erratic)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(render(measure(args.repeats)))


if __name__ == "__main__":
    main()
