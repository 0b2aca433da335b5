"""`genlab sample`: images from a diffusion or GAN checkpoint, as one grid PNG or one PNG per sample."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from genlab.callbacks.images import image_grid, save_png
from genlab.checkpoints import checkpoint_kind, load_classifier, load_diffusion, load_gan, read_checkpoint
from genlab.config import SampleArgs
from genlab.config_io import parse_command_args, validate_sampler
from genlab.errors import GenlabError
from genlab.sample_guidance import build_guidance, class_accuracy, parse_classes
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


def write_samples(images: torch.Tensor, out: str, nrow: int | None) -> None:
    """One grid PNG, or one PNG per sample when `out` is a folder."""
    if _is_folder_target(out):
        folder = Path(out)
        for i, image in enumerate(to_uint8(images)):
            save_png(image, folder / f"{i:06d}.png")
        print(f"genlab: wrote {len(images)} PNGs to {folder}")
    else:
        save_png(image_grid(images, nrow=nrow), Path(out))
        print(f"genlab: wrote a grid of {len(images)} samples to {out}")


def report_accuracy(scorer: Any, images: torch.Tensor, labels: torch.Tensor | None) -> None:
    if labels is not None and scorer is not None:
        accuracy = class_accuracy(scorer, images, labels)
        print(f"genlab: class accuracy {accuracy:.3f} over {len(images)} samples (classifier at t=0)")


def sample_command(args: list[str]) -> None:
    """Run `genlab sample` with command-line arguments: dispatch on the checkpoint's model kind."""
    a = parse_sample_args(args)
    check_writable(a.out)
    ckpt = read_checkpoint(a.ckpt)
    if checkpoint_kind(ckpt) == "gan":
        sample_gan(a, ckpt)
    else:
        sample_diffusion(a, ckpt)


def sample_gan(a: SampleArgs, ckpt: dict[str, Any]) -> None:
    """G(z) for z drawn with `seed`; `classes=` for a class-conditional generator. No sampler, no guidance."""
    if a.guidance is not None or a.guidance_scale is not None or a.classifier is not None or a.classifier_scale:
        raise GenlabError("guidance, guidance_scale, classifier and classifier_scale apply to diffusion models, not GANs.")
    module = load_gan(a.ckpt, ema=a.ema, ckpt=ckpt)
    classes = parse_classes(a.classes, module.cfg.data.num_classes)
    if classes is not None and not module.conditional:
        raise GenlabError("classes= needs a class-conditional GAN (model.conditional=true); this one is unconditional.")
    labels = torch.tensor(classes).repeat_interleave(a.per_class) if classes else None  # a row per class
    scorer = load_classifier(a.eval_classifier) if a.eval_classifier else None
    device = pick_device(a.device)
    module.to(device)
    if scorer is not None:
        scorer.to(device)
    n = len(labels) if labels is not None else a.n
    images = module.sample(n, seed=a.seed, batch_size=a.batch_size, labels=labels)
    write_samples(images, a.out, a.nrow or (a.per_class if labels is not None else None))
    report_accuracy(scorer, images, labels)


def sample_diffusion(a: SampleArgs, ckpt: dict[str, Any]) -> None:
    """DDPM or DDIM sampling, with classifier-free or classifier guidance."""
    module = load_diffusion(a.ckpt, ema=a.ema, ckpt=ckpt)
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
    write_samples(images, a.out, a.nrow or (a.per_class if guidance.labels is not None else None))
    report_accuracy(scorer, images, guidance.labels)
