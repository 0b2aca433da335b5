"""FID of generated samples during training, every `eval.every_n_steps` steps and at the end (EMA weights)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig

from genlab.metrics.extractors import ExtractorSpec, FeatureLayer, create_extractor
from genlab.metrics.fid import make_fid, set_reference
from genlab.metrics.images import to_extractor_uint8
from genlab.metrics.reference import cache_dir_of, reference_features, reference_key
from genlab.models import facts_of
from genlab.models.lightning_compat import swap_average_weights
from genlab.models.sample_shares import share_bounds


@contextlib.contextmanager
def ema_weights(trainer: L.Trainer, pl_module: L.LightningModule) -> Iterator[None]:
    """Swap the averaged weights in for the block, outside validation (where Lightning swaps them itself)."""
    swapped = swap_average_weights(trainer, pl_module)
    try:
        yield
    finally:
        if swapped:
            swap_average_weights(trainer, pl_module)  # the swap is its own inverse


class FIDCallback(L.Callback):
    """Logs `val/fid_<features>` and `val/eval_seconds` from `eval.num_samples` samples of `pl_module.eval_samples`.

    Put it before EMAWeightAveraging: at validation end the EMA weights are then in the model, as for the
    sample grid. Each DDP rank generates its share of the samples (its own seed) and the metric sums the
    feature statistics across ranks; the real side comes from the cached reference features, loaded on rank 0
    only so that the sums count each real image once. The metric and extractor live here, not in the
    LightningModule, so checkpoints do not carry them.
    """

    def __init__(self, ev: DictConfig, spec: ExtractorSpec) -> None:
        """`ev`: the `eval` block; `spec`: its feature extractor, resolved (and its files checked) before the run."""
        self.ev = ev
        self.spec = spec
        self.metric_name = f"val/fid_{spec.features}"
        self.metric = None  # built on first use, on the module's device
        self.last_step = -1

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # In W&B a run's summary value of the FID is its best (lowest), not its last.
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.experiment.define_metric(self.metric_name, summary="min")

    def _due(self, trainer: L.Trainer) -> bool:
        step = trainer.global_step
        every = self.ev.every_n_steps
        return step != self.last_step and (step >= trainer.max_steps or (every > 0 and step % every == 0))

    def _build(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        extractor = create_extractor(self.spec, pl_module.device)
        self.metric = make_fid(FeatureLayer(extractor, self.spec.fid_layer)).to(pl_module.device)
        self.reference = None
        if trainer.is_global_zero:
            cache_dir = cache_dir_of(self.ev.cache_dir)
            key = reference_key(pl_module.cfg.data, self.ev.split, pl_module.cfg.seed, self.spec)
            feats = reference_features(pl_module.cfg, self.ev.split, extractor, key, cache_dir, self.ev.batch_size)
            self.reference = feats[self.spec.fid_layer]  # [N, F]
            print(f"genlab: FID reference {key} ({len(self.reference)} images) in {cache_dir}")
            settings = self.sampler_kwargs(pl_module).get("settings")
            if settings is not None:
                print(f"genlab: FID samples: {self.ev.num_samples} with {settings.label(pl_module.diffusion.num_timesteps)}")

    def sampler_kwargs(self, pl_module: L.LightningModule) -> dict:
        """A diffusion model samples with eval.sampler / eval.steps over its `sampler` block; a GAN has no sampler."""
        if not facts_of(pl_module).sampler:
            return {}
        return {"settings": pl_module.resolve_sampler({"sampler": self.ev.sampler, "steps": self.ev.steps}),
                "progress": True}  # its own bar while the training bar waits (off when not on a terminal)

    @torch.inference_mode(False)
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[float, float]:
        """FID of this rank's share of fresh samples against the reference; (fid, seconds)."""
        started = time.time()
        if self.metric is None:
            self._build(trainer, pl_module)
        set_reference(self.metric, self.reference)
        world, rank = trainer.world_size, trainer.global_rank
        lo, hi = share_bounds(self.ev.num_samples, rank, world)
        share = hi - lo
        with torch.no_grad():
            images = pl_module.eval_samples(share, seed=self.ev.seed + rank, batch_size=self.ev.batch_size,
                                            **self.sampler_kwargs(pl_module))
            for batch in images.split(self.ev.batch_size):
                self.metric.update(to_extractor_uint8(batch).to(pl_module.device), real=False)
            fid = float(self.metric.compute())  # sums the statistics across ranks
        self.last_step = trainer.global_step
        return fid, time.time() - started

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self._due(trainer):
            return
        fid, seconds = self.evaluate(trainer, pl_module)
        # Every rank holds the same synced FID; sync_dist only keeps Lightning's DDP check quiet.
        pl_module.log(self.metric_name, fid, on_epoch=True, sync_dist=True)
        pl_module.log("val/eval_seconds", seconds, on_epoch=True, sync_dist=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The last step had no validation (max_steps not a multiple of val_every_n_steps): evaluate here.
        if trainer.global_step == self.last_step:
            return
        with ema_weights(trainer, pl_module):
            fid, seconds = self.evaluate(trainer, pl_module)
        for logger in trainer.loggers:  # self.log is not allowed in on_train_end
            logger.log_metrics({self.metric_name: fid, "val/eval_seconds": seconds}, step=trainer.global_step)
