"""The evaluation protocol written beside every number: what a reader needs to compare an FID with another.

FIDs from different code bases differ by more than most papers' gains when any of these differ (clean-fid; Stein
et al. 2023): the feature network and its exact weights, how images are resized to its input, how many samples
are scored and against which reference set, the sampler and its NFE, the EMA, and how many sample seeds.
"""

from __future__ import annotations

from typing import Any

from genlab.metrics.dinov2 import INPUT_SIZE as DINOV2_SIZE
from genlab.metrics.extractors import ExtractorSpec
from genlab.metrics.inception_clean import SIZE as INCEPTION_SIZE

TF1_BILINEAR = {
    "filter": "bilinear, no antialiasing (TensorFlow 1's resize, as the original FID code)",
    "implementation": "torch_fidelity.interpolate_compat_tensorflow.interpolate_bilinear_2d_like_tensorflow1x",
}
CLIP_SIZES = {"rn50x4": 288, "rn50x16": 384, "rn50x64": 448, "vit-l-14-336px": 336}  # the others: 224


def resize_record(spec: ExtractorSpec, resolution: int) -> dict[str, Any]:
    """How images reach the extractor's input: filter, implementation and size."""
    if spec.protocol == "clean":
        return {"filter": "bicubic with antialiasing, per channel in float32, not quantised again (clean-fid)",
                "implementation": "PIL.Image.resize(BICUBIC) in mode F (genlab.metrics.inception_clean)",
                "size": INCEPTION_SIZE}
    if spec.features == "inception":
        return {**TF1_BILINEAR, "size": INCEPTION_SIZE}
    if spec.features == "dinov2":
        return {**TF1_BILINEAR, "size": DINOV2_SIZE}
    if spec.features == "clip":
        return {**TF1_BILINEAR, "size": CLIP_SIZES.get(str(spec.model), 224)}
    return {"filter": "none: the domain classifier reads the images at the data's resolution",
            "implementation": None, "size": resolution}


def protocol_record(spec: ExtractorSpec, *, samples: int, seeds: list[int], dataset: str, split: str,
                    reference_images: int, resolution: int, sampler: dict[str, Any] | None, weights: str | None,
                    spread: str) -> dict[str, Any]:
    """Every protocol field of one evaluation (see the module doc): the JSON's `protocol` block."""
    return {
        "preset": spec.protocol,
        "features": spec.features,
        "extractor": spec.name,
        "model": spec.model,
        "weights_sha256": spec.weights_sha256,
        "resize": resize_record(spec, resolution),
        "samples": samples,
        "reference": {"dataset": dataset, "split": split, "images": reference_images},
        "sample_seeds": seeds,
        "sampler": None if sampler is None else {k: sampler.get(k) for k in ("name", "steps", "spacing", "nfe")},
        "ema": weights,
        "spread": spread,
    }
