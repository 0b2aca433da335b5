"""`genlab sample`: images from a checkpoint, as one grid PNG or one PNG per sample."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from genlab.callbacks.images import image_grid, save_png
from genlab.checkpoints import load_classifier, load_diffusion
from genlab.config import SampleArgs
from genlab.config_io import parse_command_args, validate_sampler
from genlab.errors import GenlabError
from genlab.sample_guidance import build_guidance, class_accuracy
from genlab.sampling import to_uint8


def parse_sample_args(args: list[str]) -> SampleArgs:
    """Typed `genlab sample` arguments; unknown keys and wrong types fail with the valid keys listed."""
    parsed = parse_command_args(SampleArgs, args, "sample", {"ckpt": "the checkpoint to sample from"})
    if parsed.n <= 0 or parsed.per_class <= 0:
        raise GenlabError(f"n={parsed.n}, per_class={parsed.per_class}: numbers of samples must be positive integers.")
    if parsed.batch_size <= 0:
        raise GenlabError(f"batch_size={parsed.batch_size} must be a positive integer.")
    return parsed


def _is_folder_target(out: str) -> bool:
    return out.endswith(("/", os.sep)) or Path(out).is_dir()


def check_writable(out: str) -> None:
    """Fail before sampling, not after, when the output cannot be written."""
    target = Path(out) if _is_folder_target(out) else Path(out).parent
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target):
            pass
    except OSError as exc:
        raise GenlabError(f"cannot write to {target} ({exc.strerror}); choose another out=PATH.") from None
    if not _is_folder_target(out) and Path(out).suffix.lower() != ".png":
        raise GenlabError(f"out={out}: give a .png file for a grid, or a folder ending in / for one PNG per sample.")


def pick_device(name: str) -> torch.device:
    """'auto' is CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def sample_command(args: list[str]) -> None:
    """Run `genlab sample` with command-line arguments."""
    a = parse_sample_args(args)
    check_writable(a.out)
    module = load_diffusion(a.ckpt, ema=a.ema)
    validate_sampler(a.steps, a.eta, module.diffusion.num_timesteps)
    guidance, classifier = build_guidance(a, module)
    scorer = load_classifier(a.eval_classifier) if a.eval_classifier else classifier
    device = pick_device(a.device)
    module.to(device)
    for net in {id(m): m for m in (classifier, scorer) if m is not None}.values():
        net.to(device)
    n = len(guidance.labels) if guidance.labels is not None else a.n
    images = module.sample(
        n,
        sampler=a.sampler.value,
        steps=a.steps,
        eta=a.eta,
        spacing=a.spacing.value,
        seed=a.seed,
        batch_size=a.batch_size,
        guidance=guidance,
        progress=True,
    )
    if _is_folder_target(a.out):
        folder = Path(a.out)
        for i, image in enumerate(to_uint8(images)):
            save_png(image, folder / f"{i:06d}.png")
        print(f"genlab: wrote {n} PNGs to {folder}")
    else:
        nrow = a.nrow or (a.per_class if guidance.labels is not None else None)
        save_png(image_grid(images, nrow=nrow), Path(a.out))
        print(f"genlab: wrote a grid of {n} samples to {a.out}")
    if guidance.labels is not None and scorer is not None:
        accuracy = class_accuracy(scorer, images, guidance.labels)
        print(f"genlab: class accuracy {accuracy:.3f} over {n} samples (classifier at t=0)")
