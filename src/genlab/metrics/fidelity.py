"""torch-fidelity's metrics on a folder of sample PNGs against a genlab split, named by the extractor."""

from __future__ import annotations

import sys
from pathlib import Path

import torch_fidelity

from genlab.metrics.extractors import ExtractorSpec
from genlab.metrics.inception import fc_is_zero
from genlab.metrics.reference import SplitImages


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
