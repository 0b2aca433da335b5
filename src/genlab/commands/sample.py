"""`genlab sample`: images from a diffusion or GAN checkpoint, as one grid PNG or one PNG per sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from genlab.build import pick_device
from genlab.commands.args import SampleArgs, check_image_out, parse_classes, parse_command_args, parse_steps
from genlab.diffusion import SamplerSettings, guidance_weight
from genlab.errors import GenlabError
from genlab.images import image_grid, is_folder_target, save_png
from genlab.metrics.class_accuracy import class_accuracy
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


def sampler_settings(a: SampleArgs, module: Any, steps: int | None) -> SamplerSettings | None:
    """The sampler of these arguments: the checkpoint's own `sampler` block with what the command line gives (a newly
    named sampler starts from its own default steps and grid), as every command resolves it; None for a GAN."""
    guided = a.guidance is not None or a.guidance_scale is not None
    try:
        w = guidance_weight(a.guidance, a.guidance_scale) if guided else None
    except ValueError as exc:
        raise GenlabError(f"{exc}.") from None
    given = {**a.sampler_fields(), "steps": steps, "guidance": w, "classifier_scale": a.classifier_scale or None}
    return module.resolve_sampler(given)


def sample_command(args: list[str]) -> None:
    """Run `genlab sample` with command-line arguments."""
    a = parse_sample_args(args)
    if a.out is not None:  # before the checkpoint is read
        check_image_out(a.out)
    ckpt = read_checkpoint(a.ckpt)
    module = load_generator(a.ckpt, ema=a.ema, ckpt=ckpt)
    del ckpt  # the module holds its weights now
    classes = parse_classes(a.classes, module.cfg.data.num_classes)
    labels = torch.tensor(classes).repeat_interleave(a.per_class) if classes else None  # a row per class
    all_settings = [sampler_settings(a, module, steps) for steps in parse_steps(a.steps) or [None]]
    check_rows(a, all_settings, labels)
    if a.out is None:  # results stay with the run: <run>/samples/sample-<sampler><steps>-seed<seed>.png
        steps = str(a.steps).replace(",", "-").strip("[]") if a.steps is not None else ""
        name = all_settings[0].name if all_settings[0] is not None else "G"
        a.out = default_output(a.ckpt, "samples", f"sample-{name}{steps}-seed{a.seed}.png", "samples.png")
        check_image_out(a.out, explicit=False)
    device = pick_device(a.device)
    module.to(device)
    images, scorer = sample_rows(a, module, all_settings, labels, device)
    nrow = a.n if len(all_settings) > 1 else (a.per_class if labels is not None else None)
    print(f"genlab: wrote {write_images(images, a.out, a.nrow or nrow)}")
    if labels is not None and scorer is not None:
        accuracy = class_accuracy(scorer, images, labels)
        print(f"genlab: class accuracy {accuracy:.3f} over {len(images)} samples (classifier at t=0)")


def check_rows(a: SampleArgs, all_settings: list[SamplerSettings | None], labels: torch.Tensor | None) -> None:
    """Several step counts (steps=10,20,50) make one row per count from the same x_T: DDIM's consistency figure,
    which needs a deterministic sampler and no rows per class. Checked before any sampling, not after."""
    if len(all_settings) < 2:
        return
    if labels is not None:
        raise GenlabError("steps=... with several counts makes one row per count; leave classes= out.")
    random = [s for s in all_settings if s is not None and not s.deterministic]
    if random:
        raise GenlabError(f"steps={a.steps}: rows of several step counts compare one x_T decoded at each count, "
                          f"so the sampler must be deterministic; sampler={random[0].name} is not (use ddim "
                          "with eta=0, dpmpp_2m, unipc, heun or euler).")


def write_images(images: torch.Tensor, out: str, nrow: int | None) -> str:
    """One grid PNG, or one PNG per image when `out` is a folder (checked by check_image_out); says what was
    written, for the user."""
    if is_folder_target(out):
        write_png_folder(images, Path(out), "genlab sample")
        return f"{len(images)} PNGs to {out}"
    save_png(image_grid(images, nrow=nrow), Path(out))
    return f"a grid of {len(images)} samples to {out}"


def sample_rows(a: SampleArgs, module: Any, all_settings: list[SamplerSettings | None], labels: torch.Tensor | None,
                device: torch.device) -> tuple[torch.Tensor, Any]:
    """One row of images per sampler settings (one row for a GAN), with classifier-free or classifier guidance; the
    images and the accuracy scorer."""
    classifier = None
    if a.classifier is not None:
        classifier = load_classifier(a.classifier).to(device)
        if classifier.cfg.data.num_classes != module.cfg.data.num_classes:
            raise GenlabError(
                f"classifier {a.classifier} has {classifier.cfg.data.num_classes} classes but the model's data has "
                f"{module.cfg.data.num_classes}; use a classifier trained on the same dataset."
            )
    scorer = load_classifier(a.eval_classifier).to(device) if a.eval_classifier else classifier
    n = len(labels) if labels is not None else a.n
    rows = []
    for settings in all_settings:
        if settings is not None:
            print(f"genlab: sampling {n} with {settings.label(module.diffusion.num_timesteps)}")
        rows.append(module.sample(n, settings, labels=labels, classifier=classifier, seed=a.seed,
                                  batch_size=a.batch_size, progress=True))
    return torch.cat(rows), scorer
