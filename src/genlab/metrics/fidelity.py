"""The metrics of a folder of sample PNGs against a genlab split, named by the extractor: torch-fidelity's FID,
KID, precision/recall and IS, computed from features extracted once, with density/coverage and CMMD beside them."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.metric_fid import fid_featuresdict_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_featuresdict_to_metric
from torch_fidelity.metric_kid import kid_featuresdict_to_metric
from torch_fidelity.metric_prc import prc_featuresdict_to_metric
from torch_fidelity.utils import extract_featuresdict_from_input_id

from genlab.metrics.extractors import ExtractorSpec, create_extractor
from genlab.metrics.feature_metrics import cmmd, density_coverage
from genlab.metrics.inception import fc_is_zero
from genlab.metrics.reference import cache_dir_of, reference_features, reference_key


def fidelity_kwargs(spec: ExtractorSpec, n: int, n_real: int, batch_size: int, cuda: bool, seed: int) -> dict[str, Any]:
    """The keyword arguments torch-fidelity's `calculate_metrics` would get for this extractor and these sizes."""
    return dict(
        feature_extractor=spec.name,  # explicit: otherwise precision/recall would build a VGG16
        feature_extractor_weights_path=str(spec.weights_path),
        feature_layer_isc=spec.isc_layer, feature_layer_fid=spec.fid_layer, feature_layer_kid=spec.fid_layer,
        feature_layer_prc=spec.fid_layer,
        kid_subset_size=min(1000, n, n_real),
        isc_splits=min(10, n),
        batch_size=batch_size,
        cuda=cuda,
        rng_seed=seed,
        save_cpu_ram=True,
        verbose=sys.stderr.isatty(),  # torch-fidelity's feature-extraction bars, on a terminal only
    )


def folder_features(extractor: FeatureExtractorBase, samples: Path, kwargs: dict[str, Any]) -> dict[str, Tensor]:
    """Features {layer: [N, F]} of a folder of PNGs, read the way torch-fidelity reads a folder input."""
    return extract_featuresdict_from_input_id(1, extractor, input1=str(samples), **kwargs)


def metrics_from_features(spec: ExtractorSpec, fake: dict[str, Tensor], real: dict[str, Tensor],
                          kwargs: dict[str, Any]) -> dict[str, float]:
    """Every metric of a sample set's features against the split's, named with the extractor (fid_dinov2, ...).

    FID, KID, precision/recall and the Inception Score are torch-fidelity's own functions, as `calculate_metrics`
    calls them; density/coverage (and CMMD for CLIP embeddings) come from metrics/feature_metrics.py."""
    f, layer = spec.features, spec.fid_layer
    raw: dict[str, Any] = {}
    if spec.isc_layer is not None:
        raw.update(isc_featuresdict_to_metric(fake, spec.isc_layer, **kwargs))
    stats = [fid_featuresdict_to_statistics(d, layer) for d in (fake, real)]
    raw.update(fid_statistics_to_metric(*stats, kwargs["verbose"]))
    raw.update(kid_featuresdict_to_metric(fake, real, layer, **kwargs))
    raw.update(prc_featuresdict_to_metric(fake, real, layer, **kwargs))
    names = {
        "frechet_inception_distance": f"fid_{f}",
        "kernel_inception_distance_mean": f"kid_{f}_mean",
        "kernel_inception_distance_std": f"kid_{f}_std",
        "inception_score_mean": f"isc_{f}_mean",
        "inception_score_std": f"isc_{f}_std",
        "precision": f"precision_{f}",
        "recall": f"recall_{f}",
        "f_score": f"f_score_{f}",
    }
    metrics = {names[k]: float(v) for k, v in raw.items() if k in names}
    dc = density_coverage(real[layer], fake[layer])
    metrics[f"density_{f}"], metrics[f"coverage_{f}"] = dc.density, dc.coverage
    if f == "clip":
        metrics["cmmd_clip"] = cmmd(real[layer], fake[layer])
    return metrics


def isc_note(spec: ExtractorSpec) -> tuple[bool, str]:
    """Whether the Inception Score means anything with these weights, and why."""
    if spec.isc_layer is None:
        return False, f"{spec.features} features have no class logits: no Inception Score"
    if spec.features == "domain":
        return True, "domain IS: exp E KL(p(y|x) || p(y)) over the domain classifier's classes (at most their number)"
    if fc_is_zero(spec.weights_path):
        return False, "these Inception weights have no classification layer (pool3 only): IS is always 1, ignore it"
    return True, "Inception Score over the 1008 ImageNet logits"


@dataclass(frozen=True)
class SplitScore:
    """A folder of samples scored against a split: the metrics, the reference statistics they used, and the
    samples' features (for a bootstrap)."""

    metrics: dict[str, float]
    key: str  # the reference statistics' cache key
    n_real: int
    cache_dir: Path
    fake: dict[str, Tensor] = field(repr=False, default_factory=dict)


class SplitScorer:
    """Scores folders of samples against `split` of the config's dataset: the extractor is built and the split's
    features loaded from (or computed into) the cache under its weights-aware key once, for every folder."""

    def __init__(self, cfg: DictConfig, split: str, spec: ExtractorSpec, cache_dir: str | None, batch_size: int,
                 device: torch.device) -> None:
        self.spec, self.batch_size, self.device = spec, batch_size, device
        self.cache_dir = cache_dir_of(cache_dir)
        self.key = reference_key(cfg.data, split, cfg.seed, spec)
        self.extractor = create_extractor(spec, device)
        self.real = reference_features(cfg, split, self.extractor, self.key, self.cache_dir, batch_size)
        self.n_real = int(self.real[spec.fid_layer].shape[0])

    def score(self, samples: Path, seed: int) -> SplitScore:
        """Every metric of the PNGs in `samples`; `seed` seeds KID's subsets and the IS splits."""
        n = len(list(samples.glob("*.png")))
        kwargs = fidelity_kwargs(self.spec, n, self.n_real, self.batch_size, self.device.type == "cuda", seed)
        fake = folder_features(self.extractor, samples, kwargs)
        metrics = metrics_from_features(self.spec, fake, self.real, kwargs)
        return SplitScore(metrics, self.key, self.n_real, self.cache_dir, fake)


def extractor_record(spec: ExtractorSpec) -> dict[str, Any]:
    """The extractor of a result's provenance JSON."""
    return {"features": spec.features, "name": spec.name, "model": spec.model,
            "weights_path": str(spec.weights_path.resolve()), "weights_sha256": spec.weights_sha256}


def reference_record(score: SplitScore, cfg: DictConfig, split: str) -> dict[str, Any]:
    """The reference statistics of a result's provenance JSON."""
    return {"key": score.key, "cache_dir": str(score.cache_dir.resolve()), "dataset": str(cfg.data.name),
            "split": split, "num_images": score.n_real, "resolution": int(cfg.data.resolution),
            "channels": int(cfg.data.channels)}
