"""Choose a feature extractor by name (`inception` | `domain` | `dinov2` | `clip`), identify its weights, and build it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.utils import create_feature_extractor

from genlab.errors import GenlabError
from genlab.metrics.clip import (CLIP_MODELS, DEFAULT_CLIP_MODEL, check_clip_file, clip_extractor_name, clip_file_name,
                                 clip_url)
from genlab.metrics.dinov2 import (DEFAULT_DINOV2_MODEL, DINOV2_MODELS, DINOV2_NAME, dinov2_file_name, dinov2_url,
                                   read_state_dict)
from genlab.metrics.domain import DOMAIN_NAME
from genlab.metrics.inception import INCEPTION_NAME, resolve_inception_weights
from genlab.metrics.inception_clean import INCEPTION_CLEAN_NAME
from genlab.metrics.weights import resolve_weights

FEATURES = ("inception", "domain", "dinov2", "clip")
PROTOCOLS = ("torch-fidelity", "clean")  # how images reach the extractor: torch-fidelity's, or clean-fid's resize

_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime): the Inception file is 91 MiB."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


@dataclass(frozen=True)
class ExtractorSpec:
    """Which extractor, with which weights: everything a metric's provenance and a cache key need."""

    features: str  # one of FEATURES: the suffix of every metric name (fid_inception, kid_domain, fid_dinov2, ...)
    name: str  # torch-fidelity's registered name
    weights_path: Path
    weights_sha256: str
    fid_layer: str  # features for FID, KID, precision/recall, density/coverage (and CMMD)
    isc_layer: str | None  # logits for the Inception Score; None: the extractor has no classes (dinov2, clip)
    model: str | None = None  # the variant of dinov2 / clip (vit-l-14, ...); None for inception and domain
    protocol: str = "torch-fidelity"  # or "clean": clean-fid's resize before Inception (metrics/inception_clean.py)

    @property
    def layers(self) -> list[str]:
        """Every layer, always requested together so that torch-fidelity's feature cache files are shared."""
        return [self.fid_layer] + ([self.isc_layer] if self.isc_layer else [])

    @property
    def weights_id(self) -> str:
        """A short id of the weights for file names."""
        return self.weights_sha256[:12]

    @property
    def cache_tag(self) -> str:
        """What the reference features depend on besides the data and weights: the features, and the protocol."""
        return self.features + ("-clean" if self.protocol == "clean" else "")


@dataclass(frozen=True)
class PretrainedFeatures:
    """A feature network with published variants whose weights file is downloaded, or given: dinov2 and clip."""

    models: tuple[str, ...]
    default: str
    url: Callable[[str], str]
    file_name: Callable[[str], str]  # its name in torch hub's cache folder
    what: str  # the weights, named in errors ({model} is filled in)
    extractor_name: Callable[[str], str]  # torch-fidelity's registered name
    layer: str
    check_file: Callable[[Path], object] | None = None


PRETRAINED = {
    "dinov2": PretrainedFeatures(DINOV2_MODELS, DEFAULT_DINOV2_MODEL, dinov2_url, dinov2_file_name,
                                 "DINOv2 {model} weights (facebookresearch/dinov2's .pth)", lambda _: DINOV2_NAME,
                                 "dinov2", read_state_dict),
    "clip": PretrainedFeatures(CLIP_MODELS, DEFAULT_CLIP_MODEL, clip_url, clip_file_name,
                               "CLIP {model} weights (OpenAI's TorchScript .pt)", clip_extractor_name, "clip",
                               check_clip_file),
}


@dataclass(frozen=True)
class FeatureSettings:
    """The feature settings of `genlab eval`, `genlab table` and the `eval` block, for code that has none of them."""

    features: str
    inception_weights: str | None = None
    domain_classifier: str | None = None
    feature_model: str | None = None
    feature_weights: str | None = None
    protocol: str = "torch-fidelity"


def extractor_spec(settings: Any, prefix: str = "eval.") -> ExtractorSpec:
    """Resolve the weights of the extractor that `settings` names (its features, inception_weights,
    domain_classifier, and feature_model / feature_weights for dinov2 and clip), downloading them when online and
    not cached, and hash them."""
    features = str(settings.features)
    model, weights = getattr(settings, "feature_model", None), getattr(settings, "feature_weights", None)
    if model is not None and features not in PRETRAINED:
        raise GenlabError(f"{prefix}feature_model={model}: only features=dinov2 and features=clip have variants.")
    protocol = str(getattr(settings, "protocol", None) or "torch-fidelity")
    if protocol not in PROTOCOLS:
        raise GenlabError(f"{prefix}protocol={protocol}: use {' or '.join(PROTOCOLS)}.")
    if protocol == "clean" and features != "inception":
        raise GenlabError(f"{prefix}protocol=clean is clean-fid's resize before Inception: it needs "
                          f"features=inception, not {features}.")
    if features == "inception":
        key = f"{prefix}feature_weights" if weights else f"{prefix}inception_weights"
        path = resolve_inception_weights(weights or settings.inception_weights, key=key)
        name = INCEPTION_CLEAN_NAME if protocol == "clean" else INCEPTION_NAME
        return ExtractorSpec(features, name, path, file_sha256(path), "2048", "logits_unbiased", protocol=protocol)
    if features == "domain":
        classifier = settings.domain_classifier
        if not classifier:
            raise GenlabError(
                f"features=domain needs {prefix}domain_classifier=PATH, a checkpoint of experiment=classifier_* "
                "trained on the same dataset."
            )
        path = Path(classifier).expanduser()
        if not path.is_file():
            raise GenlabError(f"{prefix}domain_classifier={classifier}: no such checkpoint file.")
        return ExtractorSpec(features, DOMAIN_NAME, path, file_sha256(path), "pooled", "logits")
    if features in PRETRAINED:
        known = PRETRAINED[features]
        model = model or known.default
        if model not in known.models:
            raise GenlabError(f"{prefix}feature_model={model}: features={features} has the variants "
                              f"{', '.join(known.models)}.")
        path = resolve_weights(weights, known.url(model), known.file_name(model), known.what.format(model=model),
                               f"{prefix}feature_weights", "Offline, features=domain needs no download.")
        if known.check_file is not None:
            known.check_file(path)  # a foreign or truncated file fails here, before anything is sampled or written
        return ExtractorSpec(features, known.extractor_name(model), path, file_sha256(path), known.layer, None, model)
    raise GenlabError(f"unknown features={features!r}: use {', '.join(FEATURES)}.")


def create_extractor(spec: ExtractorSpec, device: torch.device | str = "cpu") -> FeatureExtractorBase:
    """The torch-fidelity extractor of the spec, in eval mode on `device`."""
    extractor = create_feature_extractor(
        spec.name, spec.layers, cuda=False, feature_extractor_weights_path=str(spec.weights_path), verbose=False
    )
    return extractor.to(device)


class FeatureLayer(nn.Module):
    """One layer of a torch-fidelity extractor as a plain module: torchmetrics' `feature=` for FID.

    torchmetrics passes the images to a custom module unchanged, so the FID callback feeds the same uint8
    B x 3 x H x W tensors torch-fidelity would. `num_features` spares torchmetrics a dummy 299 x 299 forward.
    """

    def __init__(self, extractor: FeatureExtractorBase, layer: str) -> None:
        super().__init__()
        self.extractor = extractor
        self.index = list(extractor.get_requested_features_list()).index(layer)
        # Inception's layers are named by their size ("2048"); the others know their own, or are asked once.
        self.num_features = int(getattr(extractor, "num_features", 0) or (layer if layer.isdigit() else 0)
                                or self.forward(torch.zeros(1, 3, 16, 16, dtype=torch.uint8)).shape[1])

    def forward(self, images: Tensor) -> Tensor:
        """uint8 B x 3 x H x W -> features [B, num_features]."""
        return self.extractor(images)[self.index]
