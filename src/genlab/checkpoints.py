"""Load a genlab checkpoint for sampling, with the EMA or the raw weights, or fail with a clear message."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from genlab.errors import GenlabError
from genlab.models.diffusion import DiffusionModule

if TYPE_CHECKING:
    import lightning as L

    from genlab.models.classifier import ClassifierModule
    from genlab.models.gan import GANModule


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """torch.load a checkpoint safely (weights_only: no code runs from the file)."""
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"checkpoint {path} does not exist. Pass ckpt=PATH to a .ckpt file under runs/*/*/checkpoints/.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" not in str(exc).lower() and "weights only" not in str(exc).lower():
            raise GenlabError(f"checkpoint {path} cannot be read ({str(exc).splitlines()[0][:200]}).") from None
        raise GenlabError(
            f"checkpoint {path} was refused: loading it would unpickle arbitrary Python objects, which can run code. "
            "genlab reads checkpoints with torch.load(weights_only=True); genlab's own checkpoints never need more. "
            "If you trust the file, re-save its tensors and config as a plain dict."
        ) from None
    except Exception as exc:  # truncated zip, pickle errors, foreign formats
        raise GenlabError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
            "It may be truncated or not a genlab checkpoint; use another one, e.g. the run's last.ckpt."
        ) from None
    if not isinstance(ckpt, dict) or "config" not in ckpt.get("hyper_parameters", {}) or "state_dict" not in ckpt:
        raise GenlabError(f"{path} is not a genlab checkpoint: it has no genlab config or no state_dict.")
    return ckpt


def checkpoint_kind(ckpt: dict[str, Any]) -> str:
    """The model kind ("ddpm", "classifier", ...) recorded in a checkpoint's config."""
    return str(ckpt["hyper_parameters"]["config"].get("model", {}).get("kind"))


def _require_kind(ckpt: dict[str, Any], path: str | Path, kind: str, role: str) -> None:
    found = checkpoint_kind(ckpt)
    if found != kind:
        raise GenlabError(f"{path} holds a {found!r} model, but {role} must be a {kind!r} checkpoint.")


def _load_state(module: torch.nn.Module, state: dict[str, Any], path: str | Path) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise GenlabError(f"checkpoint {path} does not match its own config: {str(exc).splitlines()[0]}") from None


def _weights(ckpt: dict[str, Any], path: str | Path, ema: bool) -> dict[str, Any]:
    """The EMA (default) or raw state_dict of a checkpoint.

    Lightning's EMAWeightAveraging stores the averaged weights under `state_dict` and the raw
    ones under `current_model_state`; a run without EMA has only `state_dict` (raw).
    """
    has_ema = "current_model_state" in ckpt
    if ema and not has_ema:
        print(f"genlab: {path} has no EMA weights (trained with model.ema.enabled=false); using the raw weights.")
    return ckpt["state_dict"] if (ema or not has_ema) else ckpt["current_model_state"]


def load_diffusion(path: str | Path, ema: bool = True, ckpt: dict[str, Any] | None = None) -> DiffusionModule:
    """The DiffusionModule of a checkpoint in eval mode, with EMA weights (default) or the raw ones.

    `ckpt`: the checkpoint already read from `path` by read_checkpoint, so that it is read only once.
    """
    ckpt = ckpt if ckpt is not None else read_checkpoint(path)
    _require_kind(ckpt, path, "ddpm", "ckpt")
    module = DiffusionModule(ckpt["hyper_parameters"]["config"])
    _load_state(module, _weights(ckpt, path, ema), path)
    return module.eval()


def load_gan(path: str | Path, ema: bool = True, ckpt: dict[str, Any] | None = None) -> "GANModule":
    """The GANModule of a checkpoint in eval mode, with the EMA generator (default) or the raw one; `ckpt` as for
    load_diffusion."""
    from genlab.models.gan import GANModule

    ckpt = ckpt if ckpt is not None else read_checkpoint(path)
    _require_kind(ckpt, path, "gan", "ckpt")
    module = GANModule(ckpt["hyper_parameters"]["config"])
    _load_state(module, _weights(ckpt, path, ema), path)
    return module.eval()


def load_classifier(path: str | Path) -> "ClassifierModule":
    """The noise-aware ClassifierModule of a checkpoint, in eval mode."""
    from genlab.models.classifier import ClassifierModule

    ckpt = read_checkpoint(path)
    _require_kind(ckpt, path, "classifier", "classifier")
    module = ClassifierModule(ckpt["hyper_parameters"]["config"])
    _load_state(module, ckpt["state_dict"], path)
    return module.eval()


# Loaders of the checkpoints that generate images, by model kind; each returns a module with
# `eval_samples(n, seed, batch_size)`. A new kind registers here in one line, e.g. "gan": load_gan.
GENERATOR_LOADERS: dict[str, Callable[[str | Path, bool, dict[str, Any] | None], "L.LightningModule"]] = {
    "ddpm": load_diffusion,
    "gan": load_gan,
}


def load_generator(
    path: str | Path, ema: bool = True, ckpt: dict[str, Any] | None = None
) -> "L.LightningModule":
    """The generator of any kind in a checkpoint, in eval mode, with EMA (default) or raw weights; `ckpt` as for
    load_diffusion."""
    ckpt = ckpt if ckpt is not None else read_checkpoint(path)
    kind = checkpoint_kind(ckpt)
    if kind not in GENERATOR_LOADERS:
        raise GenlabError(
            f"{path} holds a {kind!r} model, which does not generate images; "
            f"give a checkpoint of one of: {', '.join(sorted(GENERATOR_LOADERS))}."
        )
    return GENERATOR_LOADERS[kind](path, ema, ckpt)
