"""FashionNet through the demo's steps: batched integer evaluation, energy pricing, `lutmac sim --dataset fashion`."""

import pytest
import torch

from golden.errors import ConfigError
from golden.export import export_model
from golden.layers import calibrate, quantize_model, save_checkpoint
from golden.models import FashionNet
from golden.spec import WeightFormat
from reports import digits, fashion
from reports.app.agreement import evaluate_integer
from reports.app.pricing import energy_rows, synth_keys
from reports.app.simulate import default_dataset, simulate
from reports.energy import load_synthesis
from reports.output import json_text

INSTALLED = (fashion.DEFAULT_ROOT / fashion.FILES["test"][0]).is_file()
needs_fashion = pytest.mark.skipif(not INSTALLED, reason=f"Debian package {fashion.PACKAGE} not installed")


@pytest.fixture(scope="module")
def digits_model():
    data = digits.load_digits_split(0)
    torch.manual_seed(0)
    from reports.app.training import train_float, train_quantized

    model = train_quantized(train_float(data, 0, 2), data, "post", 3, seed=1, epochs=1)
    return data, model, export_model(model)[0]


def test_batches_give_the_single_run_result(digits_model):
    data, model, network = digits_model
    whole = evaluate_integer(model, network, data, batch=1000)
    assert evaluate_integer(model, network, data, batch=64) == whole
    fake, integer, changed, rows = evaluate_integer(model, network, data, batch=64, bound_images=150)
    assert (fake, integer, changed) == whole[:3]
    assert [r["values"] * len(data.y_test) for r in rows] == [r["values"] * 150 for r in whole[3]]


def _fashion_network(scheme="post", bits=4):
    model = quantize_model(FashionNet().eval(), scheme, bits)
    calibrate(model, torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    return model, export_model(model)[0]


def test_energy_rows_price_fashion_net_at_its_shapes(tmp_path):
    from synth_fixture import synth_payload  # noqa: PLC0415  (tests/reports helper)

    f = WeightFormat("post", 4).default_frac_bits
    path = tmp_path / "synth.json"
    path.write_text(json_text(synth_payload([("array", "int", 8, 8, 0, 4, 4, 2800, 40),
                                             ("array", "post_shared", 4, 4, f, 4, 4, 650, 31),
                                             ("array", "post_lut", 4, 4, f, 4, 4, 900, 30)])))
    _, network = _fashion_network()
    assert synth_keys(network, "post", 8, 8) == {("int", 8, 8, 0), ("post_shared", 4, 4, f), ("post_lut", 4, 4, f)}
    rows = [r for r in energy_rows(network, "post", 4, 8, 8, load_synthesis(path), FashionNet(), (1, 1, 28, 28))
            if r["pe_kind"] == "post_shared"]
    assert [r["layer"] for r in rows] == ["features.0", "features.3", "features.6", "features.9", "classifier"]
    assert rows[0]["macs"] == 2 * 16 * 9 * 28 * 28  # the signed input runs as two passes
    assert [r["macs"] for r in rows[1:]] == [32 * 16 * 9 * 14 * 14, 64 * 32 * 9 * 7 * 7, 64 * 64 * 9 * 4 * 4, 1024 * 10]
    with pytest.raises(KeyError):  # DigitsNet's shapes do not fit FashionNet's layers
        energy_rows(network, "post", 4, 8, 8, load_synthesis(path))


@needs_fashion
def test_sim_refuses_more_images_than_the_test_set(tmp_path):
    model, _ = _fashion_network("lsq", 4)
    save_checkpoint(model, tmp_path / "lsq.pt")
    with pytest.raises(ConfigError, match="10001 is more than the 10000 test images the fashion split holds"):
        simulate(checkpoint=tmp_path / "lsq.pt", scheme="lsq", bits=4, images=10_001, data_set="fashion")


def test_sim_takes_the_demo_folders_data_set(tmp_path):
    """``lutmac sim --from`` a main-job folder (FashionNet networks) runs Fashion-MNIST images, as its summary says."""
    _, network = _fashion_network("lsq", 4)
    (tmp_path / "networks").mkdir()
    network.save(tmp_path / "networks" / "lsq_w4.json")
    (tmp_path / "summary.json").write_text(json_text({"dataset": "fashion"}))
    assert default_dataset(None, None, "lsq", 4, tmp_path) == "fashion"
    assert default_dataset(None, None, "post", 4, tmp_path) == "digits"  # no such export: trained now, on digits
    assert default_dataset(tmp_path / "networks" / "lsq_w4.json", None, "lsq", 4, tmp_path) == "digits"
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(ConfigError, match="holds no readable demo summary.json naming its data set"):
        default_dataset(None, None, "lsq", 4, tmp_path)


def test_sim_names_a_network_that_does_not_take_the_images(tmp_path):
    _, network = _fashion_network("lsq", 4)
    network.save(tmp_path / "fashion_lsq.json")
    with pytest.raises(ConfigError, match=r"fashion_lsq.json does not take the digits images .*; give its --dataset"):
        simulate(network=tmp_path / "fashion_lsq.json", images=1, data_set="digits")
