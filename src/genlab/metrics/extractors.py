"""Choose a feature extractor by name (`inception` | `domain`), identify its weights, and build it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.utils import create_feature_extractor

from genlab.errors import GenlabError
from genlab.metrics.domain import DOMAIN_NAME
from genlab.metrics.inception import INCEPTION_NAME, resolve_inception_weights

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

    features: str  # "inception" | "domain": the suffix of every metric name (fid_inception, kid_domain, ...)
    name: str  # torch-fidelity's registered name
    weights_path: Path
    weights_sha256: str
    fid_layer: str  # features for FID, KID, precision/recall
    isc_layer: str  # logits for the Inception Score

    @property
    def layers(self) -> list[str]:
        """Both layers, always requested together so that torch-fidelity's feature cache files are shared."""
        return [self.fid_layer, self.isc_layer]

    @property
    def weights_id(self) -> str:
        """A short id of the weights for file names."""
        return self.weights_sha256[:12]


def extractor_spec(features: str, inception_weights: str | None, domain_classifier: str | None,
                   prefix: str = "eval.") -> ExtractorSpec:
    """Resolve the weights of the chosen extractor (downloading Inception's when online) and hash them."""
    if features == "inception":
        path = resolve_inception_weights(inception_weights, key=f"{prefix}inception_weights")
        return ExtractorSpec(features, INCEPTION_NAME, path, file_sha256(path), "2048", "logits_unbiased")
    if features == "domain":
        if not domain_classifier:
            raise GenlabError(
                f"features=domain needs {prefix}domain_classifier=PATH, a checkpoint of experiment=classifier_* "
                "trained on the same dataset."
            )
        path = Path(domain_classifier).expanduser()
        if not path.is_file():
            raise GenlabError(f"{prefix}domain_classifier={domain_classifier}: no such checkpoint file.")
        return ExtractorSpec(features, DOMAIN_NAME, path, file_sha256(path), "pooled", "logits")
    raise GenlabError(f"unknown features={features!r}: use inception or domain.")


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
        # Inception's layers are named by their size ("2048"); the domain extractor knows its own.
        self.num_features = int(getattr(extractor, "num_features", 0) or layer)

    def forward(self, images: Tensor) -> Tensor:
        """uint8 B x 3 x H x W -> features [B, num_features]."""
        return self.extractor(images)[self.index]
