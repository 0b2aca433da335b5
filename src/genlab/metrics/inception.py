"""Where the Inception (2015-12-05) weights for FID come from, and a clear error when they are missing offline."""

from __future__ import annotations

from pathlib import Path

import torch
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

from genlab.metrics.weights import hub_checkpoint, resolve_weights

INCEPTION_NAME = "inception-v3-compat"  # torch-fidelity's registered name of its InceptionV3
HUB_FILE_NAME = URL_INCEPTION_V3.rsplit("/", 1)[-1]  # weights-inception-2015-12-05-6726825d.pth


def hub_weights_path() -> Path:
    """$TORCH_HOME/hub/checkpoints/<file>: where torch-fidelity and torchmetrics look before downloading."""
    return hub_checkpoint(HUB_FILE_NAME)


def resolve_inception_weights(path: str | None, key: str = "eval.inception_weights") -> Path:
    """The local weights file: `path` if given, else torch hub's cache file, downloaded there when online."""
    return resolve_weights(path, URL_INCEPTION_V3, HUB_FILE_NAME, "Inception weights for FID (.pth state_dict)", key,
                           "torch-fidelity and torchmetrics look there too. Offline, features=domain needs no download.")


def fc_is_zero(weights: Path) -> bool:
    """True for pool3-only weight files (no classification layer): their Inception Score is always 1."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
    fc = state.get("fc.weight")
    return fc is None or not bool(fc.abs().sum() > 0)
