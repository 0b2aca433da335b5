"""The Python API: `genlab.load`, `genlab.evaluate`, `genlab.train`. Each calls the code the command line calls.

```python
import genlab
model = genlab.load("runs/ddpm_digits/RUN/checkpoints/last.ckpt")
images = model.sample(16, sampler="dpmpp_2m", steps=10, seed=0)      # [16, C, H, W] in [-1, 1]
metrics = genlab.evaluate("runs/.../last.ckpt", n=1000, features="domain", domain_classifier="clf.ckpt")
run_dir = genlab.train("ddpm_digits", {"trainer.max_steps": 500})
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from torch import Tensor

from genlab.build import pick_device
from genlab.commands.eval import eval_command
from genlab.commands.train import train_command
from genlab.errors import GenlabError
from genlab.models import kind_of
from genlab.runs.checkpoint import load_classifier, load_generator, read_checkpoint


class Model:
    """A generator loaded from a checkpoint (diffusion model or GAN), in eval mode, on its device."""

    def __init__(self, module: L.LightningModule) -> None:
        self.module = module
        self.kind = kind_of(module)
        self.cfg = module.cfg

    def sample(self, n: int = 16, *, sampler: str | None = None, steps: int | None = None, eta: float | None = None,
               spacing: str | None = None, rho: float | None = None, sigma_max: float | None = None,
               variance: str | None = None, clip: bool | None = None,
               guidance: float | None = None, guidance_sigma_min: float | None = None,
               guidance_sigma_max: float | None = None, guide: str | Path | None = None,
               guide_scale: float | None = None, classes: int | Sequence[int] | None = None,
               classifier: str | Path | None = None, classifier_scale: float = 0.0, seed: int = 0,
               batch_size: int = 256, progress: bool = False) -> Tensor:
        """Draw `n` images with the checkpoint's sampler, or the one given.

        The sampler fields are those of `genlab sample` and of the run's `sampler` block; a field not given is the
        checkpoint's own (a newly named sampler starts from its own defaults). A GAN refuses sampler fields.

        Args:
            n: how many images.
            sampler: `ddpm`, `ddim`, `dpmpp_2m`, `unipc`, `heun`, `euler` (or any registered sampler).
            steps: sampling steps (network evaluations for every sampler but Heun: 2 steps - 1).
            eta: DDIM's noise scale (0: deterministic).
            spacing: the time grid (`uniform`, `quadratic`, `logsnr`, `karras`), where the sampler takes it.
            rho: the Karras grid's rho (eq. 5); `None`: the model's own (7, or an EDM model's `diffusion.edm_rho`).
            sigma_max: the noise level sigma/alpha where a `karras` or `logsnr` grid starts; `None`: the model's top.
            variance: the ancestral variance of `sampler="ddpm"`: `beta_tilde` or `beta`.
            clip: clip the predicted x0 to [-1, 1] at every step.
            guidance: the classifier-free guidance weight w (Ho & Salimans: (1 + w) eps_c - w eps_null).
            guidance_sigma_min: the low end of the guidance interval in sigma/alpha (Kynkäänniemi et al. 2024).
            guidance_sigma_max: its high end; outside the interval the conditional network runs alone.
            guide: autoguidance by a weaker model: a checkpoint path, or `"time-step:5min"` of the same run.
            guide_scale: the autoguidance weight (1: the main model alone).
            classes: one class for every sample, or one per sample (conditional models and classifier guidance).
            classifier: a noise-aware classifier checkpoint for classifier guidance.
            classifier_scale: the classifier-guidance scale s.
            seed: the seed of x_T and of every noise draw: the same seed gives the same images.
            batch_size: images per forward pass.
            progress: show a progress bar.

        Returns:
            The images, `[n, C, H, W]` in [-1, 1], on the CPU.

        Raises:
            GenlabError: a setting the sampler does not read, a class out of range or a bad count.
        """
        for name, value in (("n", n), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GenlabError(f"{name}={value!r}: {name} must be a positive integer.")
        given = dict(sampler=sampler, steps=steps, eta=eta, spacing=spacing, rho=rho, sigma_max=sigma_max,
                     variance=variance, clip=clip, guidance=guidance, guidance_sigma_min=guidance_sigma_min,
                     guidance_sigma_max=guidance_sigma_max,
                     guide=str(guide) if guide is not None else None, guide_scale=guide_scale,
                     classifier_scale=classifier_scale or None)
        labels = self._labels(n, classes)
        settings = self.module.resolve_sampler(given)
        scorer = load_classifier(classifier).to(self.module.device) if classifier is not None else None
        return self.module.sample(n, settings, labels=labels, classifier=scorer, seed=seed, batch_size=batch_size,
                                  progress=progress)

    def _labels(self, n: int, classes: int | Sequence[int] | None) -> Tensor | None:
        if classes is None:
            return None
        labels = torch.full((n,), int(classes)) if isinstance(classes, int) else torch.as_tensor(list(classes))
        num_classes = self.cfg.data.num_classes
        if labels.shape != (n,) or num_classes is None or not bool(((labels >= 0) & (labels < num_classes)).all()):
            raise GenlabError(f"classes: give one class in 0..{(num_classes or 1) - 1} or {n} of them, one per sample.")
        return labels.long()

    def __repr__(self) -> str:
        return f"genlab.Model({self.kind}, experiment={self.cfg.experiment}, device={self.module.device})"


def load(ckpt: str | Path, *, ema: bool = True, device: str = "auto") -> Model:
    """Load the generator of a genlab checkpoint (any diffusion objective, CFG model or GAN).

    Args:
        ckpt: a checkpoint written by `genlab train` (or `genlab ema`).
        ema: use the averaged (EMA) weights; `False` for the raw weights.
        device: `"auto"` (CUDA if there is one), `"cpu"`, `"cuda"` or `"cuda:N"`.

    Returns:
        The model in eval mode on its device; its config is `Model.cfg`.

    Raises:
        GenlabError: a missing, truncated or foreign checkpoint, named with the fix.
    """
    module = load_generator(ckpt, ema=ema, ckpt=read_checkpoint(ckpt))
    return Model(module.to(pick_device(device)))


def _key_values(options: dict[str, Any]) -> list[str]:
    out = []
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, (list, tuple)):
            value = "[" + ",".join(str(v) for v in value) + "]"
        out.append(f"{key}={value}")
    return out


def evaluate(ckpt: str | Path, **options: Any) -> dict[str, float]:
    """Score a checkpoint's samples as `genlab eval ckpt=... key=value ...` does, with keyword arguments.

    Every argument of `genlab eval` is a keyword (the command reference lists them): `n`, `seeds`, `features`
    (`inception`, `domain`, `dinov2`, `clip`), `domain_classifier`, `split`, `protocol`, the sampler fields, `nll`,
    `out`. Lists become `[a,b]`, booleans `true`/`false`. The JSON it writes (beside the run, or at `out`) holds
    the protocol, the sampler record and each metric's spread.

    Args:
        ckpt: the checkpoint to sample from.
        **options: the arguments of `genlab eval`.

    Returns:
        The metrics, by name (`fid`, `kid`, `precision`, `recall`, ...), averaged over the seeds.
    """
    return eval_command(_key_values({"ckpt": ckpt, **options}))["metrics"]


def train(experiment: str = "ddpm_digits", overrides: dict[str, Any] | Sequence[str] | None = None) -> Path:
    """Train a model as `genlab train experiment=... key=value ...` does.

    Args:
        experiment: a recipe of `experiments/` (`genlab train --help` lists them).
        overrides: config keys and values, `{"trainer.max_steps": 500}`, or `["trainer.max_steps=500", ...]`;
            a block is picked with its group as the key (`{"logger": "wandb"}`).

    Returns:
        The run folder (`runs/<experiment>/<time>/`, or the `run_dir` given).
    """
    items = list(overrides) if isinstance(overrides, (list, tuple)) else _key_values(dict(overrides or {}))
    return train_command([f"experiment={experiment}", *items])
