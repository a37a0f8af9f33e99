"""Tests of the integer network file format (golden.serialize): round trips and malformed files."""

from __future__ import annotations

import numpy as np
import pytest
from goldentest import residual_network

from golden.errors import (
    CheckpointMismatchError,
    ConfigError,
    UnknownSchemeError,
)
from golden.integer import IntegerNetwork
from golden.spec import WeightScheme
from golden.stages import Codes


@pytest.mark.parametrize("suffix", (".json", ".npz"))
@pytest.mark.parametrize("act_mode", ("uniform", "threshold", "asq"))
def test_network_round_trips_through_files(tmp_path, suffix, act_mode):
    rng = np.random.default_rng(18)
    net = residual_network(rng, "lcq" if act_mode == "threshold" else "pot", act_mode)
    path = tmp_path / f"net{suffix}"
    net.save(path)
    loaded = IntegerNetwork.load(path)
    x = rng.uniform(0, 1.5, (2, 3, 10, 10))
    for (name, ours), theirs in zip(net.run(x).items(), loaded.run(x).values(), strict=True):
        if isinstance(ours, Codes):
            np.testing.assert_array_equal(ours.codes, theirs.codes, err_msg=name)
            np.testing.assert_array_equal(ours.step, theirs.step)
        else:
            np.testing.assert_array_equal(ours.values, theirs.values, err_msg=name)
    for mine, other in zip(net.layers, loaded.layers, strict=True):
        np.testing.assert_array_equal(mine.weight_codes, other.weight_codes)
        assert mine.cfg == other.cfg and mine.weight_scale.tolist() == other.weight_scale.tolist()


def test_malformed_network_files(tmp_path):
    rng = np.random.default_rng(19)
    net = residual_network(rng)
    data = net.to_dict()
    bad_cases = [
        ({**data, "format": "other"}, ConfigError),
        ({**data, "version": 99}, CheckpointMismatchError),
        ({**data, "extra": 1}, ConfigError),
        ({**data, "layers": "x"}, ConfigError),
        ({**data, "layers": [{**data["layers"][0], "colour": "red"}]}, ConfigError),
        ({**data, "layers": [{k: v for k, v in data["layers"][0].items() if k != "bias"}]}, ConfigError),
        ({**data, "layers": [{**data["layers"][0], "weight_codes": {"dtype": "int64", "shape": [2], "data": [1, 2, 3]}}]}, ConfigError),
        ({**data, "layers": [{**data["layers"][0], "weight_codes": [1, 2]}]}, ConfigError),
        ({**data, "layers": [{**data["layers"][0], "cfg": {**data["layers"][0]["cfg"], "scheme": "fp8"}}]}, UnknownSchemeError),
    ]
    for document, error in bad_cases:
        with pytest.raises(error):
            IntegerNetwork.from_dict(document)
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable"):
        IntegerNetwork.load(path)
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(ConfigError):
        IntegerNetwork.load(path)
    np.savez(tmp_path / "no_meta.npz", a0=np.zeros(3))
    with pytest.raises(ConfigError, match="no network description"):
        IntegerNetwork.load(tmp_path / "no_meta.npz")
    net.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as archive:
        members = {k: archive[k] for k in archive.files if k != "a0"}
    np.savez(tmp_path / "missing.npz", **members)
    with pytest.raises(CheckpointMismatchError, match="lacks array"):
        IntegerNetwork.load(tmp_path / "missing.npz")
    with pytest.raises(ConfigError, match="file type"):
        net.save(tmp_path / "net.pkl")
    with pytest.raises(ConfigError, match="file type"):
        IntegerNetwork.load(tmp_path / "net.pkl")


def test_files_hold_plain_scheme_names(tmp_path):
    net = residual_network(np.random.default_rng(20), "post")
    assert all(type(layer["cfg"]["scheme"]) is str for layer in net.to_dict()["layers"])
    net.save(tmp_path / "net.json")
    text = (tmp_path / "net.json").read_text()
    assert '"scheme": "post"' in text and "WeightScheme" not in text
    assert IntegerNetwork.load(tmp_path / "net.json").layers[0].cfg.scheme is WeightScheme.POST
