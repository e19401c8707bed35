"""The network: a torchvision body (galmet.backbones: ResNets, ...) with the regression head of Wu & Boada (2019).

The head is fastai 0.7's (the paper's code): concatenated adaptive average and max pooling,
then ``BN -> Dropout(0.25) -> Linear(2C, 512) -> ReLU -> BN -> Dropout(0.5) -> Linear(512, 1)``.
The model returns one number per image (shape ``N``).

``pretrained`` is ``none`` (random initialisation), ``imagenet`` (torchvision's weights API:
downloaded once when online, cached under ``$TORCH_HOME/hub/checkpoints``) or the path of a
local file holding a torchvision ``state_dict`` of the same architecture (or a galmet ``model.pt``). When ImageNet
weights cannot be had the build stops with :class:`PretrainedWeightsError` saying how to supply
them: it never falls back to random weights silently.

:func:`layer_groups` splits the network for per-group learning rates into early, middle (as its
backbone's entry says: for a ResNet, as fastai split it, stem + layer1 + layer2 and layer3 +
layer4) and head.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from galmet.backbones import Backbone, backbone
from galmet.config import default, section

log = logging.getLogger("galmet.model")

#: the regression head's size and dropout when none is given: the config schema's ``train.head``.
HEAD_DEFAULT = section("train")["head"]
# ImageNet channel statistics (0..1 units), as torchvision and fastai use them.
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights were asked for and could not be loaded."""


class AdaptiveConcatPool2d(nn.Module):
    """Concatenation of adaptive average and max pooling to 1x1 (fastai's), then flattened."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.amax(dim=(2, 3)), x.mean(dim=(2, 3))], dim=1)


class MetallicityNet(nn.Module):
    """``body`` (a torchvision network without its pooling and classifier) followed by ``head``;
    ``arch`` names its entry in galmet.backbones.

    The head runs in float32 even inside a bfloat16 autocast (training and prediction on CUDA):
    bfloat16 keeps 8 significant bits, so an output near 9 dex would come out in steps of
    1/16 dex (0.036 dex rms from float32, measured on an H200 with the demo's survey model
    before this); the body, where the work is, keeps the autocast."""

    def __init__(self, body: nn.Sequential, head: nn.Sequential, arch: str | None = None):
        super().__init__()
        self.body = body
        self.head = head
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x)
        # the parameters' device, not x's: a plain string while torch.fx traces (galmet.model.inference_graph)
        with torch.autocast(next(self.head.parameters()).device.type, enabled=False):
            return self.head(features.float()).squeeze(-1)


class Ensemble(nn.Module):
    """Networks that see the same input; ``forward`` gives one column per member (``B x M``)."""

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members], dim=1)


def members(model) -> list[nn.Module]:
    """The single networks of a model: an :class:`Ensemble`'s ``members``, else the model itself."""
    return list(model.members) if hasattr(model, "members") else [model]


def make_head(in_features: int, hidden: int = 512, dropout=(0.25, 0.5)) -> nn.Sequential:
    """The paper's regression head for a body with ``in_features`` output channels."""
    p1, p2 = dropout
    return nn.Sequential(
        OrderedDict(
            pool=AdaptiveConcatPool2d(),
            bn1=nn.BatchNorm1d(2 * in_features),
            drop1=nn.Dropout(p1),
            fc1=nn.Linear(2 * in_features, hidden),
            relu=nn.ReLU(inplace=True),
            bn2=nn.BatchNorm1d(hidden),
            drop2=nn.Dropout(p2),
            fc2=nn.Linear(hidden, 1),
        )
    )


def _imagenet_state_dict(arch: str) -> dict:
    import torchvision

    weights = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
    cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # offline, proxy, truncated download, bad hash...
        raise PretrainedWeightsError(
            f"train.pretrained=imagenet: cannot get the ImageNet weights of {arch} "
            f"({type(exc).__name__}: {exc}). Torchvision downloads them from {weights.url} into "
            f"{cache} (the cache under $TORCH_HOME). Offline, supply the file yourself: copy "
            f"{os.path.basename(weights.url)} there (or set TORCH_HOME to a directory whose "
            f"hub/checkpoints/ holds it), or set train.pretrained to the path of a local "
            f"state_dict file, or to 'none' to train from random weights on purpose."
        ) from exc


def _local_state_dict(path: str) -> dict:
    p = Path(path).expanduser()
    if not p.is_file():
        raise PretrainedWeightsError(
            f"train.pretrained={path!r}: no such file. Give 'none', 'imagenet' or the path of a "
            "torchvision state_dict (.pth) of train.arch or a galmet model.pt"
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PretrainedWeightsError(
            f"train.pretrained={path!r}: cannot load it as a torch state_dict ({exc})"
        ) from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # a galmet model.pt: take its body
        obj = {k[len("body."):]: v for k, v in obj.items() if k.startswith("body.")}
    if not isinstance(obj, dict):
        raise PretrainedWeightsError(f"train.pretrained={path!r}: holds a {type(obj).__name__}, not a state_dict")
    return obj


def _load_body(body: nn.Sequential, state: dict, spec: Backbone, source: str) -> None:
    arch = spec.name
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(spec.classifier)}
    try:
        result = body.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes that do not match
        raise PretrainedWeightsError(
            f"pretrained weights from {source} do not fit a {arch} body (was the file made for "
            f"another architecture?): {str(exc).splitlines()[-1].strip()}"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        raise PretrainedWeightsError(
            f"pretrained weights from {source} do not fit a {arch} body: "
            f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]} "
            f"(was the file made for another architecture?)"
        )


def build_model(
    arch: str = default("train.arch"),
    pretrained: str = "none",
    hidden: int = HEAD_DEFAULT["hidden"],
    dropout=tuple(HEAD_DEFAULT["dropout"]),
) -> MetallicityNet:
    """The body of ``arch`` (a name in galmet.backbones.BACKBONES) with the paper's head.

    ``pretrained``: ``"none"``, ``"imagenet"`` or a local file path (see the module docstring);
    ``"none"`` unless asked (the schema's ``imagenet`` is the workflow's choice: a library call
    never downloads by default).
    """
    spec = backbone(arch)
    body = spec.build_body()
    pretrained = str(pretrained)
    if pretrained == "imagenet":
        _load_body(body, _imagenet_state_dict(arch), spec, "ImageNet")
    elif pretrained != "none":
        _load_body(body, _local_state_dict(pretrained), spec, pretrained)
    return MetallicityNet(body, make_head(spec.features, hidden=hidden, dropout=dropout), arch=arch)


def layer_groups(model: MetallicityNet) -> list[list[nn.Parameter]]:
    """Parameters in three groups: [early, middle, head], early and middle as the model's backbone
    entry splits its body (a ResNet: stem + layer1 + layer2, layer3 + layer4)."""
    early_modules, middle_modules = backbone(model.arch).groups(model.body)
    early = [p for m in early_modules for p in m.parameters()]
    middle = [p for m in middle_modules for p in m.parameters()]
    head = list(model.head.parameters())
    n_all = sum(1 for _ in model.parameters())
    if len(early) + len(middle) + len(head) != n_all:
        raise AssertionError("layer groups do not cover every parameter of the model")
    return [early, middle, head]


def set_body_trainable(model: MetallicityNet, trainable: bool) -> None:
    """Freeze (or unfreeze) the body: ``requires_grad`` off for every body parameter.

    A frozen body must also be kept in eval mode by the trainer (see :func:`train_mode`) so that
    its batch-norm running statistics stay as they are.
    """
    for p in model.body.parameters():
        p.requires_grad_(trainable)


def train_mode(model: MetallicityNet, body_frozen: bool) -> None:
    """Put the model in training mode; a frozen body stays in eval mode (its BN is frozen too)."""
    model.train()
    if body_frozen:
        model.body.eval()


def normalisation_constants(mean, std, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` shaped ``1 x 3 x 1 x 1`` so that ``x_uint8 * scale + shift`` is normalised.

    ``mean`` and ``std`` are per-channel in 0..1 units (as stored in a model's meta).
    """
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return 1.0 / (255.0 * std_t), -mean_t / std_t


def to_input(x_nchw_uint8: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """uint8 ``N x C x H x W`` (any memory format, on the model's device) -> normalised float32.

    The memory format is kept: an NHWC array permuted to NCHW stays channels_last, which is
    what the CUDA path wants, with no copy.
    """
    x = x_nchw_uint8.to(torch.float32)
    return x.mul_(scale).add_(shift)


def resolve_device(device: str | None = "auto") -> torch.device:
    """``auto`` (CUDA when there is one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here: use 'auto' or 'cpu'")
    return torch.device(device)


def cpu_state(model: nn.Module) -> dict:
    """A copy of the model's state_dict on the CPU (safe to keep while training goes on)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


#: the attribute :func:`galmet.modelfile.load` sets on the networks it gives: weights from a file,
#: for prediction, which :func:`inference_graph` may then run through a graph made for CPU inference.
FOR_INFERENCE = "galmet_for_inference"


def inference_graph(model: nn.Module) -> nn.Module:
    """The network that prediction runs on the CPU for ``model``: PyTorch's own graph for CPU
    inference (``torch.fx.experimental.optimization.optimize_for_inference``: batch norms folded
    into the convolutions, dropout removed, the convolutions run in oneDNN's blocked layout with
    their weights reordered once, not at every call) where ``model`` came from a model file
    (:data:`FOR_INFERENCE`), is in eval mode, in float32 on the CPU, and oneDNN is on (the fast
    kernels: the reproducible mode turns oneDNN off, and then ``model`` itself runs, to the bit as
    it was trained). Its outputs agree with ``model``'s to float32 rounding (~1e-6 dex); on 2 cores
    it runs the demo's ResNet-18 at 64 px 1.5 times as many images a second as eager PyTorch
    (``benchmarks/survey_speed.py``), a ResNet-34 at 128 px 1.06 times.

    Built once and kept beside ``model`` (not in its state dict); built again when a weight or
    buffer of ``model`` changed (in place, or moved); ``model`` itself where the graph cannot be
    built (an architecture it cannot trace: logged at INFO).
    """
    if (not getattr(model, FOR_INFERENCE, False) or model.training or not torch.backends.mkldnn.is_available()
            or not torch.backends.mkldnn.enabled):
        return model
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.device.type != "cpu" for t in tensors) or any(p.dtype != torch.float32 for p in model.parameters()):
        return model
    key = tuple((t.data_ptr(), t._version) for t in tensors)
    cached = model.__dict__.get("_galmet_graph")
    if cached is not None and cached[0] == key:
        return cached[1]
    from torch.fx.experimental.optimization import optimize_for_inference

    model.__dict__.pop("_galmet_graph", None)  # the graph is built from a copy of model: not of the old graph
    try:
        with warnings.catch_warnings():  # its oneDNN modules are TorchScript ones, which torch deprecates
            warnings.simplefilter("ignore", FutureWarning)
            graph = optimize_for_inference(model)
    except Exception as exc:  # noqa: BLE001 - any failure to trace leaves the eager network, which is correct
        log.info("eager PyTorch for inference: no CPU inference graph for this network (%s: %s)",
                 type(exc).__name__, exc)
        graph = model
    model.__dict__["_galmet_graph"] = (key, graph)  # beside the modules: not a submodule, not in state_dict
    return graph
