"""Where a feature extractor's pretrained weights come from: a local file when given, else torch hub's cache folder,
downloaded there when online; a clear error when they are missing offline."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import torch

from genlab.errors import GenlabError


def hub_checkpoint(file_name: str) -> Path:
    """$TORCH_HOME/hub/checkpoints/<file>: where torch hub (and so torch-fidelity and torchmetrics) keeps weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def download(url: str, path: Path) -> None:
    """Fetch a file (a separate function so tests can make it fail without a network)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(path), progress=False)


def resolve_weights(path: str | None, url: str, file_name: str, what: str, key: str, offline_hint: str) -> Path:
    """The local weights file: `path` if given, else the hub cache file `file_name`, downloaded from `url` when it is
    not there yet. `what` names the weights and `key` the setting in errors; `offline_hint` says what works offline."""
    if path:
        weights = Path(path).expanduser()
        if not weights.is_file():
            raise GenlabError(f"{key}={path}: no such file. Give the path of the {what}.")
        return weights
    weights = hub_checkpoint(file_name)
    if weights.is_file():
        return weights
    try:
        download(url, weights)
    except (urllib.error.URLError, OSError, ValueError) as exc:  # URLError offline; OSError on a read-only cache
        reason = getattr(exc, "reason", exc)
        raise GenlabError(
            f"the {what} are not available: {weights} does not exist and downloading {url} failed ({reason}). "
            f"Put a copy of {file_name} at {weights}, or pass a local copy with {key}=PATH. {offline_hint}"
        ) from None
    return weights
