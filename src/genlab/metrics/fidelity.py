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
from genlab.metrics.feature_metrics import (DENSITY_COVERAGE_K, cmmd, density_coverage_from_balls, inside_real_balls,
                                            kth_neighbour_radii)
from genlab.metrics.inception import fc_is_zero
from genlab.metrics.reference import cache_dir_of, reference_features, reference_key
from genlab.metrics.spread import bootstrap_spread, seed_spread


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


@dataclass(frozen=True)
class Reference:
    """A split's features and what every score against them reuses: torch-fidelity's FID statistics of the split,
    and the radii of its k-nearest-neighbour balls (density/coverage, and their bootstrap). Built once per split."""

    features: dict[str, Tensor]
    fid_stats: dict[str, Any]
    radii: Tensor

    @classmethod
    def of(cls, spec: ExtractorSpec, features: dict[str, Tensor]) -> "Reference":
        layer = spec.fid_layer
        return cls(features, fid_featuresdict_to_statistics(features, layer),
                   kth_neighbour_radii(features[layer], DENSITY_COVERAGE_K))

    @property
    def size(self) -> int:
        return int(next(iter(self.features.values())).shape[0])


def metrics_from_features(spec: ExtractorSpec, fake: dict[str, Tensor], ref: Reference,
                          kwargs: dict[str, Any]) -> dict[str, float]:
    """Every metric of a sample set's features against the split's, named with the extractor (fid_dinov2, ...).

    FID, KID, precision/recall and the Inception Score are torch-fidelity's own functions, as `calculate_metrics`
    calls them; density/coverage (and CMMD for CLIP embeddings) come from metrics/feature_metrics.py."""
    f, layer, real = spec.features, spec.fid_layer, ref.features
    raw: dict[str, Any] = {}
    if spec.isc_layer is not None:
        raw.update(isc_featuresdict_to_metric(fake, spec.isc_layer, **kwargs))
    raw.update(fid_statistics_to_metric(fid_featuresdict_to_statistics(fake, layer), ref.fid_stats, kwargs["verbose"]))
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
    dc = density_coverage_from_balls(inside_real_balls(real[layer], fake[layer], ref.radii))
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
    """Scores folders of samples against `split` of the config's dataset: the extractor is built, the split's
    features loaded from (or computed into) the cache under its weights-aware key, and the Reference derived from
    them once, for every folder."""

    def __init__(self, cfg: DictConfig, split: str, spec: ExtractorSpec, cache_dir: str | None, batch_size: int,
                 device: torch.device) -> None:
        self.spec, self.batch_size, self.device = spec, batch_size, device
        self.cache_dir = cache_dir_of(cache_dir)
        self.key = reference_key(cfg.data, split, cfg.seed, spec)
        self.extractor = create_extractor(spec, device)
        self.reference = Reference.of(spec, reference_features(cfg, split, self.extractor, self.key, self.cache_dir,
                                                               batch_size))
        self.n_real = self.reference.size

    def score(self, samples: Path, seed: int) -> SplitScore:
        """Every metric of the PNGs in `samples`; `seed` seeds KID's subsets and the IS splits."""
        n = len(list(samples.glob("*.png")))
        kwargs = fidelity_kwargs(self.spec, n, self.n_real, self.batch_size, self.device.type == "cuda", seed)
        fake = folder_features(self.extractor, samples, kwargs)
        metrics = metrics_from_features(self.spec, fake, self.reference, kwargs)
        return SplitScore(metrics, self.key, self.n_real, self.cache_dir, fake)

    def spread(self, scores: list[SplitScore], seeds: list[int], bootstrap: int,
               unit: str) -> tuple[dict[str, float], dict[str, Any], str]:
        """The metrics (means over the seeds' scores), their spread, and a sentence saying which spread it is:
        std over several seeds, else a bootstrap of the one sample set (`bootstrap` resamples; <= 1: none). `unit`
        names what was scored in that sentence ("samples", "images")."""
        per_seed = [s.metrics for s in scores]
        mean, std = seed_spread(per_seed)
        if len(scores) > 1:
            return mean, {"std": std, "per_seed": dict(zip(map(str, seeds), per_seed))}, (
                f"mean and sample std (ddof 1) over the sample seeds {seeds}")
        if bootstrap <= 1:
            return mean, {}, f"none: one sample {'seed' if unit == 'samples' else 'set'} and bootstrap={bootstrap}"
        layer = self.spec.fid_layer
        fake = scores[0].fake[layer]
        boot = bootstrap_spread(self.spec.features, fake, self.reference.features[layer], bootstrap,
                                seeds[0] if seeds else 0, radii=self.reference.radii)
        return mean, {"bootstrap": boot}, (f"bootstrap over {bootstrap} resamples of the {len(fake)} {unit} (reference "
                                           f"fixed): std, mean and 95 % interval of {', '.join(boot)}")


def extractor_record(spec: ExtractorSpec) -> dict[str, Any]:
    """The extractor of a result's provenance JSON."""
    return {"features": spec.features, "name": spec.name, "model": spec.model,
            "weights_path": str(spec.weights_path), "weights_sha256": spec.weights_sha256}


def reference_record(score: SplitScore, cfg: DictConfig, split: str) -> dict[str, Any]:
    """The reference statistics of a result's provenance JSON."""
    return {"key": score.key, "cache_dir": str(score.cache_dir), "dataset": str(cfg.data.name),
            "split": split, "num_images": score.n_real, "resolution": int(cfg.data.resolution),
            "channels": int(cfg.data.channels)}
