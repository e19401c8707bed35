"""galmet.backbones: every registered body fits the head, its groups, its Grad-CAM layers, the
model names and the config schema, with nothing else to change."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import yaml

from galmet.backbones import AUTO_LAYER, BACKBONES, backbone, saliency_layer
from galmet.config import ConfigError, load_config, load_schema
from galmet.explain import ExplainSettings, saliency_maps
from galmet.model import PretrainedWeightsError, build_model, layer_groups
from galmet.names import MODEL_PATTERN, ensemble_name, model_name, parse_model_name, seed_group

from .conftest import ROOT


@pytest.fixture(scope="module", params=list(BACKBONES))
def built(request):
    torch.manual_seed(0)
    return BACKBONES[request.param], build_model(request.param, "none").eval()


def test_feature_size_is_what_the_body_gives(built):
    spec, m = built
    with torch.no_grad():
        assert m.body(torch.zeros(2, 3, 32, 32)).shape[1] == spec.features
        assert m(torch.zeros(2, 3, 32, 32)).shape == (2,)
    assert m.arch == spec.name


def test_three_groups_cover_every_parameter_once(built):
    spec, m = built
    early, middle, head = layer_groups(m)  # raises when a parameter is left out
    ids = [{id(p) for p in g} for g in (early, middle, head)]
    assert all(ids) and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    first = next(iter(m.body.parameters()))
    assert id(first) in ids[0]  # the stem learns at the early rate
    assert ids[2] == {id(p) for p in m.head.parameters()}


def test_saliency_layers_are_modules_with_their_stride(built):
    """Each registered Grad-CAM layer exists in the body and its map has res / stride cells."""
    spec, m = built
    assert spec.saliency in spec.layers
    modules = dict(m.body.named_modules())
    sizes = {}
    hooks = [modules[name].register_forward_hook(lambda mod, i, o, name=name: sizes.__setitem__(name, o.shape[-1]))
             for name in spec.layers]
    with torch.no_grad():
        m(torch.zeros(2, 3, 64, 64))
    for h in hooks:
        h.remove()
    assert sizes == {name: 64 // stride for name, stride in spec.layers.items()}
    assert saliency_layer(spec.name) == saliency_layer(spec.name, AUTO_LAYER) == spec.saliency


def test_resnets_keep_their_names_and_layer2():
    for arch in ("resnet18", "resnet34", "resnet50"):
        assert model_name(arch, 64, 0) == f"{arch}-64px-seed0"
        assert saliency_layer(arch) == "layer2"


@pytest.mark.parametrize("arch", list(BACKBONES))
def test_every_token_round_trips_through_model_names(arch):
    token = BACKBONES[arch].token
    assert re.fullmatch(r"[a-z][a-z0-9]*", token)
    name = model_name(arch, 32, 3)
    assert name == f"{token}-32px-seed3" and re.fullmatch(MODEL_PATTERN, name)
    assert parse_model_name(name) == {"arch": arch, "resolution": 32, "seed": 3}
    assert model_name(token, 32, 3) == name  # the token itself names it too
    assert parse_model_name(ensemble_name(arch, 16, [0, 1]))["arch"] == arch
    assert seed_group(arch, 16) == f"{token}-16px"


def test_schema_enums_are_the_registry():
    schema = load_schema()["properties"]
    assert schema["train"]["properties"]["arch"]["enum"] == list(BACKBONES)
    layers = schema["saliency"]["properties"]["layer"]["enum"]
    assert layers[0] == AUTO_LAYER and all(name in layers for b in BACKBONES.values() for name in b.layers)
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["saliency"]["layer"] = AUTO_LAYER
    for arch in BACKBONES:
        raw["train"]["arch"] = arch
        assert load_config(raw)["train"]["arch"] == arch
    raw["train"]["arch"], raw["saliency"]["layer"] = "efficientnet_b0", "layer2"  # the demo's, a ResNet layer
    with pytest.raises(ConfigError, match=r"saliency.layer: 'layer2' is not a layer of train.arch efficientnet_b0 "
                                          r"\(it has features.1, .*features.8\); give one of those, or 'auto'"):
        load_config(raw)
    raw["train"]["arch"] = "vgg16"
    with pytest.raises(ConfigError, match=r"train\.arch: 'vgg16' is not one of.*resnet18"):
        load_config(raw)


def test_unknown_arch_and_foreign_layer_are_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"train.arch='vgg16'.*resnet18, resnet34, resnet50"):
        build_model("vgg16")
    with pytest.raises(ValueError, match=r"train.arch='vgg16'"):
        backbone("vgg16")
    with pytest.raises(ValueError, match=r"saliency layer 'features\.3': a resnet18 has layer1, layer2, layer3, "
                                         r"layer4 \(or give 'auto' for its default, layer2\)"):
        saliency_layer("resnet18", "features.3")


@pytest.mark.parametrize("arch", list(BACKBONES))
def test_a_torchvision_state_dict_loads_into_the_body(arch, tmp_path):
    """What ImageNet weights go through (a torchvision file with its classifier): the body takes
    every body weight, the classifier is left out, a file of another architecture is refused."""
    import torchvision

    torch.manual_seed(3)
    tv = torchvision.models.get_model(arch, weights=None)
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    m = build_model(arch, str(tmp_path / "tv.pth"))
    body = m.body.state_dict()
    assert body and all(torch.equal(v, tv.state_dict()[k]) for k, v in body.items())
    other = next(a for a in BACKBONES if BACKBONES[a].classifier != BACKBONES[arch].classifier)
    with pytest.raises(PretrainedWeightsError, match=f"do not fit a {other} body"):
        build_model(other, str(tmp_path / "tv.pth"))


def test_grad_cam_of_every_backbone_at_its_default_layer(built):
    spec, m = built
    x = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    meta = {"arch": spec.name, "resolution": 32, "normalisation": {"mean": [0.2] * 3, "std": [0.2] * 3}}
    maps = saliency_maps(m, meta, x, ExplainSettings(tta=1))
    assert maps.shape == (2, 32, 32) and np.isfinite(maps).all() and np.abs(maps).max() > 0
