"""DDPM LightningModule (the network predicts eps, x0 or v). Thin: the math lives in genlab.diffusion."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import lightning as L
import torch
from torch import Tensor

from genlab.build import build_diffusion, build_unet
from genlab.config import from_container
from genlab.diffusion import Denoiser, NetworkCalls, SamplerSettings, Steering, generate, resolve_settings
from genlab.diffusion.classifier_guidance import at_matching_noise
from genlab.errors import GenlabError
from genlab.models.optim import adamw_with_warmup, scaled_lr
from genlab.models.sample_shares import balanced_labels, grid_share
from genlab.models.timesteps import draw_timesteps_and_noise, quarter_means, rank_and_world
from genlab.nn.levers import as_channels_last, compiled_call, set_levers


class DiffusionModule(L.LightningModule):
    """Trains the shared U-Net to predict the target of `diffusion.prediction` (eps, x0 or v) from q_sample's x_t;
    samples with any sampler of the registry (ddpm, ddim, dpmpp_2m, unipc, heun, euler) through a Denoiser that reads
    x0 and eps from the network's own output."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        # The plain config dict is the only hyper-parameter: load_from_checkpoint rebuilds everything from it.
        self.save_hyperparameters()
        self.cfg = from_container(config)
        perf = self.cfg.perf
        self.unet = set_levers(build_unet(self.cfg), attention=perf.attention,
                               grad_checkpointing=perf.grad_checkpointing, channels_last=perf.channels_last)
        self.channels_last = bool(perf.channels_last)
        # Built at the first training step, after EMAWeightAveraging has deep-copied the module without it.
        self._compiled_unet: Callable[..., Tensor] | None = None
        self.diffusion = build_diffusion(self.cfg)
        self._denoiser: Denoiser | None = None
        self.loss_weights = dict(self.cfg.diffusion.loss_weights)
        # p_uncond = 1 drops every label: that is an unconditional model, so build_unet makes one.
        self.conditional = self.unet.null_class is not None
        self.p_uncond = float(self.cfg.model.p_uncond)
        self.budget_progress = 0.0  # the share of the run's budget spent, for the LR decay (BudgetProgress sets it)
        # Autoguidance's guides by their `guide=` spec: set by whoever loaded this module (runs.checkpoint resolves
        # paths and time-step:5min against the checkpoint's run); None where nothing can be loaded.
        self.guide_source: Callable[[str], Any] | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.cfg.data.channels, self.cfg.data.resolution, self.cfg.data.resolution)

    def network_output(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """The U-Net's raw output at (x_t, t[, y]): eps, x0 or v (diffusion.prediction); what the loss trains."""
        if self.channels_last:
            x = as_channels_last(x)
        return self._network()(x, t, y)

    def model_fn(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """epsilon_theta(x_t, t[, y]), whatever the network predicts: what DDIM inversion and the NLL take. t may be
        fractional. Sampling asks the Denoiser for x0 and eps from the network's own output instead."""
        return self.denoiser.eps(x, t, y=y)

    @property
    def denoiser(self) -> Denoiser:
        """The network as the samplers see it (no guidance); built once, it keeps the fractional-t schedule."""
        if self._denoiser is None:
            self._denoiser = Denoiser(self.network_output, self.diffusion)
        return self._denoiser

    def _network(self) -> Callable[..., Tensor]:
        """The compiled U-Net in training when perf.compile, else the module itself (sampling sees many shapes)."""
        if not (self.cfg.perf.compile and self.training and torch.is_grad_enabled()):
            return self.unet
        if self._compiled_unet is None:
            self._compiled_unet = compiled_call(self.unet, self.cfg.perf.compile_mode)
        return self._compiled_unet

    def _losses(self, batch: tuple[Tensor, Tensor], generator: torch.Generator | None) -> tuple[dict[str, Tensor], Tensor]:
        x0, y = batch
        t, noise = draw_timesteps_and_noise(x0, self.diffusion.num_timesteps, generator, *rank_and_world(self),
                                            sample_times=self.diffusion.sample_times)
        model_kwargs = {"y": self.drop_labels(y, generator)} if self.conditional else {}
        terms = self.diffusion.training_losses(
            self.network_output, x0, t, noise=noise, model_kwargs=model_kwargs, weights=self.loss_weights
        )
        return terms, t

    def drop_labels(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """CFG training: each label becomes the null class with probability p_uncond (Ho & Salimans, Alg. 1)."""
        drop = torch.rand(y.shape, device=y.device, generator=generator) < self.p_uncond
        return torch.where(drop, torch.full_like(y, self.unet.null_class), y)

    def _log_terms(self, stage: str, terms: dict[str, Tensor], t: Tensor, on_step: bool) -> Tensor:
        loss = terms["loss"].mean()
        batch_size = t.shape[0]
        kw = dict(on_step=on_step, on_epoch=not on_step, batch_size=batch_size, sync_dist=not on_step)
        # The total loss is averaged over ranks even per step: the curve is the global batch's, not rank 0's.
        self.log(f"{stage}/loss", loss, prog_bar=True, **{**kw, "sync_dist": True})
        for name, value in terms.items():
            if name != "loss":
                self.log(f"{stage}/{self.metric_name(name)}", value.mean(), **kw)
        # Loss per quarter of [0, T): where in the chain the model is still poor.
        for q, value in quarter_means(terms["loss"], t, self.diffusion.num_timesteps).items():
            self.log(f"{stage}/loss_q{q}", value, **kw)
        return loss

    def metric_name(self, term: str) -> str:
        """A loss term's metric, named after what it measures: target_mse is eps_mse, x0_mse or v_mse."""
        return f"{self.diffusion.prediction}_mse" if term == "target_mse" else term

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        terms, t = self._losses(batch, generator=None)
        loss = self._log_terms("train", terms, t, on_step=True)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        # Same t and noise at every validation, so val/loss moves only when the weights do.
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        terms, t = self._losses(batch, generator=generator)
        self._log_terms("val", terms, t, on_step=False)

    def configure_optimizers(self) -> dict[str, Any]:
        lr = scaled_lr(self.cfg.model.optim.lr, self.cfg, self.trainer.world_size)
        return adamw_with_warmup(self.parameters(), self.cfg.model.optim, lr, lambda: self.budget_progress)

    @property
    def sampler_settings(self) -> SamplerSettings:
        """The run config's `sampler` block: what the validation grids, class accuracy and FID use. Its CFG weight
        steers a conditional model only."""
        settings = SamplerSettings.from_config(self.cfg.sampler)
        return settings if self.conditional else settings.override(guidance=0.0)

    def resolve_sampler(self, given: Mapping[str, Any], prefix: str = "") -> SamplerSettings:
        """The sampler of a command, a table cell or the API: `given` sampler fields (None: not given) over the run's
        sampler block, checked against T (the generator interface every kind answers)."""
        settings = resolve_settings(self.sampler_settings, given, self.diffusion.num_timesteps, prefix,
                                    discrete=self.diffusion.discrete_samplers)
        settings.check_noise_range(self.diffusion.schedule().noise_range(), prefix)
        return settings

    def sampler_record(self, settings: SamplerSettings, calls: NetworkCalls | None = None) -> dict[str, Any]:
        """The sampler as used, for JSON records: steps resolved, the keys it reads, and its NFE (the network
        evaluations per sample that `calls` counted, guidance included, when given)."""
        evaluations = calls.per_sample if calls is not None and calls.samples else None
        return settings.describe(self.diffusion.num_timesteps, self.diffusion.variance, evaluations)

    def check_guidance(self, settings: SamplerSettings, has_labels: bool, has_classifier: bool) -> None:
        """Guidance checked against this model: CFG needs a conditional model, any guidance needs labels,
        classifier guidance needs a classifier."""
        if settings.guidance != 0 and not self.conditional:
            raise GenlabError("guidance needs a class-conditional (CFG) model; this checkpoint is unconditional. "
                              "Train one with model.conditional=true (e.g. experiment=cfg_digits), or use classifier=PATH.")
        if (settings.guidance != 0 or settings.classifier_scale != 0) and not has_labels:
            raise GenlabError("guidance needs the classes to steer towards: add classes=0,1,2,...")
        if settings.classifier_scale != 0 and not has_classifier:
            raise GenlabError("classifier_scale needs classifier=PATH, a checkpoint of experiment=classifier_*.")

    def steering(self, settings: SamplerSettings, labels: Tensor | None, classifier: Any = None) -> Steering:
        """What guidance needs besides its strengths (labels, null class, classifier), checked (check_guidance)."""
        self.check_guidance(settings, labels is not None, classifier is not None)
        log_prob = classifier.log_prob if classifier is not None else None
        if log_prob is not None and not self.diffusion.discrete_samplers:  # flow, EDM: the VP classifier's times
            classifier_schedule = classifier.diffusion.schedule()
            log_prob = at_matching_noise(log_prob, self.diffusion.schedule().lambda_, classifier_schedule.t_of_lambda)
        guide = self.guide_for(settings.guide) if settings.autoguided else None
        return Steering(labels=labels, null_class=self.unet.null_class if self.conditional else None,
                        classifier_log_prob=log_prob, guide_net=guide.network_output if guide is not None else None)

    def guide_for(self, spec: str) -> "DiffusionModule":
        """The guide network of `guide=spec`, checked against this model and on its device, in eval mode."""
        if self.guide_source is None:
            raise GenlabError(f"guide={spec}: this model was not loaded from a checkpoint, so there is nothing to "
                              "resolve the guide against; load it with genlab.load or a genlab command.")
        guide = self.guide_source(spec)
        problem = guide_mismatch(self, guide)
        if problem:
            raise GenlabError(f"guide={spec} cannot guide this model: {problem}. Autoguidance needs a weaker model of "
                              "the same task: an earlier checkpoint of the same run (time-step:5min) or a smaller "
                              "model trained the same way.")
        return guide.to(self.device).eval()

    @torch.no_grad()
    def sample(
        self,
        n: int,
        settings: SamplerSettings | None = None,
        *,
        labels: Tensor | None = None,
        classifier: Any = None,
        seed: int = 0,
        batch_size: int = 256,
        progress: bool = False,
        calls: NetworkCalls | None = None,
    ) -> Tensor:
        """n images in [-1, 1]; `settings` default to the run's sampler block, `labels` steer a conditional model
        (and the classifier of classifier guidance); `calls` counts the network evaluations."""
        settings = (settings or self.sampler_settings).check(self.diffusion.num_timesteps)
        settings.check_noise_range(self.diffusion.schedule().noise_range())
        steering = self.steering(settings, labels, classifier)
        was_training = self.training
        self.eval()
        try:
            return generate(self.diffusion, self.network_output, n, self.image_shape, settings, steering=steering,
                            seed=seed, batch_size=batch_size, device=self.device, progress=progress, calls=calls)
        finally:
            self.train(was_training)

    def sample_grid(self, num_images: int, seed: int = 0, part: tuple[int, int] = (0, 1)) -> tuple[Tensor, int]:
        """Images for the validation grid and its row length: one row per class for a conditional model.

        part=(rank, world): only rank's share of the grid, in order, drawn with seed + rank (DDP splits the work).
        """
        rank, world = part
        n, labels, per_class = grid_share(num_images, self.cfg.data.num_classes if self.conditional else None,
                                          rank, world)
        return self.sample(n, seed=seed + rank, labels=labels), per_class

    def eval_samples(self, n: int, seed: int, batch_size: int, settings: SamplerSettings | None = None,
                     progress: bool = False, calls: NetworkCalls | None = None) -> Tensor:
        """n images in [-1, 1] for FID (default: the run's sampler): class-balanced labels for a conditional model.

        The contract of every generator that `genlab eval` and the FID callback evaluate (the GAN has one too).
        """
        labels = balanced_labels(n, self.cfg.data.num_classes) if self.conditional else None
        return self.sample(n, settings, labels=labels, seed=seed, batch_size=batch_size, progress=progress,
                           calls=calls)


def guide_mismatch(main: Any, guide: Any) -> str | None:
    """Why `guide` cannot guide `main` (None when it can): autoguidance mixes the two networks' raw outputs at the
    same inputs, so they must share the data, the image shape, the classes, the objective and its target, and read
    the network's time input as the same noise level."""
    if not isinstance(guide, DiffusionModule):
        return f"it is a {type(guide).__name__}, not a diffusion model"
    a, b = main.cfg.data, guide.cfg.data
    if a.name != b.name:
        return f"it was trained on {b.name}, this model on {a.name}"
    if main.image_shape != guide.image_shape:
        return f"its images are {'x'.join(map(str, guide.image_shape))} (C x H x W), this model's " \
               f"{'x'.join(map(str, main.image_shape))}"
    if (main.conditional, a.num_classes) != (guide.conditional, b.num_classes):
        def classes(m: Any) -> str:
            return f"{m.cfg.data.num_classes} classes" if m.conditional else "unconditional"
        return f"it is {classes(guide)}, this model {classes(main)}"
    d, g = main.diffusion, guide.diffusion
    for key in ("process", "prediction", "variance", "num_timesteps", "sigma_data"):
        if str(getattr(d, key, None)) != str(getattr(g, key, None)):
            return f"its {key} is {getattr(g, key, None)}, this model's {getattr(d, key, None)}"
    t = torch.linspace(0, d.num_timesteps - 1, 9)
    if not torch.allclose(d.sigma_of_network_time(t), g.sigma_of_network_time(t), rtol=1e-6):
        return "its noise schedule differs: the same network time is another noise level there"
    return None
