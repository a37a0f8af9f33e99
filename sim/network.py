"""A whole integer network (golden :class:`~golden.integer.IntegerNetwork`) through the accelerator RTL.

Every conv/linear layer's GEMM runs on the RTL (golden's ``im2col`` lowers a conv), and each
layer's input is the previous layer's *RTL* output, so errors would propagate exactly as they
would in silicon.  Two ways a layer runs:

* **on chip** (``stage="codes"``): the output stage finishes the layer
  (:func:`runs_on_requantizer`): channel signs, bias, the residual add (the host writes the
  shortcut operand), a signed input's two passes (the second adds the first's ``t``), a global
  average pool, ASQ's output through the barrier (a pooled pass holds ``relu(t)``, the host runs
  the adapter on the RTL's integer channel sums, a held pass requantizes), then REQUANT,
  THRESHOLD or RAW (``accumulator`` output); the RTL's output is the next layer's input as is;
* **accumulators** (``stage="accumulators"``): a max pool or a grouped conv runs in RAW mode
  and golden's ``IntegerLayer.finish`` completes it from the RTL accumulators.  The
  accumulators are compared bit for bit too.

A layer runs on the PE kind of its weight scheme (:func:`hw.kinds.network_kind`); the layer's
level tables (lcq weights, table activations of lcq and apot) go to the array's table regions.

Every layer is compared with golden's forward on the same input, every layer's output with
golden's own run of the network, and every accelerator run's measured cycles with
:func:`hw.cycles.gemm_cycles`.  The input runs as one batch or, with ``per_image``, one image at a
time through every layer (batch 1, as an accelerator serves requests).  Backends:
``"verilator"`` (the plain C++ harness, fastest; one live process per accelerator),
``"cocotb-verilator"`` and ``"cocotb-icarus"`` (consecutive layers sharing an accelerator
configuration run in one simulator process, every image included).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from golden import spec
from golden.errors import ConfigError
from golden.files import temporary_folder
from golden.gemm import conv_output_size, conv_weight_matrix, im2col
from golden.integer import NETWORK_INPUT, IntegerLayer, IntegerNetwork
from golden.output_stage import adapter_input
from golden.stages import Accumulators, Codes
from hw.config import ArrayConfig
from hw.host import GemmJob
from hw.kinds import network_kind
from hw.layout import OutputMode

from .accelerator import AcceleratorDriver, accelerator_design, run_gemm
from .build_cache import build
from .failures import SimulationError
from .harness import HarnessSession, build_harness
from .jobs import SimJob, SimReport
from .program import HostLayout
from .runner import run_testbench
from .toolchain import waves_requested

BACKENDS = ("verilator", "cocotb-verilator", "cocotb-icarus")


@dataclass
class LayerRun:
    """One layer's RTL result next to golden's, totalled over the passes (the batch, or every image)."""

    name: str
    stage: str  # "codes" (the on-chip output stage finished the layer) or "accumulators" (golden finished it)
    bit_exact: bool  # every pass: no mismatch and measured cycles == expected
    mismatches: int
    cycles: int  # measured start..done cycles of the layer's accelerator runs
    expected_cycles: int  # hw.cycles.gemm_cycles summed over the same runs
    program_cycles: int  # every simulated edge, host transfers included
    runs: int
    macs: int
    array: str  # the ArrayConfig name hint that ran it


@dataclass
class NetworkRun:
    backend: str
    layers: list[LayerRun]
    outputs: dict  # layer name -> Codes / Accumulators produced from the RTL (every image)
    matches_golden_run: bool  # every layer's RTL-chain output equals golden's own run of the network
    wall_seconds: float  # everything after the builds
    build_seconds: float
    sim_seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def bit_exact(self) -> bool:
        return all(layer.bit_exact for layer in self.layers) and self.matches_golden_run

    @property
    def cycles(self) -> int:
        return sum(layer.cycles for layer in self.layers)

    @property
    def program_cycles(self) -> int:
        return sum(layer.program_cycles for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)


# --------------------------------------------------------------------------- planning


def runs_on_requantizer(layer: IntegerLayer) -> bool:
    """Whether the layer's whole output comes from the accelerator's output stage.

    The output lanes apply the channel signs, the bias and the aligned shortcut, and combine a
    signed input's two passes (:mod:`golden.output_stage`); a per-sample input step (after an
    ASQ layer) runs one sample per accelerator run with that sample's channel parameters.  A
    global average pool before a uniform output runs on the pool unit, one sample per run, and
    so does an ASQ output: the pool unit's sums give the host beta, a second pass requantizes
    the held ``relu(t)`` (:func:`_asq_barrier`).  Max pooling is not on chip.
    """
    out = layer.output
    return (
        layer.groups == 1 and out.max_pool is None and (not out.global_pool or out.mode == "uniform")
        and out.mode in ("uniform", "threshold", "accumulator", "asq")
        and not (layer.signed_input and layer.residual is not None)  # one shortcut operand per output
    )  # fmt: skip


def residual_bits(network: IntegerNetwork, layer: IntegerLayer, cfg_sum_bits: int) -> int:
    """Signed width of the residual operand ``layer`` needs on chip (0: none).

    A signed input's second pass adds its first pass's ``t`` (at most ``cfg_sum_bits`` wide, the
    array's ``sign * acc + bias``); a codes shortcut adds code values (uniform codes or the
    producer's level table); an accumulator shortcut adds its producer's ``t``, bounded like the
    producer's own accumulators and bias.
    """
    if layer.signed_input:
        return cfg_sum_bits
    if layer.residual is None:
        return 0
    producers = {NETWORK_INPUT: None} | {other.name: other for other in network.layers}
    producer = producers[layer.residual.source]
    stage = network.input_stage if producer is None else producer.output
    if layer.residual.mode == "codes":
        top = int(stage.levels.max()) if stage.mode == "threshold" else (1 << stage.bits) - 1
        return spec.signed_bits_for(-top if stage.signed else 0, top)
    if producer.residual is not None or producer.signed_input:
        raise ConfigError(f"layer {layer.name!r}: an accumulator shortcut from {producer.name!r} with its own shortcut "
                          "or two passes has no on-chip width bound")
    acc_bits = spec.accumulator_bits(producer.cfg, producer.reduction_length)
    return max(acc_bits, spec.signed_bits_for(*_bias_range(producer))) + 1


def uses_pool_unit(layer: IntegerLayer) -> bool:
    """A global average pool or an ASQ output: the pool unit sums a whole sample's outputs in one run."""
    return layer.output.global_pool or layer.output.mode == "asq"


def held_rows(network: IntegerNetwork, x: Codes) -> dict[str, int]:
    """GEMM rows per sample of every layer whose run covers a whole sample at once, for input ``x``.

    A global average pool sums every output position of a sample in one run, and ASQ's barrier
    holds them all until beta is known, so those layers' accelerators need ``max_m`` at least this.
    """
    whole = [index for index, layer in enumerate(network.layers) if runs_on_requantizer(layer) and uses_pool_unit(layer)]
    if not whole:
        return {}
    outputs = network.run(_image(x, 0))  # the layers' input shapes
    return {network.layers[index].name: _gemm_operands(network.layers[index],
                                                       outputs[network.input_name(index)].codes)[0].shape[0]
            for index in whole}


def plan_arrays(network: IntegerNetwork, rows: int = 8, cols: int = 8, max_m: int = 256, max_n: int = 64,
                max_reduction: int | None = None, whole_sample_rows: dict[str, int] | None = None,
                floor: dict[spec.DatapathConfig, ArrayConfig] | None = None,
                ) -> tuple[dict[spec.DatapathConfig, ArrayConfig], dict[str, spec.DatapathConfig]]:
    """Accelerator configurations the network needs (one per array datapath) and which one runs each layer.

    Every layer of a datapath runs on its configuration, so consecutive layers share one
    accelerator: its REQUANT output width is set per run, over the widths of its layers'
    uniform and ASQ outputs (``min_out_bits..out_bits``); its threshold bank (when a layer
    thresholds) holds the widest threshold layer's thresholds; it has the pool unit when a layer
    pools or is ASQ, and a residual unit (``residual_bits``) when a layer adds a shortcut or has a
    signed input.  Each is sized for the longest reduction of its layers, or for
    ``max_reduction`` when given.  ``whole_sample_rows`` (:func:`held_rows`): ``max_m`` grows to
    the largest of its layers' whole-sample runs — the barrier storage ASQ needs.  ``floor``:
    configurations the planned ones must also cover (:meth:`~hw.config.ArrayConfig.covering`);
    one floor for several networks (:func:`shared_floor`) makes their designs identical, so they
    share builds.
    """
    for layer in network.layers:
        cfg = layer.cfg
        kind = network_kind(cfg.scheme)  # an UnknownSchemeError when no PE kind runs the layer's weights
        built = kind.datapath(cfg.weight.bits, cfg.act_bits, cfg.frac_bits, cfg.weight.levels, cfg.weight.level_bits,
                              cfg.act_level_bits)
        if built != cfg:
            raise ConfigError(f"layer {layer.name!r}: the {kind.name} PE kind runs {cfg.scheme} weights with "
                              f"{built.act_format} activations, not {cfg.act_format}")
    longest = max(layer.reduction_length for layer in network.layers)
    if max_reduction is not None and max_reduction < longest:
        raise ConfigError(f"max_reduction={max_reduction} is shorter than the network's longest reduction ({longest})")
    keys = {layer.name: layer.cfg for layer in network.layers}
    configs = {}
    for datapath in dict.fromkeys(keys.values()):
        layers = [layer for layer in network.layers if layer.cfg == datapath]
        direct = [layer for layer in layers if runs_on_requantizer(layer)]
        requantized = [layer.output.bits for layer in direct if layer.output.mode in ("uniform", "asq")]
        thresholded = [layer.output.bits for layer in direct if layer.output.mode == "threshold"]
        reduction = max_reduction or max(layer.reduction_length for layer in layers)
        bias_bits = max([spec.accumulator_bits(datapath, reduction)]
                        + [spec.signed_bits_for(*_bias_range(layer)) for layer in direct])
        cfg = ArrayConfig(
            network_kind(datapath.scheme).name, rows, cols, datapath.weight.bits, datapath.act_bits,
            frac_bits=datapath.frac_bits, levels=datapath.weight.levels, level_bits=datapath.weight.level_bits,
            act_level_bits=datapath.act_level_bits, out_bits=max(requantized or thresholded or [datapath.act_bits]),
            min_out_bits=min(requantized or thresholded or [datapath.act_bits]),
            threshold_out_bits=max(thresholded, default=None), threshold_bank=bool(thresholded),
            max_reduction=reduction, max_n=max_n, host_lanes=cols, bias_bits=bias_bits,
            max_m=max([max_m] + [(whole_sample_rows or {}).get(layer.name, 0) for layer in direct]),
            global_pool=any(uses_pool_unit(layer) for layer in direct),
        )  # fmt: skip
        if floor and datapath in floor:
            cfg = cfg.covering(floor[datapath])
        t_bits = cfg.replace(residual_bits=0).requant.sum_bits  # a first pass's sign * acc + bias
        residual = max([residual_bits(network, layer, t_bits) for layer in direct], default=0)
        configs[datapath] = cfg.replace(residual_bits=max(residual, cfg.residual_bits))
    return configs, keys


def shared_floor(plans) -> dict[spec.DatapathConfig, ArrayConfig]:
    """One configuration per datapath that covers every plan's (:func:`plan_arrays`' first result) of that datapath."""
    floor: dict[spec.DatapathConfig, ArrayConfig] = {}
    for configs in plans:
        for datapath, cfg in configs.items():
            floor[datapath] = floor[datapath].covering(cfg) if datapath in floor else cfg
    return floor


def _bias_range(layer: IntegerLayer) -> tuple[int, int]:
    bias = layer.requant_params(np.array([layer.input_step])).bias
    return min(int(bias.min()), 0), max(int(bias.max()), 0)


# --------------------------------------------------------------------------- one layer


def _gemm_operands(layer: IntegerLayer, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(activation matrix, weight matrix, output shape [N, C, ...]) of the layer's GEMM, lowered by golden."""
    if layer.kind == "conv":
        kernel = layer.weight_codes.shape[2:]
        columns = im2col(codes, kernel, layer.stride, layer.padding, layer.dilation)
        out_h, out_w = conv_output_size(codes.shape[2:], kernel, layer.stride, layer.padding, layer.dilation)
        return columns, _weight_matrix(layer), (codes.shape[0], out_h, out_w)
    return codes.reshape(codes.shape[0], -1), _weight_matrix(layer), (codes.shape[0],)


def _weight_matrix(layer: IntegerLayer) -> np.ndarray:
    return conv_weight_matrix(layer.weight_codes) if layer.kind == "conv" else layer.weight_codes.T


def _tables(layer: IntegerLayer) -> dict:
    """The level tables a job of the layer carries (lcq: both, apot: the activation table)."""
    return {name: table for name, table in (("weight_table", layer.weight_table), ("act_table", layer.act_table))
            if table is not None}


def weights_job(layer: IntegerLayer) -> GemmJob:
    """A job with the layer's weights and no activations to speak of: what the host can load before its input exists."""
    weight = _weight_matrix(layer)
    return GemmJob(np.zeros((1, weight.shape[0]), dtype=np.int64), weight, **_tables(layer))


def _to_channels_first(matrix: np.ndarray, shape: tuple) -> np.ndarray:
    """GEMM output ``[N*H*W, C]`` back to ``[N, C, H, W]`` (or ``[N, C]``)."""
    if len(shape) == 1:
        return matrix
    n, h, w = shape
    return matrix.reshape(n, h, w, -1).transpose(0, 3, 1, 2)


def _integers(output: Codes | Accumulators) -> np.ndarray:
    return output.values if isinstance(output, Accumulators) else output.codes


class _LayerTally:
    def __init__(self) -> None:
        self.cycles = self.expected = self.program = self.runs = self.macs = 0

    def add(self, outcome) -> None:
        self.cycles += outcome.run_cycles
        self.expected += sum(run.expected_cycles for run in outcome.runs)
        self.program += outcome.program_cycles
        self.runs += len(outcome.runs)
        self.macs += sum(int(np.prod(run.run.shape)) for run in outcome.runs)


def _sample(value: Codes | Accumulators | None, index: int):
    """Sample ``index`` of a layer input or shortcut (as a batch of one)."""
    if value is None:
        return None
    if isinstance(value, Accumulators):
        return Accumulators(value.values[index : index + 1], value.unit[index : index + 1])
    return Codes(value.codes[index : index + 1], value.step[index : index + 1], value.table)


def _channel_params(params, what: str, layer: IntegerLayer) -> np.ndarray:
    """The one row of ``[N, C]`` parameters a run loads (the host splits per-sample layers into one run per sample)."""
    params = np.asarray(params).reshape(params.shape[0], -1)
    if np.any(params != params[:1]):
        raise ConfigError(f"layer {layer.name!r}: {what} differ between the samples of one accelerator run")
    return params[0]


def _gemm_matrix(values: np.ndarray) -> np.ndarray:
    """``[N, C, H, W]`` (or ``[N, C]``) values as the GEMM's ``[N*H*W, C]`` rows."""
    return values if values.ndim == 2 else values.transpose(0, 2, 3, 1).reshape(-1, values.shape[1])


async def run_layer(session, driver: AcceleratorDriver, layer: IntegerLayer, x: Codes, shortcut,
                    prefetch: GemmJob | None = None):
    """The layer on the RTL: ``(its output, LayerRun)``; see the module docstring for the two stages.

    ``prefetch``: the next GEMM on this accelerator (:func:`weights_job`), loaded during the layer's last run.
    """
    per_sample = layer.input_adaptive or uses_pool_unit(layer)
    if runs_on_requantizer(layer) and per_sample and len(x.step) > 1:
        last = len(x.step) - 1
        parts = [await run_layer(session, driver, layer, _sample(x, i), _sample(shortcut, i),
                                 prefetch if i == last else weights_job(layer)) for i in range(len(x.step))]
        return _concatenate([output for output, _ in parts]), _total([run for _, run in parts])
    golden = layer.forward(x, shortcut)
    tally = _LayerTally()
    tables = _tables(layer)

    async def gemm(codes: np.ndarray, following: GemmJob | None = prefetch, **params) -> tuple[np.ndarray, tuple]:
        act, weight, shape = _gemm_operands(layer, codes)
        outcome = await run_gemm(session, driver, GemmJob(act, weight, **params, **tables), following)
        tally.add(outcome)
        return outcome.outputs, shape

    if runs_on_requantizer(layer):
        _, _, (samples, *positions) = _gemm_operands(layer, x.codes)
        acc_shape = (samples, layer.out_channels, *positions)
        pool = layer.output.global_pool  # the pool unit requantizes the sum: 1/(H*W) in the multiplier
        params = layer.requant_params(x.step, int(np.prod(positions)) if pool else 1)
        negate = (_channel_params(params.sign, "channel signs", layer) < 0).astype(np.int64)
        bias = _channel_params(params.bias, "biases", layer)
        out = layer.output
        if out.mode == "asq":  # the barrier's first pass: hold relu(t), sum it per channel
            finish = dict(mode=OutputMode.RAW, pool=True)
        elif out.mode == "uniform":
            finish = dict(mode=OutputMode.REQUANT, mantissa=_channel_params(params.mantissa, "multipliers", layer),
                          shift=_channel_params(params.shift, "multipliers", layer), pool=pool, out_bits=out.bits)
        elif out.mode == "threshold":
            finish = dict(mode=OutputMode.THRESHOLD, thresholds=params.thresholds[0], out_bits=out.bits)
            _channel_params(params.thresholds, "thresholds", layer)
        else:
            finish = dict(mode=OutputMode.RAW)
        # the ASQ barrier's pooled pass prefetches nothing: the held pass that follows loads the next weights
        following = None if out.mode == "asq" else prefetch
        if layer.signed_input:  # two unsigned passes; the second adds the first's t (golden.output_stage.two_pass_totals)
            first, _ = await gemm(np.maximum(x.codes, 0), weights_job(layer), mode=OutputMode.RAW, bias=bias,
                                  negate=negate)
            matrix, shape = await gemm(np.maximum(-x.codes, 0), following, **finish, negate=1 - negate, shortcut=first)
        elif layer.residual is not None:
            values, mantissa, shift = layer.shortcut_operand(shortcut, params.unit, acc_shape)
            matrix, shape = await gemm(x.codes, following, **finish, bias=bias, negate=negate,
                                       shortcut=_gemm_matrix(values),
                                       shortcut_mantissa=_channel_params(mantissa, "shortcut multipliers", layer),
                                       shortcut_shift=_channel_params(shift, "shortcut multipliers", layer))
        else:
            matrix, shape = await gemm(x.codes, following, **finish, bias=bias, negate=negate)
        step = None if isinstance(golden, Accumulators) else golden.step
        if out.mode == "asq":  # the sample's step comes from the RTL's sums, checked against golden's
            matrix, beta = await _asq_barrier(session, driver, layer, x, matrix, acc_shape, tally, tables, prefetch)
            step = out.step * beta
        values = matrix if pool else _to_channels_first(matrix, shape)
        if isinstance(golden, Accumulators):
            output = Accumulators(values, golden.unit)
        else:
            output = Codes(values, step, golden.table)
        stage, mismatches = "codes", int(np.sum(values != _integers(golden)))
        mismatches += 0 if step is None else int(np.sum(step != golden.step))
    else:
        if layer.signed_input:  # two unsigned passes, as golden's accumulate defines it
            positive, shape = await gemm(np.maximum(x.codes, 0), weights_job(layer), mode=OutputMode.RAW)
            negative, _ = await gemm(np.maximum(-x.codes, 0), mode=OutputMode.RAW)
            matrix = positive - negative
        else:
            matrix, shape = await gemm(x.codes, mode=OutputMode.RAW)
        acc = _to_channels_first(matrix, shape)
        output = layer.finish(x, acc, shortcut)
        mismatches = int(np.sum(acc != layer.accumulate(x)))
        same = np.array_equal(_integers(output), _integers(golden))
        stage, mismatches = "accumulators", mismatches + (0 if same else 1)
    return output, LayerRun(layer.name, stage, mismatches == 0 and tally.cycles == tally.expected, mismatches,
                            tally.cycles, tally.expected, tally.program, tally.runs, tally.macs, driver.cfg.name_hint)


async def _asq_barrier(session, driver: AcceleratorDriver, layer: IntegerLayer, x: Codes, sums: np.ndarray,
                       acc_shape: tuple, tally, tables: dict,
                       prefetch: GemmJob | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(codes [M, N], beta [1])`` of one sample's ASQ output: the barrier's second pass on the held ``relu(t)``.

    The host runs the adapter on the integer sums the first pass left in the pool unit
    (``golden.output_stage.adapter_input``, as golden does), turns beta into the sample's channel
    multipliers, and the accelerator requantizes the values its output buffer holds — a run on
    zero operands (``K = 1``) whose lanes add the held value instead of an accumulator, in the
    bank the first pass wrote (the driver runs a held run there).  ``prefetch``: loaded during it.
    """
    positions = int(np.prod(acc_shape[2:], dtype=np.int64))
    params = layer.requant_params(x.step)
    beta = layer.output.adapter(adapter_input(sums, positions, 1, params.unit))
    params = layer.requant_params(x.step, 1, beta)
    m, n = positions * acc_shape[0], layer.out_channels
    zero_weight = layer.cfg.weight.legal_codes()[0]
    job = GemmJob(np.zeros((m, 1), dtype=np.int64), np.full((1, n), zero_weight), OutputMode.REQUANT,
                  mantissa=params.mantissa[0], shift=params.shift[0], held=True, out_bits=layer.output.bits, **tables)
    outcome = await run_gemm(session, driver, job, prefetch)
    tally.add(outcome)
    return outcome.outputs, beta


async def run_layers(sessions: dict, keys: dict[str, spec.DatapathConfig], network: IntegerNetwork, indices: list[int],
                     passes: list[dict]) -> list[list[LayerRun]]:
    """Layers ``indices`` in order on ``sessions[keys[name]] = (session, driver)``, for every pass.

    A pass is the dict of outputs of one input (the batch, or one image): ``{"input": Codes}``
    and the layers before ``indices``; it gains each layer's result.  Returns the runs per pass.

    Each layer needs the previous one's outputs (a true dependency: its activations cannot load
    before they are read back), but not its weights: the weights of the next layer that runs on
    the same accelerator (in this order, the next passes included) load while this layer's last
    run computes.
    """
    results = []
    order = [(number, index) for number in range(len(passes)) for index in indices]
    for position, (number, index) in enumerate(order):
        outputs = passes[number]
        if position % len(indices) == 0:
            results.append([])
        layer = network.layers[index]
        session, driver = sessions[keys[layer.name]]
        following = next((network.layers[later] for _, later in order[position + 1 :]
                          if keys[network.layers[later].name] == keys[layer.name]), None)
        prefetch = None if following is None else weights_job(following)
        shortcut = None if layer.residual is None else outputs[layer.residual.source]
        output, run = await run_layer(session, driver, layer, outputs[network.input_name(index)], shortcut, prefetch)
        outputs[layer.name] = output
        results[-1].append(run)
    return results


# --------------------------------------------------------------------------- backends


def _image(x: Codes, index: int) -> Codes:
    return Codes(x.codes[index : index + 1], x.step[index : index + 1], x.table)


def _concatenate(parts: list[Codes | Accumulators]) -> Codes | Accumulators:
    if isinstance(parts[0], Accumulators):
        return Accumulators(np.concatenate([p.values for p in parts]), np.concatenate([p.unit for p in parts]))
    return Codes(np.concatenate([p.codes for p in parts]), np.concatenate([p.step for p in parts]), parts[0].table)


def _total(runs: list[LayerRun]) -> LayerRun:
    """One layer's runs of every pass as one LayerRun (counts summed, bit-exact only if every pass was)."""
    counts = ("mismatches", "cycles", "expected_cycles", "program_cycles", "runs", "macs")
    return dataclasses.replace(runs[0], bit_exact=all(run.bit_exact for run in runs),
                               **{name: sum(getattr(run, name) for run in runs) for name in counts})


def _finish(network, backend, passes, runs_per_pass, wall, build, sim) -> NetworkRun:
    outputs = {name: _concatenate([outputs[name] for outputs in passes]) for name in passes[0]}
    layers = [_total(list(runs)) for runs in zip(*runs_per_pass, strict=True)]
    failures = [f"{layer.name}: {layer.mismatches} mismatching {layer.stage}, cycles {layer.cycles} vs "
                f"{layer.expected_cycles} expected" for layer in layers if not layer.bit_exact]
    golden = network.run(outputs["input"])
    same = True
    for layer in network.layers:
        rtl, ref = _integers(outputs[layer.name]), _integers(golden[layer.name])
        differing = np.flatnonzero(np.any((rtl != ref).reshape(len(ref), -1), axis=1))
        if differing.size:
            same = False
            failures.append(f"{layer.name}: the RTL chain's output of image(s) {differing.tolist()} differs from "
                            "golden's run of the network")
    return NetworkRun(backend, layers, outputs, same, wall, build, sim, failures)


def run_network_rtl(network: IntegerNetwork, x: np.ndarray | Codes, backend: str = "verilator", rows: int = 8,
                    cols: int = 8, workdir: Path | None = None, seed: int = 0, optimize: bool = True,
                    per_image: bool = False, max_reduction: int | None = None, overlap: bool = True,
                    floor: dict[spec.DatapathConfig, ArrayConfig] | None = None) -> NetworkRun:
    """Run ``network`` on input ``x`` (reals, quantized by the network's input stage, or Codes) through the RTL.

    ``per_image``: every image alone through every layer (the layers' counts are then totals over
    the images); otherwise the batch in one pass.  ``max_reduction``, ``floor``: see :func:`plan_arrays`.
    With ``"verilator"`` mismatches are reported in the returned :class:`NetworkRun` (``bit_exact``,
    ``failures``) and the harness works in ``workdir`` (default: a temporary folder, removed
    after); the cocotb backends raise :class:`~sim.failures.SimulationError` on a mismatching
    segment (with its waveform) like every testbench.  ``optimize=False`` builds the Verilator
    models (harness and cocotb) at -O0 (quicker to build, slower to run).  ``overlap=False``: every run is
    write, start, wait, read (:func:`hw.bus.gemm_steps`), the reference for the double-buffered
    default (:class:`~sim.accelerator.AcceleratorDriver`).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is not supported; expected one of {BACKENDS}")
    x_codes = x if isinstance(x, Codes) else network.quantize_input(x)
    configs, layer_keys = plan_arrays(network, rows, cols, max_reduction=max_reduction,
                                      whole_sample_rows=held_rows(network, x_codes), floor=floor)
    images = [_image(x_codes, i) for i in range(x_codes.codes.shape[0])] if per_image else [x_codes]
    passes = [{"input": image} for image in images]
    if backend == "verilator":
        timings = _run_harness(network, configs, layer_keys, passes, workdir, overlap, optimize)
    else:
        timings = _run_cocotb(network, configs, layer_keys, passes, backend.split("-", 1)[1], seed, optimize, overlap)
    return _finish(network, backend, passes, *timings)


@dataclass(frozen=True, kw_only=True)
class NetworkReport(SimReport):
    layers: list[list[LayerRun]]  # per pass, the segment's layers
    outputs: list[dict[str, Codes | Accumulators]]  # per pass, the segment's layer outputs from the RTL
    sim_seconds: float


@dataclass(frozen=True, kw_only=True)
class NetworkJob(SimJob):
    """Consecutive layers on one accelerator configuration, every pass (:mod:`sim.tb_network`)."""

    testbench: ClassVar[str] = "sim.tb_network"
    testcase: ClassVar[str] = "network_segment"
    report_type: ClassVar[type[SimReport]] = NetworkReport

    cfg: ArrayConfig
    layout: HostLayout
    network: IntegerNetwork
    indices: list[int]  # the segment's layers
    passes: list[dict[str, Codes | Accumulators]]  # per pass, the outputs so far ("input" and earlier layers)
    keys: dict[str, spec.DatapathConfig]  # layer name -> the datapath whose accelerator runs it (plan_arrays)
    overlap: bool = True  # sim.accelerator.AcceleratorDriver's overlap


def _run_cocotb(network, configs, layer_keys, passes, simulator, seed, optimize, overlap) -> tuple:
    """(runs per pass, wall, build, sim seconds); consecutive layers on one configuration share a simulator process."""
    build_start = time.perf_counter()
    for cfg in configs.values():
        build(accelerator_design(cfg)[0], simulator, waves_requested(), optimize)
    build_seconds, sim_seconds = time.perf_counter() - build_start, 0.0
    wall = time.perf_counter()
    runs_per_pass: list[list[LayerRun]] = [[] for _ in passes]
    for key, segment in itertools.groupby(range(len(network.layers)), lambda i: layer_keys[network.layers[i].name]):
        design, layout = accelerator_design(configs[key])
        job = NetworkJob(seed=seed, cfg=configs[key], layout=layout, network=network, indices=list(segment),
                         passes=passes, keys=layer_keys, overlap=overlap)
        report = run_testbench(design, simulator, job, label="network", optimize=optimize).report
        for outputs, produced, runs, segment_runs in zip(passes, report.outputs, runs_per_pass, report.layers,
                                                         strict=True):
            outputs.update(produced)
            runs += segment_runs
        sim_seconds += report.sim_seconds
    return runs_per_pass, time.perf_counter() - wall, build_seconds, sim_seconds


def _run_harness(network, configs, layer_keys, passes, workdir, overlap, optimize) -> tuple:
    """(runs per pass, wall, build, sim seconds); one live harness process per configuration."""
    build_start = time.perf_counter()
    designs = {key: accelerator_design(cfg, internal_clock=False) for key, cfg in configs.items()}
    harnesses = {key: build_harness(design, optimize) for key, (design, _) in designs.items()}
    build_seconds = time.perf_counter() - build_start
    wall = time.perf_counter()
    with contextlib.ExitStack() as stack:
        root = Path(workdir or stack.enter_context(temporary_folder(prefix="lutmac-network-")))
        sessions = {}
        for index, (key, (_, layout)) in enumerate(designs.items()):
            session = stack.enter_context(HarnessSession(harnesses[key], layout, root / f"array{index}"))
            sessions[key] = (session, AcceleratorDriver(configs[key], layout, overlap=overlap))
        indices = list(range(len(network.layers)))
        runs_per_pass = asyncio.run(run_layers(sessions, layer_keys, network, indices, passes))
    sim_seconds = sum(session.sim_seconds for session, _ in sessions.values())
    return runs_per_pass, time.perf_counter() - wall, build_seconds, sim_seconds


def check_network(run: NetworkRun) -> None:
    """Raise :class:`SimulationError` listing every layer that was not bit-exact (or off in cycles)."""
    if not run.bit_exact:
        raise SimulationError("network run on the RTL is not bit-exact:\n  " + "\n  ".join(run.failures))
