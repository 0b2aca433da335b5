"""`genlab invert` and `genlab interpolate`: encode images into a model's latent, decode them, interpolate latents.

Diffusion models are encoded with deterministic DDIM run forwards (Song et al. 2021, sec. 5.4) and decoded with
DDIM eta = 0 over the same timesteps. `clip` clamps the predicted x0 while decoding. invert defaults to no clipping:
clipping is not part of the ODE, so it stops the decoder from undoing the encoder (see genlab.diffusion.inversion).
interpolate defaults to clipping: a small model decodes a random N(0, I) latent into values far outside [-1, 1]
without it (measured up to +-29 on a 600-step digits model), while inverted image latents still reconstruct well
(MSE 7e-4 at S=50 on that model). `invert` dispatches on the checkpoint's model kind: GANs are inverted by
optimising z (genlab.adversarial.invert_generator), and the JSON then holds the error of every step.

Image sources (IMAGE): `index:N` is item N of the checkpoint's training set (rebuilt from its config, no flips),
`seed:N` is x_T ~ N(0, I) drawn with torch.Generator().manual_seed(N) (interpolate only), and anything else is a
PNG/JPG path. A bare integer N means `index:N` for invert and `seed:N` for interpolate; write ./N for a file named N.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Optional

import matplotlib
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from genlab.adversarial import invert_generator
from genlab.build import build_datamodule, pick_device
from genlab.commands.args import InterpolateArgs, InvertArgs, check_image_out, parse_command_args
from genlab.data.base import image_transform
from genlab.diffusion import TIME_GRIDS, Denoiser, ddim_invert, ddim_sample, euler_invert, euler_sample, slerp
from genlab.errors import GenlabError
from genlab.images import FIGURE_MARK, image_grid, save_png, to_8bit
from genlab.models import DiffusionModule, GANModule, facts_of, generator_kinds, kind_info, kind_of
from genlab.outputs import write_json
from genlab.runs.checkpoint import checkpoint_kind, load_diffusion, load_generator, read_checkpoint

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402

# DDIM Table 2: reconstruction MSE per dimension on [0, 1] pixels, CIFAR-10 test set, by number of steps S.
DDIM_PAPER_MSE: dict[int, float] = {10: 0.014, 50: 0.0023, 1000: 0.0001}


@dataclass(frozen=True)
class Source:
    """Where an image or a latent comes from: a seed, a training-set index or an image file."""

    kind: Literal["seed", "index", "path"]
    value: int | str  # the seed or index, or the path


def parse_source(text: str, key: str, bare_int: Literal["seed", "index"], allow_seed: bool) -> Source:
    """`seed:N`, `index:N`, a bare integer (meaning `bare_int`), or a path that must exist."""
    prefix, sep, rest = text.partition(":")
    if sep and prefix in ("seed", "index"):
        if not rest.strip().isdigit():
            raise GenlabError(f"{key}={text}: {prefix}: needs a non-negative integer, e.g. {key}={prefix}:3.")
        kind, value = prefix, int(rest)
    elif text.strip().isdigit():
        kind, value = bare_int, int(text)
    else:
        if not Path(text).is_file():
            raise GenlabError(
                f"{key}={text}: no such image file. Give a PNG/JPG path, or index:N for a training image."
            )
        return Source("path", text)
    if kind == "seed" and not allow_seed:
        raise GenlabError(f"{key}={text}: a seed is not an image to invert; give index:N or a PNG/JPG path.")
    return Source(kind, value)  # type: ignore[arg-type]


def check_png_out(out: str) -> None:
    """Fail before any work when `out` is not a writable .png file, or it or a file written beside it is the
    user's."""
    if Path(out).suffix.lower() != ".png" or out.endswith("/"):
        raise GenlabError(f"out={out}: give a .png file to write.")
    check_image_out(out, companions=lambda p: [p.with_suffix(".json"), error_curve_path(str(p))])


def check_steps(steps: int, timesteps: int) -> None:
    """DDIM visits `steps` of the model's T timesteps."""
    if not 1 <= steps <= timesteps:
        raise GenlabError(f"steps={steps} is out of range: it must be between 1 and the model's T = {timesteps}.")


def load_image_file(path: str, channels: int, resolution: int) -> Tensor:
    """A PNG/JPG as (C, H, W) in [-1, 1]: RGB, then the model's channels, center-cropped square and resized."""
    try:
        with Image.open(path) as im:
            array = torch.from_numpy(np.array(to_8bit(im).convert("RGB")))  # H, W, 3 uint8
    except (UnidentifiedImageError, OSError) as exc:
        raise GenlabError(f"cannot read image {path} ({exc}); give a PNG or JPG file.") from None
    # center_crop, not the run's fit mode: a photo of any aspect ratio keeps its proportions.
    transform = image_transform(resolution=resolution, fit="center_crop", channels=channels)
    return transform(array.permute(2, 0, 1))  # H,W,3 -> 3,H,W


def dataset_item(cfg: DictConfig, index: int) -> tuple[Tensor, int]:
    """Item `index` of the run's training set, rebuilt from its config with flips off: (image, label)."""
    dm = build_datamodule(OmegaConf.merge(cfg, {"data": {"hflip": False}}))  # type: ignore[arg-type]
    dm.setup("fit")
    dataset = dm.train_dataset
    size = len(dataset)  # type: ignore[arg-type]
    if not 0 <= index < size:
        raise GenlabError(
            f"index:{index} is out of range: the training set of this run has {size} images (0..{size - 1})."
        )
    image, label = dataset[index]  # type: ignore[index]
    return image, int(label)


def load_source_image(source: Source, cfg: DictConfig) -> tuple[Tensor, int | None]:
    """The image of an index or path source as (C, H, W) in [-1, 1], and its label when the dataset has one."""
    channels, resolution = int(cfg.data.channels), int(cfg.data.resolution)
    if source.kind == "index":
        image, label = dataset_item(cfg, int(source.value))
        return image, (label if label >= 0 else None)
    return load_image_file(str(source.value), channels, resolution), None


def model_kwargs_for(module: DiffusionModule | GANModule, label: int | None, batch: int) -> dict:
    """{"y": labels} for a conditional model given a label; {} otherwise (a conditional U-Net uses its null class)."""
    if label is None:
        return {}
    if not module.conditional:
        raise GenlabError(f"label={label}: this model is unconditional; leave label out.")
    num_classes = int(module.cfg.data.num_classes)
    if not 0 <= label < num_classes:
        raise GenlabError(f"label={label} is out of range: the model has {num_classes} classes (0..{num_classes - 1}).")
    return {"y": torch.full((batch,), label, dtype=torch.long, device=module.device)}


def standardise(x: Tensor) -> Tensor:
    """Latents for display: per image zero mean, 3 standard deviations to [-1, 1], clamped."""
    flat = x.reshape(x.shape[0], -1)  # [B, ...] -> [B, D]
    z = (flat - flat.mean(1, keepdim=True)) / flat.std(1, keepdim=True).clamp_min(1e-8)
    return (z / 3).clamp(-1, 1).reshape(x.shape)


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] images to [0, 1] pixels, the scale of the DDIM paper's reconstruction error."""
    return (x.clamp(-1, 1) + 1) / 2


@dataclass
class Inversion:
    """What an inverter returns, each [1, ...]: the target and reconstruction in [-1, 1], the latent as an image."""

    target: Tensor
    latent_view: Tensor
    recon: Tensor
    mse_per_step: Optional[list[float]] = None  # optimisation-based inverters: the error (on [0, 1] pixels) per step
    extra: Optional[dict] = None  # inverter-specific numbers for the JSON record


def ode_maps(module: DiffusionModule, kwargs: dict, steps: int, spacing: str
             ) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor, bool], Tensor]]:
    """The deterministic encoder x0 -> x_T and its mirror decoder (x_T, clip) -> x0 with `steps` on `spacing`: DDIM
    (eta = 0) on a VP model's discrete timesteps; otherwise Euler on the process's own grid, which is DDIM's ODE step
    written for any process (euler_invert / euler_sample)."""
    check_inversion_grid(module, spacing)
    if module.diffusion.discrete_samplers:
        ddim = dict(steps=steps, spacing=spacing, model_kwargs=kwargs, progress=True)
        return (lambda x0: ddim_invert(module.diffusion, module.model_fn, x0, **ddim),
                lambda x_T, clip: ddim_sample(module.diffusion, module.model_fn, tuple(x_T.shape), x_T=x_T,
                                              clip_denoised=clip, **ddim))
    denoiser = Denoiser(module.network_output, module.diffusion, model_kwargs=kwargs)
    return (lambda x0: euler_invert(denoiser, x0, steps=steps, spacing=spacing, progress=True),
            lambda x_T, clip: euler_sample(denoiser, x_T, steps=steps, spacing=spacing, clip=clip, progress=True))


def invert_ddpm(a: InvertArgs, source: Source, module: DiffusionModule) -> Inversion:
    """Invert the target to x_T with `steps` along the model's deterministic ODE (DDIM for a VP model), then decode
    x_T with the same steps."""
    check_steps(a.steps, module.diffusion.num_timesteps)
    module.to(pick_device(a.device))
    image, item_label = load_source_image(source, module.cfg)
    x0 = image.unsqueeze(0).to(module.device)  # C,H,W -> 1,C,H,W
    label = a.label if a.label is not None else (item_label if module.conditional else None)
    encode, decode = ode_maps(module, model_kwargs_for(module, label, 1), a.steps, str(a.spacing))
    x_T = encode(x0)
    recon = decode(x_T, a.clip)
    return Inversion(target=x0.cpu(), latent_view=standardise(x_T).cpu(), recon=recon.clamp(-1, 1).cpu())


def invert_gan(a: InvertArgs, source: Source, module: GANModule) -> Inversion:
    """Optimise z (Adam, `restarts` random starts) so that G(z) matches the target; see genlab.adversarial."""
    if a.restarts < 1 or a.lr <= 0 or a.feature_weight < 0:
        raise GenlabError(f"restarts={a.restarts}, lr={a.lr}, feature_weight={a.feature_weight}: need >= 1, > 0, >= 0.")
    module.to(pick_device(a.device))
    module.requires_grad_(False)  # only z is optimised
    image, item_label = load_source_image(source, module.cfg)
    target = image.unsqueeze(0).to(module.device)  # C,H,W -> 1,C,H,W
    label = a.label if a.label is not None else (item_label if module.conditional else None)
    y = model_kwargs_for(module, label, a.restarts).get("y")
    if module.conditional and y is None:
        raise GenlabError("this GAN is class-conditional: give label=K for an image file.")
    fit = invert_generator(
        lambda z: module.generator(z, y[: z.shape[0]] if y is not None else None),
        target,
        module.latent_dim,
        steps=a.steps,
        restarts=a.restarts,
        lr=a.lr,
        seed=a.seed,
        feature_fn=lambda x: module.discriminator(x, y[: x.shape[0]] if y is not None else None).features,
        feature_weight=a.feature_weight,
    )
    # The optimiser's error is on [-1, 1] pixels; (2a - 2b)^2 = 4 (a - b)^2 puts it on [0, 1] like the final MSE.
    per_step = [v / 4 for v in fit.mse_per_step]
    extra = {"restarts": a.restarts, "lr": a.lr, "feature_weight": a.feature_weight, "seed": a.seed,
             "mse_start": per_step[0], "restart_mse": [v / 4 for v in fit.restart_mse]}
    return Inversion(target=target.cpu(), latent_view=fit.start.cpu(), recon=fit.recon.cpu(), mse_per_step=per_step,
                     extra=extra)


def invert_command(args: list[str]) -> None:
    """Run `genlab invert`: encode an image, decode it again, write the comparison PNG and the MSE as JSON."""
    a = parse_command_args(
        InvertArgs,
        args,
        "invert",
        {"ckpt": "the checkpoint", "image": "index:N or a PNG/JPG path", "steps": "the number of DDIM steps S"},
    )
    check_png_out(a.out)
    source = parse_source(a.image, "image", bare_int="index", allow_seed=False)
    if a.steps < 1:
        raise GenlabError(f"steps={a.steps} is out of range: it must be a positive integer.")
    ckpt = read_checkpoint(a.ckpt)
    if not kind_info(checkpoint_kind(ckpt)).generates:
        supported = ", ".join(generator_kinds())
        raise GenlabError(f"{a.ckpt} holds a {checkpoint_kind(ckpt)!r} model; invert supports {supported} checkpoints.")
    module = load_generator(a.ckpt, ema=a.ema, ckpt=ckpt)
    del ckpt
    kind, by_ddim = kind_of(module), facts_of(module).sampler
    # A model with a sampler is inverted by DDIM run forwards (its ODE), a generator by optimising z.
    result = invert_ddpm(a, source, module) if by_ddim else invert_gan(a, source, module)
    check_finite(torch.cat([result.latent_view, result.recon]), f"inverting {a.image} with {a.ckpt}")
    mse = float(((to_unit(result.recon) - to_unit(result.target)) ** 2).mean())
    panels = torch.cat([result.target, result.latent_view, result.recon])  # [3, C, H, W]
    save_png(image_grid(panels, nrow=3), Path(a.out))
    paper = DDIM_PAPER_MSE.get(a.steps) if by_ddim else None
    record = {"ckpt": a.ckpt, "image": a.image, "steps": a.steps, "mse": mse, "kind": kind}
    record.update(spacing=str(a.spacing), clip=a.clip, ema=a.ema)
    if paper is not None:
        record["paper_mse_cifar10"] = paper
    if result.extra:
        record.update(result.extra)
    if result.mse_per_step is not None:
        record["mse_per_step"] = result.mse_per_step
        plot_error_curve(result.mse_per_step, error_curve_path(a.out))
        print(f"genlab: reconstruction error {result.mse_per_step[0]:.4g} -> {mse:.4g}; per step in "
              f"{error_curve_path(a.out)}")
    write_json(Path(a.out).with_suffix(".json"), record, "genlab invert")
    note = f" (DDIM paper, CIFAR-10, S={a.steps}: {paper})" if paper is not None else ""
    steps = f"S={a.steps}" if by_ddim else f"{a.steps} steps"
    print(f"genlab: reconstruction MSE per dimension on [0, 1] pixels, {steps}: {mse:.3g}{note}")
    middle = "x_T" if by_ddim else "start"
    print(f"genlab: wrote target | {middle} | reconstruction to {a.out}")


def check_inversion_grid(module: DiffusionModule, spacing: str) -> None:
    """DDIM's quadratic spacing exists on a VP model's discrete timesteps only."""
    if not module.diffusion.discrete_samplers and spacing not in TIME_GRIDS:
        raise GenlabError(f"spacing={spacing} is DDIM's, on a VP model's discrete timesteps; this "
                          f"{module.diffusion.process} model's ODE grids are {', '.join(TIME_GRIDS)}.")


def check_finite(images: Tensor, what: str) -> None:
    """NaN or inf is an error, never a black PNG or an MSE of NaN (as in sample, eval and table)."""
    if not bool(torch.isfinite(images).all()):
        raise GenlabError(f"{what} gave non-finite values (NaN or inf); nothing was written. The weights may have "
                          "diverged: check the run's loss curve, or try the raw weights with ema=false.")


def error_curve_path(out: str) -> Path:
    """recon.png -> recon_error.png."""
    path = Path(out)
    return path.with_name(f"{path.stem}_error.png")


def plot_error_curve(errors: list[float], path: Path) -> None:
    """The reconstruction error per optimisation step, log scale."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(range(len(errors)), errors)
    ax.set(xlabel="step", ylabel="MSE on [0, 1] pixels", yscale="log", title="GAN inversion")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata=FIGURE_MARK)
    plt.close(fig)


def latent_of(source: Source, module: DiffusionModule, a: InterpolateArgs, kwargs: dict) -> Tensor:
    """x_T [1, C, H, W] of a seed (drawn on the CPU, so any device gives the same latent) or of an inverted image."""
    if source.kind == "seed":
        generator = torch.Generator().manual_seed(int(source.value))
        return torch.randn(module.image_shape, generator=generator).unsqueeze(0).to(module.device)
    image, _ = load_source_image(source, module.cfg)
    x0 = image.unsqueeze(0).to(module.device)  # C,H,W -> 1,C,H,W
    return ode_maps(module, kwargs, a.steps, str(a.spacing))[0](x0)


def interpolate_command(args: list[str]) -> None:
    """Run `genlab interpolate`: decode n latents on the great circle from x_T(a) to x_T(b) (DDIM sec. 5.3)."""
    a = parse_command_args(
        InterpolateArgs, args, "interpolate", {"ckpt": "the checkpoint", "a": "the first endpoint", "b": "the second"}
    )
    if a.n < 2:
        raise GenlabError(f"n={a.n}: an interpolation needs n >= 2 images (both endpoints are included).")
    check_png_out(a.out)
    sources = [parse_source(text, key, bare_int="seed", allow_seed=True) for key, text in (("a", a.a), ("b", a.b))]
    module = load_diffusion(a.ckpt, ema=a.ema)
    check_steps(a.steps, module.diffusion.num_timesteps)
    check_inversion_grid(module, str(a.spacing))
    module.to(pick_device(a.device))
    x_a, x_b = (latent_of(s, module, a, model_kwargs_for(module, a.label, 1)) for s in sources)
    alphas = torch.linspace(0, 1, a.n, device=module.device)
    x_T = slerp(x_a.expand(a.n, *x_a.shape[1:]), x_b.expand(a.n, *x_b.shape[1:]), alphas)  # [n, C, H, W]
    images = ode_maps(module, model_kwargs_for(module, a.label, a.n), a.steps, str(a.spacing))[1](x_T, a.clip)
    check_finite(images, f"interpolating with {a.ckpt}")
    save_png(image_grid(images.clamp(-1, 1).cpu(), nrow=a.n), Path(a.out))
    record = {"ckpt": a.ckpt, "a": a.a, "b": a.b, "n": a.n, "steps": a.steps, "clip": a.clip, "alphas": alphas.tolist()}
    write_json(Path(a.out).with_suffix(".json"), record, "genlab interpolate")
    print(f"genlab: wrote {a.n} images interpolated from {a.a} to {a.b} to {a.out}")
