"""torch-fidelity's metrics on a folder of sample PNGs against a genlab split, named by the extractor."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch_fidelity
from omegaconf import DictConfig

from genlab.metrics.extractors import ExtractorSpec, create_extractor
from genlab.metrics.inception import fc_is_zero
from genlab.metrics.reference import SplitImages, cache_dir_of, reference_features, reference_key


def fidelity_metrics(spec: ExtractorSpec, samples: Path, real: SplitImages, key: str, n_real: int,
                     cache_dir: Path, batch_size: int, cuda: bool, seed: int) -> dict[str, float]:
    """torch-fidelity's FID, KID, IS and precision/recall, named with the extractor (fid_domain, ...)."""
    n = len(list(samples.glob("*.png")))
    raw = torch_fidelity.calculate_metrics(
        input1=str(samples),
        input2=real,
        input2_cache_name=key,  # the split's features are cached under the weights-aware key
        cache_root=str(cache_dir),
        feature_extractor=spec.name,  # explicit: otherwise precision/recall would build a VGG16
        feature_extractor_weights_path=str(spec.weights_path),
        feature_layer_isc=spec.isc_layer,
        fid=True, kid=True, prc=True, isc=True,
        kid_subset_size=min(1000, n, n_real),
        isc_splits=min(10, n),
        batch_size=batch_size,
        cuda=cuda,
        rng_seed=seed,
        save_cpu_ram=True,
        verbose=sys.stderr.isatty(),  # torch-fidelity's feature-extraction bars, on a terminal only
    )
    f = spec.features
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
    return {names[k]: float(v) for k, v in raw.items() if k in names}


def isc_note(spec: ExtractorSpec) -> tuple[bool, str]:
    """Whether the Inception Score means anything with these weights, and why."""
    if spec.features == "domain":
        return True, "domain IS: exp E KL(p(y|x) || p(y)) over the domain classifier's classes (at most their number)"
    if fc_is_zero(spec.weights_path):
        return False, "these Inception weights have no classification layer (pool3 only): IS is always 1, ignore it"
    return True, "Inception Score over the 1008 ImageNet logits"


@dataclass(frozen=True)
class SplitScore:
    """A folder of samples scored against a split: the metrics, and the reference statistics they used."""

    metrics: dict[str, float]
    key: str  # the reference statistics' cache key
    n_real: int
    cache_dir: Path


def score_against_split(cfg: DictConfig, split: str, spec: ExtractorSpec, samples: Path, cache_dir: str | None,
                        batch_size: int, device: torch.device, seed: int) -> SplitScore:
    """FID, KID, IS and precision/recall of the PNGs in `samples` against `split` of the config's dataset, the
    split's features loaded from (or computed into) the cache under its weights-aware key."""
    folder = cache_dir_of(cache_dir)
    key = reference_key(cfg.data, split, cfg.seed, spec)
    features = reference_features(cfg, split, create_extractor(spec, device), key, folder, batch_size)
    n_real = int(features[spec.fid_layer].shape[0])
    metrics = fidelity_metrics(spec, samples, SplitImages(cfg, split), key, n_real, folder, batch_size,
                               device.type == "cuda", seed)
    return SplitScore(metrics, key, n_real, folder)


def extractor_record(spec: ExtractorSpec) -> dict[str, Any]:
    """The extractor of a result's provenance JSON."""
    return {"features": spec.features, "name": spec.name, "weights_path": str(spec.weights_path.resolve()),
            "weights_sha256": spec.weights_sha256}


def reference_record(score: SplitScore, cfg: DictConfig, split: str) -> dict[str, Any]:
    """The reference statistics of a result's provenance JSON."""
    return {"key": score.key, "cache_dir": str(score.cache_dir.resolve()), "dataset": str(cfg.data.name),
            "split": split, "num_images": score.n_real, "resolution": int(cfg.data.resolution),
            "channels": int(cfg.data.channels)}
