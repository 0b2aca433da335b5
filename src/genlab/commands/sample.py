"""`genlab sample`: images from a diffusion or GAN checkpoint, as one grid PNG or one PNG per sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from genlab.build import pick_device
from genlab.commands.args import SampleArgs, check_image_out, parse_classes, parse_command_args, parse_steps
from genlab.diffusion import SamplerSettings, guidance_weight, resolve_settings
from genlab.errors import GenlabError
from genlab.images import image_grid, is_folder_target, save_png
from genlab.metrics.class_accuracy import class_accuracy
from genlab.models import DiffusionModule, GANModule, is_diffusion
from genlab.outputs import write_png_folder
from genlab.runs.checkpoint import load_classifier, load_generator, read_checkpoint
from genlab.runs.folder import default_output


def parse_sample_args(args: list[str]) -> SampleArgs:
    """Typed `genlab sample` arguments; unknown keys and wrong types fail with the valid keys listed."""
    parsed = parse_command_args(SampleArgs, args, "sample", {"ckpt": "the checkpoint to sample from"})
    if parsed.n <= 0 or parsed.per_class <= 0:
        raise GenlabError(f"n={parsed.n}, per_class={parsed.per_class}: numbers of samples must be positive integers.")
    if parsed.batch_size <= 0:
        raise GenlabError(f"batch_size={parsed.batch_size} must be a positive integer.")
    return parsed


def sampler_settings(a: SampleArgs, module: DiffusionModule, steps: int | None) -> SamplerSettings:
    """The sampler of these arguments: the checkpoint's own `sampler` block with what the command line gives (a newly
    named sampler starts from its own default steps and grid), as every command resolves it."""
    try:
        w = guidance_weight(a.guidance, a.guidance_scale)
    except ValueError as exc:
        raise GenlabError(f"{exc}.") from None
    given = {**a.sampler_fields(), "steps": steps, "guidance": w}
    return resolve_settings(module.sampler_settings, given, module.diffusion.num_timesteps)


def sample_command(args: list[str]) -> None:
    """Run `genlab sample` with command-line arguments."""
    a = parse_sample_args(args)
    if a.out is not None:  # before the checkpoint is read
        check_image_out(a.out)
    ckpt = read_checkpoint(a.ckpt)
    module = load_generator(a.ckpt, ema=a.ema, ckpt=ckpt)
    del ckpt  # the module holds its weights now
    if a.out is None:  # results stay with the run: <run>/samples/sample-<sampler><steps>-seed<seed>.png
        steps = str(a.steps).replace(",", "-").strip("[]") if a.steps is not None else ""
        name = module.sampler_settings.override(name=a.sampler).name if is_diffusion(module) else "G"
        a.out = default_output(a.ckpt, "samples", f"sample-{name}{steps}-seed{a.seed}.png", "samples.png")
        check_image_out(a.out, explicit=False)
    classes = parse_classes(a.classes, module.cfg.data.num_classes)
    labels = torch.tensor(classes).repeat_interleave(a.per_class) if classes else None  # a row per class
    step_counts = parse_steps(a.steps) or [None]
    several_steps = len(step_counts) > 1 and is_diffusion(module)
    if several_steps and labels is not None:  # before any sampling, not after
        raise GenlabError("steps=... with several counts makes one row per count; leave classes= out.")
    device = pick_device(a.device)
    module.to(device)
    if is_diffusion(module):
        images, scorer = sample_diffusion(a, module, labels, device, step_counts)
    else:
        images, scorer = sample_gan(a, module, labels, device)
    nrow = a.n if several_steps else (a.per_class if labels is not None else None)
    print(f"genlab: wrote {write_images(images, a.out, a.nrow or nrow)}")
    if labels is not None and scorer is not None:
        accuracy = class_accuracy(scorer, images, labels)
        print(f"genlab: class accuracy {accuracy:.3f} over {len(images)} samples (classifier at t=0)")


def write_images(images: torch.Tensor, out: str, nrow: int | None) -> str:
    """One grid PNG, or one PNG per image when `out` is a folder (checked by check_image_out); says what was
    written, for the user."""
    if is_folder_target(out):
        write_png_folder(images, Path(out), "genlab sample")
        return f"{len(images)} PNGs to {out}"
    save_png(image_grid(images, nrow=nrow), Path(out))
    return f"a grid of {len(images)} samples to {out}"


def sample_diffusion(a: SampleArgs, module: DiffusionModule, labels: torch.Tensor | None,
                     device: torch.device, step_counts: list[int | None]) -> tuple[torch.Tensor, Any]:
    """Any diffusion sampler, with classifier-free or classifier guidance; the images and the accuracy scorer.
    With several step counts (steps=10,20,50), one row per count from the same x_T: DDIM's consistency figure."""
    all_settings = [sampler_settings(a, module, steps) for steps in step_counts]
    if len(all_settings) > 1:
        random = [s for s in all_settings if not s.deterministic]
        if random:
            raise GenlabError(f"steps={a.steps}: rows of several step counts compare one x_T decoded at each count, "
                              f"so the sampler must be deterministic; sampler={random[0].name} is not (use ddim "
                              "with eta=0, dpmpp_2m, unipc, heun or euler).")
    classifier = None
    if a.classifier is not None:
        classifier = load_classifier(a.classifier).to(device)
        if classifier.cfg.data.num_classes != module.cfg.data.num_classes:
            raise GenlabError(
                f"classifier {a.classifier} has {classifier.cfg.data.num_classes} classes but the diffusion model's "
                f"data has {module.cfg.data.num_classes}; use a classifier trained on the same dataset."
            )
    scorer = load_classifier(a.eval_classifier).to(device) if a.eval_classifier else classifier
    n = len(labels) if labels is not None else a.n
    T = module.diffusion.num_timesteps
    rows = []
    for settings in all_settings:
        print(f"genlab: sampling {n} with {settings.label(T)}")
        rows.append(module.sample(n, settings, labels=labels, classifier=classifier, seed=a.seed,
                                  batch_size=a.batch_size, progress=True))
    return torch.cat(rows), scorer


def sample_gan(a: SampleArgs, module: GANModule, labels: torch.Tensor | None,
               device: torch.device) -> tuple[torch.Tensor, Any]:
    """G(z) for z drawn with `seed`; `classes=` for a class-conditional generator. No sampler, no guidance."""
    if a.guidance is not None or a.guidance_scale is not None or a.classifier is not None or a.classifier_scale:
        raise GenlabError("guidance, guidance_scale, classifier and classifier_scale apply to diffusion models, not GANs.")
    if labels is not None and not module.conditional:
        raise GenlabError("classes= needs a class-conditional GAN (model.conditional=true); this one is unconditional.")
    scorer = load_classifier(a.eval_classifier).to(device) if a.eval_classifier else None
    n = len(labels) if labels is not None else a.n
    return module.sample(n, seed=a.seed, batch_size=a.batch_size, labels=labels), scorer
