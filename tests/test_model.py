"""The network: the paper's head, layer groups, and where pretrained weights come from."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

from galmet.model import (
    PretrainedWeightsError,
    build_model,
    layer_groups,
    set_body_trainable,
    train_mode,
)


def test_head_is_the_papers():
    m = build_model("resnet18", "none")
    kinds = [type(layer).__name__ for layer in m.head]
    assert kinds == ["AdaptiveConcatPool2d", "BatchNorm1d", "Dropout", "Linear", "ReLU",
                     "BatchNorm1d", "Dropout", "Linear"]
    assert m.head.bn1.num_features == 2 * 512 and m.head.fc1.out_features == 512
    assert (m.head.drop1.p, m.head.drop2.p) == (0.25, 0.5)
    assert m.head.fc2.out_features == 1
    m.eval()
    assert m(torch.zeros(3, 3, 32, 32)).shape == (3,)


def test_the_output_is_not_rounded_to_bfloat16_steps_under_autocast():
    """Training and prediction on CUDA run in a bfloat16 autocast; the head must not: an output
    near 9 dex would come out in steps of 1/16 dex (0.036 dex rms, measured on a GPU). The CPU's
    autocast rounds the same way, so this runs anywhere."""
    torch.manual_seed(0)
    m = build_model("resnet18", "none").eval()
    with torch.no_grad():
        m.head.fc2.bias.fill_(9.0)  # a trained model's outputs: around the target's mean
    x = torch.rand(16, 3, 32, 32) * torch.linspace(0.5, 4, 16)[:, None, None, None]  # brighter and brighter
    with torch.no_grad():
        fp32 = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = m(x)
    assert bf16.dtype == torch.float32
    assert fp32.std() > 0.05  # outputs that differ between images
    assert (bf16 - fp32).abs().max() < 0.01  # the body's bfloat16 only; 1/16 dex steps would be up to 0.031 off
    assert len(torch.unique(bf16)) == len(bf16)


def test_resnet50_head_width():
    m = build_model("resnet50", "none")
    assert m.head.bn1.num_features == 2 * 2048


def test_layer_groups_split_like_fastai():
    m = build_model("resnet34", "none")
    early, middle, head = layer_groups(m)
    ids = [{id(p) for p in g} for g in (early, middle, head)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, ids)) == len(list(m.parameters()))
    assert id(m.body.conv1.weight) in ids[0] and id(m.body.layer2[0].conv1.weight) in ids[0]
    assert id(m.body.layer3[0].conv1.weight) in ids[1] and id(m.body.layer4[0].conv1.weight) in ids[1]
    assert id(m.head.fc2.weight) in ids[2]


def test_frozen_body_has_no_grad_and_keeps_bn_statistics():
    m = build_model("resnet18", "none")
    set_body_trainable(m, False)
    train_mode(m, body_frozen=True)
    assert not m.body.training and m.head.training
    before = {k: v.clone() for k, v in m.body.state_dict().items()}
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        m(torch.randn(4, 3, 32, 32)).pow(2).mean().backward()
        opt.step()
    assert all(p.grad is None for p in m.body.parameters())
    for k, v in m.body.state_dict().items():
        assert torch.equal(v, before[k]), k  # weights and BN running statistics alike


def test_imagenet_offline_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(PretrainedWeightsError) as info:
        build_model("resnet34", "imagenet")
    msg = str(info.value)
    assert "resnet34-" in msg and ".pth" in msg  # the file to supply
    assert str(tmp_path / "hub" / "checkpoints") in msg  # where to put it
    assert "train.pretrained" in msg and "none" in msg  # the other ways out


def test_local_pretrained_file_loads_the_body(tmp_path):
    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "weights.pth"
    torch.save(ref.state_dict(), path)
    m = build_model("resnet18", str(path))
    assert torch.equal(m.body.conv1.weight, ref.conv1.weight)
    assert torch.equal(m.body.layer4[1].bn2.running_var, ref.layer4[1].bn2.running_var)
    with pytest.raises(PretrainedWeightsError, match="resnet50"):
        build_model("resnet50", str(path))  # another architecture's file
    with pytest.raises(PretrainedWeightsError, match="no such file"):
        build_model("resnet18", str(tmp_path / "missing.pth"))


def test_unknown_arch_names_value():
    with pytest.raises(ValueError, match="resnet99"):
        build_model("resnet99", "none")
