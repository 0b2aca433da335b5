"""Noise-aware classifier LightningModule for classifier guidance (Dhariwal & Nichol 2021). Thin: the network is in
genlab.nn.classifier, the forward process in genlab.diffusion."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.build import build_classifier, build_diffusion
from genlab.config import from_container
from genlab.models.optim import adamw_with_warmup, scaled_lr
from genlab.models.timesteps import draw_timesteps_and_noise, quarter_means, rank_and_world


class ClassifierModule(L.LightningModule):
    """Trains p_phi(y | x_t, t) with cross-entropy on x_t = q_sample(x0, t, eps), t ~ U{0, ..., T-1}."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        # The plain config dict is the only hyper-parameter: load_from_checkpoint rebuilds everything from it.
        self.save_hyperparameters()
        self.cfg = from_container(config)
        self.classifier = build_classifier(self.cfg)
        # Same schedule as the diffusion model it will guide, so that its x_t match the sampler's.
        self.diffusion = build_diffusion(self.cfg)
        self.budget_progress = 0.0  # the share of the run's budget spent, for the LR decay (BudgetProgress sets it)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """Logits [B, num_classes] of p(y | x_t, t)."""
        return self.classifier(x, t)

    def log_prob(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        """log p(y | x_t, t) per sample [B]: the `log_prob_fn` that `classifier_grad_fn` differentiates."""
        log_probs = F.log_softmax(self.classifier(x, t).float(), dim=1)  # [B, num_classes]
        return log_probs.gather(1, y.long()[:, None]).squeeze(1)  # [B, 1] -> [B]

    @torch.no_grad()
    def predict(self, x0: Tensor) -> Tensor:
        """Class predictions [B] for clean images x0 (t = 0), in eval mode."""
        was_training = self.training
        self.eval()
        try:
            t = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
            return self.classifier(x0, t).argmax(dim=1)
        finally:
            self.train(was_training)

    def noised_terms(
        self, batch: tuple[Tensor, Tensor], generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per-sample cross-entropy [B], correctness [B] (float) and t [B] on x_t = q_sample(x0, t, eps)."""
        x0, y = batch
        t, noise = draw_timesteps_and_noise(x0, self.diffusion.num_timesteps, generator, *rank_and_world(self))
        logits = self.classifier(self.diffusion.q_sample(x0, t, noise), t).float()  # [B, num_classes]
        loss = F.cross_entropy(logits, y, reduction="none")
        correct = (logits.argmax(dim=1) == y).float()
        return loss, correct, t

    def _log_terms(self, stage: str, loss: Tensor, correct: Tensor, t: Tensor, on_step: bool) -> Tensor:
        mean_loss = loss.mean()
        kw = dict(on_step=on_step, on_epoch=not on_step, batch_size=t.shape[0], sync_dist=not on_step)
        self.log(f"{stage}/loss", mean_loss, prog_bar=True, **kw)
        self.log(f"{stage}/acc", correct.mean(), prog_bar=True, **kw)
        # Accuracy per quarter of [0, T): guidance needs a classifier that is useful at high noise too.
        for q, value in quarter_means(correct, t, self.diffusion.num_timesteps).items():
            self.log(f"{stage}/acc_q{q}", value, **kw)
        return mean_loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, correct, t = self.noised_terms(batch)
        mean_loss = self._log_terms("train", loss, correct, t, on_step=True)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False)
        return mean_loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        # Same t and noise at every validation, so the metrics move only when the weights do.
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        loss, correct, t = self.noised_terms(batch, generator=generator)
        self._log_terms("val", loss, correct, t, on_step=False)
        # Plain classification accuracy on the clean images: the class-accuracy metric of the run.
        x0, y = batch
        t0 = torch.zeros_like(y)
        correct_t0 = (self.classifier(x0, t0).argmax(dim=1) == y).float()
        self.log("val/acc_t0", correct_t0.mean(), on_epoch=True, batch_size=y.shape[0], sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        lr = scaled_lr(self.cfg.model.optim.lr, self.cfg, self.trainer.world_size)
        return adamw_with_warmup(self.parameters(), self.cfg.model.optim, lr, lambda: self.budget_progress)
