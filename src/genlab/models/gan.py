"""GAN LightningModule with manual optimisation. Thin: the networks are in genlab.nn.gan, the losses and
penalties in genlab.adversarial.

One training step is one discriminator update on the batch; every `gan.d_steps` batches the generator is updated
too. `trainer.global_step` (and so max_steps, checkpoints and EMA) counts generator steps, as GAN papers do.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping

import lightning as L
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from genlab.adversarial import (
    batch_diversity,
    diff_augment,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    r1_penalty,
)
from genlab.build import build_discriminator, build_generator
from genlab.config import from_container
from genlab.errors import GenlabError
from genlab.models.lightning_compat import uncounted
from genlab.models.optim import scaled_lr
from genlab.models.sample_shares import balanced_labels, grid_share
from genlab.models.timesteps import rank_and_world
from genlab.nn.gan import DiscriminatorOutput

WARN_EVERY = 100  # generator steps between two warnings of the same kind


def score(out: DiscriminatorOutput) -> Tensor:
    """One real/fake score per sample [B] for the gradient penalties: the global logit plus the mean pixel logit."""
    if out.pixel_logits is None:
        return out.logits
    return out.logits + out.pixel_logits.mean(dim=(1, 2, 3))


class GANModule(L.LightningModule):
    """Generator and discriminator trained adversarially; samples from z ~ N(0, I) with the (EMA) generator."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        # The plain config dict is the only hyper-parameter: load_from_checkpoint rebuilds everything from it.
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.cfg = from_container(config)
        self.generator = build_generator(self.cfg)
        self.discriminator = build_discriminator(self.cfg)
        self.conditional = self.generator.num_classes is not None
        self.latent_dim = int(self.cfg.gan.latent_dim)
        self.loss_name = str(self.cfg.gan.loss)
        self.nonfinite_guard: Any = None  # set by the run's NonFiniteGuard callback when training starts
        self.d_updates = 0  # discriminator steps so far: schedules lazy R1 and the generator's turns
        self._last_warning: dict[str, float] = {}

    def on_fit_start(self) -> None:
        # ModelCheckpoint warns that manual optimisation saves the state after the step: for a GAN, the weights
        # after step N are exactly what checkpoint N should hold.
        warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization", category=UserWarning)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.cfg.data.channels, self.cfg.data.resolution, self.cfg.data.resolution)

    # ---- training ----

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Adam for G and D with their own learning rates and betas (TTUR, Heusel et al. 2017): [G, D]."""
        g, d = self.cfg.gan.g_optim, self.cfg.gan.d_optim
        world = self.trainer.world_size
        return [
            torch.optim.Adam(self.generator.parameters(), lr=scaled_lr(g.lr, self.cfg, world), betas=tuple(g.betas)),
            torch.optim.Adam(self.discriminator.parameters(), lr=scaled_lr(d.lr, self.cfg, world), betas=tuple(d.betas)),
        ]

    def draw_latents(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """z ~ N(0, I) [n, latent_dim] on the module's device; under DDP this rank's rows of a global-batch draw
        (as for diffusion noise: ranks get different z, and W devices x n match one device x W n)."""
        rank, world = rank_and_world(self)
        z = torch.randn(n * world, self.latent_dim, device=self.device, generator=generator)
        return z[rank::world]

    def augment(self, x: Tensor) -> Tensor:
        """What the discriminator sees of x: x itself, or its DiffAugment copy (gan.diffaugment)."""
        policy = self.cfg.gan.diffaugment
        return diff_augment(x, list(policy)) if policy else x

    def discriminator_terms(self, real: Tensor, fake: Tensor, y: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        """The discriminator's weighted loss and its named terms, plus mean D(x) and D(G(z)) for the logs."""
        gan = self.cfg.gan
        real, fake = self.augment(real), self.augment(fake)
        real_out, fake_out = self.discriminator(real, y), self.discriminator(fake, y)
        terms = {"adv": discriminator_loss(self.loss_name, real_out.logits, fake_out.logits)}
        lazy = gan.r1_every
        weights = {"adv": 1.0, "adv_pixel": gan.lambda_pixel, "gp": gan.lambda_gp, "r1": 0.5 * gan.lambda_r1 * lazy,
                   "r2": 0.5 * gan.lambda_r2 * lazy}
        if real_out.pixel_logits is not None:
            terms["adv_pixel"] = discriminator_loss(self.loss_name, real_out.pixel_logits, fake_out.pixel_logits)

        def score_fn(x: Tensor) -> Tensor:
            return score(self.discriminator(x, y))

        if gan.lambda_gp > 0:
            terms["gp"] = gradient_penalty(score_fn, real, fake)
        if gan.lambda_r1 > 0 and self.d_updates % gan.r1_every == 0:
            # Lazy regularisation (Karras et al. 2020): every k steps, weighted by k to keep the same strength.
            terms["r1"] = r1_penalty(score_fn, real)
        if gan.lambda_r2 > 0 and self.d_updates % gan.r1_every == 0:
            terms["r2"] = r1_penalty(score_fn, fake)
        loss = sum(weights[name] * value for name, value in terms.items())
        stats = {"real": real_out.logits.mean().detach(), "fake": fake_out.logits.mean().detach()}
        return loss, {**terms, **stats}

    def generator_terms(self, fake: Tensor, y: Tensor | None, real: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """The generator's weighted loss and its named terms; `real`: the batch the relativistic loss pairs with."""
        out = self.discriminator(self.augment(fake), y)
        real_out = None
        if self.loss_name == "relativistic":
            with torch.no_grad():  # D is frozen in this step; the reals only set the bar
                real_out = self.discriminator(self.augment(real), y)
        terms = {"adv": generator_loss(self.loss_name, out.logits, real_out.logits if real_out is not None else None)}
        loss = terms["adv"]
        if out.pixel_logits is not None:
            real_pixels = real_out.pixel_logits if real_out is not None else None
            terms["adv_pixel"] = generator_loss(self.loss_name, out.pixel_logits, real_pixels)
            loss = loss + self.cfg.gan.lambda_pixel * terms["adv_pixel"]
        return loss, terms

    def _update(self, optimizer: LightningOptimizer, loss: Tensor, net: nn.Module, name: str) -> Tensor:
        """Backward, gradient norm (before clipping), optional clipping, step. A non-finite loss stops the run or
        skips the update (trainer.on_nonfinite)."""
        optimizer.zero_grad(set_to_none=True)
        loss_value = loss.detach()
        if not torch.isfinite(loss_value):
            # The run's NonFiniteGuard decides (stop or skip), as it does for non-finite gradients; a loss without a
            # graph to the weights leaves no gradients for the guard to see, so the module reports the loss itself.
            guard = self.nonfinite_guard
            if guard is None:
                raise GenlabError(f"non-finite {name} loss ({loss_value.item()}) at step {self.global_step}.")
            guard.nonfinite_loss(self.trainer, self, f"{name} loss", loss_value.item())
            optimizer.step()  # no gradients, so no change, but the step is counted as usual
            return torch.tensor(float("nan"))
        self.manual_backward(loss)
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads).detach()
        clip = self.cfg.trainer.gradient_clip_val
        if clip and clip > 0:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        optimizer.step()
        return norm

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        real, labels = batch
        y = labels if self.conditional else None
        opt_g, opt_d = self.optimizers()
        n = real.shape[0]

        # Discriminator: fakes detached, so this step cannot change G. With gan.reuse_fakes, a step that also updates
        # G keeps their graph for the generator step.
        generator_turn = (self.d_updates + 1) % self.cfg.gan.d_steps == 0
        keep_graph = self.cfg.gan.reuse_fakes and generator_turn
        with torch.set_grad_enabled(keep_graph):
            fake = self.generator(self.draw_latents(n), y)
        self.toggle_optimizer(opt_d)
        d_loss, d_terms = self.discriminator_terms(real, fake.detach(), y)
        with uncounted(opt_d):
            d_norm = self._update(opt_d, d_loss, self.discriminator, "discriminator")
        self.untoggle_optimizer(opt_d)
        self.d_updates += 1
        logs = {"train/d_loss": d_loss.detach(), "train/d_grad_norm": d_norm}
        logs.update({f"train/d_{k}": v.detach() for k, v in d_terms.items()})

        if generator_turn:
            # Generator: toggling freezes D's parameters, so only G gets gradients.
            self.toggle_optimizer(opt_g)
            if not keep_graph:
                fake = self.generator(self.draw_latents(n), y)
            g_loss, g_terms = self.generator_terms(fake, y, real)
            g_norm = self._update(opt_g, g_loss, self.generator, "generator")
            self.untoggle_optimizer(opt_g)
            diversity = batch_diversity(fake, real)
            logs.update({"train/g_loss": g_loss.detach(), "train/g_grad_norm": g_norm, "train/diversity": diversity})
            logs.update({f"train/g_{k}": v.detach() for k, v in g_terms.items()})
            threshold = self.cfg.gan.collapse_threshold
            if diversity < threshold:
                self.warn_throttled(
                    "collapse",
                    f"generator diversity {float(diversity):.3f} is below gan.collapse_threshold={threshold} of the "
                    "data's: the generator may have collapsed to a few outputs",
                )
        for key, value in logs.items():
            self.log(key, value, on_step=True, on_epoch=False, batch_size=n, prog_bar=key in ("train/d_loss", "train/g_loss"))

    def warn_throttled(self, kind: str, message: str) -> None:
        """A warning in the run's log, at most once per WARN_EVERY generator steps for each kind."""
        step = self.global_step
        if step - self._last_warning.get(kind, -math.inf) >= WARN_EVERY:
            self._last_warning[kind] = step
            rank_zero_warn(f"genlab: step {step}: {message}.")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        # The same z at every validation, so the value moves only when the weights do.
        real, labels = batch
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        fake = self.generator(self.draw_latents(real.shape[0], generator), labels if self.conditional else None)
        diversity = batch_diversity(fake, real)
        self.log("val/diversity", diversity, on_epoch=True, batch_size=real.shape[0], sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["gan_d_updates"] = self.d_updates

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.d_updates = int(checkpoint.get("gan_d_updates", 0))

    # ---- sampling: the generator interface (as DiffusionModule's); a GAN samples G(z), with no sampler to choose ----

    sampler_settings = None

    def resolve_sampler(self, given: Mapping[str, Any], prefix: str = "") -> None:
        """No sampler setting applies to G(z): any given is refused, naming it."""
        named = [k for k, v in given.items() if v is not None]
        if named:
            raise GenlabError(f"{prefix}{', '.join(named)}: sampler settings apply to diffusion models; a GAN samples "
                              "G(z).")

    def sampler_record(self, settings: None = None, calls: Any = None) -> dict[str, Any]:
        """What sampled, for JSON records: one generator pass per image."""
        return {"name": "G(z)", "steps": None, "eta": None, "spacing": None, "guidance": None, "nfe": 1}

    @torch.no_grad()
    def sample(self, n: int, settings: None = None, *, labels: Tensor | None = None, classifier: Any = None,
               seed: int = 0, batch_size: int = 256, progress: bool = False) -> Tensor:
        """n images in [-1, 1] from z drawn with `seed` on the CPU (the same images on any device and batch size);
        `labels` condition a class-conditional generator. There is no sampler and no guidance to give."""
        if settings is not None or classifier is not None:
            raise GenlabError("a GAN samples G(z): sampler settings and classifier guidance apply to diffusion models.")
        if labels is not None and not self.conditional:
            raise GenlabError("classes= needs a class-conditional GAN (model.conditional=true); this one is "
                              "unconditional.")
        if self.conditional and labels is None:
            labels = balanced_labels(n, self.cfg.data.num_classes)
        z = torch.randn(n, self.latent_dim, generator=torch.Generator().manual_seed(seed))
        was_training = self.training
        self.eval()
        try:
            chunks = []
            for start in range(0, n, batch_size):
                y = labels[start : start + batch_size].to(self.device) if self.conditional else None
                chunks.append(self.generator(z[start : start + batch_size].to(self.device), y).cpu())
            return torch.cat(chunks)
        finally:
            self.train(was_training)

    def sample_grid(self, num_images: int, seed: int = 0, part: tuple[int, int] = (0, 1)) -> tuple[Tensor, int]:
        """Images for the validation grid (a fixed latent batch) and its row length: a row per class if conditional.

        part=(rank, world): only rank's share of the grid, in order, drawn with seed + rank (DDP splits the work).
        """
        rank, world = part
        n, labels, per_class = grid_share(num_images, self.cfg.data.num_classes if self.conditional else None,
                                          rank, world)
        return self.sample(n, seed=seed + rank, labels=labels), per_class

    def eval_samples(self, n: int, seed: int, batch_size: int, settings: None = None, progress: bool = False,
                     calls: Any = None) -> Tensor:
        """Samples for evaluation metrics: class-balanced labels for a conditional generator (one G pass each, which
        `calls` does not need to count)."""
        return self.sample(n, settings, seed=seed, batch_size=batch_size)
