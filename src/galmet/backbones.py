"""The backbone registry: every torchvision body galmet can put under the paper's head.

A :class:`Backbone` says all the rest of the package needs to know of an architecture:

``name``          the config's ``train.arch`` and torchvision's model name (``resnet18``)
``token``         its part of a model name (galmet.names: ``[a-z][a-z0-9]*``, so no ``_``)
``features``      the number of channels the body gives the head
``body``          torchvision model -> the body (an ``nn.Sequential`` whose ``state_dict`` keys are
                  torchvision's, so that ImageNet and local weights load into it unchanged)
``groups``        body -> (early modules, middle modules): with the head, the three learning-rate
                  groups of stage 2 (``train.stage2.lrs``)
``group_help``    the early and middle groups in words, for error messages
``layers``        the body layers Grad-CAM may use (config ``saliency.layer``), each with its
                  stride (input pixels per cell of its map)
``saliency``      the default Grad-CAM layer (``saliency.layer: auto``)
``classifier``    the prefix of torchvision's classifier in its ``state_dict`` (not loaded)

Registering an entry in :data:`BACKBONES` is all it takes: the config schema's ``train.arch`` and
``saliency.layer`` enums (galmet.config.load_schema) and the model names are built from it.
This module does not import torch (the workflow imports it through galmet.names).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backbone", "BACKBONES", "backbone", "by_token", "saliency_layer", "saliency_layers", "AUTO_LAYER"]

#: ``saliency.layer`` value meaning "the backbone's default".
AUTO_LAYER = "auto"


@dataclass(frozen=True)
class Backbone:
    """One architecture (see the module docstring for the fields)."""

    name: str
    token: str
    features: int
    body: Callable
    groups: Callable
    group_help: tuple[str, str]
    layers: dict
    saliency: str
    classifier: str

    def build_body(self):
        """A randomly initialised body (torchvision's initialisation, from torch's global RNG)."""
        import torchvision
        from torch import nn

        return nn.Sequential(OrderedDict(self.body(torchvision.models.get_model(self.name, weights=None))))


# ----------------------------------------------------------------------------- ResNet

_RESNET_BODY = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def _resnet_body(net) -> list:
    return [(name, getattr(net, name)) for name in _RESNET_BODY]


def _resnet_groups(body) -> tuple[list, list]:
    """fastai's split of a ResNet: early (stem, layer1, layer2), middle (layer3, layer4)."""
    early = [body.conv1, body.bn1, body.layer1, body.layer2]
    return early, [body.layer3, body.layer4]


def _resnet(name: str, features: int) -> Backbone:
    return Backbone(
        name=name, token=name, features=features, body=_resnet_body, groups=_resnet_groups,
        group_help=("stem, layer1, layer2", "layer3, layer4"),
        layers={"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}, saliency="layer2", classifier="fc.",
    )


BACKBONES: dict[str, Backbone] = {
    b.name: b for b in (_resnet("resnet18", 512), _resnet("resnet34", 512), _resnet("resnet50", 2048))
}


def backbone(name: str) -> Backbone:
    """The registered backbone ``name`` (``train.arch``); ValueError naming the choices."""
    if name in BACKBONES:
        return BACKBONES[name]
    raise ValueError(f"train.arch={name!r}: unknown architecture; choose one of {', '.join(BACKBONES)}")


def by_token(token: str) -> Backbone | None:
    """The backbone whose model-name token is ``token`` (None for an unregistered one)."""
    return next((b for b in BACKBONES.values() if b.token == token), None)


def saliency_layer(arch: str, layer: str = AUTO_LAYER) -> str:
    """The Grad-CAM layer of a model of ``arch``: ``layer``, or for ``auto`` its backbone's default
    (a ResNet's ``layer2``). ValueError for a layer the backbone does not register."""
    spec = backbone(arch)
    if layer == AUTO_LAYER:
        return spec.saliency
    if layer not in spec.layers:
        raise ValueError(f"saliency layer {layer!r}: a {arch} has {', '.join(spec.layers)} (or give "
                         f"{AUTO_LAYER!r} for its default, {spec.saliency})")
    return layer


def saliency_layers() -> list[str]:
    """Every registered Grad-CAM layer name, in registry order, without repeats."""
    return list(dict.fromkeys(layer for b in BACKBONES.values() for layer in b.layers))


# ----------------------------------------------------------------------------- EfficientNet-B0
# features.0 (stem) to features.3 reach stride 8 as a ResNet's layer2 does: the early group, and the
# default Grad-CAM layer (8 x 8 at 64 px); features.4 to features.8 (the 1x1 conv to 1280) the middle.
BACKBONES["efficientnet_b0"] = Backbone(
    name="efficientnet_b0", token="effb0", features=1280, body=lambda net: [("features", net.features)],
    groups=lambda body: (list(body.features[:4]), list(body.features[4:])),
    group_help=("features.0 to features.3", "features.4 to features.8"),
    layers={f"features.{i}": s for i, s in enumerate((2, 4, 8, 16, 16, 32, 32, 32), start=1)},
    saliency="features.3", classifier="classifier.",
)
