"""The integer network's file format: a JSON description, arrays inline (``.json``) or in an ``.npz``.

:func:`network_to_dict` / :func:`network_from_dict` map an :class:`~golden.integer.IntegerNetwork`
to plain JSON types and back, checking every key; :func:`save_network` / :func:`load_network`
write and read the files (``IntegerNetwork.save`` / ``IntegerNetwork.load`` call them).  Reading
never unpickles: ``.npz`` members are loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from . import spec
from .errors import CheckpointMismatchError, ConfigError
from .integer import IntegerLayer, IntegerNetwork
from .stages import AsqAdapter, OutputStage, Residual

FORMAT_NAME = "lutmac-integer-network"
FORMAT_VERSION = 1


def network_to_dict(network: IntegerNetwork, store_array=None) -> dict:
    """A JSON-able description; arrays go through ``store_array(array) -> ref`` (default: inline lists)."""
    store = store_array or _inline_array
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "input_stage": _stage_to_dict(network.input_stage, store),
        "layers": [_layer_to_dict(layer, store) for layer in network.layers],
    }


def network_from_dict(data: dict, load_array=None) -> IntegerNetwork:
    """The network a :func:`network_to_dict` description stands for; arrays come from ``load_array(ref)``."""
    load = load_array or _inline_load
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise ConfigError(f"not a {FORMAT_NAME} description")
    if data.get("version") != FORMAT_VERSION:
        raise CheckpointMismatchError(f"integer network format version {data.get('version')!r}, expected {FORMAT_VERSION}")
    _check_keys(data, {"format", "version", "input_stage", "layers"}, "network")
    if not isinstance(data["layers"], list):
        raise ConfigError("'layers' must be a list")
    return IntegerNetwork(tuple(_layer_from_dict(item, load) for item in data["layers"]), _stage_from_dict(data["input_stage"], load))


def save_network(network: IntegerNetwork, path) -> None:
    """Write ``.json`` (arrays inline) or ``.npz`` (arrays as npz members, the description as JSON)."""
    path = Path(path)
    if path.suffix == ".json":
        path.write_text(json.dumps(network_to_dict(network), indent=1))
    elif path.suffix == ".npz":
        arrays: dict[str, np.ndarray] = {}

        def store(array: np.ndarray) -> dict:
            key = f"a{len(arrays)}"
            arrays[key] = np.asarray(array)
            return {"npz": key}

        meta = json.dumps(network_to_dict(network, store))
        np.savez_compressed(path, __meta__=np.array(meta), **arrays)
    else:
        raise ConfigError(f"unknown network file type {path.suffix!r}; use .json or .npz")


def load_network(path) -> IntegerNetwork:
    """Read a :func:`save_network` file; anything else raises ConfigError / CheckpointMismatchError."""
    path = Path(path)
    try:
        if path.suffix == ".json":
            return network_from_dict(json.loads(path.read_text()))
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                members = {key: archive[key] for key in archive.files}
            if "__meta__" not in members:
                raise ConfigError(f"{path} has no network description")

            def load(ref):
                if not isinstance(ref, dict) or set(ref) != {"npz"}:
                    raise ConfigError(f"bad array reference {ref!r}")
                if ref["npz"] not in members:
                    raise CheckpointMismatchError(f"{path} lacks array {ref['npz']!r}")
                return members[ref["npz"]]

            return network_from_dict(json.loads(str(members["__meta__"])), load)
    except (json.JSONDecodeError, UnicodeDecodeError, zipfile.BadZipFile, OSError, EOFError) as error:
        raise ConfigError(f"{path} is not a readable integer network: {error}") from error
    raise ConfigError(f"unknown network file type {path.suffix!r}; use .json or .npz")


def _inline_array(array: np.ndarray) -> dict:
    array = np.asarray(array)
    kind = "int64" if array.dtype.kind in "iu" else "float64"
    return {"dtype": kind, "shape": list(array.shape), "data": array.astype(kind).ravel().tolist()}


def _inline_load(ref) -> np.ndarray:
    if not isinstance(ref, dict) or set(ref) != {"dtype", "shape", "data"} or ref["dtype"] not in ("int64", "float64"):
        raise ConfigError(f"bad inline array {str(ref)[:80]!r}")
    try:
        return np.asarray(ref["data"], dtype=ref["dtype"]).reshape(ref["shape"])
    except (TypeError, ValueError) as error:
        raise ConfigError(f"bad inline array: {error}") from error


def _check_keys(data, allowed: set, what: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a mapping, got {type(data).__name__}")
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"{what}: unknown keys {sorted(unknown)}")
    missing = allowed - set(data)
    if missing:
        raise ConfigError(f"{what}: missing keys {sorted(missing)}")


def _cfg_to_dict(cfg: spec.DatapathConfig) -> dict:
    return {
        "scheme": cfg.scheme.value, "weight_bits": cfg.weight.bits, "levels": cfg.weight.levels,
        "level_bits": cfg.weight.level_bits, "act_bits": cfg.act_bits, "frac_bits": cfg.frac_bits,
        "act_format": cfg.act_format, "act_level_bits": cfg.act_level_bits,
    }


def _cfg_from_dict(data: dict) -> spec.DatapathConfig:
    keys = {"scheme", "weight_bits", "levels", "level_bits", "act_bits", "frac_bits", "act_format", "act_level_bits"}
    _check_keys(data, keys, "datapath config")
    return spec.DatapathConfig(
        spec.WeightFormat(data["scheme"], data["weight_bits"], data["levels"], data["level_bits"]),
        data["act_bits"], data["frac_bits"], data["act_format"], data["act_level_bits"],
    )


def _optional(value, convert):
    return None if value is None else convert(value)


def _stage_to_dict(stage: OutputStage, store) -> dict:
    adapter = None
    if stage.adapter is not None:
        adapter = {
            "weights": [store(w) for w in stage.adapter.weights],
            "biases": [store(b) for b in stage.adapter.biases],
            "beta_floor": stage.adapter.beta_floor,
        }
    return {
        "mode": stage.mode, "bits": stage.bits, "step": stage.step,
        "thresholds": _optional(stage.thresholds, store), "levels": _optional(stage.levels, store),
        "adapter": adapter, "global_pool": stage.global_pool,
        "max_pool": None if stage.max_pool is None else list(stage.max_pool), "signed": stage.signed,
    }


def _stage_from_dict(data: dict, load) -> OutputStage:
    _check_keys(data, {"mode", "bits", "step", "thresholds", "levels", "adapter", "global_pool", "max_pool", "signed"}, "output stage")
    adapter = data["adapter"]
    if adapter is not None:
        _check_keys(adapter, {"weights", "biases", "beta_floor"}, "ASQ adapter")
        if not isinstance(adapter["weights"], list) or not isinstance(adapter["biases"], list):
            raise ConfigError("ASQ adapter weights and biases must be lists")
        adapter = AsqAdapter(tuple(map(load, adapter["weights"])), tuple(map(load, adapter["biases"])), adapter["beta_floor"])
    return OutputStage(
        data["mode"], data["bits"], data["step"], _optional(data["thresholds"], load), _optional(data["levels"], load),
        adapter, data["global_pool"], data["max_pool"], data["signed"],
    )


def _layer_to_dict(layer: IntegerLayer, store) -> dict:
    residual = None
    if layer.residual is not None:
        residual = {"source": layer.residual.source, "mode": layer.residual.mode, "stride": layer.residual.stride,
                    "channel_pad": list(layer.residual.channel_pad)}
    return {
        "name": layer.name, "kind": layer.kind, "cfg": _cfg_to_dict(layer.cfg),
        "weight_codes": store(layer.weight_codes), "weight_scale": store(layer.weight_scale), "bias": store(layer.bias),
        "input_step": layer.input_step, "output": _stage_to_dict(layer.output, store),
        "accumulator_width": int(layer.accumulator_width),
        "weight_table": _optional(layer.weight_table, store), "act_table": _optional(layer.act_table, store),
        "stride": list(layer.stride), "padding": list(layer.padding), "dilation": list(layer.dilation),
        "groups": layer.groups, "input": layer.input, "input_adaptive": layer.input_adaptive, "residual": residual,
        "signed_input": layer.signed_input,
    }


LAYER_KEYS = {
    "name", "kind", "cfg", "weight_codes", "weight_scale", "bias", "input_step", "output", "accumulator_width",
    "weight_table", "act_table", "stride", "padding", "dilation", "groups", "input", "input_adaptive", "residual",
    "signed_input",
}


def _layer_from_dict(data: dict, load) -> IntegerLayer:
    _check_keys(data, LAYER_KEYS, f"layer {data.get('name', '?') if isinstance(data, dict) else '?'!r}")
    residual = data["residual"]
    if residual is not None:
        _check_keys(residual, {"source", "mode", "stride", "channel_pad"}, "residual")
        residual = Residual(residual["source"], residual["mode"], residual["stride"], tuple(residual["channel_pad"]))
    return IntegerLayer(
        name=data["name"], kind=data["kind"], cfg=_cfg_from_dict(data["cfg"]),
        weight_codes=load(data["weight_codes"]), weight_scale=load(data["weight_scale"]), bias=load(data["bias"]),
        input_step=data["input_step"], output=_stage_from_dict(data["output"], load),
        accumulator_width=data["accumulator_width"],
        weight_table=_optional(data["weight_table"], load), act_table=_optional(data["act_table"], load),
        stride=tuple(data["stride"]), padding=tuple(data["padding"]), dilation=tuple(data["dilation"]),
        groups=data["groups"], input=data["input"], input_adaptive=data["input_adaptive"], residual=residual,
        signed_input=data["signed_input"],
    )

