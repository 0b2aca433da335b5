"""CLIP image embeddings for CLIP-FD and CMMD, through torch-fidelity's own CLIP extractor.

torch-fidelity builds OpenAI's CLIP image tower from the weights file (a TorchScript archive, as OpenAI publishes
them): downloaded into torch hub's cache when online, or any local copy offline. genlab resolves and hashes that
file itself (the same file name torch-fidelity caches), so reference statistics are keyed by the weights, and passes
it to torch-fidelity. Its preprocessing: TF1-style bilinear resize to the model's resolution (336 for
vit-l-14-336px), CLIP's normalisation, the projected image embedding (not normalised; CMMD normalises it).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from torch_fidelity.feature_extractor_clip import MODEL_METADATA, MODEL_URLS

from genlab.errors import GenlabError

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


def check_clip_file(path: Path) -> None:
    """A TorchScript archive, as OpenAI publishes CLIP and torch-fidelity reads it, checked from its zip directory
    alone (no 900 MB load): anything else fails here, before anything is sampled or written."""
    try:
        with zipfile.ZipFile(path) as archive:
            scripted = any("/code/" in name for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        scripted = False
    if not scripted:
        raise GenlabError(f"{path} is not a CLIP TorchScript archive: give OpenAI's .pt file (e.g. ViT-L-14-336px.pt, "
                          "as torch-fidelity downloads it).")
