"""Quantized layers, model conversion per scheme, calibration, checkpoints, training sanity."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import golden
from golden import QuantConv2d, QuantLinear, calibrate, clamp_scales_, load_checkpoint, quantize_model, save_checkpoint
from golden.errors import (
    CheckpointMismatchError,
    CodeRangeError,
    ConfigError,
    NonFiniteInputError,
    UnknownSchemeError,
    UnsupportedBitsError,
)
from golden.quantizers import APoTQuantizer, ASQQuantizer, LCQQuantizer, LSQQuantizer, PowerQuantizer


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.body = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 1, groups=2), nn.ReLU())
        self.hidden = nn.Linear(8, 8)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = self.body(x).mean(dim=(2, 3))
        return self.head(torch.relu(self.hidden(x)))


BODY = {
    "lsq": (LSQQuantizer, LSQQuantizer),
    "asq": (LSQQuantizer, ASQQuantizer),
    "pot": (PowerQuantizer, LSQQuantizer),
    "post": (PowerQuantizer, LSQQuantizer),
    "asq_post": (PowerQuantizer, ASQQuantizer),
    "apot": (APoTQuantizer, APoTQuantizer),
    "lcq": (LCQQuantizer, LCQQuantizer),
}


@pytest.fixture
def net():
    torch.manual_seed(0)
    return SmallNet()


@pytest.mark.parametrize("scheme", golden.SCHEMES)
def test_conversion_layout(net, scheme):
    model = quantize_model(net, scheme, 4)
    assert isinstance(net.stem, nn.Conv2d) and type(net.stem) is nn.Conv2d  # the float model is untouched
    assert isinstance(model.stem, QuantConv2d) and isinstance(model.head, QuantLinear)
    for edge, signed_input in ((model.stem, True), (model.head, False)):
        assert edge.weight_quantizer.config() == {"type": "lsq", "bits": 8, "signed": True, "symmetric": False, "per_channel": True}
        assert edge.act_quantizer.config()["bits"] == 8 and edge.act_quantizer.signed is signed_input
    weight_type, act_type = BODY[scheme]
    for layer in (model.body[0], model.body[2], model.hidden):
        assert type(layer.weight_quantizer) is weight_type and type(layer.act_quantizer) is act_type
        assert layer.weight_quantizer.bits == 4 and layer.act_quantizer.bits == 4
    assert torch.equal(model.body[2].weight, net.body[2].weight) and model.body[2].groups == 2
    if scheme in ("post", "asq_post"):
        assert model.hidden.weight_quantizer.base == "sqrt2" and model.hidden.weight_quantizer.per_channel
    if scheme == "pot":
        assert model.hidden.weight_quantizer.base == "2"
    if scheme == "lcq":
        assert model.hidden.weight_quantizer.lwn and not model.hidden.act_quantizer.signed
    if act_type is ASQQuantizer:
        assert model.body[2].act_quantizer.channels == 16 and model.hidden.act_quantizer.channels == 8


@pytest.mark.parametrize("scheme", golden.SCHEMES)
def test_calibrated_model_runs_trains_and_roundtrips_a_checkpoint(net, scheme, tmp_path):
    x = torch.randn(6, 3, 8, 8)
    model = quantize_model(net, scheme, 4)
    model.train()
    scales = {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith((".s", ".alpha"))}
    calibrate(model, x)
    assert model.training  # mode restored
    params = dict(model.named_parameters())
    assert len(scales) == 10 and all(not torch.equal(params[n], v) for n, v in scales.items())  # all data-initialized
    target = torch.randn(6, 5)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss = F.mse_loss(model(x), target)
        loss.backward()
        opt.step()
        clamp_scales_(model)
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    path = tmp_path / "model.pt"
    save_checkpoint(model, path)
    fresh = quantize_model(net, scheme, 4)
    load_checkpoint(fresh, path)
    model.eval()
    fresh.eval()
    assert torch.equal(fresh(x), model(x))


def test_quantized_layers_compute_what_they_say(net):
    model = quantize_model(net, "post", 3)
    calibrate(model, torch.randn(4, 3, 8, 8))
    conv, lin = model.body[2], model.hidden
    x = torch.rand(2, 16, 5, 5)
    expected = F.conv2d(conv.act_quantizer(x), conv.weight_quantizer(conv.weight), conv.bias, groups=2)
    assert torch.equal(conv(x), expected)
    z = torch.rand(3, 8)
    assert torch.equal(lin(z), F.linear(lin.act_quantizer(z), lin.weight_quantizer(lin.weight), lin.bias))


def test_calibrate_initializes_each_layer_once_from_its_quantized_input(net):
    model = quantize_model(net, "lsq", 4)
    seen = {}
    original = QuantConv2d.init_from

    def spy(self, x):
        seen.setdefault(id(self), []).append(x.clone())
        original(self, x)

    QuantConv2d.init_from = spy
    x = torch.randn(4, 3, 8, 8)
    try:
        calibrate(model, x)
    finally:
        QuantConv2d.init_from = original
    assert sorted(len(v) for v in seen.values()) == [1, 1, 1]
    model.eval()
    with torch.no_grad():
        assert torch.equal(seen[id(model.stem)][0], x)
        assert torch.equal(seen[id(model.body[0])][0], torch.relu(model.bn(model.stem(x))))


def test_clamp_scales_keeps_training_alive(net):
    model = quantize_model(net, "post", 4)
    calibrate(model, torch.randn(2, 3, 8, 8))
    model.hidden.weight_quantizer.alpha.data.fill_(-0.5)
    model.stem.act_quantizer.s.data.fill_(0.0)
    with pytest.raises(CodeRangeError):
        model(torch.randn(2, 3, 8, 8))
    clamp_scales_(model, 2**-10)
    assert bool((model.hidden.weight_quantizer.alpha == 2**-10).all()) and model.stem.act_quantizer.s.item() == 2**-10
    healthy = model.body[0].weight_quantizer.alpha.detach().clone()
    assert bool((healthy > 2**-10).all())
    clamp_scales_(model, 2**-10)
    assert torch.equal(model.body[0].weight_quantizer.alpha.detach(), healthy)  # healthy scales untouched
    model(torch.randn(2, 3, 8, 8))


def test_unknown_scheme_and_unsupported_bits(net):
    with pytest.raises(UnknownSchemeError):
        quantize_model(net, "lsq2", 4)
    for scheme, bits in (("lsq", 1), ("lsq", 9), ("apot", 7), ("post", 4.0), ("lcq", 0)):
        with pytest.raises(UnsupportedBitsError):
            quantize_model(net, scheme, bits)
    with pytest.raises(UnsupportedBitsError):
        quantize_model(net, "lsq", 4, first_last_bits=12)
    with pytest.raises(ConfigError):
        quantize_model(nn.Sequential(nn.ReLU()), "lsq", 4)
    with pytest.raises(ConfigError):
        calibrate(net, torch.randn(1, 3, 8, 8))  # nothing quantized


def test_non_finite_input_raises(net):
    model = quantize_model(net, "asq_post", 4)
    calibrate(model, torch.randn(2, 3, 8, 8))
    x = torch.randn(2, 3, 8, 8)
    x[1, 2, 3, 4] = float("nan")
    with pytest.raises(NonFiniteInputError):
        model(x)
    with pytest.raises(NonFiniteInputError):
        calibrate(model, x)


def test_checkpoint_mismatches_raise_and_leave_the_model_untouched(net, tmp_path):
    model = quantize_model(net, "lsq", 4)
    calibrate(model, torch.randn(3, 3, 8, 8))
    path = tmp_path / "lsq4.pt"
    save_checkpoint(model, path)

    for other in (quantize_model(net, "lsq", 3), quantize_model(net, "asq", 4), quantize_model(net, "post", 4)):
        before = {k: v.clone() for k, v in other.state_dict().items()}
        with pytest.raises(CheckpointMismatchError):
            load_checkpoint(other, path)
        assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())

    wider = SmallNet()
    wider.hidden = nn.Linear(8, 8, bias=False)
    with pytest.raises(CheckpointMismatchError, match="missing|unexpected"):
        load_checkpoint(quantize_model(wider, "lsq", 4), path)

    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["hidden.weight"] = torch.zeros(9, 8)
    torch.save(payload, tmp_path / "reshaped.pt")
    with pytest.raises(CheckpointMismatchError, match="shape"):
        load_checkpoint(quantize_model(net, "lsq", 4), tmp_path / "reshaped.pt")

    torch.save(model.state_dict(), tmp_path / "bare.pt")  # a plain state dict is not a checkpoint
    with pytest.raises(CheckpointMismatchError):
        load_checkpoint(quantize_model(net, "lsq", 4), tmp_path / "bare.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointMismatchError):
        load_checkpoint(quantize_model(net, "lsq", 4), tmp_path / "junk.pt")


def test_checkpoint_errors_are_one_line_naming_the_file(net, tmp_path):
    model = quantize_model(net, "lsq", 4)
    calibrate(model, torch.randn(3, 3, 8, 8))
    good = tmp_path / "lsq4.pt"
    save_checkpoint(model, good)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:300])
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    torch.save({"format": "lutmac-integer-network"}, tmp_path / "other.pt")
    payload = torch.load(good, weights_only=True)
    payload["state_dict"]["head.weight"] = torch.zeros(6, 8)
    payload["state_dict"]["extra.bias"] = torch.zeros(1)
    del payload["state_dict"]["bn.running_mean"]
    torch.save(payload, tmp_path / "mixed.pt")
    not_ours = "is not a lutmac-quantized-model checkpoint: "
    cases = [
        ("junk.pt", model, not_ours + r"torch.load\(weights_only=True\) refused it", pickle.UnpicklingError),
        ("empty.pt", model, not_ours + "the file is empty or truncated", EOFError),
        ("cut.pt", model, not_ours + "the file is corrupt or not written by torch.save", RuntimeError),
        ("bare.pt", model, not_ours + r"it holds a dict without a format tag \(a bare state dict\?\)", None),
        ("list.pt", model, not_ours + "it holds a list", None),
        ("other.pt", model, not_ours + "it holds format 'lutmac-integer-network'", None),
        ("lsq4.pt", quantize_model(net, "post", 4), "is from another model: quantizer configuration differs at", None),
        ("mixed.pt", model, r"does not fit the model: 1 missing key\(s\) \(bn.running_mean\); 1 unexpected key\(s\) "
         r"\(extra.bias\); 1 shape mismatch\(es\) \(e.g. head.weight: checkpoint \(6, 8\), model \(5, 8\)\)", None),
    ]
    for name, target, message, cause in cases:
        with pytest.raises(CheckpointMismatchError) as info:
            load_checkpoint(target, tmp_path / name)
        text = str(info.value)
        assert "\n" not in text and text.startswith(str(tmp_path / name)), text
        assert info.match(message), text
        assert type(info.value.__cause__) is cause if cause is not None else info.value.__cause__ is None


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoint_loading_runs_no_code(net, tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "lutmac-quantized-model", "state_dict": _Payload()}, f, protocol=2)
    with pytest.raises(CheckpointMismatchError):
        load_checkpoint(quantize_model(net, "lsq", 4), path)


def test_lazy_exports():
    assert golden.LSQQuantizer is LSQQuantizer and golden.QuantConv2d is QuantConv2d
    assert "quantize_model" in dir(golden)
    with pytest.raises(AttributeError):
        golden.NoSuchThing  # noqa: B018


class _DownsampleBlock(nn.Module):
    """conv1 and the 1x1 downsample read the same tensor, as in a ResNet basic block."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.down = nn.Conv2d(8, 16, 1, stride=2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.relu(self.conv1(x) + self.down(x))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("scheme", ["lsq", "asq_post", "lcq"])
def test_layers_reading_one_tensor_share_its_quantizer(scheme):
    model = quantize_model(_DownsampleBlock(), scheme, 4)
    assert model.conv1.act_quantizer is model.down.act_quantizer
    assert model.stem.act_quantizer is not model.conv1.act_quantizer
    calibrate(model, torch.rand(4, 1, 8, 8))
    model(torch.rand(2, 1, 8, 8)).sum().backward()
