"""Generate images from a diffusion model with given SamplerSettings, in batches, reproducibly.

Guidance is built here only: the CFG or autoguidance wrapper around the network and the classifier-guidance gradient,
per batch. Every network evaluation is counted here too (NetworkCalls), so records report what sampling cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from genlab.diffusion.classifier_guidance import CondFn, LogProbFn, classifier_grad_fn
from genlab.diffusion.denoiser import Denoiser
from genlab.diffusion.gaussian import GaussianDiffusion
from genlab.diffusion.guidance import autoguidance, classifier_free_guidance
from genlab.diffusion.sampler_registry import ROBUST_SAMPLER
from genlab.diffusion.settings import SamplerSettings
from genlab.errors import GenlabError


@dataclass
class Steering:
    """What guidance needs besides its strengths (which live in SamplerSettings): the labels to steer towards, the
    conditional network's null label, and the classifier's log-probability."""

    labels: Tensor | None = None  # [n] class per sample
    null_class: int | None = None  # the conditional model's null label; None for an unconditional model
    classifier_log_prob: LogProbFn | None = None
    guide_net: Callable[..., Tensor] | None = None  # autoguidance's guide, a network of the same task and target


@dataclass
class NetworkCalls:
    """Network evaluations during sampling, counted in samples: a forward of a B batch adds B. CFG's 2B batch
    adds 2B, a guide's forward B, so `per_sample` is the honest NFE of guided sampling."""

    evaluations: int = 0  # samples passed through the main network and the guide together
    guide_evaluations: int = 0  # of which through the guide
    samples: int = 0

    @property
    def per_sample(self) -> float:
        """Network evaluations per generated sample (0 before any)."""
        return self.evaluations / self.samples if self.samples else 0.0

    def counting(self, fn: Callable[..., Tensor], guide: bool = False) -> Callable[..., Tensor]:
        """`fn` that adds the size of each batch it sees."""

        def counted(x: Tensor, *args: object, **kwargs: object) -> Tensor:
            self.evaluations += x.shape[0]
            self.guide_evaluations += x.shape[0] if guide else 0
            return fn(x, *args, **kwargs)

        return counted


def guided_functions(
    model_fn: Callable[..., Tensor], settings: SamplerSettings, steering: Steering, start: int, b: int,
    sigma_of: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Callable[..., Tensor], dict, CondFn | None]:
    """The model_fn, its kwargs and the classifier cond_fn for samples [start, start + b). `sigma_of(t)`: the noise
    level sigma / alpha at the network's time input, which the guidance interval reads."""
    guided_at = None
    if settings.guidance_interval and sigma_of is not None:  # every sample of a solver's batch is at the same t
        guided_at = lambda t: settings.guided_at(float(sigma_of(t[:1])[0]))  # noqa: E731
    y = steering.labels[start : start + b] if steering.labels is not None else None
    kwargs = {"y": y} if y is not None and steering.null_class is not None else {}  # labels of a conditional net
    if settings.autoguided:
        if steering.guide_net is None:
            raise GenlabError(f"guide_scale={settings.guide_scale:g} needs the guide network of guide={settings.guide}.")
        model_fn = autoguidance(model_fn, steering.guide_net, settings.guide_scale, guided_at)
    cond_fn = None
    if y is not None and steering.classifier_log_prob is not None and settings.classifier_scale != 0:
        cond_fn = classifier_grad_fn(steering.classifier_log_prob, y, settings.classifier_scale)
    if y is None or steering.null_class is None:  # unconditional network: labels only steer the classifier
        return model_fn, kwargs, cond_fn
    guided = classifier_free_guidance(model_fn, settings.guidance, steering.null_class, guided_at)
    return guided, kwargs, cond_fn


def generate(
    diffusion: GaussianDiffusion,
    net: Callable[..., Tensor],
    n: int,
    image_shape: tuple[int, int, int],
    settings: SamplerSettings,
    *,
    steering: Steering | None = None,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    progress: bool = False,
    calls: NetworkCalls | None = None,
) -> Tensor:
    """Sample `n` images in [-1, 1] of shape (C, H, W) with the sampler of `settings` (its registry entry); `calls`,
    when given, counts the network evaluations (main network and guide).

    `net(x_t, t[, y])` is the network's raw output in its own target (diffusion.prediction): the samplers ask the
    Denoiser for x0 and eps, computed from it without a detour through eps. All randomness comes from one generator seeded with `seed`, so the same seed gives the same
    images whatever the batch size, as long as batches are drawn in order.
    """
    steering = steering or Steering()
    # One bar over all n images (not one per batch or per step), off when stderr is not a terminal.
    bar = tqdm(total=n, desc=f"sampling ({settings.name}, {settings.nfe(diffusion.num_timesteps)} NFE)",
               unit="img", disable=None if progress else True)
    calls = calls if calls is not None else NetworkCalls()
    net = calls.counting(net)
    guide_net = calls.counting(steering.guide_net, guide=True) if steering.guide_net is not None else None
    labels = steering.labels.to(device) if steering.labels is not None else None
    steering = Steering(labels, steering.null_class, steering.classifier_log_prob, guide_net)
    generator = torch.Generator(device=device).manual_seed(seed)
    T = diffusion.num_timesteps
    out = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        shape = (b, *image_shape)
        x_T = torch.randn(shape, generator=generator, device=device)
        fn, model_kwargs, cond_fn = guided_functions(net, settings, steering, start, b,
                                                     diffusion.sigma_of_network_time)
        denoiser = Denoiser(fn, diffusion, model_kwargs=model_kwargs, cond_fn=cond_fn)
        x0 = settings.entry.run(denoiser, x_T, settings, generator=generator, progress=False)
        if not bool(torch.isfinite(x0).all()):
            raise GenlabError(nonfinite_message(settings, T, start, b))
        out.append(x0.clamp(-1, 1).cpu())
        calls.samples += b
        bar.update(b)
    bar.close()
    return torch.cat(out)


def nonfinite_message(settings: SamplerSettings, num_timesteps: int, start: int, b: int) -> str:
    """Why no image of a batch with NaN or inf is ever written or scored, and which setting to look at."""
    causes = [f"{k}={getattr(settings, k):g}" for k in ("guidance", "classifier_scale") if getattr(settings, k)]
    causes += [f"guide_scale={settings.guide_scale:g}"] if settings.autoguided else []
    if causes:
        hint = f"lower {' or '.join(causes)}"
    elif settings.name == ROBUST_SAMPLER and settings.clip:  # already the one to try: nothing to suggest there
        hint = "the weights may have diverged: check the run's loss curve, or sample the raw weights with ema=false"
    else:
        hint = (f"the weights may have diverged (check the run's loss curve), or try sampler={ROBUST_SAMPLER} with "
                "clipping")
    return (f"sampling with {settings.label(num_timesteps)} gave non-finite values (NaN or inf) in samples "
            f"{start}..{start + b - 1}; nothing was written or scored. {hint[0].upper()}{hint[1:]}.")


def run_sampler(name: str, diffusion: GaussianDiffusion, net: Callable[..., Tensor], x_T: Tensor, *,
                generator: torch.Generator | None = None, model_kwargs: dict | None = None,
                cond_fn: CondFn | None = None, prediction: str | None = None, progress: bool = False,
                **settings: object) -> Tensor:
    """One call of sampler `name` (its registry entry) on one batch x_T: `net` outputs `prediction`'s target (None:
    diffusion.prediction), `settings` are SamplerSettings fields (steps, spacing, eta, variance, clip, ...). For
    scripts and tests; `generate` is the batched, guided path every command takes."""
    resolved = SamplerSettings().override(name=name, **settings)
    denoiser = Denoiser(net, diffusion, prediction=prediction, model_kwargs=model_kwargs, cond_fn=cond_fn)
    return resolved.entry.run(denoiser, x_T, resolved, generator=generator, progress=progress)
