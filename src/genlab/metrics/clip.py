"""CLIP image embeddings for CLIP-FD and CMMD, through torch-fidelity's own CLIP extractor.

torch-fidelity builds OpenAI's CLIP image tower from the weights file (a TorchScript archive, as OpenAI publishes
them): downloaded into torch hub's cache when online, or any local copy offline. genlab resolves and hashes that
file itself (the same file name torch-fidelity caches), so reference statistics are keyed by the weights, and passes
it to torch-fidelity. Its preprocessing: TF1-style bilinear resize to the model's resolution (336 for
vit-l-14-336px), CLIP's normalisation, the projected image embedding (not normalised; CMMD normalises it).
"""

from __future__ import annotations

from torch_fidelity.feature_extractor_clip import MODEL_METADATA, MODEL_URLS

CLIP_MODELS = tuple(name.removeprefix("clip-") for name in MODEL_METADATA)  # rn50, ..., vit-l-14-336px
DEFAULT_CLIP_MODEL = "vit-l-14-336px"  # Jayasumana et al.'s CMMD embedding


def clip_extractor_name(model: str) -> str:
    """torch-fidelity's registered name of a CLIP model."""
    return f"clip-{model}"


def clip_url(model: str) -> str:
    return MODEL_URLS[clip_extractor_name(model)]


def clip_file_name(model: str) -> str:
    """The file name torch-fidelity gives the download in torch hub's cache."""
    name = clip_extractor_name(model)
    return f"{name}-{MODEL_METADATA[name]['hash']}.pt"
