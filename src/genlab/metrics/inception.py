"""Where the Inception (2015-12-05) weights for FID come from, and a clear error when they are missing offline."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import torch
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

from genlab.errors import GenlabError

INCEPTION_NAME = "inception-v3-compat"  # torch-fidelity's registered name of its InceptionV3
HUB_FILE_NAME = URL_INCEPTION_V3.rsplit("/", 1)[-1]  # weights-inception-2015-12-05-6726825d.pth


def hub_weights_path() -> Path:
    """$TORCH_HOME/hub/checkpoints/<file>: where torch-fidelity and torchmetrics look before downloading."""
    return Path(torch.hub.get_dir()) / "checkpoints" / HUB_FILE_NAME


def download(url: str, path: Path) -> None:
    """Fetch a file (a separate function so tests can make it fail without a network)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(path), progress=False)


def resolve_inception_weights(path: str | None, key: str = "eval.inception_weights") -> Path:
    """The local weights file: `path` if given, else torch hub's cache file, downloaded there when online."""
    if path:
        weights = Path(path).expanduser()
        if not weights.is_file():
            raise GenlabError(f"{key}={path}: no such file. Give the path of the Inception weights (.pth state_dict).")
        return weights
    weights = hub_weights_path()
    if weights.is_file():
        return weights
    try:
        download(URL_INCEPTION_V3, weights)
    except (urllib.error.URLError, OSError, ValueError) as exc:  # URLError offline; OSError on a read-only cache
        reason = getattr(exc, "reason", exc)
        raise GenlabError(
            f"the Inception weights for FID are not available: {weights} does not exist and downloading "
            f"{URL_INCEPTION_V3} failed ({reason}). Put a copy of {HUB_FILE_NAME} at {weights} (torch-fidelity and "
            f"torchmetrics look there), or pass a local copy with {key}=PATH. Offline, features=domain needs no "
            "download."
        ) from None
    return weights


def fc_is_zero(weights: Path) -> bool:
    """True for pool3-only weight files (no classification layer): their Inception Score is always 1."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
    fc = state.get("fc.weight")
    return fc is None or not bool(fc.abs().sum() > 0)
