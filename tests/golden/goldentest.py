"""Shared helpers of the golden tests: datapath configs, a random well-scaled integer layer, a residual network."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from golden import apot_format, spec
from golden.gemm import gemm_accumulator_bits, ideal_weight_levels
from golden.integer import IntegerLayer, IntegerNetwork
from golden.spec import WeightScheme
from golden.stages import AsqAdapter, OutputStage, Residual


def random_layer(
    rng: np.random.Generator,
    cfg: spec.DatapathConfig,
    kind: str = "conv",
    in_channels: int = 3,
    out_channels: int = 4,
    kernel: int = 3,
    out_mode: str = "uniform",
    out_bits: int = 4,
    input_step: float = 0.05,
    input_adaptive: bool = False,
    act_table: np.ndarray | None = None,
    name: str = "layer",
    **geometry,
) -> IntegerLayer:
    """A random but well-scaled layer (outputs spread over the code range).

    ``geometry`` passes ``stride``, ``padding``, ``dilation``, ``groups``, ``input``, ``residual``
    through to :class:`IntegerLayer` and ``max_pool`` / ``global_pool`` to its output stage.
    Some channels get a negative scale (a BatchNorm gamma < 0).
    """
    groups = geometry.get("groups", 1)
    shape = (out_channels, in_channels // groups, kernel, kernel) if kind == "conv" else (out_channels, in_channels)
    if cfg.scheme == WeightScheme.INT:
        lo, hi = spec.signed_range(cfg.weight.bits)
        codes = rng.integers(lo, hi + 1, shape)
    else:
        codes = rng.integers(0, cfg.weight.num_codes, shape)
    if act_table is None:
        weight_table, act_table = cfg.random_tables(rng)
    else:  # draw the weight table alone: the same draws as random_tables' first
        weight_table, _ = replace(cfg, act_format="uniform").random_tables(rng)
    reduction = int(np.prod(shape[1:]))
    level_rms = float(np.sqrt(np.mean(ideal_weight_levels(cfg, codes, weight_table) ** 2))) or 1.0
    act_values_all = np.arange(cfg.num_act_codes) if act_table is None else act_table
    act_rms = float(np.sqrt(np.mean(act_values_all.astype(np.float64) ** 2))) or 1.0
    q_max = (1 << out_bits) - 1
    out_step = float(rng.uniform(0.05, 0.2))
    spread = np.sqrt(reduction) * act_rms * level_rms * input_step
    weight_scale = (q_max / 3) * out_step / spread * rng.uniform(0.7, 1.3, out_channels)
    weight_scale *= np.where(rng.random(out_channels) < 0.25, -1.0, 1.0)
    bias = rng.uniform(-0.2, 0.4, out_channels) * q_max * out_step
    stage_args = {k: geometry.pop(k) for k in ("max_pool", "global_pool") if k in geometry}
    if out_mode == "threshold":
        thresholds = np.sort(rng.uniform(0.0, q_max * out_step, q_max))
        levels = np.sort(rng.integers(0, 256, q_max + 1))
        levels[0] = 0
        output = OutputStage("threshold", out_bits, out_step, thresholds, levels, **stage_args)
    elif out_mode == "asq":
        hidden = max(out_channels // 4, 1)
        adapter = AsqAdapter(
            (rng.normal(0, 0.3, (hidden, out_channels)), rng.normal(0, 0.01, (1, hidden))),
            (rng.normal(0, 0.1, hidden), np.array([1.0])),
        )
        output = OutputStage("asq", out_bits, out_step, adapter=adapter, **stage_args)
    else:
        output = OutputStage(out_mode, out_bits, out_step, **stage_args)
    return IntegerLayer(
        name, kind, cfg, codes, weight_scale, bias, input_step, output, gemm_accumulator_bits(cfg, reduction),
        weight_table=weight_table, act_table=act_table, input_adaptive=input_adaptive, **geometry,
    )


def make_cfg(scheme: str, wbits: int, abits: int, frac_bits: int | None = None, levels: str = "bbit") -> spec.DatapathConfig:
    """A datapath of ``scheme``; shift schemes at the legal F nearest ``frac_bits`` (None: the format's default)."""
    if scheme in spec.SHIFT_SCHEMES:
        if frac_bits is not None:
            legal = spec.legal_frac_bits(spec.WeightFormat(scheme, wbits, levels), abits)
            frac_bits = min(legal, key=lambda f: (abs(f - frac_bits), f))
        return spec.DatapathConfig.make(scheme, wbits, abits, frac_bits=frac_bits, levels=levels)
    if scheme == spec.WeightScheme.APOT:  # apot weights stop at 7 bits
        return spec.DatapathConfig.make(scheme, min(wbits, apot_format.MAX_WEIGHT_BITS), abits)
    return spec.DatapathConfig.make(scheme, wbits, abits)


def residual_network(rng, scheme="int", act_mode="uniform"):
    """stem (max pool) -> block with identity shortcut -> block with downsample shortcut -> global pool -> fc."""
    cfg = make_cfg(scheme, 4, 4)
    if act_mode == "threshold":
        cfg = spec.DatapathConfig.make("lcq", 4, 4) if scheme == "lcq" else spec.DatapathConfig.make("int", 4, 4, act_format="table")
    adaptive = act_mode == "asq"

    def layer(name, cin, cout, previous, mode=None, **kwargs):
        stage = previous.output if previous is not None else None
        return random_layer(
            rng, cfg, kwargs.pop("kind", "conv"), cin, cout, kwargs.pop("kernel", 3), out_mode=mode or act_mode,
            input_step=stage.step if stage else 0.1, input_adaptive=adaptive,
            act_table=stage.levels if stage is not None and stage.mode == "threshold" else input_table, name=name, **kwargs,
        )

    input_table = None
    if act_mode == "threshold":
        input_table = np.sort(rng.integers(0, 256, 16))
        input_table[0] = 0
        stage_in = OutputStage("threshold", 4, 0.1, np.sort(rng.uniform(0, 1.5, 15)), input_table)
    elif adaptive:
        stage_in = OutputStage("asq", 4, 0.1, adapter=AsqAdapter((rng.normal(0, 0.01, (1, 3)),), (np.array([1.0]),)))
    else:
        stage_in = OutputStage("uniform", 4, 0.1)
    stem = layer("stem", 3, 6, None, padding=1, max_pool=(3, 2, 1))
    a1 = layer("block1.conv1", 6, 6, stem, padding=1)
    a2 = layer("block1.conv2", 6, 6, a1, padding=1, residual=Residual("stem", "codes"))
    down = layer("block2.down", 6, 8, a2, "accumulator", kernel=1, stride=2)
    b1 = layer("block2.conv1", 6, 8, a2, stride=2, padding=1, input="block1.conv2")
    b2 = layer("block2.conv2", 8, 8, b1, padding=1, residual=Residual("block2.down", "accumulator"), global_pool=True)
    fc = layer("fc", 8, 5, b2, "accumulator", kind="linear")
    return IntegerNetwork((stem, a1, a2, down, b1, b2, fc), stage_in)
