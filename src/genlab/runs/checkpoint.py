"""genlab checkpoints: read them safely, pick the EMA or raw weights, rebuild their module, and write them atomically.

Reading fails with a clear message (missing, truncated, foreign or unsafe file); writing goes to a temporary file
that replaces the target only when complete, so a crash never leaves a partial checkpoint in place of a good one.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from genlab.config import kind_facts, kinds_where
from genlab.errors import GenlabError, disk_full, first_line, mount_point
from genlab.models import ClassifierModule, DiffusionModule, GANModule, generator_kinds, kind_info
from genlab.runs.guide import guide_source

TMP_MARK = ".tmp-"


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """torch.load a checkpoint safely (weights_only: no code runs from the file). `mmap`: map the tensors instead
    of reading them, to check a file cheaply."""
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"checkpoint {path} does not exist. Pass ckpt=PATH to a .ckpt file under runs/*/*/checkpoints/.")
    if path.stat().st_size == 0:
        raise GenlabError(f"checkpoint {path} is empty (0 bytes): a copy or a save was cut short. Use another one, "
                          "e.g. the run's last.ckpt, or resume=auto, which takes the newest intact one.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "weights_only" not in str(exc).lower() and "weights only" not in str(exc).lower():
            raise GenlabError(f"checkpoint {path} cannot be read ({first_line(exc)}).") from None
        raise GenlabError(
            f"checkpoint {path} was refused: loading it would unpickle arbitrary Python objects, which can run code. "
            "genlab reads checkpoints with torch.load(weights_only=True); genlab's own checkpoints never need more. "
            "If you trust the file, re-save its tensors and config as a plain dict."
        ) from None
    except Exception as exc:  # truncated zip, pickle errors, foreign formats
        raise GenlabError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {first_line(exc)}). "
            "It may be truncated or not a genlab checkpoint; use another one, e.g. the run's last.ckpt."
        ) from None
    if not isinstance(ckpt, dict) or "config" not in ckpt.get("hyper_parameters", {}) or "state_dict" not in ckpt:
        raise GenlabError(f"{path} is not a genlab checkpoint: it has no genlab config or no state_dict.")
    return ckpt


def checkpoint_kind(ckpt: dict[str, Any]) -> str:
    """The model kind ("ddpm", "classifier", ...) recorded in a checkpoint's config."""
    return str(ckpt["hyper_parameters"]["config"].get("model", {}).get("kind"))


def _load_state(module: torch.nn.Module, state: dict[str, Any], path: str | Path) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise GenlabError(f"checkpoint {path} does not match its own config: {first_line(exc)}") from None


def _weights(ckpt: dict[str, Any], path: str | Path, ema: bool) -> dict[str, Any]:
    """The EMA (default) or raw state_dict of a checkpoint.

    Lightning's EMAWeightAveraging stores the averaged weights under `state_dict` and the raw
    ones under `current_model_state`; a run without EMA has only `state_dict` (raw).
    """
    has_ema = "current_model_state" in ckpt
    if ema and not has_ema:
        print(f"genlab: {path} has no EMA weights (trained with model.ema.enabled=false); using the raw weights.")
    return ckpt["state_dict"] if (ema or not has_ema) else ckpt["current_model_state"]


def weights_used(ckpt: dict[str, Any], ema: bool) -> str:
    """"ema" or "raw": what load_module actually loads (a run without EMA has raw weights only)."""
    return "ema" if ema and "current_model_state" in ckpt else "raw"


def load_module(path: str | Path, *, kinds: list[str] | None = None, role: str = "ckpt", ema: bool = True,
                ckpt: dict[str, Any] | None = None) -> L.LightningModule:
    """The module of a checkpoint in eval mode, with EMA weights (default) or the raw ones.

    `kinds`: the model kinds this use accepts (None: any). `ckpt`: the checkpoint already read from `path` by
    read_checkpoint, so that it is read only once.
    """
    ckpt = ckpt if ckpt is not None else read_checkpoint(path)
    kind = checkpoint_kind(ckpt)
    if kinds is not None and kind not in kinds:
        wanted = " or ".join(f"a {k!r} checkpoint" for k in kinds)
        raise GenlabError(f"{path} holds a {kind!r} model, but {role} must be {wanted}.")
    module = kind_info(kind).module(ckpt["hyper_parameters"]["config"])
    _load_state(module, _weights(ckpt, path, ema) if kind_facts(kind).averaged else ckpt["state_dict"], path)
    if isinstance(module, DiffusionModule):  # autoguidance's guide=, resolved against this checkpoint's run
        every = module.cfg.callbacks.checkpoint.every_n_minutes
        module.guide_source = guide_source(path, every, lambda guide: load_module(guide, ema=ema))
    return module.eval()


def load_diffusion(path: str | Path, ema: bool = True, ckpt: dict[str, Any] | None = None) -> DiffusionModule:
    """The DiffusionModule of a checkpoint (see load_module)."""
    return load_module(path, kinds=kinds_where("sampler"), ema=ema, ckpt=ckpt)  # type: ignore[return-value]


def load_gan(path: str | Path, ema: bool = True, ckpt: dict[str, Any] | None = None) -> GANModule:
    """The GANModule of a checkpoint, with the EMA generator by default (see load_module)."""
    return load_module(path, kinds=kinds_where("adversarial"), ema=ema, ckpt=ckpt)  # type: ignore[return-value]


def load_classifier(path: str | Path) -> ClassifierModule:
    """The noise-aware ClassifierModule of a checkpoint, in eval mode."""
    return load_module(path, kinds=kinds_where("classifies"), role="classifier")  # type: ignore[return-value]


def load_scorer(path: str, num_classes: int | None, conditional: bool) -> ClassifierModule:
    """The classifier of `callbacks.class_accuracy.classifier`, checked against the model it will score."""
    key = "callbacks.class_accuracy.classifier"
    if not conditional:
        raise GenlabError(
            f"{key} is set, but the model is unconditional: class accuracy scores class-conditional samples. "
            f"Set model.conditional=true, or {key}=null."
        )
    classifier = load_classifier(path)
    if classifier.cfg.data.num_classes != num_classes:
        raise GenlabError(
            f"{key}={path} has {classifier.cfg.data.num_classes} classes, the model's data has {num_classes}; "
            "use a classifier trained on the same dataset (experiment=classifier_*)."
        )
    return classifier


def load_generator(path: str | Path, ema: bool = True, ckpt: dict[str, Any] | None = None) -> L.LightningModule:
    """The generator of any kind that generates images (see load_module); each has `eval_samples(n, seed, batch_size)`."""
    ckpt = ckpt if ckpt is not None else read_checkpoint(path)
    kinds = generator_kinds()
    if checkpoint_kind(ckpt) not in kinds:
        wanted = " or ".join(f"a {k!r} checkpoint" for k in kinds)
        raise GenlabError(f"{path} holds a {checkpoint_kind(ckpt)!r} model, which does not generate images; "
                          f"ckpt must be {wanted}.")
    return load_module(path, kinds=kinds, ema=ema, ckpt=ckpt)


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to a hidden temporary file beside the target, fsync, then os.replace onto the target.

    os.replace is atomic within one file system, so a crash or SIGKILL at any moment leaves either the previous
    checkpoint or the new one, never a partial file. (Lightning's own save goes through fsspec, whose temporary
    file lives in the system temp folder: on another file system its final move is a copy, which a kill can cut.)
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError) as exc:
            if disk_full(exc) is None:
                raise
            tmp.unlink(missing_ok=True)  # before measuring what is free
            free = shutil.disk_usage(path.parent).free
            kept = f"The previous {path.name} is unchanged." if path.is_file() else f"No {path.name} was written."
            raise GenlabError(
                f"no space left on {mount_point(path)} to write the checkpoint {path}: it needs about "
                f"{mib(checkpoint_bytes(checkpoint))} MiB in {path.parent} ({mib(free)} MiB free). {kept} "
                "Free some space, or resume=auto with a run_dir on another disk."
            ) from None
        finally:
            tmp.unlink(missing_ok=True)


def mib(n_bytes: float) -> str:
    """A size in MiB for a message: one decimal below 10 MiB (a small run's checkpoint is under 1 MiB)."""
    value = n_bytes / 2**20
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def checkpoint_bytes(checkpoint: Any) -> int:
    """About how many bytes torch.save writes for `checkpoint`: the sum of its tensors' storage."""
    if isinstance(checkpoint, torch.Tensor):
        return checkpoint.numel() * checkpoint.element_size()
    if isinstance(checkpoint, dict):
        return sum(checkpoint_bytes(v) for v in checkpoint.values())
    if isinstance(checkpoint, (list, tuple)):
        return sum(checkpoint_bytes(v) for v in checkpoint)
    return 0


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files left by a process killed while saving; return them."""
    stale = [p for p in Path(folder).glob(f".*{TMP_MARK}*") if p.is_file()] if Path(folder).is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
