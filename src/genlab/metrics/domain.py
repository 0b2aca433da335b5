"""FID features from a classifier trained in this project on the dataset itself ("domain" features).

Inception was trained on 299 x 299 ImageNet photos; on 16 x 16 gray digits its features say little, and its
weights may not be at hand offline. A noise-aware classifier from `experiment=classifier_*`, evaluated at
t = 0, gives features made for the data: its pooled penultimate activations feed FID, KID and
precision/recall, and its logits a domain Inception Score. Numbers from it are comparable only with numbers
from the same checkpoint, which is why metric names say `_domain` and the weights hash goes into cache keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor
from torch_fidelity import register_feature_extractor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from genlab.config import kind_facts, kinds_where
from genlab.errors import GenlabError
from genlab.metrics.images import from_extractor_uint8
from genlab.runs.checkpoint import checkpoint_kind, load_classifier, read_checkpoint

DOMAIN_NAME = "genlab-domain"
POOLED = "pooled"  # penultimate features [B, C_mid]: FID, KID, precision/recall
LOGITS = "logits"  # class logits [B, num_classes]: the domain Inception Score


class DomainFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity extractor around a genlab classifier checkpoint (`feature_extractor_weights_path`)."""

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError(f"{name} needs feature_extractor_weights_path: a genlab classifier checkpoint")
        module = load_classifier(feature_extractor_weights_path)
        self.classifier = module.classifier.requires_grad_(False).eval()
        self.channels = int(module.cfg.data.channels)
        self.resolution = int(module.cfg.data.resolution)

    @property
    def num_features(self) -> int:
        return self.classifier.num_features

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """uint8 B x 3 x H x W -> the requested features, in `features_list` order."""
        x = from_extractor_uint8(images, self.channels)  # [B, C, H, W] in [-1, 1]
        if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
            # Images of another size (e.g. a folder of PNGs): bring them to the size the classifier was trained on.
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", antialias=True)
        t = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)  # t = 0: clean images
        pooled = self.classifier.features(x, t)  # [B, C_mid]
        out = {POOLED: pooled, LOGITS: self.classifier.head(pooled)}
        return tuple(out[name].float() for name in self.features_list)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return POOLED, LOGITS

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": LOGITS, "fid": POOLED, "kid": POOLED, "prc": POOLED}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> Tensor:
        return torch.zeros(1, 3, 16, 16, dtype=torch.uint8)


def check_domain_classifier(path: str | Path, data: DictConfig, key: str) -> None:
    """The classifier must have been trained on the dataset it scores (same name, channels and resolution)."""
    ckpt = read_checkpoint(path)
    kind = checkpoint_kind(ckpt)
    if not kind_facts(kind).classifies:
        wanted = " or ".join(repr(k) for k in kinds_where("classifies"))
        raise GenlabError(f"{key}={path} holds a {kind!r} model; it must be a {wanted} checkpoint.")
    theirs = ckpt["hyper_parameters"]["config"]["data"]
    ours = (str(data.name), int(data.channels), int(data.resolution))
    found = (str(theirs.get("name")), int(theirs.get("channels") or 0), int(theirs.get("resolution") or 0))
    if found != ours:
        raise GenlabError(
            f"{key}={path} was trained on {found[0]} ({found[1]} channel(s), {found[2]} px), but the images to score "
            f"are {ours[0]} ({ours[1]} channel(s), {ours[2]} px). Train a classifier on the same data "
            f"(experiment=classifier_* with the same data block)."
        )


if DOMAIN_NAME not in FEATURE_EXTRACTORS_REGISTRY:  # registering twice is an error in torch-fidelity
    register_feature_extractor(DOMAIN_NAME, DomainFeatureExtractor)
